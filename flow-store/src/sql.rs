//! Read-only SQL over table `flows` for `webb sql` and `POST /api/v1/sql`.
//!
//! Only one `SELECT` (or `EXPLAIN` of one) is run. Statements that change or define anything,
//! `COPY`, `CREATE EXTERNAL TABLE`, `SET`/`RESET`, `PREPARE`/`EXECUTE` are rejected before
//! planning (and DataFusion's `SQLOptions` forbid DDL, DML and statements as a second line);
//! a query may read table `flows` only, so file-reading table functions and URL tables are
//! rejected too. Each query runs in its own session with a memory limit, under a time limit,
//! and returns at most a row cap; the answer says which limit was hit.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;
use serde::Serialize;

use crate::store::FlowStore;
use crate::table::TABLE;

/// Limits of one SQL query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Memory DataFusion may reserve for the query (sorts, joins, aggregates).
    pub memory_bytes: usize,
    /// Wall-clock time for planning and running the query.
    pub timeout: Duration,
    /// Rows returned at most; more set `truncated`.
    pub max_rows: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(30),
            max_rows: 10_000,
        }
    }
}

/// One column of a result: `{"name", "type"}` (the Arrow type, e.g. `Int64`, `Utf8`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub r#type: String,
}

/// The answer of `POST /api/v1/sql`: `{"columns", "rows", "truncated"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlResult {
    pub columns: Vec<SqlColumn>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// The row cap was hit: more rows matched than `rows` holds.
    pub truncated: bool,
}

/// Why a query was refused or failed. [`SqlError::is_client_error`] tells 4xx from 5xx.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("SQL syntax error: {0}")]
    Parse(String),
    #[error("expected exactly one SQL statement, found {0}")]
    StatementCount(usize),
    #[error("{0} is not allowed: only read-only queries (SELECT) over table `flows` can be run")]
    Rejected(String),
    #[error("table `{0}` is not allowed: queries may read table `flows` only")]
    TableNotAllowed(String),
    #[error("query exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    #[error("query exceeded its time limit of {limit:?}")]
    TimeLimit { limit: Duration },
    #[error("query is invalid: {0}")]
    Plan(String),
    #[error("query failed: {0}")]
    Execution(String),
}

impl SqlError {
    /// The query's fault (bad, forbidden or over a limit) rather than the server's.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, SqlError::Execution(_))
    }
}

/// The keyword(s) naming a statement, e.g. `INSERT`, `CREATE VIEW`, `SET`.
fn statement_kind(text: &str) -> String {
    let words: Vec<String> = text
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let n = match words.first().map(String::as_str) {
        Some("CREATE") if words.get(1).is_some_and(|w| w == "OR") => 4,
        Some("CREATE" | "DROP" | "ALTER") => 2,
        _ => 1,
    };
    words.into_iter().take(n).collect::<Vec<_>>().join(" ")
}

fn check_statement(s: &DfStatement) -> Result<(), SqlError> {
    match s {
        DfStatement::Statement(st) => match st.as_ref() {
            SqlStatement::Query(_) => Ok(()),
            other => Err(SqlError::Rejected(statement_kind(&other.to_string()))),
        },
        DfStatement::Explain(e) => check_statement(&e.statement),
        DfStatement::CreateExternalTable(_) => {
            Err(SqlError::Rejected("CREATE EXTERNAL TABLE".into()))
        }
        DfStatement::CopyTo(_) => Err(SqlError::Rejected("COPY".into())),
        DfStatement::Reset(_) => Err(SqlError::Rejected("RESET".into())),
    }
}

fn check_tables(plan: &LogicalPlan) -> Result<(), SqlError> {
    let mut bad = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() != TABLE
        {
            bad = Some(scan.table_name.to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match bad {
        Some(t) => Err(SqlError::TableNotAllowed(t)),
        None => Ok(()),
    }
}

fn classify(e: DataFusionError, limits: &SqlLimits) -> SqlError {
    let root = e.find_root();
    if matches!(root, DataFusionError::ResourcesExhausted(_))
        || e.to_string().contains("Resources exhausted")
    {
        return SqlError::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        };
    }
    match root {
        DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::SQL(..)
        | DataFusionError::NotImplemented(_) => SqlError::Plan(e.to_string()),
        _ => SqlError::Execution(e.to_string()),
    }
}

pub(crate) fn to_json_rows(
    batches: &[RecordBatch],
) -> Result<Vec<Vec<serde_json::Value>>, SqlError> {
    let mut rows = Vec::new();
    for b in batches {
        if b.num_rows() == 0 {
            continue;
        }
        // Positional names: a result may repeat a column name (`SELECT a, a`).
        let fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| f.as_ref().clone().with_name(format!("c{i}")))
            .collect();
        let renamed = RecordBatch::try_new(Arc::new(Schema::new(fields)), b.columns().to_vec())
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(Vec::new());
        w.write(&renamed)
            .map_err(|e| SqlError::Execution(format!("result to JSON: {e}")))?;
        w.finish()
            .map_err(|e| SqlError::Execution(format!("result to JSON: {e}")))?;
        let objects: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&w.into_inner())
                .map_err(|e| SqlError::Execution(format!("result to JSON: {e}")))?;
        let n = b.num_columns();
        for mut o in objects {
            rows.push(
                (0..n)
                    .map(|i| {
                        o.remove(&format!("c{i}"))
                            .unwrap_or(serde_json::Value::Null)
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

impl FlowStore {
    /// Runs one read-only query over table `flows` with the store's configured limits.
    pub async fn sql(&self, query: &str) -> Result<SqlResult, SqlError> {
        self.sql_with_limits(query, self.config().sql).await
    }

    /// Runs one read-only query over table `flows` with the given limits.
    pub async fn sql_with_limits(
        &self,
        query: &str,
        limits: SqlLimits,
    ) -> Result<SqlResult, SqlError> {
        let statements = DFParser::parse_sql(query).map_err(|e| SqlError::Parse(e.to_string()))?;
        if statements.len() != 1 {
            return Err(SqlError::StatementCount(statements.len()));
        }
        check_statement(&statements[0])?;
        let _lease = self.shared.lease();

        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            // Untrusted queries do not write spill files: over the limit is an error.
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_runtime_env(runtime)
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_table(TABLE, Arc::new(self.table()))
            .map_err(|e| SqlError::Execution(e.to_string()))?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);

        let run = async {
            let df = ctx
                .sql_with_options(query, options)
                .await
                .map_err(|e| classify(e, &limits))?;
            check_tables(df.logical_plan())?;
            let schema = df.schema().as_arrow().clone();
            let mut stream = df
                .execute_stream()
                .await
                .map_err(|e| classify(e, &limits))?;
            let mut batches = Vec::new();
            let mut rows = 0usize;
            let mut truncated = false;
            while let Some(b) = stream.next().await {
                let b = b.map_err(|e| classify(e, &limits))?;
                if rows + b.num_rows() > limits.max_rows {
                    batches.push(b.slice(0, limits.max_rows - rows));
                    truncated = true;
                    break;
                }
                rows += b.num_rows();
                batches.push(b);
            }
            Ok::<_, SqlError>((schema, batches, truncated))
        };
        let (schema, batches, truncated) = tokio::time::timeout(limits.timeout, run)
            .await
            .map_err(|_| SqlError::TimeLimit {
                limit: limits.timeout,
            })??;
        Ok(SqlResult {
            columns: schema
                .fields()
                .iter()
                .map(|f| SqlColumn {
                    name: f.name().clone(),
                    r#type: f.data_type().to_string(),
                })
                .collect(),
            rows: to_json_rows(&batches)?,
            truncated,
        })
    }
}
