use super::*;
use crate::test_agent::{Agent, numbered_flows, serve};

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
        flows: numbered_flows("vn1", 5),
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
            flows: numbered_flows("vn2", 50),
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
