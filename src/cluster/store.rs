//! [`ClusterStore`]: the few operations of a consistent key-value store berth's cluster layer
//! needs — reads with a revision, compare-and-swap transactions, leases and a watch from a
//! revision. [`super::Etcd`] implements it over etcd v3, [`super::MemoryStore`] in memory (for
//! root-free tests of the agent). Keys are relative to the store's prefix.

use std::fmt::Debug;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

use crate::error::Result;

/// A store revision (etcd's `mod_revision` space).
pub type Revision = i64;

/// A lease id: keys put with it vanish when it expires or is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

/// One key and its value, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: Revision,
    /// The lease it is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// A condition of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist (`version == 0`).
    Absent(String),
    /// The key exists and was last changed at this revision.
    ModRevision(String, Revision),
}

/// An operation of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Puts a value, attached to a lease or not.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The lease.
        lease: Option<LeaseId>,
    },
    /// Deletes one key (absent is fine).
    Delete(String),
    /// Deletes every key under a prefix.
    DeletePrefix(String),
}

impl Op {
    /// A put without lease.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }
}

/// A transaction: if every comparison holds, every operation is applied, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// The conditions.
    pub when: Vec<Compare>,
    /// The operations applied when they hold.
    pub then: Vec<Op>,
}

impl Txn {
    /// A transaction applying `then` when `when` holds.
    pub fn new(when: Vec<Compare>, then: Vec<Op>) -> Txn {
        Txn { when, then }
    }
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was put.
    Put(KeyValue),
    /// A key was deleted (explicitly or by its lease ending).
    Delete {
        /// The key.
        key: String,
        /// The revision of the deletion.
        revision: Revision,
        /// The lease the key had, when the store says.
        lease: Option<LeaseId>,
    },
}

/// What a watch stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// Changes, in revision order.
    Events(Vec<WatchEvent>),
    /// The revision asked for was compacted away: the watcher must list again and start from
    /// the listed revision (never retry the old one).
    Compacted {
        /// The oldest revision the store still has.
        compact_revision: Revision,
    },
}

/// A watch: changes until the stream ends or yields an error (the store went away).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem>> + Send>>;

/// What berth needs of a cluster store. Errors of the transport are
/// [`crate::Error::Store`], naming the store ([`ClusterStore::describe`]).
#[async_trait]
pub trait ClusterStore: Send + Sync + Debug {
    /// Names the store for errors and logs (`etcd http://10.0.0.1:2379 /berth`).
    fn describe(&self) -> String;
    /// One key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Every key under `prefix`, sorted, and the store's revision of that read.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)>;
    /// Applies a transaction; returns whether its conditions held (and so it was applied).
    async fn txn(&self, txn: Txn) -> Result<bool>;
    /// Grants a lease of `ttl`.
    async fn grant(&self, ttl: Duration) -> Result<LeaseId>;
    /// Renews a lease once; `None` when the lease no longer exists (expired or revoked).
    async fn keep_alive(&self, lease: LeaseId) -> Result<Option<Duration>>;
    /// The time a lease has left; `None` when it no longer exists.
    async fn time_to_live(&self, lease: LeaseId) -> Result<Option<Duration>>;
    /// Revokes a lease: its keys are deleted.
    async fn revoke(&self, lease: LeaseId) -> Result<()>;
    /// Watches every key under `prefix` from revision `from` (inclusive).
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream>;
}
