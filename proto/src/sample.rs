//! Realistic flows for tests and benchmarks (here and in other crates): Kubernetes-style
//! endpoints with about five labels each, L3/L4 (TCP, UDP, ICMPv4, ICMPv6, policy drops) and
//! L7 HTTP requests/responses with headers and trace context. Deterministic: the same index
//! always gives the same flow. Addresses come from 198.18.0.0/15 and 2001:2::/48.

use crate::flow::{
    CiliumEventType, DropReason, Endpoint, Ethernet, Flow, FlowType, Http, HttpHeader, IcmPv4,
    IcmPv6, Ip, IpVersion, L7FlowType, Layer4, Layer7, NetworkInterface, Policy, Service, Tcp,
    TcpFlags, TraceContext, TraceObservationPoint, TraceParent, TraceReason, TrafficDirection, Udp,
    Verdict, Workload, layer4, layer7,
};
use crate::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use crate::webb_v1::{
    CapturedPayload, DefaultDenyAttribution, FlowExtras, KernelDropReason, StageLoss,
};
use crate::wkt::Timestamp;

/// Cilium monitor message types used in `Flow.event_type.type`.
pub mod event_type {
    pub const DROP: i32 = 1;
    pub const TRACE: i32 = 4;
    pub const POLICY_VERDICT: i32 = 5;
    pub const L7: i32 = 129;
}

const NAMESPACES: [&str; 4] = ["tools", "store", "web", "payments"];
const APPS: [&str; 6] = ["loadgen", "api", "frontend", "pg", "cache", "ledger"];
// 2026-11-27T23:00:00Z
const BASE_SECONDS: i64 = 1_795_820_400;

/// A Kubernetes pod endpoint the way the agent fills it: Cilium-style source-prefixed labels,
/// sorted, and its owning workload.
pub fn endpoint(i: usize) -> Endpoint {
    let namespace = NAMESPACES[i % NAMESPACES.len()];
    let app = APPS[i % APPS.len()];
    let mut labels = vec![
        format!("k8s:app={app}"),
        format!("k8s:app.kubernetes.io/version=v{}", 1 + i % 3),
        "k8s:io.cilium.k8s.policy.cluster=default".to_owned(),
        format!("k8s:io.cilium.k8s.policy.serviceaccount={app}"),
        format!("k8s:io.kubernetes.pod.namespace={namespace}"),
    ];
    labels.sort();
    Endpoint {
        id: 1000 + i as u32,
        identity: 30_000 + (i as u32 % 64) * 17,
        cluster_name: String::new(),
        namespace: namespace.to_owned(),
        labels,
        pod_name: format!("{app}-{:04x}", 0x84b2 + i % 9),
        workloads: vec![Workload {
            name: app.to_owned(),
            kind: "Deployment".to_owned(),
        }],
    }
}

/// A pod of a Deployment named `workload` in `namespace`, labelled `k8s:app=<workload>`, as
/// tests that name their pods want it.
pub fn pod(namespace: &str, pod_name: &str, workload: &str) -> Endpoint {
    Endpoint {
        identity: 30_000,
        namespace: namespace.into(),
        pod_name: pod_name.into(),
        labels: vec![format!("k8s:app={workload}")],
        workloads: vec![Workload {
            name: workload.into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    }
}

fn ipv4(i: usize) -> String {
    format!("198.19.{}.{}", 1 + i % 4, 10 + i % 200)
}

fn ipv6(i: usize) -> String {
    format!("2001:2:{:x}::{:x}", 1 + i % 4, 0x10 + i % 200)
}

fn time(i: usize) -> Timestamp {
    Timestamp {
        seconds: BASE_SECONDS + (i / 1000) as i64,
        nanos: ((i % 1000) * 1_000_037 % 1_000_000_000) as i32,
    }
}

fn base(i: usize, verdict: Verdict, kind: FlowType) -> Flow {
    let (source, destination) = (endpoint(i), endpoint(i + 1));
    Flow {
        time: Some(time(i)),
        uuid: format!("6f1c2a8e-0000-4000-8000-{i:012x}"),
        verdict: verdict as i32,
        ethernet: Some(Ethernet {
            source: format!("6a:8b:1c:2d:3e:{:02x}", i % 256),
            destination: "ee:ee:ee:ee:ee:ee".to_owned(),
        }),
        ip: Some(Ip {
            source: ipv4(i),
            destination: ipv4(i + 7),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        source: Some(source),
        destination: Some(destination),
        r#type: kind as i32,
        node_name: format!("vn{}", 1 + i % 2),
        traffic_direction: TrafficDirection::Egress as i32,
        is_reply: Some(false.into()),
        interface: Some(NetworkInterface {
            index: 7 + (i % 5) as u32,
            name: format!("lxc{:04x}", i % 4096),
        }),
        ..Default::default()
    }
}

/// A TCP trace event (SYN, SYN-ACK or ACK depending on `i`).
pub fn tcp(i: usize) -> Flow {
    let flags = match i % 3 {
        0 => TcpFlags {
            syn: true,
            ..Default::default()
        },
        1 => TcpFlags {
            syn: true,
            ack: true,
            ..Default::default()
        },
        _ => TcpFlags {
            ack: true,
            psh: true,
            ..Default::default()
        },
    };
    let summary = crate::summary::tcp_flags(&flags);
    Flow {
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40_000 + (i % 20_000) as u32,
                destination_port: 8080,
                flags: Some(flags),
            })),
        }),
        event_type: Some(CiliumEventType {
            r#type: event_type::TRACE,
            sub_type: 3,
        }),
        trace_observation_point: TraceObservationPoint::ToStack as i32,
        trace_reason: TraceReason::New as i32,
        summary,
        ..base(i, Verdict::Forwarded, FlowType::L3L4)
    }
}

/// An IPv6 UDP flow allowed by a named policy (a policy-verdict event).
pub fn udp6(i: usize) -> Flow {
    Flow {
        ip: Some(Ip {
            source: ipv6(i),
            destination: ipv6(i + 3),
            ip_version: IpVersion::IPv6 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Udp(Udp {
                source_port: 51_000 + (i % 1000) as u32,
                destination_port: 5353,
            })),
        }),
        event_type: Some(CiliumEventType {
            r#type: event_type::POLICY_VERDICT,
            sub_type: 0,
        }),
        policy_match_type: 1,
        egress_allowed_by: vec![Policy {
            name: "allow-mdns".to_owned(),
            namespace: "tools".to_owned(),
            labels: vec!["k8s:io.cilium.k8s.policy.name=allow-mdns".to_owned()],
            revision: 7,
            kind: "CiliumNetworkPolicy".to_owned(),
        }],
        summary: "UDP".to_owned(),
        ..base(i, Verdict::Forwarded, FlowType::L3L4)
    }
}

/// An ICMPv4 echo request.
pub fn icmpv4(i: usize) -> Flow {
    Flow {
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
        }),
        event_type: Some(CiliumEventType {
            r#type: event_type::TRACE,
            sub_type: 0,
        }),
        trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
        summary: "ICMPv4 EchoRequest".to_owned(),
        ..base(i, Verdict::Forwarded, FlowType::L3L4)
    }
}

/// An ICMPv6 echo reply.
pub fn icmpv6(i: usize) -> Flow {
    Flow {
        ip: Some(Ip {
            source: ipv6(i),
            destination: ipv6(i + 1),
            ip_version: IpVersion::IPv6 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv6(IcmPv6 {
                r#type: 129,
                code: 0,
            })),
        }),
        event_type: Some(CiliumEventType {
            r#type: event_type::TRACE,
            sub_type: 5,
        }),
        trace_observation_point: TraceObservationPoint::FromEndpoint as i32,
        is_reply: Some(true.into()),
        summary: "ICMPv6 EchoReply".to_owned(),
        ..base(i, Verdict::Forwarded, FlowType::L3L4)
    }
}

/// A TCP SYN dropped by default deny, with the policies that select the destination.
pub fn policy_drop(i: usize) -> Flow {
    Flow {
        drop_reason: DropReason::PolicyDenied as u32,
        drop_reason_desc: DropReason::PolicyDenied as i32,
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40_999,
                destination_port: 5432,
                flags: Some(TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        event_type: Some(CiliumEventType {
            r#type: event_type::DROP,
            sub_type: DropReason::PolicyDenied as i32,
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        is_reply: None,
        ingress_denied_by: vec![Policy {
            name: "pg-only-from-api".to_owned(),
            namespace: "store".to_owned(),
            labels: vec!["k8s:io.cilium.k8s.policy.name=pg-only-from-api".to_owned()],
            revision: 3,
            kind: "NetworkPolicy".to_owned(),
        }],
        policy_log: vec![format!(
            "no rule of store/pg-only-from-api allows tools/loadgen-{i} to TCP/5432"
        )],
        summary: "TCP Flags: SYN".to_owned(),
        ..base(i, Verdict::Dropped, FlowType::L3L4)
    }
}

fn http_headers(i: usize, trace_id: &str) -> Vec<HttpHeader> {
    vec![
        HttpHeader {
            key: "accept".to_owned(),
            value: "application/json".to_owned(),
        },
        HttpHeader {
            key: "traceparent".to_owned(),
            value: format!("00-{trace_id}-00f067aa0ba902b7-01"),
        },
        HttpHeader {
            key: "user-agent".to_owned(),
            value: format!("loadgen/1.{}", i % 10),
        },
    ]
}

fn trace_id(i: usize) -> String {
    format!("4bf92f3577b34da6a3ce929d{:08x}", i as u32)
}

fn l7(i: usize, kind: L7FlowType, latency_ns: u64, http: Http) -> Flow {
    let trace = trace_id(i);
    Flow {
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40_000 + (i % 20_000) as u32,
                destination_port: 8080,
                flags: None,
            })),
        }),
        l7: Some(Layer7 {
            r#type: kind as i32,
            latency_ns,
            record: Some(layer7::Record::Http(http)),
        }),
        event_type: Some(CiliumEventType {
            r#type: event_type::L7,
            sub_type: 0,
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        trace_context: Some(TraceContext {
            parent: Some(TraceParent { trace_id: trace }),
        }),
        destination_service: Some(Service {
            name: "api".to_owned(),
            namespace: "store".to_owned(),
        }),
        ..base(i, Verdict::Forwarded, FlowType::L7)
    }
}

/// An HTTP/1.1 GET request with headers (including `traceparent`) and trace context.
pub fn http_request(i: usize) -> Flow {
    let url = format!("http://198.19.2.20:8080/items/{i}");
    let summary = format!("HTTP/1.1 GET {url}");
    let trace = trace_id(i);
    Flow {
        summary,
        ..l7(
            i,
            L7FlowType::Request,
            0,
            Http {
                code: 0,
                method: "GET".to_owned(),
                url,
                protocol: "HTTP/1.1".to_owned(),
                headers: http_headers(i, &trace),
            },
        )
    }
}

/// The response to [`http_request`]: status 200 or (every fifth) 500, with latency.
pub fn http_response(i: usize) -> Flow {
    let url = format!("http://198.19.2.20:8080/items/{i}");
    let code = if i.is_multiple_of(5) { 500 } else { 200 };
    let latency_ns = 1_000_000 + (i as u64 % 50) * 1_000_000;
    let summary = format!("HTTP/1.1 {code} {}ms (GET {url})", latency_ns / 1_000_000);
    Flow {
        is_reply: Some(true.into()),
        summary,
        ..l7(
            i,
            L7FlowType::Response,
            latency_ns,
            Http {
                code,
                method: "GET".to_owned(),
                url,
                protocol: "HTTP/1.1".to_owned(),
                headers: vec![HttpHeader {
                    key: "content-type".to_owned(),
                    value: "application/json".to_owned(),
                }],
            },
        )
    }
}

/// Webb's extras with every field set: payload, kernel drop reason, default-deny attribution
/// and loss by stage.
pub fn extras(i: usize) -> FlowExtras {
    FlowExtras {
        payload: Some(CapturedPayload {
            data: format!("GET /items/{i} HTTP/1.1\r\nHost: api\r\n\r\n").into_bytes(),
            original_length: 94,
            offset: 0,
            seq: 1_000_000 + i as u32,
            truncated: false,
            continuation: i % 2 == 1,
        }),
        kernel_drop: Some(KernelDropReason {
            name: "SKB_DROP_REASON_NO_SOCKET".to_owned(),
            id: 3,
            symbol: "tcp_v4_rcv".to_owned(),
            offset: 0x2f4,
        }),
        default_deny: Some(DefaultDenyAttribution {
            direction: TrafficDirection::Ingress as i32,
            policies: vec!["store/pg-only-from-api".to_owned()],
            text: "store/pg-0 is selected by store/pg-only-from-api for ingress; no rule allows it"
                .to_owned(),
        }),
        loss: vec![
            StageLoss {
                stage: "ring".to_owned(),
                node: "vn1".to_owned(),
                lost: 12,
            },
            StageLoss {
                stage: "relay-queue".to_owned(),
                node: "relay".to_owned(),
                lost: u64::MAX,
            },
        ],
    }
}

/// Wraps a flow in the response the Observer streams for it.
pub fn response(flow: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(flow)),
    }
}

/// The flow at position `i` of a realistic mix: 60% L3/L4 (TCP, UDP/IPv6, ICMPv4/v6, policy
/// drops), 40% L7 HTTP (requests and responses).
pub fn mixed(i: usize) -> Flow {
    match i % 10 {
        0..=2 => tcp(i),
        3 => udp6(i),
        4 if i % 20 < 10 => icmpv4(i),
        4 => icmpv6(i),
        5 => policy_drop(i),
        6 | 8 => http_request(i),
        _ => http_response(i),
    }
}

/// `n` responses of the [`mixed`] mix.
pub fn mix(n: usize) -> Vec<GetFlowsResponse> {
    (0..n).map(|i| response(mixed(i))).collect()
}
