//! Ports a probe targets: `TCP/80`, `UDP/53`, `SCTP/9000`, `ICMP`, named ports `TCP/serve-80-tcp`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP protocol a probe can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

impl Protocol {
    /// The Kubernetes spelling (`TCP`, `UDP`, `SCTP`); ICMP has none in Kubernetes.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Icmp => "ICMP",
        }
    }

    /// IANA protocol number, as carried in the IPv4 header.
    pub fn ip_number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            "ICMP" => Ok(Protocol::Icmp),
            _ => Err(format!(
                "unknown protocol `{s}`: use TCP, UDP, SCTP or ICMP{}",
                did_you_mean(s, &["TCP", "UDP", "SCTP", "ICMP"])
            )),
        }
    }
}

/// The port part of a [`PortSpec`]: a number or a named container/service port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    Number(u16),
    /// A port name (IANA_SVC_NAME: 1-15 lowercase alphanumerics or `-`), resolved on the
    /// destination pod's container ports (or, for a `svc:` peer, the Service's port names).
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

/// A protocol and port a probe targets; ICMP has no port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub protocol: Protocol,
    /// `None` only for ICMP.
    pub port: Option<PortRef>,
}

impl PortSpec {
    pub fn tcp(port: u16) -> Self {
        PortSpec {
            protocol: Protocol::Tcp,
            port: Some(PortRef::Number(port)),
        }
    }
    pub fn new(protocol: Protocol, port: u16) -> Self {
        PortSpec {
            protocol,
            port: Some(PortRef::Number(port)),
        }
    }
    pub fn icmp() -> Self {
        PortSpec {
            protocol: Protocol::Icmp,
            port: None,
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            None => write!(f, "{}", self.protocol),
            Some(p) => write!(f, "{}/{}", self.protocol, p),
        }
    }
}

/// Whether `name` is a valid Kubernetes port name (IANA_SVC_NAME).
pub fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("ICMP") {
            return Ok(PortSpec::icmp());
        }
        let (proto, port) = match s.split_once('/') {
            Some((p, port)) => (p.parse::<Protocol>()?, port),
            // A bare number means TCP, as in Kubernetes where protocol defaults to TCP.
            None if s.chars().all(|c| c.is_ascii_digit()) => (Protocol::Tcp, s),
            None => {
                return Err(format!(
                    "bad port `{s}`: write PROTOCOL/PORT such as TCP/80, UDP/53, SCTP/9000, TCP/serve-80-tcp, or ICMP"
                ));
            }
        };
        if proto == Protocol::Icmp {
            return Err(format!("bad port `{s}`: ICMP has no port, write just ICMP"));
        }
        if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() {
            match port.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(PortSpec {
                    protocol: proto,
                    port: Some(PortRef::Number(n as u16)),
                }),
                _ => Err(format!("port {port} is out of range: ports are 1-65535")),
            }
        } else if is_port_name(port) {
            Ok(PortSpec {
                protocol: proto,
                port: Some(PortRef::Name(port.to_string())),
            })
        } else {
            Err(format!(
                "bad port `{port}` in `{s}`: a port is a number 1-65535 or a port name (lowercase letters, digits and -)"
            ))
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = crate::StringOrNumber::deserialize(d)?;
        raw.0.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for PortSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortSpec".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "PROTOCOL/PORT: TCP/80, UDP/53, SCTP/9000, a named port such as TCP/serve-80-tcp, or ICMP. A bare number means TCP.",
            "anyOf": [
                {"type": "string", "pattern": "^((?i:TCP|UDP|SCTP)/([0-9]{1,5}|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)|(?i:ICMP)|[0-9]{1,5})$"},
                {"type": "integer", "minimum": 1, "maximum": 65535}
            ]
        })
    }
}

/// ` (did you mean `x`?)` when a candidate is close to `input`, else the empty string.
pub fn did_you_mean(input: &str, candidates: &[&str]) -> String {
    let lower = input.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("TCP/80".parse::<PortSpec>().unwrap(), PortSpec::tcp(80));
        assert_eq!(
            "udp/53".parse::<PortSpec>().unwrap(),
            PortSpec::new(Protocol::Udp, 53)
        );
        assert_eq!("80".parse::<PortSpec>().unwrap(), PortSpec::tcp(80));
        assert_eq!("ICMP".parse::<PortSpec>().unwrap(), PortSpec::icmp());
        let named: PortSpec = "TCP/serve-80-tcp".parse().unwrap();
        assert_eq!(named.port, Some(PortRef::Name("serve-80-tcp".into())));
        assert_eq!(named.to_string(), "TCP/serve-80-tcp");
    }

    #[test]
    fn rejects_with_a_hint() {
        assert!(
            "TCP/70000"
                .parse::<PortSpec>()
                .unwrap_err()
                .contains("1-65535")
        );
        assert!("TCP/0".parse::<PortSpec>().unwrap_err().contains("1-65535"));
        assert!(
            "TPC/80"
                .parse::<PortSpec>()
                .unwrap_err()
                .contains("did you mean `TCP`")
        );
        assert!("ICMP/8".parse::<PortSpec>().is_err());
        assert!("TCP/Bad_Name".parse::<PortSpec>().is_err());
        assert!("http".parse::<PortSpec>().is_err());
    }
}
