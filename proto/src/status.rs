//! `webb.v1.StatusExtras` beside a `ServerStatus` answer: Hubble's `ServerStatusResponse` has no
//! extension point, so Webb's part travels in the binary response header [`HEADER`], which
//! Hubble's clients ignore.

use prost::Message;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::webb_v1::StatusExtras;

/// The response header carrying [`StatusExtras`] (protobuf, base64 on the wire as gRPC does
/// for every `-bin` header).
pub const HEADER: &str = "webb-status-bin";

/// Puts `extras` into a response's metadata (nothing when they are empty).
pub fn insert(metadata: &mut MetadataMap, extras: &StatusExtras) {
    if *extras != StatusExtras::default() {
        metadata.insert_bin(HEADER, MetadataValue::from_bytes(&extras.encode_to_vec()));
    }
}

/// Why a [`HEADER`] could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("{HEADER} is not base64")]
    Base64,
    #[error("{HEADER} is not a webb.v1.StatusExtras: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// The extras of a response: `None` without the header (a Hubble server, or nothing to say),
/// `Some(Err)` when the header does not decode.
pub fn read(metadata: &MetadataMap) -> Option<Result<StatusExtras, HeaderError>> {
    let value = metadata.get_bin(HEADER)?;
    Some(match value.to_bytes() {
        Ok(bytes) => StatusExtras::decode(bytes).map_err(HeaderError::from),
        Err(_) => Err(HeaderError::Base64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webb_v1::{NodePolicyStatus, PolicyLoadError};

    #[test]
    fn extras_survive_the_header_and_empty_extras_add_none() {
        let extras = StatusExtras {
            policy: vec![NodePolicyStatus {
                node: "n1".into(),
                source: "/etc/webb/policy".into(),
                revision: 3,
                policies: 2,
                error: Some(PolicyLoadError {
                    file: "/etc/webb/policy/a.yaml".into(),
                    document: 2,
                    line: 9,
                    field: "spec.ingress[0].toPorts".into(),
                    message: "unknown field".into(),
                    time: None,
                }),
                rejected: 1,
                applied: None,
            }],
        };
        let mut md = MetadataMap::new();
        insert(&mut md, &extras);
        assert_eq!(read(&md).unwrap().unwrap(), extras);

        let mut empty = MetadataMap::new();
        insert(&mut empty, &StatusExtras::default());
        assert!(read(&empty).is_none());
    }

    #[test]
    fn a_header_that_does_not_decode_is_an_error_not_a_panic() {
        let mut md = MetadataMap::new();
        md.insert_bin(HEADER, MetadataValue::from_bytes(b"\xff\xff\xff"));
        assert!(read(&md).unwrap().is_err());
    }
}
