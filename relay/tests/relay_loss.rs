//! Honest loss and counts from every node, reported by the relay: an agent's `LostEvent`s are
//! counted in `webb_lost_events_total{stage,node}` under the agent's stage name and node, the
//! next flow of that node carries them in `webb.v1.FlowExtras.loss` for clients that ask, and
//! `ServerStatus` sums the connected nodes' counts with the relay's own (Hubble's relay
//! semantics). Two real agent Observer servers (flow-observer, the code the agent serves) on
//! loopback, the relay following them, a real Observer client.

mod common;

use common::{Agent, start_relay};
use std::sync::Arc;
use std::time::Duration;

use relay::metrics::{Metrics, MetricsConfig};
use relay::server::{Outputs, RelayServer};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use webb_proto::flow::{Flow, LostEventSource};
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, ServerStatusRequest, ServerStatusResponse,
};
use webb_proto::webb_v1::{FlowsRequestOptions, StageLoss};

/// Polls are bounded by this many 100 ms steps.
const STEPS: usize = 100;
const STEP: Duration = Duration::from_millis(100);
const RING: usize = 4095;

struct Cluster {
    agents: Vec<Agent>,
    relay: Arc<RelayServer>,
    metrics: Arc<Metrics>,
    client: ObserverClient<Channel>,
}

impl Cluster {
    /// Agents vn1 and vn2, a relay with metrics following both; returns once both nodes are
    /// connected and known by name (each sent one flow).
    async fn start() -> Cluster {
        let agents = vec![Agent::start("vn1"), Agent::start("vn2")];
        let metrics = Arc::new(Metrics::new(&MetricsConfig::from_flag("flow").unwrap()).unwrap());
        let peers = agents.iter().map(|a| a.addr.to_string()).collect();
        let outputs = Outputs {
            metrics: Some(metrics.clone()),
            ..Default::default()
        };
        let (relay, channel) = start_relay(peers, RING, outputs).await;
        let mut c = Cluster {
            agents,
            relay,
            metrics,
            client: ObserverClient::new(channel),
        };
        c.wait("both nodes connected", |s| {
            s.num_connected_nodes.as_ref().map(|v| v.value) == Some(2)
        })
        .await;
        for a in &c.agents {
            a.push(0, 1);
        }
        c.wait_for(|r| r.relay.status().seen_flows >= 2).await;
        c
    }

    async fn status(&mut self) -> ServerStatusResponse {
        self.client
            .server_status(ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    async fn wait(&mut self, what: &str, ok: impl Fn(&ServerStatusResponse) -> bool) {
        for _ in 0..STEPS {
            if ok(&self.status().await) {
                return;
            }
            tokio::time::sleep(STEP).await;
        }
        panic!("never {what}: {:?}", self.status().await);
    }

    async fn wait_for(&self, ok: impl Fn(&Self) -> bool) {
        for _ in 0..STEPS {
            if ok(self) {
                return;
            }
            tokio::time::sleep(STEP).await;
        }
        panic!("condition not reached within {:?}", STEP * STEPS as u32);
    }

    /// The flows a non-following `--last 100` request gets, with or without extras.
    async fn flows(&mut self, extras: bool) -> Vec<Flow> {
        let mut req = GetFlowsRequest {
            number: 100,
            ..Default::default()
        };
        if extras {
            webb_proto::options::set(
                &mut req,
                &FlowsRequestOptions {
                    include_payload: false,
                    include_extras: true,
                },
            );
        }
        let mut stream = self.client.get_flows(req).await.unwrap().into_inner();
        let mut out = Vec::new();
        while let Some(r) = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream ends")
        {
            let r: GetFlowsResponse = r.unwrap();
            if let Some(ResponseTypes::Flow(f)) = r.response_types {
                out.push(f);
            }
        }
        out
    }
}

fn loss_of(flow: &Flow) -> Vec<StageLoss> {
    webb_proto::extras::unpack(flow)
        .and_then(Result::ok)
        .map(|e| e.loss)
        .unwrap_or_default()
}

fn total(relay: &RelayServer, stage: &str, node: &str) -> u64 {
    relay
        .losses()
        .totals()
        .into_iter()
        .find(|(s, n, _)| s == stage && n == node)
        .map_or(0, |(_, _, c)| c)
}

#[tokio::test]
async fn an_agents_lost_events_count_under_its_stage_and_node() {
    let c = Cluster::start().await;
    c.agents[1].lose(LostEventSource::PerfEventRingBuffer, 42);
    c.agents[0].lose(LostEventSource::HubbleRingBuffer, 5);
    c.agents[1].lose(LostEventSource::PerfEventRingBuffer, 8);
    c.wait_for(|c| {
        total(&c.relay, "datapath_ring", "vn2") == 50
            && total(&c.relay, "hubble_ring_reader", "vn1") == 5
    })
    .await;
    let text = c.metrics.render(None).1;
    for line in [
        r#"webb_lost_events_total{stage="datapath_ring",node="vn2"} 50"#,
        r#"webb_lost_events_total{stage="hubble_ring_reader",node="vn1"} 5"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert_eq!(
        total(&c.relay, "datapath_ring", "vn1"),
        0,
        "vn1 lost nothing in its datapath"
    );
}

#[tokio::test]
async fn the_next_flow_of_a_node_carries_its_loss_for_clients_that_ask() {
    let mut c = Cluster::start().await;
    c.agents[1].lose(LostEventSource::PerfEventRingBuffer, 42);
    c.wait_for(|c| total(&c.relay, "datapath_ring", "vn2") == 42)
        .await;
    // vn1's flow comes first: it has no gap. Then vn2's two flows: the first closes the gap.
    c.agents[0].push(10, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.agents[1].push(20, 2);
    c.wait_for(|c| c.relay.status().seen_flows >= 5).await;

    let flows = c.flows(true).await;
    let carried: Vec<(String, Vec<StageLoss>)> = flows
        .iter()
        .map(|f| (f.node_name.clone(), loss_of(f)))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    assert_eq!(
        carried,
        [(
            "vn2".to_string(),
            vec![StageLoss {
                stage: "datapath_ring".into(),
                node: "vn2".into(),
                lost: 42,
            }]
        )],
        "exactly one flow, vn2's first after the loss, carries it"
    );
    let first_vn2_after = flows
        .iter()
        .filter(|f| f.node_name == "vn2")
        .nth(1)
        .expect("vn2's flows after the loss");
    assert!(!loss_of(first_vn2_after).is_empty(), "{first_vn2_after:?}");

    // A plain Hubble client never receives Webb's extras.
    let plain = c.flows(false).await;
    assert_eq!(plain.len(), flows.len());
    assert!(plain.iter().all(|f| f.extensions.is_none()));
}

#[tokio::test]
async fn server_status_sums_the_connected_nodes_with_the_relay_itself() {
    let mut c = Cluster::start().await;
    c.agents[0].push(1, 4);
    c.wait_for(|c| c.relay.status().seen_flows >= 6).await;
    let own = c.relay.status();
    assert_eq!(own.seen_flows, 6, "the relay's own ring saw the 6 flows");
    let s = c.status().await;
    assert_eq!(
        (s.max_flows, s.seen_flows),
        (3 * RING as u64, 6 + 5 + 1),
        "the relay's ring and vn1's 5 and vn2's 1: {s:?}"
    );
    assert_eq!(s.num_flows, own.num_flows + 5 + 1, "{s:?}");
    assert!(s.uptime_ns >= own.uptime_ns);
    assert_eq!(s.num_connected_nodes.map(|v| v.value), Some(2));
    assert_eq!(s.num_unavailable_nodes.map(|v| v.value), Some(0));

    // A node that goes away leaves the sums; the relay's own ring stays.
    let gone = c.agents.remove(0);
    drop(gone);
    c.wait("vn1 unavailable", |s| {
        s.num_unavailable_nodes.map(|v| v.value) == Some(1)
    })
    .await;
    let s = c.status().await;
    assert_eq!(s.max_flows, 2 * RING as u64, "{s:?}");
    assert_eq!(s.seen_flows, c.relay.status().seen_flows + 1, "{s:?}");
}
