//! The state document: the record of what exists for one environment.
//!
//! One JSON document per environment, with a format version, a lineage (fixed when the
//! document is first written) and a serial (incremented on every write). It holds each
//! resource's physical id, the inputs that were sent and the outputs that came back, the
//! operations in flight (the pending journal), and the deployment history.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::resource::{Inputs, Kind, Outputs, ResourceId};

pub mod journal;
pub mod lock;
#[cfg(test)]
pub mod memory;
pub mod s3;
pub mod store;
pub mod writer;

pub use store::{StateStore, StoreError, Versioned};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    /// Fixed for the life of the environment's state; a document with another lineage is
    /// another environment's and is never overwritten.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    /// The account the resources live in, learned on first deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub resources: BTreeMap<ResourceId, ResourceState>,
    /// Operations started but not yet recorded as finished. A crash leaves entries here,
    /// which the next run resolves before planning.
    #[serde(default)]
    pub pending: BTreeMap<ResourceId, Pending>,
    /// Everything else the tool records per environment (deployment history, smoke-test
    /// results), kept as named sections so that the engine need not know their shape.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub records: BTreeMap<String, Value>,
}

impl StateFile {
    /// A new, empty document with a fresh lineage.
    pub fn new() -> Self {
        Self {
            version: FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            account_id: None,
            resources: BTreeMap::new(),
            pending: BTreeMap::new(),
            records: BTreeMap::new(),
        }
    }
}

impl Default for StateFile {
    fn default() -> Self {
        Self::new()
    }
}

/// A resource that exists, as last recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    pub kind: Kind,
    /// The deterministic physical name.
    pub name: String,
    pub physical_id: String,
    /// The resolved inputs that were last sent to the cloud.
    pub inputs: Inputs,
    pub outputs: Outputs,
    /// What the resource depended on when it was created, so that deletes of resources no
    /// longer in the stack still run in reverse dependency order.
    #[serde(default)]
    pub depends_on: BTreeSet<ResourceId>,
}

/// The operation a pending entry journals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// An operation that was started; written before the cloud is touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub operation: Operation,
    pub kind: Kind,
    pub name: String,
    /// The resolved inputs the operation sends (for creates and updates), so a resource
    /// found after a crash can be adopted with what was actually sent.
    #[serde(default)]
    pub inputs: Inputs,
    #[serde(default)]
    pub depends_on: BTreeSet<ResourceId>,
    /// RFC 3339 time the operation started.
    pub started_at: String,
}

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
    /// Makes the change to `state`, in memory.
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
