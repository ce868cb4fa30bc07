//! Pods in namespaces, kept in step with the model: [`NetnsDataplane::sync`] compares the
//! endpoints the model [`Dataplane`] has placed on nodes with the pods wired so far, wires
//! the new ones (namespace, veth pair with the Contrail MAC and instance IP, default route via
//! the network gateway, the tap handed to the node's running vrouter, the probe agent on the
//! declared ports) and unwires the ones that are gone or changed (a pod re-created under the same name
//! gets a new VMI, MAC or address: it is unwired and wired afresh). The routes a fabric's
//! routers would carry to ip-fabric-forwarded pods are updated on the fabric hosts, and the
//! set of addresses probes may go to is recomputed (new floating IPs, service VIPs).
//! Service-chain instances are wired the same way by [`crate::service`].
//!
//! The runner applies manifests step by step; `probe_batch` syncs before probing, so a pod a
//! later step created is wired before anything probes it, and nothing else has to be called.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use harness_agent::ServerHandle;
use harness_vrouter_sim::io::PortInfo;
use harness_vrouter_sim::{Dataplane, ServedPort};

use crate::cluster::{Job, Layout, NetnsDataplane, base_sysctls, lock, mac_str, spawn_all};
use crate::{NetnsError, ip, probe, sys};

/// A wired pod.
pub(crate) struct PodNs {
    pub endpoint: String,
    pub ns: String,
    pub itf: PortInfo,
    pub tap: String,
    pub ports: Vec<ServedPort>,
    /// The probe agent serving the pod's declared ports (started last when wiring).
    server: Option<ServerHandle>,
}

/// The pods wired now and what the last sync derived from the model.
#[derive(Default)]
pub(crate) struct Pods {
    pub pods: Vec<PodNs>,
    /// Destinations a probe may go to (addresses some device of the topology owns).
    pub allowed: HashSet<Ipv4Addr>,
    /// Endpoints of the model without a namespace, with the reason (including service
    /// instances whose wiring failed at the last sync).
    pub skipped: Vec<(String, String)>,
    /// Routes the fabric hosts carry to ip-fabric-forwarded pods: (pod, node vhost).
    pub fabric_pod_routes: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Service instances wired as forwarding namespaces ([`crate::service`]).
    pub services: crate::service::Services,
    /// Pod namespaces are numbered once per run and never reused, so a pod being deleted
    /// and one being created never race for a name.
    next_index: usize,
}

impl Pods {
    pub fn namespace_of(&self, endpoint: &str) -> Option<String> {
        self.pods
            .iter()
            .find(|p| p.endpoint == endpoint)
            .map(|p| p.ns.clone())
    }

    /// The tap names in use on each node, pods' and service instances' alike: a new tap
    /// must not take one ([`tap_name`]).
    pub fn taps_by_node(&self) -> HashMap<String, HashSet<String>> {
        let mut taken: HashMap<String, HashSet<String>> = HashMap::new();
        let pods = self
            .pods
            .iter()
            .map(|p| (p.itf.node.as_str(), p.tap.as_str()));
        for (node, tap) in pods.chain(self.services.taps()) {
            taken
                .entry(node.to_owned())
                .or_default()
                .insert(tap.to_owned());
        }
        taken
    }

    /// Hands over every pod's probe agent (for cleanup to shut down).
    pub fn take_servers(&mut self) -> Vec<ServerHandle> {
        self.pods
            .iter_mut()
            .filter_map(|p| p.server.take())
            .collect()
    }
}

/// What one [`NetnsDataplane::sync`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Pods (`ns/name`) and service instances (the chain's name) wired.
    pub wired: Vec<String>,
    /// Pods and service instances unwired: deleted from the model, or changed and wired
    /// afresh (then in both).
    pub unwired: Vec<String>,
    /// Fabric-host routes to ip-fabric-forwarded pods added, changed or removed.
    pub routes_changed: usize,
    /// Service instances whose wiring failed this time, with the error: nothing of them is
    /// left, [`NetnsDataplane::skipped`] gives the same reason, and the next sync tries them
    /// again. A failed attempt changes nothing, so it does not count in
    /// [`SyncReport::is_empty`].
    pub failed: Vec<(String, String)>,
}

impl SyncReport {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.wired.is_empty() && self.unwired.is_empty() && self.routes_changed == 0
    }
}

/// A pod the model wants wired.
#[derive(Debug, Clone, PartialEq)]
struct Wanted {
    endpoint: String,
    itf: PortInfo,
    ports: Vec<ServedPort>,
}

/// What the model wants now.
struct Desired {
    pods: Vec<Wanted>,
    services: Vec<crate::service::WantedService>,
    skipped: Vec<(String, String)>,
    allowed: HashSet<Ipv4Addr>,
    fabric_pod_routes: Vec<(Ipv4Addr, Ipv4Addr)>,
}

fn desired(dp: &Dataplane, layout: &Layout) -> Desired {
    let topo = dp.topology();
    let ctl = dp.control();
    let ports = dp.ports();
    let mut pods = Vec::new();
    let mut services = Vec::new();
    let mut skipped = Vec::new();
    for e in &topo.endpoints {
        let mine: Vec<&PortInfo> = ports
            .iter()
            .filter(|p| p.endpoint.as_deref() == Some(e.name.as_str()))
            .collect();
        let why = if crate::service::is_service(e, ctl) {
            match crate::service::wanted(e, &mine, ctl, layout) {
                Ok(w) => {
                    services.push(w);
                    None
                }
                Err(why) => Some(why),
            }
        } else if mine.len() > 1 {
            Some(format!(
                "a workload with {} interfaces: the netns dataplane wires single-interface pods and service instances (left and right) only",
                mine.len()
            ))
        } else {
            match mine.first() {
                None => Some("no interface placed on a node".to_owned()),
                Some(p) if !layout.nodes.iter().any(|n| n.name == p.node) => {
                    Some(format!("node {} is not in the topology", p.node))
                }
                Some(p) if p.address.is_none() => {
                    Some("its interface has no IPv4 address".to_owned())
                }
                Some(p) => {
                    pods.push(Wanted {
                        endpoint: e.name.clone(),
                        itf: (*p).clone(),
                        ports: e.ports.clone(),
                    });
                    None
                }
            }
        };
        if let Some(why) = why {
            skipped.push((e.name.clone(), why));
        }
    }
    let mut allowed: HashSet<Ipv4Addr> = ctl.addr_owner.keys().copied().collect();
    for n in &ctl.model.networks {
        allowed.extend(n.gateways.iter().copied());
    }
    allowed.extend(ctl.model.floating_ips.iter().map(|f| f.address));
    allowed.extend(layout.nodes.iter().map(|n| n.vhost));
    allowed.extend(layout.hosts.iter().map(|h| h.ip));
    allowed.extend(layout.clients.iter().map(|c| c.ip));
    allowed.insert(topo.gateway.ip);
    Desired {
        pods,
        services,
        skipped,
        allowed,
        fabric_pod_routes: dp.fabric_pod_routes(),
    }
}

/// How many leading characters of the VMI uuid a tap's name carries (Contrail's, as Nova's:
/// `tap` + `uuid[:11]`, e.g. `tap1f2e3d4c-00`; 14 characters, within IFNAMSIZ).
const TAP_UUID_CHARS: usize = 11;

/// A tap's name as Contrail names it: `tap` + the first 11 characters of the VMI uuid, or
/// `fallback` when that name is already taken on the node (uuids that share their first 11
/// characters, as test fixtures' sequential ones do) or the uuid does not make an interface
/// name (empty, or characters other than letters, digits and `-`). The name is added to
/// `taken`, the node's names so far ([`Pods::taps_by_node`]).
pub(crate) fn tap_name(vmi: &str, fallback: String, taken: &mut HashSet<String>) -> String {
    let head: String = vmi.chars().take(TAP_UUID_CHARS).collect();
    let usable = !head.is_empty() && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let mut name = format!("tap{head}");
    if !usable || taken.contains(&name) {
        name = fallback;
    }
    taken.insert(name.clone());
    name
}

impl NetnsDataplane {
    /// Brings the namespaces in line with the model dataplane's endpoints: wires pods that
    /// were attached since the last sync (or since [`NetnsDataplane::up`]), unwires those
    /// detached, rewires those whose interface changed, updates the fabric hosts' routes to
    /// ip-fabric-forwarded pods and the set of addresses probes may go to. Cheap when
    /// nothing changed (one look at the model); [`NetnsDataplane::probe_batch`] calls it
    /// first, so callers only need it to wire pods before something other than a probe
    /// touches them. Concurrent calls are serialised.
    ///
    /// A service instance whose wiring fails is not an error: it is taken down again, listed
    /// in [`SyncReport::failed`] and [`NetnsDataplane::skipped`] with the error (the runner
    /// skips the cells whose path goes through it), and the next sync retries it.
    ///
    /// # Errors
    /// [`NetnsError::Stopped`] after cleanup; a failing `ip` command or socket while wiring
    /// pods (the pods of that attempt are deleted again, and the next sync retries them);
    /// unwiring, the run record, the fabric hosts' routes failing.
    pub fn sync(&self) -> Result<SyncReport, NetnsError> {
        if self.inner.done.load(Ordering::SeqCst) {
            return Err(NetnsError::Stopped);
        }
        let mut pods = lock(&self.inner.pods);
        // The model lock is held only to read it: the vrouter threads need it to forward.
        let want = desired(&lock(&self.dp), &self.layout);
        let mut report = SyncReport::default();
        let (keep, gone): (Vec<PodNs>, Vec<PodNs>) =
            std::mem::take(&mut pods.pods).into_iter().partition(|p| {
                want.pods
                    .iter()
                    .any(|w| w.endpoint == p.endpoint && w.itf == p.itf && w.ports == p.ports)
            });
        pods.pods = keep;
        let new: Vec<Wanted> = want
            .pods
            .iter()
            .filter(|w| !pods.pods.iter().any(|p| p.endpoint == w.endpoint))
            .cloned()
            .collect();
        if !gone.is_empty() {
            report.unwired = gone.iter().map(|p| p.endpoint.clone()).collect();
            self.unwire(gone)?;
        }
        if !new.is_empty() {
            report.wired = new.iter().map(|w| w.endpoint.clone()).collect();
            self.wire(&mut pods, new)?;
        }
        // A service instance that cannot be wired is skipped (the cells through it), not an
        // error: that would fail every probe batch of the run, each of which syncs first.
        let failed = self.sync_services(&mut pods, &want.services, &mut report)?;
        report.routes_changed =
            self.fabric_routes(&pods.fabric_pod_routes, &want.fabric_pod_routes)?;
        pods.fabric_pod_routes = want.fabric_pod_routes;
        pods.allowed = want.allowed;
        pods.skipped = want.skipped;
        pods.skipped.extend(failed);
        Ok(report)
    }

    /// Stops the pods' servers, takes their taps from the vrouters and deletes their
    /// namespaces (the veth pairs go with them).
    fn unwire(&self, gone: Vec<PodNs>) -> Result<(), NetnsError> {
        let mut first_err = None;
        let mut names = Vec::new();
        let mut taps = Vec::new();
        for mut p in gone {
            // The agent first: its sockets close before the namespace goes.
            if let Some(s) = p.server.take() {
                s.shutdown();
            }
            if let Some(h) = self.vrouters.get(&p.itf.node)
                && let Err(e) = h.remove_tap(&p.itf.vmi)
            {
                first_err.get_or_insert(e);
            }
            taps.push((p.itf.node, p.tap));
            names.push(p.ns);
        }
        self.delete_taps(&taps);
        ip::delete_netns(&names)?;
        self.inner.disown(&names)?;
        first_err.map_or(Ok(()), Err)
    }

    /// Creates and starts `new` pods, all in a few batched steps (as `up` does).
    fn wire(&self, pods: &mut crate::pods::Pods, new: Vec<Wanted>) -> Result<(), NetnsError> {
        let run = &self.inner.run_id;
        let mut taken = pods.taps_by_node();
        let mut fresh: Vec<PodNs> = Vec::with_capacity(new.len());
        for w in new {
            pods.next_index += 1;
            let idx = pods.next_index;
            let tap = tap_name(
                &w.itf.vmi,
                format!("tap{idx}"),
                taken.entry(w.itf.node.clone()).or_default(),
            );
            fresh.push(PodNs {
                endpoint: w.endpoint,
                ns: format!("h{run}-p{idx}"),
                itf: w.itf,
                tap,
                ports: w.ports,
                server: None,
            });
        }
        let names: Vec<String> = fresh.iter().map(|p| p.ns.clone()).collect();
        let existing = ip::list_netns();
        if let Some(n) = names.iter().find(|n| existing.contains(n)) {
            return Err(NetnsError::RunIdInUse(run.clone(), n.clone()));
        }
        // Recorded before created, so a killed run's pods are swept too.
        self.inner.own(&names)?;
        match self.wire_steps(&mut fresh) {
            Ok(()) => {
                pods.pods.extend(fresh);
                Ok(())
            }
            Err(e) => {
                // Take back whatever this attempt started; the next sync retries the pods.
                for p in &mut fresh {
                    if let Some(s) = p.server.take() {
                        s.shutdown();
                    }
                    if let Some(h) = self.vrouters.get(&p.itf.node) {
                        let _ = h.remove_tap(&p.itf.vmi);
                    }
                }
                if ip::delete_netns(&names).is_ok() {
                    let _ = self.inner.disown(&names);
                }
                Err(e)
            }
        }
    }

    fn wire_steps(&self, fresh: &mut [PodNs]) -> Result<(), NetnsError> {
        let mtu = self.opts.mtu;
        let names: Vec<String> = fresh.iter().map(|p| p.ns.clone()).collect();
        // 1. Namespaces and their base sysctls.
        ip::batch(
            None,
            &names
                .iter()
                .map(|n| format!("netns add {n}"))
                .collect::<Vec<_>>(),
        )?;
        spawn_all(
            names
                .iter()
                .map(|ns| {
                    let f: Job = Box::new(base_sysctls);
                    (ns.clone(), f)
                })
                .collect(),
        )?;
        // 2. The veth pairs: the pod's eth0 (Contrail MAC) and the tap in the node's
        //    namespace, which inherits arp_ignore 8 there (the vrouter answers ARP).
        let node_ns: HashMap<&str, &str> = self
            .layout
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.ns.as_str()))
            .collect();
        let mut links = Vec::new();
        let mut per_node: HashMap<&str, Vec<String>> = HashMap::new();
        for p in fresh.iter() {
            let nns = node_ns.get(p.itf.node.as_str()).copied().ok_or_else(|| {
                NetnsError::Unknown(format!("node {} of pod {}", p.itf.node, p.endpoint))
            })?;
            links.push(format!(
                "link add name eth0 address {} mtu {mtu} netns {} type veth peer name {} mtu {mtu} netns {nns}",
                mac_str(p.itf.mac),
                p.ns,
                p.tap,
            ));
            per_node
                .entry(nns)
                .or_default()
                .push(format!("link set {} up", p.tap));
        }
        ip::batch(None, &links)?;
        // 3. Addresses and routes, one `ip -n NS -batch -` per namespace in parallel.
        let mut per_ns: Vec<(String, Vec<String>)> = per_node
            .into_iter()
            .map(|(ns, v)| (ns.to_owned(), v))
            .collect();
        for p in fresh.iter() {
            let mut v = vec!["link set lo up".to_owned()];
            if let Some(a) = p.itf.address {
                v.push(format!("addr add {a} dev eth0"));
            }
            v.push("link set eth0 up".to_owned());
            if let Some(gw) = p.itf.gateway {
                v.push(format!("route add default via {gw} dev eth0 onlink"));
            }
            per_ns.push((p.ns.clone(), v));
        }
        ip::batches_in_parallel(&per_ns)?;
        // 4. The pod's offloads: TSO with partial checksums, taken apart by the vrouter
        //    (see sys::pod_offloads).
        spawn_all(
            names
                .iter()
                .map(|ns| {
                    let f: Job = Box::new(|| sys::pod_offloads("eth0"));
                    (ns.clone(), f)
                })
                .collect(),
        )?;
        // 5. The node's vrouter takes the tap; then the pod's probe agent starts.
        for p in fresh.iter() {
            let h = self
                .vrouters
                .get(&p.itf.node)
                .ok_or_else(|| NetnsError::Unknown(format!("vrouter of node {}", p.itf.node)))?;
            h.add_tap(&p.tap, &p.itf.vmi)?;
        }
        for p in fresh.iter_mut() {
            p.server = Some(probe::serve_in(&p.ns, &p.endpoint, &p.ports)?);
        }
        Ok(())
    }

    /// Puts the routes a fabric's routers would carry to ip-fabric-forwarded pods (via their
    /// node) on every fabric host: adds and changes with `route replace`, removals with
    /// `route del`. Returns how many routes changed.
    fn fabric_routes(
        &self,
        had: &[(Ipv4Addr, Ipv4Addr)],
        want: &[(Ipv4Addr, Ipv4Addr)],
    ) -> Result<usize, NetnsError> {
        let mut lines = Vec::new();
        for (pod, vhost) in want {
            if !had.contains(&(*pod, *vhost)) {
                lines.push(format!("route replace {pod}/32 via {vhost} dev eth0"));
            }
        }
        for (pod, _) in had {
            if !want.iter().any(|(p, _)| p == pod) {
                lines.push(format!("route del {pod}/32"));
            }
        }
        if lines.is_empty() {
            return Ok(0);
        }
        for h in &self.layout.hosts {
            ip::batch(Some(&h.ns), &lines)?;
        }
        Ok(lines.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_are_contrails_and_never_collide() {
        let mut taken = HashSet::new();
        let a = tap_name(
            "1f2e3d4c-0000-4000-8000-00000000abcd",
            "tap1".into(),
            &mut taken,
        );
        assert_eq!(a, "tap1f2e3d4c-00");
        assert!(a.len() <= 15, "IFNAMSIZ: {a}");
        // Same first 11 characters on the same node: the fallback decides.
        let b = tap_name(
            "1f2e3d4c-00ff-4000-8000-00000000abcd",
            "tap2".into(),
            &mut taken,
        );
        assert_eq!(b, "tap2");
        assert!(taken.contains("tap2"));
        // Nothing usable as an interface name.
        assert_eq!(tap_name("", "tap3".into(), &mut taken), "tap3");
        assert_eq!(tap_name("a/b c", "tap4".into(), &mut taken), "tap4");
        // A short id is used as it is.
        assert_eq!(tap_name("abc", "tap5".into(), &mut taken), "tapabc");
    }
}
