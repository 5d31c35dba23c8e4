//! protojson lines for the CLI: thin names over `webb_proto::json` (proto field names, Go's
//! Timestamp and Any forms, errors that say which line and field).

use serde::Serialize;
use webb_proto::json::JsonError;
use webb_proto::observer::GetFlowsResponse;

/// Any message (status, node, namespace) as one line of protojson.
pub fn to_line<T: Serialize>(msg: &T) -> Result<String, JsonError> {
    webb_proto::json::to_string(std::any::type_name::<T>(), msg)
}

/// One GetFlowsResponse as `hubble observe -o json` prints it.
pub fn response_to_line(res: &GetFlowsResponse) -> Result<String, JsonError> {
    webb_proto::json::response_to_line(res)
}

/// One line of `hubble observe -o json` output (or an exporter file) back into a response.
pub fn response_from_line(line: &str) -> Result<GetFlowsResponse, JsonError> {
    webb_proto::json::response_from_line(line)
}
