//! The JSON of `harness agent probe --batch`: an array of [`ProbeRequest`]s in, an array of
//! [`ProbeResult`]s out, in request order.
//!
//! The shapes are the model dataplane's (`harness_vrouter_sim::node`), so the runner sends the
//! same batch to a simulated pod and to a real one and reads the same answer:
//!
//! ```json
//! [{"to": "10.32.0.5", "protocol": "TCP", "port": 80, "timeoutMs": 1000}]
//! [{"result": "connected", "backend": "x/a", "detail": "x/a answered on TCP/80, saw source 10.32.0.4:40112"}]
//! ```

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use harness_scenario::Protocol;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// How long a probe waits when its request names no `timeoutMs`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The longest `timeoutMs` a request may ask for (ten minutes): anything longer is a typo.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// One probe of a batch (`harness agent probe --batch -`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeRequest {
    /// Destination IPv4 address.
    #[serde(deserialize_with = "ipv4_address")]
    pub to: Ipv4Addr,
    /// `TCP`, `UDP`, `SCTP` or `ICMP`.
    pub protocol: Protocol,
    /// Destination port (ignored for ICMP).
    #[serde(default)]
    pub port: u16,
    /// How long to wait for an answer; [`DEFAULT_TIMEOUT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Asks for the hops the packets took. The agent sees only its own sockets, so it never
    /// returns hops; traces come from the dataplane (the model, or the user-space vrouters).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trace: bool,
}

impl ProbeRequest {
    /// A probe of `protocol`/`port` on `to` with the default timeout.
    ///
    /// ```
    /// use harness_agent::ProbeRequest;
    /// use harness_scenario::Protocol;
    /// let r = ProbeRequest::new("10.32.0.5".parse().unwrap(), Protocol::Tcp, 80)
    ///     .with_timeout_ms(200);
    /// assert_eq!(serde_json::to_string(&r).unwrap(),
    ///     r#"{"to":"10.32.0.5","protocol":"TCP","port":80,"timeoutMs":200}"#);
    /// ```
    pub fn new(to: Ipv4Addr, protocol: Protocol, port: u16) -> Self {
        ProbeRequest {
            to,
            protocol,
            port,
            timeout_ms: None,
            trace: false,
        }
    }

    /// The same probe with `timeoutMs` set.
    #[must_use]
    pub fn with_timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// How long this probe waits for an answer.
    pub fn timeout(&self) -> Duration {
        self.timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
    }

    /// What this probe targets, as people write it: `TCP 10.32.0.5:80`, `ICMP 10.32.0.5`.
    pub fn target(&self) -> String {
        match self.protocol {
            Protocol::Icmp => format!("ICMP {}", self.to),
            p => format!("{p} {}:{}", self.to, self.port),
        }
    }

    /// Checks what serde cannot: a port for the protocols that need one, a sane timeout.
    ///
    /// # Errors
    /// A message naming the field and what to put there.
    pub fn validate(&self) -> Result<(), String> {
        if self.protocol != Protocol::Icmp && self.port == 0 {
            return Err(format!(
                "{} probe to {} has no `port`: give a port between 1 and 65535",
                self.protocol, self.to
            ));
        }
        match self.timeout_ms {
            Some(0) => Err("`timeoutMs` is 0: give a positive number of milliseconds (or leave it out for 1000)".into()),
            Some(ms) if ms > MAX_TIMEOUT_MS => Err(format!(
                "`timeoutMs` is {ms}: give at most {MAX_TIMEOUT_MS} (ten minutes)"
            )),
            _ => Ok(()),
        }
    }
}

fn ipv4_address<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`to` is {text:?}, which is not an IPv4 address: give a dotted quad such as 10.32.0.5"
        ))
    })
}

/// The outcome class of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeResultKind {
    /// The destination answered (TCP handshake, UDP reply, SCTP INIT-ACK, ICMP echo reply).
    Connected,
    /// A host said no: TCP RST, ICMP unreachable, SCTP ABORT.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// Neither: the probe could not be made (no SCTP in this kernel, no permission for ICMP,
    /// a socket error that says nothing about the network).
    Other,
}

impl fmt::Display for ProbeResultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeResultKind::Connected => "connected",
            ProbeResultKind::Refused => "refused",
            ProbeResultKind::Timeout => "timeout",
            ProbeResultKind::Other => "other",
        })
    }
}

/// One answer of a batch, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The outcome.
    pub result: ProbeResultKind,
    /// Who answered, when connected: the identity the serving agent sent (`x/a`, after any
    /// DNAT), or for ICMP the address the echo reply came from.
    pub backend: Option<String>,
    /// Who refused and how, what timed out, or what went wrong; for a connected probe what
    /// the backend saw (its port and the source address, which shows SNAT).
    pub detail: String,
    /// Hops, when the request asked for a trace (never filled by the agent; see
    /// [`ProbeRequest::trace`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<String>,
}

impl ProbeResult {
    pub(crate) fn new(result: ProbeResultKind, backend: Option<String>, detail: String) -> Self {
        ProbeResult {
            result,
            backend,
            detail,
            hops: Vec::new(),
        }
    }
    pub(crate) fn refused(detail: String) -> Self {
        Self::new(ProbeResultKind::Refused, None, detail)
    }
    pub(crate) fn timeout(detail: String) -> Self {
        Self::new(ProbeResultKind::Timeout, None, detail)
    }
    pub(crate) fn other(detail: String) -> Self {
        Self::new(ProbeResultKind::Other, None, detail)
    }

    /// For a probe answered by a serving agent, the source address that agent saw (after any
    /// SNAT on the way), read back from [`ProbeResult::detail`]; `None` otherwise.
    ///
    /// ```
    /// use harness_agent::ProbeResult;
    /// let r: ProbeResult = serde_json::from_str(r#"{"result": "connected", "backend": "x/a",
    ///     "detail": "x/a answered on TCP/80, saw source 10.32.0.4:40112"}"#).unwrap();
    /// assert_eq!(r.source_seen(), Some("10.32.0.4:40112".parse().unwrap()));
    /// ```
    pub fn source_seen(&self) -> Option<SocketAddr> {
        if self.result != ProbeResultKind::Connected || self.backend.is_none() {
            return None;
        }
        crate::identity::source_in_detail(&self.detail)
    }

    /// Whether a `refused` probe was refused by a hop on the path — an ICMP host or network
    /// unreachable, or no route or ARP answer in the prober's own namespace — rather than by
    /// the destination (TCP RST, ICMP port unreachable, SCTP ABORT).
    pub fn refused_on_the_path(&self) -> bool {
        self.result == ProbeResultKind::Refused
            && (self.detail.starts_with(crate::probe::HOST_UNREACHABLE)
                || self.detail.starts_with(crate::probe::NETWORK_UNREACHABLE))
    }
}

/// Why a batch was not accepted. Every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Nothing was sent.
    #[error(
        "the batch is empty: send a JSON array of probes such as \
         [{{\"to\": \"10.32.0.5\", \"protocol\": \"TCP\", \"port\": 80}}] \
         (on stdin with `--batch -`, which needs `kubectl exec -i`)"
    )]
    Empty,
    /// Not JSON at all.
    #[error(
        "the batch is not valid JSON ({0}): send a JSON array of probes such as \
         [{{\"to\": \"10.32.0.5\", \"protocol\": \"TCP\", \"port\": 80}}]"
    )]
    Syntax(#[source] serde_json::Error),
    /// JSON, but not an array.
    #[error("the batch must be a JSON array of probes, not {found}: wrap the probe in [ ]")]
    NotAnArray {
        /// What was found instead (`an object`, `a string`, …).
        found: &'static str,
    },
    /// One element is not a valid probe.
    #[error("batch[{index}]: {message}")]
    Probe {
        /// Zero-based position in the array.
        index: usize,
        /// What is wrong and what to put instead.
        message: String,
    },
}

/// Parses and validates a batch. Requests come back in the order given.
///
/// # Errors
/// [`BatchError`], naming the element (`batch[3]`) and the field at fault.
///
/// ```
/// let batch = harness_agent::parse_batch(r#"[{"to": "127.0.0.1", "protocol": "UDP", "port": 53}]"#)?;
/// assert_eq!(batch[0].port, 53);
/// let err = harness_agent::parse_batch(r#"[{"to": "10.1.2", "protocol": "TCP", "port": 80}]"#)
///     .unwrap_err();
/// assert!(err.to_string().starts_with("batch[0]: `to` is \"10.1.2\""));
/// # Ok::<(), harness_agent::BatchError>(())
/// ```
pub fn parse_batch(text: &str) -> Result<Vec<ProbeRequest>, BatchError> {
    if text.trim().is_empty() {
        return Err(BatchError::Empty);
    }
    let value: Value = serde_json::from_str(text).map_err(BatchError::Syntax)?;
    let items = match value {
        Value::Array(items) => items,
        other => {
            return Err(BatchError::NotAnArray {
                found: json_kind(&other),
            });
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let probe: ProbeRequest =
                serde_json::from_value(item).map_err(|e| BatchError::Probe {
                    index,
                    message: with_protocol_hint(e.to_string()),
                })?;
            probe
                .validate()
                .map_err(|message| BatchError::Probe { index, message })?;
            Ok(probe)
        })
        .collect()
}

/// serde says ``unknown variant `tcp`, expected one of …``; add the fix people need.
fn with_protocol_hint(message: String) -> String {
    if message.contains("expected one of `TCP`") {
        format!("{message} (protocols are upper case: TCP, UDP, SCTP or ICMP)")
    } else {
        message
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_batch(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_in_order_with_defaults() {
        let b = parse_batch(
            r#"[{"to": "10.0.0.1", "protocol": "TCP", "port": 80, "timeoutMs": 250},
                {"to": "10.0.0.2", "protocol": "ICMP"}]"#,
        )
        .unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].timeout(), Duration::from_millis(250));
        assert_eq!(b[1].protocol, Protocol::Icmp);
        assert_eq!(b[1].timeout(), DEFAULT_TIMEOUT);
        assert_eq!(b[1].target(), "ICMP 10.0.0.2");
        assert_eq!(b[0].target(), "TCP 10.0.0.1:80");
        assert!(parse_batch("[]").unwrap().is_empty());
    }

    #[test]
    fn bad_batches_say_what_to_change() {
        assert!(err("").contains("the batch is empty"));
        assert!(err("[{").contains("not valid JSON"));
        assert!(err(r#"{"to": "10.0.0.1"}"#).contains("not an object: wrap the probe in [ ]"));
        let e = err(
            r#"[{"to": "10.0.0.1", "protocol": "TCP", "port": 80}, {"to": "10.0.0.1", "protocol": "tcp", "port": 80}]"#,
        );
        assert!(e.starts_with("batch[1]: unknown variant `tcp`"), "{e}");
        assert!(e.contains("upper case"), "{e}");
        let e = err(r#"[{"to": "fe80::1", "protocol": "TCP", "port": 80}]"#);
        assert!(e.contains("not an IPv4 address: give a dotted quad"), "{e}");
        let e = err(r#"[{"to": "10.0.0.1", "protocol": "UDP"}]"#);
        assert!(e.contains("has no `port`"), "{e}");
        let e = err(r#"[{"to": "10.0.0.1", "protocol": "TCP", "port": 70000}]"#);
        assert!(
            e.starts_with("batch[0]: invalid value: integer `70000`"),
            "{e}"
        );
        let e = err(r#"[{"to": "10.0.0.1", "protocol": "TCP", "port": 80, "timeoutMs": 0}]"#);
        assert!(e.contains("`timeoutMs` is 0"), "{e}");
        let e = err(r#"[{"to": "10.0.0.1", "protocol": "TCP", "port": 80, "timeout": 5}]"#);
        assert!(e.contains("unknown field `timeout`"), "{e}");
        let e = err(r#"[{"protocol": "TCP", "port": 80}]"#);
        assert!(e.contains("missing field `to`"), "{e}");
    }
}
