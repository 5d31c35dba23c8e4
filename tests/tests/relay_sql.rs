//! `webb sql` against a real `webb-relay` with a real flow store: the query runs in the relay
//! (DataFusion over its Parquet), the CLI prints the answer, refusals reach the user as the
//! relay worded them, and the API token is required.

use std::process::{Command, Output};
use std::time::Duration;

use webb_scenarios::{Process, binary, free_port, retry_until, text};

const FLOWS: usize = 2000;
const TOKEN: &str = "s3cret-token";
const READY: Duration = Duration::from_secs(60);

struct Relay {
    process: Process,
    api: String,
    _store: tempfile::TempDir,
}

/// A relay with `FLOWS` synthetic flows in its store, its API behind `TOKEN`.
fn relay() -> Relay {
    let store = tempfile::tempdir().expect("a store directory");
    let api = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(binary("webb-relay"));
    command
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-listen", &api])
        .arg("--store-dir")
        .arg(store.path())
        .args(["--synthetic-flows", &FLOWS.to_string()])
        .args(["--api-token", TOKEN]);
    let log = store.path().join("relay.log");
    Relay {
        process: Process::spawn(&mut command, log),
        api,
        _store: store,
    }
}

fn webb_sql(relay: &Relay, args: &[&str]) -> Output {
    Command::new(binary("webb"))
        .args(["sql", "--api", &relay.api])
        .args(args)
        .env_remove("WEBB_API_TOKEN")
        .output()
        .expect("running webb sql")
}

/// Waits until the relay answers (it writes its synthetic flows first).
fn ready(relay: &mut Relay) {
    let out = retry_until(
        READY,
        || webb_sql(relay, &["--api-token", TOKEN, "SELECT 1 AS one"]),
        |o| o.status.success(),
    );
    relay.process.assert_running();
    assert!(
        out.status.success(),
        "the relay did not answer within {READY:?}: {}\nrelay log:\n{}",
        text(&out.stderr),
        relay.process.log_text()
    );
}

#[test]
fn webb_sql_prints_the_relays_answer_as_a_table_or_as_its_json() {
    let mut relay = relay();
    ready(&mut relay);

    let out = webb_sql(
        &relay,
        &["--api-token", TOKEN, "SELECT count(*) AS n FROM flows"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("N\n{FLOWS}\n"));

    let out = webb_sql(
        &relay,
        &[
            "--api-token",
            TOKEN,
            "-o",
            "json",
            "SELECT count(*) AS n FROM flows",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON answer");
    assert_eq!(answer["columns"][0]["name"], "n");
    assert_eq!(answer["rows"][0][0], FLOWS);
    assert_eq!(answer["truncated"], false);
}

#[test]
fn a_query_from_standard_input_runs_the_same() {
    let mut relay = relay();
    ready(&mut relay);
    let mut child = Command::new(binary("webb"))
        .args(["sql", "--api", &relay.api, "--api-token", TOKEN, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running webb sql");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT count(*) AS n FROM flows WHERE verdict IS NOT NULL")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("N\n{FLOWS}\n"));
}

#[test]
fn a_query_that_would_change_the_store_is_refused_with_the_relays_reason() {
    let mut relay = relay();
    ready(&mut relay);
    let out = webb_sql(&relay, &["--api-token", TOKEN, "DROP TABLE flows"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.starts_with("Error: the relay refused the query (400 Bad Request): "),
        "{err}"
    );
    // Nothing was dropped.
    let out = webb_sql(
        &relay,
        &["--api-token", TOKEN, "SELECT count(*) AS n FROM flows"],
    );
    assert_eq!(text(&out.stdout), format!("N\n{FLOWS}\n"));
}

#[test]
fn without_the_token_the_relay_refuses_and_webb_says_so() {
    let mut relay = relay();
    ready(&mut relay);
    let out = webb_sql(&relay, &["SELECT 1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("refused the query (401 Unauthorized)") && err.contains("bearer token"),
        "{err}"
    );
}

#[test]
fn no_relay_listening_is_a_clear_connection_error() {
    let out = Command::new(binary("webb"))
        .args([
            "sql",
            "--api",
            &format!("127.0.0.1:{}", free_port()),
            "SELECT 1",
        ])
        .output()
        .expect("running webb sql");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot connect to the relay's HTTP API at 127.0.0.1:"),
        "{err}"
    );
}
