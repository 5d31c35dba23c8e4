//! Hubble's `observer.Observer` over a bounded flow ring, shared by the node agent and the relay
//! so both answer `GetFlows` with exactly the same semantics (notes/hubble-api.md §2.1, §2.2).
//!
//! - [`ring`] — the bounded ring (one writer, any readers, losses counted per reader).
//! - [`stored`] — what the ring holds ([`RingEvent`]: encoded flows, lost events, node status).
//! - [`query`] — a validated `GetFlowsRequest` ([`FlowQuery`]) and how it walks the ring.
//! - [`fieldmask`] — `GetFlowsRequest.field_mask`.
//! - [`observer`] — the shared state ([`Observed`]) and the gRPC service ([`ObserverService`]),
//!   with hooks for what differs between servers ([`ObserverMetrics`], [`NodesSource`],
//!   [`VersionHeader`], [`StatusExtrasSource`]).
//! - [`peer`] — `peer.Peer/Notify` over a static peer list.
//! - [`serve`] — Observer + Peer + gRPC health on TCP or a unix socket.

pub mod fieldmask;
pub mod observer;
pub mod peer;
pub mod query;
pub mod ring;
pub mod serve;
pub mod stored;

pub use fieldmask::{FlowMask, MaskError};
pub use observer::{
    History, HistoryRequest, NodeCounts, NodeStatus, NodesSource, Observed, ObserverMetrics,
    ObserverService, StatusExtrasSource, VERSION, VersionHeader, stage,
};
pub use peer::{PeerInfo, PeerService};
pub use query::FlowQuery;
pub use ring::{CapacityError, DEFAULT_CAPACITY, LossReporter, MAX_CAPACITY, Ring, RingReader};
pub use serve::{Health, Services};
pub use stored::{EndpointCache, RingEvent, SharedEndpoint, StoredFlow, flow_for};
