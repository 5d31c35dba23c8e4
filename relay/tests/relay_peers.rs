//! A peer from `--peers host:port` is named by the agent itself: its `peer.Peer/Notify`
//! announces the node (as the agent does, by bare IP), so GetNodes and NODE_CONNECTED carry
//! the node's name before the node sent any flow. When the announcement is ambiguous, the
//! node keeps its address until its first flow names it.

mod common;

use common::{Agent, start_relay};
use std::time::Duration;

use flow_observer::PeerInfo;
use relay::server::Outputs;
use webb_proto::observer::GetNodesRequest;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::relay::NodeState;

/// (name, state) of every node the relay lists, once all are connected.
async fn connected_nodes(agent: &Agent) -> Vec<(String, i32)> {
    let (relay, channel) =
        start_relay(vec![agent.addr.to_string()], 4095, Outputs::default()).await;
    let mut client = ObserverClient::new(channel);
    for _ in 0..100 {
        let nodes: Vec<(String, i32)> = client
            .get_nodes(GetNodesRequest {})
            .await
            .unwrap()
            .into_inner()
            .nodes
            .into_iter()
            .map(|n| (n.name, n.state))
            .collect();
        if !nodes.is_empty()
            && nodes
                .iter()
                .all(|(_, s)| *s == NodeState::NodeConnected as i32)
        {
            return nodes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the agent never connected: {:?}", relay.nodes());
}

#[tokio::test]
async fn a_static_peer_is_named_by_its_own_announcement_before_any_flow() {
    let agent = Agent::start_announcing("vn7", |_| {
        Some(vec![PeerInfo {
            name: "vn7".into(),
            address: "127.0.0.1".into(),
        }])
    });
    assert_eq!(
        connected_nodes(&agent).await,
        [("vn7".to_string(), NodeState::NodeConnected as i32)]
    );
}

#[tokio::test]
async fn an_ambiguous_announcement_leaves_the_address_until_a_flow_names_the_node() {
    // Two nodes announced on the same host, neither with a port: which one is this?
    let agent = Agent::start_announcing("vn7", |_| {
        Some(
            ["vn7", "vn8"]
                .map(|n| PeerInfo {
                    name: n.into(),
                    address: "127.0.0.1".into(),
                })
                .to_vec(),
        )
    });
    let addr = agent.addr.to_string();
    assert_eq!(
        connected_nodes(&agent).await,
        [(addr, NodeState::NodeConnected as i32)]
    );
}
