//! Realistic flows for the filter tests: Kubernetes-style endpoints with Cilium labels, L3/L4
//! and L7, addresses from 198.18.0.0/15 and 2001:2::/48.

#![allow(dead_code)] // each test binary uses its own subset

use flow_filter::FlowFilters;
use webb_proto::flow::{
    CiliumEventType, Dns, DropReason, Endpoint, Flow, FlowFilter, FlowType, Http, HttpHeader,
    IcmPv4, Ip, IpTraceId, IpVersion, Layer4, Layer7, NetworkInterface, Service, Tcp, TcpFlags,
    TraceContext, TraceParent, TrafficDirection, Udp, Verdict, Workload, layer4::Protocol,
    layer7::Record,
};
use webb_proto::pbjson_types::BoolValue;

pub fn endpoint(identity: u32, ns: &str, pod: &str, app: &str, workload: (&str, &str)) -> Endpoint {
    Endpoint {
        id: identity / 10,
        identity,
        namespace: ns.into(),
        labels: vec![
            format!("k8s:app={app}"),
            "k8s:io.cilium.k8s.policy.cluster=default".into(),
            format!("k8s:io.cilium.k8s.policy.serviceaccount={app}"),
            format!("k8s:io.kubernetes.pod.namespace={ns}"),
            format!("k8s:app.kubernetes.io/name={app}"),
        ],
        pod_name: pod.into(),
        workloads: vec![Workload {
            name: workload.0.into(),
            kind: workload.1.into(),
        }],
        cluster_name: "default".into(),
    }
}

pub fn tcp_layer(sport: u32, dport: u32, flags: TcpFlags) -> Layer4 {
    Layer4 {
        protocol: Some(Protocol::Tcp(Tcp {
            source_port: sport,
            destination_port: dport,
            flags: Some(flags),
        })),
    }
}

pub fn syn() -> TcpFlags {
    TcpFlags {
        syn: true,
        ..Default::default()
    }
}

/// shop/web → shop/db, TCP SYN to 5432, forwarded, egress, not a reply.
pub fn tcp() -> Flow {
    Flow {
        uuid: "0b4c4f6e-5d1b-4b3e-9a55-3f1d2c0e7a01".into(),
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: "198.18.0.10".into(),
            destination: "198.18.0.20".into(),
            ip_version: IpVersion::IPv4 as i32,
            encrypted: false,
            source_xlated: "198.18.1.1".into(),
        }),
        l4: Some(tcp_layer(41000, 5432, syn())),
        source: Some(endpoint(
            1234,
            "shop",
            "web-7d8f9-abcde",
            "web",
            ("web", "Deployment"),
        )),
        destination: Some(Endpoint {
            cluster_name: "east".into(),
            ..endpoint(5678, "shop", "db-0", "db", ("db", "StatefulSet"))
        }),
        r#type: FlowType::L3L4 as i32,
        node_name: "node-a".into(),
        node_labels: vec![
            "kubernetes.io/hostname=node-a".into(),
            "topology.kubernetes.io/zone=z1".into(),
        ],
        destination_names: vec!["db.shop.svc.cluster.local".into()],
        event_type: Some(CiliumEventType {
            r#type: 4,
            sub_type: 0,
        }),
        source_service: Some(Service {
            name: "web".into(),
            namespace: "shop".into(),
        }),
        destination_service: Some(Service {
            name: "db".into(),
            namespace: "shop".into(),
        }),
        traffic_direction: TrafficDirection::Egress as i32,
        is_reply: Some(BoolValue { value: false }),
        interface: Some(NetworkInterface {
            index: 7,
            name: "lxc-web".into(),
        }),
        ip_trace_id: Some(IpTraceId {
            trace_id: 99,
            ip_option_type: 136,
        }),
        summary: "TCP Flags: SYN".into(),
        ..Default::default()
    }
}

pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An HTTP response (404 to GET /cart/items) from shop/web to shop/api, with a traceparent.
pub fn http() -> Flow {
    Flow {
        l4: Some(tcp_layer(41002, 8080, TcpFlags::default())),
        destination: Some(endpoint(
            4321,
            "shop",
            "api-5c6d7-xyz12",
            "api",
            ("api", "Deployment"),
        )),
        destination_service: Some(Service {
            name: "api".into(),
            namespace: "shop".into(),
        }),
        r#type: FlowType::L7 as i32,
        event_type: Some(CiliumEventType {
            r#type: 129,
            sub_type: 0,
        }),
        l7: Some(Layer7 {
            r#type: 2,
            latency_ns: 1_500_000,
            record: Some(Record::Http(Http {
                code: 404,
                method: "GET".into(),
                url: "http://api.shop.svc:8080/cart/items?id=1".into(),
                protocol: "HTTP/1.1".into(),
                headers: vec![
                    HttpHeader {
                        key: "traceparent".into(),
                        value: format!("00-{TRACE_ID}-00f067aa0ba902b7-01"),
                    },
                    HttpHeader {
                        key: "user-agent".into(),
                        value: "curl/8.5".into(),
                    },
                ],
            })),
        }),
        trace_context: Some(TraceContext {
            parent: Some(TraceParent {
                trace_id: TRACE_ID.into(),
            }),
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        is_reply: Some(BoolValue { value: true }),
        summary: "HTTP/1.1 404 1ms (GET http://api.shop.svc:8080/cart/items?id=1)".into(),
        ..tcp()
    }
}

/// A DNS query over IPv6 UDP from shop/web to kube-system/coredns.
pub fn dns() -> Flow {
    Flow {
        ip: Some(Ip {
            source: "2001:2::10".into(),
            destination: "2001:2::53".into(),
            ip_version: IpVersion::IPv6 as i32,
            encrypted: true,
            source_xlated: String::new(),
        }),
        l4: Some(Layer4 {
            protocol: Some(Protocol::Udp(Udp {
                source_port: 53001,
                destination_port: 53,
            })),
        }),
        destination: Some(endpoint(
            102,
            "kube-system",
            "coredns-6f6b-q7r8s",
            "coredns",
            ("coredns", "Deployment"),
        )),
        destination_names: vec!["kube-dns.kube-system.svc.cluster.local".into()],
        source_names: vec!["web.shop.svc.cluster.local".into()],
        r#type: FlowType::L7 as i32,
        event_type: Some(CiliumEventType {
            r#type: 129,
            sub_type: 0,
        }),
        l7: Some(Layer7 {
            r#type: 1,
            latency_ns: 0,
            record: Some(Record::Dns(Dns {
                query: "api.example.com.".into(),
                qtypes: vec!["A".into()],
                ..Default::default()
            })),
        }),
        ..tcp()
    }
}

/// A policy drop of default/curl → shop/db, direction unknown.
pub fn drop() -> Flow {
    Flow {
        verdict: Verdict::Dropped as i32,
        drop_reason_desc: DropReason::PolicyDenied as i32,
        source: Some(endpoint(3333, "default", "curl", "curl", ("curl", "Pod"))),
        is_reply: None,
        event_type: Some(CiliumEventType {
            r#type: 1,
            sub_type: 133,
        }),
        node_name: "prod/node-b".into(),
        ..tcp()
    }
}

/// An ICMPv4 echo request to a peer outside the cluster.
pub fn icmp() -> Flow {
    Flow {
        l4: Some(Layer4 {
            protocol: Some(Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
        }),
        destination: Some(Endpoint {
            identity: 2,
            labels: vec!["reserved:world".into()],
            ..Default::default()
        }),
        destination_service: None,
        ..tcp()
    }
}

/// A FlowFilter written the way Hubble prints it (`hubble observe --print-raw-filters`).
pub fn filter(json: &str) -> FlowFilter {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("test filter {json} is not JSON: {e}"))
}

pub fn allow(json: &str) -> FlowFilters {
    FlowFilters::compile(&[filter(json)], &[])
        .unwrap_or_else(|e| panic!("filter {json} should compile: {e}"))
}
