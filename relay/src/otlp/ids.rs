//! Span and trace ids without a random-number dependency: SplitMix64 over a counter with a
//! per-process random start. Its output function is a bijection of its state and the state
//! steps by an odd constant, so no two ids of one process repeat before 2^64 of them.

use std::hash::BuildHasher;

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug, Clone)]
pub(crate) struct IdGen {
    state: u64,
}

impl IdGen {
    /// Seeded from the standard library's per-process random hasher keys, so two relays (or
    /// two runs) do not produce the same ids.
    pub(crate) fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed =
            std::collections::hash_map::RandomState::new().hash_one((std::process::id(), now));
        IdGen { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A span id; never all-zero (which OTLP calls invalid).
    pub(crate) fn span_id(&mut self) -> [u8; 8] {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v.to_be_bytes();
            }
        }
    }

    /// A trace id for a new root span; never all-zero.
    pub(crate) fn trace_id(&mut self) -> [u8; 16] {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&hi.to_be_bytes());
        id[8..].copy_from_slice(&lo.to_be_bytes());
        if id == [0; 16] {
            id[15] = 1;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_ids_do_not_repeat_and_are_never_zero() {
        let mut ids = IdGen::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let id = ids.span_id();
            assert_ne!(id, [0; 8]);
            assert!(seen.insert(id), "repeated span id");
        }
    }

    #[test]
    fn two_generators_start_apart() {
        let (mut a, mut b) = (IdGen::new(), IdGen::new());
        assert_ne!(a.trace_id(), b.trace_id());
    }
}
