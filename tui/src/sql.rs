//! `webb sql`: read-only SQL over the relay's flow history, through the relay's HTTP API
//! (`POST /api/v1/sql`, DESIGN.md): the relay runs the query (DataFusion, with its limits), this
//! prints the answer as a table or as the API's JSON.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use serde::Deserialize;
use serde_json::Value;

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

/// `http://host:port` of the relay's HTTP port → the URI of its SQL endpoint.
pub fn sql_uri(api: &str) -> Result<Uri> {
    let base = if api.contains("://") {
        api.to_string()
    } else {
        format!("http://{api}")
    };
    if base.starts_with("https://") {
        bail!("--api {api:?}: https is not supported by this build (TLS comes with issue 12)");
    }
    let uri = format!("{}/api/v1/sql", base.trim_end_matches('/'));
    uri.parse::<Uri>()
        .with_context(|| format!("--api {api:?} is not a URL like http://relay:9965"))
}

/// Sends `query` to the relay and returns its answer, or its `{"error"}` as the error.
pub async fn run_query(
    api: &str,
    token: Option<&str>,
    query: &str,
    timeout: Duration,
) -> Result<(String, SqlAnswer)> {
    let uri = sql_uri(api)?;
    let authority = uri.authority().context("--api names no host")?.clone();
    let host = authority.host().trim_matches(['[', ']']).to_string();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
        .await
        .with_context(|| format!("connecting to {authority} timed out after {timeout:?}"))?
        .with_context(|| format!("cannot connect to the relay's HTTP API at {authority}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("HTTP handshake with the relay")?;
    let connection = tokio::spawn(conn);

    let body = serde_json::to_vec(&serde_json::json!({ "query": query }))?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri.path())
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::from(body)))?;
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
    let text = String::from_utf8_lossy(&bytes).into_owned();
    parse_answer(status, &text).map(|answer| (text, answer))
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
    fn api_addresses_take_a_scheme_or_none_and_refuse_https() {
        assert_eq!(
            sql_uri("relay:9965").unwrap().to_string(),
            "http://relay:9965/api/v1/sql"
        );
        assert_eq!(
            sql_uri("http://127.0.0.1:9965/").unwrap().to_string(),
            "http://127.0.0.1:9965/api/v1/sql"
        );
        assert!(sql_uri("https://relay:9965").is_err());
        assert!(sql_uri("http://bad host").is_err());
    }
}
