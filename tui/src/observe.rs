//! `webb observe`: selectors → GetFlowsRequest, and the two sources of responses (a server
//! stream, or JSON lines read from a file and filtered here).

use std::collections::VecDeque;
use std::io::{self, BufRead};

use chrono::{DateTime, Utc};
use flow_filter::FlowFilters;
use thiserror::Error;
use webb_proto::flow::FlowFilter;
use webb_proto::observer::{GetFlowsRequest, GetFlowsResponse, get_flows_response::ResponseTypes};

use crate::filters::FilterLists;
use crate::time::{TimeParseError, parse_time, to_datetime, to_timestamp};

/// What `hubble observe` prints when nothing selects otherwise.
pub const DEFAULT_LAST: u64 = 20;
/// Largest `--last` served from a file (the ring is held in memory).
pub const MAX_LOCAL_LAST: u64 = 1_000_000;

#[derive(Debug, Error)]
pub enum SelectorError {
    #[error("cannot set both --first and --last")]
    FirstAndLast,
    #[error("cannot set both --first and --all")]
    FirstAndAll,
    #[error("cannot set both --first and --follow")]
    FirstAndFollow,
    #[error("cannot set both --last and --all")]
    LastAndAll,
    #[error("failed to parse the since time: {0}")]
    Since(TimeParseError),
    #[error("failed to parse the until time: {0}")]
    Until(TimeParseError),
}

/// The selector flags.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub last: u64,
    pub first: u64,
    pub all: bool,
    pub follow: bool,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Reading a file: no default `--last`.
    pub input_file: bool,
}

/// Builds the request as Hubble's CLI does (see the module docs of `filters` for the lists).
pub fn build_request(
    sel: &Selectors,
    lists: &FilterLists,
    now: DateTime<Utc>,
) -> Result<GetFlowsRequest, SelectorError> {
    let first = sel.first > 0;
    let last = sel.last > 0;
    if first && last {
        return Err(SelectorError::FirstAndLast);
    }
    if first && sel.all {
        return Err(SelectorError::FirstAndAll);
    }
    if first && sel.follow {
        return Err(SelectorError::FirstAndFollow);
    }
    if last && sel.all {
        return Err(SelectorError::LastAndAll);
    }
    let since = match &sel.since {
        Some(s) if !s.is_empty() => Some(parse_time(s, now).map_err(SelectorError::Since)?),
        _ => None,
    };
    // Hubble ignores --until when following.
    let until = match &sel.until {
        Some(s) if !s.is_empty() && !sel.follow => {
            Some(parse_time(s, now).map_err(SelectorError::Until)?)
        }
        _ => None,
    };
    let mut number = sel.last;
    if since.is_none() && until.is_none() && !first {
        if sel.all {
            number = u64::MAX;
        } else if number == 0 && !sel.follow && !sel.input_file {
            number = DEFAULT_LAST;
        }
    }
    if first {
        number = sel.first;
    }
    Ok(GetFlowsRequest {
        number,
        follow: sel.follow,
        whitelist: lists.allow.clone(),
        blacklist: lists.deny.clone(),
        since: since.map(to_timestamp),
        until: until.map(to_timestamp),
        first,
        ..Default::default()
    })
}

/// Parses `--allowlist`/`--denylist` values: one or more FlowFilters in protojson each.
pub fn parse_raw_filters(flag: &str, values: &[String]) -> anyhow::Result<Vec<FlowFilter>> {
    let mut out = Vec::new();
    for value in values {
        let stream = serde_json::Deserializer::from_str(value).into_iter::<FlowFilter>();
        for filter in stream {
            out.push(filter.map_err(|e| {
                anyhow::anyhow!("invalid --{flag} flag: failed to decode {value:?}: {e}")
            })?);
        }
    }
    Ok(out)
}

/// `--print-raw-filters` output: the YAML Hubble prints (`allowlist:` / `denylist:` with one
/// single-quoted protojson filter per item), `{}` when there are none.
pub fn raw_filters_yaml(allow: &[FlowFilter], deny: &[FlowFilter]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (name, list) in [("allowlist", allow), ("denylist", deny)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(name);
        out.push_str(":\n");
        for filter in list {
            let json = crate::json::to_line(filter)?;
            out.push_str("    - '");
            out.push_str(&json.replace('\'', "''"));
            out.push_str("'\n");
        }
    }
    if out.is_empty() {
        out.push_str("{}\n");
    }
    Ok(out)
}

/// What reading a file did, for the user's information.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalStats {
    pub lines: u64,
    pub unreadable: u64,
    pub printed: u64,
}

/// Serves `req` from JSON lines as Hubble's `--input-file` does: the time window and filters
/// are applied here, then `--first N` stops after N, `--last N` keeps the last N (bounded),
/// anything else prints all. Lines that are not a GetFlowsResponse are reported and skipped.
pub fn read_local<R: BufRead>(
    reader: R,
    req: &GetFlowsRequest,
    filters: &FlowFilters,
    mut emit: impl FnMut(&GetFlowsResponse) -> io::Result<()>,
) -> anyhow::Result<LocalStats> {
    let n = req.number;
    let first = req.first && n != 0 && n != u64::MAX;
    let last = !req.first && n != 0 && n != u64::MAX;
    if last && n > MAX_LOCAL_LAST {
        anyhow::bail!("--last must be <= {MAX_LOCAL_LAST} when reading a file, got {n}");
    }
    let since = req.since.as_ref().and_then(to_datetime);
    let until = req.until.as_ref().and_then(to_datetime);
    let allow_empty = req.whitelist.is_empty();
    let mut ring: VecDeque<GetFlowsResponse> = VecDeque::new();
    let mut stats = LocalStats::default();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        stats.lines += 1;
        let res = match crate::json::response_from_line(&line) {
            Ok(res) => res,
            Err(e) => {
                stats.unreadable += 1;
                tracing::warn!("line {}: not a GetFlowsResponse in JSON: {e}", i + 1);
                continue;
            }
        };
        let time = res
            .time
            .as_ref()
            .and_then(to_datetime)
            .unwrap_or(DateTime::UNIX_EPOCH);
        if since.is_some_and(|s| s > time) || until.is_some_and(|u| u < time) {
            continue;
        }
        let pass = match &res.response_types {
            Some(ResponseTypes::Flow(flow)) => filters.matches(flow),
            // Events without a flow only pass an empty allowlist, as in Hubble.
            _ => allow_empty,
        };
        if !pass {
            continue;
        }
        // Node status events are not flows: they neither count against --first/--last nor
        // wait in the --last ring.
        if matches!(res.response_types, Some(ResponseTypes::NodeStatus(_))) {
            emit(&res)?;
            continue;
        }
        if last {
            if ring.len() as u64 == n {
                ring.pop_front();
            }
            ring.push_back(res);
            continue;
        }
        emit(&res)?;
        stats.printed += 1;
        if first && stats.printed >= n {
            return Ok(stats);
        }
    }
    for res in &ring {
        emit(res)?;
        stats.printed += 1;
    }
    Ok(stats)
}
