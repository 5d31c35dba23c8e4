//! Ring-buffer reader: drains the BPF ring into a bounded channel of owned records.
//!
//! The kernel side writes with `BPF_RB_NO_WAKEUP` until the pending data passes a threshold
//! (then `BPF_RB_FORCE_WAKEUP`), so the reader also drains on a short timer: wakeups stay rare
//! (each costs an IPI, ~5 µs under Firecracker) and no record waits longer than one interval.
//! When the channel is full the reader waits: back-pressure fills the ring, and the kernel
//! counts what it cannot write (`ring_fail`), so loss is counted in exactly one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aya::maps::perf::{PerfEvent, PerfEventArrayBuffer};
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// One ring record, owned: a 128-byte header plus captured bytes; parse with
/// [`super::event::RawEvent::parse`].
pub type EventRecord = Vec<u8>;

/// Reader-side counters (shared with [`super::Datapath::counters`]).
#[derive(Debug, Default)]
pub struct ReaderStats {
    /// Records taken from the ring.
    pub records: AtomicU64,
    /// Bytes taken from the ring.
    pub bytes: AtomicU64,
    /// Drain passes triggered by a kernel wakeup (the rest came from the timer).
    pub wakeups: AtomicU64,
    /// Samples perf buffers reported lost (perf transport only).
    pub perf_lost: AtomicU64,
}

/// Drains `ring` until the receiver is dropped. Must run inside a tokio runtime.
pub(crate) async fn run(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<EventRecord>,
    interval: Duration,
    stats: Arc<ReaderStats>,
) {
    // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it, and nothing
    // else registers it with the reactor (tokio's requirement for `register`).
    let mut afd = match unsafe { AsyncFd::register(ring) } {
        Ok(afd) => afd,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the event ring with tokio");
            return;
        }
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<EventRecord> = Vec::with_capacity(1024);
    loop {
        tokio::select! {
            r = afd.readable_mut() => match r {
                Ok(mut guard) => {
                    guard.clear_ready();
                    stats.wakeups.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "event ring poll failed");
                    return;
                }
            },
            _ = tick.tick() => {}
            _ = tx.closed() => return,
        }
        loop {
            // Copy a bounded batch out first: ring items borrow the ring and cannot be held
            // across the channel's await.
            let ring = afd.get_mut();
            while batch.len() < batch.capacity() {
                let Some(item) = ring.next() else { break };
                stats.bytes.fetch_add(item.len() as u64, Ordering::Relaxed);
                batch.push(item.to_vec());
            }
            if batch.is_empty() {
                break;
            }
            stats
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for rec in batch.drain(..) {
                if tx.send(rec).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Synchronously takes every pending record (tests and tools without a runtime).
pub(crate) fn drain_now(ring: &mut RingBuf<MapData>, stats: &ReaderStats) -> Vec<EventRecord> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        stats.bytes.fetch_add(item.len() as u64, Ordering::Relaxed);
        out.push(item.to_vec());
    }
    stats.records.fetch_add(out.len() as u64, Ordering::Relaxed);
    out
}

/// Copies every pending sample out of one perf buffer. Samples carry the kernel's alignment
/// padding after the record; the parser ignores bytes past `cap_len`.
pub(crate) fn drain_perf_now(
    buf: &mut PerfEventArrayBuffer<MapData>,
    stats: &ReaderStats,
) -> Vec<EventRecord> {
    let mut out = Vec::new();
    buf.for_each(|ev| match ev {
        PerfEvent::Sample { head, tail } => {
            let mut rec = Vec::with_capacity(head.len() + tail.len());
            rec.extend_from_slice(head);
            rec.extend_from_slice(tail);
            stats.bytes.fetch_add(rec.len() as u64, Ordering::Relaxed);
            out.push(rec);
        }
        PerfEvent::Lost { count } => {
            stats.perf_lost.fetch_add(count, Ordering::Relaxed);
        }
    });
    stats.records.fetch_add(out.len() as u64, Ordering::Relaxed);
    out
}

/// Drains one CPU's perf buffer until the receiver is dropped (perf transport).
pub(crate) async fn run_perf(
    buf: PerfEventArrayBuffer<MapData>,
    tx: mpsc::Sender<EventRecord>,
    interval: Duration,
    stats: Arc<ReaderStats>,
) {
    // SAFETY: the perf buffer's fd stays open while the AsyncFd owns it and is registered once.
    let mut afd = match unsafe { AsyncFd::register(buf) } {
        Ok(afd) => afd,
        Err(e) => {
            tracing::error!(error = %e, "cannot register a perf buffer with tokio");
            return;
        }
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = afd.readable_mut() => match r {
                Ok(mut guard) => {
                    guard.clear_ready();
                    stats.wakeups.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "perf buffer poll failed");
                    return;
                }
            },
            _ = tick.tick() => {}
            _ = tx.closed() => return,
        }
        for rec in drain_perf_now(afd.get_mut(), &stats) {
            if tx.send(rec).await.is_err() {
                return;
            }
        }
    }
}
