//! Capture of the underlay: one AF_PACKET socket bound to every interface of the underlay
//! namespace records each frame once, as it enters the bridge from a port (the bridge's own
//! copy of flooded frames is skipped), with the wall-clock time.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use harness_vrouter_sim::CapturedFrame;

use crate::NetnsError;
use crate::packet::{PacketSocket, ifindex};

/// Frames kept before the oldest are discarded.
pub const CAPTURE_LIMIT: usize = 200_000;

/// Frames captured on the underlay so far.
pub type Captured = Arc<Mutex<Vec<CapturedFrame>>>;

pub(crate) fn spawn(
    ns: &str,
    bridge: &str,
    frames: Captured,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<(), NetnsError>>, NetnsError> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let bridge = bridge.to_owned();
    let h = crate::sys::spawn_in(ns, "underlay capture".into(), move || {
        let (sock, br) = match PacketSocket::open(None).and_then(|s| Ok((s, ifindex(&bridge)?))) {
            Ok(x) => x,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        let _ = ready_tx.send(Ok(()));
        let names = port_names();
        let mut buf = vec![0u8; 65_536];
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: one live pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                continue;
            }
            while let Ok(Some(m)) = sock.recv(&mut buf) {
                if m.ifindex == br {
                    continue;
                }
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(0);
                let link = names
                    .iter()
                    .find(|(i, _)| *i == m.ifindex)
                    .map(|(_, n)| format!("underlay {n}"))
                    .unwrap_or_else(|| "underlay".into());
                let mut v = frames
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if v.len() >= CAPTURE_LIMIT {
                    v.remove(0);
                }
                v.push(CapturedFrame {
                    link,
                    ts_micros: ts,
                    bytes: buf[..m.len].to_vec(),
                });
            }
        }
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(h),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(NetnsError::Io {
                what: "opening the underlay capture".into(),
                source: std::io::Error::other(e),
            })
        }
        Err(_) => Err(NetnsError::Io {
            what: "the underlay capture stopped before starting".into(),
            source: std::io::Error::other("capture thread ended"),
        }),
    }
}

/// (ifindex, name) of the calling thread's namespace. `if_nameindex` asks the kernel over a
/// netlink socket of this thread's namespace (`/sys/class/net` would show the namespace that
/// mounted sysfs instead).
fn port_names() -> Vec<(i32, String)> {
    let mut v = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let head = libc::if_nameindex();
        if head.is_null() {
            return v;
        }
        let mut p = head;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name)
                .to_string_lossy()
                .into_owned();
            v.push(((*p).if_index as i32, name));
            p = p.add(1);
        }
        libc::if_freenameindex(head);
    }
    v
}
