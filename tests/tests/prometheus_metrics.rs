//! A real Prometheus judges the relay's metrics during real traffic.
//!
//! The stack is the demo's: netlab's two nodes and the shop's pods, one `webb-agent` per node
//! (endpoints file, a CiliumNetworkPolicy that denies `frontend → db`), `webb-relay` following
//! both with the metrics the dashboards are built for, and Debian's `prometheus` scraping the
//! relay and the agents every second with exemplar storage and `dashboards/alerts` loaded.
//! Everything is asserted through Prometheus' HTTP API: target health, series and their labels,
//! exemplars (HTTP, and drop + policy verdict of a traced connection that a policy reload
//! denies), every dashboard panel query and variable, every rule, an alert that fires when an
//! agent goes down, and the series of an endpoint removed from the endpoints file going away.
//!
//! Needs root (network namespaces, eBPF) and the binaries built (`cargo build --bins`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use webb_scenarios::dashboards::{self, RELAY_METRICS};
use webb_scenarios::prometheus::{Job, Prometheus};
use webb_scenarios::{Process, binary, free_port};

const READY: Duration = Duration::from_secs(60);
/// Bound of every wait for Prometheus to see something (a few scrapes and rule evaluations).
const SEEN: Duration = Duration::from_secs(45);
/// The relay's grace before a removed endpoint's series go (shortened for the test).
const GRACE: &str = "3s";
/// Port of the test's own HTTP server in the `db` pod: not the shop's, so the policy reload
/// that denies it touches no other traffic.
const TRACED_PORT: u16 = 9099;
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// `data/db-ingress`: db takes connections only from cart and catalog (so `frontend → db`, which
/// the traffic keeps trying, is denied and dropped), and from its node.
const POLICY: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db-ingress, namespace: data}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
    - fromEndpoints:
        - {matchLabels: {app: cart, k8s:io.kubernetes.pod.namespace: shop}}
        - {matchLabels: {app: catalog, k8s:io.kubernetes.pod.namespace: shop}}
    - fromEntities: [host]
"#;

/// The same policy, now also denying `cart → db:9099` (a connection already open on it is
/// decided again at its next packet and dropped, reason `POLICY_DENY`: an explicit deny rule,
/// where a default deny is `POLICY_DENIED`).
fn policy_denying_traced_port() -> String {
    format!(
        "{POLICY}  ingressDeny:\n    - fromEndpoints: [{{matchLabels: {{app: cart, k8s:io.kubernetes.pod.namespace: shop}}}}]\n      toPorts: [{{ports: [{{port: \"{TRACED_PORT}\", protocol: TCP}}]}}]\n"
    )
}

struct Agent {
    process: Process,
    node: String,
    grpc: String,
    metrics: String,
}

struct Stack {
    // Field order is drop order: processes before the namespaces they look into.
    prometheus: Prometheus,
    relay: Process,
    relay_grpc: String,
    relay_http: String,
    agents: Vec<Agent>,
    endpoints: PathBuf,
    policy: PathBuf,
    topo: netlab::Topology,
    dir: tempfile::TempDir,
}

fn webb_status(addr: &str) -> bool {
    Command::new(binary("webb"))
        .args(["status", "--timeout", "1s", "--server", addr])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wait_status(name: &str, addr: &str, process: &mut Process) {
    let start = Instant::now();
    while !webb_status(addr) {
        process.assert_running();
        assert!(
            start.elapsed() < READY,
            "{name} did not answer on {addr} within {READY:?}:\n{}",
            process.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn start_stack() -> Stack {
    netlab::cleanup_stale("wprom");
    let topo = netlab::Topology::build(&netlab::unique_prefix("wprom"))
        .expect("the demo network builds (run as root)");
    let dir = tempfile::tempdir().expect("a work directory");
    let endpoints = dir.path().join("endpoints.yaml");
    topo.write_endpoints(&endpoints).expect("endpoints file");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy file");

    let mut agents = Vec::new();
    for node in topo.nodes() {
        let grpc = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(binary("webb-agent"));
        command
            .args(["--node-name", &node.name])
            .arg("--endpoints")
            .arg(&endpoints)
            .arg("--policy")
            .arg(&policy)
            .arg("--netns")
            .arg(netlab::netns::path(&node.netns))
            .args(["--listen", &grpc])
            .arg("--unix-socket")
            .arg(dir.path().join(format!("{}.sock", node.name)))
            .args(["--metrics-listen", &metrics]);
        let process = Process::spawn(&mut command, dir.path().join(format!("{}.log", node.name)));
        agents.push(Agent {
            process,
            node: node.name.clone(),
            grpc,
            metrics,
        });
    }
    for a in &mut agents {
        wait_status(&a.node, &a.grpc, &mut a.process);
    }

    let relay_grpc = format!("127.0.0.1:{}", free_port());
    let relay_http = format!("127.0.0.1:{}", free_port());
    let peers: Vec<&str> = agents.iter().map(|a| a.grpc.as_str()).collect();
    let mut command = Command::new(binary("webb-relay"));
    command
        .args(["--listen", &relay_grpc, "--peers", &peers.join(",")])
        .args(["--http-listen", &relay_http])
        .args(["--metrics", RELAY_METRICS])
        .arg("--endpoints")
        .arg(&endpoints)
        .args(["--metrics-endpoint-grace", GRACE])
        .args(["--store-dir", "none"]);
    let mut relay = Process::spawn(&mut command, dir.path().join("relay.log"));
    wait_status("relay", &relay_grpc, &mut relay);

    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prom_dir).expect("prometheus directory");
    let jobs = [
        Job {
            name: "webb-relay".into(),
            targets: vec![relay_http.clone()],
        },
        Job {
            name: "webb-agent".into(),
            targets: agents.iter().map(|a| a.metrics.clone()).collect(),
        },
    ];
    let mut prometheus = Prometheus::start(&prom_dir, &jobs, &dashboards::rule_files());
    prometheus.wait_ready(READY);

    Stack {
        prometheus,
        relay,
        relay_grpc,
        relay_http,
        agents,
        endpoints,
        policy,
        topo,
        dir,
    }
}

impl Stack {
    fn pod(&self, key: &str) -> &netlab::Pod {
        self.topo.pod(key).expect("a shop pod")
    }

    /// Polls `f` until it returns `Some`, at most [`SEEN`]; the panic names `what`.
    fn eventually<T>(&mut self, what: &str, mut f: impl FnMut(&Prometheus) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(&self.prometheus) {
                return v;
            }
            self.relay.assert_running();
            assert!(
                start.elapsed() < SEEN,
                "{what}: not seen within {SEEN:?}\nrelay log:\n{}\nprometheus log:\n{}",
                self.relay.log_text(),
                self.prometheus.log_text()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The relay's own exposition (Prometheus text).
    fn relay_exposition(&self) -> String {
        let mut resp = ureq::get(format!("http://{}/metrics", self.relay_http))
            .call()
            .expect("GET the relay's /metrics");
        resp.body_mut().read_to_string().expect("its body")
    }
}

fn query(p: &Prometheus, expr: &str) -> Vec<Value> {
    p.query(expr).unwrap_or_else(|e| panic!("{e}"))
}

fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or("")
}

/// A one-request HTTP server in the `db` pod on [`TRACED_PORT`] (answers each request of a
/// keep-alive connection with 200) — a connection the test fully controls.
fn serve_in_db(stack: &Stack) -> netlab::netns::NsThread<()> {
    let ip = stack.pod("db").ipv4;
    let (tx, rx) = std::sync::mpsc::channel();
    let server = netlab::netns::spawn_in(&stack.pod("db").netns, move || {
        let listener = TcpListener::bind((ip, TRACED_PORT)).expect("listen in db");
        tx.send(()).expect("tell the test");
        let (stream, _) = listener.accept().expect("one connection");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut out = stream;
        // Bounded: at most 3 requests on the connection.
        for _ in 0..3 {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => head.push_str(&line),
                }
            }
            if out
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    })
    .expect("a thread in db's namespace");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the server listens");
    server
}

/// Sends one request with `traceparent` on a connection from `cart` to the db server and reads
/// the answer; returns the open connection.
fn traced_request_from_cart(stack: &Stack) -> netlab::netns::NsThread<TcpStream> {
    let dst = SocketAddr::new(IpAddr::V4(stack.pod("db").ipv4), TRACED_PORT);
    netlab::netns::spawn_in(&stack.pod("cart").netns, move || {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(3)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("read timeout");
        let req = format!(
            "GET /api/orders HTTP/1.1\r\nHost: db.data:{TRACED_PORT}\r\n\
             traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("send the request");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).expect("the answer");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        s
    })
    .expect("a thread in cart's namespace")
}

#[test]
fn prometheus_sees_the_relays_series_exemplars_and_every_dashboard_query_during_real_traffic() {
    let mut stack = start_stack();

    // Real traffic: HTTP (half with traceparent; 200, 404, 500), DNS-like UDP, ICMP, and
    // frontend → db attempts that the policy denies.
    let plan = netlab::Plan {
        duration: Duration::from_secs(15),
        max_requests: 3_000,
        ..Default::default()
    };
    let traffic = netlab::Traffic::start(&stack.topo, plan).expect("traffic starts");
    let report = traffic.wait();
    let sent: BTreeSet<String> = report
        .client
        .traced
        .iter()
        .map(|t| t.trace_id.clone())
        .collect();
    assert!(
        report.client.responses() > 50 && !sent.is_empty(),
        "too little traffic to judge: {report}"
    );

    eprintln!(
        "traffic: {} HTTP responses, {} traced trace ids sent",
        report.client.responses(),
        sent.len()
    );

    // 1. Every target is up and its last scrape had no error.
    let targets = stack.eventually("all 3 targets scraped and up", |p| {
        let t = p.active_targets();
        (t.len() == 3 && t.iter().all(|t| t["health"] == "up")).then_some(t)
    });
    for t in &targets {
        assert_eq!(t["lastError"], "", "scrape error on {t}");
    }

    // 2. The series exist with the labels Hubble's metrics have (and the workload context).
    let http = stack.eventually("HTTP requests frontend → catalog", |p| {
        let r = query(
            p,
            r#"hubble_http_requests_total{job="webb-relay", source_workload="frontend", destination_workload="catalog"}"#,
        );
        (!r.is_empty()).then_some(r)
    });
    for s in &http {
        assert_eq!(label(s, "method"), "GET", "{s}");
        assert_eq!(label(s, "protocol"), "HTTP/1.1", "{s}");
        assert_eq!(label(s, "source_namespace"), "shop", "{s}");
        assert_eq!(label(s, "destination_namespace"), "shop", "{s}");
        assert!(label(s, "destination_pod").starts_with("catalog-"), "{s}");
        assert!(
            ["client", "server", "unknown"].contains(&label(s, "reporter")),
            "{s}"
        );
    }
    let statuses: BTreeSet<&str> = http.iter().map(|s| label(s, "status")).collect();
    for status in ["200", "404", "500"] {
        assert!(
            statuses.contains(status),
            "no status {status} in {statuses:?}"
        );
    }
    let drops = query(
        &stack.prometheus,
        r#"hubble_drop_total{reason="POLICY_DENIED", protocol="TCP", source_workload="frontend", destination_workload="db"}"#,
    );
    assert!(!drops.is_empty(), "no policy drop of TCP frontend → db");
    for s in &drops {
        assert_eq!(label(s, "source_namespace"), "shop", "{s}");
        assert_eq!(label(s, "destination_namespace"), "data", "{s}");
    }
    let denied = query(
        &stack.prometheus,
        r#"hubble_policy_verdicts_total{action="dropped", direction="ingress", source_workload="frontend", destination_workload="db"}"#,
    );
    assert!(!denied.is_empty(), "no denied policy verdict frontend → db");
    let verdicts: BTreeSet<String> = query(&stack.prometheus, "hubble_flows_processed_total")
        .iter()
        .map(|s| label(s, "verdict").to_string())
        .collect();
    assert!(
        verdicts.contains("FORWARDED") && verdicts.contains("DROPPED"),
        "{verdicts:?}"
    );

    // 3. Exemplars: the trace ids the traffic sent, and only those.
    let ex = stack.eventually("exemplars on hubble_http_requests_total", |p| {
        let e = p
            .exemplars("hubble_http_requests_total", Duration::from_secs(600))
            .unwrap_or_else(|e| panic!("{e}"));
        (!e.is_empty()).then_some(e)
    });
    for (series, labels) in &ex {
        let id = labels["traceID"].as_str().unwrap_or_default();
        assert!(
            sent.contains(id),
            "exemplar {labels} on {series} is not a trace id the traffic sent"
        );
    }
    let histogram = stack
        .prometheus
        .exemplars(
            "hubble_http_request_duration_seconds_bucket",
            Duration::from_secs(600),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !histogram.is_empty(),
        "no exemplar on the duration histogram"
    );
    eprintln!(
        "exemplars: {} on hubble_http_requests_total, {} on the duration histogram",
        ex.len(),
        histogram.len()
    );

    // 4. A traced connection that a policy reload denies: its drop and its policy verdict carry
    //    the connection's trace id.
    let server = serve_in_db(&stack);
    let conn = traced_request_from_cart(&stack).join();
    let revision = |p: &Prometheus| -> Option<f64> {
        let r = query(p, r#"max(webb_policy_revision{job="webb-agent"})"#);
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
    };
    let before = stack.eventually("the agents' policy revision", revision);
    std::fs::write(&stack.policy, policy_denying_traced_port()).expect("rewrite the policy");
    stack.eventually("the agents reloading the policy", |p| {
        revision(p).filter(|r| *r > before)
    });
    let cart_netns = stack.pod("cart").netns.clone();
    let mut conn_in_cart = conn;
    let second = netlab::netns::spawn_in(&cart_netns, move || {
        // Dropped by the reloaded policy: no answer comes (the kernel retransmits meanwhile).
        let _ = conn_in_cart.write_all(b"GET /api/orders HTTP/1.1\r\nHost: db\r\n\r\n");
        let mut buf = [0u8; 64];
        conn_in_cart.read(&mut buf).map(|n| n > 0).unwrap_or(false)
    })
    .expect("a thread in cart's namespace")
    .join();
    assert!(
        !second,
        "the request after the reload was answered: the policy did not deny it"
    );
    drop(server);
    for (metric, selector) in [
        (
            "hubble_drop_total",
            r#"hubble_drop_total{reason="POLICY_DENY", source_workload="cart", destination_workload="db"}"#,
        ),
        (
            "hubble_policy_verdicts_total",
            r#"hubble_policy_verdicts_total{action="dropped", source_workload="cart", destination_workload="db"}"#,
        ),
    ] {
        let flows = observe_relay(&stack, &["--port", &TRACED_PORT.to_string()]);
        let what = format!(
            "exemplar {TRACE_ID} on {metric}; series {:?}; flows on port {TRACED_PORT}:\n{flows}",
            query(&stack.prometheus, selector)
        );
        stack.eventually(&what, |p| {
            let e = p
                .exemplars(selector, Duration::from_secs(600))
                .unwrap_or_else(|e| panic!("{e}"));
            e.iter()
                .any(|(_, l)| l["traceID"] == TRACE_ID)
                .then_some(())
        });
    }

    // 5. Every dashboard panel query and variable, every rule: data where traffic makes data.
    every_dashboard_query_returns_data(&mut stack);
    every_rule_is_healthy_and_every_recording_rule_has_data(&mut stack);

    // 6. An endpoint removed from the endpoints file: its series go after the grace period;
    //    the others stay.
    let catalog = stack.pod("catalog").name.clone();
    let cart = stack.pod("cart").name.clone();
    let catalog_series = format!(r#"hubble_http_requests_total{{destination_pod="{catalog}"}}"#);
    let cart_series = format!(r#"hubble_http_requests_total{{destination_pod="{cart}"}}"#);
    assert!(!query(&stack.prometheus, &catalog_series).is_empty());
    let text = std::fs::read_to_string(&stack.endpoints).expect("endpoints file");
    std::fs::write(&stack.endpoints, without_endpoint(&text, &catalog)).expect("rewrite");
    stack.eventually("the removed endpoint's series gone", |p| {
        query(p, &catalog_series).is_empty().then_some(())
    });
    assert!(
        !query(&stack.prometheus, &cart_series).is_empty(),
        "series of an endpoint still listed went too"
    );
    assert!(
        !stack.relay_exposition().contains(&catalog),
        "the relay still exposes series of {catalog}"
    );

    // 7. An agent down: Prometheus' alert for it goes pending (then firing after its `for`).
    let down = stack.agents.pop().expect("two agents");
    let down_instance = down.metrics.clone();
    drop(down.process);
    stack.eventually("WebbAgentDown for the stopped agent", |p| {
        let alerts = p.api("alerts", &[]).unwrap_or_else(|e| panic!("{e}"));
        alerts["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["labels"]["alertname"] == "WebbAgentDown"
                    && a["labels"]["instance"] == down_instance.as_str()
                    && ["pending", "firing"].contains(&a["state"].as_str().unwrap_or(""))
            })
            .then_some(())
    });
    let _ = &stack.dir;
}

/// `webb observe --last 1000 -o json ARGS` against the relay (for failure messages).
fn observe_relay(stack: &Stack, args: &[&str]) -> String {
    Command::new(binary("webb"))
        .args([
            "observe",
            "--server",
            &stack.relay_grpc,
            "--last",
            "1000",
            "-o",
            "json",
        ])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("webb observe: {e}"))
}

/// The endpoints file without the endpoint named `pod`, written back as JSON (which is YAML).
fn without_endpoint(text: &str, pod: &str) -> String {
    let mut file: Value = serde_saphyr::from_str(text).expect("the endpoints file parses");
    let list = file["endpoints"].as_array_mut().expect("an endpoints list");
    let before = list.len();
    list.retain(|e| e["name"] != pod);
    assert_eq!(
        list.len() + 1,
        before,
        "{pod} is not once in the endpoints file:\n{text}"
    );
    serde_json::to_string_pretty(&file).expect("JSON")
}

/// Panel queries that light traffic leaves empty, and the metric whose absence from the
/// relay's own exposition proves the emptiness right.
const EMPTY_WITHOUT_LOSS: &[(&str, &str)] =
    &[("hubble_lost_events_total", "no Hubble ring overflow")];

/// Does the exposition hold a sample of `metric` (not just its HELP and TYPE lines)?
fn has_sample(exposition: &str, metric: &str) -> bool {
    exposition.lines().any(|l| {
        l.strip_prefix(metric)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

fn every_dashboard_query_returns_data(stack: &mut Stack) {
    let exposition = stack.relay_exposition();
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in dashboards::dashboard_files() {
        let dash = dashboards::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let vars = dashboards::variable_names(&dash);
        for v in dashboards::variables(&dash) {
            let Some(q) = dashboards::variable_query(v).filter(|_| v["type"] == "query") else {
                continue;
            };
            let (selector, label) =
                dashboards::label_values(q).unwrap_or_else(|| panic!("{}: {q}", file.display()));
            let selector = dashboards::to_promql(&selector.unwrap_or_default(), &vars)
                .unwrap_or_else(|e| panic!("{e}"));
            let values = stack
                .prometheus
                .label_values(&label, &selector)
                .unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
            if values.iter().all(|v| v.is_empty()) {
                failures.push(format!("variable {} ({q}) has no values", v["name"]));
            }
        }
        for q in dashboards::queries(&dash) {
            let Some(expr) = q.expr() else { continue };
            let promql = dashboards::to_promql(expr, &vars).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
            match stack.prometheus.query(&promql) {
                Err(e) => failures.push(format!("{}: {e}", q.name())),
                Ok(r) if r.is_empty() => {
                    let excused = EMPTY_WITHOUT_LOSS.iter().find(|(m, _)| promql.contains(m));
                    match excused {
                        Some((metric, why)) if !has_sample(&exposition, metric) => {
                            eprintln!("{}: empty ({why}: the relay exposes no {metric})", q.name());
                        }
                        _ => failures.push(format!("{}: no data for {promql}", q.name())),
                    }
                }
                Ok(_) => {}
            }
        }
    }
    eprintln!("dashboard queries and variables run against Prometheus: {checked}");
    assert!(checked > 20, "only {checked} dashboard queries found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn every_rule_is_healthy_and_every_recording_rule_has_data(stack: &mut Stack) {
    let groups = stack.eventually("rules evaluated", |p| {
        let data = p.api("rules", &[]).unwrap_or_else(|e| panic!("{e}"));
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        let evaluated = !groups.is_empty()
            && groups.iter().all(|g| {
                g["rules"].as_array().into_iter().flatten().all(|r| {
                    r["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001"))
                })
            });
        evaluated.then_some(groups)
    });
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for g in &groups {
        for r in g["rules"].as_array().into_iter().flatten() {
            assert_eq!(
                r["health"], "ok",
                "rule {} in {}: {}",
                r["name"], g["file"], r["lastError"]
            );
            let kind = r["type"].as_str().unwrap_or("?");
            *by_kind
                .entry(if kind == "recording" {
                    "recording"
                } else {
                    "alerting"
                })
                .or_default() += 1;
            if kind == "recording" {
                let name = r["name"].as_str().unwrap_or_default();
                let expr = r["query"].as_str().unwrap_or_default();
                let result = query(&stack.prometheus, expr);
                assert!(
                    !result.is_empty(),
                    "recording rule {name} ({expr}) has no data"
                );
            }
        }
    }
    eprintln!("rules: {by_kind:?}");
    assert!(
        by_kind.get("alerting").copied().unwrap_or(0) >= 4,
        "{by_kind:?}"
    );
}
