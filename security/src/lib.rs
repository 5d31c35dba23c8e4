//! Securing Webb's wires and bounding what a client may ask of a server.
//!
//! - [`server`] — a server's TLS: certificate and key (and, for mTLS, client CAs) read from
//!   files and re-read when they change, so rotation needs no restart.
//! - [`accept`] — TLS handshakes off the accept loop (bounded, timed out, counted), yielding
//!   streams for tonic's `serve_with_incoming` (the client's certificate reaches handlers).
//! - [`client`] — a client's TLS (Hubble's `--tls-*` flags; the relay's `--peer-tls-*`) and a
//!   tonic channel over it.
//! - [`trust`] — who may have the payload option, and the per-client GetFlows stream gate.
//! - [`counters`] — what was refused and why, as Prometheus counters.
//! - [`certs`] (feature `certs`) — a CA and node/relay/client certificates for `webb certs`.
//! - [`http`] (feature `axum`) — the relay's HTTP port over TLS, with body and rate limits.

pub mod accept;
#[cfg(feature = "certs")]
pub mod certs;
pub mod client;
pub mod counters;
#[cfg(feature = "axum")]
pub mod http;
mod pem;
pub mod server;
pub mod trust;

pub use accept::{AcceptLimits, TlsIncoming};
pub use client::{ClientTls, ClientTlsArgs, PeerTlsArgs};
pub use counters::{Counters, Refusal};
pub use server::{ServerTls, ServerTlsArgs};
pub use trust::{Access, PayloadPolicy, PeerIdentity, StreamGate, StreamPermit};

/// The crypto every Webb endpoint uses: ring, which builds with a plain C compiler (aws-lc-rs,
/// rustls' other provider and the one with post-quantum key exchange, needs cmake and a much
/// longer build).
#[expect(
    deprecated,
    reason = "rustls deprecates ring's provider only for lacking post-quantum key exchange"
)]
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Handshake signatures, checked alike by every verifier here (they differ only in which
/// certificates they accept).
pub(crate) fn verify_signature(
    provider: &rustls::crypto::CryptoProvider,
    tls13: bool,
    message: &[u8],
    cert: &rustls::pki_types::CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    let algorithms = &provider.signature_verification_algorithms;
    if tls13 {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    } else {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }
}

/// A file that could not be used as TLS material, naming the file and the flag it came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path}: {reason}")]
    File {
        flag: &'static str,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}
