//! TLS and mTLS on the Observer port with real handshakes on loopback, certificates made by
//! rcgen in a temporary directory: who is let in, who is refused and with what message, who
//! gets the payload, certificate rotation without restart, and the bounds a client cannot
//! cross (streams per client, filter complexity, request size, a client that never reads).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flow_observer::{Observed, ObserverMetrics, ObserverService, Ring, Services, stage};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use webb_proto::Timestamp;
use webb_proto::flow::{Endpoint, Flow, FlowFilter};
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use webb_proto::webb_v1::{CapturedPayload, FlowExtras, FlowsRequestOptions};
use webb_security::certs::{Ca, LeafSpec, Validity};
use webb_security::{ClientTls, Counters, ServerTls, ServerTlsArgs};

#[derive(Debug, Default)]
struct NoMetrics;
impl ObserverMetrics for NoMetrics {
    fn lost(&self, _stage: &str, _count: u64) {}
}

/// Certificate material in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
}

impl Pki {
    fn new() -> Self {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::generate("Webb test CA", Validity::days(1)).unwrap(),
            other_ca: Ca::generate("Somebody else's CA", Validity::days(1)).unwrap(),
        };
        std::fs::write(pki.path("ca.crt"), pki.ca.cert_pem()).unwrap();
        std::fs::write(pki.path("other-ca.crt"), pki.other_ca.cert_pem()).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name.crt` and `name.key` signed by `ca`; returns their paths.
    fn write(&self, ca: &Ca, name: &str, spec: &LeafSpec) -> (PathBuf, PathBuf) {
        let pem = ca.issue(spec).unwrap();
        let (crt, key) = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&crt, pem.cert).unwrap();
        std::fs::write(&key, pem.key).unwrap();
        (crt, key)
    }

    fn server_cert(&self, ca: &Ca, name: &str) -> (PathBuf, PathBuf) {
        self.write(
            ca,
            name,
            &LeafSpec::node(
                "node-1",
                &["localhost".into()],
                &["127.0.0.1".parse().unwrap()],
                1,
            ),
        )
    }

    fn relay_cert(&self) -> (PathBuf, PathBuf) {
        self.write(&self.ca, "relay", &LeafSpec::relay(&[], &[], 1))
    }

    fn user_cert(&self) -> (PathBuf, PathBuf) {
        self.write(&self.ca, "alice", &LeafSpec::client("alice", 1))
    }

    fn client(&self, ca: &str, identity: Option<(PathBuf, PathBuf)>) -> ClientTls {
        ClientTls::from_files(&[self.path(ca)], identity, None).unwrap()
    }
}

/// A validity that ended yesterday.
fn expired() -> Validity {
    let now = SystemTime::now();
    Validity {
        not_before: now - Duration::from_secs(3 * 86_400),
        not_after: now - Duration::from_secs(86_400),
    }
}

fn flow(i: u64, summary_bytes: usize) -> Flow {
    Flow {
        time: Some(Timestamp::from_unix_nanos(1_790_000_000_000_000_000 + i)),
        uuid: format!("uuid-{i}"),
        node_name: "node-1".into(),
        verdict: 1,
        summary: "x".repeat(summary_bytes),
        source: Some(Endpoint {
            namespace: "demo".into(),
            pod_name: format!("pod-{i}"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn payload() -> FlowExtras {
    FlowExtras {
        payload: Some(CapturedPayload {
            data: b"GET /secret HTTP/1.1\r\nAuthorization: Bearer x\r\n".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Server {
    addr: String,
    state: Arc<Observed>,
    counters: Counters,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// An Observer on loopback with `flows` flows (with payload), TLS from `args`.
async fn serve(args: ServerTlsArgs, capacity: usize, flows: u64) -> Server {
    let counters = Counters::new();
    let tls = args.load(&counters).unwrap();
    let access = args.access(tls.as_deref(), &counters);
    let ring = Arc::new(Ring::new(capacity).unwrap());
    let state = Arc::new(Observed::new("node-1", ring, Arc::new(NoMetrics)));
    for i in 0..flows {
        state.push_flow(flow(i, 10), Some(&payload()));
    }
    state.flush();
    let services = Services {
        observer: ObserverService::new(state.clone()).with_access(access),
        peer: None,
        health: flow_observer::Health::new(true).await,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        services
            .serve_listener(listener, tls.as_deref(), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Server {
        addr,
        state,
        counters,
        _stop: tx,
    }
}

fn mtls(pki: &Pki, cert: &(PathBuf, PathBuf)) -> ServerTlsArgs {
    ServerTlsArgs {
        tls_cert_file: Some(cert.0.clone()),
        tls_key_file: Some(cert.1.clone()),
        tls_client_ca_files: vec![pki.path("ca.crt")],
        tls_payload_client_names: vec![webb_security::trust::DEFAULT_PAYLOAD_NAME.into()],
        max_streams_per_client: webb_security::StreamGate::DEFAULT_MAX_PER_CLIENT,
    }
}

fn request(include_payload: bool) -> GetFlowsRequest {
    let mut req = GetFlowsRequest {
        number: 100,
        ..Default::default()
    };
    if include_payload {
        webb_proto::options::set(
            &mut req,
            &FlowsRequestOptions {
                include_payload: true,
                include_extras: true,
            },
        );
    }
    req
}

/// Every response of a non-following request.
async fn get_flows(
    channel: Channel,
    req: GetFlowsRequest,
) -> Result<Vec<GetFlowsResponse>, tonic::Status> {
    let mut stream = ObserverClient::new(channel)
        .get_flows(req)
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a non-following stream ends by itself")
    {
        out.push(r?);
    }
    Ok(out)
}

/// Connects and asks for flows; the error text of whichever step failed.
async fn try_flows(tls: &ClientTls, addr: &str) -> Result<usize, String> {
    let channel = tls
        .connect(addr, Duration::from_secs(5))
        .await
        .map_err(|e| format!("{e:#}"))?;
    get_flows(channel, request(false))
        .await
        .map(|r| r.len())
        .map_err(|s| webb_security::client::error_chain(&s))
}

fn with_payload(rs: &[GetFlowsResponse]) -> usize {
    rs.iter()
        .filter(|r| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => webb_proto::extras::unpack(f)
                .and_then(Result::ok)
                .is_some_and(|x| x.payload.is_some()),
            _ => false,
        })
        .count()
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: never happened");
}

#[tokio::test]
async fn a_trusted_client_gets_flows_and_only_the_relay_certificate_gets_payload() {
    let pki = Pki::new();
    let server = serve(mtls(&pki, &pki.server_cert(&pki.ca, "server")), 63, 5).await;

    let relay = pki.client("ca.crt", Some(pki.relay_cert()));
    let channel = relay
        .connect(&server.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let rs = get_flows(channel, request(true)).await.unwrap();
    assert_eq!(
        with_payload(&rs),
        5,
        "the relay's certificate is trusted with payload"
    );

    let alice = pki.client("ca.crt", Some(pki.user_cert()));
    let channel = alice
        .connect(&server.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let rs = get_flows(channel.clone(), request(false)).await.unwrap();
    assert_eq!(rs.len(), 5, "a user's certificate gets flows");
    let refused = get_flows(channel, request(true)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("payload option")
            && refused.message().contains("relay.webb.local")
            && refused.message().contains("valid for none of them"),
        "{}",
        refused.message()
    );
    assert_eq!(
        server
            .counters
            .refused_count(webb_security::Refusal::PayloadUntrusted),
        1
    );
}

#[tokio::test]
async fn a_server_without_client_cas_gives_payload_to_no_tcp_client() {
    let pki = Pki::new();
    let cert = pki.server_cert(&pki.ca, "server");
    let args = ServerTlsArgs {
        tls_client_ca_files: vec![],
        ..mtls(&pki, &cert)
    };
    let server = serve(args, 63, 2).await;
    // The relay's certificate cannot even be presented: the server asks for none.
    let channel = pki
        .client("ca.crt", Some(pki.relay_cert()))
        .connect(&server.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let refused = get_flows(channel, request(true)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("presented no certificate"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn an_unknown_ca_is_refused_on_either_side_with_a_clear_error() {
    let pki = Pki::new();
    let server = serve(mtls(&pki, &pki.server_cert(&pki.ca, "server")), 63, 1).await;

    // The client does not know the server's CA.
    let stranger = pki.client("other-ca.crt", Some(pki.user_cert()));
    let e = try_flows(&stranger, &server.addr).await.unwrap_err();
    assert!(
        e.contains("UnknownIssuer") && e.contains("not signed by a CA of --tls-ca-cert-files"),
        "{e}"
    );

    // The server does not know the client's CA.
    let foreign = pki.write(&pki.other_ca, "mallory", &LeafSpec::client("mallory", 1));
    let client = pki.client("ca.crt", Some(foreign));
    let e = try_flows(&client, &server.addr).await.unwrap_err();
    assert!(e.contains("UnknownCA") || e.contains("unknown"), "{e}");
    eventually("the server counts an unknown_ca handshake", || {
        server.counters.handshake_count("unknown_ca") == 1
    })
    .await;

    // No client certificate at all.
    let anonymous = pki.client("ca.crt", None);
    let e = try_flows(&anonymous, &server.addr).await.unwrap_err();
    assert!(
        e.contains("CertificateRequired") || e.contains("certificate"),
        "{e}"
    );
    eventually(
        "the server counts a handshake without a certificate",
        || server.counters.handshake_count("no_client_certificate") == 1,
    )
    .await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused_on_either_side() {
    let pki = Pki::new();
    let mut spec = LeafSpec::node("node-1", &[], &["127.0.0.1".parse().unwrap()], 1);
    spec.validity = expired();
    let old = pki.write(&pki.ca, "expired-server", &spec);
    let server = serve(mtls(&pki, &old), 63, 1).await;
    let e = try_flows(&pki.client("ca.crt", Some(pki.user_cert())), &server.addr)
        .await
        .unwrap_err();
    assert!(e.contains("expired"), "{e}");

    let server = serve(mtls(&pki, &pki.server_cert(&pki.ca, "server")), 63, 1).await;
    let mut spec = LeafSpec::client("bob", 1);
    spec.validity = expired();
    let old_client = pki.write(&pki.ca, "expired-client", &spec);
    let e = try_flows(&pki.client("ca.crt", Some(old_client)), &server.addr)
        .await
        .unwrap_err();
    assert!(e.contains("Expired") || e.contains("expired"), "{e}");
    eventually("the server counts an expired client certificate", || {
        server.counters.handshake_count("expired") == 1
    })
    .await;
}

#[tokio::test]
async fn a_wrong_server_name_is_refused_and_the_right_one_accepted() {
    let pki = Pki::new();
    let server = serve(mtls(&pki, &pki.server_cert(&pki.ca, "server")), 63, 1).await;
    let identity = Some(pki.user_cert());
    let wrong = ClientTls::from_files(
        &[pki.path("ca.crt")],
        identity.clone(),
        Some("relay.example".into()),
    )
    .unwrap();
    let e = try_flows(&wrong, &server.addr).await.unwrap_err();
    assert!(
        e.contains("not valid for name") && e.contains("--tls-server-name"),
        "{e}"
    );
    let right = ClientTls::from_files(
        &[pki.path("ca.crt")],
        identity,
        Some("node.webb.local".into()),
    )
    .unwrap();
    assert_eq!(try_flows(&right, &server.addr).await, Ok(1));
}

#[tokio::test]
async fn a_plaintext_client_is_refused_and_counted() {
    let pki = Pki::new();
    let server = serve(mtls(&pki, &pki.server_cert(&pki.ca, "server")), 63, 1).await;
    let outcome = async {
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        get_flows(channel, request(false))
            .await
            .map_err(|s| s.to_string())
    }
    .await;
    assert!(outcome.is_err(), "a plaintext client got {outcome:?}");
    eventually("the server counts a plaintext handshake", || {
        server.counters.handshake_count("plaintext") == 1
    })
    .await;
}

/// Replaces a file the way rotation tools do: write aside, then rename over.
fn replace(path: &Path, from: &Path) {
    let aside = path.with_extension("new");
    std::fs::copy(from, &aside).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test]
async fn certificates_are_read_again_when_their_files_change_without_a_restart() {
    let pki = Pki::new();
    let (crt, key) = pki.server_cert(&pki.ca, "server");
    // The server trusts clients of both CAs, so that only the server's side rotates.
    let mut args = mtls(&pki, &(crt.clone(), key.clone()));
    let both = pki.path("both.crt");
    std::fs::write(
        &both,
        format!("{}{}", pki.ca.cert_pem(), pki.other_ca.cert_pem()),
    )
    .unwrap();
    args.tls_client_ca_files = vec![both];
    let server = serve(args, 63, 1).await;

    let old_trust = pki.client("ca.crt", Some(pki.user_cert()));
    let new_trust = pki.client("other-ca.crt", Some(pki.user_cert()));
    assert_eq!(try_flows(&old_trust, &server.addr).await, Ok(1));
    assert!(try_flows(&new_trust, &server.addr).await.is_err());

    // A new certificate from the other CA; file times must differ from the old ones.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (new_crt, new_key) = pki.server_cert(&pki.other_ca, "rotated");
    replace(&key, &new_key);
    replace(&crt, &new_crt);

    assert_eq!(try_flows(&new_trust, &server.addr).await, Ok(1));
    let e = try_flows(&old_trust, &server.addr).await.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(server.counters.reload_count(true) >= 1);

    // A broken file is refused, counted, and the certificate in force stays.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&crt, "not a certificate").unwrap();
    assert_eq!(try_flows(&new_trust, &server.addr).await, Ok(1));
    assert_eq!(server.counters.reload_count(false), 1);
}

#[tokio::test]
async fn one_client_address_holds_a_bounded_number_of_streams() {
    let pki = Pki::new();
    let mut args = mtls(&pki, &pki.server_cert(&pki.ca, "server"));
    args.max_streams_per_client = 2;
    let server = serve(args, 63, 1).await;
    let channel = pki
        .client("ca.crt", Some(pki.user_cert()))
        .connect(&server.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let follow = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut client = ObserverClient::new(channel);
    let first = client.get_flows(follow.clone()).await.unwrap();
    let _second = client.get_flows(follow.clone()).await.unwrap();
    let third = client.get_flows(follow.clone()).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(
        third.message().contains("127.0.0.1")
            && third.message().contains("--max-streams-per-client 2"),
        "{}",
        third.message()
    );
    assert_eq!(
        server
            .counters
            .refused_count(webb_security::Refusal::StreamsPerClient),
        1
    );
    // A closed stream frees its slot (the server notices the reset asynchronously).
    drop(first);
    let mut again = None;
    for _ in 0..100 {
        match client.get_flows(follow.clone()).await {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(
        again.is_some(),
        "the slot of a closed stream was never freed"
    );
}

#[tokio::test]
async fn too_complex_filters_and_oversized_requests_are_refused_and_counted() {
    let pki = Pki::new();
    let server = serve(mtls(&pki, &pki.server_cert(&pki.ca, "server")), 63, 1).await;
    let channel = pki
        .client("ca.crt", Some(pki.user_cert()))
        .connect(&server.addr, Duration::from_secs(5))
        .await
        .unwrap();

    let many = GetFlowsRequest {
        whitelist: vec![FlowFilter::default(); flow_filter::MAX_FILTERS_PER_LIST + 1],
        ..Default::default()
    };
    let e = get_flows(channel.clone(), many).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("too complex"), "{}", e.message());

    let huge_regex = GetFlowsRequest {
        whitelist: vec![FlowFilter {
            http_path: vec!["(a|b|c|d|e|f){1000}".repeat(10)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = get_flows(channel.clone(), huge_regex).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert_eq!(
        server
            .counters
            .refused_count(webb_security::Refusal::FilterComplexity),
        2
    );

    let oversized = GetFlowsRequest {
        whitelist: vec![FlowFilter {
            source_pod: vec!["p".repeat(flow_observer::observer::MAX_REQUEST_BYTES)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = get_flows(channel.clone(), oversized).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", e.message());
    assert_eq!(
        server
            .counters
            .refused_count(webb_security::Refusal::MessageSize),
        1
    );
    // The connection and the server are still fine.
    assert_eq!(get_flows(channel, request(false)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_client_that_never_reads_neither_starves_a_reading_one_nor_grows_memory() {
    const CAPACITY: usize = 4095;
    const FLOWS: u64 = 40_000;
    const BATCH: u64 = 1000;
    let pki = Pki::new();
    let server = serve(mtls(&pki, &pki.server_cert(&pki.ca, "server")), CAPACITY, 0).await;
    let connect = || async {
        pki.client("ca.crt", Some(pki.user_cert()))
            .connect(&server.addr, Duration::from_secs(5))
            .await
            .unwrap()
    };
    let follow = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    // Each on its own connection, as two users would be.
    let mut slow = ObserverClient::new(connect().await)
        .get_flows(follow.clone())
        .await
        .unwrap()
        .into_inner();
    let mut normal = ObserverClient::new(connect().await)
        .get_flows(follow)
        .await
        .unwrap()
        .into_inner();

    // ~1 KB flows: 40 MB in all, far beyond what the stream's buffer, HTTP/2 windows and the
    // sockets' buffers hold.
    let mut received = 0u64;
    for start in (0..FLOWS).step_by(BATCH as usize) {
        for i in start..start + BATCH {
            server.state.push_flow(flow(i, 1000), None);
        }
        server.state.flush();
        while received < start + BATCH {
            let r = tokio::time::timeout(Duration::from_secs(10), normal.next())
                .await
                .expect("the reading client is starved")
                .unwrap()
                .unwrap();
            match r.response_types {
                Some(ResponseTypes::Flow(f)) => {
                    assert_eq!(f.uuid, format!("uuid-{received}"));
                    received += 1;
                }
                other => panic!("the reading client lost flows: {other:?}"),
            }
        }
    }
    assert_eq!(received, FLOWS);

    // The client that never read gets what the server held for it, then the news of what it
    // missed: the server kept a bounded backlog instead of buffering 20,000 flows.
    let mut backlog = 0u64;
    // Everything sent after the client resumes counts too: the bound is on what waited.
    let lost = loop {
        let r = tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .expect("the slow client hears of its loss")
            .unwrap()
            .unwrap();
        match r.response_types {
            Some(ResponseTypes::Flow(_)) => backlog += 1,
            Some(ResponseTypes::LostEvents(ev)) => break ev,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(lost.num_events_lost > 0);
    assert!(
        backlog < FLOWS / 2,
        "{backlog} flows were held for a client that never read"
    );
    assert!(lost.num_events_lost > FLOWS / 2);
    assert_eq!(
        webb_proto::flow::LostEventSource::try_from(lost.source).unwrap(),
        webb_proto::flow::LostEventSource::HubbleRingBuffer,
        "{:?} (stage {})",
        lost,
        stage::HUBBLE_RING_READER
    );
    eprintln!(
        "slow client: {backlog} flows held, {} lost; reading client: {received} of {FLOWS}",
        lost.num_events_lost
    );
}

#[tokio::test]
async fn a_server_refuses_to_start_on_bad_files_and_names_them() {
    let pki = Pki::new();
    let cert = pki.server_cert(&pki.ca, "server");
    let bad = pki.path("garbage.crt");
    std::fs::write(&bad, "garbage").unwrap();
    let e = ServerTls::new(&bad, &cert.1, &[], Counters::new()).unwrap_err();
    assert!(
        e.to_string().contains("--tls-cert-file") && e.to_string().contains("garbage.crt"),
        "{e}"
    );
    let other = pki.user_cert();
    let e = ServerTls::new(&cert.0, &other.1, &[], Counters::new()).unwrap_err();
    assert!(e.to_string().contains("do not belong together"), "{e}");
}
