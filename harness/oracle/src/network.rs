//! Contrail 5.0 virtual networks of a Kubernetes cluster and which of them are connected by the
//! network-policies kube-manager attaches (research/contrail.md §2.3-2.4, §4.3).

use std::fmt;

/// A virtual network a pod, service VIP or node lives in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetworkId {
    /// `<cluster>-default-pod-network`: pods of `default` and of every non-isolated namespace.
    DefaultPod,
    /// `<cluster>-default-service-network`: service VIPs of non-isolated namespaces.
    DefaultService,
    /// `<cluster>-<ns>-pod-network` of an isolated namespace.
    NamespacePod(String),
    /// `<cluster>-<ns>-service-network` of an isolated namespace.
    NamespaceService(String),
    /// A network named by the `opencontrail.org/network` annotation (fq name).
    Custom(Vec<String>),
    /// `default-domain:default-project:ip-fabric`: the vhost interfaces of the compute nodes.
    IpFabric,
}

impl NetworkId {
    /// The virtual network's name, e.g. `k8s-blue-pod-network`; a custom network's fq name
    /// joined by `:`.
    pub fn name(&self, cluster: &str) -> String {
        match self {
            NetworkId::DefaultPod => format!("{cluster}-default-pod-network"),
            NetworkId::DefaultService => format!("{cluster}-default-service-network"),
            NetworkId::NamespacePod(ns) => format!("{cluster}-{ns}-pod-network"),
            NetworkId::NamespaceService(ns) => format!("{cluster}-{ns}-service-network"),
            NetworkId::Custom(fq) => fq.join(":"),
            NetworkId::IpFabric => "ip-fabric".into(),
        }
    }

    /// The Contrail fq name, e.g. `[default-domain, k8s-blue, k8s-blue-pod-network]`.
    pub fn fq_name(&self, cluster: &str) -> Vec<String> {
        let project = |ns: &str| format!("{cluster}-{ns}");
        match self {
            NetworkId::DefaultPod | NetworkId::DefaultService => {
                vec![
                    "default-domain".into(),
                    project("default"),
                    self.name(cluster),
                ]
            }
            NetworkId::NamespacePod(ns) | NetworkId::NamespaceService(ns) => {
                vec!["default-domain".into(), project(ns), self.name(cluster)]
            }
            NetworkId::Custom(fq) => fq.clone(),
            NetworkId::IpFabric => vec![
                "default-domain".into(),
                "default-project".into(),
                "ip-fabric".into(),
            ],
        }
    }

    /// The network an fq name designates (the inverse of [`NetworkId::fq_name`]); anything
    /// that is not a kube-manager network is [`NetworkId::Custom`].
    pub fn from_fq_name(fq: &[String], cluster: &str) -> NetworkId {
        if fq == ["default-domain", "default-project", "ip-fabric"] {
            return NetworkId::IpFabric;
        }
        if let [_, project, name] = fq
            && let Some(ns) = project.strip_prefix(&format!("{cluster}-"))
        {
            if *name == format!("{cluster}-{ns}-pod-network") {
                return if ns == "default" {
                    NetworkId::DefaultPod
                } else {
                    NetworkId::NamespacePod(ns.into())
                };
            }
            if *name == format!("{cluster}-{ns}-service-network") {
                return if ns == "default" {
                    NetworkId::DefaultService
                } else {
                    NetworkId::NamespaceService(ns.into())
                };
            }
        }
        NetworkId::Custom(fq.to_vec())
    }

    /// The name without the cluster prefix: `default-pod-network`, `blue-service-network`,
    /// `ip-fabric`, or a custom network's fq name.
    pub fn short_name(&self) -> String {
        match self {
            NetworkId::DefaultPod => "default-pod-network".into(),
            NetworkId::DefaultService => "default-service-network".into(),
            NetworkId::NamespacePod(ns) => format!("{ns}-pod-network"),
            NetworkId::NamespaceService(ns) => format!("{ns}-service-network"),
            NetworkId::Custom(fq) => fq.join(":"),
            NetworkId::IpFabric => "ip-fabric".into(),
        }
    }

    /// Whether this is a pod network (default, isolated or custom).
    pub fn is_pod_network(&self) -> bool {
        matches!(
            self,
            NetworkId::DefaultPod | NetworkId::NamespacePod(_) | NetworkId::Custom(_)
        )
    }
}

/// How two networks are connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The same network (one VRF).
    Same,
    /// Routes are leaked by this kube-manager network-policy, attached to both networks.
    Policy(String),
    /// Not connected: Contrail keeps the networks apart.
    None,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Same => f.write_str("same network"),
            Link::Policy(p) => write!(f, "network-policy {p}"),
            Link::None => f.write_str("not connected"),
        }
    }
}

/// Which kube-manager network-policy connects `a` and `b` (the policies are `<>`, so the
/// relation is symmetric).
///
/// Encodes research/contrail.md §4.3: the default pod network reaches the default service
/// network (`<c>-default-pod-service-np`); an isolated namespace's pod network reaches its own
/// service network (`<c>-<ns>-pod-service-np`) and the default service network
/// (`<c>-default-service-np`); every kube-manager network reaches the ip-fabric
/// (`<c>-default-ip-fabric-np`); custom networks reach nothing but themselves.
pub fn link(a: &NetworkId, b: &NetworkId, cluster: &str) -> Link {
    use NetworkId::*;
    if a == b {
        return Link::Same;
    }
    let np = |s: &str| Link::Policy(format!("{cluster}-{s}"));
    match (a, b) {
        (DefaultPod, DefaultService) | (DefaultService, DefaultPod) => np("default-pod-service-np"),
        (NamespacePod(x), NamespaceService(y)) | (NamespaceService(y), NamespacePod(x))
            if x == y =>
        {
            np(&format!("{x}-pod-service-np"))
        }
        (NamespacePod(_), DefaultService) | (DefaultService, NamespacePod(_)) => {
            np("default-service-np")
        }
        (DefaultPod | DefaultService | NamespacePod(_) | NamespaceService(_), IpFabric)
        | (IpFabric, DefaultPod | DefaultService | NamespacePod(_) | NamespaceService(_)) => {
            np("default-ip-fabric-np")
        }
        _ => Link::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NetworkId::*;

    #[test]
    fn reachability_matrix_of_research_4_3() {
        let x = || NamespacePod("x".into());
        let sx = || NamespaceService("x".into());
        let y = || NamespacePod("y".into());
        let sy = || NamespaceService("y".into());
        let custom = || Custom(vec!["default-domain".into(), "p".into(), "vn".into()]);
        let ok = |a: &NetworkId, b: &NetworkId| link(a, b, "k8s") != Link::None;
        // P0 row
        assert!(ok(&DefaultPod, &DefaultPod) && ok(&DefaultPod, &DefaultService));
        assert!(!ok(&DefaultPod, &x()) && !ok(&DefaultPod, &sx()) && ok(&DefaultPod, &IpFabric));
        // PX row
        assert!(
            !ok(&x(), &DefaultPod)
                && ok(&x(), &DefaultService)
                && ok(&x(), &x())
                && ok(&x(), &sx())
        );
        assert!(ok(&x(), &IpFabric));
        // PY row
        assert!(
            !ok(&y(), &x()) && !ok(&y(), &sx()) && ok(&y(), &sy()) && ok(&y(), &DefaultService)
        );
        // custom
        assert!(
            !ok(&custom(), &DefaultPod)
                && !ok(&custom(), &DefaultService)
                && !ok(&custom(), &IpFabric)
        );
        assert!(ok(&custom(), &custom()));
        assert_eq!(
            link(&x(), &sx(), "k8s"),
            Link::Policy("k8s-x-pod-service-np".into())
        );
    }

    #[test]
    fn fq_names_round_trip() {
        for n in [
            DefaultPod,
            DefaultService,
            NamespacePod("b".into()),
            NamespaceService("b".into()),
            IpFabric,
        ] {
            assert_eq!(NetworkId::from_fq_name(&n.fq_name("k8s"), "k8s"), n);
        }
        assert_eq!(DefaultPod.name("k8s"), "k8s-default-pod-network");
    }
}
