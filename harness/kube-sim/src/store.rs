//! The in-memory object store: one map per resource, a cluster-wide monotonic resourceVersion,
//! a bounded event history for watch replay, and a broadcast of every change.
//!
//! All writes happen inside [`Store::write`], which holds the store lock for the whole
//! transaction, so a read-modify-write (update, patch, apply, allocation) is atomic, and the
//! events of one transaction are published in resourceVersion order.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::registry::GroupResource;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventType {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change recorded in the store's history.
#[derive(Debug)]
pub struct StoreEvent {
    /// The resourceVersion this change produced.
    pub revision: u64,
    /// The resource the object belongs to.
    pub resource: GroupResource,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for deletes, the last state with the deletion's resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change, for updates and deletes.
    pub previous: Option<Arc<Value>>,
    /// The serialized watch line `{"type":..,"object":..}\n`, made once and shared by watchers.
    line: OnceLock<Bytes>,
}

impl StoreEvent {
    pub(crate) fn new(
        revision: u64,
        resource: GroupResource,
        namespace: String,
        kind: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) -> Self {
        StoreEvent {
            revision,
            resource,
            namespace,
            kind,
            object,
            previous,
            line: OnceLock::new(),
        }
    }

    /// The newline-terminated JSON watch event for this change, serialized once.
    pub(crate) fn watch_line(&self) -> Bytes {
        self.line
            .get_or_init(|| watch_line(self.kind.as_str(), &self.object))
            .clone()
    }
}

/// Serializes one watch event line.
pub(crate) fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    crate::util::write_json(&mut buf, object);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

pub(crate) type ObjectKey = (String, String);

/// IP and port allocations of Services, kept with the objects so they survive restarts.
#[derive(Debug, Default)]
pub(crate) struct Allocations {
    pub cluster_ips: BTreeSet<u32>,
    pub node_ports: BTreeSet<u16>,
    pub next_ip: u32,
    pub next_port: u16,
}

/// The lock-protected state.
#[derive(Debug, Default)]
pub(crate) struct StoreState {
    pub objects: HashMap<GroupResource, BTreeMap<ObjectKey, Arc<Value>>>,
    pub revision: u64,
    history: VecDeque<Arc<StoreEvent>>,
    history_limit: usize,
    /// Highest revision whose event is no longer in the history.
    compacted: u64,
    pub alloc: Allocations,
}

/// A handle to the object store, shared by the API handlers and the controllers.
///
/// Objects are returned as stored: JSON values whose `metadata.managedFields`, when present, is
/// one compact JSON string (clients over the API see the usual array).
#[derive(Clone)]
pub struct Store {
    state: Arc<Mutex<StoreState>>,
    events: broadcast::Sender<Arc<StoreEvent>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Changes staged by a transaction; published when it commits.
pub(crate) struct Txn<'a> {
    pub state: &'a mut StoreState,
    pending: Vec<Arc<StoreEvent>>,
    dry_run: bool,
}

impl Txn<'_> {
    pub fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.state
            .objects
            .get(gr)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource, optionally in one namespace, in key order.
    pub fn list(&self, gr: &GroupResource, ns: Option<&str>) -> Vec<Arc<Value>> {
        list_in(self.state, gr, ns)
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Stores `obj` (creating or replacing it) with a new resourceVersion; returns what was stored.
    pub fn put(&mut self, gr: &GroupResource, ns: &str, name: &str, mut obj: Value) -> Arc<Value> {
        let rev = self.state.revision + 1;
        crate::util::meta_mut(&mut obj)
            .insert("resourceVersion".into(), Value::String(rev.to_string()));
        crate::util::compact_managed_fields(&mut obj);
        let obj = Arc::new(obj);
        if self.dry_run {
            return obj;
        }
        self.state.revision = rev;
        let previous = self
            .state
            .objects
            .entry(gr.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj.clone());
        let kind = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(rev, gr, ns, kind, obj.clone(), previous);
        obj
    }

    /// Removes an object; the DELETED event carries the deletion's resourceVersion.
    pub fn remove(&mut self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        let key = (ns.to_string(), name.to_string());
        let existing = self.state.objects.get(gr)?.get(&key)?.clone();
        let rev = self.state.revision + 1;
        let mut last = (*existing).clone();
        crate::util::meta_mut(&mut last)
            .insert("resourceVersion".into(), Value::String(rev.to_string()));
        let last = Arc::new(last);
        if self.dry_run {
            return Some(last);
        }
        self.state.revision = rev;
        if let Some(m) = self.state.objects.get_mut(gr) {
            m.remove(&key);
        }
        self.record(
            rev,
            gr,
            ns,
            EventType::Deleted,
            last.clone(),
            Some(existing),
        );
        Some(last)
    }

    fn record(
        &mut self,
        revision: u64,
        gr: &GroupResource,
        ns: &str,
        kind: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        self.pending.push(Arc::new(StoreEvent {
            revision,
            resource: gr.clone(),
            namespace: ns.to_string(),
            kind,
            object,
            previous,
            line: OnceLock::new(),
        }));
    }
}

fn list_in(state: &StoreState, gr: &GroupResource, ns: Option<&str>) -> Vec<Arc<Value>> {
    let Some(map) = state.objects.get(gr) else {
        return Vec::new();
    };
    match ns {
        Some(ns) => map
            .range((ns.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|(_, v)| v.clone())
            .collect(),
        None => map.values().cloned().collect(),
    }
}

/// Where a new watch starts.
pub(crate) enum WatchStart {
    /// Replay these history events, then follow live ones.
    Replay(Vec<Arc<StoreEvent>>),
    /// The requested revision was compacted away: answer 410 Gone.
    Expired { oldest: u64 },
}

impl Store {
    /// An empty store keeping the last `history_limit` events for watch replay.
    pub fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(1024);
        let state = StoreState {
            history_limit: history_limit.max(1),
            ..StoreState::default()
        };
        Store {
            state: Arc::new(Mutex::new(state)),
            events,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, StoreState> {
        // A panicking writer cannot leave partial state behind (transactions publish on success
        // only), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a transaction; its changes are published only when `f` succeeds (and not for dry runs).
    pub(crate) fn write<R, E>(
        &self,
        dry_run: bool,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut guard = self.lock();
        let snapshot_rev = guard.revision;
        let mut txn = Txn {
            state: &mut guard,
            pending: Vec::new(),
            dry_run,
        };
        let result = f(&mut txn);
        let pending = std::mem::take(&mut txn.pending);
        match result {
            Ok(r) => {
                for ev in pending {
                    guard.history.push_back(ev.clone());
                    // No receivers is fine.
                    let _ = self.events.send(ev);
                }
                while guard.history.len() > guard.history_limit {
                    if let Some(old) = guard.history.pop_front() {
                        guard.compacted = old.revision;
                    }
                }
                Ok(r)
            }
            Err(e) => {
                // Roll back: transactions that fail after staging writes restore the previous objects.
                for ev in pending.iter().rev() {
                    let key = (
                        ev.namespace.clone(),
                        crate::util::meta_str(&ev.object, "name")
                            .unwrap_or("")
                            .to_string(),
                    );
                    let map = guard.objects.entry(ev.resource.clone()).or_default();
                    match &ev.previous {
                        Some(prev) => {
                            map.insert(key, prev.clone());
                        }
                        None => {
                            map.remove(&key);
                        }
                    }
                }
                guard.revision = snapshot_rev;
                Err(e)
            }
        }
    }

    /// The current resourceVersion of the whole store.
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// One object.
    pub fn get(&self, gr: &GroupResource, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.lock()
            .objects
            .get(gr)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Several objects of one resource, read under one lock (missing ones are skipped).
    pub fn get_many(&self, gr: &GroupResource, keys: &[(String, String)]) -> Vec<Arc<Value>> {
        let state = self.lock();
        let Some(map) = state.objects.get(gr) else {
            return Vec::new();
        };
        keys.iter().filter_map(|k| map.get(k).cloned()).collect()
    }

    /// Objects of a resource (optionally in one namespace) and the revision they were read at.
    pub fn list(&self, gr: &GroupResource, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let state = self.lock();
        (list_in(&state, gr, namespace), state.revision)
    }

    /// Subscribes to every future change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.events.subscribe()
    }

    /// Subscribes and collects the history after `since` atomically, so nothing is missed or doubled.
    pub(crate) fn watch_from(
        &self,
        since: u64,
    ) -> (WatchStart, broadcast::Receiver<Arc<StoreEvent>>) {
        let state = self.lock();
        let rx = self.events.subscribe();
        if since < state.compacted {
            return (
                WatchStart::Expired {
                    oldest: state.compacted + 1,
                },
                rx,
            );
        }
        let replay = state
            .history
            .iter()
            .filter(|e| e.revision > since)
            .cloned()
            .collect();
        (WatchStart::Replay(replay), rx)
    }

    /// History after `since` (for a watcher that lagged behind the broadcast), or `None` if compacted.
    pub(crate) fn history_since(&self, since: u64) -> Option<Vec<Arc<StoreEvent>>> {
        let state = self.lock();
        if since < state.compacted {
            return None;
        }
        Some(
            state
                .history
                .iter()
                .filter(|e| e.revision > since)
                .cloned()
                .collect(),
        )
    }

    /// The revision below which watch replay is no longer possible.
    pub fn compacted_revision(&self) -> u64 {
        self.lock().compacted
    }

    /// Drops the whole history (as an etcd compaction would); watches from older revisions get 410.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.history.clear();
        state.compacted = state.revision;
    }

    /// Number of objects across all resources.
    pub fn object_count(&self) -> usize {
        self.lock().objects.values().map(BTreeMap::len).sum()
    }
}

/// A BOOKMARK event line at `revision` for the given kind.
pub(crate) fn bookmark_line(
    api_version: &str,
    kind: &str,
    revision: u64,
    initial_events_end: bool,
) -> Bytes {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    watch_line(
        "BOOKMARK",
        &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gr() -> GroupResource {
        GroupResource::new("", "configmaps")
    }

    #[test]
    fn revisions_are_monotonic_and_history_compacts() {
        let store = Store::new(2);
        for i in 0..3 {
            store
                .write::<_, ()>(false, |t| {
                    t.put(
                        &gr(),
                        "default",
                        &format!("c{i}"),
                        json!({"metadata": {"name": format!("c{i}")}}),
                    );
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(store.revision(), 3);
        assert_eq!(store.compacted_revision(), 1);
        assert!(matches!(store.watch_from(0).0, WatchStart::Expired { .. }));
        match store.watch_from(1).0 {
            WatchStart::Replay(evs) => assert_eq!(evs.len(), 2),
            WatchStart::Expired { .. } => panic!("history from 1 is kept"),
        }
    }

    #[test]
    fn failed_transactions_roll_back() {
        let store = Store::new(10);
        let r: Result<(), &str> = store.write(false, |t| {
            t.put(&gr(), "default", "a", json!({"metadata": {"name": "a"}}));
            Err("no")
        });
        assert!(r.is_err());
        assert!(store.get(&gr(), "default", "a").is_none());
        assert_eq!(store.revision(), 0);
    }
}
