//! Webb's flow history: flows as Hive-partitioned zstd Parquet (`date=YYYY-MM-DD/hour=HH/`)
//! with a documented Arrow schema (SCHEMA.md), retention, compaction, a DataFusion table
//! `flows` over the files plus the not-yet-flushed batches, and read-only SQL.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use flow_store::{FlowQuery, FlowStore, StoreConfig};
//! let store = FlowStore::open(StoreConfig::new("./webb-data"))?;
//! store.try_append(webb_proto::flow::Flow::default()); // never blocks; overflow is counted
//! let history = store.query_flows(&FlowQuery { limit: Some(100), newest_first: true, ..Default::default() }).await?;
//! let answer = store.sql("SELECT verdict, count(*) FROM flows GROUP BY verdict").await?;
//! # Ok(()) }
//! ```

pub mod generator;
mod partial_map;
mod rebuilt;
pub mod schema;
mod segment;
mod service_map;
pub mod sql;
mod store;
pub mod summary;
mod table;
pub mod uuid;

pub use schema::{
    FlowBatchBuilder, SchemaError, file_schema, flow_schema, flows_from_batch, flows_to_batch,
    stored_form,
};
pub use segment::{Segment, write_parquet};
pub use service_map::{MapEdge, MapNode, MapQuery, ServiceMap};
pub use sql::{SqlColumn, SqlError, SqlLimits, SqlResult};
pub use store::{FlowStore, STAGE_QUEUE, STAGE_WRITE, StoreConfig, StoreError, StoreStats};
pub use table::{FlowQuery, FlowsTable, MatchedFlows, QueryError, TABLE};
