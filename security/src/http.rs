//! The relay's HTTP port (`/metrics`, `/api/v1/*`): a listener that is plain TCP or TLS (the
//! same [`TlsIncoming`] handshake stage as gRPC), and the per-client limits on the JSON API —
//! request body size and request rate — each refusal a JSON error and a counter.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::{AcceptLimits, Counters, Refusal, ServerTls, TlsIncoming};

/// The HTTP port's listener: plain, or TLS when the server has a certificate.
#[derive(Debug)]
pub enum ApiListener {
    Plain(TcpListener),
    Tls(TlsIncoming),
}

impl ApiListener {
    /// TLS (HTTP/1.1 over ALPN) when `tls` is given.
    pub fn new(listener: TcpListener, tls: Option<&ServerTls>) -> std::io::Result<Self> {
        Ok(match tls {
            Some(tls) => ApiListener::Tls(TlsIncoming::spawn(
                listener,
                tls,
                &[b"http/1.1"],
                AcceptLimits::default(),
            )?),
            None => ApiListener::Plain(listener),
        })
    }
}

/// A connection of the HTTP port.
#[derive(Debug)]
pub enum ApiStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ApiStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ApiStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Listener for ApiListener {
    type Io = ApiStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            ApiListener::Plain(l) => {
                // axum's own accept loop (it waits out errors such as running out of fds).
                let (s, a) = Listener::accept(l).await;
                (ApiStream::Plain(s), a)
            }
            ApiListener::Tls(incoming) => match incoming.next().await {
                Some((s, a)) => (ApiStream::Tls(Box::new(s)), a),
                // The handshake stage ended (the runtime is going away): nothing more comes.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match self {
            ApiListener::Plain(l) => l.local_addr(),
            ApiListener::Tls(t) => Ok(t.local_addr()),
        }
    }
}

/// The client address of an HTTP request (`into_make_service_with_connect_info::<ClientAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, ApiListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, ApiListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Bounds of the JSON API.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest request body (a SQL query, a filter): bytes.
    pub max_body_bytes: u64,
    /// Sustained requests per second of one client address.
    pub rate_per_sec: f64,
    /// Requests one client may send at once above its rate.
    pub burst: f64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 64 << 10,
            // A dashboard opening fires a few dozen queries at once; a loop does not stop.
            rate_per_sec: 50.0,
            burst: 200.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per client address; at most this many addresses are remembered (the idle
/// ones go first), so a scan of many addresses cannot grow the table without bound.
const MAX_CLIENTS: usize = 4096;

/// The API's limits and what they refused.
#[derive(Debug, Clone)]
pub struct ApiGuard {
    limits: ApiLimits,
    counters: Counters,
    buckets: Arc<Mutex<HashMap<Option<IpAddr>, Bucket>>>,
}

impl ApiGuard {
    pub fn new(limits: ApiLimits, counters: Counters) -> Self {
        ApiGuard {
            limits,
            counters,
            buckets: Arc::default(),
        }
    }

    /// Whether `client` may send a request now (taking a token).
    fn take(&self, client: Option<IpAddr>, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let full = Duration::from_secs_f64(self.limits.burst / self.limits.rate_per_sec);
            buckets.retain(|_, b| now.duration_since(b.last) < full);
            if buckets.len() >= MAX_CLIENTS {
                // Every remembered client is active: the newcomer waits its turn.
                return false;
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.limits.burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.limits.rate_per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.limits.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refusal(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Middleware for the API routes (`/api/...`; scrapes and health checks pass): rate per client
/// address, then body size.
pub async fn limit(State(guard): State<ApiGuard>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip())
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        });
    if !guard.take(client, Instant::now()) {
        guard.counters.refused(Refusal::HttpRate);
        let who = client.map_or_else(|| "this client".to_string(), |ip| ip.to_string());
        let mut response = refusal(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{who} sends more than {} requests per second (burst {}); slow down",
                guard.limits.rate_per_sec, guard.limits.burst
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    let max = guard.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        guard.counters.refused(Refusal::HttpBodySize);
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {} bytes is over the limit of {max} bytes",
                declared.unwrap_or_default()
            ),
        );
    }
    // A body without a length is cut at the limit by axum's own check (DefaultBodyLimit,
    // set to the same size by `layers`); its 413 is counted here.
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        guard.counters.refused(Refusal::HttpBodySize);
    }
    response
}

/// The API's limits on a router: the middleware and axum's body limit at the same size.
pub fn apply<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    guard: ApiGuard,
) -> axum::Router<S> {
    let max = usize::try_from(guard.limits.max_body_bytes).unwrap_or(usize::MAX);
    router
        .layer(axum::extract::DefaultBodyLimit::max(max))
        .layer(axum::middleware::from_fn_with_state(guard, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_keep_theirs() {
        let guard = ApiGuard::new(
            ApiLimits {
                max_body_bytes: 1,
                rate_per_sec: 10.0,
                burst: 3.0,
            },
            Counters::default(),
        );
        let a = Some(IpAddr::from([198, 18, 0, 1]));
        let b = Some(IpAddr::from([198, 18, 0, 2]));
        let t0 = Instant::now();
        assert!((0..3).all(|_| guard.take(a, t0)));
        assert!(!guard.take(a, t0), "burst spent");
        assert!(guard.take(b, t0), "another client is not affected");
        // 100 ms at 10/s refills one token.
        assert!(guard.take(a, t0 + Duration::from_millis(100)));
        assert!(!guard.take(a, t0 + Duration::from_millis(100)));
    }
}
