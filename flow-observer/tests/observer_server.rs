//! The Observer API answers like Hubble's node server (and, with a `NodesSource`, like its
//! relay): a real gRPC server on loopback (and on a unix socket), fed through the flow ring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_observer::{
    NodeCounts, NodesSource, Observed, ObserverMetrics, ObserverService, PeerInfo, PeerService,
    Ring, Services, StatusExtrasSource, VersionHeader, stage,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use webb_proto::Timestamp;
use webb_proto::flow::{Endpoint, Flow, FlowFilter, LostEvent, LostEventSource};
use webb_proto::health::pb::health_check_response::ServingStatus;
use webb_proto::health::pb::{HealthCheckRequest, health_client::HealthClient};
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNodesRequest, Node,
    ServerStatusRequest,
};
use webb_proto::peer::peer_client::PeerClient;
use webb_proto::peer::{ChangeNotificationType, NotifyRequest};
use webb_proto::relay::{NodeState, NodeStatusEvent};
use webb_proto::webb_v1::{
    CapturedPayload, FlowExtras, FlowsRequestOptions, NodePolicyStatus, StatusExtras,
};

const BASE_NS: u64 = 1_790_000_000_000_000_000;
const STEP_NS: u64 = 1_000_000_000;

/// Losses counted by stage, as a server's metrics would export them.
#[derive(Debug, Default)]
struct LossCounts(Mutex<HashMap<String, u64>>);

impl ObserverMetrics for LossCounts {
    fn lost(&self, stage: &str, count: u64) {
        *self.0.lock().unwrap().entry(stage.into()).or_default() += count;
    }
}

impl LossCounts {
    fn get(&self, stage: &str) -> u64 {
        self.0.lock().unwrap().get(stage).copied().unwrap_or(0)
    }
}

/// A flow and its extras as a server stores them.
struct Record {
    flow: Flow,
    extras: Option<FlowExtras>,
}

fn push(state: &Observed, r: Record) {
    state.push_flow(r.flow, r.extras.as_ref());
}

/// Flow `i`: one second after flow `i-1`, from pod `pod-{i}` in namespace `ns-{i % 3}`.
fn record(i: u64) -> Record {
    let flow = Flow {
        time: Some(Timestamp::from_unix_nanos(BASE_NS + i * STEP_NS)),
        uuid: format!("uuid-{i}"),
        node_name: "vn1".into(),
        verdict: if i.is_multiple_of(2) { 1 } else { 2 },
        summary: format!("flow {i}"),
        source: Some(Endpoint {
            namespace: format!("ns-{}", i % 3),
            pod_name: format!("pod-{i}"),
            identity: 300,
            ..Default::default()
        }),
        ..Default::default()
    };
    Record {
        flow,
        extras: Some(FlowExtras {
            payload: Some(CapturedPayload {
                data: b"GET / HTTP/1.1\r\n".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

struct Server {
    state: Arc<Observed>,
    losses: Arc<LossCounts>,
    client: ObserverClient<Channel>,
    channel: Channel,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(capacity: usize, flows: u64) -> Server {
    start_with(capacity, flows, |o| o).await
}

/// A server whose Observer is configured by `configure` (a relay's, for instance).
async fn start_with(
    capacity: usize,
    flows: u64,
    configure: impl FnOnce(ObserverService) -> ObserverService,
) -> Server {
    let ring = Arc::new(Ring::new(capacity).unwrap());
    let losses = Arc::new(LossCounts::default());
    let state = Arc::new(Observed::new("vn1", ring, losses.clone()));
    for i in 0..flows {
        push(&state, record(i));
    }
    state.flush();
    let services = Services::node(
        configure(ObserverService::new(state.clone())),
        PeerService::new(vec![
            PeerInfo {
                name: "vn1".into(),
                address: "198.18.0.1".into(),
            },
            PeerInfo {
                name: "vn2".into(),
                address: "198.18.0.2".into(),
            },
        ]),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        services
            .serve_tcp(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Server {
        state,
        losses,
        client: ObserverClient::new(channel.clone()),
        channel,
        _shutdown: tx,
    }
}

async fn collect(
    client: &mut ObserverClient<Channel>,
    req: GetFlowsRequest,
) -> Vec<GetFlowsResponse> {
    let mut stream = client.get_flows(req).await.unwrap().into_inner();
    let mut out = vec![];
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a non-follow stream ends by itself")
    {
        out.push(r.unwrap());
    }
    out
}

fn uuids(rs: &[GetFlowsResponse]) -> Vec<String> {
    rs.iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f.uuid.clone()),
            _ => None,
        })
        .collect()
}

fn ids(range: impl IntoIterator<Item = u64>) -> Vec<String> {
    range.into_iter().map(|i| format!("uuid-{i}")).collect()
}

fn ts(i: u64) -> Option<Timestamp> {
    Some(Timestamp::from_unix_nanos(BASE_NS + i * STEP_NS))
}

#[tokio::test]
async fn last_n_returns_the_newest_n_in_time_order_with_time_and_node_set() {
    let mut s = start(63, 20).await;
    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            number: 3,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(uuids(&rs), ids(17..20));
    for r in &rs {
        let Some(ResponseTypes::Flow(f)) = &r.response_types else {
            panic!()
        };
        assert_eq!(r.time, f.time);
        assert_eq!(r.node_name, "vn1");
    }
}

#[tokio::test]
async fn first_n_returns_the_oldest_n() {
    let mut s = start(63, 20).await;
    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            number: 2,
            first: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(uuids(&rs), ids(0..2));
}

#[tokio::test]
async fn number_counts_only_flows_that_pass_the_filters() {
    let mut s = start(63, 20).await;
    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            number: 2,
            whitelist: vec![FlowFilter {
                source_pod: vec!["ns-1/".into()],
                ..Default::default()
            }],
            blacklist: vec![FlowFilter {
                verdict: vec![2],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    // ns-1 flows: 1,4,7,10,13,16,19; minus odd (DROPPED) ones: 4,10,16 → the last two.
    assert_eq!(uuids(&rs), ids([10, 16]));
}

#[tokio::test]
async fn since_and_until_bound_the_time_range_and_since_wins_over_number() {
    let mut s = start(63, 20).await;
    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            number: 2,
            since: ts(5),
            until: ts(8),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(uuids(&rs), ids(5..7));
    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            since: ts(15),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(uuids(&rs), ids(15..20));
    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            first: true,
            until: ts(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(uuids(&rs), ids(0..3));
}

#[tokio::test]
async fn a_ring_holds_only_its_capacity() {
    let mut s = start(15, 40).await;
    let rs = collect(&mut s.client, GetFlowsRequest::default()).await;
    assert_eq!(uuids(&rs), ids(25..40));
}

#[tokio::test]
async fn follow_without_number_streams_only_new_flows_and_with_number_the_last_n_first() {
    let mut s = start(63, 10).await;
    let mut only_new = s
        .client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last_two = s
        .client
        .get_flows(GetFlowsRequest {
            follow: true,
            number: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Give both server tasks time to position their readers before the new flows arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 10..13 {
        push(&s.state, record(i));
    }
    s.state.flush();
    let mut got = vec![];
    for _ in 0..3 {
        got.push(next_uuid(&mut only_new).await);
    }
    assert_eq!(got, ids(10..13));
    let mut got = vec![];
    for _ in 0..5 {
        got.push(next_uuid(&mut last_two).await);
    }
    assert_eq!(got, ids(8..13));
}

async fn next_uuid(stream: &mut tonic::Streaming<GetFlowsResponse>) -> String {
    let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("flow in time")
        .unwrap()
        .unwrap();
    match r.response_types {
        Some(ResponseTypes::Flow(f)) => f.uuid,
        other => panic!("flow expected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_follower_that_falls_behind_gets_a_hubble_ring_lost_event_and_continues() {
    let mut s = start(15, 0).await;
    let mut slow = s
        .client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Far more than the stream's buffers hold while the client reads nothing.
    for i in 0..20_000 {
        push(&s.state, record(i));
        if i % 100 == 0 {
            s.state.flush();
            tokio::task::yield_now().await;
        }
    }
    s.state.flush();
    let mut lost = 0;
    let mut last_seen = None;
    for _ in 0..25_000 {
        let r = match tokio::time::timeout(Duration::from_secs(3), slow.next()).await {
            Ok(Some(r)) => r.unwrap(),
            _ => break,
        };
        match r.response_types {
            Some(ResponseTypes::LostEvents(l)) => {
                assert_eq!(l.source, LostEventSource::HubbleRingBuffer as i32);
                lost += l.num_events_lost;
            }
            Some(ResponseTypes::Flow(f)) => {
                let i: u64 = f.uuid.trim_start_matches("uuid-").parse().unwrap();
                if let Some(prev) = last_seen {
                    assert!(i > prev, "flows stay in order");
                }
                last_seen = Some(i);
            }
            other => panic!("unexpected {other:?}"),
        }
        if last_seen == Some(19_999) {
            break;
        }
    }
    assert!(lost > 0, "the slow reader was told it lost flows");
    assert!(
        s.losses.get(stage::HUBBLE_RING_READER) >= lost,
        "and the loss was counted by stage"
    );
    assert_eq!(
        last_seen,
        Some(19_999),
        "and it caught up with the newest flow"
    );
    // Another reader is unaffected: it reads the ring as it is now.
    let rs = collect(&mut s.client, GetFlowsRequest::default()).await;
    assert_eq!(uuids(&rs), ids(19_985..20_000));
}

#[tokio::test]
async fn invalid_requests_are_invalid_argument() {
    let mut s = start(15, 3).await;
    let bad = [
        GetFlowsRequest {
            first: true,
            follow: true,
            ..Default::default()
        },
        GetFlowsRequest {
            whitelist: vec![FlowFilter {
                source_ip: vec!["not-an-ip/99".into()],
                ..Default::default()
            }],
            ..Default::default()
        },
        GetFlowsRequest {
            field_mask: Some(webb_proto::FieldMask {
                paths: vec!["no_such_field".into()],
            }),
            ..Default::default()
        },
    ];
    for req in bad {
        let err = s.client.get_flows(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err}");
    }
}

#[tokio::test]
async fn field_mask_copies_only_the_listed_paths() {
    let mut s = start(15, 3).await;
    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            number: 1,
            field_mask: Some(webb_proto::FieldMask {
                paths: vec!["uuid".into(), "source.pod_name".into()],
            }),
            ..Default::default()
        },
    )
    .await;
    let Some(ResponseTypes::Flow(f)) = &rs[0].response_types else {
        panic!()
    };
    assert_eq!(f.uuid, "uuid-2");
    assert_eq!(f.source.as_ref().unwrap().pod_name, "pod-2");
    assert_eq!(f.source.as_ref().unwrap().namespace, "");
    assert_eq!(f.summary, "");
    assert_eq!(f.time, None);
    assert_eq!(
        rs[0].time,
        ts(2),
        "the response time is set even when masked out"
    );
}

#[tokio::test]
async fn payload_extras_only_for_requests_that_ask() {
    let mut s = start(15, 1).await;
    let plain = collect(&mut s.client, GetFlowsRequest::default()).await;
    let Some(ResponseTypes::Flow(f)) = &plain[0].response_types else {
        panic!()
    };
    assert!(
        f.extensions.is_none(),
        "a Hubble client never receives an Any"
    );

    let mut req = GetFlowsRequest::default();
    webb_proto::options::set(
        &mut req,
        &FlowsRequestOptions {
            include_payload: true,
            include_extras: true,
        },
    );
    let rich = collect(&mut s.client, req).await;
    let Some(ResponseTypes::Flow(f)) = &rich[0].response_types else {
        panic!()
    };
    let extras = webb_proto::extras::unpack(f).unwrap().unwrap();
    assert_eq!(extras.payload.unwrap().data, b"GET / HTTP/1.1\r\n");
}

#[tokio::test]
async fn server_status_reports_ring_and_counters_with_the_version_header() {
    let mut s = start(15, 40).await;
    let resp = s
        .client
        .server_status(ServerStatusRequest {})
        .await
        .unwrap();
    assert_eq!(
        resp.metadata().get("hubble-server-version").unwrap(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(resp.metadata().get("hubble-relay-version").is_none());
    assert!(
        webb_proto::status::read(resp.metadata()).is_none(),
        "no Webb extras without a source"
    );
    let st = resp.into_inner();
    assert_eq!(st.num_flows, 15);
    assert_eq!(st.max_flows, 15);
    assert_eq!(st.seen_flows, 40);
    assert!(st.uptime_ns > 0);
    assert_eq!(st.version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn flows_rate_is_flows_per_second_over_the_last_minute() {
    let s = start(63, 0).await;
    let now = Timestamp::now();
    let now_ns = now.unix_nanos() as u64;
    // 30 flows in the last 30 s, one two minutes ago: 30 flows / 60 s.
    for (i, age_s) in std::iter::once(120).chain((0..30).rev()).enumerate() {
        let mut r = record(i as u64);
        r.flow.time = Some(Timestamp::from_unix_nanos(now_ns - age_s * STEP_NS));
        push(&s.state, r);
    }
    let rate = s.state.flows_rate(now);
    assert!((rate - 0.5).abs() < 1e-9, "{rate}");
}

#[tokio::test]
async fn namespaces_with_recent_flows_are_listed_sorted_and_get_nodes_is_unimplemented() {
    let mut s = start(63, 6).await;
    let ns = s
        .client
        .get_namespaces(GetNamespacesRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = ns.namespaces.iter().map(|n| n.namespace.as_str()).collect();
    assert_eq!(names, ["ns-0", "ns-1", "ns-2"]);
    let err = s.client.get_nodes(GetNodesRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

#[tokio::test]
async fn health_is_serving_for_hubble_observer_and_the_server() {
    let s = start(15, 0).await;
    let mut health = HealthClient::new(s.channel.clone());
    for service in ["", "hubble.server.Observer"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn peer_notify_announces_every_known_node_as_added() {
    let s = start(15, 0).await;
    let mut peers = PeerClient::new(s.channel.clone())
        .notify(NotifyRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut got = vec![];
    for _ in 0..2 {
        let n = tokio::time::timeout(Duration::from_secs(5), peers.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(n.r#type, ChangeNotificationType::PeerAdded as i32);
        got.push((n.name, n.address));
    }
    assert_eq!(
        got,
        [
            ("vn1".to_string(), "198.18.0.1".to_string()),
            ("vn2".to_string(), "198.18.0.2".to_string())
        ]
    );
}

#[tokio::test]
async fn the_same_api_is_served_on_a_unix_socket() {
    let ring = Arc::new(Ring::new(15).unwrap());
    let state = Arc::new(Observed::new("vn1", ring, Arc::new(())));
    for i in 0..4 {
        push(&state, record(i));
    }
    state.flush();
    let services = Services::node(ObserverService::new(state), PeerService::new(vec![])).await;
    let dir = std::env::temp_dir().join(format!("webb-sock-{}", std::process::id()));
    let path = dir.join("vn1.sock");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let path = path.clone();
        tokio::spawn(async move {
            services
                .serve_unix(&path, async {
                    let _ = rx.await;
                })
                .await
        })
    };
    for _ in 0..100 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_path = path.clone();
    let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let p = connect_path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .unwrap();
    let mut client = ObserverClient::new(channel);
    let rs = collect(&mut client, GetFlowsRequest::default()).await;
    assert_eq!(uuids(&rs), ids(0..4));
    drop(client);
    let _ = tx.send(());
    server.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed on shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn lost_events_and_node_status_in_the_ring_reach_every_reader_unfiltered_and_uncounted() {
    let mut s = start(63, 2).await;
    s.state.push_lost(LostEvent {
        source: LostEventSource::PerfEventRingBuffer as i32,
        num_events_lost: 5,
        ..Default::default()
    });
    s.state.push_lost_from(
        "vn2",
        LostEvent {
            source: LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: 7,
            ..Default::default()
        },
    );
    s.state.push_node_status(NodeStatusEvent {
        state_change: NodeState::NodeUnavailable as i32,
        node_names: vec!["vn3".into()],
        message: String::new(),
    });
    push(&s.state, record(2));
    s.state.flush();
    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            first: true,
            number: 3,
            // Matches no flow: what is left is never filtered.
            whitelist: vec![FlowFilter {
                source_pod: vec!["nowhere/".into()],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    let kinds: Vec<String> = rs
        .iter()
        .map(|r| match &r.response_types {
            Some(ResponseTypes::LostEvents(l)) => {
                format!("lost {} {}", r.node_name, l.num_events_lost)
            }
            Some(ResponseTypes::NodeStatus(n)) => {
                format!("status {} {:?}", r.node_name, n.node_names)
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["lost vn1 5", "lost vn2 7", r#"status vn1 ["vn3"]"#]);
}

/// The nodes a relay knows, fixed for the test.
#[derive(Debug)]
struct FixedNodes;

#[tonic::async_trait]
impl NodesSource for FixedNodes {
    async fn nodes(&self) -> Result<Vec<Node>, tonic::Status> {
        Ok(vec![Node {
            name: "vn1".into(),
            version: "0.1.0".into(),
            ..Default::default()
        }])
    }

    fn counts(&self) -> NodeCounts {
        NodeCounts {
            connected: 1,
            unavailable: 1,
            unavailable_names: vec!["vn2".into()],
        }
    }

    fn stream_preamble(&self) -> Vec<NodeStatusEvent> {
        vec![NodeStatusEvent {
            state_change: NodeState::NodeConnected as i32,
            node_names: vec!["vn1".into()],
            message: String::new(),
        }]
    }
}

#[tokio::test]
async fn a_relay_configures_version_header_nodes_and_status_preamble() {
    let mut s = start_with(15, 3, |o| {
        o.with_version("1.2.3")
            .with_version_header(VersionHeader::Relay)
            .with_nodes(Arc::new(FixedNodes))
    })
    .await;
    let resp = s
        .client
        .server_status(ServerStatusRequest {})
        .await
        .unwrap();
    assert_eq!(
        resp.metadata().get("hubble-relay-version").unwrap(),
        "1.2.3"
    );
    assert!(resp.metadata().get("hubble-server-version").is_none());
    let st = resp.into_inner();
    assert_eq!(st.version, "1.2.3");
    assert_eq!(st.num_flows, 3);
    assert_eq!(st.num_connected_nodes, Some(1u32.into()));
    assert_eq!(st.num_unavailable_nodes, Some(1u32.into()));
    assert_eq!(st.unavailable_nodes, ["vn2"]);

    let nodes = s.client.get_nodes(GetNodesRequest {}).await.unwrap();
    assert_eq!(nodes.into_inner().nodes[0].name, "vn1");

    let rs = collect(
        &mut s.client,
        GetFlowsRequest {
            number: 1,
            ..Default::default()
        },
    )
    .await;
    let Some(ResponseTypes::NodeStatus(first)) = &rs[0].response_types else {
        panic!("node status first, got {:?}", rs[0])
    };
    assert_eq!(first.state_change, NodeState::NodeConnected as i32);
    assert_eq!(
        uuids(&rs),
        ids([2]),
        "the preamble does not count against number"
    );
}

/// An agent's policy state, as `webb-agent` reports it.
#[derive(Debug)]
struct PolicyOf(&'static str, u32);

impl flow_observer::StatusExtrasSource for PolicyOf {
    fn status_extras(&self) -> StatusExtras {
        StatusExtras {
            policy: vec![NodePolicyStatus {
                node: self.0.into(),
                revision: self.1,
                ..Default::default()
            }],
        }
    }
}

/// Two connected nodes that answered with their own extras.
#[derive(Debug)]
struct NodesWithPolicy;

#[tonic::async_trait]
impl NodesSource for NodesWithPolicy {
    async fn nodes(&self) -> Result<Vec<Node>, tonic::Status> {
        Ok(vec![])
    }

    fn counts(&self) -> NodeCounts {
        NodeCounts {
            connected: 2,
            ..Default::default()
        }
    }

    async fn node_statuses(&self) -> Vec<flow_observer::NodeStatus> {
        [("vn1", 4), ("vn2", 9)]
            .into_iter()
            .map(|(node, revision)| flow_observer::NodeStatus {
                status: webb_proto::observer::ServerStatusResponse {
                    num_flows: 10,
                    ..Default::default()
                },
                extras: PolicyOf(node, revision).status_extras(),
            })
            .collect()
    }
}

#[tokio::test]
async fn status_extras_ride_in_a_header_and_a_relay_passes_on_every_nodes() {
    let mut agent = start_with(15, 3, |o| {
        o.with_status_extras(Arc::new(PolicyOf("vn1", 4)))
    })
    .await;
    let resp = agent
        .client
        .server_status(ServerStatusRequest {})
        .await
        .unwrap();
    let extras = webb_proto::status::read(resp.metadata()).unwrap().unwrap();
    assert_eq!(extras, PolicyOf("vn1", 4).status_extras());
    assert_eq!(resp.into_inner().num_flows, 3, "Hubble's answer unchanged");

    let mut relay = start_with(15, 3, |o| o.with_nodes(Arc::new(NodesWithPolicy))).await;
    let resp = relay
        .client
        .server_status(ServerStatusRequest {})
        .await
        .unwrap();
    let extras = webb_proto::status::read(resp.metadata()).unwrap().unwrap();
    let nodes: Vec<(&str, u32)> = extras
        .policy
        .iter()
        .map(|p| (p.node.as_str(), p.revision))
        .collect();
    assert_eq!(nodes, [("vn1", 4), ("vn2", 9)]);
    assert_eq!(resp.into_inner().num_flows, 23, "the nodes' counts summed");
}

#[tokio::test]
async fn health_follows_what_the_server_sets() {
    let ring = Arc::new(Ring::new(15).unwrap());
    let state = Arc::new(Observed::new("relay", ring, Arc::new(())));
    let health = flow_observer::Health::new(false).await;
    let services = Services {
        observer: ObserverService::new(state),
        peer: None,
        health: health.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        services
            .serve_tcp(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = HealthClient::new(channel.clone());
    let check = |service: &'static str| {
        let mut c = client.clone();
        async move {
            c.check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
        }
    };
    assert_eq!(
        check("hubble.server.Observer").await,
        ServingStatus::NotServing as i32
    );
    health.set_serving(true).await;
    for service in ["", "hubble.server.Observer"] {
        assert_eq!(
            check(service).await,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    let err = PeerClient::new(channel)
        .notify(NotifyRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unimplemented,
        "no peer service without one"
    );
    let _ = tx.send(());
}
