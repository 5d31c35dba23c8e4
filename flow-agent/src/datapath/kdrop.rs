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
    symbols: Symbols,
}

impl KernelDropNames {
    /// Loads reason names from [`KFREE_SKB_FORMAT`] and text symbols from `/proc/kallsyms`.
    pub fn load() -> Result<KernelDropNames, KernelDropNamesError> {
        let reasons = Self::reasons_from_file(Path::new(KFREE_SKB_FORMAT))?;
        let kallsyms =
            std::fs::read_to_string("/proc/kallsyms").map_err(KernelDropNamesError::Kallsyms)?;
        Ok(KernelDropNames {
            reasons,
            symbols: Symbols::from_kallsyms(&kallsyms),
        })
    }

    /// Builds the tables from already-read parts (tests, or a cached copy).
    pub fn from_parts(reasons: HashMap<u32, String>, symbols: BTreeMap<u64, String>) -> Self {
        KernelDropNames {
            reasons,
            symbols: Symbols::from_sorted(symbols.iter().map(|(a, n)| (*a, n.as_str()))),
        }
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
        let (start, name) = self.symbols.at_or_before(addr)?;
        Some(format!("{name}+{:#x}", addr - start))
    }
}

/// Kernel symbols sorted by address, packed into three allocations: `/proc/kallsyms` has ~120k
/// text symbols, which as a `BTreeMap<u64, String>` took ~7 MB of the agent's heap for the
/// life of the process (half of it allocator overhead); packed they take ~4.4 MB.
#[derive(Debug, Clone, Default)]
struct Symbols {
    addrs: Box<[u64]>,
    /// End of each name in `names`.
    ends: Box<[u32]>,
    names: Box<str>,
}

impl Symbols {
    /// Text symbols (`t`/`T`, and weak `w`/`W`) of `/proc/kallsyms` text; where several share an
    /// address the last listed names it.
    fn from_kallsyms(text: &str) -> Symbols {
        let mut syms: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then_some((addr, name))
            })
            .collect();
        // Stable: among equal addresses the file's order stays, and the last one wins below.
        syms.sort_by_key(|(a, _)| *a);
        let mut last_wins: Vec<(u64, &str)> = Vec::with_capacity(syms.len());
        for (a, n) in syms {
            match last_wins.last_mut() {
                Some(prev) if prev.0 == a => prev.1 = n,
                _ => last_wins.push((a, n)),
            }
        }
        Symbols::from_sorted(last_wins.into_iter())
    }

    /// From symbols in ascending address order, one per address.
    fn from_sorted<'a>(syms: impl Iterator<Item = (u64, &'a str)>) -> Symbols {
        let (mut addrs, mut ends, mut names) = (Vec::new(), Vec::new(), String::new());
        for (a, n) in syms {
            names.push_str(n);
            // Names total a few MB; past 4 GiB the table stops growing.
            let Ok(end) = u32::try_from(names.len()) else {
                break;
            };
            addrs.push(a);
            ends.push(end);
        }
        Symbols {
            addrs: addrs.into(),
            ends: ends.into(),
            names: names.into(),
        }
    }

    /// The symbol at or before `addr`, and its address.
    fn at_or_before(&self, addr: u64) -> Option<(u64, &str)> {
        let i = self.addrs.partition_point(|a| *a <= addr).checked_sub(1)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some((self.addrs[i], &self.names[start..self.ends[i] as usize]))
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
        assert_eq!(n.location(0x1000).as_deref(), Some("ip_rcv+0x0"));
    }

    #[test]
    fn text_symbols_are_read_from_kallsyms_and_the_last_alias_names_an_address() {
        let kallsyms = "\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81002000 D some_data
ffffffff81001000 t ip_rcv_core
ffffffffc0001000 t veth_xmit\t[veth]
ffffffff81003000 W weak_fn
";
        let s = Symbols::from_kallsyms(kallsyms);
        assert_eq!(
            s.at_or_before(0xffffffff81000010),
            Some((0xffffffff81000000, "_text"))
        );
        assert_eq!(
            s.at_or_before(0xffffffff81002004),
            Some((0xffffffff81001000, "ip_rcv_core"))
        );
        assert_eq!(
            s.at_or_before(0xffffffff81003001),
            Some((0xffffffff81003000, "weak_fn"))
        );
        assert_eq!(
            s.at_or_before(0xffffffffc0001008),
            Some((0xffffffffc0001000, "veth_xmit"))
        );
        assert_eq!(s.at_or_before(0xffffffff80000000), None);
    }
}
