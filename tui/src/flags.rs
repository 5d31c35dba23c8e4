//! The filter flags of `webb observe` as clap arguments, and their replay in command-line
//! order (needed for `--not`, which negates the flag that follows it).

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser};

use crate::filters::{FILTER_FLAGS, FilterBuilder, FilterFlagError, FilterLists};

/// Hubble's filter flags. Repeating a flag ORs its values; different flags AND;
/// `--not` puts the next flag into the denylist.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Negate the next filter flag (e.g. --not --verdict DROPPED)
    #[arg(long, num_args = 0, default_missing_value = "true")]
    pub not: Vec<String>,
    /// Only the flow with this unique identifier
    #[arg(long, value_name = "UUID")]
    pub uuid: Vec<String>,
    /// Flows observed on these node names (globs like "k8s*", "cluster/*.example.com")
    #[arg(long, value_name = "NAME")]
    pub node_name: Vec<String>,
    /// Flows observed on nodes with this label selector
    #[arg(long, value_name = "SELECTOR")]
    pub node_label: Vec<String>,
    /// Flows from endpoints in this cluster
    #[arg(long, value_name = "CLUSTER")]
    pub from_cluster: Vec<String>,
    /// Flows from or to endpoints in this cluster
    #[arg(long, value_name = "CLUSTER")]
    pub cluster: Vec<String>,
    /// Flows to endpoints in this cluster
    #[arg(long, value_name = "CLUSTER")]
    pub to_cluster: Vec<String>,
    /// L4/L7 protocol: tcp, udp, icmp, icmpv4, icmpv6, sctp, dns, http, kafka
    #[arg(long, value_name = "PROTO")]
    pub protocol: Vec<String>,
    /// TCP flags, comma-separated (e.g. SYN or SYN,ACK)
    #[arg(long, value_name = "FLAGS")]
    pub tcp_flags: Vec<String>,
    /// Event type TYPE[:SUBTYPE]: trace[:to-endpoint|to-stack|...], drop, l7, policy-verdict, capture, trace-sock
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub r#type: Vec<String>,
    /// Verdict: FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED
    #[arg(long, value_name = "VERDICT")]
    pub verdict: Vec<String>,
    /// Drop reason name (e.g. POLICY_DENIED, UNSUPPORTED_L3_PROTOCOL)
    #[arg(long, value_name = "REASON")]
    pub drop_reason_desc: Vec<String>,
    /// HTTP status code or prefix (e.g. 404, 5+)
    #[arg(long, value_name = "CODE")]
    pub http_status: Vec<String>,
    /// HTTP method (case-insensitive, e.g. get)
    #[arg(long, value_name = "METHOD")]
    pub http_method: Vec<String>,
    /// HTTP path regular expression (e.g. "^/items/\d+")
    #[arg(long, value_name = "REGEX")]
    pub http_path: Vec<String>,
    /// HTTP URL regular expression
    #[arg(long, value_name = "REGEX")]
    pub http_url: Vec<String>,
    /// HTTP header key:value
    #[arg(long, value_name = "KEY:VALUE")]
    pub http_header: Vec<String>,
    /// W3C trace id
    #[arg(long, value_name = "ID")]
    pub trace_id: Vec<String>,
    /// IP option trace id
    #[arg(long, value_name = "ID")]
    pub ip_trace_id: Vec<String>,
    /// Flows from this FQDN (e.g. "*.example.com")
    #[arg(long, value_name = "FQDN")]
    pub from_fqdn: Vec<String>,
    /// Flows from or to this FQDN
    #[arg(long, value_name = "FQDN")]
    pub fqdn: Vec<String>,
    /// Flows to this FQDN
    #[arg(long, value_name = "FQDN")]
    pub to_fqdn: Vec<String>,
    /// Flows from this IP or CIDR
    #[arg(long, value_name = "IP")]
    pub from_ip: Vec<String>,
    /// Flows source-NATed to this IP or CIDR
    #[arg(long, value_name = "IP")]
    pub snat_ip: Vec<String>,
    /// Flows from or to this IP or CIDR
    #[arg(long, value_name = "IP")]
    pub ip: Vec<String>,
    /// Flows to this IP or CIDR
    #[arg(long, value_name = "IP")]
    pub to_ip: Vec<String>,
    /// Only IPv4 flows
    #[arg(short = '4', long, num_args = 0, default_missing_value = "true")]
    pub ipv4: Vec<String>,
    /// Only IPv6 flows
    #[arg(short = '6', long, num_args = 0, default_missing_value = "true")]
    pub ipv6: Vec<String>,
    /// IP version: none, v4, v6
    #[arg(long, value_name = "VERSION")]
    pub ip_version: Vec<String>,
    /// Flows from this pod ([namespace/]pod-name-prefix)
    #[arg(long, value_name = "POD")]
    pub from_pod: Vec<String>,
    /// Flows from or to this pod ([namespace/]pod-name-prefix)
    #[arg(long, value_name = "POD")]
    pub pod: Vec<String>,
    /// Flows to this pod ([namespace/]pod-name-prefix)
    #[arg(long, value_name = "POD")]
    pub to_pod: Vec<String>,
    /// Flows from this namespace
    #[arg(long, value_name = "NS")]
    pub from_namespace: Vec<String>,
    /// Flows from or to this namespace
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Vec<String>,
    /// Flows to this namespace
    #[arg(long, value_name = "NS")]
    pub to_namespace: Vec<String>,
    /// Flows from any namespace
    #[arg(long, num_args = 0, default_missing_value = "true")]
    pub from_all_namespaces: Vec<String>,
    /// Flows in any namespace
    #[arg(short = 'A', long, num_args = 0, default_missing_value = "true")]
    pub all_namespaces: Vec<String>,
    /// Flows to any namespace
    #[arg(long, num_args = 0, default_missing_value = "true")]
    pub to_all_namespaces: Vec<String>,
    /// Flows from endpoints with this label selector (e.g. app=web, reserved:world)
    #[arg(long, value_name = "SELECTOR")]
    pub from_label: Vec<String>,
    /// Flows from or to endpoints with this label selector
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub label: Vec<String>,
    /// Flows to endpoints with this label selector
    #[arg(long, value_name = "SELECTOR")]
    pub to_label: Vec<String>,
    /// Flows from this service ([namespace/]name-prefix)
    #[arg(long, value_name = "SVC")]
    pub from_service: Vec<String>,
    /// Flows from or to this service
    #[arg(long, value_name = "SVC")]
    pub service: Vec<String>,
    /// Flows to this service
    #[arg(long, value_name = "SVC")]
    pub to_service: Vec<String>,
    /// Flows with this source port
    #[arg(long, value_name = "PORT")]
    pub from_port: Vec<String>,
    /// Flows with this source or destination port
    #[arg(long, value_name = "PORT")]
    pub port: Vec<String>,
    /// Flows with this destination port
    #[arg(long, value_name = "PORT")]
    pub to_port: Vec<String>,
    /// Flows from this workload ([Kind/]name)
    #[arg(long, value_name = "WORKLOAD")]
    pub from_workload: Vec<String>,
    /// Flows from or to this workload ([Kind/]name)
    #[arg(long, value_name = "WORKLOAD")]
    pub workload: Vec<String>,
    /// Flows to this workload ([Kind/]name)
    #[arg(long, value_name = "WORKLOAD")]
    pub to_workload: Vec<String>,
    /// Flows from this security identity (number or reserved name: host, world, ...)
    #[arg(long, value_name = "ID")]
    pub from_identity: Vec<String>,
    /// Flows from or to this security identity
    #[arg(long, value_name = "ID")]
    pub identity: Vec<String>,
    /// Flows to this security identity
    #[arg(long, value_name = "ID")]
    pub to_identity: Vec<String>,
    /// Traffic direction: ingress or egress
    #[arg(long, value_name = "DIR")]
    pub traffic_direction: Vec<String>,
    /// CEL expression (experimental; servers may refuse it)
    #[arg(long, value_name = "EXPR")]
    pub cel_expression: Vec<String>,
    /// Flows observed at this interface name
    #[arg(long, value_name = "IFACE")]
    pub interface: Vec<String>,
    /// Only encrypted flows
    #[arg(long, num_args = 0, default_missing_value = "true")]
    pub encrypted: Vec<String>,
    /// Only unencrypted flows
    #[arg(long, num_args = 0, default_missing_value = "true")]
    pub unencrypted: Vec<String>,
}

fn arg_id(flag: &str) -> String {
    flag.replace('-', "_")
}

/// Replays every filter flag present in `matches` in command-line order.
pub fn filter_lists_from_matches(matches: &ArgMatches) -> Result<FilterLists, FilterFlagError> {
    let mut occurrences: Vec<(usize, &'static str, String)> = Vec::new();
    for flag in FILTER_FLAGS {
        let id = arg_id(flag);
        let Some(indices) = matches.indices_of(&id) else {
            continue;
        };
        let indices: Vec<usize> = indices.collect();
        if let Ok(Some(values)) = matches.try_get_many::<String>(&id) {
            for (index, value) in indices.iter().zip(values) {
                occurrences.push((*index, flag, value.clone()));
            }
        }
    }
    occurrences.sort_by_key(|(index, _, _)| *index);
    let mut builder = FilterBuilder::new();
    for (_, flag, value) in occurrences {
        builder.set(flag, &value)?;
    }
    builder.finish()
}

#[derive(Debug, Parser)]
#[command(name = "filter", no_binary_name = true, disable_help_flag = true)]
struct FilterLine {
    #[command(flatten)]
    filters: FilterArgs,
}

/// Parses a filter line in `webb observe` flag syntax (`--from-pod demo/ --http-status 5+`).
pub fn parse_filter_line(line: &str) -> Result<FilterLists, String> {
    let words = shlex::split(line).ok_or_else(|| "unbalanced quotes".to_string())?;
    let matches = FilterLine::command()
        .try_get_matches_from(words)
        .map_err(|e| first_line(&e.to_string()))?;
    // Validate types the same way clap derive would.
    FilterLine::from_arg_matches(&matches).map_err(|e| first_line(&e.to_string()))?;
    filter_lists_from_matches(&matches).map_err(|e| e.to_string())
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}
