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

use std::io::Write;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::datatypes::{DataType, TimestampNanosecondType, UInt32Type};
use chrono::{DateTime, Datelike, Timelike};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;

use crate::partial_map::{PartialMap, sidecar_path, write_sidecar};
use crate::schema::{TIME, file_schema, opt};
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
/// Parquet file the way the store writes its files: row groups of the properties' row count,
/// each with its rows in [`ROW_ORDER`], written a column at a time (see [`write_row_groups`]).
pub fn write_parquet<W: Write + Send>(
    batches: &[RecordBatch],
    out: W,
    props: WriterProperties,
) -> Result<W, ParquetError> {
    let schema = file_schema();
    if let Some(b) = batches
        .iter()
        .find(|b| b.schema().fields() != schema.fields())
    {
        return Err(ParquetError::General(format!(
            "a batch of {} columns does not have the flow schema",
            b.num_columns()
        )));
    }
    let rows = row_group_rows(&props);
    let groups = sliced_groups(batches, rows).into_iter().map(Ordered::new);
    write_row_groups(groups, out, props)
}

/// Rows per row group the properties ask for (at least one).
fn row_group_rows(props: &WriterProperties) -> usize {
    props.max_row_group_row_count().unwrap_or(usize::MAX).max(1)
}

/// One row group's rows, handed to the writer one top-level column of [`file_schema`] at a time.
trait RowGroupColumns {
    /// Hands `write` the arrays of top-level column `index`, in row order, one at a time (so
    /// that the whole column need not be in memory twice).
    fn each_array(&mut self, index: usize, write: &mut ArraySink<'_>) -> Result<(), ParquetError>;

    /// The arrays of top-level column `index`, in row order.
    fn column(&mut self, index: usize) -> Result<Vec<ArrayRef>, ParquetError> {
        let mut arrays = Vec::new();
        self.each_array(index, &mut |a| {
            arrays.push(a);
            Ok(())
        })?;
        Ok(arrays)
    }
}

/// What [`RowGroupColumns::each_array`] hands each array to.
type ArraySink<'a> = dyn FnMut(ArrayRef) -> Result<(), ParquetError> + 'a;

/// Writes each row group a column at a time, so that one column's encoder, zstd context,
/// dictionary and pages are in memory at once. `ArrowWriter` encodes all ~85 columns of a row
/// group together: a compaction at 50k flows/s held ~140 MB that way (heaptrack: zstd
/// contexts 47 MB, byte-array and level buffers 70 MB, readers' contexts 20 MB).
fn write_row_groups<W: Write + Send, G: RowGroupColumns>(
    groups: impl IntoIterator<Item = Result<G, ParquetError>>,
    out: W,
    props: WriterProperties,
) -> Result<W, ParquetError> {
    let schema = file_schema();
    let (mut file, factory) =
        ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
    let mut leaves_of = vec![0usize; schema.fields().len()];
    let descr = file.schema_descr();
    for leaf in 0..descr.num_columns() {
        leaves_of[descr.get_column_root_idx(leaf)] += 1;
    }
    for (index, group) in groups.into_iter().enumerate() {
        let mut group = group?;
        let mut writers = factory.create_column_writers(index)?.into_iter();
        let mut row_group = file.next_row_group()?;
        for (k, field) in schema.fields().iter().enumerate() {
            let mut column: Vec<_> = writers.by_ref().take(leaves_of[k]).collect();
            group.each_array(k, &mut |array| {
                for (writer, leaf) in column.iter_mut().zip(compute_leaves(field, &array)?) {
                    writer.write(&leaf)?;
                }
                Ok(())
            })?;
            for writer in column {
                writer.close()?.append_to_row_group(&mut row_group)?;
            }
        }
        row_group.close()?;
    }
    file.into_inner()
}

/// The order of the rows in each row group: by source endpoint, then time. A row group holds a
/// minute or more of many pods' flows; a pod's flows side by side make runs of its namespace,
/// pod, labels, workload, IP, interface and MAC (columns that are functions of the endpoint),
/// which arrival order stores again on every row. `time`, delta-encoded, pays part of it back
/// (larger gaps within one endpoint's run). Row groups' time ranges are unchanged (pruning),
/// and no query relies on row order: they sort by time.
const ROW_ORDER: [&str; 3] = ["source_identity", "source_id", TIME];

/// A row group with its rows put in [`ROW_ORDER`]; `G` gives them in any order.
struct Ordered<G> {
    inner: G,
    /// `G`'s rows in output order: as (array, row) and as positions in its arrays
    /// concatenated.
    order: Vec<(usize, usize)>,
    positions: UInt32Array,
}

impl<G: RowGroupColumns> Ordered<G> {
    fn new(mut inner: G) -> Result<Self, ParquetError> {
        let schema = file_schema();
        let [identity, id, time] = ROW_ORDER.map(|name| schema.index_of(name));
        let (identity, id, time) = (
            inner.column(identity?)?,
            inner.column(id?)?,
            inner.column(time?)?,
        );
        // One packed key per row (a null sorts as 0, or as the earliest time), sorted as plain
        // integers; the position breaks ties, so equal keys keep their order.
        let mut keys: Vec<(u128, u32)> = Vec::new();
        let mut rows = Vec::new();
        for (array, ((identity, id), time)) in identity.iter().zip(&id).zip(&time).enumerate() {
            let (identity, id, time) = (
                identity.as_primitive::<UInt32Type>(),
                id.as_primitive::<UInt32Type>(),
                time.as_primitive::<TimestampNanosecondType>(),
            );
            for r in 0..identity.len() {
                let identity = opt(identity, r).unwrap_or(0);
                let id = opt(id, r).unwrap_or(0);
                let time = opt(time, r).unwrap_or(i64::MIN);
                let key = (u128::from(identity) << 96)
                    | (u128::from(id) << 64)
                    | u128::from((time as u64) ^ (1 << 63));
                keys.push((key, keys.len() as u32));
                rows.push((array, r));
            }
        }
        keys.sort_unstable();
        let order = keys.iter().map(|&(_, p)| rows[p as usize]).collect();
        let positions = UInt32Array::from_iter_values(keys.into_iter().map(|(_, p)| p));
        Ok(Ordered {
            inner,
            order,
            positions,
        })
    }
}

/// Rows gathered at a time: an ordered copy of a whole column (labels of 128 Ki rows: ~20 MB)
/// raised webb-relay's peak memory by as much.
const ORDERED_CHUNK_ROWS: usize = 8192;

impl<G: RowGroupColumns> RowGroupColumns for Ordered<G> {
    fn each_array(&mut self, index: usize, write: &mut ArraySink<'_>) -> Result<(), ParquetError> {
        let arrays = self.inner.column(index)?;
        let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
        if let Some(DataType::Dictionary(..)) = arrays.first().map(|a| a.data_type()) {
            // `take` moves the keys only, over the one dictionary `concat` merges.
            let all = arrow::compute::concat(&refs)?;
            drop(arrays);
            for chunk in 0..self.positions.len().div_ceil(ORDERED_CHUNK_ROWS) {
                let start = chunk * ORDERED_CHUNK_ROWS;
                let len = ORDERED_CHUNK_ROWS.min(self.positions.len() - start);
                write(arrow::compute::take(
                    &all,
                    &self.positions.slice(start, len),
                    None,
                )?)?;
            }
        } else {
            // Lists (labels, policies, headers): `interleave` gathers their children in one
            // pass where `take` extends them row by row (labels: 14 against 38 ms per row group).
            for chunk in self.order.chunks(ORDERED_CHUNK_ROWS) {
                write(arrow::compute::interleave(&refs, chunk)?)?;
            }
        }
        Ok(())
    }
}

/// A row group cut from batches in memory (zero-copy slices).
struct SlicedGroup(Vec<RecordBatch>);

impl RowGroupColumns for SlicedGroup {
    fn each_array(&mut self, index: usize, write: &mut ArraySink<'_>) -> Result<(), ParquetError> {
        self.0
            .iter()
            .try_for_each(|b| write(b.column(index).clone()))
    }
}

/// `batches` cut into row groups of `rows` rows (the last one shorter).
fn sliced_groups(batches: &[RecordBatch], rows: usize) -> Vec<SlicedGroup> {
    let mut groups = Vec::new();
    let (mut current, mut filled) = (Vec::new(), 0);
    for b in batches {
        let mut offset = 0;
        while offset < b.num_rows() {
            let take = (rows - filled).min(b.num_rows() - offset);
            current.push(b.slice(offset, take));
            (offset, filled) = (offset + take, filled + take);
            if filled == rows {
                groups.push(SlicedGroup(std::mem::take(&mut current)));
                filled = 0;
            }
        }
    }
    if filled > 0 {
        groups.push(SlicedGroup(current));
    }
    groups
}

/// A compaction input: an open file and its footer.
struct Input {
    file: File,
    meta: ArrowReaderMetadata,
}

/// An output row group made of whole row groups of the inputs, read back a column at a time.
struct MergedGroup<'a> {
    inputs: &'a [Input],
    /// (input, its row groups) in row order.
    members: Vec<(usize, Vec<usize>)>,
}

impl RowGroupColumns for MergedGroup<'_> {
    fn each_array(&mut self, index: usize, write: &mut ArraySink<'_>) -> Result<(), ParquetError> {
        for (input, row_groups) in &self.members {
            let Input { file, meta } = &self.inputs[*input];
            let reader =
                ParquetRecordBatchReaderBuilder::new_with_metadata(file.try_clone()?, meta.clone())
                    .with_projection(ProjectionMask::roots(meta.parquet_schema(), [index]))
                    .with_row_groups(row_groups.clone())
                    .with_batch_size(8_192)
                    .build()?;
            for b in reader {
                write(b?.column(0).clone())?;
            }
        }
        Ok(())
    }
}

/// The inputs' row groups, in order, gathered into groups of at most `rows` rows (a larger input
/// row group stays whole).
fn merged_groups(inputs: &[Input], rows: usize) -> Vec<MergedGroup<'_>> {
    let mut groups = Vec::new();
    let (mut members, mut filled): (Vec<(usize, Vec<usize>)>, usize) = (Vec::new(), 0);
    for (i, input) in inputs.iter().enumerate() {
        for (r, rg) in input.meta.metadata().row_groups().iter().enumerate() {
            let n = rg.num_rows().max(0) as usize;
            if n == 0 {
                continue;
            }
            if filled > 0 && filled + n > rows {
                groups.push(MergedGroup {
                    inputs,
                    members: std::mem::take(&mut members),
                });
                filled = 0;
            }
            match members.last_mut() {
                Some((last, row_groups)) if *last == i => row_groups.push(r),
                _ => members.push((i, vec![r])),
            }
            filled += n;
        }
    }
    if filled > 0 {
        groups.push(MergedGroup { inputs, members });
    }
    groups
}

/// Writes `batches` as one file of partition `hour` named after `seq_lo..=seq_hi` (see
/// [`write_atomically`]), with its service-map sidecar.
pub(crate) fn write(
    root: &Path,
    hour: i64,
    seq_lo: u64,
    seq_hi: u64,
    batches: &[RecordBatch],
    props: WriterProperties,
) -> std::io::Result<Segment> {
    let mut map = PartialMap::default();
    // Batches of the flow schema always have the map's columns; without them the file is
    // simply left without a sidecar.
    let map_ok = batches.iter().all(|b| map.add_batch(b, None).is_ok());
    let encode = |file: File| write_parquet(batches, file, props);
    write_atomically(root, hour, (seq_lo, seq_hi), encode, map_ok.then_some(&map))
}

/// Merges the files of `run` (in order) into one file of partition `hour` named after their
/// sequence range, reading them a column at a time. Its sidecar merges theirs (none when one of
/// them has none: the map then scans the file).
pub(crate) fn merge(
    root: &Path,
    hour: i64,
    run: &[Segment],
    props: WriterProperties,
) -> std::io::Result<Segment> {
    let schema = file_schema();
    let mut inputs = Vec::with_capacity(run.len());
    for s in run {
        let file = File::open(&s.path)?;
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load(&file, options).map_err(std::io::Error::other)?;
        if meta.schema().fields() != schema.fields() {
            return Err(std::io::Error::other(format!(
                "{}: not written with this version's flow schema",
                s.path.display()
            )));
        }
        inputs.push(Input { file, meta });
    }
    let mut map = PartialMap::default();
    let mut map_ok = true;
    for s in run {
        map_ok =
            map_ok && s.map_bytes.is_some() && map.merge_sidecar(&sidecar_path(&s.path), s.rows);
    }
    let rows = row_group_rows(&props);
    // Row groups already a quarter full or more (a flush at a high rate) are spliced byte for
    // byte, statistics and page index kept: re-encoding them took about a core-second per
    // merge at 50k flows/s, while the relay's queues and unflushed batches filled (its peak
    // memory). Smaller ones (low rates) are re-encoded into full row groups.
    let splice = inputs.iter().all(|i| {
        i.meta
            .metadata()
            .row_groups()
            .iter()
            .all(|rg| rg.num_rows().max(0) as usize >= rows / 4)
    });
    let encode = |file: File| {
        if splice {
            splice_row_groups(&inputs, file, props)
        } else {
            let groups = merged_groups(&inputs, rows).into_iter().map(Ordered::new);
            write_row_groups(groups, file, props)
        }
    };
    let lo = run.iter().map(|s| s.seq_lo).min().unwrap_or_default();
    let hi = run.iter().map(|s| s.seq_hi).max().unwrap_or_default();
    write_atomically(root, hour, (lo, hi), encode, map_ok.then_some(&map))
}

/// Copies every row group of `inputs`, in order, into one file without decoding it.
fn splice_row_groups<W: Write + Send>(
    inputs: &[Input],
    out: W,
    props: WriterProperties,
) -> Result<W, ParquetError> {
    let (mut file, _) =
        ArrowWriter::try_new(out, file_schema(), Some(props))?.into_serialized_writer()?;
    for Input { file: input, meta } in inputs {
        let m = meta.metadata();
        for (r, rg) in m.row_groups().iter().enumerate() {
            let mut row_group = file.next_row_group()?;
            for (c, column) in rg.columns().iter().enumerate() {
                let column_index = m
                    .column_index()
                    .and_then(|index| index.get(r)?.get(c).cloned())
                    .filter(|index| !matches!(index, ColumnIndexMetaData::NONE));
                let offset_index = m
                    .offset_index()
                    .and_then(|index| index.get(r)?.get(c).cloned());
                let chunk = ColumnCloseResult {
                    bytes_written: column.compressed_size().max(0) as u64,
                    rows_written: rg.num_rows().max(0) as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index,
                    offset_index,
                };
                row_group.append_column(input, chunk)?;
            }
            row_group.close()?;
        }
    }
    file.into_inner()
}

/// Writes a file of partition `hour` named after `seqs` (lo, hi): `encode` fills a hidden
/// temporary file, which is fsynced and renamed into place once complete; the sidecar `map`
/// (if any) is renamed into place just before it, so a data file of this version always has
/// one (a sidecar left without its data file by a crash is deleted at open).
fn write_atomically(
    root: &Path,
    hour: i64,
    (seq_lo, seq_hi): (u64, u64),
    encode: impl FnOnce(File) -> Result<File, ParquetError>,
    map: Option<&PartialMap>,
) -> std::io::Result<Segment> {
    let dir = partition_dir(root, hour);
    fs::create_dir_all(&dir)?;
    let name = file_name(seq_lo, seq_hi);
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    let map_path = sidecar_path(&path);
    let result = File::create(&tmp)
        .map_err(ParquetError::from)
        .and_then(encode)
        .and_then(|f| Ok(f.sync_all()?));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(std::io::Error::other(e));
    }
    if let Some(map) = map
        && let Err(e) = write_sidecar(&map_path, map)
    {
        tracing::warn!(path = %map_path.display(), error = %e, "service-map sidecar not written; the map will scan this file");
    }
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&map_path);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable only once the directory entry is.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    read_footer(&path, hour, seq_lo, seq_hi)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use webb_proto::Timestamp;

    use super::*;
    use crate::generator::FlowGenerator;

    #[test]
    fn partition_directories_are_hive_date_and_hour_and_parse_back() {
        // 2026-11-27T23:00:00Z
        let hour = 1_795_820_400 / 3600;
        let dir = partition_dir(Path::new("/x"), hour);
        assert_eq!(dir, Path::new("/x/date=2026-11-27/hour=23"));
        assert_eq!(parse_partition("date=2026-11-27", "hour=23"), Some(hour));
        assert_eq!(parse_partition("date=2026-11-27", "hour=x"), None);
    }

    fn batches(g: &FlowGenerator, from: usize, rows: &[usize]) -> Vec<RecordBatch> {
        let mut at = from;
        rows.iter()
            .map(|&n| {
                let batch = crate::flows_to_batch(&g.batch(at, n));
                at += n;
                batch
            })
            .collect()
    }

    fn read_all(path: &Path) -> (RecordBatch, Vec<i64>) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let groups = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows())
            .collect();
        let all: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        (
            arrow::compute::concat_batches(&file_schema(), &all).unwrap(),
            groups,
        )
    }

    /// `written` as a file of row groups of `groups` rows holds it: each group's rows ordered
    /// by source identity, source id and time (a stable sort: ties keep their order).
    fn in_row_order(written: &[RecordBatch], groups: &[i64]) -> RecordBatch {
        let all = arrow::compute::concat_batches(&file_schema(), written).unwrap();
        let u32s = |name: &str| all[name].as_primitive::<UInt32Type>().clone();
        let (identity, id) = (u32s("source_identity"), u32s("source_id"));
        let time = all[TIME].as_primitive::<TimestampNanosecondType>().clone();
        let mut order: Vec<u32> = Vec::new();
        let mut start = 0;
        for &n in groups {
            let mut rows: Vec<u32> = (start..start + n as u32).collect();
            rows.sort_by_key(|&r| {
                (
                    identity.value(r as usize),
                    id.value(r as usize),
                    time.value(r as usize),
                )
            });
            order.extend(rows);
            start += n as u32;
        }
        arrow::compute::take_record_batch(&all, &UInt32Array::from(order)).unwrap()
    }

    #[test]
    fn a_file_is_cut_into_row_groups_of_the_configured_rows_each_in_endpoint_order() {
        let tmp = tempfile::tempdir().unwrap();
        let g = FlowGenerator::new(40, Timestamp::now(), 1_000);
        let written = batches(&g, 0, &[70, 0, 45, 120]);
        let hour = 1_795_820_400 / 3600;
        let seg = write(tmp.path(), hour, 1, 1, &written, writer_properties(3, 100)).unwrap();
        let (rows, groups) = read_all(&seg.path);
        assert_eq!(groups, [100, 100, 35]);
        assert_eq!(seg.rows, 235);
        assert_eq!(rows, in_row_order(&written, &groups));
    }

    /// Files of `sizes` (each a list of batch sizes) merged with row groups of `limit` rows:
    /// checks that the merged file holds the inputs' rows (each row group in endpoint order)
    /// and a sidecar of them, and returns the file and its row groups' sizes.
    fn merge_checked(dir: &Path, limit: usize, sizes: &[&[usize]]) -> (Segment, Vec<i64>) {
        let g = FlowGenerator::new(40, Timestamp::now(), 1_000);
        let hour = 1_795_820_400 / 3600;
        let props = || writer_properties(3, limit);
        let (mut run, mut written) = (Vec::new(), Vec::new());
        for (seq, rows) in (1..).zip(sizes) {
            let b = batches(&g, written.iter().map(RecordBatch::num_rows).sum(), rows);
            run.push(write(dir, hour, seq, seq, &b, props()).unwrap());
            written.extend(b);
        }
        let merged = merge(dir, hour, &run, props()).unwrap();
        let total: usize = written.iter().map(RecordBatch::num_rows).sum();
        assert_eq!((merged.seq_lo, merged.seq_hi), (1, sizes.len() as u64));
        assert_eq!(merged.rows, total as u64);
        let last = &run[run.len() - 1];
        assert_eq!(
            (merged.min_time, merged.max_time),
            (run[0].min_time, last.max_time)
        );
        let (rows, groups) = read_all(&merged.path);
        assert_eq!(rows, in_row_order(&written, &groups));
        let mut expect = PartialMap::default();
        for b in &written {
            expect.add_batch(b, None).unwrap();
        }
        assert!(!expect.sorted().is_empty());
        assert_eq!(
            crate::partial_map::read_sidecar(&sidecar_path(&merged.path), merged.rows),
            Some(expect),
            "the merged sidecar describes the merged rows"
        );
        (merged, groups)
    }

    #[test]
    fn a_merge_of_small_row_groups_re_encodes_them_whole_into_fuller_ones() {
        // Row groups under a quarter of the limit (400): 60 | 30 | 300 + 200 (the third
        // file's own groups: 400 and 100), gathered whole into groups of at most 400 rows.
        let tmp = tempfile::tempdir().unwrap();
        let (_, groups) = merge_checked(tmp.path(), 400, &[&[60], &[30], &[300, 200]]);
        assert_eq!(groups, [90, 400, 100]);
    }

    #[test]
    fn a_merge_of_large_row_groups_splices_them_with_their_page_index() {
        // Every row group at least a quarter of the limit (100): copied as they are.
        let tmp = tempfile::tempdir().unwrap();
        let (merged, groups) = merge_checked(tmp.path(), 100, &[&[60], &[30], &[80, 70]]);
        assert_eq!(groups, [60, 30, 100, 50]);
        let file = File::open(&merged.path).unwrap();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load(&file, options).unwrap();
        let time = meta
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == TIME)
            .unwrap();
        let m = meta.metadata();
        let pages = m.offset_index().expect("offset index kept");
        assert_eq!(pages.len(), 4);
        assert!(pages.iter().all(|rg| !rg[time].page_locations.is_empty()));
        let stats = m.column_index().expect("column index kept");
        assert!(
            stats
                .iter()
                .all(|rg| !matches!(rg[time], ColumnIndexMetaData::NONE))
        );
    }

    #[test]
    fn a_merge_refuses_a_file_of_another_schema_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let g = FlowGenerator::new(4, Timestamp::now(), 1_000);
        let hour = 1_795_820_400 / 3600;
        let ours = write(
            tmp.path(),
            hour,
            1,
            1,
            &batches(&g, 0, &[10]),
            writer_properties(3, 100),
        )
        .unwrap();
        let other = RecordBatch::try_from_iter([(
            "time",
            Arc::new(arrow::array::Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        let foreign = partition_dir(tmp.path(), hour).join(file_name(2, 2));
        let mut w =
            ArrowWriter::try_new(File::create(&foreign).unwrap(), other.schema(), None).unwrap();
        w.write(&other).unwrap();
        w.close().unwrap();
        let theirs = read_footer(&foreign, hour, 2, 2).unwrap();
        let err = merge(tmp.path(), hour, &[ours, theirs], writer_properties(3, 100))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&foreign.display().to_string()), "{err}");
        assert!(err.contains("flow schema"), "{err}");
        let left: Vec<_> = fs::read_dir(partition_dir(tmp.path(), hour))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet") || n.ends_with(".tmp"))
            .collect();
        assert_eq!(left.len(), 2, "only the two inputs: {left:?}");
    }

    #[test]
    fn file_names_carry_their_sequence_range() {
        assert_eq!(parse_name(&file_name(7, 7)), Some((7, 7)));
        assert_eq!(parse_name(&file_name(3, 9)), Some((3, 9)));
        assert_eq!(parse_name("notes.txt"), None);
    }
}
