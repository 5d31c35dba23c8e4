//! Just enough of a protobuf writer for the decoder to encode a flow straight from a datapath
//! record into a reused buffer: building a `Flow` of owned strings only to encode it cost
//! most of the agent's time per record. Proto3 rules: scalar fields at their default value and
//! empty strings are not written; a message field that is present is always written, if empty.
//! The wire primitives (varints, keys) are prost's own; this adds only the proto3 default
//! rules and length-patched nested messages.

use prost::encoding::{WireType, encode_key, encode_varint};

#[inline]
pub fn varint(buf: &mut Vec<u8>, v: u64) {
    encode_varint(v, buf);
}

#[inline]
fn key(buf: &mut Vec<u8>, field: u32, wire: WireType) {
    encode_key(field, wire, buf);
}

#[inline]
pub fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, WireType::Varint);
        varint(buf, v);
    }
}

/// `int32` and enums: negative values are sign-extended to ten bytes, as protobuf says.
#[inline]
pub fn int32(buf: &mut Vec<u8>, field: u32, v: i32) {
    if v != 0 {
        key(buf, field, WireType::Varint);
        varint(buf, i64::from(v) as u64);
    }
}

#[inline]
pub fn boolean(buf: &mut Vec<u8>, field: u32, v: bool) {
    if v {
        key(buf, field, WireType::Varint);
        buf.push(1);
    }
}

#[inline]
pub fn bytes(buf: &mut Vec<u8>, field: u32, v: &[u8]) {
    if !v.is_empty() {
        key(buf, field, WireType::LengthDelimited);
        varint(buf, v.len() as u64);
        buf.extend_from_slice(v);
    }
}

/// A message field written by `body`, its length patched in afterwards (one byte reserved,
/// which fits every message the decoder writes but a long list of labels or names).
#[inline]
pub fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, WireType::LengthDelimited);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        let mut l = Vec::with_capacity(10);
        varint(&mut l, len as u64);
        buf.splice(at..at + 1, l);
    }
}

/// `int64`.
#[inline]
pub fn int64(buf: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        key(buf, field, WireType::Varint);
        varint(buf, v as u64);
    }
}

/// A message field that prost encodes (types without strings, or rare ones).
pub fn prost_message(buf: &mut Vec<u8>, field: u32, m: &impl prost::Message) {
    key(buf, field, WireType::LengthDelimited);
    varint(buf, m.encoded_len() as u64);
    m.encode_raw(buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use webb_proto::flow::{Flow, NetworkInterface};

    #[test]
    fn writes_what_prost_writes() {
        let long = "x".repeat(300);
        let want = Flow {
            drop_reason: 300,
            drop_reason_desc: -1,
            reply: true,
            node_name: long.clone(),
            interface: Some(NetworkInterface {
                index: 7,
                name: long.clone(),
            }),
            ..Default::default()
        };
        let mut buf = Vec::new();
        uint(&mut buf, 3, 300);
        bytes(&mut buf, 11, long.as_bytes());
        boolean(&mut buf, 16, true);
        int32(&mut buf, 25, -1);
        message(&mut buf, 28, |b| {
            uint(b, 1, 7);
            bytes(b, 2, long.as_bytes());
        });
        assert_eq!(Flow::decode(&buf[..]).unwrap(), want);
        assert_eq!(buf, want.encode_to_vec());
    }
}
