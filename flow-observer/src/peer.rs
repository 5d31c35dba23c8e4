//! `peer.Peer/Notify` over a static peer list.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use webb_proto::peer::peer_server::{Peer, PeerServer};
use webb_proto::peer::{ChangeNotification, ChangeNotificationType, NotifyRequest};

/// A peer announced by `peer.Peer/Notify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub name: String,
    /// Bare address (Hubble's relay adds the port).
    pub address: String,
}

/// `peer.Peer`: announces every known peer as PEER_ADDED, then stays open.
#[derive(Debug, Clone)]
pub struct PeerService {
    peers: Arc<Vec<PeerInfo>>,
}

impl PeerService {
    pub fn new(peers: Vec<PeerInfo>) -> Self {
        PeerService {
            peers: Arc::new(peers),
        }
    }

    pub fn into_server(self) -> PeerServer<Self> {
        PeerServer::new(self)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Peer for PeerService {
    type NotifyStream = BoxStream<ChangeNotification>;

    async fn notify(
        &self,
        _request: Request<NotifyRequest>,
    ) -> Result<Response<Self::NotifyStream>, Status> {
        let (tx, rx) = mpsc::channel(self.peers.len().max(1));
        let peers = self.peers.clone();
        tokio::spawn(async move {
            for p in peers.iter() {
                let n = ChangeNotification {
                    name: p.name.clone(),
                    address: p.address.clone(),
                    r#type: ChangeNotificationType::PeerAdded as i32,
                    tls: None,
                };
                if tx.send(Ok(n)).await.is_err() {
                    return;
                }
            }
            // The peer list is static: keep the stream open until the client leaves.
            tx.closed().await;
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as Self::NotifyStream
        ))
    }
}
