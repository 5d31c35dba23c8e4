//! Protobuf `GetFlowsResponse` from the wire (agents, relays, other Hubble servers): decoding any
//! bytes must return a message or an error, never panic. A decoded message must survive binary
//! re-encoding unchanged, and printing it as JSON must not panic (the relay and CLI print
//! whatever arrives) and, when it succeeds, read back as the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use webb_proto::json;
use webb_proto::observer::GetFlowsResponse;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = GetFlowsResponse::decode(data) else {
        return;
    };
    let bytes = response.encode_to_vec();
    let again = GetFlowsResponse::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("re-encoded message does not decode: {e}"));
    assert_eq!(again, response, "binary round trip changed the message");

    if let Ok(line) = json::response_to_line(&response) {
        let parsed = json::response_from_line(&line)
            .unwrap_or_else(|e| panic!("printed line does not parse: {e}\n{line}"));
        assert_eq!(
            parsed, response,
            "JSON round trip changed the message:\n{line}"
        );
    }
});
