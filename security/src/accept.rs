//! TLS handshakes off the accept loop: each connection's handshake runs in its own task with a
//! time limit, at most [`AcceptLimits::max_handshakes`] at once, so a client that connects and
//! says nothing (or speaks plaintext) neither blocks nor slows anyone else. Failures are logged
//! with the client's address and why, and counted by reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{Counters, Refusal, ServerTls};

/// Bounds of the handshake stage.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; connections beyond are closed and counted.
    pub max_handshakes: usize,
    /// Finished handshakes waiting for the server to take them.
    pub queue: usize,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        AcceptLimits {
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
            queue: 64,
        }
    }
}

/// Established TLS connections of one listener, in the order their handshakes finished.
#[derive(Debug)]
pub struct TlsIncoming {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Why a handshake failed, as a counter label.
fn reason(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    if e.kind() == std::io::ErrorKind::TimedOut {
        return "timeout";
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "closed"
        } else {
            "io"
        };
    };
    match tls {
        E::InvalidMessage(_) => "plaintext",
        E::NoCertificatesPresented => "no_client_certificate",
        E::InvalidCertificate(C::UnknownIssuer) => "unknown_ca",
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired",
        E::InvalidCertificate(_) => "bad_certificate",
        E::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateExpired) => {
            "client_refused_certificate"
        }
        E::AlertReceived(_) => "alert",
        _ => "tls",
    }
}

/// A hint for the log line of a failed handshake.
fn hint(reason: &str) -> &'static str {
    match reason {
        "plaintext" => " (a plaintext client? it must use TLS: --tls or tls://)",
        "no_client_certificate" => {
            " (this server wants a client certificate signed by --tls-client-ca-files)"
        }
        "unknown_ca" => " (the client certificate is not signed by --tls-client-ca-files)",
        "expired" => " (the client certificate has expired)",
        "client_refused_certificate" => {
            " (the client does not trust this server's certificate or name)"
        }
        _ => "",
    }
}

impl TlsIncoming {
    /// Accepts on `listener` until the returned stream is dropped. `alpn`: `h2` for gRPC.
    pub fn spawn(
        listener: TcpListener,
        tls: &ServerTls,
        alpn: &[&[u8]],
        limits: AcceptLimits,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(tls.config(alpn));
        let counters = tls.counters().clone();
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        tokio::spawn(accept_loop(listener, acceptor, counters, limits, tx));
        Ok(TlsIncoming { rx, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next established connection (None once the accept loop ended).
    pub async fn next(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.rx.recv().await
    }

    /// The connections as tonic's `serve_with_incoming` takes them (the client's certificate
    /// then reaches handlers as `TlsConnectInfo`: see [`crate::PeerIdentity`]).
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> + Send + 'static
    {
        use futures::StreamExt;
        tokio_stream::wrappers::ReceiverStream::new(self.rx).map(|(s, _)| Ok(s))
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    counters: Counters,
    limits: AcceptLimits,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.refused(Refusal::HandshakesInProgress);
            tracing::warn!(%peer, limit = limits.max_handshakes, "too many TLS handshakes in progress; connection closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let counters = counters.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no TLS handshake within {:?}", limits.handshake_timeout),
                    )),
                };
            drop(slot);
            match result {
                Ok(stream) => {
                    counters.handshake("ok");
                    let _ = tx.send((stream, peer)).await;
                }
                Err(e) => {
                    let why = reason(&e);
                    counters.handshake(why);
                    tracing::warn!(%peer, reason = why, "TLS handshake refused: {e}{}", hint(why));
                }
            }
        });
    }
}
