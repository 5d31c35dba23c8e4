//! Hubble's context options: which labels describe the two ends of a flow.

use compact_str::CompactString;
use webb_proto::flow::{Endpoint, Flow, TrafficDirection};

use super::family::LabelBuf;

/// An identifier of `sourceContext`/`destinationContext` (first non-empty one wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextId {
    Identity,
    Namespace,
    Pod,
    PodShort,
    PodName,
    Dns,
    Ip,
    ReservedIdentity,
    WorkloadName,
    App,
}

impl ContextId {
    pub const ALL: [ContextId; 10] = [
        ContextId::Identity,
        ContextId::Namespace,
        ContextId::Pod,
        ContextId::PodShort,
        ContextId::PodName,
        ContextId::Dns,
        ContextId::Ip,
        ContextId::ReservedIdentity,
        ContextId::WorkloadName,
        ContextId::App,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ContextId::Identity => "identity",
            ContextId::Namespace => "namespace",
            ContextId::Pod => "pod",
            ContextId::PodShort => "pod-short",
            ContextId::PodName => "pod-name",
            ContextId::Dns => "dns",
            ContextId::Ip => "ip",
            ContextId::ReservedIdentity => "reserved-identity",
            ContextId::WorkloadName => "workload-name",
            ContextId::App => "app",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// A `labelsContext` label. Declaration order is Hubble's label order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContextLabel {
    SourceIp,
    SourcePod,
    SourceNamespace,
    SourceWorkload,
    SourceApp,
    DestinationIp,
    DestinationPod,
    DestinationNamespace,
    DestinationWorkload,
    DestinationApp,
    TrafficDirection,
}

impl ContextLabel {
    pub const ALL: [ContextLabel; 11] = [
        ContextLabel::SourceIp,
        ContextLabel::SourcePod,
        ContextLabel::SourceNamespace,
        ContextLabel::SourceWorkload,
        ContextLabel::SourceApp,
        ContextLabel::DestinationIp,
        ContextLabel::DestinationPod,
        ContextLabel::DestinationNamespace,
        ContextLabel::DestinationWorkload,
        ContextLabel::DestinationApp,
        ContextLabel::TrafficDirection,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ContextLabel::SourceIp => "source_ip",
            ContextLabel::SourcePod => "source_pod",
            ContextLabel::SourceNamespace => "source_namespace",
            ContextLabel::SourceWorkload => "source_workload",
            ContextLabel::SourceApp => "source_app",
            ContextLabel::DestinationIp => "destination_ip",
            ContextLabel::DestinationPod => "destination_pod",
            ContextLabel::DestinationNamespace => "destination_namespace",
            ContextLabel::DestinationWorkload => "destination_workload",
            ContextLabel::DestinationApp => "destination_app",
            ContextLabel::TrafficDirection => "traffic_direction",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// Parsed context options of one metric plugin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContextOptions {
    pub labels: Vec<ContextLabel>,
    pub source: Vec<ContextId>,
    pub source_egress: Vec<ContextId>,
    pub source_ingress: Vec<ContextId>,
    pub destination: Vec<ContextId>,
    pub destination_egress: Vec<ContextId>,
    pub destination_ingress: Vec<ContextId>,
}

impl ContextOptions {
    fn has_source(&self) -> bool {
        !(self.source.is_empty() && self.source_egress.is_empty() && self.source_ingress.is_empty())
    }

    fn has_destination(&self) -> bool {
        !(self.destination.is_empty()
            && self.destination_egress.is_empty()
            && self.destination_ingress.is_empty())
    }

    /// Label names in Hubble's order: labelsContext labels, then `source`, then `destination`.
    pub fn label_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.labels.iter().map(|l| l.name()).collect();
        if self.has_source() {
            names.push("source");
        }
        if self.has_destination() {
            names.push("destination");
        }
        names
    }

    /// Pushes the label values of `flow` (same order as [`Self::label_names`]). `invert` swaps
    /// source and destination (httpV2 counts response flows, which run server → client).
    pub(crate) fn push_values(&self, flow: &Flow, invert: bool, buf: &mut LabelBuf) {
        let (mut src, mut dst) = (flow.source.as_ref(), flow.destination.as_ref());
        let ip = flow.ip.as_ref();
        let (mut src_ip, mut dst_ip) = (
            ip.map_or("", |i| i.source.as_str()),
            ip.map_or("", |i| i.destination.as_str()),
        );
        if invert {
            std::mem::swap(&mut src, &mut dst);
            std::mem::swap(&mut src_ip, &mut dst_ip);
        }
        for label in &self.labels {
            match label {
                ContextLabel::SourceIp => buf.push(src_ip),
                ContextLabel::SourcePod => buf.push(src.map_or("", |e| &e.pod_name)),
                ContextLabel::SourceNamespace => buf.push(src.map_or("", |e| &e.namespace)),
                ContextLabel::SourceWorkload => buf.push(workload(src)),
                ContextLabel::SourceApp => buf.push(app(src)),
                ContextLabel::DestinationIp => buf.push(dst_ip),
                ContextLabel::DestinationPod => buf.push(dst.map_or("", |e| &e.pod_name)),
                ContextLabel::DestinationNamespace => buf.push(dst.map_or("", |e| &e.namespace)),
                ContextLabel::DestinationWorkload => buf.push(workload(dst)),
                ContextLabel::DestinationApp => buf.push(app(dst)),
                ContextLabel::TrafficDirection => buf.push(direction_label(flow)),
            }
        }
        let dir = TrafficDirection::try_from(flow.traffic_direction).ok();
        fn pick<'a>(
            dir: Option<TrafficDirection>,
            all: &'a [ContextId],
            ingress: &'a [ContextId],
            egress: &'a [ContextId],
        ) -> &'a [ContextId] {
            match dir {
                Some(TrafficDirection::Ingress) if !ingress.is_empty() => ingress,
                Some(TrafficDirection::Egress) if !egress.is_empty() => egress,
                _ => all,
            }
        }
        let mut source = CompactString::default();
        let mut destination = CompactString::default();
        if self.has_source() {
            let ids = pick(dir, &self.source, &self.source_ingress, &self.source_egress);
            source = first_non_empty(ids, flow, true);
        }
        if self.has_destination() {
            let ids = pick(
                dir,
                &self.destination,
                &self.destination_ingress,
                &self.destination_egress,
            );
            destination = first_non_empty(ids, flow, false);
        }
        if invert {
            std::mem::swap(&mut source, &mut destination);
        }
        if self.has_source() {
            buf.push_owned(source);
        }
        if self.has_destination() {
            buf.push_owned(destination);
        }
    }
}

/// `traffic_direction` label value: ingress/egress/unknown.
pub(crate) fn direction_label(flow: &Flow) -> &'static str {
    match TrafficDirection::try_from(flow.traffic_direction) {
        Ok(TrafficDirection::Ingress) => "ingress",
        Ok(TrafficDirection::Egress) => "egress",
        _ => "unknown",
    }
}

fn workload(ep: Option<&Endpoint>) -> &str {
    ep.and_then(|e| e.workloads.first()).map_or("", |w| &w.name)
}

const APP_LABELS: [&str; 3] = ["k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app="];

fn app(ep: Option<&Endpoint>) -> &str {
    let Some(ep) = ep else { return "" };
    for label in &ep.labels {
        for prefix in APP_LABELS {
            if let Some(v) = label.strip_prefix(prefix)
                && !v.is_empty()
            {
                return v;
            }
        }
    }
    ""
}

fn first_non_empty(ids: &[ContextId], flow: &Flow, source: bool) -> CompactString {
    for id in ids {
        let v = context_value(*id, flow, source);
        if !v.is_empty() {
            return v;
        }
    }
    CompactString::default()
}

fn context_value(id: ContextId, flow: &Flow, source: bool) -> CompactString {
    let ep = if source {
        flow.source.as_ref()
    } else {
        flow.destination.as_ref()
    };
    let ns = ep.map_or("", |e| e.namespace.as_str());
    let pod = ep.map_or("", |e| e.pod_name.as_str());
    let with_ns = |p: &str| {
        if ns.is_empty() {
            CompactString::from(p)
        } else {
            let mut s = CompactString::from(ns);
            s.push('/');
            s.push_str(p);
            s
        }
    };
    match id {
        ContextId::Namespace => ns.into(),
        ContextId::Identity => join(ep.map_or(&[][..], |e| &e.labels)),
        ContextId::Pod => with_ns(pod),
        ContextId::PodShort => with_ns(short_pod_name(pod)),
        ContextId::PodName => pod.into(),
        ContextId::Dns => join(if source {
            &flow.source_names
        } else {
            &flow.destination_names
        }),
        ContextId::Ip => flow
            .ip
            .as_ref()
            .map_or("", |i| {
                if source {
                    i.source.as_str()
                } else {
                    i.destination.as_str()
                }
            })
            .into(),
        ContextId::ReservedIdentity => {
            let labels = ep.map_or(&[][..], |e| &e.labels);
            if labels.iter().any(|l| l == "reserved:kube-apiserver") {
                "reserved:kube-apiserver".into()
            } else {
                labels
                    .iter()
                    .find(|l| l.starts_with("reserved:"))
                    .map_or("", |l| l.as_str())
                    .into()
            }
        }
        ContextId::WorkloadName => workload(ep).into(),
        ContextId::App => app(ep).into(),
    }
}

fn join(items: &[String]) -> CompactString {
    let mut s = CompactString::default();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
    s
}

/// Hubble's deprecated `pod-short`: drops one or two trailing `-[a-z0-9]+` segments
/// (`web-5d8f7-abcde` → `web`), keeping a non-empty prefix.
pub(crate) fn short_pod_name(name: &str) -> &str {
    let is_seg = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let mut end = name.len();
    for _ in 0..2 {
        let Some(dash) = name[..end].rfind('-') else {
            break;
        };
        if dash == 0 || !is_seg(&name[dash + 1..end]) {
            break;
        }
        end = dash;
    }
    &name[..end]
}
