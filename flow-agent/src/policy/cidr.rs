//! Identities of CIDRs: the prefixes policies name, kept for the agent's life so a reload
//! never renumbers an address that connections already cached, and the host prefixes of
//! addresses learned from DNS answers (`toFQDNs`), which come and go with their answers' TTLs.
//!
//! All of them share one [`IdentityPool`] (Cilium's node-local identity scope, from
//! [`CIDR_IDENTITY_BASE`]). A learned host no policy names gives its identity back when it is no
//! longer learned; the number is handed out again only after every other number of the pool
//! (see [`IdentityPool`]). When every identity is held by a live address, a new address is
//! refused (counted once) and waits, never given a number someone still holds: it gets one as
//! soon as one frees up while it is still learned.
//!
//! A released number may still sit in the kernel's conntrack entries of connections to its
//! old address: the datapath looks both ends up again whenever the policy revision changed
//! since a connection's verdict, and every release comes with a new revision.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::compile::{CIDR_IDENTITY_BASE, CompileError, MAX_CIDR_IDENTITIES};
use crate::identity::IdentityPool;

/// Identities of the CIDRs policies name and of the hosts learned for `toFQDNs`.
#[derive(Debug, Clone)]
pub struct CidrIdentities {
    by_prefix: BTreeMap<IpNet, u32>,
    by_id: HashMap<u32, IpNet>,
    /// Prefixes some policy named (kept for the agent's life).
    policy: BTreeSet<IpNet>,
    /// Names DNS answers gave for single addresses (`toFQDNs`), by their host prefix.
    fqdn: BTreeMap<IpNet, BTreeSet<String>>,
    /// Learned hosts refused an identity, waiting for one.
    waiting: BTreeSet<IpNet>,
    pool: IdentityPool,
    released: u64,
    refused: u64,
}

impl Default for CidrIdentities {
    fn default() -> Self {
        Self::with_capacity(MAX_CIDR_IDENTITIES)
    }
}

/// What [`CidrIdentities::set_fqdn`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FqdnUpdate {
    /// Some address got a new identity.
    pub added: bool,
    /// Host prefixes that gave their identity back (no longer learned, named by no policy).
    pub released: Vec<(IpNet, u32)>,
    /// Learned addresses newly left without an identity: every identity was in use. They wait
    /// (see [`FqdnIdentityStats::waiting`]) and are not reported again while they do.
    pub refused: Vec<IpAddr>,
}

/// How the identities of learned addresses stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FqdnIdentityStats {
    /// Learned host prefixes holding an identity now.
    pub live: usize,
    /// CIDR identities in use (policies' prefixes included) and how many may be at once.
    pub in_use: usize,
    pub cap: usize,
    /// Identities learned addresses gave back, in total.
    pub released: u64,
    /// Learned addresses refused an identity because all were in use, in total.
    pub refused: u64,
    /// Learned addresses refused an identity that wait for one now.
    pub waiting: usize,
}

impl CidrIdentities {
    /// At most `cap` CIDR identities in use at once.
    pub fn with_capacity(cap: usize) -> Self {
        CidrIdentities {
            by_prefix: BTreeMap::new(),
            by_id: HashMap::new(),
            policy: BTreeSet::new(),
            fqdn: BTreeMap::new(),
            waiting: BTreeSet::new(),
            pool: IdentityPool::new(CIDR_IDENTITY_BASE, cap),
            released: 0,
            refused: 0,
        }
    }

    fn allocate(&mut self, net: IpNet) -> Option<u32> {
        let id = self.pool.allocate()?;
        self.by_prefix.insert(net, id);
        self.by_id.insert(id, net);
        Some(id)
    }

    /// Gives every new prefix a policy names an identity (kept for the agent's life); true if
    /// any was new. Fails when the identities would run out.
    pub fn ensure(&mut self, nets: impl IntoIterator<Item = IpNet>) -> Result<bool, CompileError> {
        let mut added = false;
        for n in nets {
            let n = n.trunc();
            self.policy.insert(n);
            if !self.by_prefix.contains_key(&n) {
                if self.allocate(n).is_none() {
                    return Err(CompileError::TooManyCidrs(self.pool.in_use() + 1));
                }
                added = true;
            }
        }
        Ok(added)
    }

    /// Makes `learned` (address → names from DNS answers) the addresses `toFQDNs` selectors
    /// see, each with an identity of its own host prefix. Hosts no longer learned give their
    /// identities back first (unless a policy names the prefix), then new hosts take one while
    /// any is free; the rest wait, left out of the policy (each reported once, when refused).
    pub fn set_fqdn(&mut self, learned: BTreeMap<IpAddr, BTreeSet<String>>) -> FqdnUpdate {
        let wanted: BTreeMap<IpNet, BTreeSet<String>> = learned
            .into_iter()
            .map(|(ip, names)| (IpNet::from(ip), names))
            .collect();
        let mut up = FqdnUpdate::default();
        for net in self.fqdn.keys() {
            if wanted.contains_key(net) || self.policy.contains(net) {
                continue;
            }
            if let Some(id) = self.by_prefix.remove(net) {
                self.by_id.remove(&id);
                self.pool.release(id);
                up.released.push((*net, id));
            }
        }
        self.released += up.released.len() as u64;
        let mut fqdn = BTreeMap::new();
        self.waiting.retain(|n| wanted.contains_key(n));
        for (net, names) in wanted {
            if !self.by_prefix.contains_key(&net) {
                if self.allocate(net).is_none() {
                    if self.waiting.insert(net) {
                        up.refused.push(net.addr());
                    }
                    continue;
                }
                self.waiting.remove(&net);
                up.added = true;
            }
            fqdn.insert(net, names);
        }
        self.refused += up.refused.len() as u64;
        self.fqdn = fqdn;
        up
    }

    /// Names DNS answers gave for the host prefix `net` (empty for other prefixes).
    pub fn fqdn_names(&self, net: &IpNet) -> impl Iterator<Item = &str> {
        self.fqdn
            .get(net)
            .into_iter()
            .flat_map(|n| n.iter().map(String::as_str))
    }

    /// Prefix → identity, for the ipcache.
    pub fn entries(&self) -> Vec<(IpNet, u32)> {
        self.by_prefix.iter().map(|(n, i)| (*n, *i)).collect()
    }

    pub fn get(&self, net: &IpNet) -> Option<u32> {
        self.by_prefix.get(&net.trunc()).copied()
    }

    /// Labels of a CIDR identity, as Cilium gives them.
    pub fn labels(&self, identity: u32) -> Option<Vec<String>> {
        self.by_id
            .get(&identity)
            .map(|n| vec![format!("cidr:{n}"), "reserved:world".to_string()])
    }

    pub fn fqdn_stats(&self) -> FqdnIdentityStats {
        FqdnIdentityStats {
            live: self.fqdn.len(),
            in_use: self.pool.in_use(),
            cap: self.pool.cap(),
            released: self.released,
            refused: self.refused,
            waiting: self.waiting.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(ips: &[&str]) -> BTreeMap<IpAddr, BTreeSet<String>> {
        ips.iter()
            .map(|ip| {
                (
                    ip.parse().unwrap(),
                    BTreeSet::from(["a.example.".to_string()]),
                )
            })
            .collect()
    }

    fn host(ip: &str) -> IpNet {
        IpNet::from(ip.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn learned_hosts_give_identities_back_and_a_full_pool_refuses_rather_than_takes() {
        let mut c = CidrIdentities::with_capacity(3);
        assert!(c.ensure([host("198.18.9.1")]).unwrap());
        let up = c.set_fqdn(learned(&["198.18.9.1", "198.19.0.1", "198.19.0.2"]));
        assert!(up.added && up.released.is_empty() && up.refused.is_empty());
        let kept = c.get(&host("198.19.0.1")).unwrap();

        // Full: a fourth address is refused, and nobody else's identity is taken.
        let up = c.set_fqdn(learned(&[
            "198.18.9.1",
            "198.19.0.1",
            "198.19.0.2",
            "198.19.0.3",
        ]));
        assert_eq!(up.refused, ["198.19.0.3".parse::<IpAddr>().unwrap()]);
        assert!(!up.added);
        assert_eq!(c.get(&host("198.19.0.3")), None);
        assert_eq!(c.fqdn_names(&host("198.19.0.3")).count(), 0);
        let again = c.set_fqdn(learned(&[
            "198.18.9.1",
            "198.19.0.1",
            "198.19.0.2",
            "198.19.0.3",
        ]));
        assert!(
            again.refused.is_empty(),
            "a waiting address is reported once"
        );
        assert_eq!(c.fqdn_stats().waiting, 1);

        // 198.19.0.2 expired: its identity goes to the waiting address; the policy's prefix
        // stays although no longer learned; the live one keeps its number.
        let freed = c.get(&host("198.19.0.2")).unwrap();
        let up = c.set_fqdn(learned(&["198.19.0.1", "198.19.0.3"]));
        assert_eq!(up.released, [(host("198.19.0.2"), freed)]);
        assert!(up.added && up.refused.is_empty());
        assert_eq!(c.get(&host("198.19.0.3")), Some(freed));
        assert_eq!(c.get(&host("198.19.0.1")), Some(kept));
        assert!(c.get(&host("198.18.9.1")).is_some(), "named by a policy");
        assert_eq!(c.labels(freed).unwrap()[0], "cidr:198.19.0.3/32");
        assert_eq!(
            c.fqdn_stats(),
            FqdnIdentityStats {
                live: 2,
                in_use: 3,
                cap: 3,
                released: 1,
                refused: 1,
                waiting: 0,
            }
        );
        assert!(matches!(
            c.ensure([host("198.20.0.0")]),
            Err(CompileError::TooManyCidrs(4))
        ));
    }
}
