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
