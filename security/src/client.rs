//! A client's TLS: `webb` with Hubble's flags (`--tls`, `--tls-ca-cert-files`, ...) and the
//! relay's connections to agents (`--peer-tls-*`). The files are read for every new connection,
//! so a rotated client certificate is used from the next reconnection on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint};

use crate::{TlsError, pem};

/// Hubble's client TLS flags (`hubble observe --tls ...`), global on every `webb` command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// Use TLS to reach the server (also implied by a tls:// --server)
    #[arg(long, global = true, help_heading = "TLS")]
    pub tls: bool,
    /// Accept any server certificate (no verification; for tests only)
    #[arg(long, global = true, help_heading = "TLS")]
    pub tls_allow_insecure: bool,
    /// CA certificates that sign the server's certificate (PEM)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        value_delimiter = ',',
        help_heading = "TLS"
    )]
    pub tls_ca_cert_files: Vec<PathBuf>,
    /// Client certificate for servers that want one (mTLS; PEM)
    #[arg(long, global = true, value_name = "FILE", help_heading = "TLS")]
    pub tls_client_cert_file: Option<PathBuf>,
    /// Private key of --tls-client-cert-file (PEM)
    #[arg(long, global = true, value_name = "FILE", help_heading = "TLS")]
    pub tls_client_key_file: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the host of --server)
    #[arg(long, global = true, value_name = "NAME", help_heading = "TLS")]
    pub tls_server_name: Option<String>,
}

impl ClientTlsArgs {
    /// The client's TLS, or None for plaintext. `tls_scheme`: the server was given as `tls://`.
    pub fn client(&self, tls_scheme: bool) -> Result<Option<ClientTls>, TlsError> {
        let wanted = self.tls
            || tls_scheme
            || self.tls_allow_insecure
            || !self.tls_ca_cert_files.is_empty()
            || self.tls_client_cert_file.is_some();
        if !wanted {
            return Ok(None);
        }
        ClientTls::new(
            Flags::CLIENT,
            &self.tls_ca_cert_files,
            self.tls_client_cert_file.clone(),
            self.tls_client_key_file.clone(),
            self.tls_server_name.clone(),
            self.tls_allow_insecure,
        )
        .map(Some)
    }
}

/// The relay's TLS toward agents.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PeerTlsArgs {
    /// CAs that sign the agents' certificates: TLS to every agent when given (PEM)
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub peer_tls_ca_cert_files: Vec<PathBuf>,
    /// The relay's client certificate for agents that want one (mTLS; PEM)
    #[arg(long, value_name = "FILE", requires = "peer_tls_client_key_file")]
    pub peer_tls_client_cert_file: Option<PathBuf>,
    /// Private key of --peer-tls-client-cert-file (PEM)
    #[arg(long, value_name = "FILE", requires = "peer_tls_client_cert_file")]
    pub peer_tls_client_key_file: Option<PathBuf>,
    /// Name every agent's certificate must carry (default: the host of the agent's address)
    #[arg(long, value_name = "NAME")]
    pub peer_tls_server_name: Option<String>,
}

impl PeerTlsArgs {
    /// TLS toward agents, or None (plaintext) when no --peer-tls-* flag is given.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        if self.peer_tls_ca_cert_files.is_empty() {
            if self.peer_tls_client_cert_file.is_some() || self.peer_tls_server_name.is_some() {
                return Err(TlsError::Config(
                    "--peer-tls-ca-cert-files is needed to check the agents' certificates".into(),
                ));
            }
            return Ok(None);
        }
        ClientTls::new(
            Flags::PEER,
            &self.peer_tls_ca_cert_files,
            self.peer_tls_client_cert_file.clone(),
            self.peer_tls_client_key_file.clone(),
            self.peer_tls_server_name.clone(),
            false,
        )
        .map(Some)
    }
}

/// Flag names, for errors that tell the user which flag to fix.
#[derive(Debug, Clone, Copy)]
struct Flags {
    ca: &'static str,
    cert: &'static str,
    key: &'static str,
    server_name: &'static str,
}

impl Flags {
    const CLIENT: Flags = Flags {
        ca: "--tls-ca-cert-files",
        cert: "--tls-client-cert-file",
        key: "--tls-client-key-file",
        server_name: "--tls-server-name",
    };
    const PEER: Flags = Flags {
        ca: "--peer-tls-ca-cert-files",
        cert: "--peer-tls-client-cert-file",
        key: "--peer-tls-client-key-file",
        server_name: "--peer-tls-server-name",
    };
}

/// A client's TLS settings; files are read for each connection.
#[derive(Debug, Clone)]
pub struct ClientTls {
    flags: Flags,
    ca_files: Vec<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    server_name: Option<String>,
    insecure: bool,
}

impl ClientTls {
    fn new(
        flags: Flags,
        ca_files: &[PathBuf],
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        server_name: Option<String>,
        insecure: bool,
    ) -> Result<Self, TlsError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(TlsError::Config(format!(
                    "{} and {} go together",
                    flags.cert, flags.key
                )));
            }
        };
        if let Some(name) = &server_name {
            ServerName::try_from(name.clone())
                .map_err(|e| TlsError::Config(format!("{} {name:?}: {e}", flags.server_name)))?;
        }
        let tls = ClientTls {
            flags,
            ca_files: ca_files.to_vec(),
            identity,
            server_name,
            insecure,
        };
        // Bad files fail now, with the flag named, rather than at the first connection.
        tls.config()?;
        Ok(tls)
    }

    /// Trusting `ca_files`, presenting `identity` (certificate and key files) when given.
    pub fn from_files(
        ca_files: &[PathBuf],
        identity: Option<(PathBuf, PathBuf)>,
        server_name: Option<String>,
    ) -> Result<Self, TlsError> {
        let (cert, key) = identity.unzip();
        ClientTls::new(Flags::CLIENT, ca_files, cert, key, server_name, false)
    }

    fn config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = crate::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        } else {
            if self.ca_files.is_empty() {
                return Err(TlsError::Config(format!(
                    "TLS needs {} (the CA of the server's certificate; Webb trusts no system roots) \
                     or --tls-allow-insecure",
                    self.flags.ca
                )));
            }
            builder.with_root_certificates(pem::roots(self.flags.ca, &self.ca_files)?)
        };
        let mut config = match &self.identity {
            Some((cert_path, key_path)) => {
                let chain = pem::certs(self.flags.cert, cert_path)?;
                let key = pem::key(self.flags.key, key_path)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    TlsError::Config(format!(
                        "{} {} and {} {}: {e}",
                        self.flags.cert,
                        cert_path.display(),
                        self.flags.key,
                        key_path.display()
                    ))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The name checked in the server's certificate for `address` (`host:port`).
    pub fn server_name_for(&self, address: &str) -> Result<ServerName<'static>, TlsError> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(address).to_string(),
        };
        ServerName::try_from(name.clone()).map_err(|e| {
            TlsError::Config(format!(
                "{name:?} (from {address}) is not a server name: {e}; set {}",
                self.flags.server_name
            ))
        })
    }

    /// A TLS connection to `address` (`host:port`) for gRPC (ALPN `h2`), with a clear error
    /// when the handshake fails.
    pub async fn connect_stream(
        &self,
        address: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        self.connect_stream_alpn(address, b"h2").await
    }

    /// A TLS connection to `address` speaking `alpn` (`http/1.1` for the relay's HTTP port).
    pub async fn connect_stream_alpn(
        &self,
        address: &str,
        alpn: &[u8],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut config = self.config().map_err(std::io::Error::other)?;
        Arc::make_mut(&mut config).alpn_protocols = vec![alpn.to_vec()];
        let name = self
            .server_name_for(address)
            .map_err(std::io::Error::other)?;
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| {
                let hint = self.hint(&e);
                std::io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {address} failed: {e}{hint}"),
                )
            })
    }

    fn hint(&self, e: &std::io::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        let f = self.flags;
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            // BadSignature: an issuer of the same name (another "Webb CA"), but not the one.
            Some(E::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => format!(
                " (the server's certificate is not signed by a CA of {})",
                f.ca
            ),
            Some(E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => {
                format!(
                    " (set {} to a name the server's certificate carries)",
                    f.server_name
                )
            }
            Some(E::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => {
                " (the server's certificate has expired)".into()
            }
            Some(E::AlertReceived(A::CertificateRequired | A::HandshakeFailure)) => format!(
                " (the server wants a client certificate: {} and {})",
                f.cert, f.key
            ),
            Some(E::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateExpired)) => {
                format!(" (the server refused the client certificate of {})", f.cert)
            }
            Some(E::InvalidMessage(_)) => " (is the server speaking TLS?)".into(),
            _ => String::new(),
        }
    }

    /// A gRPC channel to `address` (`host:port`) over TLS, connected now.
    pub async fn connect(&self, address: &str, timeout: Duration) -> anyhow::Result<Channel> {
        let this = self.clone();
        let target = address.to_string();
        // The URI's scheme stays http: this connector already speaks TLS.
        let endpoint = Endpoint::from_shared(format!("http://{address}"))?.connect_timeout(timeout);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let this = this.clone();
                let target = target.clone();
                async move {
                    let stream = this.connect_stream(&target).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
        Ok(channel)
    }
}

/// An error and its sources on one line (tonic's transport errors say little on their own).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => address,
    }
}

/// `--tls-allow-insecure`: any certificate, but the handshake signatures are still checked.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::verify_signature(&self.0, false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::verify_signature(&self.0, true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_of_an_address_is_what_its_certificate_must_name() {
        assert_eq!(host_of("node-1.webb.local:4244"), "node-1.webb.local");
        assert_eq!(host_of("127.0.0.1:4244"), "127.0.0.1");
        assert_eq!(host_of("[2001:2::1]:4244"), "2001:2::1");
        assert_eq!(host_of("relay"), "relay");
    }
}
