//! What the configuration does not say: the underlay (compute nodes with their vhost
//! addresses, fabric hosts without a vrouter, the gateway and the external clients behind
//! it) and where the simulated endpoints live and what they serve.

use std::net::Ipv4Addr;

use harness_scenario::{Protocol, ServiceFunction};

/// A port an endpoint answers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServedPort {
    /// TCP, UDP or SCTP (ICMP echo is always answered).
    pub protocol: Protocol,
    /// Port number.
    pub port: u16,
}

impl ServedPort {
    /// A TCP port.
    pub fn tcp(port: u16) -> Self {
        ServedPort {
            protocol: Protocol::Tcp,
            port,
        }
    }

    /// A UDP port.
    pub fn udp(port: u16) -> Self {
        ServedPort {
            protocol: Protocol::Udp,
            port,
        }
    }

    /// An SCTP port.
    pub fn sctp(port: u16) -> Self {
        ServedPort {
            protocol: Protocol::Sctp,
            port,
        }
    }
}

/// A compute node running a vrouter.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Node name (the virtual-router name).
    pub name: String,
    /// vhost0 address on the underlay.
    pub vhost: Ipv4Addr,
    /// Ports the node's own IP stack serves (kubelet, NodePorts...).
    pub ports: Vec<ServedPort>,
}

/// A host on the underlay without a vrouter: a plain IP stack.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSpec {
    /// Name.
    pub name: String,
    /// Underlay address.
    pub ip: Ipv4Addr,
    /// Ports it serves.
    pub ports: Vec<ServedPort>,
}

/// A client outside the cluster, reached through the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSpec {
    /// Name.
    pub name: String,
    /// Its (public) address.
    pub ip: Ipv4Addr,
}

/// The gateway between the underlay, the overlay's public networks and external clients.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySpec {
    /// Name.
    pub name: String,
    /// Underlay address (tunnel endpoint).
    pub ip: Ipv4Addr,
}

/// A simulated workload: a pod (one interface) or a service instance (left and right
/// interfaces) that forwards between its interfaces.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSpec {
    /// Name shown in verdicts and traces, e.g. `x/a`.
    pub name: String,
    /// VMI uuids (a pod's interfaces; a service instance's left and right ports).
    pub interfaces: Vec<String>,
    /// Node override (otherwise the virtual-router ↔ virtual-machine link decides).
    pub node: Option<String>,
    /// Ports it serves.
    pub ports: Vec<ServedPort>,
    /// For a service instance: what it does to the traffic it forwards.
    pub function: Option<ServiceFunction>,
}

impl EndpointSpec {
    /// A pod with one interface serving `ports`.
    pub fn pod(name: &str, vmi: &str, ports: Vec<ServedPort>) -> Self {
        EndpointSpec {
            name: name.to_owned(),
            interfaces: vec![vmi.to_owned()],
            node: None,
            ports,
            function: None,
        }
    }
}

/// The underlay and the endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Compute nodes.
    pub nodes: Vec<NodeSpec>,
    /// Hosts without a vrouter.
    pub fabric_hosts: Vec<HostSpec>,
    /// External clients.
    pub external_clients: Vec<ClientSpec>,
    /// The gateway.
    pub gateway: GatewaySpec,
    /// Endpoints.
    pub endpoints: Vec<EndpointSpec>,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            nodes: Vec::new(),
            fabric_hosts: Vec::new(),
            external_clients: Vec::new(),
            gateway: GatewaySpec {
                name: "gateway".into(),
                ip: Ipv4Addr::new(192, 168, 0, 254),
            },
            endpoints: Vec::new(),
        }
    }
}
