//! Bounded metric families: series keyed by small inline strings, encoded by prometheus-client.
//!
//! prometheus-client's own `Family` cannot refuse a new series or drop series by predicate, so
//! series live here and are written through its encoders (a custom `Collector`).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use compact_str::CompactString;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::{CounterWithExemplar, HistogramWithExemplars};
use prometheus_client::metrics::gauge::Gauge;

/// Upper bound of labels on one series (11 labelsContext + source + destination + 4 own).
pub(crate) const MAX_LABELS: usize = 18;

/// Label values of one series, built on the stack: values up to 24 bytes stay inline, so a
/// lookup of an existing series allocates nothing.
pub(crate) struct LabelBuf {
    vals: [CompactString; MAX_LABELS],
    len: usize,
}

impl LabelBuf {
    pub(crate) fn new() -> Self {
        Self {
            vals: Default::default(),
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, v: &str) {
        self.push_owned(CompactString::from(v));
    }

    pub(crate) fn push_owned(&mut self, v: CompactString) {
        // Label counts are fixed by configuration and checked against MAX_LABELS at startup.
        if self.len < MAX_LABELS {
            self.vals[self.len] = v;
            self.len += 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Drops values back to `len` (reuse of a common prefix between metrics).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = len.min(self.len);
    }

    pub(crate) fn set(&mut self, i: usize, v: &str) {
        self.vals[i] = CompactString::from(v);
    }

    pub(crate) fn as_slice(&self) -> &[CompactString] {
        &self.vals[..self.len]
    }
}

/// Exemplar label set: `traceID="<32 hex>"` (Hubble's exact label name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLabel(pub(crate) [u8; 32]);

impl TraceLabel {
    /// Accepts a W3C trace id: 32 lower-case hex digits, not all zero.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 32
            || !b
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            || b.iter().all(|c| *c == b'0')
        {
            return None;
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(b);
        Some(Self(id))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl EncodeLabelSet for TraceLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("traceID", self.as_str()).encode(encoder.encode_label())
    }
}

/// A counter series: plain (lock-free) or with an exemplar slot.
#[derive(Debug)]
pub(crate) enum Ctr {
    Plain(Counter),
    Exemplar(CounterWithExemplar<TraceLabel>),
}

impl Ctr {
    pub(crate) fn inc(&self, trace: Option<&TraceLabel>) {
        self.inc_by(1, trace);
    }

    pub(crate) fn inc_by(&self, v: u64, trace: Option<&TraceLabel>) {
        match (self, trace) {
            (Ctr::Plain(c), _) => {
                c.inc_by(v);
            }
            (Ctr::Exemplar(c), Some(t)) => {
                c.inc_by(v, Some(t.clone()), None);
            }
            // Without a trace id keep the last exemplar (as Go's client does): bump the value only.
            (Ctr::Exemplar(c), None) => {
                use prometheus_client::metrics::counter::Atomic;
                c.inner().inc_by(v);
            }
        }
    }
}

impl EncodeMetric for Ctr {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Ctr::Plain(c) => c.encode(encoder),
            Ctr::Exemplar(c) => c.encode(encoder),
        }
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Prometheus' default histogram buckets (Go client `DefBuckets`), as Hubble uses.
pub(crate) const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(crate) type Hist = HistogramWithExemplars<TraceLabel>;

pub(crate) fn new_hist() -> Hist {
    HistogramWithExemplars::new(DEFAULT_BUCKETS.into_iter())
}

type SeriesMap<M> = HashMap<Box<[CompactString]>, M, foldhash::fast::RandomState>;

/// One metric family with a bound on its number of series.
pub(crate) struct Family<M> {
    pub(crate) name: &'static str,
    help: &'static str,
    kind: MetricType,
    pub(crate) label_names: Vec<&'static str>,
    series: RwLock<SeriesMap<M>>,
    max_series: usize,
    /// Updates refused because the family was full (`webb_metrics_series_dropped_total`).
    pub(crate) dropped: AtomicU64,
    make: Box<dyn Fn() -> M + Send + Sync>,
}

impl<M: EncodeMetric> Family<M> {
    pub(crate) fn new(
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        label_names: Vec<&'static str>,
        max_series: usize,
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            help,
            kind,
            label_names,
            series: RwLock::new(SeriesMap::default()),
            max_series,
            dropped: AtomicU64::new(0),
            make: Box::new(make),
        }
    }

    /// Applies `f` to the series `key`, creating it if the bound allows; false if refused.
    pub(crate) fn with(&self, key: &[CompactString], f: impl FnOnce(&M)) -> bool {
        debug_assert_eq!(key.len(), self.label_names.len(), "{}", self.name);
        {
            let g = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = g.get(key) {
                f(m);
                return true;
            }
        }
        let mut g = self.series.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = g.get(key) {
            f(m);
            return true;
        }
        if g.len() >= self.max_series {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let m = (self.make)();
        f(&m);
        g.insert(key.into(), m);
        true
    }

    /// Removes the series for which `remove(label_names, values)` holds; returns how many.
    pub(crate) fn remove_where(
        &self,
        remove: impl Fn(&[&'static str], &[CompactString]) -> bool,
    ) -> usize {
        let mut g = self.series.write().unwrap_or_else(|e| e.into_inner());
        let before = g.len();
        g.retain(|k, _| !remove(&self.label_names, k));
        before - g.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.series.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut me = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        // Sorted so the exposition is stable between scrapes (and testable).
        let mut keys: Vec<&Box<[CompactString]>> = g.keys().collect();
        keys.sort();
        for k in keys {
            let labels = SeriesLabels {
                names: &self.label_names,
                values: k,
            };
            let fe = me.encode_family(&labels)?;
            g[k].encode(fe)?;
        }
        Ok(())
    }
}

struct SeriesLabels<'a> {
    names: &'a [&'static str],
    values: &'a [CompactString],
}

impl EncodeLabelSet for SeriesLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        for (n, v) in self.names.iter().zip(self.values) {
            (*n, v.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Encodes a single gauge series with fixed labels (build info, queue depth).
pub(crate) fn encode_gauge_series(
    me: &mut MetricEncoder,
    labels: &[(&str, &str)],
    g: &Gauge,
) -> Result<(), std::fmt::Error> {
    let set: Vec<(&str, &str)> = labels.to_vec();
    let fe = me.encode_family(&set)?;
    g.encode(fe)
}
