//! Per-cell evidence folders: `evidence/<check-id>/<from>__<to>__<port>/` under the report
//! directory, with `trace.txt`, `probe.pcap`, `policies.txt` and `oracle.txt`.

use std::path::{Path, PathBuf};

use harness_oracle::Cluster;

use crate::provider::ProbeOutcome;

/// Which cells get an evidence folder (`--evidence`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EvidenceMode {
    /// Failed, flaky and inconclusive cells (the default).
    #[default]
    Failures,
    /// Every probed cell.
    All,
    /// None.
    None,
}

impl std::str::FromStr for EvidenceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "failures" => Ok(EvidenceMode::Failures),
            "all" => Ok(EvidenceMode::All),
            "none" => Ok(EvidenceMode::None),
            _ => Err(format!(
                "unknown evidence mode `{s}`: use failures, all or none"
            )),
        }
    }
}

/// Where evidence goes.
#[derive(Clone, Debug, Default)]
pub struct EvidenceSink {
    /// The report directory (evidence paths are relative to it); `None` writes nothing.
    pub report_dir: Option<PathBuf>,
    /// Which cells get evidence.
    pub mode: EvidenceMode,
}

/// A file-system-safe path component for a peer or port label (`svc:x/s` → `svc-x_s`).
pub fn component(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            '/' => '_',
            ':' | '@' | ' ' | '\\' => '-',
            c => c,
        })
        .collect()
}

/// What one cell's folder holds.
pub struct CellEvidence<'a> {
    /// The check id (`baseline/reachability-1`).
    pub check_id: &'a str,
    /// Source label.
    pub from: &'a str,
    /// Destination label.
    pub to: &'a str,
    /// Port label.
    pub port: &'a str,
    /// The traced probe.
    pub probe: &'a ProbeOutcome,
    /// The oracle's explanation and expected path.
    pub oracle: String,
    /// The NetworkPolicies selecting the endpoints involved.
    pub policies: String,
}

impl EvidenceSink {
    /// Whether a cell with this status gets evidence.
    pub fn wants(&self, notable: bool) -> bool {
        self.report_dir.is_some()
            && match self.mode {
                EvidenceMode::All => true,
                EvidenceMode::Failures => notable,
                EvidenceMode::None => false,
            }
    }

    /// Writes a cell's folder; returns the written files relative to the report directory.
    ///
    /// # Errors
    ///
    /// An I/O error creating the folder or a file.
    pub fn write(&self, cell: &CellEvidence<'_>) -> std::io::Result<Vec<String>> {
        let Some(root) = &self.report_dir else {
            return Ok(Vec::new());
        };
        let rel = Path::new("evidence").join(cell.check_id).join(format!(
            "{}__{}__{}",
            component(cell.from),
            component(cell.to),
            component(cell.port)
        ));
        std::fs::create_dir_all(root.join(&rel))?;
        let mut written = Vec::new();
        let mut put = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
            std::fs::write(root.join(&rel).join(name), bytes)?;
            written.push(rel.join(name).to_string_lossy().into_owned());
            Ok(())
        };
        let mut trace = format!(
            "{} -> {} {}: observed {}\n\n",
            cell.from,
            cell.to,
            cell.port,
            cell.probe.observed().word()
        );
        if let Some(d) = cell.probe.observed().detail() {
            trace.push_str(&format!("{d}\n\n"));
        }
        for (i, h) in cell.probe.hops.iter().enumerate() {
            trace.push_str(&format!("{:>3}. {h}\n", i + 1));
        }
        put("trace.txt", trace.as_bytes())?;
        if let Some(pcap) = &cell.probe.pcap {
            put("probe.pcap", pcap)?;
        }
        let mut policies = cell.policies.clone();
        policies.push_str("\nContrail gate decisions on the path (vrouter trace):\n");
        if cell.probe.decisions.is_empty() {
            policies.push_str("  none recorded\n");
        }
        for d in &cell.probe.decisions {
            policies.push_str(&format!("  {d}\n"));
        }
        put("policies.txt", policies.as_bytes())?;
        put("oracle.txt", format!("{}\n", cell.oracle).as_bytes())?;
        Ok(written)
    }
}

/// The NetworkPolicies that select each pod named (by `ns/name` label), as text.
pub fn selecting_policies(model: &Cluster, pods: &[String]) -> String {
    let mut out = String::from("NetworkPolicies selecting the pods involved:\n");
    for label in pods {
        let Some((ns, name)) = label.split_once('/') else {
            continue;
        };
        let Some(pod) = model.pod(ns, name) else {
            continue;
        };
        let selecting: Vec<String> = model
            .network_policies()
            .iter()
            .filter(|p| p.namespace == ns && p.pod_selector.matches(&pod.labels))
            .map(|p| format!("{} (policyTypes {})", p.id(), p.types_text()))
            .collect();
        if selecting.is_empty() {
            out.push_str(&format!("  {label}: none (not isolated)\n"));
        } else {
            out.push_str(&format!("  {label}: {}\n", selecting.join(", ")));
        }
    }
    out
}
