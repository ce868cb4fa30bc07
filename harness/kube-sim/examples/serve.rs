//! Serves kube-sim until Ctrl-C: `cargo run -p harness-kube-sim --example serve -- 127.0.0.1:6443 kubeconfig`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:6443".into())
        .parse()?;
    let kubeconfig = args.next().unwrap_or_else(|| "kubeconfig".into());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Stop when stdin closes (Ctrl-D) or the process is killed.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
        let _ = stop_tx.send(());
    });
    eprintln!("kube-sim on http://{listen}, kubeconfig {kubeconfig}");
    harness_kube_sim::run_standalone(listen, std::path::Path::new(&kubeconfig), async {
        let _ = stop_rx.await;
    })
    .await?;
    Ok(())
}
