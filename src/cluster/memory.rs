//! [`MemoryStore`]: a [`ClusterStore`] in memory, with etcd's semantics where berth relies on
//! them (one revision counter, leases that delete their keys, watches from a revision,
//! compaction). For root-free tests of the cluster logic; `set_reachable(false)` makes every
//! call fail as an unreachable etcd would, and [`MemoryStore::compact`] and
//! [`MemoryStore::expire`] reproduce what a real store does to its clients.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::store::*;
use crate::error::{Error, Result};

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    revision: Revision,
    compacted: Revision,
    kv: BTreeMap<String, KeyValue>,
    history: Vec<(Revision, WatchEvent)>,
    leases: HashMap<i64, Lease>,
    next_lease: i64,
    unreachable: bool,
}

/// An in-memory cluster store (cheap to clone: clones share the data).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<(Revision, WatchEvent)>,
    name: String,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new("memory")
    }
}

impl MemoryStore {
    /// An empty store; `name` appears in errors.
    pub fn new(name: &str) -> MemoryStore {
        let (tx, _) = broadcast::channel(4096);
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                next_lease: 1,
                ..Inner::default()
            })),
            tx,
            name: name.into(),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.unreachable {
            return Err(Error::Store {
                store: self.describe(),
                op: "connect",
                reason: "unreachable".into(),
            });
        }
        self.sweep(&mut g);
        Ok(g)
    }

    /// Makes every call fail (an etcd that is down) or work again.
    pub fn set_reachable(&self, up: bool) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unreachable = !up;
    }

    /// Forgets the history before `revision`: watches from an older one get
    /// [`WatchItem::Compacted`].
    pub fn compact(&self, revision: Revision) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.compacted = revision.min(g.revision);
        let c = g.compacted;
        g.history.retain(|(r, _)| *r >= c);
    }

    /// Ends a lease now, as its TTL running out would.
    pub fn expire(&self, lease: LeaseId) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.end_lease(&mut g, lease.0);
    }

    /// The current revision.
    pub fn revision(&self) -> Revision {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .revision
    }

    fn sweep(&self, g: &mut Inner) {
        let now = Instant::now();
        let dead: Vec<i64> = g
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.end_lease(g, id);
        }
    }

    fn end_lease(&self, g: &mut Inner, id: i64) {
        if g.leases.remove(&id).is_none() {
            return;
        }
        let keys: Vec<String> =
            g.kv.values()
                .filter(|kv| kv.lease == Some(LeaseId(id)))
                .map(|kv| kv.key.clone())
                .collect();
        if keys.is_empty() {
            return;
        }
        g.revision += 1;
        for k in keys {
            self.delete_key(g, &k);
        }
    }

    fn delete_key(&self, g: &mut Inner, key: &str) {
        if let Some(old) = g.kv.remove(key) {
            let ev = WatchEvent::Delete {
                key: key.into(),
                revision: g.revision,
                lease: old.lease,
            };
            g.history.push((g.revision, ev.clone()));
            let _ = self.tx.send((g.revision, ev));
        }
    }
}

fn under(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix)
}

#[async_trait]
impl ClusterStore for MemoryStore {
    fn describe(&self) -> String {
        format!("memory store {}", self.name)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock()?.kv.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let g = self.lock()?;
        let v =
            g.kv.range(prefix.to_string()..)
                .take_while(|(k, _)| under(k, prefix))
                .map(|(_, v)| v.clone())
                .collect();
        Ok((v, g.revision))
    }

    async fn txn(&self, txn: Txn) -> Result<bool> {
        let mut g = self.lock()?;
        let holds = txn.when.iter().all(|c| match c {
            Compare::Absent(k) => !g.kv.contains_key(k),
            Compare::ModRevision(k, r) => g.kv.get(k).is_some_and(|kv| kv.mod_revision == *r),
        });
        if !holds {
            return Ok(false);
        }
        for op in &txn.then {
            if let Op::Put { lease: Some(l), .. } = op
                && !g.leases.contains_key(&l.0)
            {
                return Err(Error::Store {
                    store: self.describe(),
                    op: "put",
                    reason: format!("requested lease not found ({})", l.0),
                });
            }
        }
        if txn.then.is_empty() {
            return Ok(true);
        }
        g.revision += 1;
        let rev = g.revision;
        for op in txn.then {
            match op {
                Op::Put { key, value, lease } => {
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        mod_revision: rev,
                        lease,
                    };
                    g.kv.insert(key, kv.clone());
                    let ev = WatchEvent::Put(kv);
                    g.history.push((rev, ev.clone()));
                    let _ = self.tx.send((rev, ev));
                }
                Op::Delete(k) => self.delete_key(&mut g, &k),
                Op::DeletePrefix(p) => {
                    let keys: Vec<String> = g.kv.keys().filter(|k| under(k, &p)).cloned().collect();
                    for k in keys {
                        self.delete_key(&mut g, &k);
                    }
                }
            }
        }
        Ok(true)
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        let mut g = self.lock()?;
        let id = g.next_lease;
        g.next_lease += 1;
        g.leases.insert(
            id,
            Lease {
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        Ok(LeaseId(id))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let mut g = self.lock()?;
        Ok(g.leases.get_mut(&lease.0).map(|l| {
            l.deadline = Instant::now() + l.ttl;
            l.ttl
        }))
    }

    async fn time_to_live(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let g = self.lock()?;
        Ok(g.leases
            .get(&lease.0)
            .map(|l| l.deadline.saturating_duration_since(Instant::now())))
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        let mut g = self.lock()?;
        self.end_lease(&mut g, lease.0);
        Ok(())
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        let g = self.lock()?;
        if from < g.compacted {
            let c = g.compacted;
            return Ok(Box::pin(futures::stream::iter([Ok(
                WatchItem::Compacted {
                    compact_revision: c,
                },
            )])));
        }
        let rx = self.tx.subscribe();
        let past: Vec<(Revision, WatchEvent)> = g
            .history
            .iter()
            .filter(|(r, e)| *r >= from && under(event_key(e), prefix))
            .cloned()
            .collect();
        let last = past.last().map_or(from - 1, |(r, _)| *r).max(g.revision);
        drop(g);
        let prefix = prefix.to_string();
        let this = self.clone();
        let backlog = futures::stream::iter((!past.is_empty()).then(|| {
            Ok(WatchItem::Events(
                past.into_iter().map(|(_, e)| e).collect(),
            ))
        }));
        let live =
            futures::stream::unfold((rx, prefix, this), move |(mut rx, p, this)| async move {
                loop {
                    match rx.recv().await {
                        Ok((r, e)) if r > last && under(event_key(&e), &p) => {
                            if this
                                .inner
                                .lock()
                                .unwrap_or_else(|x| x.into_inner())
                                .unreachable
                            {
                                return Some((Err(this.unreachable("watch")), (rx, p, this)));
                            }
                            return Some((Ok(WatchItem::Events(vec![e])), (rx, p, this)));
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            return Some((Err(this.unreachable("watch (lagged)")), (rx, p, this)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
        Ok(Box::pin(futures::StreamExt::chain(backlog, live)))
    }
}

impl MemoryStore {
    fn unreachable(&self, op: &'static str) -> Error {
        Error::Store {
            store: self.describe(),
            op,
            reason: "unreachable".into(),
        }
    }
}

fn event_key(e: &WatchEvent) -> &str {
    match e {
        WatchEvent::Put(kv) => &kv.key,
        WatchEvent::Delete { key, .. } => key,
    }
}
