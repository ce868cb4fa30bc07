//! `serviceChain:` steps: the Contrail objects of a service chain, created through the VNC API
//! as an operator (or svc-monitor) would — service template, service instance, port tuple, a
//! virtual machine on the instance pod's node with a left and a right interface, and a
//! network-policy with `apply_service` attached to both networks — plus the instance's
//! forwarding function in the dataplane.
//!
//! The instance is a dataplane endpoint named after the chain (what `path.via` lists); the
//! instance pod keeps its own interface.

use harness_contrail_vnc::{Ref, VncClient, VncObject};
use harness_oracle::Cluster;
use harness_scenario::model::{NetworkRef, ServiceChain};
use harness_scenario::{PortRef, Protocol};
use serde_json::{Value, json};

fn fq(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

async fn create(vnc: &VncClient, type_name: &str, body: Value) -> Result<String, String> {
    let fq_name = body.get("fq_name").cloned().unwrap_or_default();
    let obj = VncObject::from_json(type_name, &body)
        .map_err(|e| format!("{type_name} {fq_name}: {e}"))?;
    match vnc.create(&obj).await {
        Ok(c) => Ok(c.uuid),
        Err(e) if e.status() == Some(409) => {
            let names: Vec<String> = serde_json::from_value(fq_name.clone()).unwrap_or_default();
            vnc.fqname_to_id(type_name, &names)
                .await
                .map_err(|e| format!("{type_name} {fq_name}: {e}"))
        }
        Err(e) => Err(format!("create {type_name} {fq_name}: {e}")),
    }
}

/// The Contrail fq name of a chain end.
fn network(model: &Cluster, r: &NetworkRef, cluster: &str) -> Vec<String> {
    match r {
        NetworkRef::NamespacePods(ns) => model.namespace_pod_network(ns).fq_name(cluster),
        NetworkRef::FqName(f) => f.clone(),
    }
}

/// Creates the chain's Contrail objects; returns the uuids of the left and right interfaces
/// and the node the instance runs on.
///
/// # Errors
///
/// A message naming the object the VNC API refused, or the missing instance pod.
pub async fn create_chain(
    vnc: &VncClient,
    model: &Cluster,
    chain: &ServiceChain,
    cluster: &str,
) -> Result<(String, String, String), String> {
    let (ns, pod) = chain
        .instance
        .split_once('/')
        .ok_or_else(|| format!("instance `{}`: write NAMESPACE/POD", chain.instance))?;
    let node = model
        .pod(ns, pod)
        .map(|p| p.node.clone())
        .ok_or_else(|| format!("instance pod {} does not exist", chain.instance))?;
    let project = format!("{cluster}-{ns}");
    let left = network(model, &chain.left, cluster);
    let right = network(model, &chain.right, cluster);
    let template = format!("{}-template", chain.name);
    create(
        vnc,
        "service-template",
        json!({"fq_name": ["default-domain", template], "parent_type": "domain",
               "service_template_properties": {"version": 2, "service_mode": "transparent",
                                               "service_type": "firewall"}}),
    )
    .await?;
    let si_fq = fq(&["default-domain", &project, &chain.name]);
    create(
        vnc,
        "service-instance",
        json!({"fq_name": si_fq, "parent_type": "project",
               "service_template_refs": [{"to": ["default-domain", template]}]}),
    )
    .await?;
    let pt_fq = fq(&[
        "default-domain",
        &project,
        &chain.name,
        &format!("{}-pt", chain.name),
    ]);
    create(
        vnc,
        "port-tuple",
        json!({"fq_name": pt_fq, "parent_type": "service-instance"}),
    )
    .await?;
    let vm_name = format!("{cluster}__{ns}__{}", chain.name);
    let vm = create(
        vnc,
        "virtual-machine",
        json!({"fq_name": [vm_name], "server_type": "container"}),
    )
    .await?;
    let vr = vnc
        .fqname_to_id(
            "virtual-router",
            &fq(&["default-global-system-config", &node]),
        )
        .await
        .map_err(|e| format!("virtual-router of {node}: {e}"))?;
    vnc.add_ref(
        "virtual-router",
        &vr,
        "virtual-machine",
        &Ref::new(vec![vm_name.clone()], vm.clone()),
    )
    .await
    .map_err(|e| format!("link {vm_name} to {node}: {e}"))?;
    let mut ids = Vec::new();
    for (side, vn) in [("left", &left), ("right", &right)] {
        let vmi_fq = fq(&[
            "default-domain",
            &project,
            &format!("{}-{side}", chain.name),
        ]);
        let vmi = create(
            vnc,
            "virtual-machine-interface",
            json!({"fq_name": vmi_fq, "parent_type": "project",
                   "virtual_network_refs": [{"to": vn}],
                   "virtual_machine_refs": [{"to": [vm_name]}],
                   "port_tuple_refs": [{"to": pt_fq}],
                   "virtual_machine_interface_properties": {"service_interface_type": side}}),
        )
        .await?;
        create(
            vnc,
            "instance-ip",
            json!({"fq_name": [format!("{}-{side}-iip", chain.name)],
                   "virtual_network_refs": [{"to": vn}],
                   "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi}]}),
        )
        .await?;
        ids.push(vmi);
    }
    let any_port = json!([{"start_port": -1, "end_port": -1}]);
    let service = si_fq.join(":");
    let rule = |protocol: &str, ports: Value| {
        json!({"direction": "<>", "protocol": protocol,
               "action_list": {"simple_action": "pass", "apply_service": [service]},
               "src_addresses": [{"virtual_network": left.join(":")}], "src_ports": any_port,
               "dst_addresses": [{"virtual_network": right.join(":")}], "dst_ports": ports})
    };
    let rules: Vec<Value> = if chain.ports.is_empty() {
        vec![rule("any", any_port.clone())]
    } else {
        chain
            .ports
            .iter()
            .map(|p| {
                let proto = match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Sctp => "sctp",
                    Protocol::Icmp => "icmp",
                };
                let ports = match &p.port {
                    Some(PortRef::Number(n)) => json!([{"start_port": n, "end_port": n}]),
                    _ => any_port.clone(),
                };
                rule(proto, ports)
            })
            .collect()
    };
    let np_fq = fq(&[
        "default-domain",
        &project,
        &format!("{}-chain-np", chain.name),
    ]);
    create(
        vnc,
        "network-policy",
        json!({"fq_name": np_fq, "parent_type": "project",
               "network_policy_entries": {"policy_rule": rules}}),
    )
    .await?;
    for vn in [&left, &right] {
        let id = vnc
            .fqname_to_id("virtual-network", vn)
            .await
            .map_err(|e| format!("network {}: {e}", vn.join(":")))?;
        vnc.add_ref(
            "virtual-network",
            &id,
            "network-policy",
            &Ref::by_name(np_fq.clone()).with_attr(json!({"sequence": {"major": 0, "minor": 0}})),
        )
        .await
        .map_err(|e| format!("attach {} to {}: {e}", np_fq.join(":"), vn.join(":")))?;
    }
    Ok((ids[0].clone(), ids[1].clone(), node))
}
