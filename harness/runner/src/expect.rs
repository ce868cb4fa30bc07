//! What a reachability cell is expected to do: the scenario's literal verdict (a fixed
//! `verdict:`, a `table:` cell, an `except:` entry) or the oracle's, and how an observation
//! is judged against it. Shared by `harness plan` (before a cluster exists) and `harness run`.

use harness_oracle::Verdict;
use harness_scenario::model::{ExpectedVerdict, ReachabilityCheck};
use harness_scenario::{NamePattern, Peer, PortSpec, TableCell, TruthTable};

/// What the scenario itself states for a cell (given by its endpoint labels): `None` = the
/// oracle decides, `Some(None)` = not checked (`?`), `Some(Some(v))` = a literal verdict.
pub fn stated_verdict(
    check: &ReachabilityCheck,
    table: Option<&TruthTable>,
    from: &str,
    to: &str,
    port: &PortSpec,
) -> Option<Option<ExpectedVerdict>> {
    if let Some(ex) = check.except.iter().find(|e| {
        covers(&e.from, from) && covers(&e.to, to) && (e.ports.is_empty() || e.ports.contains(port))
    }) {
        return match ex.verdict {
            ExpectedVerdict::Oracle => None,
            v => Some(Some(v)),
        };
    }
    if let Some(t) = table {
        let (Ok(f), Ok(d)) = (from.parse::<Peer>(), to.parse::<Peer>()) else {
            return Some(None);
        };
        return match t.get(&f, &d) {
            Some(TableCell::Expect(v)) => Some(Some(v)),
            Some(TableCell::DontCare) | None => Some(None),
        };
    }
    match check.verdict() {
        ExpectedVerdict::Oracle => None,
        v => Some(Some(v)),
    }
}

/// The reason an `except:` entry gives for a cell, if one covers it.
pub fn exception_reason<'a>(
    check: &'a ReachabilityCheck,
    from: &str,
    to: &str,
    port: &PortSpec,
) -> Option<&'a str> {
    check
        .except
        .iter()
        .find(|e| {
            covers(&e.from, from)
                && covers(&e.to, to)
                && (e.ports.is_empty() || e.ports.contains(port))
        })
        .and_then(|e| e.reason.as_deref())
}

/// Whether a (possibly wildcard) peer stands for the endpoint with this label.
pub fn covers(peer: &Peer, label: &str) -> bool {
    let Ok(ep) = label.parse::<Peer>() else {
        return false;
    };
    match (peer, &ep) {
        (
            Peer::Pod { namespace, name },
            Peer::Pod {
                namespace: NamePattern::Exact(ns),
                name: NamePattern::Exact(n),
            },
        ) => namespace.matches(ns) && name.matches(n),
        (
            Peer::NodePort {
                service,
                node: None,
            },
            Peer::NodePort { service: s2, .. },
        ) => service == s2,
        _ => peer == &ep,
    }
}

/// The report's word for an oracle verdict: `allow`, `deny`, `reject`.
pub fn verdict_word(v: Verdict) -> &'static str {
    v.as_str()
}

/// The report's word for a scenario verdict: `allow`, `deny`, `drop`, `reject`, `oracle`.
pub fn expected_word(v: ExpectedVerdict) -> &'static str {
    match v {
        ExpectedVerdict::Allow => "allow",
        ExpectedVerdict::Deny => "deny",
        ExpectedVerdict::Drop => "drop",
        ExpectedVerdict::Reject => "reject",
        ExpectedVerdict::Oracle => "oracle",
    }
}

/// Whether the oracle's verdict satisfies a scenario's literal verdict (`deny` = dropped or
/// rejected).
pub fn oracle_agrees(stated: ExpectedVerdict, oracle: Verdict) -> bool {
    match stated {
        ExpectedVerdict::Allow => oracle == Verdict::Allow,
        ExpectedVerdict::Deny => oracle != Verdict::Allow,
        ExpectedVerdict::Drop => oracle == Verdict::Deny,
        ExpectedVerdict::Reject => oracle == Verdict::Reject,
        ExpectedVerdict::Oracle => true,
    }
}

/// What a cell expects, resolved: the words and the matching rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// A connection.
    Allow,
    /// Dropped or rejected (a literal `deny`).
    NoConnection,
    /// Dropped (the oracle's `deny`, a literal `drop`).
    Drop,
    /// Rejected.
    Reject,
}

impl Want {
    /// From a scenario's literal verdict (`oracle` is not literal: `None`).
    pub fn from_stated(v: ExpectedVerdict) -> Option<Want> {
        match v {
            ExpectedVerdict::Allow => Some(Want::Allow),
            ExpectedVerdict::Deny => Some(Want::NoConnection),
            ExpectedVerdict::Drop => Some(Want::Drop),
            ExpectedVerdict::Reject => Some(Want::Reject),
            ExpectedVerdict::Oracle => None,
        }
    }

    /// From the oracle's verdict: deny means dropped (isolation, policy, service instance),
    /// reject means refused (nothing listens).
    pub fn from_oracle(v: Verdict) -> Want {
        match v {
            Verdict::Allow => Want::Allow,
            Verdict::Deny => Want::Drop,
            Verdict::Reject => Want::Reject,
        }
    }

    /// Whether an observation (`allow`, `drop`, `reject`) satisfies it.
    pub fn accepts(self, observed: &str) -> bool {
        match self {
            Want::Allow => observed == "allow",
            Want::NoConnection => observed == "drop" || observed == "reject",
            Want::Drop => observed == "drop",
            Want::Reject => observed == "reject",
        }
    }
}
