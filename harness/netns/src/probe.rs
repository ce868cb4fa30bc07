//! Real kernel sockets as probes, through the probe agent (`harness-agent`): every namespace
//! with declared ports (pods, nodes, fabric hosts) runs [`harness_agent::serve_with`], and a
//! probe batch runs [`harness_agent::probe_batch_in_flight`] — each on a dedicated OS thread
//! that entered the namespace ([`crate::sys::spawn_in`]), never on an async worker. The
//! agent's results are mapped onto [`NetVerdict`], with the backend named as the model
//! dataplane names it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use harness_agent::{
    Identity, MAX_TIMEOUT_MS, ProbeRequest, ProbeResult, ProbeResultKind, ServeOptions,
    ServedProtocol, ServerHandle,
};
use harness_scenario::Protocol;
use harness_vrouter_sim::ServedPort;
use socket2::{Domain, Socket, Type};

use crate::NetnsError;

/// One connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Destination address.
    pub to: Ipv4Addr,
    /// TCP, UDP, SCTP or ICMP (echo).
    pub protocol: Protocol,
    /// Destination port (ignored for ICMP).
    pub port: u16,
    /// How long to wait for an answer.
    pub timeout: Duration,
}

/// What a real socket observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetVerdict {
    /// Handshake completed (TCP, SCTP), a UDP reply or an echo reply arrived.
    Connected {
        /// The answering agent's identity as the model dataplane names the endpoint
        /// (`x/a`, `node n1`, a fabric host's name), when it greeted; `None` for ICMP (an
        /// echo reply names no server) and for a server that is not an agent.
        backend: Option<String>,
        /// The source address the answering agent saw (after any SNAT on the way), from its
        /// greeting.
        source: Option<SocketAddrV4>,
    },
    /// The destination said no: TCP RST, ICMP port or protocol unreachable, SCTP ABORT.
    Refused {
        /// The agent's account of it.
        detail: String,
    },
    /// A hop on the path said no: an ICMP host or network unreachable came back (or the
    /// source's own namespace had no route or ARP answer). The agent's word is `refused`.
    Unreachable {
        /// The agent's account of it.
        detail: String,
    },
    /// No answer within the timeout.
    Timeout,
    /// Anything else: the probe could not be made (a local socket error).
    Other {
        /// What happened.
        detail: String,
    },
    /// The probe could not be made here at all: this machine's kernel lacks what it needs
    /// (SCTP). Nothing was sent; the runner reports the cell Skipped with `reason`.
    Unsupported {
        /// Why, and what would make it possible.
        reason: String,
    },
}

impl NetVerdict {
    /// `connected`, `refused`, `timeout`, `other` or `unsupported`: the probe agent's result
    /// words (a refusal on the path is `refused` too).
    pub fn word(&self) -> &'static str {
        match self {
            NetVerdict::Connected { .. } => "connected",
            NetVerdict::Refused { .. } | NetVerdict::Unreachable { .. } => "refused",
            NetVerdict::Timeout => "timeout",
            NetVerdict::Other { .. } => "other",
            NetVerdict::Unsupported { .. } => "unsupported",
        }
    }

    /// Why the cell cannot be probed on this machine (turn it into Skipped), or `None` for a
    /// real observation.
    pub fn skip_reason(&self) -> Option<&str> {
        match self {
            NetVerdict::Unsupported { reason } => Some(reason),
            _ => None,
        }
    }

    /// The same word for a model verdict: connected, refused, timeout (dropped) or other
    /// (inconclusive), so the two dataplanes can be compared cell by cell.
    pub fn model_word(v: &harness_vrouter_sim::Verdict) -> &'static str {
        use harness_vrouter_sim::Verdict;
        match v {
            Verdict::Connected { .. } => "connected",
            Verdict::Refused { .. } => "refused",
            Verdict::Dropped { .. } => "timeout",
            Verdict::Inconclusive { .. } => "other",
        }
    }

    /// The agent's result as a verdict: `protocol` is the probe's (an ICMP echo reply's
    /// "backend" is an address, not an identity).
    fn from_agent(r: ProbeResult, protocol: Protocol) -> NetVerdict {
        match r.result {
            ProbeResultKind::Connected => {
                let source = match r.source_seen() {
                    Some(SocketAddr::V4(a)) => Some(a),
                    _ => None,
                };
                let backend = match protocol {
                    Protocol::Icmp => None,
                    _ => r.backend.as_deref().map(backend_name),
                };
                NetVerdict::Connected { backend, source }
            }
            ProbeResultKind::Refused if r.refused_on_the_path() => {
                NetVerdict::Unreachable { detail: r.detail }
            }
            ProbeResultKind::Refused => NetVerdict::Refused { detail: r.detail },
            ProbeResultKind::Timeout => NetVerdict::Timeout,
            ProbeResultKind::Other => NetVerdict::Other { detail: r.detail },
        }
    }
}

/// How a node's agent introduces itself: an identity is one word, and the model names a
/// node `node <name>`. No pod (`namespace/name`) or fabric host name contains a `:`.
const NODE_IDENTITY_PREFIX: &str = "node:";

/// The agent identity of a node.
pub(crate) fn node_identity(node: &str) -> String {
    format!("{NODE_IDENTITY_PREFIX}{node}")
}

/// The endpoint name the model dataplane (and so the runner) uses for the agent that greeted
/// as `identity`.
fn backend_name(identity: &str) -> String {
    match identity.strip_prefix(NODE_IDENTITY_PREFIX) {
        Some(node) => format!("node {node}"),
        None => identity.to_owned(),
    }
}

/// Starts the probe agent in namespace `ns`, answering as `identity` on `ports` (TCP, UDP,
/// and SCTP when the kernel has it; ICMP echo is the kernel's own). The sockets are bound
/// on a thread that entered `ns`; the agent answers on a thread of its own until the handle
/// is shut down or dropped. Returns once every socket is bound.
///
/// # Errors
/// `identity` is not a valid agent identity, `ns` cannot be entered, or a port cannot be
/// bound (the message names the port and the namespace).
pub(crate) fn serve_in(
    ns: &str,
    identity: &str,
    ports: &[ServedPort],
) -> Result<ServerHandle, NetnsError> {
    let id: Identity = identity.parse().map_err(|e| {
        NetnsError::Unsupported(format!(
            "{identity:?} cannot answer probes as a probe agent: {e}"
        ))
    })?;
    let served: Vec<harness_agent::ServedPort> = ports
        .iter()
        .filter_map(|p| {
            let protocol = match p.protocol {
                Protocol::Tcp => ServedProtocol::Tcp,
                Protocol::Udp => ServedProtocol::Udp,
                Protocol::Sctp => ServedProtocol::Sctp,
                Protocol::Icmp => return None,
            };
            Some(harness_agent::ServedPort::new(protocol, p.port))
        })
        .collect();
    let server = crate::sys::in_netns(ns, move || {
        harness_agent::serve_with(&served, &id, &ServeOptions::default())
    })?;
    server.map_err(|e| NetnsError::Io {
        what: format!("starting the probe agent of {identity} in {ns}"),
        source: io::Error::other(e),
    })
}

fn sctp() -> socket2::Protocol {
    socket2::Protocol::from(libc::IPPROTO_SCTP)
}

/// Whether this machine's kernel can carry probes of `protocol`: `None` when it can, else why
/// not (the runner reports those cells Skipped with the reason instead of probing them).
/// Protocol support is kernel-wide, so the answer holds in every namespace.
pub fn unsupported_reason(protocol: Protocol) -> Option<String> {
    match protocol {
        Protocol::Sctp => match Socket::new(Domain::IPV4, Type::STREAM, Some(sctp())) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT)
                ) =>
            {
                Some(format!(
                    "this kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): {e}): load the sctp module (modprobe sctp) to probe SCTP through the netns dataplane, or use --dataplane model"
                ))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The agent request for `spec`; the timeout in whole milliseconds within what the agent
/// accepts.
fn request(spec: &ProbeSpec) -> ProbeRequest {
    let ms = u64::try_from(spec.timeout.as_millis()).unwrap_or(MAX_TIMEOUT_MS);
    ProbeRequest::new(spec.to, spec.protocol, spec.port)
        .with_timeout_ms(ms.clamp(1, MAX_TIMEOUT_MS))
}

/// Runs `specs` with the probe agent from inside namespace `ns`, at most `concurrency` at
/// a time, and returns the verdicts in order. SCTP probes on a kernel without SCTP are not
/// sent: [`NetVerdict::Unsupported`] with the reason.
///
/// # Errors
/// The namespace cannot be entered, or the probing thread panicked.
pub fn run_batch(
    ns: &str,
    specs: &[ProbeSpec],
    concurrency: usize,
) -> Result<Vec<NetVerdict>, NetnsError> {
    let no_sctp = specs
        .iter()
        .any(|s| s.protocol == Protocol::Sctp)
        .then(|| unsupported_reason(Protocol::Sctp))
        .flatten();
    let requests: Vec<ProbeRequest> = specs
        .iter()
        .filter(|s| !unsent(s, no_sctp.as_deref()))
        .map(request)
        .collect();
    let results = if requests.is_empty() {
        Vec::new()
    } else {
        crate::sys::in_netns(ns, move || {
            harness_agent::probe_batch_in_flight(&requests, concurrency)
        })?
    };
    Ok(verdicts(specs, no_sctp.as_deref(), results))
}

/// Whether `spec` is not sent: an SCTP probe on a kernel without SCTP (`no_sctp` says why).
fn unsent(spec: &ProbeSpec, no_sctp: Option<&str>) -> bool {
    spec.protocol == Protocol::Sctp && no_sctp.is_some()
}

/// The verdicts of `specs` in order, from the agent's `results` for the probes that were
/// sent (in the same order). A probe not sent is [`NetVerdict::Unsupported`] with the reason;
/// a sent probe the agent returned no result for is [`NetVerdict::Other`] saying so, never
/// a silent skip.
fn verdicts(
    specs: &[ProbeSpec],
    no_sctp: Option<&str>,
    results: Vec<ProbeResult>,
) -> Vec<NetVerdict> {
    let mut results = results.into_iter();
    specs
        .iter()
        .map(|s| match no_sctp {
            Some(reason) if unsent(s, no_sctp) => NetVerdict::Unsupported {
                reason: reason.to_owned(),
            },
            _ => match results.next() {
                Some(r) => NetVerdict::from_agent(r, s.protocol),
                None => NetVerdict::Other {
                    detail: format!(
                        "the probe agent returned no result for {} {}:{}",
                        s.protocol, s.to, s.port
                    ),
                },
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(json: &str) -> ProbeResult {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn agent_results_map_onto_verdicts() {
        let v = NetVerdict::from_agent(
            result(
                r#"{"result":"connected","backend":"x/a","detail":"x/a answered on TCP/80, saw source 10.32.0.4:40112"}"#,
            ),
            Protocol::Tcp,
        );
        assert_eq!(
            v,
            NetVerdict::Connected {
                backend: Some("x/a".into()),
                source: Some("10.32.0.4:40112".parse().unwrap()),
            }
        );
        // A node's agent greets as `node:<name>`; the model calls it `node <name>`.
        let v = NetVerdict::from_agent(
            result(
                r#"{"result":"connected","backend":"node:n1","detail":"node:n1 answered on UDP/53, saw source 10.64.0.1:5"}"#,
            ),
            Protocol::Udp,
        );
        assert!(
            matches!(&v, NetVerdict::Connected { backend: Some(b), .. } if b == "node n1"),
            "{v:?}"
        );
        // An echo reply names an address, not an agent.
        let v = NetVerdict::from_agent(
            result(
                r#"{"result":"connected","backend":"10.32.0.5","detail":"echo reply from 10.32.0.5 (ping socket)"}"#,
            ),
            Protocol::Icmp,
        );
        assert_eq!(
            v,
            NetVerdict::Connected {
                backend: None,
                source: None
            }
        );
        // Connected to something that is not an agent.
        let v = NetVerdict::from_agent(
            result(
                r#"{"result":"connected","backend":null,"detail":"TCP 10.0.0.1:80 connected, then closed without a greeting"}"#,
            ),
            Protocol::Tcp,
        );
        assert_eq!(
            v,
            NetVerdict::Connected {
                backend: None,
                source: None
            }
        );
        let v = NetVerdict::from_agent(
            result(
                r#"{"result":"refused","backend":null,"detail":"TCP RST from 10.0.0.1:80: nothing listens there, or a rule rejects it"}"#,
            ),
            Protocol::Tcp,
        );
        assert!(matches!(v, NetVerdict::Refused { .. }), "{v:?}");
        let v = NetVerdict::from_agent(
            result(
                r#"{"result":"refused","backend":null,"detail":"host unreachable for TCP 10.0.0.1:80: an ICMP host unreachable came back, or no ARP answer"}"#,
            ),
            Protocol::Tcp,
        );
        assert!(matches!(v, NetVerdict::Unreachable { .. }), "{v:?}");
        assert_eq!(v.word(), "refused");
        let v = NetVerdict::from_agent(
            result(r#"{"result":"timeout","backend":null,"detail":"no answer"}"#),
            Protocol::Tcp,
        );
        assert_eq!(v, NetVerdict::Timeout);
        let v = NetVerdict::from_agent(
            result(r#"{"result":"other","backend":null,"detail":"TCP 10.0.0.1:80: boom"}"#),
            Protocol::Tcp,
        );
        assert_eq!(
            v,
            NetVerdict::Other {
                detail: "TCP 10.0.0.1:80: boom".into()
            }
        );
    }

    #[test]
    fn every_probe_gets_a_verdict_and_a_missing_result_says_so() {
        let spec = |protocol, port| ProbeSpec {
            to: Ipv4Addr::new(10, 0, 0, 1),
            protocol,
            port,
            timeout: Duration::from_millis(100),
        };
        let specs = [
            spec(Protocol::Tcp, 80),
            spec(Protocol::Sctp, 9000),
            spec(Protocol::Udp, 53),
        ];
        let timeout = || result(r#"{"result":"timeout","backend":null,"detail":"no answer"}"#);
        // The SCTP probe was not sent: TCP and UDP results line up around it.
        let v = verdicts(&specs, Some("no SCTP here"), vec![timeout(), timeout()]);
        assert_eq!(
            v,
            [
                NetVerdict::Timeout,
                NetVerdict::Unsupported {
                    reason: "no SCTP here".into()
                },
                NetVerdict::Timeout,
            ]
        );
        // The agent answered for fewer probes than it was given: the rest are Other, with a
        // detail, not a skip.
        let v = verdicts(&specs, None, vec![timeout()]);
        assert_eq!(v[0], NetVerdict::Timeout);
        for (v, what) in v[1..].iter().zip(["SCTP 10.0.0.1:9000", "UDP 10.0.0.1:53"]) {
            assert!(v.skip_reason().is_none(), "{v:?}");
            assert_eq!(
                v,
                &NetVerdict::Other {
                    detail: format!("the probe agent returned no result for {what}")
                }
            );
        }
    }

    #[test]
    fn node_identities_are_one_word_and_named_back() {
        let id = node_identity("node-a");
        assert!(id.parse::<Identity>().is_ok(), "{id}");
        assert_eq!(backend_name(&id), "node node-a");
        assert_eq!(backend_name("default/a"), "default/a");
        assert_eq!(backend_name("dns"), "dns");
    }

    #[test]
    fn timeouts_fit_what_the_agent_accepts() {
        let spec = |ms| ProbeSpec {
            to: Ipv4Addr::new(10, 0, 0, 1),
            protocol: Protocol::Tcp,
            port: 80,
            timeout: Duration::from_millis(ms),
        };
        assert_eq!(request(&spec(0)).timeout_ms, Some(1));
        assert_eq!(request(&spec(400)).timeout_ms, Some(400));
        assert_eq!(request(&spec(u64::MAX)).timeout_ms, Some(MAX_TIMEOUT_MS));
        assert!(request(&spec(400)).validate().is_ok());
    }
}
