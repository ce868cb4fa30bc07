//! Service instances in namespaces: a service chain's instance (a model endpoint with a left
//! and a right interface and a [`ServiceFunction`]) becomes one namespace `h<run>-s<k>` whose
//! *kernel* forwards what the vrouters steer into it, as the instance's software would:
//!
//! - two veth pairs, `left` and `right`, each with its VMI's MAC and instance IP, whose peers
//!   are taps on the interface's node, handed to that node's vrouter thread like a pod's tap
//!   and named like one ([`crate::pods::tap_name`]; `si<k>l` / `si<k>r` when that name is
//!   taken on the node, never a pod's `tap<index>`);
//! - `ip_forward=1`, no reverse-path filter, no redirects, and policy routing so that what
//!   enters `left` leaves `right` and the other way round whatever its destination (a
//!   transparent instance in the middle of a chain is addressed to neither side):
//!   `rule iif left lookup 101` → `default via <right network's gateway> dev right onlink`,
//!   `rule iif right lookup 102` → `default via <left network's gateway> dev left onlink`;
//!   the vrouter proxy-ARPs for the gateway (with its MAC, as for a pod), so the frames leave
//!   towards the vrouter exactly as the model's `service_forward` addresses them (destination
//!   the vrouter MAC, source the interface MAC) and the kernel decrements the TTL;
//! - the function's `drop` list as nftables rules in the forward hook for what enters `left`
//!   (the model applies it in the left → right direction only), plus one counting rule per
//!   direction: [`NetnsDataplane::service_counters`] reads what the instance's kernel really
//!   forwarded and dropped.
//!
//! What the vrouter sends into an instance needs nothing the model path avoids: steering
//! delivers the frame to the interface (destination MAC the VMI's, source the vrouter MAC),
//! and what the instance sends back enters through `receive_from_tap` as the model's
//! `service_forward` hands it over.
//!
//! [`NetnsDataplane::sync`] (in [`crate::pods`]) classifies the model's endpoints and calls
//! [`NetnsDataplane::sync_services`] here to wire new instances, unwire the ones gone and
//! rewire the ones changed (another VMI, MAC, address, node or function).

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use harness_scenario::{Protocol, ServiceFunction};
use harness_vrouter_sim::Dataplane;
use harness_vrouter_sim::config::ServiceSide;
use harness_vrouter_sim::forward::control::Control;
use harness_vrouter_sim::io::PortInfo;
use harness_vrouter_sim::topology::EndpointSpec;

use crate::cluster::{Job, Layout, NetnsDataplane, base_sysctls, mac_str, spawn_all, sysctls};
use crate::pods::{SyncReport, tap_name};
use crate::{NetnsError, ip, sys};

/// The `nft` binary (Debian package `nftables`).
pub const NFT: &str = "nft";
/// The nftables table holding an instance's function.
const NFT_TABLE: &str = "harness_si";
/// Routing table of what enters `left` (it leaves `right`).
const FROM_LEFT_TABLE: u32 = 101;
/// Routing table of what enters `right` (it leaves `left`).
const FROM_RIGHT_TABLE: u32 = 102;
/// Interface names inside an instance's namespace.
const LEFT: &str = "left";
const RIGHT: &str = "right";

/// One port the function drops: IP protocol and destination port (`None`: the whole protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DroppedPort {
    pub protocol: Protocol,
    pub port: Option<u16>,
}

impl DroppedPort {
    /// The function's drop list as the model reads it ([`Dataplane::function_drops`]): a
    /// port number drops that destination port, anything else (ICMP, a port name) the whole
    /// protocol.
    fn from_function(f: &ServiceFunction) -> Vec<DroppedPort> {
        Dataplane::function_drops(f)
            .into_iter()
            .map(|(protocol, port)| DroppedPort { protocol, port })
            .collect()
    }

    /// The nftables match (`tcp dport 81`, `meta l4proto icmp`).
    fn nft_match(self) -> String {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::Icmp => "icmp",
        };
        match (self.protocol, self.port) {
            (Protocol::Icmp, _) | (_, None) => format!("meta l4proto {proto}"),
            (_, Some(p)) => format!("{proto} dport {p}"),
        }
    }

    fn label(self) -> String {
        match self.port {
            Some(p) if self.protocol != Protocol::Icmp => format!("{}/{p}", self.protocol),
            _ => self.protocol.to_string(),
        }
    }
}

/// A service instance the model wants wired.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WantedService {
    pub endpoint: String,
    pub left: PortInfo,
    pub right: PortInfo,
    pub drops: Vec<DroppedPort>,
}

/// A wired service instance.
#[derive(Debug)]
pub(crate) struct ServiceNs {
    pub want: WantedService,
    pub ns: String,
    pub left_tap: String,
    pub right_tap: String,
}

/// The service instances wired now.
#[derive(Debug, Default)]
pub(crate) struct Services {
    pub wired: Vec<ServiceNs>,
    /// Instance namespaces are numbered once per run and never reused (as pods').
    next_index: usize,
}

impl Services {
    /// The taps instances hold: (node, tap). Pod taps must not take their names.
    pub fn taps(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.wired.iter().flat_map(|s| {
            [
                (s.want.left.node.as_str(), s.left_tap.as_str()),
                (s.want.right.node.as_str(), s.right_tap.as_str()),
            ]
        })
    }
}

/// Whether endpoint `e` is a service instance in the model's eyes: it has a function, or
/// one of its interfaces is a service interface (`service_interface_type`).
pub(crate) fn is_service(e: &EndpointSpec, ctl: &Control) -> bool {
    e.function.is_some()
        || e.interfaces.iter().any(|u| {
            ctl.model
                .interface_by_uuid
                .get(u)
                .is_some_and(|i| ctl.model.interfaces[*i].service.is_some())
        })
}

/// Whether the `nft` binary runs here (checked once per process).
fn nft_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new(NFT)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// What wiring service instance `e` takes, or why it cannot be wired (the reason the runner
/// reports for the cells whose path goes through it).
pub(crate) fn wanted(
    e: &EndpointSpec,
    mine: &[&PortInfo],
    ctl: &Control,
    layout: &Layout,
) -> Result<WantedService, String> {
    let side_of = |p: &PortInfo| {
        ctl.model
            .interface_by_uuid
            .get(&p.vmi)
            .and_then(|i| ctl.model.interfaces[*i].service.as_ref())
            .map(|(_, s)| *s)
    };
    let pick = |want: ServiceSide, name: &str| -> Result<PortInfo, String> {
        let found: Vec<&&PortInfo> = mine.iter().filter(|p| side_of(p) == Some(want)).collect();
        match found.as_slice() {
            [] => Err(format!(
                "service instance without a {name} interface placed on a node (its VMIs need service_interface_type {name})"
            )),
            [p] => {
                if !layout.nodes.iter().any(|n| n.name == p.node) {
                    Err(format!(
                        "node {} of its {name} interface is not in the topology",
                        p.node
                    ))
                } else if p.address.is_none() {
                    Err(format!("its {name} interface has no IPv4 address"))
                } else if p.gateway.is_none() {
                    Err(format!(
                        "the network of its {name} interface has no gateway to forward through"
                    ))
                } else {
                    Ok((**p).clone())
                }
            }
            _ => Err(format!(
                "{} {name} interfaces: the netns dataplane wires one per side (the model forwards to one of them by hash)",
                found.len()
            )),
        }
    };
    let left = pick(ServiceSide::Left, LEFT)?;
    let right = pick(ServiceSide::Right, RIGHT)?;
    if !nft_available() {
        return Err(format!(
            "the `{NFT}` binary is not installed (Debian package nftables): a service instance's function is nftables rules in its namespace"
        ));
    }
    Ok(WantedService {
        endpoint: e.name.clone(),
        left,
        right,
        drops: e
            .function
            .as_ref()
            .map(DroppedPort::from_function)
            .unwrap_or_default(),
    })
}

/// The nftables ruleset of an instance: its drops for what enters `left`, then one counting
/// rule per direction (what passes them is forwarded).
fn ruleset(drops: &[DroppedPort]) -> String {
    let mut s = format!(
        "table ip {NFT_TABLE} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n"
    );
    for d in drops {
        s.push_str(&format!(
            "    iifname \"{LEFT}\" {} counter drop comment \"drop {}\"\n",
            d.nft_match(),
            d.label()
        ));
    }
    s.push_str(&format!(
        "    iifname \"{LEFT}\" oifname \"{RIGHT}\" counter comment \"forwarded left-right\"\n"
    ));
    s.push_str(&format!(
        "    iifname \"{RIGHT}\" oifname \"{LEFT}\" counter comment \"forwarded right-left\"\n"
    ));
    s.push_str("  }\n}\n");
    s
}

/// Runs `nft <args>` inside namespace `ns` (the child inherits the namespace of the thread
/// that spawns it: a thread of ours that entered `ns`), with `stdin` on its standard input;
/// returns its standard output.
pub(crate) fn nft_in(ns: &str, args: &[&str], stdin: Option<String>) -> Result<String, NetnsError> {
    let argv: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let shown = format!("ip netns exec {ns} {NFT} {}", argv.join(" "));
    let input = stdin.clone();
    let out = sys::in_netns(ns, move || {
        let mut child = Command::new(NFT)
            .args(&argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut w) = child.stdin.take() {
            w.write_all(input.unwrap_or_default().as_bytes())?;
        }
        child.wait_with_output()
    })?
    .map_err(|e| NetnsError::Io {
        what: format!("running `{shown}` (nftables)"),
        source: e,
    })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            command: match stdin {
                Some(s) => format!("{shown} <<EOF\n{s}EOF"),
                None => shown,
            },
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a service instance's kernel did, from its nftables counters (packets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// The instance's namespace.
    pub namespace: String,
    /// Packets that entered `left` and were forwarded out of `right`.
    pub left_to_right: u64,
    /// Packets that entered `right` and were forwarded out of `left`.
    pub right_to_left: u64,
    /// Packets the function dropped, by rule (`TCP/81`).
    pub dropped: Vec<(String, u64)>,
}

impl ServiceCounters {
    /// Packets the instance forwarded in either direction.
    pub fn forwarded(&self) -> u64 {
        self.left_to_right + self.right_to_left
    }

    /// Packets the function dropped, all rules together.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }
}

/// Reads the counters out of `nft list table` output: each rule line carries
/// `counter packets N bytes M` and the comment that names it.
fn parse_counters(namespace: &str, listing: &str) -> ServiceCounters {
    let mut c = ServiceCounters {
        namespace: namespace.to_owned(),
        ..ServiceCounters::default()
    };
    for line in listing.lines() {
        let Some(packets) = line
            .split_once("counter packets ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let Some(comment) = line
            .split_once("comment \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(c, _)| c)
        else {
            continue;
        };
        match comment {
            "forwarded left-right" => c.left_to_right += packets,
            "forwarded right-left" => c.right_to_left += packets,
            other => {
                if let Some(what) = other.strip_prefix("drop ") {
                    c.dropped.push((what.to_owned(), packets));
                }
            }
        }
    }
    c
}

impl NetnsDataplane {
    /// Brings the service-instance namespaces in line with `want`: unwires the ones gone or
    /// changed, wires the new ones one by one (and adds both to `report`). An instance whose
    /// wiring fails is taken down again and returned with the error, for
    /// [`NetnsDataplane::skipped`]: the cells whose path goes through it are skipped with
    /// that reason, every other probe goes on, and the next sync tries it again.
    ///
    /// # Errors
    /// Only what concerns the whole run: unwiring failed, the run record cannot be written,
    /// or another run holds the namespace name ([`NetnsError::RunIdInUse`]).
    pub(crate) fn sync_services(
        &self,
        pods: &mut crate::pods::Pods,
        want: &[WantedService],
        report: &mut SyncReport,
    ) -> Result<Vec<(String, String)>, NetnsError> {
        let (keep, gone): (Vec<ServiceNs>, Vec<ServiceNs>) =
            std::mem::take(&mut pods.services.wired)
                .into_iter()
                .partition(|s| want.contains(&s.want));
        pods.services.wired = keep;
        if !gone.is_empty() {
            report
                .unwired
                .extend(gone.iter().map(|s| s.want.endpoint.clone()));
            self.unwire_services(gone)?;
        }
        let new: Vec<WantedService> = want
            .iter()
            .filter(|w| {
                !pods
                    .services
                    .wired
                    .iter()
                    .any(|s| s.want.endpoint == w.endpoint)
            })
            .cloned()
            .collect();
        let run = &self.inner.run_id;
        let mut failed = Vec::new();
        // One at a time, so a failure names its instance and takes down only that one.
        for w in new {
            pods.services.next_index += 1;
            let k = pods.services.next_index;
            let mut taken = pods.taps_by_node();
            let left_tap = tap_name(
                &w.left.vmi,
                format!("si{k}l"),
                taken.entry(w.left.node.clone()).or_default(),
            );
            let right_tap = tap_name(
                &w.right.vmi,
                format!("si{k}r"),
                taken.entry(w.right.node.clone()).or_default(),
            );
            let s = ServiceNs {
                want: w,
                ns: format!("h{run}-s{k}"),
                left_tap,
                right_tap,
            };
            let names = [s.ns.clone()];
            if ip::list_netns().contains(&s.ns) {
                return Err(NetnsError::RunIdInUse(run.clone(), s.ns));
            }
            // Recorded before created, so a killed run's instances are swept too.
            self.inner.own(&names)?;
            match self.wire_service(&s) {
                Ok(()) => {
                    report.wired.push(s.want.endpoint.clone());
                    pods.services.wired.push(s);
                }
                Err(e) => {
                    // Take back whatever this attempt created. A namespace that cannot be
                    // deleted stays in the run record, for cleanup to sweep.
                    let _ = self.remove_service_taps(&s, false);
                    if ip::delete_netns(&names).is_ok() {
                        self.inner.disown(&names)?;
                    }
                    failed.push((
                        s.want.endpoint,
                        format!("wiring its namespace failed (the next sync tries again): {e}"),
                    ));
                }
            }
        }
        report.failed.extend(failed.iter().cloned());
        Ok(failed)
    }

    /// Takes an instance's taps from the vrouters (first error returned, both tried), and
    /// with `delete` deletes them too (only taps this run created: a failed wiring may have
    /// failed because something else holds the name).
    fn remove_service_taps(&self, s: &ServiceNs, delete: bool) -> Option<NetnsError> {
        let mut first = None;
        for itf in [&s.want.left, &s.want.right] {
            if let Some(h) = self.vrouters.get(&itf.node)
                && let Err(e) = h.remove_tap(&itf.vmi)
            {
                first.get_or_insert(e);
            }
        }
        if delete {
            self.delete_taps(&[
                (s.want.left.node.clone(), s.left_tap.clone()),
                (s.want.right.node.clone(), s.right_tap.clone()),
            ]);
        }
        first
    }

    /// Takes the instances' taps from the vrouters and deletes their namespaces (the veth
    /// pairs go with them).
    fn unwire_services(&self, gone: Vec<ServiceNs>) -> Result<(), NetnsError> {
        let mut first_err = None;
        for s in &gone {
            if let Some(e) = self.remove_service_taps(s, true) {
                first_err.get_or_insert(e);
            }
        }
        let names: Vec<String> = gone.into_iter().map(|s| s.ns).collect();
        ip::delete_netns(&names)?;
        self.inner.disown(&names)?;
        first_err.map_or(Ok(()), Err)
    }

    /// Creates instance `s`'s namespace, links, routing and function, then hands its taps to
    /// the vrouters. On error, what was created is left for the caller to take back.
    fn wire_service(&self, s: &ServiceNs) -> Result<(), NetnsError> {
        let mtu = self.opts.mtu;
        let ns = &s.ns;
        // 1. The namespace: the base sysctls, then forwarding on (rp_filter is off in the
        //    base set and on every link created afterwards; redirects would only be noise).
        ip::batch(None, &[format!("netns add {ns}")])?;
        let f: Job = Box::new(|| {
            base_sysctls()?;
            sysctls(&[
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv4/conf/all/send_redirects", "0"),
                ("net/ipv4/conf/default/send_redirects", "0"),
            ])
        });
        spawn_all(vec![(ns.clone(), f)])?;
        // 2. Two veth pairs: `left` / `right` with the VMI MACs in the instance, the taps in
        //    their nodes' namespaces.
        let mut links = Vec::new();
        let mut per_node: HashMap<&str, Vec<String>> = HashMap::new();
        for (inside, itf, tap) in [
            (LEFT, &s.want.left, &s.left_tap),
            (RIGHT, &s.want.right, &s.right_tap),
        ] {
            let nns = self
                .layout
                .nodes
                .iter()
                .find(|n| n.name == itf.node)
                .map(|n| n.ns.as_str())
                .ok_or_else(|| {
                    NetnsError::Unknown(format!(
                        "node {} of service instance {}",
                        itf.node, s.want.endpoint
                    ))
                })?;
            links.push(format!(
                "link add name {inside} address {} mtu {mtu} netns {ns} type veth peer name {tap} mtu {mtu} netns {nns}",
                mac_str(itf.mac),
            ));
            per_node
                .entry(nns)
                .or_default()
                .push(format!("link set {tap} up"));
        }
        ip::batch(None, &links)?;
        // 3. Addresses and the policy routing that makes the instance a bump in the wire.
        let mut per_ns: Vec<(String, Vec<String>)> = per_node
            .into_iter()
            .map(|(ns, v)| (ns.to_owned(), v))
            .collect();
        let mut v = vec!["link set lo up".to_owned()];
        for (inside, itf) in [(LEFT, &s.want.left), (RIGHT, &s.want.right)] {
            if let Some(a) = itf.address {
                v.push(format!("addr add {a} dev {inside}"));
            }
            v.push(format!("link set {inside} up"));
        }
        let gw = |itf: &PortInfo| {
            itf.gateway.ok_or_else(|| {
                NetnsError::Unknown(format!(
                    "gateway of interface {} of service instance {}",
                    itf.vmi, s.want.endpoint
                ))
            })
        };
        v.push(format!(
            "route add default via {} dev {RIGHT} onlink table {FROM_LEFT_TABLE}",
            gw(&s.want.right)?
        ));
        v.push(format!(
            "route add default via {} dev {LEFT} onlink table {FROM_RIGHT_TABLE}",
            gw(&s.want.left)?
        ));
        v.push(format!(
            "rule add iif {LEFT} lookup {FROM_LEFT_TABLE} pref 100"
        ));
        v.push(format!(
            "rule add iif {RIGHT} lookup {FROM_RIGHT_TABLE} pref 101"
        ));
        per_ns.push((ns.clone(), v));
        ip::batches_in_parallel(&per_ns)?;
        // 4. Offloads off where the instance's kernel transmits (no GRO merging what it
        //    forwards either), then the function as nftables rules.
        let f: Job = Box::new(|| {
            sys::offloads_off(LEFT)?;
            sys::offloads_off(RIGHT)
        });
        spawn_all(vec![(ns.clone(), f)])?;
        nft_in(ns, &["-f", "-"], Some(ruleset(&s.want.drops)))?;
        // 5. The nodes' vrouters take the taps.
        for (itf, tap) in [(&s.want.left, &s.left_tap), (&s.want.right, &s.right_tap)] {
            let h = self
                .vrouters
                .get(&itf.node)
                .ok_or_else(|| NetnsError::Unknown(format!("vrouter of node {}", itf.node)))?;
            h.add_tap(tap, &itf.vmi)?;
        }
        Ok(())
    }

    /// What each wired service instance's kernel forwarded and dropped so far, from the
    /// nftables counters in its namespace: (instance name, counters). Cheap enough to read
    /// around a single traced probe (one `nft` process per instance).
    ///
    /// # Errors
    /// [`NetnsError::Stopped`] after cleanup; a failing `nft`.
    pub fn service_counters(&self) -> Result<Vec<(String, ServiceCounters)>, NetnsError> {
        if self.inner.done.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(NetnsError::Stopped);
        }
        let wired: Vec<(String, String)> = self
            .inner
            .pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .services
            .wired
            .iter()
            .map(|s| (s.want.endpoint.clone(), s.ns.clone()))
            .collect();
        wired
            .into_iter()
            .map(|(name, ns)| {
                let listing = nft_in(&ns, &["list", "table", "ip", NFT_TABLE], None)?;
                Ok((name, parse_counters(&ns, &listing)))
            })
            .collect()
    }

    /// The namespace of a wired service instance (`h<run>-s<k>`).
    pub fn service_namespace(&self, instance: &str) -> Option<String> {
        self.inner
            .pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .services
            .wired
            .iter()
            .find(|s| s.want.endpoint == instance)
            .map(|s| s.ns.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_scenario::{PortRef, PortSpec};

    #[test]
    fn drops_follow_the_model_reading_of_the_function() {
        let f = ServiceFunction {
            drop: vec![
                PortSpec::tcp(81),
                PortSpec::icmp(),
                PortSpec {
                    protocol: Protocol::Udp,
                    port: Some(PortRef::Name("dns".into())),
                },
            ],
        };
        let d = DroppedPort::from_function(&f);
        let m: Vec<String> = d.iter().map(|d| d.nft_match()).collect();
        assert_eq!(m, ["tcp dport 81", "meta l4proto icmp", "meta l4proto udp"]);
        let r = ruleset(&d);
        assert!(
            r.contains("iifname \"left\" tcp dport 81 counter drop comment \"drop TCP/81\""),
            "{r}"
        );
        // Drops come before the counting rules, and only for what enters left.
        let first_count = r.find("forwarded left-right").unwrap();
        assert!(r.rfind("counter drop").unwrap() < first_count, "{r}");
        assert!(!r.contains("iifname \"right\" tcp"), "{r}");
    }

    #[test]
    fn counters_are_read_from_the_listing_by_comment() {
        let listing = r#"table ip harness_si {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "left" tcp dport 81 counter packets 3 bytes 180 drop comment "drop TCP/81"
		iifname "left" oifname "right" counter packets 7 bytes 420 comment "forwarded left-right"
		iifname "right" oifname "left" counter packets 5 bytes 300 comment "forwarded right-left"
	}
}
"#;
        let c = parse_counters("h1-s1", listing);
        assert_eq!(c.left_to_right, 7);
        assert_eq!(c.right_to_left, 5);
        assert_eq!(c.forwarded(), 12);
        assert_eq!(c.dropped, vec![("TCP/81".to_owned(), 3)]);
        assert_eq!(c.dropped_total(), 3);
        assert_eq!(
            parse_counters("x", "garbage\n"),
            ServiceCounters {
                namespace: "x".into(),
                ..ServiceCounters::default()
            }
        );
    }
}
