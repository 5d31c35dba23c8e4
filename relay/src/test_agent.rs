//! A real gRPC Observer on loopback for the relay's tests: streams given flows, then stays
//! open until told to stop (an agent shutting down).

use std::pin::Pin;

use tokio::sync::mpsc;
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
pub struct Agent {
    pub node: String,
    /// Flows to stream (their node name is set to `node`).
    pub flows: Vec<Flow>,
    pub requests: mpsc::UnboundedSender<GetFlowsRequest>,
    /// Set to true to end every stream (the agent shutting down).
    pub stopping: tokio::sync::watch::Receiver<bool>,
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
        let (node, flows) = (self.node.clone(), self.flows.clone());
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            for mut flow in flows {
                flow.node_name.clone_from(&node);
                let time = flow.time;
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
pub fn serve(agent: Agent, listener: tokio::net::TcpListener) -> tokio::sync::oneshot::Sender<()> {
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

/// `n` empty flows of `node`, 1 µs apart.
pub fn numbered_flows(node: &str, n: usize) -> Vec<Flow> {
    (0..n)
        .map(|i| Flow {
            time: Some(Timestamp::from_unix_nanos(1_000 + i as u64 * 1_000)),
            node_name: node.into(),
            ..Default::default()
        })
        .collect()
}
