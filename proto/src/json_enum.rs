//! Enum values this build does not know (e.g. a drop reason added by a newer datapath): Go's
//! protojson prints them as numbers and reads numbers back, and so do we, instead of failing
//! the whole message as pbjson's generated code would. `build.rs` points the generated code
//! here.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, Visitor};
use serde::{Serialize, Serializer};

/// An enum value: its name when known, otherwise its number.
pub(crate) struct Open<E>(Result<E, i32>);

impl<E: TryFrom<i32>> Open<E> {
    pub(crate) fn new(value: i32) -> Self {
        Self(E::try_from(value).map_err(|_| value))
    }
}

impl<E: Serialize> Serialize for Open<E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(known) => known.serialize(serializer),
            Err(number) => serializer.serialize_i32(*number),
        }
    }
}

/// An enum field read from its name or from any int32 number.
pub(crate) struct OpenDe<E>(pub i32, PhantomData<E>);

impl<'de, E> Deserialize<'de> for OpenDe<E>
where
    E: Deserialize<'de> + Into<i32>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OpenVisitor<E>(PhantomData<E>);
        impl<'de, E: Deserialize<'de> + Into<i32>> Visitor<'de> for OpenVisitor<E> {
            type Value = i32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum value name or number")
            }
            fn visit_str<Er: de::Error>(self, v: &str) -> Result<i32, Er> {
                E::deserialize(v.into_deserializer()).map(Into::into)
            }
            fn visit_i64<Er: de::Error>(self, v: i64) -> Result<i32, Er> {
                i32::try_from(v)
                    .map_err(|_| Er::invalid_value(de::Unexpected::Signed(v), &"an int32"))
            }
            fn visit_u64<Er: de::Error>(self, v: u64) -> Result<i32, Er> {
                i32::try_from(v)
                    .map_err(|_| Er::invalid_value(de::Unexpected::Unsigned(v), &"an int32"))
            }
        }
        deserializer
            .deserialize_any(OpenVisitor::<E>(PhantomData))
            .map(|n| OpenDe(n, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use crate::flow::{Flow, FlowFilter, Verdict};

    #[test]
    fn unknown_enum_values_print_as_numbers_like_go() {
        let flow = Flow {
            verdict: 99,
            drop_reason_desc: 250,
            ..Default::default()
        };
        let text = serde_json::to_string(&flow).unwrap();
        assert_eq!(text, r#"{"verdict":99,"drop_reason_desc":250}"#);
        let filter = FlowFilter {
            verdict: vec![Verdict::Dropped as i32, 42],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&filter).unwrap(),
            r#"{"verdict":["DROPPED",42]}"#
        );
    }

    #[test]
    fn enum_numbers_and_names_are_read_like_go() {
        let flow: Flow = serde_json::from_str(r#"{"verdict":99,"Type":"L7"}"#).unwrap();
        assert_eq!((flow.verdict, flow.r#type), (99, 2));
        let filter: FlowFilter = serde_json::from_str(r#"{"verdict":["DROPPED",42,1]}"#).unwrap();
        assert_eq!(filter.verdict, [2, 42, 1]);
        let err = serde_json::from_str::<Flow>(r#"{"verdict":"SOMETIMES"}"#).unwrap_err();
        assert!(err.to_string().contains("SOMETIMES"), "{err}");
        assert!(serde_json::from_str::<Flow>(r#"{"verdict":4294967296}"#).is_err());
    }
}
