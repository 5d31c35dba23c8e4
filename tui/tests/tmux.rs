//! The real `webb tui` binary in a real terminal (tmux): it draws the flows, takes a filter
//! typed on the keyboard, and gives the terminal back on `q` — from saved flows, from a real
//! `webb-relay`'s stored history (`--since`, `--until`), and from a live relay fed by real
//! agents watching netlab's shop on network namespaces (root).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use webb_scenarios::demo::Stack;
use webb_scenarios::{Process, binary, free_port, retry_until};

const INPUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/hubble-goldens/input.jsonl"
);
const WEBB: &str = env!("CARGO_BIN_EXE_webb");
/// How long the screen may take to show what a step expects.
const SCREEN: Duration = Duration::from_secs(10);
/// How long live traffic may take to show what a step expects.
const LIVE: Duration = Duration::from_secs(45);

struct Session(String);

impl Session {
    /// `cmd` in a new detached 160×40 tmux session.
    fn start(cmd: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "webb-tui-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "160",
                "-y",
                "40",
                cmd,
            ])
            .status()
            .expect("tmux is installed (apt-get install tmux)")
            .success();
        assert!(ok, "tmux new-session failed");
        Session(name)
    }

    /// `webb ARGS` in a session; the shell prints its exit code and stays a while, so the
    /// pane can be read after the viewer quits.
    fn webb(args: &str) -> Self {
        Session::start(&format!("{WEBB} {args}; echo WEBB-EXIT=$?; sleep 60"))
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.0.as_str()];
        args.extend_from_slice(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }

    /// Waits (at most `limit`) until the pane satisfies `ok`; returns that screen.
    fn wait_until(&self, limit: Duration, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what} within {limit:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (at most 10 s) until the pane shows `needle`.
    fn wait_for(&self, needle: &str) -> String {
        self.wait_until(SCREEN, needle, |s| s.contains(needle))
    }

    /// Quits with `q` and checks that the viewer exited 0 and gave the terminal back.
    fn quit(&self) {
        self.keys(&["q"]);
        let screen = self.wait_for("WEBB-EXIT=");
        assert!(screen.contains("WEBB-EXIT=0"), "{screen}");
        // The alternate screen is gone: no viewer chrome left on the terminal.
        assert!(!screen.contains("buffered"), "{screen}");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// The status line's `arrived N`: flows received from the source.
fn arrived(screen: &str) -> Option<u64> {
    let rest = &screen[screen.find("arrived ")? + "arrived ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The flow table's title, ` X of Y buffered`: (shown, buffered).
fn shown_of_buffered(screen: &str) -> Option<(u64, u64)> {
    let head = &screen[..screen.find(" buffered")?];
    let mut words = head.split_whitespace().rev();
    let buffered = words.next()?.parse().ok()?;
    (words.next()? == "of").then_some(())?;
    let shown = words.next()?.parse().ok()?;
    Some((shown, buffered))
}

/// Rows of the flow table (not the filter line) that show `verdict`.
fn rows_with(screen: &str, verdict: &str) -> usize {
    screen
        .lines()
        .filter(|l| !l.starts_with("filter") && l.contains(&format!(" {verdict} ")))
        .count()
}

#[test]
fn tui_under_tmux_shows_flows_filters_and_quits_cleanly() {
    let s = Session::webb(&format!("tui --input-file {INPUT}"));
    // (A capture may catch the terminal half-way through a frame: wait for the whole of it.)
    s.wait_until(SCREEN, "the five flows", |sc| {
        sc.contains("5 of 5 buffered")
            && sc.contains("Policy denied")
            && sc.contains("http-response")
    });
    s.keys(&["/"]);
    s.keys(&["--", "--verdict DROPPED", "Enter"]);
    s.wait_until(SCREEN, "only the drop", |sc| {
        sc.contains("1 of 5 buffered")
            && sc.contains("Policy denied")
            && !sc.contains("http-response")
    });
    s.keys(&["2"]);
    s.wait_for("P95 MS");
    s.quit();
}

/// Synthetic flows the relay writes into its store before it serves: one a second, ending
/// when it starts (so the last 400 s).
const STORED: usize = 400;

/// A relay with `STORED` flows of history in its store and no agents; its Observer address.
fn relay_with_history(dir: &std::path::Path) -> (Process, String) {
    let server = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(binary("webb-relay"));
    command
        .args(["--listen", &server])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--store-dir")
        .arg(dir.join("store"))
        .args(["--synthetic-flows", &STORED.to_string()]);
    let relay = Process::spawn(&mut command, dir.join("relay.log"));
    (relay, server)
}

/// `webb observe ARGS -o json` against `server`: how many flows it printed.
fn observe_count(server: &str, args: &[&str]) -> Option<usize> {
    let out = Command::new(WEBB)
        .args(["observe", "--server", server, "-o", "json"])
        .args(args)
        .env_remove("WEBB_SERVER")
        .output()
        .expect("running webb observe");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).lines().count())
}

#[test]
fn tui_opens_on_a_relays_stored_history_with_since_and_shows_an_until_window_as_observe_does() {
    let dir = tempfile::tempdir().expect("a directory");
    let (mut relay, server) = relay_with_history(dir.path());
    let ready = retry_until(
        Duration::from_secs(60),
        || {
            Command::new(WEBB)
                .args([
                    "observe", "--server", &server, "--since", "2h", "-o", "json",
                ])
                .output()
                .expect("running webb observe")
        },
        |o| o.status.success() && o.stdout.iter().filter(|b| **b == b'\n').count() == STORED,
    );
    relay.assert_running();
    assert!(
        ready.status.success(),
        "the relay did not serve its history: {}\n{}",
        String::from_utf8_lossy(&ready.stderr),
        relay.log_text()
    );

    // --since 2h: every stored flow (not the last 1000 or a ring's worth), then following.
    let s = Session::webb(&format!("tui --server {server} --since 2h"));
    let screen = s.wait_until(SCREEN, "every stored flow", |sc| {
        arrived(sc) == Some(STORED as u64)
    });
    assert!(screen.contains("following"), "{screen}");
    assert_eq!(
        shown_of_buffered(&screen),
        Some((STORED as u64, STORED as u64))
    );
    s.quit();

    // A closed window in absolute time: the same flows webb observe prints for it, and the
    // viewer says that it does not follow.
    let now = chrono::Utc::now();
    let since = (now - chrono::Duration::minutes(5)).to_rfc3339();
    let until = (now - chrono::Duration::minutes(2)).to_rfc3339();
    let expected = observe_count(&server, &["--since", &since, "--until", &until])
        .expect("webb observe of the window");
    assert!(
        expected > 0 && expected < STORED,
        "three of the store's six and a half minutes: {expected}"
    );
    let s = Session::webb(&format!(
        "tui --server {server} --since {since} --until {until}"
    ));
    let screen = s.wait_until(SCREEN, "the window's flows", |sc| {
        arrived(sc) == Some(expected as u64) && sc.contains("end of the requested history")
    });
    assert_eq!(
        shown_of_buffered(&screen),
        Some((expected as u64, expected as u64))
    );
    s.quit();
    relay.assert_running();
}

fn root_or_fail() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (network namespaces and eBPF): run it through `cargo xtask test`"
    );
}

#[test]
fn tui_against_a_live_relay_shows_real_flows_narrows_them_to_drops_and_counts_arrivals() {
    root_or_fail();
    netlab::cleanup_stale("wtui");
    let prefix = netlab::unique_prefix("wtui");
    let work = tempfile::tempdir().expect("a work directory");
    let topo = netlab::Topology::build(&prefix).expect("building the shop's network");
    let mut stack = Stack::for_test(&topo, work.path());
    // Longer than the test needs; stopped as soon as it is done.
    let plan = netlab::Plan {
        duration: Duration::from_secs(120),
        max_requests: 50_000,
        ..Default::default()
    };
    let traffic = netlab::Traffic::start(&topo, plan).expect("starting the traffic");

    {
        // History of the last minute first, then live flows.
        let s = Session::webb(&format!("tui --server {} --since 1m", stack.relay));
        let screen = s.wait_until(LIVE, "forwarded flows of the shop", |sc| {
            arrived(sc).is_some_and(|n| n > 0) && rows_with(sc, "FORWARDED") > 0
        });
        assert!(screen.contains("following"), "{screen}");
        // Live: the count of arrived flows keeps rising while we watch.
        let before = arrived(&screen).expect("the arrived counter");
        s.wait_until(LIVE, "more flows arriving", |sc| {
            arrived(sc).is_some_and(|n| n > before)
        });

        // The filter line narrows the table to drops (frontend → db is denied by policy).
        s.keys(&["/"]);
        s.keys(&["--", "--verdict DROPPED", "Enter"]);
        let screen = s.wait_until(LIVE, "only dropped flows, fewer than buffered", |sc| {
            sc.contains("filter: --verdict DROPPED")
                && shown_of_buffered(sc).is_some_and(|(shown, all)| shown > 0 && shown < all)
        });
        assert_eq!(rows_with(&screen, "FORWARDED"), 0, "{screen}");
        assert!(rows_with(&screen, "DROPPED") > 0, "{screen}");
        // Flows still arrive under the filter; the counter says so.
        let before = arrived(&screen).expect("the arrived counter");
        s.wait_until(LIVE, "more flows arriving under the filter", |sc| {
            arrived(sc).is_some_and(|n| n > before)
        });
        s.quit();
    }

    traffic.stop();
    let report = traffic.wait();
    stack.stop_all();
    topo.teardown().expect("deleting the network");
    assert!(
        report.client.responses() > 0,
        "the shop answered no request"
    );
}
