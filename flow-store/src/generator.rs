//! Synthetic flows for tests and benchmarks: many pods in many namespaces talking TCP, UDP,
//! ICMP, HTTP (requests and responses with latency and trace ids), DNS, and policy drops, at a
//! steady rate from a start time. Deterministic: flow `i` is always the same.
//!
//! UUIDs are numbered the way Webb numbers them: each producer (the agent of each node, the
//! relay's HTTP and DNS stages) counts its own flows from where its counter stood when the
//! generator's time starts, so flow `i`'s number depends on how many earlier flows its
//! producer made. Those counts are kept at checkpoints, which makes `flow(i)` cheap in order
//! and for any `i` after the first call that reaches it.

use std::sync::{Arc, Mutex};

use webb_proto::Timestamp;
use webb_proto::extras;
use webb_proto::flow::{
    Dns, Endpoint, Flow, L7FlowType, Layer7, NetworkInterface, Service, Workload, layer7,
};
use webb_proto::sample;
use webb_proto::webb_v1::{FlowExtras, KernelDropReason, StageLoss};

/// A stream of synthetic flows. `pods` distinct pods over `pods / 10` namespaces (at least 1),
/// one flow every `1e9 / rate_per_sec` ns from `start`. The fields are read-only: the
/// numbering of the UUIDs is cached for them.
#[derive(Debug, Clone)]
pub struct FlowGenerator {
    pub pods: usize,
    pub start: Timestamp,
    pub rate_per_sec: u64,
    next: usize,
    counts: Arc<Mutex<Counts>>,
}

/// Nodes the flows are observed on: a flow's source pod decides its node.
const NODES: usize = 16;
/// Producers of UUIDs: one agent per node, then the relay's HTTP and DNS stages (each of
/// the relay's L7 parsers has its own `FlowIds`).
const PRODUCERS: usize = NODES + 2;
const RELAY_HTTP: usize = NODES;
const RELAY_DNS: usize = NODES + 1;
/// Flows between two checkpoints of the producers' counts.
const CHECKPOINT: usize = 4096;

/// How many flows each producer made before a flow index.
type ProducerCounts = [u64; PRODUCERS];

#[derive(Debug, Default)]
struct Counts {
    /// Counts before flow `k * CHECKPOINT`.
    checkpoints: Vec<ProducerCounts>,
    /// Counts before flow `at` (the last index asked for, so that asking in order is cheap).
    at: usize,
    last: ProducerCounts,
}

fn mix64(mut x: u64) -> u64 {
    // splitmix64: cheap, well spread, deterministic.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl FlowGenerator {
    pub fn new(pods: usize, start: Timestamp, rate_per_sec: u64) -> Self {
        Self {
            pods: pods.max(2),
            start,
            rate_per_sec: rate_per_sec.max(1),
            next: 0,
            counts: Arc::default(),
        }
    }

    /// Source and destination pod of flow `i` (`h` = `mix64(i)`).
    fn endpoints(&self, h: u64) -> (usize, usize) {
        // Clients talk mostly to a few servers, as in a real cluster.
        let src = (h % self.pods as u64) as usize;
        let dst = ((h >> 20) % (self.pods as u64 / 8 + 1)) as usize * 8 % self.pods;
        let dst = if dst == src {
            (dst + 1) % self.pods
        } else {
            dst
        };
        (src, dst)
    }

    /// Who numbers flow `i`: HTTP and DNS flows are made by the relay's L7 stages (the
    /// indices `flow` gives them), the rest by the agent of the source pod's node.
    fn producer(&self, i: usize) -> usize {
        if is_dns(i) {
            RELAY_DNS
        } else if is_http(i) {
            RELAY_HTTP
        } else {
            self.endpoints(mix64(i as u64)).0 % NODES
        }
    }

    fn count(&self, from: usize, to: usize, counts: &mut ProducerCounts) {
        for j in from..to {
            counts[self.producer(j)] += 1;
        }
    }

    /// How many flows each producer made before flow `i`.
    fn counts_before(&self, i: usize) -> ProducerCounts {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.at <= i && i - c.at < CHECKPOINT {
            let (at, mut last) = (c.at, c.last);
            self.count(at, i, &mut last);
            (c.at, c.last) = (i, last);
            return last;
        }
        if c.checkpoints.is_empty() {
            c.checkpoints.push([0; PRODUCERS]);
        }
        while c.checkpoints.len() <= i / CHECKPOINT {
            let k = c.checkpoints.len();
            let mut next = c.checkpoints[k - 1];
            self.count((k - 1) * CHECKPOINT, k * CHECKPOINT, &mut next);
            c.checkpoints.push(next);
        }
        let from = i / CHECKPOINT * CHECKPOINT;
        let mut last = c.checkpoints[i / CHECKPOINT];
        self.count(from, i, &mut last);
        (c.at, c.last) = (i, last);
        last
    }

    /// The namespace and pod name of pod `p`.
    pub fn pod_name(&self, p: usize) -> (String, String) {
        let namespaces = (self.pods / 10).max(1);
        let app = p % 40;
        (
            format!("ns-{}", p % namespaces),
            format!("app{app}-{:08x}-{p}", mix64(p as u64) as u32),
        )
    }

    fn endpoint(&self, p: usize) -> Endpoint {
        let (namespace, pod_name) = self.pod_name(p);
        let app = format!("app{}", p % 40);
        let mut labels = vec![
            format!("k8s:app={app}"),
            "k8s:io.cilium.k8s.policy.cluster=default".to_owned(),
            format!("k8s:io.cilium.k8s.policy.serviceaccount={app}"),
            format!("k8s:io.kubernetes.pod.namespace={namespace}"),
        ];
        labels.sort();
        Endpoint {
            id: 1000 + p as u32,
            identity: 30_000 + (p as u32 % 512),
            cluster_name: "default".to_owned(),
            namespace,
            labels,
            pod_name,
            workloads: vec![Workload {
                name: app,
                kind: "Deployment".to_owned(),
            }],
        }
    }

    /// The time of flow `i`: somewhere in its slot of `1e9 / rate_per_sec` ns, so that times
    /// rise but their gaps vary as real arrivals' do (evenly spaced times would cost a
    /// delta-encoded column nothing).
    pub fn time(&self, i: usize) -> Timestamp {
        let slot = |i: usize| (i as i128) * 1_000_000_000 / i128::from(self.rate_per_sec);
        let width = (slot(i + 1) - slot(i)).max(1);
        let jitter = i128::from(mix64(i as u64 ^ TIME_SALT)) % width;
        let ns = self.start.unix_nanos() + slot(i) + jitter;
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000) as i64,
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Flow `i`.
    pub fn flow(&self, i: usize) -> Flow {
        let counts = self.counts_before(i);
        self.flow_numbered(i, &counts)
    }

    /// Flow `i`, given how many flows each producer made before it.
    fn flow_numbered(&self, i: usize, counts: &ProducerCounts) -> Flow {
        let h = mix64(i as u64);
        let shape = shape(i);
        let mut f = if is_dns(i) {
            dns(shape)
        } else {
            sample::mixed(shape)
        };
        let (src, dst) = self.endpoints(h);
        f.time = Some(self.time(i));
        f.node_name = format!("node-{}", src % NODES);
        let producer = self.producer(i);
        f.uuid = uuid_like_webb(producer, first_seq(producer) + counts[producer]);
        // The host-side interface and MAC address are the source endpoint's (Cilium's lxc
        // model), not a function of the flow.
        let ep = mix64(src as u64 ^ ENDPOINT_SALT);
        f.interface = Some(NetworkInterface {
            index: 10 + src as u32,
            name: format!("lxc{:011x}", ep >> 20),
        });
        if let Some(eth) = f.ethernet.as_mut() {
            let b = ep.to_be_bytes();
            eth.source = format!(
                "6a:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                b[0], b[1], b[2], b[3], b[4]
            );
        }
        f.source = Some(self.endpoint(src));
        f.destination = Some(self.endpoint(dst));
        // Pods are dual-stack: each has its own IPv4 and IPv6 address.
        if let Some(ip) = f.ip.as_mut() {
            let address = |p: usize| match ip.ip_version {
                1 => format!("198.18.{}.{}", p / 250 % 250, p % 250 + 1),
                _ => format!("2001:2:0:{:x}::{:x}", p / 250, p % 250 + 1),
            };
            (ip.source, ip.destination) = (address(src), address(dst));
        }
        if f.destination_service.is_some() {
            let d = f
                .destination
                .as_ref()
                .map(|e| (e.workloads[0].name.clone(), e.namespace.clone()));
            if let Some((name, namespace)) = d {
                f.destination_service = Some(Service { name, namespace });
            }
        }
        // Drops are the shapes ending in 5 (`sample::mixed`); those with an even tens digit
        // (about half) carry the kernel's drop reason and a ring loss record.
        if f.verdict == 2 && (shape / 10).is_multiple_of(2) {
            let node = f.node_name.clone();
            extras::attach(
                &mut f,
                Some(&FlowExtras {
                    kernel_drop: Some(KernelDropReason {
                        name: "SKB_DROP_REASON_NETFILTER_DROP".to_owned(),
                        id: 12,
                        symbol: "nf_hook_slow".to_owned(),
                        offset: 0x11c,
                    }),
                    loss: vec![StageLoss {
                        stage: "ring".to_owned(),
                        node,
                        lost: h % 3,
                    }],
                    ..Default::default()
                }),
            );
        }
        f
    }

    /// Flows `start..start + n`.
    pub fn batch(&self, start: usize, n: usize) -> Vec<Flow> {
        let mut counts = self.counts_before(start);
        (start..start + n)
            .map(|i| {
                let f = self.flow_numbered(i, &counts);
                counts[self.producer(i)] += 1;
                f
            })
            .collect()
    }
}

impl Iterator for FlowGenerator {
    type Item = Flow;
    fn next(&mut self) -> Option<Flow> {
        let f = self.flow(self.next);
        self.next += 1;
        Some(f)
    }
}

const TIME_SALT: u64 = 0x7157;
const SHAPE_SALT: u64 = 0x5a4e;
const ENDPOINT_SALT: u64 = 0xe9d0;

/// What flow `i` is and carries besides its endpoints (its kind in the mix, ports, URL, trace
/// id): `sample::mixed` of a hash of `i`, so that neighbours in time are as unlike each other
/// as the flows of many pods are. `mixed(i)` of consecutive `i` is a cycle of ten kinds with
/// counting ports and ids, which zstd turned into nearly nothing.
fn shape(i: usize) -> usize {
    (mix64(i as u64 ^ SHAPE_SALT) >> 24) as usize
}

fn is_dns(i: usize) -> bool {
    shape(i) % 20 == 11
}

/// Whether `sample::mixed(shape(i))` is an HTTP request or response (a test keeps the two in
/// step).
fn is_http(i: usize) -> bool {
    shape(i) % 10 >= 6
}

/// Where producer `p`'s counter stood at the generator's start: agents and relays have been
/// running for different times (up to ~2^32 flows).
fn first_seq(p: usize) -> u64 {
    mix64(p as u64 ^ 0x5eed) >> 32
}

/// UUIDs the way Webb makes them (see flow-agent's `FlowIds` and the relay's L7 stages): a
/// version-8 UUID of a per-producer prefix (from the node name's hash for an agent, a random
/// one for each relay stage) and the producer's sequence number.
fn uuid_like_webb(producer: usize, seq: u64) -> String {
    let prefix = match producer {
        RELAY_HTTP => 0x5eed_0000_0000_0001,
        RELAY_DNS => 0x5eed_0000_0000_0002,
        node => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a of the node name
            for b in format!("node-{node}").bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h
        }
    };
    format!(
        "{:08x}-{:04x}-8{:03x}-{:04x}-{:012x}",
        prefix >> 32,
        (prefix >> 16) & 0xffff,
        prefix & 0xfff,
        0x8000 | ((seq >> 48) & 0x3fff),
        seq & 0xffff_ffff_ffff
    )
}

fn dns(i: usize) -> Flow {
    let mut f = sample::udp6(i);
    f.r#type = 2; // L7
    f.l7 = Some(Layer7 {
        r#type: L7FlowType::Response as i32,
        latency_ns: 300_000 + (i as u64 % 7) * 10_000,
        record: Some(layer7::Record::Dns(Dns {
            query: format!("svc{}.ns.svc.cluster.local.", i % 30),
            ips: vec![format!("198.18.9.{}", i % 200 + 1)],
            ttl: 30,
            cnames: Vec::new(),
            observation_source: "proxy".to_owned(),
            rcode: 0,
            qtypes: vec!["A".to_owned()],
            rrtypes: vec!["A".to_owned()],
        })),
    });
    f.summary = format!("DNS Answer \"198.18.9.{}\" TTL: 30", i % 200 + 1);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_drop(f: &Flow) -> Option<KernelDropReason> {
        extras::unpack(f)?.ok()?.kernel_drop
    }

    /// Times rise with the index, each in its own slot, and their gaps vary.
    #[test]
    fn times_rise_in_slots_with_uneven_gaps() {
        let g = FlowGenerator::new(200, Timestamp::default(), 1000);
        let ns: Vec<i128> = (0..1000).map(|i| g.time(i).unix_nanos()).collect();
        for (i, t) in ns.iter().enumerate() {
            assert!(
                (i as i128 * 1_000_000..(i as i128 + 1) * 1_000_000).contains(t),
                "flow {i}"
            );
        }
        let gaps: std::collections::HashSet<i128> = ns.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 900, "{} distinct gaps", gaps.len());
    }

    #[test]
    fn l7_flows_are_numbered_by_the_relay_and_the_rest_by_their_nodes_agent() {
        let g = FlowGenerator::new(200, Timestamp::default(), 1000);
        for (i, f) in g.batch(0, 400).iter().enumerate() {
            let p = g.producer(i);
            assert_eq!(p >= NODES, f.l7.is_some(), "flow {i}");
            if p < NODES {
                assert_eq!(f.node_name, format!("node-{p}"), "flow {i}");
            }
        }
    }

    fn seq(uuid: &str) -> u64 {
        u64::from_str_radix(&uuid[24..], 16).unwrap()
    }

    /// Each producer counts its own flows: consecutive flows of one producer have consecutive
    /// numbers under the same prefix, whatever order or batches they are asked for in.
    #[test]
    fn each_producer_numbers_its_flows_consecutively() {
        let g = FlowGenerator::new(200, Timestamp::default(), 1000);
        let n = 3 * CHECKPOINT + 100;
        let flows = g.batch(0, n);
        let mut last: std::collections::HashMap<usize, &str> = Default::default();
        for (i, f) in flows.iter().enumerate() {
            if let Some(prev) = last.insert(g.producer(i), &f.uuid) {
                assert_eq!(prev[..24], f.uuid[..24], "flow {i}");
                assert_eq!(seq(prev) + 1, seq(&f.uuid), "flow {i}");
            }
        }
        assert_eq!(last.len(), PRODUCERS);
        let fresh = FlowGenerator::new(200, Timestamp::default(), 1000);
        for i in [n - 1, 5, 2 * CHECKPOINT + 7, CHECKPOINT, 6] {
            assert_eq!(fresh.flow(i), flows[i], "flow {i} alone");
        }
        assert_eq!(
            fresh.batch(CHECKPOINT - 3, 10),
            flows[CHECKPOINT - 3..][..10]
        );
    }

    #[test]
    fn about_half_of_the_drops_carry_a_kernel_drop_reason_and_nothing_else_does() {
        let g = FlowGenerator::new(200, Timestamp::default(), 1000);
        let flows = g.batch(0, 1000);
        let drops: Vec<usize> = (0..flows.len())
            .filter(|&i| flows[i].verdict == 2)
            .collect();
        for &i in &drops {
            let expected = (shape(i) / 10).is_multiple_of(2);
            assert_eq!(kernel_drop(&flows[i]).is_some(), expected, "flow {i}");
        }
        let with_reason = drops
            .iter()
            .filter(|&&i| kernel_drop(&flows[i]).is_some())
            .count();
        assert!(
            (drops.len() / 3..=drops.len() * 2 / 3).contains(&with_reason),
            "{with_reason} of {} drops",
            drops.len()
        );
        assert!(
            flows
                .iter()
                .filter(|f| f.verdict != 2)
                .all(|f| f.extensions.is_none()),
            "only drops carry extras"
        );
    }
}
