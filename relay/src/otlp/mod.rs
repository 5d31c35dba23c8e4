//! Network spans over OTLP/gRPC (Tempo, an OpenTelemetry Collector, Jaeger): one span per
//! paired HTTP exchange, joined to the trace its request's `traceparent` names, with drops,
//! policy denials and TCP resets on traced connections as span events.
//!
//! ```text
//! sink ──observe(flow)──▶ Tracker (pairing, per observation point) ──▶ bounded queue ──▶ export task
//!        synchronous, never waits                                     full: oldest out   batches, one
//!                                                                     (counted)          resource per workload
//! ```
//!
//! Backpressure: `observe` takes two uncontended locks and never awaits. The queue holds at
//! most `queue_size` spans; when Tempo is down or slow the oldest spans go first and are
//! counted (`spans_dropped`, stage [`STAGE_OTLP_QUEUE`]). A failed export is retried with
//! backoff while nothing newer had to be dropped; once the queue overflows, the held batch
//! (older than anything queued) is dropped too, so loss is always oldest-first. Spans the
//! receiver refuses are counted as `spans_rejected` (stage [`STAGE_OTLP_EXPORT`]).

pub mod encode;
pub mod exchange;
mod ids;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use webb_proto::flow::Flow;

pub use exchange::{ExchangeConfig, ExchangeStats, SpanRecord, Tracker};

/// `webb_lost_events_total{stage}` of spans pushed out of the full export queue (oldest first),
/// including spans still queued when shutdown's flush ran out of time.
pub const STAGE_OTLP_QUEUE: &str = "relay_otlp_queue";
/// `webb_lost_events_total{stage}` of spans the receiver refused (non-retryable error or
/// partial success).
pub const STAGE_OTLP_EXPORT: &str = "relay_otlp_export";

/// Command-line options of the span exporter (flatten into the relay's arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct OtlpArgs {
    /// OTLP/gRPC endpoint for network spans, e.g. http://127.0.0.1:4317 (Tempo, an
    /// OpenTelemetry Collector). None: no spans.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Requests without a traceparent start new traces (default: they make no span).
    #[arg(long)]
    pub otlp_root_spans: bool,
    /// Spans waiting for export; when full, the oldest are dropped (and counted).
    #[arg(long, default_value_t = 8192, value_name = "SPANS")]
    pub otlp_queue_size: usize,
    /// Spans per export request.
    #[arg(long, default_value_t = 512, value_name = "SPANS")]
    pub otlp_batch_size: usize,
    /// Longest a span waits for its batch to fill.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub otlp_batch_interval: Duration,
    /// Deadline of one export request (and of connecting).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub otlp_export_timeout: Duration,
}

impl OtlpArgs {
    /// The exporter's settings, or `None` without `--otlp-endpoint`.
    pub fn config(&self) -> Option<OtlpConfig> {
        let endpoint = self.otlp_endpoint.as_ref()?.trim();
        if endpoint.is_empty() {
            return None;
        }
        Some(OtlpConfig {
            endpoint: endpoint.to_string(),
            queue_size: self.otlp_queue_size,
            batch_size: self.otlp_batch_size,
            batch_interval: self.otlp_batch_interval,
            export_timeout: self.otlp_export_timeout,
            exchanges: ExchangeConfig {
                root_spans: self.otlp_root_spans,
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

/// Settings of [`SpanExporter`].
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// `http://host:port` of an OTLP/gRPC receiver (`host:port` alone means http).
    pub endpoint: String,
    pub queue_size: usize,
    pub batch_size: usize,
    pub batch_interval: Duration,
    pub export_timeout: Duration,
    /// First wait after a failed export; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How long `shutdown` may spend flushing.
    pub shutdown_timeout: Duration,
    pub exchanges: ExchangeConfig,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4317".into(),
            queue_size: 8192,
            batch_size: 512,
            batch_interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            exchanges: ExchangeConfig::default(),
        }
    }
}

/// Counters of the exporter. Loss is `spans_dropped + spans_rejected` ([`OtlpStats::lost`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpStats {
    /// Spans that entered the export queue.
    pub spans_queued: u64,
    /// Spans the receiver accepted.
    pub spans_exported: u64,
    /// Spans dropped because the queue was full (oldest first) or left at shutdown.
    pub spans_dropped: u64,
    /// Spans the receiver refused.
    pub spans_rejected: u64,
    /// Export requests that failed (each retried or rejected).
    pub export_errors: u64,
    /// Spans waiting in the queue now.
    pub queue_depth: usize,
    /// Pairing and connection state.
    pub exchanges: ExchangeStats,
}

impl OtlpStats {
    pub fn lost(&self) -> u64 {
        self.spans_dropped + self.spans_rejected
    }
}

/// Errors of the exporter's setup (exports themselves are counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("OTLP endpoint {0:?}: only http:// is supported (this build has no TLS)")]
    Tls(String),
    #[error("OTLP endpoint {0:?}: {1}")]
    Endpoint(String, String),
}

/// The bounded queue between `observe` and the export task, and the counters both update.
struct Shared {
    queue: Mutex<VecDeque<SpanRecord>>,
    capacity: usize,
    batch_size: usize,
    wake: Notify,
    closed: AtomicBool,
    queued: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    export_errors: AtomicU64,
    /// Spans taken from the queue whose outcome is not counted yet: the batch being exported
    /// or held for retry. Whatever is left of it at shutdown is counted as dropped.
    outstanding: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, VecDeque<SpanRecord>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `spans` (emptying it); a full queue loses its oldest.
    fn push_all(&self, spans: &mut Vec<SpanRecord>) {
        let n = spans.len() as u64;
        if self.closed.load(Ordering::Relaxed) {
            spans.clear();
            self.dropped.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let mut dropped = 0u64;
        let full = {
            let mut q = self.lock();
            for span in spans.drain(..) {
                if q.len() >= self.capacity && q.pop_front().is_some() {
                    dropped += 1;
                }
                q.push_back(span);
            }
            q.len() >= self.batch_size
        };
        self.queued.fetch_add(n, Ordering::Relaxed);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if full {
            self.wake.notify_one();
        }
    }

    fn take(&self, n: usize) -> Vec<SpanRecord> {
        let mut q = self.lock();
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    fn depth(&self) -> usize {
        self.lock().len()
    }

    /// A batch for the export task: out of the queue, outstanding until its outcome is counted.
    fn take_batch(&self, n: usize) -> Vec<SpanRecord> {
        let spans = self.take(n);
        self.outstanding
            .fetch_add(spans.len() as u64, Ordering::Relaxed);
        spans
    }

    /// `n` outstanding spans are lost.
    fn drop_outstanding(&self, n: u64) {
        self.outstanding.fetch_sub(n, Ordering::Relaxed);
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// Pairing state behind `observe`, with its reusable output buffer.
struct Tracked {
    tracker: Tracker,
    out: Vec<SpanRecord>,
}

struct Inner {
    tracked: Mutex<Tracked>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    shutdown_timeout: Duration,
}

/// Turns the relay's flows into OTLP spans and exports them in the background. Clones share
/// one exporter (one clone in the pipeline's sink, one to shut it down).
#[derive(Clone)]
pub struct SpanExporter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SpanExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanExporter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SpanExporter {
    /// Starts the export task (call within a tokio runtime). Connects lazily: a receiver that
    /// is down at start is not an error, its spans are queued and counted like any other.
    pub fn start(config: OtlpConfig) -> anyhow::Result<SpanExporter> {
        let channel = channel(&config).context("cannot set up the OTLP exporter")?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::with_capacity(config.queue_size.clamp(1, 65536))),
            capacity: config.queue_size.max(1),
            batch_size: config.batch_size.max(1),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            export_errors: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(
            shared.clone(),
            TraceServiceClient::new(channel),
            config.clone(),
            stopped,
        ));
        tracing::info!(endpoint = %config.endpoint, root_spans = config.exchanges.root_spans, "OTLP span export on");
        Ok(SpanExporter {
            inner: Arc::new(Inner {
                tracked: Mutex::new(Tracked {
                    tracker: Tracker::new(config.exchanges.clone()),
                    out: Vec::new(),
                }),
                shared,
                stop,
                task: Mutex::new(Some(task)),
                shutdown_timeout: config.shutdown_timeout,
            }),
        })
    }

    /// Looks at one flow of the relay's stream (every flow, in time order). Never waits:
    /// finished spans go to the bounded queue, which drops its oldest when full.
    pub fn observe(&self, flow: &Flow) {
        let mut t = self.inner.tracked.lock().unwrap_or_else(|e| e.into_inner());
        let Tracked { tracker, out } = &mut *t;
        tracker.observe(flow, out);
        if !out.is_empty() {
            self.inner.shared.push_all(out);
        }
    }

    pub fn stats(&self) -> OtlpStats {
        let s = &self.inner.shared;
        let exchanges = self
            .inner
            .tracked
            .lock()
            .map(|t| t.tracker.stats().clone())
            .unwrap_or_default();
        OtlpStats {
            spans_queued: s.queued.load(Ordering::Relaxed),
            spans_exported: s.exported.load(Ordering::Relaxed),
            spans_dropped: s.dropped.load(Ordering::Relaxed),
            spans_rejected: s.rejected.load(Ordering::Relaxed),
            export_errors: s.export_errors.load(Ordering::Relaxed),
            queue_depth: s.depth(),
            exchanges,
        }
    }

    /// Stops accepting spans and flushes the queue, for at most the shutdown timeout; what is
    /// left is counted as dropped. Exchanges still waiting for a response are counted as
    /// abandoned. Other clones keep working but their spans are counted as dropped.
    pub async fn shutdown(self) {
        let abandoned = self
            .inner
            .tracked
            .lock()
            .map(|mut t| t.tracker.abandon())
            .unwrap_or(0);
        let shared = &self.inner.shared;
        shared.closed.store(true, Ordering::Relaxed);
        let _ = self.inner.stop.send(true);
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(mut task) = task {
            // The task bounds its own flush; this bound only guards against a stuck runtime.
            let grace = self.inner.shutdown_timeout + Duration::from_secs(1);
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                tracing::warn!("OTLP export task did not stop in time; aborted");
                task.abort();
                let _ = task.await;
            }
        }
        // The queue's rest, and the batch the task was exporting or holding when it ended.
        let left =
            shared.take(usize::MAX).len() as u64 + shared.outstanding.swap(0, Ordering::Relaxed);
        shared.dropped.fetch_add(left, Ordering::Relaxed);
        let stats = self.stats();
        tracing::info!(
            exported = stats.spans_exported,
            dropped = stats.spans_dropped,
            rejected = stats.spans_rejected,
            abandoned,
            "OTLP span export stopped"
        );
    }
}

fn channel(config: &OtlpConfig) -> Result<Channel, OtlpError> {
    let url = if config.endpoint.contains("://") {
        config.endpoint.clone()
    } else {
        format!("http://{}", config.endpoint)
    };
    if url.starts_with("https://") {
        return Err(OtlpError::Tls(config.endpoint.clone()));
    }
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| OtlpError::Endpoint(config.endpoint.clone(), e.to_string()))?
        .connect_timeout(config.export_timeout)
        .timeout(config.export_timeout);
    Ok(endpoint.connect_lazy())
}

/// An export that failed in a way worth retrying, kept with what it needs to be dropped.
struct Held {
    request: ExportTraceServiceRequest,
    spans: u64,
    /// `Shared::dropped` when it failed: once that moves, newer spans were lost, so this
    /// (older) batch must go as well.
    dropped_then: u64,
}

enum Outcome {
    Done,
    Retry,
}

/// Logs export failures at most every 10 s, and the recovery once.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    failing: bool,
    suppressed: u64,
}

impl ErrorLog {
    fn failed(&mut self, err: &tonic::Status) {
        self.failing = true;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(code = ?err.code(), message = err.message(), suppressed = self.suppressed, "OTLP export failed");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
    fn ok(&mut self) {
        if self.failing {
            tracing::info!("OTLP export recovered");
            self.failing = false;
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    mut client: TraceServiceClient<Channel>,
    config: OtlpConfig,
    mut stop: watch::Receiver<bool>,
) {
    let batch = config.batch_size.max(1);
    let mut held: Option<Held> = None;
    let mut backoff = config.retry_min;
    let mut log = ErrorLog::default();
    loop {
        if held.is_some() {
            // Waiting out a failure: spans pile up in the queue meanwhile (oldest dropped).
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => break,
            }
        } else {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(config.batch_interval) => {}
                _ = stop.changed() => break,
            }
        }
        if *stop.borrow() {
            break;
        }
        // Export until the queue holds less than a batch (or a failure says wait).
        loop {
            let (request, spans) = match held.take() {
                Some(h) if shared.dropped.load(Ordering::Relaxed) == h.dropped_then => {
                    (h.request, h.spans)
                }
                Some(h) => {
                    // Newer spans were dropped while this waited: it goes too (oldest first).
                    shared.drop_outstanding(h.spans);
                    continue;
                }
                None => {
                    let spans = shared.take_batch(batch);
                    if spans.is_empty() {
                        break;
                    }
                    let n = spans.len() as u64;
                    (encode::export_request(spans), n)
                }
            };
            match export(&mut client, &shared, &request, spans, &config, &mut log).await {
                Outcome::Done => {
                    backoff = config.retry_min;
                    if shared.depth() < batch {
                        break;
                    }
                }
                Outcome::Retry => {
                    held = Some(Held {
                        request,
                        spans,
                        dropped_then: shared.dropped.load(Ordering::Relaxed),
                    });
                    backoff = (backoff * 2).min(config.retry_max);
                    break;
                }
            }
        }
    }
    // Shutdown: one attempt per batch, all within the flush deadline.
    let flush = async {
        if let Some(h) = held.take() {
            if shared.dropped.load(Ordering::Relaxed) != h.dropped_then {
                // Newer spans were dropped while this waited: it goes too (oldest first).
                shared.drop_outstanding(h.spans);
            } else if let Outcome::Retry =
                export(&mut client, &shared, &h.request, h.spans, &config, &mut log).await
            {
                shared.drop_outstanding(h.spans);
            }
        }
        loop {
            let spans = shared.take_batch(batch);
            if spans.is_empty() {
                break;
            }
            let n = spans.len() as u64;
            let request = encode::export_request(spans);
            if let Outcome::Retry =
                export(&mut client, &shared, &request, n, &config, &mut log).await
            {
                shared.drop_outstanding(n);
            }
        }
    };
    if tokio::time::timeout(config.shutdown_timeout, flush)
        .await
        .is_err()
    {
        tracing::warn!("OTLP flush at shutdown ran out of time; the rest is counted as dropped");
    }
}

/// One export request; counts the outcome.
async fn export(
    client: &mut TraceServiceClient<Channel>,
    shared: &Shared,
    request: &ExportTraceServiceRequest,
    spans: u64,
    config: &OtlpConfig,
    log: &mut ErrorLog,
) -> Outcome {
    let call = client.export(request.clone());
    let result = match tokio::time::timeout(config.export_timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded("export timed out")),
    };
    match result {
        Ok(resp) => {
            log.ok();
            shared.outstanding.fetch_sub(spans, Ordering::Relaxed);
            let rejected = resp
                .into_inner()
                .partial_success
                .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
                .min(spans);
            shared
                .exported
                .fetch_add(spans - rejected, Ordering::Relaxed);
            if rejected > 0 {
                shared.rejected.fetch_add(rejected, Ordering::Relaxed);
            }
            Outcome::Done
        }
        Err(status) => {
            shared.export_errors.fetch_add(1, Ordering::Relaxed);
            log.failed(&status);
            if retryable(status.code()) {
                Outcome::Retry
            } else {
                shared.outstanding.fetch_sub(spans, Ordering::Relaxed);
                shared.rejected.fetch_add(spans, Ordering::Relaxed);
                Outcome::Done
            }
        }
    }
}

/// The OTLP specification's retryable gRPC codes (ResourceExhausted too: a busy receiver).
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Cancelled
            | DeadlineExceeded
            | ResourceExhausted
            | Aborted
            | OutOfRange
            | Unavailable
            | DataLoss
    )
}
