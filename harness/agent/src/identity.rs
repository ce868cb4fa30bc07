//! Who a serving agent is, and the one-line greeting that tells a prober.
//!
//! Every reply of a serving agent carries a greeting line:
//!
//! ```text
//! harness-agent x/a TCP/80 from 10.32.0.4:40112
//! ```
//!
//! — the identity of the backend (`namespace/pod`), the port the connection arrived on and
//! the source address the backend saw. A prober takes the identity as the backend (which
//! pod answered after any DNAT) and the rest as evidence (SNAT shows in the source).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::ports::ServedPort;

/// The first word of every greeting.
pub const GREETING_PREFIX: &str = "harness-agent";

/// What precedes the source address in a connected probe's `detail`
/// (`x/a answered on TCP/80, saw source 10.32.0.4:40112`).
const SAW_SOURCE: &str = ", saw source ";

/// The name a serving agent answers with: `namespace/pod` by convention, any printable word.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(String);

impl Identity {
    /// The identity a pod's downward API gives (`POD_NAMESPACE` and `POD_NAME`), else the
    /// host name (in a pod, the pod's name).
    pub fn from_environment() -> Option<Identity> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(ns), Some(pod)) = (var("POD_NAMESPACE"), var("POD_NAME"))
            && let Ok(id) = format!("{ns}/{pod}").parse()
        {
            return Some(id);
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(|h| h.trim().parse().ok())
    }

    /// The identity as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Identity {
    type Err = String;

    /// Accepts a non-empty printable ASCII word of at most 253 characters.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the identity is empty: give NAMESPACE/POD, such as x/a".into());
        }
        if s.len() > 253 {
            return Err(format!(
                "the identity is {} characters long: give NAMESPACE/POD (at most 253 characters)",
                s.len()
            ));
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "the identity {s:?} contains {c:?}: give NAMESPACE/POD without spaces, such as x/a"
            ));
        }
        Ok(Identity(s.to_owned()))
    }
}

/// The greeting a serving agent sends on `port` to a peer at `peer`.
pub(crate) fn greeting(identity: &Identity, port: ServedPort, peer: SocketAddr) -> String {
    format!("{GREETING_PREFIX} {identity} {port} from {peer}\n")
}

/// What a prober read from a greeting line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Greeting {
    /// The identity of the backend.
    pub backend: String,
    /// What the backend said about the connection (`TCP/80 from 10.32.0.4:40112`).
    pub seen: String,
}

impl Greeting {
    /// The `detail` of a connected probe.
    pub fn detail(&self) -> String {
        match self.seen.split_once(" from ") {
            Some((port, source)) => {
                format!("{} answered on {port}{SAW_SOURCE}{source}", self.backend)
            }
            None if self.seen.is_empty() => format!("{} answered", self.backend),
            None => format!("{} answered: {}", self.backend, self.seen),
        }
    }
}

/// The source address a backend said it saw, from a connected probe's `detail` (as written
/// by [`Greeting::detail`]); `None` when the detail carries none.
pub(crate) fn source_in_detail(detail: &str) -> Option<SocketAddr> {
    let (_, source) = detail.rsplit_once(SAW_SOURCE)?;
    source.trim().parse().ok()
}

/// Parses a greeting line (with or without its newline); `None` if it is not one.
pub(crate) fn parse_greeting(line: &str) -> Option<Greeting> {
    let rest = line
        .trim_end_matches(['\r', '\n'])
        .strip_prefix(GREETING_PREFIX)?;
    let rest = rest.strip_prefix(' ')?;
    let (backend, seen) = rest.split_once(' ').unwrap_or((rest, ""));
    if backend.is_empty() {
        return None;
    }
    Some(Greeting {
        backend: backend.to_owned(),
        seen: seen.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ServedProtocol;

    #[test]
    fn identities() {
        assert_eq!("x/a".parse::<Identity>().unwrap().as_str(), "x/a");
        assert!(
            "x a"
                .parse::<Identity>()
                .unwrap_err()
                .contains("without spaces")
        );
        assert!("".parse::<Identity>().unwrap_err().contains("empty"));
        assert!("é".parse::<Identity>().is_err());
        assert!("a".repeat(254).parse::<Identity>().is_err());
    }

    #[test]
    fn greetings_round_trip() {
        let id: Identity = "x/a".parse().unwrap();
        let port = ServedPort::new(ServedProtocol::Udp, 81);
        let line = greeting(&id, port, "10.32.0.4:40112".parse().unwrap());
        assert_eq!(line, "harness-agent x/a UDP/81 from 10.32.0.4:40112\n");
        let g = parse_greeting(&line).unwrap();
        assert_eq!(g.backend, "x/a");
        assert_eq!(
            g.detail(),
            "x/a answered on UDP/81, saw source 10.32.0.4:40112"
        );
        assert_eq!(
            source_in_detail(&g.detail()),
            Some("10.32.0.4:40112".parse().unwrap())
        );
        assert_eq!(
            parse_greeting("harness-agent y/b\r\n").unwrap().detail(),
            "y/b answered"
        );
        assert_eq!(source_in_detail("y/b answered"), None);
        assert_eq!(
            source_in_detail("x/a answered on TCP/80, saw source nowhere"),
            None
        );
        assert_eq!(parse_greeting("harness-agent "), None);
        assert_eq!(parse_greeting("harness-agentx/a"), None);
        assert_eq!(parse_greeting("SSH-2.0-OpenSSH_9.2"), None);
    }
}
