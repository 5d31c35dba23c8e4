//! Flow builders shared by the metrics tests: each field a test relies on is set explicitly.
#![allow(dead_code)]

use webb_proto::flow::*;

pub const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";

pub fn ep(ns: &str, pod: &str, workload: &str, identity: u32) -> Endpoint {
    Endpoint {
        identity,
        namespace: ns.into(),
        pod_name: pod.into(),
        labels: vec![
            format!("k8s:app={workload}"),
            format!("k8s:io.kubernetes.pod.namespace={ns}"),
        ],
        workloads: vec![Workload {
            name: workload.into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    }
}

/// client (web/frontend 198.18.0.10) → server (store/api 198.18.0.20:8080), TCP.
pub fn tcp_flow(verdict: Verdict, flags: TcpFlags) -> Flow {
    Flow {
        verdict: verdict as i32,
        node_name: "node-a".into(),
        ip: Some(Ip {
            source: "198.18.0.10".into(),
            destination: "198.18.0.20".into(),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40000,
                destination_port: 8080,
                flags: Some(flags),
            })),
        }),
        source: Some(ep("web", "frontend-7d4f9-x2x9k", "frontend", 30001)),
        destination: Some(ep("store", "api-5c6b7-q8w7e", "api", 30002)),
        r#type: FlowType::L3L4 as i32,
        event_type: Some(CiliumEventType {
            r#type: 4,
            sub_type: 3,
        }),
        traffic_direction: TrafficDirection::Egress as i32,
        is_reply: Some(false.into()),
        ..Default::default()
    }
}

pub fn syn() -> TcpFlags {
    TcpFlags {
        syn: true,
        ..Default::default()
    }
}

/// The same connection, seen in the reverse direction (server → client).
pub fn reversed(mut f: Flow) -> Flow {
    std::mem::swap(&mut f.source, &mut f.destination);
    if let Some(ip) = f.ip.as_mut() {
        std::mem::swap(&mut ip.source, &mut ip.destination);
    }
    if let Some(Some(layer4::Protocol::Tcp(t))) = f.l4.as_mut().map(|l| l.protocol.as_mut()) {
        std::mem::swap(&mut t.source_port, &mut t.destination_port);
    }
    f
}

/// An HTTP request (client → server, observed at egress) or its response (server → client).
pub fn http_flow(ty: L7FlowType, code: u32, latency_ns: u64, trace: Option<&str>) -> Flow {
    let mut f = tcp_flow(Verdict::Forwarded, TcpFlags::default());
    if ty == L7FlowType::Response {
        f = reversed(f);
        f.is_reply = Some(true.into());
    }
    f.r#type = FlowType::L7 as i32;
    f.event_type = Some(CiliumEventType {
        r#type: 129,
        sub_type: 0,
    });
    f.l7 = Some(Layer7 {
        r#type: ty as i32,
        latency_ns,
        record: Some(layer7::Record::Http(Http {
            code,
            method: "GET".into(),
            url: "http://198.18.0.20:8080/items".into(),
            protocol: "HTTP/1.1".into(),
            headers: vec![],
        })),
    });
    f.trace_context = trace.map(|t| TraceContext {
        parent: Some(TraceParent { trace_id: t.into() }),
    });
    f
}

pub fn icmp_flow(v6: bool, ty: u32, code: u32) -> Flow {
    let mut f = tcp_flow(Verdict::Forwarded, TcpFlags::default());
    if let Some(ip) = f.ip.as_mut()
        && v6
    {
        ip.source = "2001:2::10".into();
        ip.destination = "2001:2::20".into();
        ip.ip_version = IpVersion::IPv6 as i32;
    }
    f.l4 = Some(Layer4 {
        protocol: Some(if v6 {
            layer4::Protocol::IcmPv6(IcmPv6 { r#type: ty, code })
        } else {
            layer4::Protocol::IcmPv4(IcmPv4 { r#type: ty, code })
        }),
    });
    f
}

pub fn policy_verdict(verdict: Verdict, match_type: u32) -> Flow {
    let mut f = tcp_flow(verdict, syn());
    f.event_type = Some(CiliumEventType {
        r#type: 5,
        sub_type: 0,
    });
    f.traffic_direction = TrafficDirection::Ingress as i32;
    f.policy_match_type = match_type;
    if verdict == Verdict::Dropped {
        f.drop_reason_desc = DropReason::PolicyDenied as i32;
    }
    f
}

pub fn drop_flow() -> Flow {
    let mut f = tcp_flow(Verdict::Dropped, syn());
    f.event_type = Some(CiliumEventType {
        r#type: 1,
        sub_type: 133,
    });
    f.drop_reason_desc = DropReason::PolicyDenied as i32;
    f
}

/// Sample lines (no comments) of an exposition.
pub fn samples(body: &str) -> Vec<&str> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}
