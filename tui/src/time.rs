//! Times as `hubble observe` reads and prints them.
//!
//! Reading (`--since`/`--until`): a relative duration in the past (`3s`, `5m`, `1h30m`) or an
//! absolute time in one of Hubble's layouts (`2026-11-27`, `2026-11-27T23Z`,
//! `2026-11-27T23:04Z`, RFC 3339 with any fraction, RFC 1123 with numeric zone).
//! Printing (`--time-format`): Go layouts by name, always in UTC as Hubble prints protobuf
//! timestamps; the default `StampMilli` is `Nov 27 23:00:00.123`.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use thiserror::Error;
use webb_proto::Timestamp;

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "cannot read {input:?} as a time: expected a duration in the past (e.g. 30s, 5m, 1h30m) \
     or a date/time such as 2026-11-27, 2026-11-27T23:04Z, 2026-11-27T23:04:05Z (RFC 3339) \
     or 'Fri, 27 Nov 2026 23:04:05 +0000'"
)]
pub struct TimeParseError {
    pub input: String,
}

/// Parses a `--since`/`--until` value relative to `now`.
pub fn parse_time(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeParseError> {
    let err = || TimeParseError {
        input: input.to_string(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let d = chrono::Duration::from_std(d).map_err(|_| err())?;
        return now.checked_sub_signed(d).ok_or_else(err);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).ok_or_else(err)?;
        return Ok(Utc.from_utc_datetime(&t));
    }
    // Hour and minute granularity with a zone: 2026-11-27T23Z, 2026-11-27T23:04+01:00.
    let zoned = match s.strip_suffix('Z') {
        Some(rest) => format!("{rest}+00:00"),
        None => s.to_string(),
    };
    for layout in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H%:z"] {
        if let Ok(t) = parse_partial(&zoned, layout) {
            return Ok(t);
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%a, %d %b %Y %H:%M:%S %z") {
        return Ok(t.with_timezone(&Utc));
    }
    Err(err())
}

fn parse_partial(s: &str, layout: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    // chrono wants seconds to build a DateTime; supply the missing fields.
    let (full, full_layout) = if layout.contains("%M") {
        (insert_before_zone(s, ":00"), "%Y-%m-%dT%H:%M:%S%:z")
    } else {
        (insert_before_zone(s, ":00:00"), "%Y-%m-%dT%H:%M:%S%:z")
    };
    DateTime::parse_from_str(&full, full_layout).map(|t| t.with_timezone(&Utc))
}

fn insert_before_zone(s: &str, fill: &str) -> String {
    match s.rfind(['+', '-']) {
        Some(i) if i > 10 => format!("{}{}{}", &s[..i], fill, &s[i..]),
        _ => s.to_string(),
    }
}

/// The layouts `--time-format` accepts (case-insensitive names, as Hubble).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    #[default]
    StampMilli,
    YearMonthDay,
    YearMonthDayHour,
    YearMonthDayHourMinute,
    Rfc3339,
    Rfc3339Milli,
    Rfc3339Micro,
    Rfc3339Nano,
    Rfc1123Z,
}

impl TimeFormat {
    pub const NAMES: &'static [&'static str] = &[
        "StampMilli",
        "YearMonthDay",
        "YearMonthDayHour",
        "YearMonthDayHourMinute",
        "RFC3339",
        "RFC3339Milli",
        "RFC3339Micro",
        "RFC3339Nano",
        "RFC1123Z",
    ];

    /// Hubble falls back to StampMilli for names it does not know; so do we.
    pub fn from_name(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "yearmonthday" => Self::YearMonthDay,
            "yearmonthdayhour" => Self::YearMonthDayHour,
            "yearmonthdayhourminute" => Self::YearMonthDayHourMinute,
            "rfc3339" => Self::Rfc3339,
            "rfc3339milli" => Self::Rfc3339Milli,
            "rfc3339micro" => Self::Rfc3339Micro,
            "rfc3339nano" => Self::Rfc3339Nano,
            "rfc1123z" => Self::Rfc1123Z,
            _ => Self::StampMilli,
        }
    }

    pub fn format(self, t: DateTime<Utc>) -> String {
        match self {
            Self::StampMilli => t.format("%b %e %H:%M:%S%.3f").to_string(),
            Self::YearMonthDay => t.format("%Y-%m-%d").to_string(),
            Self::YearMonthDayHour => t.format("%Y-%m-%dT%HZ").to_string(),
            Self::YearMonthDayHourMinute => t.format("%Y-%m-%dT%H:%MZ").to_string(),
            Self::Rfc3339 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            Self::Rfc3339Milli => trimmed_fraction(t, 3),
            Self::Rfc3339Micro => trimmed_fraction(t, 6),
            Self::Rfc3339Nano => trimmed_fraction(t, 9),
            Self::Rfc1123Z => t.format("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        }
    }

    /// Formats a protobuf timestamp; absent or out-of-range prints `N/A` as Hubble does.
    pub fn format_ts(self, ts: Option<&Timestamp>) -> String {
        match ts.and_then(to_datetime) {
            Some(t) => self.format(t),
            None => "N/A".to_string(),
        }
    }
}

/// Go's `.999` layouts: up to `digits` fractional digits, trailing zeros (and the dot) dropped.
fn trimmed_fraction(t: DateTime<Utc>, digits: u32) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = t.timestamp_subsec_nanos() / 10u32.pow(9 - digits);
    let mut f = format!("{frac:0width$}", width = digits as usize);
    while f.ends_with('0') {
        f.pop();
    }
    if f.is_empty() {
        format!("{base}Z")
    } else {
        format!("{base}.{f}Z")
    }
}

/// A protobuf timestamp as a UTC time, if valid.
pub fn to_datetime(ts: &Timestamp) -> Option<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
}

/// A UTC time as a protobuf timestamp.
pub fn to_timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Go's `time.Duration.String()` for a nanosecond count (`1m40s`, `1.5s`, `250ms`, `0s`).
pub fn go_duration(ns: u64) -> String {
    if ns > i64::MAX as u64 {
        return format!("{ns}ns");
    }
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(ns, div));
    }
    let hours = ns / 3_600_000_000_000;
    let rest = ns % 3_600_000_000_000;
    let minutes = rest / 60_000_000_000;
    let secs_ns = rest % 60_000_000_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", fraction(secs_ns, 1_000_000_000)));
    out
}

fn fraction(value: u64, div: u64) -> String {
    let whole = value / div;
    let rem = value % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = (div as f64).log10().round() as usize;
    let mut f = format!("{rem:0width$}");
    while f.ends_with('0') {
        f.pop();
    }
    format!("{whole}.{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn relative_durations_count_back_from_now() {
        let now = at("2026-11-27T23:00:00Z");
        assert_eq!(parse_time("5m", now).unwrap(), at("2026-11-27T22:55:00Z"));
        assert_eq!(parse_time("3s", now).unwrap(), at("2026-11-27T22:59:57Z"));
        assert_eq!(parse_time("1h", now).unwrap(), at("2026-11-27T22:00:00Z"));
        assert_eq!(
            parse_time("1h30m", now).unwrap(),
            at("2026-11-27T21:30:00Z")
        );
    }

    #[test]
    fn absolute_layouts_of_hubble_are_read() {
        let now = Utc::now();
        let want = at("2026-11-27T23:04:05.5Z");
        assert_eq!(parse_time("2026-11-27T23:04:05.5Z", now).unwrap(), want);
        assert_eq!(
            parse_time("2026-11-28T00:04:05.5+01:00", now).unwrap(),
            want
        );
        assert_eq!(
            parse_time("2026-11-27", now).unwrap(),
            at("2026-11-27T00:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-27T23Z", now).unwrap(),
            at("2026-11-27T23:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-27T23:04Z", now).unwrap(),
            at("2026-11-27T23:04:00Z")
        );
        assert_eq!(
            parse_time("2026-11-27T23:04-02:00", now).unwrap(),
            at("2026-11-28T01:04:00Z")
        );
        assert_eq!(
            parse_time("Fri, 27 Nov 2026 23:04:05 +0000", now).unwrap(),
            at("2026-11-27T23:04:05Z")
        );
    }

    #[test]
    fn garbage_times_are_errors_naming_the_input() {
        let e = parse_time("yesterday-ish", Utc::now()).unwrap_err();
        assert!(e.to_string().contains("\"yesterday-ish\""));
        assert!(parse_time("", Utc::now()).is_err());
    }

    #[test]
    fn formats_match_go_layouts() {
        let t = at("2026-11-05T03:04:05.120456789Z");
        assert_eq!(TimeFormat::StampMilli.format(t), "Nov  5 03:04:05.120");
        assert_eq!(TimeFormat::YearMonthDay.format(t), "2026-11-05");
        assert_eq!(TimeFormat::YearMonthDayHour.format(t), "2026-11-05T03Z");
        assert_eq!(
            TimeFormat::YearMonthDayHourMinute.format(t),
            "2026-11-05T03:04Z"
        );
        assert_eq!(TimeFormat::Rfc3339.format(t), "2026-11-05T03:04:05Z");
        assert_eq!(
            TimeFormat::Rfc3339Milli.format(t),
            "2026-11-05T03:04:05.12Z"
        );
        assert_eq!(
            TimeFormat::Rfc3339Micro.format(t),
            "2026-11-05T03:04:05.120456Z"
        );
        assert_eq!(
            TimeFormat::Rfc3339Nano.format(t),
            "2026-11-05T03:04:05.120456789Z"
        );
        assert_eq!(
            TimeFormat::Rfc1123Z.format(t),
            "Thu, 05 Nov 2026 03:04:05 +0000"
        );
        assert_eq!(
            TimeFormat::Rfc3339Milli.format(at("2026-11-05T03:04:05Z")),
            "2026-11-05T03:04:05Z"
        );
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(100_000_000_000), "1m40s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(999), "999ns");
    }
}
