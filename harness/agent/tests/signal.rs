//! `harness agent serve` stops cleanly on SIGTERM (exit 0) — in a test binary of its own,
//! because the handler stays installed for the life of the process.

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::Duration;

use harness_agent::command::{ServeCommand, Status, run_serve};
use harness_agent::{ServeOptions, ServedPort, ServedProtocol};

struct Lines(mpsc::Sender<String>, Vec<u8>);

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.send(String::from_utf8_lossy(&self.1).into_owned());
        Ok(())
    }
}

#[test]
fn sigterm_stops_serve_with_exit_0_and_closes_the_ports() {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let command = ServeCommand {
            ports: vec![ServedPort::new(ServedProtocol::Tcp, 0)],
            identity: Some("x/a".parse().unwrap()),
            options: ServeOptions {
                address: Ipv4Addr::LOCALHOST,
                http: false,
            },
        };
        run_serve(&command, &mut Lines(tx, Vec::new()), &mut std::io::sink())
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("readiness line");
    let ready: serde_json::Value = serde_json::from_str(ready.trim()).unwrap();
    let address: std::net::SocketAddr = ready["listening"][0]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::net::TcpStream::connect(address).is_ok());
    // SAFETY: kill(2) on our own pid with a signal the verb handles; no memory is involved.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = thread.join().unwrap();
    assert_eq!(status, Status::Ok);
    assert_eq!(status.code(), 0);
    let after = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500));
    assert!(after.is_err(), "the port is still served after SIGTERM");
}
