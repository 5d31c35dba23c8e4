//! DNS answers the datapath captured (UDP and TCP port 53, parsed by `webb_l7::dns`): each
//! local endpoint's cache of the names its lookups resolved, which names later flows
//! (`destination_names` / `source_names`, as Hubble fills them from Cilium's DNS cache), and the
//! answers `toFQDNs` policy learns from.
//!
//! A message that does not parse, or whose answers do not form a chain from its question, never
//! touches the cache: it is counted and dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use webb_l7::dns::{self, Resolution};

use crate::datapath::event::{EventKind, L7Kind, RawEvent, Verdict};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Names one endpoint keeps at most ((address, name) pairs); past it the pair closest to
/// expiry is evicted and counted.
pub const MAX_NAMES_PER_ENDPOINT: usize = 1024;
/// Endpoints with a cache at most (a node's endpoints; more means the file changed a lot).
pub const MAX_ENDPOINTS: usize = 4096;

/// A DNS response delivered to a local endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The endpoint that asked (the response's destination).
    pub client: IpAddr,
    pub resolution: Resolution,
}

/// Why a DNS record gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Message(#[from] dns::DnsError),
    #[error(transparent)]
    Chain(#[from] dns::ResolutionError),
}

/// The DNS response a datapath record carries, if it is one that reached its client: `Ok(None)`
/// for queries, other records and dropped responses; an error for bytes that are not a whole
/// DNS message or answers that do not chain from the question.
pub fn answer_of(ev: &RawEvent<'_>) -> Result<Option<Answer>, AnswerError> {
    if ev.l7_kind != L7Kind::Dns
        || ev.kind != EventKind::Trace
        || ev.verdict == Verdict::Drop
        || ev.sport != 53
    {
        return Ok(None);
    }
    let Some(client) = ev.dst_ip() else {
        return Ok(None);
    };
    let bytes = ev.l7_bytes();
    let msg = match ev.l4_proto {
        IPPROTO_UDP => dns::parse_udp(bytes)?,
        IPPROTO_TCP => dns::parse_tcp(bytes)?,
        _ => return Ok(None),
    };
    if !msg.is_response || msg.rcode != 0 {
        return Ok(None);
    }
    let resolution = msg.resolution()?;
    Ok(Some(Answer {
        client: client.to_canonical(),
        resolution,
    }))
}

/// The names a resolution gives its addresses: the question and every CNAME target.
pub fn chain_names(r: &Resolution) -> Vec<String> {
    std::iter::once(r.query.clone())
        .chain(r.cnames.iter().cloned())
        .collect()
}

#[derive(Debug, Default)]
struct EndpointNames {
    /// address → (name, expiry)
    by_ip: HashMap<IpAddr, Vec<(String, Instant)>>,
    pairs: usize,
}

/// What the cache did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameCacheStats {
    pub pairs: usize,
    pub endpoints: usize,
    /// Pairs evicted because an endpoint's cache was full.
    pub evicted: u64,
    /// Answers not cached because the endpoint table was full.
    pub refused: u64,
}

/// Per-endpoint names of addresses, from the DNS answers each endpoint received, valid for the
/// answer's TTL plus a grace (flows right after the TTL still get their name).
#[derive(Debug)]
pub struct NameCache {
    endpoints: HashMap<IpAddr, EndpointNames>,
    grace: Duration,
    evicted: u64,
    refused: u64,
}

impl NameCache {
    pub fn new(grace: Duration) -> Self {
        NameCache {
            endpoints: HashMap::new(),
            grace,
            evicted: 0,
            refused: 0,
        }
    }

    /// Caches what `answer` resolved for its client.
    pub fn observe(&mut self, answer: &Answer, now: Instant) {
        let r = &answer.resolution;
        if r.ips.is_empty() {
            return;
        }
        if !self.endpoints.contains_key(&answer.client) && self.endpoints.len() >= MAX_ENDPOINTS {
            self.refused += 1;
            return;
        }
        let until = now + Duration::from_secs(u64::from(r.ttl)) + self.grace;
        let names: Vec<String> = chain_names(r)
            .into_iter()
            .map(|n| n.strip_suffix('.').unwrap_or(&n).to_string())
            .filter(|n| !n.is_empty())
            .collect();
        let ep = self.endpoints.entry(answer.client).or_default();
        for ip in &r.ips {
            let ip = ip.to_canonical();
            for name in &names {
                let list = ep.by_ip.entry(ip).or_default();
                match list.iter_mut().find(|(n, _)| n == name) {
                    Some((_, t)) => *t = (*t).max(until),
                    None => {
                        list.push((name.clone(), until));
                        ep.pairs += 1;
                    }
                }
            }
        }
        while ep.pairs > MAX_NAMES_PER_ENDPOINT {
            let soonest = ep
                .by_ip
                .iter()
                .flat_map(|(ip, l)| l.iter().map(move |(n, t)| (*t, *ip, n.clone())))
                .min();
            let Some((_, ip, name)) = soonest else { break };
            if let Some(l) = ep.by_ip.get_mut(&ip) {
                l.retain(|(n, _)| *n != name);
                if l.is_empty() {
                    ep.by_ip.remove(&ip);
                }
            }
            ep.pairs -= 1;
            self.evicted += 1;
        }
    }

    /// The names `endpoint` resolved `remote` by and that are still valid at `now`, sorted.
    pub fn names(&self, endpoint: IpAddr, remote: IpAddr, now: Instant) -> Vec<String> {
        let Some(list) = self
            .endpoints
            .get(&endpoint.to_canonical())
            .and_then(|ep| ep.by_ip.get(&remote.to_canonical()))
        else {
            return Vec::new();
        };
        let mut out: Vec<String> = list
            .iter()
            .filter(|(_, t)| *t > now)
            .map(|(n, _)| n.clone())
            .collect();
        out.sort();
        out
    }

    /// Drops what expired by `now`, and the caches of endpoints `keep` no longer accepts.
    pub fn expire(&mut self, now: Instant, mut keep: impl FnMut(&IpAddr) -> bool) {
        self.endpoints.retain(|ip, ep| {
            if !keep(ip) {
                return false;
            }
            ep.by_ip.retain(|_, l| {
                l.retain(|(_, t)| *t > now);
                !l.is_empty()
            });
            ep.pairs = ep.by_ip.values().map(Vec::len).sum();
            ep.pairs > 0
        });
    }

    /// No endpoint has a name cached (flows need no lookup).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Pairs evicted so far because an endpoint's cache was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn stats(&self) -> NameCacheStats {
        NameCacheStats {
            pairs: self.endpoints.values().map(|e| e.pairs).sum(),
            endpoints: self.endpoints.len(),
            evicted: self.evicted,
            refused: self.refused,
        }
    }
}

/// The agent's side of `toFQDNs`: DNS answers from the pipeline become learned addresses in
/// the policy, held answers go back on the wire once learned, and the datapath holds the
/// answers of exactly the endpoints a `toFQDNs` rule selects.
#[derive(Debug)]
pub struct FqdnControl {
    /// Learned addresses stay allowed this long past their answer's TTL.
    pub grace: Duration,
    /// `None`: answers are never held (they may then race the first packet to a new address).
    pub reinjector: Option<std::sync::Arc<crate::reinject::Reinjector>>,
    pub counts: std::sync::Arc<crate::pipeline::DnsCounts>,
}

impl FqdnControl {
    /// Learns what `ev` answered (re-installing the policy if that allows a new address), then
    /// puts a held answer back. Returns the report of a re-install.
    pub fn on_dns(
        &mut self,
        engine: &mut crate::policy::PolicyEngine,
        dp: &mut crate::datapath::Datapath,
        eps: &crate::endpoints::Endpoints,
        ev: crate::pipeline::DnsEvent,
        publish: impl FnMut(&std::sync::Arc<crate::policy::PolicyView>),
    ) -> Option<crate::policy::ApplyReport> {
        let mut report = None;
        if let Some(a) = &ev.answer {
            let names = chain_names(&a.resolution);
            let answer = crate::policy::DnsAnswer {
                names: &names,
                ips: &a.resolution.ips,
                ttl: a.resolution.ttl,
            };
            match engine.learn(dp, eps, answer, Instant::now(), self.grace, publish) {
                Ok(r) => report = r,
                Err(e) => tracing::warn!(error = %e, query = %a.resolution.query,
                    "cannot allow the addresses of a DNS answer"),
            }
        }
        if let Some(h) = &ev.held {
            self.counts.put_back(self.reinjector.as_deref(), h);
        }
        report
    }

    /// Tells the datapath whose answers to hold (nobody's without a reinjector).
    pub fn sync_hold(
        &self,
        engine: &crate::policy::PolicyEngine,
        dp: &mut crate::datapath::Datapath,
    ) {
        let ids: Vec<u32> = if self.reinjector.is_some() {
            engine.fqdn_endpoints().iter().copied().collect()
        } else {
            Vec::new()
        };
        if let Err(e) = dp.set_fqdn_hold(&ids) {
            tracing::warn!(error = %e, "cannot update the endpoints whose DNS answers are held");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webb_l7::dns::{AnswerData, DnsMessage, Question};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn response(name: &str, ttl: u32, answers: Vec<(&str, AnswerData)>) -> DnsMessage {
        DnsMessage {
            id: 7,
            is_response: true,
            truncated: false,
            rcode: 0,
            questions: vec![Question {
                name: name.into(),
                qtype: 1,
            }],
            answers: answers
                .into_iter()
                .map(|(n, data)| webb_l7::dns::Answer {
                    name: n.into(),
                    ttl,
                    data,
                })
                .collect(),
        }
    }

    fn answer(client: &str, msg: &DnsMessage) -> Answer {
        Answer {
            client: ip(client),
            resolution: msg.resolution().unwrap(),
        }
    }

    /// A DNS response from 198.18.2.2:53 to 198.18.1.2 as the datapath records it: 42 bytes of
    /// Ethernet, IPv4 and UDP headers, then `dns`.
    fn record(frame: &[u8]) -> RawEvent<'_> {
        use crate::datapath::event::{CtState, Direction, Family, MatchType};
        let v4 = |s: &str| {
            s.parse::<std::net::Ipv4Addr>()
                .unwrap()
                .to_ipv6_mapped()
                .octets()
        };
        RawEvent {
            kind: EventKind::Trace,
            ktime_ns: 1,
            ifindex: 3,
            netns_ino: 0,
            direction: Direction::Egress,
            ct_state: CtState::Reply,
            is_reply: true,
            flags: crate::datapath::event::flags::L7_HEAD,
            verdict: Verdict::Forward,
            drop_reason: 0,
            match_type: MatchType::None,
            rule_id: 0,
            src_identity: 300,
            dst_identity: 301,
            family: Family::V4,
            saddr: v4("198.18.2.2"),
            daddr: v4("198.18.1.2"),
            sport: 53,
            dport: 40000,
            l4_proto: IPPROTO_UDP,
            tcp_flags: 0,
            icmp_type: 0,
            icmp_code: 0,
            eth_src: [0; 6],
            eth_dst: [0; 6],
            ethertype: 0x0800,
            orig_len: frame.len() as u32,
            l3_off: 14,
            l4_off: 34,
            payload_off: 42,
            tcp_seq: 0,
            l7_kind: L7Kind::Dns,
            l7_segment: 0,
            kdrop_reason: 0,
            kdrop_location: 0,
            payload: frame,
        }
    }

    fn frame(dns: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        f.extend_from_slice(dns);
        f
    }

    #[test]
    fn malformed_or_unchained_answers_never_change_the_cache() {
        let now = Instant::now();
        let good = response(
            "api.example.com.",
            60,
            vec![(
                "api.example.com.",
                AnswerData::A("198.18.9.10".parse().unwrap()),
            )],
        );
        let mut cache = NameCache::new(Duration::from_secs(5));
        let bytes = good.to_udp().unwrap();
        let ok = frame(&bytes);
        let a = answer_of(&record(&ok))
            .unwrap()
            .expect("a response to the client");
        assert_eq!(a.client, ip("198.18.1.2"));
        cache.observe(&a, now);
        let before = cache.names(ip("198.18.1.2"), ip("198.18.9.10"), now);
        assert_eq!(before, ["api.example.com"]);

        // Every truncation of the message, and garbage after it, is an error.
        for cut in 0..bytes.len() {
            let f = frame(&bytes[..cut]);
            assert!(answer_of(&record(&f)).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"junk");
        assert!(answer_of(&record(&frame(&trailing))).is_err());
        // An answer for a name outside the question's chain (a spoofing attempt) rejects the
        // whole message: the other address must not get the name.
        let spoofed = response(
            "api.example.com.",
            60,
            vec![
                (
                    "api.example.com.",
                    AnswerData::A("198.18.9.11".parse().unwrap()),
                ),
                (
                    "evil.example.",
                    AnswerData::A("198.18.9.66".parse().unwrap()),
                ),
            ],
        );
        let spoofed = frame(&spoofed.to_udp().unwrap());
        assert!(matches!(
            answer_of(&record(&spoofed)),
            Err(AnswerError::Chain(_))
        ));
        assert_eq!(
            cache.names(ip("198.18.1.2"), ip("198.18.9.10"), now),
            before
        );
        assert!(
            cache
                .names(ip("198.18.1.2"), ip("198.18.9.11"), now)
                .is_empty()
        );
        assert!(
            cache
                .names(ip("198.18.1.2"), ip("198.18.9.66"), now)
                .is_empty()
        );
        assert_eq!(cache.stats().pairs, 1);

        // Queries, NXDOMAIN and dropped responses are no answers.
        let mut dropped = record(&ok);
        dropped.verdict = Verdict::Drop;
        assert_eq!(answer_of(&dropped).unwrap(), None);
        let mut nx = good.clone();
        nx.rcode = 3;
        nx.answers.clear();
        assert_eq!(
            answer_of(&record(&frame(&nx.to_udp().unwrap()))).unwrap(),
            None
        );
    }

    #[test]
    fn names_are_per_endpoint_and_follow_the_cname_chain_until_ttl_plus_grace() {
        let mut c = NameCache::new(Duration::from_secs(2));
        let now = Instant::now();
        let msg = response(
            "www.example.com.",
            10,
            vec![
                (
                    "www.example.com.",
                    AnswerData::Cname("edge.cdn.example.".into()),
                ),
                (
                    "edge.cdn.example.",
                    AnswerData::A("198.18.7.7".parse().unwrap()),
                ),
            ],
        );
        c.observe(&answer("198.18.1.2", &msg), now);
        assert_eq!(
            c.names(ip("198.18.1.2"), ip("198.18.7.7"), now),
            ["edge.cdn.example", "www.example.com"]
        );
        assert!(
            c.names(ip("198.18.1.3"), ip("198.18.7.7"), now).is_empty(),
            "another endpoint did not resolve it"
        );
        let later = now + Duration::from_secs(11);
        assert_eq!(c.names(ip("198.18.1.2"), ip("198.18.7.7"), later).len(), 2);
        let expired = now + Duration::from_secs(12);
        assert!(
            c.names(ip("198.18.1.2"), ip("198.18.7.7"), expired)
                .is_empty()
        );
        c.expire(expired, |_| true);
        assert_eq!(c.stats().pairs, 0);
    }

    #[test]
    fn a_full_endpoint_cache_evicts_the_soonest_to_expire_and_counts_it() {
        let mut c = NameCache::new(Duration::ZERO);
        let now = Instant::now();
        for i in 0..MAX_NAMES_PER_ENDPOINT + 5 {
            let name = format!("n{i}.example.");
            let addr = IpAddr::from([198, 19, (i >> 8) as u8, i as u8]);
            let msg = response(
                &name,
                100 + i as u32,
                vec![(
                    name.as_str(),
                    AnswerData::A(match addr {
                        IpAddr::V4(a) => a,
                        IpAddr::V6(_) => unreachable!(),
                    }),
                )],
            );
            c.observe(&answer("198.18.1.2", &msg), now);
        }
        let s = c.stats();
        assert_eq!(s.pairs, MAX_NAMES_PER_ENDPOINT);
        assert_eq!(s.evicted, 5);
        assert!(c.names(ip("198.18.1.2"), ip("198.19.0.0"), now).is_empty());
        assert_eq!(
            c.names(ip("198.18.1.2"), ip("198.19.0.5"), now),
            ["n5.example"]
        );
    }
}
