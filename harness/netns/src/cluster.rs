//! The topology in network namespaces and its lifecycle: [`NetnsDataplane::up`] builds it
//! from a model [`Dataplane`] (nodes, fabric hosts, gateway, external clients; the pods
//! through [`NetnsDataplane::sync`], see [`crate::pods`]), starts the user-space vrouters,
//! the probe agents and the capture; dropping it (or [`CleanupHandle::cleanup`]) stops them and
//! deletes every namespace it created.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use harness_scenario::Protocol;
use harness_vrouter_sim::forward::control::device_mac;
use harness_vrouter_sim::wire::frame::Mac;
use harness_vrouter_sim::{CapturedFrame, Dataplane, EndpointRef, ServedPort};

use crate::capture::{self, Captured};
use crate::pods::Pods;
use crate::probe::{self, NetVerdict, ProbeSpec};
use crate::run::{RunRecord, new_run_id, sweep_leftovers};
use crate::vrouter::{self, Forwarder, ForwarderStats, Port, Role, VrouterHandle};
use crate::{NetnsError, ip, sys};
use harness_agent::ServerHandle;

/// How the topology is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsOptions {
    /// Run id (six hex digits); a fresh one when `None`.
    pub run_id: Option<String>,
    /// Prefix length of the underlay subnet the vhosts, fabric hosts and gateway share.
    pub underlay_prefix_len: u8,
    /// MTU of workload interfaces; the underlay gets 100 bytes more for the encapsulation.
    pub mtu: u16,
    /// Capture every frame on the underlay ([`NetnsDataplane::underlay_frames`]).
    pub capture: bool,
    /// Delete leftovers of dead runs first ([`sweep_leftovers`]).
    pub sweep: bool,
    /// Route each node's own IP stack through its vrouter, as on a Contrail compute node
    /// ([`NetnsDataplane::route_node_stacks`]): needed for nodes to answer pods and to reach
    /// ip-fabric-forwarded pods; off by default (nodes then only talk on the underlay).
    pub route_node_stacks: bool,
}

impl Default for NetnsOptions {
    fn default() -> Self {
        NetnsOptions {
            run_id: None,
            underlay_prefix_len: 24,
            mtu: 1500,
            capture: false,
            sweep: true,
            route_node_stacks: false,
        }
    }
}

/// The next hop a node's kernel sends overlay-bound packets to (with
/// [`NetnsOptions::route_node_stacks`]): a link-local address whose neighbour entry is the
/// vrouter's MAC.
const NODE_NEXT_HOP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);

/// The gateway's link-local next hop as external clients see it.
const CLIENT_NEXT_HOP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);

pub(crate) fn mac_str(m: Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A MAC in the locally administered range for a device of `kind` at `ip` (the model's
/// device MACs use kind 0).
fn local_mac(kind: u8, ip: Ipv4Addr) -> Mac {
    let o = ip.octets();
    [0x0e, kind, o[0], o[1], o[2], o[3]]
}

#[derive(Debug, Clone)]
pub(crate) struct NodeNs {
    pub name: String,
    pub ns: String,
    pub vhost: Ipv4Addr,
    pub mac: Mac,
    pub ports: Vec<ServedPort>,
}

#[derive(Debug, Clone)]
pub(crate) struct HostNs {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub ports: Vec<ServedPort>,
}

#[derive(Debug, Clone)]
pub(crate) struct ClientNs {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub link: String,
}

/// The part of the topology that is fixed for the run's life: the underlay, nodes, fabric
/// hosts, the gateway and its clients. Pods come and go ([`crate::pods`]).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub underlay: String,
    pub nodes: Vec<NodeNs>,
    pub hosts: Vec<HostNs>,
    pub gateway: Option<(String, Ipv4Addr)>,
    pub clients: Vec<ClientNs>,
}

impl Layout {
    fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.underlay.clone()];
        v.extend(self.nodes.iter().map(|n| n.ns.clone()));
        v.extend(self.hosts.iter().map(|h| h.ns.clone()));
        v.extend(self.gateway.iter().map(|g| g.0.clone()));
        v.extend(self.clients.iter().map(|c| c.ns.clone()));
        v
    }

    fn from_dataplane(dp: &Dataplane, run_id: &str) -> Result<Layout, NetnsError> {
        let ns = |role: &str| format!("h{run_id}-{role}");
        let topo = dp.topology();

        let mut nodes = Vec::new();
        for (i, n) in topo.nodes.iter().enumerate() {
            let (vhost, mac) = dp.node_underlay(&n.name)?;
            nodes.push(NodeNs {
                name: n.name.clone(),
                ns: ns(&format!("n{}", i + 1)),
                vhost,
                mac,
                ports: n.ports.clone(),
            });
        }
        let hosts = topo
            .fabric_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| HostNs {
                name: h.name.clone(),
                ns: ns(&format!("f{}", i + 1)),
                ip: h.ip,
                ports: h.ports.clone(),
            })
            .collect::<Vec<_>>();
        let clients: Vec<ClientNs> = topo
            .external_clients
            .iter()
            .enumerate()
            .map(|(i, c)| ClientNs {
                name: c.name.clone(),
                ns: ns(&format!("c{}", i + 1)),
                ip: c.ip,
                link: format!("c{}", i + 1),
            })
            .collect();
        let gateway = (!clients.is_empty()).then(|| (ns("g"), topo.gateway.ip));
        Ok(Layout {
            underlay: ns("u"),
            nodes,
            hosts,
            gateway,
            clients,
        })
    }
}

pub(crate) struct Inner {
    pub run_id: String,
    /// Every namespace the run has created and not deleted yet (pods join and leave), in the
    /// order they were created; mirrored in the run's record before each is created.
    pub namespaces: Mutex<Vec<String>>,
    pub stop: Arc<AtomicBool>,
    pub threads: Mutex<Vec<JoinHandle<Result<(), NetnsError>>>>,
    /// The probe agents of the nodes and fabric hosts (pods keep their own).
    pub servers: Mutex<Vec<ServerHandle>>,
    /// The pods wired so far (their probe agents are shut down by cleanup too).
    pub pods: Mutex<Pods>,
    pub done: AtomicBool,
    /// Why a node cannot reach its own node ports through kube-proxy's rules (`None` once
    /// [`NetnsDataplane::route_node_stacks`] steered them to the vrouter on every node).
    pub own_node_ports: Mutex<Option<String>>,
}

/// Locks `m`, taking the data of a poisoned lock (a panicked holder leaves nothing half-done
/// that the namespaces' bookkeeping cannot survive).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Records `more` namespaces as the run's (before they are created).
    pub(crate) fn own(&self, more: &[String]) -> Result<(), NetnsError> {
        let mut ns = lock(&self.namespaces);
        ns.extend(more.iter().cloned());
        RunRecord::mine(&self.run_id, ns.clone()).write()
    }

    /// Forgets namespaces that were deleted.
    pub(crate) fn disown(&self, gone: &[String]) -> Result<(), NetnsError> {
        let mut ns = lock(&self.namespaces);
        ns.retain(|n| !gone.contains(n));
        RunRecord::mine(&self.run_id, ns.clone()).write()
    }

    fn cleanup(&self) -> Result<(), NetnsError> {
        if self.done.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.stop.store(true, Ordering::SeqCst);
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        let mut servers: Vec<ServerHandle> = lock(&self.servers).drain(..).collect();
        servers.extend(lock(&self.pods).take_servers());
        // Shutting an agent down closes its sockets at once; each other thread polls with a
        // 50 ms timeout and then sees the stop flag. Sockets close as they go, which lets the
        // kernel free the namespaces.
        for s in servers {
            s.shutdown();
        }
        for t in threads {
            let _ = t.join();
        }
        let namespaces = lock(&self.namespaces).clone();
        let r = ip::delete_netns(&namespaces);
        if r.is_ok() {
            RunRecord::remove(&self.run_id);
        }
        r
    }
}

/// Stops a [`NetnsDataplane`] and deletes its namespaces from anywhere (a Ctrl-C handler):
/// idempotent, and a no-op once done.
#[derive(Clone)]
pub struct CleanupHandle(Arc<Inner>);

impl std::fmt::Debug for CleanupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanupHandle")
            .field("run_id", &self.0.run_id)
            .finish()
    }
}

impl CleanupHandle {
    /// Stops the vrouters, probe agents and capture and deletes every namespace of the run.
    ///
    /// # Errors
    /// A failing `ip netns del` (the run's record stays, so the next run's sweep retries).
    pub fn cleanup(&self) -> Result<(), NetnsError> {
        self.0.cleanup()
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.0.run_id
    }
}

/// Counters of one user-space vrouter (or the gateway).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwarderCounters {
    /// Frames read.
    pub rx: u64,
    /// Frames written.
    pub tx: u64,
    /// Frames whose partial checksum was completed.
    pub checksums_completed: u64,
    /// Frames dropped by the forwarding core.
    pub dropped: u64,
    /// Frames that could not be written.
    pub send_errors: u64,
    /// Batches forwarded, one dataplane lock each (`rx / batches`: frames per batch).
    pub batches: u64,
    /// Frames the kernel dropped before the forwarder read them (a receive ring was full):
    /// counted when the forwarder is idle and every 1024 batches.
    pub ring_drops: u64,
    /// TCP super-frames read from workloads (TSO; each counts once in `rx`).
    pub super_frames: u64,
    /// TCP segments joined into super-frames for workloads' kernels (GRO).
    pub coalesced: u64,
    /// The most recent drops: (where, why).
    pub recent_drops: Vec<(String, String)>,
}

/// The network-namespace dataplane of one run.
pub struct NetnsDataplane {
    pub(crate) inner: Arc<Inner>,
    pub(crate) dp: Arc<Mutex<Dataplane>>,
    pub(crate) layout: Layout,
    pub(crate) opts: NetnsOptions,
    captured: Option<Captured>,
    stats: Vec<(String, Arc<ForwarderStats>)>,
    /// Each node's vrouter thread (taps are added and removed through it), by node name.
    pub(crate) vrouters: HashMap<String, VrouterHandle>,
}

impl std::fmt::Debug for NetnsDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetnsDataplane")
            .field("run_id", &self.inner.run_id)
            .field("namespaces", &*lock(&self.inner.namespaces))
            .finish()
    }
}

/// A configuration step to run inside a namespace.
pub(crate) type Job = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// Runs each job on its own thread inside its namespace, in parallel, and waits for all.
pub(crate) fn spawn_all(jobs: Vec<(String, Job)>) -> Result<(), NetnsError> {
    let mut hs = Vec::new();
    for (ns, f) in jobs {
        hs.push((ns.clone(), sys::spawn_in(&ns, format!("setup {ns}"), f)?));
    }
    for (ns, h) in hs {
        match h.join() {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => {
                return Err(NetnsError::Io {
                    what: format!("configuring namespace {ns}"),
                    source: e,
                });
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(NetnsError::Io {
                    what: format!("configuring namespace {ns}"),
                    source: std::io::Error::other("panic"),
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn sysctls(pairs: &[(&str, &str)]) -> std::io::Result<()> {
    for (k, v) in pairs {
        sys::sysctl(k, v)?;
    }
    Ok(())
}

/// The sysctls every namespace of a run gets before any link exists (so new links inherit
/// the `default` values): no IPv6 (no router solicitations, DAD or MLD on the wire), no
/// kernel forwarding, no reverse-path filter, ICMP errors and echo replies never rate-limited
/// (a refused probe must not turn into a timeout under load), ping sockets for root.
const BASE_SYSCTLS: [(&str, &str); 7] = [
    ("net/ipv6/conf/all/disable_ipv6", "1"),
    ("net/ipv6/conf/default/disable_ipv6", "1"),
    ("net/ipv4/ip_forward", "0"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
    ("net/ipv4/icmp_ratelimit", "0"),
    ("net/ipv4/ping_group_range", "0 2147483647"),
];

/// Base sysctls that older kernels keep global (not per namespace): set where they can be.
const BASE_SYSCTLS_BEST_EFFORT: [(&str, &str); 1] = [("net/ipv4/icmp_msgs_per_sec", "1000000")];

/// Sets the base sysctls in the calling thread's namespace (run it on a thread that entered
/// the namespace, e.g. a [`Job`]): [`BASE_SYSCTLS`] must take, [`BASE_SYSCTLS_BEST_EFFORT`]
/// is tried.
pub(crate) fn base_sysctls() -> std::io::Result<()> {
    sysctls(&BASE_SYSCTLS)?;
    let _ = sysctls(&BASE_SYSCTLS_BEST_EFFORT);
    Ok(())
}

impl NetnsDataplane {
    /// Builds the topology of `dp` in network namespaces and starts it: one namespace per node
    /// (vhost0 on the underlay bridge, a tap per pod interface, a user-space vrouter over
    /// AF_PACKET), per placed pod (its interface with the Contrail MAC and instance IP, a
    /// default route via the network's gateway), per fabric host (a plain kernel), the
    /// gateway and its external clients, and the underlay itself. Probe agents answer on every
    /// declared port. On error everything created so far is deleted.
    ///
    /// # Errors
    /// A missing capability ([`NetnsError::MissingCapability`]), a failing `ip` command, a
    /// namespace that cannot be entered, a socket that cannot be opened.
    pub fn up(
        dp: Arc<Mutex<Dataplane>>,
        opts: &NetnsOptions,
    ) -> Result<NetnsDataplane, NetnsError> {
        sys::check_capabilities()?;
        if opts.sweep {
            sweep_leftovers()?;
        }
        let run_id = match &opts.run_id {
            Some(r) if crate::run::is_run_id(r) => r.clone(),
            Some(r) => return Err(NetnsError::BadRunId(r.clone())),
            None => new_run_id(),
        };
        let layout = {
            let dp = dp.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Layout::from_dataplane(&dp, &run_id)?
        };
        // Any namespace of this run id (a pod's too) means the id is taken.
        let prefix = format!("h{run_id}-");
        if let Some(n) = ip::list_netns()
            .into_iter()
            .find(|n| n.starts_with(&prefix))
        {
            return Err(NetnsError::RunIdInUse(run_id, n));
        }
        let inner = Arc::new(Inner {
            run_id: run_id.clone(),
            namespaces: Mutex::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
            servers: Mutex::new(Vec::new()),
            pods: Mutex::new(Pods::default()),
            done: AtomicBool::new(false),
            own_node_ports: Mutex::new(None),
        });
        inner.own(&layout.namespaces())?;
        let mut me = NetnsDataplane {
            inner,
            dp,
            layout,
            opts: opts.clone(),
            captured: None,
            stats: Vec::new(),
            vrouters: HashMap::new(),
        };
        // On error `me` drops here and deletes whatever exists.
        me.build(opts)?;
        if opts.route_node_stacks {
            me.route_node_stacks()?;
        }
        me.sync()?;
        Ok(me)
    }

    fn build(&mut self, opts: &NetnsOptions) -> Result<(), NetnsError> {
        let l = self.layout.clone();
        let umtu = opts.mtu.saturating_add(100);
        let mtu = opts.mtu;
        let pl = opts.underlay_prefix_len;
        let all = l.namespaces();
        // 1. The namespaces, then their base sysctls.
        ip::batch(
            None,
            &all.iter()
                .map(|n| format!("netns add {n}"))
                .collect::<Vec<_>>(),
        )?;
        let node_set: HashSet<String> = l.nodes.iter().map(|n| n.ns.clone()).collect();
        spawn_all(
            all.into_iter()
                .map(|ns| {
                    let node = node_set.contains(&ns);
                    let underlay = ns == l.underlay;
                    let f: Job = Box::new(move || {
                        base_sysctls()?;
                        if underlay {
                            // The underlay is a switch: frames it bridges do not go through
                            // iptables (br_netfilter, when loaded, would call it for each).
                            // Per namespace since Linux 5.3; absent without br_netfilter.
                            for k in ["iptables", "ip6tables", "arptables"] {
                                let _ = sys::sysctl(&format!("net/bridge/bridge-nf-call-{k}"), "0");
                            }
                        }
                        if node {
                            // Interfaces the vrouter owns never answer ARP from the kernel
                            // (arp_ignore 8): the vrouter proxy-answers on taps and the
                            // underlay's ARP goes to vhost0 (set back to 0 below).
                            sysctls(&[
                                ("net/ipv4/conf/default/arp_ignore", "8"),
                                ("net/ipv4/conf/all/arp_ignore", "0"),
                            ])?;
                        }
                        Ok(())
                    });
                    (ns, f)
                })
                .collect(),
        )?;
        // 2. Every link, created directly in its namespaces (nothing in the caller's).
        let mut links = vec![format!(
            "link add name br0 netns {} type bridge",
            l.underlay
        )];
        for (i, n) in l.nodes.iter().enumerate() {
            links.push(format!(
                "link add name eth0 address {} mtu {umtu} netns {} type veth peer name n{} mtu {umtu} netns {}",
                mac_str(local_mac(1, n.vhost)),
                n.ns,
                i + 1,
                l.underlay
            ));
            links.push(format!(
                "link add name vhost0 address {} mtu {umtu} netns {} type veth peer name vif0 address {} mtu {umtu} netns {}",
                mac_str(n.mac),
                n.ns,
                mac_str(local_mac(2, n.vhost)),
                n.ns
            ));
        }
        for (i, h) in l.hosts.iter().enumerate() {
            links.push(format!(
                "link add name eth0 address {} mtu {umtu} netns {} type veth peer name f{} mtu {umtu} netns {}",
                mac_str(device_mac(h.ip)),
                h.ns,
                i + 1,
                l.underlay
            ));
        }
        if let Some((gns, gip)) = &l.gateway {
            links.push(format!(
                "link add name eth0 address {} mtu {umtu} netns {gns} type veth peer name g0 mtu {umtu} netns {}",
                mac_str(device_mac(*gip)),
                l.underlay
            ));
            for c in &l.clients {
                links.push(format!(
                    "link add name eth0 address {} mtu {mtu} netns {} type veth peer name {} address {} mtu {mtu} netns {gns}",
                    mac_str(device_mac(c.ip)),
                    c.ns,
                    c.link,
                    mac_str(local_mac(3, c.ip)),
                ));
            }
        }
        ip::batch(None, &links)?;
        // 3. Addresses, routes and neighbours, one `ip -n NS -batch -` per namespace in
        //    parallel.
        let mut per_ns: Vec<(String, Vec<String>)> = Vec::new();
        let mut u = vec!["link set br0 up".to_owned()];
        let mut ports: Vec<String> = (1..=l.nodes.len()).map(|i| format!("n{i}")).collect();
        ports.extend((1..=l.hosts.len()).map(|i| format!("f{i}")));
        if l.gateway.is_some() {
            ports.push("g0".into());
        }
        for p in &ports {
            u.push(format!("link set {p} master br0"));
            u.push(format!("link set {p} up"));
        }
        per_ns.push((l.underlay.clone(), u));
        for n in &l.nodes {
            let v = vec![
                "link set lo up".to_owned(),
                "link set eth0 up".to_owned(),
                "link set vif0 up".to_owned(),
                format!("addr add {}/{pl} dev vhost0", n.vhost),
                "link set vhost0 up".to_owned(),
            ];
            per_ns.push((n.ns.clone(), v));
        }
        for h in &l.hosts {
            let mut v = vec![
                "link set lo up".to_owned(),
                format!("addr add {}/{pl} dev eth0", h.ip),
                "link set eth0 up".to_owned(),
            ];
            // What the fabric's routers would carry: routes to the external clients via the
            // gateway (and to ip-fabric-forwarded pods via their node: `pods::sync`).
            if let Some((_, gip)) = &l.gateway {
                v.push(format!(
                    "neigh replace {gip} lladdr {} dev eth0 nud permanent",
                    mac_str(device_mac(*gip))
                ));
                for c in &l.clients {
                    v.push(format!("route add {}/32 via {gip} dev eth0", c.ip));
                }
            }
            per_ns.push((h.ns.clone(), v));
        }
        if let Some((gns, _)) = &l.gateway {
            let mut v = vec!["link set lo up".to_owned(), "link set eth0 up".to_owned()];
            for c in &l.clients {
                v.push(format!("link set {} up", c.link));
            }
            per_ns.push((gns.clone(), v));
        }
        for c in &l.clients {
            per_ns.push((
                c.ns.clone(),
                vec![
                    "link set lo up".to_owned(),
                    format!("addr add {}/32 dev eth0", c.ip),
                    "link set eth0 up".to_owned(),
                    format!(
                        "neigh replace {CLIENT_NEXT_HOP} lladdr {} dev eth0 nud permanent",
                        mac_str(local_mac(3, c.ip))
                    ),
                    format!("route add default via {CLIENT_NEXT_HOP} dev eth0 onlink"),
                ],
            ));
        }
        ip::batches_in_parallel(&per_ns)?;
        // 4. Offloads off where a kernel transmits (see sys::offloads_off), vhost0 answers ARP.
        let mut jobs: Vec<(String, Job)> = Vec::new();
        for n in &l.nodes {
            jobs.push((
                n.ns.clone(),
                Box::new(|| {
                    sys::sysctl("net/ipv4/conf/vhost0/arp_ignore", "0")?;
                    sys::offloads_off("vhost0")
                }),
            ));
        }
        for ns in l
            .hosts
            .iter()
            .map(|h| &h.ns)
            .chain(l.clients.iter().map(|c| &c.ns))
        {
            jobs.push((ns.clone(), Box::new(|| sys::offloads_off("eth0"))));
        }
        spawn_all(jobs)?;
        // 5. The vrouters, the gateway, the probe agents and the capture. Receive-ring slots fit
        //    the largest underlay frame (an encapsulated, MTU-sized workload frame).
        let slot = crate::packet::ring_slot_size(usize::from(umtu) + 14 + 4);
        let stop = Arc::clone(&self.inner.stop);
        let mut threads = Vec::new();
        let mut servers = Vec::new();
        let result = (|| {
            if opts.capture {
                let frames: Captured = Arc::new(Mutex::new(Vec::new()));
                threads.push(capture::spawn(
                    &l.underlay,
                    "br0",
                    Arc::clone(&frames),
                    Arc::clone(&stop),
                )?);
                self.captured = Some(frames);
            }
            for n in &l.nodes {
                let ports = vec![
                    Port {
                        ifname: "eth0".into(),
                        role: Role::Fabric,
                    },
                    Port {
                        ifname: "vif0".into(),
                        role: Role::Host,
                    },
                ];
                // Taps join as pods are wired (`pods::sync`).
                let stats = Arc::new(ForwarderStats::default());
                let (t, handle) = vrouter::spawn(
                    &n.ns,
                    Forwarder::Node(n.name.clone()),
                    ports,
                    slot,
                    Arc::clone(&self.dp),
                    Arc::clone(&stop),
                    Arc::clone(&stats),
                )?;
                threads.push(t);
                self.vrouters.insert(n.name.clone(), handle);
                self.stats.push((n.name.clone(), stats));
            }
            if let Some((gns, _)) = &l.gateway {
                let mut ports = vec![Port {
                    ifname: "eth0".into(),
                    role: Role::Fabric,
                }];
                ports.extend(l.clients.iter().map(|c| Port {
                    ifname: c.link.clone(),
                    role: Role::Client(c.name.clone()),
                }));
                let stats = Arc::new(ForwarderStats::default());
                let (t, _) = vrouter::spawn(
                    gns,
                    Forwarder::Gateway,
                    ports,
                    slot,
                    Arc::clone(&self.dp),
                    Arc::clone(&stop),
                    Arc::clone(&stats),
                )?;
                threads.push(t);
                self.stats.push(("gateway".into(), stats));
            }
            for h in &l.hosts {
                servers.push(probe::serve_in(&h.ns, &h.name, &h.ports)?);
            }
            for n in &l.nodes {
                if !n.ports.is_empty() {
                    servers.push(probe::serve_in(
                        &n.ns,
                        &probe::node_identity(&n.name),
                        &n.ports,
                    )?);
                }
            }
            Ok::<(), NetnsError>(())
        })();
        lock(&self.inner.threads).extend(threads);
        lock(&self.inner.servers).extend(servers);
        result
    }

    /// The run id (`h<runid>-…` namespaces).
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// Every namespace of the run now (pods join and leave with [`NetnsDataplane::sync`]).
    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.inner.namespaces).clone()
    }

    /// The namespace a probe from `from` runs in.
    ///
    /// # Errors
    /// [`NetnsError::Unknown`] for a source that is not in the topology (or was skipped, with
    /// the reason).
    pub fn namespace_of(&self, from: &EndpointRef) -> Result<String, NetnsError> {
        let l = &self.layout;
        let found = match from {
            EndpointRef::Pod(n) => lock(&self.inner.pods).namespace_of(n),
            EndpointRef::Node(n) => l.nodes.iter().find(|x| &x.name == n).map(|x| x.ns.clone()),
            EndpointRef::FabricHost(n) => {
                l.hosts.iter().find(|h| &h.name == n).map(|h| h.ns.clone())
            }
            EndpointRef::External(n) => l
                .clients
                .iter()
                .find(|c| &c.name == n)
                .map(|c| c.ns.clone()),
        };
        found.ok_or_else(|| {
            let why = match from {
                EndpointRef::Pod(n) => lock(&self.inner.pods)
                    .skipped
                    .iter()
                    .find(|(e, _)| e == n)
                    .map(|(_, why)| format!(": {why}"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            NetnsError::Unknown(format!("{from}{why}"))
        })
    }

    /// Endpoints of the model that have no namespace, with the reason (as of the last
    /// [`NetnsDataplane::sync`]).
    pub fn skipped(&self) -> Vec<(String, String)> {
        lock(&self.inner.pods).skipped.clone()
    }

    /// One real connection attempt from `from` to `to` (see [`NetnsDataplane::probe_batch`]).
    ///
    /// # Errors
    /// As [`NetnsDataplane::probe_batch`].
    pub fn probe(
        &self,
        from: &EndpointRef,
        to: Ipv4Addr,
        protocol: Protocol,
        port: u16,
        timeout: Duration,
    ) -> Result<NetVerdict, NetnsError> {
        let mut v = self.probe_batch(
            from,
            vec![ProbeSpec {
                to,
                protocol,
                port,
                timeout,
            }],
            1,
        )?;
        Ok(v.pop().unwrap_or(NetVerdict::Other {
            detail: "no result".into(),
        }))
    }

    /// Runs `specs` from inside `from`'s namespace with the probe agent's real kernel
    /// sockets, at most `concurrency` at once (see [`crate::probe`]): every connected TCP,
    /// UDP and SCTP probe also reads who answered and the source address it saw.
    ///
    /// It first brings the namespaces in line with the model ([`NetnsDataplane::sync`]), so
    /// pods that a later scenario step created (or deleted) are wired (or gone) before they
    /// are probed. SCTP probes on a kernel without SCTP give [`NetVerdict::Unsupported`].
    ///
    /// # Errors
    /// An unknown source, a destination that no device of the topology owns
    /// ([`NetnsError::OutsideTopology`]: nothing is sent), a failing sync.
    pub fn probe_batch(
        &self,
        from: &EndpointRef,
        specs: Vec<ProbeSpec>,
        concurrency: usize,
    ) -> Result<Vec<NetVerdict>, NetnsError> {
        self.sync()?;
        let ns = self.namespace_of(from)?;
        {
            let pods = lock(&self.inner.pods);
            if let Some(s) = specs.iter().find(|s| !pods.allowed.contains(&s.to)) {
                return Err(NetnsError::OutsideTopology(s.to));
            }
        }
        if self.inner.done.load(Ordering::SeqCst) {
            return Err(NetnsError::Stopped);
        }
        probe::run_batch(&ns, &specs, concurrency)
    }

    /// The frames captured on the underlay so far (with [`NetnsOptions::capture`]).
    pub fn underlay_frames(&self) -> Vec<CapturedFrame> {
        self.captured
            .as_ref()
            .map(|c| {
                c.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default()
    }

    /// The frames captured on the underlay so far, and forgets them, in one step: no frame
    /// captured between a read and a clear is lost (with [`NetnsOptions::capture`]).
    pub fn take_capture(&self) -> Vec<CapturedFrame> {
        self.captured
            .as_ref()
            .map(|c| {
                std::mem::take(&mut *c.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            })
            .unwrap_or_default()
    }

    /// Routes each node's own IP stack through its vrouter, as on a Contrail compute node
    /// where vhost0 holds the routes: everything but the other underlay devices goes to the
    /// vrouter (next hop its MAC, a permanent neighbour; it routes what vhost0 sends by the
    /// IP destination), and the on-link underlay subnet route is replaced by /32 routes to
    /// the devices that exist. Without this a node cannot answer a pod's probe (the reply
    /// has no route), and pods addressed from the fabric subnet (ip-fabric forwarding) would
    /// be taken for underlay neighbours and ARPed for on the underlay, where nobody answers.
    /// Once per run: [`NetnsOptions::route_node_stacks`] does it in [`NetnsDataplane::up`]
    /// (a second call fails, the subnet route being gone).
    ///
    /// # Errors
    /// A failing `ip` command, or an underlay prefix length over 32.
    pub fn route_node_stacks(&self) -> Result<(), NetnsError> {
        let prefix_len = self.opts.underlay_prefix_len;
        let (nodes, mut underlay): (Vec<(String, Ipv4Addr)>, Vec<Ipv4Addr>) = {
            let dp = self
                .dp
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let t = dp.topology();
            let nodes = t.nodes.iter().map(|n| (n.name.clone(), n.vhost)).collect();
            let mut devices: Vec<Ipv4Addr> = t.nodes.iter().map(|n| n.vhost).collect();
            devices.extend(t.fabric_hosts.iter().map(|h| h.ip));
            if !t.external_clients.is_empty() {
                devices.push(t.gateway.ip);
            }
            (nodes, devices)
        };
        underlay.sort();
        underlay.dedup();
        for (node, vhost) in nodes {
            let ns = self.namespace_of(&EndpointRef::Node(node))?;
            let subnet = ipnet::Ipv4Net::new(vhost, prefix_len)
                .map(|n| n.trunc())
                .map_err(|e| {
                    NetnsError::Unsupported(format!("underlay prefix /{prefix_len}: {e}"))
                })?;
            let mut lines = vec![
                format!(
                    "neigh replace {NODE_NEXT_HOP} lladdr {} dev vhost0 nud permanent",
                    mac_str(harness_vrouter_sim::forward::control::VROUTER_MAC)
                ),
                format!("route replace default via {NODE_NEXT_HOP} dev vhost0 onlink"),
            ];
            lines.extend(
                underlay
                    .iter()
                    .filter(|a| **a != vhost)
                    .map(|a| format!("route replace {a}/32 dev vhost0 src {vhost}")),
            );
            lines.push(format!("route del {subnet} dev vhost0"));
            ip::batch(Some(&ns), &lines)?;
            if let Err(why) = steer_own_node_ports(&ns, vhost) {
                lock(&self.inner.own_node_ports).get_or_insert(why);
            }
        }
        Ok(())
    }

    /// Deletes workload taps (node, tap name) in their node namespaces, and so the veth pairs
    /// they belong to, before the workload's namespace goes: a deleted namespace takes its
    /// veths along only asynchronously, and a workload wired again at once (same VMI, same
    /// tap name) would find the name still taken. Best effort: a tap already gone is fine,
    /// and the namespace's deletion removes whatever is left.
    pub(crate) fn delete_taps(&self, taps: &[(String, String)]) {
        for (node, tap) in taps {
            if let Some(n) = self.layout.nodes.iter().find(|n| &n.name == node) {
                // One `ip` per tap: a batch would stop at the first one already gone.
                let _ = ip::batch(Some(&n.ns), &[format!("link del {tap}")]);
            }
        }
    }

    /// Why a node cannot probe its own node ports here, or `None` when it can (its kernel
    /// sends them through its vrouter, where kube-proxy's rules are).
    pub fn own_node_ports_unsupported(&self) -> Option<String> {
        if !self.opts.route_node_stacks {
            return Some("the node stacks are not routed through their vrouters".into());
        }
        lock(&self.inner.own_node_ports).clone()
    }

    /// Forgets the frames captured so far.
    pub fn clear_capture(&self) {
        if let Some(c) = &self.captured {
            c.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }

    /// Counters of each forwarder: (node name or `gateway`, counters).
    pub fn counters(&self) -> Vec<(String, ForwarderCounters)> {
        self.stats
            .iter()
            .map(|(n, s)| {
                let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                (
                    n.clone(),
                    ForwarderCounters {
                        rx: g(&s.rx),
                        tx: g(&s.tx),
                        checksums_completed: g(&s.checksums_completed),
                        dropped: g(&s.dropped),
                        send_errors: g(&s.send_errors),
                        batches: g(&s.batches),
                        ring_drops: g(&s.ring_drops),
                        super_frames: g(&s.super_frames),
                        coalesced: g(&s.coalesced),
                        recent_drops: s
                            .recent_drops
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .iter()
                            .cloned()
                            .collect(),
                    },
                )
            })
            .collect()
    }

    /// The shared model dataplane (its configuration drives the vrouters).
    pub fn dataplane(&self) -> &Arc<Mutex<Dataplane>> {
        &self.dp
    }

    /// A handle that tears the run down from elsewhere (a Ctrl-C handler).
    pub fn cleanup_handle(&self) -> CleanupHandle {
        CleanupHandle(Arc::clone(&self.inner))
    }

    /// Stops everything and deletes the run's namespaces (also done on drop).
    ///
    /// # Errors
    /// A failing `ip netns del`.
    pub fn cleanup(&self) -> Result<(), NetnsError> {
        self.inner.cleanup()
    }
}

impl Drop for NetnsDataplane {
    fn drop(&mut self) {
        // Errors cannot be returned from drop; the record stays and the next sweep retries.
        let _ = self.inner.cleanup();
    }
}

/// The mark of a node's packets to its own node ports, and the routing table they take.
const OWN_NODE_PORT_MARK: u32 = 0x4e50;
const OWN_NODE_PORT_TABLE: u32 = 78;

/// Makes a node's packets to its own node ports leave through vhost0 to the vrouter instead
/// of the loopback: on a Contrail compute node kube-proxy's rules in the node's kernel
/// translate them; here kube-proxy's rules live in the forwarding core, on the packets the
/// vrouter hands to the node's stack, so the packet has to get there. An nftables route
/// chain marks TCP/UDP/SCTP to the node's address and the node-port range, a rule ahead of
/// the local table sends marked packets to the vrouter, and vhost0 accepts the answers,
/// which come from the node's own address (`accept_local`).
fn steer_own_node_ports(ns: &str, vhost: Ipv4Addr) -> Result<(), String> {
    let range = harness_vrouter_sim::NODE_PORT_RANGE;
    let why = |e: NetnsError| {
        format!("a node probing its own node port needs its kernel to send it to the vrouter: {e}")
    };
    crate::service::nft_in(
        ns,
        &["-f", "-"],
        Some(format!(
            "table ip harness_kube_proxy {{\n  chain output {{\n    type route hook output priority mangle; policy accept;\n    ip daddr {vhost} meta l4proto {{ tcp, udp, sctp }} th dport {}-{} meta mark set {OWN_NODE_PORT_MARK:#x}\n  }}\n}}\n",
            range.start(),
            range.end()
        )),
    )
    .map_err(why)?;
    ip::batch(
        Some(ns),
        &[
            "rule add pref 100 lookup local".to_owned(),
            "rule del pref 0 lookup local".to_owned(),
            format!("rule add pref 50 fwmark {OWN_NODE_PORT_MARK:#x} lookup {OWN_NODE_PORT_TABLE}"),
            format!("route add default via {NODE_NEXT_HOP} dev vhost0 onlink table {OWN_NODE_PORT_TABLE}"),
        ],
    )
    .map_err(why)?;
    let ns_name = ns.to_owned();
    crate::sys::in_netns(ns, move || {
        sys::sysctl("net/ipv4/conf/vhost0/accept_local", "1")
    })
    .map_err(why)?
    .map_err(|e| {
        why(NetnsError::Io {
            what: format!("accept_local on vhost0 in {ns_name}"),
            source: e,
        })
    })
}
