//! Time-ordered merge of many peers' streams with Hubble relay's sort-buffer semantics
//! (notes/hubble-api.md §2.3): a priority queue ordered by time, at most `max_len` (100)
//! entries — when full the oldest goes out before the new one comes in —, a drain of
//! everything older than now − `drain_timeout` (1 s) whenever nothing arrived for that long,
//! and everything in order at the end.
//!
//! [`SortBuffer`] is the pure structure; [`run`] drives it from a channel.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use tokio::sync::mpsc;
use webb_proto::observer::GetFlowsResponse;

/// Hubble's `SortBufferMaxLen`.
pub const SORT_BUFFER_MAX_LEN: usize = 100;
/// Hubble's `SortBufferDrainTimeout`.
pub const SORT_BUFFER_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Something with a time to be ordered by (nanoseconds since the Unix epoch).
pub trait Timed {
    fn time_ns(&self) -> i128;
}

impl Timed for GetFlowsResponse {
    fn time_ns(&self) -> i128 {
        self.time.map_or(0, |t| t.unix_nanos())
    }
}

/// What the buffer did: how full it runs and how well it could order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub pushed: u64,
    /// Items sent out early because the buffer was full.
    pub popped_full: u64,
    /// Items sent out by a drain after a quiet period.
    pub drained: u64,
    /// Items that left older than one already sent (arrived too late to be ordered).
    pub out_of_order: u64,
}

/// A bounded min-heap by time. The heap orders small keys (time, arrival, slot); the items
/// stay put in their slots, so sifting never moves a (large) flow.
pub struct SortBuffer<T> {
    /// (time, arrival order — equal times leave in the order they came —, slot).
    heap: BinaryHeap<Reverse<(i128, u64, usize)>>,
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    max_len: usize,
    seq: u64,
    last_out: Option<i128>,
    stats: MergeStats,
}

impl<T: Timed> SortBuffer<T> {
    /// A buffer of at most `max_len` (at least 1) items.
    pub fn new(max_len: usize) -> Self {
        let max_len = max_len.max(1);
        SortBuffer {
            heap: BinaryHeap::with_capacity(max_len + 1),
            slots: Vec::with_capacity(max_len + 1),
            free: Vec::new(),
            max_len,
            seq: 0,
            last_out: None,
            stats: MergeStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn stats(&self) -> &MergeStats {
        &self.stats
    }

    /// Adds `item`; when the buffer was full, first takes out the oldest and returns it.
    pub fn push(&mut self, item: T) -> Option<T> {
        self.stats.pushed += 1;
        let out = if self.heap.len() >= self.max_len {
            self.stats.popped_full += 1;
            self.pop()
        } else {
            None
        };
        self.seq += 1;
        let time = item.time_ns();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(item);
                slot
            }
            None => {
                self.slots.push(Some(item));
                self.slots.len() - 1
            }
        };
        self.heap.push(Reverse((time, self.seq, slot)));
        out
    }

    /// Takes out the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        let Reverse((time, _, slot)) = self.heap.pop()?;
        if self.last_out.is_some_and(|last| time < last) {
            self.stats.out_of_order += 1;
        } else {
            self.last_out = Some(time);
        }
        self.free.push(slot);
        self.slots.get_mut(slot).and_then(Option::take)
    }

    /// Takes out, oldest first, every item older than `t_ns`.
    pub fn pop_older_than(&mut self, t_ns: i128, out: &mut impl Extend<T>) {
        while self
            .heap
            .peek()
            .is_some_and(|Reverse((time, _, _))| *time < t_ns)
        {
            if let Some(item) = self.pop() {
                self.stats.drained += 1;
                out.extend(Some(item));
            }
        }
    }

    /// Takes out everything, oldest first (end of input).
    pub fn drain(&mut self, out: &mut impl Extend<T>) {
        while let Some(item) = self.pop() {
            out.extend(Some(item));
        }
    }
}

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct MergeConfig {
    pub max_len: usize,
    pub drain_timeout: Duration,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            max_len: SORT_BUFFER_MAX_LEN,
            drain_timeout: SORT_BUFFER_DRAIN_TIMEOUT,
        }
    }
}

/// The wall clock, for [`run`]: nanoseconds since the Unix epoch.
pub fn wall_clock_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Merges what arrives on `input` in time order and hands each item to `emit` (synchronously:
/// the stage after the merge never makes the peers wait). Returns the buffer's statistics when
/// `input` closes, after emitting what was left in order. `clock` gives "now" for the drain.
pub async fn run<T: Timed>(
    mut input: mpsc::Receiver<T>,
    config: MergeConfig,
    clock: impl Fn() -> i128,
    mut emit: impl FnMut(T),
) -> MergeStats {
    let mut buffer = SortBuffer::new(config.max_len);
    let mut ready = Vec::new();
    let timeout_ns = config.drain_timeout.as_nanos() as i128;
    loop {
        // The timer restarts with every arrival: it fires only after a quiet period.
        let next = tokio::time::timeout(config.drain_timeout, input.recv()).await;
        match next {
            Ok(Some(item)) => {
                if let Some(oldest) = buffer.push(item) {
                    emit(oldest);
                }
            }
            Ok(None) => break,
            Err(_quiet) => {
                buffer.pop_older_than(clock() - timeout_ns, &mut ready);
                ready.drain(..).for_each(&mut emit);
            }
        }
    }
    buffer.drain(&mut ready);
    ready.drain(..).for_each(&mut emit);
    buffer.stats().clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Item {
        t: i128,
        id: u32,
    }
    impl Timed for Item {
        fn time_ns(&self) -> i128 {
            self.t
        }
    }
    fn item(t: i128, id: u32) -> Item {
        Item { t, id }
    }

    #[test]
    fn when_full_the_oldest_leaves_before_the_new_one_enters() {
        let mut b = SortBuffer::new(3);
        assert_eq!(b.push(item(30, 0)), None);
        assert_eq!(b.push(item(10, 1)), None);
        assert_eq!(b.push(item(20, 2)), None);
        assert_eq!(b.push(item(5, 3)), Some(item(10, 1)));
        assert_eq!(b.len(), 3);
        assert_eq!(b.stats().popped_full, 1);
    }

    #[test]
    fn draining_takes_only_items_older_than_the_horizon_in_order() {
        let mut b = SortBuffer::new(100);
        for (t, id) in [(50, 0), (10, 1), (40, 2), (20, 3)] {
            b.push(item(t, id));
        }
        let mut out = Vec::new();
        b.pop_older_than(40, &mut out);
        assert_eq!(out, [item(10, 1), item(20, 3)]);
        out.clear();
        b.drain(&mut out);
        assert_eq!(out, [item(40, 2), item(50, 0)]);
    }

    #[test]
    fn equal_times_keep_their_arrival_order() {
        let mut b = SortBuffer::new(10);
        for id in 0..5 {
            b.push(item(7, id));
        }
        let mut out = Vec::new();
        b.drain(&mut out);
        assert_eq!(
            out.iter().map(|i| i.id).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn an_item_later_than_the_window_is_counted_out_of_order() {
        let mut b = SortBuffer::new(1);
        b.push(item(10, 0));
        b.push(item(20, 1)); // 10 leaves
        b.push(item(5, 2)); // 20 leaves
        let mut out = Vec::new();
        b.drain(&mut out); // 5 leaves after 20
        assert_eq!(b.stats().out_of_order, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_periods_drain_what_is_older_than_the_timeout_and_the_end_drains_all() {
        let (tx, rx) = mpsc::channel(16);
        let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let clock_now = now.clone();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            rx,
            MergeConfig::default(),
            move || i128::from(clock_now.load(std::sync::atomic::Ordering::SeqCst)),
            move |i: Item| out_tx.send(i).unwrap(),
        ));
        let s = 1_000_000_000i128;
        now.store((10 * s) as i64, std::sync::atomic::Ordering::SeqCst);
        tx.send(item(8 * s, 0)).await.unwrap(); // older than now − 1 s
        tx.send(item(10 * s, 1)).await.unwrap(); // not yet
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(out_rx.try_recv().unwrap(), item(8 * s, 0));
        assert!(out_rx.try_recv().is_err());
        drop(tx);
        let stats = task.await.unwrap();
        assert_eq!(out_rx.try_recv().unwrap(), item(10 * s, 1));
        assert_eq!((stats.pushed, stats.drained), (2, 1));
    }

    proptest! {
        #[test]
        fn output_is_sorted_when_disorder_fits_the_buffer(
            times in proptest::collection::vec(0i128..1_000, 1..500),
            shuffle in proptest::collection::vec(0usize..8, 500),
        ) {
            // Sorted input, each item moved back by fewer than the buffer length.
            let mut sorted = times.clone();
            sorted.sort_unstable();
            let mut input: Vec<Item> = sorted.iter().enumerate().map(|(i, &t)| item(t, i as u32)).collect();
            for i in (1..input.len()).rev() {
                let back = shuffle[i].min(i);
                input.swap(i, i - back);
            }
            let mut b = SortBuffer::new(16);
            let mut out = Vec::new();
            for it in input {
                out.extend(b.push(it));
            }
            b.drain(&mut out);
            let out_times: Vec<_> = out.iter().map(|i| i.t).collect();
            prop_assert_eq!(out_times, sorted);
            prop_assert_eq!(b.stats().out_of_order, 0);
        }

        #[test]
        fn nothing_is_lost_or_duplicated(
            times in proptest::collection::vec(any::<i64>(), 0..300),
            max_len in 1usize..120,
        ) {
            let mut b = SortBuffer::new(max_len);
            let mut out = Vec::new();
            for (i, &t) in times.iter().enumerate() {
                out.extend(b.push(item(i128::from(t), i as u32)));
                prop_assert!(b.len() <= max_len);
            }
            b.drain(&mut out);
            let mut ids: Vec<_> = out.iter().map(|i| i.id).collect();
            ids.sort_unstable();
            prop_assert_eq!(ids, (0..times.len() as u32).collect::<Vec<_>>());
        }
    }
}
