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
//!   specific level down is the longest-prefix answer;
//! - the wildcard's entries merged into each remote's group (within [`MERGE_BUDGET`]), with
//!   the precedence the kernel would apply between the two, so a remote with entries of its own
//!   costs one group's lookups, not two;
//! - in each summary, the span of ports its group's port entries cover: a port outside it
//!   skips their levels (an any-port rule beside port rules of the same peer costs no miss).

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
type Group3 = (u8, [u8; 4], [u8; 4]);

fn key(g: Group3, level: u8, proto: u8, port: u16) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[1] = g.0;
    k[2] = level;
    k[4..8].copy_from_slice(&g.1);
    k[8..12].copy_from_slice(&g.2);
    k[12] = proto;
    k[13..15].copy_from_slice(&port.to_be_bytes());
    k
}

fn value(rule_id: [u8; 4], action: u8, l4: u8, levels: u8, flags: u8, marker: [u8; 4]) -> [u8; 16] {
    let mut v = [0u8; 16];
    // Port span of a summary: none unless `span` sets it.
    v[12..14].copy_from_slice(&u16::MAX.to_ne_bytes());
    v[0..4].copy_from_slice(&rule_id);
    v[4] = action;
    v[5] = l4;
    v[6] = levels;
    v[7] = flags;
    v[8..12].copy_from_slice(&marker);
    v
}

/// A summary with the span of `g`'s port entries (the kernel skips their levels outside it).
fn span(mut v: [u8; 16], groups: &[&Group]) -> [u8; 16] {
    let (mut lo, mut hi) = (u16::MAX, 0u16);
    for g in groups {
        for &(level, _, port) in g.below.keys() {
            if let Some(&(stride, _)) = STRIDES.iter().find(|(_, l)| *l == level) {
                lo = lo.min(port);
                hi = hi.max(port | (0xffff_u32 >> stride) as u16);
            }
        }
    }
    if lo <= hi {
        v[12..14].copy_from_slice(&lo.to_ne_bytes());
        v[14..16].copy_from_slice(&hi.to_ne_bytes());
    }
    v
}

/// An entry's answer: rule id, action, L4 kind.
type Answer = ([u8; 4], u8, u8);

/// Summary and entry flags (`POLICY_F_*` in `bpf/flow.bpf.c`).
const F_WILD: u8 = 1;
const F_MERGED: u8 = 2;

/// Wildcard entries copied into the remotes' groups of one (direction, endpoint) at most;
/// past it the kernel looks both groups up.
pub const MERGE_BUDGET: usize = 16384;

/// One (direction, endpoint, remote)'s entries, port blocks widened to their stride.
#[derive(Default)]
struct Group {
    l3: Option<Answer>,
    levels: u8,
    /// (level, proto, port) → (original port prefix bits, answer)
    below: HashMap<(u8, u8, u16), (u8, Answer)>,
}

impl Group {
    fn add(&mut self, prefix_len: u32, proto: u8, start: u16, a: Answer) {
        match prefix_len {
            L3_PREFIX => self.l3 = Some(a),
            PROTO_PREFIX => {
                self.levels |= 1 << LVL_PROTO;
                self.below.insert((LVL_PROTO, proto, 0), (0, a));
            }
            p => {
                let bits = (p - PROTO_PREFIX).min(16) as u8;
                let &(stride, level) = STRIDES
                    .iter()
                    .find(|(s, _)| *s >= bits)
                    .expect("16 is the widest stride");
                self.levels |= 1 << level;
                let step = 1u32 << (16 - stride);
                for i in 0..(1u32 << (stride - bits)) {
                    let port = (u32::from(start) + i * step) as u16;
                    let slot = self.below.entry((level, proto, port)).or_insert((bits, a));
                    // A longer original prefix is the more specific entry (LPM).
                    if bits >= slot.0 {
                        *slot = (bits, a);
                    }
                }
            }
        }
    }

    /// The most specific entry covering the key (level, proto, port): what the kernel's first
    /// hit from the most specific level down answers for the ports under that key.
    fn lpm(&self, level: u8, proto: u8, port: u16) -> Option<Answer> {
        for &(stride, lvl) in STRIDES.iter().rev() {
            if lvl <= level {
                let p = (port >> (16 - stride)) << (16 - stride);
                if let Some((_, a)) = self.below.get(&(lvl, proto, p)) {
                    return Some(*a);
                }
            }
        }
        if level >= LVL_PROTO
            && let Some((_, a)) = self.below.get(&(LVL_PROTO, proto, 0))
        {
            return Some(*a);
        }
        self.l3
    }
}

/// The kernel's precedence between the remote's answer and the wildcard's: a deny from either,
/// then the more specific allow (the remote's on a tie). The flag says it is the wildcard's.
fn combine(r: Option<Answer>, w: Option<Answer>) -> Option<(Answer, u8)> {
    const ALLOW: u8 = 1;
    const DENY: u8 = 2;
    match (r, w) {
        (Some(r), _) if r.1 == DENY => Some((r, 0)),
        (_, Some(w)) if w.1 == DENY => Some((w, F_WILD)),
        (Some(r), Some(w)) if r.1 == ALLOW && w.1 == ALLOW => {
            Some(if r.2 >= w.2 { (r, 0) } else { (w, F_WILD) })
        }
        (Some(r), _) if r.1 == ALLOW => Some((r, 0)),
        (_, Some(w)) if w.1 == ALLOW => Some((w, F_WILD)),
        _ => None,
    }
}

/// All groups of one (direction, endpoint).
#[derive(Default)]
struct Endpoint {
    marker: [u8; 4],
    wild: Group,
    remotes: BTreeMap<[u8; 4], Group>,
}

/// The hash entries of `entries`.
///
/// The wildcard's entries are also merged into each remote's group (with the precedence the
/// kernel would apply, the endpoint's marker in the summary), within [`MERGE_BUDGET`], so a
/// remote with entries of its own is answered by its group alone.
pub fn layout(entries: &[Entry]) -> Vec<MapEntry> {
    layout_within(entries, MERGE_BUDGET)
}

fn layout_within(entries: &[Entry], budget: usize) -> Vec<MapEntry> {
    let mut eps: BTreeMap<(u8, [u8; 4]), Endpoint> = BTreeMap::new();
    for e in entries {
        let k = &e.key;
        let ep = eps.entry((k[1], [k[4], k[5], k[6], k[7]])).or_default();
        let rule = [e.value[0], e.value[1], e.value[2], e.value[3]];
        if e.prefix_len == MARKER_PREFIX {
            ep.marker = rule;
            continue;
        }
        let remote = [k[8], k[9], k[10], k[11]];
        let g = if remote == [0; 4] {
            &mut ep.wild
        } else {
            ep.remotes.entry(remote).or_default()
        };
        let start = u16::from_be_bytes([k[13], k[14]]);
        g.add(e.prefix_len, k[12], start, (rule, e.value[4], e.value[5]));
    }
    let mut out = Vec::new();
    let mut push = |g: Group3, level: u8, proto: u8, port: u16, v: [u8; 16]| {
        out.push(MapEntry {
            key: key(g, level, proto, port),
            value: v,
        })
    };
    for ((dir, ep_id), ep) in &eps {
        // The wildcard's summary of every endpoint with entries: its miss ends a lookup.
        let wg: Group3 = (*dir, *ep_id, [0; 4]);
        let (rule, action, l4) = ep.wild.l3.unwrap_or_default();
        push(
            wg,
            LVL_SUMMARY,
            0,
            0,
            span(
                value(rule, action, l4, ep.wild.levels, 0, ep.marker),
                &[&ep.wild],
            ),
        );
        for (&(level, proto, port), &(_, (rule, action, l4))) in &ep.wild.below {
            push(
                wg,
                level,
                proto,
                port,
                value(rule, action, l4, 0, 0, [0; 4]),
            );
        }
        let merge = ep.wild.below.len() * ep.remotes.len() <= budget;
        for (remote, r) in &ep.remotes {
            let rg: Group3 = (*dir, *ep_id, *remote);
            if !merge {
                let (rule, action, l4) = r.l3.unwrap_or_default();
                push(
                    rg,
                    LVL_SUMMARY,
                    0,
                    0,
                    span(value(rule, action, l4, r.levels, 0, [0; 4]), &[r]),
                );
                for (&(level, proto, port), &(_, (rule, action, l4))) in &r.below {
                    push(
                        rg,
                        level,
                        proto,
                        port,
                        value(rule, action, l4, 0, 0, [0; 4]),
                    );
                }
                continue;
            }
            let ((rule, action, l4), flags) = combine(r.l3, ep.wild.l3).unwrap_or_default();
            let levels = r.levels | ep.wild.levels;
            push(
                rg,
                LVL_SUMMARY,
                0,
                0,
                span(
                    value(rule, action, l4, levels, flags | F_MERGED, ep.marker),
                    &[r, &ep.wild],
                ),
            );
            let keys: BTreeSet<(u8, u8, u16)> = r
                .below
                .keys()
                .chain(ep.wild.below.keys())
                .copied()
                .collect();
            for (level, proto, port) in keys {
                let a = combine(r.lpm(level, proto, port), ep.wild.lpm(level, proto, port));
                let ((rule, action, l4), flags) = a.unwrap_or_default();
                push(
                    rg,
                    level,
                    proto,
                    port,
                    value(rule, action, l4, 0, flags, [0; 4]),
                );
            }
        }
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
    const ALLOW: u8 = 1;
    const MARKER: u32 = 999;

    /// An entry as `compile` encodes it: `l4` is None (every L4), Some((proto, None)) or
    /// Some((proto, Some((start, bits)))).
    /// The L4 part of a test entry (see [`entry`]).
    type L4 = Option<(u8, Option<(u16, u8)>)>;

    fn entry(remote: u32, l4: L4, rule: u32, action: u8) -> Entry {
        let mut key = [0u8; 16];
        key[1] = DIR;
        key[4..8].copy_from_slice(&EP.to_ne_bytes());
        key[8..12].copy_from_slice(&remote.to_ne_bytes());
        let (prefix_len, kind) = match l4 {
            None => (L3_PREFIX, 0),
            Some((proto, None)) => {
                key[12] = proto;
                (PROTO_PREFIX, 1)
            }
            Some((proto, Some((start, bits)))) => {
                key[12] = proto;
                key[13..15].copy_from_slice(&start.to_be_bytes());
                (PROTO_PREFIX + u32::from(bits), 2)
            }
        };
        let mut value = [0u8; 8];
        value[0..4].copy_from_slice(&rule.to_ne_bytes());
        value[4] = action;
        value[5] = kind;
        Entry {
            prefix_len,
            key,
            value,
        }
    }

    fn marker() -> Entry {
        let mut m = entry(0, None, MARKER, 3);
        m.prefix_len = MARKER_PREFIX;
        m
    }

    type Map = HashMap<[u8; 16], [u8; 16]>;

    /// The kernel's `policy_group`: (summary, first hit).
    fn group(map: &Map, remote: u32, proto: u8, port: u16) -> Option<([u8; 16], Option<[u8; 16]>)> {
        let g = (DIR, EP.to_ne_bytes(), remote.to_ne_bytes());
        let sum = *map.get(&key(g, LVL_SUMMARY, 0, 0))?;
        let (lo, hi) = (
            u16::from_ne_bytes([sum[12], sum[13]]),
            u16::from_ne_bytes([sum[14], sum[15]]),
        );
        let levels = if port < lo || port > hi {
            sum[6] & (1 << LVL_PROTO)
        } else {
            sum[6]
        };
        for &(stride, level) in STRIDES.iter().rev() {
            if levels & (1 << level) != 0 {
                let p = (port >> (16 - stride)) << (16 - stride);
                if let Some(v) = map.get(&key(g, level, proto, p)) {
                    return Some((sum, Some(*v)));
                }
            }
        }
        if levels & (1 << LVL_PROTO) != 0
            && let Some(v) = map.get(&key(g, LVL_PROTO, proto, 0))
        {
            return Some((sum, Some(*v)));
        }
        Some((sum, (sum[4] != 0).then_some(sum)))
    }

    /// What the verdict names: the rule id and whether it is the wildcard's; the marker for
    /// default deny; 0 when nothing selects the endpoint.
    fn rule(v: &[u8; 16]) -> u32 {
        u32::from_ne_bytes([v[0], v[1], v[2], v[3]])
    }

    /// The kernel's `webb_policy_verdict` over the laid-out map.
    fn kernel(map: &Map, remote: u32, proto: u8, port: u16) -> (u32, bool) {
        let r = group(map, remote, proto, port);
        if let Some((sum, hit)) = r
            && sum[7] & F_MERGED != 0
        {
            return match hit {
                Some(v) if v[4] != 0 => (rule(&v), v[7] & F_WILD != 0),
                _ => (
                    rule(&[
                        sum[8], sum[9], sum[10], sum[11], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ]),
                    false,
                ),
            };
        }
        let Some((wsum, w)) = group(map, 0, proto, port) else {
            return (0, false);
        };
        let ans = |v: Option<[u8; 16]>| v.map(|v| ([v[0], v[1], v[2], v[3]], v[4], v[5]));
        match combine(ans(r.and_then(|r| r.1)), ans(w)) {
            Some(((id, _, _), flags)) => (u32::from_ne_bytes(id), flags & F_WILD != 0),
            None => (
                u32::from_ne_bytes([wsum[8], wsum[9], wsum[10], wsum[11]]),
                false,
            ),
        }
    }

    /// The longest-prefix match over the compiled entries of one remote (the LPM trie's).
    fn lpm(entries: &[Entry], remote: u32, proto: u8, port: u16) -> Option<Answer> {
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
            .map(|e| (e.rule_id().to_ne_bytes(), e.value[4], e.value[5]))
    }

    /// The verdict as the LPM trie answered it before the layout.
    fn reference(entries: &[Entry], remote: u32, proto: u8, port: u16) -> (u32, bool) {
        let selected = entries.iter().any(|e| e.prefix_len == MARKER_PREFIX);
        match combine(
            lpm(entries, remote, proto, port),
            lpm(entries, 0, proto, port),
        ) {
            Some(((id, _, _), flags)) => (u32::from_ne_bytes(id), flags & F_WILD != 0),
            None => (if selected { MARKER } else { 0 }, false),
        }
    }

    fn map_of(entries: &[Entry]) -> Map {
        map_within(entries, MERGE_BUDGET)
    }

    fn map_within(entries: &[Entry], budget: usize) -> Map {
        let laid = layout_within(entries, budget);
        let map: Map = laid.iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(map.len(), laid.len(), "no key twice");
        map
    }

    #[test]
    fn a_range_expands_to_exact_ports_and_the_summary_names_its_level() {
        let mut entries: Vec<Entry> = port_blocks(1000, 1004)
            .into_iter()
            .map(|b| entry(7, Some((TCP, Some(b))), 1, ALLOW))
            .collect();
        entries.push(marker());
        let map = map_of(&entries);
        // 5 ports, the group's summary and the wildcard's.
        assert_eq!(map.len(), 7);
        for port in 990..1010 {
            let want = if (1000..=1004).contains(&port) {
                1
            } else {
                MARKER
            };
            assert_eq!(kernel(&map, 7, TCP, port), (want, false), "port {port}");
        }
    }

    #[test]
    fn wide_ranges_stay_small_and_the_wildcard_summary_carries_the_marker() {
        let mut entries: Vec<Entry> = port_blocks(1, 65535)
            .into_iter()
            .map(|b| entry(0, Some((TCP, Some(b))), 2, ALLOW))
            .collect();
        entries.push(marker());
        let map = map_of(&entries);
        assert!(map.len() < 80, "{} entries for 1-65535", map.len());
        assert_eq!(kernel(&map, 5, TCP, 0), (MARKER, false));
        assert_eq!(kernel(&map, 5, TCP, 1), (2, true));
        assert_eq!(kernel(&map, 5, TCP, 65535), (2, true));
        assert_eq!(kernel(&map, 5, 17, 80), (MARKER, false));
        // An endpoint with entries for a remote only still has the wildcard's summary.
        let map = map_of(&[entry(5, Some((TCP, Some((80, 16)))), 3, ALLOW)]);
        assert!(map.contains_key(&key((DIR, EP.to_ne_bytes(), [0; 4]), LVL_SUMMARY, 0, 0)));
        assert_eq!(kernel(&map, 5, TCP, 80), (3, false));
        assert_eq!(kernel(&map, 6, TCP, 80), (0, false));
    }

    /// Random overlapping ranges, protocol and every-L4 entries, allows and denies, for a
    /// remote and the wildcard, merged or not: every port's verdict after the layout is the
    /// one the longest-prefix lookups of both gave before it.
    #[test]
    fn the_layout_answers_every_port_as_the_longest_prefix_lookups_did() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let mut entries = Vec::new();
            let mut seen = std::collections::HashSet::new();
            if next() % 2 == 0 {
                entries.push(marker());
            }
            for rule in 1..=(1 + next() % 8) as u32 {
                let remote = (next() % 2) as u32 * 40;
                let proto = if next() % 4 == 0 { 17 } else { TCP };
                let kind = next() % 10;
                let l4s: Vec<L4> = match kind {
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
                let action = 1 + (next() % 2) as u8;
                for l4 in l4s {
                    // compile emits each (remote, L4 prefix) once.
                    if seen.insert((remote, l4)) {
                        entries.push(entry(remote, l4, rule, action));
                    }
                }
            }
            let merged = map_of(&entries);
            // Budget 0: merged only where the wildcard has nothing below its summary.
            let apart = map_within(&entries, 0);
            for _ in 0..300 {
                let port = if next() % 2 == 0 {
                    (next() % 4000) as u16
                } else {
                    next() as u16
                };
                for remote in [40, 41] {
                    for proto in [TCP, 17] {
                        let want = reference(&entries, remote, proto, port);
                        for map in [&merged, &apart] {
                            assert_eq!(
                                kernel(map, remote, proto, port),
                                want,
                                "round {round}, remote {remote}, proto {proto}, port {port}"
                            );
                        }
                    }
                }
            }
        }
    }
}
