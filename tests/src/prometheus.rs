//! A real Prometheus (Debian's `prometheus` package, installed by `cargo xtask test`'s
//! prerequisites) started on a free loopback port with its own config and storage directory,
//! and its HTTP API (`/api/v1/...`).
//!
//! The test's Prometheus never touches a system service the package may have started: it has
//! its own port, directory and config, and is killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Process, free_port};

/// Scrape and rule-evaluation interval of the test's Prometheus.
pub const SCRAPE_INTERVAL: &str = "1s";

/// One scrape job: its name (the `job` label) and its `host:port` targets.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub targets: Vec<String>,
}

/// A running Prometheus; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    process: Process,
    /// `127.0.0.1:PORT` of its web UI and HTTP API.
    pub addr: String,
    agent: ureq::Agent,
}

impl Prometheus {
    /// Writes `dir/prometheus.yml` (the jobs, `rule_files`) and starts Prometheus with exemplar
    /// storage on a free loopback port, its TSDB in `dir/data`, its log in `dir/prometheus.log`.
    pub fn start(dir: &Path, jobs: &[Job], rule_files: &[PathBuf]) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(jobs, rule_files)).expect("writing prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn");
        let process = Process::spawn(&mut command, dir.join("prometheus.log"));
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        Prometheus {
            process,
            addr,
            agent,
        }
    }

    /// Waits until `/-/ready` answers 200 (panics with its log after `limit`).
    pub fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            self.process.assert_running();
            let ok = self
                .agent
                .get(format!("http://{}/-/ready", self.addr))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "Prometheus was not ready within {limit:?}:\n{}",
                self.process.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// `GET /api/v1/<path>?<params>`: the `data` of a `"status": "success"` answer, or the
    /// error Prometheus gave (`errorType: error`).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut req = self
            .agent
            .get(format!("http://{}/api/v1/{path}", self.addr));
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let mut resp = req.call().map_err(|e| format!("GET /api/v1/{path}: {e}"))?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET /api/v1/{path}: reading the answer: {e}"))?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET /api/v1/{path}: not JSON ({e}): {body}"))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!(
                "GET /api/v1/{path} {params:?}: {}: {}",
                v["errorType"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or(&body)
            ))
        }
    }

    /// An instant query at now: the result vector (empty when nothing matches).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)])?;
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                Ok(data["result"].as_array().cloned().unwrap_or_default())
            }
            // A scalar or string is one value.
            Some(_) => Ok(vec![data["result"].clone()]),
            None => Err(format!("{expr}: answer without resultType: {data}")),
        }
    }

    /// Exemplars of the series `selector` over the last `window`: `(series labels, exemplar
    /// labels)` pairs.
    pub fn exemplars(
        &self,
        selector: &str,
        window: Duration,
    ) -> Result<Vec<(Value, Value)>, String> {
        let now = unix_now();
        let start = format!("{:.3}", now - window.as_secs_f64());
        let end = format!("{now:.3}");
        let data = self.api(
            "query_exemplars",
            &[("query", selector), ("start", &start), ("end", &end)],
        )?;
        let mut out = Vec::new();
        for series in data.as_array().into_iter().flatten() {
            for ex in series["exemplars"].as_array().into_iter().flatten() {
                out.push((series["seriesLabels"].clone(), ex["labels"].clone()));
            }
        }
        Ok(out)
    }

    /// Active scrape targets (`/api/v1/targets`).
    pub fn active_targets(&self) -> Vec<Value> {
        self.api("targets", &[("state", "active")])
            .map(|d| d["activeTargets"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Values of `label` on series matching `selector` (what Grafana's `label_values()` asks).
    pub fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>, String> {
        let data = self.api(&format!("label/{label}/values"), &[("match[]", selector)])?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect())
    }
}

/// Seconds since the Unix epoch, as Prometheus' API takes times.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn config_yaml(jobs: &[Job], rule_files: &[PathBuf]) -> String {
    // JSON is YAML: serde_json writes the config without a YAML serializer.
    let config = serde_json::json!({
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": rule_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "scrape_configs": jobs.iter().map(|j| serde_json::json!({
            "job_name": j.name,
            "static_configs": [{"targets": j.targets}],
        })).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&config).expect("a JSON value serializes")
}
