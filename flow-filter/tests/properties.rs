//! Property tests: the label-selector parser (never panics, round-trips, selects like a plain
//! model of Kubernetes + Cilium semantics) and the list algebra (a blacklist of X excludes
//! exactly what a whitelist of X includes).

mod common;

use flow_filter::FlowFilters;
use flow_filter::selector::{self, Op, Requirement};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use webb_proto::flow::{Flow, FlowFilter, TcpFlags, Verdict, layer4::Protocol};
use webb_proto::pbjson_types::BoolValue;

// ------------------------------------------------------------------------------------------
// Selector parser

const SOURCES: &[Option<&str>] = &[None, Some("k8s"), Some("container"), Some("reserved")];
const KEYS: &[&str] = &[
    "app",
    "tier",
    "io.kubernetes.pod.namespace",
    "app.kubernetes.io/name",
];
const VALUES: &[&str] = &["web", "db", "1", "20", "a.b-c_d", ""];

#[derive(Debug, Clone)]
enum ModelOp {
    Exists,
    DoesNotExist,
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone)]
struct ModelReq {
    source: Option<String>,
    key: String,
    op: ModelOp,
}

fn model_req() -> impl Strategy<Value = ModelReq> {
    let values = subsequence(
        VALUES
            .iter()
            .copied()
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>(),
        1..4,
    )
    .prop_map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
    let op = prop_oneof![
        Just(ModelOp::Exists),
        Just(ModelOp::DoesNotExist),
        values.clone().prop_map(ModelOp::In),
        values.prop_map(ModelOp::NotIn),
        select(VALUES).prop_map(|v| ModelOp::In(vec![v.to_string()])),
        select(VALUES).prop_map(|v| ModelOp::NotIn(vec![v.to_string()])),
        (0i64..30).prop_map(ModelOp::Gt),
        (0i64..30).prop_map(ModelOp::Lt),
    ];
    (select(SOURCES), select(KEYS), op).prop_map(|(s, k, op)| ModelReq {
        source: s.map(String::from),
        key: k.to_string(),
        op,
    })
}

/// Renders a requirement in one of the spellings Kubernetes accepts.
fn render(r: &ModelReq, spelling: u8, ws: &str) -> String {
    let key = match &r.source {
        Some(s) => format!("{s}:{}", r.key),
        None if spelling.is_multiple_of(3) => format!("any:{}", r.key),
        None => r.key.clone(),
    };
    match &r.op {
        ModelOp::Exists => key,
        ModelOp::DoesNotExist => format!("!{ws}{key}"),
        ModelOp::In(v) if v.len() == 1 && spelling.is_multiple_of(2) => {
            let eq = if spelling.is_multiple_of(4) {
                "=="
            } else {
                "="
            };
            format!("{key}{ws}{eq}{ws}{}", v[0])
        }
        ModelOp::NotIn(v) if v.len() == 1 && spelling.is_multiple_of(2) => {
            format!("{key}{ws}!={ws}{}", v[0])
        }
        ModelOp::In(v) => format!("{key} in{ws}({})", v.join(&format!(",{ws}"))),
        ModelOp::NotIn(v) => format!("{key} notin{ws}({})", v.join(&format!(",{ws}"))),
        ModelOp::Gt(n) => format!("{key}{ws}>{ws}{n}"),
        ModelOp::Lt(n) => format!("{key}{ws}<{ws}{n}"),
    }
}

fn expected(r: &ModelReq) -> Requirement {
    let op = match &r.op {
        ModelOp::Exists => Op::Exists,
        ModelOp::DoesNotExist => Op::DoesNotExist,
        // `in ()` and `=` with nothing after both mean "the empty value".
        ModelOp::In(v) => Op::In(v.clone()),
        ModelOp::NotIn(v) => Op::NotIn(v.clone()),
        ModelOp::Gt(n) => Op::Gt(*n),
        ModelOp::Lt(n) => Op::Lt(*n),
    };
    Requirement::new(r.source.clone(), r.key.clone(), op)
}

/// A flow label as `(source, key, value)`; `None` source is written without one (`unspec`).
type Label = (Option<&'static str>, &'static str, &'static str);

fn label_strategy() -> impl Strategy<Value = Vec<Label>> {
    prop::collection::vec((select(SOURCES), select(KEYS), select(VALUES)), 0..6)
}

fn label_text(l: &Label) -> String {
    let body = if l.2.is_empty() {
        l.1.to_string()
    } else {
        format!("{}={}", l.1, l.2)
    };
    match l.0 {
        Some(s) => format!("{s}:{body}"),
        None => body,
    }
}

/// Kubernetes requirement semantics over Cilium label lookup, stated on structured labels: the
/// first label with the key (and the source, when the selector names one) gives the value.
fn model_matches(r: &ModelReq, labels: &[Label]) -> bool {
    let found = labels
        .iter()
        .find(|(s, k, _)| {
            *k == r.key
                && match &r.source {
                    None => true,
                    Some(want) => s.unwrap_or("unspec") == want,
                }
        })
        .map(|l| l.2);
    match &r.op {
        ModelOp::Exists => found.is_some(),
        ModelOp::DoesNotExist => found.is_none(),
        ModelOp::In(v) => found.is_some_and(|f| v.iter().any(|x| x == f)),
        ModelOp::NotIn(v) => found.is_none_or(|f| !v.iter().any(|x| x == f)),
        ModelOp::Gt(n) => found
            .and_then(|f| f.parse::<i64>().ok())
            .is_some_and(|f| f > *n),
        ModelOp::Lt(n) => found
            .and_then(|f| f.parse::<i64>().ok())
            .is_some_and(|f| f < *n),
    }
}

proptest! {
    #[test]
    fn selector_parser_never_panics_on_any_text(s in ".{0,64}") {
        let _ = selector::parse(&s);
    }

    #[test]
    fn selector_parser_never_panics_on_selector_like_text(
        s in "[a-z0-9:./!=(), <>_-]{0,48}|(in|notin|[!=(),<>]|[a-z]{1,3}| ){0,12}"
    ) {
        let _ = selector::parse(&s);
    }

    #[test]
    fn rendered_selectors_parse_back_to_their_requirements(
        reqs in prop::collection::vec(model_req(), 0..4),
        spelling in any::<u8>(),
        ws in select(&["", " ", "  ", "\t"][..]),
    ) {
        let text = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| render(r, spelling.wrapping_add(i as u8), ws))
            .collect::<Vec<_>>()
            .join(&format!("{ws},{ws}"));
        let parsed = selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let want: Vec<_> = reqs.iter().map(expected).collect();
        prop_assert_eq!(parsed.requirements, want, "{:?}", text);
    }

    #[test]
    fn selectors_select_like_the_model(
        reqs in prop::collection::vec(model_req(), 1..3),
        labels in label_strategy(),
    ) {
        let text = reqs.iter().map(|r| render(r, 1, " ")).collect::<Vec<_>>().join(",");
        let sel = selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let texts: Vec<String> = labels.iter().map(label_text).collect();
        let want = reqs.iter().all(|r| model_matches(r, &labels));
        prop_assert_eq!(sel.matches(&texts), want, "selector {:?} on {:?}", text, texts);
    }
}

// ------------------------------------------------------------------------------------------
// List algebra over realistic filters and flows

fn filter_strategy() -> impl Strategy<Value = FlowFilter> {
    let pick = |pool: &'static [&'static str]| {
        subsequence(pool, 0..=2).prop_map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
    };
    (
        (
            subsequence(
                &[Verdict::Forwarded as i32, Verdict::Dropped as i32][..],
                0..=1,
            ),
            pick(&["tcp", "udp", "http", "dns", "icmp"]),
            pick(&["shop/", "shop/web", "default/curl", "kube-system/", "curl"]),
            pick(&["53", "5432", "8080"]),
            pick(&[
                "app=web",
                "k8s:app in (db, web)",
                "!app",
                "app!=curl",
                "reserved:world",
            ]),
            pick(&["4+", "404", "5+"]),
        ),
        (
            subsequence(&[true, false][..], 0..=1),
            pick(&["198.18.0.0/24", "2001:2::/48", "198.18.0.20"]),
            pick(&["example", "^kube"]),
            pick(&["node-*", "prod/"]),
            pick(&["*.svc.cluster.local", "api.example.com"]),
            subsequence(&[2u32, 1234, 5678][..], 0..=1),
        ),
    )
        .prop_map(
            |(
                (verdict, protocol, source_pod, destination_port, source_label, http_status_code),
                (
                    reply,
                    destination_ip,
                    dns_query,
                    node_name,
                    destination_fqdn,
                    destination_identity,
                ),
            )| {
                FlowFilter {
                    verdict,
                    protocol,
                    source_pod,
                    destination_port,
                    source_label,
                    http_status_code,
                    reply,
                    destination_ip,
                    dns_query,
                    node_name,
                    destination_fqdn,
                    destination_identity,
                    ..Default::default()
                }
            },
        )
}

fn flow_strategy() -> impl Strategy<Value = Flow> {
    (
        select(&[0usize, 1, 2, 3, 4][..]),
        any::<Option<bool>>(),
        select(&[53u32, 5432, 8080, 443][..]),
        any::<bool>(),
    )
        .prop_map(|(base, reply, port, dropped)| {
            let mut f = [
                common::tcp,
                common::http,
                common::dns,
                common::drop,
                common::icmp,
            ][base]();
            f.is_reply = reply.map(|value| BoolValue { value });
            if dropped {
                f.verdict = Verdict::Dropped as i32;
            }
            if let Some(Protocol::Tcp(t)) = f.l4.as_mut().and_then(|l| l.protocol.as_mut()) {
                t.destination_port = port;
                t.flags = Some(TcpFlags {
                    syn: true,
                    ack: port == 443,
                    ..Default::default()
                });
            }
            f
        })
}

fn one(white: &[FlowFilter], black: &[FlowFilter], f: &Flow) -> bool {
    FlowFilters::compile(white, black)
        .expect("pooled filters compile")
        .matches(f)
}

proptest! {
    #[test]
    fn blacklist_of_x_excludes_exactly_what_whitelist_of_x_includes(
        x in filter_strategy(),
        flow in flow_strategy(),
    ) {
        let x = [x];
        prop_assert_eq!(one(&x, &[], &flow), !one(&[], &x, &flow));
    }

    #[test]
    fn lists_are_or_and_the_blacklist_subtracts(
        x in filter_strategy(),
        y in filter_strategy(),
        flow in flow_strategy(),
    ) {
        let (mx, my) = (one(std::slice::from_ref(&x), &[], &flow), one(std::slice::from_ref(&y), &[], &flow));
        let both = [x.clone(), y.clone()];
        prop_assert_eq!(one(&both, &[], &flow), mx || my);
        prop_assert_eq!(one(&[], &both, &flow), !(mx || my));
        prop_assert_eq!(one(&[x], &[y], &flow), mx && !my);
    }
}

// ------------------------------------------------------------------------------------------
// Robustness: any text in any string field either compiles or is refused; nothing panics.

const STRING_FIELDS: &[&str] = &[
    "source_ip",
    "source_pod",
    "destination_ip",
    "destination_pod",
    "source_fqdn",
    "destination_fqdn",
    "http_status_code",
    "source_label",
    "destination_label",
    "protocol",
    "source_port",
    "destination_port",
    "source_service",
    "destination_service",
    "dns_query",
    "http_method",
    "http_path",
    "node_name",
    "trace_id",
    "uuid",
    "http_url",
    "source_ip_xlated",
    "node_labels",
    "source_cluster_name",
    "destination_cluster_name",
];

fn with_field(field: &str, values: Vec<String>) -> FlowFilter {
    let json = serde_json::json!({ field: values });
    serde_json::from_value(json).expect("string field")
}

proptest! {
    #[test]
    fn any_text_in_any_field_compiles_or_is_refused_by_name(
        field in select(STRING_FIELDS),
        values in prop::collection::vec(".{0,24}|[a-z0-9/.:*+()=!, -]{0,16}", 1..3),
        flow in flow_strategy(),
    ) {
        match FlowFilters::compile(&[with_field(field, values)], &[]) {
            Ok(filters) => {
                filters.matches(&flow);
            }
            Err(e) => prop_assert_eq!(e.field, field),
        }
    }

    #[test]
    fn any_url_is_matched_or_skipped_without_panicking(url in ".{0,40}|[a-z]{1,5}://[a-z.]{0,8}[/?%#a-f0-9]{0,12}") {
        let mut flow = common::http();
        if let Some(webb_proto::flow::layer7::Record::Http(h)) =
            flow.l7.as_mut().and_then(|l| l.record.as_mut())
        {
            h.url = url;
        }
        let filters = FlowFilters::compile(&[with_field("http_path", vec![".*".into()])], &[]).unwrap();
        filters.matches(&flow);
    }
}
