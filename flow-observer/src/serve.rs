//! Mounting the services: Observer, optional Peer, and the standard gRPC health service on a
//! TCP listener or a unix socket.

use anyhow::Context as _;
use webb_proto::health::ServingStatus;
use webb_proto::health::server::{HealthReporter, HealthService};

use crate::observer::ObserverService;
use crate::peer::PeerService;

/// The gRPC health state for `""` and `hubble.server.Observer` (what `hubble status` checks).
/// Clones share the state; flip it at any time.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

impl Health {
    /// Health starting as SERVING (a node) or NOT_SERVING (a relay until it has peers).
    pub async fn new(serving: bool) -> Self {
        let h = Health {
            reporter: HealthReporter::new(),
        };
        h.set_serving(serving).await;
        h
    }

    /// Sets both `""` and `hubble.server.Observer`.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in ["", webb_proto::health::OBSERVER_HEALTH_SERVICE] {
            self.reporter.set_service_status(service, status).await;
        }
    }

    pub fn service(&self) -> webb_proto::health::pb::health_server::HealthServer<HealthService> {
        webb_proto::health::pb::health_server::HealthServer::new(
            HealthService::from_health_reporter(self.reporter.clone()),
        )
    }
}

/// The services of one server, ready to mount on any number of listeners.
#[derive(Debug, Clone)]
pub struct Services {
    pub observer: ObserverService,
    /// `peer.Peer` (a node announces itself; Hubble's relay serves none).
    pub peer: Option<PeerService>,
    pub health: Health,
}

impl Services {
    /// A node's services: Observer, Peer, health SERVING.
    pub async fn node(observer: ObserverService, peer: PeerService) -> Self {
        Services {
            observer,
            peer: Some(peer),
            health: Health::new(true).await,
        }
    }

    /// A tonic router with every service.
    pub fn router(&self) -> tonic::transport::server::Router {
        tonic::transport::Server::builder()
            .add_service(self.health.service())
            .add_service(self.observer.clone().into_server())
            .add_optional_service(self.peer.clone().map(PeerService::into_server))
    }

    /// Serves every service on a bound TCP listener until `shutdown` completes.
    pub async fn serve_tcp(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        self.router()
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    /// Serves every service on a unix socket at `path` (its directory is created and a stale
    /// socket file replaced) until `shutdown` completes; the socket file is removed afterwards.
    pub async fn serve_unix(
        &self,
        path: &std::path::Path,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot replace {}", path.display()));
            }
        }
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("cannot listen on unix socket {}", path.display()))?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let result = self
            .router()
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        let _ = std::fs::remove_file(path);
        result.with_context(|| format!("gRPC server on {} failed", path.display()))
    }
}
