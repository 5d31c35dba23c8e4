use super::*;
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use webb_proto::Timestamp;
use webb_proto::flow::Flow;
use webb_proto::observer::observer_server::{Observer, ObserverServer};
use webb_proto::observer::*;

type BoxStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// A real gRPC Observer on loopback that streams `count` flows of `node` and then stays open;
/// it reports the options of every GetFlows request it gets.
#[derive(Clone)]
struct Agent {
    node: String,
    count: usize,
    requests: mpsc::UnboundedSender<GetFlowsRequest>,
    /// Set to true to end every stream (the agent shutting down).
    stopping: tokio::sync::watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Observer for Agent {
    type GetFlowsStream = BoxStream<GetFlowsResponse>;
    type GetAgentEventsStream = BoxStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = BoxStream<GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let _ = self.requests.send(request.into_inner());
        let (tx, rx) = mpsc::channel(16);
        let (node, count) = (self.node.clone(), self.count);
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            for i in 0..count {
                let time = Some(Timestamp::from_unix_nanos(1_000 + i as u64));
                let flow = Flow {
                    time,
                    node_name: node.clone(),
                    ..Default::default()
                };
                let resp = GetFlowsResponse {
                    node_name: node.clone(),
                    time,
                    response_types: Some(get_flows_response::ResponseTypes::Flow(flow)),
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = tx.closed() => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("test agent"))
    }
    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("test agent"))
    }
    async fn get_nodes(
        &self,
        _: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Err(Status::unimplemented("test agent"))
    }
    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Err(Status::unimplemented("test agent"))
    }
    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        Err(Status::unimplemented("test agent"))
    }
}

/// Serves `agent` on `listener` until the returned sender is dropped or fired.
fn serve(agent: Agent, listener: tokio::net::TcpListener) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(ObserverServer::new(agent))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

async fn next_status(rx: &mut mpsc::Receiver<NodeStatusEvent>) -> NodeStatusEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a status event within 10 s")
        .expect("status channel open")
}

#[test]
fn peer_addresses_get_the_agent_port_when_they_have_none() {
    let cases = [
        ("198.18.0.1", "198.18.0.1:4244"),
        ("198.18.0.1:5000", "198.18.0.1:5000"),
        ("2001:2::1", "[2001:2::1]:4244"),
        ("[2001:2::1]:9", "[2001:2::1]:9"),
        ("node-a", "node-a:4244"),
        ("node-a:4250", "node-a:4250"),
    ];
    for (input, want) in cases {
        assert_eq!(peer_address(input), want, "{input}");
    }
}

#[test]
fn backoff_doubles_up_to_the_maximum_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
    let got: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
    assert_eq!(got, [100, 200, 400, 500, 500]);
    b.reset();
    assert_eq!(b.next_delay().as_millis(), 100);
}

#[test]
fn errors_with_the_same_message_are_coalesced_within_the_window() {
    let mut c = ErrorCoalescer::new(Duration::from_secs(10));
    let t0 = Instant::now();
    let first = c.report("vn1", "connection refused", t0).unwrap();
    assert_eq!(first.node_names, ["vn1"]);
    assert_eq!(first.state_change, NodeState::NodeError as i32);
    assert!(
        c.report("vn2", "connection refused", t0 + Duration::from_secs(1))
            .is_none()
    );
    assert!(
        c.report("vn1", "connection refused", t0 + Duration::from_secs(2))
            .is_none()
    );
    // Another message is its own window.
    assert!(
        c.report("vn3", "timeout", t0 + Duration::from_secs(3))
            .is_some()
    );
    assert!(c.flush(t0 + Duration::from_secs(9)).is_empty());
    let flushed = c.flush(t0 + Duration::from_secs(10));
    assert_eq!(flushed.len(), 1);
    assert_eq!(flushed[0].node_names, ["vn1", "vn2"]);
    assert_eq!(flushed[0].message, "connection refused");
    assert_eq!(c.coalesced(), 2);
    // After the window the message is reported at once again.
    assert!(
        c.report("vn2", "connection refused", t0 + Duration::from_secs(11))
            .is_some()
    );
}

#[tokio::test]
async fn the_pool_follows_an_agent_with_the_payload_option_and_reports_its_states() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (req_tx, mut req_rx) = mpsc::unbounded_channel();
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let agent = Agent {
        node: "vn1".into(),
        count: 5,
        requests: req_tx,
        stopping,
    };
    let stop = serve(agent.clone(), listener);

    let (flows_tx, mut flows_rx) = mpsc::channel(64);
    let (status_tx, mut status_rx) = mpsc::channel(64);
    let pool = PeerPool::start(
        PoolConfig {
            peers: vec![addr.to_string()],
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            ..Default::default()
        },
        PoolOutputs {
            flows: flows_tx,
            status: status_tx,
        },
    );

    let connected = next_status(&mut status_rx).await;
    assert_eq!(connected.state_change, NodeState::NodeConnected as i32);
    let req = req_rx.recv().await.unwrap();
    assert!(req.follow);
    let options = webb_proto::options::from_request(&req).unwrap();
    assert!(options.include_payload && options.include_extras);
    for _ in 0..5 {
        let resp = tokio::time::timeout(Duration::from_secs(10), flows_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.node_name, "vn1");
    }
    let node = &pool.nodes()[0];
    assert_eq!(
        (node.name.as_str(), node.received, node.dropped),
        ("vn1", 5, 0)
    );

    // The agent shuts down: unavailable.
    let _ = stopping_tx.send(true);
    let _ = stop.send(());
    let mut states = Vec::new();
    while !states.contains(&(NodeState::NodeUnavailable as i32)) {
        states.push(next_status(&mut status_rx).await.state_change);
    }
    assert_eq!(pool.nodes()[0].state, NodeState::NodeUnavailable);

    // It comes back on the same address: connected again, without restarting the relay.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (_restarted, stopping) = tokio::sync::watch::channel(false);
    let _stop = serve(Agent { stopping, ..agent }, listener);
    loop {
        let ev = next_status(&mut status_rx).await;
        if ev.state_change == NodeState::NodeConnected as i32 {
            assert_eq!(ev.node_names, ["vn1"]);
            break;
        }
    }
}

#[tokio::test]
async fn a_full_merge_queue_drops_and_counts_instead_of_waiting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (req_tx, _req_rx) = mpsc::unbounded_channel();
    let (_running, stopping) = tokio::sync::watch::channel(false);
    let _stop = serve(
        Agent {
            node: "vn2".into(),
            count: 50,
            requests: req_tx,
            stopping,
        },
        listener,
    );
    let (flows_tx, _flows_rx) = mpsc::channel(10);
    let (status_tx, mut status_rx) = mpsc::channel(64);
    let pool = PeerPool::start(
        PoolConfig {
            peers: vec![addr.to_string()],
            ..Default::default()
        },
        PoolOutputs {
            flows: flows_tx,
            status: status_tx,
        },
    );
    next_status(&mut status_rx).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.nodes()[0].received < 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let node = &pool.nodes()[0];
    assert_eq!((node.received, node.dropped), (50, 40));
}

#[tokio::test]
async fn an_unreachable_peer_is_reported_unavailable() {
    // Bind then drop, so the port is (very likely) closed.
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (flows_tx, _flows_rx) = mpsc::channel(1);
    let (status_tx, mut status_rx) = mpsc::channel(8);
    let _pool = PeerPool::start(
        PoolConfig {
            peers: vec![addr.to_string()],
            ..Default::default()
        },
        PoolOutputs {
            flows: flows_tx,
            status: status_tx,
        },
    );
    let ev = next_status(&mut status_rx).await;
    assert_eq!(ev.state_change, NodeState::NodeUnavailable as i32);
    assert_eq!(ev.node_names, [addr.to_string()]);
    assert!(ev.message.contains("connecting to"), "{}", ev.message);
}
