//! The ports a serving agent listens on: `TCP/80`, `UDP/80`, `SCTP/80`, `HTTP/8080`.

use std::fmt;
use std::str::FromStr;

/// How a served port answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServedProtocol {
    /// TCP: the greeting line as soon as the connection is accepted (`nc` shows it at once);
    /// an HTTP request on it still gets the greeting, not an HTTP response.
    Tcp,
    /// TCP speaking HTTP/1.1: `GET`/`HEAD` get `200 OK` with the greeting as the body and the
    /// identity in an `X-Harness-Backend` header (what an ingress proxy needs from a backend).
    Http,
    /// UDP: every datagram is answered with the greeting.
    Udp,
    /// SCTP (one-to-one style): the greeting once the association is up.
    Sctp,
}

impl ServedProtocol {
    /// The spelling in `--ports`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedProtocol::Tcp => "TCP",
            ServedProtocol::Http => "HTTP",
            ServedProtocol::Udp => "UDP",
            ServedProtocol::Sctp => "SCTP",
        }
    }

    /// The transport protocol on the wire (HTTP is TCP), in the scenario language's terms.
    pub fn transport(self) -> harness_scenario::Protocol {
        match self {
            ServedProtocol::Tcp | ServedProtocol::Http => harness_scenario::Protocol::Tcp,
            ServedProtocol::Udp => harness_scenario::Protocol::Udp,
            ServedProtocol::Sctp => harness_scenario::Protocol::Sctp,
        }
    }
}

/// One port a serving agent listens on. Port 0 asks the kernel for a free port (see
/// [`crate::ServerHandle::listening`] for the one it got).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServedPort {
    /// How the port answers.
    pub protocol: ServedProtocol,
    /// The port number.
    pub port: u16,
}

impl ServedPort {
    /// `protocol/port`.
    pub fn new(protocol: ServedProtocol, port: u16) -> Self {
        ServedPort { protocol, port }
    }
}

impl fmt::Display for ServedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol.as_str(), self.port)
    }
}

impl FromStr for ServedPort {
    type Err = String;

    /// `TCP/80`, `udp/53`, `SCTP/9000`, `HTTP/8080`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some((proto, port)) = s.split_once('/') else {
            return Err(format!(
                "{s:?} is not PROTOCOL/PORT: write it like TCP/80, UDP/80, SCTP/80 or HTTP/8080"
            ));
        };
        let protocol = match proto.to_ascii_uppercase().as_str() {
            "TCP" => ServedProtocol::Tcp,
            "HTTP" => ServedProtocol::Http,
            "UDP" => ServedProtocol::Udp,
            "SCTP" => ServedProtocol::Sctp,
            _ => {
                return Err(format!(
                    "{s:?}: unknown protocol {proto:?}: use TCP, UDP, SCTP or HTTP"
                ));
            }
        };
        let port = port.parse::<u16>().map_err(|_| {
            format!("{s:?}: {port:?} is not a port number: give 1-65535 (0 picks a free port)")
        })?;
        Ok(ServedPort { protocol, port })
    }
}

/// Parses a comma-separated list (`TCP/80,UDP/80,SCTP/80`); blanks around items are allowed.
///
/// # Errors
/// The first item that is not `PROTOCOL/PORT`, with what to write instead.
///
/// ```
/// use harness_agent::{parse_port_list, ServedPort, ServedProtocol};
/// let ports = parse_port_list("TCP/80, UDP/80,HTTP/8080").unwrap();
/// assert_eq!(ports[2], ServedPort::new(ServedProtocol::Http, 8080));
/// assert!(parse_port_list("TCP/eighty").is_err());
/// ```
pub fn parse_port_list(s: &str) -> Result<Vec<ServedPort>, String> {
    s.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let p: ServedPort = "sctp/9000".parse().unwrap();
        assert_eq!(p.to_string(), "SCTP/9000");
        assert_eq!(p.protocol.transport(), harness_scenario::Protocol::Sctp);
        assert_eq!(
            ServedProtocol::Http.transport(),
            harness_scenario::Protocol::Tcp
        );
        assert!(parse_port_list("").unwrap().is_empty());
        let e = "ICMP/0".parse::<ServedPort>().unwrap_err();
        assert!(e.contains("unknown protocol \"ICMP\""), "{e}");
        let e = "80".parse::<ServedPort>().unwrap_err();
        assert!(e.contains("write it like TCP/80"), "{e}");
        let e = "TCP/65536".parse::<ServedPort>().unwrap_err();
        assert!(e.contains("is not a port number"), "{e}");
    }
}
