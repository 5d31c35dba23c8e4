//! One FlowFilter compiled into a list of checks that must all hold. Each check restates one
//! field's rule from Hubble's `pkg/hubble/filters`.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;
use webb_proto::flow::{
    Endpoint, Flow, FlowFilter, TcpFlags, Verdict, flow_filter::Experimental, layer4::Protocol,
    layer7::Record,
};

use crate::ErrorKind;
use crate::patterns;
use crate::selector::{self, Selector};
use crate::text;

/// Cilium's monitor message type for L7 (access log) events; HTTP fields only make sense there.
const MESSAGE_TYPE_ACCESS_LOG: i32 = 129;

/// A field error before it is placed in its list (see `FilterError`).
#[derive(Debug)]
pub(crate) struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub reason: String,
    pub kind: ErrorKind,
}

fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        value: value.to_owned(),
        reason: reason.into(),
        kind: ErrorKind::Invalid,
    }
}

/// Regex errors span several lines (with a caret); a status message wants one.
fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which endpoint of a flow a check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl Side {
    #[inline]
    fn endpoint(self, f: &Flow) -> Option<&Endpoint> {
        match self {
            Side::Source => f.source.as_ref(),
            Side::Destination => f.destination.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum IpField {
    Source,
    Destination,
    SourceXlated,
}

#[derive(Debug, Clone, Copy)]
enum LabelField {
    Source,
    Destination,
    Node,
}

/// Exact addresses (kept in canonical text, compared as text like Hubble) and CIDRs.
#[derive(Debug, Clone)]
struct IpMatcher {
    exact: Vec<String>,
    nets: Vec<IpNet>,
}

impl IpMatcher {
    fn matches(&self, ip: &str) -> bool {
        if ip.is_empty() {
            return false;
        }
        if self.exact.iter().any(|e| text::eq(e, ip)) {
            return true;
        }
        !self.nets.is_empty()
            && ip
                .parse::<IpAddr>()
                .is_ok_and(|a| self.nets.iter().any(|n| n.contains(&a)))
    }
}

/// `ns/name-prefix` as Hubble parses it (a bare name means namespace `default`).
#[derive(Debug, Clone)]
struct NameFilter {
    namespace: String,
    prefix: String,
}

#[derive(Debug, Clone)]
enum Status {
    Exact(u32),
    /// One or two leading digits of the zero-padded three-digit code.
    Prefix(String),
}

/// Bits of the protocol filter; a flow has its L4 bit and its L7 bit.
mod proto_bit {
    pub const TCP: u16 = 1;
    pub const UDP: u16 = 1 << 1;
    pub const ICMPV4: u16 = 1 << 2;
    pub const ICMPV6: u16 = 1 << 3;
    pub const SCTP: u16 = 1 << 4;
    pub const VRRP: u16 = 1 << 5;
    pub const IGMP: u16 = 1 << 6;
    pub const DNS: u16 = 1 << 7;
    pub const HTTP: u16 = 1 << 8;
    pub const KAFKA: u16 = 1 << 9;
}

fn tcp_flag_bits(f: &TcpFlags) -> u16 {
    [f.fin, f.syn, f.rst, f.psh, f.ack, f.urg, f.ece, f.cwr, f.ns]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, set)| acc | (u16::from(*set) << i))
}

#[derive(Debug, Clone)]
enum Check {
    Verdict(Vec<i32>),
    EventType(Vec<(i32, Option<i32>)>),
    Reply { want_true: bool, want_false: bool },
    Identity(Side, Vec<u32>),
    Protocol(u16),
    Port(Side, Vec<u16>),
    IpVersion(Vec<i32>),
    TrafficDirection(Vec<i32>),
    DropReasonDesc(Vec<i32>),
    TcpFlags(Vec<u16>),
    Encrypted { want_true: bool, want_false: bool },
    IpTraceId(Vec<u64>),
    Interface(Vec<(u32, String)>),
    Uuid(Vec<String>),
    TraceId(Vec<String>),
    ClusterName(Side, Vec<String>),
    Pod(Side, Vec<NameFilter>),
    Service(Side, Vec<NameFilter>),
    Workload(Side, Vec<(String, String)>),
    Ip(IpField, IpMatcher),
    HttpStatus(Vec<Status>),
    HttpMethod(Vec<String>),
    HttpHeader(Vec<(String, String)>),
    Labels(LabelField, Vec<Selector>),
    NodeName(Regex),
    Fqdn(Side, Regex),
    DnsQuery(Vec<Regex>),
    HttpUrl(Vec<Regex>),
    HttpPath(Vec<Regex>),
}

impl Check {
    /// Rough evaluation cost: checks run cheapest first so a failing AND stops early.
    fn cost(&self) -> u8 {
        match self {
            Check::Verdict(_)
            | Check::EventType(_)
            | Check::Reply { .. }
            | Check::Identity(..)
            | Check::Protocol(_)
            | Check::Port(..)
            | Check::IpVersion(_)
            | Check::TrafficDirection(_)
            | Check::DropReasonDesc(_)
            | Check::TcpFlags(_)
            | Check::Encrypted { .. }
            | Check::IpTraceId(_) => 0,
            Check::Interface(_)
            | Check::Uuid(_)
            | Check::TraceId(_)
            | Check::ClusterName(..)
            | Check::Pod(..)
            | Check::Service(..)
            | Check::Workload(..)
            | Check::HttpStatus(_)
            | Check::HttpMethod(_) => 1,
            Check::Ip(..) | Check::HttpHeader(_) | Check::Labels(..) => 2,
            Check::NodeName(_)
            | Check::Fqdn(..)
            | Check::DnsQuery(_)
            | Check::HttpUrl(_)
            | Check::HttpPath(_) => 3,
        }
    }

    // Not inlined into the loop over checks: there LLVM hoists the loads of every flow field
    // any check could read out of the loop, costing ~40 cycles per flow whatever the filter.
    #[inline(never)]
    fn matches(&self, f: &Flow) -> bool {
        match self {
            Check::Verdict(v) => v.contains(&f.verdict),
            Check::EventType(types) => f.event_type.as_ref().is_some_and(|e| {
                types.iter().any(|(t, sub)| {
                    (*t == 0 || *t == e.r#type) && sub.is_none_or(|s| s == e.sub_type)
                })
            }),
            Check::Reply {
                want_true,
                want_false,
            } => {
                // Hubble treats an unknown direction as "not a reply" for drops only, for
                // clients that still read the deprecated `reply` field.
                let is_reply = f.is_reply.as_ref().map(|b| b.value);
                if is_reply.is_none() && f.verdict != Verdict::Dropped as i32 {
                    return false;
                }
                if is_reply.unwrap_or(false) {
                    *want_true
                } else {
                    *want_false
                }
            }
            Check::Identity(side, ids) => side
                .endpoint(f)
                .is_some_and(|ep| ids.contains(&ep.identity)),
            Check::Protocol(mask) => mask & flow_protocol_bits(f) != 0,
            Check::Port(side, ports) => flow_port(f, *side).is_some_and(|p| ports.contains(&p)),
            Check::IpVersion(v) => v.contains(&f.ip.as_ref().map_or(0, |ip| ip.ip_version)),
            Check::TrafficDirection(v) => v.contains(&f.traffic_direction),
            Check::DropReasonDesc(v) => {
                f.verdict == Verdict::Dropped as i32 && v.contains(&f.drop_reason_desc)
            }
            Check::TcpFlags(wanted) => tcp_flags(f)
                .map(tcp_flag_bits)
                .is_some_and(|have| wanted.iter().any(|w| have & w == *w)),
            Check::Encrypted {
                want_true,
                want_false,
            } => {
                if f.ip.as_ref().is_some_and(|ip| ip.encrypted) {
                    *want_true
                } else {
                    *want_false
                }
            }
            Check::IpTraceId(ids) => f
                .ip_trace_id
                .as_ref()
                .is_some_and(|t| ids.contains(&t.trace_id)),
            Check::Interface(ifaces) => f.interface.as_ref().is_some_and(|i| {
                ifaces.iter().any(|(index, name)| {
                    (*index == 0 || *index == i.index)
                        && (name.is_empty() || text::eq(name, &i.name))
                })
            }),
            Check::Uuid(ids) => ids.iter().any(|id| text::eq(id, &f.uuid)),
            Check::TraceId(ids) => {
                let tid = f
                    .trace_context
                    .as_ref()
                    .and_then(|t| t.parent.as_ref())
                    .map_or("", |p| p.trace_id.as_str());
                ids.iter().any(|id| text::eq(id, tid))
            }
            Check::ClusterName(side, names) => {
                let name = side.endpoint(f).map_or("", |ep| ep.cluster_name.as_str());
                names.iter().any(|n| text::eq(n, name))
            }
            Check::Pod(side, filters) => {
                let (ns, pod) = side
                    .endpoint(f)
                    .map_or(("", ""), |ep| (ep.namespace.as_str(), ep.pod_name.as_str()));
                name_matches(filters, ns, pod)
            }
            Check::Service(side, filters) => {
                let svc = match side {
                    Side::Source => f.source_service.as_ref(),
                    Side::Destination => f.destination_service.as_ref(),
                };
                let (ns, name) = svc.map_or(("", ""), |s| (s.namespace.as_str(), s.name.as_str()));
                name_matches(filters, ns, name)
            }
            Check::Workload(side, filters) => side.endpoint(f).is_some_and(|ep| {
                ep.workloads.iter().any(|w| {
                    filters.iter().any(|(name, kind)| {
                        (name.is_empty() || text::eq(name, &w.name))
                            && (kind.is_empty() || text::eq(kind, &w.kind))
                    })
                })
            }),
            Check::Ip(field, m) => {
                let ip = f.ip.as_ref().map_or("", |ip| match field {
                    IpField::Source => ip.source.as_str(),
                    IpField::Destination => ip.destination.as_str(),
                    IpField::SourceXlated => ip.source_xlated.as_str(),
                });
                m.matches(ip)
            }
            Check::HttpStatus(patterns) => {
                http(f).is_some_and(|h| status_matches(patterns, h.code))
            }
            Check::HttpMethod(methods) => http(f).is_some_and(|h| {
                !h.method.is_empty() && methods.iter().any(|m| eq_fold(m, &h.method))
            }),
            Check::HttpHeader(wanted) => http(f).is_some_and(|h| {
                h.headers.iter().any(|have| {
                    wanted.iter().any(|(k, v)| {
                        (k.is_empty() || text::eq(k, &have.key))
                            && (v.is_empty() || text::eq(v, &have.value))
                    })
                })
            }),
            Check::Labels(field, selectors) => {
                let labels: &[String] = match field {
                    LabelField::Source => f.source.as_ref().map_or(&[], |ep| &ep.labels),
                    LabelField::Destination => f.destination.as_ref().map_or(&[], |ep| &ep.labels),
                    LabelField::Node => &f.node_labels,
                };
                selectors.iter().any(|s| s.matches(labels))
            }
            Check::NodeName(re) => patterns::node_name_matches(re, &f.node_name),
            Check::Fqdn(side, re) => {
                let names = match side {
                    Side::Source => &f.source_names,
                    Side::Destination => &f.destination_names,
                };
                names.iter().any(|n| re.is_match(n))
            }
            Check::DnsQuery(res) => match f.l7.as_ref().and_then(|l7| l7.record.as_ref()) {
                Some(Record::Dns(dns)) => res.iter().any(|re| re.is_match(&dns.query)),
                _ => false,
            },
            Check::HttpUrl(res) => http(f)
                .is_some_and(|h| !h.url.is_empty() && res.iter().any(|re| re.is_match(&h.url))),
            Check::HttpPath(res) => http(f)
                .and_then(|h| request_path(&h.url))
                .is_some_and(|path| res.iter().any(|re| re.is_match(&path))),
        }
    }
}

fn name_matches(filters: &[NameFilter], ns: &str, name: &str) -> bool {
    if ns.is_empty() && name.is_empty() {
        return false;
    }
    filters
        .iter()
        .any(|f| text::eq(&f.namespace, ns) && text::starts_with(name, &f.prefix))
}

#[inline]
fn flow_port(f: &Flow, side: Side) -> Option<u16> {
    // Ports are 16 bits on the wire; a wider value is truncated as Hubble does.
    let (src, dst) = match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => (t.source_port, t.destination_port),
        Protocol::Udp(u) => (u.source_port, u.destination_port),
        Protocol::Sctp(s) => (s.source_port, s.destination_port),
        _ => return None,
    };
    Some(match side {
        Side::Source => src as u16,
        Side::Destination => dst as u16,
    })
}

fn flow_protocol_bits(f: &Flow) -> u16 {
    use proto_bit::*;
    let l4 = match f.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
        Some(Protocol::Tcp(_)) => TCP,
        Some(Protocol::Udp(_)) => UDP,
        Some(Protocol::IcmPv4(_)) => ICMPV4,
        Some(Protocol::IcmPv6(_)) => ICMPV6,
        Some(Protocol::Sctp(_)) => SCTP,
        Some(Protocol::Vrrp(_)) => VRRP,
        Some(Protocol::Igmp(_)) => IGMP,
        None => 0,
    };
    let l7 = match f.l7.as_ref().and_then(|l7| l7.record.as_ref()) {
        Some(Record::Dns(_)) => DNS,
        Some(Record::Http(_)) => HTTP,
        Some(Record::Kafka(_)) => KAFKA,
        None => 0,
    };
    l4 | l7
}

fn tcp_flags(f: &Flow) -> Option<&TcpFlags> {
    match f.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => t.flags.as_ref(),
        _ => None,
    }
}

fn http(f: &Flow) -> Option<&webb_proto::flow::Http> {
    match f.l7.as_ref()?.record.as_ref()? {
        Record::Http(h) => Some(h),
        _ => None,
    }
}

/// Unicode simple case folding, like Go's `strings.EqualFold`, without allocating.
fn eq_fold(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn status_matches(patterns: &[Status], code: u32) -> bool {
    if code == 0 {
        return false;
    }
    // Hubble compares against the code printed as `%03d`.
    let mut buf = [b'0'; 10];
    let mut n = code;
    let mut start = buf.len();
    while n > 0 {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = start.min(buf.len() - 3);
    let digits = &buf[start..];
    patterns.iter().any(|p| match p {
        Status::Exact(c) => *c == code,
        Status::Prefix(prefix) => {
            digits.len() >= prefix.len()
                && text::bytes_eq(&digits[..prefix.len()], prefix.as_bytes())
        }
    })
}

/// The decoded path of a request URI as Go's `url.ParseRequestURI` gives it: absolute paths and
/// absolute URIs only, the query cut off, percent escapes decoded; `None` when Go would fail.
fn request_path(url: &str) -> Option<Cow<'_, str>> {
    if url.is_empty() {
        return None;
    }
    let rest = if url.starts_with('/') {
        url
    } else {
        let colon = url.find(':')?;
        let scheme = &url.as_bytes()[..colon];
        let valid_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return None;
        }
        let rest = &url[colon + 1..];
        if !rest.starts_with('/') {
            // Opaque URI (`mailto:x`): no path.
            return Some(Cow::Borrowed(""));
        }
        rest
    };
    let rest = rest.split_once('?').map_or(rest, |(p, _)| p);
    let path = match rest.strip_prefix("//") {
        Some(after) if !url.starts_with('/') => after.find('/').map_or("", |i| &after[i..]),
        _ => rest,
    };
    // Go rejects a `%` not followed by two hex digits.
    let b = path.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return None;
        }
    }
    Some(percent_encoding::percent_decode_str(path).decode_utf8_lossy())
}

/// A check a flow store can apply to its columns (see [`crate::Prefilter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Narrowing {
    /// The flow's verdict is one of these.
    Verdict(Vec<i32>),
    /// The endpoint's security identity is one of these.
    Identity(Side, Vec<u32>),
    /// The endpoint's namespace equals one pair's namespace (never empty) and its pod name
    /// starts with that pair's prefix.
    Pod(Side, Vec<(String, String)>),
}

/// A compiled FlowFilter: all checks must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledFilter {
    checks: Vec<Check>,
}

impl CompiledFilter {
    #[inline]
    pub fn matches(&self, f: &Flow) -> bool {
        self.checks.iter().all(|c| c.matches(f))
    }

    /// The checks a store can test on its columns before decoding a flow (all must hold for
    /// the filter to match; empty when none can), and whether they are all of its checks.
    pub fn narrowings(&self) -> (Vec<Narrowing>, bool) {
        let narrowings: Vec<Narrowing> = self
            .checks
            .iter()
            .filter_map(|c| match c {
                Check::Verdict(v) => Some(Narrowing::Verdict(v.clone())),
                Check::Identity(side, ids) => Some(Narrowing::Identity(*side, ids.clone())),
                // A pod in no namespace (`/name`) matches flows whose endpoint names none,
                // which a store may keep as null: not narrowed.
                Check::Pod(side, names) if names.iter().all(|n| !n.namespace.is_empty()) => {
                    Some(Narrowing::Pod(
                        *side,
                        names
                            .iter()
                            .map(|n| (n.namespace.clone(), n.prefix.clone()))
                            .collect(),
                    ))
                }
                _ => None,
            })
            .collect();
        let whole = narrowings.len() == self.checks.len();
        (narrowings, whole)
    }

    pub fn compile(ff: &FlowFilter) -> Result<Self, FieldError> {
        // Destructured without `..`: a field added to the proto fails to compile here until it
        // is either implemented or refused, so nothing is ever silently ignored.
        let FlowFilter {
            uuid,
            source_ip,
            source_ip_xlated,
            source_pod,
            source_fqdn,
            source_label,
            source_service,
            source_workload,
            source_cluster_name,
            destination_ip,
            destination_pod,
            destination_fqdn,
            destination_label,
            destination_service,
            destination_workload,
            destination_cluster_name,
            traffic_direction,
            verdict,
            drop_reason_desc,
            interface,
            event_type,
            http_status_code,
            protocol,
            source_port,
            destination_port,
            reply,
            dns_query,
            source_identity,
            destination_identity,
            http_method,
            http_path,
            http_url,
            http_header,
            tcp_flags,
            node_name,
            node_labels,
            ip_version,
            trace_id,
            ip_trace_id,
            encrypted,
            experimental,
        } = ff;

        if let Some(Experimental { cel_expression }) = experimental
            && !cel_expression.is_empty()
        {
            return Err(FieldError {
                field: "experimental.cel_expression",
                value: cel_expression.join(" "),
                reason: "CEL expressions are not supported by Webb".into(),
                kind: ErrorKind::Unsupported,
            });
        }

        let mut checks = Vec::new();
        let mut add = |c: Check| checks.push(c);

        if !uuid.is_empty() {
            add(Check::Uuid(uuid.clone()));
        }
        if !event_type.is_empty() {
            add(Check::EventType(
                event_type
                    .iter()
                    .map(|e| (e.r#type, e.match_sub_type.then_some(e.sub_type)))
                    .collect(),
            ));
        }
        if !verdict.is_empty() {
            add(Check::Verdict(verdict.clone()));
        }
        if !reply.is_empty() {
            add(Check::Reply {
                want_true: reply.contains(&true),
                want_false: reply.contains(&false),
            });
        }
        if !source_identity.is_empty() {
            add(Check::Identity(Side::Source, source_identity.clone()));
        }
        if !destination_identity.is_empty() {
            add(Check::Identity(
                Side::Destination,
                destination_identity.clone(),
            ));
        }
        if !protocol.is_empty() {
            add(Check::Protocol(compile_protocols(protocol)?));
        }
        for (field, values, which) in [
            ("source_ip", source_ip, IpField::Source),
            ("destination_ip", destination_ip, IpField::Destination),
            ("source_ip_xlated", source_ip_xlated, IpField::SourceXlated),
        ] {
            if !values.is_empty() {
                add(Check::Ip(which, compile_ips(field, values)?));
            }
        }
        for (field, values, side) in [
            ("source_pod", source_pod, Side::Source),
            ("destination_pod", destination_pod, Side::Destination),
        ] {
            if !values.is_empty() {
                add(Check::Pod(side, compile_names(field, values)?));
            }
        }
        for (values, side) in [
            (source_workload, Side::Source),
            (destination_workload, Side::Destination),
        ] {
            if !values.is_empty() {
                let w = values
                    .iter()
                    .map(|w| (w.name.clone(), w.kind.clone()))
                    .collect();
                add(Check::Workload(side, w));
            }
        }
        for (field, values, side) in [
            ("source_service", source_service, Side::Source),
            (
                "destination_service",
                destination_service,
                Side::Destination,
            ),
        ] {
            if !values.is_empty() {
                add(Check::Service(side, compile_names(field, values)?));
            }
        }
        for (field, values, side) in [
            ("source_fqdn", source_fqdn, Side::Source),
            ("destination_fqdn", destination_fqdn, Side::Destination),
        ] {
            if !values.is_empty() {
                let re = patterns::fqdn_regex(values)
                    .map_err(|(value, why)| invalid(field, &value, why))?;
                add(Check::Fqdn(side, re));
            }
        }
        if !dns_query.is_empty() {
            add(Check::DnsQuery(compile_regexes("dns_query", dns_query)?));
        }
        for (field, values, which) in [
            ("source_label", source_label, LabelField::Source),
            (
                "destination_label",
                destination_label,
                LabelField::Destination,
            ),
            ("node_labels", node_labels, LabelField::Node),
        ] {
            if !values.is_empty() {
                let selectors = values
                    .iter()
                    .map(|s| selector::parse(s).map_err(|e| invalid(field, s, e.0)))
                    .collect::<Result<_, _>>()?;
                add(Check::Labels(which, selectors));
            }
        }
        for (field, values, side) in [
            ("source_port", source_port, Side::Source),
            ("destination_port", destination_port, Side::Destination),
        ] {
            if !values.is_empty() {
                add(Check::Port(side, compile_ports(field, values)?));
            }
        }

        // Hubble refuses HTTP fields next to an event-type filter that cannot select L7 events.
        let l7_possible = event_type.is_empty()
            || event_type
                .iter()
                .any(|e| e.r#type == MESSAGE_TYPE_ACCESS_LOG);
        let http_fields: [(&'static str, Vec<String>); 5] = [
            ("http_status_code", http_status_code.clone()),
            ("http_method", http_method.clone()),
            ("http_path", http_path.clone()),
            ("http_url", http_url.clone()),
            (
                "http_header",
                http_header
                    .iter()
                    .map(|h| format!("{}:{}", h.key, h.value))
                    .collect(),
            ),
        ];
        if !l7_possible
            && let Some((field, values)) = http_fields.iter().find(|(_, v)| !v.is_empty())
        {
            return Err(invalid(
                field,
                &values.join(","),
                "filtering by HTTP fields requires the event_type filter to match L7 (type 129) \
                 events",
            ));
        }
        if !http_status_code.is_empty() {
            add(Check::HttpStatus(compile_statuses(http_status_code)?));
        }
        if !http_method.is_empty() {
            add(Check::HttpMethod(http_method.clone()));
        }
        if !http_path.is_empty() {
            add(Check::HttpPath(compile_regexes("http_path", http_path)?));
        }
        if !http_url.is_empty() {
            add(Check::HttpUrl(compile_regexes("http_url", http_url)?));
        }
        if !http_header.is_empty() {
            add(Check::HttpHeader(
                http_header
                    .iter()
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect(),
            ));
        }
        if !tcp_flags.is_empty() {
            add(Check::TcpFlags(
                tcp_flags.iter().map(tcp_flag_bits).collect(),
            ));
        }
        if !node_name.is_empty() {
            let re = patterns::node_name_regex(node_name)
                .map_err(|(value, why)| invalid("node_name", &value, why))?;
            add(Check::NodeName(re));
        }
        if !ip_version.is_empty() {
            add(Check::IpVersion(ip_version.clone()));
        }
        if !trace_id.is_empty() {
            add(Check::TraceId(trace_id.clone()));
        }
        if !traffic_direction.is_empty() {
            add(Check::TrafficDirection(traffic_direction.clone()));
        }
        if !drop_reason_desc.is_empty() {
            add(Check::DropReasonDesc(drop_reason_desc.clone()));
        }
        if !interface.is_empty() {
            add(Check::Interface(
                interface
                    .iter()
                    .map(|i| (i.index, i.name.clone()))
                    .collect(),
            ));
        }
        for (field, values, side) in [
            ("source_cluster_name", source_cluster_name, Side::Source),
            (
                "destination_cluster_name",
                destination_cluster_name,
                Side::Destination,
            ),
        ] {
            if !values.is_empty() {
                if values.iter().any(String::is_empty) {
                    return Err(invalid(field, "", "cluster name must not be empty"));
                }
                add(Check::ClusterName(side, values.clone()));
            }
        }
        if !ip_trace_id.is_empty() {
            add(Check::IpTraceId(ip_trace_id.clone()));
        }
        if !encrypted.is_empty() {
            add(Check::Encrypted {
                want_true: encrypted.contains(&true),
                want_false: encrypted.contains(&false),
            });
        }

        checks.sort_by_key(Check::cost);
        Ok(CompiledFilter { checks })
    }
}

fn compile_protocols(values: &[String]) -> Result<u16, FieldError> {
    use proto_bit::*;
    values.iter().try_fold(0u16, |mask, p| {
        let bit = match p.to_lowercase().as_str() {
            "tcp" => TCP,
            "udp" => UDP,
            "icmp" => ICMPV4 | ICMPV6,
            "icmpv4" => ICMPV4,
            "icmpv6" => ICMPV6,
            "sctp" => SCTP,
            "vrrp" => VRRP,
            "igmp" => IGMP,
            "dns" => DNS,
            "http" => HTTP,
            "kafka" => KAFKA,
            _ => {
                return Err(invalid(
                    "protocol",
                    p,
                    "unknown protocol (expected tcp, udp, icmp, icmpv4, icmpv6, sctp, vrrp, \
                     igmp, dns, http or kafka)",
                ));
            }
        };
        Ok(mask | bit)
    })
}

fn compile_ips(field: &'static str, values: &[String]) -> Result<IpMatcher, FieldError> {
    let mut m = IpMatcher {
        exact: Vec::new(),
        nets: Vec::new(),
    };
    for v in values {
        if v.contains('/') {
            let net: IpNet = v
                .parse()
                .map_err(|_| invalid(field, v, "invalid CIDR (expected e.g. 10.0.0.0/8)"))?;
            m.nets.push(net);
        } else {
            let ip: IpAddr = v
                .parse()
                .map_err(|_| invalid(field, v, "invalid IP address"))?;
            // Flows carry addresses in canonical text, so compare against that form.
            m.exact.push(ip.to_string());
        }
    }
    Ok(m)
}

fn compile_names(field: &'static str, values: &[String]) -> Result<Vec<NameFilter>, FieldError> {
    values
        .iter()
        .map(|v| {
            let (namespace, prefix) = match v.split_once('/') {
                Some((_, rest)) if rest.contains('/') => {
                    return Err(invalid(field, v, "expected [namespace/][name-prefix]"));
                }
                Some((ns, name)) => (ns, name),
                None if v.is_empty() => ("", ""),
                None => ("default", v.as_str()),
            };
            if namespace.is_empty() && prefix.is_empty() {
                return Err(invalid(field, v, "expected [namespace/][name-prefix]"));
            }
            Ok(NameFilter {
                namespace: namespace.to_owned(),
                prefix: prefix.to_owned(),
            })
        })
        .collect()
}

fn compile_ports(field: &'static str, values: &[String]) -> Result<Vec<u16>, FieldError> {
    values
        .iter()
        .map(|v| {
            // Only plain decimal digits, as Go's ParseUint (Rust's would also take a `+`).
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(field, v, "invalid port (expected 0-65535)"));
            }
            v.parse::<u16>()
                .map_err(|_| invalid(field, v, "invalid port (expected 0-65535)"))
        })
        .collect()
}

fn compile_statuses(values: &[String]) -> Result<Vec<Status>, FieldError> {
    values
        .iter()
        .map(|v| {
            let b = v.as_bytes();
            let first_ok = b.first().is_some_and(|c| (b'1'..=b'5').contains(c));
            match b {
                [_, d1, d2] if first_ok && d1.is_ascii_digit() && d2.is_ascii_digit() => {
                    Ok(Status::Exact(v.parse().expect("three digits")))
                }
                [_, b'+'] if first_ok => Ok(Status::Prefix(v[..1].to_owned())),
                [_, d, b'+'] if first_ok && d.is_ascii_digit() => {
                    Ok(Status::Prefix(v[..2].to_owned()))
                }
                _ => Err(invalid(
                    "http_status_code",
                    v,
                    "invalid status code (expected e.g. 404, 4+ or 40+)",
                )),
            }
        })
        .collect()
}

fn compile_regexes(field: &'static str, values: &[String]) -> Result<Vec<Regex>, FieldError> {
    values
        .iter()
        .map(|v| {
            crate::bounded_regex(v).map_err(|e| FieldError {
                kind: match e {
                    regex::Error::CompiledTooBig(_) => ErrorKind::TooComplex,
                    _ => ErrorKind::Invalid,
                },
                ..invalid(field, v, one_line(&e))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_follow_go_parse_request_uri() {
        let table: &[(&str, Option<&str>)] = &[
            ("/api/v1?x=1", Some("/api/v1")),
            ("http://shop.svc:8080/cart/items?id=3", Some("/cart/items")),
            ("http://shop.svc", Some("")),
            ("/a%20b", Some("/a b")),
            ("/a%zz", None),
            ("relative/path", None),
            ("", None),
            ("mailto:someone", Some("")),
            ("1http://x/y", None),
            ("//host/path", Some("//host/path")),
        ];
        for (url, want) in table {
            assert_eq!(request_path(url).as_deref(), *want, "{url}");
        }
    }

    #[test]
    fn status_codes_compare_as_three_digit_text() {
        let p = |s: &str| compile_statuses(&[s.to_string()]).unwrap();
        assert!(status_matches(&p("404"), 404));
        assert!(!status_matches(&p("404"), 403));
        assert!(status_matches(&p("4+"), 404));
        assert!(status_matches(&p("40+"), 404));
        assert!(!status_matches(&p("41+"), 404));
        assert!(!status_matches(&p("5+"), 404));
        assert!(status_matches(&p("1+"), 1000));
        assert!(!status_matches(&p("1+"), 0));
    }

    #[test]
    fn method_comparison_folds_case() {
        assert!(eq_fold("get", "GET"));
        assert!(eq_fold("Patch", "pAtCh"));
        assert!(!eq_fold("GET", "PUT"));
        assert!(!eq_fold("GET", "GETS"));
        assert!(eq_fold("ÄRGER", "ärger"));
    }
}
