//! Service-map partials: for a set of rows, per (client, server, traffic direction) the HTTP
//! exchanges, 5xx errors, a latency sketch, drops and new connections. Partials of disjoint
//! sets of rows merge by adding, so the map of a day is the merge of the partials kept beside
//! each file (its sidecar, `<file stem>.map`) plus a scan of the rows no sidecar covers (files
//! cut by the range, files without a sidecar, unflushed batches). Sidecar or scan, a row is
//! counted by the same code ([`PartialMap::add_batch`]), so both give the same map.
//!
//! Latency percentiles come from a sketch with fixed logarithmic buckets (as DDSketch): a
//! latency `x` ns (`x >= 1`) falls in bucket `i = ceil(ln x / ln γ)`, which covers
//! `(γ^(i-1), γ^i]` and is read back as `2γ^i / (γ + 1)`, clamped to the smallest and largest
//! latency seen. With `γ = 1.02` every percentile is within `(γ-1)/(γ+1)` < 1% (relative) of
//! the latency at that rank (nearest rank: the `ceil(q·n)`-th smallest).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch, TimestampNanosecondArray, UInt32Array, UInt64Array};
use prost::Message;

use crate::schema::{Str, TIME};

/// Bucket growth factor of the latency sketch.
const GAMMA: f64 = 1.02;
/// Bump when the row semantics or the sketch change: sidecars of another version are ignored
/// (their files are scanned instead).
const SIDECAR_VERSION: u32 = 1;

/// The columns a partial reads.
pub(crate) const MAP_COLUMNS: &[&str] = &[
    TIME,
    "verdict",
    "flow_type",
    "trace_reason",
    "traffic_direction",
    "l7_type",
    "l7_latency_ns",
    "http_code",
    "ip_source",
    "ip_destination",
    "source_namespace",
    "source_pod",
    "source_workload",
    "destination_namespace",
    "destination_pod",
    "destination_workload",
];

/// Mergeable latency percentiles (see the module comment for the error bound).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LatencySketch {
    zero: u64,
    buckets: BTreeMap<u32, u64>,
    min: u64,
    max: u64,
}

impl LatencySketch {
    fn count(&self) -> u64 {
        self.zero + self.buckets.values().sum::<u64>()
    }

    /// O(1), unlike `count() == 0`: `add` asks it once per latency written.
    fn is_empty(&self) -> bool {
        self.zero == 0 && self.buckets.is_empty()
    }

    pub(crate) fn add(&mut self, ns: u64) {
        if self.is_empty() {
            (self.min, self.max) = (ns, ns);
        } else {
            self.min = self.min.min(ns);
            self.max = self.max.max(ns);
        }
        if ns == 0 {
            self.zero += 1;
        } else {
            let i = ((ns as f64).ln() / GAMMA.ln()).ceil().max(0.0) as u32;
            *self.buckets.entry(i).or_default() += 1;
        }
    }

    fn merge(&mut self, other: &LatencySketch) {
        let buckets = other.buckets.iter().map(|(i, n)| (*i, *n));
        self.merge_parts(other.zero, (other.min, other.max), buckets);
    }

    /// Adds a sketch given by its parts (`buckets` as (index, count)).
    fn merge_parts(
        &mut self,
        zero: u64,
        (min, max): (u64, u64),
        buckets: impl ExactSizeIterator<Item = (u32, u64)>,
    ) {
        if zero == 0 && buckets.len() == 0 {
            return;
        }
        if self.is_empty() {
            (self.min, self.max) = (min, max);
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.zero += zero;
        for (i, n) in buckets {
            *self.buckets.entry(i).or_default() += n;
        }
    }

    /// The `q`-quantile (nearest rank) in ns; `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let clamp = |v: f64| v.clamp(self.min as f64, self.max as f64);
        if rank <= self.zero {
            return Some(0.0);
        }
        let mut seen = self.zero;
        for (i, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(clamp(2.0 * GAMMA.powi(*i as i32) / (GAMMA + 1.0)));
            }
        }
        Some(self.max as f64)
    }
}

/// One end of an edge: `namespace/workload`, else `namespace/pod`, else the IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MapEnd {
    pub id: String,
    pub namespace: String,
    pub name: String,
}

/// What one (client, server, direction) group counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EdgeStats {
    pub exchanges: u64,
    pub errors: u64,
    pub latency: LatencySketch,
    pub drops: u64,
    pub connections: u64,
}

impl EdgeStats {
    fn merge(&mut self, o: &EdgeStats) {
        self.exchanges += o.exchanges;
        self.errors += o.errors;
        self.latency.merge(&o.latency);
        self.drops += o.drops;
        self.connections += o.connections;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EdgeKey {
    pub client: MapEnd,
    pub server: MapEnd,
    pub direction: String,
}

/// The map's aggregates of a set of rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartialMap {
    /// Rows added (all of them, counted or not): a sidecar says which file it describes.
    pub rows: u64,
    edges: Vec<(EdgeKey, EdgeStats)>,
    /// `client id \0 server id \0 direction` → index in `edges` (foldhash: a day's map looks
    /// up every edge of every sidecar).
    index: HashMap<String, usize, foldhash::fast::FixedState>,
    key_buf: String,
}

impl PartialEq for PartialMap {
    fn eq(&self, o: &Self) -> bool {
        self.rows == o.rows && self.sorted() == o.sorted()
    }
}

fn lookup_key(buf: &mut String, client: &str, server: &str, direction: &str) {
    buf.clear();
    let _ = write!(buf, "{client}\0{server}\0{direction}");
}

/// One end of a row, borrowed from the batch: `(namespace, name, is_ip)`.
#[derive(Clone, Copy)]
struct EndRef<'a> {
    namespace: &'a str,
    name: &'a str,
    ip: bool,
}

impl EndRef<'_> {
    /// The end of a row's side (the map's rule: workload, else pod, else IP).
    fn of<'a>(
        ns: Option<&'a str>,
        pod: Option<&'a str>,
        workload: Option<&'a str>,
        ip: Option<&'a str>,
    ) -> Option<EndRef<'a>> {
        let namespace = ns.unwrap_or_default();
        match (
            workload.filter(|w| !w.is_empty()),
            pod.filter(|p| !p.is_empty()),
        ) {
            (Some(name), _) | (None, Some(name)) => Some(EndRef {
                namespace,
                name,
                ip: false,
            }),
            (None, None) => ip.map(|name| EndRef {
                namespace,
                name,
                ip: true,
            }),
        }
    }

    fn write_id(&self, buf: &mut String) {
        if !self.ip {
            buf.push_str(self.namespace);
            buf.push('/');
        }
        buf.push_str(self.name);
    }

    fn owned(&self) -> MapEnd {
        let mut id = String::new();
        self.write_id(&mut id);
        MapEnd {
            id,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        }
    }
}

fn side<'a>(s: &[Str<'a>; 3], ip: &Str<'a>, i: usize) -> Option<EndRef<'a>> {
    EndRef::of(s[0].get(i), s[1].get(i), s[2].get(i), ip.get(i))
}

/// Typed access to a batch's map columns.
struct MapCols<'a> {
    time: &'a TimestampNanosecondArray,
    verdict: Str<'a>,
    flow_type: Str<'a>,
    trace_reason: Str<'a>,
    direction: Str<'a>,
    l7_type: Str<'a>,
    latency: &'a UInt64Array,
    code: &'a UInt32Array,
    ip_src: Str<'a>,
    ip_dst: Str<'a>,
    src: [Str<'a>; 3],
    dst: [Str<'a>; 3],
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MapColumnError {
    #[error("column `{0}` is missing or has an unexpected type")]
    Column(&'static str),
}

impl<'a> MapCols<'a> {
    fn of(b: &'a RecordBatch) -> Result<Self, MapColumnError> {
        fn typed<'a, T: Array + 'static>(
            b: &'a RecordBatch,
            name: &'static str,
        ) -> Result<&'a T, MapColumnError> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or(MapColumnError::Column(name))
        }
        let s = |name: &'static str| -> Result<Str<'a>, MapColumnError> {
            let c = b.column_by_name(name).ok_or(MapColumnError::Column(name))?;
            Str::of(c.as_ref(), name).map_err(|_| MapColumnError::Column(name))
        };
        Ok(Self {
            time: typed(b, TIME)?,
            verdict: s("verdict")?,
            flow_type: s("flow_type")?,
            trace_reason: s("trace_reason")?,
            direction: s("traffic_direction")?,
            l7_type: s("l7_type")?,
            latency: typed(b, "l7_latency_ns")?,
            code: typed(b, "http_code")?,
            ip_src: s("ip_source")?,
            ip_dst: s("ip_destination")?,
            src: [
                s("source_namespace")?,
                s("source_pod")?,
                s("source_workload")?,
            ],
            dst: [
                s("destination_namespace")?,
                s("destination_pod")?,
                s("destination_workload")?,
            ],
        })
    }
}

impl PartialMap {
    /// Adds the rows of `b` whose time is in `[range.0, range.1)` (any time when `None`; rows
    /// without a time never count: no time range holds them). An HTTP exchange counts from its
    /// response (`l7_type = RESPONSE` with a status code), which runs server → client; drops
    /// and new connections (L3/L4, trace reason NEW, not dropped) run client → server.
    pub(crate) fn add_batch(
        &mut self,
        b: &RecordBatch,
        range: Option<(i64, i64)>,
    ) -> Result<(), MapColumnError> {
        self.rows += b.num_rows() as u64;
        let c = MapCols::of(b)?;
        for i in 0..b.num_rows() {
            if !c.time.is_valid(i) {
                continue;
            }
            if let Some((lo, hi)) = range {
                let t = c.time.value(i);
                if t < lo || t >= hi {
                    continue;
                }
            }
            let verdict = c.verdict.get(i);
            let is_response = c.l7_type.get(i) == Some("RESPONSE") && c.code.is_valid(i);
            let dropped = verdict == Some("DROPPED");
            let l34_new =
                c.flow_type.get(i) == Some("L3_L4") && c.trace_reason.get(i) == Some("NEW");
            if !(is_response || dropped || l34_new) {
                continue;
            }
            let (src, dst) = (side(&c.src, &c.ip_src, i), side(&c.dst, &c.ip_dst, i));
            let (client, server) = if is_response { (dst, src) } else { (src, dst) };
            let (Some(client), Some(server)) = (client, server) else {
                continue;
            };
            let direction = c.direction.get(i).unwrap_or_default();
            self.key_buf.clear();
            client.write_id(&mut self.key_buf);
            self.key_buf.push('\0');
            server.write_id(&mut self.key_buf);
            self.key_buf.push('\0');
            self.key_buf.push_str(direction);
            let at = match self.index.get(self.key_buf.as_str()) {
                Some(&at) => at,
                None => {
                    let at = self.edges.len();
                    self.index.insert(self.key_buf.clone(), at);
                    self.edges.push((
                        EdgeKey {
                            client: client.owned(),
                            server: server.owned(),
                            direction: direction.to_owned(),
                        },
                        EdgeStats::default(),
                    ));
                    at
                }
            };
            let e = &mut self.edges[at].1;
            if is_response {
                e.exchanges += 1;
                if c.code.value(i) >= 500 {
                    e.errors += 1;
                }
                if c.latency.is_valid(i) {
                    e.latency.add(c.latency.value(i));
                }
            }
            if dropped {
                e.drops += 1;
            }
            if l34_new && verdict.is_some_and(|v| v != "DROPPED") {
                e.connections += 1;
            }
        }
        Ok(())
    }

    fn entry(&mut self, key: &EdgeKey) -> &mut EdgeStats {
        lookup_key(
            &mut self.key_buf,
            &key.client.id,
            &key.server.id,
            &key.direction,
        );
        let at = match self.index.get(self.key_buf.as_str()) {
            Some(&at) => at,
            None => {
                let at = self.edges.len();
                self.index.insert(self.key_buf.clone(), at);
                self.edges.push((key.clone(), EdgeStats::default()));
                at
            }
        };
        &mut self.edges[at].1
    }

    /// Adds another partial (of other rows).
    pub(crate) fn merge(&mut self, other: &PartialMap) {
        self.rows += other.rows;
        for (k, s) in &other.edges {
            self.entry(k).merge(s);
        }
    }

    /// The groups, sorted by key.
    pub(crate) fn sorted(&self) -> Vec<(&EdgeKey, &EdgeStats)> {
        let mut v: Vec<_> = self.edges.iter().map(|(k, s)| (k, s)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    fn encode<'a>(&'a self) -> Vec<u8> {
        let mut ends: Vec<&'a MapEnd> = Vec::new();
        let mut end_ix: HashMap<&'a MapEnd, u32> = HashMap::new();
        let mut dirs: Vec<&str> = Vec::new();
        let mut end_of = |e: &'a MapEnd| -> u32 {
            if let Some(&i) = end_ix.get(e) {
                return i;
            }
            let i = ends.len() as u32;
            ends.push(e);
            end_ix.insert(e, i);
            i
        };
        let mut edges = Vec::with_capacity(self.edges.len());
        for (k, s) in &self.edges {
            let client = end_of(&k.client);
            let server = end_of(&k.server);
            let direction = match dirs.iter().position(|d| *d == k.direction) {
                Some(p) => p as u32,
                None => {
                    dirs.push(&k.direction);
                    (dirs.len() - 1) as u32
                }
            };
            let mut prev = 0u32;
            let mut bucket_delta = Vec::with_capacity(s.latency.buckets.len());
            let mut bucket_count = Vec::with_capacity(s.latency.buckets.len());
            for (i, n) in &s.latency.buckets {
                bucket_delta.push(i - prev);
                prev = *i;
                bucket_count.push(*n);
            }
            edges.push(EdgePb {
                client,
                server,
                direction,
                exchanges: s.exchanges,
                errors: s.errors,
                drops: s.drops,
                connections: s.connections,
                latency_zero: s.latency.zero,
                latency_min: s.latency.min,
                latency_max: s.latency.max,
                bucket_delta,
                bucket_count,
            });
        }
        SidecarPb {
            version: SIDECAR_VERSION,
            rows: self.rows,
            ends: ends
                .into_iter()
                .map(|e| EndPb {
                    id: e.id.clone(),
                    namespace: e.namespace.clone(),
                    name: e.name.clone(),
                })
                .collect(),
            directions: dirs.into_iter().map(str::to_owned).collect(),
            edges,
        }
        .encode_to_vec()
    }

    /// Adds the partial a sidecar holds, edge by edge (no partial of it is built: a day's map
    /// merges hundreds of them). False, with nothing added, when the bytes are not a sidecar of
    /// this version describing `rows` rows, or do not hold together.
    fn merge_encoded(&mut self, bytes: &[u8], rows: u64) -> bool {
        let Ok(pb) = SidecarPb::decode(bytes) else {
            return false;
        };
        let holds_together = pb.version == SIDECAR_VERSION
            && pb.rows == rows
            && pb.edges.iter().all(|e| {
                (e.client as usize) < pb.ends.len()
                    && (e.server as usize) < pb.ends.len()
                    && (e.direction as usize) < pb.directions.len()
                    && e.bucket_delta.len() == e.bucket_count.len()
                    && e.bucket_delta
                        .iter()
                        .try_fold(0u32, |at, d| at.checked_add(*d))
                        .is_some()
            });
        if !holds_together {
            return false;
        }
        self.rows += pb.rows;
        for e in &pb.edges {
            let (client, server) = (&pb.ends[e.client as usize], &pb.ends[e.server as usize]);
            let direction = &pb.directions[e.direction as usize];
            lookup_key(&mut self.key_buf, &client.id, &server.id, direction);
            let at = match self.index.get(self.key_buf.as_str()) {
                Some(&at) => at,
                None => {
                    let end = |e: &EndPb| MapEnd {
                        id: e.id.clone(),
                        namespace: e.namespace.clone(),
                        name: e.name.clone(),
                    };
                    let key = EdgeKey {
                        client: end(client),
                        server: end(server),
                        direction: direction.clone(),
                    };
                    self.index.insert(self.key_buf.clone(), self.edges.len());
                    self.edges.push((key, EdgeStats::default()));
                    self.edges.len() - 1
                }
            };
            let stats = &mut self.edges[at].1;
            stats.exchanges += e.exchanges;
            stats.errors += e.errors;
            stats.drops += e.drops;
            stats.connections += e.connections;
            let mut bucket = 0u32;
            let buckets = e.bucket_delta.iter().zip(&e.bucket_count).map(|(d, n)| {
                bucket += d;
                (bucket, *n)
            });
            stats
                .latency
                .merge_parts(e.latency_zero, (e.latency_min, e.latency_max), buckets);
        }
        true
    }
}

/// The sidecar of a store file: same directory and stem, extension `map`.
pub(crate) fn sidecar_path(parquet: &Path) -> PathBuf {
    parquet.with_extension("map")
}

/// Writes `p` as the sidecar at `path` (through a hidden temporary name, like the data files).
pub(crate) fn write_sidecar(path: &Path, p: &PartialMap) -> std::io::Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    // zstd takes a sidecar to ~40% (its counts and sketches repeat): 0.40 -> 0.14 bytes/flow
    // of the bench's data set. Level 3, as the data files.
    let bytes = zstd::bulk::compress(&p.encode(), 3)?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| bytes.len() as u64)
}

/// Reads a sidecar; `None` when it is absent, unreadable, of another version, or does not
/// describe `rows` rows (its file is then scanned instead).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[cfg(test)]
pub(crate) fn read_sidecar(path: &Path, rows: u64) -> Option<PartialMap> {
    let mut p = PartialMap::default();
    p.merge_sidecar(path, rows).then_some(p)
}

impl PartialMap {
    /// Adds the sidecar at `path`; false, with nothing added, when [`read_sidecar`] would give
    /// `None`.
    pub(crate) fn merge_sidecar(&mut self, path: &Path, rows: u64) -> bool {
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        // Sidecars written before they were compressed are plain protobuf, which never starts
        // with zstd's magic number (its first field, `version`, does).
        if bytes.starts_with(&ZSTD_MAGIC) {
            match zstd::stream::decode_all(bytes.as_slice()) {
                Ok(plain) => self.merge_encoded(&plain, rows),
                Err(_) => false,
            }
        } else {
            self.merge_encoded(&bytes, rows)
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct SidecarPb {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(uint64, tag = "2")]
    rows: u64,
    #[prost(message, repeated, tag = "3")]
    ends: Vec<EndPb>,
    #[prost(string, repeated, tag = "4")]
    directions: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    edges: Vec<EdgePb>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EndPb {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    namespace: String,
    #[prost(string, tag = "3")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EdgePb {
    #[prost(uint32, tag = "1")]
    client: u32,
    #[prost(uint32, tag = "2")]
    server: u32,
    #[prost(uint32, tag = "3")]
    direction: u32,
    #[prost(uint64, tag = "4")]
    exchanges: u64,
    #[prost(uint64, tag = "5")]
    errors: u64,
    #[prost(uint64, tag = "6")]
    drops: u64,
    #[prost(uint64, tag = "7")]
    connections: u64,
    #[prost(uint64, tag = "8")]
    latency_zero: u64,
    #[prost(uint64, tag = "9")]
    latency_min: u64,
    #[prost(uint64, tag = "10")]
    latency_max: u64,
    /// Bucket indexes, each as the difference to the previous one (small varints).
    #[prost(uint32, repeated, tag = "11")]
    bucket_delta: Vec<u32>,
    #[prost(uint64, repeated, tag = "12")]
    bucket_count: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nearest_rank(sorted: &[u64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64
    }

    #[test]
    fn sketch_percentiles_are_within_one_percent_of_the_exact_nearest_rank() {
        // Latencies over six orders of magnitude, uneven.
        let mut values: Vec<u64> = (0..20_000u64)
            .map(|i| 1_000 + (i * i * 7919) % 5_000_000_000)
            .collect();
        let mut s = LatencySketch::default();
        for v in &values {
            s.add(*v);
        }
        values.sort();
        for q in [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let exact = nearest_rank(&values, q);
            let est = s.quantile(q).unwrap();
            assert!(
                (est - exact).abs() <= exact * 0.01,
                "q {q}: {est} vs exact {exact}"
            );
        }
        assert_eq!(LatencySketch::default().quantile(0.5), None);
    }

    #[test]
    fn merged_sketches_equal_one_sketch_of_all_values() {
        let (mut a, mut b, mut all) = Default::default();
        for v in 0..1000u64 {
            let ns = v * 12_345;
            let part: &mut LatencySketch = if v % 3 == 0 { &mut a } else { &mut b };
            part.add(ns);
            LatencySketch::add(&mut all, ns);
        }
        LatencySketch::merge(&mut a, &b);
        assert_eq!(a, all);
    }

    #[test]
    fn a_partial_survives_its_sidecar_encoding() {
        let flows =
            crate::generator::FlowGenerator::new(100, webb_proto::Timestamp::default(), 1000)
                .batch(0, 5000);
        let batch = crate::schema::flows_to_batch(&flows);
        let mut p = PartialMap::default();
        p.add_batch(&batch, None).unwrap();
        assert!(p.edges.iter().any(|(_, s)| s.latency.count() > 0));
        assert!(p.edges.iter().any(|(_, s)| s.drops > 0));
        let mut back = PartialMap::default();
        assert!(back.merge_encoded(&p.encode(), p.rows));
        assert_eq!(back, p);
        // Added to what a partial already holds, it counts twice; of other rows, not at all.
        assert!(back.merge_encoded(&p.encode(), p.rows));
        let mut twice = p.clone();
        twice.merge(&p);
        assert_eq!(back, twice);
        assert!(!back.merge_encoded(&p.encode(), p.rows + 1));
        assert_eq!(back, twice);
    }

    /// Sidecars are written compressed; those written before (plain protobuf) still read.
    #[test]
    fn compressed_and_plain_sidecars_read_back() {
        let flows =
            crate::generator::FlowGenerator::new(100, webb_proto::Timestamp::default(), 1000)
                .batch(0, 2000);
        let mut p = PartialMap::default();
        p.add_batch(&crate::schema::flows_to_batch(&flows), None)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = (dir.path().join("new.map"), dir.path().join("old.map"));
        let written = write_sidecar(&new, &p).unwrap();
        std::fs::write(&old, p.encode()).unwrap();
        assert!(written < std::fs::metadata(&old).unwrap().len());
        assert_eq!(read_sidecar(&new, p.rows), Some(p.clone()));
        assert_eq!(read_sidecar(&old, p.rows), Some(p));
    }
}
