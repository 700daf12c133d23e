//! A duration written the Kubernetes way (`90s`, `1m30s`, `500ms`, `2h`), as policies store it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration, written as a sequence of `<integer><unit>` with units `h`, `m`, `s`,
/// `ms` (largest first is usual but not required).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub StdDuration);

/// Why a duration string could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 90s, 1m30s, 500ms, 2h)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Duration(StdDuration::from_secs(secs))
    }

    pub fn as_std(self) -> StdDuration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        let mut total = StdDuration::ZERO;
        let mut rest = input;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(err("a number must come before each unit"));
            }
            let value: u64 = rest[..digits]
                .parse()
                .map_err(|_| err("number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let part = match &rest[..unit_len] {
                "h" => value.checked_mul(3600).map(StdDuration::from_secs),
                "m" => value.checked_mul(60).map(StdDuration::from_secs),
                "s" => Some(StdDuration::from_secs(value)),
                "ms" => Some(StdDuration::from_millis(value)),
                "" => return Err(err("a unit (h, m, s, ms) must follow each number")),
                _ => return Err(err("unknown unit")),
            };
            total = part
                .and_then(|p| total.checked_add(p))
                .ok_or_else(|| err("duration too large"))?;
            rest = &rest[unit_len..];
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    /// The shortest canonical form: `1h2m3s`, `1m30s`, `500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        let (h, rem) = (millis / 3_600_000, millis % 3_600_000);
        let (m, rem) = (rem / 60_000, rem % 60_000);
        let (s, ms) = (rem / 1000, rem % 1000);
        for (value, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
            if value > 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|h|m|s))+$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_units_and_prints_canonically() {
        let d: Duration = "1h2m3s".parse().unwrap();
        assert_eq!(d.0, StdDuration::from_secs(3723));
        assert_eq!(d.to_string(), "1h2m3s");
        assert_eq!("90s".parse::<Duration>().unwrap().to_string(), "1m30s");
        assert_eq!("1500ms".parse::<Duration>().unwrap().to_string(), "1s500ms");
        assert_eq!("0s".parse::<Duration>().unwrap().to_string(), "0s");
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        for bad in ["", "10", "s", "1x", "1.5s", "-1s", "1s2"] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let err = "10".parse::<Duration>().unwrap_err().to_string();
        assert!(err.contains("a unit"), "{err}");
    }
}
