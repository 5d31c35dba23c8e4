//! The Grafana dashboards, their provisioning and the alert rules of `dashboards/`, checked
//! without Grafana: valid JSON, unique uids and panel ids, panels on the grid, every datasource
//! reference and every variable resolving, the Webb datasource's query model, exemplars wired
//! to Tempo, and every PromQL expression (panels, variables, rules) accepted by `promtool`.
//! That each query also returns data from a real Prometheus after real traffic is
//! tests/prometheus_metrics.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use webb_scenarios::dashboards::{
    self, PROMETHEUS, TEMPO, WEBB_FLOWS, label_values, to_promql, variable_query, variable_refs,
};

fn all() -> Vec<(String, Value)> {
    let files = dashboards::dashboard_files();
    assert!(files.len() >= 3, "dashboards missing: {files:?}");
    files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            (name, dashboards::load(f).unwrap_or_else(|e| panic!("{e}")))
        })
        .collect()
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
}

/// uid → plugin type of every provisioned datasource.
fn provisioned() -> BTreeMap<String, Value> {
    let file = dashboards::root().join("provisioning/datasources/webb.yaml");
    let y = yaml(&file);
    assert_eq!(y["apiVersion"], 1, "{}", file.display());
    y["datasources"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no datasources list", file.display()))
        .iter()
        .map(|d| {
            (
                d["uid"]
                    .as_str()
                    .expect("every datasource has a uid")
                    .to_string(),
                d.clone(),
            )
        })
        .collect()
}

/// `promtool check rules` on `rules` (a rules file's text): Ok, or promtool's complaint.
fn promtool_check_rules(rules: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, rules).expect("write rules");
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool runs (Debian package prometheus; `cargo xtask test` installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Each expression as a recording rule of one group (promtool parses the PromQL of every rule).
fn as_rules(exprs: &[(String, String)]) -> String {
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| serde_json::json!({"record": format!("check:expr_{i}"), "expr": e}))
        .collect();
    serde_json::json!({"groups": [{"name": "dashboards", "rules": rules}]}).to_string()
}

#[test]
fn every_dashboard_is_valid_json_with_a_unique_uid_and_no_ui_import_inputs() {
    let mut uids = BTreeMap::new();
    for (file, d) in all() {
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{file}: uid {uid:?} must be 1..=40 characters"
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}: no title"
        );
        if let Some(other) = uids.insert(uid.to_string(), file.clone()) {
            panic!("uid {uid} is used by {other} and {file}");
        }
        // File provisioning does not substitute `${DS_*}` inputs of UI import.
        assert!(
            d.get("__inputs").is_none() && d.get("__requires").is_none(),
            "{file}"
        );
        assert!(
            !d.to_string().contains("${DS_"),
            "{file}: refers to a UI-import input"
        );
    }
}

#[test]
fn panel_ids_are_unique_and_panels_fit_the_grid_without_overlap() {
    for (file, d) in all() {
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(i64, [i64; 4])> = Vec::new();
        for p in dashboards::panels(&d) {
            let id = p["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{file}: panel without id: {p}"));
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
                g[k].as_i64()
                    .unwrap_or_else(|| panic!("{file}: panel {id} gridPos.{k} missing"))
            });
            assert!(
                x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24,
                "{file}: panel {id} {g}"
            );
            for (other, [ox, oy, ow, oh]) in &boxes {
                let overlap = x < ox + ow && ox < &(x + w) && y < oy + oh && oy < &(y + h);
                assert!(!overlap, "{file}: panels {other} and {id} overlap");
            }
            boxes.push((id, [x, y, w, h]));
        }
        assert!(ids.len() >= 5, "{file}: only {} panels", ids.len());
    }
}

#[test]
fn every_datasource_reference_resolves_to_a_provisioned_datasource_of_its_type() {
    let ds = provisioned();
    for (uid, ty) in [
        ("prometheus", PROMETHEUS),
        ("tempo", TEMPO),
        ("webb", WEBB_FLOWS),
    ] {
        assert_eq!(
            ds.get(uid).map(|d| &d["type"]),
            Some(&Value::from(ty)),
            "{uid}"
        );
    }
    for (file, d) in all() {
        // Datasource variables: a plugin type, and a default that is provisioned with it.
        for v in dashboards::variables(&d)
            .into_iter()
            .filter(|v| v["type"] == "datasource")
        {
            let ty = v["query"].as_str().unwrap_or_default();
            let default = v["current"]["value"].as_str().unwrap_or_default();
            assert_eq!(
                ds.get(default).map(|d| d["type"].as_str()),
                Some(Some(ty)),
                "{file}: variable {} defaults to {default:?}, not a provisioned {ty}",
                v["name"]
            );
        }
        let mut refs: Vec<(String, &Value)> = Vec::new();
        for p in dashboards::panels(&d)
            .into_iter()
            .filter(|p| p["type"] != "row")
        {
            refs.push((format!("panel {}", p["id"]), &p["datasource"]));
            for t in p["targets"].as_array().into_iter().flatten() {
                refs.push((
                    format!("panel {} target {}", p["id"], t["refId"]),
                    &t["datasource"],
                ));
            }
        }
        for v in dashboards::variables(&d)
            .into_iter()
            .filter(|v| v["type"] == "query")
        {
            refs.push((format!("variable {}", v["name"]), &v["datasource"]));
        }
        for (what, r) in refs {
            let uid = r["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {what} has no datasource uid"));
            let ty = dashboards::datasource_type(&d, r)
                .unwrap_or_else(|| panic!("{file}: {what}: datasource {uid} resolves to nothing"));
            if variable_refs(uid).is_empty() {
                assert_eq!(
                    ds.get(uid).map(|d| d["type"].as_str()),
                    Some(Some(ty.as_str())),
                    "{file}: {what}: datasource {uid} is not a provisioned {ty}"
                );
            }
            assert_eq!(r["type"], Value::from(ty.clone()), "{file}: {what}: type");
        }
    }
}

#[test]
fn every_variable_a_query_uses_is_defined() {
    for (file, d) in all() {
        let defined = dashboards::variable_names(&d);
        let mut texts: Vec<(String, String)> = Vec::new();
        for q in dashboards::queries(&d) {
            texts.push((q.name(), q.target.to_string()));
        }
        for v in dashboards::variables(&d) {
            if let Some(q) = variable_query(v) {
                texts.push((format!("variable {}", v["name"]), q.to_string()));
            }
        }
        for (what, text) in texts {
            for name in variable_refs(&text) {
                let builtin = dashboards::BUILTINS.iter().any(|(b, _)| *b == name);
                assert!(
                    builtin || defined.contains(&name),
                    "{file}: {what} uses ${name}, which the dashboard does not define ({defined:?})"
                );
            }
        }
        // Namespace and workload filters where the issue asks for them.
        assert!(
            defined.contains("datasource") && defined.contains("namespace"),
            "{file}"
        );
    }
}

#[test]
fn queries_of_the_webb_datasource_use_its_query_model() {
    let mut seen = 0;
    for (file, d) in all() {
        for q in dashboards::queries(&d)
            .into_iter()
            .filter(|q| q.datasource_type == WEBB_FLOWS)
        {
            seen += 1;
            let qt = q.target["queryType"].as_str().unwrap_or_default();
            assert!(
                ["flows", "serviceMap", "sql"].contains(&qt),
                "{file}: {}: queryType {qt:?}",
                q.name()
            );
            assert!(
                q.expr().is_none(),
                "{file}: {}: PromQL sent to the Webb datasource",
                q.name()
            );
        }
        for q in dashboards::queries(&d)
            .into_iter()
            .filter(|q| q.datasource_type == PROMETHEUS)
        {
            assert!(
                q.expr().is_some_and(|e| !e.trim().is_empty()),
                "{file}: {}: a Prometheus query without expr",
                q.name()
            );
        }
    }
    assert!(seen >= 1, "no panel shows the Webb datasource's flows");
}

#[test]
fn exemplars_link_to_tempo_by_trace_id() {
    let ds = provisioned();
    let dests = &ds["prometheus"]["jsonData"]["exemplarTraceIdDestinations"];
    let dest = dests
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == "traceID"))
        .unwrap_or_else(|| {
            panic!("Prometheus has no exemplarTraceIdDestinations for traceID: {dests}")
        });
    let tempo = dest["datasourceUid"].as_str().unwrap_or_default();
    assert_eq!(ds.get(tempo).map(|d| &d["type"]), Some(&Value::from(TEMPO)));
    assert_eq!(ds["webb"]["jsonData"]["tempoDatasourceUid"], tempo);
    let golden = all()
        .into_iter()
        .find(|(_, d)| d["uid"] == "webb-http-golden-signals")
        .expect("the HTTP golden signals dashboard")
        .1;
    let latency_with_exemplars = dashboards::queries(&golden).into_iter().any(|q| {
        q.target["exemplar"] == true
            && q.expr()
                .is_some_and(|e| e.contains("hubble_http_request_duration_seconds_bucket"))
    });
    assert!(latency_with_exemplars, "latency panels must show exemplars");
}

/// Every Prometheus expression of the dashboards (panels, and the selectors of `label_values`
/// variables), as PromQL.
fn dashboard_promql() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, d) in all() {
        let vars = dashboards::variable_names(&d);
        for q in dashboards::queries(&d) {
            if let Some(e) = q.expr() {
                let promql = to_promql(e, &vars).unwrap_or_else(|e| panic!("{file}: {e}"));
                out.push((q.name(), promql));
            }
        }
        for v in dashboards::variables(&d)
            .into_iter()
            .filter(|v| v["type"] == "query")
        {
            let q = variable_query(v).unwrap_or_default();
            let (selector, _) = label_values(q).unwrap_or_else(|| {
                panic!("{file}: variable {}: not label_values(): {q}", v["name"])
            });
            if let Some(s) = selector {
                let promql = to_promql(&s, &vars).unwrap_or_else(|e| panic!("{file}: {e}"));
                out.push((format!("{file}: variable {}", v["name"]), promql));
            }
        }
    }
    out
}

#[test]
fn every_promql_expression_of_the_dashboards_passes_promtool() {
    let exprs = dashboard_promql();
    assert!(exprs.len() > 20, "only {} expressions", exprs.len());
    if let Err(e) = promtool_check_rules(&as_rules(&exprs)) {
        // Name the failing ones, one promtool run each.
        let bad: Vec<String> = exprs
            .iter()
            .filter(|x| promtool_check_rules(&as_rules(std::slice::from_ref(x))).is_err())
            .map(|(n, e)| format!("{n}: {e}"))
            .collect();
        panic!("promtool rejects:\n{}\n{e}", bad.join("\n"));
    }
}

#[test]
fn promtool_rejects_a_broken_expression_so_the_check_above_can_fail() {
    let broken = [("broken".to_string(), "sum by (le (rate(x[5m]))".to_string())];
    let err = promtool_check_rules(&as_rules(&broken)).expect_err("promtool must reject it");
    assert!(err.contains("parse error"), "{err}");
}

#[test]
fn substitution_turns_grafana_variables_into_promql_and_refuses_unknown_ones() {
    let vars: BTreeSet<String> = ["namespace".to_string()].into();
    assert_eq!(
        to_promql(r#"rate(x{ns=~"$namespace"}[$__rate_interval])"#, &vars).unwrap(),
        r#"rate(x{ns=~".*"}[5m])"#
    );
    assert_eq!(
        to_promql(
            r#"increase(x{ns=~"${namespace:regex}"}[${__range}])"#,
            &vars
        )
        .unwrap(),
        r#"increase(x{ns=~".*"}[1h])"#
    );
    let err = to_promql(r#"x{w=~"$workload"}"#, &vars).unwrap_err();
    assert!(err.contains("workload"), "{err}");
}

#[test]
fn the_alert_rules_pass_promtool_and_cover_drops_loss_5xx_and_a_down_agent() {
    let files = dashboards::rule_files();
    assert!(!files.is_empty(), "no rule file in dashboards/alerts");
    let mut alerts = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let out = promtool_check_rules(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(out.contains("SUCCESS"), "{out}");
        let y = yaml(f);
        for g in y["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                if let Some(name) = r["alert"].as_str() {
                    assert!(
                        r["labels"]["severity"].is_string()
                            && r["annotations"]["summary"].is_string()
                            && r["annotations"]["description"].is_string(),
                        "{}: alert {name} needs a severity, a summary and a description",
                        f.display()
                    );
                    alerts.insert(name.to_string());
                }
            }
        }
    }
    for name in [
        "WebbHighDropRate",
        "WebbLostEvents",
        "WebbHttp5xxRatio",
        "WebbAgentDown",
    ] {
        assert!(
            alerts.contains(name),
            "alert {name} missing from {alerts:?}"
        );
    }
}

#[test]
fn the_dashboard_provider_points_at_a_directory_and_the_readme_names_every_dashboard() {
    let p = yaml(&dashboards::root().join("provisioning/dashboards/webb.yaml"));
    assert_eq!(p["apiVersion"], 1);
    let provider = &p["providers"][0];
    assert_eq!(provider["type"], "file");
    assert!(
        provider["options"]["path"]
            .as_str()
            .is_some_and(|s| s.starts_with('/'))
    );
    let readme = std::fs::read_to_string(dashboards::root().join("README.md")).unwrap();
    for (file, d) in all() {
        let title = d["title"].as_str().unwrap();
        assert!(
            readme.contains(title) && readme.contains(&file),
            "README misses {title} ({file})"
        );
    }
    assert!(
        readme.contains(dashboards::RELAY_METRICS.split_whitespace().next().unwrap()),
        "README must give the relay's --metrics the dashboards need"
    );
}
