//! Building and tearing down the namespaces, veth pairs, addresses and routes; the endpoints
//! file the agents read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::{Error, netns};

/// Number of nodes; the link between them is one veth pair.
const NODES: u8 = 2;
/// Name of the node-to-node link (inside each node namespace).
pub const NODE_LINK: &str = "n2n";

/// The workload (controller) owning a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub name: String,
    pub kind: String,
}

/// What a pod is, before it gets a namespace and addresses.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Short unique key (`frontend`); names the namespace `<prefix>-<key>` and the host-side
    /// interface `lxc<key>`, so at most 12 characters.
    pub key: String,
    /// Pod name as Kubernetes would show it.
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub workload: Workload,
    /// 0-based node index.
    pub node: u8,
    /// TCP port of its HTTP server, if it serves HTTP.
    pub http_port: Option<u16>,
    /// Whether it answers DNS-like queries on UDP 53.
    pub dns: bool,
}

/// The shop: `frontend`, `catalog` and `coredns` on node 1; `cart` and `db` on node 2.
/// `frontend` calls `catalog` and `cart`, both call `db`; `frontend → db` is the path a policy
/// denies later.
pub fn shop() -> Vec<PodSpec> {
    fn pod(
        key: &str,
        name: &str,
        namespace: &str,
        labels: &[(&str, &str)],
        (workload, kind): (&str, &str),
        node: u8,
    ) -> PodSpec {
        PodSpec {
            key: key.into(),
            name: name.into(),
            namespace: namespace.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workload: Workload {
                name: workload.into(),
                kind: kind.into(),
            },
            node,
            http_port: Some(8080),
            dns: false,
        }
    }
    vec![
        pod(
            "frontend",
            "frontend-6f9c7d8b5-x2k4p",
            "shop",
            &[("app", "frontend"), ("tier", "web")],
            ("frontend", "Deployment"),
            0,
        ),
        pod(
            "catalog",
            "catalog-7b4d9f6c8-m7q2z",
            "shop",
            &[("app", "catalog"), ("tier", "api")],
            ("catalog", "Deployment"),
            0,
        ),
        PodSpec {
            http_port: None,
            dns: true,
            ..pod(
                "coredns",
                "coredns-5d78c9869d-8w2lq",
                "kube-system",
                &[("k8s-app", "kube-dns")],
                ("coredns", "Deployment"),
                0,
            )
        },
        pod(
            "cart",
            "cart-58d6b7c9f4-r9t5n",
            "shop",
            &[("app", "cart"), ("tier", "api")],
            ("cart", "Deployment"),
            1,
        ),
        PodSpec {
            http_port: Some(5432),
            ..pod(
                "db",
                "db-0",
                "data",
                &[("app", "db"), ("tier", "data")],
                ("db", "StatefulSet"),
                1,
            )
        },
    ]
}

/// A node: a namespace acting as a host (where its agent looks), named `<prefix>-node<N>`; the
/// node name in flows and in the endpoints file is the same string, so agents of parallel
/// instances never share a unix socket or pin path.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// Namespace name (`/run/netns/<netns>`); equal to `name`.
    pub netns: String,
    /// Address on the node-to-node link.
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// Router address for its pods (on the node's `lo`).
    pub gateway_v4: Ipv4Addr,
    pub gateway_v6: Ipv6Addr,
    /// Pod subnets routed to this node (`198.19.N.0/24`, `2001:2:0:N::/64`).
    pub pod_cidr_v4: String,
    pub pod_cidr_v6: String,
}

/// A pod with its namespace, addresses and host-side interface.
#[derive(Debug, Clone)]
pub struct Pod {
    pub key: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub workload: Workload,
    /// Node name (= the node's namespace).
    pub node: String,
    /// The pod's own namespace.
    pub netns: String,
    /// Host-side veth in the node's namespace (Cilium's `lxc…`); the pod side is `eth0`.
    pub interface: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub http_port: Option<u16>,
    pub dns: bool,
}

impl Pod {
    /// `<key>.<namespace>.svc.cluster.local`, the name its DNS-like server answers for.
    pub fn service_name(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.key, self.namespace)
    }
}

/// The running network. Dropping it deletes every namespace it created (and with them the veth
/// pairs); build it again with the same prefix only after that.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    /// Namespaces this value created (and deletes on drop).
    created: Vec<String>,
    build_time: std::time::Duration,
}

/// A prefix no other live instance uses: `<base>-<pid>-<n>`. [`cleanup_stale`] recognises it.
pub fn unique_prefix(base: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{base}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn delete_namespaces(names: &[String]) -> Result<(), Error> {
    if names.is_empty() {
        return Ok(());
    }
    let mut script = String::new();
    for n in names {
        let _ = writeln!(script, "netns del {n}");
    }
    netns::ip_batch(None, &script, true)
}

/// Deletes every namespace named `<prefix>-…` (what a crashed run with this prefix left) after
/// killing the processes still inside them (e.g. a previous demo's servers). Returns the
/// namespaces removed.
pub fn cleanup_leftovers(prefix: &str) -> Result<Vec<String>, Error> {
    let lead = format!("{prefix}-");
    let names: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&lead))
        .collect();
    kill_inside(&names);
    delete_namespaces(&names)?;
    Ok(names)
}

/// Deletes namespaces named `<base>-<pid>-…` (from [`unique_prefix`]) whose process is gone,
/// leaving those of live parallel runs alone. Returns the namespaces removed.
pub fn cleanup_stale(base: &str) -> Vec<String> {
    let lead = format!("{base}-");
    let names: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| {
            n.strip_prefix(&lead)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    kill_inside(&names);
    if let Err(e) = delete_namespaces(&names) {
        tracing::warn!("removing stale namespaces: {e}");
    }
    names
}

fn kill_inside(names: &[String]) {
    let me = std::process::id();
    for name in names {
        for pid in netns::pids(name) {
            if pid != me {
                tracing::info!(pid, netns = %name, "killing a leftover process");
                // SAFETY: kill(2) with a pid read from /proc; a pid that is gone is ESRCH.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

impl Topology {
    /// Builds the shop ([`shop`]) under `prefix`.
    pub fn build(prefix: &str) -> Result<Self, Error> {
        Self::build_with(prefix, shop())
    }

    /// Builds two nodes and the given pods under `prefix`. Fails if a namespace with the prefix
    /// already exists (call [`cleanup_leftovers`] first); on any failure, what was created is
    /// deleted again.
    pub fn build_with(prefix: &str, specs: Vec<PodSpec>) -> Result<Self, Error> {
        if !is_root() {
            return Err(Error::NotRoot);
        }
        validate(prefix, &specs)?;
        let started = Instant::now();
        let existing = netns::list();
        let lead = format!("{prefix}-");
        if let Some(n) = existing.iter().find(|n| n.starts_with(&lead)) {
            return Err(Error::Spec(format!(
                "namespace {n} already exists; a previous run with prefix {prefix:?} left it \
                 (netlab::cleanup_leftovers removes it)"
            )));
        }

        let nodes: Vec<Node> = (1..=NODES)
            .map(|i| {
                let name = format!("{prefix}-node{i}");
                Node {
                    netns: name.clone(),
                    name,
                    ipv4: Ipv4Addr::new(198, 18, 0, i),
                    ipv6: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, u16::from(i)),
                    gateway_v4: Ipv4Addr::new(198, 19, i, 1),
                    gateway_v6: Ipv6Addr::new(0x2001, 2, 0, u16::from(i), 0, 0, 0, 1),
                    pod_cidr_v4: format!("198.19.{i}.0/24"),
                    pod_cidr_v6: format!("2001:2:0:{i}::/64"),
                }
            })
            .collect();
        let mut per_node = [0u8; NODES as usize];
        let pods: Vec<Pod> = specs
            .into_iter()
            .map(|s| {
                let n = &nodes[s.node as usize];
                let k = per_node[s.node as usize];
                per_node[s.node as usize] += 1;
                let third = s.node + 1;
                Pod {
                    node: n.name.clone(),
                    netns: format!("{prefix}-{}", s.key),
                    interface: format!("lxc{}", s.key),
                    ipv4: Ipv4Addr::new(198, 19, third, 10 + k),
                    ipv6: Ipv6Addr::new(
                        0x2001,
                        2,
                        0,
                        u16::from(third),
                        0,
                        0,
                        0,
                        0x10 + u16::from(k),
                    ),
                    key: s.key,
                    name: s.name,
                    namespace: s.namespace,
                    labels: s.labels,
                    workload: s.workload,
                    http_port: s.http_port,
                    dns: s.dns,
                }
            })
            .collect();

        let mut topo = Topology {
            prefix: prefix.to_string(),
            nodes,
            pods,
            created: Vec::new(),
            build_time: Default::default(),
        };
        // From here on, Drop deletes whatever exists.
        topo.created = topo
            .nodes
            .iter()
            .map(|n| n.netns.clone())
            .chain(topo.pods.iter().map(|p| p.netns.clone()))
            .collect();
        topo.create()?;
        topo.build_time = started.elapsed();
        tracing::info!(prefix, elapsed = ?topo.build_time, "topology built");
        Ok(topo)
    }

    fn create(&self) -> Result<(), Error> {
        // 1. Namespaces.
        let mut root = String::new();
        for ns in &self.created {
            let _ = writeln!(root, "netns add {ns}");
        }
        netns::ip_batch(None, &root, false)?;

        // 2. Sysctls before any interface exists, so new interfaces inherit `default`: nodes
        //    forward; nobody runs IPv6 DAD (a tentative address silently loses the first
        //    packets); pods may open ICMP echo ("ping") sockets as root (ping_group_range).
        for n in &self.nodes {
            netns::sysctls(
                &n.netns,
                &[
                    ("net.ipv4.ip_forward", "1"),
                    ("net.ipv6.conf.all.forwarding", "1"),
                    ("net.ipv6.conf.default.forwarding", "1"),
                    ("net.ipv6.conf.all.accept_dad", "0"),
                    ("net.ipv6.conf.default.accept_dad", "0"),
                ],
            )?;
        }
        for p in &self.pods {
            netns::sysctls(
                &p.netns,
                &[
                    ("net.ipv6.conf.all.accept_dad", "0"),
                    ("net.ipv6.conf.default.accept_dad", "0"),
                    ("net.ipv4.ping_group_range", "0 2147483647"),
                ],
            )?;
        }

        // 3. Veth pairs, created straight into their namespaces.
        let mut links = String::new();
        let (n1, n2) = (&self.nodes[0], &self.nodes[1]);
        let _ = writeln!(
            links,
            "link add {NODE_LINK} netns {} type veth peer name {NODE_LINK} netns {}",
            n1.netns, n2.netns
        );
        for p in &self.pods {
            let _ = writeln!(
                links,
                "link add {} netns {} type veth peer name eth0 netns {}",
                p.interface, p.node, p.netns
            );
        }
        netns::ip_batch(None, &links, false)?;

        // 4. Addresses and routes, one `ip -batch` per namespace.
        for (i, n) in self.nodes.iter().enumerate() {
            let other = &self.nodes[1 - i];
            let mut s = String::new();
            let _ = writeln!(s, "link set lo up");
            let _ = writeln!(s, "link set {NODE_LINK} up");
            let _ = writeln!(s, "addr add {}/24 dev {NODE_LINK}", n.ipv4);
            let _ = writeln!(s, "addr add {}/64 dev {NODE_LINK} nodad", n.ipv6);
            let _ = writeln!(s, "addr add {}/32 dev lo", n.gateway_v4);
            let _ = writeln!(s, "addr add {}/128 dev lo", n.gateway_v6);
            for p in self.pods.iter().filter(|p| p.node == n.name) {
                let _ = writeln!(s, "link set {} up", p.interface);
                let _ = writeln!(s, "addr add fe80::1/64 dev {} nodad", p.interface);
                let _ = writeln!(s, "route add {}/32 dev {}", p.ipv4, p.interface);
                let _ = writeln!(s, "route add {}/128 dev {}", p.ipv6, p.interface);
            }
            let _ = writeln!(s, "route add {} via {}", other.pod_cidr_v4, other.ipv4);
            let _ = writeln!(s, "route add {} via {}", other.pod_cidr_v6, other.ipv6);
            netns::ip_batch(Some(&n.netns), &s, false)?;
        }
        for p in &self.pods {
            let node = self.node(&p.node).expect("pod's node exists");
            let mut s = String::new();
            let _ = writeln!(s, "link set lo up");
            let _ = writeln!(s, "link set eth0 up");
            let _ = writeln!(s, "addr add {}/32 dev eth0", p.ipv4);
            let _ = writeln!(s, "addr add {}/128 dev eth0 nodad", p.ipv6);
            let _ = writeln!(s, "route add {}/32 dev eth0 scope link", node.gateway_v4);
            let _ = writeln!(s, "route add default via {} dev eth0", node.gateway_v4);
            let _ = writeln!(s, "route add ::/0 via fe80::1 dev eth0");
            netns::ip_batch(Some(&p.netns), &s, false)?;
        }
        Ok(())
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The pod with this key (`frontend`, `cart`, …).
    pub fn pod(&self, key: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.key == key)
    }

    /// Host-side interfaces of a node's pods (what its agent attaches to).
    pub fn interfaces(&self, node: &str) -> Vec<&str> {
        self.pods
            .iter()
            .filter(|p| p.node == node)
            .map(|p| p.interface.as_str())
            .collect()
    }

    /// How long [`Topology::build`] took.
    pub fn build_time(&self) -> std::time::Duration {
        self.build_time
    }

    /// The agents' endpoints file (issue 3 item 6 shape, with the `nodes:` list).
    pub fn endpoints_yaml(&self) -> String {
        #[derive(Serialize)]
        struct File<'a> {
            endpoints: Vec<Ep<'a>>,
            nodes: Vec<Nd<'a>>,
        }
        #[derive(Serialize)]
        struct Ep<'a> {
            name: &'a str,
            namespace: &'a str,
            labels: &'a BTreeMap<String, String>,
            workload: &'a Workload,
            ips: [IpAddr; 2],
            interface: &'a str,
            node: &'a str,
        }
        #[derive(Serialize)]
        struct Nd<'a> {
            name: &'a str,
            ips: [IpAddr; 4],
        }
        let file = File {
            endpoints: self
                .pods
                .iter()
                .map(|p| Ep {
                    name: &p.name,
                    namespace: &p.namespace,
                    labels: &p.labels,
                    workload: &p.workload,
                    ips: [p.ipv4.into(), p.ipv6.into()],
                    interface: &p.interface,
                    node: &p.node,
                })
                .collect(),
            nodes: self
                .nodes
                .iter()
                .map(|n| Nd {
                    name: &n.name,
                    ips: [
                        n.ipv4.into(),
                        n.ipv6.into(),
                        n.gateway_v4.into(),
                        n.gateway_v6.into(),
                    ],
                })
                .collect(),
        };
        let body = serde_saphyr::to_string(&file).expect("plain structs serialize");
        format!(
            "# Written by netlab for the {} topology: the shop's pods and both nodes.\n{body}",
            self.prefix
        )
    }

    /// Writes [`Topology::endpoints_yaml`] to `path`.
    pub fn write_endpoints(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        std::fs::write(path, self.endpoints_yaml()).map_err(|source| Error::Io {
            what: format!("write endpoints file {}", path.display()),
            source,
        })
    }

    /// Deletes everything now and reports failures (Drop does the same, logging them).
    pub fn teardown(mut self) -> Result<(), Error> {
        let names = std::mem::take(&mut self.created);
        kill_inside(&names);
        delete_namespaces(&names)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.created);
        if let Err(e) = delete_namespaces(&names) {
            tracing::warn!(prefix = %self.prefix, "tearing the topology down: {e}");
        }
    }
}

fn validate(prefix: &str, specs: &[PodSpec]) -> Result<(), Error> {
    let ok_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !ok_name(prefix) {
        return Err(Error::Spec(format!(
            "prefix {prefix:?}: use letters, digits, '-' and '_'"
        )));
    }
    let mut keys = std::collections::BTreeSet::new();
    for s in specs {
        if !ok_name(&s.key) || s.key.len() > 12 || s.key.starts_with("node") {
            return Err(Error::Spec(format!(
                "pod key {:?}: 1-12 letters/digits/'-', not starting with \"node\" \
                 (it names lxc<key> and <prefix>-<key>)",
                s.key
            )));
        }
        if !keys.insert(&s.key) {
            return Err(Error::Spec(format!("pod key {:?} used twice", s.key)));
        }
        if s.node >= NODES {
            return Err(Error::Spec(format!(
                "pod {:?} on node {}: there are {NODES} nodes (0-based)",
                s.key, s.node
            )));
        }
    }
    Ok(())
}
