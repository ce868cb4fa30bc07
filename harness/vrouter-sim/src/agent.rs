//! The agent loop: keeps a [`Dataplane`] in step with the VNC API, as the vrouter agent does
//! with its config feed. Changes arriving close together are applied as one batch (one
//! recompile); a change log that no longer reaches back far enough triggers a re-list.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use harness_contrail_mock::{ConfigDb, WatchError};

use crate::Dataplane;
use crate::config::source::{self, SourceError, SseWatch};

/// How long to wait for more changes before applying a batch.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(2);

fn lock(dp: &Mutex<Dataplane>) -> std::sync::MutexGuard<'_, Dataplane> {
    dp.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Follows an in-process config database from the dataplane's snapshot sequence until the
/// database is dropped. Batches of changes are applied together; when the change log is
/// truncated, the whole configuration is re-read.
///
/// # Errors
/// `Closed` when the database is gone.
pub async fn follow_db(
    db: ConfigDb,
    dp: Arc<Mutex<Dataplane>>,
    debounce: Duration,
) -> Result<(), WatchError> {
    loop {
        let since = lock(&dp).snapshot().seq;
        let mut sub = match db.subscribe(Some(since)) {
            Ok(s) => s,
            Err(WatchError::Truncated { .. }) => {
                lock(&dp).replace_snapshot(source::snapshot_from_db(&db));
                continue;
            }
            Err(e) => return Err(e),
        };
        loop {
            let first = match sub.next().await {
                Ok(c) => c,
                Err(WatchError::Truncated { .. }) => break,
                Err(e) => return Err(e),
            };
            let mut batch = vec![first];
            while let Ok(next) = tokio::time::timeout(debounce, sub.next()).await {
                match next {
                    Ok(c) => batch.push(c),
                    Err(WatchError::Truncated { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            lock(&dp).apply_changes(batch.iter().map(|c| c.as_ref()));
        }
        lock(&dp).replace_snapshot(source::snapshot_from_db(&db));
    }
}

/// Follows a VNC API's change stream (opened with [`source::follow_vnc`]) until it ends or
/// fails; the caller re-lists and follows again.
///
/// # Errors
/// The stream's error.
pub async fn follow_sse(
    mut watch: SseWatch,
    dp: Arc<Mutex<Dataplane>>,
    debounce: Duration,
) -> Result<(), SourceError> {
    loop {
        let first = watch.next().await?;
        let mut batch = vec![first];
        while let Ok(next) = tokio::time::timeout(debounce, watch.next()).await {
            batch.push(next?);
        }
        lock(&dp).apply_changes(batch.iter());
    }
}
