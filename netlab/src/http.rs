//! The pods' HTTP/1.1: a hyper server with the shop's routes, and a small client that can
//! pipeline (hyper's client never pipelines, and the demo must show pipelined requests).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::traffic::ServerCounts;

/// The routes every HTTP server answers, and what the client picks from.
pub(crate) const ROUTE_OK: &str = "/api/items";
pub(crate) const ROUTE_SLOW: &str = "/api/slow";
pub(crate) const ROUTE_ERROR: &str = "/api/error";
pub(crate) const ROUTE_MISSING: &str = "/api/missing";
pub(crate) const SLOW: Duration = Duration::from_millis(50);

/// Status the server answers for a path.
pub(crate) fn status_for(path: &str) -> u16 {
    match path {
        "/" | "/healthz" | ROUTE_OK | ROUTE_SLOW => 200,
        ROUTE_ERROR => 500,
        _ => 404,
    }
}

/// Serves until `stop` turns true; counts each answered request in `counts`.
pub(crate) async fn serve(
    listener: TcpListener,
    pod: Arc<str>,
    counts: Arc<Mutex<ServerCounts>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(%pod, "accept: {e}");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let (pod, counts) = (pod.clone(), counts.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                handle(req, pod.clone(), counts.clone())
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .pipeline_flush(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("http connection: {e}");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    pod: Arc<str>,
    counts: Arc<Mutex<ServerCounts>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == ROUTE_SLOW {
        tokio::time::sleep(SLOW).await;
    }
    let status = status_for(&path);
    let trace_id = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .map(str::to_string);
    {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.http_by_status.entry(status).or_default() += 1;
        *c.http_by_pod.entry(pod.to_string()).or_default() += 1;
        if let Some(t) = trace_id {
            c.trace_ids.insert(t);
        }
    }
    let body = match status {
        200 => format!("{{\"pod\":\"{pod}\",\"path\":\"{path}\",\"items\":[1,2,3]}}\n"),
        500 => format!("{{\"error\":\"{pod} failed on purpose\"}}\n"),
        _ => format!("{{\"error\":\"{path} not found\"}}\n"),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).expect("valid status");
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("valid"));
    Ok(resp)
}

/// One request the client sends.
pub(crate) struct Req<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub traceparent: Option<&'a str>,
    pub close: bool,
}

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;

/// Writes every request at once (pipelined when more than one), then reads the responses in
/// order. Returns the statuses of the responses read before any error.
pub(crate) async fn exchange(
    stream: &mut TcpStream,
    reqs: &[Req<'_>],
) -> (Vec<u16>, Option<std::io::Error>) {
    let mut out = String::new();
    for r in reqs {
        out.push_str(&format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: netlab/0.1\r\nAccept: */*\r\n",
            r.path, r.host
        ));
        if let Some(tp) = r.traceparent {
            out.push_str(&format!("traceparent: {tp}\r\n"));
        }
        if r.close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
    }
    if let Err(e) = stream.write_all(out.as_bytes()).await {
        return (Vec::new(), Some(e));
    }
    let mut statuses = Vec::with_capacity(reqs.len());
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    for _ in reqs {
        match read_response(stream, &mut buf).await {
            Ok(s) => statuses.push(s),
            Err(e) => return (statuses, Some(e)),
        }
    }
    (statuses, None)
}

/// Reads one response (head + Content-Length body) from `buf` and the stream; leaves the bytes
/// of later responses in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    use std::io::{Error, ErrorKind};
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let status = resp.code.unwrap_or(0);
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                if len > MAX_BODY {
                    return Err(Error::new(ErrorKind::InvalidData, "response body too big"));
                }
                while buf.len() < head + len {
                    read_more(stream, buf).await?;
                }
                buf.drain(..head + len);
                return Ok(status);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(Error::new(ErrorKind::InvalidData, "response head too big"));
                }
                read_more(stream, buf).await?;
            }
            Err(e) => return Err(Error::new(ErrorKind::InvalidData, e.to_string())),
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}
