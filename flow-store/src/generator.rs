//! Synthetic flows for tests and benchmarks: many pods in many namespaces talking TCP, UDP,
//! ICMP, HTTP (requests and responses with latency and trace ids), DNS, and policy drops, at a
//! steady rate from a start time. Deterministic: flow `i` is always the same.

use webb_proto::Timestamp;
use webb_proto::extras;
use webb_proto::flow::{Dns, Endpoint, Flow, L7FlowType, Layer7, Service, Workload, layer7};
use webb_proto::sample;
use webb_proto::webb_v1::{FlowExtras, KernelDropReason, StageLoss};

/// A stream of synthetic flows. `pods` distinct pods over `pods / 10` namespaces (at least 1),
/// one flow every `1e9 / rate_per_sec` ns from `start`.
#[derive(Debug, Clone)]
pub struct FlowGenerator {
    pub pods: usize,
    pub start: Timestamp,
    pub rate_per_sec: u64,
    next: usize,
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
        }
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

    /// The time of flow `i`.
    pub fn time(&self, i: usize) -> Timestamp {
        let ns =
            self.start.unix_nanos() + (i as i128) * 1_000_000_000 / i128::from(self.rate_per_sec);
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000) as i64,
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Flow `i`.
    pub fn flow(&self, i: usize) -> Flow {
        let h = mix64(i as u64);
        let mut f = if i % 20 == 11 {
            dns(i)
        } else {
            sample::mixed(i)
        };
        // Clients talk mostly to a few servers, as in a real cluster.
        let src = (h % self.pods as u64) as usize;
        let dst = ((h >> 20) % (self.pods as u64 / 8 + 1)) as usize * 8 % self.pods;
        let dst = if dst == src {
            (dst + 1) % self.pods
        } else {
            dst
        };
        f.time = Some(self.time(i));
        f.node_name = format!("node-{}", src % 16);
        f.uuid = uuid_like_webb(&f.node_name, f.l7.is_some(), i as u64);
        f.source = Some(self.endpoint(src));
        f.destination = Some(self.endpoint(dst));
        if let Some(ip) = f.ip.as_mut().filter(|ip| ip.ip_version == 1) {
            ip.source = format!("198.18.{}.{}", src / 250 % 250, src % 250 + 1);
            ip.destination = format!("198.18.{}.{}", dst / 250 % 250, dst % 250 + 1);
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
        // Drops come on every tenth index (`sample::mixed`); every other one of them carries
        // the kernel's drop reason and a ring loss record.
        if f.verdict == 2 && (i / 10).is_multiple_of(2) {
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
        (start..start + n).map(|i| self.flow(i)).collect()
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

/// UUIDs the way Webb makes them (see flow-agent's `FlowIds` and the relay's L7 stage): a
/// version-8 UUID of a per-producer prefix (node hash, or the relay's for L7 flows) and a
/// sequence number.
fn uuid_like_webb(node: &str, by_relay: bool, seq: u64) -> String {
    let prefix = if by_relay {
        0x5eed_0000_0000_0001
    } else {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
        for b in node.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
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

    #[test]
    fn half_of_the_drops_carry_a_kernel_drop_reason_and_nothing_else_does() {
        let g = FlowGenerator::new(200, Timestamp::default(), 1000);
        let flows = g.batch(0, 1000);
        let drops: Vec<&Flow> = flows.iter().filter(|f| f.verdict == 2).collect();
        let with_reason = drops.iter().filter(|f| kernel_drop(f).is_some()).count();
        assert!(!drops.is_empty());
        assert_eq!(with_reason, drops.len() / 2, "of {} drops", drops.len());
        assert!(
            flows
                .iter()
                .filter(|f| f.verdict != 2)
                .all(|f| f.extensions.is_none()),
            "only drops carry extras"
        );
    }
}
