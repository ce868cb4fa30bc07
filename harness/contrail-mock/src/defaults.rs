//! The objects a freshly started real API server creates (`_db_init_entries`), so clients
//! that look them up (kube-manager reads `ip-fabric`, `default-global-vrouter-config`,
//! `default-policy-management`, ...) find them.

use harness_contrail_vnc::VncObject;
use serde_json::{Value, json};

use crate::db::{Ctx, State};
use crate::hooks::PREDEFINED_TAG_TYPES;

fn fq(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

fn ensure(st: &mut State, obj: VncObject) -> Option<String> {
    if let Some(id) = st.lookup_fq(&obj.type_name, &obj.fq_name) {
        return Some(id.clone());
    }
    let ctx = Ctx {
        internal: true,
        ..Ctx::default()
    };
    st.create(obj, &ctx).ok()
}

/// Creates the default objects (idempotent).
pub(crate) fn populate(st: &mut State) {
    let gsc = fq(&["default-global-system-config"]);
    ensure(
        st,
        VncObject::new("global-system-config", gsc.clone())
            .with_prop("autonomous_system", 64512)
            .with_prop("config_version", "1.0"),
    );
    let gvc = ensure(
        st,
        VncObject::new(
            "global-vrouter-config",
            fq(&[
                "default-global-system-config",
                "default-global-vrouter-config",
            ]),
        ),
    );
    ensure(st, VncObject::new("domain", fq(&["default-domain"])));
    // The domain's and project's default children, as create_default_children makes them.
    ensure(
        st,
        VncObject::new("namespace", fq(&["default-domain", "default-namespace"])),
    );
    ensure(
        st,
        VncObject::new("project", fq(&["default-domain", "default-project"])),
    );
    let default_ipam = ensure(
        st,
        VncObject::new(
            "network-ipam",
            fq(&["default-domain", "default-project", "default-network-ipam"]),
        ),
    );
    ensure(
        st,
        VncObject::new(
            "virtual-network",
            fq(&[
                "default-domain",
                "default-project",
                "default-virtual-network",
            ]),
        ),
    );
    ensure(
        st,
        VncObject::new(
            "fabric",
            fq(&["default-global-system-config", "default-fabric"]),
        ),
    );
    ensure(
        st,
        VncObject::new("policy-management", fq(&["default-policy-management"])),
    );
    let mut aps = VncObject::new(
        "application-policy-set",
        fq(&[
            "default-policy-management",
            "default-application-policy-set",
        ]),
    )
    .with_parent_type("policy-management")
    .with_prop("all_applications", true);
    if let Some(gvc) = gvc {
        aps = aps.with_ref(
            "global_vrouter_config_refs",
            harness_contrail_vnc::Ref::new(
                fq(&[
                    "default-global-system-config",
                    "default-global-vrouter-config",
                ]),
                gvc,
            ),
        );
    }
    ensure(st, aps);
    let ip_fabric = fq(&["default-domain", "default-project", "ip-fabric"]);
    ensure(
        st,
        VncObject::new("virtual-network", ip_fabric.clone()).with_prop("is_provider_network", true),
    );
    ensure(
        st,
        VncObject::new(
            "routing-instance",
            [ip_fabric.clone(), fq(&["ip-fabric"])].concat(),
        )
        .with_prop("routing_instance_is_default", true),
    );
    ensure(
        st,
        VncObject::new(
            "routing-instance",
            [ip_fabric, fq(&["__default__"])].concat(),
        ),
    );
    let link_local = fq(&["default-domain", "default-project", "__link_local__"]);
    ensure(st, VncObject::new("virtual-network", link_local.clone()));
    ensure(
        st,
        VncObject::new(
            "routing-instance",
            [link_local, fq(&["__link_local__"])].concat(),
        )
        .with_prop("routing_instance_is_default", true),
    );
    let dci = fq(&["default-domain", "default-project", "dci-network"]);
    ensure(st, VncObject::new("virtual-network", dci.clone()));
    ensure(
        st,
        VncObject::new(
            "routing-instance",
            [dci.clone(), fq(&["dci-network"])].concat(),
        )
        .with_prop("routing_instance_is_default", true),
    );
    ensure(
        st,
        VncObject::new("routing-instance", [dci, fq(&["__default__"])].concat()),
    );
    ensure(
        st,
        VncObject::new(
            "routing-instance",
            fq(&[
                "default-domain",
                "default-project",
                "default-virtual-network",
                "default-virtual-network",
            ]),
        )
        .with_prop("routing_instance_is_default", true),
    );
    ensure(
        st,
        VncObject::new(
            "security-group",
            fq(&["default-domain", "default-project", "__no_rule__"]),
        )
        .with_prop("security_group_entries", json!({"policy_rule": []}))
        .with_prop(
            "id_perms",
            json!({"enable": true, "description": "Security group with no rules", "user_visible": true}),
        )
        .with_prop("perms2", json!({"owner": "cloud-admin", "global_access": 5})),
    );
    ensure(
        st,
        VncObject::new(
            "discovery-service-assignment",
            fq(&["default-discovery-service-assignment"]),
        ),
    );
    ensure(
        st,
        VncObject::new(
            "global-qos-config",
            fq(&["default-global-system-config", "default-global-qos-config"]),
        ),
    );
    ensure(
        st,
        VncObject::new(
            "network-ipam",
            fq(&[
                "default-domain",
                "default-project",
                "service-chain-flat-ipam",
            ]),
        )
        .with_prop("ipam_subnet_method", "flat-subnet")
        .with_prop(
            "ipam_subnets",
            json!({"subnets": [
                {"subnet": {"ip_prefix": "0.0.0.0", "ip_prefix_len": 8}},
                {"subnet": {"ip_prefix": "::ffff", "ip_prefix_len": 104}}
            ]}),
        ),
    );
    for (name, id) in PREDEFINED_TAG_TYPES {
        ensure(
            st,
            VncObject::new("tag-type", fq(&[name]))
                .with_prop("tag_type_id", format!("0x{id:04x}"))
                .with_prop("display_name", *name)
                .with_prop("id_perms", json!({"user_visible": false})),
        );
    }
    // The default IPAM is readable by every tenant.
    if let Some(id) = default_ipam
        && let Some(obj) = st.objects.get_mut(&id)
        && let Some(Value::Object(p)) = obj.fields.get_mut("perms2")
    {
        p.insert("global_access".into(), json!(5));
    }
}

/// The global api-access-list a real server creates when RBAC is on: discovery and name
/// lookups are open to every role.
pub(crate) fn default_rbac_rules(st: &mut State) {
    let fq_name = fq(&["default-global-system-config", "default-api-access-list"]);
    let rules = json!({"rbac_rule": [
        {"rule_object": "fqname-to-id", "rule_field": "", "rule_perms": [{"role_name": "*", "role_crud": "CRUD"}]},
        {"rule_object": "id-to-fqname", "rule_field": "", "rule_perms": [{"role_name": "*", "role_crud": "CRUD"}]},
        {"rule_object": "useragent-kv", "rule_field": "", "rule_perms": [{"role_name": "*", "role_crud": "CRUD"}]},
        {"rule_object": "documentation", "rule_field": "", "rule_perms": [{"role_name": "*", "role_crud": "R"}]},
        {"rule_object": "/", "rule_field": "", "rule_perms": [{"role_name": "*", "role_crud": "R"}]}
    ]});
    if st.lookup_fq("api-access-list", &fq_name).is_some() {
        return;
    }
    ensure(
        st,
        VncObject::new("api-access-list", fq_name)
            .with_parent_type("global-system-config")
            .with_prop("api_access_list_entries", rules),
    );
}

#[cfg(test)]
mod tests {
    use crate::ConfigDb;

    #[test]
    fn every_default_object_is_created() {
        let db = ConfigDb::new();
        for (t, fq) in [
            ("global-system-config", vec!["default-global-system-config"]),
            (
                "global-vrouter-config",
                vec![
                    "default-global-system-config",
                    "default-global-vrouter-config",
                ],
            ),
            ("domain", vec!["default-domain"]),
            ("namespace", vec!["default-domain", "default-namespace"]),
            ("project", vec!["default-domain", "default-project"]),
            (
                "network-ipam",
                vec!["default-domain", "default-project", "default-network-ipam"],
            ),
            (
                "virtual-network",
                vec![
                    "default-domain",
                    "default-project",
                    "default-virtual-network",
                ],
            ),
            (
                "fabric",
                vec!["default-global-system-config", "default-fabric"],
            ),
            ("policy-management", vec!["default-policy-management"]),
            (
                "application-policy-set",
                vec![
                    "default-policy-management",
                    "default-application-policy-set",
                ],
            ),
            (
                "virtual-network",
                vec!["default-domain", "default-project", "ip-fabric"],
            ),
            (
                "routing-instance",
                vec![
                    "default-domain",
                    "default-project",
                    "ip-fabric",
                    "ip-fabric",
                ],
            ),
            (
                "routing-instance",
                vec![
                    "default-domain",
                    "default-project",
                    "ip-fabric",
                    "__default__",
                ],
            ),
            (
                "virtual-network",
                vec!["default-domain", "default-project", "__link_local__"],
            ),
            (
                "virtual-network",
                vec!["default-domain", "default-project", "dci-network"],
            ),
            (
                "security-group",
                vec!["default-domain", "default-project", "__no_rule__"],
            ),
            (
                "discovery-service-assignment",
                vec!["default-discovery-service-assignment"],
            ),
            (
                "global-qos-config",
                vec!["default-global-system-config", "default-global-qos-config"],
            ),
            (
                "network-ipam",
                vec![
                    "default-domain",
                    "default-project",
                    "service-chain-flat-ipam",
                ],
            ),
            ("tag-type", vec!["label"]),
            ("tag-type", vec!["application"]),
            ("tag-type", vec!["neutron_tag"]),
        ] {
            let fq: Vec<String> = fq.into_iter().map(str::to_owned).collect();
            assert!(db.get_by_fq_name(t, &fq).is_some(), "{t} {fq:?}");
        }
        let app = db
            .get_by_fq_name("tag-type", &["application".to_owned()])
            .and_then(|t| t.prop::<String>("tag_type_id"));
        assert_eq!(app.as_deref(), Some("0x0001"));
    }
}
