//! The `webb` binary: `--print-raw-filters` against Hubble's output, `--input-file` with
//! selectors and filters, and clear errors for bad input.

use std::process::{Command, Output};

use serde_json::Value;

const GOLDENS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hubble-goldens");

fn webb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webb"))
        .args(args)
        .env_remove("WEBB_SERVER")
        .env_remove("NO_COLOR")
        .output()
        .expect("webb runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(format!("{GOLDENS}/{name}")).unwrap()
}

fn input() -> String {
    format!("{GOLDENS}/input.jsonl")
}

/// `--print-raw-filters` output as (section, JSON documents) pairs.
fn raw_sections(text: &str) -> Vec<(String, Vec<Value>)> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for line in text.lines() {
        if let Some(item) = line.strip_prefix("    - '") {
            let json = item
                .strip_suffix('\'')
                .expect("single-quoted item")
                .replace("''", "'");
            out.last_mut()
                .expect("item under a section")
                .1
                .push(serde_json::from_str(&json).expect("item is JSON"));
        } else {
            let name = line
                .strip_suffix(':')
                .unwrap_or_else(|| panic!("section line: {line:?}"));
            out.push((name.to_string(), Vec::new()));
        }
    }
    out
}

#[test]
fn print_raw_filters_matches_hubble_for_every_golden_command() {
    let golden = golden("raw-filters.txt");
    let mut cases: Vec<(String, String)> = Vec::new();
    for line in golden.lines() {
        if let Some(cmd) = line.strip_prefix("$ hubble observe ") {
            cases.push((cmd.to_string(), String::new()));
        } else {
            let case = cases.last_mut().unwrap();
            case.1.push_str(line);
            case.1.push('\n');
        }
    }
    assert_eq!(cases.len(), 10);
    for (cmd, want) in cases {
        let args = shlex::split(&cmd).unwrap();
        let mut full = vec!["observe"];
        full.extend(args.iter().map(String::as_str));
        let out = webb(&full);
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
        let got = stdout(&out);
        assert_eq!(raw_sections(&got), raw_sections(&want), "{cmd}\n{got}");
        // Byte for byte too: same YAML quoting and protojson key order as Hubble.
        assert_eq!(got, want, "{cmd}");
    }
}

#[test]
fn print_raw_filters_without_filters_prints_an_empty_document() {
    let out = webb(&["observe", "--print-raw-filters"]);
    assert_eq!(stdout(&out), "{}\n");
}

#[test]
fn input_file_prints_the_golden_formats() {
    for (format, file) in [
        ("compact", "compact.txt"),
        ("dict", "dict.txt"),
        ("table", "table.txt"),
    ] {
        let out = webb(&[
            "observe",
            "--input-file",
            &input(),
            "--all",
            "-o",
            format,
            "--color",
            "never",
        ]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        assert_eq!(stdout(&out), golden(file), "{format}");
    }
}

#[test]
fn input_file_json_output_is_one_get_flows_response_per_line() {
    let out = webb(&["observe", "--input-file", &input(), "--all", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let want = golden("json.jsonl");
    assert_eq!(text.lines().count(), want.lines().count());
    for (got, want) in text.lines().zip(want.lines()) {
        let g: Value = serde_json::from_str(got).unwrap();
        let w: Value = serde_json::from_str(want).unwrap();
        assert_eq!(g, w);
        tui::json::response_from_line(got).expect("reads back with the proto crate");
    }
}

#[test]
fn input_file_reads_stdin_with_dash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_webb"))
        .args(["observe", "--input-file", "-", "--color", "never"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(golden("input.jsonl").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // Reading a file has no default --last: everything is printed.
    assert_eq!(stdout(&out), golden("compact.txt"));
}

fn compact_lines(args: &[&str]) -> Vec<String> {
    let mut full = vec!["observe", "--input-file"];
    let path = input();
    full.push(&path);
    full.extend_from_slice(args);
    full.extend_from_slice(&["--color", "never"]);
    let out = webb(&full);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out).lines().map(String::from).collect()
}

fn golden_lines(indices: &[usize]) -> Vec<String> {
    let all: Vec<String> = golden("compact.txt").lines().map(String::from).collect();
    indices.iter().map(|&i| all[i].clone()).collect()
}

#[test]
fn input_file_applies_filters_locally() {
    assert_eq!(compact_lines(&["--http-status", "5+"]), golden_lines(&[2]));
    assert_eq!(
        compact_lines(&["--trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"]),
        golden_lines(&[1, 2])
    );
    assert_eq!(compact_lines(&["-6"]), golden_lines(&[4]));
    assert_eq!(
        compact_lines(&["--namespace", "store", "--verdict", "DROPPED"]),
        golden_lines(&[3])
    );
    assert_eq!(
        compact_lines(&["--from-label", "app=loadgen", "--type", "trace:to-stack"]),
        golden_lines(&[0])
    );
    // A denylist alone lets events without a flow through, as Hubble does.
    assert_eq!(
        compact_lines(&["--not", "--verdict", "DROPPED"]),
        golden_lines(&[0, 1, 2, 4, 5])
    );
}

#[test]
fn input_file_selects_first_last_and_time_windows() {
    assert_eq!(compact_lines(&["--first", "2"]), golden_lines(&[0, 1]));
    assert_eq!(compact_lines(&["--last", "2"]), golden_lines(&[4, 5]));
    assert_eq!(
        compact_lines(&[
            "--since",
            "2026-11-27T23:00:00.2Z",
            "--until",
            "2026-11-27T23:00:01Z"
        ]),
        golden_lines(&[1, 2, 3])
    );
    assert_eq!(
        compact_lines(&["--last", "1", "--protocol", "tcp"]),
        golden_lines(&[3])
    );
}

#[test]
fn colour_is_off_when_not_on_a_terminal_unless_always() {
    let path = input();
    let auto = webb(&["observe", "--input-file", &path]);
    assert!(!stdout(&auto).contains('\u{1b}'));
    let always = webb(&["observe", "--input-file", &path, "--color", "always"]);
    assert!(stdout(&always).contains("\u{1b}[32mFORWARDED"));
}

#[test]
fn unreadable_lines_are_reported_and_skipped() {
    let dir = std::env::temp_dir().join(format!("webb-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mixed.jsonl");
    let first = golden("input.jsonl").lines().next().unwrap().to_string();
    std::fs::write(&file, format!("not json\n{first}\n{{\"flow\": 7}}\n")).unwrap();
    let out = webb(&[
        "observe",
        "--input-file",
        file.to_str().unwrap(),
        "--color",
        "never",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), golden_lines(&[0]).join("\n") + "\n");
    let err = stderr(&out);
    assert!(err.contains("line 1") && err.contains("line 3"), "{err}");
}

fn fails_with(args: &[&str], needle: &str) {
    let out = webb(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = stderr(&out);
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn bad_input_gives_clear_errors_and_a_failure_exit() {
    fails_with(
        &["observe", "--print-raw-filters", "--not"],
        "trailing --not",
    );
    fails_with(
        &["observe", "--print-raw-filters", "--verdict", "NOPE"],
        "invalid --verdict value \"NOPE\"",
    );
    fails_with(
        &["observe", "--print-raw-filters", "--from-ip", "300.1.1.1"],
        "source_ip",
    );
    fails_with(
        &["observe", "--print-raw-filters", "--http-path", "(unclosed"],
        "http_path",
    );
    fails_with(
        &[
            "observe",
            "--first",
            "1",
            "--last",
            "1",
            "--input-file",
            "/dev/null",
        ],
        "cannot set both --first and --last",
    );
    fails_with(
        &["observe", "--since", "soonish", "--input-file", "/dev/null"],
        "\"soonish\"",
    );
    fails_with(
        &["observe", "-o", "yaml", "--input-file", "/dev/null"],
        "invalid output format: yaml",
    );
    fails_with(
        &["observe", "-f", "-o", "table"],
        "not compatible with follow",
    );
    fails_with(
        &["observe", "--input-file", "/nonexistent/flows.json"],
        "/nonexistent/flows.json",
    );
    fails_with(&["observe", "--allowlist", "{not json"], "--allowlist");
    fails_with(
        &["observe", "--server", "tls://relay:4245"],
        "--tls-ca-cert-files",
    );
    // https:// asks for TLS, which needs the relay's CA (as tls:// does for observe).
    fails_with(
        &["sql", "--api", "https://relay:9965", "SELECT 1"],
        "--tls-ca-cert-files",
    );
    fails_with(
        &["sql", "--api", "ftp://relay:9965", "SELECT 1"],
        "unsupported scheme in --api",
    );
    fails_with(
        &["sql", "--api", "127.0.0.1:9", "SELECT 1"],
        "cannot connect to the relay's HTTP API at 127.0.0.1:9",
    );
    fails_with(&["sql", "-o", "yaml", "SELECT 1"], "yaml");
}

#[test]
fn an_unreachable_server_is_named_in_the_error() {
    // Port 9 on loopback: nothing listens there in the test environment.
    fails_with(
        &["observe", "--server", "127.0.0.1:9", "--timeout", "2s"],
        "127.0.0.1:9",
    );
    fails_with(
        &["status", "--server", "127.0.0.1:9", "--timeout", "2s"],
        "127.0.0.1:9",
    );
}
