//! The relay's continuous pipeline: peer pool → time-ordered merge → L7 stage → a sink (the
//! relay's ring and live subscribers). Node status events join the stream as `node_status`
//! responses. The sink is called synchronously for every response, in order, and must not
//! block: it is where the relay stops waiting for anyone.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webb_proto::observer::GetFlowsResponse;
use webb_proto::observer::get_flows_response::ResponseTypes;

use crate::l7::{DnsStats, HttpConfig, HttpStats, L7Stage, L7Stats};
use crate::merge::{self, MergeConfig, MergeStats};
use crate::peers::{NodeInfo, PeerPool, PoolConfig, PoolOutputs};

/// Settings of the whole pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub pool: PoolConfig,
    pub merge: MergeConfig,
    pub http: HttpConfig,
    /// Responses queued from all peers towards the merge (full → dropped, counted per node).
    /// Each holds a decoded `Flow` (~1.4 KB inline plus its strings): 16 Ki is a third of a
    /// second at 50k flows/s and at most ~40 MB, where 64 Ki could hold ~160 MB.
    pub queue: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            pool: PoolConfig::default(),
            merge: MergeConfig::default(),
            http: HttpConfig::default(),
            queue: 16_384,
        }
    }
}

/// Counters of the stages after the pool, as last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub http: HttpStats,
    pub dns: DnsStats,
    pub l7: L7Stats,
    pub merge: MergeStats,
    /// Responses handed to the sink.
    pub emitted: u64,
}

/// Publish counters every this many responses (and at the end).
const PUBLISH_EVERY: u64 = 256;

/// A running pipeline. Dropping it stops the peers; the merge then drains and ends.
pub struct Pipeline {
    pool: PeerPool,
    stats: Arc<Mutex<PipelineStats>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts the pool and the merge/L7 task (within a tokio runtime).
    pub fn start(
        config: PipelineConfig,
        mut sink: impl FnMut(GetFlowsResponse) + Send + 'static,
    ) -> Self {
        let (flows_tx, flows_rx) = mpsc::channel(config.queue.max(1));
        let (status_tx, mut status_rx) = mpsc::channel(1024);
        let pool = PeerPool::start(
            config.pool,
            PoolOutputs {
                flows: flows_tx.clone(),
                status: status_tx,
            },
        );
        // Node states are rare; they may wait for room in the queue rather than be lost.
        tokio::spawn(async move {
            while let Some(ev) = status_rx.recv().await {
                let now = webb_proto::Timestamp::now();
                let resp = GetFlowsResponse {
                    node_name: String::new(),
                    time: Some(now),
                    response_types: Some(ResponseTypes::NodeStatus(ev)),
                };
                if flows_tx.send(resp).await.is_err() {
                    return;
                }
            }
        });

        let stats = Arc::new(Mutex::new(PipelineStats::default()));
        let published = stats.clone();
        let mut l7 = L7Stage::new(config.http);
        let mut out = Vec::new();
        let mut emitted = 0u64;
        let mut next_publish = 0u64;
        let task = tokio::spawn(async move {
            let merge_stats = merge::run(flows_rx, config.merge, merge::wall_clock_ns, |resp| {
                emitted += process(&mut l7, resp, &mut out, &mut sink);
                if emitted >= next_publish {
                    next_publish = emitted + PUBLISH_EVERY;
                    if let Ok(mut s) = published.lock() {
                        s.http.clone_from(l7.http().stats());
                        s.dns.clone_from(l7.dns().stats());
                        s.l7.clone_from(l7.stats());
                        s.emitted = emitted;
                    }
                }
            })
            .await;
            if let Ok(mut s) = published.lock() {
                s.http.clone_from(l7.http().stats());
                s.dns.clone_from(l7.dns().stats());
                s.l7.clone_from(l7.stats());
                s.merge = merge_stats;
                s.emitted = emitted;
            }
        });
        Pipeline { pool, stats, task }
    }

    /// Every peer and its state.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.pool.nodes()
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the peers and waits until the merge has drained into the sink.
    pub async fn shutdown(self) -> PipelineStats {
        let Pipeline { pool, stats, task } = self;
        drop(pool);
        let _ = task.await;
        stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// One merged response through the L7 stage into the sink; returns how many went out.
fn process(
    l7: &mut L7Stage,
    resp: GetFlowsResponse,
    out: &mut Vec<webb_proto::flow::Flow>,
    sink: &mut impl FnMut(GetFlowsResponse),
) -> u64 {
    match resp.response_types {
        Some(ResponseTypes::Flow(flow)) => {
            l7.process(flow, out);
            let n = out.len() as u64;
            for flow in out.drain(..) {
                sink(GetFlowsResponse {
                    node_name: flow.node_name.clone(),
                    time: flow.time,
                    response_types: Some(ResponseTypes::Flow(flow)),
                });
            }
            n
        }
        other => {
            sink(GetFlowsResponse {
                response_types: other,
                ..resp
            });
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_agent::{Agent, serve};
    use std::time::Duration;
    use webb_proto::Timestamp;
    use webb_proto::flow::{
        Flow, FlowType, Ip, Layer4, Tcp, TrafficDirection, Verdict, layer4, layer7,
    };
    use webb_proto::relay::NodeState;
    use webb_proto::webb_v1::{CapturedPayload, FlowExtras};

    fn http_packet(from_server: bool, t: u64, data: &[u8], seq: u32) -> Flow {
        let (c, s) = (("198.18.0.10", 40000), ("198.18.0.20", 80));
        let (src, dst) = if from_server { (s, c) } else { (c, s) };
        let mut f = Flow {
            time: Some(Timestamp::from_unix_nanos(t)),
            verdict: Verdict::Forwarded as i32,
            r#type: FlowType::L3L4 as i32,
            ip: Some(Ip {
                source: src.0.into(),
                destination: dst.0.into(),
                ip_version: 1,
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: src.1,
                    destination_port: dst.1,
                    flags: None,
                })),
            }),
            traffic_direction: TrafficDirection::Egress as i32,
            ..Default::default()
        };
        webb_proto::extras::attach(
            &mut f,
            Some(&FlowExtras {
                payload: Some(CapturedPayload {
                    data: data.to_vec(),
                    seq,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
        f
    }

    #[tokio::test]
    async fn flows_from_an_agent_come_out_merged_with_l7_flows_and_without_payload() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Recent flows: the drain releases what is older than now − timeout.
        let t0 = Timestamp::now().unix_nanos() as u64 - 1_000_000_000;
        let flows = vec![
            http_packet(false, t0, b"GET /x HTTP/1.1\r\nHost: web\r\n\r\n", 1),
            http_packet(
                true,
                t0 + 3_000_000,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                7,
            ),
        ];
        let (requests, _r) = mpsc::unbounded_channel();
        let (_running, stopping) = tokio::sync::watch::channel(false);
        let _stop = serve(
            Agent {
                node: "vn1".into(),
                flows,
                requests,
                stopping,
            },
            listener,
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let pipeline = Pipeline::start(
            PipelineConfig {
                pool: PoolConfig {
                    peers: vec![addr.to_string()],
                    ..Default::default()
                },
                merge: MergeConfig {
                    drain_timeout: Duration::from_millis(100),
                    ..Default::default()
                },
                ..Default::default()
            },
            move |r| {
                let _ = tx.send(r);
            },
        );
        let mut got = Vec::new();
        while got.len() < 5 {
            let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("5 responses within 10 s")
                .unwrap();
            got.push(r);
        }
        let status = got
            .iter()
            .find_map(|r| match &r.response_types {
                Some(ResponseTypes::NodeStatus(s)) => Some(s),
                _ => None,
            })
            .expect("a node status");
        assert_eq!(status.state_change, NodeState::NodeConnected as i32);
        let flows: Vec<&Flow> = got
            .iter()
            .filter_map(|r| match &r.response_types {
                Some(ResponseTypes::Flow(f)) => Some(f),
                _ => None,
            })
            .collect();
        assert!(
            flows.iter().all(|f| f.extensions.is_none()),
            "payload stripped"
        );
        let summaries: Vec<&str> = flows
            .iter()
            .filter(|f| f.r#type == FlowType::L7 as i32)
            .map(|f| f.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            [
                "HTTP/1.1 GET http://web/x",
                "HTTP/1.1 404 3ms (GET http://web/x)"
            ]
        );
        let l7 = flows
            .iter()
            .find_map(|f| match f.l7.as_ref()?.record.as_ref()? {
                layer7::Record::Http(h) if h.code == 404 => Some(f),
                _ => None,
            })
            .unwrap();
        assert_eq!(l7.node_name, "vn1");
        let stats = pipeline.shutdown().await;
        assert_eq!((stats.http.requests, stats.http.responses), (1, 1));
        assert_eq!(stats.emitted, 5);
    }
}
