//! The `harness agent` verbs as functions over plain readers and writers, so the binary stays
//! a thin argument parser and the verbs are tested without spawning it.
//!
//! - [`run_probe`]: `harness agent probe --batch -|FILE|JSON` — reads a batch, probes, prints
//!   the results as one JSON array (one line) on stdout.
//! - [`run_serve`]: `harness agent serve --ports … [--identity NS/POD] [--http]` — serves
//!   until SIGTERM (exit 0) or SIGINT (exit 130). Once every socket is bound it prints one
//!   JSON line on stdout, the readiness signal a supervisor waits for:
//!
//! ```json
//! {"ready":true,"identity":"x/a","listening":[{"port":"TCP/80","protocol":"TCP","address":"0.0.0.0:80"}],"skipped":[{"port":"SCTP/80","reason":"this kernel has no SCTP …"}]}
//! ```

use std::future::Future;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde_json::json;

use crate::batch::parse_batch;
use crate::identity::Identity;
use crate::ports::ServedPort;
use crate::probe::probe_batch;
use crate::serve::{ServeError, ServeOptions, serve_with};

/// How a verb ended; [`Status::code`] is the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done (probe: the batch ran, whatever its results; serve: stopped by SIGTERM).
    Ok,
    /// Bad input: a malformed batch, an unreadable batch file, clashing ports, no identity.
    BadInput,
    /// The machine would not cooperate: a port already taken, no runtime, stdout closed.
    Infrastructure,
    /// Stopped by SIGINT (Ctrl-C).
    Interrupted,
}

impl Status {
    /// The exit code: 0, 2, 3 or 130, as every `harness` verb.
    pub fn code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::BadInput => 2,
            Status::Infrastructure => 3,
            Status::Interrupted => 130,
        }
    }
}

/// Where `probe` reads its batch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchSource {
    /// `--batch -`: standard input (`kubectl exec -i … -- harness agent probe --batch -`).
    Stdin,
    /// `--batch FILE`.
    File(PathBuf),
    /// `--batch '[…]'`: the JSON itself, as the model dataplane's exec handler also accepts.
    Inline(String),
}

impl BatchSource {
    /// `-` is stdin, an argument starting with `[` or `{` is the JSON itself, anything else
    /// a file name.
    pub fn from_arg(arg: &str) -> Self {
        match arg.trim_start().chars().next() {
            _ if arg == "-" => BatchSource::Stdin,
            Some('[' | '{') => BatchSource::Inline(arg.to_owned()),
            _ => BatchSource::File(PathBuf::from(arg)),
        }
    }
}

/// `harness agent probe`: reads the batch from `source`, runs it from the calling thread's
/// network namespace, and writes the results (JSON array, request order, one line) to
/// `stdout`. Problems with the input go to `stderr`, saying what to change.
///
/// ```
/// use harness_agent::command::{run_probe, BatchSource, Status};
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// let status = run_probe(&BatchSource::Inline("[]".into()), &mut std::io::empty(), &mut out, &mut err);
/// assert_eq!((status, out.as_slice()), (Status::Ok, &b"[]\n"[..]));
/// ```
pub fn run_probe(
    source: &BatchSource,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Status {
    let text = match source {
        BatchSource::Inline(text) => text.clone(),
        BatchSource::Stdin => {
            let mut bytes = Vec::new();
            if let Err(e) = stdin.read_to_end(&mut bytes) {
                let _ = writeln!(
                    stderr,
                    "harness agent probe: cannot read the batch from stdin: {e}"
                );
                return Status::Infrastructure;
            }
            match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    let _ = writeln!(
                        stderr,
                        "harness agent probe: the batch on stdin is not UTF-8 text: send a JSON array of probes"
                    );
                    return Status::BadInput;
                }
            }
        }
        BatchSource::File(path) => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(
                    stderr,
                    "harness agent probe: cannot read the batch file {}: {e}: name a readable JSON file, or `-` for stdin",
                    path.display()
                );
                return Status::BadInput;
            }
        },
    };
    let batch = match parse_batch(&text) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(stderr, "harness agent probe: {e}");
            return Status::BadInput;
        }
    };
    let results = probe_batch(&batch);
    let written = serde_json::to_writer(&mut *stdout, &results)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(stdout))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => Status::Ok,
        Err(e) => {
            let _ = writeln!(stderr, "harness agent probe: cannot write the results: {e}");
            Status::Infrastructure
        }
    }
}

/// What `harness agent serve` serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServeCommand {
    /// The pod's declared container ports.
    pub ports: Vec<ServedPort>,
    /// Who answers; from the environment ([`Identity::from_environment`]) when `None`.
    pub identity: Option<Identity>,
    /// Address and HTTP mode.
    pub options: ServeOptions,
}

/// `harness agent serve`: serves until SIGTERM ([`Status::Ok`]) or SIGINT
/// ([`Status::Interrupted`]), then closes every socket. See the module docs for the
/// readiness line on `stdout`; progress and skipped ports go to `stderr`.
pub fn run_serve(command: &ServeCommand, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Status {
    let runtime = match signal_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(stderr, "harness agent serve: cannot start the runtime: {e}");
            return Status::Infrastructure;
        }
    };
    // Handlers are installed before the readiness line, so a supervisor that signals right
    // after reading it gets a clean stop, not the default action.
    let stop = {
        let _entered = runtime.enter();
        match termination() {
            Ok(stop) => stop,
            Err(e) => {
                let _ = writeln!(
                    stderr,
                    "harness agent serve: cannot handle SIGTERM/SIGINT: {e}"
                );
                return Status::Infrastructure;
            }
        }
    };
    serve_until(command, stdout, stderr, &runtime, stop)
}

/// [`run_serve`], stopping when `stop` resolves (with the status to return) instead of on a
/// signal.
pub fn run_serve_until(
    command: &ServeCommand,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    stop: impl Future<Output = Status>,
) -> Status {
    match signal_runtime() {
        Ok(runtime) => serve_until(command, stdout, stderr, &runtime, stop),
        Err(e) => {
            let _ = writeln!(stderr, "harness agent serve: cannot start the runtime: {e}");
            Status::Infrastructure
        }
    }
}

fn signal_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
}

/// Resolves on SIGTERM (a pod being stopped: [`Status::Ok`]) or SIGINT ([`Status::Interrupted`]).
fn termination() -> std::io::Result<impl Future<Output = Status>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => Status::Ok,
            _ = int.recv() => Status::Interrupted,
        }
    })
}

fn serve_until(
    command: &ServeCommand,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    runtime: &tokio::runtime::Runtime,
    stop: impl Future<Output = Status>,
) -> Status {
    let Some(identity) = command.identity.clone().or_else(Identity::from_environment) else {
        let _ = writeln!(
            stderr,
            "harness agent serve: no identity: give --identity NAMESPACE/POD (or set POD_NAMESPACE and POD_NAME)"
        );
        return Status::BadInput;
    };
    let server = match serve_with(&command.ports, &identity, &command.options) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(stderr, "harness agent serve: {e}");
            return match e {
                ServeError::Conflict { .. } => Status::BadInput,
                ServeError::Bind { .. } | ServeError::Thread(_) => Status::Infrastructure,
            };
        }
    };
    for s in server.skipped() {
        let _ = writeln!(
            stderr,
            "harness agent serve: skipping {}: {}",
            s.port, s.reason
        );
    }
    let ready = json!({
        "ready": true,
        "identity": identity.as_str(),
        "listening": server.listening().iter().map(|l| json!({
            "port": l.requested.to_string(),
            "protocol": l.protocol.as_str(),
            "address": l.address.to_string(),
        })).collect::<Vec<_>>(),
        "skipped": server.skipped().iter().map(|s| json!({
            "port": s.port.to_string(),
            "reason": s.reason,
        })).collect::<Vec<_>>(),
    });
    if let Err(e) = writeln!(stdout, "{ready}").and_then(|()| stdout.flush()) {
        let _ = writeln!(
            stderr,
            "harness agent serve: cannot write the readiness line: {e}"
        );
        return Status::Infrastructure;
    }
    let serving: Vec<String> = server
        .listening()
        .iter()
        .map(|l| format!("{}/{}", l.protocol.as_str(), l.address.port()))
        .collect();
    let _ = writeln!(
        stderr,
        "harness-agent {identity} serving {} on {} (SIGTERM or Ctrl-C stops it)",
        if serving.is_empty() {
            "no ports".to_owned()
        } else {
            serving.join(", ")
        },
        command.options.address
    );
    let status = runtime.block_on(stop);
    server.shutdown();
    let _ = writeln!(stderr, "harness-agent {identity} stopped");
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sources() {
        assert_eq!(BatchSource::from_arg("-"), BatchSource::Stdin);
        assert_eq!(
            BatchSource::from_arg(" [{\"to\":\"1.2.3.4\"}]"),
            BatchSource::Inline(" [{\"to\":\"1.2.3.4\"}]".into())
        );
        assert_eq!(
            BatchSource::from_arg("batch.json"),
            BatchSource::File("batch.json".into())
        );
        assert_eq!(Status::Interrupted.code(), 130);
    }
}
