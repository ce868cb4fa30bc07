//! Durations written the Go/Kubernetes way: `500ms`, `5s`, `2m`, `1m30s`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration such as `5s` or `200ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint =
            || format!("bad duration `{s}`: write a number with a unit, e.g. 500ms, 5s, 2m, 1m30s");
        let t = s.trim();
        if t.is_empty() {
            return Err(hint());
        }
        if t == "0" {
            return Ok(HumanDuration(Duration::ZERO));
        }
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(hint)?;
            if digits == 0 {
                return Err(hint());
            }
            let value: f64 = rest[..digits].parse().map_err(|_| hint())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let secs = match unit {
                "ms" => value / 1000.0,
                "s" => value,
                "m" => value * 60.0,
                "h" => value * 3600.0,
                _ => return Err(hint()),
            };
            if !secs.is_finite() || secs > 86_400.0 * 7.0 {
                return Err(format!("duration `{s}` is too long: at most a week"));
            }
            total += Duration::from_secs_f64(secs);
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = crate::StringOrNumber::deserialize(d)?;
        raw.0.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: 500ms, 5s, 2m, 1m30s.",
            "type": "string",
            "pattern": "^(0|([0-9]+(\\.[0-9]+)?(ms|s|m|h))+)$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(
            "5s".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(5)
        );
        assert_eq!(
            "200ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(200)
        );
        assert_eq!(
            "1m30s".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(90)
        );
        assert!("5".parse::<HumanDuration>().is_err());
        assert!("5x".parse::<HumanDuration>().is_err());
        assert!("".parse::<HumanDuration>().is_err());
        assert!("1000000h".parse::<HumanDuration>().is_err());
    }
}
