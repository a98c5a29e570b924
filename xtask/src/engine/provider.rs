//! The interface between the engine and the cloud: one implementation talks to AWS (see
//! `crate::providers`), another is an in-memory fake for the engine's lifecycle tests.

use std::future::Future;

use thiserror::Error;

use super::resource::{Inputs, Kind, Outputs};
use crate::state::ResourceState;

/// What a provider reports for a resource it created or found.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The cloud's id for the resource: a name, an ARN, or a generated id (API ids).
    pub physical_id: String,
    pub outputs: Outputs,
}

#[derive(Debug, Error)]
pub enum ProviderError {
    /// The cloud refused or failed the call; `operation` names the API call.
    #[error("{operation} on {kind} {name}: {message}")]
    Api { kind: Kind, name: String, operation: &'static str, message: String },
    /// The inputs handed to the provider are not what it needs (a bug in the stack).
    #[error("{kind} {name}: invalid input `{key}`: {message}")]
    Input { kind: Kind, name: String, key: String, message: String },
    /// A resource the provider must not delete (e.g. a non-empty bucket under `protect`).
    #[error("{kind} {name}: {message}")]
    Refused { kind: Kind, name: String, message: String },
}

/// Creates, updates, deletes and finds resources of every [`Kind`].
///
/// Providers own the cloud's behaviour: eventual consistency (IAM propagation, Lambda's
/// asynchronous updates), throttling retries, "not found on delete counts as done", and
/// which input changes force a replacement.
pub trait Provider: Send + Sync + 'static {
    /// Creates the resource named `name` with fully resolved `inputs`.
    fn create(
        &self,
        kind: Kind,
        name: &str,
        inputs: &Inputs,
    ) -> impl Future<Output = Result<Created, ProviderError>> + Send;

    /// Brings an existing resource to `inputs`. `changed` lists the input keys that differ
    /// from `current.inputs`, so the provider only makes the calls those need.
    fn update(
        &self,
        current: &ResourceState,
        inputs: &Inputs,
        changed: &[String],
    ) -> impl Future<Output = Result<Outputs, ProviderError>> + Send;

    /// Deletes the resource. A resource that is already gone counts as deleted.
    fn delete(&self, current: &ResourceState) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Looks a resource up by its deterministic name (and, where names are not unique, the
    /// inputs that identify it), to resolve an operation a crash left pending.
    fn find(
        &self,
        kind: Kind,
        name: &str,
        inputs: &Inputs,
    ) -> impl Future<Output = Result<Option<Created>, ProviderError>> + Send;

    /// Looks a recorded resource up by the id the cloud gave it (its physical id, with the
    /// identifying inputs it was recorded with), for refresh and for recovering an interrupted
    /// update or delete; `None` when it no longer exists. Unlike [`Provider::find`], a renamed
    /// or retagged resource is still found.
    fn get(&self, current: &ResourceState) -> impl Future<Output = Result<Option<Created>, ProviderError>> + Send;

    /// Reads what the cloud holds for a recorded resource, shaped like its inputs (the keys
    /// the provider can read back); `None` when it no longer exists.
    fn read(&self, current: &ResourceState) -> impl Future<Output = Result<Option<Inputs>, ProviderError>> + Send;
}
