//! The demo's end summary: what the servers saw (from `webb observe -o json --extras`), next to
//! what the traffic generator did, and the demo's own end checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

#[derive(Default)]
pub struct Flows {
    total: u64,
    unparsed: u64,
    by_node: BTreeMap<String, u64>,
    by_type_verdict: BTreeMap<(String, String), u64>,
    http_requests: u64,
    http_responses: u64,
    http_by_code: BTreeMap<u64, u64>,
    trace_ids: BTreeSet<String>,
    drops_by_reason: BTreeMap<String, u64>,
    denied_by: BTreeMap<String, u64>,
    audited: u64,
    kernel_drops: BTreeMap<String, u64>,
}

/// One of the demo's end checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndCheck {
    pub what: &'static str,
    pub passed: bool,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Flows {
    /// Adds every `{"flow": …}` line; other responses (node events, lost events) are skipped.
    pub fn add_json_lines(&mut self, json: &str) {
        for line in json.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                self.unparsed += 1;
                continue;
            };
            if let Some(flow) = value.get("flow") {
                self.add(flow);
            }
        }
    }

    fn add(&mut self, flow: &Value) {
        self.total += 1;
        let node = flow.get("node_name").and_then(text).unwrap_or_default();
        *self.by_node.entry(node).or_default() += 1;
        let kind = flow
            .get("Type")
            .and_then(text)
            .unwrap_or_else(|| "?".into());
        let verdict = flow
            .get("verdict")
            .and_then(text)
            .unwrap_or_else(|| "?".into());
        *self
            .by_type_verdict
            .entry((kind, verdict.clone()))
            .or_default() += 1;
        if let Some(http) = flow.pointer("/l7/http") {
            match flow.pointer("/l7/type").and_then(text).as_deref() {
                Some("RESPONSE") => {
                    self.http_responses += 1;
                    let code = http.get("code").and_then(Value::as_u64).unwrap_or(0);
                    *self.http_by_code.entry(code).or_default() += 1;
                }
                _ => self.http_requests += 1,
            }
            if let Some(id) = flow
                .pointer("/trace_context/parent/trace_id")
                .and_then(text)
            {
                self.trace_ids.insert(id);
            }
        }
        if verdict == "AUDIT" {
            self.audited += 1;
        }
        if verdict == "DROPPED" {
            let kernel = flow.pointer("/extensions/kernel_drop/name").and_then(text);
            // A drop Webb did not cause has no Hubble reason; the kernel's own names it.
            let reason = flow
                .get("drop_reason_desc")
                .and_then(text)
                .or_else(|| kernel.as_ref().map(|k| format!("kernel: {k}")))
                .unwrap_or_else(|| "unknown".into());
            *self.drops_by_reason.entry(reason).or_default() += 1;
            for key in ["egress_denied_by", "ingress_denied_by"] {
                for policy in flow
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let ns = policy.get("namespace").and_then(text).unwrap_or_default();
                    let name = policy.get("name").and_then(text).unwrap_or_default();
                    *self.denied_by.entry(format!("{ns}/{name}")).or_default() += 1;
                }
            }
            // Default deny (no rule allows it), which Hubble leaves unnamed: Webb's attribution.
            for name in flow
                .pointer("/extensions/default_deny/policies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(text)
            {
                *self
                    .denied_by
                    .entry(format!("{name} (default deny)"))
                    .or_default() += 1;
            }
            if let Some(name) = kernel {
                *self.kernel_drops.entry(name).or_default() += 1;
            }
        }
    }

    /// Prints the summary and the end checks, and returns the checks.
    pub fn print(
        &self,
        nodes: &[String],
        report: &netlab::Report,
        loss: &[super::NodeLoss],
    ) -> Vec<EndCheck> {
        println!("== flows ==");
        println!("{} flows", self.total);
        if self.unparsed > 0 {
            println!("  ({} lines were not JSON)", self.unparsed);
        }
        for (node, n) in &self.by_node {
            println!("  node {node:<14} {n}");
        }
        for ((kind, verdict), n) in &self.by_type_verdict {
            println!("  {kind:<6} {verdict:<10} {n}");
        }
        println!(
            "L7 HTTP: {} requests, {} responses; by code {:?}",
            self.http_requests, self.http_responses, self.http_by_code
        );
        let sent: BTreeSet<&str> = report
            .client
            .traced
            .iter()
            .map(|t| t.trace_id.as_str())
            .collect();
        let matched = self
            .trace_ids
            .iter()
            .filter(|id| sent.contains(id.as_str()))
            .count();
        println!(
            "trace ids: {} in flows, {} of the {} the clients sent",
            self.trace_ids.len(),
            matched,
            sent.len()
        );
        if self.drops_by_reason.is_empty() {
            println!("drops: none");
        } else {
            println!("drops by reason:");
            for (reason, n) in &self.drops_by_reason {
                println!("  {reason:<28} {n}");
            }
        }
        for (policy, n) in &self.denied_by {
            println!("  denied by policy {policy}: {n}");
        }
        for (name, n) in &self.kernel_drops {
            println!("  kernel drop reason {name}: {n}");
        }
        println!("policy verdict AUDIT: {} flows", self.audited);
        println!("loss, by agent:");
        for l in loss {
            println!("  {}", l.describe());
        }

        let every_node = nodes
            .iter()
            .all(|n| self.by_node.get(n).copied().unwrap_or(0) > 0);
        let checks = vec![
            EndCheck {
                what: "flows from every node",
                passed: every_node,
            },
            EndCheck {
                what: "L7 HTTP flows",
                passed: self.http_requests + self.http_responses > 0,
            },
            EndCheck {
                what: "HTTP flows carry the clients' trace ids",
                passed: matched > 0,
            },
            EndCheck {
                what: "a drop naming the policy",
                passed: !self.denied_by.is_empty(),
            },
            EndCheck {
                what: "an AUDIT verdict (policy audit mode)",
                passed: self.audited > 0,
            },
            EndCheck {
                what: "a kernel drop reason",
                passed: !self.kernel_drops.is_empty(),
            },
            EndCheck {
                what: "loss reconciles on every agent",
                passed: !loss.is_empty() && loss.iter().all(super::NodeLoss::reconciles),
            },
        ];
        println!("== end checks ==");
        for c in &checks {
            println!("  [{}] {}", if c.passed { "ok  " } else { "FAIL" }, c.what);
        }
        checks
    }

    /// Flows denied, by `namespace/name` of the policy that denied them.
    pub fn denied_by(&self) -> &BTreeMap<String, u64> {
        &self.denied_by
    }

    /// Kernel drops, by the kernel's reason name.
    pub fn kernel_drops(&self) -> &BTreeMap<String, u64> {
        &self.kernel_drops
    }
}
