//! Applying a plan along the dependency graph.
//!
//! A step starts as soon as the steps it depends on have finished, with at most
//! `parallelism` steps in flight. Deletes run in reverse dependency order. After a failure
//! (or a cancellation, e.g. Ctrl-C) nothing new starts; steps in flight finish and are
//! recorded, and the steps that depend on a failed one are reported as skipped.
//!
//! Every mutation is journaled: a pending entry is saved before the cloud is touched and
//! the result after. A crash in between leaves the pending entry, which [`recover`] resolves
//! on the next run by looking the resource up under its deterministic name. Steps that
//! journal at the same time share writes ([`Journal`], group commit), and a step's dependents
//! start as soon as its cloud work is done: their pending entries are saved with its result
//! or after it, so none of them touches the cloud before that result is durable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};
use tokio::task::JoinSet;

use super::graph::{CycleError, Dag};
use super::plan::{Action, Plan, Step};
use super::provider::{Created, Provider};
use super::resource::{resolve, Inputs, Kind, Reference, Resolved, Resource, ResourceId};
use crate::state::journal::{Journal, Ticket};
use crate::state::writer::StateWriter;
use crate::state::Change;
use crate::state::{Operation, Pending, ResourceState, StateStore, StoreError};

/// How a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied. The action is what was actually done: an update whose unknown values turned
    /// out unchanged is a no-op.
    Done {
        action: Action,
        elapsed: Duration,
    },
    Failed {
        error: String,
        elapsed: Duration,
    },
    /// Not started because a step it depends on failed or was skipped.
    Skipped {
        because: ResourceId,
    },
    /// Not started because the run stopped (a failure elsewhere, or cancellation).
    NotStarted,
}

/// Watches a run, e.g. to draw progress. Called from the executor's task.
pub trait Observer: Send + Sync {
    fn started(&self, step: &Step);
    fn finished(&self, step: &Step, outcome: &Outcome);
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn started(&self, _: &Step) {}
    fn finished(&self, _: &Step, _: &Outcome) {}
}

#[derive(Debug)]
pub struct Report {
    pub outcomes: BTreeMap<ResourceId, Outcome>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.stopped.is_none() && self.outcomes.values().all(|outcome| matches!(outcome, Outcome::Done { .. }))
    }

    pub fn failures(&self) -> impl Iterator<Item = (&ResourceId, &String)> {
        self.outcomes.iter().filter_map(|(id, outcome)| match outcome {
            Outcome::Failed { error, .. } => Some((id, error)),
            _ => None,
        })
    }

    /// A one-line count of what happened, like Terraform's "Apply complete!" line.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for outcome in self.outcomes.values() {
            let key = match outcome {
                Outcome::Done { action: Action::Create, .. } => "added",
                Outcome::Done { action: Action::Update, .. } => "changed",
                Outcome::Done { action: Action::Replace, .. } => "replaced",
                Outcome::Done { action: Action::Delete, .. } => "destroyed",
                Outcome::Done { action: Action::NoOp, .. } => continue,
                Outcome::Failed { .. } => "failed",
                Outcome::Skipped { .. } => "skipped",
                Outcome::NotStarted => "not started",
            };
            *counts.entry(key).or_default() += 1;
        }
        let order = ["added", "changed", "replaced", "destroyed", "failed", "skipped", "not started"];
        order
            .iter()
            .map(|key| format!("{} {key}", counts.get(key).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Cycle(#[from] CycleError),
    /// Saving state failed: the run stops at once, since the record could be lost.
    #[error("saving state: {0}")]
    State(#[from] StoreError),
    /// A provider call made before planning (recovery, refresh) failed; nothing was changed.
    #[error("{doing} {id}: {error}")]
    Provider { doing: &'static str, id: ResourceId, error: crate::engine::provider::ProviderError },
}

/// Options for a run.
#[derive(Clone)]
pub struct Options {
    pub parallelism: usize,
    /// Becomes `true` to stop scheduling (Ctrl-C).
    pub cancel: Option<watch::Receiver<bool>>,
}

impl Options {
    /// Options for a run that is never cancelled.
    pub fn new(parallelism: usize) -> Self {
        Self { parallelism: parallelism.max(1), cancel: None }
    }

    pub fn cancelled_by(mut self, cancel: watch::Receiver<bool>) -> Self {
        self.cancel = Some(cancel);
        self
    }
}

/// Resolves when the run is asked to stop; never, without a cancel channel.
async fn cancelled(cancel: &mut Option<watch::Receiver<bool>>) {
    match cancel {
        Some(receiver) => {
            if receiver.wait_for(|cancelled| *cancelled).await.is_err() {
                // The sender is gone: nobody can cancel any more.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Applies `plan` (made from `desired` and the writer's state).
pub async fn apply<P: Provider, S: StateStore>(
    plan: &Plan,
    desired: &[Resource],
    provider: Arc<P>,
    writer: Arc<Mutex<StateWriter<S>>>,
    observer: Arc<dyn Observer>,
    options: Options,
) -> Result<Report, ApplyError> {
    let steps: BTreeMap<ResourceId, Step> = plan.steps.iter().map(|step| (step.id.clone(), step.clone())).collect();
    let resources: BTreeMap<ResourceId, Resource> =
        desired.iter().map(|resource| (resource.id.clone(), resource.clone())).collect();
    let dag = {
        let state = writer.lock().await;
        execution_graph(plan, &resources, &state.state().resources)?
    };

    let mut waiting: BTreeMap<ResourceId, usize> =
        dag.ids().map(|id| (id.clone(), dag.dependencies(id).len())).collect();
    let mut ready: BTreeSet<ResourceId> = waiting.iter().filter(|(_, n)| **n == 0).map(|(id, _)| id.clone()).collect();
    let mut outcomes: BTreeMap<ResourceId, Outcome> = BTreeMap::new();
    let mut stopped: Option<String> = None;
    let mut state_error: Option<StoreError> = None;
    let mut running: JoinSet<(ResourceId, Event)> = JoinSet::new();
    let mut started_at: BTreeMap<ResourceId, Instant> = BTreeMap::new();
    let mut cancel = options.cancel.clone();
    let journal = Arc::new(Journal::new(writer).await);
    // Steps whose cloud work is done and whose result still has to be saved.
    let mut confirming: Vec<(ResourceId, Action, Ticket)> = Vec::new();

    loop {
        // Every step that can start queues its pending entry here, before any task runs, so
        // that the entries of steps starting together (and the results that released them)
        // share one write.
        while stopped.is_none() && running.len() < options.parallelism {
            let Some(id) = ready.pop_first() else { break };
            let step = steps[&id].clone();
            observer.started(&step);
            started_at.insert(id.clone(), Instant::now());
            let resource = resources.get(&id).cloned();
            let begun = begin(&step, resource.as_ref(), &journal);
            let (provider, journal) = (provider.clone(), journal.clone());
            running.spawn(async move {
                let result = match begun {
                    Ok(begun) => {
                        let work = finish(begun, resource.as_ref(), provider.as_ref(), &journal);
                        crate::calls::in_step(step.id.as_str(), work).await
                    }
                    Err(error) => Err(error),
                };
                (step.id, Event::Applied(result))
            });
        }
        for (id, action, ticket) in std::mem::take(&mut confirming) {
            let journal = journal.clone();
            running.spawn(async move {
                let saved = crate::calls::in_step(id.as_str(), journal.commit(ticket)).await;
                (id, Event::Saved(action, saved))
            });
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                let (id, event) = joined.expect("a task is running").expect("steps do not panic");
                let elapsed = started_at.get(&id).map_or(Duration::ZERO, Instant::elapsed);
                let outcome = match event {
                    // The cloud is done; the result is queued. The steps that depend on this one
                    // may start now: their own journal entries are saved with or after it.
                    Event::Applied(Ok((action, Some(ticket)))) => {
                        release_dependents(&dag, &id, &mut waiting, &mut ready);
                        confirming.push((id, action, ticket));
                        continue;
                    }
                    Event::Applied(Ok((action, None))) => {
                        release_dependents(&dag, &id, &mut waiting, &mut ready);
                        Outcome::Done { action, elapsed }
                    }
                    Event::Saved(action, Ok(())) => Outcome::Done { action, elapsed },
                    Event::Applied(Err(StepError::Provider(error))) => {
                        stopped.get_or_insert_with(|| format!("{id} failed"));
                        Outcome::Failed { error, elapsed }
                    }
                    Event::Applied(Err(StepError::State(error))) => {
                        stopped.get_or_insert_with(|| format!("saving state after {id} failed"));
                        let message = error.to_string();
                        state_error.get_or_insert(*error);
                        Outcome::Failed { error: message, elapsed }
                    }
                    Event::Saved(_, Err(error)) => {
                        stopped.get_or_insert_with(|| format!("saving state after {id} failed"));
                        let message = error.to_string();
                        state_error.get_or_insert(error);
                        Outcome::Failed { error: message, elapsed }
                    }
                };
                observer.finished(&steps[&id], &outcome);
                outcomes.insert(id, outcome);
            }
            () = cancelled(&mut cancel), if stopped.is_none() => {
                stopped = Some("cancelled".to_owned());
            }
        }
    }

    // A dependent released by a step whose result then failed to save never touched the
    // cloud: its pending entry was in that failed write or refused after it, so it failed
    // above. Whatever did not run: skipped because of a failed dependency, or not started.
    for id in dag.topological_order() {
        if outcomes.contains_key(&id) {
            continue;
        }
        let because = dag.dependencies(&id).into_iter().find(|dependency| {
            matches!(outcomes.get(dependency), Some(Outcome::Failed { .. } | Outcome::Skipped { .. }))
        });
        let outcome = match because {
            Some(because) => Outcome::Skipped { because },
            None => Outcome::NotStarted,
        };
        observer.finished(&steps[&id], &outcome);
        outcomes.insert(id, outcome);
    }
    if let Some(error) = state_error {
        return Err(ApplyError::State(error));
    }
    Ok(Report { outcomes, stopped })
}

/// What a step task reports: the cloud work is done (with the result's journal entry queued,
/// if it has one), or that entry is saved.
enum Event {
    Applied(Result<(Action, Option<Ticket>), StepError>),
    Saved(Action, Result<(), StoreError>),
}

/// Counts `id` as done for the steps that depend on it; those with nothing left to wait for
/// become ready.
fn release_dependents(
    dag: &Dag,
    id: &ResourceId,
    waiting: &mut BTreeMap<ResourceId, usize>,
    ready: &mut BTreeSet<ResourceId>,
) {
    for dependent in dag.dependents(id) {
        let count = waiting.get_mut(&dependent).expect("dependent is in the graph");
        *count -= 1;
        if *count == 0 {
            ready.insert(dependent);
        }
    }
}

/// The graph the executor walks. Steps for desired resources follow the resources'
/// dependencies. A delete must run before the deletion (or replacement) of anything the
/// deleted resource depended on, so those edges are reversed.
fn execution_graph(
    plan: &Plan,
    resources: &BTreeMap<ResourceId, Resource>,
    recorded: &BTreeMap<ResourceId, ResourceState>,
) -> Result<Dag, CycleError> {
    let mut after: BTreeMap<ResourceId, BTreeSet<ResourceId>> = BTreeMap::new();
    for step in &plan.steps {
        let dependencies = resources.get(&step.id).map(Resource::dependencies).unwrap_or_default();
        after.entry(step.id.clone()).or_default().extend(dependencies);
    }
    for step in plan.steps.iter().filter(|step| step.action == Action::Delete) {
        let Some(recorded) = recorded.get(&step.id) else { continue };
        for dependency in &recorded.depends_on {
            let goes_away = plan
                .step(dependency.as_str())
                .is_some_and(|dependency_step| matches!(dependency_step.action, Action::Delete | Action::Replace));
            if goes_away {
                after.entry(dependency.clone()).or_default().insert(step.id.clone());
            }
        }
    }
    Dag::new(after)
}

enum StepError {
    Provider(String),
    State(Box<StoreError>),
}

impl From<StoreError> for StepError {
    fn from(error: StoreError) -> Self {
        StepError::State(Box::new(error))
    }
}

/// A step whose pending entry is queued: what its cloud work needs.
enum Begun {
    NoOp,
    Create {
        inputs: Inputs,
        saved: Ticket,
    },
    Update {
        current: ResourceState,
        inputs: Inputs,
        changed: Vec<String>,
        saved: Ticket,
    },
    Delete {
        id: ResourceId,
        current: ResourceState,
        saved: Ticket,
    },
    /// Delete (its pending entry queued), then create.
    Replace {
        current: Option<(ResourceState, Ticket)>,
    },
}

/// Queues a step's pending entry (synchronously, in the scheduler); see [`finish`].
fn begin<S: StateStore>(step: &Step, resource: Option<&Resource>, journal: &Journal<S>) -> Result<Begun, StepError> {
    let recorded = |id: &ResourceId| journal.latest(|state| state.resources.get(id).cloned());
    match step.action {
        Action::NoOp => Ok(Begun::NoOp),
        Action::Create => {
            let resource = resource.expect("a create step has a desired resource");
            let (inputs, saved) = begin_create(resource, journal)?;
            Ok(Begun::Create { inputs, saved })
        }
        Action::Update => {
            let resource = resource.expect("an update step has a desired resource");
            let inputs = journal.latest(|state| resolve_inputs(resource, state))?;
            let current = recorded(&resource.id)
                .ok_or_else(|| StepError::Provider(format!("{} is not recorded in state", resource.id)))?;
            let keys: BTreeSet<&String> = inputs.keys().chain(current.inputs.keys()).collect();
            let changed: Vec<String> =
                keys.into_iter().filter(|key| inputs.get(*key) != current.inputs.get(*key)).cloned().collect();
            if changed.is_empty() && current.name == resource.name {
                return Ok(Begun::NoOp);
            }
            let pending =
                pending(Operation::Update, resource.kind, &resource.name, inputs.clone(), resource.dependencies());
            let saved = journal.enqueue(Change::Begin(resource.id.clone(), pending));
            Ok(Begun::Update { current, inputs, changed, saved })
        }
        Action::Delete | Action::Replace => {
            let current = recorded(&step.id).map(|current| {
                // The recorded inputs identify the resource (e.g. the function a permission
                // belongs to), whatever happens to the record later.
                let pending = pending(
                    Operation::Delete,
                    current.kind,
                    &current.name,
                    current.inputs.clone(),
                    current.depends_on.clone(),
                );
                let saved = journal.enqueue(Change::Begin(step.id.clone(), pending));
                (current, saved)
            });
            match (step.action, current) {
                (Action::Delete, Some((current, saved))) => Ok(Begun::Delete { id: step.id.clone(), current, saved }),
                (Action::Delete, None) => Ok(Begun::NoOp),
                (_, current) => Ok(Begun::Replace { current }),
            }
        }
    }
}

fn begin_create<S: StateStore>(resource: &Resource, journal: &Journal<S>) -> Result<(Inputs, Ticket), StepError> {
    let inputs = journal.latest(|state| resolve_inputs(resource, state))?;
    let pending = pending(Operation::Create, resource.kind, &resource.name, inputs.clone(), resource.dependencies());
    Ok((inputs, journal.enqueue(Change::Begin(resource.id.clone(), pending))))
}

fn pending(operation: Operation, kind: Kind, name: &str, inputs: Inputs, depends_on: BTreeSet<ResourceId>) -> Pending {
    Pending { operation, kind, name: name.to_owned(), inputs, depends_on, started_at: now() }
}

/// Does a begun step's cloud work, once its pending entry is saved. Its result is queued,
/// not yet saved: the returned ticket saves it (see [`Journal`]). On a failure the pending
/// entry stays, so that a partly done operation is resolved by the next run instead of
/// leaving an orphan.
async fn finish<P: Provider, S: StateStore>(
    begun: Begun,
    resource: Option<&Resource>,
    provider: &P,
    journal: &Journal<S>,
) -> Result<(Action, Option<Ticket>), StepError> {
    let failed = |error: crate::engine::provider::ProviderError| StepError::Provider(error.to_string());
    match begun {
        Begun::NoOp => Ok((Action::NoOp, None)),
        Begun::Create { inputs, saved } => {
            let resource = resource.expect("a create step has a desired resource");
            journal.commit(saved).await?;
            Ok((Action::Create, Some(create(resource, inputs, provider, journal).await?)))
        }
        Begun::Update { current, inputs, changed, saved } => {
            let resource = resource.expect("an update step has a desired resource");
            journal.commit(saved).await?;
            let outputs = provider.update(&current, &inputs, &changed).await.map_err(failed)?;
            let mut merged = current.outputs.clone();
            merged.extend(outputs);
            let recorded = ResourceState { inputs, outputs: merged, depends_on: resource.dependencies(), ..current };
            Ok((Action::Update, Some(journal.enqueue(Change::Recorded(resource.id.clone(), recorded)))))
        }
        Begun::Delete { id, current, saved } => {
            journal.commit(saved).await?;
            provider.delete(&current).await.map_err(failed)?;
            Ok((Action::Delete, Some(journal.enqueue(Change::Deleted(id)))))
        }
        Begun::Replace { current } => {
            let resource = resource.expect("a replace step has a desired resource");
            if let Some((current, saved)) = current {
                journal.commit(saved).await?;
                provider.delete(&current).await.map_err(failed)?;
                journal.record(Change::Deleted(resource.id.clone())).await?;
            }
            let (inputs, saved) = begin_create(resource, journal)?;
            journal.commit(saved).await?;
            Ok((Action::Replace, Some(create(resource, inputs, provider, journal).await?)))
        }
    }
}

/// Creates a resource whose pending entry is saved; queues its record.
async fn create<P: Provider, S: StateStore>(
    resource: &Resource,
    inputs: Inputs,
    provider: &P,
    journal: &Journal<S>,
) -> Result<Ticket, StepError> {
    let created = provider
        .create(resource.kind, &resource.name, &inputs)
        .await
        .map_err(|e| StepError::Provider(e.to_string()))?;
    let recorded = ResourceState {
        kind: resource.kind,
        name: resource.name.clone(),
        physical_id: created.physical_id,
        inputs,
        outputs: created.outputs,
        depends_on: resource.dependencies(),
    };
    Ok(journal.enqueue(Change::Recorded(resource.id.clone(), recorded)))
}

/// The resource's inputs with every reference resolved against the recorded outputs. The
/// graph guarantees the referenced resources have been applied.
fn resolve_inputs(resource: &Resource, state: &crate::state::StateFile) -> Result<Inputs, StepError> {
    let lookup =
        |reference: &Reference| state.resources.get(&reference.resource)?.outputs.get(&reference.output).cloned();
    let mut inputs = Inputs::new();
    for (key, value) in &resource.inputs {
        match resolve(value, &lookup) {
            Resolved::Known(value) => {
                inputs.insert(key.clone(), value);
            }
            Resolved::Unknown => {
                return Err(StepError::Provider(format!(
                    "input `{key}` references an output that does not exist: {value}"
                )));
            }
        }
    }
    Ok(inputs)
}

fn now() -> String {
    crate::state::lock::now_rfc3339()
}

/// What a refresh found out about one recorded resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// It exists as recorded; its outputs were re-read.
    Exists { id: ResourceId },
    /// It exists, but these properties were changed behind the tool's back: state now
    /// records their live values, so the plan puts back the configured ones.
    Drifted { id: ResourceId, properties: Vec<String> },
    /// It is gone from the cloud: it is forgotten, so the next plan creates it again.
    Gone { id: ResourceId },
}

/// Looks every recorded resource up in the cloud by its recorded id (`deploy --refresh`), so
/// that a renamed or retagged resource is still the same one: outputs are re-read,
/// properties changed behind the tool's back are recorded as they are now (compared as
/// [`crate::drift`] compares them), and resources deleted behind its back are forgotten, so
/// that the plan brings everything back to the configuration. One state write for all of
/// it. Runs under the lock, after [`recover`].
pub async fn refresh<P: Provider, S: StateStore>(
    provider: &P,
    writer: &mut StateWriter<S>,
) -> Result<Vec<Refreshed>, ApplyError> {
    let recorded: Vec<(ResourceId, ResourceState)> =
        writer.state().resources.iter().map(|(id, resource)| (id.clone(), resource.clone())).collect();
    let failed = |id: &ResourceId, error| ApplyError::Provider { doing: "refreshing", id: id.clone(), error };
    let mut found = Vec::with_capacity(recorded.len());
    for (id, resource) in recorded {
        let lookup = provider.get(&resource).await.map_err(|e| failed(&id, e))?;
        let live = match &lookup {
            Some(_) => provider.read(&resource).await.map_err(|e| failed(&id, e))?,
            None => None,
        };
        let drifted: Inputs = live
            .into_iter()
            .flatten()
            .filter(|(key, value)| {
                let recorded = resource.inputs.get(key).cloned().unwrap_or(serde_json::Value::Null);
                crate::drift::normalize(key, &recorded) != crate::drift::normalize(key, value)
            })
            .collect();
        found.push((id, lookup, drifted));
    }
    let report = found
        .iter()
        .map(|(id, lookup, drifted)| match lookup {
            None => Refreshed::Gone { id: id.clone() },
            Some(_) if drifted.is_empty() => Refreshed::Exists { id: id.clone() },
            Some(_) => Refreshed::Drifted { id: id.clone(), properties: drifted.keys().cloned().collect() },
        })
        .collect();
    writer
        .update(|state| {
            for (id, lookup, drifted) in found {
                match lookup {
                    Some(created) => {
                        if let Some(resource) = state.resources.get_mut(&id) {
                            resource.outputs.extend(created.outputs);
                            resource.inputs.extend(drifted);
                        }
                    }
                    None => {
                        state.resources.remove(&id);
                    }
                }
            }
        })
        .await?;
    Ok(report)
}

/// What recovery did with one pending entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// A resource whose creation was interrupted exists: it is now recorded with its
    /// identifying inputs and the properties it has in the cloud, so that the next plan
    /// brings every other property to the desired value.
    Adopted { id: ResourceId, physical_id: String },
    /// The interrupted create never reached the cloud.
    NeverCreated { id: ResourceId },
    /// An interrupted update: the resource keeps its last recorded inputs, so the next plan
    /// applies the update again.
    UpdateRetried { id: ResourceId },
    /// An interrupted delete finished in the cloud.
    Deleted { id: ResourceId },
    /// An interrupted delete did not happen; the resource is still recorded.
    StillExists { id: ResourceId },
}

/// Resolves every pending operation a crashed run left. An interrupted update or delete
/// looks its resource up by the recorded id; an interrupted create, which never recorded
/// one, by the deterministic name (and tags) it was created with. Each entry ends adopted,
/// forgotten or left for the plan to apply again. Runs under the lock, before planning.
pub async fn recover<P: Provider, S: StateStore>(
    provider: &P,
    writer: &mut StateWriter<S>,
    replace_keys: impl Fn(Kind) -> &'static [&'static str],
) -> Result<Vec<Recovered>, ApplyError> {
    let pending: Vec<(ResourceId, Pending)> =
        writer.state().pending.iter().map(|(id, pending)| (id.clone(), pending.clone())).collect();
    let mut recovered = Vec::new();
    for (id, pending) in pending {
        let recorded = writer.state().resources.get(&id).cloned();
        let doing = match pending.operation {
            Operation::Create => "recovering an interrupted create of",
            Operation::Update => "recovering an interrupted update of",
            Operation::Delete => "recovering an interrupted delete of",
        };
        let lookup = match (&pending.operation, &recorded) {
            (Operation::Create, _) => provider.find(pending.kind, &pending.name, &pending.inputs).await,
            (Operation::Update | Operation::Delete, Some(recorded)) => provider.get(recorded).await,
            (Operation::Update | Operation::Delete, None) => Ok(None),
        };
        let found = lookup.map_err(|error| ApplyError::Provider { doing, id: id.clone(), error })?;
        match (pending.operation, found, recorded) {
            (Operation::Create, Some(Created { physical_id, outputs }), _) => {
                let identifying: Inputs = pending
                    .inputs
                    .iter()
                    .filter(|(key, _)| replace_keys(pending.kind).contains(&key.as_str()))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                let mut adopted = ResourceState {
                    kind: pending.kind,
                    name: pending.name.clone(),
                    physical_id: physical_id.clone(),
                    inputs: identifying,
                    outputs,
                    depends_on: pending.depends_on.clone(),
                };
                // What the interrupted run finished is recorded as it is in the cloud, so that
                // the plan changes only what it had not done yet.
                let live = provider.read(&adopted).await.map_err(|error| ApplyError::Provider {
                    doing,
                    id: id.clone(),
                    error,
                })?;
                for (key, value) in live.into_iter().flatten() {
                    let sent = pending.inputs.get(&key);
                    let same = sent.is_some_and(|sent| {
                        crate::drift::normalize(&key, sent) == crate::drift::normalize(&key, &value)
                    });
                    let recorded = if same { sent.cloned().unwrap_or(value) } else { value };
                    adopted.inputs.entry(key).or_insert(recorded);
                }
                writer.finish_create_or_update(id.clone(), adopted).await?;
                recovered.push(Recovered::Adopted { id, physical_id });
            }
            (Operation::Create, None, _) => {
                writer.clear_pending(&id).await?;
                recovered.push(Recovered::NeverCreated { id });
            }
            (Operation::Update, found, Some(mut recorded)) => {
                if let Some(found) = found {
                    recorded.outputs.extend(found.outputs);
                }
                writer.finish_create_or_update(id.clone(), recorded).await?;
                recovered.push(Recovered::UpdateRetried { id });
            }
            (Operation::Update, _, None) => {
                writer.clear_pending(&id).await?;
                recovered.push(Recovered::NeverCreated { id });
            }
            (Operation::Delete, None, _) => {
                writer.finish_delete(&id).await?;
                recovered.push(Recovered::Deleted { id });
            }
            (Operation::Delete, Some(_), _) => {
                writer.clear_pending(&id).await?;
                recovered.push(Recovered::StillExists { id });
            }
        }
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests;
