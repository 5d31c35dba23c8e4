//! A flow with every field Webb fills survives binary protobuf and protojson unchanged, and
//! bad JSON is rejected with an error that names the line and field.

use prost::Message;
use serde_json::{Value, json};
use webb_proto::flow::{Flow, Service};
use webb_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use webb_proto::webb_v1::FlowsRequestOptions;
use webb_proto::{extras, json, options, sample};

/// Every field Webb uses, across the sample flows, in one list of responses.
fn everything() -> Vec<GetFlowsResponse> {
    let mut drop = sample::policy_drop(5);
    extras::attach(&mut drop, Some(&sample::extras(5)));
    drop.source_service = Some(Service {
        name: "loadgen".into(),
        namespace: "tools".into(),
    });
    drop.source_names = vec!["loadgen.tools.svc.cluster.local".into()];
    drop.destination_names = vec!["pg.store.svc.cluster.local".into()];
    let flows: Vec<Flow> = vec![
        sample::tcp(0),
        sample::tcp(1),
        sample::udp6(3),
        sample::icmpv4(4),
        sample::icmpv6(14),
        drop,
        sample::http_request(6),
        sample::http_response(10),
    ];
    flows.into_iter().map(sample::response).collect()
}

#[test]
fn every_field_survives_binary_encoding() {
    for response in everything() {
        let bytes = response.encode_to_vec();
        let decoded = GetFlowsResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, response);
    }
}

#[test]
fn every_field_survives_json() {
    for response in everything() {
        let line = json::response_to_line(&response).unwrap();
        assert!(!line.contains('\n'));
        let parsed = json::response_from_line(&line).unwrap_or_else(|e| panic!("{e}\n{line}"));
        assert_eq!(parsed, response, "{line}");
    }
}

#[test]
fn json_follows_protojson_conventions() {
    let line = json::response_to_line(&sample::response(sample::http_response(10))).unwrap();
    let doc: Value = serde_json::from_str(&line).unwrap();
    let flow = &doc["flow"];
    assert_eq!(flow["Type"], "L7");
    assert_eq!(flow["verdict"], "FORWARDED");
    assert_eq!(flow["IP"]["ipVersion"], "IPv4");
    assert_eq!(flow["l7"]["type"], "RESPONSE");
    assert_eq!(
        flow["l7"]["latency_ns"], "11000000",
        "64-bit integers are strings"
    );
    assert_eq!(flow["l7"]["http"]["code"], 500);
    assert_eq!(flow["is_reply"], true, "BoolValue is a plain value");
    assert_eq!(
        flow["trace_context"]["parent"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0000000a"
    );
    assert_eq!(flow["source"]["labels"].as_array().unwrap().len(), 5);
    assert!(
        flow.get("drop_reason_desc").is_none(),
        "defaults are omitted"
    );
    assert!(flow.get("extensions").is_none());
    assert_eq!(doc["node_name"], flow["node_name"]);
    assert_eq!(doc["time"], flow["time"]);

    let unknown = json::response_to_line(&sample::response(sample::policy_drop(5))).unwrap();
    let doc: Value = serde_json::from_str(&unknown).unwrap();
    assert!(
        doc["flow"].get("is_reply").is_none(),
        "an absent BoolValue is not printed"
    );
    assert_eq!(doc["flow"]["drop_reason_desc"], "POLICY_DENIED");
}

#[test]
fn extras_print_as_protojson_any() {
    let mut flow = sample::policy_drop(5);
    extras::attach(&mut flow, Some(&sample::extras(5)));
    let line = json::response_to_line(&sample::response(flow)).unwrap();
    let doc: Value = serde_json::from_str(&line).unwrap();
    let any = &doc["flow"]["extensions"];
    assert_eq!(any["@type"], "type.googleapis.com/webb.v1.FlowExtras");
    assert_eq!(any["kernel_drop"]["name"], "SKB_DROP_REASON_NO_SOCKET");
    assert_eq!(any["kernel_drop"]["offset"], "756");
    assert_eq!(any["default_deny"]["direction"], "INGRESS");
    assert_eq!(any["loss"][1]["lost"], u64::MAX.to_string());
    // bytes are standard base64
    assert_eq!(
        any["payload"]["data"],
        "R0VUIC9pdGVtcy81IEhUVFAvMS4xDQpIb3N0OiBhcGkNCg0K"
    );
}

#[test]
fn stripped_flows_print_without_extensions() {
    let mut flow = sample::http_request(6);
    extras::attach(&mut flow, Some(&sample::extras(6)));
    assert!(extras::strip(&mut flow));
    let line = json::response_to_line(&sample::response(flow)).unwrap();
    assert!(!line.contains("extensions"), "{line}");
}

#[test]
fn request_options_survive_binary_and_json() {
    let mut request = GetFlowsRequest {
        number: 20,
        follow: true,
        ..Default::default()
    };
    let wanted = FlowsRequestOptions {
        include_payload: true,
        include_extras: true,
    };
    options::set(&mut request, &wanted);
    let decoded = GetFlowsRequest::decode(request.encode_to_vec().as_slice()).unwrap();
    assert_eq!(options::from_request(&decoded).unwrap(), wanted);

    let text = json::to_string("GetFlowsRequest", &request).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        doc["extensions"],
        json!({"@type": "type.googleapis.com/webb.v1.FlowsRequestOptions",
               "include_payload": true, "include_extras": true})
    );
    let parsed: GetFlowsRequest = json::from_str("GetFlowsRequest", &text).unwrap();
    assert_eq!(parsed, request);
}

#[test]
fn bad_json_errors_name_line_and_field() {
    let input = concat!(
        r#"{"flow":{"verdict":"FORWARDED"}}"#,
        "\n",
        r#"{"flow":{"IP":{"ipVersion":"IPv5"}}}"#,
        "\n",
        r#"{"flow":{"time":"yesterday"}}"#,
        "\n",
        r#"{"flow":{"extensions":{"@type":"type.googleapis.com/other.Thing"}}}"#,
        "\n",
        r#"{"flow":{"extensions":{"payload":{}}}}"#,
        "\n",
        r#"{"flow":{"l7":{"latency_ns":"-1"}}}"#,
        "\n",
        r#"{"flow": {"#,
        "\n",
    );
    let results: Vec<_> = json::read_response_lines(input.as_bytes()).collect();
    assert!(results[0].is_ok());
    let errors: Vec<_> = results[1..]
        .iter()
        .map(|r| r.as_ref().unwrap_err())
        .collect();
    let expectations = [
        (2, "flow.IP.ipVersion", "IPv5"),
        (3, "flow.time", "yesterday"),
        (4, "flow.extensions", "other.Thing"),
        (5, "flow.extensions", "@type"),
        (6, "flow.l7.latency_ns", "\"-1\" is not a valid u64"),
        (7, "", "EOF"),
    ];
    for (error, (line, field, mention)) in errors.iter().zip(expectations) {
        let text = error.to_string();
        assert_eq!(error.line(), Some(line), "{text}");
        assert!(error.field().starts_with(field), "{field} vs {text}");
        assert!(text.starts_with(&format!("line {line}: ")), "{text}");
        assert!(text.contains(mention), "{mention} not in {text}");
    }
}

#[test]
fn foreign_any_is_kept_in_binary_but_cannot_be_printed() {
    let mut flow = sample::tcp(0);
    flow.extensions = Some(webb_proto::Any {
        type_url: "type.googleapis.com/other.Thing".into(),
        value: vec![8, 1],
    });
    let response = sample::response(flow);
    let decoded = GetFlowsResponse::decode(response.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, response);
    let err = json::response_to_line(&response).unwrap_err();
    assert_eq!(err.field(), "flow.extensions");
    assert!(err.to_string().contains("other.Thing"), "{err}");
}
