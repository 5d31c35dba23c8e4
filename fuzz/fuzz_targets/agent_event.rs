//! Ring-buffer records from the kernel are outside bytes to the agent: a truncated or garbled
//! record must be refused with an error or decoded into some flow, never panic — and whatever
//! decodes must encode as protobuf and print as Hubble JSON.
#![no_main]

use std::sync::{Arc, Mutex};

use flow_agent::datapath::KernelDropNames;
use flow_agent::decode::{Decoder, FlowIds, WallClock};
use flow_agent::endpoints::Endpoints;
use libfuzzer_sys::fuzz_target;
use prost::Message;

static DECODER: Mutex<Option<Decoder>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = DECODER.lock().unwrap_or_else(|e| e.into_inner());
    let decoder = guard.get_or_insert_with(|| {
        Decoder::new(
            "fuzz-node",
            Arc::new(Endpoints::empty("fuzz-node")),
            Arc::new(WallClock::with_offset(0)),
            FlowIds::new("fuzz-node", 0),
            Arc::new(KernelDropNames::default()),
        )
    });
    if let Ok(record) = decoder.decode_bytes(data) {
        let flow = record.flow_for(true, true);
        let _ = flow.encode_to_vec();
        let response = webb_proto::observer::GetFlowsResponse {
            response_types: Some(
                webb_proto::observer::get_flows_response::ResponseTypes::Flow(record.flow),
            ),
            ..Default::default()
        };
        let _ = webb_proto::json::response_to_line(&response);
    }
});
