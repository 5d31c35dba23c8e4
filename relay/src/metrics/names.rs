//! Label values exactly as Hubble prints them.

use webb_proto::flow::{DropReason, Flow, IpVersion, Verdict, layer4, layer7};

/// Cilium monitor message types (`Flow.event_type.type`).
pub(crate) const MSG_DROP: i32 = 1;
pub(crate) const MSG_CAPTURE: i32 = 3;
pub(crate) const MSG_TRACE: i32 = 4;
pub(crate) const MSG_POLICY_VERDICT: i32 = 5;
pub(crate) const MSG_ACCESS_LOG: i32 = 129;

/// Hubble's `FlowProtocol`: L7 protocol if any, else L4.
pub(crate) fn flow_protocol(flow: &Flow) -> &'static str {
    if let Some(l7) = &flow.l7 {
        return match l7.record {
            Some(layer7::Record::Dns(_)) => "DNS",
            Some(layer7::Record::Http(_)) => "HTTP",
            Some(layer7::Record::Kafka(_)) => "Kafka",
            None => "Unknown L7",
        };
    }
    match flow.l4.as_ref().map(|l4| l4.protocol.as_ref()) {
        Some(Some(p)) => match p {
            layer4::Protocol::Tcp(_) => "TCP",
            layer4::Protocol::Udp(_) => "UDP",
            layer4::Protocol::IcmPv4(_) => "ICMPv4",
            layer4::Protocol::IcmPv6(_) => "ICMPv6",
            layer4::Protocol::Sctp(_) => "SCTP",
            _ => "Unknown L4",
        },
        Some(None) => "Unknown L4",
        None => "Unknown flow",
    }
}

/// Enum name, or the number for values this build does not know (as Go's `String()`).
pub(crate) fn verdict_name(v: i32) -> std::borrow::Cow<'static, str> {
    Verdict::try_from(v).map_or_else(|_| v.to_string().into(), |v| v.as_str_name().into())
}

pub(crate) fn drop_reason_name(v: i32) -> std::borrow::Cow<'static, str> {
    DropReason::try_from(v).map_or_else(|_| v.to_string().into(), |v| v.as_str_name().into())
}

/// `IPv4`/`IPv6` (or `IP_NOT_USED`) from the IP header.
pub(crate) fn family(flow: &Flow) -> &'static str {
    match flow.ip.as_ref().map(|i| IpVersion::try_from(i.ip_version)) {
        Some(Ok(IpVersion::IPv4)) => "IPv4",
        Some(Ok(IpVersion::IPv6)) => "IPv6",
        _ => "IP_NOT_USED",
    }
}

/// Cilium's trace observation point names, by event sub-type.
pub(crate) fn trace_point(sub_type: i32) -> &'static str {
    match sub_type {
        0 => "to-endpoint",
        1 => "to-proxy",
        2 => "to-host",
        3 => "to-stack",
        4 => "to-overlay",
        5 => "from-endpoint",
        6 => "from-proxy",
        7 => "from-host",
        8 => "from-stack",
        9 => "from-overlay",
        10 => "from-network",
        11 => "to-network",
        12 => "from-crypto",
        13 => "to-crypto",
        _ => "",
    }
}

/// Cilium's policy match type names, lower-cased as the policy metric prints them.
pub(crate) fn policy_match(m: u32) -> std::borrow::Cow<'static, str> {
    match m {
        0 => "none".into(),
        1 => "l3-only".into(),
        2 => "l3-l4".into(),
        3 => "l4-only".into(),
        4 => "all".into(),
        5 => "l3-proto".into(),
        6 => "proto-only".into(),
        n => n.to_string().into(),
    }
}

pub(crate) use webb_proto::icmp::{
    icmpv4_type_code as icmpv4_type, icmpv6_type_code as icmpv6_type,
};

/// Hubble's `rcode` label of `hubble_dns_responses_total` (its `rcodeNames` table; "" for
/// codes it has no name for).
pub(crate) fn dns_rcode(rcode: u32) -> &'static str {
    match rcode {
        0 => "No Error",
        1 => "Format Error",
        2 => "Server Failure",
        3 => "Non-Existent Domain",
        4 => "Not Implemented",
        5 => "Query Refused",
        6 => "Name Exists when it should not",
        7 => "RR Set Exists when it should not",
        8 => "RR Set that should exist does not",
        9 => "Not Authorized",
        10 => "Name not contained in zone",
        11 => "DSO-TYPE Not Implemented",
        16 => "Bad OPT Version",
        17 => "Key not recognized",
        18 => "Signature out of time window",
        19 => "Bad TKEY Mode",
        20 => "Duplicate key name",
        21 => "Algorithm not supported",
        22 => "Bad Truncation",
        23 => "Bad/missing Server Cookie",
        _ => "",
    }
}
