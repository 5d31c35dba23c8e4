//! History + live continuity through the relay's `GetFlows` (issue 7): a real relay with a
//! small ring (15 entries) and a flow store in a temporary directory, fed by a real agent
//! Observer server on loopback. Older flows are written into the store directly; newer ones go
//! the real way (agent → relay → ring, and the relay also stores every flow it rings), so the
//! store and the ring overlap exactly as in production. A real Observer client then checks
//! that `--last N`, `--first N`, `--since` and `--follow` read the store, continue with the
//! ring and then live flows: every flow once, in time order, none missing.

mod common;

use common::{Agent, start_relay};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flow_store::{FlowStore, StoreConfig};
use relay::server::{Outputs, RelayServer};
use tokio_stream::StreamExt;
use tonic::Streaming;
use tonic::transport::Channel;
use webb_proto::Timestamp;
use webb_proto::flow::Flow;
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::{GetFlowsRequest, GetFlowsResponse, ServerStatusRequest};

/// The relay's ring: small, so that most of what the relay saw is only in the store.
const RING: usize = 15;
/// Flows written into the store directly (older than anything the relay saw).
const STORED: usize = 20;
/// Flows pushed through the agent and the relay (the ring keeps the newest `RING`).
const RINGED: usize = 25;
/// Every wait is bounded by this.
const WAIT: Duration = Duration::from_secs(20);
/// Polls step by this.
const STEP: Duration = Duration::from_millis(50);
/// Flows of one group are this far apart (1 ms).
const GAP_NS: u64 = 1_000_000;

/// A unique directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "webb-relay-history-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP flow of node `vn1` named `uuid` at `time_ns`.
fn flow(i: usize, uuid: String, time_ns: u64) -> Flow {
    let mut f = webb_proto::sample::tcp(i);
    f.uuid = uuid;
    f.node_name = "vn1".into();
    f.time = Some(Timestamp::from_unix_nanos(time_ns));
    f
}

fn time_ns(f: &Flow) -> u64 {
    u64::try_from(f.time.expect("a time").unix_nanos()).unwrap()
}

fn ts(ns: u64) -> Option<Timestamp> {
    Some(Timestamp::from_unix_nanos(ns))
}

fn uuids<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> Vec<String> {
    flows.into_iter().map(|f| f.uuid.clone()).collect()
}

/// The flows of a GetFlows answer (node status and lost events left out).
fn flows_of(responses: &[GetFlowsResponse]) -> Vec<Flow> {
    responses
        .iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// No flow twice, and times never go back.
fn assert_once_in_time_order(what: &str, flows: &[Flow]) {
    let mut seen = HashSet::new();
    for f in flows {
        assert!(
            seen.insert(f.uuid.clone()),
            "{what}: flow {} delivered twice: {:?}",
            f.uuid,
            uuids(flows)
        );
    }
    for w in flows.windows(2) {
        assert!(
            time_ns(&w[0]) <= time_ns(&w[1]),
            "{what}: {} after {} goes back in time: {:?}",
            w[1].uuid,
            w[0].uuid,
            uuids(flows)
        );
    }
}

/// A relay with a 15-entry ring and a store holding `stored` (written directly, flushed)
/// plus everything the relay rang, fed by one agent; `ringed` went through the relay.
struct Setup {
    agent: Agent,
    store: Arc<FlowStore>,
    relay: Arc<RelayServer>,
    client: ObserverClient<Channel>,
    stored: Vec<Flow>,
    ringed: Vec<Flow>,
    /// Base of the times of the flows (Unix ns); stored flows from here, ringed 1 s later.
    base: u64,
    _dir: TempDir,
}

impl Setup {
    async fn start(name: &str) -> Setup {
        let dir = TempDir::new(name);
        let store = FlowStore::open(StoreConfig {
            retention_age: None,
            seal_interval: Duration::from_millis(20),
            ..StoreConfig::new(&dir.0)
        })
        .unwrap();
        let store = Arc::new(store);
        // Half an hour ago: older than anything live, well inside one partition's hour range.
        let now = u64::try_from(Timestamp::now().unix_nanos()).unwrap();
        let base = now - 1_800_000_000_000;
        let stored: Vec<Flow> = (0..STORED)
            .map(|i| flow(i, format!("stored-{i:02}"), base + i as u64 * GAP_NS))
            .collect();
        let ringed: Vec<Flow> = (0..RINGED)
            .map(|i| {
                flow(
                    100 + i,
                    format!("ringed-{i:02}"),
                    base + 1_000_000_000 + i as u64 * GAP_NS,
                )
            })
            .collect();
        for f in &stored {
            assert!(store.append_blocking(f.clone()));
        }
        flush(&store).await;

        let agent = Agent::start("vn1");
        assert_eq!(
            flow_observer::ring::validate_capacity(RING).unwrap(),
            RING,
            "a valid ring size"
        );
        let outputs = Outputs {
            store: Some(store.clone()),
            ..Default::default()
        };
        let (relay, channel) = start_relay(vec![agent.addr.to_string()], RING, outputs).await;
        let mut setup = Setup {
            agent,
            store,
            relay,
            client: ObserverClient::new(channel),
            stored,
            ringed,
            base,
            _dir: dir,
        };
        // The relay follows the agent from now on: push only once it is connected.
        setup
            .wait_until("the agent connected", |s| {
                s.num_connected_nodes.map(|n| n.value) == Some(1)
            })
            .await;
        let ringed = setup.ringed.clone();
        setup.push_live(&ringed).await;
        setup
    }

    /// Pushes `flows` through the agent; returns once the relay rang and stored them all and
    /// the store made them visible.
    async fn push_live(&mut self, flows: &[Flow]) {
        let seen = self.relay.status().seen_flows + flows.len() as u64;
        let appended = self.store.stats().appended + flows.len() as u64;
        self.agent.push_flows(flows);
        self.wait_until(&format!("{seen} flows seen"), |s| s.seen_flows >= seen)
            .await;
        let store = self.store.clone();
        tokio::time::timeout(WAIT, async {
            while store.stats().appended < appended {
                tokio::time::sleep(STEP).await;
            }
        })
        .await
        .expect("the relay stores every flow it rings");
        flush(&self.store).await;
    }

    async fn wait_until(
        &mut self,
        what: &str,
        ok: impl Fn(&webb_proto::observer::ServerStatusResponse) -> bool,
    ) {
        let client = &mut self.client;
        tokio::time::timeout(WAIT, async {
            loop {
                let s = client
                    .server_status(ServerStatusRequest {})
                    .await
                    .unwrap()
                    .into_inner();
                if ok(&s) {
                    return;
                }
                tokio::time::sleep(STEP).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("relay status never showed {what}"));
    }

    /// The flows of a non-following request's complete answer.
    async fn get_flows(&mut self, req: GetFlowsRequest) -> Vec<Flow> {
        let mut stream = self.open(req).await;
        let mut out = Vec::new();
        while let Some(r) = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("the answer ends in time")
        {
            out.push(r.expect("a response, not an error"));
        }
        flows_of(&out)
    }

    async fn open(&mut self, req: GetFlowsRequest) -> Streaming<GetFlowsResponse> {
        tokio::time::timeout(WAIT, self.client.get_flows(req))
            .await
            .expect("GetFlows answers in time")
            .expect("GetFlows accepted")
            .into_inner()
    }

    /// The flows the relay's ring holds now (a request with neither `number` nor `since`).
    async fn ring_flows(&mut self) -> Vec<String> {
        uuids(&self.get_flows(GetFlowsRequest::default()).await)
    }

    /// Everything written, oldest first: stored, then ringed.
    fn all(&self) -> Vec<String> {
        uuids(self.stored.iter().chain(&self.ringed))
    }
}

async fn flush(store: &Arc<FlowStore>) {
    let store = store.clone();
    tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || store.flush()))
        .await
        .expect("the store flushes in time")
        .unwrap()
        .unwrap();
}

/// Reads `n` flows of a following stream (other responses skipped).
async fn next_flows(stream: &mut Streaming<GetFlowsResponse>, n: usize) -> Vec<Flow> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("still waiting after {:?}", uuids(&out)))
            .expect("the stream stays open")
            .expect("a response, not an error");
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            out.push(f);
        }
    }
    out
}

/// Flows a following stream sends within `quiet` (none expected).
async fn extra_flows(stream: &mut Streaming<GetFlowsResponse>, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout(quiet, stream.next()).await {
        if let Ok(GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(f)),
            ..
        }) = r
        {
            out.push(f.uuid);
        }
    }
    out
}

/// The ring's flows are the newest of `sent` (a suffix, in order), all but the oldest few:
/// the ring's 15 entries may also hold a node status or lost event of the relay.
fn assert_ring_holds_newest(ring: &[String], sent: &[String]) {
    assert!(
        (RING - 2..=RING).contains(&ring.len()) && sent.ends_with(ring),
        "the ring holds the newest flows only: {ring:?}"
    );
}

#[tokio::test]
async fn the_ring_keeps_only_the_newest_flows_and_the_store_has_all() {
    let mut s = Setup::start("ring").await;
    // The precondition of every other test here: the ring lost the oldest ringed flows, the
    // store has every flow (written directly or stored by the relay).
    let ring = s.ring_flows().await;
    assert_ring_holds_newest(&ring, &uuids(&s.ringed));
    let all = s
        .store
        .query_flows(&flow_store::FlowQuery::default())
        .await
        .unwrap();
    assert_eq!(uuids(&all), s.all(), "the store holds every flow once");
}

#[tokio::test]
async fn last_n_beyond_the_ring_is_the_newest_n_across_store_and_ring() {
    let mut s = Setup::start("last").await;
    let all = s.all();
    for n in [RING + 1, 30, STORED + RINGED] {
        let got = s
            .get_flows(GetFlowsRequest {
                number: n as u64,
                ..Default::default()
            })
            .await;
        assert_once_in_time_order(&format!("--last {n}"), &got);
        assert_eq!(
            uuids(&got),
            all[all.len() - n..],
            "--last {n}: the newest {n} of store and ring, in time order"
        );
    }
    // More than exists: everything, once.
    let got = s
        .get_flows(GetFlowsRequest {
            number: 1000,
            ..Default::default()
        })
        .await;
    assert_once_in_time_order("--last 1000", &got);
    assert_eq!(uuids(&got), all);
}

#[tokio::test]
async fn first_n_starts_at_the_oldest_stored_flow() {
    let mut s = Setup::start("first").await;
    let all = s.all();
    // 5 from the store only; 25 reaching flows the relay stored but the ring lost; 40 crossing
    // from the store into the ring; everything.
    for n in [5, 25, 40, STORED + RINGED] {
        let got = s
            .get_flows(GetFlowsRequest {
                first: true,
                number: n as u64,
                ..Default::default()
            })
            .await;
        assert_once_in_time_order(&format!("--first {n}"), &got);
        assert_eq!(
            uuids(&got),
            all[..n],
            "--first {n}: the oldest {n}, from the store on into the ring"
        );
    }
}

#[tokio::test]
async fn since_before_the_ring_returns_the_store_then_the_ring_in_order() {
    let mut s = Setup::start("since").await;
    let all = s.all();
    let since = time_ns(&s.stored[5]);
    let got = s
        .get_flows(GetFlowsRequest {
            since: ts(since),
            ..Default::default()
        })
        .await;
    assert_once_in_time_order("--since", &got);
    assert_eq!(uuids(&got), all[5..], "from stored-05 through the ring");

    // A since between two flows the ring lost (both only in the store now).
    let since = time_ns(&s.ringed[3]) - GAP_NS / 2;
    let got = s
        .get_flows(GetFlowsRequest {
            since: ts(since),
            ..Default::default()
        })
        .await;
    assert_once_in_time_order("--since ringed-03", &got);
    assert_eq!(uuids(&got), all[STORED + 3..]);

    // until inside the ring (inclusive): the store, then the ring up to it.
    let until = time_ns(&s.ringed[17]);
    let got = s
        .get_flows(GetFlowsRequest {
            since: ts(time_ns(&s.stored[5])),
            until: ts(until),
            ..Default::default()
        })
        .await;
    assert_once_in_time_order("--since --until", &got);
    assert_eq!(uuids(&got), all[5..STORED + 18]);

    // until before the ring: the store only.
    let got = s
        .get_flows(GetFlowsRequest {
            since: ts(s.base),
            until: ts(time_ns(&s.stored[9])),
            ..Default::default()
        })
        .await;
    assert_eq!(uuids(&got), all[..10]);
}

#[tokio::test]
async fn follow_continues_from_history_and_ring_into_live_flows() {
    let mut s = Setup::start("follow").await;
    let all = s.all();
    let mut stream = s
        .open(GetFlowsRequest {
            since: ts(time_ns(&s.stored[10])),
            follow: true,
            ..Default::default()
        })
        .await;
    let want = all[10..].to_vec();
    let got = next_flows(&mut stream, want.len()).await;
    assert_once_in_time_order("history and ring of --since --follow", &got);
    assert_eq!(uuids(&got), want);

    let live: Vec<Flow> = (0..3)
        .map(|i| {
            flow(
                200 + i,
                format!("live-{i}"),
                s.base + 2_000_000_000 + i as u64 * GAP_NS,
            )
        })
        .collect();
    s.push_live(&live).await;
    let got_live = next_flows(&mut stream, live.len()).await;
    assert_eq!(
        uuids(&got_live),
        uuids(&live),
        "live flows follow, in order"
    );
    let extra = extra_flows(&mut stream, Duration::from_millis(500)).await;
    assert!(extra.is_empty(), "nothing more, nothing twice: {extra:?}");
}

#[tokio::test]
async fn last_n_follow_continues_from_history_and_ring_into_live_flows() {
    let mut s = Setup::start("lastfollow").await;
    let all = s.all();
    let n = 30;
    let mut stream = s
        .open(GetFlowsRequest {
            number: n as u64,
            follow: true,
            ..Default::default()
        })
        .await;
    let got = next_flows(&mut stream, n).await;
    assert_once_in_time_order("--last 30 --follow", &got);
    assert_eq!(uuids(&got), all[all.len() - n..]);

    let live = vec![flow(300, "live-0".into(), s.base + 2_000_000_000)];
    s.push_live(&live).await;
    let got_live = next_flows(&mut stream, 1).await;
    assert_eq!(uuids(&got_live), ["live-0"]);
    let extra = extra_flows(&mut stream, Duration::from_millis(500)).await;
    assert!(extra.is_empty(), "nothing more, nothing twice: {extra:?}");
}

/// A flow that reaches the relay after newer ones (a node whose clock is behind, or whose
/// stream lagged beyond the merge's drain timeout) sits in the ring behind newer flows, and
/// the relay stored it too: it must still be delivered once, and no stored flow skipped.
#[tokio::test]
async fn a_late_flow_in_the_ring_is_delivered_once_with_history() {
    let mut s = Setup::start("late").await;
    // Between ringed-04 and ringed-05, both of which the ring has already lost.
    let late = flow(400, "late".into(), time_ns(&s.ringed[4]) + GAP_NS / 2);
    s.push_live(std::slice::from_ref(&late)).await;
    let mut ringed_then_late = uuids(&s.ringed);
    ringed_then_late.push("late".into());
    let ring = s.ring_flows().await;
    assert_ring_holds_newest(&ring, &ringed_then_late);
    assert!(
        !ring.contains(&"ringed-05".to_string()),
        "the ring lost the flows around the late one: {ring:?}"
    );

    let mut every = s.all();
    every.push("late".into());
    every.sort();
    let mut failures = Vec::new();
    for (what, req) in [
        (
            "--since",
            GetFlowsRequest {
                since: ts(s.base),
                ..Default::default()
            },
        ),
        (
            "--first",
            GetFlowsRequest {
                first: true,
                number: 1000,
                ..Default::default()
            },
        ),
        (
            "--last",
            GetFlowsRequest {
                number: 1000,
                ..Default::default()
            },
        ),
    ] {
        let got = s.get_flows(req).await;
        let mut ids = uuids(&got);
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != ids.len() {
            failures.push(format!("{what}: a flow delivered twice: {ids:?}"));
        }
        ids.sort();
        if ids != every {
            failures.push(format!("{what}: not every flow once: {ids:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
