//! An agent's loss, reconciled from its own metrics: every event its datapath tried to emit is
//! either in the ring buffer or counted as lost there (`datapath_ring`), and every event emitted
//! is either a decoded flow or counted as lost by the decoder (`decode`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long the counters may take to settle once the traffic stopped (the agent reads the
/// datapath's counters about once a second).
const SETTLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLoss {
    pub node: String,
    /// Events the datapath put in the ring buffer (`webb_datapath_events_total`).
    pub emitted: u64,
    /// Events it could not put there (`webb_datapath_reserve_failures_total`).
    pub reserve_failures: u64,
    /// Flows decoded from the ring buffer (`webb_flows_total`).
    pub flows: u64,
    /// `webb_lost_events_total` by stage.
    pub lost: BTreeMap<String, u64>,
}

impl NodeLoss {
    /// Reads the agent's `/metrics` at `addr` until both sides balance and the counters stopped
    /// moving, at most [`SETTLE`] long; returns the last reading either way.
    pub fn settled(node: &str, addr: &str) -> Result<NodeLoss> {
        let start = Instant::now();
        let mut last: Option<NodeLoss> = None;
        loop {
            let now = NodeLoss::read(node, addr)?;
            let steady = last.as_ref() == Some(&now);
            if (steady && now.reconciles()) || start.elapsed() > SETTLE {
                return Ok(now);
            }
            last = Some(now);
            std::thread::sleep(Duration::from_millis(1200));
        }
    }

    fn read(node: &str, addr: &str) -> Result<NodeLoss> {
        let url = format!("http://{addr}/metrics");
        let text = ureq::get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .with_context(|| format!("reading {url}"))?;
        let mut lost = BTreeMap::new();
        for (labels, value) in samples(&text, "webb_lost_events_total") {
            if let Some(stage) = label(labels, "stage") {
                lost.insert(stage.to_string(), value);
            }
        }
        let one = |name: &str| samples(&text, name).map(|(_, v)| v).sum::<u64>();
        Ok(NodeLoss {
            node: node.to_string(),
            emitted: one("webb_datapath_events_total"),
            reserve_failures: one("webb_datapath_reserve_failures_total"),
            flows: one("webb_flows_total"),
            lost,
        })
    }

    fn lost_at(&self, stage: &str) -> u64 {
        self.lost.get(stage).copied().unwrap_or(0)
    }

    /// Events the kernel tried to emit = flows decoded + losses counted at each stage.
    pub fn reconciles(&self) -> bool {
        self.reserve_failures == self.lost_at("datapath_ring")
            && self.emitted == self.flows + self.lost_at("decode")
    }

    /// One line for the summary.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} events the datapath tried = {} flows decoded + {} lost at datapath_ring + {} \
             lost at decode{}; {} lost by slow readers of the flow ring",
            self.node,
            self.emitted + self.reserve_failures,
            self.flows,
            self.lost_at("datapath_ring"),
            self.lost_at("decode"),
            if self.reconciles() {
                ""
            } else {
                " — DOES NOT BALANCE"
            },
            self.lost_at("hubble_ring_reader"),
        )
    }
}

/// `(labels, value)` of every sample of `name` in Prometheus' text format (`name{labels} value`).
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let value = value.split_whitespace().next()?.parse::<f64>().ok()?;
        Some((labels, value as u64))
    })
}

/// The value of label `key` in `a="x",b="y"` (values without escaped quotes).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP webb_lost_events Events lost, by pipeline stage
# TYPE webb_lost_events counter
webb_lost_events_total{node=\"n1\",stage=\"datapath_ring\"} 3
webb_lost_events_total{node=\"n1\",stage=\"decode\"} 1
webb_flows_total{node=\"n1\"} 96
webb_datapath_events_total{node=\"n1\"} 97
webb_datapath_events_total_extra{node=\"n1\"} 5
webb_datapath_reserve_failures_total{node=\"n1\"} 3
";

    #[test]
    fn samples_are_found_by_exact_name_with_their_labels() {
        let got: Vec<_> = samples(TEXT, "webb_datapath_events_total").collect();
        assert_eq!(got, [("node=\"n1\"", 97)]);
        let stages: Vec<_> = samples(TEXT, "webb_lost_events_total")
            .filter_map(|(l, v)| Some((label(l, "stage")?, v)))
            .collect();
        assert_eq!(stages, [("datapath_ring", 3), ("decode", 1)]);
    }

    #[test]
    fn loss_reconciles_when_every_event_is_a_flow_or_counted_lost() {
        let mut loss = NodeLoss {
            node: "n1".into(),
            emitted: 97,
            reserve_failures: 3,
            flows: 96,
            lost: BTreeMap::from([("datapath_ring".into(), 3), ("decode".into(), 1)]),
        };
        assert!(loss.reconciles(), "{}", loss.describe());
        loss.flows = 95; // one event neither decoded nor counted
        assert!(!loss.reconciles());
        assert!(loss.describe().contains("DOES NOT BALANCE"));
    }
}
