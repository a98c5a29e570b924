//! Where state documents and locks live: S3 for real environments (see [`super::s3`]),
//! memory for tests (see [`super::memory`]). Both implement the same conditional-write
//! contract, so that a lost update is detected instead of silent.

use std::future::Future;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::StateFile;

/// A value together with the version tag (S3's ETag) it was read or written with.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: String,
}

/// Who holds an environment's lock, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Unique per acquisition; `unlock --force <id>` names it.
    pub id: String,
    pub who: String,
    pub host: String,
    pub pid: u32,
    /// The command holding the lock, e.g. `deploy`.
    pub operation: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339. The holder renews the lease while it runs; after this time the lock may be
    /// broken with a warning.
    pub expires_at: String,
    /// Which process holds it, precisely enough to tell from the same machine whether it still
    /// runs (see [`super::lock::process_identity`]); absent in locks of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// Someone else wrote the document since it was read: nothing was overwritten.
    #[error(
        "the state at {location} was changed by another writer (expected version {expected}); nothing was overwritten"
    )]
    Conflict { location: String, expected: String },
    /// The lock is held.
    #[error("the state at {location} is locked by {} on {} (pid {}) for `{}` since {}, lease until {}; lock id {}", .holder.who, .holder.host, .holder.pid, .holder.operation, .holder.started_at, .holder.expires_at, .holder.id)]
    Locked { location: String, holder: LockInfo },
    /// The lock is not (or no longer) ours.
    #[error("the lock at {location} is not held by this run (lock id {id})")]
    LockLost { location: String, id: String },
    /// The document exists but cannot be read as state.
    #[error("the state at {location} is unreadable: {message}")]
    Corrupt { location: String, message: String },
    /// The storage backend failed.
    #[error("{operation} on {location}: {message}")]
    Backend { location: String, operation: &'static str, message: String },
}

/// One environment's state document and lock.
pub trait StateStore: Send + Sync + 'static {
    /// A human-readable location, e.g. `s3://bucket/prefix/dev/state.json`.
    fn location(&self) -> String;

    /// Reads the state document; `None` when none was ever written.
    fn load(&self) -> impl Future<Output = Result<Option<Versioned<StateFile>>, StoreError>> + Send;

    /// Writes the document if it is still at version `expected` (`None`: only if no document
    /// exists yet). Returns the new version tag. A mismatch is [`StoreError::Conflict`].
    fn save(
        &self,
        state: &StateFile,
        expected: Option<&str>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Creates the lock object only if none exists. When one exists, fails with
    /// [`StoreError::Locked`] naming the holder.
    fn acquire_lock(&self, info: &LockInfo) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Rewrites our lock (a lease renewal) only if it is still at version `etag`.
    fn renew_lock(&self, info: &LockInfo, etag: &str) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Reads the current lock, if any.
    fn read_lock(&self) -> impl Future<Output = Result<Option<Versioned<LockInfo>>, StoreError>> + Send;

    /// Deletes the lock only if it is still at version `etag`: a release by its holder, or a
    /// forced unlock of a lock that was read first, so that a lock taken meanwhile by
    /// someone else survives. [`StoreError::LockLost`] when the version no longer matches.
    fn delete_lock(&self, etag: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
