//! Bounded flow ring: one writer, any number of readers, oldest entries overwritten.
//!
//! Hubble's semantics: the capacity is 2^n−1 (the default 4095), readers walk by sequence number
//! and a reader that falls behind the writer learns how many entries it missed instead of
//! slowing anyone down. Every slot has its own small lock held only to swap or clone an `Arc`,
//! so the writer and readers only meet when they touch the same slot; the write position is an
//! atomic. Nothing here knows about BPF or flows, so the relay can keep its ring the same way.

use std::pin::pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Hubble's default ring capacity.
pub const DEFAULT_CAPACITY: usize = 4095;
/// Largest capacity Hubble accepts (`hubble-event-buffer-capacity`).
pub const MAX_CAPACITY: usize = 65535;

/// A capacity that is not 2^n−1 (or out of range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ring capacity {0} is invalid: it must be 2^n-1 between 1 and {max} (e.g. 4095)", max = MAX_CAPACITY)]
pub struct CapacityError(pub usize);

/// Checks a capacity the way Hubble does: 2^n−1, 1 ≤ capacity ≤ 65535.
pub fn validate_capacity(capacity: usize) -> Result<usize, CapacityError> {
    if capacity == 0 || capacity > MAX_CAPACITY || !(capacity + 1).is_power_of_two() {
        return Err(CapacityError(capacity));
    }
    Ok(capacity)
}

struct Slot<T> {
    seq: u64,
    item: Option<Arc<T>>,
}

/// What a reader finds at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The entry was overwritten; the oldest readable position is given.
    Overwritten { oldest: u64 },
    /// Nothing has been written at this position yet.
    NotYet,
}

/// The ring itself. Share it as `Arc<Ring<T>>`.
pub struct Ring<T> {
    slots: Box<[Mutex<Slot<T>>]>,
    mask: u64,
    capacity: u64,
    /// Sequence number of the next write (= entries written since start).
    head: AtomicU64,
    notify: Notify,
}

impl<T> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("head", &self.head())
            .finish()
    }
}

impl<T> Ring<T> {
    /// A ring holding at most `capacity` entries (2^n−1, see [`validate_capacity`]).
    pub fn new(capacity: usize) -> Result<Self, CapacityError> {
        if capacity == 0 || !(capacity + 1).is_power_of_two() {
            return Err(CapacityError(capacity));
        }
        // One slot more than the capacity: the slot being overwritten is never counted readable.
        let slots = (0..capacity + 1)
            .map(|_| {
                Mutex::new(Slot {
                    seq: u64::MAX,
                    item: None,
                })
            })
            .collect();
        Ok(Ring {
            slots,
            mask: capacity as u64,
            capacity: capacity as u64,
            head: AtomicU64::new(0),
            notify: Notify::new(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Position of the next write, i.e. how many entries were ever written.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Oldest position still readable.
    pub fn oldest(&self) -> u64 {
        self.head().saturating_sub(self.capacity)
    }

    /// Entries currently readable.
    pub fn len(&self) -> usize {
        let head = self.head();
        head.min(self.capacity) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.head() == 0
    }

    /// Appends an entry and wakes waiting readers. Only one thread may write.
    pub fn push(&self, item: T) {
        self.push_quiet(item);
        self.notify_readers();
    }

    /// Appends without waking readers; call [`Ring::notify_readers`] after a batch.
    pub fn push_quiet(&self, item: T) {
        let seq = self.head.load(Ordering::Relaxed);
        {
            let mut slot = lock(&self.slots[(seq & self.mask) as usize]);
            slot.seq = seq;
            slot.item = Some(Arc::new(item));
        }
        self.head.store(seq + 1, Ordering::Release);
    }

    /// Wakes every reader waiting for new entries.
    pub fn notify_readers(&self) {
        self.notify.notify_waiters();
    }

    /// Entry at position `seq`.
    pub fn get(&self, seq: u64) -> Result<Arc<T>, ReadError> {
        let head = self.head();
        if seq >= head {
            return Err(ReadError::NotYet);
        }
        let oldest = head.saturating_sub(self.capacity);
        if seq < oldest {
            return Err(ReadError::Overwritten { oldest });
        }
        let slot = lock(&self.slots[(seq & self.mask) as usize]);
        if slot.seq == seq
            && let Some(item) = &slot.item
        {
            return Ok(item.clone());
        }
        drop(slot);
        Err(ReadError::Overwritten {
            oldest: self.oldest().max(seq + 1),
        })
    }

    /// Waits until position `seq` has been written.
    pub async fn wait_for(&self, seq: u64) {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.head() > seq {
                return;
            }
            notified.await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a slot lock cannot leave a slot half-written (two plain stores),
    // so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One step of a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    Entry(u64, Arc<T>),
    /// `count` entries were overwritten before this reader got to them.
    Lost {
        count: u64,
    },
}

/// A cursor over a ring. Falling behind never blocks the writer: the reader skips to the oldest
/// entry still present and reports how many it lost.
pub struct RingReader<T> {
    ring: Arc<Ring<T>>,
    next: u64,
}

impl<T> RingReader<T> {
    /// A reader whose next entry is at position `start`.
    pub fn new(ring: Arc<Ring<T>>, start: u64) -> Self {
        RingReader { ring, next: start }
    }

    pub fn position(&self) -> u64 {
        self.next
    }

    pub fn ring(&self) -> &Arc<Ring<T>> {
        &self.ring
    }

    /// Next entry if one is already written; `None` when the reader has caught up.
    pub fn try_next(&mut self) -> Option<Step<T>> {
        match self.ring.get(self.next) {
            Ok(item) => {
                let seq = self.next;
                self.next += 1;
                Some(Step::Entry(seq, item))
            }
            Err(ReadError::NotYet) => None,
            Err(ReadError::Overwritten { oldest }) => {
                let count = oldest - self.next;
                self.next = oldest;
                Some(Step::Lost { count })
            }
        }
    }

    /// Next entry, waiting for the writer when caught up.
    pub async fn next(&mut self) -> Step<T> {
        loop {
            if let Some(step) = self.try_next() {
                return step;
            }
            self.ring.wait_for(self.next).await;
        }
    }
}

/// Accumulates a reader's losses and lets them out at most once per interval (Hubble sends a
/// `LostEvent` at most once per second per reader).
#[derive(Debug)]
pub struct LossReporter {
    interval: Duration,
    pending: u64,
    last_sent: Option<Instant>,
}

impl LossReporter {
    /// Hubble's `LostEventSendInterval`.
    pub const HUBBLE_INTERVAL: Duration = Duration::from_secs(1);

    pub fn new(interval: Duration) -> Self {
        LossReporter {
            interval,
            pending: 0,
            last_sent: None,
        }
    }

    pub fn record(&mut self, count: u64) {
        self.pending += count;
    }

    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The number lost since the last report, if there is one and a report is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<u64> {
        if self.pending == 0 {
            return None;
        }
        if let Some(last) = self.last_sent
            && now.duration_since(last) < self.interval
        {
            return None;
        }
        self.last_sent = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(cap: usize) -> Arc<Ring<u64>> {
        Arc::new(Ring::new(cap).unwrap())
    }

    #[test]
    fn capacity_must_be_a_power_of_two_minus_one_up_to_65535() {
        for ok in [1, 3, 4095, 65535] {
            assert_eq!(validate_capacity(ok), Ok(ok));
        }
        for bad in [0, 2, 4096, 5000, 131071] {
            assert!(validate_capacity(bad).is_err(), "{bad}");
        }
        assert!(Ring::<u8>::new(4096).is_err());
    }

    #[test]
    fn holds_at_most_capacity_entries_and_overwrites_the_oldest() {
        let r = ring(7);
        for i in 0..20 {
            r.push(i);
        }
        assert_eq!(r.len(), 7);
        assert_eq!(r.head(), 20);
        assert_eq!(r.oldest(), 13);
        assert_eq!(r.get(12), Err(ReadError::Overwritten { oldest: 13 }));
        assert_eq!(*r.get(13).unwrap(), 13);
        assert_eq!(*r.get(19).unwrap(), 19);
        assert_eq!(r.get(20), Err(ReadError::NotYet));
    }

    #[test]
    fn a_reader_sees_every_entry_in_order_across_wraparound() {
        let r = ring(3);
        let mut reader = RingReader::new(r.clone(), 0);
        let mut seen = vec![];
        for i in 0..10 {
            r.push(i);
            while let Some(step) = reader.try_next() {
                match step {
                    Step::Entry(seq, v) => {
                        assert_eq!(seq, *v);
                        seen.push(*v)
                    }
                    Step::Lost { .. } => panic!("reader kept up, nothing lost"),
                }
            }
        }
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_slow_reader_learns_how_many_it_lost_and_others_are_unaffected() {
        let r = ring(3);
        let mut slow = RingReader::new(r.clone(), 0);
        let mut fast = RingReader::new(r.clone(), 0);
        let mut fast_seen = vec![];
        for i in 0..10 {
            r.push(i);
            while let Some(Step::Entry(_, v)) = fast.try_next() {
                fast_seen.push(*v);
            }
        }
        assert_eq!(fast_seen, (0..10).collect::<Vec<_>>());
        assert_eq!(slow.try_next(), Some(Step::Lost { count: 7 }));
        let rest: Vec<u64> = std::iter::from_fn(|| match slow.try_next() {
            Some(Step::Entry(_, v)) => Some(*v),
            _ => None,
        })
        .collect();
        assert_eq!(rest, vec![7, 8, 9]);
    }

    #[tokio::test]
    async fn a_follower_wakes_up_for_new_entries() {
        let r = ring(15);
        let mut reader = RingReader::new(r.clone(), r.head());
        let writer = {
            let r = r.clone();
            tokio::spawn(async move {
                for i in 0..5 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    r.push(i);
                }
            })
        };
        let mut got = vec![];
        for _ in 0..5 {
            match tokio::time::timeout(Duration::from_secs(5), reader.next()).await {
                Ok(Step::Entry(_, v)) => got.push(*v),
                other => panic!("unexpected {other:?}"),
            }
        }
        writer.await.unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn concurrent_writer_and_readers_never_see_torn_or_reordered_entries() {
        let r = ring(63);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut reader = RingReader::new(r.clone(), 0);
                    let (mut last, mut lost, mut seen) = (None::<u64>, 0u64, 0u64);
                    while reader.position() < 200_000 {
                        match reader.try_next() {
                            Some(Step::Entry(seq, v)) => {
                                assert_eq!(seq, *v);
                                if let Some(l) = last {
                                    assert!(*v > l);
                                }
                                last = Some(*v);
                                seen += 1;
                            }
                            Some(Step::Lost { count }) => lost += count,
                            None => std::thread::yield_now(),
                        }
                    }
                    assert_eq!(seen + lost, 200_000);
                })
            })
            .collect();
        for i in 0..200_000u64 {
            r.push(i);
        }
        for t in readers {
            t.join().unwrap();
        }
    }

    #[test]
    fn losses_are_reported_at_most_once_per_interval_and_none_is_forgotten() {
        let mut rep = LossReporter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(rep.take_due(t0), None, "nothing lost, nothing to say");
        rep.record(5);
        assert_eq!(rep.take_due(t0), Some(5));
        rep.record(3);
        rep.record(4);
        assert_eq!(rep.take_due(t0 + Duration::from_millis(500)), None);
        assert_eq!(rep.pending(), 7);
        assert_eq!(rep.take_due(t0 + Duration::from_millis(1000)), Some(7));
    }
}
