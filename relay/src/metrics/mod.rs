//! Prometheus metrics with Hubble's names, labels and `--metrics` option syntax, plus Webb's
//! loss counters, served as OpenMetrics (with `traceID` exemplars) or Prometheus text.
//!
//! The relay builds one [`Metrics`] from the `--metrics` flag, calls [`Metrics::observe`] once
//! per processed flow, reports loss with [`Metrics::record_lost_event`] /
//! [`Metrics::record_stage_loss`], tells it which endpoints disappeared with
//! [`Metrics::forget_endpoints`] (their series go after a grace period, on
//! [`Metrics::sweep`]), and answers `GET /metrics` with [`Metrics::render`].
//!
//! Why `prometheus-client`: it is the official Rust client and the only one here that writes
//! OpenMetrics text with exemplars (the `prometheus` crate has neither).

mod context;
mod endpoints;
mod family;
mod names;
mod options;
mod traces;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::CounterWithExemplar;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use webb_proto::flow::{Flow, L7FlowType, LostEvent, LostEventSource, Verdict, layer4, layer7};

pub use context::{ContextId, ContextLabel, ContextOptions};
pub use endpoints::{EndpointsFileError, EndpointsWatch, parse_endpoints};
pub use family::TraceLabel;
pub use options::{DnsOptions, OptionsError, PluginKind, PluginSpec, parse_metrics};

use family::{Ctr, Family, Hist, LabelBuf, MAX_LABELS, new_hist};
use traces::{ConnKey, TraceMap};

/// `Content-Type` of the OpenMetrics exposition (the only one that carries exemplars).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic Prometheus text exposition.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Everything [`Metrics`] needs; [`MetricsConfig::from_flag`] fills the defaults.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    pub plugins: Vec<PluginSpec>,
    /// Series per metric family; an update that would add one more is counted in
    /// `webb_metrics_series_dropped_total{metric}` and not applied.
    pub max_series_per_metric: usize,
    /// Connections remembered for drop/policy exemplars (LRU beyond this).
    pub trace_map_capacity: usize,
    /// How long a connection's trace id stays usable after its latest HTTP exchange.
    pub trace_ttl: Duration,
    /// Delay between [`Metrics::forget_endpoints`] and the removal of the series.
    pub endpoint_grace: Duration,
    /// `webb_build_info{component,version}`.
    pub component: String,
    pub version: String,
}

impl MetricsConfig {
    pub const DEFAULT_MAX_SERIES: usize = 10_000;
    pub const DEFAULT_TRACE_MAP_CAPACITY: usize = 65_536;
    pub const DEFAULT_TRACE_TTL: Duration = Duration::from_secs(300);
    pub const DEFAULT_ENDPOINT_GRACE: Duration = Duration::from_secs(60);

    /// Parses Hubble's `--metrics` syntax; other fields take their defaults.
    pub fn from_flag(metrics: &str) -> Result<Self, OptionsError> {
        Ok(Self {
            plugins: parse_metrics(metrics)?,
            max_series_per_metric: Self::DEFAULT_MAX_SERIES,
            trace_map_capacity: Self::DEFAULT_TRACE_MAP_CAPACITY,
            trace_ttl: Self::DEFAULT_TRACE_TTL,
            endpoint_grace: Self::DEFAULT_ENDPOINT_GRACE,
            component: "relay".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
}

/// An endpoint that disappeared: series naming it (pod or IP) are removed after the grace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRef {
    pub namespace: String,
    pub pod: String,
    pub ips: Vec<IpAddr>,
}

/// The relay's metrics. Cheap to share (`Arc`); all methods take `&self`.
pub struct Metrics {
    inner: Arc<Inner>,
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("series", &self.series_count())
            .finish_non_exhaustive()
    }
}

struct Plugin {
    kind: PluginKind,
    ctx: ContextOptions,
    exemplars: bool,
    dns: DnsOptions,
    /// flow/drop/tcp/port/icmp/policy: one family; http: requests, responses; httpV2: requests;
    /// dns: queries, responses, response types.
    counters: Vec<Family<Ctr>>,
    duration: Option<Family<Hist>>,
}

struct Inner {
    plugins: Vec<Plugin>,
    lost_hubble: Family<Ctr>,
    lost_stage: Family<Ctr>,
    queue_depth: Family<Gauge>,
    build_labels: [(String, String); 2],
    traces: Option<TraceMap>,
    pending: Mutex<Vec<(EndpointRef, Instant)>>,
    grace: Duration,
}

const HELP_HTTP_REQUESTS: &str = "Count of HTTP requests";
const HELP_DURATION: &str = "Quantiles of HTTP request duration in seconds";

impl Metrics {
    pub fn new(config: &MetricsConfig) -> Result<Self, OptionsError> {
        let max = config.max_series_per_metric;
        let http_exemplars = config.plugins.iter().any(|p| {
            matches!(p.kind, PluginKind::Http | PluginKind::HttpV2) && p.exemplars == Some(true)
        });
        let mut plugins = Vec::new();
        for spec in &config.plugins {
            let ctx_names = spec.context.label_names();
            let own = |first: &[&'static str]| -> Vec<&'static str> {
                first
                    .iter()
                    .copied()
                    .chain(ctx_names.iter().copied())
                    .collect()
            };
            let ctx_first = |last: &[&'static str]| -> Vec<&'static str> {
                ctx_names
                    .iter()
                    .copied()
                    .chain(last.iter().copied())
                    .collect()
            };
            // drop/policy follow the HTTP plugin's exemplar setting unless told otherwise.
            let exemplars = match spec.kind {
                PluginKind::Drop | PluginKind::Policy => spec.exemplars.unwrap_or(http_exemplars),
                _ => spec.exemplars.unwrap_or(false),
            };
            let ctr = move || {
                move || {
                    if exemplars {
                        Ctr::Exemplar(CounterWithExemplar::default())
                    } else {
                        Ctr::Plain(Counter::default())
                    }
                }
            };
            let fam = |name, help, labels: Vec<&'static str>| {
                Family::new(name, help, MetricType::Counter, labels, max, ctr())
            };
            let (counters, duration) = match spec.kind {
                PluginKind::Flow => (
                    vec![fam(
                        "hubble_flows_processed",
                        "Total number of flows processed",
                        own(&["protocol", "type", "subtype", "verdict"]),
                    )],
                    None,
                ),
                PluginKind::Drop => (
                    vec![fam(
                        "hubble_drop",
                        "Number of drops",
                        own(&["reason", "protocol"]),
                    )],
                    None,
                ),
                PluginKind::Tcp => (
                    vec![fam(
                        "hubble_tcp_flags",
                        "TCP flag occurrences",
                        own(&["flag", "family"]),
                    )],
                    None,
                ),
                PluginKind::PortDistribution => (
                    vec![fam(
                        "hubble_port_distribution",
                        "Numbers of packets distributed by destination port",
                        own(&["protocol", "port"]),
                    )],
                    None,
                ),
                PluginKind::Icmp => (
                    vec![fam(
                        "hubble_icmp",
                        "Number of ICMP messages",
                        own(&["family", "type"]),
                    )],
                    None,
                ),
                PluginKind::Policy => (
                    vec![fam(
                        "hubble_policy_verdicts",
                        "Total number of Cilium network policy verdicts",
                        own(&["direction", "match", "action"]),
                    )],
                    None,
                ),
                PluginKind::Http => (
                    vec![
                        fam(
                            "hubble_http_requests",
                            HELP_HTTP_REQUESTS,
                            ctx_first(&["method", "protocol", "reporter"]),
                        ),
                        fam(
                            "hubble_http_responses",
                            "Count of HTTP responses",
                            ctx_first(&["method", "protocol", "status", "reporter"]),
                        ),
                    ],
                    Some(ctx_first(&["method", "reporter"])),
                ),
                PluginKind::HttpV2 => (
                    vec![fam(
                        "hubble_http_requests",
                        HELP_HTTP_REQUESTS,
                        ctx_first(&["method", "protocol", "status", "reporter"]),
                    )],
                    Some(ctx_first(&["method", "reporter"])),
                ),
                PluginKind::Dns => {
                    // Hubble's label order: context, then its own, then `query` if asked for.
                    let query: &[&'static str] = if spec.dns.query { &["query"] } else { &[] };
                    let with_query = |own: &[&'static str]| ctx_first(&[own, query].concat());
                    (
                        vec![
                            fam(
                                "hubble_dns_queries",
                                "Number of DNS queries observed",
                                with_query(&["rcode", "qtypes", "ips_returned"]),
                            ),
                            fam(
                                "hubble_dns_responses",
                                "Number of DNS responses observed",
                                with_query(&["rcode", "qtypes", "ips_returned"]),
                            ),
                            fam(
                                "hubble_dns_response_types",
                                "Number of DNS response types observed",
                                with_query(&["type", "qtypes"]),
                            ),
                        ],
                        None,
                    )
                }
            };
            // At most 11 labelsContext + source + destination + 4 own labels.
            debug_assert!(counters.iter().all(|f| f.label_names.len() <= MAX_LABELS));
            let duration = duration.map(|labels| {
                Family::new(
                    "hubble_http_request_duration_seconds",
                    HELP_DURATION,
                    MetricType::Histogram,
                    labels,
                    max,
                    new_hist,
                )
            });
            plugins.push(Plugin {
                kind: spec.kind,
                ctx: spec.context.clone(),
                exemplars,
                dns: spec.dns,
                counters,
                duration,
            });
        }
        let wants_conn_traces = plugins
            .iter()
            .any(|p| p.exemplars && matches!(p.kind, PluginKind::Drop | PluginKind::Policy));
        let plain = || Ctr::Plain(Counter::default());
        let inner = Arc::new(Inner {
            plugins,
            lost_hubble: Family::new(
                "hubble_lost_events",
                "Number of lost events",
                MetricType::Counter,
                vec!["source"],
                max,
                plain,
            ),
            lost_stage: Family::new(
                "webb_lost_events",
                "Events lost by Webb, by pipeline stage and node",
                MetricType::Counter,
                vec!["stage", "node"],
                max,
                plain,
            ),
            queue_depth: Family::new(
                "webb_queue_depth",
                "Current depth of a bounded pipeline queue",
                MetricType::Gauge,
                vec!["stage"],
                max,
                Gauge::default,
            ),
            build_labels: [
                ("component".into(), config.component.clone()),
                ("version".into(), config.version.clone()),
            ],
            traces: wants_conn_traces
                .then(|| TraceMap::new(config.trace_map_capacity, config.trace_ttl)),
            pending: Mutex::new(Vec::new()),
            grace: config.endpoint_grace,
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition(inner.clone())));
        Ok(Self { inner, registry })
    }

    /// Accounts one flow in every enabled metric (call once per flow, in pipeline order).
    pub fn observe(&self, flow: &Flow) {
        self.observe_at(flow, Instant::now());
    }

    /// [`Self::observe`] with an explicit clock (for the trace map's time limit).
    pub fn observe_at(&self, flow: &Flow, now: Instant) {
        let inner = &*self.inner;
        let http = match flow.l7.as_ref().map(|l| (l, l.record.as_ref())) {
            Some((l7, Some(layer7::Record::Http(h)))) => Some((l7, h)),
            _ => None,
        };
        let trace = flow
            .trace_context
            .as_ref()
            .and_then(|t| t.parent.as_ref())
            .and_then(|p| TraceLabel::parse(&p.trace_id));
        if let (Some(map), Some(_), Some(t)) = (&inner.traces, http, &trace)
            && let Some(key) = ConnKey::of(flow)
        {
            map.remember(key, t.clone(), now);
        }
        let event_type = flow.event_type.as_ref().map_or(0, |e| e.r#type);
        let verdict = flow.verdict;
        let forwarded =
            verdict == Verdict::Forwarded as i32 || verdict == Verdict::Redirected as i32;
        // The connection's trace id, looked up at most once per flow.
        let mut conn_trace: Option<Option<TraceLabel>> = None;
        let mut conn = |inner: &Inner| -> Option<TraceLabel> {
            conn_trace
                .get_or_insert_with(|| {
                    let map = inner.traces.as_ref()?;
                    map.lookup(&ConnKey::of(flow)?, now)
                })
                .clone()
        };
        let mut buf = LabelBuf::new();
        for p in &inner.plugins {
            buf.truncate(0);
            match p.kind {
                PluginKind::Flow => {
                    let (ty, sub): (&str, std::borrow::Cow<str>) = match event_type {
                        names::MSG_ACCESS_LOG => (
                            "L7",
                            match flow.l7.as_ref().and_then(|l| l.record.as_ref()) {
                                Some(layer7::Record::Dns(_)) => "DNS".into(),
                                Some(layer7::Record::Http(_)) => "HTTP".into(),
                                Some(layer7::Record::Kafka(_)) => "Kafka".into(),
                                None => "".into(),
                            },
                        ),
                        names::MSG_DROP => ("Drop", "".into()),
                        names::MSG_CAPTURE => ("Capture", "".into()),
                        names::MSG_TRACE => (
                            "Trace",
                            names::trace_point(flow.event_type.as_ref().map_or(0, |e| e.sub_type))
                                .into(),
                        ),
                        names::MSG_POLICY_VERDICT => ("PolicyVerdict", "".into()),
                        other => ("Unknown", other.to_string().into()),
                    };
                    buf.push(names::flow_protocol(flow));
                    buf.push(ty);
                    buf.push(&sub);
                    buf.push(&names::verdict_name(verdict));
                    p.ctx.push_values(flow, false, &mut buf);
                    p.counters[0].with(buf.as_slice(), |c| c.inc(None));
                }
                PluginKind::Drop => {
                    if verdict != Verdict::Dropped as i32 {
                        continue;
                    }
                    buf.push(&names::drop_reason_name(flow.drop_reason_desc));
                    buf.push(names::flow_protocol(flow));
                    p.ctx.push_values(flow, false, &mut buf);
                    let t = if p.exemplars { conn(inner) } else { None };
                    p.counters[0].with(buf.as_slice(), |c| c.inc(t.as_ref()));
                }
                PluginKind::Tcp => {
                    if !forwarded || flow.ip.is_none() {
                        continue;
                    }
                    let Some(layer4::Protocol::Tcp(tcp)) =
                        flow.l4.as_ref().and_then(|l| l.protocol.as_ref())
                    else {
                        continue;
                    };
                    let Some(f) = &tcp.flags else { continue };
                    buf.push("");
                    buf.push(names::family(flow));
                    p.ctx.push_values(flow, false, &mut buf);
                    let syn = match (f.syn, f.ack) {
                        (true, true) => Some("SYN-ACK"),
                        (true, false) => Some("SYN"),
                        _ => None,
                    };
                    let flags = [f.fin.then_some("FIN"), syn, f.rst.then_some("RST")];
                    for flag in flags.into_iter().flatten() {
                        buf.set(0, flag);
                        p.counters[0].with(buf.as_slice(), |c| c.inc(None));
                    }
                }
                PluginKind::PortDistribution => {
                    // Only flows known not to be replies.
                    if !forwarded || flow.is_reply.as_ref().is_none_or(|r| r.value) {
                        continue;
                    }
                    let (proto, port) = match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
                        Some(layer4::Protocol::Tcp(t)) => ("TCP", t.destination_port),
                        Some(layer4::Protocol::Udp(u)) => ("UDP", u.destination_port),
                        Some(layer4::Protocol::Sctp(s)) => ("SCTP", s.destination_port),
                        Some(layer4::Protocol::IcmPv4(_)) => ("ICMPv4", 0),
                        Some(layer4::Protocol::IcmPv6(_)) => ("ICMPv6", 0),
                        _ => continue,
                    };
                    buf.push(proto);
                    let mut port_buf = itoa::Buffer::new();
                    buf.push(port_buf.format(port));
                    p.ctx.push_values(flow, false, &mut buf);
                    p.counters[0].with(buf.as_slice(), |c| c.inc(None));
                }
                PluginKind::Icmp => {
                    let ty = match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
                        Some(layer4::Protocol::IcmPv4(i)) => {
                            ("IPv4", names::icmpv4_type(i.r#type, i.code))
                        }
                        // Hubble once labelled these "IPv4"; the family of ICMPv6 is IPv6.
                        Some(layer4::Protocol::IcmPv6(i)) => {
                            ("IPv6", names::icmpv6_type(i.r#type, i.code))
                        }
                        _ => continue,
                    };
                    buf.push(ty.0);
                    buf.push(&ty.1);
                    p.ctx.push_values(flow, false, &mut buf);
                    p.counters[0].with(buf.as_slice(), |c| c.inc(None));
                }
                PluginKind::Policy => {
                    let m = match event_type {
                        names::MSG_POLICY_VERDICT => {
                            // The host may reach any local endpoint; Hubble skips its verdicts.
                            if flow.source.as_ref().is_some_and(|s| s.identity == 1) {
                                continue;
                            }
                            names::policy_match(flow.policy_match_type)
                        }
                        names::MSG_ACCESS_LOG => {
                            match flow.l7.as_ref().and_then(|l| l.record.as_ref()) {
                                Some(layer7::Record::Dns(_)) => "l7/dns".into(),
                                Some(layer7::Record::Http(_)) => "l7/http".into(),
                                Some(layer7::Record::Kafka(_)) => "l7/kafka".into(),
                                None => "l7/".into(),
                            }
                        }
                        _ => continue,
                    };
                    // strings.ToLower(TrafficDirection.String()), as Hubble labels it.
                    buf.push(match context::direction_label(flow) {
                        "unknown" => "traffic_direction_unknown",
                        d => d,
                    });
                    buf.push(&m);
                    buf.push(&names::verdict_name(verdict).to_ascii_lowercase());
                    p.ctx.push_values(flow, false, &mut buf);
                    let t = if p.exemplars { conn(inner) } else { None };
                    p.counters[0].with(buf.as_slice(), |c| c.inc(t.as_ref()));
                }
                PluginKind::Dns => {
                    let Some(Some(layer7::Record::Dns(d))) =
                        flow.l7.as_ref().map(|l| l.record.as_ref())
                    else {
                        continue;
                    };
                    if p.dns.ignore_aaaa && d.qtypes.len() == 1 && d.qtypes[0] == "AAAA" {
                        continue;
                    }
                    p.ctx.push_values(flow, false, &mut buf);
                    let ctx_len = buf.len();
                    let qtypes = d.qtypes.join(",");
                    let mut ips = itoa::Buffer::new();
                    let ips = ips.format(d.ips.len());
                    let reply = flow.is_reply.as_ref().is_some_and(|r| r.value);
                    // Hubble: a dropped DNS flow is a query denied by policy; otherwise a
                    // non-reply is a query and a reply a response.
                    let (family, rcode) = if verdict == Verdict::Dropped as i32 {
                        (0, "Policy denied")
                    } else if !reply {
                        (0, "")
                    } else {
                        (1, names::dns_rcode(d.rcode))
                    };
                    buf.push(rcode);
                    buf.push(&qtypes);
                    buf.push(ips);
                    if p.dns.query {
                        buf.push(&d.query);
                    }
                    p.counters[family].with(buf.as_slice(), |c| c.inc(None));
                    if family != 1 {
                        continue;
                    }
                    for rrtype in &d.rrtypes {
                        buf.truncate(ctx_len);
                        buf.push(rrtype);
                        buf.push(&qtypes);
                        if p.dns.query {
                            buf.push(&d.query);
                        }
                        p.counters[2].with(buf.as_slice(), |c| c.inc(None));
                    }
                }
                PluginKind::Http | PluginKind::HttpV2 => {
                    let Some((l7, h)) = http else { continue };
                    let ty = L7FlowType::try_from(l7.r#type).unwrap_or(L7FlowType::UnknownL7Type);
                    let v2 = p.kind == PluginKind::HttpV2;
                    if ty != L7FlowType::Response && (v2 || ty != L7FlowType::Request) {
                        continue;
                    }
                    let reporter = match context::direction_label(flow) {
                        "egress" => "client",
                        "ingress" => "server",
                        _ => "unknown",
                    };
                    let t = if p.exemplars { trace.as_ref() } else { None };
                    p.ctx.push_values(flow, v2, &mut buf);
                    let ctx_len = buf.len();
                    let mut status = itoa::Buffer::new();
                    let status = status.format(h.code);
                    buf.push(&h.method);
                    buf.push(&h.protocol);
                    if ty == L7FlowType::Request {
                        buf.push(reporter);
                        p.counters[0].with(buf.as_slice(), |c| c.inc(t));
                        continue;
                    }
                    buf.push(status);
                    buf.push(reporter);
                    p.counters[if v2 { 0 } else { 1 }].with(buf.as_slice(), |c| c.inc(t));
                    buf.truncate(ctx_len);
                    buf.push(&h.method);
                    buf.push(reporter);
                    let secs = l7.latency_ns as f64 / 1e9;
                    if let Some(d) = &p.duration {
                        d.with(buf.as_slice(), |h| h.observe(secs, t.cloned(), None));
                    }
                }
            }
        }
    }

    /// Counts a Hubble `LostEvent` in `hubble_lost_events_total{source}`.
    pub fn record_lost_event(&self, ev: &LostEvent) {
        let source = LostEventSource::try_from(ev.source)
            .map_or_else(|_| ev.source.to_string(), |s| s.as_str_name().to_string());
        let mut buf = LabelBuf::new();
        buf.push(&source);
        self.inner
            .lost_hubble
            .with(buf.as_slice(), |c| c.inc_by(ev.num_events_lost, None));
    }

    /// Counts events lost by a Webb stage in `webb_lost_events_total{stage,node}`.
    pub fn record_stage_loss(&self, stage: &str, node: &str, n: u64) {
        let mut buf = LabelBuf::new();
        buf.push(stage);
        buf.push(node);
        self.inner
            .lost_stage
            .with(buf.as_slice(), |c| c.inc_by(n, None));
    }

    /// Sets `webb_queue_depth{stage}`.
    pub fn set_queue_depth(&self, stage: &str, depth: i64) {
        let mut buf = LabelBuf::new();
        buf.push(stage);
        self.inner.queue_depth.with(buf.as_slice(), |g| {
            g.set(depth);
        });
    }

    /// Schedules removal of the series that name these endpoints (by `namespace/pod` in a
    /// `source`/`destination` context label, by `*_pod` + `*_namespace` labels, or by IP in
    /// `*_ip` / ip-context labels) once `endpoint_grace` has passed; see [`Self::sweep`].
    pub fn forget_endpoints(&self, endpoints: &[EndpointRef], now: Instant) {
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.extend(
            endpoints
                .iter()
                .map(|e| (e.clone(), now + self.inner.grace)),
        );
    }

    /// Cancels a pending removal (the endpoint came back within the grace period).
    pub fn endpoint_returned(&self, namespace: &str, pod: &str) {
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|(e, _)| !(e.namespace == namespace && e.pod == pod));
    }

    /// Removes the series of endpoints whose grace period has ended; returns how many series
    /// went. Call it periodically (e.g. every 10 s).
    pub fn sweep(&self, now: Instant) -> usize {
        let due: Vec<EndpointRef> = {
            let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            let (due, keep): (Vec<_>, Vec<_>) = p.drain(..).partition(|(_, at)| *at <= now);
            *p = keep;
            due.into_iter().map(|(e, _)| e).collect()
        };
        if due.is_empty() {
            return 0;
        }
        let matches = |names: &[&'static str], vals: &[CompactString]| {
            due.iter().any(|ep| names_endpoint(ep, names, vals))
        };
        let mut removed = 0;
        for p in &self.inner.plugins {
            for f in &p.counters {
                removed += f.remove_where(matches);
            }
            if let Some(d) = &p.duration {
                removed += d.remove_where(matches);
            }
        }
        removed
    }

    /// Number of series currently held by all Hubble metric families.
    pub fn series_count(&self) -> usize {
        self.inner
            .plugins
            .iter()
            .map(|p| {
                p.counters.iter().map(Family::len).sum::<usize>()
                    + p.duration.as_ref().map_or(0, Family::len)
            })
            .sum()
    }

    /// Connections currently remembered for drop/policy exemplars.
    pub fn traced_connections(&self) -> usize {
        self.inner.traces.as_ref().map_or(0, TraceMap::len)
    }

    /// The exposition for a scrape with this `Accept` header: OpenMetrics (with exemplars)
    /// when the client asks for `application/openmetrics-text`, else Prometheus text 0.0.4.
    /// Returns `(content_type, body)`.
    pub fn render(&self, accept: Option<&str>) -> (&'static str, String) {
        let mut body = String::with_capacity(16 * 1024);
        if accept.is_some_and(wants_openmetrics) {
            // Writing into a String cannot fail; an encoder error would be a bug in a collector.
            let _ = prometheus_client::encoding::text::encode(&mut body, &self.registry);
            (OPENMETRICS_CONTENT_TYPE, body)
        } else {
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, &self.registry);
            (PROMETHEUS_TEXT_CONTENT_TYPE, body)
        }
    }

    /// Where other parts add their collectors (the TLS and limit counters of webb-security).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The registry, for callers that encode it themselves (e.g. with more collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim();
        let q_zero = it.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
    })
}

fn names_endpoint(ep: &EndpointRef, names: &[&'static str], vals: &[CompactString]) -> bool {
    let get = |n: &str| names.iter().position(|x| *x == n).map(|i| vals[i].as_str());
    let ns_pod = format!("{}/{}", ep.namespace, ep.pod);
    let is_ip = |v: &str| v.parse::<IpAddr>().is_ok_and(|ip| ep.ips.contains(&ip));
    for side in ["source", "destination"] {
        if let Some(v) = get(side)
            && (v == ns_pod || is_ip(v))
        {
            return true;
        }
        let pod = get(if side == "source" {
            "source_pod"
        } else {
            "destination_pod"
        });
        let ns = get(if side == "source" {
            "source_namespace"
        } else {
            "destination_namespace"
        });
        if pod == Some(ep.pod.as_str())
            && !ep.pod.is_empty()
            && ns.is_none_or(|n| n == ep.namespace)
        {
            return true;
        }
        if get(if side == "source" {
            "source_ip"
        } else {
            "destination_ip"
        })
        .is_some_and(is_ip)
        {
            return true;
        }
    }
    false
}

#[derive(Debug)]
struct Exposition(Arc<Inner>);

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("plugins", &self.plugins.len())
            .finish()
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.0;
        {
            let mut me = encoder.encode_descriptor(
                "webb_build_info",
                "Build of this Webb component",
                None,
                MetricType::Gauge,
            )?;
            let labels: Vec<(&str, &str)> = inner
                .build_labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let g: Gauge = Gauge::default();
            g.set(1);
            family::encode_gauge_series(&mut me, &labels, &g)?;
        }
        for p in &inner.plugins {
            for f in &p.counters {
                f.encode(&mut encoder)?;
            }
            if let Some(d) = &p.duration {
                d.encode(&mut encoder)?;
            }
        }
        inner.lost_hubble.encode(&mut encoder)?;
        inner.lost_stage.encode(&mut encoder)?;
        inner.queue_depth.encode(&mut encoder)?;
        {
            let mut me = encoder.encode_descriptor(
                "webb_metrics_series_dropped",
                "Metric updates refused because the metric reached its series bound",
                None,
                MetricType::Counter,
            )?;
            let all = inner
                .plugins
                .iter()
                .flat_map(|p| p.counters.iter().map(|f| (f.name, &f.dropped)))
                .chain(
                    inner
                        .plugins
                        .iter()
                        .filter_map(|p| p.duration.as_ref().map(|d| (d.name, &d.dropped))),
                )
                .chain([
                    (inner.lost_hubble.name, &inner.lost_hubble.dropped),
                    (inner.lost_stage.name, &inner.lost_stage.dropped),
                    (inner.queue_depth.name, &inner.queue_depth.dropped),
                ]);
            for (name, dropped) in all {
                let exposed = exposed_name(name);
                let labels = [("metric", exposed.as_str())];
                let c: Counter = Counter::default();
                c.inc_by(dropped.load(std::sync::atomic::Ordering::Relaxed));
                let fe = me.encode_family(&labels)?;
                prometheus_client::encoding::EncodeMetric::encode(&c, fe)?;
            }
        }
        if let Some(t) = &inner.traces {
            let mut me = encoder.encode_descriptor(
                "webb_trace_map_evictions",
                "Connections forgotten by the trace-id map used for drop/policy exemplars",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in [
                ("capacity", &t.evicted_capacity),
                ("expired", &t.evicted_expired),
            ] {
                let labels = [("reason", reason)];
                let c: Counter = Counter::default();
                c.inc_by(n.load(std::sync::atomic::Ordering::Relaxed));
                let fe = me.encode_family(&labels)?;
                prometheus_client::encoding::EncodeMetric::encode(&c, fe)?;
            }
        }
        Ok(())
    }
}

/// The sample name users query (`hubble_drop` → `hubble_drop_total`).
fn exposed_name(family: &str) -> String {
    if family.ends_with("_seconds") || family == "webb_queue_depth" {
        family.to_string()
    } else {
        format!("{family}_total")
    }
}
