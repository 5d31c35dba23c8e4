//! The read path: table `flows` as a DataFusion [`TableProvider`] over the store's Parquet
//! files plus the batches not flushed yet, and [`FlowStore::query_flows`] for the relay.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, col, lit};
use flow_filter::{Narrowing, Prefilter, Side};
use futures::StreamExt;
use futures::stream::BoxStream;
use webb_proto::Timestamp;
use webb_proto::flow::{Flow, Verdict};

use crate::schema::{SchemaError, TIME, enum_name, file_schema, flow_schema, flows_from_batch};
use crate::segment::Segment;
use crate::store::{FlowStore, Shared};
use crate::summary::{SUMMARY, SUMMARY_STORED, shown_summary};
use crate::uuid::{UUID, UUID_HEAD, UUID_TAIL, UUID_TEXT, join_udf};

/// Name of the table in SQL.
pub const TABLE: &str = "flows";

/// Table `flows`: every stored flow, flushed or not. Filters on `time` prune whole files and
/// unflushed batches; all filters also reach the Parquet reader (row-group statistics, page
/// index, late materialization). Filters are reported `Inexact`, so DataFusion re-applies them.
#[derive(Clone)]
pub struct FlowsTable {
    shared: Arc<Shared>,
    /// Only these files and no unflushed batches (the service map's scan of what its
    /// sidecars do not cover); `None`: everything stored.
    only: Option<Arc<Vec<Segment>>>,
}

impl std::fmt::Debug for FlowsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowsTable")
            .field("dir", &self.shared.config.dir)
            .finish()
    }
}

fn ts_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIME)
}

fn literal_ns(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => ts_ns(v),
        Expr::Cast(c) => literal_ns(&c.expr),
        Expr::TryCast(c) => literal_ns(&c.expr),
        _ => None,
    }
}

/// `uuid` rebuilt from the stored columns that replace it.
fn joined_uuid() -> Expr {
    join_udf().call(vec![col(UUID_HEAD), col(UUID_TAIL), col(UUID_TEXT)])
}

/// `filter` over the stored columns: `uuid` becomes [`joined_uuid`] and `summary`
/// [`shown_summary`], so the Parquet reader can evaluate it (without pruning: those stored
/// columns have no statistics).
fn stored_filter(filter: Expr) -> DfResult<Expr> {
    filter
        .transform_up(|e| match &e {
            Expr::Column(c) if c.name == UUID => Ok(Transformed::yes(joined_uuid())),
            Expr::Column(c) if c.name == SUMMARY => Ok(Transformed::yes(shown_summary())),
            _ => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
}

/// The inclusive `[lo, hi]` range of `time` that the conjunction of `filters` allows.
pub(crate) fn time_bounds(filters: &[Expr]) -> (i64, i64) {
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    for f in filters {
        match f {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, v) = if is_time(left) {
                    (*op, literal_ns(right))
                } else if is_time(right) {
                    match op.swap() {
                        Some(op) => (op, literal_ns(left)),
                        None => continue,
                    }
                } else {
                    continue;
                };
                let Some(v) = v else { continue };
                match op {
                    Operator::Gt => lo = lo.max(v.saturating_add(1)),
                    Operator::GtEq => lo = lo.max(v),
                    Operator::Lt => hi = hi.min(v.saturating_sub(1)),
                    Operator::LtEq => hi = hi.min(v),
                    Operator::Eq => {
                        lo = lo.max(v);
                        hi = hi.min(v);
                    }
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_time(expr) => {
                if let Some(v) = literal_ns(low) {
                    lo = lo.max(v);
                }
                if let Some(v) = literal_ns(high) {
                    hi = hi.min(v);
                }
            }
            _ => {}
        }
    }
    (lo, hi)
}

#[async_trait]
impl TableProvider for FlowsTable {
    fn schema(&self) -> SchemaRef {
        flow_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Files and unflushed batches hold the stored columns (`file_schema`); the table shows
        // `uuid` rebuilt from its three (see `crate::uuid`) through a projection on top.
        let logical = flow_schema();
        let schema = file_schema();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..logical.fields().len()).collect(),
        };
        let mut stored: Vec<usize> = Vec::new();
        for &i in &wanted {
            let names: &[&str] = match logical.field(i).name().as_str() {
                UUID => &[UUID_HEAD, UUID_TAIL, UUID_TEXT],
                SUMMARY => &SUMMARY_STORED,
                name => &[name],
            };
            for name in names {
                // Once each: `summary` reads columns the query may show too.
                let index = schema.index_of(name)?;
                if !stored.contains(&index) {
                    stored.push(index);
                }
            }
        }
        let projection = Some(&stored);
        let (lo, hi) = time_bounds(filters);
        let (files, pending) = match &self.only {
            Some(files) => (files.as_ref().clone(), Vec::new()),
            None => self.shared.snapshot(),
        };
        // Without filters a limit is safe to apply at the source.
        let limit = if filters.is_empty() { limit } else { None };
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        let files: Vec<_> = files
            .into_iter()
            .filter(|s| s.max_time >= lo && s.min_time <= hi)
            .collect();
        if !files.is_empty() {
            let mut source = ParquetSource::new(schema.clone()).with_pushdown_filters(true);
            if let Some(pred) = conjunction(filters.iter().cloned()) {
                let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
                let pred = stored_filter(pred)?;
                source = source.with_predicate(state.create_physical_expr(pred, &df_schema)?);
            }
            let parts = state.config().target_partitions().max(1);
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); parts.min(files.len())];
            let n = groups.len();
            for (i, s) in files.iter().enumerate() {
                groups[i % n].push(PartitionedFile::new(
                    s.path.to_string_lossy().into_owned(),
                    s.bytes,
                ));
            }
            let config =
                FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                    .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                    .with_projection_indices(projection.cloned())?
                    .with_limit(limit)
                    .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }

        let batches: Vec<_> = pending
            .into_iter()
            .filter(|p| match (p.min_time, p.max_time) {
                (Some(a), Some(b)) => b >= lo && a <= hi,
                _ => true, // rows without time: let the filter decide
            })
            .map(|p| p.batch)
            .collect();
        if !batches.is_empty() {
            let mem = MemorySourceConfig::try_new(&[batches], schema.clone(), projection.cloned())?
                .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(mem));
        }

        if inputs.is_empty() {
            return Ok(Arc::new(EmptyExec::new(Arc::new(
                logical.project(&wanted)?,
            ))));
        }
        let input = UnionExec::try_new(inputs)?;
        let input_schema = DFSchema::try_from(input.schema().as_ref().clone())?;
        let mut exprs = Vec::with_capacity(wanted.len());
        for &i in &wanted {
            let name = logical.field(i).name();
            let e = match name.as_str() {
                UUID => joined_uuid(),
                SUMMARY => shown_summary(),
                _ => col(name.as_str()),
            };
            exprs.push((state.create_physical_expr(e, &input_schema)?, name.clone()));
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
    }
}

/// What [`FlowStore::query_flows`] reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowQuery {
    /// Only flows at or after this time.
    pub since: Option<Timestamp>,
    /// Only flows before this time.
    pub until: Option<Timestamp>,
    /// At most this many flows (`None`: all in range).
    pub limit: Option<usize>,
    /// Newest first (Hubble's `--last N`), else oldest first (`--first N`, `--since`).
    /// The result is always in that order.
    pub newest_first: bool,
    /// Rows that cannot match the caller's Hubble filter are skipped in the scan (pushed into
    /// the Parquet reader), before any flow is decoded; the caller still applies the filter.
    pub prefilter: Option<Prefilter>,
}

/// Flows that passed a filter, in the order asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatchedFlows {
    pub flows: Vec<Flow>,
    /// Rows read to find them.
    pub scanned: usize,
    /// The scan stopped at its row bound before the range or the limit was exhausted.
    pub scan_limit_hit: bool,
}

impl MatchedFlows {
    /// Reads `stream` until `want` flows matched or `scan_limit` rows in all were read (then
    /// the answer is partial, and says so).
    async fn take_matching(
        &mut self,
        mut stream: BoxStream<'static, Result<Flow, QueryError>>,
        want: usize,
        scan_limit: usize,
        keep: &impl Fn(&Flow) -> bool,
    ) -> Result<(), QueryError> {
        while let Some(f) = stream.next().await {
            let f = f?;
            self.scanned += 1;
            if keep(&f) {
                self.flows.push(f);
                if self.flows.len() >= want {
                    break;
                }
            }
            if self.scanned >= scan_limit {
                self.scan_limit_hit = true;
                break;
            }
        }
        Ok(())
    }
}

/// Why reading history failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("query failed: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("stored flows could not be read back: {0}")]
    Schema(#[from] SchemaError),
}

pub(crate) fn ts_lit(t: &Timestamp) -> Expr {
    let ns =
        i64::try_from(t.unix_nanos()).unwrap_or(if t.seconds < 0 { i64::MIN } else { i64::MAX });
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

impl FlowStore {
    /// Table `flows` of this store, to register in any DataFusion session.
    pub fn table(&self) -> FlowsTable {
        FlowsTable {
            shared: self.shared.clone(),
            only: None,
        }
    }

    /// A table of just `files` (no unflushed batches).
    pub(crate) fn table_of(&self, files: Vec<Segment>) -> FlowsTable {
        FlowsTable {
            shared: self.shared.clone(),
            only: Some(Arc::new(files)),
        }
    }

    /// A session with table `flows` registered (no limits; see [`FlowStore::sql`] for
    /// untrusted queries).
    pub fn session(&self) -> DfResult<SessionContext> {
        self.session_with(SessionConfig::new())
    }

    /// [`session`](Self::session) with other DataFusion settings.
    pub(crate) fn session_with(&self, config: SessionConfig) -> DfResult<SessionContext> {
        let ctx = SessionContext::new_with_config(config.with_target_partitions(2));
        ctx.register_table(TABLE, Arc::new(self.table()))?;
        Ok(ctx)
    }

    /// Stored flows in `[since, until)`, ordered by time, for `GetFlows` history. A relay
    /// answers `--since`/`--last N` from here and continues with live flows newer than the last
    /// one returned (flows still queued for the store are not visible yet: at most
    /// `seal_interval` behind).
    pub async fn query_flows(&self, q: &FlowQuery) -> Result<Vec<Flow>, QueryError> {
        let _lease = self.shared.lease();
        let mut out = Vec::new();
        for b in self.history_frame(q).await?.collect().await? {
            out.extend(flows_from_batch(&b)?);
        }
        Ok(out)
    }

    /// Like [`query_flows`](Self::query_flows), but yields flows batch by batch as DataFusion
    /// produces them (for large `--since` ranges without a limit).
    pub async fn stream_flows(
        &self,
        q: &FlowQuery,
    ) -> Result<BoxStream<'static, Result<Flow, QueryError>>, QueryError> {
        let lease = self.shared.lease();
        let stream = self.history_frame(q).await?.execute_stream().await?;
        Ok(stream
            .flat_map(move |b| {
                // The files stay on disk while the stream reads them.
                let _reading = &lease;
                let flows: Vec<Result<Flow, QueryError>> = match b
                    .map_err(QueryError::from)
                    .and_then(|b| Ok(flows_from_batch(&b)?))
                {
                    Ok(flows) => flows.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(flows)
            })
            .boxed())
    }

    /// Time range of everything stored (files and unflushed batches), in Unix ns.
    pub fn time_span(&self) -> Option<(i64, i64)> {
        let (files, pending) = self.shared.snapshot();
        let spans = files.iter().map(|f| (f.min_time, f.max_time)).chain(
            pending
                .iter()
                .filter_map(|p| Some((p.min_time?, p.max_time?))),
        );
        spans.reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
    }

    /// Like [`query_flows`](Self::query_flows), keeping only flows `keep` accepts (Hubble
    /// filters, which SQL cannot express), up to `q.limit` of them. Newest first walks back in
    /// growing windows, so a selective filter over a long range never sorts the whole range
    /// at once; `scan_limit` bounds the rows examined (the answer is then partial, and says so).
    pub async fn query_flows_matching(
        &self,
        q: &FlowQuery,
        scan_limit: usize,
        keep: impl Fn(&Flow) -> bool,
    ) -> Result<MatchedFlows, QueryError> {
        let mut out = MatchedFlows::default();
        let want = q.limit.unwrap_or(usize::MAX);
        let Some((lo, hi)) = self.time_span() else {
            return Ok(out);
        };
        let since = q
            .since
            .map_or(lo as i128, |t| t.unix_nanos().max(lo as i128));
        let until = q
            .until
            .map_or(hi as i128 + 1, |t| t.unix_nanos().min(hi as i128 + 1));
        if since >= until {
            return Ok(out);
        }
        if !q.newest_first {
            let all = FlowQuery {
                limit: None,
                ..q.clone()
            };
            out.take_matching(self.stream_flows(&all).await?, want, scan_limit, &keep)
                .await?;
            return Ok(out);
        }
        // When the scan alone answers the filter, each window's query takes only the flows
        // still wanted (a top-k in the scan, as SQL's `ORDER BY time DESC LIMIT n`): the
        // newest flows of a busy pod come from the last minute's row groups, those of a quiet
        // one from a few more windows. (One top-k over the whole range read every row group of
        // it: 0.26 s for a busy pod's newest 100 of the last hour of 100 M flows a day.) A
        // limit past the rows the caller lets us read (`--all` asks for u64::MAX) would make
        // it a full sort of every match: then each window is read whole.
        let limit_in_scan = q.limit.is_some_and(|n| n <= scan_limit)
            && q.prefilter.as_ref().is_some_and(scan_is_exact);
        let mut window: i128 = 60_000_000_000;
        let mut end = until;
        while end > since && out.flows.len() < want && !out.scan_limit_hit {
            let start = (end - window).max(since);
            let part = FlowQuery {
                since: Some(Timestamp::from_unix_nanos(start.max(0) as u64)),
                until: Some(Timestamp::from_unix_nanos(end.max(0) as u64)),
                limit: limit_in_scan.then(|| want - out.flows.len()),
                newest_first: true,
                prefilter: q.prefilter.clone(),
            };
            out.take_matching(self.stream_flows(&part).await?, want, scan_limit, &keep)
                .await?;
            end = start;
            window = (window * 2).min(3_600_000_000_000);
        }
        Ok(out)
    }

    async fn history_frame(&self, q: &FlowQuery) -> Result<DataFrame, QueryError> {
        let ctx = self.session()?;
        let mut df = ctx.table(TABLE).await?;
        if let Some(s) = &q.since {
            df = df.filter(col(TIME).gt_eq(ts_lit(s)))?;
        }
        if let Some(u) = &q.until {
            df = df.filter(col(TIME).lt(ts_lit(u)))?;
        }
        if let Some(p) = &q.prefilter {
            df = df.filter(prefilter_expr(p))?;
        }
        df = df.sort(vec![col(TIME).sort(!q.newest_first, false)])?;
        // DataFusion's limits are i64: a larger one (`--all`) is no limit.
        if let Some(n) = q.limit.filter(|&n| i64::try_from(n).is_ok()) {
            df = df.limit(0, Some(n))?;
        }
        Ok(df)
    }
}

/// The columns' form of a Hubble prefilter: any group, each group all of its narrowings.
fn prefilter_expr(p: &Prefilter) -> Expr {
    p.any_of
        .iter()
        .map(|group| conjunction(group.iter().map(narrowing_expr)).unwrap_or(lit(true)))
        .reduce(Expr::or)
        .unwrap_or(lit(true))
}

/// Whether the scan's predicate is the whole Hubble filter (see [`Prefilter::exact`]).
fn scan_is_exact(p: &Prefilter) -> bool {
    p.exact
        && p.any_of.iter().flatten().all(|n| match n {
            Narrowing::Pod(_, names) => names.iter().all(|(_, prefix)| like_safe(prefix)),
            Narrowing::Verdict(_) | Narrowing::Identity(..) => true,
        })
}

/// A pod-name prefix LIKE can test as it is: LIKE's wildcards and escape cannot appear in a
/// pod name, and a prefix with them is left to the exact filter. Empty: the namespace alone.
fn like_safe(prefix: &str) -> bool {
    !prefix.contains(['%', '_', '\\'])
}

fn narrowing_expr(n: &Narrowing) -> Expr {
    let side = |s: &Side| match s {
        Side::Source => "source",
        Side::Destination => "destination",
    };
    match n {
        Narrowing::Verdict(v) => col("verdict").in_list(
            v.iter()
                .map(|v| lit(enum_name::<Verdict>(*v).into_owned()))
                .collect(),
            false,
        ),
        Narrowing::Identity(s, ids) => col(format!("{}_identity", side(s)))
            .in_list(ids.iter().map(|id| lit(*id)).collect(), false),
        Narrowing::Pod(s, names) => names
            .iter()
            .map(|(namespace, prefix)| {
                let in_namespace =
                    col(format!("{}_namespace", side(s))).eq(lit(namespace.as_str()));
                if prefix.is_empty() || !like_safe(prefix) {
                    in_namespace
                } else {
                    in_namespace
                        .and(col(format!("{}_pod", side(s))).like(lit(format!("{prefix}%"))))
                }
            })
            .reduce(Expr::or)
            .unwrap_or(lit(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_bounds_follow_comparisons_on_either_side_and_between() {
        let t = || col(TIME);
        assert_eq!(time_bounds(&[]), (i64::MIN, i64::MAX));
        assert_eq!(time_bounds(&[t().gt_eq(ts(10)), t().lt(ts(20))]), (10, 19));
        assert_eq!(time_bounds(&[ts(10).lt(t())]), (11, i64::MAX));
        assert_eq!(time_bounds(&[t().between(ts(5), ts(7))]), (5, 7));
        assert_eq!(time_bounds(&[t().eq(ts(9))]), (9, 9));
        // Other columns and non-literal sides do not narrow the range.
        assert_eq!(
            time_bounds(&[col("uuid").gt_eq(lit("a")), t().gt(col(TIME))]),
            (i64::MIN, i64::MAX)
        );
    }
}
