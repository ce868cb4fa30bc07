//! The agent reading the VNC API over HTTP: list + `/watch` server-sent events, against the
//! contrail-mock server.

mod common;

use std::net::Ipv4Addr;

use common::{Km, Options, three_nodes};
use harness_contrail_mock::{ServerConfig, serve};
use harness_contrail_vnc::{Auth, VncClient};
use harness_scenario::Protocol;
use harness_vrouter_sim::config::source;
use harness_vrouter_sim::{Dataplane, EndpointRef, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_watch_over_http() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.pod("default", "front", "node-a", &[("role", "frontend")]);
    km.pod("default", "db", "node-b", &[("role", "db")]);
    km.pod("default", "other", "node-c", &[("role", "other")]);
    let server = serve(
        "127.0.0.1:0".parse().expect("addr"),
        km.db.clone(),
        ServerConfig::default(),
    )
    .await
    .expect("serve");
    let client = VncClient::new(&server.url(), Auth::None).expect("client");
    let (snap, mut watch) = source::follow_vnc(&client).await.expect("follow");
    let in_process = source::snapshot_from_db(&km.db);
    assert_eq!(snap.len(), in_process.len());
    let mut dp = Dataplane::from_config(snap, km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let db = dp.endpoint_addresses("default/db")[0];
    let other = EndpointRef::Pod("default/other".into());
    assert!(matches!(
        dp.probe(&other, db, Protocol::Tcp, 80).expect("p").verdict,
        Verdict::Connected { .. }
    ));

    // A NetworkPolicy arrives through the change stream.
    let target = {
        let km = &mut km;
        km.network_policy_ingress(
            "default",
            "db-policy",
            &[("role", "db")],
            &[("role", "frontend")],
            Some(80),
        );
        km.db.current_seq()
    };
    let mut changes = Vec::new();
    while watch.last_seq < target {
        let c = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
            .await
            .expect("change in time")
            .expect("change");
        changes.push(c);
    }
    dp.apply_changes(changes.iter());
    let o = dp.probe(&other, db, Protocol::Tcp, 80).expect("p");
    assert!(
        matches!(&o.verdict, Verdict::Dropped { reason, .. } if reason.contains("denyall")),
        "{:?}",
        o.verdict
    );
    let _ = Ipv4Addr::LOCALHOST;
    server.shutdown().await.expect("shutdown");
}
