//! FlowFilters from outside (`--allowlist`, the HTTP API's `filter=`, gRPC requests): parsing and
//! compiling any JSON must return filters or an error, never panic; compiled filters must match
//! any flow without panicking, and Hubble's list rules must hold: the same filters put in the
//! blacklist select exactly the flows they do not select in the whitelist.
#![no_main]

use std::sync::OnceLock;

use flow_filter::FlowFilters;
use libfuzzer_sys::fuzz_target;
use webb_proto::flow::Flow;
use webb_proto::json;
use webb_proto::observer::get_flows_response::ResponseTypes;

/// Realistic flows to match against: the golden lines (L3/L4 SYN, HTTP request and response with a
/// trace id, a policy drop, an IPv6 UDP verdict), also the seeds of the `flow_json` target.
fn flows() -> &'static [Flow] {
    static FLOWS: OnceLock<Vec<Flow>> = OnceLock::new();
    FLOWS.get_or_init(|| {
        [
            include_str!("../seeds/flow_json/tcp-syn.json"),
            include_str!("../seeds/flow_json/http-request.json"),
            include_str!("../seeds/flow_json/http-response-500.json"),
            include_str!("../seeds/flow_json/policy-drop.json"),
            include_str!("../seeds/flow_json/ipv6-udp-allowed.json"),
        ]
        .iter()
        .map(|line| {
            let response = json::response_from_line(line.trim()).expect("seed line parses");
            match response.response_types {
                Some(ResponseTypes::Flow(flow)) => flow,
                _ => panic!("seed line is not a flow: {line}"),
            }
        })
        .collect()
    })
}

/// Single-filter input is common (`--allowlist '{…}'`); arrays are the HTTP API's form.
fn parse(text: &str) -> Option<Vec<webb_proto::flow::FlowFilter>> {
    json::filters_from_json(text)
        .ok()
        .or_else(|| json::filter_from_json(text).ok().map(|f| vec![f]))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Some(filters) = parse(&text) else {
        return;
    };
    let allow = FlowFilters::compile(&filters, &[]);
    let deny = FlowFilters::compile(&[], &filters);
    let (allow, deny) = match (allow, deny) {
        (Ok(allow), Ok(deny)) => (allow, deny),
        (Err(a), Err(d)) => {
            assert_eq!(
                (a.field, &a.value, a.kind),
                (d.field, &d.value, d.kind),
                "the same filter fails differently in the two lists"
            );
            return;
        }
        (a, d) => panic!(
            "the same filters compile in one list only: allow {:?}, deny {:?}",
            a.err(),
            d.err()
        ),
    };
    for flow in flows() {
        let allowed = allow.matches(flow);
        let denied = !deny.matches(flow);
        if !filters.is_empty() {
            assert_eq!(
                allowed, denied,
                "whitelist and blacklist disagree on a flow for {text}"
            );
        }
    }
});
