//! `webb sql`: read-only SQL over the relay's flow history, through the relay's HTTP API
//! (`POST /api/v1/sql`, DESIGN.md): the relay runs the query (DataFusion, with its limits), this
//! prints the answer as a table or as the API's JSON.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use webb_security::ClientTlsArgs;

/// The relay's SQL endpoint (DESIGN.md).
const SQL_PATH: &str = "/api/v1/sql";

/// Longest answer read from the relay (its row cap keeps real answers far below).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The relay's answer to `POST /api/v1/sql`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SqlAnswer {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    /// The relay stopped at its row cap (or another limit): there is more.
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

/// Where `webb sql` sends its query: the relay's HTTP port, plaintext or TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    /// `host:port` of the relay's HTTP port.
    pub host_port: String,
    /// `https://` or `tls://` was given (TLS, as `--server tls://` for observe).
    pub tls_scheme: bool,
}

/// Reads `--api`: `host:port`, `http://host:port`, or `https://host:port` / `tls://host:port`
/// for a relay whose HTTP port serves TLS (the same forms as `--server`).
pub fn api_address(api: &str) -> Result<Api> {
    let a = crate::client::address("--api", api, "http://relay:9965")?;
    Ok(Api {
        host_port: a.host_port,
        tls_scheme: a.tls_scheme,
    })
}

/// Sends `query` to the relay's HTTP API at `api` and returns its answer, or its `{"error"}`
/// as the error. TLS when `api` is `https://`/`tls://` or when Hubble's `--tls*` flags ask
/// for it (`tls`: the same flags `webb observe` takes).
pub async fn run_query(
    api: &str,
    tls: &ClientTlsArgs,
    token: Option<&str>,
    query: &str,
    timeout: Duration,
) -> Result<(String, SqlAnswer)> {
    let api = api_address(api)?;
    let request = sql_request(&api.host_port, token, query)?;
    let address = api.host_port.as_str();
    let (status, bytes) = match tls.client(api.tls_scheme)? {
        Some(tls) => {
            let stream =
                tokio::time::timeout(timeout, tls.connect_stream_alpn(address, b"http/1.1"))
                    .await
                    .with_context(|| {
                        format!("connecting to {address} timed out after {timeout:?}")
                    })?
                    .with_context(|| {
                        format!("cannot connect to the relay's HTTP API at {address}")
                    })?;
            exchange(stream, request)
                .await
                .map_err(|e| refused(e, address, true))?
        }
        None => {
            let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
                .await
                .with_context(|| format!("connecting to {address} timed out after {timeout:?}"))?
                .with_context(|| format!("cannot connect to the relay's HTTP API at {address}"))?;
            exchange(stream, request)
                .await
                .map_err(|e| refused(e, address, false))?
        }
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    parse_answer(status, &text).map(|answer| (text, answer))
}

/// `POST /api/v1/sql` with the query as `{"query": …}`, and the token when given.
fn sql_request(host_port: &str, token: Option<&str>, query: &str) -> Result<Request<Full<Bytes>>> {
    let body = serde_json::to_vec(&serde_json::json!({ "query": query }))?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(SQL_PATH)
        .header(hyper::header::HOST, host_port)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    Ok(request.body(Full::new(Bytes::from(body)))?)
}

/// One HTTP/1.1 exchange over `stream` (TCP or TLS): the answer's status and body.
async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("HTTP handshake with the relay")?;
    let connection = tokio::spawn(conn);
    // The query itself may run longer than connecting: the relay bounds it with its own limit.
    let response = sender
        .send_request(request)
        .await
        .context("sending the query to the relay")?;
    let status = response.status();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the relay's answer: {e}"))?
        .to_bytes();
    connection.abort();
    Ok((status, bytes))
}

/// A failed exchange, with what the user can do about it: with mTLS the relay checks the
/// client's certificate after the client's side of the handshake is done (TLS 1.3), so its
/// refusal arrives as the answer to the request; a plaintext client gets a TLS alert instead
/// of HTTP, or is cut off.
fn refused(e: anyhow::Error, address: &str, tls: bool) -> anyhow::Error {
    let chain = e
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    let hint = if tls && chain.contains("CertificateRequired") {
        " (the relay wants a client certificate: --tls-client-cert-file and \
         --tls-client-key-file)"
    } else if tls
        && ["UnknownCA", "BadCertificate", "CertificateExpired"]
            .iter()
            .any(|a| chain.contains(a))
    {
        " (the relay refused the client certificate of --tls-client-cert-file)"
    } else if !tls
        && ["closed", "reset", "invalid HTTP"]
            .iter()
            .any(|c| chain.contains(c))
    {
        " (no HTTP answer: if the relay's HTTP port serves TLS, give --api \
         https://host:port or --tls, with --tls-ca-cert-files)"
    } else {
        ""
    };
    anyhow::anyhow!("the relay's HTTP API at {address}: {chain}{hint}")
}

/// The answer for a 2xx, else the relay's `{"error": …}` (or what it sent) as the error.
pub fn parse_answer(status: StatusCode, text: &str) -> Result<SqlAnswer> {
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        bail!("the relay refused the query ({status}): {message}");
    }
    serde_json::from_str(text).with_context(|| {
        format!("the relay's answer is not the SQL answer shape (columns, rows): {text:.200}")
    })
}

/// One cell as text: strings bare, null empty, everything else as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The answer as an aligned table with a header line, like `hubble observe -o table`.
pub fn format_table(answer: &SqlAnswer) -> String {
    let header: Vec<String> = answer
        .columns
        .iter()
        .map(|c| c.name.to_uppercase())
        .collect();
    let rows: Vec<Vec<String>> = answer
        .rows
        .iter()
        .map(|r| r.iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                out.push_str(&format!("{c:<pad$}   "));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(&header);
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> SqlAnswer {
        serde_json::from_str(
            r#"{"columns":[{"name":"source_pod","type":"Utf8"},{"name":"n","type":"Int64"}],
                "rows":[["shop/web-1",12],[null,3]],"truncated":false,"loss":{}}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_answer_prints_as_an_aligned_table_with_null_as_empty() {
        assert_eq!(
            format_table(&answer()),
            "SOURCE_POD   N\nshop/web-1   12\n             3\n"
        );
    }

    #[test]
    fn a_refusal_says_what_the_relay_said() {
        let err = parse_answer(
            StatusCode::BAD_REQUEST,
            r#"{"error":"only SELECT is allowed: DROP TABLE"}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "the relay refused the query (400 Bad Request): only SELECT is allowed: DROP TABLE"
        );
    }

    #[test]
    fn api_addresses_take_the_forms_of_server_and_https_or_tls_asks_for_tls() {
        let plain = api_address("relay:9965").unwrap();
        assert_eq!(plain.host_port, "relay:9965");
        assert!(!plain.tls_scheme);
        let plain = api_address("http://127.0.0.1:9965/").unwrap();
        assert_eq!(plain.host_port, "127.0.0.1:9965");
        assert!(!plain.tls_scheme);
        for tls in ["https://relay:9965", "tls://relay:9965"] {
            let a = api_address(tls).unwrap();
            assert_eq!(a.host_port, "relay:9965", "{tls}");
            assert!(a.tls_scheme, "{tls}");
        }
        assert!(api_address("ftp://relay:9965").is_err());
        assert!(api_address("").is_err());
    }

    #[test]
    fn the_request_posts_the_query_as_json_with_the_token() {
        let r = sql_request("relay:9965", Some("t0k"), "SELECT 1").unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri().path(), "/api/v1/sql");
        assert_eq!(r.headers()[hyper::header::HOST], "relay:9965");
        assert_eq!(r.headers()[hyper::header::AUTHORIZATION], "Bearer t0k");
        let r = sql_request("relay:9965", None, "SELECT 1").unwrap();
        assert!(!r.headers().contains_key(hyper::header::AUTHORIZATION));
    }
}
