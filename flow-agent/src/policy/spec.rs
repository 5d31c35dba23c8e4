//! The YAML shapes Webb reads (`cilium.io/v2` CiliumNetworkPolicy and
//! CiliumClusterwideNetworkPolicy, `networking.k8s.io/v1` NetworkPolicy) and their translation
//! into the one rule model of [`super::Rule`]. Unknown fields are errors, so a typo or an
//! unsupported feature (L7 rules other than DNS, named ports, …) never silently widens or narrows
//! a policy.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;

use flow_filter::selector::{self, Selector};

use super::fqdn::FqdnSelector;
use super::{
    Dir, EndpointSel, Entity, Kind, NsSel, Peer, Peers, PortRule, Proto, Rule, Section, Subject,
};

/// Label key Cilium gives every pod for its namespace.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

/// A semantic problem at `field` (a path like `spec.ingress[0].toPorts[0].ports[1].port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn ferr<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

/// What every document has: enough to pick the typed parser.
#[derive(Debug, Deserialize)]
pub(super) struct Head {
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// Object metadata; labels, annotations, resourceVersion and uid are accepted as Kubernetes
/// writes them and not used.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct Metadata {
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, rename = "resourceVersion")]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
}

// ----------------------------------------------------------------------------------------------
// Cilium

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CiliumDoc {
    #[serde(rename = "apiVersion")]
    pub _api_version: String,
    #[serde(rename = "kind")]
    pub _kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Option<CiliumRule>,
    #[serde(default)]
    pub specs: Option<Vec<CiliumRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CiliumRule {
    #[serde(rename = "endpointSelector")]
    endpoint_selector: Option<LabelSelector>,
    #[serde(default)]
    ingress: Option<Vec<CiliumPeerRule>>,
    #[serde(default, rename = "ingressDeny")]
    ingress_deny: Option<Vec<CiliumPeerRule>>,
    #[serde(default)]
    egress: Option<Vec<CiliumPeerRule>>,
    #[serde(default, rename = "egressDeny")]
    egress_deny: Option<Vec<CiliumPeerRule>>,
    #[serde(default, rename = "enableDefaultDeny")]
    enable_default_deny: Option<DefaultDeny>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: Option<Vec<RuleLabel>>,
}

/// Cilium rule labels (`{key, value, source}`): accepted, not used for matching.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RuleLabel {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultDeny {
    #[serde(default)]
    ingress: Option<bool>,
    #[serde(default)]
    egress: Option<bool>,
}

/// One ingress or egress entry; `from*` and `to*` peers share it (the direction picks which
/// names are legal).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CiliumPeerRule {
    #[serde(default, rename = "fromEndpoints")]
    from_endpoints: Option<Vec<LabelSelector>>,
    #[serde(default, rename = "toEndpoints")]
    to_endpoints: Option<Vec<LabelSelector>>,
    #[serde(default, rename = "fromCIDR")]
    from_cidr: Option<Vec<String>>,
    #[serde(default, rename = "toCIDR")]
    to_cidr: Option<Vec<String>>,
    #[serde(default, rename = "fromCIDRSet")]
    from_cidr_set: Option<Vec<CidrSet>>,
    #[serde(default, rename = "toCIDRSet")]
    to_cidr_set: Option<Vec<CidrSet>>,
    #[serde(default, rename = "fromEntities")]
    from_entities: Option<Vec<String>>,
    #[serde(default, rename = "toEntities")]
    to_entities: Option<Vec<String>>,
    #[serde(default, rename = "toFQDNs")]
    to_fqdns: Option<Vec<FqdnSpec>>,
    #[serde(default, rename = "toPorts")]
    to_ports: Option<Vec<PortRuleSpec>>,
}

/// A `toFQDNs` entry, or a `rules.dns` entry of `toPorts`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FqdnSpec {
    #[serde(default, rename = "matchName")]
    match_name: Option<String>,
    #[serde(default, rename = "matchPattern")]
    match_pattern: Option<String>,
}

/// `toPorts[].rules`: only DNS rules. Webb sees DNS without a proxy, so it checks them but
/// cannot refuse a query they do not allow (the answer's addresses still need `toFQDNs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct L7RulesSpec {
    #[serde(default)]
    dns: Option<Vec<FqdnSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CidrSet {
    cidr: String,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortRuleSpec {
    #[serde(default)]
    ports: Vec<PortSpec>,
    #[serde(default)]
    rules: Option<L7RulesSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSpec {
    #[serde(default)]
    port: Option<IntOrString>,
    #[serde(default, rename = "endPort")]
    end_port: Option<i64>,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Str(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LabelSelector {
    #[serde(default, rename = "matchLabels")]
    match_labels: BTreeMap<String, String>,
    #[serde(default, rename = "matchExpressions")]
    match_expressions: Vec<MatchExpression>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchExpression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

/// A Kubernetes `LabelSelector` as the shared selector type (`flow_filter::selector`): one
/// concept, one implementation.
fn label_selector(s: &LabelSelector, field: &str) -> Result<Selector, FieldError> {
    let mut reqs = Vec::new();
    for (k, v) in &s.match_labels {
        let text = format!("{k}={v}");
        let sel =
            selector::parse(&text).or_else(|e| ferr(format!("{field}.matchLabels.{k}"), e.0))?;
        if sel.requirements.len() != 1 {
            return ferr(
                format!("{field}.matchLabels.{k}"),
                format!("{text:?} is not one label"),
            );
        }
        reqs.extend(sel.requirements);
    }
    for (i, e) in s.match_expressions.iter().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        let text = match e.operator.as_str() {
            "In" | "NotIn" => {
                if e.values.is_empty() {
                    return ferr(
                        format!("{f}.values"),
                        format!("operator {} needs at least one value", e.operator),
                    );
                }
                let op = if e.operator == "In" { "in" } else { "notin" };
                format!("{} {op} ({})", e.key, e.values.join(","))
            }
            "Exists" | "DoesNotExist" => {
                if !e.values.is_empty() {
                    return ferr(
                        format!("{f}.values"),
                        format!("operator {} takes no values", e.operator),
                    );
                }
                if e.operator == "Exists" {
                    e.key.clone()
                } else {
                    format!("!{}", e.key)
                }
            }
            other => {
                return ferr(
                    format!("{f}.operator"),
                    format!("unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"),
                );
            }
        };
        if e.key.contains([',', '(', ')', ' '])
            || e.values.iter().any(|v| v.contains([',', '(', ')', ' ']))
        {
            return ferr(f, "keys and values cannot contain ',', '(', ')' or spaces");
        }
        let sel = selector::parse(&text).or_else(|err| ferr(f.clone(), err.0))?;
        reqs.extend(sel.requirements);
    }
    Ok(Selector { requirements: reqs })
}

fn mentions_namespace(sel: &Selector) -> bool {
    sel.requirements.iter().any(|r| r.key == NAMESPACE_LABEL)
}

fn mentions_reserved(sel: &Selector) -> bool {
    sel.requirements
        .iter()
        .any(|r| r.source.as_deref() == Some("reserved"))
}

fn parse_cidr(s: &str, field: &str) -> Result<IpNet, FieldError> {
    let net: IpNet = match s.parse() {
        Ok(n) => n,
        Err(_) => match s.parse::<std::net::IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return ferr(field, format!("{s:?} is not a CIDR (like 198.18.0.0/16)")),
        },
    };
    if net.trunc() != net {
        return ferr(
            field,
            format!("{s:?} has host bits set (did you mean {}?)", net.trunc()),
        );
    }
    Ok(net)
}

fn fqdn_selector(f: &FqdnSpec, field: &str) -> Result<FqdnSelector, FieldError> {
    match (&f.match_name, &f.match_pattern) {
        (Some(n), None) => FqdnSelector::name(n).or_else(|e| ferr(format!("{field}.matchName"), e)),
        (None, Some(p)) => {
            FqdnSelector::pattern(p).or_else(|e| ferr(format!("{field}.matchPattern"), e))
        }
        _ => ferr(field, "give exactly one of matchName and matchPattern"),
    }
}

fn parse_entity(s: &str, field: &str) -> Result<Entity, FieldError> {
    Ok(match s {
        "world" => Entity::World,
        "cluster" => Entity::Cluster,
        "host" => Entity::Host,
        "remote-node" => Entity::RemoteNode,
        "all" => Entity::All,
        "health" => Entity::Reserved(4),
        "init" => Entity::Reserved(5),
        "unmanaged" => Entity::Reserved(3),
        "kube-apiserver" => Entity::Reserved(7),
        "ingress" => Entity::Reserved(8),
        other => {
            return ferr(
                field,
                format!(
                    "unknown entity {other:?} (world, cluster, host, remote-node, all, health, \
                     init, unmanaged, kube-apiserver, ingress)"
                ),
            );
        }
    })
}

fn parse_proto(
    p: Option<&str>,
    default: Proto,
    field: &str,
    allow_any: bool,
) -> Result<Proto, FieldError> {
    Ok(match p {
        None => default,
        Some("TCP") => Proto::Tcp,
        Some("UDP") => Proto::Udp,
        Some("SCTP") => Proto::Sctp,
        Some("ANY") if allow_any => Proto::Any,
        Some(other) => {
            let list = if allow_any {
                "TCP, UDP, SCTP, ANY"
            } else {
                "TCP, UDP, SCTP"
            };
            return ferr(field, format!("unknown protocol {other:?} ({list})"));
        }
    })
}

fn parse_port(
    port: Option<&IntOrString>,
    end_port: Option<i64>,
    field: &str,
) -> Result<(u16, u16), FieldError> {
    let lo: i64 = match port {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::Str(s)) => match s.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                return ferr(
                    format!("{field}.port"),
                    format!("named port {s:?} is not supported (give the number)"),
                );
            }
        },
    };
    if !(0..=65535).contains(&lo) {
        return ferr(
            format!("{field}.port"),
            format!("port {lo} out of range 0..65535"),
        );
    }
    match end_port {
        None => Ok((lo as u16, lo as u16)),
        Some(hi) => {
            if lo == 0 {
                return ferr(
                    format!("{field}.endPort"),
                    "endPort needs a port to start from",
                );
            }
            if !(1..=65535).contains(&hi) {
                return ferr(
                    format!("{field}.endPort"),
                    format!("endPort {hi} out of range 1..65535"),
                );
            }
            if hi < lo {
                return ferr(
                    format!("{field}.endPort"),
                    format!("endPort {hi} is below port {lo}"),
                );
            }
            Ok((lo as u16, hi as u16))
        }
    }
}

impl CiliumDoc {
    /// The rules of a CiliumNetworkPolicy (`namespace` given) or a
    /// CiliumClusterwideNetworkPolicy (`None`).
    pub(super) fn rules(self, namespace: Option<&str>) -> Result<Vec<Rule>, FieldError> {
        let mut out = Vec::new();
        match (self.spec, self.specs) {
            (None, None) => return ferr("spec", "a policy needs spec or specs"),
            (spec, specs) => {
                if let Some(s) = spec {
                    out.push(cilium_rule(s, "spec", namespace)?);
                }
                for (i, s) in specs.into_iter().flatten().enumerate() {
                    out.push(cilium_rule(s, &format!("specs[{i}]"), namespace)?);
                }
            }
        }
        Ok(out)
    }
}

fn cilium_rule(r: CiliumRule, field: &str, namespace: Option<&str>) -> Result<Rule, FieldError> {
    let Some(es) = &r.endpoint_selector else {
        return ferr(
            format!("{field}.endpointSelector"),
            "endpointSelector is required (nodeSelector is not supported)",
        );
    };
    let pods = label_selector(es, &format!("{field}.endpointSelector"))?;
    let subject = Subject {
        pods,
        namespace: namespace.map(str::to_owned),
    };
    let mut sections = Vec::new();
    let dd = r.enable_default_deny.as_ref();
    let mut enforce = [false, false];
    for (list, dir, deny, name) in [
        (&r.ingress, Dir::Ingress, false, "ingress"),
        (&r.ingress_deny, Dir::Ingress, true, "ingressDeny"),
        (&r.egress, Dir::Egress, false, "egress"),
        (&r.egress_deny, Dir::Egress, true, "egressDeny"),
    ] {
        let Some(list) = list else { continue };
        for (i, pr) in list.iter().enumerate() {
            let f = format!("{field}.{name}[{i}]");
            sections.push(cilium_section(pr, dir, deny, &f, namespace)?);
        }
        if !list.is_empty() {
            enforce[dir as usize] = true;
        }
    }
    if let Some(dd) = dd {
        if let Some(v) = dd.ingress {
            enforce[Dir::Ingress as usize] = v;
        }
        if let Some(v) = dd.egress {
            enforce[Dir::Egress as usize] = v;
        }
    }
    Ok(Rule {
        subject,
        enforce,
        sections,
    })
}

fn endpoint_sel(sel: Selector, namespace: Option<&str>) -> EndpointSel {
    // Cilium: a namespaced policy's peer selector without a namespace means its own namespace;
    // selectors of reserved labels (`reserved:host`) and clusterwide policies are not scoped.
    let ns = match namespace {
        Some(ns) if !mentions_namespace(&sel) && !mentions_reserved(&sel) => {
            NsSel::Is(ns.to_owned())
        }
        _ => NsSel::Any,
    };
    EndpointSel {
        reserved: mentions_reserved(&sel),
        pods: sel,
        namespace: ns,
    }
}

fn cilium_section(
    r: &CiliumPeerRule,
    dir: Dir,
    deny: bool,
    field: &str,
    namespace: Option<&str>,
) -> Result<Section, FieldError> {
    let (ing, eg) = (dir == Dir::Ingress, dir == Dir::Egress);
    // Names that belong to the other direction are errors, not silently ignored.
    for (present, name, ok) in [
        (r.from_endpoints.is_some(), "fromEndpoints", ing),
        (r.from_cidr.is_some(), "fromCIDR", ing),
        (r.from_cidr_set.is_some(), "fromCIDRSet", ing),
        (r.from_entities.is_some(), "fromEntities", ing),
        (r.to_endpoints.is_some(), "toEndpoints", eg),
        (r.to_cidr.is_some(), "toCIDR", eg),
        (r.to_cidr_set.is_some(), "toCIDRSet", eg),
        (r.to_entities.is_some(), "toEntities", eg),
        (r.to_fqdns.is_some(), "toFQDNs", eg),
    ] {
        if present && !ok {
            let which = if ing { "an ingress" } else { "an egress" };
            return ferr(
                format!("{field}.{name}"),
                format!("{name} is not valid in {which} rule"),
            );
        }
    }
    let (eps, cidrs, sets, ents, p) = if ing {
        (
            "fromEndpoints",
            "fromCIDR",
            "fromCIDRSet",
            "fromEntities",
            (
                &r.from_endpoints,
                &r.from_cidr,
                &r.from_cidr_set,
                &r.from_entities,
            ),
        )
    } else {
        (
            "toEndpoints",
            "toCIDR",
            "toCIDRSet",
            "toEntities",
            (&r.to_endpoints, &r.to_cidr, &r.to_cidr_set, &r.to_entities),
        )
    };
    let mut peers = Vec::new();
    let mut any_l3 = false;
    if let Some(list) = p.0 {
        any_l3 = true;
        for (i, s) in list.iter().enumerate() {
            let sel = label_selector(s, &format!("{field}.{eps}[{i}]"))?;
            peers.push(Peer::Endpoints(endpoint_sel(sel, namespace)));
        }
    }
    if let Some(list) = p.1 {
        any_l3 = true;
        for (i, c) in list.iter().enumerate() {
            let net = parse_cidr(c, &format!("{field}.{cidrs}[{i}]"))?;
            peers.push(Peer::Cidr {
                net,
                except: vec![],
            });
        }
    }
    if let Some(list) = p.2 {
        any_l3 = true;
        for (i, s) in list.iter().enumerate() {
            let f = format!("{field}.{sets}[{i}]");
            let net = parse_cidr(&s.cidr, &format!("{f}.cidr"))?;
            let mut except = Vec::new();
            for (j, e) in s.except.iter().enumerate() {
                let ef = format!("{f}.except[{j}]");
                let x = parse_cidr(e, &ef)?;
                if !net.contains(&x) {
                    return ferr(ef, format!("{x} is not inside {net}"));
                }
                except.push(x);
            }
            peers.push(Peer::Cidr { net, except });
        }
    }
    if let Some(list) = p.3 {
        any_l3 = true;
        for (i, e) in list.iter().enumerate() {
            peers.push(Peer::Entity(parse_entity(
                e,
                &format!("{field}.{ents}[{i}]"),
            )?));
        }
    }
    if let Some(list) = &r.to_fqdns {
        if deny {
            return ferr(
                format!("{field}.toFQDNs"),
                "toFQDNs is not valid in a deny rule (as in Cilium)",
            );
        }
        any_l3 = true;
        for (i, f) in list.iter().enumerate() {
            peers.push(Peer::Fqdn(fqdn_selector(
                f,
                &format!("{field}.toFQDNs[{i}]"),
            )?));
        }
    }
    let mut ports = Vec::new();
    if let Some(tp) = &r.to_ports {
        for (i, pr) in tp.iter().enumerate() {
            if let Some(rules) = &pr.rules {
                let f = format!("{field}.toPorts[{i}].rules");
                if deny {
                    return ferr(f, "L7 rules are not valid in a deny rule");
                }
                for (j, d) in rules.dns.iter().flatten().enumerate() {
                    fqdn_selector(d, &format!("{f}.dns[{j}]"))?;
                }
            }
            for (j, ps) in pr.ports.iter().enumerate() {
                let f = format!("{field}.toPorts[{i}].ports[{j}]");
                let proto = parse_proto(
                    ps.protocol.as_deref(),
                    Proto::Any,
                    &format!("{f}.protocol"),
                    true,
                )?;
                let (lo, hi) = parse_port(ps.port.as_ref(), ps.end_port, &f)?;
                ports.push(PortRule { proto, lo, hi });
            }
        }
    }
    // No L3 peer: with ports it is an L4-only rule (any peer); without, it allows nothing
    // (Cilium's `ingress: [{}]`, the usual way to say "default deny").
    let peers = if any_l3 {
        Peers::Set(peers)
    } else if !ports.is_empty() {
        Peers::Any
    } else {
        Peers::Set(vec![])
    };
    Ok(Section {
        dir,
        deny,
        peers,
        ports,
    })
}

// ----------------------------------------------------------------------------------------------
// Kubernetes NetworkPolicy

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkPolicyDoc {
    #[serde(rename = "apiVersion")]
    pub _api_version: String,
    #[serde(rename = "kind")]
    pub _kind: String,
    pub metadata: Metadata,
    pub spec: NpSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NpSpec {
    #[serde(rename = "podSelector")]
    pod_selector: LabelSelector,
    #[serde(default, rename = "policyTypes")]
    policy_types: Option<Vec<String>>,
    #[serde(default)]
    ingress: Option<Vec<NpIngress>>,
    #[serde(default)]
    egress: Option<Vec<NpEgress>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NpIngress {
    #[serde(default)]
    from: Option<Vec<NpPeer>>,
    #[serde(default)]
    ports: Option<Vec<NpPort>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NpEgress {
    #[serde(default)]
    to: Option<Vec<NpPeer>>,
    #[serde(default)]
    ports: Option<Vec<NpPort>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NpPeer {
    #[serde(default, rename = "podSelector")]
    pod_selector: Option<LabelSelector>,
    #[serde(default, rename = "namespaceSelector")]
    namespace_selector: Option<LabelSelector>,
    #[serde(default, rename = "ipBlock")]
    ip_block: Option<CidrSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NpPort {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    port: Option<IntOrString>,
    #[serde(default, rename = "endPort")]
    end_port: Option<i64>,
}

impl NetworkPolicyDoc {
    pub(super) fn rules(self, namespace: &str) -> Result<Vec<Rule>, FieldError> {
        let s = self.spec;
        let pods = label_selector(&s.pod_selector, "spec.podSelector")?;
        let mut enforce = [true, s.egress.is_some()];
        if let Some(types) = &s.policy_types {
            enforce = [false, false];
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => enforce[0] = true,
                    "Egress" => enforce[1] = true,
                    other => {
                        return ferr(
                            format!("spec.policyTypes[{i}]"),
                            format!("unknown policy type {other:?} (Ingress, Egress)"),
                        );
                    }
                }
            }
        }
        let mut sections = Vec::new();
        if enforce[0] {
            for (i, r) in s.ingress.iter().flatten().enumerate() {
                let f = format!("spec.ingress[{i}]");
                sections.push(np_section(
                    r.from.as_deref(),
                    r.ports.as_deref(),
                    Dir::Ingress,
                    &f,
                    "from",
                    namespace,
                )?);
            }
        }
        if enforce[1] {
            for (i, r) in s.egress.iter().flatten().enumerate() {
                let f = format!("spec.egress[{i}]");
                sections.push(np_section(
                    r.to.as_deref(),
                    r.ports.as_deref(),
                    Dir::Egress,
                    &f,
                    "to",
                    namespace,
                )?);
            }
        }
        Ok(vec![Rule {
            subject: Subject {
                pods,
                namespace: Some(namespace.to_owned()),
            },
            enforce,
            sections,
        }])
    }
}

fn np_section(
    peers: Option<&[NpPeer]>,
    ports: Option<&[NpPort]>,
    dir: Dir,
    field: &str,
    peers_name: &str,
    namespace: &str,
) -> Result<Section, FieldError> {
    // Kubernetes: a missing or empty `from`/`to` means every peer; missing `ports` every port.
    let peers = match peers {
        None | Some([]) => Peers::Any,
        Some(list) => {
            let mut out = Vec::new();
            for (i, p) in list.iter().enumerate() {
                let f = format!("{field}.{peers_name}[{i}]");
                out.push(np_peer(p, &f, namespace)?);
            }
            Peers::Set(out)
        }
    };
    let mut rules = Vec::new();
    for (i, p) in ports.unwrap_or_default().iter().enumerate() {
        let f = format!("{field}.ports[{i}]");
        let proto = parse_proto(
            p.protocol.as_deref(),
            Proto::Tcp,
            &format!("{f}.protocol"),
            false,
        )?;
        let (lo, hi) = parse_port(p.port.as_ref(), p.end_port, &f)?;
        rules.push(PortRule { proto, lo, hi });
    }
    Ok(Section {
        dir,
        deny: false,
        peers,
        ports: rules,
    })
}

fn np_peer(p: &NpPeer, field: &str, namespace: &str) -> Result<Peer, FieldError> {
    if let Some(b) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            return ferr(
                format!("{field}.ipBlock"),
                "ipBlock cannot be combined with podSelector or namespaceSelector",
            );
        }
        let net = parse_cidr(&b.cidr, &format!("{field}.ipBlock.cidr"))?;
        let mut except = Vec::new();
        for (j, e) in b.except.iter().enumerate() {
            let ef = format!("{field}.ipBlock.except[{j}]");
            let x = parse_cidr(e, &ef)?;
            if !net.contains(&x) {
                return ferr(ef, format!("{x} is not inside {net}"));
            }
            except.push(x);
        }
        return Ok(Peer::Cidr { net, except });
    }
    let pods = match &p.pod_selector {
        Some(s) => label_selector(s, &format!("{field}.podSelector"))?,
        None => Selector {
            requirements: vec![],
        },
    };
    let ns = match &p.namespace_selector {
        Some(s) => NsSel::Labels(label_selector(s, &format!("{field}.namespaceSelector"))?),
        None if p.pod_selector.is_some() => NsSel::Is(namespace.to_owned()),
        None => {
            return ferr(
                field.to_string(),
                "a peer needs podSelector, namespaceSelector or ipBlock",
            );
        }
    };
    Ok(Peer::Endpoints(EndpointSel {
        pods,
        namespace: ns,
        reserved: false,
    }))
}

/// Whether `kind` and `apiVersion` name a document Webb reads.
pub(super) fn kind_of(head: &Head) -> Result<Kind, FieldError> {
    let kind = head.kind.as_deref().unwrap_or_default();
    let api = head.api_version.as_deref().unwrap_or_default();
    let (k, want) = match kind {
        "CiliumNetworkPolicy" => (Kind::CiliumNetworkPolicy, "cilium.io/v2"),
        "CiliumClusterwideNetworkPolicy" => (Kind::CiliumClusterwideNetworkPolicy, "cilium.io/v2"),
        "NetworkPolicy" => (Kind::NetworkPolicy, "networking.k8s.io/v1"),
        "" => return ferr("kind", "missing kind"),
        other => {
            return ferr(
                "kind",
                format!(
                    "unknown kind {other:?} (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, \
                     NetworkPolicy)"
                ),
            );
        }
    };
    if api != want {
        return ferr(
            "apiVersion",
            format!("{kind} needs apiVersion {want}, not {api:?}"),
        );
    }
    Ok(k)
}
