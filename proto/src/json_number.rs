//! Reading protojson numbers, which may be JSON numbers or strings (`"latency_ns":"51000000"`).
//!
//! Replaces `pbjson::private::NumberDeserialize` in the generated code (see `build.rs`): that
//! one goes through an untagged enum, which buffers every value and builds (and throws away)
//! an error string for each plain JSON number — about a tenth of the time of parsing a flow.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A number read from a JSON number or a string holding one.
pub(crate) struct NumberDeserialize<T>(pub T);

/// The protobuf scalar types protojson reads as numbers.
pub(crate) trait JsonNumber: FromStr + Sized {
    const NAME: &'static str;
    fn from_u64(v: u64) -> Option<Self>;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl JsonNumber for $t {
            const NAME: &'static str = stringify!($t);
            fn from_u64(v: u64) -> Option<Self> {
                Self::try_from(v).ok()
            }
            fn from_i64(v: i64) -> Option<Self> {
                Self::try_from(v).ok()
            }
            // protojson accepts an integral float (e.g. 1e3) for an integer field.
            fn from_f64(v: f64) -> Option<Self> {
                let fits = v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64;
                fits.then_some(v as $t)
            }
        }
    )*};
}
integer!(i32, i64, u32, u64);

macro_rules! float {
    ($($t:ty),*) => {$(
        impl JsonNumber for $t {
            const NAME: &'static str = stringify!($t);
            fn from_u64(v: u64) -> Option<Self> {
                Some(v as $t)
            }
            fn from_i64(v: i64) -> Option<Self> {
                Some(v as $t)
            }
            fn from_f64(v: f64) -> Option<Self> {
                Some(v as $t)
            }
        }
    )*};
}
float!(f32, f64);

struct NumberVisitor<T>(PhantomData<T>);

impl<T: JsonNumber> NumberVisitor<T> {
    fn out_of_range<E: de::Error>(shown: impl fmt::Display) -> E {
        E::custom(format_args!("{shown} is not a valid {}", T::NAME))
    }
}

impl<T: JsonNumber> Visitor<'_> for NumberVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} as a JSON number or string", T::NAME)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_u64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_i64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_f64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse()
            .map_err(|_| Self::out_of_range(format_args!("{v:?}")))
    }
}

impl<'de, T: JsonNumber> Deserialize<'de> for NumberDeserialize<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(NumberVisitor(PhantomData))
            .map(NumberDeserialize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: JsonNumber>(json: &str) -> Result<T, String> {
        serde_json::from_str::<NumberDeserialize<T>>(json)
            .map(|n| n.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_and_numeric_strings_are_accepted() {
        assert_eq!(read::<u64>("\"18446744073709551615\""), Ok(u64::MAX));
        assert_eq!(read::<u32>("8080"), Ok(8080));
        assert_eq!(read::<i32>("-3"), Ok(-3));
        assert_eq!(read::<i64>("\"-3\""), Ok(-3));
        assert_eq!(read::<u32>("1e3"), Ok(1000));
        assert_eq!(read::<f64>("\"1.5\""), Ok(1.5));
        assert_eq!(read::<f64>("2"), Ok(2.0));
    }

    #[test]
    fn out_of_range_and_non_numbers_are_errors_naming_the_value() {
        assert!(
            read::<u32>("4294967296")
                .unwrap_err()
                .contains("4294967296")
        );
        assert!(read::<u64>("\"-1\"").unwrap_err().contains("\"-1\""));
        assert!(read::<u32>("1.5").unwrap_err().contains("1.5"));
        assert!(read::<i32>("true").is_err());
        assert!(
            read::<u32>("\"x\"")
                .unwrap_err()
                .contains("not a valid u32")
        );
    }
}
