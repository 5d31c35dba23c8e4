//! ICMP type/code names exactly as Hubble prints them (gopacket's `ICMPv4TypeCode.String()` and
//! `ICMPv6TypeCode.String()`): in the agent's `Summary` and in the relay's `hubble_icmp_total`.

use std::borrow::Cow;

/// gopacket's `ICMPv4TypeCode.String()`: `Type`, `Type(Code)` or `Type(Code: n)`.
pub fn icmpv4_type_code(t: u32, c: u32) -> Cow<'static, str> {
    let (name, codes): (&str, &[&str]) = match t {
        0 => ("EchoReply", &[]),
        3 => (
            "DestinationUnreachable",
            &[
                "Net",
                "Host",
                "Protocol",
                "Port",
                "FragmentationNeeded",
                "SourceRoutingFailed",
                "NetUnknown",
                "HostUnknown",
                "SourceIsolated",
                "NetAdminProhibited",
                "HostAdminProhibited",
                "NetTOS",
                "HostTOS",
                "CommAdminProhibited",
                "HostPrecedence",
                "PrecedenceCutoff",
            ],
        ),
        4 => ("SourceQuench", &[]),
        5 => ("Redirect", &["Net", "Host", "TOS+Net", "TOS+Host"]),
        8 => ("EchoRequest", &[]),
        9 => ("RouterAdvertisement", &[]),
        10 => ("RouterSolicitation", &[]),
        11 => (
            "TimeExceeded",
            &["TTLExceeded", "FragmentReassemblyTimeExceeded"],
        ),
        12 => (
            "ParameterProblem",
            &["PointerIndicatesError", "MissingOption", "BadLength"],
        ),
        13 => ("TimestampRequest", &[]),
        14 => ("TimestampReply", &[]),
        15 => ("InfoRequest", &[]),
        16 => ("InfoReply", &[]),
        17 => ("AddressMaskRequest", &[]),
        18 => ("AddressMaskReply", &[]),
        _ => return format!("{t}({c})").into(),
    };
    type_code(name, codes, c)
}

/// gopacket's `ICMPv6TypeCode.String()`.
pub fn icmpv6_type_code(t: u32, c: u32) -> Cow<'static, str> {
    let (name, codes): (&str, &[&str]) = match t {
        1 => (
            "DestinationUnreachable",
            &[
                "NoRouteToDst",
                "AdminProhibited",
                "BeyondScopeOfSrc",
                "AddressUnreachable",
                "PortUnreachable",
                "SrcAddressFailedPolicy",
                "RejectRouteToDst",
            ],
        ),
        2 => ("PacketTooBig", &[]),
        3 => (
            "TimeExceeded",
            &["HopLimitExceeded", "FragmentReassemblyTimeExceeded"],
        ),
        4 => (
            "ParameterProblem",
            &[
                "ErroneousHeaderField",
                "UnrecognizedNextHeader",
                "UnrecognizedIPv6Option",
            ],
        ),
        128 => ("EchoRequest", &[]),
        129 => ("EchoReply", &[]),
        130 => ("MLDv1MulticastListenerQuery", &[]),
        131 => ("MLDv1MulticastListenerReport", &[]),
        132 => ("MLDv1MulticastListenerDone", &[]),
        133 => ("RouterSolicitation", &[]),
        134 => ("RouterAdvertisement", &[]),
        135 => ("NeighborSolicitation", &[]),
        136 => ("NeighborAdvertisement", &[]),
        137 => ("Redirect", &[]),
        143 => ("MLDv2MulticastListenerReport", &[]),
        _ => return format!("{t}({c})").into(),
    };
    type_code(name, codes, c)
}

fn type_code(name: &'static str, codes: &[&str], c: u32) -> Cow<'static, str> {
    if codes.is_empty() && c == 0 {
        return name.into();
    }
    match codes.get(c as usize) {
        Some(code) => format!("{name}({code})").into(),
        None => format!("{name}(Code: {c})").into(),
    }
}
