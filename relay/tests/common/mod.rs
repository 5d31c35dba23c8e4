//! What the relay's integration tests share: an agent's real Observer server on loopback.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flow_observer::{Health, Observed, ObserverService, PeerInfo, PeerService, Ring, Services};
use relay::merge::MergeConfig;
use relay::peers::PoolConfig;
use relay::pipeline::PipelineConfig;
use relay::server::{Outputs, RelayConfig, RelayServer};
use tonic::transport::Channel;
use webb_proto::Timestamp;
use webb_proto::flow::{Flow, LostEvent, LostEventSource};

/// Flows an agent's ring holds.
const AGENT_RING: usize = 4095;

/// One agent's Observer (and optionally Peer) server in a runtime of its own, so that stopping
/// it closes every connection at once, as when the agent's process ends (and a runtime may not
/// be dropped inside the test's own).
pub struct Agent {
    pub name: String,
    pub addr: SocketAddr,
    pub observed: Arc<Observed>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Agent {
    /// An agent named `name` with no Peer service.
    pub fn start(name: &str) -> Agent {
        Agent::start_announcing(name, |_| None)
    }

    /// An agent whose Peer service announces what `announced` makes of its address (`None`: no
    /// Peer service).
    pub fn start_announcing(
        name: &str,
        announced: impl Fn(&SocketAddr) -> Option<Vec<PeerInfo>>,
    ) -> Agent {
        Agent::start_serving(name, announced, None)
    }

    /// An agent serving TLS (`tls`: its server TLS and what it grants clients).
    pub fn start_tls(
        name: &str,
        tls: Arc<webb_security::ServerTls>,
        access: webb_security::Access,
    ) -> Agent {
        Agent::start_serving(name, |_| None, Some((tls, access)))
    }

    fn start_serving(
        name: &str,
        announced: impl Fn(&SocketAddr) -> Option<Vec<PeerInfo>>,
        tls: Option<(Arc<webb_security::ServerTls>, webb_security::Access)>,
    ) -> Agent {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let ring = Arc::new(Ring::new(AGENT_RING).unwrap());
        let observed = Arc::new(Observed::new(name, ring, Arc::new(())));
        let peer = announced(&addr).map(PeerService::new);
        let state = observed.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tls, access) = tls.unzip();
            let services = Services {
                observer: ObserverService::new(state).with_access(access.unwrap_or_default()),
                peer,
                health: Health::new(true).await,
            };
            services
                .serve_listener(listener, tls.as_deref(), std::future::pending())
                .await
                .unwrap();
        });
        Agent {
            name: name.to_string(),
            addr,
            observed,
            runtime: Some(runtime),
        }
    }

    /// Sample TCP flows `first..first+count` of this node, stamped now.
    pub fn push(&self, first: usize, count: usize) {
        for i in first..first + count {
            let mut flow = webb_proto::sample::tcp(i);
            flow.node_name = self.name.clone();
            flow.time = Some(Timestamp::now());
            self.observed.push_flow(flow, None);
        }
        self.observed.flush();
    }

    /// These flows, as they are.
    pub fn push_flows(&self, flows: &[Flow]) {
        for f in flows {
            self.observed.push_flow(f.clone(), None);
        }
        self.observed.flush();
    }

    /// A `LostEvent` of `count` events from `source`, as the agent's datapath reports one.
    pub fn lose(&self, source: LostEventSource, count: u64) {
        let now = Timestamp::now();
        self.observed.push_lost(LostEvent {
            source: source as i32,
            num_events_lost: count,
            cpu: None,
            first: Some(now),
            last: Some(now),
        });
        self.observed.flush();
    }

    /// Ends the server and every connection to it.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A relay following `peers` with quick reconnects and a short merge drain, serving its
/// Observer API on loopback; returns it and a connected channel to it.
pub async fn start_relay(
    peers: Vec<String>,
    ring_capacity: usize,
    outputs: Outputs,
) -> (Arc<RelayServer>, Channel) {
    let relay = RelayServer::start(RelayConfig {
        pipeline: PipelineConfig {
            pool: PoolConfig {
                peers,
                backoff_min: Duration::from_millis(50),
                backoff_max: Duration::from_millis(200),
                ..Default::default()
            },
            merge: MergeConfig {
                drain_timeout: Duration::from_millis(50),
                ..Default::default()
            },
            ..Default::default()
        },
        ring_capacity,
        node_name: "relay-under-test".into(),
        outputs,
        ..Default::default()
    })
    .await
    .unwrap();
    let relay = Arc::new(relay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = relay.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    let channel = tokio::time::timeout(
        Duration::from_secs(20),
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .expect("relay reachable in time")
    .unwrap();
    (relay, channel)
}
