//! The relay over mTLS end to end, real handshakes on loopback: agents that trust the relay's
//! certificate with payload, an agent whose certificate the relay refuses (the others keep
//! flowing), clients on the relay's TLS Observer port, and its HTTP port over TLS with the
//! API's rate limit.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::Agent;
use relay::merge::MergeConfig;
use relay::peers::PoolConfig;
use relay::pipeline::PipelineConfig;
use relay::server::{RelayConfig, RelayServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use webb_proto::observer::GetFlowsRequest;
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;
use webb_proto::relay::NodeState;
use webb_security::certs::{Ca, LeafSpec, Validity};
use webb_security::http::{ApiGuard, ApiLimits, ApiListener, ClientAddr};
use webb_security::{ClientTls, Counters, ServerTls, ServerTlsArgs};

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, ca: &Ca, name: &str, spec: &LeafSpec) -> (PathBuf, PathBuf) {
        let pem = ca.issue(spec).unwrap();
        let paths = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&paths.0, pem.cert).unwrap();
        std::fs::write(&paths.1, pem.key).unwrap();
        paths
    }

    fn server_args(&self, cert: (PathBuf, PathBuf)) -> ServerTlsArgs {
        ServerTlsArgs {
            tls_cert_file: Some(cert.0),
            tls_key_file: Some(cert.1),
            tls_client_ca_files: vec![self.path("ca.crt")],
            tls_payload_client_names: vec![webb_security::trust::DEFAULT_PAYLOAD_NAME.into()],
            max_streams_per_client: webb_security::StreamGate::DEFAULT_MAX_PER_CLIENT,
        }
    }
}

fn pki() -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
        ca: Ca::generate("Webb test CA", Validity::days(1)).unwrap(),
    };
    std::fs::write(pki.path("ca.crt"), pki.ca.cert_pem()).unwrap();
    pki
}

fn tls_agent(pki: &Pki, name: &str, ca: &Ca) -> (Agent, Counters) {
    let cert = pki.write(ca, name, &LeafSpec::node(name, &[], &[], 1));
    let args = pki.server_args(cert);
    let counters = Counters::new();
    let tls: Arc<ServerTls> = args.load(&counters).unwrap().unwrap();
    let access = args.access(Some(tls.as_ref()), &counters);
    (Agent::start_tls(name, tls, access), counters)
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_follows_trusted_agents_over_mtls_and_keeps_serving_when_one_certificate_is_bad()
{
    let pki = pki();
    let stranger = Ca::generate("Somebody else's CA", Validity::days(1)).unwrap();
    let (good, good_counters) = tls_agent(&pki, "node-good", &pki.ca);
    let (bad, bad_counters) = tls_agent(&pki, "node-bad", &stranger);

    let relay_cert = pki.write(&pki.ca, "relay", &LeafSpec::relay(&[], &[], 1));
    let relay_counters = Counters::new();
    let relay_args = pki.server_args(relay_cert.clone());
    let relay_tls = relay_args.load(&relay_counters).unwrap();
    let relay = RelayServer::start(RelayConfig {
        pipeline: PipelineConfig {
            pool: PoolConfig {
                peers: vec![good.addr.to_string(), bad.addr.to_string()],
                backoff_min: Duration::from_millis(50),
                backoff_max: Duration::from_millis(200),
                // Every node certificate carries this name; the addresses are loopback.
                tls: Some(
                    ClientTls::from_files(
                        &[pki.path("ca.crt")],
                        Some(relay_cert),
                        Some("node.webb.local".into()),
                    )
                    .unwrap(),
                ),
                ..Default::default()
            },
            merge: MergeConfig {
                drain_timeout: Duration::from_millis(50),
                ..Default::default()
            },
            ..Default::default()
        },
        ring_capacity: 1023,
        node_name: "relay-under-test".into(),
        tls: relay_tls.clone(),
        access: relay_args.access(relay_tls.as_deref(), &relay_counters),
        ..Default::default()
    })
    .await
    .unwrap();
    let relay = Arc::new(relay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = listener.local_addr().unwrap().to_string();
    let serving = relay.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });

    // The good agent is followed (its GetFlows asks for payload: the agent trusted the relay's
    // certificate with it); the bad one is refused by the relay, and says so in its counters.
    // (A peer is known by its address until its first flow names it.)
    let good_addr = good.addr.to_string();
    eventually("the good agent is connected", || {
        let relay = relay.clone();
        let good_addr = good_addr.clone();
        async move {
            let nodes = relay.nodes();
            let up = nodes
                .iter()
                .any(|n| n.address == good_addr && n.state == NodeState::NodeConnected);
            if !up {
                eprintln!("{nodes:?}");
            }
            up
        }
    })
    .await;
    eventually("the bad agent's certificate is refused", || async {
        bad_counters.handshake_count("client_refused_certificate") > 0
    })
    .await;
    let bad_node = relay
        .nodes()
        .into_iter()
        .find(|n| n.address == bad.addr.to_string())
        .unwrap();
    assert_ne!(bad_node.state, NodeState::NodeConnected);
    let why = bad_node.last_error.unwrap_or_default();
    assert!(why.contains("UnknownIssuer"), "{why}");
    assert_eq!(
        good_counters.refused_count(webb_security::Refusal::PayloadUntrusted),
        0
    );

    // Flows of the good node reach a client of the relay's TLS port.
    good.push(0, 5);
    let alice = pki.write(&pki.ca, "alice", &LeafSpec::client("alice", 1));
    let client = ClientTls::from_files(
        &[pki.path("ca.crt")],
        Some(alice),
        Some("relay.webb.local".into()),
    )
    .unwrap();
    let channel = client
        .connect(&relay_addr, Duration::from_secs(5))
        .await
        .unwrap();
    let mut stream = ObserverClient::new(channel)
        .get_flows(GetFlowsRequest {
            follow: true,
            number: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = 0;
    while seen < 5 {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("flows of the good node reach the relay's clients")
            .unwrap()
            .unwrap();
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            assert_eq!(f.node_name, "node-good");
            seen += 1;
        }
    }
    drop(bad);
}

/// One HTTP/1.1 request over TLS; the status code and body.
async fn https(client: &ClientTls, addr: &str, request: &str) -> (u16, String) {
    let mut stream = client.connect_stream_alpn(addr, b"http/1.1").await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read to the end; a close without TLS close_notify still leaves what was read.
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

#[tokio::test]
async fn the_http_port_serves_tls_and_bounds_each_clients_rate_and_body() {
    let pki = pki();
    let cert = pki.write(
        &pki.ca,
        "relay",
        &LeafSpec::relay(&[], &["127.0.0.1".parse().unwrap()], 1),
    );
    let counters = Counters::new();
    let args = ServerTlsArgs {
        tls_client_ca_files: vec![],
        ..pki.server_args(cert)
    };
    let tls = args.load(&counters).unwrap().unwrap();
    let relay = RelayServer::start(RelayConfig {
        ring_capacity: 63,
        ..Default::default()
    })
    .await
    .unwrap();
    let guard = ApiGuard::new(
        ApiLimits {
            max_body_bytes: 1024,
            rate_per_sec: 1.0,
            burst: 3.0,
        },
        counters.clone(),
    );
    let router = webb_security::http::apply(relay::api::router(relay.api_state(None)), guard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let listener = ApiListener::new(listener, Some(tls.as_ref())).unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<ClientAddr>(),
        )
        .await
    });
    let client = ClientTls::from_files(&[pki.path("ca.crt")], None, None).unwrap();
    let get = "GET /api/v1/status HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n";

    let big = "x".repeat(2048);
    let post = format!(
        "POST /api/v1/sql HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    );
    let (code, body) = https(&client, &addr, &post).await;
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("over the limit of 1024 bytes"), "{body}");

    // The burst (3, one spent above) then a refusal with a JSON error; /metrics stays open.
    for _ in 0..2 {
        assert_eq!(https(&client, &addr, get).await.0, 200);
    }
    let (code, body) = https(&client, &addr, get).await;
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("requests per second"), "{body}");
    let metrics = "GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n";
    assert_eq!(https(&client, &addr, metrics).await.0, 200);
    assert_eq!(counters.refused_count(webb_security::Refusal::HttpRate), 1);
    assert_eq!(
        counters.refused_count(webb_security::Refusal::HttpBodySize),
        1
    );
    assert!(counters.handshake_count("ok") >= 5);
}
