//! Timestamps as the core sees them: milliseconds since the Unix epoch, handed in by the shell.
//!
//! The core never reads a clock. GitLab renders times as ISO-8601 with milliseconds
//! (`2020-01-06T17:32:02.823Z`), Bitbucket as epoch milliseconds; both come from [`Timestamp`].

use serde::{Deserialize, Serialize, Serializer};

use crate::text::push_decimal;

/// A point in time, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The time `ms` milliseconds later.
    pub fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// ISO-8601 in UTC with milliseconds, the form GitLab's API uses.
    pub fn to_iso8601(self) -> String {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        // Pushed field by field, as `{y:04}-{m:02}-…` would write it: `format!` costs the widget bytes.
        let mut out = String::with_capacity(24);
        if y < 0 {
            out.push('-');
        }
        push_decimal(&mut out, y.unsigned_abs(), if y < 0 { 3 } else { 4 });
        let (h, min, s) = ((sod / 3600) as u64, (sod % 3600 / 60) as u64, (sod % 60) as u64);
        let fields =
            [('-', m.into(), 2), ('-', d.into(), 2), ('T', h, 2), (':', min, 2), (':', s, 2), ('.', ms as u64, 3)];
        for (sep, n, width) in fields {
            out.push(sep);
            push_decimal(&mut out, n, width);
        }
        out.push('Z');
        out
    }

    /// Reads an ISO-8601 instant: `YYYY-MM-DDTHH:MM:SS`, optional fraction (milliseconds are
    /// kept), then `Z` or an offset `±HH:MM`. `None` for anything else.
    pub fn parse_iso8601(text: &str) -> Option<Self> {
        let (date, rest) = text.split_once(['T', 't'])?;
        let mut parts = date.splitn(3, '-');
        let year: i64 = digits(parts.next()?, 4)?;
        let month: i64 = digits(parts.next()?, 2)?;
        let day: i64 = digits(parts.next()?, 2)?;
        let zone_at = rest.find(['Z', 'z', '+', '-'])?;
        let (clock, zone) = rest.split_at(zone_at);
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let mut hms = hms.splitn(3, ':');
        let (h, mi, s) = (digits(hms.next()?, 2)?, digits(hms.next()?, 2)?, digits(hms.next()?, 2)?);
        let ms = if fraction.is_empty() {
            0
        } else {
            if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{fraction:0<3}");
            padded.get(..3)?.parse::<i64>().ok()?
        };
        let offset_min = match zone {
            "Z" | "z" => 0,
            _ => {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let (oh, om) = zone.get(1..)?.split_once(':')?;
                sign * (digits(oh, 2)? * 60 + digits(om, 2)?)
            }
        };
        let valid =
            (1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day) && h < 24 && mi < 60 && s < 60;
        if !valid {
            return None;
        }
        let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
        Some(Self(secs * 1000 + ms))
    }
}

/// A field of exactly `len` decimal digits.
fn digits(text: &str, len: usize) -> Option<i64> {
    if text.len() == len && text.bytes().all(|b| b.is_ascii_digit()) { text.parse().ok() } else { None }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since the epoch of a proleptic Gregorian date: the inverse of [`civil_from_days`]
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Serializes as ISO-8601 (GitLab's wire form).
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_iso8601())
    }
}

/// Converts days since the epoch to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Documented as GitLab sends it: an ISO 8601 UTC time.
#[cfg(feature = "openapi")]
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::Timestamp;

    #[test]
    fn formats_gitlab_example() {
        // 2020-01-06T17:32:02.823Z, the timestamp in GitLab's remote mirror docs.
        assert_eq!(Timestamp(1_578_331_922_823).to_iso8601(), "2020-01-06T17:32:02.823Z");
    }

    #[test]
    fn parses_iso8601_instants() {
        assert_eq!(Timestamp::parse_iso8601("2020-01-06T17:32:02.823Z"), Some(Timestamp(1_578_331_922_823)));
        assert_eq!(Timestamp::parse_iso8601("2020-01-06T18:32:02.8+01:00"), Some(Timestamp(1_578_331_922_800)));
        assert_eq!(Timestamp::parse_iso8601("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        for t in [0_i64, 951_782_400_000, 4_107_542_399_999, -86_400_000] {
            assert_eq!(Timestamp::parse_iso8601(&Timestamp(t).to_iso8601()), Some(Timestamp(t)), "{t}");
        }
        for bad in [
            "",
            "2020-01-06",
            "2020-02-30T00:00:00Z",
            "2020-01-06T24:00:00Z",
            "2020-01-06T17:32:02",
            "2020-1-06T17:32:02Z",
            "2020-01-06T17:32:02.x1Z",
        ] {
            assert_eq!(Timestamp::parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_epoch_leap_day_and_pre_epoch() {
        assert_eq!(Timestamp(0).to_iso8601(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(951_782_400_000).to_iso8601(), "2000-02-29T00:00:00.000Z");
        assert_eq!(Timestamp(-1).to_iso8601(), "1969-12-31T23:59:59.999Z");
    }
}
