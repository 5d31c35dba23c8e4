//! `webb observe --field-mask` against a real `webb-relay`: the server sends only the listed
//! fields of each flow (from its store here), and refuses a path `flow.Flow` does not have.

use std::process::{Command, Output};
use std::time::Duration;

use webb_proto::observer::GetFlowsResponse;
use webb_scenarios::{Process, binary, free_port, retry_until};

const FLOWS: usize = 50;

fn observe(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webb"))
        .args(["observe", "--server", server, "--since", "1h", "-o", "json"])
        .args(args)
        .env_remove("WEBB_SERVER")
        .output()
        .expect("running webb observe")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_relay_sends_only_the_masked_fields_and_refuses_an_unknown_path() {
    let dir = tempfile::tempdir().expect("a directory");
    let server = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(binary("webb-relay"));
    command
        .args(["--listen", &server])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--store-dir")
        .arg(dir.path().join("store"))
        .args(["--synthetic-flows", &FLOWS.to_string()]);
    let mut relay = Process::spawn(&mut command, dir.path().join("relay.log"));

    let full = retry_until(
        Duration::from_secs(60),
        || observe(&server, &[]),
        |o| o.status.success() && text(&o.stdout).lines().count() == FLOWS,
    );
    relay.assert_running();
    assert!(
        full.status.success(),
        "{}\n{}",
        text(&full.stderr),
        relay.log_text()
    );
    let mask = ["time", "verdict", "source.pod_name", "l4"];
    let masked = observe(&server, &["--field-mask", &mask.join(",")]);
    assert!(masked.status.success(), "{}", text(&masked.stderr));

    let parse = |line: &str| -> GetFlowsResponse {
        tui::json::response_from_line(line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let full: Vec<GetFlowsResponse> = text(&full.stdout).lines().map(parse).collect();
    let masked: Vec<GetFlowsResponse> = text(&masked.stdout).lines().map(parse).collect();
    assert_eq!(masked.len(), FLOWS);
    let flow = |r: &GetFlowsResponse| match &r.response_types {
        Some(webb_proto::observer::get_flows_response::ResponseTypes::Flow(f)) => f.clone(),
        other => panic!("not a flow: {other:?}"),
    };
    let mut pods = 0;
    for (f, m) in full.iter().map(flow).zip(masked.iter().map(flow)) {
        // The listed fields as they are; nothing else.
        let expected = webb_proto::flow::Flow {
            time: f.time,
            verdict: f.verdict,
            source: f.source.as_ref().map(|s| webb_proto::flow::Endpoint {
                pod_name: s.pod_name.clone(),
                ..Default::default()
            }),
            l4: f.l4.clone(),
            ..Default::default()
        };
        assert_eq!(m, expected);
        pods += usize::from(!f.source.as_ref().is_none_or(|s| s.pod_name.is_empty()));
    }
    assert!(pods > 0, "the stored flows name source pods");

    let out = observe(&server, &["--field-mask", "time,no_such_field"]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("no_such_field") && e.contains("InvalidArgument"),
        "{e}"
    );
    relay.assert_running();
}
