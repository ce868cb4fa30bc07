//! Evidence of a probe: one [`Hop`] per place a packet was handled (vrouter, underlay,
//! gateway, host, endpoint), naming the VRF, route, next hop, encapsulation, NAT, flow action
//! and the rule that decided; and every frame on every link it crossed ([`CapturedFrame`]),
//! which [`write_pcap`] turns into a pcap file tshark decodes.

use std::io::{self, Write};

use serde::Serialize;

use crate::config::PolicyAction;
use crate::forward::policy::Decision;
use crate::wire::pcap;

/// A gate decision as recorded in a hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HopDecision {
    /// `network-policy`, `security-group`, `firewall` or `gateway`.
    pub gate: String,
    /// The deciding rule, by name (or the implicit rule).
    pub rule: String,
    /// `pass` or `deny`.
    pub action: String,
}

impl From<&Decision> for HopDecision {
    fn from(d: &Decision) -> Self {
        HopDecision {
            gate: d.gate.as_str().to_owned(),
            rule: d.rule.to_string(),
            action: match d.action {
                PolicyAction::Pass => "pass".into(),
                PolicyAction::Deny => "deny".into(),
            },
        }
    }
}

/// One place a packet was handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// Where: `vrouter node-a`, `underlay`, `gateway`, `fabric host h1`, `endpoint x/a`.
    pub at: String,
    /// The node, for vrouters and node IP stacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The packet as it arrived (`TCP 10.0.0.1:40000 -> 10.0.0.2:80`).
    pub packet: String,
    /// VRF the lookup was made in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
    /// The route that matched, with where it comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The next hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// Encapsulation used or removed (`MPLSoUDP label 17 to 192.168.0.12`, `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encapsulation: Option<String>,
    /// NAT applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<String>,
    /// Flow action (`new flow: pass`, `existing flow (reverse)`, `new flow: deny`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Gate decisions, in the agent's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decided_by: Vec<HopDecision>,
    /// Anything else worth saying (a drop reason, an answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.packet)?;
        for (k, v) in [
            ("vrf", &self.vrf),
            ("route", &self.route),
            ("nh", &self.next_hop),
            ("encap", &self.encapsulation),
            ("nat", &self.nat),
            ("flow", &self.flow),
        ] {
            if let Some(v) = v {
                write!(f, "; {k} {v}")?;
            }
        }
        for d in &self.decided_by {
            write!(f, "; {} {} by {}", d.gate, d.action, d.rule)?;
        }
        if let Some(n) = &self.note {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

/// A frame seen on a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapturedFrame {
    /// The link (`tap x/a`, `underlay`, `external c1`).
    pub link: String,
    /// Timestamp, microseconds since the epoch (deterministic: see
    /// [`crate::Dataplane::set_clock`]).
    pub ts_micros: u64,
    /// The Ethernet frame.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// Writes frames as a pcap file (LINKTYPE_ETHERNET).
///
/// # Errors
/// The writer's.
pub fn write_pcap<W: Write>(frames: &[CapturedFrame], out: W) -> io::Result<W> {
    let mut w = pcap::Writer::new(out)?;
    for f in frames {
        w.write_frame(f.ts_micros, &f.bytes)?;
    }
    w.finish()
}

/// What a probe records while it runs.
#[derive(Debug, Default)]
pub(crate) struct Tracer {
    pub trace: bool,
    pub capture: bool,
    pub hops: Vec<Hop>,
    pub frames: Vec<CapturedFrame>,
    pub drop: Option<(String, String)>,
    pub inconclusive: Option<String>,
    pub clock: u64,
}

impl Tracer {
    pub fn hop(&mut self, h: Hop) {
        if self.trace {
            self.hops.push(h);
        }
    }

    pub fn dropped(&mut self, at: &str, reason: String) {
        if self.trace {
            self.hops.push(Hop {
                at: at.to_owned(),
                note: Some(format!("dropped: {reason}")),
                ..Hop::default()
            });
        }
        self.drop = Some((at.to_owned(), reason));
    }

    pub fn frame(&mut self, link: impl FnOnce() -> String, bytes: &[u8]) {
        self.clock += 1;
        if self.capture {
            self.frames.push(CapturedFrame {
                link: link(),
                ts_micros: self.clock,
                bytes: bytes.to_vec(),
            });
        }
    }
}
