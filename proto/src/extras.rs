//! `webb.v1.FlowExtras` in `Flow.extensions`: pack, unpack, and strip for plain Hubble clients.

use prost::Name;

use crate::flow::Flow;
use crate::webb_v1::FlowExtras;
use crate::wkt::Any;

/// `type.googleapis.com/webb.v1.FlowExtras`, the type URL of packed extras.
pub fn type_url() -> String {
    FlowExtras::type_url()
}

/// Packs extras for `Flow.extensions`.
pub fn pack(extras: &FlowExtras) -> Any {
    Any::pack(extras)
}

/// The extras a flow carries: `None` when `extensions` is empty or holds another type,
/// `Some(Err)` when it claims to be FlowExtras but does not decode.
pub fn unpack(flow: &Flow) -> Option<Result<FlowExtras, prost::DecodeError>> {
    flow.extensions.as_ref()?.unpack::<FlowExtras>()
}

/// Sets (or with `None`, clears) the flow's extras.
pub fn attach(flow: &mut Flow, extras: Option<&FlowExtras>) {
    flow.extensions = extras.map(pack);
}

/// Removes Webb's extras before a flow goes to a client that did not ask for them: Hubble's
/// tools fail on an Any whose type they do not know. Returns whether anything was removed.
/// Extensions of other producers are left alone.
pub fn strip(flow: &mut Flow) -> bool {
    let ours = flow
        .extensions
        .as_ref()
        .is_some_and(|any| any.is::<FlowExtras>());
    if ours {
        flow.extensions = None;
    }
    ours
}

/// Like [`strip`], but also drops the captured payload only: keeps the rest of the extras for a
/// client that asked for extras without payload. Returns whether the flow changed.
pub fn strip_payload(flow: &mut Flow) -> bool {
    match unpack(flow) {
        Some(Ok(mut extras)) if extras.payload.is_some() => {
            extras.payload = None;
            if extras == FlowExtras::default() {
                flow.extensions = None;
            } else {
                attach(flow, Some(&extras));
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webb_v1::{CapturedPayload, StageLoss};

    fn extras_with_payload() -> FlowExtras {
        FlowExtras {
            payload: Some(CapturedPayload {
                data: b"GET / HTTP/1.1\r\n".to_vec(),
                original_length: 80,
                ..Default::default()
            }),
            loss: vec![StageLoss {
                stage: "ring".into(),
                node: "vn1".into(),
                lost: 3,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn packed_extras_use_the_protojson_type_url_and_unpack_equal() {
        let extras = extras_with_payload();
        let mut flow = Flow::default();
        attach(&mut flow, Some(&extras));
        assert_eq!(
            flow.extensions.as_ref().unwrap().type_url,
            "type.googleapis.com/webb.v1.FlowExtras"
        );
        assert_eq!(unpack(&flow).unwrap().unwrap(), extras);
    }

    #[test]
    fn strip_removes_only_webb_extras() {
        let mut flow = Flow::default();
        attach(&mut flow, Some(&extras_with_payload()));
        assert!(strip(&mut flow));
        assert!(flow.extensions.is_none());

        let foreign = Any {
            type_url: "type.googleapis.com/other.Thing".into(),
            value: vec![1, 2],
        };
        flow.extensions = Some(foreign.clone());
        assert!(!strip(&mut flow));
        assert_eq!(flow.extensions, Some(foreign));
        assert!(unpack(&flow).is_none());
    }

    #[test]
    fn strip_payload_keeps_other_extras() {
        let mut flow = Flow::default();
        attach(&mut flow, Some(&extras_with_payload()));
        assert!(strip_payload(&mut flow));
        let left = unpack(&flow).unwrap().unwrap();
        assert!(left.payload.is_none());
        assert_eq!(left.loss.len(), 1);
    }

    #[test]
    fn corrupt_extras_are_an_error_not_a_panic() {
        let flow = Flow {
            extensions: Some(Any {
                type_url: type_url(),
                value: vec![0xff, 0xff, 0xff],
            }),
            ..Default::default()
        };
        assert!(unpack(&flow).unwrap().is_err());
    }
}
