//! The real kube-manager's names (`vnc_kubernetes_config.py`, research/contrail.md §2.2),
//! for a cluster name.

use std::fmt::Write as _;

/// The domain every kube-manager project lives in.
pub(crate) const DOMAIN: &str = "default-domain";
/// The global policy management holding the cluster APS, firewall policies and rules.
pub(crate) const POLICY_MANAGEMENT: &str = "default-policy-management";
/// fq_name of the ip-fabric network.
pub(crate) const IP_FABRIC: [&str; 3] = ["default-domain", "default-project", "ip-fabric"];
/// The global system config (parent of virtual routers and global vrouter config).
pub(crate) const GLOBAL_SYSTEM_CONFIG: &str = "default-global-system-config";

pub(crate) fn fq(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// `make_name(*args)`: parts joined with `__`.
pub(crate) fn make_name(parts: &[&str]) -> String {
    parts.join("__")
}

/// Names of one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub cluster: String,
}

impl Names {
    pub fn new(cluster: &str) -> Self {
        Names {
            cluster: cluster.to_owned(),
        }
    }

    /// `<cluster>-<ns>`.
    pub fn project_name(&self, ns: &str) -> String {
        format!("{}-{ns}", self.cluster)
    }

    /// `[default-domain, <cluster>-<ns>]`.
    pub fn project(&self, ns: &str) -> Vec<String> {
        vec![DOMAIN.to_owned(), self.project_name(ns)]
    }

    /// An object in the project of `ns`.
    pub fn in_project(&self, ns: &str, name: &str) -> Vec<String> {
        vec![DOMAIN.to_owned(), self.project_name(ns), name.to_owned()]
    }

    /// `[default-domain, <cluster>-default, <cluster>-<kind>-ipam]`.
    pub fn ipam(&self, kind: &str) -> Vec<String> {
        self.in_project("default", &format!("{}-{kind}-ipam", self.cluster))
    }

    /// `<cluster>-<ns>-pod-network` in project `<cluster>-<ns>` (for `default`: the cluster
    /// default pod network).
    pub fn pod_network(&self, ns: &str) -> Vec<String> {
        self.in_project(ns, &format!("{}-{ns}-pod-network", self.cluster))
    }

    /// `<cluster>-<ns>-service-network`.
    pub fn service_network(&self, ns: &str) -> Vec<String> {
        self.in_project(ns, &format!("{}-{ns}-service-network", self.cluster))
    }

    /// `<cluster>-default-<kind>-np` (`ip-fabric`, `service`, `pod-service`).
    pub fn cluster_policy(&self, kind: &str) -> Vec<String> {
        self.in_project("default", &format!("{}-default-{kind}-np", self.cluster))
    }

    /// `<cluster>-<ns>-pod-service-np`.
    pub fn ns_pod_service_policy(&self, ns: &str) -> Vec<String> {
        self.in_project(ns, &format!("{}-{ns}-pod-service-np", self.cluster))
    }

    /// `<cluster>-<ns>-default-sg`.
    pub fn default_sg(&self, ns: &str) -> Vec<String> {
        self.in_project(ns, &format!("{}-{ns}-default-sg", self.cluster))
    }

    /// An object of the global policy management.
    pub fn pm(&self, name: &str) -> Vec<String> {
        vec![POLICY_MANAGEMENT.to_owned(), name.to_owned()]
    }

    /// The cluster APS `[default-policy-management, <cluster>]`.
    pub fn aps(&self) -> Vec<String> {
        self.pm(&self.cluster)
    }

    /// `<cluster>-Ingress`, `<cluster>-denyall`, `<cluster>-allowall`.
    pub fn cluster_fw_policy(&self, kind: &str) -> Vec<String> {
        self.pm(&format!("{}-{kind}", self.cluster))
    }

    /// The firewall policy of NetworkPolicy `np` in `ns`: `<cluster>-<ns>-<np>`.
    pub fn np_fw_policy(&self, ns: &str, np: &str) -> Vec<String> {
        self.pm(&format!("{}-{ns}-{np}", self.cluster))
    }

    /// The virtual machine of a pod: `<cluster>__<ns>__<pod>`.
    pub fn vm_name(&self, ns: &str, pod: &str) -> String {
        make_name(&[&self.cluster, ns, pod])
    }

    /// The public network `[default-domain, <cluster>-default, <cluster>-public-network]`.
    pub fn public_network(&self) -> Vec<String> {
        self.in_project("default", &format!("{}-public-network", self.cluster))
    }

    /// Its floating-IP pool.
    pub fn public_pool(&self) -> Vec<String> {
        let mut f = self.public_network();
        f.push(format!("{}-public-fip-pool", self.cluster));
        f
    }

    /// The api-access-list the RBAC mapping writes under an owner (`<cluster>-rbac`).
    pub fn rbac_list_name(&self) -> String {
        format!("{}-rbac", self.cluster)
    }
}

/// A uuid derived from `seed` and `salt` (stable across restarts, so names that embed a
/// uuid, like the real kube-manager's `<pod>__<uuid>`, stay the same).
pub(crate) fn derived_uuid(seed: &str, salt: &str) -> String {
    let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
    for b in seed.bytes().chain([0u8]).chain(salt.bytes()) {
        h1 ^= u64::from(b);
        h1 = h1.wrapping_mul(0x0000_0100_0000_01b3);
        h2 = h2.rotate_left(5) ^ u64::from(b);
        h2 = h2.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let v = (u128::from(h1) << 64) | u128::from(h2);
    // Version 4 / RFC 4122 variant bits, so it looks like what vnc_api would generate.
    let v = (v & !(0xf << 76)) | (0x4 << 76);
    let v = (v & !(0x3 << 62)) | (0x2 << 62);
    uuid::Uuid::from_u128(v).hyphenated().to_string()
}

/// A short stable hexadecimal digest.
pub(crate) fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut s = String::with_capacity(12);
    let _ = write!(s, "{:012x}", h & 0xffff_ffff_ffff);
    s
}

/// A label key or value as kube-manager's label cache writes it into a tag
/// (`/` → `__slash__`).
pub(crate) fn tag_part(s: &str) -> String {
    s.replace('/', "__slash__")
}

/// The tag string `type=value` for a Kubernetes label (tag types are lower-cased by the API
/// server, so the rule endpoints use the stored spelling).
pub(crate) fn label_tag(key: &str, value: &str) -> String {
    format!("{}={}", tag_part(key).to_lowercase(), tag_part(value))
}

/// A `%05d.0` firewall sequence (`construct_sequence_number`).
pub(crate) fn sequence(n: usize) -> String {
    format!("{n:05}.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kube_manager() {
        let n = Names::new("k8s");
        assert_eq!(n.project("x"), fq(&["default-domain", "k8s-x"]));
        assert_eq!(
            n.pod_network("default"),
            fq(&["default-domain", "k8s-default", "k8s-default-pod-network"])
        );
        assert_eq!(
            n.cluster_policy("ip-fabric"),
            fq(&["default-domain", "k8s-default", "k8s-default-ip-fabric-np"])
        );
        assert_eq!(
            n.ns_pod_service_policy("blue"),
            fq(&["default-domain", "k8s-blue", "k8s-blue-pod-service-np"])
        );
        assert_eq!(n.aps(), fq(&["default-policy-management", "k8s"]));
        assert_eq!(n.vm_name("x", "a"), "k8s__x__a");
        assert_eq!(sequence(4), "00004.0");
        assert_eq!(
            label_tag("kubernetes.io/metadata.name", "x"),
            "kubernetes.io__slash__metadata.name=x"
        );
        let a = derived_uuid("pod-uid", "vmi-0");
        assert_eq!(a, derived_uuid("pod-uid", "vmi-0"));
        assert_ne!(a, derived_uuid("pod-uid", "vmi-1"));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}
