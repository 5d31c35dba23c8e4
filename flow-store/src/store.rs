//! The write path: a bounded queue in front of a batcher thread that turns flows into Arrow
//! batches (visible to queries at once), and a flusher thread that writes them to Parquet every
//! `flush_interval` or once they hold `pending_bytes_limit`, compacts small files and applies
//! retention. Two threads, so that appending goes on while a flush or a compaction runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{Array, RecordBatch, TimestampNanosecondArray, UInt32Array};
use webb_proto::flow::Flow;
use webb_proto::webb_v1::StageLoss;

use crate::schema::{FlowBatchBuilder, TIME};
use crate::segment::{self, NS_PER_HOUR, Segment};

/// Loss stage: a flow arrived while the store's queue was full.
pub const STAGE_QUEUE: &str = "store_queue";
/// Loss stage: a flush failed (disk full, permissions, ...) and its flows were dropped.
pub const STAGE_WRITE: &str = "store_write";

/// How a store is run. `StoreConfig::new(dir)` gives the defaults.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Root of the Hive-partitioned Parquet tree (`--store-dir`, default `./webb-data`).
    pub dir: PathBuf,
    /// Flows are written to Parquet at least this often; a crash loses at most this much.
    pub flush_interval: Duration,
    /// Files whose newest flow is older than this are deleted (`--retention`); `None` keeps all.
    pub retention_age: Option<Duration>,
    /// The oldest files are deleted while the store is larger (`--retention-bytes`).
    pub retention_bytes: Option<u64>,
    /// Flows waiting for the writer; beyond it `try_append` drops and counts. A queued flow is
    /// a whole `Flow` (about 1.5 KB in the relay): 16 Ki of them kept the relay's peak RSS
    /// 70-80 MB lower than 64 Ki at 50k flows/s, with the same share of flows stored. They are
    /// boxed: the channel's slots hold a `Flow` inline (~1.4 KB), and a channel touches every
    /// slot as it cycles, so unboxed the slots alone kept 23 MB resident.
    pub queue_capacity: usize,
    /// Rows per in-memory batch (also the unit the table serves before a flush).
    pub batch_rows: usize,
    /// Unflushed flows become visible to queries at least this often.
    pub seal_interval: Duration,
    /// Memory of the unflushed batches that starts a flush before `flush_interval`; at twice
    /// this the batcher waits for the flusher, the queue fills and `try_append` drops (counted).
    /// Unflushed batches are most of what the store adds to the relay's memory: at 50k flows/s
    /// a 5 s interval alone held about 250 k rows, ~900 B each in Arrow.
    pub pending_bytes_limit: usize,
    /// Files smaller than this are compaction candidates.
    pub compact_below_bytes: u64,
    /// A run of this many small files in one hour is merged (a closed hour: any 2).
    pub compact_min_files: usize,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Limits of [`crate::FlowStore::sql`].
    pub sql: crate::sql::SqlLimits,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            flush_interval: Duration::from_secs(5),
            retention_age: Some(Duration::from_secs(24 * 3600)),
            retention_bytes: None,
            queue_capacity: 16_384,
            batch_rows: 8192,
            seal_interval: Duration::from_millis(250),
            pending_bytes_limit: 32 << 20,
            compact_below_bytes: 16 << 20,
            compact_min_files: 8,
            zstd_level: 3,
            // Each column's dictionary is written once per row group, so 1 Mi rows took about
            // 1 byte/flow off; but the time range then prunes in coarse steps: on 30 M flows the
            // last-hour SQL of one pod took p90 103 ms with 1 Mi rows, 60 ms with 128 Ki.
            row_group_rows: 128 * 1024,
            sql: crate::sql::SqlLimits::default(),
        }
    }

    /// The Parquet writer settings of the store's files.
    pub fn writer_properties(&self) -> parquet::file::properties::WriterProperties {
        segment::writer_properties(self.zstd_level, self.row_group_rows)
    }
}

/// Why the store could not open or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("store writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the store's writer has stopped")]
    Stopped,
    #[error("writing the store: {0}")]
    Write(String),
}

/// A batch not yet in a file, with its time range for pruning.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub batch: RecordBatch,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    /// Memory of `batch` (its buffers are trimmed to their length when sealed).
    pub bytes: usize,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub files: Vec<Segment>,
    pub pending: Vec<Pending>,
}

/// Memory held by unflushed batches.
fn pending_bytes(pending: &[Pending]) -> usize {
    pending.iter().map(|p| p.bytes).sum()
}

/// Counters readable from the store at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub appended: u64,
    pub lost_queue_full: u64,
    pub lost_write_error: u64,
    pub written_rows: u64,
    pub files: u64,
    /// Bytes on disk: the data files and their service-map sidecars.
    pub bytes: u64,
    pub pending_rows: u64,
    /// Memory of the unflushed batches (see `StoreConfig::pending_bytes_limit`).
    pub pending_bytes: u64,
    pub compactions: u64,
    pub files_removed_by_retention: u64,
    /// Removed at open: temporary files of an interrupted write and files already compacted.
    pub crash_leftovers_removed: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    appended: AtomicU64,
    lost_queue: AtomicU64,
    lost_write: AtomicU64,
    written: AtomicU64,
    compactions: AtomicU64,
    retention_removed: AtomicU64,
    leftovers: AtomicU64,
}

pub(crate) struct Shared {
    pub config: StoreConfig,
    pub state: RwLock<State>,
    counters: Counters,
    retired: Mutex<Retired>,
}

/// Files a compaction or retention took out of the store's list while queries that began
/// before might still read them: a query plans with a list of files and opens them later, so
/// deleting at once failed it with "not found". Each file is deleted when the last query begun
/// before its removal ends.
#[derive(Default)]
struct Retired {
    /// Bumped at each retirement: a query's lease remembers the epoch it began in.
    epoch: u64,
    /// Queries in progress, by the epoch they began in.
    leases: BTreeMap<u64, usize>,
    /// Files retired at an epoch, to delete once no lease of that epoch or earlier remains.
    files: Vec<(u64, Segment)>,
}

/// Held by a query from before it lists the store's files until it has read them.
pub(crate) struct ReadLease {
    shared: Arc<Shared>,
    epoch: u64,
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        let deletable = {
            let mut r = self
                .shared
                .retired
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = r.leases.get_mut(&self.epoch) {
                *n -= 1;
                if *n == 0 {
                    r.leases.remove(&self.epoch);
                }
            }
            r.deletable()
        };
        delete_files(&deletable);
    }
}

impl Retired {
    /// Files no lease can still read: retired before the oldest lease in progress began.
    fn deletable(&mut self) -> Vec<Segment> {
        let oldest = self.leases.keys().next().copied().unwrap_or(u64::MAX);
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.files)
            .into_iter()
            .partition(|(epoch, _)| *epoch < oldest);
        self.files = kept;
        gone.into_iter().map(|(_, s)| s).collect()
    }
}

/// Deletes files (and their sidecars) the store no longer lists, and partitions left empty.
fn delete_files(files: &[Segment]) {
    for s in files {
        if let Err(e) = s.remove() {
            tracing::warn!(path = %s.path.display(), error = %e, "flow-store could not delete a file it no longer lists");
        }
        if let Some(dir) = s.path.parent() {
            segment::remove_if_empty(dir);
            if let Some(date) = dir.parent() {
                segment::remove_if_empty(date);
            }
        }
    }
}

impl Shared {
    /// A consistent view for one query: every row is either in a listed file or in a pending
    /// batch, never both (both change under one lock).
    pub fn snapshot(&self) -> (Vec<Segment>, Vec<Pending>) {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        (s.files.clone(), s.pending.clone())
    }

    fn pending_bytes(&self) -> usize {
        pending_bytes(&self.state.read().unwrap_or_else(|e| e.into_inner()).pending)
    }

    /// A lease for one query: take it before listing files (see [`Retired`]).
    pub fn lease(self: &Arc<Self>) -> ReadLease {
        let mut r = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let epoch = r.epoch;
        *r.leases.entry(epoch).or_default() += 1;
        ReadLease {
            shared: self.clone(),
            epoch,
        }
    }

    /// Deletes files already taken out of the list: now, or when the queries that may still
    /// read them end.
    fn retire(&self, files: Vec<Segment>) {
        let deletable = {
            let mut r = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            let epoch = r.epoch;
            r.epoch += 1;
            r.files.extend(files.into_iter().map(|s| (epoch, s)));
            r.deletable()
        };
        delete_files(&deletable);
    }
}

enum Control {
    Flush(mpsc::Sender<Result<(), StoreError>>),
}

/// Handle to the store. Dropping it flushes what is queued and stops the writer.
pub struct FlowStore {
    pub(crate) shared: Arc<Shared>,
    tx: Option<SyncSender<Box<Flow>>>,
    ctl: mpsc::Sender<Control>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FlowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStore")
            .field("dir", &self.shared.config.dir)
            .finish_non_exhaustive()
    }
}

impl FlowStore {
    /// Opens (creating if needed) the store in `config.dir`: deletes crash leftovers, indexes
    /// the existing files, applies retention and starts the writer thread.
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        let dir_err = |source| StoreError::Dir {
            dir: config.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(dir_err)?;
        // DataFusion's local object store reads absolute paths only: a relative --store-dir
        // (the default is ./webb-data) must not turn every history query into "not found".
        let config = StoreConfig {
            dir: std::fs::canonicalize(&config.dir).map_err(dir_err)?,
            ..config
        };
        let rec = segment::scan(&config.dir).map_err(dir_err)?;
        if rec.removed_temp + rec.removed_replaced > 0 {
            tracing::info!(
                temp = rec.removed_temp,
                compacted = rec.removed_replaced,
                "removed leftovers of an interrupted write"
            );
        }
        let next_seq = rec.segments.iter().map(|s| s.seq_hi + 1).max().unwrap_or(0);
        let shared = Arc::new(Shared {
            config: config.clone(),
            state: RwLock::new(State {
                files: rec.segments,
                pending: Vec::new(),
            }),
            counters: Counters::default(),
            retired: Mutex::default(),
        });
        shared.counters.leftovers.store(
            (rec.removed_temp + rec.removed_replaced) as u64,
            Ordering::Relaxed,
        );
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity.max(1));
        let (ctl, ctl_rx) = mpsc::channel();
        let flusher = Flusher {
            shared: shared.clone(),
            next_seq,
        };
        let mut compactor = Compactor {
            shared: shared.clone(),
        };
        compactor.maintain();
        // One pass may wait while another runs: later requests fold into it.
        let (maintenance, maintenance_rx) = mpsc::sync_channel(1);
        let compactor = std::thread::Builder::new()
            .name("flow-store-compactor".into())
            .spawn(move || compactor.run(maintenance_rx))
            .map_err(StoreError::Thread)?;
        // Rendezvous: a flush is handed over only when the flusher is idle, so the batcher
        // knows without asking whether one is running.
        let (jobs, jobs_rx) = mpsc::sync_channel(0);
        let flusher = std::thread::Builder::new()
            .name("flow-store-flusher".into())
            .spawn(move || flusher.run(jobs_rx, maintenance, compactor))
            .map_err(StoreError::Thread)?;
        let batcher = Batcher {
            shared: shared.clone(),
            builder: FlowBatchBuilder::new(),
            last_seal: Instant::now(),
            jobs,
            flusher,
        };
        let handle = std::thread::Builder::new()
            .name("flow-store-writer".into())
            .spawn(move || batcher.run(rx, ctl_rx))
            .map_err(StoreError::Thread)?;
        Ok(Self {
            shared,
            tx: Some(tx),
            ctl,
            writer: Some(handle),
        })
    }

    /// Queues a flow for the store. Never blocks: when the queue is full the flow is dropped,
    /// counted under [`STAGE_QUEUE`], and `false` is returned.
    pub fn try_append(&self, flow: Flow) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Box::new(flow)) {
            Ok(()) => {
                self.shared
                    .counters
                    .appended
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared
                    .counters
                    .lost_queue
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a flow, waiting while the queue is full. For imports and benchmarks that must not
    /// lose flows; the relay's live path uses [`try_append`](Self::try_append). Returns `false`
    /// only when the writer has stopped.
    pub fn append_blocking(&self, flow: Flow) -> bool {
        let Some(tx) = &self.tx else { return false };
        let ok = tx.send(Box::new(flow)).is_ok();
        if ok {
            self.shared
                .counters
                .appended
                .fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Writes everything queued so far to Parquet and runs compaction and retention; returns
    /// when done. Blocking: from async code call it through `spawn_blocking`.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.ctl
            .send(Control::Flush(tx))
            .map_err(|_| StoreError::Stopped)?;
        rx.recv().map_err(|_| StoreError::Stopped)?
    }

    /// Flows lost by the store, by stage (`webb_lost_events_total{stage}`), zeros included.
    pub fn loss(&self) -> Vec<StageLoss> {
        let c = &self.shared.counters;
        [(STAGE_QUEUE, &c.lost_queue), (STAGE_WRITE, &c.lost_write)]
            .into_iter()
            .map(|(stage, n)| StageLoss {
                stage: stage.to_owned(),
                node: String::new(),
                lost: n.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let (files, pending) = self.shared.snapshot();
        StoreStats {
            appended: c.appended.load(Ordering::Relaxed),
            lost_queue_full: c.lost_queue.load(Ordering::Relaxed),
            lost_write_error: c.lost_write.load(Ordering::Relaxed),
            written_rows: c.written.load(Ordering::Relaxed),
            files: files.len() as u64,
            bytes: files.iter().map(Segment::disk_bytes).sum(),
            pending_rows: pending.iter().map(|p| p.batch.num_rows() as u64).sum(),
            pending_bytes: pending_bytes(&pending) as u64,
            compactions: c.compactions.load(Ordering::Relaxed),
            files_removed_by_retention: c.retention_removed.load(Ordering::Relaxed),
            crash_leftovers_removed: c.leftovers.load(Ordering::Relaxed),
        }
    }

    /// The store's files, oldest first.
    pub fn segments(&self) -> Vec<Segment> {
        self.shared.snapshot().0
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Flushes and stops the writer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None; // the writer drains the queue, flushes and exits
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FlowStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Turns queued flows into sealed Arrow batches and decides when the flusher writes them.
struct Batcher {
    shared: Arc<Shared>,
    builder: FlowBatchBuilder,
    last_seal: Instant,
    jobs: SyncSender<FlushJob>,
    flusher: JoinHandle<()>,
}

/// One flush of every batch sealed so far, then compaction and retention; `reply` is told
/// the flush's result.
struct FlushJob {
    reply: Option<FlushReply>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

impl Batcher {
    fn run(mut self, rx: Receiver<Box<Flow>>, ctl: Receiver<Control>) {
        let cfg = self.shared.config.clone();
        let tick = cfg
            .seal_interval
            .min(cfg.flush_interval)
            .min(Duration::from_millis(100));
        let mut last_flush = Instant::now();
        loop {
            match rx.recv_timeout(tick) {
                Ok(flow) => {
                    self.builder.append(&flow);
                    // Take what is already queued without waking up per flow.
                    while self.builder.len() < cfg.batch_rows {
                        match rx.try_recv() {
                            Ok(f) => self.builder.append(&f),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.seal();
                    self.stop_flusher();
                    return;
                }
            }
            if self.builder.len() >= cfg.batch_rows
                || (!self.builder.is_empty() && self.last_seal.elapsed() >= cfg.seal_interval)
            {
                self.seal();
            }
            while let Ok(Control::Flush(reply)) = ctl.try_recv() {
                while let Ok(f) = rx.try_recv() {
                    self.builder.append(&f);
                }
                self.seal();
                let job = FlushJob { reply: Some(reply) };
                if let Err(mpsc::SendError(FlushJob { reply: Some(reply) })) = self.jobs.send(job) {
                    let _ = reply.send(Err(StoreError::Stopped));
                }
                last_flush = Instant::now();
            }
            let pending = self.shared.pending_bytes();
            let due =
                last_flush.elapsed() >= cfg.flush_interval || pending >= cfg.pending_bytes_limit;
            if pending >= cfg.pending_bytes_limit.saturating_mul(2) {
                // The flusher is behind: wait for it rather than hold more. Meanwhile the queue
                // fills, and `try_append` drops and counts.
                let _ = self.jobs.send(FlushJob { reply: None });
                last_flush = Instant::now();
            } else if due {
                match self.jobs.try_send(FlushJob { reply: None }) {
                    // Busy: the running flush counts as this one's start; try again next tick.
                    Ok(()) | Err(TrySendError::Full(_)) => last_flush = Instant::now(),
                    Err(TrySendError::Disconnected(_)) => {}
                }
            }
        }
    }

    /// Moves the builder's rows into a pending batch that queries can see.
    fn seal(&mut self) {
        self.last_seal = Instant::now();
        if self.builder.is_empty() {
            return;
        }
        let batch = trimmed(self.builder.finish());
        let range = segment::time_range(std::slice::from_ref(&batch));
        let bytes = batch.get_array_memory_size();
        let mut st = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
        st.pending.push(Pending {
            batch,
            min_time: range.map(|r| r.0),
            max_time: range.map(|r| r.1),
            bytes,
        });
    }

    /// The last flush, then the flusher ends (its channel closes).
    fn stop_flusher(self) {
        let Batcher { jobs, flusher, .. } = self;
        let _ = jobs.send(FlushJob { reply: None });
        drop(jobs);
        let _ = flusher.join();
    }
}

/// `batch` with every buffer cut to its length: builders grow by doubling, which left a
/// third of a sealed batch's memory unused (1326 → 878 B per generator flow).
fn trimmed(batch: RecordBatch) -> RecordBatch {
    let (schema, mut columns, rows) = batch.into_parts();
    for c in &mut columns {
        c.shrink_to_fit();
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    // Same schema, columns and row count as a batch that was valid a moment ago.
    RecordBatch::try_new_with_options(schema, columns, &options)
        .expect("a trimmed batch keeps its schema")
}

/// Writes sealed batches to Parquet on its own thread, and hands compaction and retention to
/// the [`Compactor`]'s.
struct Flusher {
    shared: Arc<Shared>,
    next_seq: u64,
}

/// Where a caller of [`FlowStore::flush`] waits for its result.
type FlushReply = mpsc::Sender<Result<(), StoreError>>;

/// A compaction and retention pass; `after` is a flush's result to report once it is done.
struct MaintenanceJob {
    after: Option<(Result<(), StoreError>, FlushReply)>,
}

impl Flusher {
    fn run(
        mut self,
        jobs: Receiver<FlushJob>,
        maintenance: SyncSender<MaintenanceJob>,
        compactor: JoinHandle<()>,
    ) {
        while let Ok(job) = jobs.recv() {
            let r = self.flush();
            match job.reply {
                // `FlowStore::flush` returns once compaction and retention are done too.
                Some(reply) => {
                    let _ = maintenance.send(MaintenanceJob {
                        after: Some((r, reply)),
                    });
                }
                None => {
                    let _ = maintenance.try_send(MaintenanceJob { after: None });
                }
            }
        }
        drop(maintenance);
        let _ = compactor.join();
    }

    /// Writes all pending batches, one file per hour they touch.
    fn flush(&mut self) -> Result<(), StoreError> {
        let pending: Vec<RecordBatch> = {
            let st = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
            st.pending.iter().map(|p| p.batch.clone()).collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let taken = pending.len();
        let rows: u64 = pending.iter().map(|b| b.num_rows() as u64).sum();
        let by_hour = split_by_hour(&pending, now_ns() / NS_PER_HOUR);
        let cfg = &self.shared.config;
        let mut written = Vec::new();
        let mut error = None;
        let mut lost_rows = 0u64;
        for (hour, batches) in by_hour {
            let seq = self.next_seq;
            self.next_seq += 1;
            let props = cfg.writer_properties();
            match segment::write(&cfg.dir, hour, seq, seq, &batches, props) {
                Ok(s) => written.push(s),
                Err(e) => {
                    let lost: usize = batches.iter().map(|b| b.num_rows()).sum();
                    lost_rows += lost as u64;
                    self.shared
                        .counters
                        .lost_write
                        .fetch_add(lost as u64, Ordering::Relaxed);
                    tracing::warn!(error = %e, lost, "flow-store flush failed; flows dropped");
                    error = Some(StoreError::Write(e.to_string()));
                }
            }
        }
        let mut st = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
        st.pending.drain(..taken);
        st.files.extend(written);
        st.files.sort_by_key(|s| (s.min_time, s.seq_lo));
        drop(st);
        self.shared
            .counters
            .written
            .fetch_add(rows - lost_rows, Ordering::Relaxed);
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Merges small files and applies retention on its own thread, so that a compaction never
/// holds back a flush. While the flusher waited for them, unflushed batches and the queue grew
/// to their limits, which set the relay's peak memory (and dropped flows) at 50k flows/s.
struct Compactor {
    shared: Arc<Shared>,
}

impl Compactor {
    fn run(mut self, jobs: Receiver<MaintenanceJob>) {
        while let Ok(job) = jobs.recv() {
            self.maintain();
            if let Some((r, reply)) = job.after {
                let _ = reply.send(r);
            }
        }
    }

    /// Compaction, then retention.
    fn maintain(&mut self) {
        self.compact();
        self.retain();
    }

    fn compact(&mut self) {
        let cfg = self.shared.config.clone();
        let current_hour = now_ns() / NS_PER_HOUR;
        let files = self.shared.snapshot().0;
        let newest_hour = files.iter().map(|s| s.hour).max().unwrap_or(current_hour);
        let mut by_hour: BTreeMap<i64, Vec<Segment>> = BTreeMap::new();
        for f in files {
            by_hour.entry(f.hour).or_default().push(f);
        }
        for (hour, mut segs) in by_hour {
            segs.sort_by_key(|s| s.seq_lo);
            let closed = hour < current_hour && hour < newest_hour;
            let need = if closed {
                2
            } else {
                cfg.compact_min_files.max(2)
            };
            // Runs of consecutive small files: merging only consecutive sequence ranges keeps
            // "a range inside another was compacted" true for crash recovery.
            let mut runs: Vec<Vec<Segment>> = vec![Vec::new()];
            // A run stops near `compact_below_bytes`, which bounds the memory of one merge.
            for s in segs {
                if s.bytes < cfg.compact_below_bytes {
                    let full = runs.last().is_some_and(|r| {
                        r.iter().map(|x| x.bytes).sum::<u64>() >= cfg.compact_below_bytes
                    });
                    if full {
                        runs.push(Vec::new());
                    }
                    if let Some(r) = runs.last_mut() {
                        r.push(s);
                    }
                } else {
                    runs.push(Vec::new());
                }
            }
            for run in runs.into_iter().filter(|r| r.len() >= need) {
                if let Err(e) = self.merge(hour, &run) {
                    tracing::warn!(error = %e, hour, "flow-store compaction failed; files kept");
                }
            }
        }
    }

    fn merge(&mut self, hour: i64, run: &[Segment]) -> Result<(), StoreError> {
        let cfg = &self.shared.config;
        let merged = segment::merge(&cfg.dir, hour, run, cfg.writer_properties())
            .map_err(|e| StoreError::Write(e.to_string()))?;
        {
            let mut st = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
            st.files.retain(|f| !run.iter().any(|r| r.path == f.path));
            st.files.push(merged);
            st.files.sort_by_key(|s| (s.min_time, s.seq_lo));
        }
        self.shared.retire(run.to_vec());
        self.shared
            .counters
            .compactions
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn retain(&mut self) {
        let cfg = &self.shared.config;
        let mut doomed: Vec<Segment> = Vec::new();
        {
            let mut st = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
            if let Some(age) = cfg.retention_age {
                let cutoff = now_ns().saturating_sub(age.as_nanos() as i64);
                let (old, keep): (Vec<_>, Vec<_>) =
                    st.files.drain(..).partition(|s| s.max_time < cutoff);
                st.files = keep;
                doomed.extend(old);
            }
            if let Some(limit) = cfg.retention_bytes {
                let mut total: u64 = st.files.iter().map(Segment::disk_bytes).sum();
                // Oldest first: files are kept sorted by their oldest flow.
                while total > limit && !st.files.is_empty() {
                    let s = st.files.remove(0);
                    total -= s.disk_bytes();
                    doomed.push(s);
                }
            }
        }
        let removed = doomed.len() as u64;
        self.shared.retire(doomed);
        self.shared
            .counters
            .retention_removed
            .fetch_add(removed, Ordering::Relaxed);
    }
}

/// Groups rows by the hour of their time (rows without a time go to `now_hour`).
fn split_by_hour(batches: &[RecordBatch], now_hour: i64) -> BTreeMap<i64, Vec<RecordBatch>> {
    let mut out: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        let Some(t) = b
            .column_by_name(TIME)
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        else {
            continue;
        };
        let hour_of = |i: usize| {
            if t.is_valid(i) {
                t.value(i).div_euclid(NS_PER_HOUR)
            } else {
                now_hour
            }
        };
        let first = if b.num_rows() > 0 {
            hour_of(0)
        } else {
            now_hour
        };
        if (0..b.num_rows()).all(|i| hour_of(i) == first) {
            out.entry(first).or_default().push(b.clone());
            continue;
        }
        let mut idx: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for i in 0..b.num_rows() {
            idx.entry(hour_of(i)).or_default().push(i as u32);
        }
        for (hour, rows) in idx {
            let rows = UInt32Array::from(rows);
            // Indices come from this batch, so take cannot go out of bounds.
            if let Ok(part) = arrow::compute::take_record_batch(b, &rows) {
                out.entry(hour).or_default().push(part);
            }
        }
    }
    out
}
