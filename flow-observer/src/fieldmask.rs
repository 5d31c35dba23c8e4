//! `GetFlowsRequest.field_mask`: copy only the listed paths of a Flow (proto field names, as the
//! Hubble CLI sends them: `source.pod_name`, `IP`, `Summary`, ...).
//!
//! Paths are checked when the request arrives (an unknown one is `InvalidArgument`, as in
//! Hubble). Two levels are understood exactly; a deeper path copies its second-level field
//! whole, which only ever sends more than asked, never less.

use webb_proto::flow::{Flow, layer4, layer7};

/// A path the Flow message does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field mask path {0:?}: no such field in flow.Flow")]
pub struct MaskError(pub String);

/// A validated field mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMask {
    paths: Vec<Vec<String>>,
}

impl FlowMask {
    pub fn new(paths: &[String]) -> Result<Self, MaskError> {
        let mask = FlowMask {
            paths: paths
                .iter()
                .map(|p| p.split('.').map(str::to_string).collect())
                .collect(),
        };
        // Validate by applying every path once to a fully populated flow.
        let probe = probe_flow();
        let mut out = Flow::default();
        for (path, raw) in mask.paths.iter().zip(paths) {
            copy(&mut out, &probe, path).map_err(|()| MaskError(raw.clone()))?;
        }
        Ok(mask)
    }

    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.paths.iter().map(|p| p.join("."))
    }

    /// A flow holding only the masked fields of `src`.
    pub fn apply(&self, src: &Flow) -> Flow {
        let mut out = Flow::default();
        for path in &self.paths {
            // Paths were validated in `new`.
            let _ = copy(&mut out, src, path);
        }
        out
    }
}

macro_rules! sub {
    ($dst:expr, $src:expr, $rest:expr, { $($name:literal => $field:ident),* $(,)? }) => {{
        match (&$src, $rest.first().map(String::as_str)) {
            (_, None) => { $dst = $src.clone(); Ok(()) }
            (None, Some(n)) => match n { $($name)|* => Ok(()), _ => Err(()) },
            (Some(s), Some(n)) => {
                let d = $dst.get_or_insert_with(Default::default);
                match n {
                    $($name => { d.$field = s.$field.clone(); Ok(()) })*
                    _ => Err(()),
                }
            }
        }
    }};
}

fn copy(dst: &mut Flow, src: &Flow, path: &[String]) -> Result<(), ()> {
    let Some((head, rest)) = path.split_first() else {
        return Err(());
    };
    macro_rules! whole {
        ($f:ident) => {{
            dst.$f = src.$f.clone();
            Ok(())
        }};
    }
    macro_rules! leaf {
        ($f:ident) => {{
            if !rest.is_empty() {
                return Err(());
            }
            dst.$f = src.$f.clone();
            Ok(())
        }};
    }
    match head.as_str() {
        "time" => leaf!(time),
        "uuid" => leaf!(uuid),
        "emitter" => whole!(emitter),
        "verdict" => leaf!(verdict),
        "drop_reason" => leaf!(drop_reason),
        "auth_type" => leaf!(auth_type),
        "ethernet" => sub!(dst.ethernet, src.ethernet, rest, {
            "source" => source, "destination" => destination,
        }),
        "IP" => sub!(dst.ip, src.ip, rest, {
            "source" => source, "destination" => destination, "ipVersion" => ip_version,
            "encrypted" => encrypted, "source_xlated" => source_xlated,
        }),
        "l4" => match rest.first().map(String::as_str) {
            None => whole!(l4),
            Some(n) => {
                use layer4::Protocol as P;
                let ok = matches!(
                    n,
                    "TCP" | "UDP" | "ICMPv4" | "ICMPv6" | "SCTP" | "VRRP" | "IGMP"
                );
                if !ok {
                    return Err(());
                }
                let hit = src
                    .l4
                    .as_ref()
                    .and_then(|l| l.protocol.as_ref())
                    .filter(|p| {
                        matches!(
                            (n, p),
                            ("TCP", P::Tcp(_))
                                | ("UDP", P::Udp(_))
                                | ("ICMPv4", P::IcmPv4(_))
                                | ("ICMPv6", P::IcmPv6(_))
                                | ("SCTP", P::Sctp(_))
                                | ("VRRP", P::Vrrp(_))
                                | ("IGMP", P::Igmp(_))
                        )
                    });
                if let Some(p) = hit {
                    dst.l4.get_or_insert_with(Default::default).protocol = Some(p.clone());
                }
                Ok(())
            }
        },
        "tunnel" => whole!(tunnel),
        "source" => endpoint(&mut dst.source, &src.source, rest),
        "destination" => endpoint(&mut dst.destination, &src.destination, rest),
        "Type" => leaf!(r#type),
        "node_name" => leaf!(node_name),
        "node_labels" => leaf!(node_labels),
        "source_names" => leaf!(source_names),
        "destination_names" => leaf!(destination_names),
        "l7" => match rest.first().map(String::as_str) {
            None => whole!(l7),
            Some(n @ ("dns" | "http" | "kafka")) => {
                let hit = src.l7.as_ref().and_then(|l| l.record.as_ref()).filter(|r| {
                    matches!(
                        (n, r),
                        ("dns", layer7::Record::Dns(_))
                            | ("http", layer7::Record::Http(_))
                            | ("kafka", layer7::Record::Kafka(_))
                    )
                });
                if let Some(r) = hit {
                    dst.l7.get_or_insert_with(Default::default).record = Some(r.clone());
                }
                Ok(())
            }
            Some(_) => sub!(dst.l7, src.l7, rest, {
                "type" => r#type, "latency_ns" => latency_ns,
            }),
        },
        "reply" => leaf!(reply),
        "event_type" => sub!(dst.event_type, src.event_type, rest, {
            "type" => r#type, "sub_type" => sub_type,
        }),
        "source_service" => sub!(dst.source_service, src.source_service, rest, {
            "name" => name, "namespace" => namespace,
        }),
        "destination_service" => sub!(dst.destination_service, src.destination_service, rest, {
            "name" => name, "namespace" => namespace,
        }),
        "traffic_direction" => leaf!(traffic_direction),
        "policy_match_type" => leaf!(policy_match_type),
        "trace_observation_point" => leaf!(trace_observation_point),
        "trace_reason" => leaf!(trace_reason),
        "file" => whole!(file),
        "ip_trace_id" => whole!(ip_trace_id),
        "drop_reason_desc" => leaf!(drop_reason_desc),
        "is_reply" => whole!(is_reply),
        "debug_capture_point" => leaf!(debug_capture_point),
        "interface" => sub!(dst.interface, src.interface, rest, {
            "index" => index, "name" => name,
        }),
        "proxy_port" => leaf!(proxy_port),
        "trace_context" => whole!(trace_context),
        "sock_xlate_point" => leaf!(sock_xlate_point),
        "socket_cookie" => leaf!(socket_cookie),
        "cgroup_id" => leaf!(cgroup_id),
        "Summary" => leaf!(summary),
        "extensions" => whole!(extensions),
        "egress_allowed_by" => whole!(egress_allowed_by),
        "ingress_allowed_by" => whole!(ingress_allowed_by),
        "egress_denied_by" => whole!(egress_denied_by),
        "ingress_denied_by" => whole!(ingress_denied_by),
        "policy_log" => leaf!(policy_log),
        "aggregate" => whole!(aggregate),
        _ => Err(()),
    }
}

fn endpoint(
    dst: &mut Option<webb_proto::flow::Endpoint>,
    src: &Option<webb_proto::flow::Endpoint>,
    rest: &[String],
) -> Result<(), ()> {
    sub!(*dst, *src, rest, {
        "ID" => id, "identity" => identity, "namespace" => namespace, "labels" => labels,
        "pod_name" => pod_name, "workloads" => workloads, "cluster_name" => cluster_name,
    })
}

/// A flow with every message field present, so validation walks every branch.
fn probe_flow() -> Flow {
    Flow {
        ethernet: Some(Default::default()),
        ip: Some(Default::default()),
        source: Some(Default::default()),
        destination: Some(Default::default()),
        l7: Some(Default::default()),
        event_type: Some(Default::default()),
        source_service: Some(Default::default()),
        destination_service: Some(Default::default()),
        interface: Some(Default::default()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webb_proto::flow::{Endpoint, Ip, Layer4, Tcp};

    fn flow() -> Flow {
        Flow {
            uuid: "u".into(),
            node_name: "n1".into(),
            summary: "TCP Flags: SYN".into(),
            verdict: 1,
            ip: Some(Ip {
                source: "198.19.0.1".into(),
                destination: "198.19.0.2".into(),
                ip_version: 1,
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: 1,
                    destination_port: 2,
                    flags: None,
                })),
            }),
            source: Some(Endpoint {
                id: 7,
                identity: 300,
                namespace: "shop".into(),
                pod_name: "web".into(),
                labels: vec!["k8s:app=web".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn mask(paths: &[&str]) -> FlowMask {
        FlowMask::new(&paths.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn only_listed_paths_are_copied() {
        let out = mask(&["uuid", "source.pod_name", "source.identity", "Summary"]).apply(&flow());
        assert_eq!(
            out,
            Flow {
                uuid: "u".into(),
                summary: "TCP Flags: SYN".into(),
                source: Some(Endpoint {
                    identity: 300,
                    pod_name: "web".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_whole_message_path_copies_the_message() {
        let f = flow();
        let out = mask(&["IP", "l4"]).apply(&f);
        assert_eq!(out.ip, f.ip);
        assert_eq!(out.l4, f.l4);
        assert!(out.source.is_none());
    }

    #[test]
    fn a_oneof_path_copies_only_the_matching_variant() {
        let f = flow();
        assert_eq!(mask(&["l4.TCP"]).apply(&f).l4, f.l4);
        assert_eq!(mask(&["l4.UDP"]).apply(&f).l4, None);
    }

    #[test]
    fn a_missing_source_message_stays_missing() {
        let out = mask(&["destination.pod_name"]).apply(&flow());
        assert!(out.destination.is_none());
    }

    #[test]
    fn the_cli_default_mask_is_accepted() {
        mask(&[
            "time",
            "verdict",
            "ethernet",
            "IP",
            "l4",
            "source.identity",
            "source.namespace",
            "source.pod_name",
            "destination.identity",
            "destination.namespace",
            "destination.pod_name",
            "Type",
            "node_name",
            "l7",
            "event_type",
            "source_service",
            "destination_service",
            "is_reply",
            "Summary",
            "ip_trace_id",
        ]);
    }

    #[test]
    fn unknown_paths_are_rejected() {
        for bad in ["nope", "source.nope", "uuid.x", "ip", "summary", ""] {
            assert!(
                FlowMask::new(&[bad.to_string()]).is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
