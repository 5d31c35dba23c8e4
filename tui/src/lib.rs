//! `webb`: Hubble's command line for Webb — `observe` with Hubble's selectors, filter flags
//! and output formats, `status`, `list nodes|namespaces` — as a library so tests can drive
//! each part.
//!
//! - [`filters`]: filter flags → allow/deny `FlowFilter`s (Hubble's rules).
//! - [`flags`]: the clap arguments for those flags, replayed in command-line order.
//! - [`observe`]: selectors → `GetFlowsRequest`; reading JSON lines with local filtering.
//! - [`printer`]: compact, dict, table and json output; status and list output.
//! - [`time`]: `--since`/`--until` parsing and `--time-format` printing.
//! - [`client`]: connecting to an agent or relay (plaintext or TLS).
//! - [`certs`]: `webb certs`, a CA and certificates for TLS and mTLS.
//! - [`sql`]: `webb sql` through the relay's HTTP API.
//! - [`viewer`]: `webb tui`, the terminal flow viewer.

pub mod certs;
pub mod cli;
pub mod client;
pub mod filters;
pub mod flags;
pub mod json;
pub mod observe;
pub mod printer;
pub mod sql;
pub mod time;
pub mod viewer;
