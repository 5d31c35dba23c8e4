//! Security identities and labels, as Cilium defines them (Hubble's tools and policies rely on
//! both): reserved identities below 256, endpoint identities from 256, labels carrying their
//! source prefix.

use std::collections::{BTreeMap, BTreeSet};

/// Cilium's reserved identity of the local host.
pub const IDENTITY_HOST: u32 = 1;
/// Cilium's reserved identity of every address outside the cluster.
pub const IDENTITY_WORLD: u32 = 2;
/// Cilium's reserved identity of the other nodes of the cluster.
pub const IDENTITY_REMOTE_NODE: u32 = 6;
/// First identity given to endpoints (Cilium reserves the numbers below it).
pub const MIN_ENDPOINT_IDENTITY: u32 = 256;
/// Cluster name carried in every endpoint's `io.cilium.k8s.policy.cluster` label.
pub const CLUSTER_NAME: &str = "default";

pub const LABEL_HOST: &str = "reserved:host";
pub const LABEL_WORLD: &str = "reserved:world";
pub const LABEL_REMOTE_NODE: &str = "reserved:remote-node";

/// Cilium-style labels of a pod: every user label under the `k8s:` source (unless it already
/// names a source), plus the namespace and cluster labels; sorted and de-duplicated.
pub fn cilium_labels(namespace: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: BTreeSet<String> = labels
        .iter()
        .map(|(k, v)| {
            if k.contains(':') {
                format!("{k}={v}")
            } else {
                format!("k8s:{k}={v}")
            }
        })
        .collect();
    out.insert(format!("k8s:io.kubernetes.pod.namespace={namespace}"));
    out.insert(format!("k8s:io.cilium.k8s.policy.cluster={CLUSTER_NAME}"));
    out.into_iter().collect()
}

/// Labels Cilium gives a reserved identity, if `identity` is one Webb uses.
pub fn reserved_labels(identity: u32) -> Option<&'static str> {
    match identity {
        IDENTITY_HOST => Some(LABEL_HOST),
        IDENTITY_WORLD => Some(LABEL_WORLD),
        IDENTITY_REMOTE_NODE => Some(LABEL_REMOTE_NODE),
        _ => None,
    }
}

/// Identity numbers handed out from the range `base .. base + cap`, at most `cap` in use at
/// once. A released number goes to the back of a queue and is handed out again only once every
/// number of the range has been used, oldest-released first: the longer a number rests, the
/// fewer records still in flight (or flows still being decoded) carry its previous owner.
#[derive(Debug, Clone)]
pub struct IdentityPool {
    base: u32,
    cap: u32,
    /// Offsets below this were handed out at least once.
    fresh: u32,
    free: std::collections::VecDeque<u32>,
}

impl IdentityPool {
    /// A pool of `cap` numbers from `base` (`cap` is cut to what fits in a `u32` above `base`).
    pub fn new(base: u32, cap: usize) -> Self {
        let cap = u32::try_from(cap).unwrap_or(u32::MAX).min(u32::MAX - base);
        IdentityPool {
            base,
            cap,
            fresh: 0,
            free: std::collections::VecDeque::new(),
        }
    }

    /// A number nobody holds, or `None` when all `cap` are in use.
    pub fn allocate(&mut self) -> Option<u32> {
        if self.fresh < self.cap {
            self.fresh += 1;
            return Some(self.base + self.fresh - 1);
        }
        self.free.pop_front()
    }

    /// Gives `id` back (it must have come from [`IdentityPool::allocate`] and be held).
    pub fn release(&mut self, id: u32) {
        debug_assert!(id >= self.base && id - self.base < self.fresh);
        debug_assert!(!self.free.contains(&id));
        self.free.push_back(id);
    }

    /// Numbers held now.
    pub fn in_use(&self) -> usize {
        (self.fresh as usize) - self.free.len()
    }

    /// Numbers the pool can hand out at once.
    pub fn cap(&self) -> usize {
        self.cap as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_hands_out_every_number_once_before_reusing_the_oldest_released() {
        let mut p = IdentityPool::new(1000, 3);
        assert_eq!(
            [p.allocate(), p.allocate(), p.allocate()],
            [Some(1000), Some(1001), Some(1002)]
        );
        assert_eq!(p.allocate(), None, "all three in use");
        assert_eq!(p.in_use(), 3);
        p.release(1001);
        p.release(1000);
        assert_eq!(p.in_use(), 1);
        assert_eq!(p.allocate(), Some(1001), "released first, reused first");
        assert_eq!(p.allocate(), Some(1000));
        assert_eq!(p.allocate(), None);

        let mut q = IdentityPool::new(1000, 3);
        let a = q.allocate().unwrap();
        q.release(a);
        assert_eq!(
            q.allocate(),
            Some(1001),
            "a fresh number before a released one"
        );
    }
}
