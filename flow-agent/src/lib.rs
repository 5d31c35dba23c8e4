//! Webb flow agent: eBPF datapath (C programs in `bpf/`), loader and ring reader, plus the
//! userspace decoder and node Observer API.

pub mod datapath;
pub mod decode;
pub mod endpoints;
pub mod fieldmask;
pub mod identity;
pub mod metrics;
pub mod pipeline;
pub mod ring;
pub mod server;
