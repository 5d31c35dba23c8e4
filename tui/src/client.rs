//! Connecting to a Webb (or Hubble) Observer: agent `:4244` or relay `:4245`.

use std::time::Duration;

use anyhow::{Context, bail};
use tonic::transport::{Channel, Endpoint};

/// Hubble's default server address.
pub const DEFAULT_SERVER: &str = "localhost:4245";

/// The endpoint URI for a `--server` value: `host:port`, `http://host:port`; `tls://` is
/// refused until TLS lands.
pub fn endpoint_uri(server: &str) -> anyhow::Result<String> {
    let server = server.trim();
    if server.is_empty() {
        bail!("--server is empty; expected host:port (e.g. {DEFAULT_SERVER})");
    }
    if server.starts_with("tls://") || server.starts_with("https://") {
        bail!(
            "TLS servers ({server}) are not supported yet: TLS comes with the security issue; \
             use a plain host:port"
        );
    }
    let rest = server.strip_prefix("http://").unwrap_or(server);
    if rest.contains("://") {
        bail!("unsupported scheme in --server {server:?}; expected host:port");
    }
    Ok(format!("http://{rest}"))
}

/// Connects (eagerly, so a wrong address fails fast with a clear message). `unix:///path`
/// reaches an agent over its local socket.
pub async fn connect(server: &str, timeout: Duration) -> anyhow::Result<Channel> {
    if let Some(path) = server.trim().strip_prefix("unix://") {
        return connect_unix(path, timeout)
            .await
            .with_context(|| format!("failed to connect to {server}"));
    }
    let uri = endpoint_uri(server)?;
    let endpoint = Endpoint::from_shared(uri)
        .with_context(|| format!("invalid --server {server:?}"))?
        .connect_timeout(timeout);
    endpoint
        .connect()
        .await
        .with_context(|| format!("failed to connect to {server}"))
}

/// A gRPC error as one line for the user.
pub fn status_message(status: &tonic::Status) -> String {
    if status.code() == tonic::Code::Unknown {
        status.message().to_string()
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
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
