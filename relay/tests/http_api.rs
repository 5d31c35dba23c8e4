//! The relay's HTTP API (`/api/v1/*`, `/metrics`, `/healthz`) over the wire: the real router
//! (`relay::api::router` of `RelayServer::api_state`, as `webb-relay` serves it) bound on
//! loopback, over a real flow store in a scratch directory filled with synthetic flows, asked
//! by a plain HTTP/1.1 client on a TCP socket. Shapes are the ones DESIGN.md pins.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flow_store::generator::FlowGenerator;
use flow_store::schema::stored_form;
use flow_store::{FlowStore, StoreConfig};
use relay::metrics::{Metrics, MetricsConfig, PROMETHEUS_TEXT_CONTENT_TYPE};
use relay::server::{Outputs, RelayConfig, RelayServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use webb_proto::Timestamp;
use webb_proto::flow::{Flow, Verdict};
use webb_proto::webb_v1::{CapturedPayload, FlowExtras, KernelDropReason};

/// Every request, start-up and shutdown step is bounded by this.
const WAIT: Duration = Duration::from_secs(60);
/// Polls are bounded by this many steps of `STEP`.
const STEPS: usize = 200;
const STEP: Duration = Duration::from_millis(50);
/// Flows in the store of most tests: one a second over the last 2000 s.
const FLOWS: usize = 2000;
const NODE: &str = "relay-under-test";
const TOKEN: &str = "s3cret-token";

/// Request headers, name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

// ---------------------------------------------------------------------------------------------
// A relay with its HTTP port on loopback.
// ---------------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "webb-relay-http-api-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Options {
    /// Synthetic flows written (and flushed) before the relay starts.
    flows: usize,
    token: Option<&'static str>,
    /// `false`: a relay started with `--store-dir none`.
    store: bool,
    queue_capacity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flows: FLOWS,
            token: None,
            store: true,
            queue_capacity: StoreConfig::new("unused").queue_capacity,
        }
    }
}

struct Relay {
    addr: SocketAddr,
    server: Option<RelayServer>,
    store: Option<Arc<FlowStore>>,
    generator: FlowGenerator,
    flows: usize,
    stop: tokio::sync::watch::Sender<bool>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    // Last: removed once everything above is gone.
    dir: ScratchDir,
}

/// Writes `n` synthetic flows ending just before now, as `webb-relay --synthetic-flows` does,
/// and flushes them to Parquet.
fn fill(store: &FlowStore, n: usize) -> FlowGenerator {
    let now = Timestamp::now();
    let rate = (n as u64).div_ceil(3600).max(1);
    let span_ns = n as u64 * 1_000_000_000 / rate;
    let start = Timestamp::from_unix_nanos((now.unix_nanos() as u64).saturating_sub(span_ns));
    let generator = FlowGenerator::new(200, start, rate);
    for i in 0..n {
        assert!(
            store.append_blocking(generator.flow(i)),
            "the writer stopped"
        );
    }
    store.flush().expect("flushing the synthetic flows");
    generator
}

impl Relay {
    async fn start(o: Options) -> Relay {
        let dir = ScratchDir::new();
        let (store, generator) = if o.store {
            let config = StoreConfig {
                queue_capacity: o.queue_capacity,
                ..StoreConfig::new(dir.0.join("store"))
            };
            let flows = o.flows;
            let (store, generator) = tokio::time::timeout(
                WAIT,
                tokio::task::spawn_blocking(move || {
                    let store = FlowStore::open(config).expect("opening the store");
                    let generator = fill(&store, flows);
                    (store, generator)
                }),
            )
            .await
            .expect("filling the store in time")
            .unwrap();
            (Some(Arc::new(store)), generator)
        } else {
            (None, FlowGenerator::new(200, Timestamp::now(), 1))
        };
        let metrics =
            Metrics::new(&MetricsConfig::from_flag("flow drop tcp httpV2:exemplars=true").unwrap())
                .unwrap();
        let server = RelayServer::start(RelayConfig {
            ring_capacity: 4095,
            node_name: NODE.into(),
            loss_interval: Duration::from_millis(50),
            outputs: Outputs {
                metrics: Some(Arc::new(metrics)),
                store: store.clone(),
                spans: None,
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let router = relay::api::router(server.api_state(o.token.map(String::from)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let http = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Relay {
            addr,
            server: Some(server),
            store,
            generator,
            flows: o.flows,
            stop,
            http: Some(http),
            dir,
        }
    }

    /// Stops the HTTP port and the relay, closes the store, removes the directory.
    async fn finish(mut self) {
        let _ = self.stop.send(true);
        if let Some(http) = self.http.take() {
            tokio::time::timeout(WAIT, http)
                .await
                .expect("the HTTP port stops in time")
                .unwrap()
                .unwrap();
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(WAIT, server.shutdown())
                .await
                .expect("the relay stops in time");
        }
        if let Some(mut store) = self.store.take() {
            // The relay's monitor task lets go of its handle once its abort is processed.
            for _ in 0..STEPS {
                match Arc::try_unwrap(store) {
                    Ok(s) => {
                        tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || s.close()))
                            .await
                            .expect("the store closes in time")
                            .unwrap();
                        return;
                    }
                    Err(shared) => {
                        store = shared;
                        tokio::time::sleep(STEP).await;
                    }
                }
            }
            panic!("the store is still shared after the relay stopped");
        }
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.0.join("store")
    }

    /// Flow `i` as the API prints it: the stored form, without Webb's extras unless asked.
    fn served(&self, i: usize, extras: bool) -> Flow {
        let mut f = stored_form(&self.generator.flow(i));
        if !extras {
            webb_proto::extras::strip(&mut f);
        }
        f
    }

    /// Indexes of the stored flows `keep` accepts, oldest first.
    fn indexes(&self, keep: impl Fn(&Flow) -> bool) -> Vec<usize> {
        (0..self.flows)
            .filter(|&i| keep(&self.generator.flow(i)))
            .collect()
    }

    async fn get(&self, target: &str) -> Reply {
        exchange(self.addr, "GET", target, &[], None).await
    }

    async fn get_with(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        exchange(self.addr, "GET", target, headers, None).await
    }

    async fn sql(&self, query: &str) -> Reply {
        self.post_json("/api/v1/sql", &json!({ "query": query }), &[])
            .await
    }

    async fn post_json(&self, target: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        exchange(
            self.addr,
            "POST",
            target,
            &all,
            Some(body.to_string().as_bytes()),
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// A plain HTTP/1.1 client.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Reply {
    status: u16,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, after checking the status and the content type.
    fn json(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "content type; body: {}",
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// An error answer: exactly `{"error": message}` with `status`; returns the message.
    fn error(&self, status: u16) -> String {
        let v = self.json(status);
        let o = v.as_object().expect("an error is a JSON object");
        assert_eq!(
            o.keys().collect::<Vec<_>>(),
            ["error"],
            "an error has one key: {v}"
        );
        let message = o["error"].as_str().expect("error is a string");
        assert!(!message.is_empty());
        message.to_string()
    }
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request on a fresh connection (`Connection: close`), the answer read to the end.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let raw = tokio::time::timeout(WAIT, async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(head.as_bytes()).await?;
        if let Some(b) = body {
            s.write_all(b).await?;
        }
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {target}: no answer within {WAIT:?}"))
    .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
    parse_reply(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {target}: not an HTTP/1.1 answer: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.1 ") {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect::<Option<_>>()?;
    let rest = &raw[end + 4..];
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    reply.body = if reply.header("transfer-encoding") == Some("chunked") {
        dechunk(rest)?
    } else {
        if let Some(n) = reply.header("content-length") {
            assert_eq!(n.parse::<usize>().ok()?, rest.len(), "content-length");
        }
        rest.to_vec()
    };
    Some(reply)
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers over answers.
// ---------------------------------------------------------------------------------------------

/// The flows of a `/api/v1/flows` answer, read back as Flow messages (protojson).
fn flows_of(answer: &Value) -> Vec<Flow> {
    answer["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("`flows` is an array: {answer}"))
        .iter()
        .map(|f| {
            webb_proto::json::from_str::<Flow>("Flow", &f.to_string())
                .unwrap_or_else(|e| panic!("{e}: {f}"))
        })
        .collect()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn no_loss() -> Value {
    json!({ "total": 0, "stages": [] })
}

fn rfc3339(t: Timestamp) -> String {
    t.to_datetime()
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn dropped(f: &Flow) -> bool {
    f.verdict == Verdict::Dropped as i32
}

fn source_namespace(f: &Flow) -> &str {
    f.source.as_ref().map_or("", |e| e.namespace.as_str())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

async fn sql_count(relay: &Relay, query: &str) -> u64 {
    let answer = relay.sql(query).await.json(200);
    assert_eq!(answer["rows"].as_array().map(Vec::len), Some(1), "{answer}");
    answer["rows"][0][0]
        .as_u64()
        .unwrap_or_else(|| panic!("a count: {answer}"))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/flows
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_since_and_limit_are_the_newest_of_the_range_oldest_first_with_loss() {
    let relay = Relay::start(Options::default()).await;

    let answer = relay.get("/api/v1/flows?since=2h&limit=5").await.json(200);
    assert_eq!(
        keys(&answer),
        BTreeSet::from(["flows", "truncated", "loss"])
    );
    let flows = flows_of(&answer);
    // The newest five of the range, printed oldest first as `hubble observe` does, each
    // exactly the stored flow (Webb's extras left out: the request did not ask for them).
    let expected: Vec<Flow> = (FLOWS - 5..FLOWS).map(|i| relay.served(i, false)).collect();
    assert_eq!(flows, expected);
    let times: Vec<i128> = flows
        .iter()
        .map(|f| f.time.as_ref().unwrap().unix_nanos())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    // Protojson: proto field names, enums by name, time in RFC 3339.
    let first = &answer["flows"][0];
    assert_eq!(first["uuid"], json!(expected[0].uuid));
    let time = chrono::DateTime::parse_from_rfc3339(first["time"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("time in RFC 3339 ({e}): {first}"));
    assert_eq!(
        i128::from(time.timestamp_nanos_opt().unwrap()),
        expected[0].time.unwrap().unix_nanos()
    );
    assert!(
        first["time"].as_str().unwrap().ends_with('Z'),
        "UTC: {first}"
    );
    assert!(first["verdict"].is_string(), "enums by name: {first}");
    assert!(
        answer["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f.get("extensions").is_none())
    );
    assert_eq!(
        answer["truncated"],
        json!(true),
        "more flows than the limit"
    );
    assert_eq!(answer["loss"], no_loss());

    // Without a limit: the newest 100 (the default) of the range.
    let answer = relay.get("/api/v1/flows?since=2h").await.json(200);
    let expected: Vec<Flow> = (FLOWS - 100..FLOWS)
        .map(|i| relay.served(i, false))
        .collect();
    assert_eq!(flows_of(&answer), expected);
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_between_since_and_until_are_exactly_those_of_the_range_in_rfc3339_or_unix_time() {
    let relay = Relay::start(Options::default()).await;
    let t = |i| relay.generator.time(i);

    // RFC 3339: since inclusive, until exclusive.
    let target = format!(
        "/api/v1/flows?since={}&until={}&limit=100",
        enc(&rfc3339(t(100))),
        enc(&rfc3339(t(110)))
    );
    let answer = relay.get(&target).await.json(200);
    let expected: Vec<Flow> = (100..110).map(|i| relay.served(i, false)).collect();
    assert_eq!(flows_of(&answer), expected);
    assert_eq!(answer["truncated"], json!(false), "the whole range fits");

    // Unix seconds and Unix milliseconds (what Grafana sends) name the same whole seconds:
    // every flow of those seconds (neighbours of flows 100 and 110 may share them).
    let (from_s, to_s) = (t(100).seconds, t(110).seconds + 1);
    let expected: Vec<Flow> = (90..120)
        .filter(|&i| (from_s..to_s).contains(&t(i).seconds))
        .map(|i| relay.served(i, false))
        .collect();
    assert!(expected.len() >= 11, "{} flows", expected.len());
    for target in [
        format!("/api/v1/flows?since={from_s}&until={to_s}&limit=100"),
        format!(
            "/api/v1/flows?since={}&until={}&limit=100",
            from_s * 1000,
            to_s * 1000
        ),
    ] {
        let answer = relay.get(&target).await.json(200);
        assert_eq!(flows_of(&answer), expected, "{target}");
    }

    // A range with no flows is an empty list, not an error.
    let target = format!(
        "/api/v1/flows?since={}&until={}",
        t(0).seconds - 7200,
        t(0).seconds - 3600
    );
    let answer = relay.get(&target).await.json(200);
    assert_eq!(answer["flows"], json!([]));
    assert_eq!(answer["truncated"], json!(false));
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_filter_returns_only_flows_matching_one_of_the_hubble_flow_filters() {
    let relay = Relay::start(Options::default()).await;

    // All flows whose source pod is in namespace ns-3 (Hubble's `<namespace>/` form).
    let filter = enc(r#"[{"source_pod":["ns-3/"]}]"#);
    let answer = relay
        .get(&format!(
            "/api/v1/flows?since=2h&limit=1000&filter={filter}"
        ))
        .await
        .json(200);
    let want = relay.indexes(|f| source_namespace(f) == "ns-3");
    assert!(want.len() > 10 && want.len() < 1000, "{}", want.len());
    let expected: Vec<Flow> = want.iter().map(|&i| relay.served(i, false)).collect();
    assert_eq!(flows_of(&answer), expected);
    assert_eq!(answer["truncated"], json!(false));

    // One filter object is accepted as a list of one.
    let one = enc(r#"{"source_pod":["ns-3/"]}"#);
    let answer = relay
        .get(&format!("/api/v1/flows?since=2h&limit=1000&filter={one}"))
        .await
        .json(200);
    assert_eq!(flows_of(&answer), expected);

    // Filters of the list are ORed; fields of one filter are ANDed.
    let filter =
        enc(r#"[{"source_pod":["ns-3/"],"verdict":["DROPPED"]},{"source_pod":["ns-4/"]}]"#);
    let answer = relay
        .get(&format!(
            "/api/v1/flows?since=2h&limit=1000&filter={filter}"
        ))
        .await
        .json(200);
    let want = relay.indexes(|f| {
        (source_namespace(f) == "ns-3" && dropped(f)) || source_namespace(f) == "ns-4"
    });
    let expected: Vec<Flow> = want.iter().map(|&i| relay.served(i, false)).collect();
    assert_eq!(flows_of(&answer), expected);

    // The blacklist leaves out what matches it.
    let blacklist = enc(r#"[{"verdict":["DROPPED"]}]"#);
    let filter = enc(r#"[{"source_pod":["ns-3/"]}]"#);
    let answer = relay
        .get(&format!(
            "/api/v1/flows?since=2h&limit=1000&filter={filter}&blacklist={blacklist}"
        ))
        .await
        .json(200);
    let want = relay.indexes(|f| source_namespace(f) == "ns-3" && !dropped(f));
    let expected: Vec<Flow> = want.iter().map(|&i| relay.served(i, false)).collect();
    assert_eq!(flows_of(&answer), expected);
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_carry_webbs_extras_only_when_asked_with_extras_true_and_never_the_payload() {
    let relay = Relay::start(Options::default()).await;
    // Drops with a kernel drop reason and a captured payload, as an agent sends them, each
    // half a second after a stored drop.
    let drops = relay.indexes(dropped);
    let store = relay.store.clone().unwrap();
    let mut with_extras: Vec<Flow> = drops[..3]
        .iter()
        .map(|&i| {
            let mut f = relay.generator.flow(i);
            let t = f.time.unwrap();
            f.time = Some(Timestamp::from_unix_nanos(
                t.unix_nanos() as u64 + 500_000_000,
            ));
            f.uuid = format!("{}-extras", f.uuid);
            let extras = FlowExtras {
                payload: Some(CapturedPayload {
                    data: b"GET /secret HTTP/1.1\r\n".to_vec(),
                    original_length: 120,
                    ..Default::default()
                }),
                kernel_drop: Some(KernelDropReason {
                    name: "SKB_DROP_REASON_NETFILTER_DROP".into(),
                    id: 12,
                    symbol: "nf_hook_slow".into(),
                    offset: 0x11c,
                }),
                ..Default::default()
            };
            webb_proto::extras::attach(&mut f, Some(&extras));
            f
        })
        .collect();
    let added = with_extras.clone();
    tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            for f in added {
                assert!(store.append_blocking(f));
            }
            store.flush().unwrap();
        }),
    )
    .await
    .expect("writing in time")
    .unwrap();
    let expected = |extras: bool| {
        let mut all: Vec<Flow> = drops.iter().map(|&i| relay.served(i, extras)).collect();
        all.extend(with_extras.iter().map(|f| {
            let mut f = stored_form(f);
            if !extras {
                webb_proto::extras::strip(&mut f);
            }
            f
        }));
        all.sort_by_key(|f| f.time.unwrap().unix_nanos());
        all
    };

    let filter = enc(r#"[{"verdict":["DROPPED"]}]"#);
    let plain = relay
        .get(&format!(
            "/api/v1/flows?since=2h&limit=1000&filter={filter}"
        ))
        .await
        .json(200);
    assert!(
        plain["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f.get("extensions").is_none()),
        "a Hubble client never receives an Any it does not know"
    );
    assert_eq!(flows_of(&plain), expected(false));

    let with = relay
        .get(&format!(
            "/api/v1/flows?since=2h&limit=1000&filter={filter}&extras=true"
        ))
        .await
        .json(200);
    let got = flows_of(&with);
    assert_eq!(got, expected(true));
    // The generator's kernel drops carry extras too; the three written above must be among them.
    let extras: Vec<(&str, FlowExtras)> = got
        .iter()
        .filter_map(|f| webb_proto::extras::unpack(f).map(|e| (f.uuid.as_str(), e.unwrap())))
        .collect();
    let written = extras.iter().filter(|(uuid, _)| uuid.ends_with("-extras"));
    assert_eq!(written.count(), 3, "{with}");
    for (_, e) in &extras {
        assert_eq!(e.payload, None, "the payload is never stored nor served");
        assert_eq!(e.kernel_drop.as_ref().unwrap().symbol, "nf_hook_slow");
    }
    with_extras.clear();
    let any = with["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("extensions"))
        .expect("a flow with extensions");
    assert_eq!(
        any["@type"],
        json!("type.googleapis.com/webb.v1.FlowExtras"),
        "{any}"
    );
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_bad_parameters_are_400_with_an_error_naming_the_parameter() {
    let relay = Relay::start(Options::default()).await;
    let cases = [
        (
            "since=yesterday-ish",
            "since: cannot read \"yesterday-ish\" as a time",
        ),
        (
            "since=2h&until=soon",
            "until: cannot read \"soon\" as a time",
        ),
        ("since=1h&until=2h", "since ("),
        (
            "limit=0",
            "limit: expected a number from 1 to 10000, got \"0\"",
        ),
        ("limit=10001", "limit: expected a number from 1 to 10000"),
        (
            "limit=ten",
            "limit: expected a number from 1 to 10000, got \"ten\"",
        ),
        ("filter=%5B%7B", "filter: invalid FlowFilter list JSON"),
        ("filter=not-json", "filter: invalid FlowFilter list JSON"),
        (
            "filter=%5B%7B%22verdict%22%3A%5B%22MAYBE%22%5D%7D%5D",
            "filter: invalid FlowFilter list JSON",
        ),
        (
            "filter=%5B%7B%22no_such_field%22%3A%5B%22x%22%5D%7D%5D",
            "filter: invalid FlowFilter list JSON",
        ),
        ("blacklist=%7B", "blacklist: invalid FlowFilter JSON"),
        (
            "filter=%5B%7B%22source_ip%22%3A%5B%22not-an-ip%22%5D%7D%5D",
            "filter: invalid flow filter: whitelist[0].source_ip \"not-an-ip\"",
        ),
        (
            "extras=maybe",
            "extras: expected true or false, got \"maybe\"",
        ),
    ];
    for (query, start) in cases {
        let message = relay
            .get(&format!("/api/v1/flows?{query}"))
            .await
            .error(400);
        assert!(message.starts_with(start), "{query}: {message}");
    }
    // A blacklist filter that does not compile is named as such.
    let message = relay
        .get("/api/v1/flows?blacklist=%5B%7B%22source_ip%22%3A%5B%22not-an-ip%22%5D%7D%5D")
        .await
        .error(400);
    assert!(
        message.contains("blacklist[0].source_ip \"not-an-ip\""),
        "{message}"
    );
    let message = relay
        .get("/api/v1/flows?since=yesterday-ish")
        .await
        .error(400);
    assert!(
        message.contains("RFC 3339"),
        "says what is accepted: {message}"
    );
    let message = relay
        .get("/api/v1/flows?since=1h&until=2h")
        .await
        .error(400);
    assert!(message.contains("must be before until"), "{message}");
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_string_that_cannot_be_read_is_a_400_json_error_too() {
    let relay = Relay::start(Options {
        flows: 10,
        ..Default::default()
    })
    .await;
    for target in [
        "/api/v1/flows?since=1h&since=2h",
        "/api/v1/service-map?since=1h&since=2h",
    ] {
        let message = relay.get(target).await.error(400);
        assert!(message.contains("since"), "{target}: {message}");
    }
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_a_405_json_error_with_the_allowed_methods() {
    let relay = Relay::start(Options {
        flows: 10,
        ..Default::default()
    })
    .await;
    let reply = relay.get("/api/v1/sql").await;
    assert_eq!(reply.header("allow"), Some("POST"));
    reply.error(405);
    for target in ["/api/v1/flows", "/api/v1/service-map", "/api/v1/status"] {
        let reply = exchange(relay.addr, "POST", target, &[], Some(b"{}")).await;
        let allow = reply.header("allow").unwrap_or_default();
        assert!(
            allow.split(',').any(|m| m.trim() == "GET"),
            "{target}: {allow}"
        );
        reply.error(405);
    }
    relay.finish().await;
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/service-map
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_has_workloads_as_nodes_and_client_server_edges_with_rates_latency_and_drops() {
    let relay = Relay::start(Options::default()).await;
    let map = relay.get("/api/v1/service-map?since=2h").await.json(200);
    assert_eq!(keys(&map), BTreeSet::from(["nodes", "edges", "loss"]));
    assert_eq!(map["loss"], no_loss());
    let nodes = map["nodes"].as_array().unwrap();
    let edges = map["edges"].as_array().unwrap();
    assert!(!nodes.is_empty() && !edges.is_empty(), "{map}");

    // Nodes: the fields DESIGN.md names, id `namespace/workload`, sorted by id.
    let node_keys = BTreeSet::from([
        "id",
        "namespace",
        "workload",
        "requests_per_second",
        "error_ratio",
        "drops",
    ]);
    let mut by_id: BTreeMap<String, &Value> = BTreeMap::new();
    for n in nodes {
        assert_eq!(keys(n), node_keys, "{n}");
        let (ns, w) = (
            n["namespace"].as_str().unwrap(),
            n["workload"].as_str().unwrap(),
        );
        assert!(ns.starts_with("ns-") && w.starts_with("app"), "{n}");
        assert_eq!(n["id"], json!(format!("{ns}/{w}")));
        let e = n["error_ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&e), "{n}");
        assert!(n["requests_per_second"].as_f64().unwrap() >= 0.0);
        assert!(n["drops"].is_u64());
        by_id.insert(n["id"].as_str().unwrap().to_string(), n);
    }
    let ids: Vec<&String> = by_id.keys().collect();
    let listed: Vec<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids, "nodes sorted by id, each once");

    // Edges: the fields DESIGN.md names (and the counts behind the rates).
    let edge_keys = BTreeSet::from([
        "id",
        "source",
        "target",
        "requests_per_second",
        "error_ratio",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "drops",
        "requests",
        "connections",
    ]);
    let secs = 7200.0;
    let (mut drops, mut requests) = (0, 0);
    let mut served: BTreeMap<&str, f64> = BTreeMap::new();
    let mut touched: BTreeMap<&str, u64> = BTreeMap::new();
    for e in edges {
        assert_eq!(keys(e), edge_keys, "{e}");
        let (s, t) = (e["source"].as_str().unwrap(), e["target"].as_str().unwrap());
        assert_eq!(e["id"], json!(format!("{s}->{t}")));
        assert!(by_id.contains_key(s) && by_id.contains_key(t), "{e}");
        let n = e["requests"].as_u64().unwrap();
        let rps = e["requests_per_second"].as_f64().unwrap();
        assert!(close(rps, n as f64 / secs), "rate over the 2 h asked: {e}");
        let ratio = e["error_ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ratio), "{e}");
        if n == 0 {
            assert_eq!(
                (&e["p50_ms"], &e["p99_ms"]),
                (&Value::Null, &Value::Null),
                "{e}"
            );
        } else {
            let p = |k: &str| e[k].as_f64().unwrap_or_else(|| panic!("{k}: {e}"));
            assert!(
                0.0 < p("p50_ms") && p("p50_ms") <= p("p95_ms") && p("p95_ms") <= p("p99_ms"),
                "{e}"
            );
        }
        let d = e["drops"].as_u64().unwrap();
        drops += d;
        requests += n;
        *served.entry(t).or_default() += rps;
        *touched.entry(t).or_default() += d;
        if s != t {
            *touched.entry(s).or_default() += d;
        }
    }
    let listed: Vec<(&str, &str)> = edges
        .iter()
        .map(|e| (e["source"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        listed, sorted,
        "edges sorted by (source, target), each once"
    );
    assert!(requests > 0, "the synthetic traffic has HTTP exchanges");
    // Every drop is on exactly one edge, counted once.
    assert_eq!(drops, relay.indexes(dropped).len() as u64);
    assert!(drops > 0);
    // A node's rate is what it served; its drops are those of the edges it is an end of.
    for (id, n) in &by_id {
        let rps = served.get(id.as_str()).copied().unwrap_or_default();
        assert!(
            close(n["requests_per_second"].as_f64().unwrap(), rps),
            "{n}"
        );
        let d = touched.get(id.as_str()).copied().unwrap_or_default();
        assert_eq!(n["drops"].as_u64(), Some(d), "{n}");
    }

    // `namespace=`: the same edges, only those with an end in that namespace.
    let ns = "ns-3";
    let part = relay
        .get(&format!("/api/v1/service-map?since=2h&namespace={ns}"))
        .await
        .json(200);
    let in_ns = |id: &str| by_id[id]["namespace"] == json!(ns);
    let expected: Vec<&Value> = edges
        .iter()
        .filter(|e| in_ns(e["source"].as_str().unwrap()) || in_ns(e["target"].as_str().unwrap()))
        .collect();
    assert!(!expected.is_empty() && expected.len() < edges.len());
    let got: Vec<&Value> = part["edges"].as_array().unwrap().iter().collect();
    assert_eq!(got, expected);
    let ends: BTreeSet<&str> = got
        .iter()
        .flat_map(|e| [e["source"].as_str().unwrap(), e["target"].as_str().unwrap()])
        .collect();
    let part_nodes: BTreeSet<&str> = part["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(part_nodes, ends, "the nodes are the ends of the edges");

    // A range without flows is an empty map; a bad range is the caller's fault.
    let t0 = relay.generator.time(0).seconds;
    let empty = relay
        .get(&format!(
            "/api/v1/service-map?since={}&until={}",
            t0 - 7200,
            t0 - 3600
        ))
        .await
        .json(200);
    assert_eq!(
        empty,
        json!({ "nodes": [], "edges": [], "loss": no_loss() })
    );
    let message = relay
        .get("/api/v1/service-map?since=whenever")
        .await
        .error(400);
    assert!(
        message.starts_with("since: cannot read \"whenever\""),
        "{message}"
    );
    let message = relay.get("/api/v1/service-map?until=then").await.error(400);
    assert!(message.starts_with("until: "), "{message}");
    relay.finish().await;
}

// ---------------------------------------------------------------------------------------------
// POST /api/v1/sql
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_select_returns_columns_and_rows_of_the_stored_flows() {
    let relay = Relay::start(Options::default()).await;
    let answer = relay.sql("SELECT count(*) AS n FROM flows").await.json(200);
    assert_eq!(
        answer,
        json!({
            "columns": [{ "name": "n", "type": "Int64" }],
            "rows": [[FLOWS]],
            "truncated": false,
            "loss": no_loss(),
        })
    );

    let drops = relay.indexes(dropped).len() as u64;
    assert_eq!(
        sql_count(
            &relay,
            "SELECT count(*) FROM flows WHERE verdict = 'DROPPED'"
        )
        .await,
        drops
    );

    // Several columns and rows, in the order asked.
    let answer = relay
        .sql(
            "SELECT source_namespace AS ns, count(*) AS n FROM flows \
             GROUP BY source_namespace ORDER BY ns LIMIT 3",
        )
        .await
        .json(200);
    let names: Vec<&Value> = answer["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("ns"), &json!("n")]);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..FLOWS {
        *counts
            .entry(source_namespace(&relay.generator.flow(i)).to_string())
            .or_default() += 1;
    }
    let expected: Vec<Value> = counts
        .iter()
        .take(3)
        .map(|(ns, n)| json!([ns, n]))
        .collect();
    assert_eq!(answer["rows"], json!(expected));
    assert_eq!(answer["truncated"], json!(false));
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_that_would_change_or_export_anything_is_refused_with_400_and_changes_nothing() {
    let relay = Relay::start(Options::default()).await;
    let copy_to = relay.dir.0.join("copied.parquet");
    let cases = [
        ("DROP TABLE flows".to_string(), "DROP TABLE is not allowed"),
        (
            "INSERT INTO flows (node_name) VALUES ('x')".to_string(),
            "INSERT is not allowed",
        ),
        (
            format!("COPY flows TO '{}'", copy_to.display()),
            "COPY is not allowed",
        ),
        (
            "COPY (SELECT * FROM flows) TO '/tmp/x.csv'".to_string(),
            "COPY is not allowed",
        ),
        ("DELETE FROM flows".to_string(), "DELETE is not allowed"),
        (
            "CREATE TABLE t AS SELECT * FROM flows".to_string(),
            "CREATE TABLE is not allowed",
        ),
        (
            format!(
                "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}'",
                relay.store_dir().display()
            ),
            "CREATE EXTERNAL TABLE is not allowed",
        ),
        (
            "SET datafusion.execution.batch_size = 1".to_string(),
            "SET is not allowed",
        ),
        (
            "SELECT 1; DROP TABLE flows".to_string(),
            "expected exactly one SQL statement, found 2",
        ),
    ];
    for (query, start) in &cases {
        let message = relay.sql(query).await.error(400);
        assert!(message.starts_with(start), "{query}: {message}");
    }
    let message = relay.sql("DROP TABLE flows").await.error(400);
    assert!(
        message.contains("only read-only queries (SELECT) over table `flows`"),
        "{message}"
    );
    assert!(!copy_to.exists(), "COPY wrote {}", copy_to.display());
    assert_eq!(
        sql_count(&relay, "SELECT count(*) FROM flows").await,
        FLOWS as u64,
        "the flows are all still there"
    );

    // Queries that are not SQL the store can run are the caller's fault too.
    let message = relay.sql("SELEKT 1").await.error(400);
    assert!(message.starts_with("SQL syntax error"), "{message}");
    let message = relay
        .sql("SELECT no_such_column FROM flows")
        .await
        .error(400);
    assert!(message.starts_with("query is invalid"), "{message}");
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_body_that_is_not_a_json_query_object_is_400_naming_the_body() {
    let relay = Relay::start(Options::default()).await;
    let json_type = [("Content-Type", "application/json")];
    let bodies: [(Headers, &[u8]); 4] = [
        (&json_type, b"SELECT 1"),
        (&json_type, br#"{"sql": "SELECT 1"}"#),
        (&json_type, br#"{"query": 1}"#),
        (&[], br#"{"query": "SELECT 1"}"#),
    ];
    for (headers, body) in bodies {
        let reply = exchange(relay.addr, "POST", "/api/v1/sql", headers, Some(body)).await;
        let message = reply.error(400);
        assert!(
            message.starts_with("body: expected JSON {\"query\": \"SELECT …\"}: "),
            "{}: {message}",
            String::from_utf8_lossy(body)
        );
    }
    relay.finish().await;
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/status, /healthz, unknown paths, a relay without a store.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_the_relay_its_ring_nodes_store_and_loss_as_json() {
    let relay = Relay::start(Options::default()).await;
    let status = relay.get("/api/v1/status").await.json(200);
    assert_eq!(
        status["version"],
        json!(format!("webb-relay {}", env!("CARGO_PKG_VERSION")))
    );
    assert!(status["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(status["ring"]["capacity"], json!(4095));
    assert_eq!(status["nodes"], json!([]), "no peers");
    assert_eq!(status["connected_nodes"], json!(0));
    assert_eq!(status["unavailable_nodes"], json!(0));
    assert!(status["pipeline"].is_object(), "{status}");
    assert_eq!(status["loss"], no_loss());
    let time = status["time"].as_str().unwrap();
    let time = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    assert!((chrono::Utc::now() - time.to_utc()).num_seconds().abs() < 60);

    let store = &status["store"];
    assert_eq!(store["dir"], json!(relay.store_dir().display().to_string()));
    let auto = |t: Timestamp| {
        t.to_datetime()
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    assert_eq!(store["oldest"], json!(auto(relay.generator.time(0))));
    assert_eq!(
        store["newest"],
        json!(auto(relay.generator.time(FLOWS - 1)))
    );
    assert_eq!(store["appended"], json!(FLOWS));
    assert_eq!(store["written_rows"], json!(FLOWS));
    assert_eq!(store["pending_rows"], json!(0));
    assert_eq!(store["lost_queue_full"], json!(0));
    assert_eq!(store["lost_write_error"], json!(0));
    assert!(store["files"].as_u64().unwrap() >= 1, "{store}");
    assert!(store["bytes"].as_u64().unwrap() > 0, "{store}");
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ok_and_an_unknown_path_is_a_json_404_listing_the_endpoints() {
    let relay = Relay::start(Options {
        flows: 10,
        ..Default::default()
    })
    .await;
    let reply = relay.get("/healthz").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok\n"));
    for path in ["/api/v1/nope", "/", "/api/v2/flows"] {
        let message = relay.get(path).await.error(404);
        assert!(message.starts_with("no such endpoint"), "{path}: {message}");
        assert!(message.contains("/api/v1/flows"), "{message}");
    }
    relay.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_history_endpoints_are_503_and_status_says_store_null() {
    let relay = Relay::start(Options {
        store: false,
        ..Default::default()
    })
    .await;
    for reply in [
        relay.get("/api/v1/flows?since=1h").await,
        relay.get("/api/v1/service-map?since=1h").await,
        relay.sql("SELECT 1").await,
    ] {
        let message = reply.error(503);
        assert!(message.contains("--store-dir none"), "{message}");
    }
    let status = relay.get("/api/v1/status").await.json(200);
    assert_eq!(status["store"], Value::Null);
    assert_eq!(status["loss"], no_loss());
    relay.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Loss summary.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_loss_summary_including_the_stores_queue_overflow() {
    let relay = Relay::start(Options {
        flows: 100,
        queue_capacity: 1,
        ..Default::default()
    })
    .await;
    let store = relay.store.clone().unwrap();
    // The relay's live path into a store whose queue holds one flow: most are dropped, and
    // counted.
    let lost = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            let generator = FlowGenerator::new(200, Timestamp::now(), 1000);
            (0..20_000)
                .filter(|&i| !store.try_append(generator.flow(i)))
                .count() as u64
        }),
    )
    .await
    .expect("appending in time")
    .unwrap();
    assert!(lost > 0);
    let expected = json!({
        "total": lost,
        "stages": [{ "stage": flow_store::STAGE_QUEUE, "node": NODE, "lost": lost }],
    });

    let mut status = Value::Null;
    for _ in 0..STEPS {
        status = relay.get("/api/v1/status").await.json(200);
        if status["loss"] == expected {
            break;
        }
        tokio::time::sleep(STEP).await;
    }
    assert_eq!(
        status["loss"], expected,
        "the relay reports the store's loss"
    );
    assert_eq!(status["store"]["lost_queue_full"], json!(lost));
    let flows = relay.get("/api/v1/flows?since=2h&limit=1").await.json(200);
    assert_eq!(flows["loss"], expected);
    let map = relay.get("/api/v1/service-map?since=2h").await.json(200);
    assert_eq!(map["loss"], expected);
    let sql = relay.sql("SELECT 1 AS one").await.json(200);
    assert_eq!(sql["loss"], expected);

    // The same count on /metrics, as webb_lost_events_total{stage,node}.
    let metrics = relay.get("/metrics").await.text();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("webb_lost_events_total{")
                && l.contains(&format!("stage=\"{}\"", flow_store::STAGE_QUEUE))
                && l.contains(&format!("node=\"{NODE}\""))
        })
        .unwrap_or_else(|| panic!("no store loss series in:\n{metrics}"));
    assert!(line.ends_with(&format!(" {lost}")), "{line}");
    relay.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Bearer token.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_api_wants_the_bearer_token_and_metrics_and_healthz_never_do() {
    let relay = Relay::start(Options {
        flows: 100,
        token: Some(TOKEN),
        ..Default::default()
    })
    .await;
    let good = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}x");
    let short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let lower = format!("bearer {TOKEN}");
    let basic = format!("Basic {TOKEN}");
    let refused: [&[(&str, &str)]; 6] = [
        &[],
        &[("Authorization", &wrong)],
        &[("Authorization", &short)],
        &[("Authorization", &lower)],
        &[("Authorization", &basic)],
        &[("Authorization", TOKEN)],
    ];
    let sql = json!({ "query": "SELECT count(*) AS n FROM flows" });
    for headers in refused {
        for reply in [
            relay.get_with("/api/v1/flows?since=2h", headers).await,
            relay
                .get_with("/api/v1/service-map?since=2h", headers)
                .await,
            relay.get_with("/api/v1/status", headers).await,
            relay.post_json("/api/v1/sql", &sql, headers).await,
        ] {
            let message = reply.error(401);
            assert_eq!(
                message, "missing or wrong bearer token (Authorization: Bearer <--api-token>)",
                "{headers:?}"
            );
        }
    }
    // Refused before any work: a bad parameter without the token is still a 401.
    let reply = relay.get("/api/v1/flows?since=yesterday-ish").await;
    reply.error(401);

    let auth: &[(&str, &str)] = &[("Authorization", &good)];
    let flows = relay
        .get_with("/api/v1/flows?since=2h&limit=5", auth)
        .await
        .json(200);
    assert_eq!(flows_of(&flows).len(), 5);
    relay
        .get_with("/api/v1/service-map?since=2h", auth)
        .await
        .json(200);
    relay.get_with("/api/v1/status", auth).await.json(200);
    let answer = relay.post_json("/api/v1/sql", &sql, auth).await.json(200);
    assert_eq!(answer["rows"], json!([[100]]));

    // /metrics and /healthz: no token needed, and a wrong one does not matter.
    for headers in [&[][..], &[("Authorization", wrong.as_str())][..]] {
        let reply = relay.get_with("/metrics", headers).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some(PROMETHEUS_TEXT_CONTENT_TYPE)
        );
        let reply = relay.get_with("/healthz", headers).await;
        assert_eq!((reply.status, reply.text().as_str()), (200, "ok\n"));
    }
    let reply = relay
        .get_with("/metrics", &[("Accept", "application/openmetrics-text")])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some(relay::metrics::OPENMETRICS_CONTENT_TYPE)
    );
    assert!(reply.text().ends_with("# EOF\n"), "{}", reply.text());
    relay.finish().await;
}
