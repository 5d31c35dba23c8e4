//! The relay server end to end on loopback: two real agent Observer servers (flow-observer, the
//! same code the agent serves), the relay following them, and a real Observer client asking the
//! relay what `hubble observe --server <relay>` asks.

mod common;

use common::{Agent, start_relay};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use relay::server::{Outputs, RelayServer};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use webb_proto::flow::{Flow, FlowFilter, layer4};
use webb_proto::health::pb::HealthCheckRequest;
use webb_proto::health::pb::health_check_response::ServingStatus;
use webb_proto::health::pb::health_client::HealthClient;
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNodesRequest, ServerStatusRequest, ServerStatusResponse,
};
use webb_proto::relay::NodeState;

/// Polls and waits are bounded by this many 100 ms steps.
const STEPS: usize = 100;
const STEP: Duration = Duration::from_millis(100);

/// A node count of ServerStatus (a wrapper message).
macro_rules! n {
    ($v:expr) => {
        $v.as_ref().map(|v| v.value)
    };
}

fn flows(responses: &[GetFlowsResponse]) -> Vec<&Flow> {
    responses
        .iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f),
            _ => None,
        })
        .collect()
}

fn source_port(f: &Flow) -> u32 {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(t)) => t.source_port,
        other => panic!("a TCP flow, got {other:?}"),
    }
}

struct Cluster {
    agents: Vec<Agent>,
    relay: Arc<RelayServer>,
    client: ObserverClient<Channel>,
    channel: Channel,
}

impl Cluster {
    /// Two agents vn1 and vn2, the relay following both, and a client of the relay; returns
    /// once both nodes are connected and known by name (each sent a first flow).
    async fn start() -> Cluster {
        let agents = vec![Agent::start("vn1"), Agent::start("vn2")];
        let peers = agents.iter().map(|a| a.addr.to_string()).collect();
        let (relay, channel) = start_relay(peers, 4095, Outputs::default()).await;
        let mut cluster = Cluster {
            agents,
            relay,
            client: ObserverClient::new(channel.clone()),
            channel,
        };
        cluster
            .wait_status("both nodes connected", |s| {
                n!(s.num_connected_nodes) == Some(2)
            })
            .await;
        // A node is known by its name from its first flow.
        for a in &cluster.agents {
            a.push(0, 1);
        }
        cluster.wait_seen(2).await;
        cluster
    }

    async fn status(&mut self) -> ServerStatusResponse {
        self.client
            .server_status(ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    async fn wait_status(
        &mut self,
        what: &str,
        ok: impl Fn(&ServerStatusResponse) -> bool,
    ) -> ServerStatusResponse {
        for _ in 0..STEPS {
            let s = self.status().await;
            if ok(&s) {
                return s;
            }
            tokio::time::sleep(STEP).await;
        }
        panic!(
            "relay status never showed {what}: {:?}",
            self.status().await
        );
    }

    /// Waits until the relay's own ring has seen `flows` (ServerStatus adds the nodes' counts).
    async fn wait_seen(&mut self, flows: u64) {
        for _ in 0..STEPS {
            if self.relay.status().seen_flows >= flows {
                return;
            }
            tokio::time::sleep(STEP).await;
        }
        panic!(
            "the relay's ring never saw {flows} flows: {:?}",
            self.relay.status()
        );
    }

    /// Every response of a non-following request.
    async fn get_flows(&mut self, req: GetFlowsRequest) -> Vec<GetFlowsResponse> {
        let mut stream = self.client.get_flows(req).await.unwrap().into_inner();
        let mut out = Vec::new();
        while let Some(r) = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("stream ends")
        {
            out.push(r.unwrap());
        }
        out
    }

    async fn health(&self, service: &str) -> i32 {
        HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    }
}

/// The source port `webb_proto::sample::tcp(i)` gives.
fn port_of(i: usize) -> u32 {
    40_000 + (i % 20_000) as u32
}

#[tokio::test]
async fn get_flows_number_counts_across_both_nodes_from_the_relay_ring() {
    let mut c = Cluster::start().await;
    c.agents[0].push(1, 10);
    c.agents[1].push(1, 10);
    c.wait_seen(22).await;

    let got = c
        .get_flows(GetFlowsRequest {
            number: 15,
            ..Default::default()
        })
        .await;
    let first = got.first().expect("a response");
    match &first.response_types {
        Some(ResponseTypes::NodeStatus(s)) => {
            assert_eq!(s.state_change, NodeState::NodeConnected as i32);
            let names: BTreeSet<&str> = s.node_names.iter().map(String::as_str).collect();
            assert_eq!(names, BTreeSet::from(["vn1", "vn2"]));
        }
        other => panic!("the stream starts with NODE_CONNECTED, got {other:?}"),
    }
    let flows = flows(&got);
    assert_eq!(flows.len(), 15, "number counts flows of the whole cluster");
    let nodes: BTreeSet<&str> = flows.iter().map(|f| f.node_name.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["vn1", "vn2"]));
}

#[tokio::test]
async fn filters_on_the_relay_select_exactly_the_matching_flows() {
    let mut c = Cluster::start().await;
    c.agents[0].push(1, 10);
    c.agents[1].push(1, 7);
    c.wait_seen(19).await;
    let got = c
        .get_flows(GetFlowsRequest {
            number: 100,
            whitelist: vec![FlowFilter {
                node_name: vec!["vn2".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await;
    let flows = flows(&got);
    assert_eq!(flows.len(), 8, "vn2's first flow and the 7 pushed after");
    assert!(flows.iter().all(|f| f.node_name == "vn2"));
}

#[tokio::test]
async fn follow_receives_new_flows_from_both_nodes() {
    let mut c = Cluster::start().await;
    let mut stream = c
        .client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The stream is open once its preamble arrived; flows pushed after it must follow.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        first.response_types,
        Some(ResponseTypes::NodeStatus(_))
    ));
    c.agents[0].push(100, 3);
    c.agents[1].push(200, 3);
    let mut want: BTreeSet<(String, u32)> = (100..103)
        .map(|i| ("vn1".to_string(), port_of(i)))
        .chain((200..203).map(|i| ("vn2".to_string(), port_of(i))))
        .collect();
    while !want.is_empty() {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("still waiting for {want:?}"))
            .unwrap()
            .unwrap();
        if let Some(ResponseTypes::Flow(f)) = &r.response_types {
            want.remove(&(f.node_name.clone(), source_port(f)));
        }
    }
}

#[tokio::test]
async fn status_nodes_and_health_show_both_agents_connected() {
    let mut c = Cluster::start().await;
    c.agents[0].push(1, 4);
    c.wait_seen(6).await;
    let s = c.status().await;
    assert_eq!(n!(s.num_connected_nodes), Some(2));
    assert_eq!(n!(s.num_unavailable_nodes), Some(0));
    // Hubble's relay sums the nodes' counts; this relay adds its own ring (the 6 flows and
    // its node status events) to vn1's 5 and vn2's 1 (relay_loss.rs has the details).
    assert_eq!(s.seen_flows, 6 + 6, "{s:?}");
    assert!(s.num_flows >= 6 + 6 && s.max_flows == 3 * 4095, "{s:?}");

    let nodes = c
        .client
        .get_nodes(GetNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let mut seen: Vec<(String, i32, u64, String)> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.state, n.num_flows, n.address.clone()))
        .collect();
    seen.sort();
    let connected = NodeState::NodeConnected as i32;
    assert_eq!(
        seen,
        [
            ("vn1".into(), connected, 5, c.agents[0].addr.to_string()),
            ("vn2".into(), connected, 1, c.agents[1].addr.to_string()),
        ],
        "name, state, the node's own ring, address"
    );
    for service in ["", "hubble.server.Observer"] {
        assert_eq!(c.health(service).await, ServingStatus::Serving as i32);
    }
    assert!(c.relay.losses().totals().is_empty(), "nothing dropped");
}

#[tokio::test]
async fn health_is_not_serving_while_no_peer_is_connected() {
    // A port with nothing behind it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (_relay, channel) = start_relay(vec![addr.to_string()], 4095, Outputs::default()).await;
    let mut client = ObserverClient::new(channel.clone());
    // Let the pool try (and fail) a few times.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for service in ["", "hubble.server.Observer"] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::NotServing as i32,
            "service {service:?}"
        );
    }
    let s = client
        .server_status(ServerStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (n!(s.num_connected_nodes), n!(s.num_unavailable_nodes)),
        (Some(0), Some(1))
    );
}

#[tokio::test]
async fn a_stopped_agent_is_reported_unavailable_and_the_other_keeps_flowing() {
    let mut c = Cluster::start().await;
    let mut stream = c
        .client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.agents[0].stop();
    let s = c
        .wait_status("vn1 unavailable", |s| {
            n!(s.num_unavailable_nodes) == Some(1)
        })
        .await;
    assert_eq!(s.unavailable_nodes, ["vn1"]);
    assert_eq!(n!(s.num_connected_nodes), Some(1));
    let nodes = c
        .client
        .get_nodes(GetNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let vn1 = nodes.iter().find(|n| n.name == "vn1").expect("vn1 listed");
    assert_ne!(vn1.state, NodeState::NodeConnected as i32);
    assert_eq!(
        c.health("").await,
        ServingStatus::Serving as i32,
        "vn2 is still up"
    );

    c.agents[1].push(300, 2);
    let mut saw_vn1_down = false;
    let mut want: BTreeSet<u32> = (300..302).map(port_of).collect();
    while !want.is_empty() {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("still waiting for vn2's {want:?}"))
            .unwrap()
            .unwrap();
        match &r.response_types {
            Some(ResponseTypes::Flow(f)) if f.node_name == "vn2" => {
                want.remove(&source_port(f));
            }
            Some(ResponseTypes::NodeStatus(s))
                if s.state_change == NodeState::NodeUnavailable as i32 =>
            {
                saw_vn1_down |= s.node_names.iter().any(|n| n == "vn1");
            }
            _ => {}
        }
    }
    assert!(saw_vn1_down, "the follower was told vn1 became unavailable");
}

#[tokio::test]
async fn an_agents_lost_events_reach_relay_clients_under_its_name() {
    let mut c = Cluster::start().await;
    let mut stream = c
        .client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.agents[1].lose(webb_proto::flow::LostEventSource::PerfEventRingBuffer, 42);
    loop {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("vn2's lost event within 10 s")
            .unwrap()
            .unwrap();
        if let Some(ResponseTypes::LostEvents(ev)) = &r.response_types {
            assert_eq!(r.node_name, "vn2");
            assert_eq!(ev.num_events_lost, 42);
            break;
        }
    }
}
