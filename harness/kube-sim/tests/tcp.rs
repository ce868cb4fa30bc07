//! Over TCP: pod exec through kube-rs `Api::exec` (WebSocket), restart keeping the store with a
//! kube-rs watcher that survives it, and the loopback-only rule.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use harness_kube_sim::{
    Config, Error, ExecError, ExecFuture, ExecHandler, ExecIo, ExecRequest, KubeSim,
    NO_DATAPLANE_MESSAGE,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, AttachParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tcp_client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

async fn make_pod(sim: &KubeSim) {
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let pod = serde_json::from_value(json!({"metadata": {"name": "probe"}, "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}})).expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
}

/// Echoes the command line, then stdin, to stdout; exits with the number of stdin bytes.
struct Echo;

impl ExecHandler for Echo {
    fn exec(&self, req: ExecRequest, mut io: ExecIo) -> ExecFuture {
        Box::pin(async move {
            let line = format!("{}/{}: {}\n", req.pod, req.container, req.command.join(" "));
            io.stdout
                .write_all(line.as_bytes())
                .await
                .map_err(|e| ExecError(e.to_string()))?;
            let mut input = Vec::new();
            if let Some(stdin) = io.stdin.as_mut() {
                stdin
                    .read_to_end(&mut input)
                    .await
                    .map_err(|e| ExecError(e.to_string()))?;
            }
            io.stdout
                .write_all(&input)
                .await
                .map_err(|e| ExecError(e.to_string()))?;
            io.stderr
                .write_all(b"done\n")
                .await
                .map_err(|e| ExecError(e.to_string()))?;
            Ok(input.len() as i32)
        })
    }
}

#[tokio::test]
async fn exec_routes_to_the_handler() {
    let sim = KubeSim::new(Config::default());
    make_pod(&sim).await;
    let server = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let pods: Api<Pod> = Api::namespaced(tcp_client(&server.url()), "default");

    // Without a dataplane: a clear error on the status channel.
    let mut proc = tokio::time::timeout(
        Duration::from_secs(5),
        pods.exec(
            "probe",
            ["true"],
            &AttachParams::default().stdout(true).stderr(false),
        ),
    )
    .await
    .expect("upgrade in time")
    .expect("exec upgrade");
    let status = tokio::time::timeout(Duration::from_secs(5), proc.take_status().expect("status"))
        .await
        .expect("status in time")
        .expect("a status");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.message.as_deref(), Some(NO_DATAPLANE_MESSAGE));
    tokio::time::timeout(Duration::from_secs(5), proc.join())
        .await
        .expect("join in time")
        .expect("join");

    // With a handler: stdout, stderr, stdin and the exit code flow through.
    sim.set_exec_handler(Arc::new(Echo));
    let mut proc = pods
        .exec(
            "probe",
            ["agent", "probe", "--json"],
            &AttachParams::default()
                .stdin(true)
                .stdout(true)
                .stderr(true),
        )
        .await
        .expect("exec");
    let mut stdin = proc.stdin().expect("stdin");
    stdin.write_all(b"hello").await.expect("write stdin");
    // Shutting the writer down is what signals EOF (the v5 close frame for stdin).
    stdin.shutdown().await.expect("close stdin");
    let mut stdout = proc.stdout().expect("stdout");
    let mut stderr = proc.stderr().expect("stderr");
    let status = proc.take_status().expect("status");
    let mut out = String::new();
    let mut err = String::new();
    let (_, _, status) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err),
            status
        )
    })
    .await
    .unwrap_or_else(|_| panic!("exec output in time; got {out:?} {err:?}"));
    assert_eq!(out, "probe/agent: agent probe --json\nhello");
    assert_eq!(err, "done\n");
    let status = status.expect("status");
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(
        status.details.expect("details").causes.expect("causes")[0]
            .message
            .as_deref(),
        Some("5")
    );

    // Unknown container → 400 before upgrading.
    let Err(e) = pods
        .exec("probe", ["x"], &AttachParams::default().container("nope"))
        .await
    else {
        panic!("an unknown container must be refused");
    };
    assert!(e.to_string().contains("container nope is not valid"), "{e}");
    server.shutdown().await;
}

type Events = futures_util::stream::BoxStream<'static, Result<ConfigMap, watcher::Error>>;

/// Waits (bounded) until the watcher yields the ConfigMap `name`.
async fn next_named(events: &mut Events, name: &str) -> Result<bool, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.next().await {
                Some(Ok(cm)) if cm.name_any() == name => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    })
    .await
}

#[tokio::test]
async fn restart_keeps_the_store_and_watchers_resume() {
    let sim = KubeSim::new(Config::default());
    let server = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let addr = server.addr();
    let remote = tcp_client(&server.url());
    let cms: Api<ConfigMap> = Api::namespaced(remote.clone(), "default");
    let mut events = watcher(cms.clone(), watcher::Config::default().timeout(5))
        .default_backoff()
        .applied_objects()
        .boxed();
    let mk = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("cm")
    };
    cms.create(&PostParams::default(), &mk("before"))
        .await
        .expect("create");
    assert!(next_named(&mut events, "before").await.expect("in time"));

    // Stop the API server; the store lives on (like etcd) and changes while it is down.
    let rv_before = sim.store().revision();
    server.shutdown().await;
    let local: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    local
        .create(&PostParams::default(), &mk("during"))
        .await
        .expect("create while down");
    assert!(
        tcp_client(&format!("http://{addr}"))
            .apiserver_version()
            .await
            .is_err(),
        "server is down"
    );

    // Same address, same store: the watcher resumes and sees what happened meanwhile.
    let server = sim
        .serve(addr)
        .await
        .expect("serve again on the same address");
    assert!(
        next_named(&mut events, "during").await.expect("in time"),
        "watcher resumed after restart"
    );
    let got = cms.get("before").await.expect("store kept");
    assert!(
        got.resource_version()
            .expect("rv")
            .parse::<u64>()
            .expect("rv")
            <= rv_before
    );

    // After a compaction the watcher's resourceVersion is gone (410) and it re-lists.
    server.shutdown().await;
    for i in 0..3 {
        local
            .create(&PostParams::default(), &mk(&format!("compacted-{i}")))
            .await
            .expect("create");
    }
    sim.store().compact();
    local
        .create(&PostParams::default(), &mk("after-compaction"))
        .await
        .expect("create");
    let server = sim.serve(addr).await.expect("serve again");
    assert!(
        next_named(&mut events, "after-compaction")
            .await
            .expect("in time"),
        "watcher re-listed after 410"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let sim = KubeSim::new(Config::default());
    let err = sim
        .serve("0.0.0.0:0".parse().expect("addr"))
        .await
        .expect_err("not loopback");
    assert!(matches!(err, Error::NotLoopback { .. }));
    assert!(err.to_string().contains("loopback only"), "{err}");
}

#[tokio::test]
async fn run_standalone_writes_a_kubeconfig_that_kube_rs_accepts() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("kubeconfig");
    // Find a free port, then release it for run_standalone.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}").parse().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let p = path.clone();
    let task = tokio::spawn(async move {
        harness_kube_sim::run_standalone(listen, &p, async {
            let _ = stopped.await;
        })
        .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubeconfig never written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(&path).expect("parse kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.list(&Default::default())
        .await
        .expect("list through the kubeconfig");
    stop.send(()).expect("stop");
    task.await.expect("join").expect("clean exit");
}
