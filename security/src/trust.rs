//! Who a gRPC client is (its transport, address and TLS certificate), whether it may have the
//! payload option, and how many GetFlows streams one client address may hold.
//!
//! Payload rule (issue #12): without TLS the payload goes to whoever asks, and the server says
//! so at start. With TLS it goes only to a client whose certificate (already verified against
//! `--tls-client-ca-files` by the handshake) is valid for one of the payload names
//! (`--tls-payload-client-names`, default `relay.webb.local`: the name `webb certs relay`
//! gives the relay), or over the node's local unix socket (reachable only by whoever the
//! socket file's permissions allow, as Hubble's). Everyone else gets `PermissionDenied`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, ServerName};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};

use crate::{Counters, Refusal};

/// The name `webb certs relay` puts in the relay's certificate, trusted with payload.
pub const DEFAULT_PAYLOAD_NAME: &str = "relay.webb.local";

/// How a request reached the server.
#[derive(Debug, Clone)]
pub enum Transport {
    /// The local unix socket.
    Unix,
    /// Plain TCP.
    Tcp,
    /// TLS; the client's certificate chain when it presented one.
    Tls(Option<Arc<Vec<CertificateDer<'static>>>>),
    /// No connection information (an in-process call).
    Unknown,
}

/// The client of one request.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub addr: Option<SocketAddr>,
    pub transport: Transport,
}

impl PeerIdentity {
    /// From the connection information tonic attaches to every request.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        let ext = request.extensions();
        if let Some(tls) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
            return PeerIdentity {
                addr: tls.get_ref().remote_addr(),
                transport: Transport::Tls(tls.peer_certs()),
            };
        }
        if let Some(tcp) = ext.get::<TcpConnectInfo>() {
            return PeerIdentity {
                addr: tcp.remote_addr(),
                transport: Transport::Tcp,
            };
        }
        let transport = if ext.get::<UdsConnectInfo>().is_some() {
            Transport::Unix
        } else {
            Transport::Unknown
        };
        PeerIdentity {
            addr: None,
            transport,
        }
    }

    fn describe(&self) -> String {
        match self.addr {
            Some(a) => a.to_string(),
            None => "this client".into(),
        }
    }
}

/// Who may have the payload option.
#[derive(Debug, Clone)]
pub enum PayloadPolicy {
    /// No TLS on this server: anyone (the server warns at start).
    Anyone,
    /// TLS: clients whose certificate is valid for one of these names, and the unix socket.
    CertificateNames(Vec<String>),
}

impl PayloadPolicy {
    /// Checks a client asking for the payload.
    pub fn check(&self, who: &PeerIdentity) -> Result<(), tonic::Status> {
        let names = match self {
            PayloadPolicy::Anyone => return Ok(()),
            PayloadPolicy::CertificateNames(names) => names,
        };
        let presented = match &who.transport {
            Transport::Unix => return Ok(()),
            Transport::Tls(Some(chain)) => match chain.first() {
                Some(leaf) if names.iter().any(|n| valid_for(leaf, n)) => return Ok(()),
                Some(_) => "a certificate valid for none of them",
                None => "no certificate",
            },
            Transport::Tls(None) => "no certificate",
            Transport::Tcp | Transport::Unknown => "no TLS connection",
        };
        Err(tonic::Status::permission_denied(format!(
            "the payload option (webb.v1.FlowsRequestOptions.include_payload) is served only to \
             clients whose TLS certificate, signed by a CA of this server's \
             --tls-client-ca-files, is valid for one of {names:?} (--tls-payload-client-names); \
             {} presented {presented}",
            who.describe()
        )))
    }
}

/// Whether a (handshake-verified) certificate is valid for `name`.
fn valid_for(leaf: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(reference) = ServerName::try_from(name) else {
        return false;
    };
    rustls::server::ParsedCertificate::try_from(leaf)
        .and_then(|cert| rustls::client::verify_server_name(&cert, &reference))
        .is_ok()
}

/// Concurrent GetFlows streams per client address.
#[derive(Debug, Clone)]
pub struct StreamGate {
    max_per_client: usize,
    active: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted stream; dropping it frees the client's slot.
#[derive(Debug)]
pub struct StreamPermit {
    ip: IpAddr,
    active: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = active.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.ip);
            }
        }
    }
}

impl StreamGate {
    /// Hubble has no such bound; 64 leaves room for many viewers behind one NAT address.
    pub const DEFAULT_MAX_PER_CLIENT: usize = 64;

    pub fn new(max_per_client: usize) -> Self {
        StreamGate {
            max_per_client: max_per_client.max(1),
            active: Arc::default(),
        }
    }

    /// A slot for a stream of `who` (None for local clients without an address).
    pub fn enter(&self, who: &PeerIdentity) -> Result<Option<StreamPermit>, tonic::Status> {
        let Some(addr) = who.addr else {
            return Ok(None);
        };
        let ip = addr.ip();
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let n = active.entry(ip).or_insert(0);
        if *n >= self.max_per_client {
            return Err(tonic::Status::resource_exhausted(format!(
                "{ip} already has {n} GetFlows streams open, the most one client may have \
                 (--max-streams-per-client {}); close one first",
                self.max_per_client
            )));
        }
        *n += 1;
        Ok(Some(StreamPermit {
            ip,
            active: self.active.clone(),
        }))
    }
}

/// What a server checks before it serves a stream: payload trust and the stream bound.
#[derive(Debug, Clone)]
pub struct Access {
    pub payload: PayloadPolicy,
    pub streams: StreamGate,
    pub counters: Counters,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            payload: PayloadPolicy::Anyone,
            streams: StreamGate::new(StreamGate::DEFAULT_MAX_PER_CLIENT),
            counters: Counters::default(),
        }
    }
}

impl Access {
    /// Admits a GetFlows request (counting a refusal); hold the permit while streaming.
    pub fn admit<T>(
        &self,
        request: &tonic::Request<T>,
        wants_payload: bool,
    ) -> Result<Option<StreamPermit>, tonic::Status> {
        let who = PeerIdentity::of(request);
        if wants_payload && let Err(status) = self.payload.check(&who) {
            self.counters.refused(Refusal::PayloadUntrusted);
            tracing::warn!(client = %who.describe(), "payload refused to an untrusted client");
            return Err(status);
        }
        self.streams.enter(&who).inspect_err(|_| {
            self.counters.refused(Refusal::StreamsPerClient);
        })
    }
}
