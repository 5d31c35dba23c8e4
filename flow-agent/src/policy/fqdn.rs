//! `toFQDNs` (Cilium's DNS-based egress peers): name selectors, and the addresses learned from
//! the DNS answers the datapath saw, which the compiler turns into CIDR identities (`/32` or
//! `/128`) that the selecting endpoints may reach until the answer's TTL plus a grace runs out.
//!
//! Cilium's semantics: names are compared lower-case and fully qualified; `matchName` is the
//! whole name; in `matchPattern` a `*` stands for zero or more characters of one label
//! (`[-a-zA-Z0-9_]`), and a pattern that is only `*` selects every name. Addresses learned by
//! one endpoint's lookups are allowed for every endpoint whose policy selects the name (Cilium
//! shares its DNS cache between endpoints the same way).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One `toFQDNs` entry.
#[derive(Debug, Clone)]
pub enum FqdnSelector {
    /// `matchName`, normalized (lower-case, trailing dot).
    Name(String),
    /// `matchPattern` as written (normalized) and the anchored expression it stands for.
    Pattern {
        pattern: String,
        regex: regex::Regex,
    },
}

/// Characters of a DNS name label Cilium lets a `*` stand for.
const LABEL_CHARS: &str = "[-a-zA-Z0-9_]";

/// Lower-case with the trailing dot, the form DNS answers are compared in.
pub fn normalize(name: &str) -> String {
    let mut n = name.trim().to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

fn check_chars(text: &str, wildcard: bool) -> Result<(), String> {
    let bad = text.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || (wildcard && *c == '*'))
    });
    match bad {
        Some(c) => Err(format!(
            "{text:?} contains {c:?}: only letters, digits, '-', '_', '.'{} are allowed",
            if wildcard { " and '*'" } else { "" }
        )),
        None if text.trim().is_empty() => Err("an empty name selects nothing".into()),
        None => Ok(()),
    }
}

impl FqdnSelector {
    pub fn name(text: &str) -> Result<Self, String> {
        check_chars(text, false)?;
        Ok(FqdnSelector::Name(normalize(text)))
    }

    pub fn pattern(text: &str) -> Result<Self, String> {
        check_chars(text, true)?;
        let pattern = if text.trim() == "*" {
            "*".to_string()
        } else {
            normalize(text)
        };
        let body = if pattern == "*" {
            // Every name: one or more labels, each followed by its dot.
            format!("(?:{LABEL_CHARS}+[.])+")
        } else {
            pattern
                .split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(&format!("{LABEL_CHARS}*"))
        };
        let regex = regex::Regex::new(&format!("^(?:{body})$")).map_err(|e| e.to_string())?;
        Ok(FqdnSelector::Pattern { pattern, regex })
    }

    /// Whether the selector selects `name` (normalized: lower-case, trailing dot).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            FqdnSelector::Name(n) => n == name,
            FqdnSelector::Pattern { regex, .. } => regex.is_match(name),
        }
    }

    /// As the policy wrote it (normalized).
    pub fn as_str(&self) -> &str {
        match self {
            FqdnSelector::Name(n) => n,
            FqdnSelector::Pattern { pattern, .. } => pattern,
        }
    }
}

/// Learned (address, name) pairs at most; past it new pairs are refused (and counted) until
/// some expire, so a live address is never forgotten early.
pub const MAX_LEARNED: usize = 65536;

/// What [`LearnedNames::learn`] did with a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new pair: an address the policy may now allow.
    New,
    /// A known pair: only its expiry was pushed out.
    Known,
    /// The table is full of live pairs.
    Refused,
}

/// Addresses DNS answers gave for names some `toFQDNs` selector selects, each with the instant
/// its last answer's TTL (plus the grace) runs out.
#[derive(Debug, Clone, Default)]
pub struct LearnedNames {
    by_ip: BTreeMap<IpAddr, BTreeMap<String, Instant>>,
    pairs: usize,
    refused: u64,
}

impl LearnedNames {
    /// Records that `name` resolved to `ip` until `until`.
    pub fn learn(&mut self, ip: IpAddr, name: &str, until: Instant) -> Learned {
        if let Some(t) = self.by_ip.get_mut(&ip).and_then(|n| n.get_mut(name)) {
            *t = (*t).max(until);
            return Learned::Known;
        }
        if self.pairs >= MAX_LEARNED {
            self.refused += 1;
            return Learned::Refused;
        }
        self.by_ip
            .entry(ip)
            .or_default()
            .insert(name.to_string(), until);
        self.pairs += 1;
        Learned::New
    }

    /// Forgets every name of `ip`.
    pub fn forget(&mut self, ip: &IpAddr) {
        if let Some(names) = self.by_ip.remove(ip) {
            self.pairs -= names.len();
        }
    }

    /// Drops the pairs whose time ran out by `now`; true if any did.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.pairs;
        self.by_ip.retain(|_, names| {
            names.retain(|_, t| *t > now);
            !names.is_empty()
        });
        self.pairs = self.by_ip.values().map(BTreeMap::len).sum();
        self.pairs != before
    }

    /// Keeps only the names `keep` accepts (after a policy change).
    pub fn retain_names(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.by_ip.retain(|_, names| {
            names.retain(|n, _| keep(n));
            !names.is_empty()
        });
        self.pairs = self.by_ip.values().map(BTreeMap::len).sum();
    }

    /// The names `ip` is known by.
    pub fn names_of(&self, ip: &IpAddr) -> impl Iterator<Item = &str> {
        self.by_ip
            .get(ip)
            .into_iter()
            .flat_map(|names| names.keys().map(String::as_str))
    }

    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.by_ip.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.pairs == 0
    }

    /// Pairs refused because the table was full of live ones.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The names of every address, for the compiler: address → names.
    pub fn snapshot(&self) -> BTreeMap<IpAddr, BTreeSet<String>> {
        self.by_ip
            .iter()
            .map(|(ip, names)| (*ip, names.keys().cloned().collect()))
            .collect()
    }
}

/// How long a learned address stays allowed after its answer: the TTL plus `grace`.
pub fn expiry(now: Instant, ttl: u32, grace: Duration) -> Instant {
    now + Duration::from_secs(u64::from(ttl)) + grace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_name_is_the_whole_name_in_any_case_with_or_without_the_trailing_dot() {
        let s = FqdnSelector::name("API.Example.com").unwrap();
        assert!(s.matches("api.example.com."));
        assert!(!s.matches("x.api.example.com."));
        assert!(!s.matches("api.example.com.evil."));
        assert!(FqdnSelector::name("a b").is_err());
        assert!(FqdnSelector::name("*.example.com").is_err());
        assert!(FqdnSelector::name("").is_err());
    }

    #[test]
    fn a_star_stands_for_characters_of_one_label_and_a_lone_star_for_every_name() {
        let sub = FqdnSelector::pattern("*.example.com").unwrap();
        assert!(sub.matches("api.example.com."));
        assert!(sub.matches("my_svc-1.example.com."));
        assert!(!sub.matches("a.b.example.com."), "one label only");
        assert!(!sub.matches("example.com.evil."));
        assert!(!sub.matches("apiexample.com."), "the dot is literal");
        let mid = FqdnSelector::pattern("api-*.example.com").unwrap();
        assert!(mid.matches("api-eu.example.com."));
        assert!(mid.matches("api-.example.com."));
        assert!(!mid.matches("web.example.com."));
        let all = FqdnSelector::pattern("*").unwrap();
        assert!(all.matches("example.com."));
        assert!(all.matches("a.b.c.d."));
        assert!(FqdnSelector::pattern("(a|b).com").is_err());
        assert!(FqdnSelector::pattern("a+.com").is_err());
    }

    fn policy(egress: &str) -> String {
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: x, namespace: n}}\n\
             spec:\n  endpointSelector: {{}}\n{egress}"
        )
    }

    #[test]
    fn to_fqdns_is_an_egress_peer_and_its_mistakes_are_named_by_field() {
        let ok = super::super::parse(
            &policy(
                "  egress:\n    - toFQDNs: [{matchName: api.example.com}, {matchPattern: \"*.cdn.example\"}]\n      \
                 toPorts: [{ports: [{port: \"443\"}], rules: {dns: [{matchPattern: \"*\"}]}}]\n",
            ),
            "p.yaml",
        )
        .unwrap();
        let section = &ok[0].rules[0].sections[0];
        let super::super::Peers::Set(peers) = &section.peers else {
            panic!("toFQDNs is an L3 peer")
        };
        let names: Vec<&str> = peers
            .iter()
            .map(|p| match p {
                super::super::Peer::Fqdn(s) => s.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["api.example.com.", "*.cdn.example."]);
        for (egress, field) in [
            (
                "  egressDeny:\n    - toFQDNs: [{matchName: a.example}]\n",
                "spec.egressDeny[0].toFQDNs",
            ),
            (
                "  egress:\n    - toFQDNs: [{matchName: a.example, matchPattern: \"*\"}]\n",
                "spec.egress[0].toFQDNs[0]",
            ),
            (
                "  egress:\n    - toFQDNs: [{matchPattern: \"a[b].example\"}]\n",
                "spec.egress[0].toFQDNs[0].matchPattern",
            ),
            (
                "  ingress:\n    - toFQDNs: [{matchName: a.example}]\n",
                "spec.ingress[0].toFQDNs",
            ),
            (
                "  egress:\n    - toPorts: [{ports: [{port: \"53\"}], rules: {dns: [{matchName: \"a b\"}]}}]\n",
                "spec.egress[0].toPorts[0].rules.dns[0].matchName",
            ),
        ] {
            let e = super::super::parse(&policy(egress), "p.yaml").expect_err(egress);
            assert_eq!(e.field(), Some(field), "{egress} => {e}");
        }
    }

    #[test]
    fn learned_pairs_expire_and_a_table_full_of_live_pairs_refuses_new_ones() {
        let now = Instant::now();
        let mut l = LearnedNames::default();
        let ip: IpAddr = "198.18.5.1".parse().unwrap();
        assert_eq!(
            l.learn(ip, "a.example.", now + Duration::from_secs(5)),
            Learned::New
        );
        assert_eq!(
            l.learn(ip, "a.example.", now + Duration::from_secs(9)),
            Learned::Known
        );
        assert!(!l.expire(now + Duration::from_secs(6)), "pushed out to 9 s");
        assert!(l.expire(now + Duration::from_secs(10)));
        assert!(l.is_empty());
        let later = now + Duration::from_secs(100);
        for i in 0..MAX_LEARNED {
            let ip = IpAddr::from([198, 19, (i >> 8) as u8, i as u8]);
            assert_eq!(l.learn(ip, "b.example.", later), Learned::New);
        }
        let one_more = IpAddr::from([198, 18, 200, 1]);
        assert_eq!(l.learn(one_more, "b.example.", later), Learned::Refused);
        assert_eq!(l.len(), MAX_LEARNED);
        assert_eq!(l.refused(), 1);
        assert_eq!(
            l.learn(IpAddr::from([198, 19, 0, 0]), "b.example.", later),
            Learned::Known,
            "a live pair is never pushed out"
        );
        l.forget(&IpAddr::from([198, 19, 0, 0]));
        assert_eq!(l.len(), MAX_LEARNED - 1);
        assert_eq!(l.learn(one_more, "b.example.", later), Learned::New);
    }
}
