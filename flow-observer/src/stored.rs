//! What the flow ring holds.

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message;
use webb_proto::Timestamp;
use webb_proto::flow::{Endpoint, Flow, LostEvent};
use webb_proto::relay::NodeStatusEvent;
use webb_proto::webb_v1::FlowExtras;

/// One ring entry. Flows, losses and node status share the ring (as in Hubble) so every reader
/// sees them in the order they happened. The rare kinds are boxed so that the ring's many
/// flows pay only for what a flow needs.
#[derive(Debug, Clone, PartialEq)]
pub enum RingEvent {
    Flow(StoredFlow),
    /// Events lost upstream of the ring (datapath, a peer's ring, ...), reported by `node_name`.
    Lost {
        node_name: String,
        event: Box<LostEvent>,
    },
    /// A relay's peer connected, became unavailable, ... (`time` is when it was recorded).
    NodeStatus {
        time: Timestamp,
        event: Box<NodeStatusEvent>,
    },
}

/// An endpoint's encoding, shared by every stored flow that carries it.
#[derive(Debug, PartialEq, Eq)]
pub struct SharedEndpoint(Box<[u8]>);

/// A cache entry, looked up by the encoding it shares.
#[derive(Debug, PartialEq, Eq)]
struct Known(Arc<SharedEndpoint>);

// Hashes as the bytes do, so the set can be searched by a fresh encoding.
impl std::hash::Hash for Known {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.0[..].hash(state)
    }
}

impl std::borrow::Borrow<[u8]> for Known {
    fn borrow(&self) -> &[u8] {
        &self.0.0
    }
}

/// A flow as the ring keeps it: protobuf-encoded, because a decoded `Flow` with its strings
/// takes ~2.5 KB and its encoding ~0.5 KB — and of that encoding, the two endpoints (labels,
/// pod, workloads) are most, while a node sees few distinct endpoints. So the endpoints are
/// stored once each ([`EndpointCache`]) and a flow holds the rest (~0.2 KB) and two pointers:
/// a 65535-flow ring must fit an agent in 64 MB. The time stays outside so time-range walks
/// need no decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlow {
    /// Unix ns (i64 reaches the year 2262).
    time_ns: i64,
    /// The flow's encoding without `source` and `destination`, then the extras' from
    /// `extras_at` (one allocation for both).
    bytes: Box<[u8]>,
    /// Where the extras start in `bytes`; `NO_EXTRAS` when the flow has none.
    extras_at: u32,
    source: Option<Arc<SharedEndpoint>>,
    destination: Option<Arc<SharedEndpoint>>,
}

const NO_EXTRAS: u32 = u32::MAX;

impl StoredFlow {
    /// Encodes a flow (without `extensions`) and Webb's extras for it, kept apart so a plain
    /// Hubble client never receives them; the endpoints are shared through `endpoints`.
    pub fn new(mut flow: Flow, extras: Option<&FlowExtras>, endpoints: &mut EndpointCache) -> Self {
        let time_ns = flow
            .time
            .map(|t| t.unix_nanos().clamp(0, i128::from(i64::MAX)) as i64)
            .unwrap_or(0);
        let source = flow.source.take().map(|e| endpoints.share(&e));
        let destination = flow.destination.take().map(|e| endpoints.share(&e));
        let flow_len = flow.encoded_len();
        let mut bytes = Vec::with_capacity(flow_len + extras.map_or(0, |e| e.encoded_len()));
        flow.encode_raw(&mut bytes);
        let extras_at = match extras {
            // A flow's encoding is far below 4 GiB (the agent's records are a few KB).
            Some(e) => {
                let at = u32::try_from(bytes.len()).unwrap_or(NO_EXTRAS - 1);
                e.encode_raw(&mut bytes);
                at
            }
            None => NO_EXTRAS,
        };
        StoredFlow {
            time_ns,
            bytes: bytes.into_boxed_slice(),
            extras_at,
            source,
            destination,
        }
    }

    /// A flow already encoded by its producer (the agent's decoder writes it straight from the
    /// datapath record, without building a `Flow`): `bytes` is the flow's encoding without
    /// `source`, `destination` and `extensions`, then from `extras_at` the extras' encoding.
    pub fn from_encoded(
        time_ns: i64,
        bytes: Box<[u8]>,
        extras_at: Option<usize>,
        source: Option<Arc<SharedEndpoint>>,
        destination: Option<Arc<SharedEndpoint>>,
    ) -> Self {
        let extras_at = extras_at
            .map(|at| {
                u32::try_from(at)
                    .unwrap_or(NO_EXTRAS - 1)
                    .min(NO_EXTRAS - 1)
            })
            .unwrap_or(NO_EXTRAS);
        StoredFlow {
            time_ns,
            bytes,
            extras_at,
            source,
            destination,
        }
    }

    /// Flow time in Unix nanoseconds (0 when the flow has none).
    pub fn time_ns(&self) -> i128 {
        i128::from(self.time_ns)
    }

    /// Bytes held for this flow alone (shared endpoints not counted).
    pub fn stored_len(&self) -> usize {
        self.bytes.len()
    }

    fn flow_bytes(&self) -> &[u8] {
        match self.extras_at {
            NO_EXTRAS => &self.bytes,
            at => &self.bytes[..at as usize],
        }
    }

    /// The flow, decoded.
    pub fn flow(&self) -> Result<Flow, prost::DecodeError> {
        let mut flow = Flow::decode(self.flow_bytes())?;
        let endpoint = |e: &Option<Arc<SharedEndpoint>>| {
            e.as_ref().map(|e| Endpoint::decode(&e.0[..])).transpose()
        };
        flow.source = endpoint(&self.source)?;
        flow.destination = endpoint(&self.destination)?;
        Ok(flow)
    }

    /// The extras, decoded (`None` when the flow has none).
    pub fn extras(&self) -> Result<Option<FlowExtras>, prost::DecodeError> {
        match self.extras_at {
            NO_EXTRAS => Ok(None),
            at => FlowExtras::decode(&self.bytes[at as usize..]).map(Some),
        }
    }
}

/// The endpoints recent flows carry, each encoded once and shared by the flows that carry it.
/// Bounded: past [`EndpointCache::MAX`] entries, those no stored flow holds any more are
/// forgotten, and if most are still held, all are (later flows then share fresh copies; the
/// ring's capacity bounds what stays alive).
#[derive(Debug, Default)]
pub struct EndpointCache {
    known: HashSet<Known, foldhash::fast::RandomState>,
    scratch: Vec<u8>,
}

impl EndpointCache {
    /// Distinct endpoints remembered at most.
    pub const MAX: usize = 4096;

    /// The shared encoding of `endpoint`.
    pub fn share(&mut self, endpoint: &Endpoint) -> Arc<SharedEndpoint> {
        self.scratch.clear();
        endpoint.encode_raw(&mut self.scratch);
        if let Some(known) = self.known.get(&self.scratch[..]) {
            return known.0.clone();
        }
        if self.known.len() >= Self::MAX {
            self.known.retain(|e| Arc::strong_count(&e.0) > 1);
            if self.known.len() >= Self::MAX / 2 {
                self.known.clear();
            }
        }
        let shared = Arc::new(SharedEndpoint(self.scratch.as_slice().into()));
        self.known.insert(Known(shared.clone()));
        shared
    }

    /// Distinct endpoints remembered now.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
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
        let mut cache = EndpointCache::default();
        let s = StoredFlow::new(flow.clone(), Some(&extras()), &mut cache);
        assert_eq!(s.time_ns(), 1_790_000_000_123_456_789);
        assert_eq!(s.flow().unwrap(), flow);
        assert_eq!(s.extras().unwrap(), Some(extras()));
        let bare = StoredFlow::new(flow.clone(), None, &mut cache);
        assert_eq!(bare.extras().unwrap(), None);
        assert_eq!(bare.flow().unwrap(), flow);
        let empty = StoredFlow::new(flow, Some(&FlowExtras::default()), &mut cache);
        assert_eq!(empty.extras().unwrap(), Some(FlowExtras::default()));
    }

    fn endpoint(pod: &str) -> Endpoint {
        Endpoint {
            id: 7,
            identity: 1234,
            namespace: "shop".into(),
            labels: vec![
                "k8s:app=web".into(),
                "k8s:io.kubernetes.pod.namespace=shop".into(),
            ],
            pod_name: pod.into(),
            ..Default::default()
        }
    }

    #[test]
    fn flows_with_the_same_endpoints_share_one_copy_of_each() {
        let mut cache = EndpointCache::default();
        let flow = |src: &str, dst: &str| Flow {
            uuid: format!("{src}-{dst}"),
            source: Some(endpoint(src)),
            destination: Some(endpoint(dst)),
            ..Default::default()
        };
        let a = StoredFlow::new(flow("web-1", "db-1"), None, &mut cache);
        let b = StoredFlow::new(flow("web-1", "db-1"), None, &mut cache);
        let c = StoredFlow::new(flow("db-1", "web-1"), None, &mut cache);
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(
            a.source.as_ref().unwrap(),
            b.source.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            a.source.as_ref().unwrap(),
            c.destination.as_ref().unwrap()
        ));
        assert_eq!(a.flow().unwrap(), flow("web-1", "db-1"));
        assert_eq!(c.flow().unwrap(), flow("db-1", "web-1"));
        let lone = StoredFlow::new(Flow::default(), None, &mut cache);
        assert_eq!(lone.flow().unwrap(), Flow::default());
    }

    #[test]
    fn the_endpoint_cache_stays_bounded_and_keeps_what_flows_still_hold() {
        let mut cache = EndpointCache::default();
        let held = cache.share(&endpoint("held"));
        for i in 0..3 * EndpointCache::MAX {
            cache.share(&endpoint(&format!("pod-{i}")));
            assert!(cache.len() <= EndpointCache::MAX);
        }
        assert!(Arc::ptr_eq(&held, &cache.share(&endpoint("held"))));
        assert_eq!(Endpoint::decode(&held.0[..]).unwrap(), endpoint("held"));
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
