//! VNC API contract tests over HTTP with the harness's own client: status codes, list
//! parameters, fqname/id lookups, ref-update, ref-relax-for-delete, set-tag and tag ids,
//! firewall-rule derivations, bad input, the change stream and RBAC.

use bytes::Bytes;
use harness_contrail_mock::{AuthConfig, ConfigDb, Identity, RunningServer, ServerConfig, serve};
use harness_contrail_vnc::types::{
    FirewallRule, FirewallRuleEndpointType, FirewallServiceType, NetworkIpam, PortType, Resource,
    Tag, VirtualNetwork, VnSubnetsType,
};
use harness_contrail_vnc::{
    Auth, ListParams, ReadParams, Ref, RefOperation, RefUpdate, TagChange, VncClient, VncError,
    VncObject,
};
use http::Method;
use serde_json::{Value, json};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

async fn start() -> (RunningServer, VncClient) {
    start_with(ConfigDb::new(), ServerConfig::default()).await
}

async fn start_with(db: ConfigDb, config: ServerConfig) -> (RunningServer, VncClient) {
    let server = serve("127.0.0.1:0".parse().expect("addr"), db, config)
        .await
        .expect("serve");
    let client = VncClient::new(&server.url(), Auth::None).expect("client");
    (server, client)
}

fn status(e: &VncError) -> u16 {
    e.status().unwrap_or(0)
}

async fn project(c: &VncClient, name: &str) -> String {
    c.create(&VncObject::new("project", s(&["default-domain", name])))
        .await
        .expect("project")
        .uuid
}

async fn flat_ipam(c: &VncClient, project: &str, name: &str) -> String {
    let ipam = NetworkIpam {
        fq_name: s(&["default-domain", project, name]),
        ipam_subnet_method: Some("flat-subnet".into()),
        ipam_subnets: Some(harness_contrail_vnc::types::IpamSubnets {
            subnets: vec![harness_contrail_vnc::types::IpamSubnetType {
                subnet: Some(harness_contrail_vnc::types::SubnetType {
                    ip_prefix: "10.32.0.0".into(),
                    ip_prefix_len: 12,
                }),
                ..Default::default()
            }],
        }),
        ..NetworkIpam::default()
    };
    c.create_typed(&ipam).await.expect("ipam").uuid
}

#[tokio::test]
async fn homepage_links_and_default_objects() {
    let (server, c) = start().await;
    let home = c.homepage().await.expect("home");
    let links = home["links"].as_array().expect("links");
    let has = |rel: &str, name: &str| {
        links
            .iter()
            .any(|l| l["link"]["rel"] == rel && l["link"]["name"] == name)
    };
    assert!(has("collection", "virtual-network"));
    assert!(has("resource-base", "firewall-rule"));
    assert!(has("action", "name-to-id"));
    assert!(has("action", "id-to-name"));
    assert!(has("action", "set-tag"));
    assert_eq!(home["href"], json!(server.url()));
    for (t, fq) in [
        ("domain", s(&["default-domain"])),
        ("project", s(&["default-domain", "default-project"])),
        (
            "virtual-network",
            s(&["default-domain", "default-project", "ip-fabric"]),
        ),
        (
            "virtual-network",
            s(&["default-domain", "default-project", "__link_local__"]),
        ),
        ("global-system-config", s(&["default-global-system-config"])),
        (
            "global-vrouter-config",
            s(&[
                "default-global-system-config",
                "default-global-vrouter-config",
            ]),
        ),
        ("policy-management", s(&["default-policy-management"])),
        (
            "application-policy-set",
            s(&[
                "default-policy-management",
                "default-application-policy-set",
            ]),
        ),
        (
            "network-ipam",
            s(&["default-domain", "default-project", "default-network-ipam"]),
        ),
        ("tag-type", s(&["application"])),
    ] {
        c.fqname_to_id(t, &fq)
            .await
            .unwrap_or_else(|e| panic!("{t} {fq:?}: {e}"));
    }
    let ipf = c
        .read_by_fq_name(
            "virtual-network",
            &s(&["default-domain", "default-project", "ip-fabric"]),
        )
        .await
        .expect("ip-fabric");
    assert_eq!(ipf.prop::<bool>("is_provider_network"), Some(true));
    let err = c
        .delete("virtual-network", &ipf.uuid)
        .await
        .expect_err("system VN");
    assert_eq!(status(&err), 409, "{err}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn crud_status_codes_and_server_filled_fields() {
    let (server, c) = start().await;
    let p = project(&c, "k8s-default").await;
    let ipam = flat_ipam(&c, "k8s-default", "k8s-pod-ipam").await;
    let vn = VirtualNetwork {
        fq_name: s(&["default-domain", "k8s-default", "k8s-default-pod-network"]),
        address_allocation_mode: Some("flat-subnet-only".into()),
        network_ipam_refs: vec![harness_contrail_vnc::types::TypedRef::new(
            s(&["default-domain", "k8s-default", "k8s-pod-ipam"]),
            VnSubnetsType::default(),
        )],
        ..VirtualNetwork::default()
    };
    let created = c.create_typed(&vn).await.expect("vn");
    let back: VirtualNetwork = c.read_typed(&created.uuid).await.expect("read");
    assert_eq!(back.network_ipam_refs[0].uuid, ipam);
    let attr = back.network_ipam_refs[0].attr.clone().expect("attr");
    assert_eq!(
        attr.ipam_subnets.len(),
        1,
        "flat subnet ref gets a subnet uuid"
    );
    assert!(attr.ipam_subnets[0].subnet_uuid.is_some());
    assert!(back.perms2.is_some(), "perms2.share is returned");
    assert!(back.virtual_network_network_id.is_some());
    assert_eq!(
        back.display_name.as_deref(),
        Some("k8s-default-pod-network")
    );
    let raw = c.read("virtual-network", &created.uuid).await.expect("raw");
    assert_eq!(raw.parent_uuid.as_deref(), Some(p.as_str()));
    assert!(raw.fields["id_perms"]["created"].is_string());
    // Back-refs and children maintained.
    let ipam_obj = c.read("network-ipam", &ipam).await.expect("ipam");
    assert_eq!(
        ipam_obj.back_refs_of("virtual_network_back_refs")[0].uuid,
        created.uuid
    );
    let proj = c.read("project", &p).await.expect("project");
    assert_eq!(proj.children_of("virtual_networks").len(), 1);
    let slim = c
        .read_with(
            "project",
            &p,
            &ReadParams {
                exclude_children: true,
                exclude_back_refs: true,
                ..Default::default()
            },
        )
        .await
        .expect("slim");
    assert!(slim.children.is_empty());

    // 409: same fq_name; same uuid.
    let e = c.create_typed(&vn).await.expect_err("dup");
    assert_eq!(status(&e), 409, "{e}");
    let mut same_uuid = VncObject::new("project", s(&["default-domain", "other"]));
    same_uuid.uuid = p.clone();
    assert_eq!(
        status(&c.create(&same_uuid).await.expect_err("uuid taken")),
        409
    );
    // 400: parent missing; bad uuid; bad enum.
    let orphan = VncObject::new("virtual-network", s(&["default-domain", "nope", "vn"]));
    let e = c.create(&orphan).await.expect_err("orphan");
    assert_eq!(status(&e), 400, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let mut bad_uuid = VncObject::new("project", s(&["default-domain", "x1"]));
    bad_uuid.uuid = "not-a-uuid".into();
    assert_eq!(
        status(&c.create(&bad_uuid).await.expect_err("bad uuid")),
        400
    );
    let bad_enum = VncObject::new(
        "virtual-network",
        s(&["default-domain", "k8s-default", "e"]),
    )
    .with_prop("address_allocation_mode", "sometimes");
    assert_eq!(status(&c.create(&bad_enum).await.expect_err("enum")), 400);
    // 404: reference target missing (by name and by uuid).
    let dangling = VncObject::new(
        "virtual-network",
        s(&["default-domain", "k8s-default", "d"]),
    )
    .with_ref(
        "network_ipam_refs",
        Ref::by_name(s(&["default-domain", "k8s-default", "ghost"])),
    );
    assert_eq!(status(&c.create(&dangling).await.expect_err("ghost")), 404);
    let dangling = VncObject::new(
        "virtual-network",
        s(&["default-domain", "k8s-default", "d"]),
    )
    .with_ref(
        "network_ipam_refs",
        Ref::new(vec![], "6b1a7a64-0000-4000-8000-000000000000"),
    );
    assert_eq!(
        status(&c.create(&dangling).await.expect_err("ghost uuid")),
        404
    );
    // 404: read of a missing object, of an object through the wrong type, unknown type.
    let e = c
        .read("virtual-network", "6b1a7a64-0000-4000-8000-000000000000")
        .await
        .expect_err("x");
    assert_eq!(status(&e), 404);
    assert_eq!(
        status(
            &c.read("network-ipam", &created.uuid)
                .await
                .expect_err("type")
        ),
        404
    );
    let (code, _) = c
        .raw(Method::GET, "/bogus-things", None)
        .await
        .expect("raw");
    assert_eq!(code, 404);
    let (code, _) = c
        .raw(
            Method::POST,
            "/bogus-things",
            Some(Bytes::from_static(b"{}")),
        )
        .await
        .expect("raw");
    assert_eq!(code, 404);

    // Update: unknown field 400, perms2 without owner 400, property change visible.
    let e = c
        .update_fields(
            "virtual-network",
            &created.uuid,
            json!({"fabric_snatt": true}),
        )
        .await
        .expect_err("unknown field");
    assert_eq!(status(&e), 400);
    let e = c
        .update_fields(
            "virtual-network",
            &created.uuid,
            json!({"perms2": {"global_access": 5}}),
        )
        .await
        .expect_err("perms2");
    assert_eq!(status(&e), 400);
    c.update_fields(
        "virtual-network",
        &created.uuid,
        json!({"fabric_snat": true}),
    )
    .await
    .expect("update");
    let back: VirtualNetwork = c.read_typed(&created.uuid).await.expect("read");
    assert_eq!(back.fabric_snat, Some(true));

    // Delete: referenced ipam 409, project with children 409, then in order.
    assert_eq!(
        status(&c.delete("network-ipam", &ipam).await.expect_err("in use")),
        409
    );
    assert_eq!(
        status(&c.delete("project", &p).await.expect_err("children")),
        409
    );
    c.delete("virtual-network", &created.uuid)
        .await
        .expect("vn delete");
    c.delete("network-ipam", &ipam).await.expect("ipam delete");
    c.delete("project", &p).await.expect("project delete");
    assert_eq!(
        status(&c.delete("project", &p).await.expect_err("gone")),
        404
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn malformed_bodies_are_400_not_panics() {
    let (server, c) = start().await;
    for (method, path, body) in [
        (Method::POST, "/virtual-networks", "{not json"),
        (Method::POST, "/virtual-networks", "[1,2,3]"),
        (
            Method::POST,
            "/virtual-networks",
            "{\"virtual-network\": 7}",
        ),
        (
            Method::POST,
            "/virtual-networks",
            "{\"virtual-network\": {\"fq_name\": \"x\"}}",
        ),
        (
            Method::POST,
            "/virtual-networks",
            "{\"virtual-network\": {\"fq_name\": []}}",
        ),
        (Method::POST, "/virtual-networks", ""),
        (
            Method::POST,
            "/projects",
            "{\"project\": {\"fq_name\": [\"default-domain\", \"a:b\"]}}",
        ),
        (Method::POST, "/fqname-to-id", "{\"type\": \"project\"}"),
        (Method::POST, "/ref-update", "{\"type\": \"project\"}"),
        (Method::POST, "/set-tag", "{}"),
        (Method::POST, "/id-to-fqname", "3"),
        (Method::GET, "/virtual-networks?filters=nonsense", ""),
    ] {
        let (code, body) = c
            .raw(method.clone(), path, Some(Bytes::from(body)))
            .await
            .expect("raw");
        assert_eq!(
            code,
            400,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn list_parameters() {
    let (server, c) = start().await;
    let p1 = project(&c, "p1").await;
    let p2 = project(&c, "p2").await;
    let ipam = flat_ipam(&c, "p1", "ipam").await;
    let mut vns = Vec::new();
    for (proj, name, with_ipam) in [("p1", "a", true), ("p1", "b", false), ("p2", "c", true)] {
        let mut vn = VncObject::new("virtual-network", s(&["default-domain", proj, name]))
            .with_prop("display_name", format!("net-{name}"));
        if with_ipam {
            vn.add_ref(
                "network_ipam_refs",
                Ref::new(s(&["default-domain", "p1", "ipam"]), &ipam),
            );
        }
        vns.push(c.create(&vn).await.expect("vn").uuid);
    }
    let all = c
        .list("virtual-network", &ListParams::default())
        .await
        .expect("list");
    assert!(all.len() >= 3 + 4, "defaults + created: {}", all.len());
    assert!(all.iter().all(|o| o.fields.is_empty()), "stubs only");
    let by_parent = c
        .list(
            "virtual-network",
            &ListParams {
                parent_id: vec![p1.clone()],
                ..Default::default()
            },
        )
        .await
        .expect("parent");
    assert_eq!(
        by_parent.iter().map(|o| o.uuid.clone()).collect::<Vec<_>>(),
        vns[..2].to_vec()
    );
    let by_parent_name = c
        .list(
            "virtual-network",
            &ListParams {
                parent_fq_name: Some(s(&["default-domain", "p2"])),
                ..Default::default()
            },
        )
        .await
        .expect("parent name");
    assert_eq!(by_parent_name.len(), 1);
    let by_backref = c
        .list(
            "virtual-network",
            &ListParams {
                back_ref_id: vec![ipam.clone()],
                ..Default::default()
            },
        )
        .await
        .expect("back_ref_id");
    assert_eq!(by_backref.len(), 2);
    let by_uuid = c
        .list(
            "virtual-network",
            &ListParams {
                obj_uuids: vec![vns[1].clone()],
                detail: true,
                ..Default::default()
            },
        )
        .await
        .expect("obj_uuids");
    assert_eq!(by_uuid.len(), 1);
    assert_eq!(
        by_uuid[0].prop::<String>("display_name").as_deref(),
        Some("net-b")
    );
    let with_fields = c
        .list(
            "virtual-network",
            &ListParams {
                parent_id: vec![p1.clone(), p2.clone()],
                fields: vec!["display_name".into(), "network_ipam_refs".into()],
                ..Default::default()
            },
        )
        .await
        .expect("fields");
    assert_eq!(with_fields.len(), 3);
    assert!(
        with_fields
            .iter()
            .all(|o| o.fields.contains_key("display_name"))
    );
    assert_eq!(with_fields[0].refs_of("network_ipam_refs").len(), 1);
    let filtered = c
        .list(
            "virtual-network",
            &ListParams {
                filters: vec![("display_name".into(), json!("net-c"))],
                ..Default::default()
            },
        )
        .await
        .expect("filters");
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].uuid, vns[2]);
    let ipams = c
        .list(
            "network-ipam",
            &ListParams {
                obj_uuids: vec![ipam.clone()],
                detail: true,
                fields: vec!["virtual_network_back_refs".into()],
                ..Default::default()
            },
        )
        .await
        .expect("detail + back-ref field");
    assert_eq!(ipams[0].back_refs_of("virtual_network_back_refs").len(), 2);
    let n = c
        .count(
            "virtual-network",
            &ListParams {
                parent_id: vec![p1.clone()],
                ..Default::default()
            },
        )
        .await
        .expect("count");
    assert_eq!(n, 2);
    let none = c
        .list(
            "virtual-network",
            &ListParams {
                parent_fq_name: Some(s(&["default-domain", "ghost"])),
                ..Default::default()
            },
        )
        .await
        .expect("no parent");
    assert!(none.is_empty());
    let e = c
        .list("no-such-type", &ListParams::default())
        .await
        .expect_err("type");
    assert_eq!(status(&e), 404);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn fqname_and_id_lookups() {
    let (server, c) = start().await;
    let p = project(&c, "lookup").await;
    assert_eq!(
        c.fqname_to_id("project", &s(&["default-domain", "lookup"]))
            .await
            .expect("id"),
        p
    );
    let (t, fq) = c.id_to_fqname(&p).await.expect("fq");
    assert_eq!(t, "project");
    assert_eq!(fq, s(&["default-domain", "lookup"]));
    let e = c
        .fqname_to_id("project", &s(&["default-domain", "nope"]))
        .await
        .expect_err("x");
    assert_eq!(status(&e), 404);
    assert!(e.to_string().contains("['default-domain', 'nope']"), "{e}");
    let e = c.fqname_to_id("bogus", &s(&["x"])).await.expect_err("x");
    assert_eq!(status(&e), 404);
    let e = c
        .id_to_fqname("6b1a7a64-0000-4000-8000-000000000000")
        .await
        .expect_err("x");
    assert_eq!(status(&e), 404);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn ref_update_and_relax_for_delete() {
    let (server, c) = start().await;
    project(&c, "k8s-default").await;
    let vn = c
        .create(&VncObject::new(
            "virtual-network",
            s(&["default-domain", "k8s-default", "pods"]),
        ))
        .await
        .expect("vn")
        .uuid;
    let np = c
        .create(&VncObject::new(
            "network-policy",
            s(&["default-domain", "k8s-default", "np"]),
        ))
        .await
        .expect("np")
        .uuid;
    let add = |attr: Value| RefUpdate {
        type_name: "virtual-network".into(),
        uuid: vn.clone(),
        ref_type: "network-policy".into(),
        ref_uuid: Some(np.clone()),
        ref_fq_name: None,
        operation: RefOperation::Add,
        attr: Some(attr),
    };
    c.ref_update(&add(json!({"sequence": {"major": 0, "minor": 0}})))
        .await
        .expect("add");
    c.ref_update(&add(json!({"sequence": {"major": 1, "minor": 0}})))
        .await
        .expect("re-attr");
    let got: VirtualNetwork = c.read_typed(&vn).await.expect("read");
    assert_eq!(got.network_policy_refs.len(), 1);
    let seq = got.network_policy_refs[0]
        .attr
        .clone()
        .and_then(|a| a.sequence)
        .expect("seq");
    assert_eq!(seq.major, 1);
    // Bad attr field → 400; missing target → 404; bad op → 400; no such ref field → 400.
    assert_eq!(
        status(
            &c.ref_update(&add(json!({"sequenc": 1})))
                .await
                .expect_err("attr")
        ),
        400
    );
    let mut ghost = add(Value::Null);
    ghost.ref_uuid = Some("6b1a7a64-0000-4000-8000-000000000000".into());
    assert_eq!(status(&c.ref_update(&ghost).await.expect_err("ghost")), 404);
    let (code, _) = c
        .raw(
            Method::POST,
            "/ref-update",
            Some(Bytes::from(
                json!({"type": "virtual-network", "uuid": vn, "ref-type": "network-policy",
                       "ref-uuid": np, "operation": "SWAP"})
                .to_string(),
            )),
        )
        .await
        .expect("raw");
    assert_eq!(code, 400);
    let mut wrong = add(Value::Null);
    wrong.ref_type = "loadbalancer".into();
    wrong.ref_uuid = Some(vn.clone());
    assert_eq!(
        status(&c.ref_update(&wrong).await.expect_err("no such ref")),
        400
    );
    // Referenced policy cannot be deleted until the reference is relaxed.
    let e = c.delete("network-policy", &np).await.expect_err("referred");
    assert_eq!(status(&e), 409);
    assert!(e.to_string().contains("still referred"), "{e}");
    c.ref_relax_for_delete(&vn, &np).await.expect("relax");
    c.delete("network-policy", &np)
        .await
        .expect("delete after relax");
    let got: VirtualNetwork = c.read_typed(&vn).await.expect("read");
    assert!(
        got.network_policy_refs.is_empty(),
        "relaxed ref dropped with its target"
    );
    assert_eq!(
        status(
            &c.ref_relax_for_delete("6b1a7a64-0000-4000-8000-000000000000", &vn)
                .await
                .expect_err("x")
        ),
        404
    );
    // DELETE by fq_name.
    let np2 = c
        .create(&VncObject::new(
            "network-policy",
            s(&["default-domain", "k8s-default", "np2"]),
        ))
        .await
        .expect("np2")
        .uuid;
    c.add_ref(
        "virtual-network",
        &vn,
        "network-policy",
        &Ref::new(vec![], &np2),
    )
    .await
    .expect("add");
    c.ref_update(&RefUpdate {
        type_name: "virtual-network".into(),
        uuid: vn.clone(),
        ref_type: "network-policy".into(),
        ref_uuid: None,
        ref_fq_name: Some(s(&["default-domain", "k8s-default", "np2"])),
        operation: RefOperation::Delete,
        attr: None,
    })
    .await
    .expect("delete ref");
    c.delete("network-policy", &np2)
        .await
        .expect("unreferenced");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn tags_ids_and_set_tag() {
    let (server, c) = start().await;
    project(&c, "k8s-default").await;
    let vn = c
        .create(&VncObject::new(
            "virtual-network",
            s(&["default-domain", "k8s-default", "pods"]),
        ))
        .await
        .expect("vn")
        .uuid;
    // Type lower-cased, name forced, custom type ids from 0x00ff, values from 0.
    let web = c
        .create_typed(&Tag::global("App", "web"))
        .await
        .expect("tag");
    assert_eq!(web.fq_name, s(&["app=web"]));
    let web_tag: Tag = c.read_typed(&web.uuid).await.expect("read");
    assert_eq!(web_tag.tag_type_name.as_deref(), Some("app"));
    assert_eq!(web_tag.tag_id.as_deref(), Some("0x00ff0000"));
    assert_eq!(web_tag.tag_type_refs[0].to, s(&["app"]));
    let db_tag: Tag = c
        .read_typed(
            &c.create_typed(&Tag::global("app", "db"))
                .await
                .expect("tag")
                .uuid,
        )
        .await
        .expect("read");
    assert_eq!(db_tag.tag_id.as_deref(), Some("0x00ff0001"));
    let ns_tag: Tag = c
        .read_typed(
            &c.create_typed(&Tag::global("namespace", "default"))
                .await
                .expect("t")
                .uuid,
        )
        .await
        .expect("read");
    assert_eq!(ns_tag.tag_id.as_deref(), Some("0x01000000"));
    let k8s: Tag = c
        .read_typed(
            &c.create_typed(&Tag::global("application", "k8s"))
                .await
                .expect("t")
                .uuid,
        )
        .await
        .expect("read");
    assert_eq!(k8s.tag_id.as_deref(), Some("0x00010000"));
    c.create_typed(&Tag::global("application", "other"))
        .await
        .expect("t");
    assert_eq!(
        status(
            &c.create_typed(&Tag::global("APP", "web"))
                .await
                .expect_err("dup")
        ),
        409
    );
    let no_value = VncObject::new("tag", s(&["x"])).with_prop("tag_type_name", "a");
    assert_eq!(
        status(&c.create(&no_value).await.expect_err("no value")),
        400
    );
    let set_id = VncObject::new("tag", s(&["x"]))
        .with_prop("tag_type_name", "a")
        .with_prop("tag_value", "b")
        .with_prop("tag_id", "0x00000001");
    assert_eq!(status(&c.create(&set_id).await.expect_err("tag id")), 400);
    let e = c
        .update_fields("tag", &web.uuid, json!({"tag_value": "other"}))
        .await
        .expect_err("immutable");
    assert_eq!(status(&e), 400);

    // set-tag: one value per type, replacing; labels multi-valued; unset.
    c.set_tag("virtual-network", &vn, "application", "k8s", true)
        .await
        .expect("set");
    c.set_tag("virtual-network", &vn, "application", "other", true)
        .await
        .expect("replace");
    let got: VirtualNetwork = c.read_typed(&vn).await.expect("vn");
    assert_eq!(got.tag_refs.len(), 1);
    assert_eq!(got.tag_refs[0].to, s(&["application=other"]));
    c.create_typed(&Tag::global("label", "blue"))
        .await
        .expect("t");
    c.create_typed(&Tag::global("label", "red"))
        .await
        .expect("t");
    c.set_tags(
        "virtual-network",
        &vn,
        &[(
            "label".into(),
            TagChange::Values {
                add: s(&["blue", "red"]),
                delete: vec![],
                is_global: true,
            },
        )],
    )
    .await
    .expect("labels");
    let got: VirtualNetwork = c.read_typed(&vn).await.expect("vn");
    assert_eq!(got.tag_refs.len(), 3);
    let e = c
        .set_tags(
            "virtual-network",
            &vn,
            &[(
                "application".into(),
                TagChange::Values {
                    add: s(&["a", "b"]),
                    delete: vec![],
                    is_global: true,
                },
            )],
        )
        .await
        .expect_err("single valued");
    assert_eq!(status(&e), 400);
    c.set_tags(
        "virtual-network",
        &vn,
        &[("label".into(), TagChange::Unset)],
    )
    .await
    .expect("unset");
    let got: VirtualNetwork = c.read_typed(&vn).await.expect("vn");
    assert_eq!(got.tag_refs.len(), 1);
    let e = c
        .set_tag("virtual-network", &vn, "tier", "missing", true)
        .await
        .expect_err("no tag");
    assert_eq!(status(&e), 404);
    // Tagged objects keep the tag alive.
    let other = c
        .fqname_to_id("tag", &s(&["application=other"]))
        .await
        .expect("id");
    assert_eq!(
        status(&c.delete("tag", &other).await.expect_err("in use")),
        409
    );
    // Deleting the last tag of a custom type removes the type; predefined types stay.
    c.delete("tag", &web.uuid).await.expect("web");
    c.delete("tag", &db_tag.uuid).await.expect("db");
    assert_eq!(
        status(
            &c.fqname_to_id("tag-type", &s(&["app"]))
                .await
                .expect_err("gone")
        ),
        404
    );
    c.delete("tag", &k8s.uuid).await.expect("k8s");
    c.fqname_to_id("tag-type", &s(&["application"]))
        .await
        .expect("predefined stays");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn firewall_rule_derivations() {
    let (server, c) = start().await;
    c.create_typed(&Tag::global("role", "db"))
        .await
        .expect("tag");
    c.create_typed(&Tag::global("namespace", "default"))
        .await
        .expect("tag");
    let ag = VncObject::new(
        "address-group",
        s(&["default-policy-management", "172.17.0.0/16"]),
    )
    .with_parent_type("policy-management")
    .with_prop(
        "address_group_prefix",
        json!({"subnet": [{"ip_prefix": "172.17.0.0", "ip_prefix_len": "16"}]}),
    );
    let ag_uuid = c.create(&ag).await.expect("ag").uuid;
    let ag_back = c.read("address-group", &ag_uuid).await.expect("ag");
    assert_eq!(
        ag_back.fields["address_group_prefix"]["subnet"][0]["ip_prefix_len"],
        json!(16)
    );
    let rule = FirewallRule {
        fq_name: s(&[
            "default-policy-management",
            "default-ingress-np-0-podSelector-0-0",
        ]),
        parent_type: Some("policy-management".into()),
        direction: Some(">".into()),
        service: Some(FirewallServiceType {
            protocol: Some("tcp".into()),
            dst_ports: Some(PortType {
                start_port: 6379,
                end_port: 6379,
            }),
            ..Default::default()
        }),
        endpoint_1: Some(FirewallRuleEndpointType {
            address_group: Some("default-policy-management:172.17.0.0/16".into()),
            ..Default::default()
        }),
        endpoint_2: Some(FirewallRuleEndpointType {
            tags: s(&["role=db", "namespace=default"]),
            ..Default::default()
        }),
        action_list: Some(harness_contrail_vnc::types::ActionListType {
            simple_action: Some("pass".into()),
            ..Default::default()
        }),
        ..FirewallRule::default()
    };
    let fr = c.create_typed(&rule).await.expect("rule");
    let got: FirewallRule = c.read_typed(&fr.uuid).await.expect("read");
    assert_eq!(got.match_tag_types.map(|m| m.tag_type), Some(vec![1]));
    assert_eq!(got.service.and_then(|s| s.protocol_id), Some(6));
    assert_eq!(got.endpoint_2.expect("ep2").tag_ids.len(), 2);
    assert_eq!(got.tag_refs.len(), 2);
    assert_eq!(got.address_group_refs[0].uuid, ag_uuid);
    // Ports as strings (kube-manager's defaults) are stored as numbers.
    let mut raw_rule = rule.to_object().expect("obj");
    raw_rule.fq_name = s(&["default-policy-management", "strings"]);
    raw_rule.set_prop(
        "service",
        json!({"protocol": "any", "dst_ports": {"start_port": "0", "end_port": "65535"}}),
    );
    let id = c.create(&raw_rule).await.expect("string ports").uuid;
    let back = c.read("firewall-rule", &id).await.expect("read");
    assert_eq!(
        back.fields["service"]["dst_ports"]["end_port"],
        json!(65535)
    );
    // Missing tag → 404 (exact case), missing address group → 404, two selectors → 400,
    // no service → 400, direct tag_refs → 400.
    let mut bad = rule.clone();
    bad.fq_name = s(&["default-policy-management", "bad"]);
    bad.endpoint_2 = Some(FirewallRuleEndpointType {
        tags: s(&["Role=db"]),
        ..Default::default()
    });
    assert_eq!(status(&c.create_typed(&bad).await.expect_err("case")), 404);
    bad.endpoint_2 = Some(FirewallRuleEndpointType {
        address_group: Some("default-policy-management:nope".into()),
        ..Default::default()
    });
    assert_eq!(status(&c.create_typed(&bad).await.expect_err("ag")), 404);
    bad.endpoint_2 = Some(FirewallRuleEndpointType {
        tags: s(&["role=db"]),
        any: Some(true),
        ..Default::default()
    });
    assert_eq!(status(&c.create_typed(&bad).await.expect_err("two")), 400);
    bad.endpoint_2 = None;
    bad.service = None;
    assert_eq!(
        status(&c.create_typed(&bad).await.expect_err("service")),
        400
    );
    // The rule keeps its tags and address group alive.
    let role = c.fqname_to_id("tag", &s(&["role=db"])).await.expect("tag");
    assert_eq!(
        status(&c.delete("tag", &role).await.expect_err("in use")),
        409
    );
    assert_eq!(
        status(
            &c.delete("address-group", &ag_uuid)
                .await
                .expect_err("in use")
        ),
        409
    );
    // Updating the endpoints re-derives the refs.
    c.update_fields(
        "firewall-rule",
        &fr.uuid,
        json!({"endpoint_2": {"any": true}}),
    )
    .await
    .expect("update");
    let got: FirewallRule = c.read_typed(&fr.uuid).await.expect("read");
    assert!(got.tag_refs.is_empty());
    c.delete("firewall-rule", &id).await.expect("del");
    c.delete("tag", &role).await.expect("now free");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn prop_collections_and_annotations() {
    let (server, c) = start().await;
    let p = project(&c, "annot").await;
    let body = json!({"uuid": p, "updates": [
        {"field": "annotations", "operation": "set", "value": {"key": "k8s_uuid", "value": "1"}, "position": "k8s_uuid"},
        {"field": "annotations", "operation": "set", "value": {"key": "isolated", "value": "false"}, "position": "isolated"}
    ]});
    let (code, msg) = c
        .raw(
            Method::POST,
            "/prop-collection-update",
            Some(Bytes::from(body.to_string())),
        )
        .await
        .expect("raw");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&msg));
    let got = c.read("project", &p).await.expect("read");
    assert_eq!(
        got.fields["annotations"]["key_value_pair"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let (code, body) = c
        .raw(
            Method::GET,
            &format!("/prop-collection-get?uuid={p}&fields=annotations"),
            None,
        )
        .await
        .expect("raw");
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["annotations"].as_array().map(Vec::len), Some(2));
    let bad = json!({"uuid": p, "updates": [{"field": "display_name", "operation": "set", "value": "x"}]});
    let (code, _) = c
        .raw(
            Method::POST,
            "/prop-collection-update",
            Some(Bytes::from(bad.to_string())),
        )
        .await
        .expect("raw");
    assert_eq!(code, 400);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn change_stream_in_process_and_over_sse() {
    let db = ConfigDb::new();
    let start_seq = db.current_seq();
    let mut sub = db.subscribe(None).expect("subscribe");
    let (server, c) = start_with(db.clone(), ServerConfig::default()).await;
    let p = project(&c, "watched").await;
    let ch = sub.next().await.expect("change");
    assert_eq!(ch.uuid, p);
    assert_eq!(ch.seq, start_seq + 1);
    assert_eq!(ch.kind, harness_contrail_mock::ChangeKind::Create);
    // Backlog from an older sequence.
    let mut again = db.subscribe(Some(start_seq)).expect("again");
    assert_eq!(again.next().await.expect("backlog").uuid, p);

    // Over HTTP: SSE from the sequence before the project, filtered by type.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let req = format!(
        "GET /watch?since={start_seq}&resource_type=project HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    c.update_fields("project", &p, json!({"display_name": "renamed"}))
        .await
        .expect("update");
    c.delete("project", &p).await.expect("delete");
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !got.contains("event: delete") {
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("events in time")
            .expect("read");
        assert!(n > 0, "stream closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("text/event-stream"), "{got}");
    assert!(got.contains("event: init"), "{got}");
    assert!(got.contains("event: create"), "{got}");
    assert!(got.contains("event: update"), "{got}");
    assert!(got.contains(&p), "{got}");
    let (code, _) = c
        .raw(Method::GET, "/watch?since=abc", None)
        .await
        .expect("raw");
    assert_eq!(code, 400);
    let (code, _) = c
        .raw(Method::GET, "/watch?resource_type=bogus", None)
        .await
        .expect("raw");
    assert_eq!(code, 404);
    // Shutdown ends open streams.
    tokio::time::timeout(std::time::Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
}

#[tokio::test]
async fn restart_keeps_the_database_and_only_loopback_is_served() {
    let db = ConfigDb::new();
    let (server, c) = start_with(db.clone(), ServerConfig::default()).await;
    let p = project(&c, "persist").await;
    server.shutdown().await.expect("shutdown");
    let (server, c) = start_with(db, ServerConfig::default()).await;
    c.read("project", &p).await.expect("still there");
    server.shutdown().await.expect("shutdown");
    let err = serve(
        "0.0.0.0:0".parse().expect("addr"),
        ConfigDb::new(),
        ServerConfig::default(),
    )
    .await
    .expect_err("non-loopback");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn in_process_writer_and_http_see_the_same_objects() {
    let db = ConfigDb::new();
    let (server, c) = start_with(db.clone(), ServerConfig::default()).await;
    let obj = db
        .create(&VncObject::new("project", s(&["default-domain", "inproc"])))
        .expect("create");
    let via_http = c.read("project", &obj.uuid).await.expect("http read");
    assert_eq!(via_http.fq_name, obj.fq_name);
    let typed: harness_contrail_vnc::types::Project = db.read_typed(&obj.uuid).expect("typed");
    assert_eq!(typed.fq_name, obj.fq_name);
    assert_eq!(db.delete("project", &obj.uuid), Ok(()));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn rbac_allow_and_deny() {
    let config = ServerConfig {
        auth: AuthConfig::rbac().with_token("admin-token", Identity::new("admin", &["admin"])),
    };
    let (server, _) = start_with(ConfigDb::new(), config).await;
    let admin =
        VncClient::new(&server.url(), Auth::KeystoneToken("admin-token".into())).expect("c");
    let p = project(&admin, "k8s-team").await;
    // Project api-access-list: members may read and create networks, nothing else.
    let acl = VncObject::new("api-access-list", s(&["default-domain", "k8s-team", "acl"]))
        .with_parent_type("project")
        .with_prop(
            "api_access_list_entries",
            json!({"rbac_rule": [
                {"rule_object": "virtual-network", "rule_field": null,
                 "rule_perms": [{"role_name": "Member", "role_crud": "CR"}]},
                {"rule_object": "virtual-network", "rule_field": "fabric_snat",
                 "rule_perms": [{"role_name": "netadmin", "role_crud": "CRU"}]}
            ]}),
        );
    admin.create(&acl).await.expect("acl");
    let member = VncClient::new(&server.url(), Auth::None)
        .expect("c")
        .with_header("X-User", "alice")
        .expect("h")
        .with_header("X-Role", "Member")
        .expect("h")
        .with_header("X-Project-Id", &p.replace('-', ""))
        .expect("h");
    // Discovery and name lookups are open.
    member.homepage().await.expect("homepage");
    member
        .fqname_to_id("project", &s(&["default-domain", "k8s-team"]))
        .await
        .expect("fqname-to-id via default global rule");
    let vn = member
        .create(&VncObject::new(
            "virtual-network",
            s(&["default-domain", "k8s-team", "net"]),
        ))
        .await
        .expect("member creates a network")
        .uuid;
    member
        .read("virtual-network", &vn)
        .await
        .expect("member reads");
    let e = member
        .delete("virtual-network", &vn)
        .await
        .expect_err("no D");
    assert_eq!(status(&e), 403, "{e}");
    assert!(e.to_string().contains("Permission Denied"), "{e}");
    let e = member
        .create(&VncObject::new(
            "network-policy",
            s(&["default-domain", "k8s-team", "np"]),
        ))
        .await
        .expect_err("no rule for network-policy");
    assert_eq!(status(&e), 403);
    // Field rule: fabric_snat needs netadmin.
    let snat = VncObject::new(
        "virtual-network",
        s(&["default-domain", "k8s-team", "snat"]),
    )
    .with_prop("fabric_snat", true);
    assert_eq!(
        status(&member.create(&snat).await.expect_err("field rule")),
        403
    );
    let netadmin = VncClient::new(&server.url(), Auth::None)
        .expect("c")
        .with_header("X-Role", "Member,netadmin")
        .expect("h")
        .with_header("X-Project-Id", &p)
        .expect("h");
    netadmin
        .create(&snat)
        .await
        .expect("netadmin may set fabric_snat");
    // Unknown token 401, no roles 401, admin bypass.
    let stranger = VncClient::new(&server.url(), Auth::KeystoneToken("nope".into())).expect("c");
    assert_eq!(
        status(
            &stranger
                .read("virtual-network", &vn)
                .await
                .expect_err("401")
        ),
        401
    );
    let anonymous = VncClient::new(&server.url(), Auth::None).expect("c");
    assert_eq!(
        status(
            &anonymous
                .read("virtual-network", &vn)
                .await
                .expect_err("401")
        ),
        401
    );
    admin
        .delete("virtual-network", &vn)
        .await
        .expect("admin deletes");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn instance_and_floating_ip_allocation() {
    let (server, c) = start().await;
    project(&c, "k8s-default").await;
    flat_ipam(&c, "k8s-default", "k8s-pod-ipam").await;
    let vn = VncObject::new(
        "virtual-network",
        s(&["default-domain", "k8s-default", "pods"]),
    )
    .with_ref(
        "network_ipam_refs",
        Ref::by_name(s(&["default-domain", "k8s-default", "k8s-pod-ipam"]))
            .with_attr(json!({"ipam_subnets": []})),
    );
    let vn = c.create(&vn).await.expect("vn");
    let vn_obj: VirtualNetwork = c.read_typed(&vn.uuid).await.expect("read");
    let subnet_uuid = vn_obj.network_ipam_refs[0]
        .attr
        .clone()
        .and_then(|a| a.ipam_subnets.first().and_then(|s| s.subnet_uuid.clone()))
        .expect("subnet uuid");
    let iip = |name: &str| {
        VncObject::new("instance-ip", s(&[name]))
            .with_ref("virtual_network_refs", Ref::new(vec![], &vn.uuid))
    };
    let a = c
        .create(&iip("pod-a").with_prop("subnet_uuid", &subnet_uuid))
        .await
        .expect("iip a");
    let a = c.read("instance-ip", &a.uuid).await.expect("read");
    assert_eq!(
        a.prop::<String>("instance_ip_address").as_deref(),
        Some("10.47.255.254")
    );
    let b = c.create(&iip("pod-b")).await.expect("iip b");
    let b = c.read("instance-ip", &b.uuid).await.expect("read");
    assert_eq!(
        b.prop::<String>("instance_ip_address").as_deref(),
        Some("10.47.255.253")
    );
    assert_eq!(
        b.prop::<String>("subnet_uuid").as_deref(),
        Some(subnet_uuid.as_str())
    );
    let dup = iip("svc").with_prop("instance_ip_address", "10.47.255.254");
    assert_eq!(status(&c.create(&dup).await.expect_err("in use")), 409);
    c.delete("instance-ip", &a.uuid).await.expect("delete");
    c.create(&dup).await.expect("address free again");
    // Floating IPs from a pool on a user-defined subnet.
    let ipam = c
        .create(&VncObject::new(
            "network-ipam",
            s(&["default-domain", "k8s-default", "pub"]),
        ))
        .await
        .expect("ipam");
    let public = VncObject::new(
        "virtual-network",
        s(&["default-domain", "k8s-default", "public"]),
    )
    .with_ref(
        "network_ipam_refs",
        Ref::new(vec![], &ipam.uuid).with_attr(json!({"ipam_subnets": [
                {"subnet": {"ip_prefix": "192.0.2.0", "ip_prefix_len": 29}}]})),
    );
    c.create(&public).await.expect("public vn");
    c.create(&VncObject::new(
        "floating-ip-pool",
        s(&["default-domain", "k8s-default", "public", "pool"]),
    ))
    .await
    .expect("pool");
    let fip = VncObject::new(
        "floating-ip",
        s(&["default-domain", "k8s-default", "public", "pool", "f1"]),
    )
    .with_parent_type("floating-ip-pool");
    let f = c.create(&fip).await.expect("fip");
    let f = c.read("floating-ip", &f.uuid).await.expect("read");
    assert_eq!(
        f.prop::<String>("floating_ip_address").as_deref(),
        Some("192.0.2.6")
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_lagging_subscriber_catches_up_from_the_log() {
    let db = ConfigDb::new();
    let start = db.current_seq();
    let mut sub = db.subscribe(None).expect("subscribe");
    // More changes than the live buffer holds (4096), fewer than the log (65,536).
    for i in 0..5000 {
        db.create_json("tag", json!({"fq_name": [format!("lag=v{i}")], "tag_type_name": "lag", "tag_value": format!("v{i}")}))
            .expect("tag");
    }
    let end = db.current_seq();
    let mut last = start;
    while last < end {
        let c = sub.next().await.expect("no gap, no error");
        assert_eq!(c.seq, last + 1, "changes arrive in order without gaps");
        last = c.seq;
    }
}
