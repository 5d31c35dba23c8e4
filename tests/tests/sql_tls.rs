//! `webb sql` over TLS: a real `webb-relay` whose HTTP port serves mTLS with the certificates
//! `webb certs` made, and `webb sql` with the TLS flags `webb observe` takes (`--tls`,
//! `--tls-ca-cert-files`, `--tls-client-cert-file`, `--tls-client-key-file`,
//! `--tls-server-name`, `--tls-allow-insecure`) and `https://`/`tls://` in `--api`. A client
//! without a certificate, a plaintext client, an unknown CA and a wrong server name are each
//! refused with a message that says what to change.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use webb_scenarios::{Process, binary, free_port, retry_until, text, webb_certs};

const FLOWS: usize = 300;
const READY: Duration = Duration::from_secs(60);
const COUNT: &str = "SELECT count(*) AS n FROM flows";

/// `webb sql` in `dir` (where the certificates are), with `args` as given.
fn webb_sql(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary("webb"))
        .arg("sql")
        .args(args)
        .current_dir(dir)
        .env_remove("WEBB_API")
        .env_remove("WEBB_API_TOKEN")
        .output()
        .expect("running webb sql")
}

const ALICE: [&str; 6] = [
    "--tls-ca-cert-files",
    "ca.crt",
    "--tls-client-cert-file",
    "client-alice.crt",
    "--tls-client-key-file",
    "client-alice.key",
];

fn with<'a>(first: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    first.iter().chain(rest).copied().collect()
}

#[test]
fn webb_sql_queries_a_relay_over_mtls_with_observes_tls_flags_and_bad_clients_are_told_why() {
    let dir = tempfile::tempdir().expect("a directory");
    let d = dir.path();
    webb_certs(d, &["ca"]);
    webb_certs(d, &["relay", "--ip", "127.0.0.1"]);
    webb_certs(d, &["client", "alice"]);
    let other = d.join("other");
    webb_certs(&other, &["ca", "--name", "Somebody else's CA"]);

    let http = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(binary("webb-relay"));
    command
        .current_dir(d)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-listen", &http])
        .arg("--store-dir")
        .arg(d.join("store"))
        .args(["--synthetic-flows", &FLOWS.to_string()])
        .args([
            "--tls-cert-file",
            "relay.crt",
            "--tls-key-file",
            "relay.key",
        ])
        .args(["--tls-client-ca-files", "ca.crt"]);
    let mut relay = Process::spawn(&mut command, d.join("relay.log"));

    // https:// asks for TLS; Alice's certificate satisfies the relay's mTLS.
    let https = format!("https://{http}");
    let trusted = with(&["--api", &https, COUNT], &ALICE);
    let out = retry_until(READY, || webb_sql(d, &trusted), |o| o.status.success());
    relay.assert_running();
    assert!(
        out.status.success(),
        "webb sql over mTLS: {}\nrelay log:\n{}",
        text(&out.stderr),
        relay.log_text()
    );
    assert_eq!(text(&out.stdout), format!("N\n{FLOWS}\n"));

    // tls:// means the same, and so does --tls with a bare host:port; -o json is the API's JSON.
    let tls_scheme = format!("tls://{http}");
    let out = webb_sql(
        d,
        &with(&["--api", &tls_scheme, "-o", "json", COUNT], &ALICE),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the API's JSON");
    assert_eq!(json["rows"][0][0], serde_json::json!(FLOWS));
    let out = webb_sql(d, &with(&["--api", &http, "--tls", COUNT], &ALICE));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("N\n{FLOWS}\n"));

    // The server name is checked: the relay's certificate names 127.0.0.1 and relay.webb.local.
    let out = webb_sql(
        d,
        &with(
            &[
                "--api",
                &https,
                "--tls-server-name",
                "relay.webb.local",
                COUNT,
            ],
            &ALICE,
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = webb_sql(
        d,
        &with(
            &[
                "--api",
                &https,
                "--tls-server-name",
                "elsewhere.example",
                COUNT,
            ],
            &ALICE,
        ),
    );
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("not valid for name") && e.contains("--tls-server-name"),
        "{e}"
    );

    // No client certificate: the relay wants one, and the user is told which flags give it.
    let out = webb_sql(
        d,
        &["--api", &https, "--tls-ca-cert-files", "ca.crt", COUNT],
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let e = text(&out.stderr);
    assert!(
        e.contains("CertificateRequired")
            && e.contains("--tls-client-cert-file")
            && e.contains("--tls-client-key-file"),
        "{e}"
    );
    assert!(out.stdout.is_empty());

    // The relay's certificate is not from the CA this client trusts.
    let out = webb_sql(
        d,
        &[
            "--api",
            &https,
            "--tls-ca-cert-files",
            "other/ca.crt",
            "--tls-client-cert-file",
            "client-alice.crt",
            "--tls-client-key-file",
            "client-alice.key",
            COUNT,
        ],
    );
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("UnknownIssuer") && e.contains("--tls-ca-cert-files"),
        "{e}"
    );

    // --tls-allow-insecure skips the check of the relay's certificate, not the relay's check
    // of the client's.
    let out = webb_sql(
        d,
        &[
            "--api",
            &https,
            "--tls-allow-insecure",
            "--tls-client-cert-file",
            "client-alice.crt",
            "--tls-client-key-file",
            "client-alice.key",
            COUNT,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A plaintext client is cut off, and told that the port may want TLS.
    let out = webb_sql(d, &["--api", &http, COUNT]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("https://") && e.contains("--tls"), "{e}");

    // TLS to a port that does not speak it (the relay's Observer port speaks TLS too, so a
    // plain listener of our own): the user is asked whether the server speaks TLS.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("a plain listener");
    let plain_addr = plain.local_addr().expect("its address");
    let answer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = plain.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let plain_api = format!("https://{plain_addr}");
    let out = webb_sql(d, &with(&["--api", &plain_api, COUNT], &ALICE));
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("speaking TLS"), "{e}");
    answer.join().expect("the plain listener's thread");
    relay.assert_running();
}
