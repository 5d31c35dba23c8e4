//! Hubble-compatible protobuf API for Webb.
//!
//! - [`flow`], [`observer`], [`peer`], [`relay`]: Hubble's packages (same names, numbers and
//!   types), with tonic clients and servers for `observer.Observer` and `peer.Peer`.
//! - [`webb_v1`]: Webb's own messages, carried in `Flow.extensions` / `GetFlowsRequest.extensions`
//!   (see [`extras`] and [`options`]) and beside `ServerStatus` answers (see [`status`]).
//! - [`json`]: protojson exactly as `hubble observe -o json` prints it, both directions.
//! - [`health`]: the standard gRPC health service every Webb server registers.
//! - [`wkt`]: `Timestamp`, `Any` and `FieldMask` with Go-identical protojson (other well-known
//!   types, e.g. `BoolValue`, come from the re-exported [`pbjson_types`]).
//! - [`sample`]: realistic, deterministic flows for tests and benchmarks in every crate.

pub mod extras;
pub mod icmp;
pub mod json;
mod json_enum;
mod json_number;
pub mod options;
pub mod sample;
pub mod status;
pub mod summary;
pub mod wkt;

pub use pbjson_types;
pub use wkt::{Any, FieldMask, Timestamp};

/// Hubble's `flow` package: the Flow record, filters, lost/agent/debug events.
#[allow(clippy::large_enum_variant)] // generated; Flow is large by design
pub mod flow {
    include!(concat!(env!("OUT_DIR"), "/flow.rs"));
    include!(concat!(env!("OUT_DIR"), "/flow.serde.rs"));
}

/// Hubble's `observer` package: the Observer service (GetFlows, ServerStatus, ...).
#[allow(clippy::large_enum_variant)] // generated; Flow is large by design
pub mod observer {
    include!(concat!(env!("OUT_DIR"), "/observer.rs"));
    include!(concat!(env!("OUT_DIR"), "/observer.serde.rs"));
}

/// Hubble's `peer` package: the Peer service a relay uses to discover nodes.
#[allow(clippy::large_enum_variant)] // generated; Flow is large by design
pub mod peer {
    include!(concat!(env!("OUT_DIR"), "/peer.rs"));
    include!(concat!(env!("OUT_DIR"), "/peer.serde.rs"));
}

/// Hubble's `relay` package: node status events.
#[allow(clippy::large_enum_variant)] // generated; Flow is large by design
pub mod relay {
    include!(concat!(env!("OUT_DIR"), "/relay.rs"));
    include!(concat!(env!("OUT_DIR"), "/relay.serde.rs"));
}

/// Webb's own package `webb.v1`. Generated code refers to it by this nesting
/// (`super::super::flow`), so it lives at `webb::v1` and is re-exported as [`webb_v1`].
pub mod webb {
    #[allow(clippy::large_enum_variant)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/webb.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/webb.v1.serde.rs"));
    }
}
pub use webb::v1 as webb_v1;

/// The standard gRPC health service (`grpc.health.v1.Health`). Every Webb server registers it
/// and reports [`health::OBSERVER_HEALTH_SERVICE`] as SERVING, which `hubble status` checks.
pub mod health {
    pub use tonic_health::*;

    /// The service name Hubble's CLI asks the health service about.
    pub const OBSERVER_HEALTH_SERVICE: &str = "hubble.server.Observer";

    /// Reports the Observer as serving (or not) under both names clients ask for: the
    /// server as a whole (`""`) and [`OBSERVER_HEALTH_SERVICE`].
    pub async fn set_observer_serving(reporter: &server::HealthReporter, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
        reporter
            .set_service_status(OBSERVER_HEALTH_SERVICE, status)
            .await;
    }
}
