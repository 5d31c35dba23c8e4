//! Network policy: `cilium.io/v2` CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy and
//! `networking.k8s.io/v1` NetworkPolicy read from YAML (`--policy`, a file or a directory),
//! compiled into the datapath's policy map (the kernel decides every verdict), and mapped back
//! to policy names for the flows.
//!
//! Semantics (Cilium's and Kubernetes'):
//! - An endpoint that no policy selects in a direction allows everything in that direction;
//!   once one does, that direction is default deny.
//! - A matching deny wins over any allow, whatever its specificity; allows are then tried most
//!   specific first (which decides `policy_match_type`).
//! - Replies of allowed connections pass (conntrack); DNS is not special.
//! - A namespaced policy selects endpoints of its own namespace; its peer selectors without a
//!   namespace mean that namespace too. Clusterwide policies are not scoped.
//! - Endpoint selectors select endpoints; reserved identities only when the selector names a
//!   reserved label (`reserved:host`). World, host, remote-node and CIDRs are reached through
//!   entities and CIDR rules, which never match endpoints (as in Cilium).
//! - Kubernetes `namespaceSelector` sees the label every namespace has,
//!   `kubernetes.io/metadata.name` (the endpoints file carries no other namespace labels).

mod cidr;
pub mod compile;
pub mod fqdn;
pub mod layout;
mod spec;
pub mod status;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ipnet::IpNet;

use flow_filter::selector::Selector;

pub use compile::{
    CIDR_IDENTITY_BASE, CidrIdentities, CompileError, Compiled, FqdnIdentityStats, FqdnUpdate,
    Generation, PolicyView, RuleAction, RuleSet, compile,
};
pub use spec::NAMESPACE_LABEL;

use crate::datapath::{Datapath, DatapathError};
use crate::endpoints::Endpoints;

/// Which API object a policy came from (`flow.Policy.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
    NetworkPolicy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            Kind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            Kind::NetworkPolicy => "NetworkPolicy",
        }
    }
}

/// Policy direction, as the selected endpoint sees it. The discriminant is the datapath's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    Ingress = 0,
    Egress = 1,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Ingress => "ingress",
            Dir::Egress => "egress",
        }
    }
}

/// The endpoints a rule applies to.
#[derive(Debug, Clone)]
pub struct Subject {
    pub pods: Selector,
    /// `None`: clusterwide.
    pub namespace: Option<String>,
}

/// How a peer selector is scoped to namespaces.
#[derive(Debug, Clone)]
pub enum NsSel {
    Any,
    Is(String),
    /// Kubernetes `namespaceSelector`, matched against the namespace's labels.
    Labels(Selector),
}

#[derive(Debug, Clone)]
pub struct EndpointSel {
    pub pods: Selector,
    pub namespace: NsSel,
    /// The selector names a `reserved:` label, so it may select reserved identities.
    pub reserved: bool,
}

/// Cilium entities (`fromEntities` / `toEntities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    World,
    Cluster,
    Host,
    RemoteNode,
    All,
    /// Another reserved identity by number (health, init, unmanaged, kube-apiserver, ingress).
    Reserved(u32),
}

#[derive(Debug, Clone)]
pub enum Peer {
    Endpoints(EndpointSel),
    Cidr {
        net: IpNet,
        except: Vec<IpNet>,
    },
    Entity(Entity),
    /// `toFQDNs`: the addresses DNS answers gave for the names it selects.
    Fqdn(fqdn::FqdnSelector),
}

#[derive(Debug, Clone)]
pub enum Peers {
    /// Every peer (L4-only rules, Kubernetes rules without `from`/`to`).
    Any,
    /// These peers (empty: none).
    Set(Vec<Peer>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    /// TCP, UDP and SCTP.
    Any,
}

impl Proto {
    pub fn numbers(self) -> &'static [u8] {
        match self {
            Proto::Tcp => &[6],
            Proto::Udp => &[17],
            Proto::Sctp => &[132],
            Proto::Any => &[6, 17, 132],
        }
    }
}

/// A port or port range of one protocol; `lo == 0` means every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRule {
    pub proto: Proto,
    pub lo: u16,
    pub hi: u16,
}

/// One `ingress`/`egress`/`ingressDeny`/`egressDeny` entry: peers AND ports.
#[derive(Debug, Clone)]
pub struct Section {
    pub dir: Dir,
    pub deny: bool,
    pub peers: Peers,
    /// Empty: every protocol and port (ICMP included).
    pub ports: Vec<PortRule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub subject: Subject,
    /// Directions this rule puts its endpoints into default deny, by [`Dir`] index.
    pub enforce: [bool; 2],
    pub sections: Vec<Section>,
}

/// One parsed policy object.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: Kind,
    pub name: String,
    /// Empty for clusterwide policies.
    pub namespace: String,
    pub rules: Vec<Rule>,
    /// File and document (1-based) it came from.
    pub file: String,
    pub document: usize,
}

impl Policy {
    /// `namespace/name`, or `name` for clusterwide policies.
    pub fn display_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// Labels Cilium derives for a policy (`flow.Policy.labels`).
    pub fn derived_labels(&self) -> Vec<String> {
        let mut l = vec![
            format!(
                "k8s:io.cilium.k8s.policy.derived-from={}",
                self.kind.as_str()
            ),
            format!("k8s:io.cilium.k8s.policy.name={}", self.name),
        ];
        if !self.namespace.is_empty() {
            l.push(format!(
                "k8s:io.cilium.k8s.policy.namespace={}",
                self.namespace
            ));
        }
        l
    }

    /// Every CIDR the policy names (rules and their exceptions).
    pub fn cidrs(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.rules
            .iter()
            .flat_map(|r| &r.sections)
            .filter_map(|s| match &s.peers {
                Peers::Set(p) => Some(p),
                Peers::Any => None,
            })
            .flatten()
            .filter_map(|p| match p {
                Peer::Cidr { net, except } => {
                    Some(std::iter::once(*net).chain(except.iter().copied()))
                }
                _ => None,
            })
            .flatten()
    }
}

/// A bad or unreadable policy file. The message names the file, the document (1-based, in
/// `---` order), the line and the field.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read the policy: {message}")]
    Io { file: String, message: String },
    #[error("{file}:{line}: document {document}{}: {}{message}", name_suffix(.name), field_prefix(.field))]
    Invalid {
        file: String,
        document: usize,
        line: u64,
        /// `kind namespace/name` when known.
        name: String,
        /// Path of the offending field (`spec.ingress[0].toPorts[0].ports[0].endPort`); empty
        /// for YAML syntax errors.
        field: String,
        message: String,
    },
}

fn name_suffix(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl PolicyError {
    /// The offending field path, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            PolicyError::Invalid { field, .. } if !field.is_empty() => Some(field),
            _ => None,
        }
    }
}

/// Splits YAML text into documents at `---` lines: (first line number, text).
fn documents(text: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 1u64;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") || t.starts_with("---#") {
            out.push((start, std::mem::take(&mut cur)));
            start = i as u64 + 2;
            continue;
        }
        if t == "..." {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    out.push((start, cur));
    out
}

fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// Parses the policies of one YAML text; `file` only names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Policy>, PolicyError> {
    let mut out = Vec::new();
    let mut number = 0usize;
    for (start, doc) in documents(text) {
        if is_blank(&doc) {
            continue;
        }
        number += 1;
        let invalid = |line: u64, name: &str, field: &str, message: String| PolicyError::Invalid {
            file: file.to_string(),
            document: number,
            line,
            name: name.to_string(),
            field: field.to_string(),
            message,
        };
        let yaml_err = |e: serde_saphyr::Error, name: &str| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            let text = e.without_snippet().to_string();
            let message = match text.rfind(" at line ") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            invalid(start + line.saturating_sub(1), name, "", message)
        };
        let head: spec::Head = serde_saphyr::from_str(&doc).map_err(|e| yaml_err(e, ""))?;
        let kind = spec::kind_of(&head).map_err(|e| invalid(start, "", &e.field, e.message))?;
        let (meta, rules) = match kind {
            Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy => {
                let d: spec::CiliumDoc =
                    serde_saphyr::from_str(&doc).map_err(|e| yaml_err(e, kind.as_str()))?;
                let ns = match kind {
                    Kind::CiliumNetworkPolicy => Some(
                        d.metadata
                            .namespace
                            .clone()
                            .filter(|n| !n.trim().is_empty())
                            .unwrap_or_else(|| "default".to_string()),
                    ),
                    _ => {
                        if d.metadata
                            .namespace
                            .as_deref()
                            .is_some_and(|n| !n.is_empty())
                        {
                            return Err(invalid(
                                start,
                                kind.as_str(),
                                "metadata.namespace",
                                "a clusterwide policy has no namespace".into(),
                            ));
                        }
                        None
                    }
                };
                let meta = (d.metadata.name.clone(), ns.clone());
                let full = format!("{} {}", kind.as_str(), qualified(&meta.1, &meta.0));
                let rules = d
                    .rules(ns.as_deref())
                    .map_err(|e| invalid(start, &full, &e.field, e.message))?;
                (meta, rules)
            }
            Kind::NetworkPolicy => {
                let d: spec::NetworkPolicyDoc =
                    serde_saphyr::from_str(&doc).map_err(|e| yaml_err(e, kind.as_str()))?;
                let ns = d
                    .metadata
                    .namespace
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| "default".to_string());
                let meta = (d.metadata.name.clone(), Some(ns.clone()));
                let full = format!("{} {}", kind.as_str(), qualified(&meta.1, &meta.0));
                let rules = d
                    .rules(&ns)
                    .map_err(|e| invalid(start, &full, &e.field, e.message))?;
                (meta, rules)
            }
        };
        let name = match meta.0 {
            Some(n) if !n.trim().is_empty() => n.trim().to_string(),
            _ => {
                return Err(invalid(
                    start,
                    kind.as_str(),
                    "metadata.name",
                    "a policy needs a name".into(),
                ));
            }
        };
        out.push(Policy {
            kind,
            name,
            namespace: meta.1.unwrap_or_default(),
            rules,
            file: file.to_string(),
            document: number,
        });
    }
    Ok(out)
}

fn qualified(ns: &Option<String>, name: &Option<String>) -> String {
    let name = name.as_deref().unwrap_or("<unnamed>");
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// YAML files a `--policy` path stands for: the file itself, or a directory's `*.yaml` and
/// `*.yml` files (not recursive), sorted by name.
pub fn policy_files(path: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let io = |e: std::io::Error| PolicyError::Io {
        file: path.display().to_string(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| x == "yaml" || x == "yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every policy under `path`; the same kind, namespace and name twice is an error.
pub fn load(path: &Path) -> Result<Vec<Policy>, PolicyError> {
    let mut out: Vec<Policy> = Vec::new();
    for f in policy_files(path)? {
        let file = f.display().to_string();
        let text = std::fs::read_to_string(&f).map_err(|e| PolicyError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
        for p in parse(&text, &file)? {
            if let Some(first) = out
                .iter()
                .find(|q| q.kind == p.kind && q.namespace == p.namespace && q.name == p.name)
            {
                return Err(PolicyError::Invalid {
                    file: p.file.clone(),
                    document: p.document,
                    line: 1,
                    name: format!("{} {}", p.kind.as_str(), p.display_name()),
                    field: "metadata.name".into(),
                    message: format!(
                        "defined twice (first in {} document {})",
                        first.file, first.document
                    ),
                });
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// Watches a policy file or directory; reports a change of any file (name, size, mtime).
#[derive(Debug)]
pub struct PolicyFiles {
    path: PathBuf,
    stamp: Option<Vec<(PathBuf, SystemTime, u64)>>,
}

impl PolicyFiles {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PolicyFiles {
            path: path.into(),
            stamp: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current_stamp(&self) -> Vec<(PathBuf, SystemTime, u64)> {
        policy_files(&self.path)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(&p).ok();
                let t = m
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let len = m.map(|m| m.len()).unwrap_or(u64::MAX);
                (p, t, len)
            })
            .collect()
    }

    /// Loads the policies if anything changed since the last call (always on the first).
    pub fn poll(&mut self) -> Option<Result<Vec<Policy>, PolicyError>> {
        let stamp = self.current_stamp();
        if self.stamp.as_ref() == Some(&stamp) {
            return None;
        }
        self.stamp = Some(stamp);
        Some(load(&self.path))
    }
}

/// The ipcache: endpoints and nodes, then the CIDR identities (policies' and learned hosts').
fn ipcache_of(eps: &Endpoints, cidrs: &CidrIdentities) -> Vec<(IpNet, u32)> {
    let mut ipcache: Vec<(IpNet, u32)> = eps
        .ipcache()
        .into_iter()
        .map(|e| (e.prefix, e.identity))
        .collect();
    ipcache.extend(cidrs.entries());
    ipcache
}

/// Why a policy could not be put in force (the previous one stays).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

/// What [`PolicyEngine::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyReport {
    pub revision: u32,
    pub policies: usize,
    pub entries: usize,
    pub compile: std::time::Duration,
    pub install: std::time::Duration,
}

/// Keeps the policy in force and the CIDR identities, and puts new policies (or the same
/// policies over new endpoints) into the datapath atomically.
#[derive(Debug, Default)]
pub struct PolicyEngine {
    cidrs: CidrIdentities,
    current: Arc<Vec<Policy>>,
    view: Arc<PolicyView>,
    /// Addresses DNS answers gave for names the policies' `toFQDNs` select.
    learned: fqdn::LearnedNames,
    /// Local endpoints a `toFQDNs` rule in force selects.
    fqdn_endpoints: BTreeSet<u32>,
}

/// The state of `toFQDNs` learning, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FqdnStats {
    pub identities: FqdnIdentityStats,
    /// (address, name) pairs refused because the learned table was full of live ones, in total.
    pub names_refused: u64,
}

/// What one DNS answer said, as [`PolicyEngine::learn`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct DnsAnswer<'a> {
    /// The question's name and the CNAME targets of the chain (normalized).
    pub names: &'a [String],
    pub ips: &'a [std::net::IpAddr],
    pub ttl: u32,
}

impl PolicyEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine whose CIDR identities (policies' prefixes and learned `toFQDNs` addresses)
    /// number at most `cap` at once.
    pub fn with_cidr_identities(cap: usize) -> Self {
        PolicyEngine {
            cidrs: CidrIdentities::with_capacity(cap),
            ..Self::default()
        }
    }

    /// How the identities of learned `toFQDNs` addresses stand, and the (address, name) pairs
    /// refused because the learned table was full.
    pub fn fqdn_stats(&self) -> FqdnStats {
        FqdnStats {
            identities: self.cidrs.fqdn_stats(),
            names_refused: self.learned.refused(),
        }
    }

    /// The policies in force.
    pub fn policies(&self) -> &Arc<Vec<Policy>> {
        &self.current
    }

    /// What the decoder needs to name the policies of recent revisions.
    pub fn view(&self) -> &Arc<PolicyView> {
        &self.view
    }

    pub fn cidr_identities(&self) -> &CidrIdentities {
        &self.cidrs
    }

    /// Identities of the local endpoints a `toFQDNs` rule in force selects.
    pub fn fqdn_endpoints(&self) -> &BTreeSet<u32> {
        &self.fqdn_endpoints
    }

    /// Addresses learned from DNS answers for `toFQDNs`.
    pub fn learned(&self) -> &fqdn::LearnedNames {
        &self.learned
    }

    /// The `toFQDNs` selectors of the policies in force.
    fn fqdn_selectors(policies: &[Policy]) -> impl Iterator<Item = &fqdn::FqdnSelector> {
        policies
            .iter()
            .flat_map(|p| &p.rules)
            .flat_map(|r| &r.sections)
            .filter_map(|s| match &s.peers {
                Peers::Set(p) => Some(p),
                Peers::Any => None,
            })
            .flatten()
            .filter_map(|p| match p {
                Peer::Fqdn(sel) => Some(sel),
                _ => None,
            })
    }

    /// Whether some `toFQDNs` selector in force selects `name` (normalized).
    pub fn selects_name(&self, name: &str) -> bool {
        Self::fqdn_selectors(&self.current).any(|s| s.matches(name))
    }

    /// Takes a DNS answer a local endpoint received: its addresses, for the names some
    /// `toFQDNs` selector selects, become reachable for the selecting endpoints until
    /// `ttl + grace` from `now`. Addresses of endpoints and nodes keep their identities and are
    /// not learned. Returns the report if the policy had to be put in force again (a new
    /// address or name); a repeated answer only pushes the expiry out.
    pub fn learn(
        &mut self,
        dp: &mut Datapath,
        eps: &Endpoints,
        answer: DnsAnswer<'_>,
        now: Instant,
        grace: std::time::Duration,
        publish: impl FnMut(&Arc<PolicyView>),
    ) -> Result<Option<ApplyReport>, ApplyError> {
        let selected: Vec<&String> = answer
            .names
            .iter()
            .filter(|n| self.selects_name(n))
            .collect();
        if selected.is_empty() {
            return Ok(None);
        }
        let until = fqdn::expiry(now, answer.ttl, grace);
        let mut new = false;
        for ip in answer.ips {
            if !matches!(eps.peer(ip), crate::endpoints::Peer::World) {
                continue;
            }
            for name in &selected {
                match self.learned.learn(*ip, name, until) {
                    fqdn::Learned::New => new = true,
                    fqdn::Learned::Known => {}
                    fqdn::Learned::Refused => tracing::warn!(
                        address = %ip, name = %name, max = fqdn::MAX_LEARNED,
                        "toFQDNs: the table of learned (address, name) pairs is full of live ones; not allowed"
                    ),
                }
            }
        }
        if !new {
            return Ok(None);
        }
        self.reapply_learned(dp, eps, publish).map(Some)
    }

    /// Forgets learned addresses whose time ran out by `now`, and puts the policy in force
    /// without them if any did.
    pub fn expire_learned(
        &mut self,
        dp: &mut Datapath,
        eps: &Endpoints,
        now: Instant,
        publish: impl FnMut(&Arc<PolicyView>),
    ) -> Result<Option<ApplyReport>, ApplyError> {
        if !self.learned.expire(now) {
            return Ok(None);
        }
        self.reapply_learned(dp, eps, publish).map(Some)
    }

    /// Gives the learned addresses identities (see [`CidrIdentities::set_fqdn`]); addresses
    /// newly refused one are logged (and counted there); they wait for one while learned.
    fn learned_identities(learned: &fqdn::LearnedNames, cidrs: &mut CidrIdentities) -> FqdnUpdate {
        let up = cidrs.set_fqdn(learned.snapshot());
        if let Some(first) = up.refused.first() {
            let s = cidrs.fqdn_stats();
            tracing::warn!(
                refused = up.refused.len(), first = %first, in_use = s.in_use, max = s.cap,
                waiting = s.waiting,
                "toFQDNs: every CIDR identity is held by a live address; new addresses are not allowed until one is given back"
            );
        }
        up
    }

    /// Takes identities that learned addresses gave back out of the ipcache, before a policy
    /// that no longer knows them goes in force: until then those addresses fall back to the
    /// identity (world or a wider CIDR) that both policies cover.
    fn withdraw_released(
        &self,
        dp: &mut Datapath,
        eps: &Endpoints,
        released: &[(IpNet, u32)],
    ) -> Result<(), ApplyError> {
        if released.is_empty() {
            return Ok(());
        }
        let gone: BTreeSet<IpNet> = released.iter().map(|(n, _)| *n).collect();
        let kept: Vec<(IpNet, u32)> = ipcache_of(eps, &self.cidrs)
            .into_iter()
            .filter(|(n, _)| !gone.contains(n))
            .collect();
        dp.set_ipcache(&kept)?;
        Ok(())
    }

    /// The policy in force compiled over the learned addresses. New host identities enter the
    /// ipcache only after the policy that knows them is in force, and released ones leave it
    /// before, so meanwhile those addresses keep the identity (world or a wider CIDR) the
    /// policy also still covers.
    fn reapply_learned(
        &mut self,
        dp: &mut Datapath,
        eps: &Endpoints,
        mut publish: impl FnMut(&Arc<PolicyView>),
    ) -> Result<ApplyReport, ApplyError> {
        let mut cidrs = self.cidrs.clone();
        let up = Self::learned_identities(&self.learned, &mut cidrs);
        let t0 = Instant::now();
        let compiled = compile(&self.current, eps, &cidrs, dp.policy_revision() + 1)?;
        let compile_time = t0.elapsed();
        let entries = compiled.entries.len();
        let t1 = Instant::now();
        self.withdraw_released(dp, eps, &up.released)?;
        let revision = self.publish_and_install(dp, compiled, &mut publish)?;
        if up.added {
            dp.set_ipcache(&ipcache_of(eps, &cidrs))?;
        }
        let install = t1.elapsed();
        self.cidrs = cidrs;
        Ok(ApplyReport {
            revision,
            policies: self.current.len(),
            entries,
            compile: compile_time,
            install,
        })
    }

    /// Compiles `policies` over `eps` and installs them; `publish` receives the decoder's view
    /// before the kernel switches to a new revision, so every record can be named.
    ///
    /// New CIDRs get identities that the ipcache must know before the new policy uses them;
    /// for that window the policy in force is reinstalled first, compiled to cover the new
    /// identities, so traffic sees only the old or the new policy's verdicts.
    pub fn apply(
        &mut self,
        dp: &mut Datapath,
        eps: &Endpoints,
        policies: Arc<Vec<Policy>>,
        mut publish: impl FnMut(&Arc<PolicyView>),
    ) -> Result<ApplyReport, ApplyError> {
        let wanted: BTreeSet<IpNet> = policies.iter().flat_map(|p| p.cidrs()).collect();
        let mut cidrs = self.cidrs.clone();
        let mut added = cidrs.ensure(wanted)?;
        // Learned addresses stay for the names the new policies still select.
        let mut learned = self.learned.clone();
        learned.retain_names(|n| Self::fqdn_selectors(&policies).any(|s| s.matches(n)));
        let up = Self::learned_identities(&learned, &mut cidrs);
        added |= up.added;
        self.withdraw_released(dp, eps, &up.released)?;
        if added && dp.policy_revision() != 0 {
            let bridge = compile(&self.current, eps, &cidrs, dp.policy_revision() + 1)?;
            self.publish_and_install(dp, bridge, &mut publish)?;
        }
        dp.set_ipcache(&ipcache_of(eps, &cidrs))?;
        self.cidrs = cidrs;
        self.learned = learned;
        let t0 = Instant::now();
        let compiled = compile(&policies, eps, &self.cidrs, dp.policy_revision() + 1)?;
        let compile_time = t0.elapsed();
        let entries = compiled.entries.len();
        let t1 = Instant::now();
        let revision = self.publish_and_install(dp, compiled, &mut publish)?;
        let install = t1.elapsed();
        self.current = policies;
        Ok(ApplyReport {
            revision,
            policies: self.current.len(),
            entries,
            compile: compile_time,
            install,
        })
    }

    fn publish_and_install(
        &mut self,
        dp: &mut Datapath,
        compiled: Compiled,
        publish: &mut impl FnMut(&Arc<PolicyView>),
    ) -> Result<u32, ApplyError> {
        let view = Arc::new(self.view.with(compiled.generation.clone()));
        publish(&view);
        let rev = dp.install_policy(&compiled)?;
        self.view = view;
        self.fqdn_endpoints = compiled.fqdn_endpoints;
        Ok(rev)
    }
}

#[cfg(test)]
mod tests;
