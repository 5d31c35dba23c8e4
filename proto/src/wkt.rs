//! The well-known types whose protojson form Webb writes itself.
//!
//! All other `google.protobuf` types come from `pbjson_types`. These three differ there from
//! Go's protojson, which Hubble's tools use:
//! - `Timestamp`: Go prints RFC 3339 in UTC with `Z` and 0, 3, 6 or 9 fractional digits
//!   (`2026-11-27T23:00:00.200Z`); pbjson prints `+00:00`.
//! - `Any`: Go prints `{"@type": url, ...fields of the packed message}`; pbjson prints the raw
//!   `type_url`/`value` pair. Only types this crate knows can be printed or parsed (as in Go,
//!   which needs the type registered).
//! - `FieldMask`: Go prints one string of comma-separated lowerCamelCase paths; pbjson prints
//!   `{"paths": [...]}`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use prost::Message;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};

use crate::webb_v1::{FlowExtras, FlowsRequestOptions};

/// `google.protobuf.Timestamp`: seconds and nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Always in `0..1_000_000_000` for a valid timestamp.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range protojson accepts.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        SystemTime::now().into()
    }

    /// A timestamp `nanos` nanoseconds after the Unix epoch.
    pub fn from_unix_nanos(nanos: u64) -> Self {
        Self {
            seconds: (nanos / 1_000_000_000) as i64,
            nanos: (nanos % 1_000_000_000) as i32,
        }
    }

    /// Nanoseconds since the Unix epoch (negative before it).
    pub fn unix_nanos(&self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// The time as a UTC date, or why it cannot be one.
    pub fn to_datetime(&self) -> Result<DateTime<Utc>, TimestampError> {
        if !(0..1_000_000_000).contains(&self.nanos) {
            return Err(TimestampError::Nanos(self.nanos));
        }
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds) {
            return Err(TimestampError::OutOfRange(self.seconds));
        }
        DateTime::from_timestamp(self.seconds, self.nanos as u32)
            .ok_or(TimestampError::OutOfRange(self.seconds))
    }

    /// RFC 3339 in UTC as Go's protojson writes it: `Z`, and 0, 3, 6 or 9 fractional digits.
    pub fn to_rfc3339(&self) -> Result<String, TimestampError> {
        Ok(self
            .to_datetime()?
            .to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    /// Parses RFC 3339 (any offset, up to 9 fractional digits).
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let parsed = DateTime::parse_from_rfc3339(text)
            .map_err(|e| TimestampError::Syntax(text.to_owned(), e.to_string()))?;
        let ts = Self::from(parsed.with_timezone(&Utc));
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
            return Err(TimestampError::OutOfRange(ts.seconds));
        }
        Ok(ts)
    }
}

/// A timestamp that cannot be written or read as RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("timestamp nanos {0} is outside 0..1000000000")]
    Nanos(i32),
    #[error("timestamp seconds {0} is outside years 0001..9999")]
    OutOfRange(i64),
    #[error("timestamp {0:?} is not RFC 3339: {1}")]
    Syntax(String, String),
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        }
    }
}

impl TryFrom<Timestamp> for DateTime<Utc> {
    type Error = TimestampError;
    fn try_from(t: Timestamp) -> Result<Self, Self::Error> {
        t.to_datetime()
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            },
            Err(before) => {
                let d = before.duration();
                let mut seconds = -(d.as_secs() as i64);
                let mut nanos = -(d.subsec_nanos() as i32);
                if nanos < 0 {
                    seconds -= 1;
                    nanos += 1_000_000_000;
                }
                Self { seconds, nanos }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let nanos = Duration::from_nanos(t.nanos.clamp(0, 999_999_999) as u64);
        if t.seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(t.seconds as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + nanos
        }
    }
}

impl From<pbjson_types::Timestamp> for Timestamp {
    fn from(t: pbjson_types::Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl From<Timestamp> for pbjson_types::Timestamp {
    fn from(t: Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_rfc3339().map_err(ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TimestampVisitor)
    }
}

/// `google.protobuf.Any`: a message of another type, packed as bytes with its type URL.
#[derive(Clone, PartialEq, Eq, Hash, Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

impl Any {
    /// Packs `message` under `type.googleapis.com/<full name>`.
    pub fn pack<M: prost::Name>(message: &M) -> Self {
        Self {
            type_url: M::type_url(),
            value: message.encode_to_vec(),
        }
    }

    /// The full message name (`webb.v1.FlowExtras`): the part of the URL after the last `/`.
    pub fn type_name(&self) -> &str {
        self.type_url
            .rsplit_once('/')
            .map_or(self.type_url.as_str(), |(_, name)| name)
    }

    /// Whether this holds an `M`.
    pub fn is<M: prost::Name>(&self) -> bool {
        names::<M>(self.type_name())
    }

    /// Decodes the packed message if it is an `M`; `None` for another type.
    pub fn unpack<M: prost::Name + Default>(&self) -> Option<Result<M, prost::DecodeError>> {
        self.is::<M>().then(|| M::decode(self.value.as_slice()))
    }
}

/// Whether `full_name` is `M`'s full name, without building it: `prost::Name::full_name`
/// allocates, and the relay asks every flow whether it carries Webb's extras.
fn names<M: prost::Name>(full_name: &str) -> bool {
    if M::PACKAGE.is_empty() {
        return full_name == M::NAME;
    }
    full_name
        .strip_prefix(M::PACKAGE)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|name| name == M::NAME)
}

const TYPE_KEY: &str = "@type";

/// Decodes a known packed message into its protojson object (without `@type`).
fn known_to_json(any: &Any) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    fn object<M: Message + Default + Serialize>(
        any: &Any,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let message = M::decode(any.value.as_slice())
            .map_err(|e| format!("{} does not decode: {e}", any.type_url))?;
        match serde_json::to_value(&message) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(_) => Err(format!("{} is not printed as a JSON object", any.type_url)),
            Err(e) => Err(format!("{}: {e}", any.type_url)),
        }
    }
    match any.type_name() {
        name if names::<FlowExtras>(name) => object::<FlowExtras>(any),
        name if names::<FlowsRequestOptions>(name) => object::<FlowsRequestOptions>(any),
        _ => Err(format!(
            "google.protobuf.Any of unknown type {:?} cannot be printed as protojson",
            any.type_url
        )),
    }
}

/// Encodes the protojson fields of a known type (named by `type_url`) into an Any.
fn known_from_json(
    type_url: String,
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<Any, String> {
    fn encode<M: Message + serde::de::DeserializeOwned>(
        type_url: String,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Any, String> {
        let message: M = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| format!("in {type_url}: {e}"))?;
        Ok(Any {
            type_url,
            value: message.encode_to_vec(),
        })
    }
    let name = type_url
        .rsplit_once('/')
        .map_or(type_url.as_str(), |(_, n)| n);
    if names::<FlowExtras>(name) {
        encode::<FlowExtras>(type_url, fields)
    } else if names::<FlowsRequestOptions>(name) {
        encode::<FlowsRequestOptions>(type_url, fields)
    } else {
        Err(format!(
            "google.protobuf.Any of unknown type {type_url:?} cannot be read from protojson"
        ))
    }
}

impl Serialize for Any {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = known_to_json(self).map_err(ser::Error::custom)?;
        let mut map = serializer.serialize_map(Some(fields.len() + 1))?;
        map.serialize_entry(TYPE_KEY, &self.type_url)?;
        for (key, value) in &fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let type_url = match fields.remove(TYPE_KEY) {
            Some(serde_json::Value::String(url)) => url,
            Some(_) => {
                return Err(de::Error::custom(
                    "google.protobuf.Any: `@type` is not a string",
                ));
            }
            None => return Err(de::Error::custom("google.protobuf.Any: missing `@type`")),
        };
        known_from_json(type_url, fields).map_err(de::Error::custom)
    }
}

/// `google.protobuf.FieldMask`: the Flow paths a GetFlows client wants (e.g. `source.pod_name`).
#[derive(Clone, PartialEq, Eq, Hash, Message)]
pub struct FieldMask {
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

fn is_valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('.').all(|part| {
            let mut bytes = part.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

// Go's protojson name mapping: `pod_name` <-> `podName`.
fn json_camel_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut after_underscore = false;
    for c in path.chars() {
        if c != '_' {
            out.push(if after_underscore {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        after_underscore = c == '_';
    }
    out
}

fn json_snake_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Serialize for FieldMask {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut joined = String::new();
        for (i, path) in self.paths.iter().enumerate() {
            if !is_valid_path(path) {
                return Err(ser::Error::custom(format_args!(
                    "field mask path {path:?} is not a valid field path"
                )));
            }
            let camel = json_camel_case(path);
            // Like Go: a path JSON cannot give back unchanged (e.g. `IP`) is not printed.
            if json_snake_case(&camel) != *path {
                return Err(ser::Error::custom(format_args!(
                    "field mask path {path:?} has no reversible protojson form"
                )));
            }
            if i > 0 {
                joined.push(',');
            }
            joined.push_str(&camel);
        }
        serializer.serialize_str(&joined)
    }
}

impl<'de> Deserialize<'de> for FieldMask {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldMaskVisitor;
        impl Visitor<'_> for FieldMaskVisitor {
            type Value = FieldMask;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string of comma-separated lowerCamelCase field paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldMask, E> {
                let mut paths = Vec::new();
                for raw in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let path = json_snake_case(raw);
                    if raw.contains('_') || !is_valid_path(&path) {
                        return Err(E::custom(format_args!(
                            "field mask path {raw:?} is not a lowerCamelCase field path"
                        )));
                    }
                    paths.push(path);
                }
                Ok(FieldMask { paths })
            }
        }
        deserializer.deserialize_str(FieldMaskVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_any_knows_its_type_by_full_name_only() {
        let extras = Any::pack(&FlowExtras::default());
        assert!(extras.is::<FlowExtras>());
        assert!(!extras.is::<FlowsRequestOptions>());
        for url in [
            "type.googleapis.com/webb.v1.FlowExtrasX",
            "type.googleapis.com/webb.v1FlowExtras",
            "type.googleapis.com/v1.FlowExtras",
            "type.googleapis.com/FlowExtras",
            "",
        ] {
            let any = Any {
                type_url: url.into(),
                value: Vec::new(),
            };
            assert!(!any.is::<FlowExtras>(), "{url}");
        }
    }

    #[test]
    fn field_masks_use_go_protojson_form() {
        let mask = FieldMask {
            paths: vec!["source.pod_name".into(), "time".into(), "l7".into()],
        };
        let text = serde_json::to_string(&mask).unwrap();
        assert_eq!(text, r#""source.podName,time,l7""#);
        assert_eq!(serde_json::from_str::<FieldMask>(&text).unwrap(), mask);
        assert_eq!(
            serde_json::to_string(&FieldMask::default()).unwrap(),
            r#""""#
        );
    }

    #[test]
    fn field_mask_paths_json_cannot_carry_are_errors() {
        // Go's protojson refuses these too: `IP` would come back as `_i_p`.
        let upper = FieldMask {
            paths: vec!["IP".into()],
        };
        assert!(
            serde_json::to_string(&upper)
                .unwrap_err()
                .to_string()
                .contains("\"IP\"")
        );
        assert!(serde_json::from_str::<FieldMask>(r#""pod_name""#).is_err());
    }

    #[test]
    fn timestamps_print_like_go_protojson() {
        let cases = [
            (0, "2026-11-27T23:00:01Z"),
            (200_000_000, "2026-11-27T23:00:01.200Z"),
            (123_456_000, "2026-11-27T23:00:01.123456Z"),
            (123_456_789, "2026-11-27T23:00:01.123456789Z"),
            (1, "2026-11-27T23:00:01.000000001Z"),
        ];
        for (nanos, text) in cases {
            let ts = Timestamp {
                seconds: 1_795_820_401,
                nanos,
            };
            assert_eq!(ts.to_rfc3339().unwrap(), text);
            assert_eq!(Timestamp::parse_rfc3339(text).unwrap(), ts);
        }
    }

    #[test]
    fn timestamp_with_offset_parses_to_utc() {
        let ts = Timestamp::parse_rfc3339("2026-11-28T00:00:01+01:00").unwrap();
        assert_eq!(ts.to_rfc3339().unwrap(), "2026-11-27T23:00:01Z");
    }

    #[test]
    fn invalid_timestamps_are_errors_not_panics() {
        let bad_nanos = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(bad_nanos.to_rfc3339(), Err(TimestampError::Nanos(-1)));
        let too_late = Timestamp {
            seconds: MAX_SECONDS + 1,
            nanos: 0,
        };
        assert!(matches!(
            too_late.to_rfc3339(),
            Err(TimestampError::OutOfRange(_))
        ));
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn system_time_round_trips_before_and_after_epoch() {
        for ts in [
            Timestamp {
                seconds: 1_795_820_401,
                nanos: 5,
            },
            Timestamp {
                seconds: -2,
                nanos: 999_999_999,
            },
        ] {
            assert_eq!(Timestamp::from(SystemTime::from(ts)), ts);
        }
    }
}
