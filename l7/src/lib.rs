//! The L7 stage: turns captured payload into Hubble L7 flows (DNS, HTTP/1.x) and removes the
//! payload from every flow that leaves it. Its own crate (no runtime, no store) so that the parsers are
//! fuzzed and benchmarked without building the rest of the relay.

pub mod dns;
pub mod dns_flows;
pub mod http;
pub mod privacy;
pub mod traceparent;

use webb_proto::extras;
use webb_proto::flow::Flow;

pub use dns_flows::{DnsConfig, DnsStage, DnsStats};
pub use http::{HttpConfig, HttpStage, HttpStats};

/// Counters of the L7 stage itself (the parsers keep their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L7Stats {
    /// Flows whose `webb.v1.FlowExtras` did not decode (passed on without them).
    pub bad_extras: u64,
}

/// Runs every flow of the merged stream through the L7 parsers.
#[derive(Debug)]
pub struct L7Stage {
    http: HttpStage,
    dns: DnsStage,
    stats: L7Stats,
}

impl L7Stage {
    pub fn new(http: HttpConfig) -> Self {
        L7Stage {
            http: HttpStage::new(http),
            dns: DnsStage::new(DnsConfig::default()),
            stats: L7Stats::default(),
        }
    }

    pub fn http(&self) -> &HttpStage {
        &self.http
    }

    pub fn dns(&self) -> &DnsStage {
        &self.dns
    }

    pub fn stats(&self) -> &L7Stats {
        &self.stats
    }

    /// Appends `flow` (without captured payload) and then the L7 flows it completes to `out`.
    pub fn process(&mut self, mut flow: Flow, out: &mut Vec<Flow>) {
        let start = out.len();
        match extras::unpack(&flow) {
            Some(Ok(mut x)) => {
                if let Some(payload) = x.payload.take() {
                    if dns_flows::is_dns(&flow) {
                        self.dns.observe(&flow, &payload, out);
                    } else {
                        self.http.observe(&flow, &payload, out);
                    }
                    let rest = (x != Default::default()).then_some(&x);
                    extras::attach(&mut flow, rest);
                } else {
                    self.http.tcp_control(&flow);
                }
            }
            Some(Err(_)) => {
                self.stats.bad_extras += 1;
                extras::strip(&mut flow);
            }
            None => self.http.tcp_control(&flow),
        }
        // The packet flow precedes the L7 flows it completed. Inserted after them rather than
        // held by a placeholder: a default Flow costs as much to build and drop as to move.
        out.insert(start, flow);
    }

    /// Forgets idle connections; call when the stream is quiet (`now_ns`: flow time).
    pub fn expire(&mut self, now_ns: i128) {
        self.http.expire(now_ns);
        self.dns.expire(now_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webb_proto::Timestamp;
    use webb_proto::flow::{FlowType, Ip, Layer4, Tcp, Verdict, layer4};
    use webb_proto::webb_v1::{CapturedPayload, FlowExtras, KernelDropReason};
    use webb_proto::wkt::Any;

    fn packet(extras: Option<FlowExtras>) -> Flow {
        let mut f = Flow {
            time: Some(Timestamp::from_unix_nanos(1_000)),
            verdict: Verdict::Forwarded as i32,
            r#type: FlowType::L3L4 as i32,
            ip: Some(Ip {
                source: "198.18.0.1".into(),
                destination: "198.18.0.2".into(),
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: 40000,
                    destination_port: 80,
                    flags: None,
                })),
            }),
            summary: "TCP Flags: ACK, PSH".into(),
            ..Default::default()
        };
        extras::attach(&mut f, extras.as_ref());
        f
    }

    fn with_payload(kernel_drop: Option<KernelDropReason>) -> FlowExtras {
        FlowExtras {
            payload: Some(CapturedPayload {
                data: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                ..Default::default()
            }),
            kernel_drop,
            ..Default::default()
        }
    }

    #[test]
    fn the_packet_flow_comes_first_without_payload_then_its_l7_flows() {
        let mut stage = L7Stage::new(HttpConfig::default());
        let mut out = Vec::new();
        stage.process(packet(Some(with_payload(None))), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].summary, "TCP Flags: ACK, PSH");
        assert!(out[0].extensions.is_none());
        assert_eq!(out[1].r#type, FlowType::L7 as i32);
    }

    #[test]
    fn other_extras_survive_payload_stripping() {
        let mut stage = L7Stage::new(HttpConfig::default());
        let mut out = Vec::new();
        let drop = KernelDropReason {
            name: "SKB_DROP_REASON_NO_SOCKET".into(),
            ..Default::default()
        };
        stage.process(packet(Some(with_payload(Some(drop.clone())))), &mut out);
        let left = extras::unpack(&out[0]).unwrap().unwrap();
        assert_eq!(left.payload, None);
        assert_eq!(left.kernel_drop, Some(drop));
    }

    #[test]
    fn flows_without_extras_pass_unchanged() {
        let mut stage = L7Stage::new(HttpConfig::default());
        let mut out = Vec::new();
        let f = packet(None);
        stage.process(f.clone(), &mut out);
        assert_eq!(out, [f]);
    }

    #[test]
    fn undecodable_extras_are_counted_and_removed() {
        let mut stage = L7Stage::new(HttpConfig::default());
        let mut out = Vec::new();
        let mut f = packet(None);
        f.extensions = Some(Any {
            type_url: extras::type_url(),
            value: vec![0xff, 0xff],
        });
        stage.process(f, &mut out);
        assert_eq!(stage.stats().bad_extras, 1);
        assert!(out[0].extensions.is_none());
    }
}
