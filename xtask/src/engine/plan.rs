//! Planning, which is pure: desired resources plus recorded state give a [`Plan`] of steps,
//! each of a closed set of [`Action`]s with the property-level changes that explain it.
//! Nothing here touches the cloud.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::graph::{self, CycleError};
use super::resource::{resolve, Kind, Reference, Resolved, Resource, ResourceId};
use crate::state::StateFile;

/// What a step does to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    /// Delete, then create: names are deterministic, so the old one must go first.
    Replace,
    Delete,
}

impl Action {
    /// Terraform's plan symbol.
    pub const fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
}

/// A value in a plan: known, or only known once its dependencies have been applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "value")]
pub enum PlannedValue {
    Known(Value),
    KnownAfterApply,
}

impl From<Resolved> for PlannedValue {
    fn from(resolved: Resolved) -> Self {
        match resolved {
            Resolved::Known(value) => PlannedValue::Known(value),
            Resolved::Unknown => PlannedValue::KnownAfterApply,
        }
    }
}

/// One property's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub property: String,
    /// The recorded value; `None` for a property that is new.
    pub old: Option<Value>,
    /// The desired value; `None` for a property that goes away.
    pub new: Option<PlannedValue>,
    /// Whether changing this property forces replacement.
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: ResourceId,
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    pub changes: Vec<Change>,
}

/// The whole plan, in dependency order (deletes in reverse dependency order, last).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Cycle(#[from] CycleError),
    #[error("{id} references `{reference}`, which is not a resource of the stack")]
    DanglingReference { id: ResourceId, reference: ResourceId },
    #[error(
        "`protect` is set for this environment: refusing to {verb} {id} ({kind} {name}), which holds data; \
         set `protect: false` in the environment file to allow it"
    )]
    Protected { id: ResourceId, kind: Kind, name: String, verb: &'static str },
}

impl Plan {
    /// Whether applying the plan changes anything.
    pub fn has_changes(&self) -> bool {
        self.steps.iter().any(|step| step.action != Action::NoOp)
    }

    pub fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|step| step.action == action).count()
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id.as_str() == id)
    }
}

/// What the planner must know of the providers.
pub trait Rules {
    /// The input keys of `kind` whose change forces a replacement.
    fn replace_keys(&self, kind: Kind) -> &'static [&'static str];

    /// The outputs of `kind` that an update changes (a function's published version), so
    /// that dependents of an updated resource see them as known only after apply.
    fn outputs_changed_by_update(&self, _kind: Kind) -> &'static [&'static str] {
        &[]
    }
}

/// A bare `replace_keys` function is rules whose updates change no output.
impl<F: Fn(Kind) -> &'static [&'static str]> Rules for F {
    fn replace_keys(&self, kind: Kind) -> &'static [&'static str] {
        self(kind)
    }
}

/// Plans the changes that bring `state` to `desired`.
///
/// `rules` are the providers' knowledge of which input changes force replacement and which
/// outputs an update changes. With `protect`, deleting or replacing a resource that holds
/// data is an error.
pub fn plan(desired: &[Resource], state: &StateFile, rules: impl Rules, protect: bool) -> Result<Plan, PlanError> {
    let by_id: BTreeMap<&ResourceId, &Resource> = desired.iter().map(|resource| (&resource.id, resource)).collect();
    for resource in desired {
        for dependency in resource.dependencies() {
            if !by_id.contains_key(&dependency) {
                return Err(PlanError::DanglingReference { id: resource.id.clone(), reference: dependency });
            }
        }
    }
    let order =
        graph::topological_order(desired.iter().map(|resource| (resource.id.clone(), resource.dependencies())))?;

    // Actions decided so far, so that a dependent of a created or replaced resource sees
    // its outputs as unknown.
    let mut actions: BTreeMap<ResourceId, Action> = BTreeMap::new();
    let mut steps = Vec::with_capacity(order.len());
    for id in &order {
        let resource = by_id[id];
        let step = plan_resource(resource, state, &actions, &rules);
        if protect && step.action == Action::Replace && resource.kind.holds_data() {
            return Err(PlanError::Protected {
                id: id.clone(),
                kind: resource.kind,
                name: resource.name.clone(),
                verb: "replace",
            });
        }
        actions.insert(id.clone(), step.action);
        steps.push(step);
    }

    // Recorded resources no longer desired are deleted, dependents first.
    let doomed: Vec<(ResourceId, BTreeSet<ResourceId>)> = state
        .resources
        .iter()
        .filter(|(id, _)| !by_id.contains_key(id))
        .map(|(id, recorded)| (id.clone(), recorded.depends_on.clone()))
        .collect();
    let doomed_ids: BTreeSet<&ResourceId> = doomed.iter().map(|(id, _)| id).collect();
    let delete_order = graph::topological_order(doomed.iter().map(|(id, dependencies)| {
        let within: BTreeSet<ResourceId> = dependencies.iter().filter(|d| doomed_ids.contains(d)).cloned().collect();
        (id.clone(), within)
    }))?;
    for id in delete_order.into_iter().rev() {
        let recorded = &state.resources[&id];
        if protect && recorded.kind.holds_data() {
            return Err(PlanError::Protected { id, kind: recorded.kind, name: recorded.name.clone(), verb: "delete" });
        }
        let changes = recorded
            .inputs
            .iter()
            .map(|(property, old)| Change {
                property: property.clone(),
                old: Some(old.clone()),
                new: None,
                forces_replacement: false,
            })
            .collect();
        steps.push(Step { id, kind: recorded.kind, name: recorded.name.clone(), action: Action::Delete, changes });
    }
    Ok(Plan { steps })
}

/// Plans a destroy: every recorded resource is deleted, dependents first.
pub fn plan_destroy(state: &StateFile, protect: bool) -> Result<Plan, PlanError> {
    plan(&[], state, |_: Kind| -> &'static [&'static str] { &[] }, protect)
}

fn plan_resource(
    resource: &Resource,
    state: &StateFile,
    actions: &BTreeMap<ResourceId, Action>,
    rules: &impl Rules,
) -> Step {
    let lookup = |reference: &Reference| -> Option<Value> {
        let recorded = state.resources.get(&reference.resource)?;
        match actions.get(&reference.resource) {
            Some(Action::NoOp) => recorded.outputs.get(&reference.output).cloned(),
            Some(Action::Update)
                if !rules.outputs_changed_by_update(recorded.kind).contains(&reference.output.as_str()) =>
            {
                recorded.outputs.get(&reference.output).cloned()
            }
            _ => None,
        }
    };
    let step = |action, changes| Step {
        id: resource.id.clone(),
        kind: resource.kind,
        name: resource.name.clone(),
        action,
        changes,
    };

    let Some(recorded) = state.resources.get(&resource.id).filter(|recorded| recorded.kind == resource.kind) else {
        let changes = resource
            .inputs
            .iter()
            .map(|(property, value)| Change {
                property: property.clone(),
                old: None,
                new: Some(resolve(value, &lookup).into()),
                forces_replacement: false,
            })
            .collect();
        return step(Action::Create, changes);
    };

    let replace = rules.replace_keys(resource.kind);
    let mut changes = Vec::new();
    if recorded.name != resource.name {
        changes.push(Change {
            property: "(name)".to_owned(),
            old: Some(Value::String(recorded.name.clone())),
            new: Some(PlannedValue::Known(Value::String(resource.name.clone()))),
            forces_replacement: true,
        });
    }
    let properties: BTreeSet<&String> = resource.inputs.keys().chain(recorded.inputs.keys()).collect();
    for property in properties {
        let old = recorded.inputs.get(property);
        let new = resource.inputs.get(property).map(|value| PlannedValue::from(resolve(value, &lookup)));
        let same = match (&old, &new) {
            (Some(old), Some(PlannedValue::Known(new))) => *old == new,
            (None, None) => true,
            _ => false,
        };
        if !same {
            changes.push(Change {
                property: property.clone(),
                old: old.cloned(),
                new,
                forces_replacement: replace.contains(&property.as_str()),
            });
        }
    }
    let action = if changes.is_empty() {
        Action::NoOp
    } else if changes.iter().any(|change| change.forces_replacement) {
        Action::Replace
    } else {
        Action::Update
    };
    step(action, changes)
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.has_changes() {
            return writeln!(f, "No changes. The infrastructure matches the configuration.");
        }
        for step in self.steps.iter().filter(|step| step.action != Action::NoOp) {
            write!(f, "{step}")?;
        }
        writeln!(
            f,
            "\nPlan: {} to add, {} to change, {} to replace, {} to destroy.",
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Replace),
            self.count(Action::Delete)
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::NoOp => "is unchanged",
            Action::Create => "will be created",
            Action::Update => "will be updated in-place",
            Action::Replace => "must be replaced",
            Action::Delete => "will be destroyed",
        };
        writeln!(f, "\n  # {} ({}) {verb}", self.id, self.name)?;
        writeln!(f, "{:>3} resource \"{}\" \"{}\" {{", self.action.symbol(), self.kind, self.id)?;
        let width = self.changes.iter().map(|change| change.property.len()).max().unwrap_or(0);
        // Values continue on following lines indented past `<symbol> <property> = `.
        let indent = " ".repeat(6 + 2 + width + 3);
        for change in &self.changes {
            let (symbol, text) = match (&change.old, &change.new) {
                (None, Some(new)) => ("+", planned(new, &indent)),
                (Some(old), None) => ("-", format!("{} -> null", render(old, &indent))),
                (Some(old), Some(new)) => ("~", format!("{} -> {}", render(old, &indent), planned(new, &indent))),
                (None, None) => continue,
            };
            let note = if change.forces_replacement { " # forces replacement" } else { "" };
            writeln!(f, "      {symbol} {:<width$} = {text}{note}", change.property)?;
        }
        writeln!(f, "    }}")
    }
}

fn planned(value: &PlannedValue, indent: &str) -> String {
    match value {
        PlannedValue::Known(value) => render(value, indent),
        PlannedValue::KnownAfterApply => "(known after apply)".to_owned(),
    }
}

/// A value on one line when it is short, else as indented JSON over several lines; never
/// shortened, so that a plan shows everything that will be sent.
fn render(value: &Value, indent: &str) -> String {
    const ONE_LINE: usize = 100;
    let value = &canonical(value);
    let text = value.to_string();
    if text.chars().count() <= ONE_LINE || !(value.is_object() || value.is_array()) {
        return text;
    }
    let pretty = serde_json::to_string_pretty(value).unwrap_or(text);
    pretty.lines().collect::<Vec<_>>().join(&format!("\n{indent}"))
}

/// The value with every object's keys in sorted order, so that output never depends on
/// whether serde_json keeps insertion order (a feature some dependencies switch on).
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(key, item)| (key.clone(), canonical(item))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => value.clone(),
    }
}

#[cfg(test)]
mod tests;
