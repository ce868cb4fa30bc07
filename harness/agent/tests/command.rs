//! The verbs as the binary runs them: `harness agent probe --batch …` and
//! `harness agent serve …`, over in-memory stdin/stdout/stderr.

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::Duration;

use harness_agent::command::{BatchSource, ServeCommand, Status, run_probe, run_serve_until};
use harness_agent::{ServeOptions, ServedPort, ServedProtocol};
use serde_json::Value;

fn probe(source: BatchSource, stdin: &str) -> (Status, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = run_probe(&source, &mut stdin.as_bytes(), &mut out, &mut err);
    (
        status,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn stdin(text: &str) -> (Status, String, String) {
    probe(BatchSource::Stdin, text)
}

#[test]
fn probe_reads_stdin_and_prints_one_json_line_in_order() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let batch = format!(
        r#"[{{"to": "127.0.0.1", "protocol": "TCP", "port": {closed}}},
            {{"to": "127.0.0.1", "protocol": "UDP", "port": {closed}, "timeoutMs": 500}}]"#
    );
    let (status, out, err) = stdin(&batch);
    assert_eq!(status, Status::Ok, "{err}");
    assert!(err.is_empty(), "{err}");
    assert!(out.ends_with("}]\n") && out.lines().count() == 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["result"], "refused");
    assert_eq!(v[0]["backend"], Value::Null);
    assert!(
        v[0]["detail"].as_str().unwrap().starts_with("TCP RST"),
        "{v}"
    );
    assert!(v[1]["detail"].as_str().unwrap().contains("UDP"), "{v}");
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[test]
fn probe_reads_a_file_and_inline_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.json");
    std::fs::write(&path, "[]").unwrap();
    assert_eq!(probe(BatchSource::File(path), "").1, "[]\n");
    assert_eq!(probe(BatchSource::from_arg("[]"), "").1, "[]\n");
    let missing = dir.path().join("missing.json");
    let (status, out, err) = probe(BatchSource::File(missing.clone()), "");
    assert_eq!(status, Status::BadInput);
    assert!(out.is_empty());
    assert!(
        err.starts_with(&format!(
            "harness agent probe: cannot read the batch file {}",
            missing.display()
        )),
        "{err}"
    );
    assert!(err.contains("or `-` for stdin"), "{err}");
}

#[test]
fn bad_batches_exit_2_saying_what_to_change() {
    let cases = [
        ("", "the batch is empty"),
        ("[{\"to\":", "the batch is not valid JSON"),
        ("not json", "the batch is not valid JSON"),
        (
            r#"{"to": "10.0.0.1"}"#,
            "must be a JSON array of probes, not an object",
        ),
        (
            r#"[{"to": "10.0.0.1", "protocol": "GRE", "port": 1}]"#,
            "batch[0]: unknown variant `GRE`",
        ),
        (
            r#"[{"to": "10.0.0.300", "protocol": "TCP", "port": 1}]"#,
            "batch[0]: `to` is \"10.0.0.300\", which is not an IPv4 address",
        ),
        (
            r#"[{"to": "10.0.0.1", "protocol": "UDP", "port": 53}, {"to": "x", "protocol": "UDP", "port": 53}]"#,
            "batch[1]: `to` is \"x\"",
        ),
    ];
    for (text, expected) in cases {
        let (status, out, err) = stdin(text);
        assert_eq!(status, Status::BadInput, "{text}");
        assert_eq!(status.code(), 2);
        assert!(out.is_empty(), "{text}: {out}");
        assert!(err.starts_with("harness agent probe: "), "{err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = run_probe(
        &BatchSource::Stdin,
        &mut &[0xffu8, 0xfe][..],
        &mut out,
        &mut err,
    );
    assert_eq!(status, Status::BadInput);
    assert!(String::from_utf8_lossy(&err).contains("not UTF-8"));
}

/// Runs `serve` on a thread; returns its first stdout line, then stops it.
fn serve_once(command: ServeCommand) -> (Status, String, String) {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Status>();
    let thread = std::thread::spawn(move || {
        let mut out = ReadyWriter {
            buf: Vec::new(),
            ready: Some(ready_tx),
        };
        let mut err = Vec::new();
        let status = run_serve_until(&command, &mut out, &mut err, async move {
            stop_rx.await.unwrap_or(Status::Infrastructure)
        });
        (
            status,
            String::from_utf8(out.buf).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    });
    // Only stop once the readiness line is out (or the verb ended without one).
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    let _ = stop_tx.send(Status::Ok);
    thread.join().unwrap()
}

/// Collects stdout and signals on the first newline.
struct ReadyWriter {
    buf: Vec<u8>,
    ready: Option<mpsc::Sender<()>>,
}

impl std::io::Write for ReadyWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.contains(&b'\n')
            && let Some(tx) = self.ready.take()
        {
            let _ = tx.send(());
        }
        Ok(())
    }
}

#[test]
fn serve_prints_a_readiness_line_and_stops_cleanly() {
    let (status, out, err) = serve_once(ServeCommand {
        ports: vec![
            ServedPort::new(ServedProtocol::Tcp, 0),
            ServedPort::new(ServedProtocol::Udp, 0),
            ServedPort::new(ServedProtocol::Sctp, 0),
        ],
        identity: Some("x/a".parse().unwrap()),
        options: ServeOptions {
            address: Ipv4Addr::LOCALHOST,
            http: false,
        },
    });
    assert_eq!(status, Status::Ok, "{err}");
    let ready: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["identity"], "x/a");
    let listening = ready["listening"].as_array().unwrap();
    let skipped = ready["skipped"].as_array().unwrap();
    assert_eq!(listening.len() + skipped.len(), 3, "{ready}");
    assert_eq!(listening[0]["port"], "TCP/0");
    assert!(
        listening[0]["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    for s in skipped {
        assert!(
            err.contains(&format!(
                "skipping {}: this kernel has no SCTP",
                s["port"].as_str().unwrap()
            )),
            "{err}"
        );
    }
    assert!(err.contains("harness-agent x/a serving TCP/"), "{err}");
    assert!(
        err.trim_end().ends_with("harness-agent x/a stopped"),
        "{err}"
    );
}

#[test]
fn serve_rejects_clashing_ports_with_exit_2_and_taken_ports_with_exit_3() {
    let (status, out, err) = serve_once(ServeCommand {
        ports: vec![
            ServedPort::new(ServedProtocol::Tcp, 8080),
            ServedPort::new(ServedProtocol::Http, 8080),
        ],
        identity: Some("x/a".parse().unwrap()),
        options: ServeOptions {
            address: Ipv4Addr::LOCALHOST,
            http: false,
        },
    });
    assert_eq!(status, Status::BadInput);
    assert!(out.is_empty());
    assert!(
        err.contains("TCP/8080 and HTTP/8080 both claim TCP port 8080: keep one of them"),
        "{err}"
    );

    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let (status, out, err) = serve_once(ServeCommand {
        ports: vec![ServedPort::new(ServedProtocol::Tcp, taken)],
        identity: Some("x/a".parse().unwrap()),
        options: ServeOptions {
            address: Ipv4Addr::LOCALHOST,
            http: false,
        },
    });
    assert_eq!(status, Status::Infrastructure, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("cannot serve TCP/{taken} on 127.0.0.1")),
        "{err}"
    );
}
