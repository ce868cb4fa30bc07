//! Peers: what a probe starts from or goes to (`x/a`, `x/*`, `svc:x/s-x-a`, `host:cloud-db`, ...).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::port::did_you_mean;

/// A name that may be the wildcard `*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamePattern {
    Any,
    Exact(String),
}

impl NamePattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Any => true,
            NamePattern::Exact(n) => n == name,
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Any => f.write_str("*"),
            NamePattern::Exact(n) => f.write_str(n),
        }
    }
}

/// A namespaced object name `ns/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One end of a probe, as written in a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// `ns/pod`, `ns/*` (every pod of a namespace) or `*/*` (every pod).
    Pod {
        namespace: NamePattern,
        name: NamePattern,
    },
    /// `svc:ns/name`: the Service's ClusterIP (policies apply to the backend after DNAT).
    Service(ObjectName),
    /// `nodeport:ns/name`: the Service's node port on every node (`@node-1` picks one node).
    NodePort {
        service: ObjectName,
        node: Option<String>,
    },
    /// `lb:ns/name`: the LoadBalancer address or external IP of a Service.
    LoadBalancer(ObjectName),
    /// `ingress:ns/name`: the ingress VIP or its floating IP.
    Ingress(ObjectName),
    /// `host:name`: a fabric host without a vrouter, declared in `cluster.fabricHosts`.
    Host(String),
    /// `node:name`: a compute node's vhost address.
    Node(String),
    /// `external:name`: a client outside the cluster, declared in `cluster.external`.
    External(String),
}

impl Peer {
    /// Whether this peer stands for more than one endpoint (a wildcard).
    pub fn is_wildcard(&self) -> bool {
        matches!(
            self,
            Peer::Pod {
                namespace: NamePattern::Any,
                ..
            } | Peer::Pod {
                name: NamePattern::Any,
                ..
            }
        ) || matches!(self, Peer::NodePort { node: None, .. })
    }

    /// Whether a probe can start here (services and VIPs are destinations only).
    pub fn can_originate(&self) -> bool {
        matches!(
            self,
            Peer::Pod { .. } | Peer::Host(_) | Peer::Node(_) | Peer::External(_)
        )
    }

    /// The namespace an object peer lives in, if any and not a wildcard.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Peer::Pod {
                namespace: NamePattern::Exact(ns),
                ..
            } => Some(ns),
            Peer::Service(o) | Peer::LoadBalancer(o) | Peer::Ingress(o) => Some(&o.namespace),
            Peer::NodePort { service, .. } => Some(&service.namespace),
            _ => None,
        }
    }
}

const KINDS: &[&str] = &[
    "svc", "nodeport", "lb", "ingress", "host", "node", "external",
];

/// Whether `s` is a DNS-1123 label (namespaces, services, nodes, hosts).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain (pod and most object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn name(kind: &str, s: &str, subdomain: bool) -> Result<String, String> {
    let ok = if subdomain {
        is_dns_subdomain(s)
    } else {
        is_dns_label(s)
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "bad {kind} name `{s}`: names are lowercase letters, digits and '-'{}, starting and ending with a letter or digit",
            if subdomain { " (and '.')" } else { "" }
        ))
    }
}

fn object(prefix: &str, kind: &str, s: &str) -> Result<ObjectName, String> {
    let (ns, n) = s
        .split_once('/')
        .ok_or_else(|| format!("bad {kind} peer `{prefix}:{s}`: write {prefix}:NAMESPACE/NAME"))?;
    Ok(ObjectName {
        namespace: name("namespace", ns, false)?,
        name: name(kind, n, true)?,
    })
}

impl FromStr for Peer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some((kind, rest)) = s.split_once(':') {
            return match kind {
                "svc" => Ok(Peer::Service(object(kind, "service", rest)?)),
                "lb" => Ok(Peer::LoadBalancer(object(kind, "service", rest)?)),
                "ingress" => Ok(Peer::Ingress(object(kind, "ingress", rest)?)),
                "nodeport" => {
                    let (svc, node) = match rest.split_once('@') {
                        Some((svc, node)) => (svc, Some(name("node", node, false)?)),
                        None => (rest, None),
                    };
                    Ok(Peer::NodePort {
                        service: object(kind, "service", svc)?,
                        node,
                    })
                }
                "host" => Ok(Peer::Host(name("host", rest, false)?)),
                "node" => Ok(Peer::Node(name("node", rest, false)?)),
                "external" => Ok(Peer::External(name("external client", rest, false)?)),
                other => Err(format!(
                    "unknown peer kind `{other}:` in `{s}`: use one of {}{}",
                    KINDS
                        .iter()
                        .map(|k| format!("{k}:"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    did_you_mean(other, KINDS)
                )),
            };
        }
        let Some((ns, pod)) = s.split_once('/') else {
            return Err(format!(
                "bad peer `{s}`: write NAMESPACE/POD (x/a, x/*, */*) or KIND:NAME (svc:x/s, host:cloud-db, external:client, node:node-1, nodeport:x/s, lb:x/s, ingress:x/i)"
            ));
        };
        let namespace = if ns == "*" {
            NamePattern::Any
        } else {
            NamePattern::Exact(name("namespace", ns, false)?)
        };
        let pod = if pod == "*" {
            NamePattern::Any
        } else {
            NamePattern::Exact(name("pod", pod, true)?)
        };
        if namespace == NamePattern::Any && pod != NamePattern::Any {
            return Err(format!(
                "bad peer `{s}`: a namespace wildcard needs a pod wildcard too (`*/*`)"
            ));
        }
        Ok(Peer::Pod {
            namespace,
            name: pod,
        })
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
            Peer::Service(o) => write!(f, "svc:{o}"),
            Peer::NodePort {
                service,
                node: None,
            } => write!(f, "nodeport:{service}"),
            Peer::NodePort {
                service,
                node: Some(n),
            } => write!(f, "nodeport:{service}@{n}"),
            Peer::LoadBalancer(o) => write!(f, "lb:{o}"),
            Peer::Ingress(o) => write!(f, "ingress:{o}"),
            Peer::Host(h) => write!(f, "host:{h}"),
            Peer::Node(n) => write!(f, "node:{n}"),
            Peer::External(e) => write!(f, "external:{e}"),
        }
    }
}

impl Serialize for Peer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Peer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Peer {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Peer".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A probe endpoint: NAMESPACE/POD, NAMESPACE/*, */*, svc:NS/NAME, nodeport:NS/NAME[@NODE], lb:NS/NAME, ingress:NS/NAME, host:NAME, node:NAME, external:NAME.",
            "type": "string",
            "pattern": "^((svc|lb|ingress):[a-z0-9-]+/[a-z0-9.-]+|nodeport:[a-z0-9-]+/[a-z0-9.-]+(@[a-z0-9-]+)?|(host|node|external):[a-z0-9-]+|[a-z0-9-]+/([a-z0-9.-]+|\\*)|\\*/\\*)$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        for s in [
            "x/a",
            "x/*",
            "*/*",
            "svc:x/s-x-a",
            "nodeport:x/web",
            "nodeport:x/web@node-2",
            "lb:blue/web",
            "ingress:blue/web-ing",
            "host:cloud-db",
            "node:node-1",
            "external:internet-client",
        ] {
            let p: Peer = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
    }

    #[test]
    fn rejects_with_hints() {
        assert!("x".parse::<Peer>().unwrap_err().contains("NAMESPACE/POD"));
        assert!(
            "sv:x/a"
                .parse::<Peer>()
                .unwrap_err()
                .contains("did you mean `svc`")
        );
        assert!("*/a".parse::<Peer>().is_err());
        assert!("X/a".parse::<Peer>().is_err());
        assert!(
            "svc:x"
                .parse::<Peer>()
                .unwrap_err()
                .contains("svc:NAMESPACE/NAME")
        );
    }

    #[test]
    fn wildcards() {
        assert!("x/*".parse::<Peer>().unwrap().is_wildcard());
        assert!(!"x/a".parse::<Peer>().unwrap().is_wildcard());
        assert!(!"svc:x/a".parse::<Peer>().unwrap().can_originate());
    }
}
