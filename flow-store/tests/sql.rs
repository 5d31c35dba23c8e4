//! Read-only SQL over table `flows`: what runs, what is rejected, and each limit.

use std::time::Duration;

mod common;

use flow_store::generator::FlowGenerator;
use flow_store::{FlowStore, SqlError, SqlLimits, StoreConfig};
use webb_proto::Timestamp;
use webb_proto::flow::Flow;

struct Fixture {
    _tmp: tempfile::TempDir,
    store: FlowStore,
    rt: tokio::runtime::Runtime,
}

fn generator() -> FlowGenerator {
    FlowGenerator::new(
        100,
        Timestamp {
            seconds: 1_795_820_400,
            nanos: 0,
        },
        1000,
    )
}

fn fixture(rows: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = FlowStore::open(StoreConfig {
        flush_interval: Duration::from_secs(3600),
        retention_age: None,
        ..StoreConfig::new(tmp.path())
    })
    .unwrap();
    for f in generator().batch(0, rows) {
        assert!(store.append_blocking(f));
    }
    store.flush().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        _tmp: tmp,
        store,
        rt,
    }
}

impl Fixture {
    fn sql(&self, q: &str) -> Result<flow_store::SqlResult, SqlError> {
        self.rt.block_on(self.store.sql(q))
    }
    fn sql_limited(&self, q: &str, l: SqlLimits) -> Result<flow_store::SqlResult, SqlError> {
        self.rt.block_on(self.store.sql_with_limits(q, l))
    }
}

#[test]
fn a_select_answers_columns_with_types_and_json_rows() {
    let fx = fixture(1000);
    let r = fx
        .sql("SELECT verdict, count(*) AS n FROM flows GROUP BY verdict ORDER BY verdict")
        .unwrap();
    let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["verdict", "n"]);
    assert_eq!(r.columns[1].r#type, "Int64");
    assert!(!r.truncated);
    let total: i64 = r.rows.iter().map(|row| row[1].as_i64().unwrap()).sum();
    assert_eq!(total, 1000);
    let verdicts: Vec<&str> = r.rows.iter().map(|row| row[0].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["DROPPED", "FORWARDED"]);
    // The HTTP answer shape of DESIGN.md.
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["columns"][0]["name"].is_string() && json["columns"][0]["type"].is_string());
    assert!(json["rows"].is_array() && json["truncated"].is_boolean());
}

#[test]
fn select_star_serialises_every_column() {
    let fx = fixture(50);
    let r = fx.sql("SELECT * FROM flows LIMIT 3").unwrap();
    assert_eq!(r.columns.len(), flow_store::flow_schema().fields().len());
    assert_eq!(r.rows.len(), 3);
    assert!(r.rows.iter().all(|row| row.len() == r.columns.len()));
}

/// Files store `uuid` split (see `flow_store::uuid`); table `flows` shows the text, and a
/// filter on it finds the flow, for Webb's UUIDs and any other text alike.
#[test]
fn flows_are_found_by_their_uuid_text() {
    let fx = fixture(1000);
    let foreign = "3F2504E0-4F89-41D3-9A0C-0305E82C3301";
    let g = generator();
    assert!(fx.store.append_blocking(Flow {
        uuid: foreign.into(),
        time: Some(g.time(1000)),
        ..Default::default()
    }));
    fx.store.flush().unwrap();
    let webb = g.flow(500).uuid;
    for u in [webb.as_str(), foreign] {
        let r = fx
            .sql(&format!("SELECT uuid, time FROM flows WHERE uuid = '{u}'"))
            .unwrap();
        assert_eq!(r.columns[0].r#type, "Utf8");
        let found: Vec<&str> = r.rows.iter().map(|row| row[0].as_str().unwrap()).collect();
        assert_eq!(found, [u]);
    }
    let r = fx
        .sql("SELECT count(*) FROM flows WHERE uuid LIKE '3F25%' OR uuid IS NULL")
        .unwrap();
    assert_eq!(r.rows[0][0].as_i64(), Some(1));
}

/// Files keep a summary only when it is not the one the flow's fields give (see
/// `flow_store::summary`); table `flows` shows every summary, and filters on it find them.
#[test]
fn summaries_are_shown_and_found_whether_stored_or_derived() {
    let fx = fixture(1000);
    let g = generator();
    let mut own = g.flow(1000);
    own.summary = "TCP Flags: SYN (kernel: nf_hook_slow)".into();
    assert!(fx.store.append_blocking(own.clone()));
    fx.store.flush().unwrap();
    let mut written = g.batch(0, 1000);
    written.push(own);

    let r = fx
        .sql("SELECT uuid, summary, l4_protocol FROM flows")
        .unwrap();
    let shown: std::collections::HashMap<&str, &str> = r
        .rows
        .iter()
        .map(|row| (row[0].as_str().unwrap(), row[1].as_str().unwrap()))
        .collect();
    assert_eq!(shown.len(), written.len());
    for f in &written {
        assert_eq!(shown[f.uuid.as_str()], f.summary, "flow {}", f.uuid);
    }
    let gets = written
        .iter()
        .filter(|f| f.summary.starts_with("HTTP/1.1 GET "))
        .count();
    let r = fx
        .sql("SELECT count(*) FROM flows WHERE summary LIKE 'HTTP/1.1 GET %'")
        .unwrap();
    assert!(gets > 100);
    assert_eq!(r.rows[0][0].as_i64(), Some(gets as i64));
    let r = fx
        .sql("SELECT summary FROM flows WHERE summary LIKE '%nf_hook_slow%'")
        .unwrap();
    assert_eq!(r.rows.len(), 1);

    // On disk: NULL for each derived one, the text for the rest (DNS answers, the own one).
    let derived = written
        .iter()
        .filter(|f| webb_proto::summary::derived(f).as_deref() == Some(f.summary.as_str()))
        .count();
    assert!(derived > written.len() * 9 / 10, "{derived}");
    let mut nulls = 0;
    for path in common::files_ending(fx._tmp.path(), ".parquet") {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(path).unwrap(),
        )
        .unwrap();
        let mask = parquet::arrow::ProjectionMask::columns(reader.parquet_schema(), ["summary"]);
        for b in reader.with_projection(mask).build().unwrap() {
            nulls += b.unwrap().column(0).null_count();
        }
    }
    assert_eq!(nulls, derived);
}

#[test]
fn repeated_column_names_keep_their_positions() {
    let fx = fixture(10);
    let r = fx
        .sql("SELECT a.uuid, b.uuid FROM flows a CROSS JOIN flows b WHERE a.uuid < b.uuid LIMIT 1")
        .unwrap();
    assert_eq!(r.columns[0].name, r.columns[1].name);
    let (x, y) = (
        r.rows[0][0].as_str().unwrap(),
        r.rows[0][1].as_str().unwrap(),
    );
    assert!(x < y, "{x} then {y}");
}

#[test]
fn each_statement_that_is_not_a_query_is_rejected_by_kind() {
    let fx = fixture(10);
    let cases = [
        ("INSERT INTO flows (uuid) VALUES ('x')", "INSERT"),
        ("UPDATE flows SET uuid = 'x'", "UPDATE"),
        ("DELETE FROM flows", "DELETE"),
        ("CREATE TABLE t (a INT)", "CREATE TABLE"),
        ("CREATE VIEW v AS SELECT * FROM flows", "CREATE VIEW"),
        (
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "CREATE OR REPLACE VIEW",
        ),
        ("DROP TABLE flows", "DROP TABLE"),
        ("ALTER TABLE flows RENAME TO f", "ALTER TABLE"),
        ("COPY flows TO '/tmp/x.parquet'", "COPY"),
        (
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc/'",
            "CREATE EXTERNAL TABLE",
        ),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("RESET datafusion.execution.batch_size", "RESET"),
        ("PREPARE p AS SELECT * FROM flows", "PREPARE"),
        ("EXECUTE p", "EXECUTE"),
        ("EXPLAIN DELETE FROM flows", "DELETE"),
    ];
    for (q, kind) in cases {
        match fx.sql(q) {
            Err(SqlError::Rejected(k)) => assert_eq!(k, kind, "{q}"),
            other => panic!("{q}: expected rejection as {kind}, got {other:?}"),
        }
    }
}

#[test]
fn reading_anything_but_table_flows_is_rejected() {
    let fx = fixture(10);
    for q in [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_parquet('/tmp/x.parquet')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM flows WHERE uuid IN (SELECT value FROM generate_series(1, 3))",
    ] {
        let e = fx.sql(q).expect_err(q);
        assert!(
            matches!(e, SqlError::TableNotAllowed(_) | SqlError::Plan(_)),
            "{q}: {e:?}"
        );
        assert!(e.is_client_error());
    }
    let e = fx.sql("SELECT * FROM generate_series(1, 3)").unwrap_err();
    assert!(e.to_string().contains("flows"), "{e}");
}

#[test]
fn more_than_one_statement_is_rejected() {
    let fx = fixture(10);
    assert!(matches!(
        fx.sql("SELECT 1 FROM flows; DROP TABLE flows"),
        Err(SqlError::StatementCount(2))
    ));
}

#[test]
fn the_row_cap_truncates_and_says_so() {
    let fx = fixture(100);
    let l = SqlLimits {
        max_rows: 7,
        ..SqlLimits::default()
    };
    let r = fx.sql_limited("SELECT uuid FROM flows", l).unwrap();
    assert_eq!(r.rows.len(), 7);
    assert!(r.truncated);
    let r = fx.sql_limited("SELECT uuid FROM flows LIMIT 7", l).unwrap();
    assert_eq!(r.rows.len(), 7);
    assert!(!r.truncated);
}

#[test]
fn the_memory_limit_stops_a_query_and_says_so() {
    let fx = fixture(20_000);
    let l = SqlLimits {
        memory_bytes: 64 << 10,
        ..SqlLimits::default()
    };
    let e = fx
        .sql_limited("SELECT uuid, summary FROM flows ORDER BY summary, uuid", l)
        .unwrap_err();
    assert!(
        matches!(e, SqlError::MemoryLimit { limit_bytes } if limit_bytes == 64 << 10),
        "{e:?}"
    );
    assert!(e.to_string().contains("memory limit"));
}

#[test]
fn the_time_limit_stops_a_query_and_says_so() {
    let fx = fixture(5_000);
    let l = SqlLimits {
        timeout: Duration::from_millis(20),
        ..SqlLimits::default()
    };
    let e = fx
        .sql_limited(
            "SELECT count(*) FROM flows a CROSS JOIN flows b WHERE a.summary <> b.summary",
            l,
        )
        .unwrap_err();
    assert!(matches!(e, SqlError::TimeLimit { .. }), "{e:?}");
    assert!(e.to_string().contains("time limit"));
}
