//! The `Summary` texts Webb gives flows, in Hubble's words, made in one place: the agent's
//! L3/L4 summaries, the relay's HTTP ones, and [`derived`], which the flow store uses to keep a
//! summary only when it is not the one a flow's own fields give.

use crate::flow::{Flow, L7FlowType, TcpFlags, layer4, layer7};
use crate::icmp::{icmpv4_type_code, icmpv6_type_code};

/// `TCP Flags: SYN, ACK`, in Hubble's fixed order, appended to `out`.
pub fn tcp_flags_into(f: &TcpFlags, out: &mut String) {
    out.push_str("TCP Flags: ");
    let mut first = true;
    for (set, name) in [
        (f.syn, "SYN"),
        (f.ack, "ACK"),
        (f.rst, "RST"),
        (f.fin, "FIN"),
        (f.psh, "PSH"),
        (f.urg, "URG"),
        (f.ece, "ECE"),
        (f.cwr, "CWR"),
        (f.ns, "NS"),
    ] {
        if set {
            if !first {
                out.push_str(", ");
            }
            out.push_str(name);
            first = false;
        }
    }
}

/// [`tcp_flags_into`] as a new string.
pub fn tcp_flags(f: &TcpFlags) -> String {
    let mut s = String::with_capacity(32);
    tcp_flags_into(f, &mut s);
    s
}

/// `HTTP/1.1 GET http://host/path`, appended to `out`.
pub fn http_request_into(protocol: &str, method: &str, url: &str, out: &mut String) {
    for part in [protocol, " ", method, " ", url] {
        out.push_str(part);
    }
}

/// `HTTP/1.1 200 12ms (GET http://host/path)`, appended to `out` (whole milliseconds,
/// rounded down, as Hubble prints them).
pub fn http_response_into(
    protocol: &str,
    code: u32,
    latency_ns: u64,
    method: &str,
    url: &str,
    out: &mut String,
) {
    let (mut code_text, mut ms_text) = (itoa::Buffer::new(), itoa::Buffer::new());
    for part in [
        protocol,
        " ",
        code_text.format(code),
        " ",
        ms_text.format(latency_ns / 1_000_000),
        "ms (",
        method,
        " ",
        url,
        ")",
    ] {
        out.push_str(part);
    }
}

/// The summary `flow`'s own fields give, appended to `out`: HTTP requests and responses from
/// their L7 record, other flows from their L4 protocol (TCP flags, UDP, SCTP, ICMP type and
/// code). False, with nothing appended, for any other flow (DNS, other L7, no L4): their
/// summary says more than their fields.
pub fn derived_into(flow: &Flow, out: &mut String) -> bool {
    use layer4::Protocol as P;
    if let Some(l7) = &flow.l7 {
        let Some(layer7::Record::Http(h)) = &l7.record else {
            return false;
        };
        match L7FlowType::try_from(l7.r#type) {
            Ok(L7FlowType::Request) => http_request_into(&h.protocol, &h.method, &h.url, out),
            Ok(L7FlowType::Response) => {
                http_response_into(&h.protocol, h.code, l7.latency_ns, &h.method, &h.url, out)
            }
            _ => return false,
        }
        return true;
    }
    match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
        Some(P::Tcp(t)) => tcp_flags_into(t.flags.as_ref().unwrap_or(&TcpFlags::default()), out),
        Some(P::Udp(_)) => out.push_str("UDP"),
        Some(P::Sctp(_)) => out.push_str("SCTP"),
        Some(P::IcmPv4(i)) => {
            out.push_str("ICMPv4 ");
            out.push_str(&icmpv4_type_code(i.r#type, i.code));
        }
        Some(P::IcmPv6(i)) => {
            out.push_str("ICMPv6 ");
            out.push_str(&icmpv6_type_code(i.r#type, i.code));
        }
        _ => return false,
    }
    true
}

/// [`derived_into`] as a new string.
pub fn derived(flow: &Flow) -> Option<String> {
    let mut s = String::new();
    derived_into(flow, &mut s).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    /// The sample flows (as the agent and the relay's HTTP parser make them) have the summary
    /// their fields give; DNS does not (its summary names the answer).
    #[test]
    fn the_summary_of_l4_and_http_flows_is_the_one_their_fields_give() {
        for i in 0..40 {
            let f = sample::mixed(i);
            assert_eq!(derived(&f).as_deref(), Some(f.summary.as_str()), "flow {i}");
        }
        let mut dns = sample::udp6(1);
        dns.l7 = Some(crate::flow::Layer7 {
            r#type: L7FlowType::Response as i32,
            latency_ns: 0,
            record: Some(layer7::Record::Dns(Default::default())),
        });
        assert_eq!(derived(&dns), None);
        assert_eq!(derived(&Flow::default()), None);
    }

    #[test]
    fn tcp_flags_are_named_in_hubbles_order() {
        let f = TcpFlags {
            fin: true,
            ack: true,
            ns: true,
            ..Default::default()
        };
        assert_eq!(tcp_flags(&f), "TCP Flags: ACK, FIN, NS");
        assert_eq!(tcp_flags(&TcpFlags::default()), "TCP Flags: ");
    }
}
