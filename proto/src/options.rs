//! `webb.v1.FlowsRequestOptions` in `GetFlowsRequest.extensions`: what a client asks of a Webb
//! server beyond Hubble's request.

use crate::observer::GetFlowsRequest;
use crate::webb_v1::FlowsRequestOptions;
use crate::wkt::Any;

/// The request's Webb options. A request without them (any Hubble client) gets the defaults:
/// no extras, no payload. `Err` when the extension claims to be options but does not decode.
pub fn from_request(request: &GetFlowsRequest) -> Result<FlowsRequestOptions, prost::DecodeError> {
    match request
        .extensions
        .as_ref()
        .and_then(|any| any.unpack::<FlowsRequestOptions>())
    {
        Some(decoded) => decoded,
        None => Ok(FlowsRequestOptions::default()),
    }
}

/// Puts `options` into the request's extensions (replacing what was there).
pub fn set(request: &mut GetFlowsRequest, options: &FlowsRequestOptions) {
    request.extensions = Some(Any::pack(options));
}

impl FlowsRequestOptions {
    /// Whether flows sent for this request may carry `FlowExtras` at all.
    pub fn wants_extras(&self) -> bool {
        self.include_extras || self.include_payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubble_requests_get_default_options() {
        let options = from_request(&GetFlowsRequest::default()).unwrap();
        assert_eq!(options, FlowsRequestOptions::default());
        assert!(!options.wants_extras());
    }

    #[test]
    fn options_set_on_a_request_are_read_back() {
        let mut request = GetFlowsRequest::default();
        let wanted = FlowsRequestOptions {
            include_payload: true,
            include_extras: true,
        };
        set(&mut request, &wanted);
        assert_eq!(from_request(&request).unwrap(), wanted);
    }

    #[test]
    fn undecodable_options_are_an_error() {
        let request = GetFlowsRequest {
            extensions: Some(Any {
                type_url: "type.googleapis.com/webb.v1.FlowsRequestOptions".into(),
                value: vec![0x08],
            }),
            ..Default::default()
        };
        assert!(from_request(&request).is_err());
    }
}
