//! Connecting to a Webb (or Hubble) Observer: agent `:4244` or relay `:4245`, plaintext or
//! TLS (Hubble's `--tls*` flags, or a `tls://` server).

use std::time::Duration;

use anyhow::{Context, bail};
use tonic::transport::{Channel, Endpoint};
use webb_security::ClientTlsArgs;

/// Hubble's default server address.
pub const DEFAULT_SERVER: &str = "localhost:4245";

/// A `--server` value taken apart: `host:port`, and whether its scheme asks for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host_port: String,
    pub tls_scheme: bool,
}

/// Parses `--server`: `host:port`, `http://host:port`, or `tls://host:port` (as Hubble;
/// `https://` is taken the same way).
pub fn server_address(server: &str) -> anyhow::Result<ServerAddress> {
    address("--server", server, DEFAULT_SERVER)
}

/// Parses an address given to `flag` the way `--server` is read: `host:port`,
/// `http://host:port`, or `tls://host:port` / `https://host:port` for TLS (so `webb sql --api`
/// and `webb observe --server` take the same forms). `example` goes into the errors.
pub fn address(flag: &str, value: &str, example: &str) -> anyhow::Result<ServerAddress> {
    let value = value.trim();
    if value.is_empty() {
        bail!("{flag} is empty; expected host:port (e.g. {example})");
    }
    let (rest, tls_scheme) = if let Some(r) = value
        .strip_prefix("tls://")
        .or_else(|| value.strip_prefix("https://"))
    {
        (r, true)
    } else {
        (value.strip_prefix("http://").unwrap_or(value), false)
    };
    if rest.contains("://") {
        bail!(
            "unsupported scheme in {flag} {value:?}; expected host:port, http://host:port or \
             tls://host:port"
        );
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        bail!("no host:port in {flag} {value:?}");
    }
    if rest.contains('/') {
        bail!("{flag} {value:?} has a path; expected host:port (e.g. {example})");
    }
    Ok(ServerAddress {
        host_port: rest.to_string(),
        tls_scheme,
    })
}

/// Connects (eagerly, so a wrong address or a refused handshake fails fast with a clear
/// message). `unix:///path` reaches an agent over its local socket.
pub async fn connect(
    server: &str,
    tls: &ClientTlsArgs,
    timeout: Duration,
) -> anyhow::Result<Channel> {
    if let Some(path) = server.trim().strip_prefix("unix://") {
        return connect_unix(path, timeout)
            .await
            .with_context(|| format!("failed to connect to {server}"));
    }
    let address = server_address(server)?;
    match tls.client(address.tls_scheme)? {
        Some(tls) => tls
            .connect(&address.host_port, timeout)
            .await
            .with_context(|| format!("failed to connect to {server}")),
        None => {
            let endpoint = Endpoint::from_shared(format!("http://{}", address.host_port))
                .with_context(|| format!("invalid --server {server:?}"))?
                .connect_timeout(timeout);
            endpoint.connect().await.map_err(|e| {
                anyhow::anyhow!(
                    "failed to connect to {server}: {}",
                    webb_security::client::error_chain(&e)
                )
            })
        }
    }
}

/// A gRPC error as one line for the user; a plaintext client refused by a TLS server gets told
/// what to do.
pub fn status_message(status: &tonic::Status) -> String {
    let text = if status.code() == tonic::Code::Unknown {
        status.message().to_string()
    } else {
        format!("{:?}: {}", status.code(), status.message())
    };
    let chain = std::error::Error::source(status)
        .map(webb_security::client::error_chain)
        .filter(|c| !text.contains(c.as_str()));
    let text = match chain {
        Some(c) => format!("{text}: {c}"),
        None => text,
    };
    let dropped = [
        "connection closed",
        "broken pipe",
        "connection error",
        "frame",
    ];
    if matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
    ) && dropped.iter().any(|d| text.contains(d))
    {
        return format!(
            "{text} (the server closed the connection: a TLS server refuses plaintext clients \
             (--tls or --server tls://host:port) and, with mTLS, clients without \
             --tls-client-cert-file; its log says which)"
        );
    }
    text
}

async fn connect_unix(path: &str, timeout: Duration) -> anyhow::Result<Channel> {
    if path.is_empty() {
        bail!("no socket path after unix://");
    }
    let path = std::path::PathBuf::from(path);
    // The URI is required by the API but unused: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://localhost").connect_timeout(timeout);
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_scheme_asks_for_tls_and_the_rest_is_host_port() {
        let a = server_address("tls://relay.webb.local:4245").unwrap();
        assert_eq!(a.host_port, "relay.webb.local:4245");
        assert!(a.tls_scheme);
        let b = server_address("http://127.0.0.1:4245").unwrap();
        assert_eq!(b.host_port, "127.0.0.1:4245");
        assert!(!b.tls_scheme);
        assert!(!server_address("localhost:4245").unwrap().tls_scheme);
        let e = server_address("ftp://x:1").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme in --server"), "{e}");
        let e = address("--api", "http://relay:9965/x", "relay:9965")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--api") && e.contains("has a path"), "{e}");
    }
}
