//! The real binaries over mTLS: `webb certs` makes a CA and the relay's and a user's
//! certificates, `webb-relay` serves them, and `webb` with Hubble's TLS flags (`--server
//! tls://…`, `--tls-ca-cert-files`, `--tls-client-cert-file`, `--tls-client-key-file`,
//! `--tls-server-name`, `--tls-allow-insecure`) gets flows — while a plaintext client, an
//! unknown CA and a wrong server name are each refused with a message saying why.
//! (The real `hubble` CLI takes the same flags; it cannot be built here: no Go toolchain.)

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use webb_scenarios::{Process, binary, free_port, retry_until, text, webb_certs};

const FLOWS: usize = 50;
const READY: Duration = Duration::from_secs(60);

fn webb(args: &[&str], dir: &Path) -> Output {
    Command::new(binary("webb"))
        .args(args)
        .current_dir(dir)
        .env_remove("WEBB_SERVER")
        .output()
        .expect("running webb")
}

#[test]
fn webb_with_hubbles_tls_flags_reaches_a_relay_over_mtls_and_bad_clients_are_told_why() {
    let dir = tempfile::tempdir().expect("a directory");
    let d = dir.path();
    webb_certs(d, &["ca"]);
    webb_certs(d, &["relay", "--ip", "127.0.0.1"]);
    webb_certs(d, &["client", "alice"]);
    webb_certs(d, &["node", "node-1"]);
    // A second CA elsewhere: its certificates are strangers to the relay.
    let other = d.join("other");
    webb_certs(&other, &["ca", "--name", "Somebody else's CA"]);
    // Existing files are kept unless --force.
    let again = Command::new(binary("webb"))
        .args(["certs", "ca", "--dir"])
        .arg(d)
        .output()
        .unwrap();
    assert!(!again.status.success() && text(&again.stderr).contains("--force"));

    let port = free_port();
    let server = format!("tls://127.0.0.1:{port}");
    let store = d.join("store");
    let mut command = Command::new(binary("webb-relay"));
    command
        .current_dir(d)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--store-dir")
        .arg(&store)
        .args(["--synthetic-flows", &FLOWS.to_string()])
        .args([
            "--tls-cert-file",
            "relay.crt",
            "--tls-key-file",
            "relay.key",
        ])
        .args(["--tls-client-ca-files", "ca.crt"]);
    let mut relay = Process::spawn(&mut command, d.join("relay.log"));

    let alice = [
        "--tls-ca-cert-files",
        "ca.crt",
        "--tls-client-cert-file",
        "client-alice.crt",
        "--tls-client-key-file",
        "client-alice.key",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--server".to_string(), server.clone()]);
        v.extend(alice.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: &[String]| webb(&args.iter().map(String::as_str).collect::<Vec<_>>(), d);

    // Flows as Hubble's JSON over mTLS, once the relay is up (it has written its store).
    let observe = with(&["observe", "--last", "5", "-o", "json"]);
    let out = retry_until(READY, || run(&observe), |o| o.status.success());
    relay.assert_running();
    assert!(
        out.status.success(),
        "webb observe over mTLS: {}\nrelay log:\n{}",
        text(&out.stderr),
        relay.log_text()
    );
    assert_eq!(
        text(&out.stdout).lines().count(),
        5,
        "{}",
        text(&out.stdout)
    );
    // `webb status` reaches it too (a relay without agents answers NOT_SERVING).
    let out = run(&with(&["status"]));
    assert!(
        text(&out.stdout).contains("Healthcheck"),
        "{}",
        text(&out.stderr)
    );

    // --tls with a host:port means the same as tls://.
    let mut plain_scheme = vec!["observe".to_string(), "--tls".into(), "--server".into()];
    plain_scheme.push(format!("127.0.0.1:{port}"));
    plain_scheme.extend(alice.iter().map(|s| s.to_string()));
    assert!(run(&plain_scheme).status.success());

    // A plaintext client.
    let out = webb(&["observe", "--server", &format!("127.0.0.1:{port}")], d);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        !e.is_empty(),
        "a refused plaintext client is told something"
    );

    // The relay's certificate is not from the CA the client trusts.
    let mut stranger = with(&["observe"]);
    stranger[4] = "other/ca.crt".into();
    let out = run(&stranger);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("UnknownIssuer") && e.contains("--tls-ca-cert-files"),
        "{e}"
    );

    // A name the relay's certificate does not carry.
    let out = run(&with(&[
        "observe",
        "--tls-server-name",
        "elsewhere.example",
    ]));
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("not valid for name") && e.contains("--tls-server-name"),
        "{e}"
    );

    // --tls-allow-insecure skips the server's certificate check (the client's is still needed).
    let out = webb(
        &[
            "observe",
            "--server",
            &server,
            "--tls-allow-insecure",
            "--tls-client-cert-file",
            "client-alice.crt",
            "--tls-client-key-file",
            "client-alice.key",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // No client certificate: the relay wants one.
    let out = webb(
        &[
            "status",
            "--server",
            &server,
            "--tls-ca-cert-files",
            "ca.crt",
        ],
        d,
    );
    assert!(!out.status.success());
    relay.assert_running();
}
