//! What the kube-manager emulation is told: the `[KUBERNETES]` options of the real
//! `contrail-kubernetes.conf` it needs, the semantics profile and the injected faults.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use harness_scenario::{ContrailSettings, MockFault, Profile};
use ipnet::Ipv4Net;

/// Configuration of the kube-manager emulation.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeManagerConfig {
    /// `cluster_name`: the prefix of every object name (`k8s-default-pod-network`, APS `k8s`).
    pub cluster_name: String,
    /// `pod_subnets`: the flat subnets of `<cluster>-pod-ipam`.
    pub pod_subnets: Vec<Ipv4Net>,
    /// `service_subnets`: the flat subnets of `<cluster>-service-ipam` (must contain the
    /// ClusterIPs Kubernetes allocates).
    pub service_subnets: Vec<Ipv4Net>,
    /// `ip_fabric_subnets`: the flat subnets of `<cluster>-ip-fabric-ipam`.
    pub ip_fabric_subnets: Vec<Ipv4Net>,
    /// `ip_fabric_forwarding`: pod networks get the ip-fabric provider link (blueprint default
    /// on; namespaces may override with `opencontrail.org/ip_fabric_forwarding`).
    pub ip_fabric_forwarding: bool,
    /// `ip_fabric_snat`: `fabric_snat` on pod networks without forwarding.
    pub ip_fabric_snat: bool,
    /// Subnets of the public network whose floating-IP pool serves LoadBalancer services,
    /// `externalIPs` and ingresses (`public_fip_pool`); empty: no public network.
    pub public_fip_pool: Vec<Ipv4Net>,
    /// Encapsulation priority written to `default-global-vrouter-config` (`MPLSoUDP`,
    /// `MPLSoGRE`, `VXLAN`); empty leaves it alone. (Provisioning, not kube-manager, sets it
    /// in a real deployment; the emulation stands in for it.)
    pub encapsulation: Vec<String>,
    /// Semantics profile: `upstream` or `r5.0`.
    pub profile: Profile,
    /// Injected defects (all off by default).
    pub faults: BTreeSet<MockFault>,
    /// Create a `virtual-router` for every Kubernetes Node that has none (what
    /// contrail-provisioner does when a vrouter starts), so pods' virtual machines can be
    /// linked to their node.
    pub provision_virtual_routers: bool,
    /// Where the `kubernetes` service's link-local entry points (`kubernetes_api_server`,
    /// `kubernetes_api_secure_port`); `None`: no link-local entry.
    pub kubernetes_api: Option<(Ipv4Addr, u16)>,
    /// The Kubernetes → Contrail RBAC mapping (v1 by default; a scenario's `rbacMapping`
    /// file, read by the runner, replaces it).
    pub rbac_mapping: super::rbac_map::RbacMapping,
    /// How long the event streams must stay quiet before [`super::KubeManagerHandle::wait_converged`]
    /// reports convergence (other watch streams may still be delivering older events).
    pub settle: Duration,
}

impl Default for KubeManagerConfig {
    fn default() -> Self {
        KubeManagerConfig::from_settings(&ContrailSettings::default())
    }
}

impl KubeManagerConfig {
    /// The configuration a scenario's `contrail:` settings describe.
    pub fn from_settings(s: &ContrailSettings) -> Self {
        KubeManagerConfig {
            cluster_name: s.cluster_name.clone(),
            pod_subnets: s.pod_subnets.clone(),
            service_subnets: s.service_subnets.clone(),
            ip_fabric_subnets: s.ip_fabric_subnets.clone(),
            ip_fabric_forwarding: s.ip_fabric_forwarding,
            ip_fabric_snat: s.ip_fabric_snat,
            public_fip_pool: s.public_fip_pool.clone(),
            encapsulation: s
                .encapsulation
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
            profile: s.profile,
            faults: s.faults.iter().copied().collect(),
            provision_virtual_routers: true,
            kubernetes_api: Some((Ipv4Addr::LOCALHOST, 6443)),
            rbac_mapping: super::rbac_map::RbacMapping::default(),
            settle: Duration::from_millis(20),
        }
    }

    /// Whether `fault` is injected.
    pub fn has(&self, fault: MockFault) -> bool {
        self.faults.contains(&fault)
    }

    /// The same configuration with `fault` injected.
    pub fn with_fault(mut self, fault: MockFault) -> Self {
        self.faults.insert(fault);
        self
    }

    /// The same configuration with another profile.
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }
}
