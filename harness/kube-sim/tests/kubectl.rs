//! kubectl against kube-sim over TCP: get (default and wide), apply (client-side with default
//! validation, and server-side), label, delete, get -w, auth can-i --as.
//!
//! Skipped, with a printed reason, when kubectl is not installed.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use harness_kube_sim::{Config, KubeSim, RunningServer};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

fn kubectl_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
}

struct Kubectl {
    bin: PathBuf,
    home: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(bin: PathBuf, server: &RunningServer) -> Self {
        let home = tempfile::tempdir().expect("temp home");
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig_yaml()).expect("write kubeconfig");
        Kubectl {
            bin,
            home,
            kubeconfig,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .expect("run kubectl")
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn write(&self, name: &str, content: &str) -> String {
        let p = self.home.path().join(name);
        std::fs::write(&p, content).expect("write manifest");
        p.to_string_lossy().into_owned()
    }
}

async fn setup() -> Option<(KubeSim, RunningServer, Kubectl)> {
    let Some(bin) = kubectl_path() else {
        println!(
            "SKIPPED: kubectl is not on PATH; install kubectl to run the kubectl conformance tests"
        );
        return None;
    };
    let sim = KubeSim::new(Config::default().with_token("alice-token", "alice", &["dev"]));
    let server = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let k = Kubectl::new(bin, &server);
    Some((sim, server, k))
}

const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: web
    image: nginx:1.27
    ports:
    - containerPort: 80
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-web
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - ports:
    - port: 80
"#;

#[tokio::test]
async fn kubectl_get_apply_label_delete() {
    let Some((_sim, server, k)) = setup().await else {
        return;
    };
    let manifest = k.write("pods.yaml", PODS);

    // Client-side apply with default validation (needs OpenAPI v3 from the server).
    let out = k.ok(&["apply", "-f", &manifest]).await;
    assert!(out.contains("pod/web created"), "{out}");
    assert!(
        out.contains("networkpolicy.networking.k8s.io/allow-web created"),
        "{out}"
    );
    let out = k.ok(&["apply", "-f", &manifest]).await;
    assert!(out.contains("pod/web unchanged"), "{out}");
    // A changed label goes out as a strategic merge patch.
    let changed = k.write(
        "pods2.yaml",
        &PODS.replace(
            "app: web\nspec:\n  containers",
            "app: web\n    tier: fe\nspec:\n  containers",
        ),
    );
    let out = k.ok(&["apply", "-f", &changed]).await;
    assert!(out.contains("pod/web configured"), "{out}");

    let out = k.ok(&["get", "pods"]).await;
    assert!(
        out.contains("NAME") && out.contains("READY") && out.contains("STATUS"),
        "{out}"
    );
    assert!(
        out.contains("web") && out.contains("0/1") && out.contains("Pending"),
        "{out}"
    );
    let out = k.ok(&["get", "pods", "-o", "wide"]).await;
    assert!(out.contains("NODE") && out.contains("IP"), "{out}");
    let out = k.ok(&["get", "netpol"]).await;
    assert!(
        out.contains("allow-web") && out.contains("app=web"),
        "{out}"
    );
    let out = k.ok(&["get", "svc", "-A"]).await;
    assert!(
        out.contains("kubernetes") && out.contains("10.96.0.1"),
        "{out}"
    );

    // Server-side apply.
    let cm = k.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n",
    );
    let out = k.ok(&["apply", "--server-side", "-f", &cm]).await;
    assert!(out.contains("configmap/ssa serverside-applied"), "{out}");
    let out = k
        .ok(&["get", "cm", "ssa", "-o", "jsonpath={.data.a}"])
        .await;
    assert_eq!(out, "1");

    let out = k.ok(&["label", "pod", "web", "color=blue"]).await;
    assert!(out.contains("pod/web labeled"), "{out}");
    let out = k
        .ok(&["get", "pods", "-l", "color=blue", "-o", "name"])
        .await;
    assert_eq!(out.trim(), "pod/web");

    let out = k
        .ok(&["delete", "pod", "web", "--wait=true", "--timeout=20s"])
        .await;
    assert!(out.contains("pod \"web\" deleted"), "{out}");
    let out = k.run(&["get", "pod", "web"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bad input is reported with the server's message.
    let bad = k.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let out = k.run(&["apply", "-f", &bad]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("metadata.name: Invalid value"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown fields are refused under kubectl's default strict validation.
    let typo = k.write(
        "typo.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndatta:\n  a: b\n",
    );
    let out = k.run(&["apply", "-f", &typo]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field \"datta\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn kubectl_get_watch() {
    let Some((sim, server, k)) = setup().await else {
        return;
    };
    let mut child = k
        .command(&["get", "configmaps", "-w", "--request-timeout=20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(sim.client(), "default");
    // Wait until the watch is established (header or first line), then create.
    let creator = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cm = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "watched"}, "data": {"a": "b"}}),
        )
        .expect("cm");
        cms.create(&Default::default(), &cm).await.expect("create");
    });
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("watched") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    creator.await.expect("creator");
    let _ = child.kill().await;
    assert!(found, "kubectl get -w never printed the new ConfigMap");
    server.shutdown().await;
}

#[tokio::test]
async fn kubectl_auth_can_i_as() {
    let Some((_sim, server, k)) = setup().await else {
        return;
    };
    let rbac = k.write(
        "rbac.yaml",
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
rules:
- apiGroups: [""]
  resources: ["pods", "pods/log"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-reads-pods
subjects:
- kind: User
  name: alice
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ops-view
subjects:
- kind: Group
  name: ops
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: ClusterRole
  name: view
  apiGroup: rbac.authorization.k8s.io
"#,
    );
    k.ok(&["apply", "-f", &rbac]).await;
    // The kubectl create generators (sent as protobuf) work too.
    for args in [
        vec!["create", "namespace", "demo"],
        vec![
            "create",
            "configmap",
            "cfg",
            "-n",
            "demo",
            "--from-literal=a=b",
        ],
        vec![
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            "demo",
            "--from-literal=pw=hunter2",
        ],
        vec!["create", "serviceaccount", "robot", "-n", "demo"],
        vec![
            "create",
            "role",
            "svc-reader",
            "-n",
            "demo",
            "--verb=get,list",
            "--resource=services",
        ],
        vec![
            "create",
            "rolebinding",
            "robot-reads",
            "-n",
            "demo",
            "--role=svc-reader",
            "--serviceaccount=demo:robot",
        ],
        vec![
            "create",
            "clusterrole",
            "metrics",
            "--verb=get",
            "--non-resource-url=/metrics",
        ],
        vec![
            "create",
            "clusterrolebinding",
            "ops-metrics",
            "--clusterrole=metrics",
            "--group=ops",
        ],
    ] {
        let out = k.ok(&args).await;
        assert!(out.contains("created"), "{args:?}: {out}");
    }
    assert_eq!(
        k.ok(&["get", "cm", "cfg", "-n", "demo", "-o", "jsonpath={.data.a}"])
            .await,
        "b"
    );
    let can = |args: Vec<&'static str>| {
        let k = &k;
        async move {
            let mut full = vec!["auth", "can-i"];
            full.extend(args);
            let out = k.run(&full).await;
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )
        }
    };
    assert_eq!(
        can(vec!["list", "pods", "--as", "alice"]).await,
        (Some(0), "yes".into())
    );
    assert_eq!(
        can(vec!["get", "pods/log", "--as", "alice"]).await,
        (Some(0), "yes".into())
    );
    assert_eq!(can(vec!["delete", "pods", "--as", "alice"]).await.1, "no");
    assert_eq!(
        can(vec!["list", "pods", "--as", "alice", "-n", "kube-system"])
            .await
            .1,
        "no"
    );
    assert_eq!(
        can(vec!["create", "pods/exec", "--as", "alice"]).await.1,
        "no"
    );
    // Aggregated ClusterRole "view" through a group binding.
    assert_eq!(
        can(vec![
            "list",
            "services",
            "--as",
            "bob",
            "--as-group",
            "ops",
            "-A"
        ])
        .await
        .1,
        "yes"
    );
    assert_eq!(
        can(vec!["list", "secrets", "--as", "bob", "--as-group", "ops"])
            .await
            .1,
        "no"
    );
    assert_eq!(
        can(vec!["delete", "nodes"]).await.1,
        "yes",
        "the admin can do anything"
    );
    server.shutdown().await;
}

/// Answers every exec with the command line on stdout and exit code 3 for `fail`.
struct Echo;

impl harness_kube_sim::ExecHandler for Echo {
    fn exec(
        &self,
        req: harness_kube_sim::ExecRequest,
        mut io: harness_kube_sim::ExecIo,
    ) -> harness_kube_sim::ExecFuture {
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            let line = format!("{}\n", req.command.join(" "));
            io.stdout
                .write_all(line.as_bytes())
                .await
                .map_err(|e| harness_kube_sim::ExecError(e.to_string()))?;
            Ok(if req.command.first().map(String::as_str) == Some("fail") {
                3
            } else {
                0
            })
        })
    }
}

#[tokio::test]
async fn kubectl_exec() {
    let Some((sim, server, k)) = setup().await else {
        return;
    };
    k.ok(&["run", "probe", "--image=agent:1"]).await;
    let out = k.run(&["exec", "probe", "--", "ls"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(harness_kube_sim::NO_DATAPLANE_MESSAGE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sim.set_exec_handler(std::sync::Arc::new(Echo));
    assert_eq!(
        k.ok(&["exec", "probe", "--", "echo", "hello", "world"])
            .await,
        "echo hello world\n"
    );
    let out = k.run(&["exec", "probe", "--", "fail", "now"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.shutdown().await;
}
