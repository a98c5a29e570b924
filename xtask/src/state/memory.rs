//! An in-memory [`StateStore`]: the engine's test double.
//!
//! It keeps the state document and the lock as the bytes S3 would hold (pretty JSON), each
//! with an ETag derived from its content as S3's is, and applies exactly the conditional
//! rules S3 applies to `If-Match` / `If-None-Match`:
//!
//! | call | object absent | ETag matches | ETag differs |
//! |---|---|---|---|
//! | `save(_, None)` (`If-None-Match: *`) | written | `Conflict` | `Conflict` |
//! | `save(_, Some(e))` (`If-Match: e`) | `Conflict` (S3: 404) | written | `Conflict` (S3: 412) |
//! | `acquire_lock` (`If-None-Match: *`) | written | `Locked` | `Locked` |
//! | `renew_lock(_, e)` (`If-Match: e`) | `LockLost` | written | `LockLost` |
//! | `delete_lock(e)` (`If-Match: e`) | `LockLost` | deleted | `LockLost` |
//!
//! Tests can read the raw stored JSON, count writes, plant documents or locks as another
//! writer would, and make the next save fail as a network error would ([`SaveFault`]).

use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::store::{LockInfo, StateStore, StoreError, Versioned};
use super::StateFile;
use crate::engine::resource::ResourceId;

/// One stored object: its bytes and its ETag.
#[derive(Debug, Clone)]
struct Object {
    bytes: Vec<u8>,
    etag: String,
}

impl Object {
    fn new(bytes: Vec<u8>) -> Self {
        let etag = etag_of(&bytes);
        Self { bytes, etag }
    }
}

#[derive(Debug, Default)]
struct Inner {
    document: Option<Object>,
    lock: Option<Object>,
    document_writes: usize,
    lock_writes: usize,
    lock_deletes: usize,
    next_save_fault: Option<SaveFault>,
    /// Every save of a document that records this resource fails.
    fail_recording: Option<ResourceId>,
    /// Lock renewals never answer, like an endpoint that hangs.
    stall_renewals: bool,
}

/// A failure [`MemoryStore::fault_next_save`] injects into the next `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFault {
    /// Nothing is written; the save fails as a network error would
    /// ([`StoreError::Backend`]).
    Fail,
    /// The document is written, but the answer is lost: the save fails with
    /// [`StoreError::Backend`] (a timeout after S3 applied the write).
    LoseAnswer,
    /// The document is written, and the save reports [`StoreError::Conflict`]: what the SDK's
    /// automatic retry of a conditional PUT that had in fact landed gets back.
    RetryRefused,
}

/// An environment's state document and lock, in memory. Cheap to create; share it through
/// an `Arc` to hand it to a [`super::writer::StateWriter`] and a [`super::lock::Lock`].
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    inner: Mutex<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// An S3-like ETag: quoted, derived from the content only (S3 uses MD5 for single-part
/// uploads; the digest differs, the property that equal bytes give equal tags does not).
fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", &hex::encode(digest)[..32])
}

/// S3 compares entity tags with or without their quotes.
fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

fn to_pretty_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("state and lock documents serialize to JSON");
    bytes.push(b'\n');
    bytes
}

impl MemoryStore {
    /// An empty store: no document, no lock.
    pub fn new() -> Self {
        Self::named("test")
    }

    /// An empty store whose [`StateStore::location`] is `memory://<name>`.
    pub fn named(name: &str) -> Self {
        Self { name: name.to_owned(), inner: Mutex::new(Inner::default()) }
    }

    /// A store that already holds `state` (not counted as a write).
    pub fn with_state(state: &StateFile) -> Self {
        let store = Self::new();
        store.inner().document = Some(Object::new(to_pretty_json(state)));
        store
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock leaves consistent data behind: every
        // critical section below is a plain read or a single assignment.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stored document exactly as it would sit in S3.
    pub fn raw_document(&self) -> Option<String> {
        self.inner().document.as_ref().map(|object| String::from_utf8_lossy(&object.bytes).into_owned())
    }

    /// The stored document, parsed.
    pub fn document(&self) -> Option<StateFile> {
        let inner = self.inner();
        let object = inner.document.as_ref()?;
        Some(serde_json::from_slice(&object.bytes).expect("the stored document is a state file"))
    }

    /// The ETag of the stored document.
    pub fn document_etag(&self) -> Option<String> {
        self.inner().document.as_ref().map(|object| object.etag.clone())
    }

    /// Successful document writes (`save`) so far.
    pub fn document_writes(&self) -> usize {
        self.inner().document_writes
    }

    /// The stored lock exactly as it would sit in S3.
    pub fn raw_lock(&self) -> Option<String> {
        self.inner().lock.as_ref().map(|object| String::from_utf8_lossy(&object.bytes).into_owned())
    }

    /// The stored lock, parsed.
    pub fn lock_info(&self) -> Option<LockInfo> {
        let inner = self.inner();
        let object = inner.lock.as_ref()?;
        Some(serde_json::from_slice(&object.bytes).expect("the stored lock is lock info"))
    }

    /// Successful lock writes (acquisitions and renewals) so far.
    pub fn lock_writes(&self) -> usize {
        self.inner().lock_writes
    }

    /// Successful lock deletions so far.
    pub fn lock_deletes(&self) -> usize {
        self.inner().lock_deletes
    }

    /// Replaces the document unconditionally, as another writer (or a hand edit) would.
    /// Returns the new ETag. Not counted as a write of this store's users.
    pub fn put_raw_document(&self, bytes: impl Into<Vec<u8>>) -> String {
        let object = Object::new(bytes.into());
        let etag = object.etag.clone();
        self.inner().document = Some(object);
        etag
    }

    /// Replaces the lock unconditionally, as another process would. Returns the new ETag.
    pub fn put_lock(&self, info: &LockInfo) -> String {
        let object = Object::new(to_pretty_json(info));
        let etag = object.etag.clone();
        self.inner().lock = Some(object);
        etag
    }

    /// Removes the lock unconditionally.
    pub fn remove_lock(&self) {
        self.inner().lock = None;
    }

    /// Makes the next `save` fail as `fault` says (only if its condition holds, as S3 checks
    /// conditions first).
    pub fn fault_next_save(&self, fault: SaveFault) {
        self.inner().next_save_fault = Some(fault);
    }

    /// Makes every later lock renewal hang without an answer.
    pub fn stall_renewals(&self) {
        self.inner().stall_renewals = true;
    }

    /// Makes every save of a document that records resource `id` fail as a network error
    /// would: its result is never saved.
    pub fn fail_saves_recording(&self, id: &str) {
        self.inner().fail_recording = Some(ResourceId::new(id));
    }

    fn injected_failure(&self) -> StoreError {
        StoreError::Backend {
            location: self.document_location(),
            operation: "PutObject",
            message: "injected failure: connection reset".to_owned(),
        }
    }

    fn document_location(&self) -> String {
        format!("memory://{}/state.json", self.name)
    }

    fn lock_location(&self) -> String {
        format!("memory://{}/state.lock", self.name)
    }
}

impl StateStore for MemoryStore {
    fn location(&self) -> String {
        self.document_location()
    }

    async fn load(&self) -> Result<Option<Versioned<StateFile>>, StoreError> {
        let Some(object) = self.inner().document.clone() else { return Ok(None) };
        let value = serde_json::from_slice(&object.bytes)
            .map_err(|error| StoreError::Corrupt { location: self.document_location(), message: error.to_string() })?;
        Ok(Some(Versioned { value, etag: object.etag }))
    }

    async fn save(&self, state: &StateFile, expected: Option<&str>) -> Result<String, StoreError> {
        let bytes = to_pretty_json(state);
        let mut inner = self.inner();
        let fault = inner.next_save_fault.take();
        let recording = inner.fail_recording.as_ref().is_some_and(|id| state.resources.contains_key(id));
        if fault == Some(SaveFault::Fail) || recording {
            return Err(self.injected_failure());
        }
        let matches = match (&inner.document, expected) {
            (None, None) => true,
            (Some(current), Some(expected)) => same_etag(&current.etag, expected),
            (Some(_), None) | (None, Some(_)) => false,
        };
        if !matches {
            return Err(StoreError::Conflict {
                location: self.document_location(),
                expected: expected.unwrap_or("none (a new document)").to_owned(),
            });
        }
        let object = Object::new(bytes);
        let etag = object.etag.clone();
        inner.document = Some(object);
        inner.document_writes += 1;
        match fault {
            None | Some(SaveFault::Fail) => Ok(etag),
            Some(SaveFault::LoseAnswer) => Err(self.injected_failure()),
            Some(SaveFault::RetryRefused) => Err(StoreError::Conflict {
                location: self.document_location(),
                expected: expected.unwrap_or("none (a new document)").to_owned(),
            }),
        }
    }

    async fn acquire_lock(&self, info: &LockInfo) -> Result<String, StoreError> {
        let mut inner = self.inner();
        if let Some(current) = &inner.lock {
            let holder = serde_json::from_slice(&current.bytes)
                .map_err(|error| StoreError::Corrupt { location: self.lock_location(), message: error.to_string() })?;
            return Err(StoreError::Locked { location: self.lock_location(), holder });
        }
        let object = Object::new(to_pretty_json(info));
        let etag = object.etag.clone();
        inner.lock = Some(object);
        inner.lock_writes += 1;
        Ok(etag)
    }

    async fn renew_lock(&self, info: &LockInfo, etag: &str) -> Result<String, StoreError> {
        if self.inner().stall_renewals {
            std::future::pending::<()>().await;
        }
        let mut inner = self.inner();
        match &inner.lock {
            Some(current) if same_etag(&current.etag, etag) => {}
            _ => return Err(StoreError::LockLost { location: self.lock_location(), id: info.id.clone() }),
        }
        let object = Object::new(to_pretty_json(info));
        let new_etag = object.etag.clone();
        inner.lock = Some(object);
        inner.lock_writes += 1;
        Ok(new_etag)
    }

    async fn read_lock(&self) -> Result<Option<Versioned<LockInfo>>, StoreError> {
        let Some(object) = self.inner().lock.clone() else { return Ok(None) };
        let value = serde_json::from_slice(&object.bytes)
            .map_err(|error| StoreError::Corrupt { location: self.lock_location(), message: error.to_string() })?;
        Ok(Some(Versioned { value, etag: object.etag }))
    }

    async fn delete_lock(&self, etag: &str) -> Result<(), StoreError> {
        let mut inner = self.inner();
        match &inner.lock {
            Some(current) if same_etag(&current.etag, etag) => {
                inner.lock = None;
                inner.lock_deletes += 1;
                Ok(())
            }
            Some(current) => {
                let id = serde_json::from_slice::<LockInfo>(&current.bytes).map(|info| info.id).unwrap_or_default();
                Err(StoreError::LockLost { location: self.lock_location(), id })
            }
            None => Err(StoreError::LockLost { location: self.lock_location(), id: String::new() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(id: &str) -> LockInfo {
        LockInfo {
            id: id.to_owned(),
            who: "alice".to_owned(),
            host: "laptop".to_owned(),
            pid: 42,
            operation: "deploy".to_owned(),
            started_at: "2025-01-01T00:00:00Z".to_owned(),
            expires_at: "2025-01-01T00:01:00Z".to_owned(),
            process: None,
        }
    }

    #[tokio::test]
    async fn missing_document_loads_as_none() {
        let store = MemoryStore::new();
        assert!(store.load().await.unwrap().is_none());
        assert_eq!(store.document_writes(), 0);
    }

    #[tokio::test]
    async fn if_none_match_creates_once() {
        let store = MemoryStore::new();
        let state = StateFile::new();
        let etag = store.save(&state, None).await.unwrap();
        assert_eq!(store.document_etag().as_deref(), Some(etag.as_str()));
        let error = store.save(&state, None).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
        assert_eq!(store.document_writes(), 1);
        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!(loaded.value, state);
        assert_eq!(loaded.etag, etag);
    }

    #[tokio::test]
    async fn if_match_refuses_a_stale_or_missing_etag() {
        let store = MemoryStore::new();
        let mut state = StateFile::new();
        let first = store.save(&state, None).await.unwrap();
        state.serial = 1;
        let second = store.save(&state, Some(&first)).await.unwrap();
        assert_ne!(first, second);
        let before = store.raw_document().unwrap();

        state.serial = 2;
        let error = store.save(&state, Some(&first)).await.unwrap_err();
        assert!(matches!(&error, StoreError::Conflict { expected, .. } if *expected == first), "{error}");
        assert_eq!(store.raw_document().unwrap(), before, "a refused write leaves the document untouched");

        // Quotes do not matter, as in S3.
        store.save(&state, Some(second.trim_matches('"'))).await.unwrap();

        let empty = MemoryStore::new();
        let error = empty.save(&state, Some(&first)).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
        assert!(empty.raw_document().is_none());
    }

    #[tokio::test]
    async fn document_is_pretty_json_with_content_etag() {
        let store = MemoryStore::new();
        let state = StateFile::new();
        let etag = store.save(&state, None).await.unwrap();
        let raw = store.raw_document().unwrap();
        assert!(raw.starts_with("{\n  \"version\": 1,"), "{raw}");
        assert_eq!(MemoryStore::with_state(&state).document_etag().unwrap(), etag, "equal bytes, equal ETags");
    }

    #[tokio::test]
    async fn lock_is_exclusive_and_conditional() {
        let store = MemoryStore::new();
        let etag = store.acquire_lock(&lock("one")).await.unwrap();
        match store.acquire_lock(&lock("two")).await.unwrap_err() {
            StoreError::Locked { holder, .. } => assert_eq!(holder.id, "one"),
            other => panic!("expected Locked, got {other}"),
        }

        let mut renewed = lock("one");
        renewed.expires_at = "2025-01-01T00:02:00Z".to_owned();
        let error = store.renew_lock(&renewed, "\"stale\"").await.unwrap_err();
        assert!(matches!(error, StoreError::LockLost { .. }), "{error}");
        let new_etag = store.renew_lock(&renewed, &etag).await.unwrap();
        assert_ne!(new_etag, etag);
        assert_eq!(store.lock_info().unwrap(), renewed);

        let error = store.delete_lock(&etag).await.unwrap_err();
        assert!(matches!(&error, StoreError::LockLost { id, .. } if id == "one"), "{error}");
        assert!(store.read_lock().await.unwrap().is_some());
        store.delete_lock(&new_etag).await.unwrap();
        assert!(store.read_lock().await.unwrap().is_none());
        let error = store.delete_lock(&new_etag).await.unwrap_err();
        assert!(matches!(error, StoreError::LockLost { .. }), "{error}");
        let error = store.renew_lock(&renewed, &new_etag).await.unwrap_err();
        assert!(matches!(error, StoreError::LockLost { .. }), "{error}");

        store.acquire_lock(&lock("two")).await.unwrap();
        assert_eq!((store.lock_writes(), store.lock_deletes()), (3, 1));
    }

    #[tokio::test]
    async fn corrupt_document_is_reported() {
        let store = MemoryStore::new();
        store.put_raw_document("not json");
        let error = store.load().await.unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("memory://test/state.json"), "{error}");
    }

    #[tokio::test]
    async fn injected_faults_write_or_not_as_described() {
        let store = MemoryStore::new();
        store.fault_next_save(SaveFault::Fail);
        let error = store.save(&StateFile::new(), None).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend { .. }), "{error}");
        assert!(store.raw_document().is_none());

        let state = StateFile::new();
        store.fault_next_save(SaveFault::LoseAnswer);
        let error = store.save(&state, None).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend { .. }), "{error}");
        assert_eq!(store.document().unwrap(), state);

        let etag = store.document_etag().unwrap();
        let mut next = state.clone();
        next.serial = 1;
        store.fault_next_save(SaveFault::RetryRefused);
        let error = store.save(&next, Some(&etag)).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
        assert_eq!(store.document().unwrap(), next);
        assert_eq!(store.document_writes(), 2);
    }
}
