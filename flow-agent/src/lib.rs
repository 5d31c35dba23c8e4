//! Webb flow agent: eBPF datapath (C programs in `bpf/`), loader and ring reader, plus the
//! userspace decoder and the pipeline that feeds the node's Observer API (crate `flow-observer`).

pub mod datapath;
pub mod decode;
pub mod dns;
pub mod endpoints;
pub mod identity;
pub mod metrics;
mod pbwrite;
pub mod pipeline;
pub mod policy;
pub mod reinject;
