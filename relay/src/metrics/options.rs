//! Hubble's `--metrics` syntax: a space-separated list of `name[:opt=val;opt=val]`.
//!
//! Unlike Hubble, which ignores what it does not know, every unknown metric, option or value is
//! an error naming the metric and the option, so a typo cannot silently disable a dashboard.

use super::context::{ContextId, ContextLabel, ContextOptions};

/// The metric plugins Webb implements, by Hubble's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    Flow,
    Drop,
    Tcp,
    PortDistribution,
    Icmp,
    Policy,
    Http,
    HttpV2,
    Dns,
}

impl PluginKind {
    pub const ALL: [PluginKind; 9] = [
        PluginKind::Flow,
        PluginKind::Drop,
        PluginKind::Tcp,
        PluginKind::PortDistribution,
        PluginKind::Icmp,
        PluginKind::Policy,
        PluginKind::Http,
        PluginKind::HttpV2,
        PluginKind::Dns,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Flow => "flow",
            PluginKind::Drop => "drop",
            PluginKind::Tcp => "tcp",
            PluginKind::PortDistribution => "port-distribution",
            PluginKind::Icmp => "icmp",
            PluginKind::Policy => "policy",
            PluginKind::Http => "http",
            PluginKind::HttpV2 => "httpV2",
            PluginKind::Dns => "dns",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Plugins that may carry exemplars: Hubble's HTTP ones, and (Webb) drop and policy, whose
    /// exemplars come from the connection's latest traced HTTP exchange.
    fn accepts_exemplars(self) -> bool {
        matches!(
            self,
            PluginKind::Http | PluginKind::HttpV2 | PluginKind::Drop | PluginKind::Policy
        )
    }
}

/// One enabled metric plugin with its options.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginSpec {
    pub kind: PluginKind,
    pub context: ContextOptions,
    /// `exemplars=true|false`; `None` when not given (drop/policy then follow the HTTP plugin).
    pub exemplars: Option<bool>,
    /// `dns` only: Hubble's `query` (a `query` label with the name asked) and `ignoreAAAA`
    /// (flows asking only for AAAA are not counted).
    pub dns: DnsOptions,
}

/// Options of Hubble's `dns` metric; each is a bare word (`dns:query;ignoreAAAA`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsOptions {
    pub query: bool,
    pub ignore_aaaa: bool,
}

/// Why a `--metrics` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error(
        "unknown metric '{0}' (supported: flow, drop, tcp, port-distribution, icmp, policy, http, httpV2, dns)"
    )]
    UnknownMetric(String),
    #[error("metric '{0}' is enabled twice")]
    Duplicate(String),
    #[error("metrics 'http' and 'httpV2' conflict: enable only one of them")]
    HttpConflict,
    #[error("metric '{metric}': unknown option '{option}'")]
    UnknownOption { metric: String, option: String },
    #[error("metric '{metric}': option '{option}' needs a value ('{option}=...')")]
    MissingValue { metric: String, option: String },
    #[error("metric '{metric}': option '{option}' is given twice")]
    DuplicateOption { metric: String, option: String },
    #[error("metric '{metric}': option '{option}' has invalid value '{value}': {reason}")]
    BadValue {
        metric: String,
        option: String,
        value: String,
        reason: String,
    },
}

/// Parses a `--metrics` value (the flag may be repeated; join the values with spaces).
pub fn parse_metrics(spec: &str) -> Result<Vec<PluginSpec>, OptionsError> {
    let mut out: Vec<PluginSpec> = Vec::new();
    for item in spec.split_whitespace() {
        let (name, opts) = match item.split_once(':') {
            Some((n, o)) => (n, o),
            None => (item, ""),
        };
        let kind =
            PluginKind::parse(name).ok_or_else(|| OptionsError::UnknownMetric(name.into()))?;
        if out.iter().any(|p| p.kind == kind) {
            return Err(OptionsError::Duplicate(name.into()));
        }
        out.push(parse_plugin(kind, opts)?);
    }
    let has = |k| out.iter().any(|p: &PluginSpec| p.kind == k);
    if has(PluginKind::Http) && has(PluginKind::HttpV2) {
        return Err(OptionsError::HttpConflict);
    }
    Ok(out)
}

fn parse_plugin(kind: PluginKind, opts: &str) -> Result<PluginSpec, OptionsError> {
    let metric = kind.name();
    let mut context = ContextOptions::default();
    let mut exemplars = None;
    let mut dns = DnsOptions::default();
    let mut seen: Vec<String> = Vec::new();
    for opt in opts.split(';').filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let lower = key.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(OptionsError::DuplicateOption {
                metric: metric.into(),
                option: key.into(),
            });
        }
        seen.push(lower.clone());
        if kind == PluginKind::Dns && matches!(lower.as_str(), "query" | "ignoreaaaa") {
            if let Some(v) = value {
                return Err(OptionsError::BadValue {
                    metric: metric.into(),
                    option: key.into(),
                    value: v.into(),
                    reason: "takes no value (write the bare word)".into(),
                });
            }
            if lower == "query" {
                dns.query = true;
            } else {
                dns.ignore_aaaa = true;
            }
            continue;
        }
        let known = matches!(
            lower.as_str(),
            "sourcecontext"
                | "destinationcontext"
                | "sourceegresscontext"
                | "sourceingresscontext"
                | "destinationegresscontext"
                | "destinationingresscontext"
                | "labelscontext"
        ) || (lower == "exemplars" && kind.accepts_exemplars());
        if !known {
            return Err(OptionsError::UnknownOption {
                metric: metric.into(),
                option: key.into(),
            });
        }
        let value = value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OptionsError::MissingValue {
                metric: metric.into(),
                option: key.into(),
            })?;
        let bad = |reason: String| OptionsError::BadValue {
            metric: metric.into(),
            option: key.into(),
            value: value.into(),
            reason,
        };
        match lower.as_str() {
            "exemplars" => {
                exemplars = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("expected 'true' or 'false'".into())),
                })
            }
            "labelscontext" => {
                let mut labels = Vec::new();
                for l in value.split(',') {
                    let label = ContextLabel::parse(l).ok_or_else(|| {
                        bad(format!(
                            "unknown label '{l}' (allowed: {})",
                            ContextLabel::ALL.map(|l| l.name()).join(", ")
                        ))
                    })?;
                    if !labels.contains(&label) {
                        labels.push(label);
                    }
                }
                // Hubble's fixed order, whatever the order given.
                labels.sort();
                context.labels = labels;
            }
            _ => {
                let mut ids = Vec::new();
                for id in value.split('|') {
                    ids.push(ContextId::parse(id).ok_or_else(|| {
                        bad(format!(
                            "unknown context '{id}' (allowed: {})",
                            ContextId::ALL.map(|c| c.name()).join(", ")
                        ))
                    })?);
                }
                let slot = match lower.as_str() {
                    "sourcecontext" => &mut context.source,
                    "destinationcontext" => &mut context.destination,
                    "sourceegresscontext" => &mut context.source_egress,
                    "sourceingresscontext" => &mut context.source_ingress,
                    "destinationegresscontext" => &mut context.destination_egress,
                    _ => &mut context.destination_ingress,
                };
                *slot = ids;
            }
        }
    }
    Ok(PluginSpec {
        kind,
        context,
        exemplars,
        dns,
    })
}
