//! The real `hubble` CLI against Webb, unmodified: `hubble observe` in every output format and
//! with Hubble's filter flags prints byte for byte what `webb observe` prints for the same flags,
//! over plaintext and over mTLS, and `hubble status` / `hubble list nodes` read Webb's relay.
//!
//! Needs a `hubble` binary in `HUBBLE_BIN` (this machine has no Go toolchain or Hubble release
//! in CI; README, "Testing against the real hubble CLI", says how to build one locally). Without
//! it the test says so and passes: the same outputs are also pinned by the goldens the real CLI
//! printed (tui/tests/output_formats.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use webb_scenarios::demo::Stack;
use webb_scenarios::{Process, binary, free_port, retry_until, text, webb_certs};

const FLOWS: usize = 400;
const READY: Duration = Duration::from_secs(60);

/// `hubble observe` flags as a Hubble user types them; each set must print the same as Webb.
const OBSERVE_CASES: &[&[&str]] = &[
    &["--last", "50"],
    &["--last", "50", "-o", "json"],
    &["--last", "50", "-o", "jsonpb"],
    &["--last", "20", "-o", "dict"],
    &["--last", "20", "-o", "table"],
    &["--first", "10", "--print-node-name"],
    &["--all", "--verdict", "DROPPED"],
    &["--all", "--type", "l7", "-o", "json"],
    &["--all", "--protocol", "http", "--http-status", "2+"],
    &[
        "--all",
        "--http-method",
        "GET",
        "--not",
        "--http-status",
        "200",
    ],
    &["--all", "--protocol", "dns", "-o", "json"],
    &["--all", "--from-namespace", "ns-3", "--to-port", "8080"],
    &["--all", "--not", "--protocol", "tcp", "-o", "compact"],
    &[
        "--all",
        "--traffic-direction",
        "ingress",
        "--time-format",
        "RFC3339",
    ],
    &["--all", "--drop-reason-desc", "POLICY_DENIED"],
    &["--since", "2000-01-01T00:00:00Z", "--last", "5"],
];

fn hubble_bin() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("HUBBLE_BIN")?);
    assert!(
        path.is_file(),
        "HUBBLE_BIN={} is not a file",
        path.display()
    );
    Some(path)
}

fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_remove("WEBB_SERVER")
        .env_remove("HUBBLE_SERVER")
        // Hubble reads a config file and HUBBLE_* variables: none may change what it asks for.
        .env("HUBBLE_CONFIG", dir.join("no-hubble-config.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// A relay serving generated flows (HTTP, DNS, drops across namespaces), optionally over mTLS.
fn relay(dir: &Path, tls: bool) -> (Process, String) {
    let port = free_port();
    let mut command = Command::new(binary("webb-relay"));
    command
        .current_dir(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--store-dir", if tls { "store-tls" } else { "store" }])
        .args(["--synthetic-flows", &FLOWS.to_string()]);
    if tls {
        command.args([
            "--tls-cert-file",
            "relay.crt",
            "--tls-key-file",
            "relay.key",
            "--tls-client-ca-files",
            "ca.crt",
        ]);
    }
    let log = dir.join(if tls { "relay-tls.log" } else { "relay.log" });
    (
        Process::spawn(&mut command, log),
        format!("127.0.0.1:{port}"),
    )
}

/// Flow fields newer than the hubble under test (v1.17 predates `policy_log`): a hubble that
/// does not know a field drops it when printing, so Webb's line is compared without it.
const FIELDS_NEWER_THAN_HUBBLE: &[&str] = &["policy_log"];

fn without_fields_hubble_predates(webb_line: &str, hubble_line: &str) -> String {
    let mut line = webb_line.to_owned();
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(webb_line) else {
        return line;
    };
    for field in FIELDS_NEWER_THAN_HUBBLE {
        let key = format!("\"{field}\":");
        if hubble_line.contains(&key) {
            continue;
        }
        if let Some(value) = doc.pointer(&format!("/flow/{field}")) {
            let printed = format!(",{key}{}", serde_json::to_string(value).unwrap());
            line = line.replacen(&printed, "", 1);
        }
    }
    line
}

/// Runs `hubble` and `webb` with the same arguments and asserts identical stdout and status.
fn assert_same(hubble: &Path, dir: &Path, args: &[&str]) {
    let h = run(hubble, args, dir);
    let w = run(&binary("webb"), args, dir);
    assert!(
        h.status.success(),
        "hubble {args:?} failed: {}",
        text(&h.stderr)
    );
    assert_eq!(
        h.status.code(),
        w.status.code(),
        "exit status of {args:?}; webb said: {}",
        text(&w.stderr)
    );
    let hs = text(&h.stdout);
    assert!(
        !hs.is_empty(),
        "hubble {args:?} printed nothing: a case must select flows"
    );
    let ws: String = text(&w.stdout)
        .lines()
        .zip(hs.lines().chain(std::iter::repeat("")))
        .map(|(webb, hubble)| without_fields_hubble_predates(webb, hubble) + "\n")
        .collect();
    if hs != ws {
        let first = hs
            .lines()
            .zip(ws.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(hs.lines().count().min(ws.lines().count()));
        panic!(
            "{args:?}: outputs differ first at line {} ({} vs {} lines)\nhubble: {:?}\nwebb:   {:?}",
            first + 1,
            hs.lines().count(),
            ws.lines().count(),
            hs.lines().nth(first),
            ws.lines().nth(first),
        );
    }
}

#[test]
fn the_real_hubble_cli_prints_what_webb_prints_over_plaintext_and_mtls() {
    let Some(hubble) = hubble_bin() else {
        eprintln!("HUBBLE_BIN is not set: the real hubble CLI is not compared (see README)");
        return;
    };
    let dir = tempfile::tempdir().expect("a directory");
    let d = dir.path();
    webb_certs(d, &["ca"]);
    webb_certs(d, &["relay", "--ip", "127.0.0.1"]);
    webb_certs(d, &["client", "alice"]);

    let (mut plain, plain_addr) = relay(d, false);
    let (mut secure, secure_addr) = relay(d, true);
    let mtls: Vec<String> = [
        "--server",
        &format!("tls://{secure_addr}"),
        "--tls-ca-cert-files",
        "ca.crt",
        "--tls-client-cert-file",
        "client-alice.crt",
        "--tls-client-key-file",
        "client-alice.key",
        "--tls-server-name",
        "relay.webb.local",
    ]
    .map(String::from)
    .to_vec();
    let mtls: Vec<&str> = mtls.iter().map(String::as_str).collect();

    // Both relays have stored their generated flows once `--last 50` returns 50.
    let plain_ready = ["observe", "--server", plain_addr.as_str(), "--last", "50"].to_vec();
    let secure_ready = [&["observe", "--last", "50"][..], &mtls].concat();
    for args in [plain_ready, secure_ready] {
        let out = retry_until(
            READY,
            || run(&hubble, &args, d),
            |o| o.status.success() && text(&o.stdout).lines().count() == 50,
        );
        assert!(
            out.status.success(),
            "hubble {args:?}: {}\nplain relay log:\n{}\ntls relay log:\n{}",
            text(&out.stderr),
            plain.log_text(),
            secure.log_text()
        );
    }

    for case in OBSERVE_CASES {
        assert_same(
            &hubble,
            d,
            &[&["observe", "--server", &plain_addr][..], case].concat(),
        );
    }
    // Over mTLS with Hubble's TLS flags, the same answers.
    for case in &OBSERVE_CASES[..4] {
        assert_same(&hubble, d, &[&["observe"][..], case, &mtls].concat());
    }

    // hubble status and list nodes read Webb's ServerStatus and GetNodes. A relay without agents
    // reports NOT_SERVING, as Hubble Relay does; the flow counts still print.
    let status = run(&hubble, &["status", "--server", &plain_addr], d);
    let s = text(&status.stdout) + &text(&status.stderr);
    assert!(s.contains("Healthcheck (via"), "{s}");
    let nodes = run(&hubble, &["list", "nodes", "--server", &plain_addr], d);
    assert!(
        nodes.status.success() && text(&nodes.stdout).starts_with("NAME"),
        "{}{}",
        text(&nodes.stdout),
        text(&nodes.stderr)
    );

    // A hubble without a client certificate is refused by the mTLS relay.
    let refused = run(
        &hubble,
        &[&["observe"][..], &mtls[..2], &mtls[2..4], &mtls[8..]].concat(),
        d,
    );
    assert!(!refused.status.success());

    plain.assert_running();
    secure.assert_running();
}

/// Filters on the demo's real traffic, over one closed time window so both CLIs see the same flows.
const LIVE_CASES: &[&[&str]] = &[
    &[],
    &["-o", "json"],
    &["-o", "dict"],
    &["--print-node-name", "--time-format", "StampMilli"],
    &["--from-pod", "shop/frontend", "--protocol", "http"],
    &["--verdict", "DROPPED", "-o", "json"],
    &["--type", "l7", "--http-status", "2+"],
    &["--protocol", "dns", "-o", "json"],
    &["--namespace", "data", "--not", "--verdict", "FORWARDED"],
    &["--type", "policy-verdict"],
    &["--protocol", "icmp"],
];

#[test]
fn the_real_hubble_cli_reads_the_demos_agents_and_relay_as_webb_does() {
    let Some(hubble) = hubble_bin() else {
        eprintln!("HUBBLE_BIN is not set: the real hubble CLI is not compared (see README)");
        return;
    };
    netlab::cleanup_stale("whub");
    let prefix = netlab::unique_prefix("whub");
    let work = tempfile::tempdir().expect("a work directory");
    let d = work.path();
    let topo = netlab::Topology::build(&prefix).expect("building the shop's network");
    let mut stack = Stack::for_test(&topo, d);
    let plan = netlab::Plan {
        duration: Duration::from_secs(8),
        max_requests: 1_000,
        ..Default::default()
    };
    let since = now_rfc3339();
    netlab::Traffic::start(&topo, plan)
        .expect("starting the traffic")
        .wait();
    // Past the relay's sort buffer, so the window is complete when both CLIs read it.
    std::thread::sleep(Duration::from_secs(3));
    let until = now_rfc3339();
    let window = ["--since", since.as_str(), "--until", until.as_str()];

    let agent = stack.agents[0].addr.clone();
    for server in [agent.as_str(), stack.relay.as_str()] {
        let status = run(&hubble, &["status", "--server", server], d);
        assert!(
            status.status.success() && text(&status.stdout).contains("Healthcheck (via"),
            "hubble status --server {server}: {}{}",
            text(&status.stdout),
            text(&status.stderr)
        );
        let mut printed = 0;
        for case in LIVE_CASES {
            let args = [&["observe", "--server", server][..], &window, case].concat();
            let out = run(&hubble, &args, d);
            printed += text(&out.stdout).lines().count();
            if text(&out.stdout).is_empty() {
                // A filter the agent's own node never matches (e.g. the db lives elsewhere).
                assert_eq!(text(&run(&binary("webb"), &args, d).stdout), "");
                continue;
            }
            assert_same(&hubble, d, &args);
        }
        assert!(
            printed > 100,
            "{server}: only {printed} lines for all cases"
        );
    }
    let nodes = run(&hubble, &["list", "nodes", "--server", &stack.relay], d);
    let listed = text(&nodes.stdout);
    assert_eq!(
        listed.lines().filter(|l| l.contains("Connected")).count(),
        topo.nodes().len(),
        "{listed}"
    );

    stack.stop_all();
    drop(stack);
    topo.teardown().expect("deleting the network");
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}
