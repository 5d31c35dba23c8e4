//! `FlowQuery::history_request`: which stored flows a GetFlows request needs from history
//! (everything older than the ring), given the time of the ring's oldest flow and how many
//! matching flows `--last N` found in the ring.

use flow_observer::{FlowQuery, HistoryRequest};
use webb_proto::Timestamp;
use webb_proto::observer::GetFlowsRequest;

/// Time of the ring's oldest flow in these tests (Unix ns).
const RING_OLDEST: i128 = 1_790_000_000_000_000_000;
/// One second.
const SEC: i128 = 1_000_000_000;

fn ts(ns: i128) -> Option<Timestamp> {
    Some(Timestamp::from_unix_nanos(u64::try_from(ns).unwrap()))
}

fn query(req: GetFlowsRequest) -> FlowQuery {
    FlowQuery::from_request(&req).expect("a valid request")
}

#[test]
fn first_n_reads_forward_from_the_oldest_stored_flow_up_to_the_ring() {
    let q = query(GetFlowsRequest {
        first: true,
        number: 5,
        ..Default::default()
    });
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 0),
        Some(HistoryRequest {
            since: None,
            until: Some(RING_OLDEST),
            limit: Some(5),
            newest_first: false,
        })
    );
    // The ring holds no flow yet: everything stored is older than the ring.
    assert_eq!(
        q.history_request(None, 0),
        Some(HistoryRequest {
            since: None,
            until: None,
            limit: Some(5),
            newest_first: false,
        })
    );
}

#[test]
fn first_n_with_since_before_the_ring_starts_at_since() {
    let q = query(GetFlowsRequest {
        first: true,
        number: 3,
        since: ts(RING_OLDEST - 10 * SEC),
        ..Default::default()
    });
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 0),
        Some(HistoryRequest {
            since: Some(RING_OLDEST - 10 * SEC),
            until: Some(RING_OLDEST),
            limit: Some(3),
            newest_first: false,
        })
    );
}

#[test]
fn since_before_the_ring_reads_forward_from_since_up_to_the_ring() {
    let since = RING_OLDEST - 60 * SEC;
    let q = query(GetFlowsRequest {
        since: ts(since),
        ..Default::default()
    });
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 0),
        Some(HistoryRequest {
            since: Some(since),
            until: Some(RING_OLDEST),
            limit: None,
            newest_first: false,
        })
    );
    // Following does not change what history is read before the ring.
    let q = query(GetFlowsRequest {
        since: ts(since),
        follow: true,
        ..Default::default()
    });
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 7),
        Some(HistoryRequest {
            since: Some(since),
            until: Some(RING_OLDEST),
            limit: None,
            newest_first: false,
        })
    );
    // With `number`, the oldest `number` from since.
    let q = query(GetFlowsRequest {
        since: ts(since),
        number: 4,
        ..Default::default()
    });
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 0).map(|r| r.limit),
        Some(Some(4))
    );
}

#[test]
fn since_and_until_before_the_ring_read_history_up_to_until_inclusive() {
    let (since, until) = (RING_OLDEST - 60 * SEC, RING_OLDEST - 30 * SEC);
    let q = query(GetFlowsRequest {
        since: ts(since),
        until: ts(until),
        ..Default::default()
    });
    // `until` is inclusive in GetFlows, exclusive in a HistoryRequest.
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 0),
        Some(HistoryRequest {
            since: Some(since),
            until: Some(until + 1),
            limit: None,
            newest_first: false,
        })
    );
    // An `until` inside the ring: history stops at the ring.
    let q = query(GetFlowsRequest {
        since: ts(since),
        until: ts(RING_OLDEST + SEC),
        ..Default::default()
    });
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 0)
            .and_then(|r| r.until),
        Some(RING_OLDEST)
    );
    // No ring: up to `until`.
    assert_eq!(
        q.history_request(None, 0).and_then(|r| r.until),
        Some(RING_OLDEST + SEC + 1)
    );
}

#[test]
fn last_n_with_fewer_in_the_ring_reads_the_rest_newest_first() {
    let q = query(GetFlowsRequest {
        number: 10,
        ..Default::default()
    });
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 4),
        Some(HistoryRequest {
            since: None,
            until: Some(RING_OLDEST),
            limit: Some(6),
            newest_first: true,
        })
    );
    // An empty ring: the newest 10 stored.
    assert_eq!(
        q.history_request(None, 0),
        Some(HistoryRequest {
            since: None,
            until: None,
            limit: Some(10),
            newest_first: true,
        })
    );
    // `--last N --follow` reads the missing part from history too.
    let q = query(GetFlowsRequest {
        number: 10,
        follow: true,
        ..Default::default()
    });
    assert_eq!(
        q.history_request(Some(RING_OLDEST), 9),
        Some(HistoryRequest {
            since: None,
            until: Some(RING_OLDEST),
            limit: Some(1),
            newest_first: true,
        })
    );
}

#[test]
fn last_n_that_the_ring_holds_reads_no_history() {
    let q = query(GetFlowsRequest {
        number: 10,
        ..Default::default()
    });
    assert_eq!(q.history_request(Some(RING_OLDEST), 10), None);
}

#[test]
fn plain_follow_and_unbounded_requests_read_no_history() {
    let follow = query(GetFlowsRequest {
        follow: true,
        ..Default::default()
    });
    assert_eq!(follow.history_request(Some(RING_OLDEST), 0), None);
    assert_eq!(follow.history_request(None, 0), None);
    // Neither `number` nor `since`: the ring only (an unbounded history read is never made).
    let plain = query(GetFlowsRequest::default());
    assert_eq!(plain.history_request(Some(RING_OLDEST), 3), None);
    assert_eq!(plain.history_request(None, 0), None);
}

#[test]
fn since_at_or_after_the_history_bound_reads_no_history() {
    // `since` is the ring's oldest flow: the ring has all of it.
    let at_ring = query(GetFlowsRequest {
        since: ts(RING_OLDEST),
        ..Default::default()
    });
    assert_eq!(at_ring.history_request(Some(RING_OLDEST), 0), None);
    // `since` inside the ring.
    let in_ring = query(GetFlowsRequest {
        since: ts(RING_OLDEST + SEC),
        follow: true,
        ..Default::default()
    });
    assert_eq!(in_ring.history_request(Some(RING_OLDEST), 0), None);
    // `since` after `until` (an empty range), with or without a ring.
    let empty = query(GetFlowsRequest {
        since: ts(RING_OLDEST - 10 * SEC),
        until: ts(RING_OLDEST - 20 * SEC),
        ..Default::default()
    });
    assert_eq!(empty.history_request(Some(RING_OLDEST), 0), None);
    assert_eq!(empty.history_request(None, 0), None);
    // `--first N` with an empty range reads nothing either.
    let first_empty = query(GetFlowsRequest {
        first: true,
        number: 5,
        since: ts(RING_OLDEST + SEC),
        ..Default::default()
    });
    assert_eq!(first_empty.history_request(Some(RING_OLDEST), 0), None);
}
