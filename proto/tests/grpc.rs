//! The generated Observer service and the standard health service work over a real gRPC
//! connection (loopback): what a server streams arrives unchanged, and the health check
//! `hubble status` makes answers SERVING.

use std::pin::Pin;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use webb_proto::health::pb::health_check_response::ServingStatus;
use webb_proto::health::pb::{HealthCheckRequest, health_client::HealthClient};
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::observer_server::{Observer, ObserverServer};
use webb_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, ServerStatusRequest, ServerStatusResponse,
};
use webb_proto::webb_v1::FlowsRequestOptions;
use webb_proto::{extras, health, options, sample};

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves a fixed history of flows, honouring `number` and Webb's extras option.
struct History(Vec<GetFlowsResponse>);

#[tonic::async_trait]
impl Observer for History {
    type GetFlowsStream = EventStream<GetFlowsResponse>;
    type GetAgentEventsStream = EventStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = EventStream<GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let request = request.into_inner();
        let wanted = options::from_request(&request)
            .map_err(|e| Status::invalid_argument(format!("extensions: {e}")))?;
        let skip = self.0.len().saturating_sub(request.number as usize);
        let mut out: Vec<GetFlowsResponse> = self.0[skip..].to_vec();
        if !wanted.wants_extras() {
            for response in &mut out {
                if let Some(webb_proto::observer::get_flows_response::ResponseTypes::Flow(flow)) =
                    &mut response.response_types
                {
                    extras::strip(flow);
                }
            }
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(
            out.into_iter().map(Ok),
        ))))
    }

    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("agent events"))
    }

    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("debug events"))
    }

    async fn get_nodes(
        &self,
        _: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Err(Status::unimplemented("nodes are a relay's"))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Ok(Response::new(GetNamespacesResponse::default()))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        Ok(Response::new(ServerStatusResponse {
            num_flows: self.0.len() as u64,
            max_flows: 4095,
            seen_flows: self.0.len() as u64,
            ..Default::default()
        }))
    }
}

fn history() -> Vec<GetFlowsResponse> {
    (0..20)
        .map(|i| {
            let mut flow = sample::mixed(i);
            extras::attach(&mut flow, Some(&sample::extras(i)));
            sample::response(flow)
        })
        .collect()
}

async fn serve(history: Vec<GetFlowsResponse>) -> Channel {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (reporter, health_service) = health::server::health_reporter();
    health::set_observer_serving(&reporter, true).await;
    tokio::spawn(
        Server::builder()
            .add_service(health_service)
            .add_service(ObserverServer::new(History(history)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_check_for_hubble_observer_answers_serving() {
    let channel = serve(history()).await;
    let mut client = HealthClient::new(channel);
    for service in ["", health::OBSERVER_HEALTH_SERVICE] {
        let answer = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
}

#[tokio::test]
async fn streamed_flows_arrive_unchanged_and_without_extras_for_hubble_clients() {
    let all = history();
    let channel = serve(all.clone()).await;
    let mut client = ObserverClient::new(channel);

    let plain: Vec<GetFlowsResponse> = client
        .get_flows(GetFlowsRequest {
            number: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(plain.len(), 5);
    for (got, sent) in plain.iter().zip(&all[15..]) {
        assert_eq!(got.time, sent.time);
        let (Some(got_flow), Some(sent_flow)) = (flow_of(got), flow_of(sent)) else {
            panic!("flows expected");
        };
        assert!(got_flow.extensions.is_none(), "plain clients get no Any");
        let mut expected = sent_flow.clone();
        extras::strip(&mut expected);
        assert_eq!(got_flow, &expected);
    }

    let mut request = GetFlowsRequest {
        number: 20,
        ..Default::default()
    };
    options::set(
        &mut request,
        &FlowsRequestOptions {
            include_extras: true,
            include_payload: true,
        },
    );
    let rich: Vec<GetFlowsResponse> = client
        .get_flows(request)
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(rich, all);

    let status = client
        .server_status(ServerStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.num_flows, 20);
}

fn flow_of(response: &GetFlowsResponse) -> Option<&webb_proto::flow::Flow> {
    match &response.response_types {
        Some(webb_proto::observer::get_flows_response::ResponseTypes::Flow(flow)) => Some(flow),
        _ => None,
    }
}
