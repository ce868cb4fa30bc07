//! NetworkPolicy (networking.k8s.io/v1) as the oracle reads it: parsed, validated and defaulted
//! as the API server would, independent of any profile.

use std::fmt;
use std::net::Ipv4Addr;

use harness_scenario::{PortRef, Protocol};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::selector::Selector;

/// Traffic direction relative to the selected pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Direction {
    /// Traffic into the selected pods.
    Ingress,
    /// Traffic out of the selected pods.
    Egress,
}

impl Direction {
    /// `Ingress` or `Egress`, as in `policyTypes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One NetworkPolicy, validated and with `policyTypes` defaulted.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkPolicyDef {
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
    /// `spec.podSelector` (`{}` = every pod of the namespace).
    pub pod_selector: Selector,
    /// `spec.policyTypes` in the order written; when absent, defaulted as the API server does:
    /// `[Ingress]`, plus `Egress` when the policy has egress rules.
    pub policy_types: Vec<Direction>,
    /// Whether `policyTypes` was written in the manifest.
    pub policy_types_written: bool,
    /// `spec.ingress` rules.
    pub ingress: Vec<RuleDef>,
    /// `spec.egress` rules.
    pub egress: Vec<RuleDef>,
}

impl NetworkPolicyDef {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the policy isolates its selected pods in this direction.
    pub fn has_type(&self, d: Direction) -> bool {
        self.policy_types.contains(&d)
    }

    /// The rules of one direction (ignored when the direction is not in `policyTypes`).
    pub fn rules(&self, d: Direction) -> &[RuleDef] {
        match d {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// `Ingress`, `Egress` or `Ingress,Egress`, for explanations.
    pub fn types_text(&self) -> &'static str {
        match (
            self.has_type(Direction::Ingress),
            self.has_type(Direction::Egress),
        ) {
            (true, true) => "Ingress,Egress",
            (true, false) => "Ingress",
            (false, true) => "Egress",
            (false, false) => "none",
        }
    }

    /// Whether any port of the policy uses this protocol.
    pub fn uses_protocol(&self, p: Protocol) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .flat_map(|r| &r.ports)
            .any(|port| port.protocol == Some(p))
    }

    /// Parses and validates a `networking.k8s.io/v1` NetworkPolicy.
    ///
    /// # Errors
    ///
    /// A message saying what to change: a bad selector, protocol, port, `endPort` or CIDR, a
    /// peer with no selector and no ipBlock, or an unknown policy type.
    pub fn from_k8s(np: &NetworkPolicy) -> Result<Self, String> {
        let namespace = np
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = np.metadata.name.clone().unwrap_or_default();
        let spec = np.spec.clone().unwrap_or_default();
        let pod_selector = match &spec.pod_selector {
            Some(s) => Selector::from_k8s(s).map_err(|e| format!("spec.podSelector: {e}"))?,
            None => Selector::everything(),
        };
        let mut ingress = Vec::new();
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            let ctx = format!("spec.ingress[{i}]");
            ingress.push(RuleDef::parse(
                r.from.as_deref(),
                r.ports.as_deref(),
                &ctx,
                "from",
            )?);
        }
        let mut egress = Vec::new();
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            let ctx = format!("spec.egress[{i}]");
            egress.push(RuleDef::parse(
                r.to.as_deref(),
                r.ports.as_deref(),
                &ctx,
                "to",
            )?);
        }
        let written = spec.policy_types.as_ref().is_some_and(|t| !t.is_empty());
        let policy_types = if written {
            let mut out = Vec::new();
            for t in spec.policy_types.iter().flatten() {
                let d = match t.as_str() {
                    "Ingress" => Direction::Ingress,
                    "Egress" => Direction::Egress,
                    other => {
                        return Err(format!(
                            "spec.policyTypes: unknown type `{other}`: use Ingress and/or Egress"
                        ));
                    }
                };
                if !out.contains(&d) {
                    out.push(d);
                }
            }
            out
        } else if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
            vec![Direction::Ingress, Direction::Egress]
        } else {
            vec![Direction::Ingress]
        };
        Ok(NetworkPolicyDef {
            namespace,
            name,
            pod_selector,
            policy_types,
            policy_types_written: written,
            ingress,
            egress,
        })
    }
}

/// One ingress or egress rule: traffic matching any peer AND any port is admitted.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleDef {
    /// `from`/`to`; empty = every source/destination (pods and non-pods alike).
    pub peers: Vec<PeerDef>,
    /// `ports`; empty = every port of every protocol (ICMP included).
    pub ports: Vec<PortDef>,
}

impl RuleDef {
    fn parse(
        peers: Option<&[NetworkPolicyPeer]>,
        ports: Option<&[NetworkPolicyPort]>,
        ctx: &str,
        field: &str,
    ) -> Result<Self, String> {
        let mut out = RuleDef {
            peers: Vec::new(),
            ports: Vec::new(),
        };
        for (j, p) in peers.unwrap_or_default().iter().enumerate() {
            out.peers
                .push(PeerDef::parse(p).map_err(|e| format!("{ctx}.{field}[{j}]: {e}"))?);
        }
        for (k, p) in ports.unwrap_or_default().iter().enumerate() {
            out.ports
                .push(PortDef::parse(p).map_err(|e| format!("{ctx}.ports[{k}]: {e}"))?);
        }
        Ok(out)
    }
}

/// A `from`/`to` peer.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerDef {
    /// `namespaceSelector` and/or `podSelector` (both = AND; `podSelector` alone = the policy's
    /// namespace; `namespaceSelector` alone = every pod of the selected namespaces).
    Selectors {
        /// `namespaceSelector`, if given.
        namespace: Option<Selector>,
        /// `podSelector`, if given.
        pod: Option<Selector>,
    },
    /// `ipBlock`: addresses, matched after DNAT.
    IpBlock(IpBlockDef),
}

impl fmt::Display for PeerDef {
    /// `podSelector pod=a`, `namespaceSelector ns=y + podSelector pod=b`, `ipBlock 10.0.0.0/8 except 10.1.0.0/16`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerDef::Selectors {
                namespace: Some(n),
                pod: Some(p),
            } => write!(f, "namespaceSelector {n} + podSelector {p}"),
            PeerDef::Selectors {
                namespace: Some(n),
                pod: None,
            } => write!(f, "namespaceSelector {n}"),
            PeerDef::Selectors {
                namespace: None,
                pod: Some(p),
            } => write!(f, "podSelector {p}"),
            PeerDef::Selectors {
                namespace: None,
                pod: None,
            } => f.write_str("no selector"),
            PeerDef::IpBlock(b) => write!(f, "{b}"),
        }
    }
}

impl PeerDef {
    fn parse(p: &NetworkPolicyPeer) -> Result<Self, String> {
        let sel = |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
                   what: &str| {
            s.as_ref()
                .map(|s| Selector::from_k8s(s).map_err(|e| format!("{what}: {e}")))
                .transpose()
        };
        let namespace = sel(&p.namespace_selector, "namespaceSelector")?;
        let pod = sel(&p.pod_selector, "podSelector")?;
        match &p.ip_block {
            Some(_) if namespace.is_some() || pod.is_some() => {
                Err("a peer has either ipBlock or selectors, not both: split it into two peers".into())
            }
            Some(b) => {
                let cidr: IpNet = b.cidr.trim().parse().map_err(|_| {
                    format!("ipBlock.cidr `{}` is not a CIDR: write e.g. 10.0.0.0/16 (bindings such as {{{{ cidr x/b 24 }}}} must be resolved first)", b.cidr)
                })?;
                let mut except = Vec::new();
                for e in b.except.iter().flatten() {
                    let net: IpNet = e.trim().parse().map_err(|_| format!("ipBlock.except `{e}` is not a CIDR"))?;
                    if !cidr.contains(&net) {
                        return Err(format!("ipBlock.except {net} is not inside cidr {cidr}: except ranges must lie inside the cidr"));
                    }
                    except.push(net);
                }
                Ok(PeerDef::IpBlock(IpBlockDef { cidr, except }))
            }
            None if namespace.is_none() && pod.is_none() => {
                Err("a peer needs podSelector, namespaceSelector or ipBlock (write `podSelector: {}` for every pod of the namespace)".into())
            }
            None => Ok(PeerDef::Selectors { namespace, pod }),
        }
    }
}

/// An `ipBlock`: the `cidr` minus the `except` ranges.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IpBlockDef {
    /// The block, e.g. `10.0.0.0/16`.
    pub cidr: IpNet,
    /// Ranges inside the block that are excluded.
    pub except: Vec<IpNet>,
}

impl IpBlockDef {
    /// Whether the address is in the cidr and in none of the except ranges.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let a = std::net::IpAddr::V4(addr);
        self.cidr.contains(&a) && !self.except.iter().any(|e| e.contains(&a))
    }

    /// Whether the address is in the cidr, ignoring the except ranges.
    pub fn cidr_contains(&self, addr: Ipv4Addr) -> bool {
        self.cidr.contains(&std::net::IpAddr::V4(addr))
    }
}

impl fmt::Display for IpBlockDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ipBlock {}", self.cidr)?;
        if !self.except.is_empty() {
            let ex: Vec<String> = self.except.iter().map(|e| e.to_string()).collect();
            write!(f, " except {}", ex.join(","))?;
        }
        Ok(())
    }
}

/// A rule's port entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortDef {
    /// As written; `None` means TCP upstream (and `any` in r5.0).
    pub protocol: Option<Protocol>,
    /// `None` = every port of the protocol.
    pub port: Option<PortRef>,
    /// Last port of a range starting at the numeric `port`.
    pub end_port: Option<u16>,
}

impl PortDef {
    /// The protocol with the upstream default (TCP).
    pub fn protocol_or_tcp(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Tcp)
    }

    fn parse(p: &NetworkPolicyPort) -> Result<Self, String> {
        let protocol = match p.protocol.as_deref() {
            None => None,
            Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(other) => {
                return Err(format!(
                    "protocol `{other}`: use TCP, UDP or SCTP (upper case)"
                ));
            }
        };
        let port = match &p.port {
            None => None,
            Some(IntOrString::Int(n)) => match u16::try_from(*n) {
                Ok(n) if n > 0 => Some(PortRef::Number(n)),
                _ => return Err(format!("port {n} is out of range: ports are 1-65535")),
            },
            Some(IntOrString::String(s)) if harness_scenario::port::is_port_name(s) => {
                Some(PortRef::Name(s.clone()))
            }
            Some(IntOrString::String(s)) => {
                return Err(format!(
                    "port `{s}` is not a port name (lowercase letters, digits and '-', at most 15 characters)"
                ));
            }
        };
        let end_port = match (p.end_port, &port) {
            (None, _) => None,
            (Some(e), Some(PortRef::Number(start))) => match u16::try_from(e) {
                Ok(e) if e >= *start => Some(e),
                _ => {
                    return Err(format!(
                        "endPort {e} must be a port number not below port {start}"
                    ));
                }
            },
            (Some(_), _) => {
                return Err("endPort needs a numeric `port` as the start of the range".into());
            }
        };
        Ok(PortDef {
            protocol,
            port,
            end_port,
        })
    }
}

impl fmt::Display for PortDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = self.protocol.map(|p| p.as_str()).unwrap_or("TCP");
        match (&self.port, self.end_port) {
            (None, _) => write!(f, "{proto}/*"),
            (Some(p), None) => write!(f, "{proto}/{p}"),
            (Some(p), Some(e)) => write!(f, "{proto}/{p}-{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(spec: serde_json::Value) -> Result<NetworkPolicyDef, String> {
        let np: NetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "x"}, "spec": spec
        }))
        .unwrap();
        NetworkPolicyDef::from_k8s(&np)
    }

    #[test]
    fn policy_types_default_as_the_api_server_does() {
        assert_eq!(
            def(json!({"podSelector": {}})).unwrap().policy_types,
            vec![Direction::Ingress]
        );
        let p = def(json!({"podSelector": {}, "egress": [{}]})).unwrap();
        assert_eq!(p.policy_types, vec![Direction::Ingress, Direction::Egress]);
        assert!(!p.policy_types_written);
        let p =
            def(json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]})).unwrap();
        assert_eq!(p.policy_types, vec![Direction::Egress]);
        assert_eq!(p.types_text(), "Egress");
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        assert!(
            def(json!({"podSelector": {}, "policyTypes": ["ingress"]}))
                .unwrap_err()
                .contains("use Ingress")
        );
        assert!(
            def(json!({"ingress": [{"ports": [{"protocol": "tcp"}]}]}))
                .unwrap_err()
                .contains("upper case")
        );
        assert!(
            def(json!({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}))
                .unwrap_err()
                .contains("numeric")
        );
        assert!(
            def(json!({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}))
                .unwrap_err()
                .contains("not below")
        );
        assert!(
            def(json!({"ingress": [{"from": [{}]}]}))
                .unwrap_err()
                .contains("podSelector: {}")
        );
        assert!(
            def(json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]}))
                .unwrap_err()
                .contains("inside")
        );
        let e = def(json!({"ingress": [{"from": [{"ipBlock": {"cidr": "{{ cidr x/b 24 }}"}}]}]}))
            .unwrap_err();
        assert!(
            e.contains("spec.ingress[0].from[0]") && e.contains("resolved first"),
            "{e}"
        );
    }

    #[test]
    fn ip_block_except() {
        let b = IpBlockDef {
            cidr: "10.0.0.0/8".parse().unwrap(),
            except: vec!["10.1.0.0/16".parse().unwrap()],
        };
        assert!(b.contains("10.2.0.1".parse().unwrap()));
        assert!(!b.contains("10.1.0.1".parse().unwrap()));
        assert!(b.cidr_contains("10.1.0.1".parse().unwrap()));
        assert_eq!(b.to_string(), "ipBlock 10.0.0.0/8 except 10.1.0.0/16");
    }
}
