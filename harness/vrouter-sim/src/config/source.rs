//! Where the agent reads its configuration: an in-process [`ConfigDb`] (list + `subscribe`)
//! or a VNC API over HTTP (`VncClient` list + the `GET /watch` server-sent events).
//!
//! Both give a [`Snapshot`] with the sequence number it is consistent with, then the changes
//! after it, so nothing is missed between the list and the watch.

use std::collections::VecDeque;

use bytes::Bytes;
use harness_contrail_mock::{Change, ChangeKind, ConfigDb};
use harness_contrail_vnc::{ListParams, VncClient, VncError};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{RELEVANT_TYPES, Snapshot};

/// Why the configuration could not be read or followed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A VNC API call failed.
    #[error("reading the VNC API failed: {0}")]
    Vnc(#[from] VncError),
    /// The change stream could not be opened or broke.
    #[error("the VNC change stream at {url} failed: {message}")]
    Watch {
        /// The watch URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The change stream ended.
    #[error("the VNC change stream at {0} ended; re-list and watch again")]
    Ended(String),
}

/// A snapshot of every forwarding-relevant object in `db`, consistent with
/// `db.current_seq()` at the time of the call (subscribe from [`Snapshot::seq`] to follow).
pub fn snapshot_from_db(db: &ConfigDb) -> Snapshot {
    let mut snap = Snapshot::new();
    snap.seq = db.current_seq();
    for t in RELEVANT_TYPES {
        if let Ok(objs) = db.list(t, &ListParams::default()) {
            for o in objs {
                snap.insert(o);
            }
        }
    }
    snap
}

/// Lists every forwarding-relevant object over the VNC API (`detail=True`).
///
/// # Errors
/// The first failing list call.
pub async fn snapshot_from_vnc(client: &VncClient) -> Result<Snapshot, SourceError> {
    let mut snap = Snapshot::new();
    let params = ListParams {
        detail: true,
        ..ListParams::default()
    };
    for t in RELEVANT_TYPES {
        for o in client.list(t, &params).await? {
            snap.insert(o);
        }
    }
    Ok(snap)
}

/// Opens the change stream first, then lists, so that every change after the list is
/// delivered by the returned watch (changes the list already shows may be delivered again;
/// applying them twice is harmless).
///
/// # Errors
/// When the watch cannot be opened or a list call fails.
pub async fn follow_vnc(client: &VncClient) -> Result<(Snapshot, SseWatch), SourceError> {
    let watch = SseWatch::connect(client.base_url(), None, RELEVANT_TYPES).await?;
    let mut snap = snapshot_from_vnc(client).await?;
    snap.seq = watch.last_seq;
    Ok((snap, watch))
}

/// A reader of the `GET /watch` server-sent events of a VNC API.
pub struct SseWatch {
    url: String,
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    pending: VecDeque<Change>,
    /// Sequence number of the last change read (or of the `init` event).
    pub last_seq: u64,
}

impl std::fmt::Debug for SseWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseWatch")
            .field("url", &self.url)
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

impl SseWatch {
    /// Opens `GET <base>/watch?since=N&resource_type=...` and reads the `init` event.
    ///
    /// # Errors
    /// Connection failure, a status other than 200 (410 when `since` is older than the
    /// server's log), or a stream that ends before `init`.
    pub async fn connect(
        base_url: &str,
        since: Option<u64>,
        types: &[&str],
    ) -> Result<SseWatch, SourceError> {
        let mut query = vec![format!("resource_type={}", types.join(","))];
        if let Some(s) = since {
            query.push(format!("since={s}"));
        }
        let url = format!(
            "{}/watch?{}",
            base_url.trim_end_matches('/'),
            query.join("&")
        );
        let err = |message: String| SourceError::Watch {
            url: url.clone(),
            message,
        };
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let uri: http::Uri = url.parse().map_err(|e| err(format!("bad URL: {e}")))?;
        let resp = client.get(uri).await.map_err(|e| err(e.to_string()))?;
        if resp.status() != http::StatusCode::OK {
            return Err(err(format!("status {}", resp.status())));
        }
        let mut w = SseWatch {
            url: url.clone(),
            body: resp.into_body(),
            buf: Vec::new(),
            pending: VecDeque::new(),
            last_seq: since.unwrap_or(0),
        };
        loop {
            let (event, data) = w.next_event().await?;
            if event == "init" {
                if let Some(seq) = serde_json::from_str::<Value>(&data)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(Value::as_u64))
                {
                    w.last_seq = w.last_seq.max(seq);
                }
                return Ok(w);
            }
            if let Some(c) = parse_change(&event, &data) {
                w.pending.push_back(c);
            }
        }
    }

    /// The next change.
    ///
    /// # Errors
    /// The stream ended or reported an error (re-list and watch again).
    pub async fn next(&mut self) -> Result<Change, SourceError> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                self.last_seq = self.last_seq.max(c.seq);
                return Ok(c);
            }
            let (event, data) = self.next_event().await?;
            if event == "error" {
                return Err(SourceError::Watch {
                    url: self.url.clone(),
                    message: data,
                });
            }
            if let Some(c) = parse_change(&event, &data) {
                self.pending.push_back(c);
            }
        }
    }

    async fn next_event(&mut self) -> Result<(String, String), SourceError> {
        loop {
            if let Some(end) = find_blank_line(&self.buf) {
                let raw: Vec<u8> = self.buf.drain(..end).collect();
                let text = String::from_utf8_lossy(&raw);
                let mut event = String::from("message");
                let mut data = String::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() && event == "message" {
                    continue; // comment or keep-alive
                }
                return Ok((event, data));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    return Err(SourceError::Watch {
                        url: self.url.clone(),
                        message: e.to_string(),
                    });
                }
                None => return Err(SourceError::Ended(self.url.clone())),
            }
        }
    }
}

/// Index just past the first blank line (`\n\n` or `\r\n\r\n`).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_change(event: &str, data: &str) -> Option<Change> {
    let kind = match event {
        "create" => ChangeKind::Create,
        "update" => ChangeKind::Update,
        "delete" => ChangeKind::Delete,
        _ => return None,
    };
    let v: Value = serde_json::from_str(data).ok()?;
    Some(Change {
        seq: v.get("seq")?.as_u64()?,
        kind,
        type_name: v.get("type")?.as_str()?.to_owned(),
        uuid: v.get("uuid")?.as_str()?.to_owned(),
        fq_name: v
            .get("fq_name")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        content: v.get("content").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_parse_and_garbage_is_ignored() {
        let c = parse_change(
            "update",
            r#"{"seq": 7, "type": "virtual-network", "uuid": "u", "fq_name": ["a"], "content": {}}"#,
        )
        .expect("change");
        assert_eq!((c.seq, c.kind), (7, ChangeKind::Update));
        assert!(parse_change("update", "{not json").is_none());
        assert!(parse_change("ping", "{}").is_none());
        assert_eq!(find_blank_line(b"event: a\ndata: b\n\nrest"), Some(18));
        assert_eq!(find_blank_line(b"event: a\r\n\r\n"), Some(12));
    }
}
