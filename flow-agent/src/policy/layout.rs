//! Compiled entries → the datapath's policy hash (`POLICY` in `bpf/flow.bpf.c`).
//!
//! [`compile`](super::compile()) speaks in longest-prefix terms: per (direction, endpoint,
//! remote) entries for every L4, for a protocol, or for an aligned block of ports, plus each
//! selected endpoint's default-deny marker. The kernel answers those with exact hash lookups
//! only, whose cost does not grow with the number of rules (an LPM trie's walk does):
//! - one summary per (direction, endpoint, remote) with the every-L4 entry and a mask of the
//!   levels below it that hold entries (so absent levels cost no lookup); the wildcard remote's
//!   summary also carries the marker, and exists for every endpoint with any entry, so a miss
//!   there ends the lookup;
//! - every port block widened to the next of four strides (the low 12, 8, 4 or 0 bits of the
//!   port free): at most 8 entries per block, 4 lookups at most per remote. Where widened
//!   blocks meet, the longer original prefix keeps the key, so the first hit from the most
//!   specific level down is the longest-prefix answer.

use std::collections::{BTreeMap, HashMap};

use super::compile::Entry;

/// Key levels (`POLICY_LVL_*` in `bpf/flow.bpf.c`).
const LVL_SUMMARY: u8 = 0;
const LVL_PROTO: u8 = 1;
/// Port levels by stride: (bits of the port fixed, level).
const STRIDES: [(u8, u8); 4] = [(4, 2), (8, 3), (12, 4), (16, 5)];

/// Prefix lengths of [`Entry`] (see `compile.rs`): the marker's, every L4's and a protocol's.
const MARKER_PREFIX: u32 = 64;
const L3_PREFIX: u32 = 96;
const PROTO_PREFIX: u32 = 104;

/// One entry of the policy hash, slot byte (key byte 0) left 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    pub key: [u8; 16],
    pub value: [u8; 16],
}

/// (direction, endpoint, remote) in the byte order of the key.
type Group = (u8, [u8; 4], [u8; 4]);

#[derive(Default)]
struct Summary {
    /// rule id, action, L4 kind of the every-L4 entry.
    l3: Option<([u8; 4], u8, u8)>,
    levels: u8,
    marker: [u8; 4],
}

fn key(g: Group, level: u8, proto: u8, port: u16) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[1] = g.0;
    k[2] = level;
    k[4..8].copy_from_slice(&g.1);
    k[8..12].copy_from_slice(&g.2);
    k[12] = proto;
    k[13..15].copy_from_slice(&port.to_be_bytes());
    k
}

fn value(rule_id: [u8; 4], action: u8, l4: u8, levels: u8, marker: [u8; 4]) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[0..4].copy_from_slice(&rule_id);
    v[4] = action;
    v[5] = l4;
    v[6] = levels;
    v[8..12].copy_from_slice(&marker);
    v
}

/// The hash entries of `entries`.
pub fn layout(entries: &[Entry]) -> Vec<MapEntry> {
    let mut groups: BTreeMap<Group, Summary> = BTreeMap::new();
    // (group, level, proto, port) → (original port prefix bits, rule id, action, L4 kind)
    let mut below: HashMap<(Group, u8, u8, u16), (u8, [u8; 4], u8, u8)> = HashMap::new();
    for e in entries {
        let k = &e.key;
        let g: Group = (k[1], [k[4], k[5], k[6], k[7]], [k[8], k[9], k[10], k[11]]);
        let rule = [e.value[0], e.value[1], e.value[2], e.value[3]];
        let (action, l4) = (e.value[4], e.value[5]);
        // The wildcard's summary of every endpoint with entries: its miss ends a lookup.
        groups.entry((g.0, g.1, [0; 4])).or_default();
        if e.prefix_len == MARKER_PREFIX {
            groups.entry((g.0, g.1, [0; 4])).or_default().marker = rule;
            continue;
        }
        let s = groups.entry(g).or_default();
        let proto = k[12];
        match e.prefix_len {
            L3_PREFIX => s.l3 = Some((rule, action, l4)),
            PROTO_PREFIX => {
                s.levels |= 1 << LVL_PROTO;
                below.insert((g, LVL_PROTO, proto, 0), (0, rule, action, l4));
            }
            p => {
                let bits = (p - PROTO_PREFIX).min(16) as u8;
                let start = u16::from_be_bytes([k[13], k[14]]);
                let &(stride, level) = STRIDES
                    .iter()
                    .find(|(s, _)| *s >= bits)
                    .expect("16 is the widest stride");
                s.levels |= 1 << level;
                let step = 1u32 << (16 - stride);
                for i in 0..(1u32 << (stride - bits)) {
                    let port = (u32::from(start) + i * step) as u16;
                    let slot = below
                        .entry((g, level, proto, port))
                        .or_insert((0, rule, action, l4));
                    // A longer original prefix is the more specific entry (LPM).
                    if bits >= slot.0 {
                        *slot = (bits, rule, action, l4);
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len() + below.len());
    for (g, s) in &groups {
        let (rule, action, l4) = s.l3.unwrap_or_default();
        out.push(MapEntry {
            key: key(*g, LVL_SUMMARY, 0, 0),
            value: value(rule, action, l4, s.levels, s.marker),
        });
    }
    for ((g, level, proto, port), (_, rule, action, l4)) in below {
        out.push(MapEntry {
            key: key(g, level, proto, port),
            value: value(rule, action, l4, 0, [0; 4]),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile::port_blocks;

    const DIR: u8 = 0;
    const EP: u32 = 300;
    const TCP: u8 = 6;

    /// An entry as `compile` encodes it: `l4` is None (every L4), Some((proto, None)) or
    /// Some((proto, Some((start, bits)))).
    fn entry(remote: u32, l4: Option<(u8, Option<(u16, u8)>)>, rule: u32, action: u8) -> Entry {
        let mut key = [0u8; 16];
        key[1] = DIR;
        key[4..8].copy_from_slice(&EP.to_ne_bytes());
        key[8..12].copy_from_slice(&remote.to_ne_bytes());
        let prefix_len = match l4 {
            None => L3_PREFIX,
            Some((proto, None)) => {
                key[12] = proto;
                PROTO_PREFIX
            }
            Some((proto, Some((start, bits)))) => {
                key[12] = proto;
                key[13..15].copy_from_slice(&start.to_be_bytes());
                PROTO_PREFIX + u32::from(bits)
            }
        };
        let mut value = [0u8; 8];
        value[0..4].copy_from_slice(&rule.to_ne_bytes());
        value[4] = action;
        Entry {
            prefix_len,
            key,
            value,
        }
    }

    /// The kernel's `policy_group`, over the laid-out entries: (rule id, marker) found.
    fn kernel(map: &HashMap<[u8; 16], [u8; 16]>, remote: u32, proto: u8, port: u16) -> (u32, u32) {
        let g = (DIR, EP.to_ne_bytes(), remote.to_ne_bytes());
        let Some(sum) = map.get(&key(g, LVL_SUMMARY, 0, 0)) else {
            return (0, 0);
        };
        let rule = |v: &[u8; 16]| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
        let marker = u32::from_ne_bytes([sum[8], sum[9], sum[10], sum[11]]);
        for &(stride, level) in STRIDES.iter().rev() {
            if sum[6] & (1 << level) != 0 {
                let p = (port >> (16 - stride)) << (16 - stride);
                if let Some(v) = map.get(&key(g, level, proto, p)) {
                    return (rule(v), marker);
                }
            }
        }
        if sum[6] & (1 << LVL_PROTO) != 0
            && let Some(v) = map.get(&key(g, LVL_PROTO, proto, 0))
        {
            return (rule(v), marker);
        }
        (if sum[4] != 0 { rule(sum) } else { 0 }, marker)
    }

    /// The longest-prefix match over the compiled entries (what the LPM trie answered).
    fn lpm(entries: &[Entry], remote: u32, proto: u8, port: u16) -> u32 {
        entries
            .iter()
            .filter(|e| e.key[8..12] == remote.to_ne_bytes() && e.prefix_len >= L3_PREFIX)
            .filter(|e| {
                e.prefix_len == L3_PREFIX
                    || (e.key[12] == proto && {
                        let bits = e.prefix_len - PROTO_PREFIX;
                        let start = u16::from_be_bytes([e.key[13], e.key[14]]);
                        bits == 0 || (port >> (16 - bits)) == (start >> (16 - bits))
                    })
            })
            .max_by_key(|e| e.prefix_len)
            .map_or(0, Entry::rule_id)
    }

    fn map_of(entries: &[Entry]) -> HashMap<[u8; 16], [u8; 16]> {
        let laid = layout(entries);
        let map: HashMap<_, _> = laid.iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(map.len(), laid.len(), "no key twice");
        map
    }

    #[test]
    fn a_range_expands_to_exact_ports_and_the_summary_names_its_level() {
        let entries: Vec<Entry> = port_blocks(1000, 1004)
            .into_iter()
            .map(|b| entry(7, Some((TCP, Some(b))), 1, 1))
            .collect();
        let map = map_of(&entries);
        // 5 ports, the group's summary and the wildcard's.
        assert_eq!(map.len(), 7);
        for port in 990..1010 {
            let want = if (1000..=1004).contains(&port) { 1 } else { 0 };
            assert_eq!(kernel(&map, 7, TCP, port).0, want, "port {port}");
        }
    }

    #[test]
    fn wide_ranges_stay_small_and_the_wildcard_summary_carries_the_marker() {
        let mut entries: Vec<Entry> = port_blocks(1, 65535)
            .into_iter()
            .map(|b| entry(0, Some((TCP, Some(b))), 2, 1))
            .collect();
        let mut marker = entry(0, None, 9, 3);
        marker.prefix_len = MARKER_PREFIX;
        entries.push(marker);
        let map = map_of(&entries);
        assert!(map.len() < 80, "{} entries for 1-65535", map.len());
        assert_eq!(kernel(&map, 0, TCP, 0), (0, 9));
        assert_eq!(kernel(&map, 0, TCP, 1), (2, 9));
        assert_eq!(kernel(&map, 0, TCP, 65535), (2, 9));
        assert_eq!(kernel(&map, 0, 17, 80), (0, 9));
        // An endpoint with entries for a remote only still has the wildcard's summary.
        let map = map_of(&[entry(5, Some((TCP, Some((80, 16)))), 3, 1)]);
        assert_eq!(kernel(&map, 0, TCP, 80), (0, 0));
        assert!(map.contains_key(&key((DIR, EP.to_ne_bytes(), [0; 4]), LVL_SUMMARY, 0, 0)));
    }

    /// Random overlapping ranges, protocol and every-L4 entries: every port's answer after
    /// the layout is the longest-prefix answer before it.
    #[test]
    fn the_first_hit_from_the_most_specific_level_is_the_longest_prefix_match() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let mut entries = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut rule = 1;
            for _ in 0..(1 + next() % 8) {
                let remote = (next() % 2) as u32 * 40;
                let proto = if next() % 4 == 0 { 17 } else { TCP };
                let kind = next() % 10;
                let l4s: Vec<Option<(u8, Option<(u16, u8)>)>> = match kind {
                    0 => vec![None],
                    1 => vec![Some((proto, None))],
                    _ => {
                        // Narrow ranges near each other, and now and then a wide one.
                        let width = if kind == 2 {
                            next() % 40000
                        } else {
                            next() % 700
                        };
                        let lo = (1 + next() % 3000) as u16;
                        let hi = (u64::from(lo) + width).min(65535) as u16;
                        port_blocks(lo, hi)
                            .into_iter()
                            .map(|b| Some((proto, Some(b))))
                            .collect()
                    }
                };
                for l4 in l4s {
                    // compile emits each (remote, L4 prefix) once.
                    if seen.insert((remote, l4)) {
                        entries.push(entry(remote, l4, rule, 1 + (next() % 2) as u8));
                    }
                }
                rule += 1;
            }
            let map = map_of(&entries);
            for _ in 0..400 {
                let port = if next() % 2 == 0 {
                    (next() % 4000) as u16
                } else {
                    next() as u16
                };
                for remote in [0, 40] {
                    for proto in [TCP, 17] {
                        assert_eq!(
                            kernel(&map, remote, proto, port).0,
                            lpm(&entries, remote, proto, port),
                            "round {round}, remote {remote}, proto {proto}, port {port}"
                        );
                    }
                }
            }
        }
    }
}
