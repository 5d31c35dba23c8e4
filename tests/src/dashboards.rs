//! `dashboards/`: where its files are, what each dashboard panel asks of which datasource, and
//! — in this one place — how a Grafana expression becomes plain PromQL for `promtool` and for a
//! real Prometheus ([`to_promql`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// Grafana's built-in interval variables and what the checks put in their place: the
/// `rate()` window Grafana would pick for a 15 s scrape interval at most zoom levels (5m), a
/// step (1m), and the default dashboard range (1h).
pub const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "5m"),
    ("__interval", "1m"),
    ("__range", "1h"),
];

/// What a dashboard template variable (namespace, workload, ...) becomes: every variable of
/// these dashboards is a multi-value regex with "All", and All sends `.*`.
pub const ALL_VALUE: &str = ".*";

/// The relay's `--metrics` the dashboards are built for (README.md says why each context
/// label is there); the real-Prometheus scenario runs the relay with exactly this.
pub const RELAY_METRICS: &str = "flow:labelsContext=source_namespace,destination_namespace \
    drop:labelsContext=source_namespace,source_workload,destination_namespace,destination_workload \
    tcp port-distribution icmp \
    dns:query;ignoreAAAA;labelsContext=source_namespace,source_workload,destination_namespace,destination_workload \
    policy:labelsContext=source_namespace,source_workload,destination_namespace,destination_workload \
    httpV2:exemplars=true;labelsContext=source_namespace,source_workload,source_pod,destination_namespace,destination_workload,destination_pod,traffic_direction";

/// Plugin type ids the dashboards may use.
pub const PROMETHEUS: &str = "prometheus";
pub const WEBB_FLOWS: &str = "webb-flows-datasource";
pub const TEMPO: &str = "tempo";

/// `dashboards/` of this checkout.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// The dashboard JSON files (`dashboards/grafana/*.json`), sorted.
pub fn dashboard_files() -> Vec<PathBuf> {
    files(&root().join("grafana"), "json")
}

/// Prometheus rule files (`dashboards/alerts/*.yaml`), sorted.
pub fn rule_files() -> Vec<PathBuf> {
    files(&root().join("alerts"), "yaml")
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// A dashboard file parsed; the error names the file and the line.
pub fn load(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: invalid JSON: {e}", path.display()))
}

static VAR_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]",
    )
    .expect("a valid regex")
});

/// Names of the template variables `text` refers to (`$x`, `${x}`, `${x:fmt}`, `[[x]]`).
pub fn variable_refs(text: &str) -> Vec<String> {
    VAR_REF
        .captures_iter(text)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| m.as_str().to_string())
        .collect()
}

/// A Grafana PromQL expression with its variables replaced: built-ins by [`BUILTINS`],
/// `defined` template variables by [`ALL_VALUE`]. Any other `$name` is an error naming it.
pub fn to_promql(expr: &str, defined: &BTreeSet<String>) -> Result<String, String> {
    let mut unknown = Vec::new();
    let out = VAR_REF.replace_all(expr, |c: &regex::Captures<'_>| {
        let name = c
            .get(1)
            .or(c.get(2))
            .or(c.get(3))
            .map_or("", |m| m.as_str());
        if let Some((_, v)) = BUILTINS.iter().find(|(b, _)| *b == name) {
            (*v).to_string()
        } else if defined.contains(name) {
            ALL_VALUE.to_string()
        } else {
            unknown.push(name.to_string());
            c[0].to_string()
        }
    });
    if unknown.is_empty() {
        Ok(out.into_owned())
    } else {
        Err(format!("undefined variable(s) {unknown:?} in {expr:?}"))
    }
}

/// Every panel, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

/// The template variables (`templating.list`).
pub fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

/// Names of the template variables.
pub fn variable_names(dashboard: &Value) -> BTreeSet<String> {
    variables(dashboard)
        .iter()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect()
}

/// One query of one panel, with the plugin type its datasource resolves to.
#[derive(Debug, Clone)]
pub struct Query {
    pub dashboard: String,
    pub panel_id: i64,
    pub panel: String,
    pub ref_id: String,
    /// Plugin type id (`prometheus`, `webb-flows-datasource`), through datasource variables.
    pub datasource_type: String,
    /// The datasource reference as written (`prometheus`, `${datasource}`).
    pub datasource_uid: String,
    pub target: Value,
}

impl Query {
    /// `dashboard / panel title (id) / refId`, for messages.
    pub fn name(&self) -> String {
        format!(
            "{} / {:?} (panel {}) / {}",
            self.dashboard, self.panel, self.panel_id, self.ref_id
        )
    }

    /// The PromQL of a Prometheus query.
    pub fn expr(&self) -> Option<&str> {
        self.target["expr"].as_str()
    }
}

/// The plugin type a datasource reference resolves to: its own `type`, or through a
/// `datasource`-type variable (`${ds}`) that variable's `query`.
pub fn datasource_type(dashboard: &Value, reference: &Value) -> Option<String> {
    let uid = reference["uid"].as_str()?;
    if let Some(name) = variable_refs(uid).first() {
        let var = variables(dashboard)
            .into_iter()
            .find(|v| v["name"] == name.as_str() && v["type"] == "datasource")?;
        return var["query"].as_str().map(String::from);
    }
    reference["type"].as_str().map(String::from)
}

/// Every target of every panel (a target without its own datasource uses the panel's).
pub fn queries(dashboard: &Value) -> Vec<Query> {
    let uid = dashboard["uid"].as_str().unwrap_or("?").to_string();
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = if t["datasource"].is_object() {
                &t["datasource"]
            } else {
                &p["datasource"]
            };
            out.push(Query {
                dashboard: uid.clone(),
                panel_id: p["id"].as_i64().unwrap_or(-1),
                panel: p["title"].as_str().unwrap_or("").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                datasource_type: datasource_type(dashboard, ds).unwrap_or_default(),
                datasource_uid: ds["uid"].as_str().unwrap_or("").to_string(),
                target: t.clone(),
            });
        }
    }
    out
}

/// A `label_values(selector, label)` / `label_values(label)` variable query, split.
pub fn label_values(query: &str) -> Option<(Option<String>, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    match inner.rsplit_once(',') {
        Some((sel, label)) => Some((Some(sel.trim().to_string()), label.trim().to_string())),
        None => Some((None, inner.trim().to_string())),
    }
}

/// The query text of a `query` variable (Grafana writes it as a string or as `{query: ...}`).
pub fn variable_query(var: &Value) -> Option<&str> {
    var["query"]
        .as_str()
        .or_else(|| var["query"]["query"].as_str())
}
