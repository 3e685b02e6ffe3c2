//! Sizes and durations as job files write them.
//!
//! Sizes are a byte count or a string with a `K`, `M` or `G` suffix (powers
//! of 1024). Durations are a number of seconds or a string with an `ms`, `s`,
//! `m` or `h` suffix.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// A span of time, stored with millisecond precision or finer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationValue(pub Duration);

/// An error from parsing a size or duration string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "invalid size {value:?}: expected a number of bytes, optionally with a B, K, M, G or T \
         suffix (powers of 1024), such as \"512\" or \"64M\""
    )]
    InvalidSize { value: String },
    #[error(
        "size {value:?} is too large: the maximum is {} bytes (2^63 - 1)",
        ByteSize::MAX
    )]
    SizeOverflow { value: String },
    #[error(
        "invalid duration {value:?}: expected a string with an ms, s, m or h suffix, such as \
         \"500ms\", \"1.5s\" or \"5m\", or a JSON number of seconds such as 5"
    )]
    InvalidDuration { value: String },
    #[error(
        "duration {value:?} is too long: the maximum is {}",
        DurationValue::MAX
    )]
    DurationOverflow { value: String },
    #[error("invalid duration {value:?}: must not be negative")]
    NegativeDuration { value: String },
}

impl ByteSize {
    /// The largest size: the kernel's cgroup files and the OCI runtime spec
    /// hold limits as signed 64-bit numbers.
    pub const MAX: u64 = i64::MAX as u64;

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `"128M"`, `"64k"`, `"2G"`, `"1T"`, `"512"` or `"512B"`. Suffixes
    /// are case-insensitive powers of 1024. Whitespace is not allowed, as in
    /// the JSON Schema's pattern.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let invalid = || UnitError::InvalidSize {
            value: text.to_string(),
        };
        let (digits, multiplier) = match text.char_indices().last() {
            Some((at, 'K' | 'k')) => (&text[..at], 1u64 << 10),
            Some((at, 'M' | 'm')) => (&text[..at], 1 << 20),
            Some((at, 'G' | 'g')) => (&text[..at], 1 << 30),
            Some((at, 'T' | 't')) => (&text[..at], 1 << 40),
            Some((at, 'B' | 'b')) => (&text[..at], 1),
            Some(_) => (text, 1),
            None => return Err(invalid()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let count: u64 = digits.parse().map_err(|_| UnitError::SizeOverflow {
            value: text.to_string(),
        })?;
        count
            .checked_mul(multiplier)
            .filter(|bytes| *bytes <= ByteSize::MAX)
            .map(ByteSize)
            .ok_or_else(|| UnitError::SizeOverflow {
                value: text.to_string(),
            })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ];
        for (factor, suffix) in UNITS {
            if self.0 >= factor && self.0 % factor == 0 {
                return write!(f, "{}{}", self.0 / factor, suffix);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes or a string such as \"64M\"")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ByteSize, E> {
                if value > ByteSize::MAX {
                    return Err(E::custom(UnitError::SizeOverflow {
                        value: value.to_string(),
                    }));
                }
                Ok(ByteSize(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
                u64::try_from(value)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {value}: must not be negative")))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<ByteSize, E> {
                // serde_json hands integers beyond u64 over as floats.
                if value.fract() == 0.0 && value >= ByteSize::MAX as f64 {
                    return Err(E::custom(UnitError::SizeOverflow {
                        value: value.to_string(),
                    }));
                }
                Err(E::custom(format!(
                    "invalid size {value}: must be a whole number of bytes"
                )))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<ByteSize, E> {
                ByteSize::parse(value).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size in bytes, or a string with a K, M, G or T suffix (powers of 1024).",
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": 9_223_372_036_854_775_807_i64},
                {"type": "string", "pattern": "^[0-9]+[KkMmGgTtBb]?$"}
            ]
        })
    }
}

impl DurationValue {
    /// Maximum duration, 365 days. Longer timeouts and windows mean
    /// nothing to a job, and deadlines computed from them stay far from the
    /// limits of the clock's arithmetic.
    pub const MAX: DurationValue = DurationValue(Duration::from_secs(365 * 24 * 3600));

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn from_secs(seconds: u64) -> Self {
        DurationValue(Duration::from_secs(seconds))
    }

    pub fn from_millis(millis: u64) -> Self {
        DurationValue(Duration::from_millis(millis))
    }

    /// Parses `"500ms"`, `"10s"`, `"1.5s"`, `"5m"` or `"2h"`: digits with an
    /// optional fraction, then the unit. Whitespace is not allowed, as in the
    /// JSON Schema's pattern. The fraction is converted exactly, in integers,
    /// and rounded to the nearest nanosecond.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        const NANOS_PER_SECOND: u128 = 1_000_000_000;
        // Digits of a fraction beyond this are far below a nanosecond even in
        // hours, and dropping them keeps the arithmetic within u128.
        const MAX_FRACTION_DIGITS: usize = 20;

        let invalid = || UnitError::InvalidDuration {
            value: text.to_string(),
        };
        if let Some(magnitude) = text.strip_prefix('-') {
            return Err(match Self::parse(magnitude) {
                Ok(_) => UnitError::NegativeDuration {
                    value: text.to_string(),
                },
                Err(_) => invalid(),
            });
        }
        let too_long = || UnitError::DurationOverflow {
            value: text.to_string(),
        };
        let (number, nanos_per_unit) = if let Some(rest) = text.strip_suffix("ms") {
            (rest, NANOS_PER_SECOND / 1000)
        } else if let Some(rest) = text.strip_suffix('s') {
            (rest, NANOS_PER_SECOND)
        } else if let Some(rest) = text.strip_suffix('m') {
            (rest, 60 * NANOS_PER_SECOND)
        } else if let Some(rest) = text.strip_suffix('h') {
            (rest, 3600 * NANOS_PER_SECOND)
        } else {
            return Err(invalid());
        };
        let is_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
        if !is_digits(whole) || !is_digits(fraction) {
            return Err(invalid());
        }

        let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
        let scale = 10u128.pow(fraction.len() as u32);
        let whole: u128 = whole.parse().map_err(|_| too_long())?;
        let fraction: u128 = fraction.parse().map_err(|_| invalid())?;
        let fraction_nanos = (fraction * nanos_per_unit + scale / 2) / scale;
        let nanos = whole
            .checked_mul(nanos_per_unit)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .ok_or_else(too_long)?;
        let seconds = u64::try_from(nanos / NANOS_PER_SECOND).map_err(|_| too_long())?;
        let subsec_nanos = (nanos % NANOS_PER_SECOND) as u32;
        let value = DurationValue(Duration::new(seconds, subsec_nanos));
        if value > DurationValue::MAX {
            return Err(too_long());
        }
        Ok(value)
    }
}

impl fmt::Display for DurationValue {
    /// Formats in the largest unit that represents the value exactly, so that
    /// parsing the output gives the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.subsec_nanos();
        if nanos % 1_000_000 != 0 {
            let fraction = format!("{nanos:09}");
            return write!(
                f,
                "{}.{}s",
                self.0.as_secs(),
                fraction.trim_end_matches('0')
            );
        }
        let millis = self.0.as_millis();
        if millis % 1000 != 0 {
            write!(f, "{millis}ms")
        } else if millis % 3_600_000 == 0 && millis > 0 {
            write!(f, "{}h", millis / 3_600_000)
        } else if millis % 60_000 == 0 && millis > 0 {
            write!(f, "{}m", millis / 60_000)
        } else {
            write!(f, "{}s", millis / 1000)
        }
    }
}

impl Serialize for DurationValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = DurationValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a string such as \"500ms\" or \"10s\"")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<DurationValue, E> {
                within_max(value.to_string(), DurationValue::from_secs(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<DurationValue, E> {
                let seconds = u64::try_from(value).map_err(|_| {
                    E::custom(UnitError::NegativeDuration {
                        value: value.to_string(),
                    })
                })?;
                within_max(value.to_string(), DurationValue::from_secs(seconds))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<DurationValue, E> {
                let text = short_number(value);
                if value < 0.0 {
                    return Err(E::custom(UnitError::NegativeDuration { value: text }));
                }
                // Beyond u64 seconds the conversion fails; that is far past
                // the maximum, so the error is the same as just past it.
                let duration = Duration::try_from_secs_f64(value).map_err(|_| {
                    E::custom(UnitError::DurationOverflow {
                        value: text.clone(),
                    })
                })?;
                within_max(text, DurationValue(duration))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<DurationValue, E> {
                DurationValue::parse(value).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Formats a JSON number for an error message: in exponent notation from
/// 10^15 up, so that 1e300 does not print as 301 digits.
fn short_number(value: f64) -> String {
    if value.abs() >= 1e15 {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

/// Returns `duration`, or the too-long error naming `text` beyond
/// [`DurationValue::MAX`].
fn within_max<E: de::Error>(text: String, duration: DurationValue) -> Result<DurationValue, E> {
    if duration > DurationValue::MAX {
        return Err(E::custom(UnitError::DurationOverflow { value: text }));
    }
    Ok(duration)
}

impl JsonSchema for DurationValue {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of seconds, or a string with an ms, s, m or h suffix.",
            "oneOf": [
                {"type": "number", "minimum": 0, "maximum": 31_536_000},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_suffixes_are_powers_of_1024() {
        assert_eq!(ByteSize::parse("512"), Ok(ByteSize(512)));
        assert_eq!(ByteSize::parse("512B"), Ok(ByteSize(512)));
        assert_eq!(ByteSize::parse("64k"), Ok(ByteSize(64 << 10)));
        assert_eq!(ByteSize::parse("128M"), Ok(ByteSize(128 << 20)));
        assert_eq!(ByteSize::parse("2G"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("1t"), Ok(ByteSize(1 << 40)));
        assert_eq!(ByteSize::parse("0"), Ok(ByteSize(0)));
    }

    #[test]
    fn size_rejects_malformed() {
        for text in [
            "", "M", "12X", "1.5G", "-1", " 12M", "12M ", "12 M", "12KB", "0x10", "1e3",
        ] {
            assert_eq!(
                ByteSize::parse(text),
                Err(UnitError::InvalidSize { value: text.into() }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn size_rejects_overflow() {
        assert!(matches!(
            ByteSize::parse("99999999999999999999"),
            Err(UnitError::SizeOverflow { .. })
        ));
        assert!(matches!(
            ByteSize::parse("8388608T"),
            Err(UnitError::SizeOverflow { .. })
        ));
        assert!(matches!(
            ByteSize::parse("9223372036854775808"),
            Err(UnitError::SizeOverflow { .. })
        ));
        assert_eq!(ByteSize::parse("8388607T"), Ok(ByteSize(8_388_607 << 40)));
        assert_eq!(
            ByteSize::parse("9223372036854775807"),
            Ok(ByteSize(ByteSize::MAX))
        );
    }

    #[test]
    fn size_display_round_trips() {
        for (bytes, text) in [
            (512, "512"),
            (1 << 10, "1K"),
            (3 << 20, "3M"),
            (1536, "1536"),
        ] {
            assert_eq!(ByteSize(bytes).to_string(), text);
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)));
        }
    }

    #[test]
    fn size_from_json_number_or_string() {
        let size: ByteSize = serde_json::from_str("1024").unwrap();
        assert_eq!(size, ByteSize(1024));
        let size: ByteSize = serde_json::from_str("\"4K\"").unwrap();
        assert_eq!(size, ByteSize(4096));
        let error = serde_json::from_str::<ByteSize>("-1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("must not be negative"), "{error}");
        let error = serde_json::from_str::<ByteSize>("1.5")
            .unwrap_err()
            .to_string();
        assert!(error.contains("whole number of bytes"), "{error}");
        let error = serde_json::from_str::<ByteSize>("true")
            .unwrap_err()
            .to_string();
        assert!(error.contains("a size in bytes"), "{error}");
    }

    #[test]
    fn duration_units() {
        assert_eq!(
            DurationValue::parse("500ms"),
            Ok(DurationValue::from_millis(500))
        );
        assert_eq!(
            DurationValue::parse("10s"),
            Ok(DurationValue::from_secs(10))
        );
        assert_eq!(
            DurationValue::parse("1.5s"),
            Ok(DurationValue::from_millis(1500))
        );
        assert_eq!(
            DurationValue::parse("5m"),
            Ok(DurationValue::from_secs(300))
        );
        assert_eq!(
            DurationValue::parse("2h"),
            Ok(DurationValue::from_secs(7200))
        );
        assert_eq!(DurationValue::parse("0s"), Ok(DurationValue::from_secs(0)));
        assert_eq!(
            DurationValue::parse("0.5ms"),
            Ok(DurationValue(Duration::from_micros(500)))
        );
    }

    #[test]
    fn duration_fractions_are_exact() {
        assert_eq!(
            DurationValue::parse("2.3m"),
            Ok(DurationValue::from_secs(138))
        );
        assert_eq!(
            DurationValue::parse("0.1s"),
            Ok(DurationValue::from_millis(100))
        );
        assert_eq!(
            DurationValue::parse("0.3ms"),
            Ok(DurationValue(Duration::from_micros(300)))
        );
        assert_eq!(
            DurationValue::parse("1.0000000005s"),
            Ok(DurationValue(Duration::new(1, 1)))
        );
        assert_eq!(
            DurationValue::parse("0.000000000000000000000001h"),
            Ok(DurationValue::from_secs(0))
        );
    }

    #[test]
    fn duration_rejects_overflow() {
        let too_long = format!("{}s", u128::from(u64::MAX) + 1);
        assert!(matches!(
            DurationValue::parse(&too_long),
            Err(UnitError::DurationOverflow { .. })
        ));
        assert!(matches!(
            DurationValue::parse("99999999999999999999999999999999999999999h"),
            Err(UnitError::DurationOverflow { .. })
        ));
        assert!(matches!(
            DurationValue::parse("8760.001h"),
            Err(UnitError::DurationOverflow { .. })
        ));
        assert_eq!(DurationValue::parse("8760h"), Ok(DurationValue::MAX));
        let number: Result<DurationValue, _> = serde_json::from_str("31536001");
        assert!(number.unwrap_err().to_string().contains("too long"));
    }

    #[test]
    fn duration_rejects_malformed() {
        for text in [
            "", "10", "s", ".5s", "1.s", "1..5s", "--1s", "-", "1 s", " 1s", "1d", "1m30s", "5M",
        ] {
            assert_eq!(
                DurationValue::parse(text),
                Err(UnitError::InvalidDuration { value: text.into() }),
                "{text:?}"
            );
        }
        assert_eq!(
            DurationValue::parse("-1s"),
            Err(UnitError::NegativeDuration {
                value: "-1s".into()
            })
        );
    }

    #[test]
    fn duration_display_round_trips() {
        let cases = [
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(0), "0s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(500), "0.0005s"),
            (Duration::new(3, 1), "3.000000001s"),
        ];
        for (duration, text) in cases {
            assert_eq!(DurationValue(duration).to_string(), text);
            assert_eq!(
                DurationValue::parse(text),
                Ok(DurationValue(duration)),
                "{text}"
            );
        }
    }

    #[test]
    fn duration_from_json_number_or_string() {
        let value: DurationValue = serde_json::from_str("3").unwrap();
        assert_eq!(value, DurationValue::from_secs(3));
        let value: DurationValue = serde_json::from_str("0.25").unwrap();
        assert_eq!(value, DurationValue::from_millis(250));
        let value: DurationValue = serde_json::from_str("\"250ms\"").unwrap();
        assert_eq!(value, DurationValue::from_millis(250));
        let error = serde_json::from_str::<DurationValue>("-2")
            .unwrap_err()
            .to_string();
        assert!(error.contains("must not be negative"), "{error}");
        let error = serde_json::from_str::<DurationValue>("-0.5")
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"-0.5\": must not be negative"), "{error}");
        for text in ["\"-1s\"", "\"-250ms\"", "-3"] {
            let error = serde_json::from_str::<DurationValue>(text)
                .unwrap_err()
                .to_string();
            assert!(error.contains("must not be negative"), "{text}: {error}");
        }
        // A minus sign before something that is no duration at all gets
        // the format error.
        let error = serde_json::from_str::<DurationValue>("\"-x\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected a string with"), "{error}");
    }

    #[test]
    fn duration_overflow_errors_match() {
        let too_long = |json: &str| {
            serde_json::from_str::<DurationValue>(json)
                .unwrap_err()
                .to_string()
        };
        // Within u64 seconds, past u64 seconds, and far past f64's integers.
        for (json, shown) in [
            ("31536001", "\"31536001\""),
            ("1e19", "\"1e19\""),
            ("1e20", "\"1e20\""),
            ("1e300", "\"1e300\""),
        ] {
            let error = too_long(json);
            assert!(
                error.starts_with(&format!(
                    "duration {shown} is too long: the maximum is 8760h"
                )),
                "{json}: {error}"
            );
        }
        assert!(too_long("1e300").len() < 80);
    }
}
