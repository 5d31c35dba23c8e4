//! A flow source for measuring `webb tui` and `webb observe -f` under load: an Observer
//! server that streams the golden flows, re-timed to now, at a fixed rate to every follower.
//!
//! ```text
//! cargo run -p tui --example flowgen -- 127.0.0.1:14245 10000
//! webb tui --server 127.0.0.1:14245      # then read its CPU time from /proc
//! ```

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_server::{Observer, ObserverServer};
use webb_proto::observer::*;

const INPUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/hubble-goldens/input.jsonl"
);
/// Flows are sent in batches this often.
const TICK: Duration = Duration::from_millis(10);

struct Gen {
    flows: Vec<GetFlowsResponse>,
    rate: u64,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Observer for Gen {
    type GetFlowsStream = BoxStream<GetFlowsResponse>;
    type GetAgentEventsStream = BoxStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = BoxStream<GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        _request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        let (tx, rx) = mpsc::channel(4096);
        let flows = self.flows.clone();
        let per_tick = (self.rate * TICK.as_millis() as u64 / 1000).max(1);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut i = 0usize;
            loop {
                tick.tick().await;
                for _ in 0..per_tick {
                    let mut res = flows[i % flows.len()].clone();
                    i += 1;
                    let now = webb_proto::Timestamp::now();
                    res.time = Some(now);
                    if let Some(ResponseTypes::Flow(f)) = &mut res.response_types {
                        f.time = Some(now);
                    }
                    if tx.send(Ok(res)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_agent_events(
        &self,
        _request: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("flowgen serves flows only"))
    }

    async fn get_debug_events(
        &self,
        _request: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("flowgen serves flows only"))
    }

    async fn get_nodes(
        &self,
        _request: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Err(Status::unimplemented("flowgen serves flows only"))
    }

    async fn get_namespaces(
        &self,
        _request: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Err(Status::unimplemented("flowgen serves flows only"))
    }

    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        Err(Status::unimplemented("flowgen serves flows only"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:14245".into())
        .parse()?;
    let rate: u64 = args.next().unwrap_or_else(|| "10000".into()).parse()?;
    let flows = std::fs::read_to_string(INPUT)?
        .lines()
        .map(tui::json::response_from_line)
        .filter(
            |r| matches!(r, Ok(res) if matches!(res.response_types, Some(ResponseTypes::Flow(_)))),
        )
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!("flowgen: {rate} flows/s on {addr}");
    tonic::transport::Server::builder()
        .add_service(ObserverServer::new(Gen { flows, rate }))
        .serve(addr)
        .await?;
    Ok(())
}
