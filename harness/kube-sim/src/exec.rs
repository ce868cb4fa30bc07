//! `pods/exec` over WebSocket (`v5.channel.k8s.io` / `v4.channel.k8s.io`), routed to a pluggable
//! [`ExecHandler`] — the sim dataplane runs the command "inside" the pod.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// What a client asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name (defaulted to the pod's only container).
    pub container: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Whether the client streams stdin.
    pub stdin: bool,
    /// Whether a TTY was requested.
    pub tty: bool,
    /// The pod object as stored when the exec started.
    pub pod_object: Value,
}

/// The streams of one exec session. Dropping `stdout`/`stderr` ends them for the client.
pub struct ExecIo {
    /// Client stdin, if requested; reads end when the client closes stdin or disconnects.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Written bytes reach the client's stdout.
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    /// Written bytes reach the client's stderr.
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
}

impl std::fmt::Debug for ExecIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecIo")
            .field("stdin", &self.stdin.is_some())
            .finish_non_exhaustive()
    }
}

/// Why an exec could not run (reported to the client on the error channel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// A boxed future returned by [`ExecHandler::exec`]: the command's exit code, or why it could not run.
pub type ExecFuture = Pin<Box<dyn Future<Output = Result<i32, ExecError>> + Send>>;

/// Runs commands in pods on behalf of `pods/exec`.
///
/// # Usage
/// ```
/// use harness_kube_sim::{ExecError, ExecFuture, ExecHandler, ExecIo, ExecRequest};
/// use tokio::io::AsyncWriteExt;
///
/// struct Echo;
/// impl ExecHandler for Echo {
///     fn exec(&self, req: ExecRequest, mut io: ExecIo) -> ExecFuture {
///         Box::pin(async move {
///             let line = format!("{}\n", req.command.join(" "));
///             io.stdout.write_all(line.as_bytes()).await.map_err(|e| ExecError(e.to_string()))?;
///             Ok(0)
///         })
///     }
/// }
/// ```
pub trait ExecHandler: Send + Sync + 'static {
    /// Runs `request`, streaming through `io`; resolves to the exit code.
    fn exec(&self, request: ExecRequest, io: ExecIo) -> ExecFuture;
}

/// The handler used until a dataplane attaches one: every exec fails with a clear message.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDataplane;

/// The message [`NoDataplane`] answers with.
pub const NO_DATAPLANE_MESSAGE: &str = "no dataplane is attached to exec into pods yet: kube-sim serves the API, and the sim dataplane provides exec once it is running";

impl ExecHandler for NoDataplane {
    fn exec(&self, _request: ExecRequest, _io: ExecIo) -> ExecFuture {
        Box::pin(async { Err(ExecError(NO_DATAPLANE_MESSAGE.into())) })
    }
}

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

async fn pump(mut from: DuplexStream, channel: u8, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut frame = Vec::with_capacity(n + 1);
                frame.push(channel);
                frame.extend_from_slice(&buf[..n]);
                if out.send(Message::Binary(Bytes::from(frame))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The Status sent on the error channel when the command finished.
fn exit_status(command: &[String], result: &Result<i32, ExecError>) -> Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => {
            json!({"metadata": {}, "status": "Failure", "message": e.0, "reason": "InternalError", "code": 500})
        }
    }
}

/// Bridges one WebSocket to the handler.
pub(crate) async fn serve_exec(
    mut socket: WebSocket,
    handler: Arc<dyn ExecHandler>,
    request: ExecRequest,
    v5: bool,
) {
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let (stdout_w, stdout_r) = tokio::io::duplex(64 * 1024);
    let (stderr_w, stderr_r) = tokio::io::duplex(64 * 1024);
    let (stdin_w, stdin_r) = tokio::io::duplex(64 * 1024);
    let mut stdin_w = if request.stdin { Some(stdin_w) } else { None };
    let io = ExecIo {
        stdin: if request.stdin {
            Some(Box::new(stdin_r))
        } else {
            None
        },
        stdout: Box::new(stdout_w),
        stderr: Box::new(stderr_w),
    };
    let command = request.command.clone();
    let run = tokio::spawn(async move { handler.exec(request, io).await });
    let p_out = tokio::spawn(pump(stdout_r, STDOUT, out_tx.clone()));
    let p_err = tokio::spawn(pump(stderr_r, STDERR, out_tx.clone()));
    // The finisher waits for the command and its output, then sends the status and closes.
    let finisher = {
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            let result = match run.await {
                Ok(r) => r,
                Err(e) => Err(ExecError(format!("the exec handler failed: {e}"))),
            };
            let _ = p_out.await;
            let _ = p_err.await;
            let mut frame = vec![ERROR];
            frame.extend_from_slice(exit_status(&command, &result).to_string().as_bytes());
            let _ = out_tx.send(Message::Binary(Bytes::from(frame))).await;
            let _ = out_tx.send(Message::Close(None)).await;
        })
    };
    drop(out_tx);
    loop {
        tokio::select! {
            msg = out_rx.recv() => match msg {
                Some(Message::Close(_)) | None => {
                    // A normal closure (1000): clients treat "no status" (1005) as an error.
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::NORMAL,
                            reason: "".into(),
                        })))
                        .await;
                    break;
                }
                Some(m) => {
                    if socket.send(m).await.is_err() {
                        break;
                    }
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(&STDIN) => {
                        if let Some(w) = stdin_w.as_mut()
                            && w.write_all(&data[1..]).await.is_err()
                        {
                            stdin_w = None;
                        }
                    }
                    Some(&CLOSE) if v5 && data.get(1) == Some(&STDIN) => {
                        if let Some(mut w) = stdin_w.take() {
                            let _ = w.shutdown().await;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    stdin_w = None;
                    // Keep draining output until the finisher closes, unless the peer is gone.
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    drop(stdin_w);
    finisher.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cmd = vec!["sh".to_string()];
        assert_eq!(exit_status(&cmd, &Ok(0))["status"], "Success");
        let failed = exit_status(&cmd, &Ok(3));
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let err = exit_status(&cmd, &Err(ExecError(NO_DATAPLANE_MESSAGE.into())));
        assert!(err["message"].as_str().unwrap().contains("no dataplane"));
    }
}
