//! Hubble's `FlowFilter` semantics, compiled once and shared by the agent, the relay and the CLI.
//!
//! ```text
//! include(flow) = (whitelist is empty OR any whitelist filter matches)
//!                 AND no blacklist filter matches
//! filter matches = every field that is set matches        (AND)
//! field matches  = any of the field's values matches      (OR)
//! ```
//!
//! Everything that can be prepared is prepared in [`FlowFilters::compile`]: regexes, CIDRs,
//! ports, status patterns and label selectors. A value that does not compile, and a field Webb
//! does not support, is a [`FilterError`] naming the field — never a filter that silently
//! matches nothing or everything.
//!
//! ```
//! use flow_filter::FlowFilters;
//! use webb_proto::flow::{Flow, FlowFilter, Verdict};
//!
//! // `hubble observe --from-pod shop/web --not --verdict DROPPED`
//! let from_web = FlowFilter { source_pod: vec!["shop/web".into()], ..Default::default() };
//! let drops = FlowFilter { verdict: vec![Verdict::Dropped as i32], ..Default::default() };
//! let filters = FlowFilters::compile(&[from_web], &[drops])?;
//!
//! let mut flow = Flow { verdict: Verdict::Forwarded as i32, ..Default::default() };
//! assert!(!filters.matches(&flow)); // no source endpoint
//! flow.source = Some(webb_proto::flow::Endpoint {
//!     namespace: "shop".into(),
//!     pod_name: "web-7d8f9".into(),
//!     ..Default::default()
//! });
//! assert!(filters.matches(&flow));
//! flow.verdict = Verdict::Dropped as i32;
//! assert!(!filters.matches(&flow));
//!
//! let bad = FlowFilter { http_path: vec!["(".into()], ..Default::default() };
//! let err = FlowFilters::compile(&[bad], &[]).unwrap_err();
//! assert_eq!(err.field, "http_path");
//! # Ok::<(), flow_filter::FilterError>(())
//! ```

mod check;
pub mod patterns;
pub mod selector;
mod text;

use std::fmt;

use webb_proto::flow::{Flow, FlowFilter};

use check::CompiledFilter;
pub use check::{Narrowing, Side};

/// A condition on a flow's stored columns that every flow the whitelist accepts meets: any of
/// the groups, each group all of its narrowings. A superset, never exact (the blacklist and the
/// checks a store cannot test are left out): a store narrows its scan with it, and the exact
/// [`FlowFilters::matches`] still runs on what is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefilter {
    pub any_of: Vec<Vec<Narrowing>>,
    /// The narrowings are the whole filter (every check of every whitelisted filter, no
    /// blacklist): a flow meeting them is a match, so a store may apply a limit in its scan.
    pub exact: bool,
}

/// Which list of a request a filter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterList {
    Whitelist,
    Blacklist,
}

impl fmt::Display for FilterList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterList::Whitelist => "whitelist",
            FilterList::Blacklist => "blacklist",
        })
    }
}

/// Why a field cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The value does not compile (bad regex, CIDR, port, status pattern, selector, ...).
    Invalid,
    /// Webb does not evaluate this field; it is refused rather than ignored.
    Unsupported,
    /// Over a complexity limit (filters per list, bytes per filter, compiled regex size).
    TooComplex,
}

/// Filters one list may hold (Hubble's CLI sends one per list).
pub const MAX_FILTERS_PER_LIST: usize = 64;
/// Encoded bytes of one FlowFilter: bounds the values of all its fields together.
pub const MAX_FILTER_BYTES: usize = 16 << 10;
/// Compiled size of one regex (the `regex` crate's default is 10 MiB per regex).
pub const MAX_REGEX_BYTES: usize = 256 << 10;

/// A regex compiled within [`MAX_REGEX_BYTES`].
pub(crate) fn bounded_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(MAX_REGEX_BYTES)
        .build()
}

/// A FlowFilter that cannot be compiled, naming the list, the filter's position, the field
/// (by its proto name, e.g. `http_path`), the offending value and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid flow filter: {list}[{index}].{field} {value:?}: {reason}")]
pub struct FilterError {
    pub list: FilterList,
    pub index: usize,
    pub field: &'static str,
    pub value: String,
    pub reason: String,
    pub kind: ErrorKind,
}

impl From<FilterError> for tonic::Status {
    fn from(e: FilterError) -> Self {
        match e.kind {
            // A limit rather than a mistake: servers count these (webb_refused_total).
            ErrorKind::TooComplex => tonic::Status::resource_exhausted(e.to_string()),
            _ => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

/// A compiled whitelist and blacklist.
#[derive(Debug, Clone, Default)]
pub struct FlowFilters {
    whitelist: Vec<CompiledFilter>,
    blacklist: Vec<CompiledFilter>,
}

impl FlowFilters {
    /// Compiles both lists, failing on the first field that cannot be used.
    pub fn compile(
        whitelist: &[FlowFilter],
        blacklist: &[FlowFilter],
    ) -> Result<FlowFilters, FilterError> {
        let compile_list = |list: FilterList, filters: &[FlowFilter]| {
            if filters.len() > MAX_FILTERS_PER_LIST {
                return Err(FilterError {
                    list,
                    index: MAX_FILTERS_PER_LIST,
                    field: "*",
                    value: String::new(),
                    reason: format!(
                        "too complex: {} filters, the limit is {MAX_FILTERS_PER_LIST}",
                        filters.len()
                    ),
                    kind: ErrorKind::TooComplex,
                });
            }
            filters
                .iter()
                .enumerate()
                .map(|(index, ff)| {
                    let bytes = prost::Message::encoded_len(ff);
                    if bytes > MAX_FILTER_BYTES {
                        return Err(FilterError {
                            list,
                            index,
                            field: "*",
                            value: String::new(),
                            reason: format!(
                                "too complex: {bytes} bytes of values, the limit is {MAX_FILTER_BYTES}"
                            ),
                            kind: ErrorKind::TooComplex,
                        });
                    }
                    CompiledFilter::compile(ff).map_err(|e| FilterError {
                        list,
                        index,
                        field: e.field,
                        value: e.value,
                        reason: e.reason,
                        kind: e.kind,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(FlowFilters {
            whitelist: compile_list(FilterList::Whitelist, whitelist)?,
            blacklist: compile_list(FilterList::Blacklist, blacklist)?,
        })
    }

    /// Whether the flow passes: in the whitelist (or it is empty) and in no blacklist filter.
    #[inline]
    pub fn matches(&self, flow: &Flow) -> bool {
        (self.whitelist.is_empty() || self.whitelist.iter().any(|f| f.matches(flow)))
            && !self.blacklist.iter().any(|f| f.matches(flow))
    }

    /// What a store can narrow its scan by, or `None` when some whitelisted filter has no
    /// check a store can test (or the whitelist is empty): then every row must be read.
    pub fn prefilter(&self) -> Option<Prefilter> {
        if self.whitelist.is_empty() {
            return None;
        }
        let mut exact = self.blacklist.is_empty();
        let any_of = self
            .whitelist
            .iter()
            .map(|f| {
                let (narrowings, whole) = f.narrowings();
                exact &= whole;
                Some(narrowings).filter(|n| !n.is_empty())
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Prefilter { any_of, exact })
    }

    /// True when both lists are empty, i.e. every flow passes.
    pub fn is_empty(&self) -> bool {
        self.whitelist.is_empty() && self.blacklist.is_empty()
    }
}
