//! Connection → trace id of its latest traced HTTP exchange, so that a later drop or policy
//! verdict on the same connection can carry an exemplar. Bounded (LRU) and time-limited.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use lru::LruCache;
use webb_proto::flow::{Flow, layer4};

use super::family::TraceLabel;

/// Node + transport 5-tuple, with the two ends in canonical order so that both directions of
/// a connection find the same entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    node: CompactString,
    proto: u8,
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl ConnKey {
    pub(crate) fn of(flow: &Flow) -> Option<Self> {
        let ip = flow.ip.as_ref()?;
        let (proto, sport, dport) = match flow.l4.as_ref()?.protocol.as_ref()? {
            layer4::Protocol::Tcp(t) => (6u8, t.source_port, t.destination_port),
            layer4::Protocol::Udp(u) => (17, u.source_port, u.destination_port),
            layer4::Protocol::Sctp(s) => (132, s.source_port, s.destination_port),
            _ => return None,
        };
        let a = (ip.source.parse().ok()?, u16::try_from(sport).ok()?);
        let b = (ip.destination.parse().ok()?, u16::try_from(dport).ok()?);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Some(Self {
            node: CompactString::from(flow.node_name.as_str()),
            proto,
            lo,
            hi,
        })
    }
}

pub(crate) struct TraceMap {
    map: Mutex<LruCache<ConnKey, (TraceLabel, Instant)>>,
    ttl: Duration,
    /// Entries pushed out because the map was full.
    pub(crate) evicted_capacity: AtomicU64,
    /// Entries found older than the TTL and dropped.
    pub(crate) evicted_expired: AtomicU64,
}

impl TraceMap {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            map: Mutex::new(LruCache::new(cap)),
            ttl,
            evicted_capacity: AtomicU64::new(0),
            evicted_expired: AtomicU64::new(0),
        }
    }

    pub(crate) fn remember(&self, key: ConnKey, trace: TraceLabel, now: Instant) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((old, _)) = m.push(key.clone(), (trace, now))
            && old != key
        {
            self.evicted_capacity.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn lookup(&self, key: &ConnKey, now: Instant) -> Option<TraceLabel> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (trace, at) = m.get(key)?;
        if now.saturating_duration_since(*at) > self.ttl {
            m.pop(key);
            self.evicted_expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(trace.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
