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

use std::sync::{Arc, Mutex as SyncMutex};

use tokio::sync::{oneshot, Mutex};

use super::store::{StateStore, StoreError};
use super::writer::StateWriter;
use super::{Pending, ResourceState, StateFile};
use crate::engine::resource::ResourceId;

/// One change to the state document.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An operation is about to touch the cloud.
    Begin(ResourceId, Pending),
    /// A resource was created, updated or adopted; its pending entry is cleared.
    Recorded(ResourceId, ResourceState),
    /// A resource was deleted; its pending entry is cleared.
    Deleted(ResourceId),
}

impl Change {
    fn apply(self, state: &mut StateFile) {
        match self {
            Change::Begin(id, pending) => {
                state.pending.insert(id, pending);
            }
            Change::Recorded(id, resource) => {
                state.pending.remove(&id);
                state.resources.insert(id, resource);
            }
            Change::Deleted(id) => {
                state.pending.remove(&id);
                state.resources.remove(&id);
            }
        }
    }
}

struct Queued {
    change: Change,
    saved: oneshot::Sender<Result<(), StoreError>>,
}

/// Shared by the steps of one apply. See the module docs.
pub struct Journal<S: StateStore> {
    writer: Arc<Mutex<StateWriter<S>>>,
    queue: SyncMutex<Vec<Queued>>,
}

impl<S: StateStore> Journal<S> {
    pub fn new(writer: Arc<Mutex<StateWriter<S>>>) -> Self {
        Self { writer, queue: SyncMutex::new(Vec::new()) }
    }

    /// The writer, e.g. to read the document.
    pub fn writer(&self) -> &Mutex<StateWriter<S>> {
        &self.writer
    }

    /// Saves `change`; returns once a write containing it has landed, or with the error of
    /// the write that tried.
    pub async fn record(&self, change: Change) -> Result<(), StoreError> {
        let (saved, mut outcome) = oneshot::channel();
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Queued { change, saved });
        let mut writer = self.writer.lock().await;
        if let Ok(result) = outcome.try_recv() {
            // An earlier writer carried it.
            return result;
        }
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let (changes, waiting): (Vec<Change>, Vec<_>) = batch.into_iter().map(|queued| (queued.change, queued.saved)).unzip();
        let write = writer.update(|state| {
            for change in changes {
                change.apply(state);
            }
        });
        let result = crate::calls::journaling(write).await;
        for saved in waiting {
            let _ = saved.send(result.clone());
        }
        drop(writer);
        outcome.await.unwrap_or(result)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::engine::resource::Kind;
    use crate::state::memory::{MemoryStore, SaveFault};
    use crate::state::Operation;

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
        Arc::new(Journal::new(Arc::new(Mutex::new(writer))))
    }

    #[tokio::test]
    async fn changes_queued_during_a_write_share_the_next_one_and_each_is_durable_when_it_returns() {
        let store = Arc::new(MemoryStore::new());
        let journal = journal(&store).await;
        // Hold the writer, as a write in flight does, while ten steps journal their operation.
        let held = journal.writer().lock().await;
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
        while journal.queue.lock().unwrap().len() < 10 {
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
    async fn a_failed_write_fails_every_change_it_carried_and_the_next_write_is_clean() {
        let store = Arc::new(MemoryStore::new());
        let journal = journal(&store).await;
        journal.record(Change::Begin(ResourceId::new("role.a"), pending("a"))).await.unwrap();
        store.fault_next_save(SaveFault::Fail);
        let error = journal.record(Change::Recorded(ResourceId::new("role.a"), resource("a"))).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend { .. }), "{error}");
        assert!(store.document().unwrap().pending.contains_key(&ResourceId::new("role.a")), "the pending entry stays");
        journal.record(Change::Deleted(ResourceId::new("role.a"))).await.unwrap();
        let stored = store.document().unwrap();
        assert!(stored.pending.is_empty() && stored.resources.is_empty());
    }
}
