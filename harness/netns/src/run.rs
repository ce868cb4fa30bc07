//! Run ids, the ownership record of a run's namespaces and the sweep of leftovers.
//!
//! Every namespace of a run is named `h<runid>-<role>` (`h3fa9c1-n1`), where the run id is six
//! hex digits. Before creating any, a run writes `/run/harness-netns/<runid>` holding its PID,
//! that process's start time and the names it is about to create. A run that was killed
//! (SIGKILL, a crash, a second Ctrl-C) leaves the file behind; [`sweep_leftovers`] deletes
//! the namespaces of every record whose process is gone, and only those: namespaces of a live
//! run, and namespaces this crate did not record, are never touched.

use std::path::PathBuf;

use crate::{NetnsError, ip, sys};

/// Where runs record what they own.
pub const STATE_DIR: &str = "/run/harness-netns";

/// A fresh run id: six hex digits from the PID, the time and a counter.
pub fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 24)
        ^ (u64::from(SEQ.fetch_add(1, Ordering::Relaxed)) << 40);
    // splitmix64 finaliser: neighbouring inputs give unrelated ids.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{:06x}", x & 0xff_ffff)
}

/// Whether `id` is a run id (six lower-case hex digits).
pub fn is_run_id(id: &str) -> bool {
    id.len() == 6
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The ownership record of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// Owning process.
    pub pid: u32,
    /// Its start time (clock ticks since boot), against PID reuse.
    pub start_ticks: u64,
    /// The namespaces it creates.
    pub namespaces: Vec<String>,
}

impl RunRecord {
    fn path(run_id: &str) -> PathBuf {
        PathBuf::from(STATE_DIR).join(run_id)
    }

    /// A record of this process owning `namespaces`.
    pub fn mine(run_id: &str, namespaces: Vec<String>) -> RunRecord {
        let pid = std::process::id();
        RunRecord {
            run_id: run_id.to_owned(),
            pid,
            start_ticks: sys::process_start_ticks(pid).unwrap_or(0),
            namespaces,
        }
    }

    /// Writes the record (before anything is created).
    ///
    /// # Errors
    /// The file system's.
    pub fn write(&self) -> Result<(), NetnsError> {
        let io = |e| NetnsError::Io {
            what: format!("writing {}", Self::path(&self.run_id).display()),
            source: e,
        };
        std::fs::create_dir_all(STATE_DIR).map_err(io)?;
        let mut s = format!("{} {}\n", self.pid, self.start_ticks);
        for n in &self.namespaces {
            s.push_str(n);
            s.push('\n');
        }
        std::fs::write(Self::path(&self.run_id), s).map_err(io)
    }

    /// Reads the record of `run_id`.
    pub fn read(run_id: &str) -> Option<RunRecord> {
        let s = std::fs::read_to_string(Self::path(run_id)).ok()?;
        let mut lines = s.lines();
        let mut head = lines.next()?.split_whitespace();
        let pid = head.next()?.parse().ok()?;
        let start_ticks = head.next()?.parse().ok()?;
        Some(RunRecord {
            run_id: run_id.to_owned(),
            pid,
            start_ticks,
            namespaces: lines.filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        })
    }

    /// Removes the record.
    pub fn remove(run_id: &str) {
        let _ = std::fs::remove_file(Self::path(run_id));
    }

    /// Whether the owning process still runs.
    pub fn owner_alive(&self) -> bool {
        sys::process_alive(self.pid, self.start_ticks)
    }
}

/// What [`sweep_leftovers`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Runs whose owner was dead.
    pub runs: Vec<String>,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
}

/// Deletes the namespaces of every recorded run whose owning process is dead (matched by the
/// `h<runid>-` prefix and by the names in the record), then the record.
///
/// # Errors
/// A failing `ip netns del`.
pub fn sweep_leftovers() -> Result<SweepReport, NetnsError> {
    let mut report = SweepReport::default();
    let Ok(dir) = std::fs::read_dir(STATE_DIR) else {
        return Ok(report);
    };
    let existing = ip::list_netns();
    for e in dir.filter_map(|e| e.ok()) {
        let Ok(id) = e.file_name().into_string() else {
            continue;
        };
        if !is_run_id(&id) {
            continue;
        }
        let Some(rec) = RunRecord::read(&id) else {
            continue;
        };
        if rec.owner_alive() {
            continue;
        }
        let prefix = format!("h{id}-");
        let mut doomed: Vec<String> = existing
            .iter()
            .filter(|n| n.starts_with(&prefix) || rec.namespaces.contains(n))
            .cloned()
            .collect();
        doomed.sort();
        doomed.dedup();
        ip::delete_netns(&doomed)?;
        RunRecord::remove(&id);
        report.runs.push(id);
        report.namespaces.extend(doomed);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_six_hex_digits_and_differ() {
        let a = new_run_id();
        let b = new_run_id();
        assert!(is_run_id(&a), "{a}");
        assert!(is_run_id(&b), "{b}");
        assert_ne!(a, b);
        assert!(!is_run_id("abc"));
        assert!(!is_run_id("ABCDEF"));
        assert!(!is_run_id("12345g"));
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = RunRecord::mine("000000", vec![]);
        assert!(me.owner_alive());
        let other = RunRecord {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!other.owner_alive(), "a recycled PID must not count");
    }
}
