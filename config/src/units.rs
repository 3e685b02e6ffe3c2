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
    #[error("invalid size {value:?}: expected bytes or a number with a K, M or G suffix")]
    InvalidSize { value: String },
    #[error("size {value:?} does not fit in 64 bits")]
    SizeOverflow { value: String },
    #[error("invalid duration {value:?}: expected a number with an ms, s, m or h suffix")]
    InvalidDuration { value: String },
}

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `"128M"`, `"64k"`, `"2G"`, `"512"` or `"512B"`.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let invalid = || UnitError::InvalidSize {
            value: text.to_string(),
        };
        let trimmed = text.trim();
        let (digits, multiplier) = match trimmed.char_indices().last() {
            Some((at, 'K' | 'k')) => (&trimmed[..at], 1u64 << 10),
            Some((at, 'M' | 'm')) => (&trimmed[..at], 1 << 20),
            Some((at, 'G' | 'g')) => (&trimmed[..at], 1 << 30),
            Some((at, 'T' | 't')) => (&trimmed[..at], 1 << 40),
            Some((at, 'B' | 'b')) => (&trimmed[..at], 1),
            Some(_) => (trimmed, 1),
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
            .map(ByteSize)
            .ok_or_else(|| UnitError::SizeOverflow {
                value: text.to_string(),
            })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [(1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
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
                Ok(ByteSize(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
                u64::try_from(value)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {value}: must not be negative")))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<ByteSize, E> {
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
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+[KkMmGgTtBb]?$"}
            ]
        })
    }
}

impl DurationValue {
    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn from_secs(seconds: u64) -> Self {
        DurationValue(Duration::from_secs(seconds))
    }

    pub fn from_millis(millis: u64) -> Self {
        DurationValue(Duration::from_millis(millis))
    }

    /// Parses `"500ms"`, `"10s"`, `"1.5s"`, `"5m"` or `"2h"`.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let invalid = || UnitError::InvalidDuration {
            value: text.to_string(),
        };
        let trimmed = text.trim();
        let (number, seconds_per_unit) = if let Some(rest) = trimmed.strip_suffix("ms") {
            (rest, 0.001)
        } else if let Some(rest) = trimmed.strip_suffix('s') {
            (rest, 1.0)
        } else if let Some(rest) = trimmed.strip_suffix('m') {
            (rest, 60.0)
        } else if let Some(rest) = trimmed.strip_suffix('h') {
            (rest, 3600.0)
        } else {
            return Err(invalid());
        };
        let valid_number = !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && number.bytes().filter(|&b| b == b'.').count() <= 1;
        if !valid_number {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        Duration::try_from_secs_f64(value * seconds_per_unit)
            .map(DurationValue)
            .map_err(|_| invalid())
    }
}

impl fmt::Display for DurationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
                Ok(DurationValue::from_secs(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<DurationValue, E> {
                u64::try_from(value)
                    .map(DurationValue::from_secs)
                    .map_err(|_| E::custom(format!("invalid duration {value}: must not be negative")))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<DurationValue, E> {
                Duration::try_from_secs_f64(value)
                    .map(DurationValue)
                    .map_err(|_| E::custom(format!("invalid duration {value}: must not be negative")))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<DurationValue, E> {
                DurationValue::parse(value).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

impl JsonSchema for DurationValue {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of seconds, or a string with an ms, s, m or h suffix.",
            "oneOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$"}
            ]
        })
    }
}
