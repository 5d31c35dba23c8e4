//! A flow read back from the store's schema equals the flow written, for every field.

use flow_store::{file_schema, flows_from_batch, flows_to_batch, stored_form};
use proptest::prelude::*;
use webb_proto::Timestamp;
use webb_proto::extras;
use webb_proto::flow::{
    Aggregate, CiliumEventType, Dns, Emitter, Endpoint, Ethernet, Flow, Http, HttpHeader, Ip,
    Kafka, Layer4, Layer7, NetworkInterface, Policy, Service, Tcp, TcpFlags, TraceContext,
    TraceParent, Tunnel, Udp, Vrrp, Workload, layer4, layer7,
};
use webb_proto::webb_v1::{
    CapturedPayload, DefaultDenyAttribution, FlowExtras, KernelDropReason, StageLoss,
};

fn endpoint(ns: &str, pod: &str) -> Endpoint {
    Endpoint {
        id: 1234,
        identity: 56789,
        cluster_name: "default".into(),
        namespace: ns.into(),
        labels: vec![
            "k8s:app=api".into(),
            format!("k8s:io.kubernetes.pod.namespace={ns}"),
        ],
        pod_name: pod.into(),
        workloads: vec![Workload {
            name: "api".into(),
            kind: "Deployment".into(),
        }],
    }
}

fn policy(name: &str) -> Policy {
    Policy {
        name: name.into(),
        namespace: "store".into(),
        labels: vec![format!("k8s:io.cilium.k8s.policy.name={name}")],
        revision: 42,
        kind: "CiliumNetworkPolicy".into(),
    }
}

/// A flow with every field Webb fills set to a non-default value.
fn full_flow() -> Flow {
    let mut f = Flow {
        time: Some(Timestamp {
            seconds: 1_795_820_400,
            nanos: 123_456_789,
        }),
        uuid: "6f1c2a8e-1111-4000-8000-000000000001".into(),
        verdict: 2,
        drop_reason: 133,
        ethernet: Some(Ethernet {
            source: "6a:8b:1c:2d:3e:4f".into(),
            destination: "ee:ee:ee:ee:ee:ee".into(),
        }),
        ip: Some(Ip {
            source: "198.18.0.10".into(),
            source_xlated: "198.18.0.99".into(),
            destination: "198.18.1.20".into(),
            ip_version: 1,
            encrypted: true,
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40123,
                destination_port: 8080,
                flags: Some(TcpFlags {
                    syn: true,
                    ack: true,
                    ns: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(endpoint("tools", "loadgen-1")),
        destination: Some(endpoint("store", "api-7")),
        r#type: 2,
        node_name: "node-1".into(),
        node_labels: vec!["kubernetes.io/hostname=node-1".into()],
        source_names: vec!["loadgen.tools.svc".into()],
        destination_names: vec!["api.store.svc".into(), "api".into()],
        l7: Some(Layer7 {
            r#type: 2,
            latency_ns: 12_345_678,
            record: Some(layer7::Record::Http(Http {
                code: 503,
                method: "POST".into(),
                url: "http://api.store:8080/items?x=1".into(),
                protocol: "HTTP/1.1".into(),
                headers: vec![
                    HttpHeader {
                        key: "traceparent".into(),
                        value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                    },
                    HttpHeader {
                        key: "accept".into(),
                        value: "*/*".into(),
                    },
                ],
            })),
        }),
        reply: true,
        event_type: Some(CiliumEventType {
            r#type: 129,
            sub_type: 3,
        }),
        source_service: Some(Service {
            name: "loadgen".into(),
            namespace: "tools".into(),
        }),
        destination_service: Some(Service {
            name: "api".into(),
            namespace: "store".into(),
        }),
        traffic_direction: 1,
        policy_match_type: 4,
        trace_observation_point: 3,
        trace_reason: 2,
        drop_reason_desc: 133,
        is_reply: Some(true.into()),
        interface: Some(NetworkInterface {
            index: 17,
            name: "lxc1234".into(),
        }),
        trace_context: Some(TraceContext {
            parent: Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            }),
        }),
        summary: "HTTP/1.1 503 12ms (POST http://api.store:8080/items?x=1)".into(),
        egress_allowed_by: vec![policy("egress-ok")],
        ingress_allowed_by: vec![policy("ingress-ok"), policy("ingress-ok-2")],
        egress_denied_by: vec![policy("egress-no")],
        ingress_denied_by: vec![policy("ingress-no")],
        policy_log: vec!["store/api is selected by store/ingress-no".into()],
        ..Default::default()
    };
    extras::attach(
        &mut f,
        Some(&FlowExtras {
            payload: None,
            kernel_drop: Some(KernelDropReason {
                name: "SKB_DROP_REASON_NO_SOCKET".into(),
                id: 3,
                symbol: "tcp_v4_rcv".into(),
                offset: 0x2f4,
            }),
            default_deny: Some(DefaultDenyAttribution {
                direction: 1,
                policies: vec!["store/ingress-no".into()],
                text: "no rule allows it".into(),
            }),
            loss: vec![
                StageLoss {
                    stage: "ring".into(),
                    node: "node-1".into(),
                    lost: 12,
                },
                StageLoss {
                    stage: "relay-queue".into(),
                    node: "relay".into(),
                    lost: u64::MAX,
                },
            ],
        }),
    );
    f
}

fn round_trip(flows: &[Flow]) -> Vec<Flow> {
    let batch = flows_to_batch(flows);
    assert_eq!(batch.schema(), file_schema());
    flows_from_batch(&batch).expect("read back")
}

#[test]
fn every_field_webb_fills_survives_the_round_trip() {
    let f = full_flow();
    assert_eq!(round_trip(std::slice::from_ref(&f)), vec![f]);
}

#[test]
fn absent_messages_stay_absent_and_present_empty_ones_stay_present() {
    let empty = Flow::default();
    let present_empty = Flow {
        ethernet: Some(Ethernet::default()),
        ip: Some(Ip::default()),
        l4: Some(Layer4 { protocol: None }),
        source: Some(Endpoint::default()),
        destination_service: Some(Service::default()),
        l7: Some(Layer7::default()),
        event_type: Some(CiliumEventType::default()),
        is_reply: Some(false.into()),
        interface: Some(NetworkInterface::default()),
        trace_context: Some(TraceContext {
            parent: Some(TraceParent::default()),
        }),
        ..Default::default()
    };
    let tcp_without_flags = Flow {
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp::default())),
        }),
        ..Default::default()
    };
    let flows = vec![empty, present_empty, tcp_without_flags];
    assert_eq!(round_trip(&flows), flows);
}

#[test]
fn fields_without_a_column_are_kept_in_residual() {
    let f = Flow {
        emitter: Some(Emitter {
            name: "webb".into(),
            version: "0.1".into(),
        }),
        tunnel: Some(Tunnel {
            protocol: 1,
            vni: 7,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Vrrp(Vrrp {
                r#type: 1,
                vrid: 2,
                priority: 3,
            })),
        }),
        l7: Some(Layer7 {
            r#type: 1,
            latency_ns: 5,
            record: Some(layer7::Record::Kafka(Kafka {
                topic: "t".into(),
                ..Default::default()
            })),
        }),
        trace_context: Some(TraceContext { parent: None }),
        source: Some(Endpoint {
            workloads: vec![
                Workload {
                    name: "a".into(),
                    kind: "Deployment".into(),
                },
                Workload {
                    name: "b".into(),
                    kind: "ReplicaSet".into(),
                },
            ],
            ..Default::default()
        }),
        aggregate: Some(Aggregate {
            ingress_flow_count: 3,
            ..Default::default()
        }),
        socket_cookie: 9,
        cgroup_id: 10,
        proxy_port: 15001,
        ..Default::default()
    };
    assert_eq!(round_trip(std::slice::from_ref(&f)), vec![f]);
}

#[test]
fn the_captured_payload_is_not_stored_but_the_other_extras_are() {
    let mut f = full_flow();
    let mut ex = extras::unpack(&f).unwrap().unwrap();
    ex.payload = Some(CapturedPayload {
        data: b"GET / HTTP/1.1\r\n".to_vec(),
        original_length: 80,
        ..Default::default()
    });
    extras::attach(&mut f, Some(&ex));
    let back = round_trip(std::slice::from_ref(&f));
    assert_eq!(back, vec![stored_form(&f)]);
    assert!(extras::unpack(&back[0]).unwrap().unwrap().payload.is_none());
    assert_ne!(back[0], f);
}

#[test]
fn unknown_enum_numbers_survive_as_numbers() {
    let f = Flow {
        verdict: 99,
        drop_reason_desc: 4242,
        traffic_direction: 7,
        ..Default::default()
    };
    assert_eq!(round_trip(std::slice::from_ref(&f)), vec![f]);
}

/// Webb's own UUIDs are stored split (see `flow_store::uuid`); any other text comes back too.
#[test]
fn any_uuid_text_survives_the_round_trip() {
    let flows: Vec<Flow> = [
        "6f1c2a8e-1111-4000-8000-000000000001",
        "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
        "uuid-7",
        "not a uuid at all 0a",
        "",
        "ff",
        "\u{e9}t\u{e9}-00",
    ]
    .into_iter()
    .map(|u| Flow {
        uuid: u.into(),
        ..Default::default()
    })
    .collect();
    assert_eq!(round_trip(&flows), flows);
}

#[test]
fn generated_flows_round_trip() {
    let g = flow_store::generator::FlowGenerator::new(
        500,
        Timestamp {
            seconds: 1_795_820_400,
            nanos: 0,
        },
        10_000,
    );
    let flows: Vec<Flow> = g.batch(0, 2000).iter().map(stored_form).collect();
    assert_eq!(round_trip(&flows), flows);
}

/// One builder for many batches, as the store's writer uses it: dictionaries and the endpoint
/// cache carry over from batch to batch (and start over once large), and every batch still
/// reads back as its flows, also when an endpoint changes its names under the same id.
#[test]
fn a_reused_builder_keeps_every_batch_exact() {
    let g = flow_store::generator::FlowGenerator::new(
        3000,
        Timestamp {
            seconds: 1_795_820_400,
            nanos: 0,
        },
        10_000,
    );
    let mut b = flow_store::FlowBatchBuilder::new();
    for batch in 0..6 {
        let mut flows: Vec<Flow> = g
            .batch(batch * 1500, 1500)
            .iter()
            .map(stored_form)
            .collect();
        if batch == 3 {
            // Same id and identity, other names: must not reuse the cached keys.
            for f in flows.iter_mut().step_by(3) {
                if let Some(e) = f.source.as_mut() {
                    e.namespace.push_str("-moved");
                    e.workloads.clear();
                }
            }
        }
        for f in &flows {
            b.append(f);
        }
        let back = flows_from_batch(&b.finish()).expect("reads back");
        assert_eq!(back, flows, "batch {batch}");
    }
}

fn s() -> impl Strategy<Value = String> {
    "[a-z0-9:=./ -]{0,12}"
}

fn endpoint_s() -> impl Strategy<Value = Option<Endpoint>> {
    proptest::option::of(
        (
            any::<u32>(),
            any::<u32>(),
            s(),
            s(),
            proptest::collection::vec(s(), 0..4),
            s(),
            proptest::collection::vec((s(), s()), 0..3),
        )
            .prop_map(|(id, identity, ns, pod, labels, cluster, w)| Endpoint {
                id,
                identity,
                cluster_name: cluster,
                namespace: ns,
                labels,
                pod_name: pod,
                workloads: w
                    .into_iter()
                    .map(|(name, kind)| Workload { name, kind })
                    .collect(),
            }),
    )
}

fn l4_s() -> impl Strategy<Value = Option<Layer4>> {
    let flags = proptest::option::of(any::<[bool; 9]>().prop_map(|b| TcpFlags {
        fin: b[0],
        syn: b[1],
        rst: b[2],
        psh: b[3],
        ack: b[4],
        urg: b[5],
        ece: b[6],
        cwr: b[7],
        ns: b[8],
    }));
    proptest::option::of(prop_oneof![
        Just(None),
        (any::<u16>(), any::<u16>(), flags).prop_map(|(a, b, flags)| Some(layer4::Protocol::Tcp(
            Tcp {
                source_port: a.into(),
                destination_port: b.into(),
                flags
            }
        ))),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Some(layer4::Protocol::Udp(Udp {
            source_port: a.into(),
            destination_port: b.into()
        }))),
        (any::<u8>(), any::<u8>()).prop_map(|(t, c)| Some(layer4::Protocol::IcmPv6(
            webb_proto::flow::IcmPv6 {
                r#type: t.into(),
                code: c.into()
            }
        ))),
    ])
    .prop_map(|p| p.map(|protocol| Layer4 { protocol }))
}

fn l7_s() -> impl Strategy<Value = Option<Layer7>> {
    let http = (
        any::<u16>(),
        s(),
        s(),
        s(),
        proptest::collection::vec((s(), s()), 0..3),
    )
        .prop_map(|(code, method, url, protocol, h)| {
            layer7::Record::Http(Http {
                code: code.into(),
                method,
                url,
                protocol,
                headers: h
                    .into_iter()
                    .map(|(key, value)| HttpHeader { key, value })
                    .collect(),
            })
        });
    let dns = (
        s(),
        proptest::collection::vec(s(), 0..3),
        any::<u32>(),
        any::<u8>(),
    )
        .prop_map(|(query, ips, ttl, rcode)| {
            layer7::Record::Dns(Dns {
                query,
                ips,
                ttl,
                rcode: rcode.into(),
                qtypes: vec!["AAAA".into()],
                ..Default::default()
            })
        });
    proptest::option::of(
        (
            0..4i32,
            any::<u64>(),
            proptest::option::of(prop_oneof![http, dns]),
        )
            .prop_map(|(t, latency_ns, record)| Layer7 {
                r#type: t,
                latency_ns,
                record,
            }),
    )
}

fn flow_s() -> impl Strategy<Value = Flow> {
    let a = (
        proptest::option::of((0i64..4_000_000_000, 0i32..1_000_000_000)),
        s(),
        0..8i32,
        any::<u32>(),
        s(),
        proptest::option::of((s(), s(), 0..3i32, any::<bool>())),
        l4_s(),
        endpoint_s(),
        endpoint_s(),
    );
    let b = (
        l7_s(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(s()),
        proptest::collection::vec(s(), 0..3),
        proptest::option::of((any::<i32>(), any::<i32>())),
        proptest::option::of((s(), s())),
        0..3i32,
        0..12i32,
        proptest::collection::vec(s().prop_map(|n| policy(&n)), 0..2),
        proptest::option::of(proptest::collection::vec((s(), any::<u64>()), 1..3)),
    );
    (a, b).prop_map(
        |(
            (time, uuid, verdict, drop, node, ip, l4, source, destination),
            (l7, is_reply, trace, log, event, svc, dir, point, policies, loss),
        )| {
            let mut f = Flow {
                time: time.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                uuid,
                verdict,
                drop_reason: drop,
                drop_reason_desc: (drop % 200) as i32,
                node_name: node,
                ip: ip.map(|(source, destination, v, encrypted)| Ip {
                    source,
                    destination,
                    ip_version: v,
                    encrypted,
                    ..Default::default()
                }),
                l4,
                source,
                destination,
                l7,
                is_reply: is_reply.map(Into::into),
                trace_context: trace.map(|trace_id| TraceContext {
                    parent: Some(TraceParent { trace_id }),
                }),
                policy_log: log,
                event_type: event.map(|(r#type, sub_type)| CiliumEventType { r#type, sub_type }),
                destination_service: svc.map(|(name, namespace)| Service { name, namespace }),
                traffic_direction: dir,
                trace_observation_point: point,
                ingress_denied_by: policies,
                ..Default::default()
            };
            if let Some(loss) = loss {
                extras::attach(
                    &mut f,
                    Some(&FlowExtras {
                        loss: loss
                            .into_iter()
                            .map(|(stage, lost)| StageLoss {
                                stage,
                                node: "n".into(),
                                lost,
                            })
                            .collect(),
                        ..Default::default()
                    }),
                );
            }
            f
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn any_flow_reads_back_equal(flows in proptest::collection::vec(flow_s(), 1..20)) {
        prop_assert_eq!(round_trip(&flows), flows);
    }
}
