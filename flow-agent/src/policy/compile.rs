//! Policies + endpoints → the datapath's policy map entries, and the table that maps each
//! entry's rule id back to the policies (for `*_allowed_by` / `*_denied_by` and default-deny
//! attribution).
//!
//! Entry key (see `struct policy_key` in `bpf/flow.bpf.c`): slot, direction, local endpoint
//! identity, remote identity (0 = any), then the L4 part as a prefix: protocol (8 bits) and the
//! destination port (16 bits, big endian). Port ranges become aligned power-of-two blocks. The
//! kernel looks up the remote identity and the wildcard and takes a deny from either first, so
//! a deny only has to beat allows under the same remote: an allow that a deny of the same
//! remote covers becomes that deny here (Cilium's deny precedence), and a deny more specific
//! than an allow wins by being the longer prefix.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ipnet::IpNet;

use crate::endpoints::Endpoints;
use crate::identity::{IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD, MIN_ENDPOINT_IDENTITY};

use super::spec::NAMESPACE_LABEL;
use super::{Dir, EndpointSel, Entity, NsSel, Peer, Peers, Policy, Subject};

/// First identity given to CIDRs (Cilium's node-local identity scope, 1 << 24).
pub const CIDR_IDENTITY_BASE: u32 = 1 << 24;
/// CIDR identities in use at once (policies' prefixes and learned `toFQDNs` hosts), by default.
pub const MAX_CIDR_IDENTITIES: usize = 16384;
/// Rule sets one revision can name (24 bits of the rule id).
pub const MAX_RULE_SETS: usize = (1 << 24) - 1;

/// Datapath constants (`bpf/flow.bpf.c`).
const ACTION_ALLOW: u8 = 1;
const ACTION_DENY: u8 = 2;
const ACTION_DEFAULT_DENY: u8 = 3;
const L4_NONE: u8 = 0;
const L4_PROTO: u8 = 1;
const L4_PORT: u8 = 2;
/// Bits of slot, direction, padding and endpoint: the default-deny marker's prefix.
const MARKER_PREFIX: u32 = 64;
/// ... plus the remote identity: an entry for every L4.
const L3_PREFIX: u32 = 96;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error(
        "too many CIDRs in the policies: {0} distinct prefixes (at most {MAX_CIDR_IDENTITIES})"
    )]
    TooManyCidrs(usize),
    #[error("the policy needs {0} distinct rule sets (at most {MAX_RULE_SETS})")]
    TooManyRuleSets(usize),
}

pub use super::cidr::{CidrIdentities, FqdnIdentityStats, FqdnUpdate};

/// What an entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Deny,
    /// The endpoint is selected in this direction and nothing more specific matched.
    DefaultDeny,
}

/// The policies behind one rule id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub dir: Dir,
    pub action: RuleAction,
    /// Indexes into [`Generation::policies`]: the allowing or denying policies, or (default
    /// deny) those that select the endpoint in this direction.
    pub policies: Vec<usize>,
}

/// One compiled revision's names.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    pub revision: u32,
    /// `flow.Policy` of every policy, in input order.
    pub policies: Vec<webb_proto::flow::Policy>,
    /// `namespace/name` of every policy.
    pub names: Vec<String>,
    pub rule_sets: Vec<RuleSet>,
    /// Labels of the CIDR identities in force.
    pub cidr_labels: HashMap<u32, Vec<String>>,
}

impl Generation {
    fn tag(&self) -> u32 {
        self.revision & 0xff
    }

    pub fn rule_id(&self, index: usize) -> u32 {
        (self.tag() << 24) | (index as u32 + 1)
    }
}

/// The last few revisions, newest first: records of a connection decided just before a reload
/// still find their names.
#[derive(Debug, Clone, Default)]
pub struct PolicyView {
    gens: Vec<Arc<Generation>>,
}

impl PolicyView {
    /// Revisions kept.
    pub const KEEP: usize = 4;

    /// This view with `g` added as the newest.
    pub fn with(&self, g: Arc<Generation>) -> PolicyView {
        let mut gens = vec![g];
        gens.extend(self.gens.iter().take(Self::KEEP - 1).cloned());
        PolicyView { gens }
    }

    pub fn newest(&self) -> Option<&Arc<Generation>> {
        self.gens.first()
    }

    /// The revision and rule set a datapath rule id names.
    pub fn lookup(&self, rule_id: u32) -> Option<(&Generation, &RuleSet)> {
        let tag = rule_id >> 24;
        let idx = (rule_id & 0x00ff_ffff).checked_sub(1)? as usize;
        self.gens
            .iter()
            .find(|g| g.tag() == tag)
            .and_then(|g| g.rule_sets.get(idx).map(|r| (&**g, r)))
    }

    /// Labels of a CIDR identity of the newest revision.
    pub fn cidr_labels(&self, identity: u32) -> Option<&[String]> {
        self.gens
            .iter()
            .find_map(|g| g.cidr_labels.get(&identity))
            .map(Vec::as_slice)
    }
}

/// One policy map entry, key and value as the datapath lays them out (slot byte 0 left 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub prefix_len: u32,
    pub key: [u8; 16],
    pub value: [u8; 8],
}

impl Entry {
    pub fn action(&self) -> u8 {
        self.value[4]
    }
    pub fn rule_id(&self) -> u32 {
        u32::from_ne_bytes([self.value[0], self.value[1], self.value[2], self.value[3]])
    }
}

/// A compiled policy revision.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub revision: u32,
    pub entries: Vec<Entry>,
    pub generation: Arc<Generation>,
    /// Local endpoints some `toFQDNs` egress rule selects (their DNS answers are worth
    /// holding until learned).
    pub fqdn_endpoints: BTreeSet<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Endpoint,
    Reserved,
    Cidr(IpNet),
}

struct Ident {
    id: u32,
    labels: Vec<String>,
    namespace: Option<String>,
    class: Class,
    /// Names DNS answers gave for this address (`toFQDNs`).
    names: Vec<String>,
}

enum Remote {
    Any,
    Ids(BTreeSet<u32>),
}

/// (prefix bits below the remote identity: 0, 8 or 8+k; value: proto << 16 | port)
type L4 = (u8, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    dir: u8,
    ep: u32,
    remote: u32,
    plen: u8,
    val: u32,
}

#[derive(Default)]
struct Acc {
    allow: BTreeSet<usize>,
    deny: BTreeSet<usize>,
}

fn namespace_of(labels: &[String]) -> Option<String> {
    labels.iter().find_map(|l| {
        l.strip_prefix("k8s:")
            .unwrap_or(l)
            .strip_prefix(NAMESPACE_LABEL)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_owned)
    })
}

fn subject_matches(s: &Subject, id: &Ident) -> bool {
    if let Some(ns) = &s.namespace
        && id.namespace.as_deref() != Some(ns.as_str())
    {
        return false;
    }
    s.pods.matches(&id.labels)
}

fn endpoint_sel_matches(s: &EndpointSel, id: &Ident) -> bool {
    match id.class {
        Class::Endpoint => {}
        Class::Reserved if s.reserved => {}
        _ => return false,
    }
    let ns_ok = match &s.namespace {
        NsSel::Any => true,
        NsSel::Is(ns) => id.namespace.as_deref() == Some(ns.as_str()),
        NsSel::Labels(sel) => match &id.namespace {
            Some(ns) => sel.matches(&[format!("k8s:kubernetes.io/metadata.name={ns}")]),
            None => false,
        },
    };
    ns_ok && s.pods.matches(&id.labels)
}

fn remotes(peers: &Peers, universe: &[Ident]) -> Remote {
    let list = match peers {
        Peers::Any => return Remote::Any,
        Peers::Set(l) => l,
    };
    let mut ids = BTreeSet::new();
    for p in list {
        match p {
            Peer::Entity(Entity::All) => return Remote::Any,
            Peer::Entity(e) => {
                for id in universe {
                    let hit = match (e, id.class) {
                        (Entity::World, Class::Cidr(_)) => true,
                        (Entity::World, _) => id.id == IDENTITY_WORLD,
                        (Entity::Cluster, Class::Endpoint) => true,
                        (Entity::Cluster, _) => {
                            id.id == IDENTITY_HOST || id.id == IDENTITY_REMOTE_NODE
                        }
                        (Entity::Host, _) => id.id == IDENTITY_HOST,
                        (Entity::RemoteNode, _) => id.id == IDENTITY_REMOTE_NODE,
                        (Entity::Reserved(n), _) => id.id == *n,
                        (Entity::All, _) => true,
                    };
                    if hit {
                        ids.insert(id.id);
                    }
                }
                if let Entity::Reserved(n) = e {
                    ids.insert(*n);
                }
            }
            Peer::Cidr { net, except } => {
                for id in universe {
                    let hit = match id.class {
                        Class::Cidr(p) => {
                            net.contains(&p) && !except.iter().any(|x| x.contains(&p))
                        }
                        _ => id.id == IDENTITY_WORLD && net.prefix_len() == 0,
                    };
                    if hit {
                        ids.insert(id.id);
                    }
                }
            }
            Peer::Endpoints(sel) => {
                for id in universe {
                    if endpoint_sel_matches(sel, id) {
                        ids.insert(id.id);
                    }
                }
            }
            Peer::Fqdn(sel) => {
                for id in universe {
                    if id.names.iter().any(|n| sel.matches(n)) {
                        ids.insert(id.id);
                    }
                }
            }
        }
    }
    Remote::Ids(ids)
}

/// Aligned power-of-two blocks covering `lo..=hi`: (first port, prefix bits of the port).
pub fn port_blocks(lo: u16, hi: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut cur, hi) = (u32::from(lo), u32::from(hi));
    while cur <= hi {
        let mut bits = 16u8;
        while bits > 0 {
            let size = 1u32 << (16 - (bits - 1));
            if cur % size == 0 && cur + size - 1 <= hi {
                bits -= 1;
            } else {
                break;
            }
        }
        out.push((cur as u16, bits));
        cur += 1u32 << (16 - bits);
    }
    out
}

fn l4_keys(ports: &[super::PortRule]) -> Vec<L4> {
    if ports.is_empty() {
        return vec![(0, 0)];
    }
    let mut out = Vec::new();
    for p in ports {
        for &proto in p.proto.numbers() {
            let base = u32::from(proto) << 16;
            if p.lo == 0 {
                out.push((8, base));
            } else {
                for (start, bits) in port_blocks(p.lo, p.hi) {
                    out.push((8 + bits, base | u32::from(start)));
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn covers(d: L4, a: L4) -> bool {
    d.0 <= a.0 && (d.0 == 0 || (a.1 >> (24 - u32::from(d.0))) == (d.1 >> (24 - u32::from(d.0))))
}

fn encode(prefix_len: u32, k: Key, rule_id: u32, action: u8, l4: u8) -> Entry {
    let Key {
        dir,
        ep,
        remote,
        val,
        ..
    } = k;
    let mut key = [0u8; 16];
    key[1] = dir;
    key[4..8].copy_from_slice(&ep.to_ne_bytes());
    key[8..12].copy_from_slice(&remote.to_ne_bytes());
    key[12] = (val >> 16) as u8;
    key[13..15].copy_from_slice(&((val & 0xffff) as u16).to_be_bytes());
    let mut value = [0u8; 8];
    value[0..4].copy_from_slice(&rule_id.to_ne_bytes());
    value[4] = action;
    value[5] = l4;
    Entry {
        prefix_len,
        key,
        value,
    }
}

/// Compiles `policies` over the endpoints (only this node's endpoints get entries) for
/// datapath revision `revision`.
pub fn compile(
    policies: &[Policy],
    eps: &Endpoints,
    cidrs: &CidrIdentities,
    revision: u32,
) -> Result<Compiled, CompileError> {
    let mut universe: Vec<Ident> = eps
        .identities()
        .map(|(id, labels)| Ident {
            id,
            labels: labels.to_vec(),
            namespace: namespace_of(labels),
            class: if id < MIN_ENDPOINT_IDENTITY {
                Class::Reserved
            } else {
                Class::Endpoint
            },
            names: Vec::new(),
        })
        .collect();
    for (net, id) in cidrs.entries() {
        universe.push(Ident {
            id,
            labels: vec![format!("cidr:{net}"), "reserved:world".into()],
            namespace: None,
            class: Class::Cidr(net),
            names: cidrs.fqdn_names(&net).map(str::to_owned).collect(),
        });
    }
    let local: BTreeSet<u32> = eps.local_endpoints().map(|e| e.identity).collect();
    let local_idents: Vec<&Ident> = universe.iter().filter(|i| local.contains(&i.id)).collect();

    let mut acc: HashMap<Key, Acc> = HashMap::new();
    let mut selected: BTreeMap<(u8, u32), BTreeSet<usize>> = BTreeMap::new();
    let mut fqdn_endpoints = BTreeSet::new();
    for (pi, p) in policies.iter().enumerate() {
        for rule in &p.rules {
            let subjects: Vec<u32> = local_idents
                .iter()
                .filter(|i| subject_matches(&rule.subject, i))
                .map(|i| i.id)
                .collect();
            if subjects.is_empty() {
                continue;
            }
            for dir in [Dir::Ingress, Dir::Egress] {
                if rule.enforce[dir as usize] {
                    for &ep in &subjects {
                        selected.entry((dir as u8, ep)).or_default().insert(pi);
                    }
                }
            }
            for s in &rule.sections {
                if let Peers::Set(peers) = &s.peers
                    && peers.iter().any(|p| matches!(p, Peer::Fqdn(_)))
                {
                    fqdn_endpoints.extend(subjects.iter().copied());
                }
                let remote = remotes(&s.peers, &universe);
                let remote_ids: Vec<u32> = match &remote {
                    Remote::Any => vec![0],
                    Remote::Ids(ids) => ids.iter().copied().collect(),
                };
                let l4s = l4_keys(&s.ports);
                for &ep in &subjects {
                    for &r in &remote_ids {
                        for &(plen, val) in &l4s {
                            let a = acc
                                .entry(Key {
                                    dir: s.dir as u8,
                                    ep,
                                    remote: r,
                                    plen,
                                    val,
                                })
                                .or_default();
                            if s.deny {
                                a.deny.insert(pi);
                            } else {
                                a.allow.insert(pi);
                            }
                        }
                    }
                }
            }
        }
    }

    let mut generation = Generation {
        revision,
        policies: policies
            .iter()
            .map(|p| webb_proto::flow::Policy {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                labels: p.derived_labels(),
                revision: u64::from(revision),
                kind: p.kind.as_str().to_string(),
            })
            .collect(),
        names: policies.iter().map(Policy::display_name).collect(),
        rule_sets: Vec::new(),
        cidr_labels: cidrs
            .entries()
            .into_iter()
            .map(|(n, id)| (id, vec![format!("cidr:{n}"), "reserved:world".to_string()]))
            .collect(),
    };
    let mut interned: HashMap<(Dir, RuleAction, Vec<usize>), usize> = HashMap::new();
    let mut intern =
        |g: &mut Generation, dir: Dir, action: RuleAction, pols: Vec<usize>| -> usize {
            *interned
                .entry((dir, action, pols.clone()))
                .or_insert_with(|| {
                    g.rule_sets.push(RuleSet {
                        dir,
                        action,
                        policies: pols,
                    });
                    g.rule_sets.len() - 1
                })
        };
    let dir_of = |d: u8| if d == 0 { Dir::Ingress } else { Dir::Egress };

    // Deny precedence within each (direction, endpoint, remote) group.
    let mut groups: BTreeMap<(u8, u32, u32), Vec<(L4, Acc)>> = BTreeMap::new();
    for (k, a) in acc {
        groups
            .entry((k.dir, k.ep, k.remote))
            .or_default()
            .push(((k.plen, k.val), a));
    }
    let mut entries = Vec::new();
    for ((dir, ep, remote), mut list) in groups {
        list.sort_by_key(|(l4, _)| *l4);
        let denies: Vec<(L4, BTreeSet<usize>)> = list
            .iter()
            .filter(|(_, a)| !a.deny.is_empty())
            .map(|(l4, a)| (*l4, a.deny.clone()))
            .collect();
        for (l4, a) in list {
            let (action, pols) = if !a.deny.is_empty() {
                (RuleAction::Deny, a.deny.into_iter().collect::<Vec<_>>())
            } else {
                let covering: BTreeSet<usize> = denies
                    .iter()
                    .filter(|(d, _)| covers(*d, l4))
                    .flat_map(|(_, p)| p.iter().copied())
                    .collect();
                if covering.is_empty() {
                    (RuleAction::Allow, a.allow.into_iter().collect())
                } else {
                    (RuleAction::Deny, covering.into_iter().collect())
                }
            };
            let idx = intern(&mut generation, dir_of(dir), action, pols);
            let kind = match l4.0 {
                0 => L4_NONE,
                8 => L4_PROTO,
                _ => L4_PORT,
            };
            let act = if action == RuleAction::Deny {
                ACTION_DENY
            } else {
                ACTION_ALLOW
            };
            entries.push(encode(
                L3_PREFIX + u32::from(l4.0),
                Key {
                    dir,
                    ep,
                    remote,
                    plen: l4.0,
                    val: l4.1,
                },
                generation.rule_id(idx),
                act,
                kind,
            ));
        }
    }
    for ((dir, ep), pols) in selected {
        let idx = intern(
            &mut generation,
            dir_of(dir),
            RuleAction::DefaultDeny,
            pols.into_iter().collect(),
        );
        entries.push(encode(
            MARKER_PREFIX,
            Key {
                dir,
                ep,
                remote: 0,
                plen: 0,
                val: 0,
            },
            generation.rule_id(idx),
            ACTION_DEFAULT_DENY,
            L4_NONE,
        ));
    }
    if generation.rule_sets.len() > MAX_RULE_SETS {
        return Err(CompileError::TooManyRuleSets(generation.rule_sets.len()));
    }
    Ok(Compiled {
        revision,
        entries,
        generation: Arc::new(generation),
        fqdn_endpoints,
    })
}
