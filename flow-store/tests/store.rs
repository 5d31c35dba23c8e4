//! The write and read paths of the store: partitions, atomic files, retention, compaction,
//! crash recovery, overflow accounting, history queries.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::files_ending;
use flow_filter::FlowFilters;
use flow_store::generator::FlowGenerator;
use flow_store::{FlowQuery, FlowStore, STAGE_QUEUE, StoreConfig, stored_form};
use futures::StreamExt;
use webb_proto::Timestamp;
use webb_proto::flow::{Flow, FlowFilter, Verdict};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        flush_interval: Duration::from_secs(3600),
        retention_age: None,
        ..StoreConfig::new(dir)
    }
}

fn now_ts() -> Timestamp {
    Timestamp::now()
}

fn hours_ago(h: i64) -> Timestamp {
    let now = now_ts();
    Timestamp {
        seconds: now.seconds - h * 3600,
        nanos: 0,
    }
}

/// The start of the hour `h` hours before the current one: flows from there on stay in one
/// partition for up to an hour.
fn hour_start_ago(h: i64) -> Timestamp {
    Timestamp {
        seconds: (now_ts().seconds / 3600 - h) * 3600,
        nanos: 0,
    }
}

/// The store's data files.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, ".parquet")
}

/// The service-map sidecars beside them.
fn sidecars(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, ".map")
}

fn all(store: &FlowStore) -> Vec<Flow> {
    rt().block_on(store.query_flows(&FlowQuery::default()))
        .unwrap()
}

fn by_uuid(mut v: Vec<Flow>) -> Vec<Flow> {
    v.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    v
}

#[test]
fn a_store_opened_by_a_relative_path_answers_history_queries() {
    let tmp = tempfile::tempdir().unwrap();
    // The same directory, named relative to the working directory (as `--store-dir webb-data`).
    let cwd = std::env::current_dir().unwrap();
    let mut relative = PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(tmp.path().strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    let store = FlowStore::open(config(&relative)).unwrap();
    let flows = FlowGenerator::new(5, hour_start_ago(1), 10).batch(0, 20);
    for f in &flows {
        assert!(store.try_append(f.clone()));
    }
    store.flush().unwrap();
    assert_eq!(parquet_files(tmp.path()).len(), 1);
    assert_eq!(all(&store).len(), flows.len());
}

#[test]
fn a_flush_writes_zstd_parquet_into_hive_date_and_hour_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(config(tmp.path())).unwrap();
    // 2026-11-27T22:59:59Z .. 23:00:01Z: two partitions.
    let g = FlowGenerator::new(
        50,
        Timestamp {
            seconds: 1_795_820_399,
            nanos: 0,
        },
        500,
    );
    let flows = g.batch(0, 1000);
    for f in &flows {
        assert!(store.try_append(f.clone()));
    }
    store.flush().unwrap();
    let files = parquet_files(tmp.path());
    let rel: Vec<String> = files
        .iter()
        .map(|p| {
            let r = p
                .strip_prefix(tmp.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            r.rsplit_once('/').unwrap().0.to_owned()
        })
        .collect();
    assert_eq!(
        rel,
        vec!["date=2026-11-27/hour=22", "date=2026-11-27/hour=23"]
    );
    for f in &files {
        assert!(f.extension().is_some_and(|e| e == "parquet"), "{f:?}");
        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&std::fs::File::open(f).unwrap())
            .unwrap();
        let rg = meta.row_group(0);
        let time = rg.column(0);
        assert_eq!(time.column_path().string(), "time");
        assert!(matches!(
            time.compression(),
            parquet::basic::Compression::ZSTD(_)
        ));
        let stats = time.statistics().expect("row-group statistics for pruning");
        assert!(stats.min_bytes_opt().is_some() && stats.max_bytes_opt().is_some());
    }
    let expect: Vec<Flow> = flows.iter().map(stored_form).collect();
    assert_eq!(all(&store), expect);
    assert_eq!(store.stats().written_rows, 1000);
}

#[test]
fn flows_not_yet_flushed_are_already_visible_to_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(config(tmp.path())).unwrap();
    let g = FlowGenerator::new(20, now_ts(), 1000);
    for f in g.batch(0, 300) {
        store.try_append(f);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().pending_rows < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.stats().files, 0, "nothing flushed yet");
    assert_eq!(all(&store).len(), 300);
    // After a flush the same rows come from files, not twice.
    store.flush().unwrap();
    assert_eq!(store.stats().pending_rows, 0);
    assert_eq!(all(&store).len(), 300);
}

#[test]
fn unflushed_batches_past_their_memory_limit_are_written_before_the_flush_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(StoreConfig {
        // Every sealed batch is past the limit: each is written long before the hour is up.
        pending_bytes_limit: 1,
        batch_rows: 100,
        ..config(tmp.path())
    })
    .unwrap();
    let g = FlowGenerator::new(20, now_ts(), 1000);
    let flows = g.batch(0, 1000);
    for f in &flows {
        assert!(store.append_blocking(f.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.stats().written_rows < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = store.stats();
    assert_eq!(stats.written_rows, 1000, "{stats:?}");
    assert_eq!((stats.pending_rows, stats.pending_bytes), (0, 0));
    assert!(stats.files >= 1);
    assert_eq!(stats.lost_queue_full, 0);
    // Written once each: neither lost nor duplicated by the early flushes.
    let expect: Vec<Flow> = flows.iter().map(stored_form).collect();
    assert_eq!(by_uuid(all(&store)), by_uuid(expect));
}

#[test]
fn a_full_queue_drops_without_blocking_and_counts_the_loss_by_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(StoreConfig {
        queue_capacity: 1,
        ..config(tmp.path())
    })
    .unwrap();
    let f = FlowGenerator::new(10, now_ts(), 1000).flow(0);
    let n = 50_000;
    let mut accepted = 0u64;
    let start = Instant::now();
    for _ in 0..n {
        accepted += u64::from(store.try_append(f.clone()));
    }
    let per_call = start.elapsed() / n as u32;
    let lost = store
        .loss()
        .into_iter()
        .find(|l| l.stage == STAGE_QUEUE)
        .unwrap()
        .lost;
    assert!(lost > 0, "a queue of one must overflow");
    assert_eq!(accepted + lost, n as u64);
    assert_eq!(store.stats().lost_queue_full, lost);
    store.flush().unwrap();
    assert_eq!(all(&store).len() as u64, accepted);
    // Not a timing assertion: an upper bound that only a blocking call would exceed.
    assert!(per_call < Duration::from_millis(5), "{per_call:?}");
}

#[test]
fn retention_by_age_deletes_files_whose_flows_are_all_older_than_the_window() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(StoreConfig {
        retention_age: Some(Duration::from_secs(24 * 3600)),
        ..config(tmp.path())
    })
    .unwrap();
    let old = FlowGenerator::new(10, hour_start_ago(72), 100).batch(0, 50);
    let recent = FlowGenerator::new(10, hours_ago(1), 100).batch(50, 50);
    for f in old.iter().chain(&recent) {
        store.try_append(f.clone());
    }
    store.flush().unwrap();
    let left = all(&store);
    assert_eq!(left, recent.iter().map(stored_form).collect::<Vec<_>>());
    assert_eq!(store.stats().files_removed_by_retention, 1);
    assert_eq!(parquet_files(tmp.path()).len(), 1);
    assert_eq!(
        sidecars(tmp.path()).len(),
        1,
        "a file's sidecar goes with it"
    );
    // The emptied partition directory is gone too.
    let t = chrono::DateTime::from_timestamp(hour_start_ago(72).seconds, 0).unwrap();
    let old_dir = tmp
        .path()
        .join(t.format("date=%Y-%m-%d/hour=%H").to_string());
    assert!(!old_dir.exists(), "{old_dir:?}");
}

#[test]
fn retention_by_size_deletes_the_oldest_files_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Four hours of flows, one file each.
    {
        let store = FlowStore::open(config(dir)).unwrap();
        for h in 0..4 {
            for f in FlowGenerator::new(10, hour_start_ago(10 - h), 10).batch(0, 200) {
                store.try_append(f);
            }
        }
        store.flush().unwrap();
        assert_eq!(store.stats().files, 4);
    }
    // Bytes on disk: each data file and its service-map sidecar.
    let sizes: Vec<u64> = parquet_files(dir)
        .iter()
        .map(|p| {
            let map = p.with_extension("map");
            std::fs::metadata(p).unwrap().len() + std::fs::metadata(map).unwrap().len()
        })
        .collect();
    let newest_two: u64 = sizes.iter().rev().take(2).sum();
    let store = FlowStore::open(StoreConfig {
        retention_bytes: Some(newest_two + 10),
        ..config(dir)
    })
    .unwrap();
    let segs = store.segments();
    assert_eq!(segs.len(), 2);
    assert!(store.stats().bytes <= newest_two + 10);
    let cutoff = hour_start_ago(8).seconds * 1_000_000_000;
    assert!(
        segs.iter().all(|s| s.min_time >= cutoff),
        "the two oldest hours went first"
    );
}

#[test]
fn small_files_of_an_hour_are_compacted_into_one_without_losing_or_duplicating_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(StoreConfig {
        compact_min_files: 3,
        ..config(tmp.path())
    })
    .unwrap();
    let g = FlowGenerator::new(30, now_ts(), 1_000_000);
    let mut expect = Vec::new();
    for k in 0..3 {
        for f in g.batch(k * 100, 100) {
            expect.push(stored_form(&f));
            store.try_append(f);
        }
        store.flush().unwrap();
    }
    let hours: std::collections::BTreeSet<i64> = store.segments().iter().map(|s| s.hour).collect();
    assert_eq!(store.stats().compactions, hours.len() as u64);
    assert_eq!(store.stats().files, hours.len() as u64);
    assert!(
        parquet_files(tmp.path()).iter().all(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("cmp-"))
    );
    let maps: Vec<PathBuf> = sidecars(tmp.path());
    assert_eq!(
        maps,
        parquet_files(tmp.path())
            .iter()
            .map(|p| p.with_extension("map"))
            .collect::<Vec<_>>(),
        "each merged file has a sidecar, the merged ones' are gone"
    );
    assert_eq!(by_uuid(all(&store)), by_uuid(expect));
}

#[test]
fn a_history_stream_begun_before_a_compaction_reads_the_files_it_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(StoreConfig {
        compact_min_files: 3,
        ..config(tmp.path())
    })
    .unwrap();
    let rt = rt();
    // 150 flows 1 µs apart from the start of this hour: one partition, so one merge.
    let g = FlowGenerator::new(10, hour_start_ago(0), 1_000_000);
    let flush_50 = |k: usize| {
        for f in g.batch(k * 50, 50) {
            assert!(store.append_blocking(f));
        }
        store.flush().unwrap();
    };
    flush_50(0);
    flush_50(1);
    // Planned over the first two files; it opens them only when read.
    let reading = rt
        .block_on(store.stream_flows(&FlowQuery::default()))
        .unwrap();
    flush_50(2); // the third file: the three are merged
    assert_eq!((store.stats().compactions, store.stats().files), (1, 1));
    assert_eq!(
        parquet_files(tmp.path()).len(),
        4,
        "the merged file and the three it replaced"
    );
    let begun_after = rt
        .block_on(store.stream_flows(&FlowQuery::default()))
        .unwrap();
    let read: Vec<Flow> = rt.block_on(reading.map(Result::unwrap).collect());
    let first_two: Vec<Flow> = g.batch(0, 100).iter().map(stored_form).collect();
    assert_eq!(by_uuid(read), by_uuid(first_two));
    let on_disk = parquet_files(tmp.path());
    assert_eq!(
        on_disk.len(),
        1,
        "deleted once the stream ended: {on_disk:?}"
    );
    assert!(
        on_disk[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("cmp-")
    );
    let read: Vec<Flow> = rt.block_on(begun_after.map(Result::unwrap).collect());
    assert_eq!(
        read.len(),
        150,
        "a stream begun after reads the merged file"
    );
}

#[test]
fn leftovers_of_a_crash_are_cleaned_at_open_and_only_complete_files_remain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let g = FlowGenerator::new(10, now_ts(), 1_000_000);
    let expect: Vec<Flow> = g.batch(0, 100).iter().map(stored_form).collect();
    {
        let store = FlowStore::open(config(dir)).unwrap();
        for f in g.batch(0, 100) {
            store.try_append(f);
        }
        store.flush().unwrap();
    }
    let file = parquet_files(dir).pop().unwrap();
    let part = file.parent().unwrap();
    // An interrupted flush: half a file under its temporary name.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(
        part.join(".seg-00000000000000000007.parquet.tmp"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    // An interrupted compaction: the merged file was renamed into place, the originals not yet
    // deleted.
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let seq: u64 = name
        .trim_start_matches("seg-")
        .trim_end_matches(".parquet")
        .parse()
        .unwrap();
    std::fs::copy(
        &file,
        part.join(format!("cmp-{seq:020}-{:020}.parquet", seq + 1)),
    )
    .unwrap();
    // A crash between renaming a sidecar into place and renaming its data file.
    std::fs::write(part.join("seg-00000000000000000009.map"), b"partial map").unwrap();

    let store = FlowStore::open(config(dir)).unwrap();
    assert_eq!(store.stats().crash_leftovers_removed, 3);
    assert!(sidecars(dir).is_empty(), "{:?}", sidecars(dir));
    let names: Vec<String> = parquet_files(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1);
    assert!(names[0].starts_with("cmp-"));
    assert_eq!(all(&store), expect, "no flow lost, none twice");
}

const CHILD_DIR: &str = "FLOW_STORE_TEST_CHILD_DIR";
const FLUSH_MS: u64 = 300;

/// Run only as the child of the test below: appends flows forever, printing how many.
#[test]
#[ignore = "helper process for a_killed_writer_loses_at_most_one_flush_interval"]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let store = FlowStore::open(StoreConfig {
        flush_interval: Duration::from_millis(FLUSH_MS),
        ..config(Path::new(&dir))
    })
    .unwrap();
    let g = FlowGenerator::new(10, now_ts(), 1_000_000);
    let start = Instant::now();
    let mut i = 0;
    // Bounded: the parent kills it within seconds; this stops by itself regardless.
    while start.elapsed() < Duration::from_secs(60) {
        for _ in 0..100 {
            assert!(store.try_append(g.flow(i)));
            i += 1;
        }
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        println!("appended {i} at {ms}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_writer_loses_at_most_one_flush_interval() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, tmp.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut progress: Vec<(u64, u128)> = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("appended ") else {
            continue;
        };
        let (n, ms) = rest.split_once(" at ").unwrap();
        progress.push((n.parse().unwrap(), ms.parse().unwrap()));
        if progress.len() >= 150 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: no flush, no destructor
    let killed_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    child.wait().unwrap();

    let store = FlowStore::open(config(tmp.path())).unwrap();
    let stored = all(&store);
    // What was appended one flush interval (plus time for the flush itself) before the kill.
    let margin = u128::from(FLUSH_MS) + 700;
    let must_have = progress
        .iter()
        .rev()
        .find(|(_, ms)| *ms + margin <= killed_ms)
        .map(|(n, _)| *n)
        .expect("the child ran long enough");
    assert!(
        stored.len() as u64 >= must_have,
        "stored {} < {must_have} appended before the last flush interval",
        stored.len()
    );
    // Only complete files: everything on disk is a readable, non-temporary Parquet file, and
    // the stored flows are exactly the first N appended.
    assert!(
        parquet_files(tmp.path())
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".tmp"))
    );
    let g = FlowGenerator::new(10, now_ts(), 1_000_000);
    let mut uuids: Vec<String> = stored.iter().map(|f| f.uuid.clone()).collect();
    let mut want: Vec<String> = (0..stored.len()).map(|i| g.flow(i).uuid).collect();
    uuids.sort();
    want.sort();
    assert_eq!(uuids, want);
}

#[test]
fn history_queries_honour_since_until_limit_and_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(config(tmp.path())).unwrap();
    let start = hour_start_ago(3);
    let g = FlowGenerator::new(10, start, 1); // one flow per second
    let flows: Vec<Flow> = g.batch(0, 100);
    for f in &flows[..60] {
        store.try_append(f.clone());
    }
    store.flush().unwrap();
    for f in &flows[60..] {
        store.try_append(f.clone()); // these stay unflushed
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().pending_rows < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let at = |s: i64| Timestamp {
        seconds: start.seconds + s,
        nanos: 0,
    };
    let rt = rt();
    let q = |q: FlowQuery| rt.block_on(store.query_flows(&q)).unwrap();
    let stored: Vec<Flow> = flows.iter().map(stored_form).collect();

    let range = q(FlowQuery {
        since: Some(at(50)),
        until: Some(at(70)),
        ..Default::default()
    });
    assert_eq!(
        range,
        stored[50..70].to_vec(),
        "across files and unflushed batches"
    );

    let first = q(FlowQuery {
        since: Some(at(10)),
        limit: Some(5),
        ..Default::default()
    });
    assert_eq!(first, stored[10..15].to_vec());

    let last = q(FlowQuery {
        limit: Some(3),
        newest_first: true,
        ..Default::default()
    });
    assert_eq!(
        last,
        vec![stored[99].clone(), stored[98].clone(), stored[97].clone()]
    );

    // `--all`: a limit past any count is no limit.
    let all = q(FlowQuery {
        limit: Some(usize::MAX),
        ..Default::default()
    });
    assert_eq!(all, stored);
}

#[test]
fn a_time_range_query_never_opens_files_outside_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(config(tmp.path())).unwrap();
    let early = FlowGenerator::new(10, hour_start_ago(5), 10).batch(0, 100);
    let late = FlowGenerator::new(10, hour_start_ago(2), 10).batch(0, 100);
    for f in early.iter().chain(&late) {
        store.try_append(f.clone());
    }
    store.flush().unwrap();
    // Remove the early hour's file behind the store's back: a scan that opened it would fail.
    let segs = store.segments();
    assert_eq!(segs.len(), 2);
    std::fs::remove_file(&segs[0].path).unwrap();
    let rt = rt();
    let got = rt
        .block_on(store.query_flows(&FlowQuery {
            since: Some(hour_start_ago(3)),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(got, late.iter().map(stored_form).collect::<Vec<_>>());
    let counted = rt
        .block_on(store.sql(&format!(
            "SELECT count(*) FROM flows WHERE time >= to_timestamp_seconds({})",
            hour_start_ago(3).seconds
        )))
        .unwrap();
    assert_eq!(counted.rows, vec![vec![serde_json::json!(100)]]);
    // Without the time filter the missing file is an error, not silently skipped.
    assert!(
        rt.block_on(store.query_flows(&FlowQuery::default()))
            .is_err()
    );
}

#[test]
fn a_hubble_filter_narrows_the_history_scan_and_the_answer_is_the_same() {
    // What `GET /api/v1/flows` and `GetFlows` history do for `--pod ns/name`, `--verdict` or
    // `--identity`: the filter's prefilter goes into the scan, the exact filter runs after.
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(config(tmp.path())).unwrap();
    let g = FlowGenerator::new(200, hour_start_ago(2), 1000);
    let flows = g.batch(0, 4000);
    for f in &flows[..3000] {
        store.try_append(f.clone());
    }
    store.flush().unwrap();
    for f in &flows[3000..] {
        store.try_append(f.clone()); // unflushed batches are narrowed too
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().pending_rows < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (namespace, pod) = g.pod_name(8);
    let named = format!("{namespace}/{pod}");
    let cases = [
        vec![
            FlowFilter {
                source_pod: vec![named.clone()],
                ..Default::default()
            },
            FlowFilter {
                destination_pod: vec![named.clone()],
                ..Default::default()
            },
        ],
        vec![FlowFilter {
            // A namespace and a name prefix shared by several pods, and a verdict.
            source_pod: vec![format!("{namespace}/{}", &pod[..pod.len() - 2])],
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }],
        vec![FlowFilter {
            destination_identity: vec![flows[7].destination.as_ref().unwrap().identity],
            ..Default::default()
        }],
        vec![FlowFilter {
            // Replies are tested on the decoded flow only: the scan narrows, the filter decides.
            destination_pod: vec![named.clone()],
            reply: vec![false],
            ..Default::default()
        }],
    ];
    let rt = rt();
    for whitelist in cases {
        let filters = FlowFilters::compile(&whitelist, &[]).unwrap();
        let prefilter = filters.prefilter();
        assert!(prefilter.is_some(), "{whitelist:?} narrows the scan");
        // Pod, verdict and identity checks alone are the whole filter: newest first, the limit
        // goes into the scan too.
        let exact = whitelist.iter().all(|f| f.reply.is_empty());
        assert_eq!(prefilter.as_ref().unwrap().exact, exact, "{whitelist:?}");
        // `hubble observe --all` asks for u64::MAX flows.
        for (newest_first, limit) in [(true, 50), (false, 50), (true, usize::MAX)] {
            let q = |prefilter| FlowQuery {
                limit: Some(limit),
                newest_first,
                prefilter,
                ..Default::default()
            };
            let run = |q: FlowQuery| {
                rt.block_on(store.query_flows_matching(&q, usize::MAX, |f| filters.matches(f)))
                    .unwrap()
            };
            let (narrowed, full) = (run(q(prefilter.clone())), run(q(None)));
            assert!(!full.flows.is_empty(), "{whitelist:?} matches some flows");
            assert_eq!(narrowed.flows, full.flows, "{whitelist:?}");
            assert!(
                narrowed.scanned * 4 < full.scanned,
                "{whitelist:?}: {} rows decoded with the prefilter, {} without",
                narrowed.scanned,
                full.scanned
            );
        }
    }
}
