//! The relay's L7 HTTP end to end on real namespaces: netlab's two nodes, a real `webb-agent`
//! per node, a real `webb-relay --peers …` and the real `webb observe`. HTTP servers and
//! clients run inside the pods (this file's own, so every byte on the wire is known): with and
//! without `traceparent`, pipelined requests on one connection, a 3 KiB header block before the
//! `traceparent` written in writes of the agent's default capture size, a 404, two 500s and a
//! server that sleeps 50 ms.
//!
//! Every exchange crosses an observation point on each node it touches (the host-side veth of
//! the client pod and of the server pod), and the relay makes an L7 REQUEST and RESPONSE flow
//! at each one. The test computes that expected set from what it sent, then asks the relay
//! with `webb observe -o json` and filters and compares exactly. Then it kills one agent: the
//! relay reports the node unavailable while the other node's new flows keep arriving, and
//! connected again with new flows once the agent is back.
//!
//! Needs root (namespaces, eBPF) and the workspace's binaries (`cargo build -p flow-agent -p
//! relay -p tui --bins`; `cargo test --workspace` builds them).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use webb_scenarios::{Process, binary, free_port, retry_until, text};

/// Namespace prefix base of this scenario (`wbl7-<pid>-<n>-…`).
const BASE: &str = "wbl7";
/// The pods' HTTP port (the shop's).
const HTTP_PORT: u16 = 8080;
/// The agent's default `--capture-bytes`: the large head is written in pieces of this size.
const CAPTURE_BYTES: usize = 512;
/// What the slow route sleeps before it answers.
const SLOW: Duration = Duration::from_millis(50);
/// Bound of every wait for a process, a state or flows.
const WAIT: Duration = Duration::from_secs(60);
/// Bound of one client exchange (connect, write, read).
const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The network and its cleanup

/// Tears the topology down when the test ends, also on a panic (processes inside the
/// namespaces are killed first).
struct Network(Option<netlab::Topology>);

impl Network {
    fn topo(&self) -> &netlab::Topology {
        self.0.as_ref().expect("the topology is up")
    }

    /// Tears down now and says whether any namespace of the prefix is left.
    fn teardown(mut self) -> Vec<String> {
        let topo = self.0.take().expect("the topology is up");
        let lead = format!("{}-", topo.prefix());
        topo.teardown().expect("deleting the namespaces");
        netlab::netns::list()
            .into_iter()
            .filter(|n| n.starts_with(&lead))
            .collect()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(topo) = self.0.take()
            && let Err(e) = topo.teardown()
        {
            eprintln!("tearing the test network down: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP on the wire, written here so the test knows every byte

/// Status the test's servers answer for a path.
fn status_for(path: &str) -> u16 {
    if path.starts_with("/missing") {
        404
    } else if path.starts_with("/error") {
        500
    } else {
        200
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// An HTTP server in a pod: answers every request of a connection in order (pipelining
/// included) and sleeps `SLOW` on `/slow`. Stops when dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<netlab::netns::NsThread<()>>,
}

impl Server {
    fn start(pod: &netlab::Pod) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, HTTP_PORT);
        let thread = netlab::netns::spawn_in(&pod.netns, move || {
            let listener = TcpListener::bind(addr).expect("binding the pod's HTTP port");
            listener.set_nonblocking(true).expect("non-blocking accept");
            let _ = ready_tx.send(());
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        std::thread::spawn(move || serve_connection(conn));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        })
        .expect("a thread in the pod's namespace");
        ready_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the server listens");
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && !std::thread::panicking()
        {
            t.join();
        }
    }
}

/// Reads requests until the client closes; answers all complete requests of one read in one
/// write (so pipelined answers leave together, as a pipelining server sends them).
fn serve_connection(mut conn: TcpStream) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut answers = Vec::new();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let head = match req.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => break,
                Err(e) => panic!("the test's server got a bad request ({e}): {buf:?}"),
            };
            let body = content_length(req.headers);
            if buf.len() < head + body {
                break;
            }
            let path = req.path.unwrap_or("/").to_string();
            buf.drain(..head + body);
            if path.starts_with("/slow") {
                std::thread::sleep(SLOW);
            }
            let code = status_for(&path);
            let text = format!("{code} for {path}\n");
            answers.extend_from_slice(
                format!(
                    "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                    reason(code),
                    text.len()
                )
                .as_bytes(),
            );
        }
        if !answers.is_empty() && conn.write_all(&answers).is_err() {
            return;
        }
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// One request as the client writes it.
#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    host: String,
    trace_id: Option<String>,
    /// Header bytes before `traceparent` (the large head).
    padding: usize,
    body: &'static str,
}

impl Request {
    fn get(host: &str, path: &str, trace_id: Option<&str>) -> Request {
        Request {
            method: "GET",
            path: path.into(),
            host: host.into(),
            trace_id: trace_id.map(String::from),
            padding: 0,
            body: "",
        }
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: webb-scenarios\r\n",
            self.method, self.path, self.host
        );
        // Padding headers of 128 bytes each (name, ": ", value, CRLF).
        for i in 0..self.padding.div_ceil(128) {
            let name = format!("X-Pad-{i:03}");
            let value = "p".repeat(128 - name.len() - 4);
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(t) = &self.trace_id {
            head.push_str(&format!("traceparent: 00-{t}-00f067aa0ba902b7-01\r\n"));
        }
        if !self.body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        head.push_str(self.body);
        head.into_bytes()
    }
}

/// What a client saw of one connection: the status of each answer and how long from the first
/// write to the last answer read.
#[derive(Debug)]
struct Seen {
    codes: Vec<u16>,
    round_trip: Duration,
}

/// Opens one connection from `client` to `server`, writes `requests` (all in one write when
/// `pipelined`, else one after another, each awaited), in pieces of `piece` bytes (each its
/// own segment: no Nagle, a short pause between), and reads every answer.
fn exchange(
    client: &netlab::Pod,
    server: &netlab::Pod,
    requests: &[Request],
    pipelined: bool,
    piece: Option<usize>,
) -> Seen {
    let to = SocketAddr::from((server.ipv4, HTTP_PORT));
    let requests: Vec<Vec<u8>> = requests.iter().map(Request::bytes).collect();
    netlab::netns::spawn_in(&client.netns, move || {
        let mut conn = TcpStream::connect_timeout(&to, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connecting to {to}: {e}"));
        conn.set_nodelay(true).unwrap();
        conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let started = Instant::now();
        let mut codes = Vec::new();
        let mut pending = Vec::new();
        let write = |conn: &mut TcpStream, bytes: &[u8]| match piece {
            Some(n) => {
                for part in bytes.chunks(n) {
                    conn.write_all(part).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            None => conn.write_all(bytes).unwrap(),
        };
        if pipelined {
            let all: Vec<u8> = requests.concat();
            write(&mut conn, &all);
            codes = read_answers(&mut conn, &mut pending, requests.len());
        } else {
            for r in &requests {
                write(&mut conn, r);
                codes.extend(read_answers(&mut conn, &mut pending, 1));
            }
        }
        Seen {
            codes,
            round_trip: started.elapsed(),
        }
    })
    .expect("a client thread in the pod")
    .join()
}

/// Reads `n` answers (head and `Content-Length` body each) from the connection.
fn read_answers(conn: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Vec<u16> {
    let mut codes = Vec::new();
    let mut chunk = [0u8; 8192];
    while codes.len() < n {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = resp.parse(buf) {
            let body = content_length(resp.headers);
            if buf.len() >= head + body {
                codes.push(resp.code.expect("a status code"));
                buf.drain(..head + body);
                continue;
            }
        }
        let got = conn.read(&mut chunk).expect("reading the answer");
        assert!(got > 0, "the server closed before answering");
        buf.extend_from_slice(&chunk[..got]);
    }
    codes
}

// ---------------------------------------------------------------------------------------------
// The binaries

fn webb(args: &[&str]) -> Output {
    Command::new(binary("webb"))
        .args(args)
        .env_remove("WEBB_SERVER")
        .output()
        .expect("running webb")
}

/// One node's agent, as `cargo xtask demo` starts it (root namespace, `--netns` into the node,
/// loopback ports of its own).
struct Agent {
    node: netlab::Node,
    listen: String,
    metrics: String,
    endpoints: PathBuf,
    work: PathBuf,
    starts: u32,
    process: Option<Process>,
}

impl Agent {
    fn new(node: &netlab::Node, endpoints: &Path, work: &Path) -> Agent {
        Agent {
            node: node.clone(),
            listen: format!("127.0.0.1:{}", free_port()),
            metrics: format!("127.0.0.1:{}", free_port()),
            endpoints: endpoints.to_path_buf(),
            work: work.to_path_buf(),
            starts: 0,
            process: None,
        }
    }

    fn start(&mut self) {
        self.starts += 1;
        let name = &self.node.name;
        let mut command = Command::new(binary("webb-agent"));
        command
            .args(["--node-name", name])
            .arg("--endpoints")
            .arg(&self.endpoints)
            .arg("--netns")
            .arg(netlab::netns::path(&self.node.netns))
            .args(["--listen", &self.listen])
            .arg("--unix-socket")
            .arg(self.work.join(format!("{name}-{}.sock", self.starts)))
            .args(["--metrics-listen", &self.metrics]);
        let log = self.work.join(format!("agent-{name}-{}.log", self.starts));
        let mut process = Process::spawn(&mut command, log);
        let out = retry_until(
            WAIT,
            || webb(&["status", "--timeout", "1s", "--server", &self.listen]),
            |o| o.status.success(),
        );
        process.assert_running();
        assert!(
            out.status.success(),
            "agent {name} did not answer `webb status` within {WAIT:?}: {}\nits log:\n{}",
            text(&out.stderr),
            process.log_text()
        );
        self.process = Some(process);
    }

    /// Ends the agent's process (SIGKILL, as a crash would).
    fn kill(&mut self) {
        drop(self.process.take());
    }
}

struct Relay {
    process: Process,
    server: String,
    /// `--http-listen`: `/metrics` and the JSON API.
    http: String,
}

impl Relay {
    fn start(agents: &[&Agent], work: &Path) -> Relay {
        Relay::start_with(agents, work, &[])
    }

    /// Started with `extra` flags (e.g. `--metrics`).
    fn start_with(agents: &[&Agent], work: &Path, extra: &[&str]) -> Relay {
        let server = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let peers: Vec<&str> = agents.iter().map(|a| a.listen.as_str()).collect();
        let mut command = Command::new(binary("webb-relay"));
        command
            .args(["--listen", &server])
            .args(["--peers", &peers.join(",")])
            .args(["--http-listen", &http])
            .args(["--store-dir", "none"])
            .args(extra);
        let mut relay = Relay {
            process: Process::spawn(&mut command, work.join("relay.log")),
            server,
            http,
        };
        // Named by the agents' own announcements, before either node sent a flow.
        let names: Vec<&str> = agents.iter().map(|a| a.node.name.as_str()).collect();
        relay.wait_nodes("both nodes connected under their names", |nodes| {
            nodes.len() == 2
                && names
                    .iter()
                    .all(|n| nodes.get(*n).is_some_and(|s| s == "NODE_CONNECTED"))
        });
        relay
    }

    /// `webb list nodes -o json` against the relay: node name → state.
    fn nodes(&self) -> (Output, BTreeMap<String, String>) {
        let out = webb(&["list", "nodes", "-o", "json", "--server", &self.server]);
        let nodes = text(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or_default().to_string(),
                    n["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        (out, nodes)
    }

    fn wait_nodes(&mut self, what: &str, ok: impl Fn(&BTreeMap<String, String>) -> bool) {
        let start = Instant::now();
        loop {
            let (out, nodes) = self.nodes();
            if out.status.success() && ok(&nodes) {
                return;
            }
            self.process.assert_running();
            assert!(
                start.elapsed() < WAIT,
                "the relay never showed {what} within {WAIT:?}: {nodes:?} {}\nrelay log:\n{}",
                text(&out.stderr),
                self.process.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `webb status -o json` against the relay.
    fn status(&self) -> Value {
        let out = webb(&["status", "-o", "json", "--server", &self.server]);
        assert!(out.status.success(), "webb status: {}", text(&out.stderr));
        let line = text(&out.stdout);
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// The flows `webb observe --last 100000 -o json ARGS` prints.
    fn observe(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec![
            "observe",
            "--server",
            &self.server,
            "--last",
            "100000",
            "-o",
            "json",
        ];
        all.extend_from_slice(args);
        let out = webb(&all);
        assert!(out.status.success(), "webb {all:?}: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter_map(|r| r.get("flow").cloned())
            .collect()
    }

    /// Waits until `webb observe ARGS` prints at least `n` flows; returns them.
    fn wait_flows(&self, args: &[&str], n: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let flows = self.observe(args);
            if flows.len() >= n || start.elapsed() > WAIT {
                return flows;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Expected L7 flows

/// What one L7 flow says, as compared: node, REQUEST/RESPONSE, method, URL, status, trace id.
type L7 = (String, String, String, String, u64, String);

fn l7_of(flow: &Value) -> L7 {
    let l7 = &flow["l7"];
    let http = &l7["http"];
    (
        flow["node_name"].as_str().unwrap_or_default().into(),
        l7["type"].as_str().unwrap_or_default().into(),
        http["method"].as_str().unwrap_or_default().into(),
        http["url"].as_str().unwrap_or_default().into(),
        http["code"].as_u64().unwrap_or(0),
        flow["trace_context"]["parent"]["trace_id"]
            .as_str()
            .unwrap_or_default()
            .into(),
    )
}

fn sorted(mut v: Vec<L7>) -> Vec<L7> {
    v.sort();
    v
}

/// One request/answer pair and the pods it went between.
#[derive(Debug, Clone)]
struct Exchange {
    request: Request,
    code: u16,
    from_pod: String,
    /// Nodes whose agent sees it (client's and server's; once when both are the same node,
    /// where it is seen at two interfaces).
    seen_at: Vec<String>,
}

impl Exchange {
    /// The L7 flows the relay makes of it: a REQUEST and a RESPONSE per observation point.
    fn flows(&self) -> Vec<L7> {
        let r = &self.request;
        let trace = r.trace_id.clone().unwrap_or_default();
        self.seen_at
            .iter()
            .flat_map(|node| {
                [
                    (
                        node.clone(),
                        "REQUEST".to_string(),
                        r.method.to_string(),
                        r.url(),
                        0,
                        trace.clone(),
                    ),
                    (
                        node.clone(),
                        "RESPONSE".to_string(),
                        r.method.to_string(),
                        r.url(),
                        u64::from(self.code),
                        trace.clone(),
                    ),
                ]
            })
            .collect()
    }
}

fn expected(exchanges: &[Exchange], keep: impl Fn(&Exchange, &L7) -> bool) -> Vec<L7> {
    sorted(
        exchanges
            .iter()
            .flat_map(|e| e.flows().into_iter().map(move |f| (e, f)))
            .filter(|(e, f)| keep(e, f))
            .map(|(_, f)| f)
            .collect(),
    )
}

/// A trace id no other exchange of this run uses (32 lower-case hex digits, not all zero).
fn trace_id(n: u32) -> String {
    format!(
        "4bf92f3577b34da6a3ce{:04x}{:08x}",
        std::process::id() & 0xffff,
        n
    )
}

fn latency_ns(flow: &Value) -> u64 {
    flow["l7"]["latency_ns"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a response carries latency_ns: {flow}"))
}

fn source_port(flow: &Value) -> u64 {
    flow["l4"]["TCP"]["source_port"].as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn relay_serves_l7_http_flows_of_both_nodes_and_rides_out_an_agent_restart() {
    netlab::cleanup_stale(BASE);
    let work = tempfile::tempdir().expect("a work directory");
    let net = Network(Some(
        netlab::Topology::build(&netlab::unique_prefix(BASE)).expect("building the network"),
    ));
    let topo = net.topo();
    let endpoints = work.path().join("endpoints.yaml");
    topo.write_endpoints(&endpoints).unwrap();
    let pod = |key: &str| topo.pod(key).unwrap_or_else(|| panic!("pod {key}")).clone();
    let (frontend, catalog, cart, db) = (pod("frontend"), pod("catalog"), pod("cart"), pod("db"));
    let (node1, node2) = (topo.nodes()[0].name.clone(), topo.nodes()[1].name.clone());
    assert_eq!((&frontend.node, &cart.node), (&node1, &node2));

    let mut agents = [
        Agent::new(&topo.nodes()[0], &endpoints, work.path()),
        Agent::new(&topo.nodes()[1], &endpoints, work.path()),
    ];
    agents.iter_mut().for_each(Agent::start);
    let mut relay = Relay::start(&[&agents[0], &agents[1]], work.path());
    let _servers: Vec<Server> = [&catalog, &cart].into_iter().map(Server::start).collect();

    // ---- traffic: frontend (node1) → cart (node2), and db (node2) → catalog (node1)
    let cart_host = format!("cart:{HTTP_PORT}");
    let catalog_host = format!("catalog:{HTTP_PORT}");
    let t = |n| trace_id(n);
    let across = |request: Request, code: u16, from: &netlab::Pod| Exchange {
        request,
        code,
        from_pod: format!("{}/{}", from.namespace, from.name),
        seen_at: vec![node1.clone(), node2.clone()],
    };
    let mut exchanges = Vec::new();
    // One request per connection-turn, with and without traceparent; a 404 and a 500.
    let singles = [
        (Request::get(&cart_host, "/items", Some(&t(1))), 200),
        (Request::get(&cart_host, "/missing/item", None), 404),
        (
            Request::get(&cart_host, "/error/checkout", Some(&t(2))),
            500,
        ),
    ];
    let seen = exchange(
        &frontend,
        &cart,
        &singles.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        false,
        None,
    );
    assert_eq!(seen.codes, [200, 404, 500]);
    exchanges.extend(singles.into_iter().map(|(r, c)| across(r, c, &frontend)));

    // The slow route, on its own connection so the client's round trip bounds its latency.
    let slow = Request::get(&cart_host, "/slow", Some(&t(3)));
    let slow_seen = exchange(&frontend, &cart, std::slice::from_ref(&slow), false, None);
    assert_eq!(slow_seen.codes, [200]);
    exchanges.push(across(slow, 200, &frontend));

    // Three pipelined requests in one write on one connection.
    let pipelined = [
        (Request::get(&cart_host, "/pipe/1", Some(&t(4))), 200),
        (Request::get(&cart_host, "/missing/pipe/2", None), 404),
        (Request::get(&cart_host, "/error/pipe/3", Some(&t(5))), 500),
    ];
    let seen = exchange(
        &frontend,
        &cart,
        &pipelined.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        true,
        None,
    );
    assert_eq!(seen.codes, [200, 404, 500]);
    exchanges.extend(pipelined.into_iter().map(|(r, c)| across(r, c, &frontend)));

    // 3 KiB of headers before traceparent, written CAPTURE_BYTES at a time.
    let large = Request {
        padding: 3 << 10,
        ..Request::get(&cart_host, "/large-head", Some(&t(6)))
    };
    assert!(large.bytes().len() > 6 * CAPTURE_BYTES);
    let seen = exchange(
        &frontend,
        &cart,
        std::slice::from_ref(&large),
        false,
        Some(CAPTURE_BYTES),
    );
    assert_eq!(seen.codes, [200]);
    exchanges.push(across(large, 200, &frontend));

    // A POST the other way (node2 → node1).
    let post = Request {
        method: "POST",
        body: "{\"order\":42}",
        ..Request::get(&catalog_host, "/orders", Some(&t(7)))
    };
    let seen = exchange(&db, &catalog, std::slice::from_ref(&post), false, None);
    assert_eq!(seen.codes, [200]);
    exchanges.push(across(post, 200, &db));

    // ---- every L7 flow, as `webb observe` shows it
    let all = expected(&exchanges, |_, _| true);
    assert_eq!(all.len(), 9 * 4);
    let flows = relay.wait_flows(&["--type", "l7"], all.len());
    let got = sorted(flows.iter().map(l7_of).collect());
    assert_eq!(
        got,
        all,
        "the relay's L7 flows (node, type, method, URL, status, trace id)\nrelay log:\n{}",
        relay.process.log_text()
    );
    for f in &flows {
        assert_eq!(f["Type"], "L7", "{f}");
        assert_eq!(f["event_type"]["type"], 129, "{f}");
        assert!(f["l7"]["http"]["protocol"] == "HTTP/1.1", "{f}");
        let is_reply = f["is_reply"].as_bool();
        match f["l7"]["type"].as_str() {
            Some("REQUEST") => assert_eq!(is_reply, Some(false), "{f}"),
            Some("RESPONSE") => {
                assert_eq!(is_reply, Some(true), "{f}");
                assert!(latency_ns(f) > 0, "{f}");
            }
            other => panic!("an L7 type, got {other:?}"),
        }
    }

    // Latency of the slow route: at least the server's sleep, at most what the client waited.
    let slow_responses: Vec<&Value> = flows
        .iter()
        .filter(|f| f["l7"]["type"] == "RESPONSE" && l7_of(f).5 == t(3))
        .collect();
    assert_eq!(slow_responses.len(), 2, "one per node");
    for f in &slow_responses {
        let ns = latency_ns(f);
        println!(
            "slow route: latency_ns {ns} on {} (client round trip {:?})",
            f["node_name"], slow_seen.round_trip
        );
        assert!(
            ns >= SLOW.as_nanos() as u64 && u128::from(ns) <= slow_seen.round_trip.as_nanos(),
            "latency {ns} ns: the server slept {SLOW:?}, the client waited {:?}",
            slow_seen.round_trip
        );
    }
    // The pipelined requests came on one connection: one source port per node.
    for node in [&node1, &node2] {
        let ports: std::collections::BTreeSet<u64> = flows
            .iter()
            .filter(|f| {
                f["node_name"] == node.as_str()
                    && f["l7"]["type"] == "REQUEST"
                    && f["l7"]["http"]["url"]
                        .as_str()
                        .is_some_and(|u| u.contains("/pipe/"))
            })
            .map(source_port)
            .collect();
        assert_eq!(ports.len(), 1, "pipelined requests on {node}: {ports:?}");
    }
    // The large head's traceparent came after 3 KiB of headers, all of them kept.
    let large_req = flows
        .iter()
        .find(|f| f["l7"]["type"] == "REQUEST" && l7_of(f).5 == t(6))
        .expect("the large head's request");
    let headers = large_req["l7"]["http"]["headers"]
        .as_array()
        .expect("headers");
    assert!(headers.len() >= 24 + 3, "{large_req}");

    // ---- filters select exactly the expected flows
    let check = |args: &[&str], want: Vec<L7>| {
        let got = sorted(relay.observe(args).iter().map(l7_of).collect());
        assert_eq!(got, want, "webb observe {args:?}");
    };
    check(
        &["--http-status", "5+"],
        expected(&exchanges, |e, f| e.code >= 500 && f.1 == "RESPONSE"),
    );
    check(
        &["--http-method", "POST"],
        expected(&exchanges, |e, _| e.request.method == "POST"),
    );
    check(
        &["--trace-id", &t(1)],
        expected(&exchanges, |_, f| f.5 == t(1)),
    );
    check(
        &["--trace-id", &t(6)],
        expected(&exchanges, |_, f| f.5 == t(6)),
    );
    let frontend_pod = format!("{}/{}", frontend.namespace, frontend.name);
    check(
        &["--type", "l7", "--from-pod", &frontend_pod],
        expected(&exchanges, |e, f| {
            e.from_pod == frontend_pod && f.1 == "REQUEST"
        }),
    );
    check(
        &["--type", "l7", "--node-name", &node2],
        expected(&exchanges, |_, f| f.0 == node2),
    );
    // Without --type, --from-pod also selects the L3/L4 flows, all from that pod.
    let from_frontend = relay.observe(&["--from-pod", &frontend_pod]);
    assert!(from_frontend.iter().any(|f| f["Type"] == "L3_L4"));
    for f in &from_frontend {
        assert_eq!(f["source"]["pod_name"], frontend.name.as_str(), "{f}");
    }

    // ---- one agent dies: node1 unavailable, node2's new flows keep coming
    agents[0].kill();
    relay.wait_nodes("node1 unavailable, node2 connected", |nodes| {
        nodes.get(&node1).map(String::as_str) == Some("NODE_UNAVAILABLE")
            && nodes.get(&node2).map(String::as_str) == Some("NODE_CONNECTED")
    });
    let status = relay.status();
    assert_eq!(
        (
            &status["num_connected_nodes"],
            &status["num_unavailable_nodes"]
        ),
        (&Value::from(1), &Value::from(1)),
        "{status}"
    );
    assert_eq!(status["unavailable_nodes"], serde_json::json!([node1]));
    let cart_local = Request::get(&cart_host, "/while-node1-is-down", Some(&t(8)));
    let seen = exchange(&db, &cart, std::slice::from_ref(&cart_local), false, None);
    assert_eq!(seen.codes, [200]);
    let down = Exchange {
        request: cart_local,
        code: 200,
        from_pod: format!("{}/{}", db.namespace, db.name),
        // db and cart share node2: seen at both of their interfaces there.
        seen_at: vec![node2.clone(), node2.clone()],
    };
    let want = expected(std::slice::from_ref(&down), |_, _| true);
    let got = relay.wait_flows(&["--trace-id", &t(8)], want.len());
    assert_eq!(sorted(got.iter().map(l7_of).collect()), want);

    // ---- it comes back: connected again, and its new flows arrive
    agents[0].start();
    relay.wait_nodes("node1 connected again", |nodes| {
        nodes.values().all(|s| s == "NODE_CONNECTED") && nodes.len() == 2
    });
    let catalog_local = Request::get(&catalog_host, "/after-restart", Some(&t(9)));
    let seen = exchange(
        &frontend,
        &catalog,
        std::slice::from_ref(&catalog_local),
        false,
        None,
    );
    assert_eq!(seen.codes, [200]);
    let back = Exchange {
        request: catalog_local,
        code: 200,
        from_pod: frontend_pod.clone(),
        seen_at: vec![node1.clone(), node1.clone()],
    };
    let want = expected(std::slice::from_ref(&back), |_, _| true);
    let got = relay.wait_flows(&["--trace-id", &t(9)], want.len());
    assert_eq!(
        sorted(got.iter().map(l7_of).collect()),
        want,
        "node1's flows after its agent restarted\nrelay log:\n{}",
        relay.process.log_text()
    );
    let status = relay.status();
    assert_eq!(status["num_connected_nodes"], 2, "{status}");

    // ---- everything this test made is gone
    drop(_servers);
    drop(relay);
    drop(agents);
    let left = net.teardown();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// DNS: a resolver in a pod, clients resolving over UDP and TCP, the relay's L7 DNS flows

/// The zone the test's resolver answers for; every other name is NXDOMAIN.
const ZONE: &str = "shop.example.";
/// TTL of the resolver's A records (the CNAME's is longer, so the flow's TTL is this one).
const A_TTL: u32 = 30;
const CNAME_TTL: u32 = 300;

/// The answer the test's resolver gives to `query`: `catalog.` A/AAAA, `www.` a CNAME to
/// `catalog.` followed by its A record, anything else NXDOMAIN.
fn resolve(query: &webb_l7::dns::DnsMessage, catalog: Ipv4Addr) -> webb_l7::dns::DnsMessage {
    use webb_l7::dns::{Answer, AnswerData};
    let q = &query.questions[0];
    let target = format!("catalog.{ZONE}");
    let record = |name: &str, qtype: u16| {
        match qtype {
            1 => Some(AnswerData::A(catalog)),
            28 => Some(AnswerData::Aaaa("2001:2::53".parse().unwrap())),
            _ => None,
        }
        .map(|data| Answer {
            name: name.to_string(),
            ttl: A_TTL,
            data,
        })
    };
    let (rcode, answers) = if q.name == target {
        (0, record(&target, q.qtype).into_iter().collect())
    } else if q.name == format!("www.{ZONE}") {
        let alias = Answer {
            name: q.name.clone(),
            ttl: CNAME_TTL,
            data: AnswerData::Cname(target.clone()),
        };
        (
            0,
            std::iter::once(alias)
                .chain(record(&target, q.qtype))
                .collect(),
        )
    } else {
        (3, Vec::new())
    };
    webb_l7::dns::DnsMessage {
        is_response: true,
        rcode,
        answers,
        ..query.clone()
    }
}

/// A DNS server on UDP and TCP port 53 in a pod, built on the DNS crate Webb parses with.
/// Bytes that are not a query get no answer. Stops when dropped.
struct Resolver {
    stop: Arc<AtomicBool>,
    threads: Vec<netlab::netns::NsThread<()>>,
}

impl Resolver {
    fn start(pod: &netlab::Pod) -> Resolver {
        let stop = Arc::new(AtomicBool::new(false));
        let catalog = pod.ipv4;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (flag, ready) = (stop.clone(), ready_tx.clone());
        let udp = netlab::netns::spawn_in(&pod.netns, move || {
            let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 53)).expect("UDP 53");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let _ = ready.send(());
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Ok(q) = webb_l7::dns::parse_udp(&buf[..n])
                    && !q.is_response
                    && !q.questions.is_empty()
                {
                    let answer = resolve(&q, catalog).to_udp().expect("encodable");
                    socket.send_to(&answer, from).expect("answering");
                }
            }
        })
        .expect("a UDP resolver thread in the pod");
        let flag = stop.clone();
        let tcp = netlab::netns::spawn_in(&pod.netns, move || {
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 53)).expect("TCP 53");
            listener.set_nonblocking(true).unwrap();
            let _ = ready_tx.send(());
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        let mut len = [0u8; 2];
                        if conn.read_exact(&mut len).is_err() {
                            continue;
                        }
                        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if conn.read_exact(&mut msg).is_err() {
                            continue;
                        }
                        if let Ok(q) = webb_l7::dns::parse_udp(&msg) {
                            let answer = resolve(&q, catalog).to_tcp().expect("encodable");
                            let _ = conn.write_all(&answer);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        })
        .expect("a TCP resolver thread in the pod");
        for _ in 0..2 {
            ready_rx
                .recv_timeout(IO_TIMEOUT)
                .expect("the resolver listens");
        }
        Resolver {
            stop,
            threads: vec![udp, tcp],
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if !std::thread::panicking() {
            self.threads.drain(..).for_each(|t| t.join());
        }
    }
}

/// How a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// Sends `query` from `client` to the resolver in `server` and returns the answer it read.
fn ask(
    client: &netlab::Pod,
    server: &netlab::Pod,
    query: webb_l7::dns::DnsMessage,
    transport: Transport,
) -> webb_l7::dns::DnsMessage {
    let to = SocketAddr::from((server.ipv4, 53));
    netlab::netns::spawn_in(&client.netns, move || match transport {
        Transport::Udp => {
            let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            socket.send_to(&query.to_udp().unwrap(), to).unwrap();
            let mut buf = [0u8; 1500];
            let n = socket.recv(&mut buf).expect("an answer over UDP");
            webb_l7::dns::parse_udp(&buf[..n]).expect("the answer parses")
        }
        Transport::Tcp => {
            let mut conn = TcpStream::connect_timeout(&to, IO_TIMEOUT).expect("TCP 53");
            conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            conn.write_all(&query.to_tcp().unwrap()).unwrap();
            let mut len = [0u8; 2];
            conn.read_exact(&mut len).expect("an answer over TCP");
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            conn.read_exact(&mut msg).expect("the whole answer");
            webb_l7::dns::parse_udp(&msg).expect("the answer parses")
        }
    })
    .expect("a client thread in the pod")
    .join()
}

/// Sends bytes that are no DNS message to UDP 53 (nothing answers them).
fn send_garbage(client: &netlab::Pod, server: &netlab::Pod) {
    let to = SocketAddr::from((server.ipv4, 53));
    netlab::netns::spawn_in(&client.netns, move || {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        socket
            .send_to(b"\x12\x34 this is not a DNS message", to)
            .unwrap();
    })
    .expect("a client thread in the pod")
    .join();
}

fn dns_query(id: u16, name: &str, qtype: u16) -> webb_l7::dns::DnsMessage {
    webb_l7::dns::DnsMessage::query(id, name, qtype)
}

/// The relay's `/metrics` (Prometheus text).
fn scrape(relay: &Relay) -> String {
    let mut resp = ureq::get(&format!("http://{}/metrics", relay.http))
        .call()
        .expect("GET /metrics");
    resp.body_mut().read_to_string().expect("its body")
}

/// The value of the one sample of `metric` whose labels include all of `labels`; 0 if none.
fn sample(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// (node, REQUEST/RESPONSE, query, rcode, ips, cnames, rrtypes) of an L7 DNS flow.
type DnsL7 = (
    String,
    String,
    String,
    u64,
    Vec<String>,
    Vec<String>,
    Vec<String>,
);

fn dns_of(flow: &Value) -> DnsL7 {
    let dns = &flow["l7"]["dns"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    (
        flow["node_name"].as_str().unwrap_or_default().into(),
        flow["l7"]["type"].as_str().unwrap_or_default().into(),
        dns["query"].as_str().unwrap_or_default().into(),
        dns["rcode"].as_u64().unwrap_or(0),
        strings(&dns["ips"]),
        strings(&dns["cnames"]),
        strings(&dns["rrtypes"]),
    )
}

#[test]
fn relay_makes_l7_dns_flows_and_hubbles_dns_metrics_from_queries_over_udp_and_tcp() {
    netlab::cleanup_stale("wbdns");
    let work = tempfile::tempdir().expect("a work directory");
    let net = Network(Some(
        netlab::Topology::build(&netlab::unique_prefix("wbdns")).expect("building the network"),
    ));
    let topo = net.topo();
    let endpoints = work.path().join("endpoints.yaml");
    topo.write_endpoints(&endpoints).unwrap();
    let pod = |key: &str| topo.pod(key).unwrap_or_else(|| panic!("pod {key}")).clone();
    // The resolver in catalog (node1); frontend asks from node1, cart from node2.
    let (frontend, catalog, cart) = (pod("frontend"), pod("catalog"), pod("cart"));
    let (node1, node2) = (topo.nodes()[0].name.clone(), topo.nodes()[1].name.clone());
    assert_eq!(
        (&frontend.node, &catalog.node, &cart.node),
        (&node1, &node1, &node2)
    );

    let mut agents = [
        Agent::new(&topo.nodes()[0], &endpoints, work.path()),
        Agent::new(&topo.nodes()[1], &endpoints, work.path()),
    ];
    agents.iter_mut().for_each(Agent::start);
    let relay = Relay::start_with(
        &[&agents[0], &agents[1]],
        work.path(),
        &["--metrics", "dns:query;ignoreAAAA flow"],
    );
    let _resolver = Resolver::start(&catalog);

    // ---- resolutions: what the clients read is what the resolver meant
    let catalog_name = format!("catalog.{ZONE}");
    let www = format!("www.{ZONE}");
    let nope = format!("nope.{ZONE}");
    let asked = [
        (&frontend, dns_query(101, &catalog_name, 1), Transport::Udp),
        (&frontend, dns_query(102, &www, 1), Transport::Udp),
        (&frontend, dns_query(103, &nope, 1), Transport::Udp),
        (&frontend, dns_query(104, &catalog_name, 28), Transport::Udp),
        (&cart, dns_query(105, &www, 1), Transport::Tcp),
    ];
    for (client, q, transport) in &asked {
        let a = ask(client, &catalog, q.clone(), *transport);
        assert_eq!(a, resolve(q, catalog.ipv4), "{transport:?} {q:?}");
    }
    send_garbage(&frontend, &catalog);

    // ---- the L7 DNS flows: a REQUEST and a RESPONSE at each observation point
    let ip = catalog.ipv4.to_string();
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut want: Vec<DnsL7> = Vec::new();
    for (client, q, _) in &asked {
        let name = q.questions[0].name.clone();
        let answer = resolve(q, catalog.ipv4);
        let (ips, cnames, rrtypes) = match (name.as_str(), q.questions[0].qtype) {
            (n, 1) if n == catalog_name => (strs(&[ip.as_str()]), vec![], strs(&["A"])),
            (n, 28) if n == catalog_name => (strs(&["2001:2::53"]), vec![], strs(&["AAAA"])),
            (n, _) if n == www => (
                strs(&[ip.as_str()]),
                vec![catalog_name.clone()],
                strs(&["CNAME", "A"]),
            ),
            _ => (vec![], vec![], vec![]),
        };
        // The client's node at its interface, the resolver's node (node1) at catalog's.
        for node in [client.node.clone(), node1.clone()] {
            want.push((
                node.clone(),
                "REQUEST".into(),
                name.clone(),
                0,
                vec![],
                vec![],
                vec![],
            ));
            want.push((
                node,
                "RESPONSE".into(),
                name.clone(),
                u64::from(answer.rcode),
                ips.clone(),
                cnames.clone(),
                rrtypes.clone(),
            ));
        }
    }
    want.sort();
    let flows = relay.wait_flows(&["--protocol", "dns"], want.len());
    let mut got: Vec<DnsL7> = flows.iter().map(dns_of).collect();
    got.sort();
    assert_eq!(
        got,
        want,
        "the relay's L7 DNS flows (node, type, query, rcode, ips, cnames, rrtypes)\nrelay log:\n{}",
        relay.process.log_text()
    );
    for f in &flows {
        assert_eq!(f["Type"], "L7", "{f}");
        assert_eq!(f["event_type"]["type"], 129, "{f}");
        assert_eq!(f["l7"]["dns"]["observation_source"], "datapath", "{f}");
        let response = f["l7"]["type"] == "RESPONSE";
        assert_eq!(f["is_reply"].as_bool(), Some(response), "{f}");
        if response {
            assert!(latency_ns(f) > 0, "a response paired with its query: {f}");
        }
    }
    // Hubble's summaries.
    let summaries: std::collections::BTreeSet<&str> =
        flows.iter().filter_map(|f| f["Summary"].as_str()).collect();
    for s in [
        format!("DNS Query {www} A"),
        format!("DNS Answer \"{ip}\" CNAMEs: \"{catalog_name}\" TTL: {A_TTL} (Query {www} A)"),
        format!("DNS Answer RCode: Non-Existent Domain TTL: 4294967295 (Query {nope} A)"),
        format!("DNS Answer \"2001:2::53\" TTL: {A_TTL} (Query {catalog_name} AAAA)"),
    ] {
        assert!(
            summaries.contains(s.as_str()),
            "no flow says {s:?}: {summaries:#?}"
        );
    }
    // Over TCP too (cart's query, one flow per node it crossed and kind).
    let over_tcp = flows.iter().filter(|f| f["l4"]["TCP"].is_object()).count();
    assert_eq!(
        over_tcp, 4,
        "cart's TCP query and answer at two observation points"
    );

    // ---- Hubble's dns_query filter (a regex on l7.dns.query), as a raw filter the way
    // `hubble observe --allowlist` takes it (the relay here keeps no history for the JSON API)
    let by_query = relay.observe(&["--allowlist", r#"{"dns_query":["^nope\\."]}"#]);
    assert_eq!(
        by_query.len(),
        4,
        "nope's query and NXDOMAIN at two points: {by_query:#?}"
    );
    assert!(
        by_query
            .iter()
            .all(|f| f["l7"]["dns"]["query"] == nope.as_str())
    );

    // ---- metrics: Hubble's names, labels and options (query; ignoreAAAA drops AAAA-only)
    let metrics = retry_scrape(&relay, |m| {
        sample(m, "webb_lost_events_total", &[("stage", "relay_l7_dns")]) >= 2.0
    });
    let q = |name: &str, rcode: &str, ips: &str| {
        sample(
            &metrics,
            "hubble_dns_queries_total",
            &[
                ("rcode", rcode),
                ("qtypes", "A"),
                ("ips_returned", ips),
                ("query", name),
            ],
        )
    };
    let r = |name: &str, rcode: &str, ips: &str| {
        sample(
            &metrics,
            "hubble_dns_responses_total",
            &[
                ("rcode", rcode),
                ("qtypes", "A"),
                ("ips_returned", ips),
                ("query", name),
            ],
        )
    };
    assert_eq!(q(&nope, "", "0"), 2.0, "{metrics}");
    assert_eq!(r(&nope, "Non-Existent Domain", "0"), 2.0, "{metrics}");
    assert_eq!(r(&catalog_name, "No Error", "1"), 2.0, "{metrics}");
    assert_eq!(
        r(&www, "No Error", "1"),
        4.0,
        "UDP and TCP, two points each: {metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "hubble_dns_response_types_total",
            &[("type", "CNAME"), ("qtypes", "A"), ("query", www.as_str())]
        ),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "hubble_dns_queries_total", &[("qtypes", "AAAA")]),
        0.0,
        "ignoreAAAA: {metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "hubble_flows_processed_total",
            &[("type", "L7"), ("subtype", "DNS")]
        ),
        want.len() as f64,
        "{metrics}"
    );
    println!(
        "L7 DNS flows: {}; unreadable DNS messages counted: {}",
        flows.len(),
        sample(
            &metrics,
            "webb_lost_events_total",
            &[("stage", "relay_l7_dns")]
        )
    );

    drop(_resolver);
    drop(relay);
    drop(agents);
    let left = net.teardown();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// Scrapes until `ready` holds (the loss reporter runs once a second), within `WAIT`.
fn retry_scrape(relay: &Relay, ready: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let m = scrape(relay);
        if ready(&m) || start.elapsed() > WAIT {
            return m;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
