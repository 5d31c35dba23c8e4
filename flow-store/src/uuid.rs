//! How a flow's `uuid` is stored: Webb's UUIDs are a per-producer prefix and that producer's
//! sequence number (flow-agent's `FlowIds`, the relay's L7 stages), and rows arrive with the
//! producers interleaved, so the text repeats except for its last digits. Files and unflushed
//! batches keep it as three columns, and table `flows` shows the `uuid` text again:
//! - `uuid_head` (dictionary): the text without its last two characters, when those are
//!   lowercase hex digits;
//! - `uuid_tail` (UInt8): the value of those two digits;
//! - `uuid_text`: the whole text of any other uuid (NULL when split).
//!
//! Measured on an hour of bench flows (1.25 M rows): 3.5 bytes/flow as plain text, 1.5 split
//! this way. Splitting off the whole 12-digit sequence number does not pay in arrival order
//! (its deltas jump between producers' counters: 3.1 bytes/flow delta-encoded), and sorting
//! rows by producer makes `time` and other columns larger than it saves.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, StringBuilder, UInt8Array};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::ScalarUDF;

use crate::schema::{SchemaError, Str};

/// The column of table `flows` (the text, as in the flow).
pub const UUID: &str = "uuid";
/// Stored columns that replace [`UUID`] in files and unflushed batches.
pub const UUID_HEAD: &str = "uuid_head";
pub const UUID_TAIL: &str = "uuid_tail";
pub const UUID_TEXT: &str = "uuid_text";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The head and tail of `uuid`, or `None` when it does not end in two lowercase hex digits
/// (then it is stored whole). `join(split(u)) == u` for every string.
pub(crate) fn split(uuid: &str) -> Option<(&str, u8)> {
    let b = uuid.as_bytes();
    let n = b.len().checked_sub(2)?;
    let tail = hex_value(b[n])? << 4 | hex_value(b[n + 1])?;
    // Two ASCII bytes end the string, so `n` is a character boundary.
    Some((&uuid[..n], tail))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the uuid of `head` and `tail` to `out`.
pub(crate) fn join_into(head: &str, tail: u8, out: &mut String) {
    out.push_str(head);
    out.push(char::from(HEX[usize::from(tail >> 4)]));
    out.push(char::from(HEX[usize::from(tail & 15)]));
}

/// The stored uuid columns of a batch, read back as text.
pub(crate) struct UuidCols<'a> {
    head: Str<'a>,
    tail: &'a UInt8Array,
    text: Str<'a>,
}

impl<'a> UuidCols<'a> {
    pub(crate) fn of(
        head: &'a dyn Array,
        tail: &'a dyn Array,
        text: &'a dyn Array,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            head: Str::of(head, UUID_HEAD)?,
            tail: tail.as_any().downcast_ref::<UInt8Array>().ok_or_else(|| {
                SchemaError::WrongType {
                    column: UUID_TAIL,
                    found: tail.data_type().clone(),
                    expected: "UInt8",
                }
            })?,
            text: Str::of(text, UUID_TEXT)?,
        })
    }

    /// Row `i`'s uuid appended to `out`; false when it has none (NULL in every column).
    pub(crate) fn push_to(&self, i: usize, out: &mut String) -> bool {
        if let Some(t) = self.text.get(i) {
            out.push_str(t);
            return true;
        }
        match (self.head.get(i), self.tail.is_valid(i)) {
            (Some(h), true) => {
                join_into(h, self.tail.value(i), out);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn string(&self, i: usize) -> String {
        let mut s = String::with_capacity(36);
        self.push_to(i, &mut s);
        s
    }

    fn array(&self, len: usize) -> ArrayRef {
        let mut b = StringBuilder::with_capacity(len, len * 36);
        let mut s = String::with_capacity(64);
        for i in 0..len {
            s.clear();
            if self.push_to(i, &mut s) {
                b.append_value(&s);
            } else {
                b.append_null();
            }
        }
        Arc::new(b.finish())
    }
}

/// `webb_uuid(uuid_head, uuid_tail, uuid_text)`: the `uuid` of table `flows`.
fn join(stored: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let [head, tail, text] = stored else {
        unreachable!("called with the three columns `join_udf` names");
    };
    let cols = UuidCols::of(head.as_ref(), tail.as_ref(), text.as_ref())
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    Ok(cols.array(rows))
}

static JOIN_UUID: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| crate::rebuilt::udf("webb_uuid", 3, join));

/// The UDF that turns the stored columns back into `uuid`.
pub(crate) fn join_udf() -> Arc<ScalarUDF> {
    JOIN_UUID.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(u: &str) -> String {
        match split(u) {
            Some((head, tail)) => {
                let mut s = String::new();
                join_into(head, tail, &mut s);
                s
            }
            None => u.to_owned(),
        }
    }

    #[test]
    fn webb_uuids_split_before_their_last_two_digits() {
        let u = "8a3f09c1-62d4-8000-8000-00000001f3a7";
        assert_eq!(split(u), Some(("8a3f09c1-62d4-8000-8000-00000001f3", 0xa7)));
    }

    #[test]
    fn other_text_is_kept_whole_and_every_string_comes_back() {
        for u in [
            "",
            "a",
            "0f",
            "uuid-2",
            "A0",
            "6F1C2A8E-1111-4000-8000-0000000000AB",
            "ünï",
            "é0f",
        ] {
            assert_eq!(round_trip(u), u);
        }
        assert_eq!(split("uuid-2"), None);
        assert_eq!(
            split("...AB"),
            None,
            "upper case is not rebuilt by the join"
        );
    }
}
