//! Property test: random paths, methods, query strings and bodies (raw bytes, random JSON,
//! and schema-shaped objects with random values) never make the server panic or answer 5xx,
//! and the database stays usable.

use std::sync::OnceLock;

use bytes::Bytes;
use harness_contrail_mock::{ConfigDb, RunningServer, ServerConfig, serve};
use harness_contrail_vnc::{Auth, VncClient, schema};
use http::Method;
use proptest::prelude::*;
use serde_json::{Map, Value};

struct Fixture {
    rt: tokio::runtime::Runtime,
    client: VncClient,
    db: ConfigDb,
    _server: RunningServer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let db = ConfigDb::new();
        let server = rt
            .block_on(serve(
                "127.0.0.1:0".parse().expect("addr"),
                db.clone(),
                ServerConfig::default(),
            ))
            .expect("serve");
        let client = VncClient::new(&server.url(), Auth::None).expect("client");
        Fixture {
            rt,
            client,
            db,
            _server: server,
        }
    })
}

fn type_names() -> Vec<String> {
    schema::resources().map(|i| i.name().to_owned()).collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9:=/._-]{0,12}".prop_map(Value::String),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object body using the schema's real field names for `type_name`, with random values.
fn shaped_body(type_name: String) -> impl Strategy<Value = (String, Value)> {
    let info = schema::resource(&type_name).expect("type");
    let mut names: Vec<String> = info
        .schema
        .props
        .iter()
        .map(|p| p.name.to_owned())
        .collect();
    names.extend(info.schema.refs.iter().map(|r| r.field.to_owned()));
    names.extend(["fq_name", "parent_type", "uuid"].map(str::to_owned));
    let names = names;
    let fq = prop_oneof![
        Just(Value::Array(vec![
            Value::String("default-domain".into()),
            Value::String("default-project".into()),
            Value::String("x".into())
        ])),
        prop::collection::vec("[a-z=:-]{1,8}", 0..4)
            .prop_map(|v| Value::Array(v.into_iter().map(Value::String).collect())),
        json_value(),
    ];
    (
        prop::collection::vec((prop::sample::select(names), json_value()), 0..6),
        fq,
    )
        .prop_map(move |(fields, fq)| {
            let mut m: Map<String, Value> = fields.into_iter().collect();
            m.insert("fq_name".into(), fq);
            (type_name.clone(), Value::Object(m))
        })
}

fn path() -> impl Strategy<Value = String> {
    let types = type_names();
    let seg = prop_oneof![
        prop::sample::select(types.clone()),
        prop::sample::select(types).prop_map(|t| format!("{t}s")),
        prop::sample::select(vec![
            "fqname-to-id",
            "id-to-fqname",
            "ref-update",
            "ref-relax-for-delete",
            "set-tag",
            "prop-collection-update",
            "prop-collection-get",
            "list-bulk-collection",
            "chown",
            "chmod",
            "aaa-mode",
            "obj-perms",
            "useragent-kv",
            "watch-nope",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9%._~-]{0,16}",
        Just("6b1a7a64-0000-4000-8000-000000000000".to_owned()),
    ];
    (
        prop::collection::vec(seg, 0..4),
        prop::option::of(
            "[a-z_]{1,10}=[a-zA-Z0-9%,:=\"._-]{0,16}(&[a-z_]{1,10}=[a-zA-Z0-9%,:=._-]{0,10}){0,3}",
        ),
    )
        .prop_map(|(segs, q)| {
            let mut p = format!("/{}", segs.join("/"));
            if let Some(q) = q {
                p = format!("{p}?{q}");
            }
            p
        })
}

fn body() -> impl Strategy<Value = Option<Bytes>> {
    prop_oneof![
        Just(None),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| Some(Bytes::from(b))),
        json_value().prop_map(|v| Some(Bytes::from(v.to_string()))),
        prop::sample::select(type_names())
            .prop_flat_map(shaped_body)
            .prop_map(|(t, v)| Some(Bytes::from(serde_json::json!({ t: v }).to_string()))),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_requests_never_5xx(m in method(), p in path(), b in body()) {
        let f = fixture();
        if p.starts_with("/watch") {
            return Ok(());
        }
        let (code, resp) = match f.rt.block_on(f.client.raw(m.clone(), &p, b)) {
            Ok(r) => r,
            // A URI the HTTP client itself refuses to send is not a server case.
            Err(harness_contrail_vnc::VncError::Config(_)) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{m} {p}: {e}"))),
        };
        prop_assert!(code < 500, "{m} {p} -> {code}: {}", String::from_utf8_lossy(&resp));
    }

    #[test]
    fn random_objects_never_panic_the_db((t, v) in prop::sample::select(type_names()).prop_flat_map(shaped_body)) {
        let f = fixture();
        let created = f.db.create_json(&t, v.clone());
        if let Ok(obj) = created {
            let _ = f.db.update_json(&t, &obj.uuid, v);
            let _ = f.db.delete(&t, &obj.uuid);
        }
        let (code, _) = f.rt.block_on(f.client.raw(Method::GET, "/", None)).expect("transport");
        prop_assert_eq!(code, 200);
    }
}
