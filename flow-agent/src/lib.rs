//! Webb flow agent: eBPF datapath (C programs in `bpf/`), loader and ring reader, plus the
//! userspace decoder and node Observer API.

pub mod datapath;
pub mod decode;
pub mod endpoints;
pub mod identity;
pub mod ring;
pub mod fieldmask;
pub mod metrics;
pub mod server;
pub mod pipeline;
