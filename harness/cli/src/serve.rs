//! `harness kube-sim` and `harness contrail-mock`: the embedded components as standalone
//! servers on loopback, so a person can point kubectl, curl or the Contrail client library at them.

use crate::cli::{ContrailMockArgs, KubeSimArgs};
use crate::exit::Exit;
use crate::term::Term;

fn runtime(term: &Term) -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!(
                "{} cannot start the async runtime: {e}",
                term.red("error:", true)
            );
            Exit::Infrastructure
        })
}

/// Resolves on the first Ctrl-C (or SIGTERM); servers then shut down cleanly.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn refuse_non_loopback(addr: &std::net::SocketAddr, term: &Term) -> Result<(), Exit> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        eprintln!(
            "{} {addr} is not a loopback address: the embedded servers listen on 127.0.0.1 or [::1] only",
            term.red("error:", true)
        );
        Err(Exit::BadInput)
    }
}

pub fn kube_sim(args: &KubeSimArgs, term: &Term) -> Exit {
    if let Err(code) = refuse_non_loopback(&args.listen, term) {
        return code;
    }
    let rt = match runtime(term) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let sim = harness_kube_sim::KubeSim::new(harness_kube_sim::Config::default());
        let server = match sim.serve(args.listen).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{} {e}", term.red("error:", true));
                return Exit::Infrastructure;
            }
        };
        if let Err(e) = std::fs::write(&args.kubeconfig, server.kubeconfig_yaml()) {
            eprintln!(
                "{} cannot write {}: {e}",
                term.red("error:", true),
                args.kubeconfig.display()
            );
            server.shutdown().await;
            return Exit::BadInput;
        }
        let kc = args.kubeconfig.display();
        eprintln!(
            "kube-sim serving the Kubernetes API at {} (Ctrl-C stops it)",
            server.url()
        );
        eprintln!("kubeconfig (admin token): {kc}");
        eprintln!("  kubectl --kubeconfig {kc} get namespaces");
        eprintln!("  kubectl --kubeconfig {kc} apply -f scenarios/fixtures/netpol-3x3.yaml");
        interrupted().await;
        server.shutdown().await;
        eprintln!("kube-sim stopped");
        Exit::Interrupted
    })
}

pub fn contrail_mock(args: &ContrailMockArgs, term: &Term) -> Exit {
    if let Err(code) = refuse_non_loopback(&args.listen, term) {
        return code;
    }
    let profile = match args.contrail_profile.parse::<harness_scenario::Profile>() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{} --contrail-profile: {e}", term.red("error:", true));
            return Exit::BadInput;
        }
    };
    let rt = match runtime(term) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let settings = harness_scenario::ContrailSettings {
            profile,
            ..Default::default()
        };
        eprintln!(
            "contrail-mock serving the VNC API at http://{} (Ctrl-C stops it)",
            args.listen
        );
        match &args.kubeconfig {
            Some(kc) => eprintln!(
                "kube-manager emulation watching the Kubernetes API of {} (profile {profile})",
                kc.display()
            ),
            None => eprintln!("no --kubeconfig: VNC API only, no kube-manager emulation"),
        }
        eprintln!("  curl -s http://{}/virtual-networks", args.listen);
        let result = harness_contrail_mock::kube_manager::run_standalone_with_kube_manager(
            args.listen,
            args.kubeconfig.as_deref(),
            &settings,
            interrupted(),
        )
        .await;
        match result {
            Ok(()) => {
                eprintln!("contrail-mock stopped");
                Exit::Interrupted
            }
            Err(e) => {
                eprintln!("{} {e}", term.red("error:", true));
                Exit::Infrastructure
            }
        }
    })
}
