//! The control-plane view every vrouter shares: VRFs with their routes (local and remote
//! interfaces, routes leaked by network policies, ECMP routes of floating IPs, chain steering,
//! ip-fabric routes), MPLS labels and VNIs, interface placement, compiled policies.
//!
//! It stands in for the control node and the schema transformer: routes are computed from the
//! configuration directly (no BGP/XMPP), and each vrouter resolves a next hop relative to
//! itself (its own interface, or a tunnel to the node that hosts it).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::config::{AddrMatch, Model, PolicyAction, ServiceSide};
use crate::forward::hash::FxMap;
use crate::forward::policy::{Acl, Firewall, SecurityGroups};
use crate::topology::Topology;
use crate::wire::frame::Mac;

/// Index of a network in [`Model::networks`].
pub type NetId = usize;
/// Index of an interface in [`Model::interfaces`].
pub type ItfId = usize;
/// Index of a node.
pub type NodeId = usize;
/// Index of a VRF.
pub type VrfId = usize;
/// Index of a floating IP in [`Model::floating_ips`].
pub type FipId = usize;

/// The MPLS label of a node's vhost (its own IP stack).
pub const VHOST_LABEL: u32 = 16;
/// The first label of interfaces.
pub const FIRST_ITF_LABEL: u32 = 17;
/// The label the gateway uses for its public VRF.
pub const GATEWAY_LABEL: u32 = 16;
/// The MAC address the vrouter answers ARP with (Contrail's `00:00:5e:00:01:00`).
pub const VROUTER_MAC: Mac = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x00];

/// A next hop, in control-plane terms (resolved per vrouter when forwarding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHop {
    /// An interface (local, or a tunnel to its node with its label).
    Interface(ItfId),
    /// A floating IP attached to several interfaces: ECMP, then DNAT at the member's vrouter.
    Ecmp {
        /// The floating IP.
        fip: FipId,
        /// Member interfaces.
        members: Vec<ItfId>,
    },
    /// An address the vrouter owns (the network's gateway or DNS server).
    Receive,
    /// An underlay address (a node vhost or a fabric host), learned from ip-fabric.
    Underlay(Ipv4Addr),
    /// Everything else, in a network with ip-fabric forwarding: plain on the underlay.
    FabricDefault,
    /// Everything else, in a network with fabric SNAT.
    FabricSnat,
    /// Everything else, in a network with floating-IP pools: the gateway.
    Gateway,
    /// A load balancer VIP (a floating IP with port mappings) whose pool has no member:
    /// the vrouter that looks it up answers ICMP port unreachable (see [`Control::compile`]).
    Reject {
        /// The floating IP.
        fip: FipId,
    },
    /// Steered into a service instance interface.
    Service {
        /// Service instance fq string.
        si: String,
        /// The side packets enter by.
        side: ServiceSide,
    },
}

/// Where a route comes from (for traces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSource {
    /// An interface of this network.
    Local,
    /// Leaked from another network by a network policy attached to both.
    Leaked {
        /// The other network.
        from: NetId,
        /// The policy.
        policy: String,
    },
    /// The network's gateway / DNS address.
    Gateway,
    /// A floating IP.
    FloatingIp,
    /// ip-fabric (underlay) routes.
    Fabric,
    /// A service chain.
    Chain {
        /// The policy with `apply_service`.
        policy: String,
    },
    /// The SDN gateway (public networks).
    SdnGateway,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Prefix.
    pub prefix: Ipv4Net,
    /// Network the destination belongs to (`None`: ip-fabric / outside).
    pub origin: Option<NetId>,
    /// Next hop.
    pub nh: NextHop,
    /// Where it comes from.
    pub source: RouteSource,
}

/// A routing instance.
#[derive(Debug, Clone, Default)]
pub struct Vrf {
    /// Name (`<network fq>:<network name>` like the real routing instance, or a service
    /// VRF's name).
    pub name: String,
    /// The network (for network VRFs).
    pub net: Option<NetId>,
    routes: Vec<Route>,
    hosts: FxMap<Ipv4Addr, usize>,
    prefixes: Vec<usize>,
}

impl Vrf {
    fn new(name: String, net: Option<NetId>) -> Self {
        Vrf {
            name,
            net,
            ..Vrf::default()
        }
    }

    /// Adds a route unless one for the same prefix exists (first writer wins).
    fn add(&mut self, r: Route) {
        if r.prefix.prefix_len() == 32 {
            if self.hosts.contains_key(&r.prefix.addr()) {
                return;
            }
            self.hosts.insert(r.prefix.addr(), self.routes.len());
        } else {
            if self
                .prefixes
                .iter()
                .any(|i| self.routes[*i].prefix == r.prefix)
            {
                return;
            }
            self.prefixes.push(self.routes.len());
        }
        self.routes.push(r);
    }

    fn finish(&mut self) {
        let routes = &self.routes;
        self.prefixes
            .sort_by_key(|i| std::cmp::Reverse(routes[*i].prefix.prefix_len()));
    }

    /// Longest prefix match.
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<&Route> {
        if let Some(i) = self.hosts.get(&addr) {
            return Some(&self.routes[*i]);
        }
        self.prefixes
            .iter()
            .map(|i| &self.routes[*i])
            .find(|r| r.prefix.contains(&addr))
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// A compute node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// vhost address.
    pub vhost: Ipv4Addr,
    /// Underlay MAC.
    pub mac: Mac,
}

/// The compiled control plane.
#[derive(Debug)]
pub struct Control {
    /// The configuration.
    pub model: Model,
    /// Nodes.
    pub nodes: Vec<NodeInfo>,
    /// Node by name.
    pub node_by_name: HashMap<String, NodeId>,
    /// Node by vhost address.
    pub node_by_vhost: FxMap<Ipv4Addr, NodeId>,
    /// Node of each interface (topology placement, else the virtual-router link).
    pub itf_node: Vec<Option<NodeId>>,
    /// MPLS label of each interface on its node.
    pub itf_label: Vec<u32>,
    /// Interface by (node, label).
    pub label_map: Vec<FxMap<u32, ItfId>>,
    /// VRFs: one per network (same index as the network), then service VRFs.
    pub vrfs: Vec<Vrf>,
    /// VRF an interface's packets are looked up in.
    pub itf_vrf: Vec<VrfId>,
    /// VRF by VNI.
    pub vni_map: FxMap<u32, VrfId>,
    /// Floating IPs attached to each interface.
    pub itf_fips: Vec<Vec<FipId>>,
    /// Interface owning each address.
    pub addr_owner: FxMap<Ipv4Addr, ItfId>,
    /// Underlay routes of ip-fabric-forwarded interface addresses → node.
    pub fabric_pod_routes: FxMap<Ipv4Addr, NodeId>,
    /// Floating IPs the gateway reaches (in networks with pools): address → fip.
    pub gateway_fips: FxMap<Ipv4Addr, FipId>,
    /// VRF of the gateway's public networks (the first public network's VRF).
    pub ip_fabric: Option<NetId>,
    /// Network-policy ACL of each network.
    pub acls: Vec<Acl>,
    /// Security groups.
    pub security_groups: SecurityGroups,
    /// Firewall (APS) policies.
    pub firewall: Firewall,
    /// Networks each network policy is attached to.
    pub policy_networks: HashMap<String, Vec<NetId>>,
    /// Interfaces of each service instance: (left, right).
    pub service_ports: HashMap<String, (Vec<ItfId>, Vec<ItfId>)>,
    /// The gateway's underlay address.
    pub gateway: Ipv4Addr,
    /// Ingress proxies (opencontrail load balancers) and where their VIP interface runs.
    pub proxies: Vec<ProxyPlacement>,
    /// The proxy behind each interface (its VIP interface).
    pub itf_proxy: Vec<Option<usize>>,
    /// Warnings from compiling (placement, chains).
    pub warnings: Vec<String>,
}

/// Where an opencontrail load balancer (Contrail's haproxy, an ingress) runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPlacement {
    /// Index in [`Model::load_balancers`].
    pub lb: usize,
    /// Its VIP interface.
    pub itf: ItfId,
    /// The node whose vrouter hosts the VIP interface.
    pub node: NodeId,
}

/// A deterministic MAC for an underlay device.
pub fn device_mac(ip: Ipv4Addr) -> Mac {
    let o = ip.octets();
    [0x0e, 0x00, o[0], o[1], o[2], o[3]]
}

impl Control {
    /// Compiles the control plane of `model` over `topo`.
    pub fn compile(model: Model, topo: &Topology) -> Control {
        let mut warnings = Vec::new();
        let nodes: Vec<NodeInfo> = topo
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                vhost: n.vhost,
                mac: device_mac(n.vhost),
            })
            .collect();
        let node_by_name: HashMap<String, NodeId> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let node_by_vhost = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.vhost, i))
            .collect();

        // Placement: topology first, then the virtual-router link.
        let mut itf_node: Vec<Option<NodeId>> = model
            .interfaces
            .iter()
            .map(|i| i.node.as_ref().and_then(|n| node_by_name.get(n).copied()))
            .collect();
        for ep in &topo.endpoints {
            for vmi in &ep.interfaces {
                match (model.interface_by_uuid.get(vmi), &ep.node) {
                    (Some(i), Some(n)) => match node_by_name.get(n) {
                        Some(n) => itf_node[*i] = Some(*n),
                        None => warnings.push(format!(
                            "endpoint {}: node {n} is not in the topology",
                            ep.name
                        )),
                    },
                    (Some(_), None) => {}
                    (None, _) => warnings.push(format!(
                        "endpoint {}: interface {vmi} is not in the configuration (yet)",
                        ep.name
                    )),
                }
            }
        }

        // Ingress proxies: svc-monitor's opencontrail driver launches the haproxy of a
        // load balancer on a compute node and plugs its VIP interface there. kube-manager's
        // VIP interface has no virtual machine (so no virtual-router link): the control
        // plane places it itself, on a node picked by the load balancer's uuid (stable
        // across recompiles, spread across nodes like svc-monitor's scheduler).
        let mut proxies = Vec::new();
        let mut itf_proxy: Vec<Option<usize>> = vec![None; model.interfaces.len()];
        for (k, lb) in model.load_balancers.iter().enumerate() {
            if lb.provider != "opencontrail" {
                continue;
            }
            let Some(i) = lb
                .vip_interface
                .as_ref()
                .and_then(|u| model.interface_by_uuid.get(u).copied())
            else {
                warnings.push(format!(
                    "load balancer {}: no VIP interface in the configuration; its proxy does not run",
                    lb.fq
                ));
                continue;
            };
            if itf_node[i].is_none() && !nodes.is_empty() {
                let h = crate::config::model::fnv(lb.uuid.as_bytes());
                itf_node[i] = Some((h % nodes.len() as u64) as usize);
            }
            if let Some(node) = itf_node[i] {
                itf_proxy[i] = Some(proxies.len());
                proxies.push(ProxyPlacement {
                    lb: k,
                    itf: i,
                    node,
                });
            }
        }

        // Labels per node, in interface (uuid) order.
        let mut itf_label = vec![0u32; model.interfaces.len()];
        let mut label_map: Vec<FxMap<u32, ItfId>> = vec![FxMap::default(); nodes.len()];
        let mut next_label = vec![FIRST_ITF_LABEL; nodes.len()];
        for (i, n) in itf_node.iter().enumerate() {
            if let Some(n) = n {
                itf_label[i] = next_label[*n];
                label_map[*n].insert(next_label[*n], i);
                next_label[*n] += 1;
            }
        }

        let mut addr_owner: FxMap<Ipv4Addr, ItfId> = FxMap::default();
        for (i, itf) in model.interfaces.iter().enumerate() {
            for ip in &itf.ips {
                addr_owner.entry(*ip).or_insert(i);
            }
        }
        let mut itf_fips: Vec<Vec<FipId>> = vec![Vec::new(); model.interfaces.len()];
        for (f, fip) in model.floating_ips.iter().enumerate() {
            for u in &fip.interfaces {
                if let Some(i) = model.interface_by_uuid.get(u) {
                    itf_fips[*i].push(f);
                }
            }
        }

        // Policy attachments.
        let mut policy_networks: HashMap<String, Vec<NetId>> = HashMap::new();
        for (n, net) in model.networks.iter().enumerate() {
            for p in &net.policies {
                policy_networks.entry(p.clone()).or_default().push(n);
            }
        }
        let ip_fabric = model.networks.iter().position(|n| n.is_ip_fabric());

        // Connections (route leaks) and chains from pass rules of policies attached to both.
        let expand = |m: &AddrMatch, attached: &[NetId]| -> Vec<NetId> {
            match m {
                AddrMatch::Any => attached.to_vec(),
                AddrMatch::Network(fq) => model
                    .network_by_fq
                    .get(fq)
                    .copied()
                    .filter(|n| attached.contains(n))
                    .into_iter()
                    .collect(),
                AddrMatch::PolicyNetworks(p) => policy_networks
                    .get(p)
                    .map(|v| v.iter().copied().filter(|n| attached.contains(n)).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            }
        };
        let mut connections: Vec<(NetId, NetId, String)> = Vec::new();
        let mut chains: Vec<(NetId, NetId, String, Vec<String>)> = Vec::new();
        let mut policy_names: Vec<&String> = policy_networks.keys().collect();
        policy_names.sort();
        for pname in policy_names {
            let attached = &policy_networks[pname];
            let Some(rules) = model.policies.get(pname) else {
                warnings.push(format!(
                    "network policy {pname} is attached but not in the configuration"
                ));
                continue;
            };
            for rule in rules.iter().filter(|r| r.action == PolicyAction::Pass) {
                let srcs: Vec<NetId> = rule.src.iter().flat_map(|m| expand(m, attached)).collect();
                let dsts: Vec<NetId> = rule.dst.iter().flat_map(|m| expand(m, attached)).collect();
                for s in &srcs {
                    for d in &dsts {
                        if s == d {
                            continue;
                        }
                        if rule.services.is_empty() {
                            connections.push((*s, *d, pname.clone()));
                        } else {
                            chains.push((*s, *d, pname.clone(), rule.services.clone()));
                        }
                    }
                }
            }
        }

        // Service instance ports.
        let mut service_ports: HashMap<String, (Vec<ItfId>, Vec<ItfId>)> = HashMap::new();
        for (name, si) in &model.service_instances {
            let ids = |v: &[String]| -> Vec<ItfId> {
                v.iter()
                    .filter_map(|u| model.interface_by_uuid.get(u).copied())
                    .collect()
            };
            service_ports.insert(name.clone(), (ids(&si.left), ids(&si.right)));
        }

        // Own routes of each network: interfaces and floating IPs.
        let mut own: Vec<Vec<Route>> = vec![Vec::new(); model.networks.len()];
        for (i, itf) in model.interfaces.iter().enumerate() {
            if itf_node[i].is_none() {
                continue; // not hosted anywhere (e.g. a native load balancer's VIP port)
            }
            for ip in &itf.ips {
                own[itf.network].push(Route {
                    prefix: Ipv4Net::from(*ip),
                    origin: Some(itf.network),
                    nh: NextHop::Interface(i),
                    source: RouteSource::Local,
                });
            }
        }
        let mut gateway_fips: FxMap<Ipv4Addr, FipId> = FxMap::default();
        let pool_networks: HashSet<NetId> = model
            .floating_ips
            .iter()
            .filter(|f| {
                !model.networks[f.network].subnets.is_empty() && f.fq.split(':').count() == 5
            })
            .map(|f| f.network)
            .collect();
        for (f, fip) in model.floating_ips.iter().enumerate() {
            let members: Vec<ItfId> = fip
                .interfaces
                .iter()
                .filter_map(|u| model.interface_by_uuid.get(u).copied())
                .filter(|i| itf_node[*i].is_some())
                .collect();
            if members.is_empty() {
                // A load balancer VIP (svc-monitor's native driver writes the VIP as a
                // floating IP with port mappings) without members — a service with no ready
                // backend. The control node keeps its route with a reject next hop, so the
                // vrouter a client's packet is looked up in answers ICMP port unreachable
                // at once: the same answer kube-proxy's REJECT rule gives for a service
                // without endpoints. The route leaks like the VIP's ECMP route would, so
                // network isolation still hides the VIP from networks not connected to it.
                // A plain floating IP without an interface has no route and drops.
                if fip.port_mappings_enable {
                    own[fip.network].push(Route {
                        prefix: Ipv4Net::from(fip.address),
                        origin: Some(fip.network),
                        nh: NextHop::Reject { fip: f },
                        source: RouteSource::FloatingIp,
                    });
                    if pool_networks.contains(&fip.network) {
                        gateway_fips.insert(fip.address, f);
                    }
                }
                continue;
            }
            own[fip.network].push(Route {
                prefix: Ipv4Net::from(fip.address),
                origin: Some(fip.network),
                nh: NextHop::Ecmp { fip: f, members },
                source: RouteSource::FloatingIp,
            });
            if pool_networks.contains(&fip.network) {
                gateway_fips.insert(fip.address, f);
            }
        }

        // Network VRFs.
        let mut vrfs: Vec<Vrf> = model
            .networks
            .iter()
            .enumerate()
            .map(|(n, net)| {
                let name = net.fq.rsplit(':').next().unwrap_or("");
                Vrf::new(format!("{}:{name}", net.fq), Some(n))
            })
            .collect();
        for (n, net) in model.networks.iter().enumerate() {
            for gw in &net.gateways {
                vrfs[n].add(Route {
                    prefix: Ipv4Net::from(*gw),
                    origin: Some(n),
                    nh: NextHop::Receive,
                    source: RouteSource::Gateway,
                });
            }
        }
        // Chains take precedence over plain leaks between the same pair: add them first.
        let mut chain_vrfs: Vec<(String, ServiceSide, Vec<Route>)> = Vec::new();
        for (a, b, policy, sis) in &chains {
            let missing: Vec<&String> = sis
                .iter()
                .filter(|s| !service_ports.contains_key(*s))
                .collect();
            if !missing.is_empty() {
                warnings.push(format!(
                    "network policy {policy}: service instance(s) {missing:?} unknown; the chain is not installed"
                ));
                continue;
            }
            // a → b enters the first instance on the left; b → a the last on the right.
            for r in &own[*b] {
                vrfs[*a].add(Route {
                    nh: NextHop::Service {
                        si: sis[0].clone(),
                        side: ServiceSide::Left,
                    },
                    source: RouteSource::Chain {
                        policy: policy.clone(),
                    },
                    ..r.clone()
                });
            }
            for r in &own[*a] {
                vrfs[*b].add(Route {
                    nh: NextHop::Service {
                        si: sis[sis.len() - 1].clone(),
                        side: ServiceSide::Right,
                    },
                    source: RouteSource::Chain {
                        policy: policy.clone(),
                    },
                    ..r.clone()
                });
            }
            // Leaving instance k on the right goes to instance k+1's left (or to b); leaving
            // on the left goes to instance k-1's right (or to a).
            for (k, si) in sis.iter().enumerate() {
                let right: Vec<Route> = own[*b]
                    .iter()
                    .map(|r| match sis.get(k + 1) {
                        Some(next) => Route {
                            nh: NextHop::Service {
                                si: next.clone(),
                                side: ServiceSide::Left,
                            },
                            source: RouteSource::Chain {
                                policy: policy.clone(),
                            },
                            ..r.clone()
                        },
                        None => r.clone(),
                    })
                    .collect();
                let left: Vec<Route> = own[*a]
                    .iter()
                    .map(|r| match k.checked_sub(1).and_then(|p| sis.get(p)) {
                        Some(prev) => Route {
                            nh: NextHop::Service {
                                si: prev.clone(),
                                side: ServiceSide::Right,
                            },
                            source: RouteSource::Chain {
                                policy: policy.clone(),
                            },
                            ..r.clone()
                        },
                        None => r.clone(),
                    })
                    .collect();
                chain_vrfs.push((si.clone(), ServiceSide::Right, right));
                chain_vrfs.push((si.clone(), ServiceSide::Left, left));
            }
        }
        for (n, routes) in own.iter().enumerate() {
            for r in routes {
                vrfs[n].add(r.clone());
            }
        }
        let fabric_addrs: Vec<Ipv4Addr> = topo
            .nodes
            .iter()
            .map(|n| n.vhost)
            .chain(topo.fabric_hosts.iter().map(|h| h.ip))
            .collect();
        // A connection leaks routes both ways (answers need the way back).
        for (x, y, policy) in &connections {
            for (a, b) in [(*x, *y), (*y, *x)] {
                for r in &own[b] {
                    vrfs[a].add(Route {
                        source: RouteSource::Leaked {
                            from: b,
                            policy: policy.clone(),
                        },
                        ..r.clone()
                    });
                }
                if Some(b) == ip_fabric {
                    for addr in &fabric_addrs {
                        vrfs[a].add(Route {
                            prefix: Ipv4Net::from(*addr),
                            origin: None,
                            nh: NextHop::Underlay(*addr),
                            source: RouteSource::Fabric,
                        });
                    }
                }
            }
        }
        let mut fabric_pod_routes: FxMap<Ipv4Addr, NodeId> = FxMap::default();
        for (n, net) in model.networks.iter().enumerate() {
            let default = if net.fabric_forwarding {
                Some((NextHop::FabricDefault, RouteSource::Fabric))
            } else if net.fabric_snat {
                Some((NextHop::FabricSnat, RouteSource::Fabric))
            } else if pool_networks.contains(&n) {
                Some((NextHop::Gateway, RouteSource::SdnGateway))
            } else {
                None
            };
            if let Some((nh, source)) = default {
                vrfs[n].add(Route {
                    prefix: Ipv4Net::default(),
                    origin: None,
                    nh,
                    source,
                });
            }
            if net.fabric_forwarding {
                for r in &own[n] {
                    if let NextHop::Interface(i) = r.nh
                        && let Some(node) = itf_node[i]
                    {
                        fabric_pod_routes.insert(r.prefix.addr(), node);
                    }
                }
            }
        }
        // Service VRFs.
        let mut itf_vrf: Vec<VrfId> = model.interfaces.iter().map(|i| i.network).collect();
        for (si, side, routes) in chain_vrfs {
            let name = format!(
                "{si}:service-{}",
                if side == ServiceSide::Left {
                    "left"
                } else {
                    "right"
                }
            );
            let id = match vrfs.iter().position(|v| v.name == name) {
                Some(id) => id,
                None => {
                    vrfs.push(Vrf::new(name, None));
                    vrfs.len() - 1
                }
            };
            for r in routes {
                vrfs[id].add(r);
            }
            if let Some((left, right)) = service_ports.get(&si) {
                let ports = if side == ServiceSide::Left {
                    left
                } else {
                    right
                };
                for p in ports {
                    itf_vrf[*p] = id;
                }
            }
        }
        for v in &mut vrfs {
            v.finish();
        }
        let vni_map = model
            .networks
            .iter()
            .enumerate()
            .map(|(n, net)| (net.vni, n))
            .collect();

        let acls = (0..model.networks.len())
            .map(|n| Acl::compile(&model, n))
            .collect();
        let security_groups = SecurityGroups::compile(&model);
        let firewall = Firewall::compile(&model);
        Control {
            nodes,
            node_by_name,
            node_by_vhost,
            itf_node,
            itf_label,
            label_map,
            vrfs,
            itf_vrf,
            vni_map,
            itf_fips,
            addr_owner,
            fabric_pod_routes,
            gateway_fips,
            ip_fabric,
            acls,
            security_groups,
            firewall,
            policy_networks,
            service_ports,
            gateway: topo.gateway.ip,
            proxies,
            itf_proxy,
            warnings,
            model,
        }
    }

    /// Recompiles only the policies (after a change to firewall objects, tags, address
    /// groups or security groups).
    pub fn recompile_policy(&mut self, model: Model) {
        self.model = model;
        self.acls = (0..self.model.networks.len())
            .map(|n| Acl::compile(&self.model, n))
            .collect();
        self.security_groups = SecurityGroups::compile(&self.model);
        self.firewall = Firewall::compile(&self.model);
    }

    /// A short name of an interface for traces: its fq_name's last element.
    pub fn itf_name(&self, i: ItfId) -> &str {
        self.model.interfaces[i].fq.rsplit(':').next().unwrap_or("")
    }

    /// Name of a network (last fq element), or `ip-fabric` for `None`.
    pub fn net_name(&self, n: Option<NetId>) -> &str {
        match n {
            Some(n) => self.model.networks[n].fq.rsplit(':').next().unwrap_or(""),
            None => "ip-fabric",
        }
    }
}
