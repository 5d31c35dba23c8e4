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
    pump(
        ring,
        "event ring",
        tx,
        interval,
        stats,
        |ring, stats, batch| drain_ring(ring, stats, batch, RING_BATCH),
    )
    .await
}

/// Drains one CPU's perf buffer until the receiver is dropped (perf transport).
pub(crate) async fn run_perf(
    buf: PerfEventArrayBuffer<MapData>,
    tx: mpsc::Sender<EventRecord>,
    interval: Duration,
    stats: Arc<ReaderStats>,
) {
    pump(buf, "perf buffer", tx, interval, stats, drain_perf).await
}

/// Records copied out of the ring per pass before they are sent: ring items borrow the ring and
/// cannot be held across the channel's await.
const RING_BATCH: usize = 1024;

/// The reader loop both transports share: waits for the kernel's wakeup or the drain timer,
/// then calls `drain` until it copies nothing more, sending every record to `tx`.
async fn pump<T: std::os::fd::AsRawFd>(
    source: T,
    what: &'static str,
    tx: mpsc::Sender<EventRecord>,
    interval: Duration,
    stats: Arc<ReaderStats>,
    mut drain: impl FnMut(&mut T, &ReaderStats, &mut Vec<EventRecord>),
) {
    // SAFETY: the buffer's fd stays open for as long as the AsyncFd owns it, and nothing else
    // registers it with the reactor (tokio's requirement for `register`).
    let mut afd = match unsafe { AsyncFd::register(source) } {
        Ok(afd) => afd,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the {what} with tokio");
            return;
        }
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<EventRecord> = Vec::with_capacity(RING_BATCH);
    loop {
        tokio::select! {
            r = afd.readable_mut() => match r {
                Ok(mut guard) => {
                    guard.clear_ready();
                    stats.wakeups.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "{what} poll failed");
                    return;
                }
            },
            _ = tick.tick() => {}
            _ = tx.closed() => return,
        }
        loop {
            drain(afd.get_mut(), &stats, &mut batch);
            if batch.is_empty() {
                break;
            }
            for rec in batch.drain(..) {
                if tx.send(rec).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Copies up to `limit` pending records out of the ring into `out`.
fn drain_ring(
    ring: &mut RingBuf<MapData>,
    stats: &ReaderStats,
    out: &mut Vec<EventRecord>,
    limit: usize,
) {
    let before = out.len();
    while out.len() - before < limit {
        let Some(item) = ring.next() else { break };
        stats.bytes.fetch_add(item.len() as u64, Ordering::Relaxed);
        out.push(item.to_vec());
    }
    stats
        .records
        .fetch_add((out.len() - before) as u64, Ordering::Relaxed);
}

/// Synchronously takes every pending record (tests and tools without a runtime).
pub(crate) fn drain_now(ring: &mut RingBuf<MapData>, stats: &ReaderStats) -> Vec<EventRecord> {
    let mut out = Vec::new();
    drain_ring(ring, stats, &mut out, usize::MAX);
    out
}

/// Synchronously takes every pending sample of one perf buffer.
pub(crate) fn drain_perf_now(
    buf: &mut PerfEventArrayBuffer<MapData>,
    stats: &ReaderStats,
) -> Vec<EventRecord> {
    let mut out = Vec::new();
    drain_perf(buf, stats, &mut out);
    out
}

/// Copies every pending sample out of one perf buffer into `out`. Samples carry the kernel's
/// alignment padding after the record; the parser ignores bytes past `cap_len`.
fn drain_perf(
    buf: &mut PerfEventArrayBuffer<MapData>,
    stats: &ReaderStats,
    out: &mut Vec<EventRecord>,
) {
    let before = out.len();
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
    stats
        .records
        .fetch_add((out.len() - before) as u64, Ordering::Relaxed);
}

/// Read-only view of a BPF ring buffer's consumer and producer positions (the two metadata
/// pages the kernel lets userspace map), so the fill can be sampled without touching the
/// reader that owns the ring.
pub(crate) struct RingPositions {
    consumer: *const u8,
    producer: *const u8,
    page: usize,
    // Keeps the map alive as long as the mappings.
    _fd: std::os::fd::OwnedFd,
}

// SAFETY: the pointers are read-only shared mappings read with atomic loads only.
unsafe impl Send for RingPositions {}
unsafe impl Sync for RingPositions {}

impl RingPositions {
    /// Maps the metadata pages of the ring behind `fd` (a duplicate the view keeps).
    pub(crate) fn new(fd: std::os::fd::OwnedFd) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| std::io::Error::other("page size unknown"))?;
        let map = |offset: usize| -> std::io::Result<*const u8> {
            // SAFETY: a fresh read-only shared mapping of one page of a ring-buffer map fd; the
            // kernel validates the offset (page 0: consumer position, page 1: producer).
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    offset as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(p as *const u8)
            }
        };
        let consumer = map(0)?;
        let producer = match map(page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: unmapping the page mapped just above.
                unsafe { libc::munmap(consumer as *mut libc::c_void, page) };
                return Err(e);
            }
        };
        Ok(RingPositions {
            consumer,
            producer,
            page,
            _fd: fd,
        })
    }

    /// Bytes written by the kernel and not yet consumed by the reader (record headers included).
    pub(crate) fn used(&self) -> u64 {
        // SAFETY: each page starts with the kernel's `unsigned long` position, page aligned.
        let (c, p) = unsafe {
            (
                (*(self.consumer as *const std::sync::atomic::AtomicUsize)).load(Ordering::Acquire),
                (*(self.producer as *const std::sync::atomic::AtomicUsize)).load(Ordering::Acquire),
            )
        };
        p.wrapping_sub(c) as u64
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: both pages were mapped by `new` with this length and are unmapped once.
        unsafe {
            libc::munmap(self.consumer as *mut libc::c_void, self.page);
            libc::munmap(self.producer as *mut libc::c_void, self.page);
        }
    }
}
