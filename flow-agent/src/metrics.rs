//! The agent's operational metrics (Prometheus text on `--metrics-listen`, default :9962):
//! datapath counters, ring depth, and loss by stage as `webb_lost_events_total{stage,node}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// `toFQDNs` learning: the identities of learned addresses, given back and refused.
#[derive(Debug, Default)]
struct FqdnMetrics {
    live: Gauge,
    waiting: Gauge,
    cidr: Family<StateLabels, Gauge>,
    released: Counter,
    refused: Family<ReasonLabels, Counter>,
    last: Mutex<crate::policy::FqdnStats>,
}

impl FqdnMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "webb_fqdn_identities",
            "Addresses learned from DNS answers (toFQDNs) holding an identity now",
            self.live.clone(),
        );
        registry.register(
            "webb_cidr_identities",
            "CIDR identities (policies' prefixes and learned toFQDNs addresses): in_use now, max at once (--cidr-identities)",
            self.cidr.clone(),
        );
        registry.register(
            "webb_fqdn_identities_waiting",
            "Learned toFQDNs addresses refused an identity (all were held by live addresses), not allowed until one is given back",
            self.waiting.clone(),
        );
        registry.register(
            "webb_fqdn_identities_released",
            "Identities learned toFQDNs addresses gave back when their TTL and grace ran out",
            self.released.clone(),
        );
        registry.register(
            "webb_fqdn_refused",
            "toFQDNs addresses not allowed: every CIDR identity was held by a live address (reason=identities), or the learned (address, name) table was full of live pairs (reason=names)",
            self.refused.clone(),
        );
        for reason in ["identities", "names"] {
            let _ = self.refused.get_or_create(&ReasonLabels { reason });
        }
    }

    fn set(&self, now: crate::policy::FqdnStats) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let id = now.identities;
        self.live.set(id.live as i64);
        self.waiting.set(id.waiting as i64);
        self.cidr
            .get_or_create(&StateLabels { state: "in_use" })
            .set(id.in_use as i64);
        self.cidr
            .get_or_create(&StateLabels { state: "max" })
            .set(id.cap as i64);
        self.released
            .inc_by(id.released.saturating_sub(last.identities.released));
        self.refused
            .get_or_create(&ReasonLabels {
                reason: "identities",
            })
            .inc_by(id.refused.saturating_sub(last.identities.refused));
        self.refused
            .get_or_create(&ReasonLabels { reason: "names" })
            .inc_by(now.names_refused.saturating_sub(last.names_refused));
        *last = now;
    }
}

/// Totals the datapath keeps (per-CPU counters summed), reported as counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatapathTotals {
    pub packets: u64,
    pub bytes: u64,
    pub events: u64,
    pub reserve_failures: u64,
}

/// Every metric the agent exports. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    lost: Family<StageLabels, Counter>,
    flows: Counter,
    decode_errors: Counter,
    ring_depth: Gauge,
    ring_capacity: Gauge,
    endpoint_reloads: Family<ResultLabels, Counter>,
    dp_packets: Counter<u64, AtomicU64>,
    dp_bytes: Counter<u64, AtomicU64>,
    dp_events: Counter<u64, AtomicU64>,
    dp_reserve_failures: Counter<u64, AtomicU64>,
    dp_last: Mutex<DatapathTotals>,
    dp_ring_size: Gauge,
    dp_ring_used: Gauge,
    dp_ring_peak: Gauge,
    policy_reloads: Family<ResultLabels, Counter>,
    policy_valid: Gauge,
    policy_revision: Gauge,
    policy_entries: Gauge,
    policy_count: Gauge,
    fqdn: FqdnMetrics,
}

/// Loss stages named in `webb_lost_events_total`.
pub mod stage {
    /// The kernel could not reserve ring-buffer space for an event.
    pub const DATAPATH_RING: &str = "datapath_ring";
    /// A record the decoder could not parse (also a stored flow that would not decode again).
    pub use flow_observer::stage::DECODE;
    /// A GetFlows reader fell behind the flow ring and entries were overwritten.
    pub use flow_observer::stage::HUBBLE_RING_READER;
}

/// The Observer reports its losses and ring depth into the agent's metrics.
impl flow_observer::ObserverMetrics for Metrics {
    fn lost(&self, stage: &str, count: u64) {
        Metrics::lost(self, stage, count);
    }

    fn ring_depth(&self, len: usize) {
        self.set_ring_depth(len as i64);
    }
}

impl Metrics {
    pub fn new(node: &str) -> Self {
        let mut registry =
            Registry::with_labels(std::iter::once(("node".into(), node.to_string().into())));
        let lost = Family::<StageLabels, Counter>::default();
        registry.register(
            "webb_lost_events",
            "Events lost, by pipeline stage",
            lost.clone(),
        );
        let flows = Counter::default();
        registry.register("webb_flows", "Flows decoded and stored", flows.clone());
        let decode_errors = Counter::default();
        registry.register(
            "webb_decode_errors",
            "Datapath records that could not be decoded",
            decode_errors.clone(),
        );
        let ring_depth = Gauge::default();
        registry.register(
            "webb_ring_flows",
            "Entries currently held in the flow ring",
            ring_depth.clone(),
        );
        let ring_capacity = Gauge::default();
        registry.register(
            "webb_ring_capacity",
            "Capacity of the flow ring",
            ring_capacity.clone(),
        );
        let endpoint_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webb_endpoints_reloads",
            "Endpoints file reloads, by result (ok, error)",
            endpoint_reloads.clone(),
        );
        let dp_packets = Counter::<u64, AtomicU64>::default();
        registry.register(
            "webb_datapath_packets",
            "Packets seen by the datapath programs",
            dp_packets.clone(),
        );
        let dp_bytes = Counter::<u64, AtomicU64>::default();
        registry.register(
            "webb_datapath_bytes",
            "Bytes seen by the datapath programs",
            dp_bytes.clone(),
        );
        let dp_events = Counter::<u64, AtomicU64>::default();
        registry.register(
            "webb_datapath_events",
            "Events emitted by the datapath programs",
            dp_events.clone(),
        );
        let dp_reserve_failures = Counter::<u64, AtomicU64>::default();
        registry.register(
            "webb_datapath_reserve_failures",
            "Events the datapath could not emit (ring buffer full)",
            dp_reserve_failures.clone(),
        );
        let dp_ring_size = Gauge::default();
        registry.register(
            "webb_datapath_ring_size_bytes",
            "Size of the BPF ring buffer that carries datapath events to the agent",
            dp_ring_size.clone(),
        );
        let dp_ring_used = Gauge::default();
        registry.register(
            "webb_datapath_ring_used_bytes",
            "Bytes waiting in the BPF ring buffer when last sampled (every second)",
            dp_ring_used.clone(),
        );
        let dp_ring_peak = Gauge::default();
        registry.register(
            "webb_datapath_ring_peak_bytes",
            "Largest BPF ring buffer fill a write saw during the last sampling interval (high-water mark; at the size, writes fail and count as lost)",
            dp_ring_peak.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webb_policy_reloads",
            "Policy loads, by result (ok, error: the policy in force stays)",
            policy_reloads.clone(),
        );
        let policy_valid = Gauge::default();
        registry.register(
            "webb_policy_config_valid",
            "1 when the policy files on disk are the policy in force, 0 after a rejected load",
            policy_valid.clone(),
        );
        let policy_revision = Gauge::default();
        registry.register(
            "webb_policy_revision",
            "Datapath policy revision in force",
            policy_revision.clone(),
        );
        let policy_entries = Gauge::default();
        registry.register(
            "webb_policy_map_entries",
            "Policy map entries of the revision in force",
            policy_entries.clone(),
        );
        let policy_count = Gauge::default();
        registry.register("webb_policies", "Policies in force", policy_count.clone());
        let fqdn = FqdnMetrics::default();
        fqdn.register(&mut registry);
        // Every stage is exported from the start, at zero, so dashboards see the series.
        for s in [
            stage::DATAPATH_RING,
            stage::DECODE,
            stage::HUBBLE_RING_READER,
        ] {
            let _ = lost.get_or_create(&StageLabels {
                stage: s.to_string(),
            });
        }
        Metrics {
            registry,
            lost,
            flows,
            decode_errors,
            ring_depth,
            ring_capacity,
            endpoint_reloads,
            dp_packets,
            dp_bytes,
            dp_events,
            dp_reserve_failures,
            dp_last: Mutex::new(DatapathTotals::default()),
            dp_ring_size,
            dp_ring_used,
            dp_ring_peak,
            policy_reloads,
            policy_valid,
            policy_revision,
            policy_entries,
            policy_count,
            fqdn,
        }
    }

    /// Counts `count` events lost at `stage` (see [`stage`]).
    pub fn lost(&self, stage: &str, count: u64) {
        if count > 0 {
            self.lost
                .get_or_create(&StageLabels {
                    stage: stage.to_string(),
                })
                .inc_by(count);
        }
    }

    pub fn flows(&self, count: u64) {
        self.flows.inc_by(count);
    }

    pub fn decode_error(&self) {
        self.decode_errors.inc();
        self.lost(stage::DECODE, 1);
    }

    pub fn set_ring_depth(&self, depth: i64) {
        self.ring_depth.set(depth);
    }

    pub fn set_ring_capacity(&self, capacity: i64) {
        self.ring_capacity.set(capacity);
    }

    pub fn endpoints_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.endpoint_reloads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// A policy load: `ok` when it went into force, else rejected (the old one stays).
    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        self.policy_valid.set(i64::from(ok));
    }

    /// The policy in force: datapath revision, map entries and number of policies.
    pub fn set_policy(&self, revision: u32, entries: usize, policies: usize) {
        self.policy_revision.set(i64::from(revision));
        self.policy_entries.set(entries as i64);
        self.policy_count.set(policies as i64);
    }

    /// How `toFQDNs` learning stands (totals; the counters advance by what is new).
    pub fn set_fqdn(&self, now: crate::policy::FqdnStats) {
        self.fqdn.set(now);
    }

    /// Records the datapath's current totals; returns how many reserve failures are new (so
    /// the caller can tell readers about them as lost events).
    pub fn datapath_totals(&self, now: DatapathTotals) -> u64 {
        let mut last = self.dp_last.lock().unwrap_or_else(|e| e.into_inner());
        let delta = |n: u64, l: u64| n.saturating_sub(l);
        self.dp_packets.inc_by(delta(now.packets, last.packets));
        self.dp_bytes.inc_by(delta(now.bytes, last.bytes));
        self.dp_events.inc_by(delta(now.events, last.events));
        let new_failures = delta(now.reserve_failures, last.reserve_failures);
        self.dp_reserve_failures.inc_by(new_failures);
        self.lost(stage::DATAPATH_RING, new_failures);
        *last = now;
        new_failures
    }

    /// The BPF ring's size, sampled fill and high-water mark of the last interval, in bytes.
    pub fn set_datapath_ring(&self, size: u64, used: u64, peak: u64) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.dp_ring_size.set(g(size));
        self.dp_ring_used.set(g(used));
        self.dp_ring_peak.set(g(peak));
    }

    /// Where other parts add their collectors (the TLS and limit counters of webb-security).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, metrics).await
}

/// Serves `GET /metrics` on an already bound listener.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_exported_by_stage_and_node() {
        let m = Metrics::new("vn1");
        m.lost(stage::HUBBLE_RING_READER, 5);
        let text = m.encode();
        assert!(
            text.contains(r#"webb_lost_events_total{node="vn1",stage="hubble_ring_reader"} 5"#)
                || text
                    .contains(r#"webb_lost_events_total{stage="hubble_ring_reader",node="vn1"} 5"#),
            "{text}"
        );
    }

    #[test]
    fn datapath_totals_become_counters_and_new_reserve_failures_are_losses() {
        let m = Metrics::new("vn1");
        let t = |packets, failures| DatapathTotals {
            packets,
            bytes: packets * 100,
            events: packets / 2,
            reserve_failures: failures,
        };
        assert_eq!(m.datapath_totals(t(10, 0)), 0);
        assert_eq!(m.datapath_totals(t(30, 4)), 4);
        let text = m.encode();
        assert!(
            text.contains(r#"webb_datapath_packets_total{node="vn1"} 30"#),
            "{text}"
        );
        assert!(text.contains("stage=\"datapath_ring\""), "{text}");
    }

    #[test]
    fn ring_fill_is_exported_as_size_sample_and_peak() {
        let m = Metrics::new("vn1");
        m.set_datapath_ring(4 << 20, 4096, 65536);
        let text = m.encode();
        for line in [
            r#"webb_datapath_ring_size_bytes{node="vn1"} 4194304"#,
            r#"webb_datapath_ring_used_bytes{node="vn1"} 4096"#,
            r#"webb_datapath_ring_peak_bytes{node="vn1"} 65536"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
