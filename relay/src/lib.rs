//! Webb's relay: subscribes to every agent's flows, merges them in time order, turns captured
//! payload into L7 flows (HTTP/1.x, trace context), and serves the result with Hubble's API.
//!
//! Stages, each a library module usable on its own:
//! [`peers`] (agent streams) → [`merge`] (time order) → [`l7`] (HTTP, [`traceparent`],
//! [`privacy`]) → a sink; [`pipeline`] runs them all, and [`server`] puts the result in the relay's
//! ring behind Hubble's Observer API.

pub mod api;
// The L7 parsers live in their own crate; these names keep the relay's paths.
pub use webb_l7 as l7;
pub use webb_l7::{privacy, traceparent};
pub mod merge;
pub mod otlp;
pub mod peers;
pub mod pipeline;
pub mod server;

pub mod metrics;
#[cfg(test)]
mod test_agent;
