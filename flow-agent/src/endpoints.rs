//! Standalone endpoints file: who is behind each address, as every agent of the cluster sees it.
//!
//! The file (YAML, `--endpoints`) lists pods and, optionally, nodes:
//!
//! ```yaml
//! endpoints:
//!   - name: web-5d8f            # pod name
//!     namespace: shop
//!     labels: {app: web, tier: front}
//!     workload: {name: web, kind: Deployment}
//!     ips: [198.19.1.10, "2001:2:0:1::10"]
//!     interface: lxcweb         # host-side interface on its node
//!     node: node-1
//!     identity: 4242            # optional; otherwise numbered from the file
//! nodes:
//!   - name: node-1
//!     ips: [198.18.0.1]
//! ```
//!
//! Identities follow Cilium: reserved numbers below 256 (host 1, world 2, remote-node 6) and
//! endpoint identities from 256 up. Agents never talk to each other about identities, so the
//! numbering is a pure function of the file: explicit `identity:` values are kept, and every other
//! distinct label set (namespace included) is numbered in sorted order, skipping taken numbers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub use crate::identity::{
    CLUSTER_NAME, IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD, LABEL_HOST,
    LABEL_REMOTE_NODE, LABEL_WORLD, MIN_ENDPOINT_IDENTITY, cilium_labels, reserved_labels,
};

/// A bad or unreadable endpoints file. The message names the file and, when the problem is in
/// its content, the line and column.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    #[error("{file}: cannot read the endpoints file: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
}

impl EndpointsError {
    /// Line of the offending content (1-based), when known.
    pub fn line(&self) -> Option<u64> {
        match self {
            EndpointsError::Invalid { line, .. } if *line > 0 => Some(*line),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    endpoints: Vec<Spanned<EndpointSpec>>,
    #[serde(default)]
    nodes: Vec<Spanned<NodeSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSpec {
    name: Spanned<String>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    workload: Option<WorkloadSpec>,
    #[serde(default)]
    ips: Vec<Spanned<IpAddr>>,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    identity: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadSpec {
    name: String,
    kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    name: Spanned<String>,
    #[serde(default)]
    ips: Vec<Spanned<IpAddr>>,
}

/// The workload (controller) that owns a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub kind: String,
}

/// One pod of the file, with its labels in Cilium's form and its identity resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Pod name.
    pub name: String,
    pub namespace: String,
    /// Cilium-style labels (`k8s:app=web`, the namespace and cluster labels), sorted.
    pub labels: Vec<String>,
    pub workload: Option<Workload>,
    pub ips: Vec<IpAddr>,
    /// Host-side interface on its node.
    pub interface: Option<String>,
    pub node: Option<String>,
    pub identity: u32,
    /// Cilium endpoint ID; only endpoints of this node have one (0 otherwise, as Hubble leaves
    /// remote endpoints). Numbered 1.. over this node's endpoints sorted by (namespace, name).
    pub endpoint_id: u32,
    /// Line of the entry in the file.
    pub line: u64,
}

/// A node of the cluster and its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub ips: Vec<IpAddr>,
}

/// An entry the datapath's LPM ipcache must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpcacheEntry {
    pub prefix: IpNet,
    pub identity: u32,
}

/// What stands behind an address, from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer<'a> {
    Endpoint(&'a Arc<Endpoint>),
    /// One of this node's own addresses.
    Host,
    /// Another node of the cluster.
    RemoteNode(&'a str),
    /// Anything else.
    World,
}

impl Peer<'_> {
    pub fn identity(&self) -> u32 {
        match self {
            Peer::Endpoint(ep) => ep.identity,
            Peer::Host => IDENTITY_HOST,
            Peer::RemoteNode(_) => IDENTITY_REMOTE_NODE,
            Peer::World => IDENTITY_WORLD,
        }
    }
}

/// The parsed endpoints file, as seen by one node.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    local_node: String,
    endpoints: Vec<Arc<Endpoint>>,
    nodes: Vec<Node>,
    by_ip: HashMap<IpAddr, Arc<Endpoint>>,
    node_by_ip: HashMap<IpAddr, usize>,
    labels_by_identity: BTreeMap<u32, Arc<[String]>>,
}

fn invalid(file: &str, line: u64, column: u64, message: impl Into<String>) -> EndpointsError {
    EndpointsError::Invalid {
        file: file.to_string(),
        line,
        column,
        message: message.into(),
    }
}

impl Endpoints {
    /// No endpoints at all: every address is `reserved:world`.
    pub fn empty(local_node: &str) -> Self {
        Endpoints {
            local_node: local_node.to_string(),
            ..Default::default()
        }
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path, local_node: &str) -> Result<Self, EndpointsError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| EndpointsError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file, local_node)
    }

    /// Parses the text of an endpoints file; `file` only names it in errors.
    pub fn parse(text: &str, file: &str, local_node: &str) -> Result<Self, EndpointsError> {
        let spec: FileSpec = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            // The location leads our message; drop the parser's own copy of it.
            let text = e.without_snippet().to_string();
            let suffix = format!(" at line {line}, column {column}");
            let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
            invalid(file, line, column, message)
        })?;
        Self::build(spec, file, local_node)
    }

    fn build(spec: FileSpec, file: &str, local_node: &str) -> Result<Self, EndpointsError> {
        struct Draft {
            spec: EndpointSpec,
            line: u64,
            column: u64,
            namespace: String,
            labels: Vec<String>,
        }
        let mut drafts = Vec::with_capacity(spec.endpoints.len());
        let mut seen_names: HashMap<(String, String), u64> = HashMap::new();
        for ep in spec.endpoints {
            let (line, column) = (ep.referenced.line(), ep.referenced.column());
            let ep = ep.value;
            let name = ep.name.value.trim().to_string();
            if name.is_empty() {
                return Err(invalid(
                    file,
                    ep.name.referenced.line(),
                    ep.name.referenced.column(),
                    "endpoint name is empty",
                ));
            }
            let namespace = match &ep.namespace {
                Some(ns) if ns.value.trim().is_empty() => {
                    return Err(invalid(
                        file,
                        ns.referenced.line(),
                        ns.referenced.column(),
                        format!("endpoint {name}: namespace is empty"),
                    ));
                }
                Some(ns) => ns.value.trim().to_string(),
                None => "default".to_string(),
            };
            if let Some(first) = seen_names.insert((namespace.clone(), name.clone()), line) {
                return Err(invalid(
                    file,
                    line,
                    column,
                    format!("endpoint {namespace}/{name} is listed twice (first at line {first})"),
                ));
            }
            if let Some(bad) = ep.labels.keys().find(|k| k.trim().is_empty()) {
                return Err(invalid(
                    file,
                    line,
                    column,
                    format!("endpoint {namespace}/{name}: label key {bad:?} is empty"),
                ));
            }
            let labels = cilium_labels(&namespace, &ep.labels);
            drafts.push(Draft {
                spec: ep,
                line,
                column,
                namespace,
                labels,
            });
        }

        // Explicit identities first: they are kept, and they must not contradict each other.
        let mut identity_of_labels: BTreeMap<Vec<String>, (u32, u64)> = BTreeMap::new();
        let mut labels_of_identity: BTreeMap<u32, (Vec<String>, u64)> = BTreeMap::new();
        for d in &drafts {
            let Some(id) = &d.spec.identity else { continue };
            let (idl, idc) = (id.referenced.line(), id.referenced.column());
            let id = id.value;
            if id < MIN_ENDPOINT_IDENTITY {
                return Err(invalid(
                    file,
                    idl,
                    idc,
                    format!(
                        "identity {id} is reserved: endpoint identities start at {MIN_ENDPOINT_IDENTITY}"
                    ),
                ));
            }
            if let Some((other, at)) = identity_of_labels.get(&d.labels)
                && *other != id
            {
                return Err(invalid(
                    file,
                    idl,
                    idc,
                    format!(
                        "identity {id} contradicts identity {other} given at line {at} to the same labels"
                    ),
                ));
            }
            if let Some((other_labels, at)) = labels_of_identity.get(&id)
                && *other_labels != d.labels
            {
                return Err(invalid(
                    file,
                    idl,
                    idc,
                    format!("identity {id} is already given at line {at} to different labels"),
                ));
            }
            identity_of_labels.insert(d.labels.clone(), (id, idl));
            labels_of_identity.insert(id, (d.labels.clone(), idl));
        }
        // Then number the remaining distinct label sets, sorted, skipping taken numbers.
        let unnumbered: BTreeSet<&Vec<String>> = drafts
            .iter()
            .map(|d| &d.labels)
            .filter(|l| !identity_of_labels.contains_key(*l))
            .collect();
        let mut next = MIN_ENDPOINT_IDENTITY;
        let mut generated: HashMap<Vec<String>, u32> = HashMap::new();
        for labels in unnumbered {
            while labels_of_identity.contains_key(&next) {
                next += 1;
            }
            generated.insert(labels.clone(), next);
            labels_of_identity.insert(next, (labels.clone(), 0));
            next += 1;
        }

        // Node addresses.
        let mut nodes = Vec::with_capacity(spec.nodes.len());
        let mut node_by_ip: HashMap<IpAddr, usize> = HashMap::new();
        let mut ip_owner: HashMap<IpAddr, u64> = HashMap::new();
        for n in spec.nodes {
            let n = n.value;
            let name = n.name.value.trim().to_string();
            if name.is_empty() {
                return Err(invalid(
                    file,
                    n.name.referenced.line(),
                    n.name.referenced.column(),
                    "node name is empty",
                ));
            }
            let mut ips = Vec::with_capacity(n.ips.len());
            for ip in n.ips {
                let (l, c) = (ip.referenced.line(), ip.referenced.column());
                if let Some(first) = ip_owner.insert(ip.value, l) {
                    return Err(invalid(
                        file,
                        l,
                        c,
                        format!(
                            "address {} is listed twice (first at line {first})",
                            ip.value
                        ),
                    ));
                }
                node_by_ip.insert(ip.value, nodes.len());
                ips.push(ip.value);
            }
            nodes.push(Node { name, ips });
        }

        // Local endpoint IDs: sorted by (namespace, name), numbered from 1.
        let mut local: Vec<(&str, &str)> = drafts
            .iter()
            .filter(|d| d.spec.node.as_deref() == Some(local_node))
            .map(|d| (d.namespace.as_str(), d.spec.name.value.trim()))
            .collect();
        local.sort_unstable();
        let local_ids: HashMap<(String, String), u32> = local
            .iter()
            .enumerate()
            .map(|(i, (ns, n))| ((ns.to_string(), n.to_string()), i as u32 + 1))
            .collect();

        let mut endpoints = Vec::with_capacity(drafts.len());
        let mut by_ip = HashMap::new();
        for d in drafts {
            let name = d.spec.name.value.trim().to_string();
            let identity = match identity_of_labels.get(&d.labels) {
                Some((id, _)) => *id,
                None => generated[&d.labels],
            };
            let mut ips = Vec::with_capacity(d.spec.ips.len());
            for ip in d.spec.ips {
                let (l, c) = (ip.referenced.line(), ip.referenced.column());
                if let Some(first) = ip_owner.insert(ip.value, l) {
                    return Err(invalid(
                        file,
                        l,
                        c,
                        format!(
                            "address {} is listed twice (first at line {first})",
                            ip.value
                        ),
                    ));
                }
                ips.push(ip.value);
            }
            let endpoint_id = local_ids
                .get(&(d.namespace.clone(), name.clone()))
                .copied()
                .unwrap_or(0);
            let _ = d.column;
            let ep = Arc::new(Endpoint {
                name,
                namespace: d.namespace,
                labels: d.labels,
                workload: d.spec.workload.map(|w| Workload {
                    name: w.name,
                    kind: w.kind,
                }),
                ips,
                interface: d.spec.interface.filter(|s| !s.trim().is_empty()),
                node: d.spec.node,
                identity,
                endpoint_id,
                line: d.line,
            });
            for ip in &ep.ips {
                by_ip.insert(*ip, ep.clone());
            }
            endpoints.push(ep);
        }

        let mut labels_by_identity: BTreeMap<u32, Arc<[String]>> = labels_of_identity
            .into_iter()
            .map(|(id, (labels, _))| (id, Arc::from(labels)))
            .collect();
        for id in [IDENTITY_HOST, IDENTITY_WORLD, IDENTITY_REMOTE_NODE] {
            let label = reserved_labels(id).unwrap_or_default().to_string();
            labels_by_identity.insert(id, Arc::from(vec![label]));
        }

        Ok(Endpoints {
            local_node: local_node.to_string(),
            endpoints,
            nodes,
            by_ip,
            node_by_ip,
            labels_by_identity,
        })
    }

    /// Name of the node this view belongs to.
    pub fn local_node(&self) -> &str {
        &self.local_node
    }

    /// Every endpoint of the file, in file order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Endpoints that run on this node.
    pub fn local_endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.endpoints
            .iter()
            .filter(|e| e.node.as_deref() == Some(self.local_node.as_str()))
    }

    /// Host-side interfaces of this node's endpoints, sorted, without duplicates.
    pub fn local_interfaces(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .local_endpoints()
            .filter_map(|e| e.interface.clone())
            .collect();
        set.into_iter().collect()
    }

    /// The local endpoint whose host-side interface is `name`.
    pub fn endpoint_on_interface(&self, name: &str) -> Option<&Arc<Endpoint>> {
        self.local_endpoints()
            .find(|e| e.interface.as_deref() == Some(name))
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The endpoint that owns `ip`, if any.
    pub fn endpoint(&self, ip: &IpAddr) -> Option<&Arc<Endpoint>> {
        self.by_ip.get(&canonical(ip))
    }

    /// What stands behind `ip` from this node's point of view.
    pub fn peer(&self, ip: &IpAddr) -> Peer<'_> {
        let ip = canonical(ip);
        if let Some(ep) = self.by_ip.get(&ip) {
            return Peer::Endpoint(ep);
        }
        match self.node_by_ip.get(&ip) {
            Some(&i) if self.nodes[i].name == self.local_node => Peer::Host,
            Some(&i) => Peer::RemoteNode(&self.nodes[i].name),
            None => Peer::World,
        }
    }

    /// Security identity of `ip` (world when unknown).
    pub fn identity_of(&self, ip: &IpAddr) -> u32 {
        self.peer(ip).identity()
    }

    /// Labels of a security identity: endpoint identities of the file and the reserved ones.
    pub fn labels_of_identity(&self, identity: u32) -> Option<&Arc<[String]>> {
        self.labels_by_identity.get(&identity)
    }

    /// Every identity defined by the file (the reserved ones included), with its labels.
    pub fn identities(&self) -> impl Iterator<Item = (u32, &Arc<[String]>)> {
        self.labels_by_identity.iter().map(|(k, v)| (*k, v))
    }

    /// The prefixes the datapath's ipcache must hold, sorted: every endpoint address with its
    /// identity, this node's addresses as host and other nodes' as remote-node. Addresses that
    /// match nothing are world (the datapath's default).
    pub fn ipcache(&self) -> Vec<IpcacheEntry> {
        let mut out: Vec<IpcacheEntry> =
            Vec::with_capacity(self.by_ip.len() + self.node_by_ip.len());
        for (ip, ep) in &self.by_ip {
            out.push(IpcacheEntry {
                prefix: IpNet::from(*ip),
                identity: ep.identity,
            });
        }
        for (ip, &i) in &self.node_by_ip {
            let identity = if self.nodes[i].name == self.local_node {
                IDENTITY_HOST
            } else {
                IDENTITY_REMOTE_NODE
            };
            out.push(IpcacheEntry {
                prefix: IpNet::from(*ip),
                identity,
            });
        }
        out.sort_unstable();
        out
    }
}

/// IPv4-mapped IPv6 addresses are looked up as the IPv4 address they carry.
fn canonical(ip: &IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => *ip,
        },
        v4 => *v4,
    }
}

/// Watches an endpoints file for changes (by modification time and size), so the agent can
/// reload it; a bad new version is reported and the previous endpoints stay in force.
#[derive(Debug)]
pub struct EndpointsFile {
    path: PathBuf,
    local_node: String,
    stamp: Option<(SystemTime, u64)>,
}

impl EndpointsFile {
    pub fn new(path: impl Into<PathBuf>, local_node: &str) -> Self {
        EndpointsFile {
            path: path.into(),
            local_node: local_node.to_string(),
            stamp: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the file if it changed since the last call (always on the first call).
    /// `None` when nothing changed; a failed load is reported once per change of the file.
    pub fn poll(&mut self) -> Option<Result<Endpoints, EndpointsError>> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()),
            Err(source) => {
                // Report a missing file once, then again only after it comes back.
                if self.stamp == Some((SystemTime::UNIX_EPOCH, u64::MAX)) {
                    return None;
                }
                self.stamp = Some((SystemTime::UNIX_EPOCH, u64::MAX));
                return Some(Err(EndpointsError::Io {
                    file: self.path.display().to_string(),
                    source,
                }));
            }
        };
        if self.stamp == Some(stamp) {
            return None;
        }
        self.stamp = Some(stamp);
        Some(Endpoints::load(&self.path, &self.local_node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
endpoints:
  - name: web-5d8f
    namespace: shop
    labels: {app: web, tier: front}
    workload: {name: web, kind: Deployment}
    ips: [198.19.1.10, "2001:2:0:1::10"]
    interface: lxcweb
    node: node-1
  - name: api-1
    namespace: shop
    labels: {app: api}
    ips: [198.19.2.20]
    interface: lxcapi
    node: node-2
  - name: web-77aa
    namespace: shop
    labels: {tier: front, app: web}
    ips: [198.19.1.11]
    interface: lxcweb2
    node: node-1
nodes:
  - name: node-1
    ips: [198.18.0.1]
  - name: node-2
    ips: [198.18.0.2, "2001:2::2"]
"#;

    fn parse(text: &str, node: &str) -> Result<Endpoints, EndpointsError> {
        Endpoints::parse(text, "eps.yaml", node)
    }

    #[test]
    fn labels_follow_cilium_conventions_sorted_with_namespace_and_cluster() {
        let eps = parse(FILE, "node-1").unwrap();
        let web = eps.endpoint(&"198.19.1.10".parse().unwrap()).unwrap();
        assert_eq!(
            web.labels,
            vec![
                "k8s:app=web",
                "k8s:io.cilium.k8s.policy.cluster=default",
                "k8s:io.kubernetes.pod.namespace=shop",
                "k8s:tier=front",
            ]
        );
        assert_eq!(
            web.workload,
            Some(Workload {
                name: "web".into(),
                kind: "Deployment".into()
            })
        );
    }

    #[test]
    fn same_labels_share_one_identity_and_identities_start_at_256() {
        let eps = parse(FILE, "node-1").unwrap();
        let a = eps.identity_of(&"198.19.1.10".parse().unwrap());
        let b = eps.identity_of(&"198.19.1.11".parse().unwrap());
        let c = eps.identity_of(&"198.19.2.20".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a >= MIN_ENDPOINT_IDENTITY && c >= MIN_ENDPOINT_IDENTITY);
        // Sorted label sets: app=api < app=web.
        assert_eq!((c, a), (256, 257));
    }

    #[test]
    fn identities_do_not_depend_on_entry_order_or_on_the_reading_node() {
        let reordered = r#"
endpoints:
  - name: api-1
    namespace: shop
    labels: {app: api}
    ips: [198.19.2.20]
    node: node-2
  - name: web-77aa
    namespace: shop
    labels: {app: web, tier: front}
    ips: [198.19.1.11]
    node: node-1
"#;
        let one = parse(FILE, "node-1").unwrap();
        let two = parse(reordered, "node-2").unwrap();
        for ip in ["198.19.1.11", "198.19.2.20"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(one.identity_of(&ip), two.identity_of(&ip), "{ip}");
        }
    }

    #[test]
    fn namespace_is_part_of_the_identity() {
        let text = r#"
endpoints:
  - {name: a, namespace: one, labels: {app: x}, ips: [198.19.0.1]}
  - {name: b, namespace: two, labels: {app: x}, ips: [198.19.0.2]}
"#;
        let eps = parse(text, "n").unwrap();
        assert_ne!(
            eps.identity_of(&"198.19.0.1".parse().unwrap()),
            eps.identity_of(&"198.19.0.2".parse().unwrap())
        );
    }

    #[test]
    fn explicit_identities_are_kept_and_generated_ones_skip_them() {
        let text = r#"
endpoints:
  - {name: a, namespace: ns, labels: {app: a}, ips: [198.19.0.1], identity: 256}
  - {name: b, namespace: ns, labels: {app: b}, ips: [198.19.0.2]}
  - {name: c, namespace: ns, labels: {app: a}, ips: [198.19.0.3]}
"#;
        let eps = parse(text, "n").unwrap();
        assert_eq!(eps.identity_of(&"198.19.0.1".parse().unwrap()), 256);
        assert_eq!(eps.identity_of(&"198.19.0.3".parse().unwrap()), 256);
        assert_eq!(eps.identity_of(&"198.19.0.2".parse().unwrap()), 257);
    }

    #[test]
    fn node_addresses_are_host_here_and_remote_node_elsewhere_and_the_rest_is_world() {
        let eps = parse(FILE, "node-1").unwrap();
        assert_eq!(eps.peer(&"198.18.0.1".parse().unwrap()), Peer::Host);
        assert_eq!(
            eps.peer(&"2001:2::2".parse().unwrap()),
            Peer::RemoteNode("node-2")
        );
        assert_eq!(eps.identity_of(&"198.18.0.2".parse().unwrap()), 6);
        assert_eq!(eps.identity_of(&"198.18.9.9".parse().unwrap()), 2);
        assert_eq!(
            eps.labels_of_identity(6).unwrap().as_ref(),
            ["reserved:remote-node".to_string()]
        );
        assert_eq!(
            eps.labels_of_identity(1).unwrap().as_ref(),
            ["reserved:host".to_string()]
        );
    }

    #[test]
    fn ipv4_mapped_addresses_resolve_like_their_ipv4_address() {
        let eps = parse(FILE, "node-1").unwrap();
        let mapped: IpAddr = "::ffff:198.19.1.10".parse().unwrap();
        assert_eq!(eps.endpoint(&mapped).unwrap().name, "web-5d8f");
    }

    #[test]
    fn ipcache_lists_every_endpoint_and_node_address_with_its_identity() {
        let eps = parse(FILE, "node-1").unwrap();
        let cache = eps.ipcache();
        let get = |p: &str| {
            cache
                .iter()
                .find(|e| e.prefix == p.parse::<IpNet>().unwrap())
                .map(|e| e.identity)
        };
        assert_eq!(cache.len(), 7);
        assert_eq!(get("198.19.1.10/32"), Some(257));
        assert_eq!(get("2001:2:0:1::10/128"), Some(257));
        assert_eq!(get("198.18.0.1/32"), Some(IDENTITY_HOST));
        assert_eq!(get("2001:2::2/128"), Some(IDENTITY_REMOTE_NODE));
    }

    #[test]
    fn only_local_endpoints_get_endpoint_ids_and_interfaces() {
        let eps = parse(FILE, "node-1").unwrap();
        let ids: Vec<(String, u32)> = eps
            .endpoints()
            .iter()
            .map(|e| (e.name.clone(), e.endpoint_id))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("web-5d8f".to_string(), 1),
                ("api-1".to_string(), 0),
                ("web-77aa".to_string(), 2)
            ]
        );
        assert_eq!(eps.local_interfaces(), vec!["lxcweb", "lxcweb2"]);
        assert_eq!(
            eps.endpoint_on_interface("lxcweb2").unwrap().name,
            "web-77aa"
        );
    }

    #[test]
    fn a_bad_address_is_an_error_naming_file_and_line() {
        let text = "endpoints:\n  - name: a\n    namespace: ns\n    ips: [198.19.1.300]\n";
        let err = parse(text, "n").unwrap_err();
        assert_eq!(err.line(), Some(4));
        let msg = err.to_string();
        assert!(msg.starts_with("eps.yaml:4:"), "{msg}");
        assert!(msg.contains("IP address"), "{msg}");
    }

    #[test]
    fn an_unknown_field_is_an_error_naming_its_line() {
        let text = "endpoints:\n  - name: a\n    lables: {app: x}\n";
        let err = parse(text, "n").unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert!(err.to_string().contains("lables"), "{err}");
    }

    #[test]
    fn broken_yaml_is_an_error_with_a_line() {
        let err = parse("endpoints:\n  - name: a\n    labels: {app: web\n", "n").unwrap_err();
        assert!(err.line().is_some(), "{err}");
    }

    #[test]
    fn an_address_used_twice_is_an_error_at_the_second_use() {
        let text = r#"endpoints:
  - {name: a, ips: [198.19.0.1]}
  - {name: b, ips: [198.19.0.1]}
"#;
        let err = parse(text, "n").unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert!(err.to_string().contains("first at line 2"), "{err}");
    }

    #[test]
    fn reserved_or_contradicting_identities_are_errors() {
        let low = "endpoints:\n  - {name: a, ips: [198.19.0.1], identity: 6}\n";
        let err = parse(low, "n").unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(err.to_string().contains("reserved"), "{err}");

        let clash = r#"endpoints:
  - {name: a, labels: {app: a}, identity: 300}
  - {name: b, labels: {app: b}, identity: 300}
"#;
        let err = parse(clash, "n").unwrap_err();
        assert_eq!(err.line(), Some(3));
    }

    #[test]
    fn duplicate_pods_are_errors() {
        let text = "endpoints:\n  - {name: a, namespace: x}\n  - {name: a, namespace: x}\n";
        let err = parse(text, "n").unwrap_err();
        assert_eq!(err.line(), Some(3));
    }

    #[test]
    fn an_empty_file_means_no_endpoints() {
        let eps = parse("", "n").unwrap();
        assert!(eps.endpoints().is_empty());
        assert_eq!(
            eps.identity_of(&"198.19.0.1".parse().unwrap()),
            IDENTITY_WORLD
        );
    }

    #[test]
    fn the_watcher_reloads_on_change_and_reports_a_bad_version_once() {
        let dir = std::env::temp_dir().join(format!("webb-eps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("eps.yaml");
        std::fs::write(&path, "endpoints:\n  - {name: a, ips: [198.19.0.1]}\n").unwrap();
        let mut w = EndpointsFile::new(&path, "n");
        let first = w.poll().expect("first poll loads").unwrap();
        assert_eq!(first.endpoints().len(), 1);
        assert!(w.poll().is_none(), "unchanged file is not reloaded");

        std::fs::write(&path, "endpoints:\n  - {name: a, ips: [nope]}\n").unwrap();
        let err = w.poll().expect("changed file is reloaded").unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(err.to_string().contains("eps.yaml"), "{err}");
        assert!(w.poll().is_none(), "a bad version is reported once");

        std::fs::write(
            &path,
            "endpoints:\n  - {name: a, ips: [198.19.0.1]}\n  - {name: b, ips: [198.19.0.2]}\n",
        )
        .unwrap();
        assert_eq!(w.poll().unwrap().unwrap().endpoints().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
