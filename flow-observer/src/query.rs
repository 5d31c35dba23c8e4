//! A validated `GetFlowsRequest` and where it starts reading the ring (Hubble's node server
//! semantics, notes/hubble-api.md §2.2).

use tonic::Status;

use flow_filter::FlowFilters;
use webb_proto::Timestamp;
use webb_proto::flow::Flow;
use webb_proto::observer::{GetFlowsRequest, GetFlowsResponse, get_flows_response::ResponseTypes};
use webb_proto::webb_v1::FlowExtras;

use crate::fieldmask::FlowMask;
use crate::observer::HistoryRequest;
use crate::ring::Ring;
use crate::stored::{RingEvent, flow_for};

/// A validated GetFlows request.
#[derive(Debug, Clone)]
pub struct FlowQuery {
    /// Matching flows wanted (0 = no limit).
    pub number: u64,
    pub first: bool,
    pub follow: bool,
    /// Unix nanoseconds.
    pub since: Option<i128>,
    /// Unix nanoseconds.
    pub until: Option<i128>,
    pub filters: FlowFilters,
    pub mask: Option<FlowMask>,
    /// From `webb.v1.FlowsRequestOptions` in the request's extensions.
    pub include_extras: bool,
    pub include_payload: bool,
}

impl FlowQuery {
    /// Checks a request: `first` with `follow`, bad filters, unknown mask paths, invalid times
    /// and undecodable Webb options are `InvalidArgument`, as in Hubble.
    pub fn from_request(req: &GetFlowsRequest) -> Result<Self, Status> {
        if req.first && req.follow {
            return Err(Status::invalid_argument(
                "first cannot be specified with follow",
            ));
        }
        let options = webb_proto::options::from_request(req).map_err(|e| {
            Status::invalid_argument(format!("invalid webb.v1.FlowsRequestOptions: {e}"))
        })?;
        let filters = FlowFilters::compile(&req.whitelist, &req.blacklist)?;
        let mask = match &req.field_mask {
            Some(m) if !m.paths.is_empty() => {
                Some(FlowMask::new(&m.paths).map_err(|e| Status::invalid_argument(e.to_string()))?)
            }
            _ => None,
        };
        let ts = |t: &Option<Timestamp>| -> Result<Option<i128>, Status> {
            match t {
                None => Ok(None),
                Some(t) => t
                    .to_datetime()
                    .map(|_| Some(t.unix_nanos()))
                    .map_err(|e| Status::invalid_argument(format!("invalid time: {e}"))),
            }
        };
        Ok(FlowQuery {
            number: req.number,
            first: req.first,
            follow: req.follow,
            since: ts(&req.since)?,
            until: ts(&req.until)?,
            filters,
            mask,
            include_extras: options.include_extras,
            include_payload: options.include_payload,
        })
    }

    /// Whether the request's allow/deny filters let `flow` through.
    pub fn matches(&self, flow: &Flow) -> bool {
        self.filters.matches(flow)
    }

    /// Where reading starts (Hubble's `newRingReader`): the oldest entry for `first`, the next
    /// write for a plain follow, else walking back from the newest until `number` matching flows
    /// (or, with `since`, the first older flow) are behind.
    pub fn start(&self, ring: &Ring<RingEvent>) -> u64 {
        self.start_and_count(ring, None).0
    }

    /// [`start`](Self::start) and how many matching flows lie between it and the newest (only
    /// counted for `--last N`: 0 otherwise). Flows older than `history_cut` (those history
    /// serves: see `serve_flows`) are walked over but not counted.
    pub fn start_and_count(&self, ring: &Ring<RingEvent>, history_cut: Option<i128>) -> (u64, u64) {
        let head = ring.head();
        let oldest = ring.oldest();
        if self.first && self.since.is_none() {
            return (oldest, 0);
        }
        if self.follow && self.number == 0 && self.since.is_none() {
            return (head, 0);
        }
        let mut count = 0u64;
        let mut start = oldest;
        for seq in (oldest..head).rev() {
            let ev = match ring.get(seq) {
                Ok(ev) => ev,
                Err(_) => {
                    start = seq + 1;
                    break;
                }
            };
            let RingEvent::Flow(r) = ev.as_ref() else {
                continue;
            };
            if !self.filters.is_empty() && !r.flow().is_ok_and(|f| self.filters.matches(&f)) {
                continue;
            }
            if let Some(since) = self.since {
                if r.time_ns() < since {
                    start = seq + 1;
                    break;
                }
                continue;
            }
            if history_cut.is_some_and(|cut| r.time_ns() < cut) {
                continue;
            }
            count += 1;
            if self.number != 0 && count == self.number {
                start = seq;
                break;
            }
        }
        (start, count)
    }

    /// What this request needs from history, given the time of the ring's oldest flow (`None`:
    /// the ring holds none) and the matching flows `--last N` found in the ring:
    /// - `--first N` and `--since T` (T before the ring) read forward from history up to the ring;
    /// - `--last N` reads the newest `N − in_ring` older than the ring when the ring had fewer;
    /// - a plain follow, or a request without `number` nor `since`, reads none (unbounded).
    pub fn history_request(
        &self,
        ring_oldest_ns: Option<i128>,
        in_ring: u64,
    ) -> Option<HistoryRequest> {
        let until = match (ring_oldest_ns, self.until) {
            (Some(r), Some(u)) => Some(r.min(u.saturating_add(1))),
            (Some(r), None) => Some(r),
            (None, u) => u.map(|u| u.saturating_add(1)),
        };
        if let (Some(s), Some(u)) = (self.since, until)
            && s >= u
        {
            return None;
        }
        let limit = (self.number != 0).then_some(self.number);
        if self.first {
            return Some(HistoryRequest {
                since: self.since,
                until,
                limit,
                newest_first: false,
            });
        }
        match (self.since, limit) {
            // With `since` the ring is read forward from it, and so is history.
            (Some(since), limit) => Some(HistoryRequest {
                since: Some(since),
                until,
                limit,
                newest_first: false,
            }),
            (None, Some(n)) if in_ring < n => Some(HistoryRequest {
                since: None,
                until,
                limit: Some(n - in_ring),
                newest_first: true,
            }),
            _ => None,
        }
    }

    /// The response for a matching flow: extras as the options ask, the field mask applied,
    /// `time` and `node_name` set from the flow (`node` when the flow names none).
    pub fn response(
        &self,
        node: &str,
        flow: &Flow,
        extras: Option<&FlowExtras>,
    ) -> GetFlowsResponse {
        let out = flow_for(flow, extras, self.include_extras, self.include_payload);
        let out = match &self.mask {
            Some(mask) => mask.apply(&out),
            None => out,
        };
        GetFlowsResponse {
            node_name: if flow.node_name.is_empty() {
                node.to_string()
            } else {
                flow.node_name.clone()
            },
            time: flow.time,
            response_types: Some(ResponseTypes::Flow(out)),
        }
    }
}
