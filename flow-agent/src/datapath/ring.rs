//! Ring-buffer reader: drains the BPF ring into a bounded channel of record batches.
//!
//! The kernel side writes with `BPF_RB_NO_WAKEUP` until the pending data passes a threshold
//! (then `BPF_RB_FORCE_WAKEUP`), so the reader also drains on a short timer: wakeups stay rare
//! (each costs an IPI, ~5 µs under Firecracker) and no record waits longer than one interval.
//! When the channel is full the reader waits: back-pressure fills the ring, and the kernel
//! counts what it cannot write (`ring_fail`), so loss is counted in exactly one place.
//! Records travel packed end to end in batches, one per drain pass: one allocation and one
//! channel message per pass instead of per record (the per-record versions cost more than
//! decoding the record).

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

/// Records drained in one pass, packed end to end in one buffer. Its buffers go back to the
/// reader's pool when it is dropped.
#[derive(Debug, Default)]
pub struct RecordBatch {
    data: Vec<u8>,
    /// Where each record ends in `data`.
    ends: Vec<u32>,
    pool: Option<Arc<BatchPool>>,
}

impl RecordBatch {
    pub fn push(&mut self, record: &[u8]) {
        self.data.extend_from_slice(record);
        // Records are at most a few KB and a batch at most RING_BATCH of them.
        self.ends.push(self.data.len() as u32);
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The records, in the order they were drained.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let r = &self.data[start..end as usize];
            start = end as usize;
            r
        })
    }
}

impl Drop for RecordBatch {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.put(
                std::mem::take(&mut self.data),
                std::mem::take(&mut self.ends),
            );
        }
    }
}

/// Buffers of batches the pipeline is done with, for the reader's next passes: a pass then
/// allocates nothing, and large buffers freed on one thread and allocated on another do not
/// fragment the heap that the flow ring's many small entries live in (VmHWM grew by ~10 MB
/// under load without it). Bounded: past `POOL_MAX` buffers, a returned one is freed.
#[derive(Debug, Default)]
pub(crate) struct BatchPool(std::sync::Mutex<Vec<(Vec<u8>, Vec<u32>)>>);

/// Batch buffers kept at most: the channel's batches, the pipeline's and the reader's.
const POOL_MAX: usize = 16;

impl BatchPool {
    /// An empty batch that will come back here.
    pub(crate) fn take(self: &Arc<Self>) -> RecordBatch {
        let (data, ends) = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        RecordBatch {
            data,
            ends,
            pool: Some(Arc::clone(self)),
        }
    }

    fn put(&self, mut data: Vec<u8>, mut ends: Vec<u32>) {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX {
            data.clear();
            ends.clear();
            pool.push((data, ends));
        }
    }
}

impl<R: AsRef<[u8]>> FromIterator<R> for RecordBatch {
    fn from_iter<I: IntoIterator<Item = R>>(records: I) -> Self {
        let mut b = RecordBatch::default();
        for r in records {
            b.push(r.as_ref());
        }
        b
    }
}

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
    tx: mpsc::Sender<RecordBatch>,
    interval: Duration,
    stats: Arc<ReaderStats>,
    batch_max: usize,
) {
    pump(
        ring,
        "event ring",
        tx,
        interval,
        stats,
        move |ring, stats, batch| {
            drain_ring(ring, stats, batch_max, |r| batch.push(r));
        },
    )
    .await
}

/// Drains one CPU's perf buffer until the receiver is dropped (perf transport).
pub(crate) async fn run_perf(
    buf: PerfEventArrayBuffer<MapData>,
    tx: mpsc::Sender<RecordBatch>,
    interval: Duration,
    stats: Arc<ReaderStats>,
) {
    pump(
        buf,
        "perf buffer",
        tx,
        interval,
        stats,
        |buf, stats, batch| drain_perf(buf, stats, |r| batch.push(r)),
    )
    .await
}

/// Records copied out of the ring per batch: ring items borrow the ring and cannot be held
/// across the channel's await. The channel holds `channel_capacity / RING_BATCH` batches.
pub(crate) const RING_BATCH: usize = 256;

/// The reader loop both transports share: waits for the kernel's wakeup or the drain timer,
/// then calls `drain` until it copies nothing more, sending every record to `tx`.
async fn pump<T: std::os::fd::AsRawFd>(
    source: T,
    what: &'static str,
    tx: mpsc::Sender<RecordBatch>,
    interval: Duration,
    stats: Arc<ReaderStats>,
    mut drain: impl FnMut(&mut T, &ReaderStats, &mut RecordBatch),
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
    let pool = Arc::new(BatchPool::default());
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
            let mut batch = pool.take();
            drain(afd.get_mut(), &stats, &mut batch);
            if batch.is_empty() {
                break;
            }
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    }
}

/// Hands up to `limit` pending records of the ring to `out`, counting them once per pass.
fn drain_ring(
    ring: &mut RingBuf<MapData>,
    stats: &ReaderStats,
    limit: usize,
    mut out: impl FnMut(&[u8]),
) {
    let (mut records, mut bytes) = (0, 0);
    while records < limit {
        let Some(item) = ring.next() else { break };
        bytes += item.len() as u64;
        records += 1;
        out(&item);
    }
    stats.bytes.fetch_add(bytes, Ordering::Relaxed);
    stats.records.fetch_add(records as u64, Ordering::Relaxed);
}

/// Synchronously takes every pending record (tests and tools without a runtime).
pub(crate) fn drain_now(ring: &mut RingBuf<MapData>, stats: &ReaderStats) -> Vec<EventRecord> {
    let mut out = Vec::new();
    drain_ring(ring, stats, usize::MAX, |r| out.push(r.to_vec()));
    out
}

/// Synchronously takes every pending sample of one perf buffer.
pub(crate) fn drain_perf_now(
    buf: &mut PerfEventArrayBuffer<MapData>,
    stats: &ReaderStats,
) -> Vec<EventRecord> {
    let mut out = Vec::new();
    drain_perf(buf, stats, |r| out.push(r.to_vec()));
    out
}

/// Hands every pending sample of one perf buffer to `out`. Samples carry the kernel's
/// alignment padding after the record; the parser ignores bytes past `cap_len`.
fn drain_perf(
    buf: &mut PerfEventArrayBuffer<MapData>,
    stats: &ReaderStats,
    mut out: impl FnMut(&[u8]),
) {
    let mut records = 0;
    let mut rec = Vec::new();
    buf.for_each(|ev| match ev {
        PerfEvent::Sample { head, tail } => {
            let r = if tail.is_empty() {
                head
            } else {
                // A sample that wraps around the buffer's end: joined.
                rec.clear();
                rec.extend_from_slice(head);
                rec.extend_from_slice(tail);
                &rec[..]
            };
            stats.bytes.fetch_add(r.len() as u64, Ordering::Relaxed);
            records += 1;
            out(r);
        }
        PerfEvent::Lost { count } => {
            stats.perf_lost.fetch_add(count, Ordering::Relaxed);
        }
    });
    stats.records.fetch_add(records, Ordering::Relaxed);
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
