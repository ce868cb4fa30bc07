//! The node agent against kube-sim in process: Node registration, a pod bound to the node
//! wired from its VMI / instance IP (written the way kube-manager writes them, VM uuid = pod
//! uid) and reported Running/Ready with its podIP, exec of the probe agent (through the
//! handler trait and through kube-rs `Api::exec` over WebSocket), detach on delete.

mod common;

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Km, Options};
use harness_kube_sim::{Config, ExecHandler, ExecIo, ExecRequest, KubeSim};
use harness_vrouter_sim::node::{
    EXIT_UNKNOWN_COMMAND, NETWORK_STATUS_ANNOTATION, NodeAgent, ProbeResult, ProbeResultKind,
};
use harness_vrouter_sim::{Dataplane, ServedPort, agent};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, AttachParams, DeleteParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VHOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 11);

struct Cluster {
    sim: KubeSim,
    km: Km,
    dp: Arc<Mutex<Dataplane>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    agent: tokio::task::JoinHandle<()>,
}

/// kube-sim, a contrail-mock config db with node-1 and node-2, a server pod on node-2 (wired
/// directly), the dataplane following the db, and the node agent of node-1 running.
async fn cluster() -> Cluster {
    let sim = KubeSim::new(Config::default());
    let mut km = Km::new(Options::default());
    km.node("node-1", VHOST);
    km.node("node-2", Ipv4Addr::new(192, 168, 0, 12));
    km.pod_on(
        "default",
        "server",
        "node-2",
        &[("app", "server")],
        None,
        vec![ServedPort::tcp(80)],
    );
    let dp = Arc::new(Mutex::new(Dataplane::from_config(
        km.snapshot(),
        km.topology.clone(),
    )));
    tokio::spawn(agent::follow_db(
        km.db.clone(),
        dp.clone(),
        agent::DEFAULT_DEBOUNCE,
    ));
    let node = NodeAgent::new(sim.client(), "node-1", VHOST, dp.clone());
    sim.set_exec_handler(node.exec_handler());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        node.run(async {
            let _ = stopped.await;
        })
        .await
        .expect("node agent");
    });
    Cluster {
        sim,
        km,
        dp,
        stop: Some(stop),
        agent,
    }
}

fn server_ip(c: &Cluster) -> Ipv4Addr {
    c.dp.lock().unwrap().endpoint_addresses("default/server")[0]
}

/// Creates pod `default/<name>` bound to node-1 and its Contrail objects (as kube-manager).
async fn client_pod(c: &mut Cluster, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(c.sim.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "client"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "nginx:1.27",
                 "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]},
    }))
    .expect("pod");
    let pod = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    c.km.next_vm_uuid = pod.metadata.uid.clone();
    c.km.pod_on(
        "default",
        name,
        "node-1",
        &[("app", "client")],
        None,
        vec![],
    );
    pod
}

fn condition(conds: Option<&Value>, t: &str) -> Option<String> {
    conds?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .and_then(|c| c["status"].as_str())
        .map(str::to_owned)
}

async fn wait_running(c: &Cluster, name: &str, within: Duration) -> Value {
    let pods: Api<Pod> = Api::namespaced(c.sim.client(), "default");
    let start = Instant::now();
    loop {
        let pod = serde_json::to_value(pods.get(name).await.expect("get")).unwrap();
        let st = &pod["status"];
        if st["phase"] == "Running"
            && condition(st.get("conditions"), "Ready").as_deref() == Some("True")
            && st["podIP"].is_string()
        {
            return pod;
        }
        assert!(
            start.elapsed() < within,
            "pod {name} not Running/Ready within {within:?}: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn exec_direct(
    c: &Cluster,
    pod: &str,
    command: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let handler = NodeAgent::new(c.sim.client(), "node-1", VHOST, c.dp.clone()).exec_handler();
    let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
    let (err_w, mut err_r) = tokio::io::duplex(1 << 16);
    let (mut in_w, in_r) = tokio::io::duplex(1 << 16);
    in_w.write_all(stdin.as_bytes()).await.unwrap();
    drop(in_w);
    let request = ExecRequest {
        namespace: "default".into(),
        pod: pod.into(),
        container: "web".into(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        stdin: true,
        tty: false,
        pod_object: Value::Null,
    };
    let io = ExecIo {
        stdin: Some(Box::new(in_r)),
        stdout: Box::new(out_w),
        stderr: Box::new(err_w),
    };
    let code = handler.exec(request, io).await.expect("exec");
    let (mut out, mut err) = (String::new(), String::new());
    out_r.read_to_string(&mut out).await.unwrap();
    err_r.read_to_string(&mut err).await.unwrap();
    (code, out, err)
}

const PROBE: &[&str] = &["harness", "agent", "probe", "--batch", "-"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_pod_runs_probes_and_detaches() {
    let mut c = cluster().await;
    let created = Instant::now();
    client_pod(&mut c, "client").await;
    let pod = wait_running(&c, "client", Duration::from_secs(1)).await;
    let took = created.elapsed();

    // The Node: registered, Ready, InternalIP = vhost, hostname label, capacity.
    let nodes: Api<Node> = Api::all(c.sim.client());
    let node = serde_json::to_value(nodes.get("node-1").await.expect("node")).unwrap();
    assert_eq!(
        condition(node["status"].get("conditions"), "Ready").as_deref(),
        Some("True"),
        "{node:#}"
    );
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "node-1"
    );
    let internal = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .expect("InternalIP");
    assert_eq!(internal["address"], VHOST.to_string());
    assert_eq!(node["status"]["capacity"]["pods"], "110");

    // The pod: Running/Ready, podIP = the instance IP, hostIP, container status, network-status.
    let ip = c.dp.lock().unwrap().endpoint_addresses("default/client");
    assert_eq!(ip.len(), 1, "wired in {took:?}");
    let st = &pod["status"];
    assert_eq!(st["podIP"], ip[0].to_string());
    assert_eq!(st["podIPs"], json!([{"ip": ip[0].to_string()}]));
    assert_eq!(st["hostIP"], VHOST.to_string());
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(
            condition(st.get("conditions"), t).as_deref(),
            Some("True"),
            "{t}"
        );
    }
    assert!(st["startTime"].is_string());
    let cs = &st["containerStatuses"][0];
    assert_eq!(cs["name"], "web");
    assert_eq!(cs["image"], "nginx:1.27");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    let ns: Value = serde_json::from_str(
        pod["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION]
            .as_str()
            .expect("network-status"),
    )
    .unwrap();
    assert_eq!(ns[0]["interface"], "eth0");
    assert_eq!(ns[0]["default"], true);
    assert_eq!(ns[0]["ips"], json!([ip[0].to_string()]));
    assert!(
        ns[0]["name"]
            .as_str()
            .unwrap()
            .ends_with("k8s-default-pod-network")
    );

    // Exec through the handler trait: the probe agent runs from the pod's endpoint.
    let server = server_ip(&c);
    let batch = json!([
        {"to": server.to_string(), "protocol": "TCP", "port": 80, "timeoutMs": 1000},
        {"to": server.to_string(), "protocol": "TCP", "port": 81},
        {"to": "10.47.0.1", "protocol": "UDP", "port": 53, "trace": true},
        {"to": "not-an-ip", "protocol": "ICMP"},
    ]);
    let (code, out, err) = exec_direct(&c, "client", PROBE, &batch.to_string()).await;
    assert_eq!(code, 0, "{err}");
    let results: Vec<ProbeResult> = serde_json::from_str(&out).expect(&out);
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].result, ProbeResultKind::Connected, "{results:?}");
    assert_eq!(results[0].backend.as_deref(), Some("default/server"));
    assert_eq!(results[1].result, ProbeResultKind::Refused, "{results:?}");
    assert_ne!(results[2].result, ProbeResultKind::Connected, "{results:?}");
    assert_eq!(results[3].result, ProbeResultKind::Other);
    // The server reaches the client on the ports its containers declare.
    let o =
        c.dp.lock()
            .unwrap()
            .probe(
                &harness_vrouter_sim::EndpointRef::Pod("default/server".into()),
                ip[0],
                harness_scenario::Protocol::Tcp,
                8080,
            )
            .unwrap();
    assert_eq!(
        o.verdict,
        harness_vrouter_sim::Verdict::Connected {
            backend: "default/client".into()
        }
    );

    // Unknown command and bad batch.
    let (code, _, err) = exec_direct(&c, "client", &["sh", "-c", "true"], "").await;
    assert_eq!(code, EXIT_UNKNOWN_COMMAND);
    assert!(err.contains("command not found"), "{err}");
    let (code, _, err) = exec_direct(&c, "client", PROBE, "{nope").await;
    assert_eq!(code, 2);
    assert!(err.contains("bad batch"), "{err}");

    // Delete detaches.
    let pods: Api<Pod> = Api::namespaced(c.sim.client(), "default");
    pods.delete("client", &DeleteParams::default())
        .await
        .expect("delete");
    let start = Instant::now();
    while !c
        .dp
        .lock()
        .unwrap()
        .endpoint_addresses("default/client")
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(1), "not detached");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (code, out, _) = exec_direct(&c, "client", PROBE, &batch.to_string()).await;
    assert_eq!(code, 0);
    let results: Vec<ProbeResult> = serde_json::from_str(&out).unwrap();
    assert_eq!(results[0].result, ProbeResultKind::Other, "{results:?}");

    drop(c.stop.take());
    c.agent.await.expect("agent stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_waits_for_its_vmi_and_exec_over_websocket() {
    let mut c = cluster().await;
    // The pod exists before its Contrail objects: it stays Pending until they do.
    let pods: Api<Pod> = Api::namespaced(c.sim.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "late"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "busybox"}]},
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let now = serde_json::to_value(pods.get("late").await.unwrap()).unwrap();
    assert_ne!(now["status"]["phase"], "Running", "{now:#}");
    c.km.next_vm_uuid = pod.metadata.uid.clone();
    c.km.pod_on("default", "late", "node-1", &[], None, vec![]);
    wait_running(&c, "late", Duration::from_secs(1)).await;

    // kube-rs Api::exec over a real socket.
    let server = c.sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut proc = pods
        .exec(
            "late",
            PROBE.iter().copied(),
            &AttachParams::default()
                .stdin(true)
                .stdout(true)
                .stderr(true),
        )
        .await
        .expect("exec");
    let batch = json!([{"to": server_ip(&c).to_string(), "protocol": "TCP", "port": 80}]);
    let mut stdin = proc.stdin().expect("stdin");
    stdin.write_all(batch.to_string().as_bytes()).await.unwrap();
    stdin.shutdown().await.unwrap();
    let mut stdout = proc.stdout().expect("stdout");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stdout.read_to_string(&mut out))
        .await
        .expect("output in time")
        .unwrap();
    let results: Vec<ProbeResult> = serde_json::from_str(&out).expect(&out);
    assert_eq!(results[0].result, ProbeResultKind::Connected, "{results:?}");
    let status = proc.take_status().unwrap().await.expect("status");
    assert_eq!(status.status.as_deref(), Some("Success"));
    server.shutdown().await;
    drop(c.stop.take());
    c.agent.await.unwrap();
}

/// Waits until the node agent's kube-proxy installed rules satisfying `ok` on node-1.
async fn wait_node_ports(
    c: &Cluster,
    ok: impl Fn(&[harness_vrouter_sim::kube_proxy::NodePortRule]) -> bool,
) {
    let start = Instant::now();
    loop {
        let rules = c.dp.lock().unwrap().node_ports("node-1");
        if ok(&rules) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "node ports not installed: {rules:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_proxy_installs_node_ports_from_services_and_endpoint_slices() {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let c = cluster().await;
    let server = server_ip(&c);
    // A NodePort service without selector, its endpoints given by hand (as any controller
    // would write them): kube-proxy reads both from the API.
    let services: Api<Service> = Api::namespaced(c.sim.client(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web-np"},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30080}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
    wait_node_ports(&c, |r| r.len() == 1 && r[0].endpoints.is_empty()).await;
    // No endpoint yet: rejected by kube-proxy on node-1.
    let from = harness_vrouter_sim::EndpointRef::Node("node-2".into());
    let o =
        c.dp.lock()
            .unwrap()
            .probe(&from, VHOST, harness_scenario::Protocol::Tcp, 30080)
            .unwrap();
    assert!(
        matches!(&o.verdict, harness_vrouter_sim::Verdict::Refused { by } if by.contains("ICMP port unreachable")),
        "{:?}",
        o.verdict
    );
    let slices: Api<EndpointSlice> = Api::namespaced(c.sim.client(), "default");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-np-manual", "labels": {"kubernetes.io/service-name": "web-np"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [server.to_string()], "nodeName": "node-2", "conditions": {"ready": true}},
            {"addresses": ["10.47.0.99"], "nodeName": "node-1", "conditions": {"ready": false}},
        ],
    }))
    .unwrap();
    slices
        .create(&PostParams::default(), &slice)
        .await
        .expect("slice");
    wait_node_ports(&c, |r| r.len() == 1 && r[0].endpoints.len() == 1).await;
    let rules = c.dp.lock().unwrap().node_ports("node-1");
    assert_eq!(rules[0].endpoints[0].address, server, "only the ready one");
    assert_eq!(rules[0].service, "default/web-np");
    let o =
        c.dp.lock()
            .unwrap()
            .probe(&from, VHOST, harness_scenario::Protocol::Tcp, 30080)
            .unwrap();
    assert_eq!(
        o.verdict,
        harness_vrouter_sim::Verdict::Connected {
            backend: "default/server".into()
        },
        "{:#?}",
        o.hops
    );
    // The service deleted: the rule goes away.
    services
        .delete("web-np", &DeleteParams::default())
        .await
        .expect("delete");
    wait_node_ports(&c, <[_]>::is_empty).await;
}
