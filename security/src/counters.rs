//! What a server refused, by reason, and its TLS handshakes and certificate reloads — as
//! Prometheus counters (`webb_refused_total{reason}`, `webb_tls_handshakes_total{result}`,
//! `webb_tls_reloads_total{result}`) for the agent's and the relay's `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Why a request or connection was refused: each a bound that a client crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// More concurrent GetFlows streams from one client address than allowed.
    StreamsPerClient,
    /// A gRPC request larger than the server decodes.
    MessageSize,
    /// Too many filters, values or too large a regex.
    FilterComplexity,
    /// The payload option asked for by a client not trusted with payload.
    PayloadUntrusted,
    /// An HTTP API request body over the limit.
    HttpBodySize,
    /// HTTP API requests from one client faster than its rate.
    HttpRate,
    /// A SQL query over its memory limit.
    SqlMemory,
    /// A SQL query over its time limit.
    SqlTime,
    /// A connection while too many TLS handshakes were already in progress.
    HandshakesInProgress,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::StreamsPerClient => "streams_per_client",
            Refusal::MessageSize => "message_size",
            Refusal::FilterComplexity => "filter_complexity",
            Refusal::PayloadUntrusted => "payload_untrusted",
            Refusal::HttpBodySize => "http_body_size",
            Refusal::HttpRate => "http_rate",
            Refusal::SqlMemory => "sql_memory",
            Refusal::SqlTime => "sql_time",
            Refusal::HandshakesInProgress => "handshakes_in_progress",
        }
    }
}

/// Refusals, handshakes and reloads of one process. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    refused: Family<Labels, Counter>,
    handshakes: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
}

impl Counters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the counters to a registry (the agent's or the relay's).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "webb_refused",
            "Requests and connections refused at a limit or a trust check, by reason",
            self.refused.clone(),
        );
        registry.register(
            "webb_tls_handshakes",
            "TLS handshakes, by result (ok, or why they failed)",
            self.handshakes.clone(),
        );
        registry.register(
            "webb_tls_reloads",
            "Certificate and CA files read again after they changed, by result",
            self.reloads.clone(),
        );
    }

    pub fn refused(&self, why: Refusal) {
        self.refused
            .get_or_create(&vec![("reason", why.label())])
            .inc();
    }

    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused
            .get_or_create(&vec![("reason", why.label())])
            .get()
    }

    pub(crate) fn handshake(&self, result: &'static str) {
        self.handshakes
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    /// Handshakes that ended with `result` (`ok`, `unknown_ca`, `expired`, `plaintext`, ...).
    pub fn handshake_count(&self, result: &'static str) -> u64 {
        self.handshakes
            .get_or_create(&vec![("result", result)])
            .get()
    }

    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&vec![("result", result)]).inc();
    }

    pub fn reload_count(&self, ok: bool) -> u64 {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&vec![("result", result)]).get()
    }
}
