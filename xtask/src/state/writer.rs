//! The single writer of an environment's state document.
//!
//! A run opens one [`StateWriter`], which holds the document and the version tag (ETag) it
//! was loaded or last written with. Every mutation builds the next document, bumps its
//! `serial` and writes it with `If-Match` on that tag (`If-None-Match: *` for a new
//! document); only when the write succeeds does the writer adopt it. Writes are serialized by
//! `&mut self`: the engine owns the writer in one task, or behind a `tokio::sync::Mutex`.
//!
//! A write refused because the document changed is never retried blindly: the writer reads
//! what is there, and unless it is exactly the document it just tried to write (its own
//! write landed and only the answer was lost, e.g. an SDK retry of a PUT that had succeeded)
//! it returns [`StoreError::Conflict`] and the engine stops. A document of another lineage is
//! never overwritten.

use std::sync::Arc;

use serde_json::Value;

use super::store::{StateStore, StoreError, Versioned};
#[cfg(test)]
use super::Pending;
use super::{Change, ResourceState, StateFile, FORMAT_VERSION};
use crate::engine::resource::ResourceId;

/// Owns one environment's state document for a run. See the module docs.
#[derive(Debug)]
pub struct StateWriter<S: StateStore> {
    store: Arc<S>,
    state: StateFile,
    /// `None` while the document has never been written.
    etag: Option<String>,
    /// A document whose write failed with an unknown outcome (e.g. a timeout): it may or may
    /// not be stored. Resolved by reading before the next write.
    unconfirmed: Option<StateFile>,
}

#[allow(clippy::result_large_err)] // StoreError::Locked holds a LockInfo inline (store.rs).
fn check_readable(location: &str, state: &StateFile) -> Result<(), StoreError> {
    if state.version > FORMAT_VERSION {
        return Err(StoreError::Corrupt {
            location: location.to_owned(),
            message: format!(
                "it is in state format {}, written by a newer xtask; this one reads format {FORMAT_VERSION}",
                state.version
            ),
        });
    }
    if state.lineage.trim().is_empty() {
        return Err(StoreError::Corrupt { location: location.to_owned(), message: "it has no lineage".to_owned() });
    }
    Ok(())
}

impl<S: StateStore> StateWriter<S> {
    /// Loads the environment's document, or starts a new one (fresh lineage, serial 0) that is
    /// written on the first mutation, only if no document exists by then.
    pub async fn open(store: Arc<S>) -> Result<Self, StoreError> {
        let (state, etag) = match store.load().await? {
            Some(Versioned { value, etag }) => {
                check_readable(&store.location(), &value)?;
                (value, Some(etag))
            }
            None => (StateFile::new(), None),
        };
        Ok(Self { store, state, etag, unconfirmed: None })
    }

    /// The document as last written (or loaded).
    pub fn state(&self) -> &StateFile {
        &self.state
    }

    /// The version tag the document was last written or loaded with; `None` while it has
    /// never been written.
    #[cfg(test)]
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Where the document lives.
    #[cfg(test)]
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// The store, e.g. to take the lock on it.
    #[cfg(test)]
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Journals an operation before the cloud is touched.
    #[cfg(test)]
    pub async fn begin(&mut self, id: ResourceId, pending: Pending) -> Result<(), StoreError> {
        self.update(|state| Change::Begin(id, pending).apply(state)).await
    }

    /// Records a resource created, updated or adopted, and clears its pending entry.
    pub async fn finish_create_or_update(&mut self, id: ResourceId, resource: ResourceState) -> Result<(), StoreError> {
        self.update(|state| Change::Recorded(id, resource).apply(state)).await
    }

    /// Forgets a deleted resource, and clears its pending entry.
    pub async fn finish_delete(&mut self, id: &ResourceId) -> Result<(), StoreError> {
        self.update(|state| Change::Deleted(id.clone()).apply(state)).await
    }

    /// Clears a pending entry: the operation failed without effect, or a crash's leftover was
    /// resolved.
    pub async fn clear_pending(&mut self, id: &ResourceId) -> Result<(), StoreError> {
        self.update(|state| {
            state.pending.remove(id);
        })
        .await
    }

    pub async fn set_account_id(&mut self, account_id: impl Into<String>) -> Result<(), StoreError> {
        let account_id = account_id.into();
        self.update(|state| state.account_id = Some(account_id)).await
    }

    /// Replaces a named record section (deployment history, smoke-test results, ...).
    pub async fn set_record(&mut self, name: impl Into<String>, value: Value) -> Result<(), StoreError> {
        let name = name.into();
        self.update(|state| {
            state.records.insert(name, value);
        })
        .await
    }

    /// Writes the document if it has never been written, so that the environment's lineage
    /// is fixed from now on.
    #[cfg(test)]
    pub async fn persist(&mut self) -> Result<(), StoreError> {
        self.resolve_unconfirmed().await?;
        if self.etag.is_some() {
            return Ok(());
        }
        let mut next = self.state.clone();
        next.serial += 1;
        self.write(next).await
    }

    /// Applies `mutate` to a copy of the document and writes it with the next serial; a
    /// mutation that changes nothing writes nothing. `version`, `lineage` and `serial` are
    /// the writer's: changes `mutate` makes to them are ignored. On any error the writer's
    /// document is unchanged.
    pub async fn update(&mut self, mutate: impl FnOnce(&mut StateFile)) -> Result<(), StoreError> {
        self.resolve_unconfirmed().await?;
        let mut next = self.state.clone();
        mutate(&mut next);
        next.version = FORMAT_VERSION;
        next.lineage.clone_from(&self.state.lineage);
        next.serial = self.state.serial;
        if next == self.state {
            return Ok(());
        }
        next.serial += 1;
        self.write(next).await
    }

    async fn write(&mut self, next: StateFile) -> Result<(), StoreError> {
        match self.store.save(&next, self.etag.as_deref()).await {
            Ok(etag) => {
                self.adopt(next, etag);
                Ok(())
            }
            Err(StoreError::Conflict { location, expected }) => {
                // Not a blind retry: see what is there now.
                let current = self.store.load().await?;
                match current {
                    Some(current) if current.value == next => {
                        // Our write landed; only its answer was lost.
                        self.adopt(next, current.etag);
                        Ok(())
                    }
                    Some(current) if self.etag.is_some() && current.value.lineage != next.lineage => {
                        Err(StoreError::Corrupt {
                            location,
                            message: format!(
                                "another state (lineage {}, serial {}) was written in place of the one this run \
                                 loaded (lineage {}, serial {}); refusing to overwrite it",
                                current.value.lineage, current.value.serial, self.state.lineage, self.state.serial
                            ),
                        })
                    }
                    _ => Err(StoreError::Conflict { location, expected }),
                }
            }
            Err(error) => {
                // The write may or may not have landed.
                self.unconfirmed = Some(next);
                Err(error)
            }
        }
    }

    fn adopt(&mut self, state: StateFile, etag: String) {
        self.state = state;
        self.etag = Some(etag);
        self.unconfirmed = None;
    }

    /// After a write with an unknown outcome: adopts it if it landed, forgets it if the
    /// document is still the one we had, and reports a conflict otherwise.
    async fn resolve_unconfirmed(&mut self) -> Result<(), StoreError> {
        let Some(attempted) = self.unconfirmed.take() else { return Ok(()) };
        let current = self.store.load().await.inspect_err(|_| self.unconfirmed = Some(attempted.clone()))?;
        match current {
            Some(current) if current.value == attempted => {
                self.adopt(attempted, current.etag);
                Ok(())
            }
            Some(current) if Some(current.etag.as_str()) == self.etag.as_deref() => Ok(()),
            None if self.etag.is_none() => Ok(()),
            _ => Err(StoreError::Conflict {
                location: self.store.location(),
                expected: self.etag.clone().unwrap_or_else(|| "none (a new document)".to_owned()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::engine::resource::Kind;
    use crate::state::memory::{MemoryStore, SaveFault};
    use crate::state::Operation;

    fn pending(operation: Operation) -> Pending {
        Pending {
            operation,
            kind: Kind::Role,
            name: "image-analyzer-dev-analyze".to_owned(),
            inputs: BTreeMap::from([("path".to_owned(), Value::from("/"))]),
            depends_on: BTreeSet::new(),
            started_at: "2025-01-01T00:00:00Z".to_owned(),
        }
    }

    fn role() -> ResourceState {
        ResourceState {
            kind: Kind::Role,
            name: "image-analyzer-dev-analyze".to_owned(),
            physical_id: "image-analyzer-dev-analyze".to_owned(),
            inputs: BTreeMap::from([("path".to_owned(), Value::from("/"))]),
            outputs: BTreeMap::from([("arn".to_owned(), Value::from("arn:aws:iam::123456789012:role/x"))]),
            depends_on: BTreeSet::new(),
        }
    }

    fn id() -> ResourceId {
        ResourceId::new("role.analyze")
    }

    #[tokio::test]
    async fn a_new_document_is_written_on_the_first_mutation() {
        let store = Arc::new(MemoryStore::new());
        let mut writer = StateWriter::open(Arc::clone(&store)).await.unwrap();
        assert_eq!((writer.state().serial, writer.etag()), (0, None));
        writer.clear_pending(&id()).await.unwrap();
        assert_eq!(store.document_writes(), 0, "nothing changed, nothing written");

        writer.begin(id(), pending(Operation::Create)).await.unwrap();
        assert_eq!(writer.state().serial, 1);
        assert_eq!(store.document().unwrap(), *writer.state());
        assert_eq!(store.document_etag().as_deref(), writer.etag());
    }

    #[tokio::test]
    async fn every_write_bumps_the_serial_and_keeps_the_lineage() {
        let store = Arc::new(MemoryStore::new());
        let mut writer = StateWriter::open(Arc::clone(&store)).await.unwrap();
        let lineage = writer.state().lineage.clone();

        writer.begin(id(), pending(Operation::Create)).await.unwrap();
        assert!(store.document().unwrap().pending.contains_key(&id()), "journaled before the mutation");
        writer.finish_create_or_update(id(), role()).await.unwrap();
        writer.set_account_id("123456789012").await.unwrap();
        writer.set_record("history", serde_json::json!([{"serial": 3}])).await.unwrap();
        writer.begin(id(), pending(Operation::Delete)).await.unwrap();
        writer.finish_delete(&id()).await.unwrap();
        writer.set_account_id("123456789012").await.unwrap();

        let stored = store.document().unwrap();
        assert_eq!(stored, *writer.state());
        assert_eq!((stored.serial, store.document_writes()), (6, 6));
        assert_eq!(stored.lineage, lineage);
        assert!(stored.pending.is_empty() && stored.resources.is_empty());
        assert_eq!(stored.account_id.as_deref(), Some("123456789012"));
        assert_eq!(stored.records["history"], serde_json::json!([{"serial": 3}]));

        let mut reopened = StateWriter::open(Arc::clone(&store)).await.unwrap();
        assert_eq!(reopened.state(), writer.state());
        reopened.update(|state| state.serial = 99).await.unwrap();
        assert_eq!(store.document_writes(), 6, "serial is the writer's, so nothing changed");
    }

    #[tokio::test]
    async fn finish_records_the_resource_and_clears_pending() {
        let store = Arc::new(MemoryStore::new());
        let mut writer = StateWriter::open(Arc::clone(&store)).await.unwrap();
        writer.begin(id(), pending(Operation::Create)).await.unwrap();
        writer.finish_create_or_update(id(), role()).await.unwrap();
        let stored = store.document().unwrap();
        assert!(stored.pending.is_empty());
        assert_eq!(stored.resources[&id()], role());
        assert_eq!(stored.serial, 2);
    }

    #[tokio::test]
    async fn a_concurrent_writer_wins_and_ours_fails_with_conflict() {
        let store = Arc::new(MemoryStore::new());
        StateWriter::open(Arc::clone(&store)).await.unwrap().persist().await.unwrap();
        let mut ours = StateWriter::open(Arc::clone(&store)).await.unwrap();
        let mut theirs = StateWriter::open(Arc::clone(&store)).await.unwrap();

        theirs.finish_create_or_update(id(), role()).await.unwrap();
        let their_bytes = store.raw_document().unwrap();
        let before = ours.state().clone();

        let error = ours.begin(ResourceId::new("bucket.uploads"), pending(Operation::Create)).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
        assert!(error.to_string().contains("nothing was overwritten"), "{error}");
        assert_eq!(store.raw_document().unwrap(), their_bytes, "their document survives byte for byte");
        assert_eq!(*ours.state(), before, "ours is unchanged");

        let error = ours.set_account_id("123456789012").await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict { .. }), "no blind retry: {error}");
        assert_eq!(store.raw_document().unwrap(), their_bytes);
    }

    #[tokio::test]
    async fn two_new_documents_race_and_the_second_is_refused() {
        let store = Arc::new(MemoryStore::new());
        let mut first = StateWriter::open(Arc::clone(&store)).await.unwrap();
        let mut second = StateWriter::open(Arc::clone(&store)).await.unwrap();
        first.persist().await.unwrap();
        let bytes = store.raw_document().unwrap();
        let error = second.set_account_id("123456789012").await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
        assert_eq!(store.raw_document().unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_document_of_another_lineage_is_never_overwritten() {
        let store = Arc::new(MemoryStore::with_state(&StateFile::new()));
        let mut writer = StateWriter::open(Arc::clone(&store)).await.unwrap();
        let mut other = StateFile::new();
        other.serial = 7;
        let replaced = serde_json::to_string_pretty(&other).unwrap();
        store.put_raw_document(replaced.clone());

        let error = writer.begin(id(), pending(Operation::Create)).await.unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{message}");
        assert!(message.contains(&other.lineage) && message.contains(&writer.state().lineage), "{message}");
        assert_eq!(store.raw_document().unwrap(), replaced);
    }

    #[tokio::test]
    async fn a_document_from_a_newer_format_is_refused() {
        let mut newer = StateFile::new();
        newer.version = FORMAT_VERSION + 1;
        let store = Arc::new(MemoryStore::with_state(&newer));
        let error = StateWriter::open(store).await.unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("newer xtask"), "{error}");
    }

    #[tokio::test]
    async fn a_write_whose_answer_was_lost_is_adopted_not_repeated() {
        let store = Arc::new(MemoryStore::new());
        let mut writer = StateWriter::open(Arc::clone(&store)).await.unwrap();
        writer.persist().await.unwrap();

        store.fault_next_save(SaveFault::RetryRefused);
        writer.begin(id(), pending(Operation::Create)).await.unwrap();
        assert_eq!((writer.state().serial, store.document_writes()), (2, 2));
        assert_eq!(store.document_etag().as_deref(), writer.etag());

        store.fault_next_save(SaveFault::LoseAnswer);
        let error = writer.finish_create_or_update(id(), role()).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend { .. }), "{error}");
        assert_eq!(writer.state().serial, 2, "unconfirmed, not adopted yet");
        writer.set_account_id("123456789012").await.unwrap();
        let stored = store.document().unwrap();
        assert_eq!(stored.serial, 4);
        assert_eq!(stored.resources[&id()], role(), "the landed write was adopted first");
        assert_eq!(stored, *writer.state());

        store.fault_next_save(SaveFault::Fail);
        writer.clear_pending(&ResourceId::new("nothing")).await.unwrap();
        writer.set_record("history", Value::Null).await.unwrap_err();
        writer.set_record("history", Value::Null).await.unwrap();
        assert_eq!(store.document().unwrap().serial, 5, "the failed write did not land; the retry did");
    }
}
