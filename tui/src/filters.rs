//! Filter flags → allow/deny `FlowFilter`s, with the rules of `hubble observe`.
//!
//! The rules (restated from Hubble's CLI):
//! - Every positive flag goes into one *allowlist* tracker, every flag preceded by `--not`
//!   into one *denylist* tracker. `--not` applies to the next filter flag only; two `--not`
//!   in a row, or a `--not` at the end, are errors.
//! - A tracker holds two filters, *left* and *right*; the result is `left OR right`.
//!   Directional flags (`--from-pod`, `--to-ip`, `--verdict`, ...) go into both. Flags that
//!   name either end (`--pod`, `--ip`, `--label`, `--port`, `--workload`, `--service`,
//!   `--identity`, `--fqdn`, `--cluster`) put the source form into *left* and the
//!   destination form into *right*. When both end up equal only one filter is sent.
//! - `--namespace` (and `--from-namespace`, `--to-namespace`, `-A` ...) do not make a field of
//!   their own: when the filters are materialised they prefix the pod/service selectors with
//!   `ns/` (an empty selector becomes `ns/`), source side on *left*, destination side on
//!   *right*.
//! - Within one filter the same flag given twice ORs its values; different flags AND.
//! - Some flags exclude each other (`--pod` with `--from-ip`, `--port` with `--to-port`, ...),
//!   checked per tracker as Hubble does.

use thiserror::Error;
use webb_proto::flow::{
    DropReason, EventTypeFilter, FlowFilter, HttpHeader, IpVersion, NetworkInterface, TcpFlags,
    TrafficDirection, Verdict, Workload, flow_filter::Experimental,
};

/// A filter flag that could not be turned into a filter. The message names the flag and value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterFlagError {
    #[error("consecutive --not statements")]
    ConsecutiveNot,
    #[error("trailing --not found in the arguments")]
    TrailingNot,
    #[error("filters --{0} and --{1} cannot be combined")]
    Conflict(&'static str, &'static str),
    #[error("namespace conflict: {0:?} does not contain {1:?}")]
    NamespaceConflict(String, String),
    #[error("namespace of service {0:?} conflict with pod {1:?}")]
    ServiceNamespace(String, String),
    #[error("invalid --{flag} value {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("unknown filter flag --{0}")]
    UnknownFlag(String),
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> FilterFlagError {
    FilterFlagError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Every filter flag `webb observe` accepts, by long name (without `--`), in the order the
/// help lists them. `not` toggles the next one into the denylist.
pub const FILTER_FLAGS: &[&str] = &[
    "not",
    "uuid",
    "node-name",
    "node-label",
    "from-cluster",
    "cluster",
    "to-cluster",
    "protocol",
    "tcp-flags",
    "type",
    "verdict",
    "drop-reason-desc",
    "http-status",
    "http-method",
    "http-path",
    "http-url",
    "http-header",
    "trace-id",
    "ip-trace-id",
    "from-fqdn",
    "fqdn",
    "to-fqdn",
    "from-ip",
    "snat-ip",
    "ip",
    "to-ip",
    "ipv4",
    "ipv6",
    "ip-version",
    "from-pod",
    "pod",
    "to-pod",
    "from-namespace",
    "namespace",
    "to-namespace",
    "from-all-namespaces",
    "all-namespaces",
    "to-all-namespaces",
    "from-label",
    "label",
    "to-label",
    "from-service",
    "service",
    "to-service",
    "from-port",
    "port",
    "to-port",
    "from-workload",
    "workload",
    "to-workload",
    "from-identity",
    "identity",
    "to-identity",
    "traffic-direction",
    "cel-expression",
    "interface",
    "encrypted",
    "unencrypted",
];

/// Groups of flags of which at most one may be used per list (Hubble's conflict table).
const CONFLICTS: &[&[&str]] = &[
    &[
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
        "from-all-namespaces",
        "all-namespaces",
    ],
    &["from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"],
    &[
        "to-fqdn",
        "to-ip",
        "ip",
        "fqdn",
        "to-namespace",
        "namespace",
        "to-all-namespaces",
        "all-namespaces",
    ],
    &["to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"],
    &["to-pod", "namespace", "all-namespaces"],
    &["from-pod", "namespace", "all-namespaces"],
    &["to-service", "namespace", "all-namespaces"],
    &["from-service", "namespace", "all-namespaces"],
    &["label", "from-label"],
    &["label", "to-label"],
    &["service", "from-service"],
    &["service", "to-service"],
    &["port", "to-port"],
    &["port", "from-port"],
    &["identity", "to-identity"],
    &["identity", "from-identity"],
    &["workload", "to-workload"],
    &["workload", "from-workload"],
    &["encrypted", "unencrypted"],
];

/// Event type names accepted by `--type` (Cilium monitor message types).
pub const EVENT_TYPES: &[(&str, i32)] = &[
    ("drop", 1),
    ("debug", 2),
    ("capture", 3),
    ("trace", 4),
    ("policy-verdict", 5),
    ("recorder", 6),
    ("trace-sock", 7),
    ("l7", 129),
    ("agent", 130),
];

/// Trace observation point names, by datapath sub-type (`--type trace:<name>`).
pub const TRACE_POINTS: &[&str] = &[
    "to-endpoint",
    "to-proxy",
    "to-host",
    "to-stack",
    "to-overlay",
    "from-endpoint",
    "from-proxy",
    "from-host",
    "from-stack",
    "from-overlay",
    "from-network",
    "to-network",
    "from-crypto",
    "to-crypto",
];

const AGENT_SUBTYPES: &[(&str, i32)] = &[
    ("unspecified", 0),
    ("message", 1),
    ("agent-started", 2),
    ("endpoint-regenerate-success", 3),
    ("endpoint-regenerate-failure", 4),
    ("policy-updated", 5),
    ("policy-deleted", 6),
    ("endpoint-created", 7),
    ("endpoint-deleted", 8),
    ("ipcache-upserted", 9),
    ("ipcache-deleted", 10),
];

/// Cilium's reserved security identities, by number (0 prints as "unknown").
pub const RESERVED_IDENTITIES: &[(u32, &str)] = &[
    (0, "unknown"),
    (1, "host"),
    (2, "world"),
    (3, "unmanaged"),
    (4, "health"),
    (5, "init"),
    (6, "remote-node"),
    (7, "kube-apiserver"),
    (8, "ingress"),
    (9, "world-ipv4"),
    (10, "world-ipv6"),
];

/// The name of a reserved identity, if `id` is one.
pub fn reserved_identity_name(id: u32) -> Option<&'static str> {
    RESERVED_IDENTITIES
        .iter()
        .find(|(n, _)| *n == id)
        .map(|(_, name)| *name)
}

#[derive(Debug, Default)]
struct Tracker {
    left: Option<FlowFilter>,
    right: Option<FlowFilter>,
    ns: Vec<String>,
    src_ns: Vec<String>,
    dst_ns: Vec<String>,
    changed: Vec<&'static str>,
}

impl Tracker {
    fn both(&mut self, update: impl Fn(&mut FlowFilter)) {
        update(self.left.get_or_insert_with(FlowFilter::default));
        update(self.right.get_or_insert_with(FlowFilter::default));
    }

    fn split(&mut self, left: impl FnOnce(&mut FlowFilter), right: impl FnOnce(&mut FlowFilter)) {
        left(self.left.get_or_insert_with(FlowFilter::default));
        right(self.right.get_or_insert_with(FlowFilter::default));
    }

    fn check_conflicts(&self) -> Result<(), FilterFlagError> {
        for group in CONFLICTS {
            for flag in group.iter() {
                if !self.changed.contains(flag) {
                    continue;
                }
                if let Some(other) = group
                    .iter()
                    .find(|other| *other != flag && self.changed.contains(*other))
                {
                    return Err(FilterFlagError::Conflict(flag, other));
                }
            }
        }
        Ok(())
    }

    fn check_namespaces(&self, ff: Option<&FlowFilter>) -> Result<(), FilterFlagError> {
        let Some(ff) = ff else { return Ok(()) };
        ns_conflicts(&self.ns, &ff.source_pod)?;
        ns_conflicts(&self.ns, &ff.source_service)?;
        ns_conflicts(&self.ns, &ff.destination_pod)?;
        ns_conflicts(&self.ns, &ff.destination_service)?;
        ns_conflicts(&self.src_ns, &ff.source_pod)?;
        ns_conflicts(&self.src_ns, &ff.source_service)?;
        ns_conflicts(&self.dst_ns, &ff.destination_pod)?;
        ns_conflicts(&self.dst_ns, &ff.destination_service)?;
        service_namespaces(&ff.source_pod, &ff.source_service)?;
        service_namespaces(&ff.destination_pod, &ff.destination_service)
    }

    fn materialise(mut self) -> Vec<FlowFilter> {
        if self.left.is_none()
            && self.right.is_none()
            && self.ns.is_empty()
            && self.src_ns.is_empty()
            && self.dst_ns.is_empty()
        {
            return Vec::new();
        }
        let mut left = self.left.take().unwrap_or_default();
        let mut right = self.right.take().unwrap_or_default();
        if !self.dst_ns.is_empty() {
            apply_dst_ns(&self.dst_ns, &mut left);
            apply_dst_ns(&self.dst_ns, &mut right);
        }
        if !self.src_ns.is_empty() {
            apply_src_ns(&self.src_ns, &mut left);
            apply_src_ns(&self.src_ns, &mut right);
        }
        if !self.ns.is_empty() {
            apply_src_ns(&self.ns, &mut left);
            apply_dst_ns(&self.ns, &mut right);
        }
        if left == right {
            vec![left]
        } else {
            vec![left, right]
        }
    }
}

fn namespace_of(name: &str) -> Option<&str> {
    name.split_once('/')
        .map(|(ns, _)| ns)
        .filter(|ns| !ns.is_empty())
}

fn ns_conflicts(namespaces: &[String], names: &[String]) -> Result<(), FilterFlagError> {
    for ns in namespaces {
        for name in names {
            if let Some(nn) = namespace_of(name)
                && nn != ns
            {
                return Err(FilterFlagError::NamespaceConflict(ns.clone(), name.clone()));
            }
        }
    }
    Ok(())
}

fn service_namespaces(pods: &[String], services: &[String]) -> Result<(), FilterFlagError> {
    for pod in pods {
        let Some(pod_ns) = namespace_of(pod) else {
            continue;
        };
        for svc in services {
            if namespace_of(svc).unwrap_or("") != pod_ns {
                return Err(FilterFlagError::ServiceNamespace(
                    svc.clone(),
                    pod_ns.to_string(),
                ));
            }
        }
    }
    Ok(())
}

fn add_namespaces(selectors: &[String], namespaces: &[String]) -> Vec<String> {
    if namespaces.is_empty() || selectors.is_empty() {
        return selectors.to_vec();
    }
    let mut out = Vec::new();
    for sel in selectors {
        if sel.contains('/') {
            out.push(sel.clone());
            continue;
        }
        for ns in namespaces {
            out.push(format!("{ns}/{sel}"));
        }
    }
    out
}

fn apply_src_ns(namespaces: &[String], ff: &mut FlowFilter) {
    if ff.source_pod.is_empty() && ff.source_service.is_empty() {
        ff.source_pod = vec![String::new()];
    }
    ff.source_pod = add_namespaces(&ff.source_pod, namespaces);
    ff.source_service = add_namespaces(&ff.source_service, namespaces);
}

fn apply_dst_ns(namespaces: &[String], ff: &mut FlowFilter) {
    if ff.destination_pod.is_empty() && ff.destination_service.is_empty() {
        ff.destination_pod = vec![String::new()];
    }
    ff.destination_pod = add_namespaces(&ff.destination_pod, namespaces);
    ff.destination_service = add_namespaces(&ff.destination_service, namespaces);
}

/// The allow- and denylist built from filter flags, ready for `GetFlowsRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterLists {
    pub allow: Vec<FlowFilter>,
    pub deny: Vec<FlowFilter>,
}

/// Replays filter flags in command-line order and builds the allow/deny lists.
#[derive(Debug, Default)]
pub struct FilterBuilder {
    allow: Option<Tracker>,
    deny: Option<Tracker>,
    negate_next: bool,
}

impl FilterBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one flag (long name without `--`) with its value. Flags without a value
    /// (`not`, `ipv4`, `all-namespaces`, `encrypted`, ...) ignore `value`.
    pub fn set(&mut self, flag: &str, value: &str) -> Result<(), FilterFlagError> {
        let Some(flag) = FILTER_FLAGS.iter().copied().find(|f| *f == flag) else {
            return Err(FilterFlagError::UnknownFlag(flag.to_string()));
        };
        if flag == "not" {
            if self.negate_next {
                return Err(FilterFlagError::ConsecutiveNot);
            }
            self.negate_next = true;
            return Ok(());
        }
        let tracker = if std::mem::take(&mut self.negate_next) {
            self.deny.get_or_insert_with(Tracker::default)
        } else {
            self.allow.get_or_insert_with(Tracker::default)
        };
        if !tracker.changed.contains(&flag) {
            tracker.changed.push(flag);
        }
        tracker.check_conflicts()?;
        apply(tracker, flag, value)?;
        tracker.check_namespaces(tracker.left.as_ref())?;
        tracker.check_namespaces(tracker.right.as_ref())
    }

    /// The lists, or an error for a dangling `--not`.
    pub fn finish(self) -> Result<FilterLists, FilterFlagError> {
        if self.negate_next {
            return Err(FilterFlagError::TrailingNot);
        }
        Ok(FilterLists {
            allow: self.allow.map(Tracker::materialise).unwrap_or_default(),
            deny: self.deny.map(Tracker::materialise).unwrap_or_default(),
        })
    }
}

fn apply(t: &mut Tracker, flag: &'static str, val: &str) -> Result<(), FilterFlagError> {
    let v = val.to_string();
    match flag {
        "uuid" => t.both(|f| f.uuid.push(v.clone())),
        "fqdn" => t.split(
            |f| f.source_fqdn.push(v.clone()),
            |f| f.destination_fqdn.push(v.clone()),
        ),
        "from-fqdn" => t.both(|f| f.source_fqdn.push(v.clone())),
        "to-fqdn" => t.both(|f| f.destination_fqdn.push(v.clone())),
        "pod" => t.split(
            |f| f.source_pod.push(v.clone()),
            |f| f.destination_pod.push(v.clone()),
        ),
        "from-pod" => t.both(|f| f.source_pod.push(v.clone())),
        "to-pod" => t.both(|f| f.destination_pod.push(v.clone())),
        "ip" => t.split(
            |f| f.source_ip.push(v.clone()),
            |f| f.destination_ip.push(v.clone()),
        ),
        "from-ip" => t.both(|f| f.source_ip.push(v.clone())),
        "to-ip" => t.both(|f| f.destination_ip.push(v.clone())),
        "snat-ip" => t.both(|f| f.source_ip_xlated.push(v.clone())),
        "ipv4" => t.both(|f| f.ip_version.push(IpVersion::IPv4 as i32)),
        "ipv6" => t.both(|f| f.ip_version.push(IpVersion::IPv6 as i32)),
        "ip-version" => {
            let version = match val.to_ascii_lowercase().as_str() {
                "4" | "v4" | "ipv4" | "ip4" => IpVersion::IPv4,
                "6" | "v6" | "ipv6" | "ip6" => IpVersion::IPv6,
                _ => IpVersion::IpNotUsed,
            };
            t.both(|f| f.ip_version.push(version as i32))
        }
        "label" => t.split(
            |f| f.source_label.push(v.clone()),
            |f| f.destination_label.push(v.clone()),
        ),
        "from-label" => t.both(|f| f.source_label.push(v.clone())),
        "to-label" => t.both(|f| f.destination_label.push(v.clone())),
        "namespace" => t.ns.push(v),
        "from-namespace" => t.src_ns.push(v),
        "to-namespace" => t.dst_ns.push(v),
        "all-namespaces" => t.ns.push(String::new()),
        "from-all-namespaces" => t.src_ns.push(String::new()),
        "to-all-namespaces" => t.dst_ns.push(String::new()),
        "service" => t.split(
            |f| f.source_service.push(v.clone()),
            |f| f.destination_service.push(v.clone()),
        ),
        "from-service" => t.both(|f| f.source_service.push(v.clone())),
        "to-service" => t.both(|f| f.destination_service.push(v.clone())),
        "port" => t.split(
            |f| f.source_port.push(v.clone()),
            |f| f.destination_port.push(v.clone()),
        ),
        "from-port" => t.both(|f| f.source_port.push(v.clone())),
        "to-port" => t.both(|f| f.destination_port.push(v.clone())),
        "trace-id" => t.both(|f| f.trace_id.push(v.clone())),
        "ip-trace-id" => {
            let id: u64 = val
                .parse()
                .map_err(|e| invalid(flag, val, format!("{e}")))?;
            if id == 0 {
                return Err(invalid(flag, val, "must be greater than 0"));
            }
            t.both(|f| f.ip_trace_id.push(id))
        }
        "verdict" => {
            let verdict = Verdict::from_str_name(&val.to_ascii_uppercase())
                .filter(|v| *v != Verdict::Unknown)
                .ok_or_else(|| {
                    invalid(
                        flag,
                        val,
                        "expected one of FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED",
                    )
                })?;
            t.both(|f| f.verdict.push(verdict as i32))
        }
        "drop-reason-desc" => {
            if val.is_empty() {
                return Err(invalid(flag, val, "empty drop reason"));
            }
            let reason = DropReason::from_str_name(&val.to_ascii_uppercase()).ok_or_else(|| {
                invalid(
                    flag,
                    val,
                    "not a drop reason name (e.g. POLICY_DENIED, UNSUPPORTED_L3_PROTOCOL)",
                )
            })?;
            t.both(|f| f.drop_reason_desc.push(reason as i32))
        }
        "http-status" => t.both(|f| f.http_status_code.push(v.clone())),
        "http-method" => t.both(|f| f.http_method.push(v.clone())),
        "http-path" => t.both(|f| f.http_path.push(v.clone())),
        "http-url" => t.both(|f| f.http_url.push(v.clone())),
        "http-header" => {
            let (key, value) = val
                .split_once(':')
                .ok_or_else(|| invalid(flag, val, "expected name:value"))?;
            let header = HttpHeader {
                key: key.to_string(),
                value: value.to_string(),
            };
            t.both(|f| f.http_header.push(header.clone()))
        }
        "type" => {
            let filter = parse_event_type(val)?;
            t.both(|f| f.event_type.push(filter))
        }
        "protocol" => t.both(|f| f.protocol.push(v.clone())),
        "workload" => {
            let w = parse_workload(val);
            t.split(
                |f| f.source_workload.push(w.clone()),
                |f| f.destination_workload.push(w.clone()),
            )
        }
        "from-workload" => {
            let w = parse_workload(val);
            t.both(|f| f.source_workload.push(w.clone()))
        }
        "to-workload" => {
            let w = parse_workload(val);
            t.both(|f| f.destination_workload.push(w.clone()))
        }
        "identity" => {
            let id = parse_identity(flag, val)?;
            t.split(
                |f| f.source_identity.push(id),
                |f| f.destination_identity.push(id),
            )
        }
        "from-identity" => {
            let id = parse_identity(flag, val)?;
            t.both(|f| f.source_identity.push(id))
        }
        "to-identity" => {
            let id = parse_identity(flag, val)?;
            t.both(|f| f.destination_identity.push(id))
        }
        "node-name" => t.both(|f| f.node_name.push(v.clone())),
        "node-label" => t.both(|f| f.node_labels.push(v.clone())),
        "cluster" => t.split(
            |f| f.source_cluster_name.push(v.clone()),
            |f| f.destination_cluster_name.push(v.clone()),
        ),
        "from-cluster" => t.both(|f| f.source_cluster_name.push(v.clone())),
        "to-cluster" => t.both(|f| f.destination_cluster_name.push(v.clone())),
        "tcp-flags" => {
            let flags = parse_tcp_flags(val)?;
            t.both(|f| f.tcp_flags.push(flags))
        }
        "traffic-direction" => {
            let dir = match val.to_ascii_lowercase().as_str() {
                "ingress" => TrafficDirection::Ingress,
                "egress" => TrafficDirection::Egress,
                _ => return Err(invalid(flag, val, "expected ingress or egress")),
            };
            t.both(|f| f.traffic_direction.push(dir as i32))
        }
        "cel-expression" => t.both(|f| {
            f.experimental
                .get_or_insert_with(Experimental::default)
                .cel_expression
                .push(v.clone())
        }),
        "interface" => t.both(|f| {
            f.interface.push(NetworkInterface {
                name: v.clone(),
                ..Default::default()
            })
        }),
        "encrypted" => t.both(|f| f.encrypted.push(true)),
        "unencrypted" => t.both(|f| f.encrypted.push(false)),
        other => return Err(FilterFlagError::UnknownFlag(other.to_string())),
    }
    Ok(())
}

/// `Kind/name`, `name` or `Kind/` → a Workload selector.
pub fn parse_workload(s: &str) -> Workload {
    match s.split_once('/') {
        None => Workload {
            name: s.to_string(),
            kind: String::new(),
        },
        Some((kind, name)) => Workload {
            name: name.to_string(),
            kind: kind.to_string(),
        },
    }
}

fn parse_identity(flag: &'static str, s: &str) -> Result<u32, FilterFlagError> {
    if let Some((id, _)) = RESERVED_IDENTITIES
        .iter()
        .find(|(id, name)| *id != 0 && *name == s)
    {
        return Ok(*id);
    }
    s.parse::<u32>().map_err(|_| {
        let names: Vec<&str> = RESERVED_IDENTITIES[1..].iter().map(|(_, n)| *n).collect();
        invalid(
            flag,
            s,
            format!(
                "invalid security identity, expected one of [{}] or a numeric value",
                names.join(" ")
            ),
        )
    })
}

fn parse_tcp_flags(s: &str) -> Result<TcpFlags, FilterFlagError> {
    let mut flags = TcpFlags::default();
    for name in s.split(',') {
        match name.to_ascii_uppercase().as_str() {
            "SYN" => flags.syn = true,
            "FIN" => flags.fin = true,
            "RST" => flags.rst = true,
            "PSH" => flags.psh = true,
            "ACK" => flags.ack = true,
            "URG" => flags.urg = true,
            "ECE" => flags.ece = true,
            "CWR" => flags.cwr = true,
            "NS" => flags.ns = true,
            _ => {
                return Err(invalid(
                    "tcp-flags",
                    s,
                    format!(
                        "unknown tcp flag: {name} (expected SYN, ACK, FIN, RST, PSH, URG, ECE, CWR, NS)"
                    ),
                ));
            }
        }
    }
    Ok(flags)
}

fn parse_event_type(s: &str) -> Result<EventTypeFilter, FilterFlagError> {
    let (name, sub) = match s.split_once(':') {
        Some((n, sub)) => (n, Some(sub)),
        None => (s, None),
    };
    let mut filter = EventTypeFilter::default();
    let known = EVENT_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t);
    filter.r#type = match known {
        Some(t) => t,
        None => name.parse::<u32>().map(|t| t as i32).map_err(|_| {
            let names: Vec<&str> = EVENT_TYPES.iter().map(|(n, _)| *n).collect();
            invalid(
                "type",
                s,
                format!(
                    "unable to parse type '{name}', not a known type name ({}) and not a number",
                    names.join(", ")
                ),
            )
        })?,
    };
    if let Some(sub) = sub {
        let named = match known {
            Some(4) => TRACE_POINTS
                .iter()
                .position(|p| *p == sub)
                .map(|i| i as i32),
            Some(130) => AGENT_SUBTYPES
                .iter()
                .find(|(n, _)| *n == sub)
                .map(|(_, v)| *v),
            _ => None,
        };
        filter.sub_type = match named {
            Some(v) => v,
            None => sub.parse::<u32>().map(|v| v as i32).map_err(|_| {
                invalid(
                    "type",
                    s,
                    format!(
                        "unable to parse event sub-type '{sub}', not a known sub-type name and not a number"
                    ),
                )
            })?,
        };
        filter.match_sub_type = true;
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_selector_forms() {
        assert_eq!(parse_workload("api").name, "api");
        let w = parse_workload("Deployment/api");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("Deployment", "api"));
        let w = parse_workload("Deployment/");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("Deployment", ""));
    }

    #[test]
    fn trace_subtype_by_name_matches_sub_type() {
        let f = parse_event_type("trace:to-stack").unwrap();
        assert_eq!((f.r#type, f.match_sub_type, f.sub_type), (4, true, 3));
        let f = parse_event_type("trace:to-endpoint").unwrap();
        assert_eq!((f.r#type, f.match_sub_type, f.sub_type), (4, true, 0));
    }
}
