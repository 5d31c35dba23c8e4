//! What the flow ring holds.

use prost::Message;
use webb_proto::Timestamp;
use webb_proto::flow::{Flow, LostEvent};
use webb_proto::relay::NodeStatusEvent;
use webb_proto::webb_v1::FlowExtras;

/// One ring entry. Flows, losses and node status share the ring (as in Hubble) so every reader
/// sees them in the order they happened.
#[derive(Debug, Clone, PartialEq)]
pub enum RingEvent {
    Flow(StoredFlow),
    /// Events lost upstream of the ring (datapath, a peer's ring, ...), reported by `node_name`.
    Lost {
        node_name: String,
        event: LostEvent,
    },
    /// A relay's peer connected, became unavailable, ... (`time` is when it was recorded).
    NodeStatus {
        time: Timestamp,
        event: NodeStatusEvent,
    },
}

/// A flow as the ring keeps it: protobuf-encoded, because a decoded `Flow` with its strings
/// takes ~2.5 KB and its encoding ~0.5 KB (a 65535-flow ring must fit an agent in 64 MB).
/// The time stays outside so time-range walks need no decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlow {
    time_ns: i128,
    flow: Box<[u8]>,
    extras: Option<Box<[u8]>>,
}

impl StoredFlow {
    /// Encodes a flow (without `extensions`) and Webb's extras for it, kept apart so a plain
    /// Hubble client never receives them.
    pub fn new(flow: &Flow, extras: Option<&FlowExtras>) -> Self {
        StoredFlow {
            time_ns: flow.time.map(|t| t.unix_nanos()).unwrap_or(0),
            flow: flow.encode_to_vec().into_boxed_slice(),
            extras: extras.map(|e| e.encode_to_vec().into_boxed_slice()),
        }
    }

    /// Flow time in Unix nanoseconds (0 when the flow has none).
    pub fn time_ns(&self) -> i128 {
        self.time_ns
    }

    /// Bytes held for this flow.
    pub fn stored_len(&self) -> usize {
        self.flow.len() + self.extras.as_ref().map_or(0, |e| e.len())
    }

    /// The flow, decoded.
    pub fn flow(&self) -> Result<Flow, prost::DecodeError> {
        Flow::decode(&self.flow[..])
    }

    /// The extras, decoded (`None` when the flow has none).
    pub fn extras(&self) -> Result<Option<FlowExtras>, prost::DecodeError> {
        self.extras
            .as_ref()
            .map(|e| FlowExtras::decode(&e[..]))
            .transpose()
    }
}

/// `flow` as a client should receive it: Webb's extras attached in `extensions` only as far as
/// the request's `webb.v1.FlowsRequestOptions` ask (payload and the rest separately).
pub fn flow_for(
    flow: &Flow,
    extras: Option<&FlowExtras>,
    include_extras: bool,
    include_payload: bool,
) -> Flow {
    let mut flow = flow.clone();
    let Some(extras) = extras else {
        return flow;
    };
    if include_payload && include_extras {
        webb_proto::extras::attach(&mut flow, Some(extras));
    } else if include_extras || include_payload {
        let mut e = extras.clone();
        if !include_payload {
            e.payload = None;
        }
        if !include_extras {
            e.kernel_drop = None;
            e.default_deny = None;
            e.loss.clear();
        }
        if e != FlowExtras::default() {
            webb_proto::extras::attach(&mut flow, Some(&e));
        }
    }
    flow
}

#[cfg(test)]
mod tests {
    use super::*;
    use webb_proto::webb_v1::{CapturedPayload, StageLoss};

    fn extras() -> FlowExtras {
        FlowExtras {
            payload: Some(CapturedPayload {
                data: b"GET / HTTP/1.1\r\n".to_vec(),
                ..Default::default()
            }),
            loss: vec![StageLoss {
                stage: "ring".into(),
                node: "vn1".into(),
                lost: 3,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_stored_flow_decodes_to_what_was_stored() {
        let flow = Flow {
            time: Some(Timestamp::from_unix_nanos(1_790_000_000_123_456_789)),
            uuid: "u1".into(),
            ..Default::default()
        };
        let s = StoredFlow::new(&flow, Some(&extras()));
        assert_eq!(s.time_ns(), 1_790_000_000_123_456_789);
        assert_eq!(s.flow().unwrap(), flow);
        assert_eq!(s.extras().unwrap(), Some(extras()));
        assert_eq!(StoredFlow::new(&flow, None).extras().unwrap(), None);
    }

    #[test]
    fn extras_go_only_as_far_as_the_request_asks() {
        let flow = Flow::default();
        let e = extras();
        assert!(flow_for(&flow, Some(&e), false, false).extensions.is_none());
        let only_payload = webb_proto::extras::unpack(&flow_for(&flow, Some(&e), false, true))
            .unwrap()
            .unwrap();
        assert!(only_payload.payload.is_some() && only_payload.loss.is_empty());
        let only_extras = webb_proto::extras::unpack(&flow_for(&flow, Some(&e), true, false))
            .unwrap()
            .unwrap();
        assert!(only_extras.payload.is_none() && !only_extras.loss.is_empty());
        let all = webb_proto::extras::unpack(&flow_for(&flow, Some(&e), true, true))
            .unwrap()
            .unwrap();
        assert_eq!(all, e);
    }
}
