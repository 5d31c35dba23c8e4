//! Names for kernel drop reasons and locations carried by [`super::event::EventKind::KernelDrop`].
//!
//! Reason ids are `enum skb_drop_reason` values; their names come from the `print fmt` of the
//! `skb:kfree_skb` tracepoint (`__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, …)`), so they
//! always match the running kernel. Locations are kernel text addresses resolved through
//! `/proc/kallsyms` into `symbol+0xoffset`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Default location of the tracepoint format file.
pub const KFREE_SKB_FORMAT: &str = "/sys/kernel/tracing/events/skb/kfree_skb/format";

/// Error loading the name tables.
#[derive(Debug, thiserror::Error)]
pub enum KernelDropNamesError {
    /// The format file could not be read (is tracefs mounted?).
    #[error("cannot read {path}: {source} (mount tracefs on /sys/kernel/tracing)")]
    Format {
        /// Path read.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The format file has no `__print_symbolic` table for `reason`.
    #[error("{path}: no drop-reason table in the print fmt line")]
    NoTable {
        /// Path read.
        path: PathBuf,
    },
    /// `/proc/kallsyms` could not be read.
    #[error("cannot read /proc/kallsyms: {0}")]
    Kallsyms(std::io::Error),
}

/// Reason-id → name and address → symbol tables for kernel drops.
#[derive(Debug, Clone, Default)]
pub struct KernelDropNames {
    reasons: HashMap<u32, String>,
    symbols: BTreeMap<u64, String>,
}

impl KernelDropNames {
    /// Loads reason names from [`KFREE_SKB_FORMAT`] and symbols from `/proc/kallsyms`.
    pub fn load() -> Result<KernelDropNames, KernelDropNamesError> {
        let reasons = Self::reasons_from_file(Path::new(KFREE_SKB_FORMAT))?;
        let symbols = aya::util::kernel_symbols().map_err(KernelDropNamesError::Kallsyms)?;
        Ok(KernelDropNames { reasons, symbols })
    }

    /// Builds the tables from already-read parts (tests, or a cached copy).
    pub fn from_parts(reasons: HashMap<u32, String>, symbols: BTreeMap<u64, String>) -> Self {
        KernelDropNames { reasons, symbols }
    }

    /// Parses the reason table of a tracepoint format file.
    pub fn reasons_from_file(path: &Path) -> Result<HashMap<u32, String>, KernelDropNamesError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| KernelDropNamesError::Format {
                path: path.into(),
                source,
            })?;
        let table = parse_reason_table(&text);
        if table.is_empty() {
            return Err(KernelDropNamesError::NoTable { path: path.into() });
        }
        Ok(table)
    }

    /// The kernel's name of reason `id` (e.g. `NO_SOCKET`), if known.
    pub fn reason_name(&self, id: u32) -> Option<&str> {
        self.reasons.get(&id).map(String::as_str)
    }

    /// `symbol+0xoffset` for a kernel text address, if a symbol precedes it.
    pub fn location(&self, addr: u64) -> Option<String> {
        if addr == 0 {
            return None;
        }
        let (start, name) = self.symbols.range(..=addr).next_back()?;
        Some(format!("{name}+{:#x}", addr - start))
    }
}

/// Extracts `{ id, "NAME" }` pairs from the `__print_symbolic(REC->reason, …)` call.
pub fn parse_reason_table(format: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    let Some(start) = format.find("__print_symbolic(REC->reason") else {
        return out;
    };
    let mut rest = &format[start..];
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let entry = &rest[..close];
        rest = &rest[close + 1..];
        let mut parts = entry.splitn(2, ',');
        let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        let id = id.trim();
        let id = if let Some(hex) = id.strip_prefix("0x") {
            u32::from_str_radix(hex, 16).ok()
        } else {
            id.parse().ok()
        };
        if let Some(id) = id {
            out.insert(id, name.trim().trim_matches('"').to_string());
        }
        // The table ends with the call's closing parenthesis.
        if rest.trim_start().starts_with(')') {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_table_is_read_from_print_fmt() {
        let fmt = r#"print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 0x3e, "TC_EGRESS" })"#;
        let t = parse_reason_table(fmt);
        assert_eq!(t.get(&3).map(String::as_str), Some("NO_SOCKET"));
        assert_eq!(t.get(&62).map(String::as_str), Some("TC_EGRESS"));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn location_is_symbol_plus_offset() {
        let mut syms = BTreeMap::new();
        syms.insert(0x1000, "ip_rcv".to_string());
        syms.insert(0x2000, "udp_rcv".to_string());
        let n = KernelDropNames::from_parts(HashMap::new(), syms);
        assert_eq!(n.location(0x2010).as_deref(), Some("udp_rcv+0x10"));
        assert_eq!(n.location(0x10), None);
    }
}
