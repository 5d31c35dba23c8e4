//! Parquet segment files on disk: naming, Hive partition directories, atomic writes, footers.
//!
//! Layout: `<dir>/date=YYYY-MM-DD/hour=HH/<name>.parquet` where `<name>` is
//! - `seg-<seq>`: one flush of the writer (a sequence number that only grows), or
//! - `cmp-<lo>-<hi>`: the compaction of every file of that directory with a sequence number in
//!   `lo..=hi`. When both a `cmp` file and the files it replaces exist (a crash between the
//!   rename and the deletes), the replaced ones are deleted at open.
//!
//! Files are written under a hidden temporary name (`.<name>.parquet.tmp`, which Spark, Trino
//! and DuckDB globs skip) and renamed into place once complete, so a reader never sees half a
//! file; temporary files left by a crash are deleted at open.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch, TimestampNanosecondArray};
use chrono::{DateTime, Datelike, Timelike};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;

use crate::partial_map::{PartialMap, sidecar_path, write_sidecar};
use crate::schema::{TIME, file_schema};
use crate::uuid::{UUID_HEAD, UUID_TAIL, UUID_TEXT};

pub(crate) const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// One complete Parquet file of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    /// Hours since the Unix epoch of its partition directory.
    pub hour: i64,
    pub seq_lo: u64,
    pub seq_hi: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Smallest and largest `time` in the file, in ns since the epoch (the hour's bounds for a
    /// file whose rows have no time).
    pub min_time: i64,
    pub max_time: i64,
    /// Size of its service-map sidecar (`<stem>.map`, see `partial_map`); `None` without one
    /// (files of older versions: the map scans them).
    pub map_bytes: Option<u64>,
}

impl Segment {
    /// Bytes on disk, sidecar included.
    pub fn disk_bytes(&self) -> u64 {
        self.bytes + self.map_bytes.unwrap_or(0)
    }

    /// Deletes the file and its sidecar.
    pub(crate) fn remove(&self) -> std::io::Result<()> {
        if self.map_bytes.is_some() {
            let _ = fs::remove_file(sidecar_path(&self.path));
        }
        fs::remove_file(&self.path)
    }
}

pub(crate) fn partition_dir(root: &Path, hour: i64) -> PathBuf {
    let t = DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default();
    root.join(format!(
        "date={:04}-{:02}-{:02}",
        t.year(),
        t.month(),
        t.day()
    ))
    .join(format!("hour={:02}", t.hour()))
}

fn parse_partition(date: &str, hour: &str) -> Option<i64> {
    let date = date.strip_prefix("date=")?;
    let hour: u32 = hour.strip_prefix("hour=")?.parse().ok()?;
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let t = d.and_hms_opt(hour, 0, 0)?.and_utc();
    Some(t.timestamp() / 3600)
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".parquet")?;
    if let Some(seq) = stem.strip_prefix("seg-") {
        let s = seq.parse().ok()?;
        return Some((s, s));
    }
    let (lo, hi) = stem.strip_prefix("cmp-")?.split_once('-')?;
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

pub(crate) fn file_name(seq_lo: u64, seq_hi: u64) -> String {
    if seq_lo == seq_hi {
        format!("seg-{seq_lo:020}.parquet")
    } else {
        format!("cmp-{seq_lo:020}-{seq_hi:020}.parquet")
    }
}

/// Text columns unique (or nearly) per flow whose neighbours share long prefixes (URLs,
/// summaries, trace ids): prefix-delta encoded, not dictionary encoded. A uuid's text (when not
/// split, see `crate::uuid`) stays plain: its shared prefix is per producer, and producers
/// alternate from row to row (measured larger with prefix deltas).
const PREFIX_DELTA_COLUMNS: &[&str] = &["summary", "http_url", "trace_id"];

/// Columns whose min/max can never skip a page (unique per flow, or the same few values on
/// every page): the writer spends no time on their statistics. Nested columns are named by
/// their leaf path.
const NO_STATISTICS_COLUMNS: &[&str] = &[
    UUID_HEAD,
    UUID_TAIL,
    UUID_TEXT,
    "summary",
    "http_url",
    "trace_id",
    "residual",
    "node_labels.list.item",
    "source_labels.list.item",
    "destination_labels.list.item",
];

/// Rows per data page: dictionary indexes and levels of 100 Ki rows compress far better under
/// zstd than the default 20 Ki (bytes/flow 26.4 -> 24.3 on the bench's flows), and a page is
/// still a small part of a row group for the page index to skip.
const PAGE_ROWS: usize = 100 * 1024;

pub(crate) fn writer_properties(zstd_level: i32, row_group_rows: usize) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).unwrap_or_default(),
        ))
        .set_dictionary_enabled(true)
        // Page-level min/max (and the column index) let readers skip row groups and pages by
        // time, pod, verdict, ...
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_data_page_row_count_limit(PAGE_ROWS)
        // Times rise almost monotonically: deltas take a byte or two where plain takes eight.
        .set_column_dictionary_enabled(ColumnPath::from(TIME), false)
        .set_column_encoding(ColumnPath::from(TIME), Encoding::DELTA_BINARY_PACKED)
        // Unique per flow: a dictionary would only be built to be thrown away.
        .set_column_dictionary_enabled(ColumnPath::from(UUID_TEXT), false)
        // The last byte of each producer's counter, producers interleaved: byte streams
        // under zstd beat deltas and dictionaries (see `crate::uuid`).
        .set_column_dictionary_enabled(ColumnPath::from(UUID_TAIL), false)
        .set_column_encoding(ColumnPath::from(UUID_TAIL), Encoding::BYTE_STREAM_SPLIT);
    for c in NO_STATISTICS_COLUMNS {
        let path = ColumnPath::new(c.split('.').map(str::to_owned).collect());
        b = b.set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    for c in PREFIX_DELTA_COLUMNS {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(*c), false)
            .set_column_encoding(ColumnPath::from(*c), Encoding::DELTA_BYTE_ARRAY);
    }
    b.build()
}

pub(crate) fn time_range(batches: &[RecordBatch]) -> Option<(i64, i64)> {
    let mut range: Option<(i64, i64)> = None;
    for b in batches {
        let Some(t) = b
            .column_by_name(TIME)
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        else {
            continue;
        };
        if let (Some(lo), Some(hi)) = (arrow::compute::min(t), arrow::compute::max(t)) {
            range = Some(match range {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
    }
    range
}

/// Encodes flow batches of [`file_schema`] (as [`crate::FlowBatchBuilder`] makes them) as one
/// Parquet file the way the store writes its files, rows in the order given (arrival order, nearly time order: keeps `time` delta-encoded in a byte or two
/// and the sequential uuids small; sorting by endpoint was measured to double the size).
/// Batches are written as they come, so a caller streaming them (compaction) holds one batch
/// and the row group being encoded, never all the rows at once.
pub fn write_parquet<W: std::io::Write + Send>(
    batches: impl IntoIterator<Item = Result<RecordBatch, parquet::errors::ParquetError>>,
    out: W,
    props: WriterProperties,
) -> Result<W, parquet::errors::ParquetError> {
    let mut w = ArrowWriter::try_new(out, file_schema(), Some(props))?;
    for b in batches {
        w.write(&b?)?;
    }
    w.into_inner()
}

/// Writes `batches` as one file of partition `hour` named after `seq_lo..=seq_hi`, atomically,
/// through [`write_parquet`], with its service-map sidecar (renamed into place before the data
/// file, so that a data file of this version always has one; a sidecar left without its data
/// file by a crash is deleted at open).
pub(crate) fn write(
    root: &Path,
    hour: i64,
    seq_lo: u64,
    seq_hi: u64,
    batches: impl IntoIterator<Item = Result<RecordBatch, parquet::errors::ParquetError>>,
    props: WriterProperties,
) -> std::io::Result<Segment> {
    let dir = partition_dir(root, hour);
    fs::create_dir_all(&dir)?;
    let name = file_name(seq_lo, seq_hi);
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    let mut rows = 0u64;
    let mut range: Option<(i64, i64)> = None;
    let mut map = PartialMap::default();
    let mut map_ok = true;
    let map_path = sidecar_path(&path);
    let result = (|| {
        let counted = batches.into_iter().inspect(|batch| {
            if let Ok(batch) = batch {
                rows += batch.num_rows() as u64;
                if let Some((lo, hi)) = time_range(std::slice::from_ref(batch)) {
                    range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                }
                // Batches of the flow schema always have the map's columns; without them the
                // file is simply left without a sidecar.
                map_ok &= map.add_batch(batch, None).is_ok();
            }
        });
        write_parquet(counted, File::create(&tmp)?, props)?.sync_all()?;
        Ok::<(), parquet::errors::ParquetError>(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(std::io::Error::other(e));
    }
    let map_bytes = if map_ok {
        match write_sidecar(&map_path, &map) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(path = %map_path.display(), error = %e, "service-map sidecar not written; the map will scan this file");
                None
            }
        }
    } else {
        None
    };
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&map_path);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable only once the directory entry is.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    let bytes = fs::metadata(&path)?.len();
    let (min_time, max_time) = range.unwrap_or((hour * NS_PER_HOUR, (hour + 1) * NS_PER_HOUR - 1));
    Ok(Segment {
        path,
        hour,
        seq_lo,
        seq_hi,
        rows,
        bytes,
        min_time,
        max_time,
        map_bytes,
    })
}

/// Reads a segment's facts from its footer.
fn read_footer(path: &Path, hour: i64, seq_lo: u64, seq_hi: u64) -> std::io::Result<Segment> {
    let file = File::open(path)?;
    let bytes = file.metadata()?.len();
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(std::io::Error::other)?;
    let time_idx = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == TIME);
    let mut range: Option<(i64, i64)> = None;
    for rg in meta.row_groups() {
        let stats = time_idx.and_then(|i| rg.column(i).statistics());
        if let Some(Statistics::Int64(s)) = stats
            && let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt())
        {
            range = Some(match range {
                None => (*lo, *hi),
                Some((a, b)) => (a.min(*lo), b.max(*hi)),
            });
        }
    }
    let (min_time, max_time) = range.unwrap_or((hour * NS_PER_HOUR, (hour + 1) * NS_PER_HOUR - 1));
    Ok(Segment {
        path: path.to_owned(),
        hour,
        seq_lo,
        seq_hi,
        rows: meta.file_metadata().num_rows() as u64,
        bytes,
        min_time,
        max_time,
        map_bytes: fs::metadata(sidecar_path(path)).ok().map(|m| m.len()),
    })
}

/// What [`scan`] found and did.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    pub segments: Vec<Segment>,
    pub removed_temp: usize,
    pub removed_replaced: usize,
    pub unreadable: Vec<PathBuf>,
}

/// Lists the store's files, deleting crash leftovers: temporary files and files already
/// replaced by a compaction.
pub(crate) fn scan(root: &Path) -> std::io::Result<Recovery> {
    let mut rec = Recovery::default();
    for date in fs::read_dir(root)? {
        let date = date?;
        if !date.file_type()?.is_dir() {
            continue;
        }
        for hour_dir in fs::read_dir(date.path())? {
            let hour_dir = hour_dir?;
            if !hour_dir.file_type()?.is_dir() {
                continue;
            }
            let Some(hour) = parse_partition(
                &date.file_name().to_string_lossy(),
                &hour_dir.file_name().to_string_lossy(),
            ) else {
                continue;
            };
            let mut found = Vec::new();
            let mut sidecars = Vec::new();
            for f in fs::read_dir(hour_dir.path())? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    fs::remove_file(f.path())?;
                    rec.removed_temp += 1;
                } else if let Some((lo, hi)) = parse_name(&name) {
                    found.push((f.path(), lo, hi));
                } else if name.ends_with(".map") {
                    sidecars.push(f.path());
                }
            }
            // A sidecar whose data file is gone: a crash between the two renames (or between
            // the two deletes of retention or compaction).
            for m in sidecars {
                if !found.iter().any(|(p, _, _)| sidecar_path(p) == m) {
                    fs::remove_file(&m)?;
                    rec.removed_temp += 1;
                }
            }
            // A file whose range lies inside another's was compacted into it.
            let replaced = |lo: u64, hi: u64| {
                found
                    .iter()
                    .any(|(_, l, h)| (*l, *h) != (lo, hi) && *l <= lo && hi <= *h)
            };
            let mut keep = Vec::new();
            for (path, lo, hi) in &found {
                if replaced(*lo, *hi) {
                    let _ = fs::remove_file(sidecar_path(path));
                    fs::remove_file(path)?;
                    rec.removed_replaced += 1;
                } else {
                    keep.push((path.clone(), *lo, *hi));
                }
            }
            for (path, lo, hi) in keep {
                match read_footer(&path, hour, lo, hi) {
                    Ok(s) => rec.segments.push(s),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable Parquet file left out of the store");
                        rec.unreadable.push(path);
                    }
                }
            }
            remove_if_empty(&hour_dir.path());
        }
        remove_if_empty(&date.path());
    }
    rec.segments.sort_by_key(|s| (s.min_time, s.seq_lo));
    Ok(rec)
}

/// Removes a partition directory (and its date directory) once it holds nothing.
pub(crate) fn remove_if_empty(dir: &Path) {
    if fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none()) {
        let _ = fs::remove_dir(dir);
    }
}

/// Reads a file back batch by batch (for compaction).
pub(crate) fn read_batches(
    path: &Path,
) -> Result<
    impl Iterator<Item = Result<RecordBatch, parquet::errors::ParquetError>>,
    parquet::errors::ParquetError,
> {
    let file = File::open(path)?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(8_192)
        .build()?;
    Ok(reader.map(|b| b.map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_directories_are_hive_date_and_hour_and_parse_back() {
        // 2026-11-27T23:00:00Z
        let hour = 1_795_820_400 / 3600;
        let dir = partition_dir(Path::new("/x"), hour);
        assert_eq!(dir, Path::new("/x/date=2026-11-27/hour=23"));
        assert_eq!(parse_partition("date=2026-11-27", "hour=23"), Some(hour));
        assert_eq!(parse_partition("date=2026-11-27", "hour=x"), None);
    }

    #[test]
    fn file_names_carry_their_sequence_range() {
        assert_eq!(parse_name(&file_name(7, 7)), Some((7, 7)));
        assert_eq!(parse_name(&file_name(3, 9)), Some((3, 9)));
        assert_eq!(parse_name("notes.txt"), None);
    }
}
