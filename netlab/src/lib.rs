//! The demo and end-to-end test network: a small "cluster" simulated with network namespaces,
//! and bounded live traffic between its pods. One builder, used by `cargo xtask demo` and by the
//! scenarios in `tests/`.
//!
//! ```text
//!  <prefix>-node1 (198.18.0.1, 2001:2::1)          <prefix>-node2 (198.18.0.2, 2001:2::2)
//!  pods 198.19.1.0/24, 2001:2:0:1::/64             pods 198.19.2.0/24, 2001:2:0:2::/64
//!   lxcfrontend ── <prefix>-frontend (shop)    n2n   lxccart ── <prefix>-cart (shop)
//!   lxccatalog  ── <prefix>-catalog  (shop)  ──────  lxcdb   ── <prefix>-db   (data)
//!   lxccoredns  ── <prefix>-coredns  (kube-system)
//! ```
//!
//! ```no_run
//! # fn main() -> Result<(), netlab::Error> {
//! netlab::cleanup_stale("wbt");                          // what crashed runs left
//! let topo = netlab::Topology::build(&netlab::unique_prefix("wbt"))?;
//! topo.write_endpoints("/tmp/endpoints.yaml")?;          // for `webb-agent --endpoints`
//! let traffic = netlab::Traffic::start(&topo, netlab::Plan::default())?;
//! let report = traffic.wait();                           // bounded by Plan's duration and count
//! assert_eq!(report.client.http_by_status, report.servers.http_by_status);
//! drop(topo);                                            // deletes every namespace it made
//! # Ok(()) }
//! ```
//!
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for `setns`) and iproute2's `ip`.

mod dns;
mod http;
mod icmp;
pub mod netns;
mod topology;
mod traffic;

pub use topology::{
    Node, Pod, PodSpec, Topology, Workload, cleanup_leftovers, cleanup_stale, shop, unique_prefix,
};
/// The shop's network policies (CiliumNetworkPolicy YAML) for `webb-agent --policy`: `db` takes
/// connections only from `cart` and `catalog` (so `frontend → db` is denied), and `frontend` may
/// call only `catalog`, `cart` and kube-dns (shown in audit mode by the demo).
pub const SHOP_POLICIES: &str = include_str!("shop-policies.yaml");

pub use traffic::{
    CALLS, CLOSED_UDP_PORT, ClientCounts, PairCounts, Plan, Report, ServerCounts, TracedRequest,
    Traffic, TrafficStats,
};

/// What can go wrong while building or driving the network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlab needs root (network namespaces and veth pairs); run as root")]
    NotRoot,
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{command}`: {source} (is iproute2 installed?)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad topology: {0}")]
    Spec(String),
}
