//! Mounting the services: Observer, optional Peer, and the standard gRPC health service on a
//! TCP listener or a unix socket.

use anyhow::Context as _;
use webb_proto::health::ServingStatus;
use webb_proto::health::server::{HealthReporter, HealthService};

use std::task::{Context, Poll};

use tonic::codegen::http;
use tower::layer::util::{Identity, Stack};
use webb_security::{AcceptLimits, Counters, Refusal, ServerTls, TlsIncoming};

use crate::observer::ObserverService;
use crate::peer::PeerService;

/// HTTP/2 streams one connection may have open at once (Go gRPC's default is 100).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// Counts the requests refused before any handler ran (tonic's decoding limit answers
/// `OutOfRange`, which no Webb handler uses) as `message_size` refusals.
#[derive(Debug, Clone)]
pub struct CountRefusals {
    counters: Counters,
}

impl<S> tower::Layer<S> for CountRefusals {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counters: self.counters.clone(),
        }
    }
}

/// See [`CountRefusals`].
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    counters: Counters,
}

impl<S, R, B> tower::Service<R> for Counted<S>
where
    S: tower::Service<R, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let counters = self.counters.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
            if response
                .headers()
                .get("grpc-status")
                .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
            {
                counters.refused(Refusal::MessageSize);
            }
            Ok(response)
        })
    }
}

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

    /// A tonic router with every service, at most [`MAX_STREAMS_PER_CONNECTION`] streams on
    /// one HTTP/2 connection (the per-address bound is the Observer's own).
    pub fn router(&self) -> tonic::transport::server::Router<Stack<CountRefusals, Identity>> {
        tonic::transport::Server::builder()
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .layer(CountRefusals {
                counters: self.observer.access().counters.clone(),
            })
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

    /// Serves every service on a bound TCP listener, over TLS when `tls` is given (handshakes
    /// in their own tasks: see [`webb_security::TlsIncoming`]), until `shutdown` completes.
    pub async fn serve_listener(
        &self,
        listener: tokio::net::TcpListener,
        tls: Option<&ServerTls>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr().ok();
        let Some(tls) = tls else {
            return self
                .serve_tcp(listener, shutdown)
                .await
                .with_context(|| format!("gRPC server on {addr:?} failed"));
        };
        let incoming = TlsIncoming::spawn(listener, tls, &[b"h2"], AcceptLimits::default())
            .context("cannot start the TLS listener")?;
        self.router()
            .serve_with_incoming_shutdown(incoming.into_stream(), shutdown)
            .await
            .with_context(|| format!("gRPC server (TLS) on {addr:?} failed"))
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
