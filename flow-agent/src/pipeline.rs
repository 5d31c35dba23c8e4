//! Datapath records → decoder → flow ring: the agent's only writer of the ring.
//!
//! Records arrive in batches from the ring reader's bounded channel; each batch is decoded and
//! pushed, then followers are woken once. Endpoint/interface changes and datapath losses reach
//! this task through a watch channel and a counter, so the ring keeps a single writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};

use flow_observer::Observed;
use webb_proto::Timestamp;
use webb_proto::flow::{LostEvent, LostEventSource};

use crate::datapath::RecordBatch;
use crate::datapath::event::RawEvent;
use crate::decode::{Decoder, Interfaces};
use crate::dns::{self, NameCache};
use crate::endpoints::Endpoints;
use crate::metrics::Metrics;
use crate::policy::PolicyView;
use crate::reinject::Reinjector;

const IPPROTO_TCP: u8 = 6;

/// Record batches taken from the channel before followers are woken.
const BATCHES: usize = 8;

/// How often expired names leave the cache (lookups ignore them already).
const NAME_SWEEP: Duration = Duration::from_secs(5);

/// What the decoder needs to know about the node, replaced as a whole when it changes.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub endpoints: Arc<Endpoints>,
    pub interfaces: Interfaces,
    /// Names of the policy revisions recent records may carry.
    pub policy: Arc<PolicyView>,
}

/// Losses noticed outside the pipeline task (datapath reserve failures), waiting to be put in
/// the ring as `LostEvent`s.
#[derive(Debug, Default)]
pub struct PendingLoss(AtomicU64);

impl PendingLoss {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// DNS answers on their way through the pipeline: the endpoints' name cache (names on flows)
/// and, when `toFQDNs` policy may want them, a bounded queue to the policy.
#[derive(Debug)]
pub struct DnsTap {
    pub cache: NameCache,
    /// Answers (and held answers) for the policy engine; when it is full an answer is not
    /// learned (counted) and a held one is put back at once.
    pub learn: Option<mpsc::Sender<DnsEvent>>,
    /// Puts held answers back when the policy engine cannot take them.
    pub reinjector: Option<Arc<Reinjector>>,
    pub counts: Arc<DnsCounts>,
}

/// A DNS answer for the policy engine, and the frame to put back if the datapath held it.
#[derive(Debug)]
pub struct DnsEvent {
    pub answer: Option<dns::Answer>,
    pub held: Option<Held>,
}

/// A DNS answer the datapath dropped for the agent to put back (`toFQDNs`).
#[derive(Debug)]
pub struct Held {
    pub ifindex: u32,
    /// The whole Ethernet frame.
    pub frame: Vec<u8>,
}

/// DNS records the pipeline saw, by outcome (exported on the agent's `/metrics`).
#[derive(Debug, Default)]
pub struct DnsCounts {
    /// Answers cached (a response to a known endpoint that parsed and chained).
    pub answers: Counter,
    /// Responses that were not whole DNS messages or whose answers did not chain: not cached.
    pub malformed: Counter,
    /// Names evicted from a full endpoint cache.
    pub names_evicted: Counter,
    /// Answers the policy's queue had no room for (not learned for toFQDNs).
    pub learn_dropped: Counter,
    /// DNS-over-TCP response segments whose payload is not one whole message (an answer
    /// spanning segments): not held, not cached, not learned.
    pub tcp_split: Counter,
    /// Held answers put back (by the pipeline or the policy engine).
    pub held: Counter,
    /// Held answers that could not be put back (the client will retry its query).
    pub held_lost: Counter,
}

impl DnsCounts {
    /// Adds the counters to the agent's metrics.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        for (name, help, c) in [
            (
                "webb_dns_answers",
                "DNS answers to endpoints taken into their name caches",
                &self.answers,
            ),
            (
                "webb_dns_malformed",
                "DNS responses not cached: not a whole DNS message, or answers that do not chain from the question",
                &self.malformed,
            ),
            (
                "webb_dns_names_evicted",
                "Names evicted from a full per-endpoint name cache",
                &self.names_evicted,
            ),
            (
                "webb_dns_learn_dropped",
                "DNS answers toFQDNs did not learn: its queue was full",
                &self.learn_dropped,
            ),
            (
                "webb_dns_tcp_split",
                "DNS-over-TCP response segments without one whole message (an answer spanning segments): neither held for toFQDNs nor learned from",
                &self.tcp_split,
            ),
            (
                "webb_dns_held",
                "DNS answers held for toFQDNs and put back",
                &self.held,
            ),
            (
                "webb_dns_held_lost",
                "Held DNS answers that could not be put back (the client retries)",
                &self.held_lost,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
    }

    /// Puts a held answer back, counting the outcome.
    pub fn put_back(&self, reinjector: Option<&Reinjector>, held: &Held) {
        let result = match reinjector {
            Some(r) => r
                .put_back(held.ifindex, &held.frame)
                .map_err(|e| e.to_string()),
            None => Err("no reinjector".to_string()),
        };
        match result {
            Ok(()) => self.held.inc(),
            Err(e) => {
                tracing::warn!(error = %e, "held DNS answer lost");
                self.held_lost.inc()
            }
        };
    }
}

impl DnsTap {
    pub fn new(grace: Duration) -> Self {
        DnsTap {
            cache: NameCache::new(grace),
            learn: None,
            reinjector: None,
            counts: Arc::default(),
        }
    }

    /// Takes the DNS answer a record carries, if any, for an endpoint it knows; a held answer
    /// goes on to the policy engine (which puts it back) even if it did not parse.
    fn observe(&mut self, ev: &RawEvent<'_>, endpoints: &crate::endpoints::Endpoints) {
        let held = ev
            .has_flag(crate::datapath::event::flags::DNS_HELD)
            .then(|| Held {
                ifindex: ev.ifindex,
                frame: ev.payload.to_vec(),
            });
        let answer = match dns::answer_of(ev) {
            Ok(Some(a)) if endpoints.endpoint(&a.client).is_some() => {
                self.counts.answers.inc();
                let evicted = self.cache.evicted();
                self.cache.observe(&a, std::time::Instant::now());
                self.counts
                    .names_evicted
                    .inc_by(self.cache.evicted() - evicted);
                Some(a)
            }
            Ok(_) => None,
            Err(dns::AnswerError::Message(e))
                if ev.l4_proto == IPPROTO_TCP
                    && e.is_truncation()
                    && !ev.has_flag(crate::datapath::event::flags::TRUNCATED) =>
            {
                // The whole segment was captured: the message goes on in later segments.
                self.counts.tcp_split.inc();
                tracing::debug!(error = %e, "DNS-over-TCP answer spans segments");
                None
            }
            Err(e) => {
                self.counts.malformed.inc();
                tracing::debug!(error = %e, "DNS response not cached");
                None
            }
        };
        if answer.is_none() && held.is_none() {
            return;
        }
        let event = DnsEvent { answer, held };
        let refused = match &self.learn {
            Some(tx) => match tx.try_send(event) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e)) => e,
            },
            None => event,
        };
        if refused.answer.is_some() && self.learn.is_some() {
            self.counts.learn_dropped.inc();
        }
        if let Some(h) = &refused.held {
            self.counts.put_back(self.reinjector.as_deref(), h);
        }
    }

    /// Hubble's `destination_names` and `source_names` for a record: what each side resolved
    /// the other by (`None` when no name is known at all).
    fn names_of(&self, ev: &RawEvent<'_>) -> Option<(Vec<String>, Vec<String>)> {
        if self.cache.is_empty() {
            return None;
        }
        let (src, dst) = (ev.src_ip()?, ev.dst_ip()?);
        let now = std::time::Instant::now();
        Some((
            self.cache.names(src, dst, now),
            self.cache.names(dst, src, now),
        ))
    }
}

/// Runs until the record channel closes.
pub async fn run(
    records: mpsc::Receiver<RecordBatch>,
    decoder: Decoder,
    state: Arc<Observed>,
    metrics: Arc<Metrics>,
    view: watch::Receiver<NodeView>,
    pending_loss: Arc<PendingLoss>,
) {
    let dns = DnsTap::new(Duration::from_secs(5));
    run_with_dns(records, decoder, state, metrics, view, pending_loss, dns).await
}

/// [`run`] with the DNS tap given.
pub async fn run_with_dns(
    mut records: mpsc::Receiver<RecordBatch>,
    mut decoder: Decoder,
    state: Arc<Observed>,
    metrics: Arc<Metrics>,
    mut view: watch::Receiver<NodeView>,
    pending_loss: Arc<PendingLoss>,
    mut dns: DnsTap,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batches = Vec::with_capacity(BATCHES);
    let mut names_swept = std::time::Instant::now();
    apply_view(&mut decoder, &mut view);
    loop {
        tokio::select! {
            n = records.recv_many(&mut batches, BATCHES) => {
                if n == 0 {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
        if view.has_changed().unwrap_or(false) {
            apply_view(&mut decoder, &mut view);
            let eps = decoder.endpoints().clone();
            dns.cache
                .expire(std::time::Instant::now(), |ip| eps.endpoint(ip).is_some());
        } else if names_swept.elapsed() >= NAME_SWEEP {
            names_swept = std::time::Instant::now();
            dns.cache.expire(names_swept, |_| true);
        }
        let lost = pending_loss.take();
        if lost > 0 {
            state.push_lost(datapath_loss(lost));
        }
        let mut flows = 0;
        for rec in batches.iter().flat_map(RecordBatch::iter) {
            match RawEvent::parse(rec) {
                Ok(ev) => {
                    dns.observe(&ev, decoder.endpoints());
                    let names = dns.names_of(&ev);
                    // Most records are stored as they are decoded; the rest take the full
                    // decoder (same flow, see `Decoder::store`).
                    let stored = match decoder.store(&ev, names.as_ref()) {
                        Some(s) => s,
                        None => {
                            let mut r = decoder.decode(&ev);
                            if let Some((destination, source)) = names {
                                r.flow.destination_names = destination;
                                r.flow.source_names = source;
                            }
                            decoder.store_record(r)
                        }
                    };
                    state.push_stored(stored);
                    flows += 1;
                }
                Err(e) => {
                    metrics.decode_error();
                    tracing::debug!(error = %e, "undecodable datapath record");
                }
            }
        }
        batches.clear();
        for ns in decoder.take_namespaces() {
            state.note_namespace(&ns);
        }
        metrics.flows(flows);
        state.flush();
    }
}

/// Events the datapath could not emit, as Hubble reports them:
/// `LostEvent{PERF_EVENT_RING_BUFFER}`.
fn datapath_loss(count: u64) -> LostEvent {
    let now = Timestamp::now();
    LostEvent {
        source: LostEventSource::PerfEventRingBuffer as i32,
        num_events_lost: count,
        cpu: None,
        first: Some(now),
        last: Some(now),
    }
}

fn apply_view(decoder: &mut Decoder, view: &mut watch::Receiver<NodeView>) {
    let v = view.borrow_and_update().clone();
    decoder.set_endpoints(v.endpoints);
    decoder.set_policy(v.policy);
    *decoder.interfaces_mut() = v.interfaces;
}
