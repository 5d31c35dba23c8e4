//! Network spans over OTLP/gRPC, judged by a real OTLP receiver: the relay's `SpanExporter`
//! sends to an in-process `TraceService` (opentelemetry-proto's generated server, over tonic on
//! loopback), which decodes the wire protobuf; every span is compared with the HTTP exchange
//! that was made. The flows are what the relay's pipeline hands its sink: packet flows with
//! captured payload, seen at the client's and the server's interface, through the real L7
//! stage, in time order.
//!
//! Backpressure: with the receiver down or never answering, `observe` keeps going, the bounded
//! queue loses its oldest spans, and every span ends up counted as exported, dropped or
//! rejected.
//!
//! The runtime is single-threaded, so the export task moves only while a test awaits: the
//! counts asserted between two awaits are exact, not timing-dependent.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use relay::l7::{HttpConfig, L7Stage};
use relay::otlp::encode::{SCHEMA_URL, SCOPE_NAME};
use relay::otlp::{ExchangeConfig, ExchangeStats, OtlpConfig, OtlpStats, SpanExporter};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};
use webb_proto::Timestamp;
use webb_proto::flow::{
    Endpoint, Flow, FlowType, Ip, IpVersion, Layer4, NetworkInterface, Tcp, TcpFlags,
    TrafficDirection, Verdict, Workload, layer4,
};
use webb_proto::webb_v1::{CapturedPayload, FlowExtras};

const T0: u64 = 1_800_000_000_000_000_000;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
/// OTLP `Span.flags` of a span under a remote parent: W3C "sampled" (0x01), plus "whether the
/// parent is remote is known" (0x100) and "it is" (0x200).
const FLAGS_REMOTE_PARENT: u32 = 0x301;
/// A root span: sampled, and its (absent) parent is known not to be remote.
const FLAGS_ROOT: u32 = 0x101;
/// Longer than any test: a batch interval or retry wait this long never fires, so the export
/// task only moves when a test makes it.
const NEVER: Duration = Duration::from_secs(3600);
/// Bound on every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(20);

/// A pod of the traffic: the client and the server of every exchange.
struct Pod {
    ip: &'static str,
    namespace: &'static str,
    name: &'static str,
    workload: &'static str,
    /// Hubble's node name (`cluster/node`).
    node: &'static str,
    /// The pod's interface on its node.
    interface: (u32, &'static str),
}

const FRONTEND: Pod = Pod {
    ip: "198.18.1.10",
    namespace: "web",
    name: "frontend-7d4f9-x2x9k",
    workload: "frontend",
    node: "kind/vn1",
    interface: (5, "lxc-frontend"),
};

const API: Pod = Pod {
    ip: "198.18.2.20",
    namespace: "shop",
    name: "api-5c6b7-q8w7e",
    workload: "api",
    node: "kind/vn2",
    interface: (7, "lxc-api"),
};

const API_PORT: u16 = 8080;

/// Where a packet is observed: the client's interface (the connection is EGRESS there) or the
/// server's (INGRESS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum At {
    Client,
    Server,
}

fn endpoint(pod: &Pod) -> Endpoint {
    Endpoint {
        identity: 30000,
        namespace: pod.namespace.into(),
        pod_name: pod.name.into(),
        labels: vec![format!("k8s:app={}", pod.workload)],
        workloads: vec![Workload {
            name: pod.workload.into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    }
}

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

fn get(path: &str, traceparent: Option<&str>) -> String {
    let mut head =
        format!("GET {path} HTTP/1.1\r\nHost: api.shop:8080\r\nUser-Agent: curl/8.5.0\r\n");
    if let Some(tp) = traceparent {
        head.push_str(&format!("traceparent: {tp}\r\n"));
    }
    head.push_str("\r\n");
    head
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// The relay's merged flow stream as the exporter sees it: packets from the frontend's
/// connections to the api, through the real L7 stage, every resulting flow observed in order.
struct Traffic {
    l7: L7Stage,
    exporter: SpanExporter,
    /// Next TCP sequence number per observation point, connection and direction.
    seq: HashMap<(At, u16, bool), u32>,
}

impl Traffic {
    fn new(exporter: SpanExporter) -> Self {
        Traffic {
            l7: L7Stage::new(HttpConfig::default()),
            exporter,
            seq: HashMap::new(),
        }
    }

    /// A packet of connection `client_port` carrying `bytes`, observed `at` one end at time
    /// `t`. Returns the L7 flow it completed, if any.
    fn packet(
        &mut self,
        at: At,
        client_port: u16,
        from_server: bool,
        t: u64,
        bytes: &[u8],
    ) -> Option<Flow> {
        let (src, dst) = if from_server {
            ((&API, API_PORT), (&FRONTEND, client_port))
        } else {
            ((&FRONTEND, client_port), (&API, API_PORT))
        };
        let (observer, direction) = match at {
            At::Client => (&FRONTEND, TrafficDirection::Egress),
            At::Server => (&API, TrafficDirection::Ingress),
        };
        let seq = self
            .seq
            .entry((at, client_port, from_server))
            .or_insert(if from_server { 500_000 } else { 1_000 });
        let mut flow = Flow {
            time: Some(Timestamp::from_unix_nanos(t)),
            uuid: format!("{}-{t}", observer.node),
            verdict: Verdict::Forwarded as i32,
            ip: Some(Ip {
                source: src.0.ip.into(),
                destination: dst.0.ip.into(),
                ip_version: IpVersion::IPv4 as i32,
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: u32::from(src.1),
                    destination_port: u32::from(dst.1),
                    flags: Some(TcpFlags {
                        psh: true,
                        ack: true,
                        ..Default::default()
                    }),
                })),
            }),
            source: Some(endpoint(src.0)),
            destination: Some(endpoint(dst.0)),
            r#type: FlowType::L3L4 as i32,
            node_name: observer.node.into(),
            interface: Some(NetworkInterface {
                index: observer.interface.0,
                name: observer.interface.1.into(),
            }),
            traffic_direction: direction as i32,
            ..Default::default()
        };
        webb_proto::extras::attach(
            &mut flow,
            Some(&FlowExtras {
                payload: Some(CapturedPayload {
                    data: bytes.to_vec(),
                    seq: *seq,
                    original_length: bytes.len() as u32 + 66,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
        *seq = seq.wrapping_add(bytes.len() as u32);
        let mut flows = Vec::new();
        self.l7.process(flow, &mut flows);
        for f in &flows {
            self.exporter.observe(f);
        }
        let mut l7: Vec<Flow> = flows
            .into_iter()
            .filter(|f| f.r#type == FlowType::L7 as i32)
            .collect();
        assert!(l7.len() <= 1, "one HTTP message per packet here: {l7:?}");
        l7.pop()
    }

    /// One exchange on connection `client_port`, seen at the server only: request at `t`,
    /// response 1 ms later.
    fn served(&mut self, client_port: u16, t: u64, path: &str, traceparent: Option<&str>) {
        let request = get(path, traceparent);
        self.packet(At::Server, client_port, false, t, request.as_bytes())
            .expect("a request flow");
        self.packet(At::Server, client_port, true, t + MS, OK)
            .expect("a response flow");
    }
}

fn time_ns(flow: &Flow) -> u64 {
    let ns = flow.time.expect("flows have a time").unix_nanos();
    u64::try_from(ns).expect("a time after 1970")
}

// ---------------------------------------------------------------------------------------------
// The OTLP receiver.

/// How the receiver answers an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Success, as Tempo does.
    Accept,
    /// Never: a receiver that takes the request and hangs (a stuck Tempo).
    Never,
}

/// Every export request the receiver decoded, and how many spans they held.
struct Collector {
    answer: Answer,
    requests: Mutex<Vec<ExportTraceServiceRequest>>,
    spans: watch::Sender<usize>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        let n: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.requests.lock().unwrap().push(request);
        self.spans.send_modify(|total| *total += n);
        if self.answer == Answer::Never {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP/gRPC receiver on loopback, served until dropped.
struct Receiver {
    addr: SocketAddr,
    collector: Arc<Collector>,
    server: JoinHandle<()>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::serve(listener, answer)
    }

    /// On `addr`, where an earlier receiver was down.
    async fn start_on(addr: SocketAddr, answer: Answer) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        Receiver::serve(listener, answer)
    }

    fn serve(listener: TcpListener, answer: Answer) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let collector = Arc::new(Collector {
            answer,
            requests: Mutex::new(Vec::new()),
            spans: watch::channel(0).0,
        });
        let service = TraceServiceServer::from_arc(collector.clone());
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Receiver {
            addr,
            collector,
            server,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_for_spans(&self, n: usize) {
        let mut spans = self.collector.spans.subscribe();
        let got = tokio::time::timeout(PATIENCE, spans.wait_for(|got| *got >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(got, "the receiver got {} spans, not {n}", *spans.borrow());
    }

    /// Every span received so far, with its resource and scope.
    fn spans(&self) -> Vec<Received> {
        let requests = self.collector.requests.lock().unwrap();
        let mut out = Vec::new();
        for rs in requests.iter().flat_map(|r| &r.resource_spans) {
            let resource = attributes(&rs.resource.as_ref().expect("a resource").attributes);
            for ss in &rs.scope_spans {
                let scope = ss.scope.as_ref().expect("a scope");
                for span in &ss.spans {
                    out.push(Received {
                        resource: resource.clone(),
                        resource_schema: rs.schema_url.clone(),
                        scope: (scope.name.clone(), scope.version.clone()),
                        scope_schema: ss.schema_url.clone(),
                        span: span.clone(),
                    });
                }
            }
        }
        out
    }

    fn paths(&self) -> Vec<String> {
        self.spans()
            .iter()
            .map(|r| match r.attribute("url.path") {
                Some(any_value::Value::StringValue(p)) => p.clone(),
                other => panic!("url.path is {other:?}"),
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One decoded span.
#[derive(Debug, Clone)]
struct Received {
    resource: BTreeMap<String, any_value::Value>,
    resource_schema: String,
    scope: (String, String),
    scope_schema: String,
    span: Span,
}

impl Received {
    fn attributes(&self) -> BTreeMap<String, any_value::Value> {
        attributes(&self.span.attributes)
    }

    fn attribute(&self, key: &str) -> Option<any_value::Value> {
        self.attributes().remove(key)
    }

    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).expect("a known span kind")
    }
}

/// Attributes by key; OTLP requires the keys to be unique.
fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, any_value::Value> {
    let map: BTreeMap<String, any_value::Value> = kvs
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().and_then(|v| v.value.clone());
            (kv.key.clone(), value.expect("attributes have values"))
        })
        .collect();
    assert_eq!(map.len(), kvs.len(), "repeated attribute keys in {kvs:?}");
    map
}

fn str_(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn int(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

fn expected(pairs: &[(&str, any_value::Value)]) -> BTreeMap<String, any_value::Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The exporter.

fn config(endpoint: String) -> OtlpConfig {
    OtlpConfig {
        endpoint,
        batch_interval: Duration::from_millis(20),
        export_timeout: Duration::from_secs(5),
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

fn start(config: OtlpConfig) -> SpanExporter {
    SpanExporter::start(config).expect("the exporter starts")
}

/// Shuts `exporter` down (bounded) and returns its final counts.
async fn shut_down(exporter: SpanExporter) -> OtlpStats {
    let stats = exporter.clone();
    let done = tokio::time::timeout(PATIENCE, exporter.shutdown()).await;
    assert!(done.is_ok(), "shutdown did not complete");
    stats.stats()
}

/// Waits (bounded) until the exporter's counts satisfy `what`.
async fn until(exporter: &SpanExporter, what: &str, ok: impl Fn(&OtlpStats) -> bool) {
    let wait = async {
        while !ok(&exporter.stats()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let done = tokio::time::timeout(PATIENCE, wait).await;
    assert!(done.is_ok(), "never {what}: {:?}", exporter.stats());
}

/// An address on loopback nobody listens on: bound, then closed.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Every span that entered the queue is exported, dropped, rejected or still queued.
fn assert_every_span_accounted_for(s: &OtlpStats) {
    assert_eq!(
        s.spans_queued,
        s.spans_exported + s.spans_dropped + s.spans_rejected + s.queue_depth as u64,
        "spans unaccounted for: {s:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Spans of real exchanges.

/// What the traced scenario made: the receiver's spans and the L7 flows' times.
struct Traced {
    spans: Vec<Received>,
    /// Request and response flow times at the client's interface.
    client: (u64, u64),
    /// And at the server's.
    server: (u64, u64),
    stats: OtlpStats,
}

/// The frontend calls `GET /items/1?color=red` on the api with a `traceparent`; both ends
/// observe it (the client's node vn1, the server's node vn2), interleaved in time order. A
/// second call, without `traceparent`, follows on another connection.
async fn traced_exchange_seen_at_both_ends() -> Traced {
    let receiver = Receiver::start(Answer::Accept).await;
    let exporter = start(config(receiver.endpoint()));
    let mut traffic = Traffic::new(exporter.clone());
    let request = get("/items/1?color=red", Some(&traceparent()));
    let untraced = get("/items/2", None);
    let port = 40312;
    let flow = |f: Option<Flow>| time_ns(&f.expect("an L7 flow"));

    let client_request = flow(traffic.packet(At::Client, port, false, T0, request.as_bytes()));
    let server_request =
        flow(traffic.packet(At::Server, port, false, T0 + 250 * US, request.as_bytes()));
    let server_response = flow(traffic.packet(At::Server, port, true, T0 + 42 * MS, OK));
    let client_response = flow(traffic.packet(At::Client, port, true, T0 + 42 * MS + 300 * US, OK));

    let port = 40313;
    traffic.packet(At::Client, port, false, T0 + 100 * MS, untraced.as_bytes());
    traffic.packet(
        At::Server,
        port,
        false,
        T0 + 100 * MS + 250 * US,
        untraced.as_bytes(),
    );
    traffic.packet(At::Server, port, true, T0 + 101 * MS, OK);
    traffic.packet(At::Client, port, true, T0 + 101 * MS + 300 * US, OK);

    receiver.wait_for_spans(2).await;
    // Shutdown flushes whatever is queued: a span for the untraced call would arrive by now.
    let stats = shut_down(exporter).await;
    Traced {
        spans: receiver.spans(),
        client: (client_request, client_response),
        server: (server_request, server_response),
        stats,
    }
}

impl Traced {
    fn one(&self, kind: SpanKind) -> &Received {
        let of_kind: Vec<&Received> = self.spans.iter().filter(|s| s.kind() == kind).collect();
        assert_eq!(of_kind.len(), 1, "spans: {:#?}", self.spans);
        of_kind[0]
    }
}

#[tokio::test]
async fn the_server_side_observation_is_a_server_span_of_the_serving_workload_in_the_callers_trace()
{
    let traced = traced_exchange_seen_at_both_ends().await;
    let s = traced.one(SpanKind::Server);

    assert_eq!(hex(&s.span.trace_id), TRACE_ID);
    assert_eq!(hex(&s.span.parent_span_id), PARENT_ID);
    assert_eq!(s.span.span_id.len(), 8);
    assert_ne!(s.span.span_id, [0; 8]);
    assert_ne!(hex(&s.span.span_id), PARENT_ID);
    assert_eq!(s.span.flags, FLAGS_REMOTE_PARENT);
    assert_eq!(s.span.name, "GET /items/1");
    assert_eq!(
        (s.span.start_time_unix_nano, s.span.end_time_unix_nano),
        traced.server,
        "the server-side request and response flow times"
    );
    assert_eq!(traced.server, (T0 + 250 * US, T0 + 42 * MS));
    assert_eq!(s.span.status, None, "a 200 leaves the status unset");
    assert!(s.span.events.is_empty());
    assert_eq!(
        s.attributes(),
        expected(&[
            ("http.request.method", str_("GET")),
            ("http.response.status_code", int(200)),
            ("url.path", str_("/items/1")),
            ("url.query", str_("color=red")),
            ("url.scheme", str_("http")),
            ("server.address", str_("api.shop")),
            ("server.port", int(8080)),
            ("client.address", str_(FRONTEND.ip)),
            ("client.port", int(40312)),
            ("network.peer.address", str_(FRONTEND.ip)),
            ("network.peer.port", int(40312)),
            ("network.protocol.name", str_("http")),
            ("network.protocol.version", str_("1.1")),
            ("network.transport", str_("tcp")),
            ("user_agent.original", str_("curl/8.5.0")),
        ])
    );
    // The api served it, on its node, named without Hubble's cluster prefix.
    assert_eq!(
        s.resource,
        expected(&[
            ("service.name", str_("api")),
            ("k8s.namespace.name", str_("shop")),
            ("k8s.pod.name", str_(API.name)),
            ("k8s.node.name", str_("vn2")),
            ("k8s.deployment.name", str_("api")),
        ])
    );
    assert_eq!(
        s.scope,
        (
            SCOPE_NAME.to_string(),
            env!("CARGO_PKG_VERSION").to_string()
        )
    );
    assert_eq!(
        (&*s.resource_schema, &*s.scope_schema),
        (SCHEMA_URL, SCHEMA_URL)
    );
}

#[tokio::test]
async fn the_client_side_observation_is_a_client_span_of_the_calling_workload_in_the_callers_trace()
{
    let traced = traced_exchange_seen_at_both_ends().await;
    let c = traced.one(SpanKind::Client);

    assert_eq!(hex(&c.span.trace_id), TRACE_ID);
    assert_eq!(hex(&c.span.parent_span_id), PARENT_ID);
    assert_eq!(c.span.span_id.len(), 8);
    assert_ne!(c.span.span_id, [0; 8]);
    assert_ne!(
        c.span.span_id,
        traced.one(SpanKind::Server).span.span_id,
        "each observation point is its own span"
    );
    assert_eq!(c.span.flags, FLAGS_REMOTE_PARENT);
    assert_eq!(c.span.name, "GET /items/1");
    assert_eq!(
        (c.span.start_time_unix_nano, c.span.end_time_unix_nano),
        traced.client,
        "the client-side request and response flow times"
    );
    assert_eq!(traced.client, (T0, T0 + 42 * MS + 300 * US));
    assert_eq!(c.span.status, None);
    assert_eq!(
        c.attributes(),
        expected(&[
            ("http.request.method", str_("GET")),
            ("http.response.status_code", int(200)),
            ("url.full", str_("http://api.shop:8080/items/1?color=red")),
            ("url.path", str_("/items/1")),
            ("url.query", str_("color=red")),
            ("url.scheme", str_("http")),
            ("server.address", str_("api.shop")),
            ("server.port", int(8080)),
            ("client.address", str_(FRONTEND.ip)),
            ("network.peer.address", str_(API.ip)),
            ("network.peer.port", int(8080)),
            ("network.protocol.name", str_("http")),
            ("network.protocol.version", str_("1.1")),
            ("network.transport", str_("tcp")),
            ("user_agent.original", str_("curl/8.5.0")),
        ])
    );
    // The frontend sent it, from its own node.
    assert_eq!(
        c.resource,
        expected(&[
            ("service.name", str_("frontend")),
            ("k8s.namespace.name", str_("web")),
            ("k8s.pod.name", str_(FRONTEND.name)),
            ("k8s.node.name", str_("vn1")),
            ("k8s.deployment.name", str_("frontend")),
        ])
    );
}

#[tokio::test]
async fn a_request_without_traceparent_makes_no_span_by_default() {
    let traced = traced_exchange_seen_at_both_ends().await;
    assert_eq!(
        traced.spans.len(),
        2,
        "only the traced call's two spans, even after the shutdown flush: {:#?}",
        traced.spans
    );
    assert!(
        traced
            .spans
            .iter()
            .all(|s| s.attribute("url.path") == Some(str_("/items/1")))
    );
    let s = &traced.stats;
    assert_eq!(
        (
            s.spans_queued,
            s.spans_exported,
            s.spans_dropped,
            s.spans_rejected
        ),
        (2, 2, 0, 0)
    );
    assert_eq!(
        s.exchanges,
        ExchangeStats {
            spans: 2,
            exchanges: 2,
            // Both ends saw the untraced request, and its response found no span waiting.
            untraced: 2,
            responses_without_request: 2,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn with_root_spans_on_a_request_without_traceparent_starts_a_new_trace() {
    let receiver = Receiver::start(Answer::Accept).await;
    let exporter = start(OtlpConfig {
        exchanges: ExchangeConfig {
            root_spans: true,
            ..Default::default()
        },
        ..config(receiver.endpoint())
    });
    let mut traffic = Traffic::new(exporter.clone());
    traffic.served(40400, T0, "/a", None);
    traffic.served(40400, T0 + 10 * MS, "/b", None);
    receiver.wait_for_spans(2).await;
    shut_down(exporter).await;

    let spans = receiver.spans();
    assert_eq!(spans.len(), 2);
    for s in &spans {
        assert_eq!(s.kind(), SpanKind::Server);
        assert!(s.span.parent_span_id.is_empty(), "a root span: {s:?}");
        assert_eq!(s.span.trace_id.len(), 16);
        assert_ne!(s.span.trace_id, [0; 16]);
        assert_eq!(s.span.flags, FLAGS_ROOT);
    }
    assert_ne!(
        spans[0].span.trace_id, spans[1].span.trace_id,
        "each request starts its own trace"
    );
    assert_eq!(
        spans
            .iter()
            .map(|s| (s.span.start_time_unix_nano, s.span.end_time_unix_nano))
            .collect::<Vec<_>>(),
        [(T0, T0 + MS), (T0 + 10 * MS, T0 + 11 * MS)]
    );
}

// ---------------------------------------------------------------------------------------------
// Backpressure.

/// Exchange `n` of a run: `GET /items/n` with a traceparent, 10 ms apart.
fn serve_numbered(traffic: &mut Traffic, numbers: std::ops::Range<u64>) {
    for n in numbers {
        traffic.served(
            40500,
            T0 + n * 10 * MS,
            &format!("/items/{n}"),
            Some(&traceparent()),
        );
    }
}

fn paths(numbers: std::ops::Range<u64>) -> Vec<String> {
    numbers.map(|n| format!("/items/{n}")).collect()
}

#[tokio::test]
async fn with_the_receiver_down_a_full_queue_drops_the_oldest_spans_and_shutdown_counts_the_rest() {
    let down = closed_port();
    let exporter = start(OtlpConfig {
        queue_size: 4,
        retry_min: NEVER,
        retry_max: NEVER,
        ..config(format!("http://{down}"))
    });
    let mut traffic = Traffic::new(exporter.clone());

    // The first span goes out and fails: the export task holds it and waits to retry.
    serve_numbered(&mut traffic, 0..1);
    until(&exporter, "an export failed", |s| s.export_errors >= 1).await;
    assert_eq!(exporter.stats().queue_depth, 0);

    // Meanwhile flows keep coming: twice the queue's worth, with nothing awaited in between.
    serve_numbered(&mut traffic, 1..9);
    let s = exporter.stats();
    assert_eq!(s.exchanges.exchanges, 9, "every exchange was observed");
    assert_eq!(
        (
            s.spans_queued,
            s.queue_depth,
            s.spans_dropped,
            s.spans_exported
        ),
        (9, 4, 4, 0),
        "the queue keeps the newest 4 and counts the 4 it pushed out"
    );

    // Shutdown tries once more, still to nobody: everything left is counted as dropped.
    let s = shut_down(exporter).await;
    assert_eq!(
        (
            s.spans_queued,
            s.spans_exported,
            s.spans_dropped,
            s.spans_rejected,
            s.queue_depth
        ),
        (9, 0, 9, 0, 0)
    );
}

#[tokio::test]
async fn when_the_receiver_comes_back_it_gets_the_newest_spans_and_loss_was_oldest_first() {
    let down = closed_port();
    let exporter = start(OtlpConfig {
        queue_size: 4,
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(100),
        ..config(format!("http://{down}"))
    });
    let mut traffic = Traffic::new(exporter.clone());
    serve_numbered(&mut traffic, 0..1);
    until(&exporter, "an export failed", |s| s.export_errors >= 1).await;
    serve_numbered(&mut traffic, 1..9);
    assert_eq!(exporter.stats().spans_dropped, 4);

    // The receiver is back before the next retry; the held span is older than the ones the
    // queue lost, so it goes too.
    let receiver = Receiver::start_on(down, Answer::Accept).await;
    receiver.wait_for_spans(4).await;
    until(&exporter, "the newest 4 were exported", |s| {
        s.spans_exported == 4
    })
    .await;
    let s = shut_down(exporter).await;

    assert_eq!(receiver.paths(), paths(5..9));
    assert_eq!(
        (
            s.spans_queued,
            s.spans_exported,
            s.spans_dropped,
            s.spans_rejected
        ),
        (9, 4, 5, 0)
    );
}

#[tokio::test]
async fn a_receiver_back_only_at_shutdown_still_gets_the_newest_spans_and_loss_is_oldest_first() {
    let down = closed_port();
    let exporter = start(OtlpConfig {
        queue_size: 4,
        retry_min: NEVER,
        retry_max: NEVER,
        ..config(format!("http://{down}"))
    });
    let mut traffic = Traffic::new(exporter.clone());
    serve_numbered(&mut traffic, 0..1);
    until(&exporter, "an export failed", |s| s.export_errors >= 1).await;
    serve_numbered(&mut traffic, 1..9);
    assert_eq!(exporter.stats().spans_dropped, 4);

    // The receiver is back; the exporter finds out in its shutdown flush.
    let receiver = Receiver::start_on(down, Answer::Accept).await;
    let s = shut_down(exporter).await;

    assert_eq!(
        receiver.paths(),
        paths(5..9),
        "newer spans (/items/1..4) were dropped, so the older held /items/0 must not be sent"
    );
    assert_eq!(
        (
            s.spans_queued,
            s.spans_exported,
            s.spans_dropped,
            s.spans_rejected
        ),
        (9, 4, 5, 0)
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_hold_up_observe_and_the_full_queue_drops_the_oldest()
 {
    let receiver = Receiver::start(Answer::Never).await;
    let exporter = start(OtlpConfig {
        queue_size: 4,
        export_timeout: NEVER,
        shutdown_timeout: Duration::from_millis(200),
        ..config(receiver.endpoint())
    });
    let mut traffic = Traffic::new(exporter.clone());

    // The first span's export reaches the receiver and hangs there.
    serve_numbered(&mut traffic, 0..1);
    receiver.wait_for_spans(1).await;

    // Flows keep coming and every one is observed; the queue keeps the newest 4.
    serve_numbered(&mut traffic, 1..11);
    let s = exporter.stats();
    assert_eq!(s.exchanges.exchanges, 11);
    assert_eq!(
        (
            s.spans_queued,
            s.queue_depth,
            s.spans_dropped,
            s.spans_exported
        ),
        (11, 4, 6, 0)
    );
    assert_eq!(
        receiver.paths(),
        paths(0..1),
        "one export in flight, no more"
    );

    // Shutdown is bounded even with the export stuck.
    shut_down(exporter).await;
}

#[tokio::test]
async fn spans_in_flight_when_the_shutdown_flush_runs_out_of_time_are_counted_as_dropped() {
    let receiver = Receiver::start(Answer::Never).await;
    // As with the defaults (5 s flush, 10 s per export): the flush ends before the export does.
    let exporter = start(OtlpConfig {
        batch_interval: NEVER,
        export_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_millis(300),
        ..config(receiver.endpoint())
    });
    let mut traffic = Traffic::new(exporter.clone());
    serve_numbered(&mut traffic, 0..3);
    assert_eq!(exporter.stats().queue_depth, 3);

    let s = shut_down(exporter).await;
    assert_eq!(receiver.paths(), paths(0..3), "the flush sent them");
    assert_eq!(
        (s.spans_queued, s.spans_exported, s.spans_dropped),
        (3, 0, 3),
        "never acknowledged, so lost, and counted"
    );
    assert_every_span_accounted_for(&s);
}

#[tokio::test]
async fn an_export_in_flight_when_shutdown_stops_waiting_for_the_task_is_counted_as_dropped() {
    let receiver = Receiver::start(Answer::Never).await;
    // As with the defaults: an export may take longer (10 s) than shutdown waits (5 s + 1 s).
    let exporter = start(OtlpConfig {
        queue_size: 4,
        export_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_millis(200),
        ..config(receiver.endpoint())
    });
    let mut traffic = Traffic::new(exporter.clone());
    serve_numbered(&mut traffic, 0..1);
    receiver.wait_for_spans(1).await;
    serve_numbered(&mut traffic, 1..3);

    let s = shut_down(exporter).await;
    assert_eq!(
        (s.spans_queued, s.spans_exported, s.spans_dropped),
        (3, 0, 3),
        "the one in flight and the two queued"
    );
    assert_every_span_accounted_for(&s);
}
