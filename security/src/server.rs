//! A server's TLS (the agent's `:4244`, the relay's `:4245` and HTTP port): its certificate
//! and key, and for mTLS the CAs that sign client certificates. The files are checked at
//! start (a bad file stops the server with the file named) and read again on the first
//! handshake after any of them changes; a bad new version is refused, counted and logged, and
//! the material in force stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::{Counters, TlsError, pem};

const CERT_FLAG: &str = "--tls-cert-file";
const KEY_FLAG: &str = "--tls-key-file";
const CA_FLAG: &str = "--tls-client-ca-files";

/// A server's TLS flags (the agent's and the relay's, named as Hubble's).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// Serve TLS with this certificate (PEM, leaf first); read again when it changes
    #[arg(long, value_name = "FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of --tls-cert-file (PEM); read again when it changes
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// CAs whose client certificates are accepted (mTLS: a client without one is refused)
    #[arg(
        long,
        value_name = "FILE",
        value_delimiter = ',',
        requires = "tls_cert_file"
    )]
    pub tls_client_ca_files: Vec<PathBuf>,
    /// With TLS, the payload option goes only to clients whose certificate (from
    /// --tls-client-ca-files) is valid for one of these names, and to the local unix socket
    #[arg(long, value_name = "NAME", value_delimiter = ',',
          default_value = crate::trust::DEFAULT_PAYLOAD_NAME)]
    pub tls_payload_client_names: Vec<String>,
    /// GetFlows streams one client address may hold open at once
    #[arg(long, value_name = "N", default_value_t = crate::StreamGate::DEFAULT_MAX_PER_CLIENT)]
    pub max_streams_per_client: usize,
}

impl ServerTlsArgs {
    /// What the server checks before streaming: payload trust (which follows `tls`) and the
    /// per-client stream bound. Says at start-up what the payload is exposed to.
    pub fn access(&self, tls: Option<&ServerTls>, counters: &Counters) -> crate::trust::Access {
        let payload = match tls {
            None => {
                tracing::warn!(
                    "no TLS (--tls-cert-file): flows and their captured payload (headers, URLs) \
                     go in plaintext to any client that can connect"
                );
                crate::PayloadPolicy::Anyone
            }
            Some(tls) => {
                if !tls.mutual() {
                    tracing::warn!(
                        "TLS without --tls-client-ca-files: clients cannot prove who they are, \
                         so no TCP client gets the payload option (the relay's L7 needs it)"
                    );
                }
                crate::PayloadPolicy::CertificateNames(self.tls_payload_client_names.clone())
            }
        };
        crate::trust::Access {
            payload,
            streams: crate::StreamGate::new(self.max_streams_per_client),
            counters: counters.clone(),
        }
    }

    /// The server's TLS, or None when no certificate is given (plaintext).
    pub fn load(&self, counters: &Counters) -> Result<Option<Arc<ServerTls>>, TlsError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some(Arc::new(ServerTls::new(
                cert,
                key,
                &self.tls_client_ca_files,
                counters.clone(),
            )?))),
            (None, None) if self.tls_client_ca_files.is_empty() => Ok(None),
            _ => Err(TlsError::Config(format!(
                "TLS needs both {CERT_FLAG} and {KEY_FLAG} ({CA_FLAG} only adds client checks)"
            ))),
        }
    }
}

/// Files whose modification times are watched, and what was last read from them.
#[derive(Debug)]
struct Watched<T> {
    paths: Vec<PathBuf>,
    seen: Vec<Option<SystemTime>>,
    /// Times of a version that failed to load (not retried, not logged again).
    failed: Option<Vec<Option<SystemTime>>>,
    current: T,
}

impl<T: Clone> Watched<T> {
    fn new(paths: Vec<PathBuf>, current: T) -> Self {
        let seen = pem::mtimes(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        Watched {
            paths,
            seen,
            failed: None,
            current,
        }
    }

    /// The current material, read again first when a file changed since.
    fn refresh(
        &mut self,
        what: &str,
        counters: &Counters,
        load: impl FnOnce() -> Result<T, TlsError>,
    ) -> T {
        let now = pem::mtimes(&self.paths.iter().map(PathBuf::as_path).collect::<Vec<_>>());
        if now == self.seen || self.failed.as_ref() == Some(&now) {
            return self.current.clone();
        }
        match load() {
            Ok(fresh) => {
                tracing::info!(files = ?self.paths, "{what} read again after a change");
                counters.reload(true);
                self.current = fresh;
                self.seen = now;
                self.failed = None;
            }
            Err(e) => {
                // A rotation often writes the certificate and the key one after the other:
                // the next change (the second file) is tried again.
                tracing::error!("{e}; keeping the {what} in force");
                counters.reload(false);
                self.failed = Some(now);
            }
        }
        self.current.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server certificate, read again when its files change.
#[derive(Debug)]
struct ReloadingCert {
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
    counters: Counters,
    state: Mutex<Watched<Arc<CertifiedKey>>>,
}

impl ReloadingCert {
    fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        pem::certified_key(&self.provider, CERT_FLAG, &self.cert, KEY_FLAG, &self.key).map(Arc::new)
    }

    fn current(&self) -> Arc<CertifiedKey> {
        lock(&self.state).refresh("server certificate", &self.counters, || self.load())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Client certificates checked against the client CAs, read again when their files change.
#[derive(Debug)]
struct ReloadingClientCas {
    provider: Arc<CryptoProvider>,
    counters: Counters,
    state: Mutex<Watched<Arc<dyn ClientCertVerifier>>>,
}

fn client_verifier(
    provider: &Arc<CryptoProvider>,
    paths: &[PathBuf],
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = pem::roots(CA_FLAG, paths)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(format!("{CA_FLAG}: {e}")))
}

impl ReloadingClientCas {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        let mut state = lock(&self.state);
        let paths = state.paths.clone();
        state.refresh("client CAs", &self.counters, || {
            client_verifier(&self.provider, &paths)
        })
    }
}

impl ClientCertVerifier for ReloadingClientCas {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the CAs can change under a borrowed list.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::verify_signature(&self.provider, false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::verify_signature(&self.provider, true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A server's TLS: certificate (and client CAs) that follow their files.
#[derive(Debug)]
pub struct ServerTls {
    cert: Arc<ReloadingCert>,
    client_cas: Option<Arc<ReloadingClientCas>>,
    counters: Counters,
}

impl ServerTls {
    /// Reads and checks the files now; mTLS when `client_cas` is not empty.
    pub fn new(
        cert: &Path,
        key: &Path,
        client_cas: &[PathBuf],
        counters: Counters,
    ) -> Result<Self, TlsError> {
        let provider = crate::provider();
        let first = pem::certified_key(&provider, CERT_FLAG, cert, KEY_FLAG, key)?;
        let cert = Arc::new(ReloadingCert {
            provider: provider.clone(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            counters: counters.clone(),
            state: Mutex::new(Watched::new(
                vec![cert.to_path_buf(), key.to_path_buf()],
                Arc::new(first),
            )),
        });
        let client_cas = if client_cas.is_empty() {
            None
        } else {
            let verifier = client_verifier(&provider, client_cas)?;
            Some(Arc::new(ReloadingClientCas {
                provider,
                counters: counters.clone(),
                state: Mutex::new(Watched::new(client_cas.to_vec(), verifier)),
            }))
        };
        Ok(ServerTls {
            cert,
            client_cas,
            counters,
        })
    }

    /// Whether clients must present a certificate from the client CAs.
    pub fn mutual(&self) -> bool {
        self.client_cas.is_some()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A rustls configuration speaking `alpn` (`h2` for gRPC, `http/1.1` for the HTTP port).
    pub fn config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match &self.client_cas {
            Some(v) => builder.with_client_cert_verifier(v.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.cert.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}
