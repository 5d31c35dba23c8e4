//! Datapath records → decoder → flow ring: the agent's only writer of the ring.
//!
//! Records arrive in batches from the ring reader's bounded channel; each batch is decoded and
//! pushed, then followers are woken once. Endpoint/interface changes and datapath losses reach
//! this task through a watch channel and a counter, so the ring keeps a single writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use flow_observer::Observed;
use webb_proto::Timestamp;
use webb_proto::flow::{LostEvent, LostEventSource};

use crate::decode::{Decoder, Interfaces};
use crate::endpoints::Endpoints;
use crate::metrics::Metrics;
use crate::policy::PolicyView;

/// Records taken from the channel before followers are woken.
const BATCH: usize = 1024;

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

/// Runs until the record channel closes.
pub async fn run(
    mut records: mpsc::Receiver<Vec<u8>>,
    mut decoder: Decoder,
    state: Arc<Observed>,
    metrics: Arc<Metrics>,
    mut view: watch::Receiver<NodeView>,
    pending_loss: Arc<PendingLoss>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    apply_view(&mut decoder, &mut view);
    loop {
        tokio::select! {
            n = records.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
        if view.has_changed().unwrap_or(false) {
            apply_view(&mut decoder, &mut view);
        }
        let lost = pending_loss.take();
        if lost > 0 {
            state.push_lost(datapath_loss(lost));
        }
        let mut flows = 0;
        for rec in batch.drain(..) {
            match decoder.decode_bytes(&rec) {
                Ok(r) => {
                    state.push_flow(&r.flow, r.extras.as_ref());
                    flows += 1;
                }
                Err(e) => {
                    metrics.decode_error();
                    tracing::debug!(error = %e, "undecodable datapath record");
                }
            }
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
