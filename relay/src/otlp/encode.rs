//! Span records → one OTLP `ExportTraceServiceRequest`, one `ResourceSpans` per workload (the
//! reason Webb builds the messages itself: the SDK exporter has one resource per exporter).

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use super::exchange::{Attr, EventRecord, Kind, SpanRecord, SpanStatus, Value, Workload};

/// Instrumentation scope of every span: tells them apart from the application's own.
pub const SCOPE_NAME: &str = "webb-relay";

/// Semantic-conventions schema the attribute names follow.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";

/// Builds one export request from `spans`, grouped by resource in first-seen order.
pub fn export_request(spans: Vec<SpanRecord>) -> ExportTraceServiceRequest {
    let mut index: HashMap<Arc<Workload>, usize> = HashMap::new();
    let mut groups: Vec<(Arc<Workload>, Vec<Span>)> = Vec::new();
    for rec in spans {
        let at = *index.entry(rec.resource.clone()).or_insert_with(|| {
            groups.push((rec.resource.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(span_of(rec));
    }
    let scope = InstrumentationScope {
        name: SCOPE_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(w, spans)| ResourceSpans {
                resource: Some(resource_of(&w)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope.clone()),
                    spans,
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            })
            .collect(),
    }
}

/// The OTLP resource of a workload: `service.name` and the Kubernetes attributes known.
pub fn resource_of(w: &Workload) -> Resource {
    let mut attributes = vec![kv_str("service.name", &w.service)];
    let mut opt = |key: &str, v: &str| {
        if !v.is_empty() {
            attributes.push(kv_str(key, v));
        }
    };
    opt("k8s.namespace.name", &w.namespace);
    opt("k8s.pod.name", &w.pod);
    opt("k8s.node.name", &w.node);
    if let Some(key) = workload_key(&w.workload_kind) {
        opt(key, &w.workload);
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// `k8s.<kind>.name` for the workload kinds the conventions name.
fn workload_key(kind: &str) -> Option<&'static str> {
    Some(match kind.to_ascii_lowercase().as_str() {
        "deployment" => "k8s.deployment.name",
        "statefulset" => "k8s.statefulset.name",
        "daemonset" => "k8s.daemonset.name",
        "replicaset" => "k8s.replicaset.name",
        "job" => "k8s.job.name",
        "cronjob" => "k8s.cronjob.name",
        _ => return None,
    })
}

fn span_of(r: SpanRecord) -> Span {
    let kind = match r.kind {
        Kind::Unspecified => span::SpanKind::Unspecified,
        Kind::Internal => span::SpanKind::Internal,
        Kind::Server => span::SpanKind::Server,
        Kind::Client => span::SpanKind::Client,
    };
    let status = match r.status {
        SpanStatus::Unset => None,
        SpanStatus::Error(message) => Some(Status {
            message,
            code: status::StatusCode::Error as i32,
        }),
    };
    Span {
        trace_id: r.trace_id.to_vec(),
        span_id: r.span_id.to_vec(),
        parent_span_id: r.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: r.flags,
        name: r.name,
        kind: kind as i32,
        start_time_unix_nano: r.start_ns,
        end_time_unix_nano: r.end_ns,
        attributes: r.attributes.into_iter().map(kv).collect(),
        events: r.events.into_iter().map(event_of).collect(),
        dropped_events_count: r.dropped_events,
        status,
        ..Default::default()
    }
}

fn event_of(e: EventRecord) -> span::Event {
    span::Event {
        time_unix_nano: e.time_ns,
        name: e.name.into(),
        attributes: e.attributes.into_iter().map(kv).collect(),
        dropped_attributes_count: 0,
    }
}

fn kv(a: Attr) -> KeyValue {
    let value = match a.value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(n) => any_value::Value::IntValue(n),
    };
    KeyValue {
        key: a.key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}
