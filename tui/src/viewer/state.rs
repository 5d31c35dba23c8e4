//! The viewer's model: a bounded buffer of flows, counters of what arrived and what was shown,
//! the filter line, toggles, and the aggregates each view shows. Updated from the stream and
//! from key actions; never touches the terminal or the network.

use std::collections::{BTreeMap, HashMap, VecDeque};

use flow_filter::FlowFilters;
use webb_proto::flow::{Endpoint, Flow, Verdict, layer4, layer7};

use crate::flags::parse_filter_line;

/// Flows kept for display; older ones are evicted (and counted).
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Flows,
    ServiceMap,
    Drops,
    Http,
}

impl View {
    pub const ALL: [View; 4] = [View::Flows, View::ServiceMap, View::Drops, View::Http];
    pub fn title(self) -> &'static str {
        match self {
            View::Flows => "Flows",
            View::ServiceMap => "Service map",
            View::Drops => "Top drops",
            View::Http => "HTTP routes",
        }
    }
}

/// Quick verdict toggle (`v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerdictToggle {
    #[default]
    All,
    Forwarded,
    Dropped,
}

/// Quick protocol toggle (`t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolToggle {
    #[default]
    All,
    Tcp,
    Udp,
    Http,
    Dns,
}

impl VerdictToggle {
    fn next(self) -> Self {
        match self {
            Self::All => Self::Forwarded,
            Self::Forwarded => Self::Dropped,
            Self::Dropped => Self::All,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Forwarded => "FORWARDED",
            Self::Dropped => "DROPPED",
        }
    }
    fn matches(self, f: &Flow) -> bool {
        match self {
            Self::All => true,
            Self::Forwarded => f.verdict == Verdict::Forwarded as i32,
            Self::Dropped => f.verdict == Verdict::Dropped as i32,
        }
    }
}

impl ProtocolToggle {
    fn next(self) -> Self {
        match self {
            Self::All => Self::Tcp,
            Self::Tcp => Self::Udp,
            Self::Udp => Self::Http,
            Self::Http => Self::Dns,
            Self::Dns => Self::All,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Http => "http",
            Self::Dns => "dns",
        }
    }
    fn matches(self, f: &Flow) -> bool {
        let l4 = f.l4.as_ref().and_then(|l| l.protocol.as_ref());
        let l7 = f.l7.as_ref().and_then(|l| l.record.as_ref());
        match self {
            Self::All => true,
            Self::Tcp => matches!(l4, Some(layer4::Protocol::Tcp(_))),
            Self::Udp => matches!(l4, Some(layer4::Protocol::Udp(_))),
            Self::Http => matches!(l7, Some(layer7::Record::Http(_))),
            Self::Dns => matches!(l7, Some(layer7::Record::Dns(_))),
        }
    }
}

/// One buffered flow with its arrival sequence number (selection follows the flow).
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub flow: Flow,
}

/// Counters shown in the status line; every loss is counted where it happens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Flows received from the source.
    pub received: u64,
    /// Flows evicted from the buffer by newer ones.
    pub evicted: u64,
    /// Flows received while paused (kept in aggregates' source buffer only after resume).
    pub missed_paused: u64,
    /// Events the server reported lost (LostEvent).
    pub lost_upstream: u64,
    /// Responses dropped between the network task and the UI (bounded channel full).
    pub dropped_channel: u64,
}

/// What the user is typing into the filter line.
#[derive(Debug, Clone, Default)]
pub struct FilterEdit {
    pub text: String,
}

pub struct App {
    capacity: usize,
    buffer: VecDeque<Entry>,
    next_seq: u64,
    pub counters: Counters,
    pub paused: bool,
    pub view: View,
    pub show_detail: bool,
    pub show_help: bool,
    /// Selected flow (by sequence number); `None` follows the newest.
    pub selected: Option<u64>,
    pub editing: Option<FilterEdit>,
    pub filter_text: String,
    pub filter_error: Option<String>,
    filters: FlowFilters,
    pub verdict: VerdictToggle,
    pub protocol: ProtocolToggle,
    /// Where the flows come from, for the title.
    pub source: String,
    /// Last problem with the source (disconnect, error), shown in the status line.
    pub source_status: Option<String>,
}

impl App {
    pub fn new(capacity: usize, source: impl Into<String>) -> Self {
        Self {
            capacity: capacity.max(1),
            buffer: VecDeque::with_capacity(capacity.clamp(1, DEFAULT_CAPACITY)),
            next_seq: 0,
            counters: Counters::default(),
            paused: false,
            view: View::Flows,
            show_detail: false,
            show_help: false,
            selected: None,
            editing: None,
            filter_text: String::new(),
            filter_error: None,
            filters: FlowFilters::default(),
            verdict: VerdictToggle::All,
            protocol: ProtocolToggle::All,
            source: source.into(),
            source_status: None,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// A flow arrived.
    pub fn push(&mut self, flow: Flow) {
        self.counters.received += 1;
        if self.paused {
            self.counters.missed_paused += 1;
            return;
        }
        if self.buffer.len() == self.capacity {
            self.buffer.pop_front();
            self.counters.evicted += 1;
        }
        self.buffer.push_back(Entry {
            seq: self.next_seq,
            flow,
        });
        self.next_seq += 1;
    }

    /// Sets the filter line; on error the previous filter stays and the error is shown.
    pub fn set_filter(&mut self, text: &str) {
        let result = parse_filter_line(text).and_then(|lists| {
            FlowFilters::compile(&lists.allow, &lists.deny).map_err(|e| e.to_string())
        });
        match result {
            Ok(filters) => {
                self.filters = filters;
                self.filter_text = text.trim().to_string();
                self.filter_error = None;
            }
            Err(e) => self.filter_error = Some(e),
        }
    }

    pub fn cycle_verdict(&mut self) {
        self.verdict = self.verdict.next();
    }

    pub fn cycle_protocol(&mut self) {
        self.protocol = self.protocol.next();
    }

    pub fn clear(&mut self) {
        self.buffer.clear();
        self.selected = None;
    }

    fn visible(&self, f: &Flow) -> bool {
        self.verdict.matches(f) && self.protocol.matches(f) && self.filters.matches(f)
    }

    /// The flows the table shows, newest first.
    pub fn shown(&self) -> Vec<&Entry> {
        self.buffer
            .iter()
            .rev()
            .filter(|e| self.visible(&e.flow))
            .collect()
    }

    /// Index of the selection in [`App::shown`] (0 when following the newest).
    pub fn selected_index(&self, shown: &[&Entry]) -> usize {
        self.selected
            .and_then(|seq| shown.iter().position(|e| e.seq == seq))
            .unwrap_or(0)
    }

    /// Moves the selection by `delta` rows (negative = towards newer).
    pub fn move_selection(&mut self, delta: isize) {
        let shown = self.shown();
        if shown.is_empty() {
            self.selected = None;
            return;
        }
        let current = self.selected_index(&shown) as isize;
        let next = (current + delta).clamp(0, shown.len() as isize - 1) as usize;
        self.selected = if next == 0 && delta < 0 {
            None
        } else {
            Some(shown[next].seq)
        };
    }

    pub fn select_newest(&mut self) {
        self.selected = None;
    }

    pub fn select_oldest(&mut self) {
        self.selected = self.shown().last().map(|e| e.seq);
    }

    /// The selected flow (the newest when following).
    pub fn selected_flow(&self) -> Option<&Flow> {
        let shown = self.shown();
        shown.get(self.selected_index(&shown)).map(|e| &e.flow)
    }

    /// Seconds between the oldest and newest shown flow (at least 1), for rates.
    fn span_seconds(shown: &[&Entry]) -> f64 {
        let secs = |e: &&Entry| {
            e.flow
                .time
                .as_ref()
                .map(|t| t.seconds as f64 + t.nanos as f64 / 1e9)
        };
        match (shown.last().and_then(secs), shown.first().and_then(secs)) {
            (Some(old), Some(new)) if new > old => (new - old).max(1.0),
            _ => 1.0,
        }
    }

    /// Service map edges (client → server) over the shown flows, busiest first.
    pub fn service_edges(&self) -> Vec<EdgeStats> {
        let shown = self.shown();
        let span = Self::span_seconds(&shown);
        let mut edges: HashMap<(String, String), EdgeAcc> = HashMap::new();
        for e in &shown {
            let f = &e.flow;
            let mut src =
                endpoint_label(f.source.as_ref(), f.ip.as_ref().map(|i| i.source.as_str()));
            let mut dst = endpoint_label(
                f.destination.as_ref(),
                f.ip.as_ref().map(|i| i.destination.as_str()),
            );
            if f.is_reply.as_ref().is_some_and(|r| r.value) {
                std::mem::swap(&mut src, &mut dst);
            }
            let acc = edges.entry((src, dst)).or_default();
            acc.add(f);
        }
        let mut out: Vec<EdgeStats> = edges
            .into_iter()
            .map(|((source, target), acc)| acc.finish(source, target, span))
            .collect();
        out.sort_by(|a, b| {
            b.flows
                .cmp(&a.flows)
                .then_with(|| a.source.cmp(&b.source))
                .then_with(|| a.target.cmp(&b.target))
        });
        out
    }

    /// Drops by reason over the shown flows, most first.
    pub fn top_drops(&self) -> Vec<(String, u64)> {
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for e in self.shown() {
            let f = &e.flow;
            if f.verdict != Verdict::Dropped as i32 {
                continue;
            }
            let reason = webb_proto::flow::DropReason::try_from(f.drop_reason_desc)
                .map(|r| r.as_str_name().to_string())
                .unwrap_or_else(|_| f.drop_reason_desc.to_string());
            *by.entry(reason).or_default() += 1;
        }
        let mut out: Vec<(String, u64)> = by.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// HTTP requests by method and path over the shown flows.
    pub fn http_routes(&self) -> Vec<RouteStats> {
        let shown = self.shown();
        let span = Self::span_seconds(&shown);
        let mut routes: BTreeMap<(String, String), RouteAcc> = BTreeMap::new();
        for e in &shown {
            let Some(layer7::Record::Http(http)) =
                e.flow.l7.as_ref().and_then(|l| l.record.as_ref())
            else {
                continue;
            };
            let path = url_path(&http.url);
            let acc = routes.entry((http.method.clone(), path)).or_default();
            let l7 = e.flow.l7.as_ref().expect("l7 present");
            if l7.r#type == webb_proto::flow::L7FlowType::Response as i32 {
                acc.responses += 1;
                if http.code >= 500 {
                    acc.errors += 1;
                }
                if l7.latency_ns > 0 {
                    acc.latencies.push(l7.latency_ns);
                }
            } else {
                acc.requests += 1;
            }
        }
        routes
            .into_iter()
            .map(|((method, path), mut acc)| RouteStats {
                method,
                path,
                requests_per_second: acc.requests.max(acc.responses) as f64 / span,
                errors: acc.errors,
                responses: acc.responses,
                p95_ms: percentile(&mut acc.latencies, 0.95).map(|ns| ns as f64 / 1e6),
            })
            .collect()
    }
}

/// An endpoint's short name: namespace/workload, namespace/pod, reserved name, or IP.
pub fn endpoint_label(ep: Option<&Endpoint>, ip: Option<&str>) -> String {
    if let Some(ep) = ep {
        if let Some(w) = ep.workloads.first().filter(|w| !w.name.is_empty()) {
            return format!("{}/{}", ep.namespace, w.name);
        }
        if !ep.pod_name.is_empty() {
            return format!("{}/{}", ep.namespace, ep.pod_name);
        }
        // Peers outside the cluster are told apart by address; other reserved ones (host,
        // health, ...) by name.
        if let Some(reserved) = ep.labels.iter().find_map(|l| l.strip_prefix("reserved:"))
            && !reserved.starts_with("world")
        {
            return reserved.to_string();
        }
    }
    ip.unwrap_or("?").to_string()
}

fn url_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    path.split(['?', '#']).next().unwrap_or("/").to_string()
}

fn percentile(values: &mut [u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[derive(Default)]
struct EdgeAcc {
    flows: u64,
    requests: u64,
    errors: u64,
    drops: u64,
    latencies: Vec<u64>,
}

impl EdgeAcc {
    fn add(&mut self, f: &Flow) {
        self.flows += 1;
        if f.verdict == Verdict::Dropped as i32 {
            self.drops += 1;
        }
        if let Some(l7) = f.l7.as_ref()
            && let Some(layer7::Record::Http(http)) = l7.record.as_ref()
            && l7.r#type == webb_proto::flow::L7FlowType::Response as i32
        {
            self.requests += 1;
            if http.code >= 500 {
                self.errors += 1;
            }
            if l7.latency_ns > 0 {
                self.latencies.push(l7.latency_ns);
            }
        }
    }

    fn finish(mut self, source: String, target: String, span: f64) -> EdgeStats {
        EdgeStats {
            source,
            target,
            flows: self.flows,
            requests_per_second: self.requests as f64 / span,
            error_ratio: if self.requests > 0 {
                self.errors as f64 / self.requests as f64
            } else {
                0.0
            },
            p95_ms: percentile(&mut self.latencies, 0.95).map(|ns| ns as f64 / 1e6),
            drops: self.drops,
        }
    }
}

/// One row of the service map.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeStats {
    pub source: String,
    pub target: String,
    pub flows: u64,
    pub requests_per_second: f64,
    pub error_ratio: f64,
    pub p95_ms: Option<f64>,
    pub drops: u64,
}

#[derive(Default)]
struct RouteAcc {
    requests: u64,
    responses: u64,
    errors: u64,
    latencies: Vec<u64>,
}

/// One row of the HTTP view.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteStats {
    pub method: String,
    pub path: String,
    pub requests_per_second: f64,
    pub responses: u64,
    pub errors: u64,
    pub p95_ms: Option<f64>,
}
