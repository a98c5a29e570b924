//! Group commit: the journal entries of steps that run at once, saved in as few writes of
//! the state document as possible.
//!
//! A step records a change (an operation pending, a result) and waits until a write that
//! contains it has landed, exactly as with one write per change: nothing is touched in the
//! cloud before its pending entry is durable, and no result is reported before it is. But a
//! change that arrives while another write is in flight does not wait for its own: the next
//! writer takes every change queued by then and saves them together. The first caller to get
//! the [`StateWriter`] leads a write; the callers whose changes it carried find them done
//! when their turn comes. Under cloud latency, parallel steps then cost one write per wave
//! rather than one each.
//!
//! A step may queue its result ([`Journal::enqueue`]) and let the steps that depend on it
//! start at once: their pending entries are queued after it, so they are saved with it or
//! later, never before, and no dependent touches the cloud before the result it depends on
//! is durable. Once a write has failed, no new operation may begin: pending entries queued
//! after the failure are refused with its error, while results of operations already under
//! way are still saved.

use std::sync::{Arc, Mutex as SyncMutex};

use tokio::sync::{oneshot, Mutex};

use super::store::{StateStore, StoreError};
use super::writer::StateWriter;
use super::{Change, StateFile};

struct Queued {
    change: Change,
    saved: oneshot::Sender<Result<(), StoreError>>,
}

struct Inner {
    /// Changes not written yet, in the order they were made.
    queue: Vec<Queued>,
    /// The document with every change made so far applied, written or not.
    latest: StateFile,
    /// The error of the first failed write.
    failed: Option<StoreError>,
}

/// A change queued by [`Journal::enqueue`]; [`Journal::commit`] waits for it to be saved.
#[must_use = "a change is durable only once its ticket is committed"]
pub struct Ticket(oneshot::Receiver<Result<(), StoreError>>);

/// Shared by the steps of one apply. See the module docs.
pub struct Journal<S: StateStore> {
    writer: Arc<Mutex<StateWriter<S>>>,
    inner: SyncMutex<Inner>,
}

impl<S: StateStore> Journal<S> {
    pub async fn new(writer: Arc<Mutex<StateWriter<S>>>) -> Self {
        let latest = writer.lock().await.state().clone();
        Self { writer, inner: SyncMutex::new(Inner { queue: Vec::new(), latest, failed: None }) }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the document as it is with every change made so far, saved or not: what a step
    /// about to start must see of the steps it depends on.
    pub fn latest<R>(&self, read: impl FnOnce(&StateFile) -> R) -> R {
        read(&self.inner().latest)
    }

    /// Queues `change` without waiting. Changes are saved in the order they are queued, so a
    /// change queued later is never durable before this one.
    pub fn enqueue(&self, change: Change) -> Ticket {
        let (saved, outcome) = oneshot::channel();
        let mut inner = self.inner();
        change.clone().apply(&mut inner.latest);
        inner.queue.push(Queued { change, saved });
        Ticket(outcome)
    }

    /// Returns once the write carrying the ticket's change has landed, or with the error of
    /// the write that tried. The first caller to get the writer leads a write of everything
    /// queued by then.
    pub async fn commit(&self, ticket: Ticket) -> Result<(), StoreError> {
        let Ticket(mut outcome) = ticket;
        let mut writer = self.writer.lock().await;
        if let Ok(result) = outcome.try_recv() {
            // An earlier writer carried it.
            return result;
        }
        let (batch, failed) = {
            let mut inner = self.inner();
            (std::mem::take(&mut inner.queue), inner.failed.clone())
        };
        let mut changes = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for queued in batch {
            match (&queued.change, &failed) {
                (Change::Begin(..), Some(error)) => {
                    let _ = queued.saved.send(Err(error.clone()));
                }
                _ => {
                    changes.push(queued.change);
                    waiting.push(queued.saved);
                }
            }
        }
        let write = writer.update(|state| {
            for change in changes {
                change.apply(state);
            }
        });
        let result = crate::calls::journaling(write).await;
        if let Err(error) = &result {
            self.inner().failed.get_or_insert_with(|| error.clone());
        }
        for saved in waiting {
            let _ = saved.send(result.clone());
        }
        drop(writer);
        outcome.await.unwrap_or(result)
    }

    /// Saves `change`: [`Journal::enqueue`], then [`Journal::commit`].
    pub async fn record(&self, change: Change) -> Result<(), StoreError> {
        let ticket = self.enqueue(change);
        self.commit(ticket).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::engine::resource::{Kind, ResourceId};
    use crate::state::memory::{MemoryStore, SaveFault};
    use crate::state::{Operation, Pending, ResourceState};

    fn pending(name: &str) -> Pending {
        Pending {
            operation: Operation::Create,
            kind: Kind::Role,
            name: name.to_owned(),
            inputs: BTreeMap::new(),
            depends_on: BTreeSet::new(),
            started_at: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    fn resource(name: &str) -> ResourceState {
        ResourceState {
            kind: Kind::Role,
            name: name.to_owned(),
            physical_id: name.to_owned(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            depends_on: BTreeSet::new(),
        }
    }

    async fn journal(store: &Arc<MemoryStore>) -> Arc<Journal<MemoryStore>> {
        let writer = StateWriter::open(Arc::clone(store)).await.unwrap();
        Arc::new(Journal::new(Arc::new(Mutex::new(writer))).await)
    }

    #[tokio::test]
    async fn changes_queued_during_a_write_share_the_next_one_and_each_is_durable_when_it_returns() {
        let store = Arc::new(MemoryStore::new());
        let journal = journal(&store).await;
        // Hold the writer, as a write in flight does, while ten steps journal their operation.
        let held = journal.writer.lock().await;
        let mut steps = Vec::new();
        for n in 0..10 {
            let journal = Arc::clone(&journal);
            let store = Arc::clone(&store);
            steps.push(tokio::spawn(async move {
                let id = ResourceId::new(format!("role.{n}"));
                journal.record(Change::Begin(id.clone(), pending(&format!("r{n}")))).await.unwrap();
                assert!(store.document().unwrap().pending.contains_key(&id), "durable before it returns");
                journal.record(Change::Recorded(id.clone(), resource(&format!("r{n}")))).await.unwrap();
                let stored = store.document().unwrap();
                assert!(stored.resources.contains_key(&id) && !stored.pending.contains_key(&id));
            }));
        }
        tokio::task::yield_now().await;
        while journal.inner().queue.len() < 10 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for step in steps {
            step.await.unwrap();
        }
        let stored = store.document().unwrap();
        assert_eq!(stored.resources.len(), 10);
        assert!(stored.pending.is_empty());
        assert!(
            store.document_writes() < 20,
            "twenty changes in fewer than twenty writes: {}",
            store.document_writes()
        );
        assert_eq!(stored.serial, store.document_writes() as u64);
    }

    #[tokio::test]
    async fn a_queued_change_is_seen_at_once_and_saved_with_the_next_write() {
        let store = Arc::new(MemoryStore::new());
        let journal = journal(&store).await;
        let a = ResourceId::new("role.a");
        journal.record(Change::Begin(a.clone(), pending("a"))).await.unwrap();
        let finished = journal.enqueue(Change::Recorded(a.clone(), resource("a")));
        assert!(journal.latest(|state| state.resources.contains_key(&a)), "steps that start next see it");
        assert!(!store.document().unwrap().resources.contains_key(&a), "not saved yet");
        let b = ResourceId::new("role.b");
        journal.record(Change::Begin(b.clone(), pending("b"))).await.unwrap();
        let stored = store.document().unwrap();
        assert!(stored.resources.contains_key(&a) && stored.pending.contains_key(&b), "saved together, in order");
        assert_eq!(store.document_writes(), 2);
        journal.commit(finished).await.unwrap();
        assert_eq!(store.document_writes(), 2, "already carried: nothing more to write");
    }

    #[tokio::test]
    async fn after_a_failed_write_results_are_still_saved_but_nothing_new_begins() {
        let store = Arc::new(MemoryStore::new());
        let journal = journal(&store).await;
        let (a, b) = (ResourceId::new("role.a"), ResourceId::new("role.b"));
        journal.record(Change::Begin(a.clone(), pending("a"))).await.unwrap();
        journal.record(Change::Begin(b.clone(), pending("b"))).await.unwrap();
        store.fault_next_save(SaveFault::Fail);
        let error = journal.record(Change::Recorded(a.clone(), resource("a"))).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend { .. }), "{error}");
        assert!(store.document().unwrap().pending.contains_key(&a), "the pending entry stays");

        journal.record(Change::Recorded(b.clone(), resource("b"))).await.unwrap();
        let refused = journal.record(Change::Begin(ResourceId::new("role.c"), pending("c"))).await.unwrap_err();
        assert_eq!(refused.to_string(), error.to_string(), "a new operation gets the failure");
        let stored = store.document().unwrap();
        assert!(stored.resources.contains_key(&b), "a result of work under way is saved");
        assert!(!stored.pending.contains_key(&ResourceId::new("role.c")));
    }
}
