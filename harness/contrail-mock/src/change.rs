//! The change log: every create, update and delete gets a monotonically increasing sequence
//! number; subscribers get the backlog after a sequence number and then live changes.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Created.
    Create,
    /// Properties or references changed.
    Update,
    /// Deleted.
    Delete,
}

impl ChangeKind {
    /// `create`, `update` or `delete` (the SSE event name).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Sequence number (1, 2, ...; never reused).
    pub seq: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// Hyphenated type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Object uuid.
    pub uuid: String,
    /// Object fq_name.
    pub fq_name: Vec<String>,
    /// The object as read after the change (for a delete: its last state), with its
    /// references but without back-references and children.
    pub content: Value,
}

/// Why a subscription cannot deliver what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The log no longer holds the changes after the requested sequence number (or the
    /// subscriber fell too far behind): re-list and subscribe from the current sequence.
    #[error(
        "change log truncated: changes after seq {requested} are gone (oldest kept is {oldest}); re-list and watch from seq {current}"
    )]
    Truncated {
        /// Sequence asked for.
        requested: u64,
        /// Oldest sequence still in the log.
        oldest: u64,
        /// Current sequence.
        current: u64,
    },
    /// The database was dropped.
    #[error("the config database is gone")]
    Closed,
}

/// Re-subscribes from a sequence number (used to catch up from the change log when the live
/// broadcast buffer overflowed).
pub(crate) type Resubscribe = Arc<dyn Fn(u64) -> Result<Subscription, WatchError> + Send + Sync>;

/// A change stream: first the backlog, then live changes, in sequence order without gaps.
pub struct Subscription {
    pub(crate) backlog: VecDeque<Arc<Change>>,
    pub(crate) rx: broadcast::Receiver<Arc<Change>>,
    pub(crate) last: u64,
    /// Catches up from the log when the subscriber lags behind the broadcast buffer; `None`
    /// reports the lag as `Truncated`.
    pub(crate) resubscribe: Option<Resubscribe>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("backlog", &self.backlog.len())
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next change, waiting for one when the backlog is drained.
    ///
    /// # Errors
    /// `Truncated` when the subscriber fell behind the change log itself (a subscriber that
    /// only fell behind the live buffer catches up from the log), `Closed` when the database
    /// is gone.
    pub async fn next(&mut self) -> Result<Arc<Change>, WatchError> {
        loop {
            if let Some(c) = self.backlog.pop_front() {
                self.last = c.seq;
                return Ok(c);
            }
            match self.rx.recv().await {
                Ok(c) if c.seq <= self.last => continue,
                Ok(c) => {
                    self.last = c.seq;
                    return Ok(c);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => match &self.resubscribe {
                    Some(again) => {
                        let fresh = again(self.last)?;
                        self.backlog = fresh.backlog;
                        self.rx = fresh.rx;
                    }
                    None => {
                        return Err(WatchError::Truncated {
                            requested: self.last,
                            oldest: self.last + 1,
                            current: self.last,
                        });
                    }
                },
                Err(broadcast::error::RecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }

    /// Sequence number of the last change returned (or the starting point).
    pub fn last_seq(&self) -> u64 {
        self.last
    }
}
