//! An in-memory cloud for the engine's lifecycle tests: it records every call, can be told
//! to fail a given call, and can delay calls to expose concurrency.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::provider::{Created, Provider, ProviderError};
use super::resource::{Inputs, Kind, Outputs};
use crate::state::ResourceState;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    Create(String),
    Update(String, Vec<String>),
    Delete(String),
    Find(String),
}

impl Call {
    pub fn is_mutation(&self) -> bool {
        !matches!(self, Call::Find(_))
    }
}

#[derive(Default)]
pub struct FakeCloud {
    /// name -> (kind, outputs)
    pub resources: Mutex<BTreeMap<String, (Kind, Outputs)>>,
    /// name -> the inputs it holds now
    pub inputs: Mutex<BTreeMap<String, Inputs>>,
    pub calls: Mutex<Vec<Call>>,
    /// Names whose next create/update/delete fails.
    pub fail: Mutex<BTreeSet<String>>,
    pub delay: Option<Duration>,
    next_id: Mutex<u64>,
    /// Peak number of calls in flight at once.
    in_flight: Mutex<(usize, usize)>,
}

impl FakeCloud {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_delay(delay: Duration) -> Self {
        Self { delay: Some(delay), ..Self::default() }
    }

    pub fn fail_on(&self, name: &str) {
        self.fail.lock().unwrap().insert(name.to_owned());
    }

    /// Changes input `key` of resource `name` as someone outside the engine would.
    pub fn drift(&self, name: &str, key: &str, value: serde_json::Value) {
        self.inputs.lock().unwrap().entry(name.to_owned()).or_default().insert(key.to_owned(), value);
    }

    /// Renames resource `old` as someone outside the engine would (a name or a tag edited
    /// by hand): it keeps its id, but a lookup by name no longer finds it.
    pub fn rename(&self, old: &str, new: &str) {
        let resource = self.resources.lock().unwrap().remove(old).expect("the resource exists");
        self.resources.lock().unwrap().insert(new.to_owned(), resource);
        let inputs = self.inputs.lock().unwrap().remove(old).unwrap_or_default();
        self.inputs.lock().unwrap().insert(new.to_owned(), inputs);
    }

    /// The current name of the resource with this id.
    fn name_of(&self, id: &str) -> Option<String> {
        let resources = self.resources.lock().unwrap();
        resources.iter().find(|(_, (_, outputs))| outputs["id"].as_str() == Some(id)).map(|(name, _)| name.clone())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn mutations(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mutation).collect()
    }

    pub fn clear_calls(&self) {
        self.calls.lock().unwrap().clear();
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.resources.lock().unwrap().keys().cloned().collect()
    }

    pub fn peak_concurrency(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }

    async fn enter(&self, call: Call) -> Result<(), String> {
        let name = match &call {
            Call::Create(name) | Call::Update(name, _) | Call::Delete(name) | Call::Find(name) => name.clone(),
        };
        self.calls.lock().unwrap().push(call.clone());
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            in_flight.0 += 1;
            in_flight.1 = in_flight.1.max(in_flight.0);
        }
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        self.in_flight.lock().unwrap().0 -= 1;
        if call.is_mutation() && self.fail.lock().unwrap().remove(&name) {
            return Err(format!("injected failure for {name}"));
        }
        Ok(())
    }

    fn outputs(&self, kind: Kind, name: &str, inputs: &Inputs) -> (String, Outputs) {
        let mut next = self.next_id.lock().unwrap();
        *next += 1;
        let id = format!("{}-{}", kind.type_name(), *next);
        let mut outputs = Outputs::new();
        outputs.insert("id".to_owned(), json!(id));
        outputs.insert("arn".to_owned(), json!(format!("arn:fake:{}:{name}", kind.type_name())));
        outputs.insert("name".to_owned(), json!(name));
        if let Some(code) = inputs.get("code_sha256") {
            outputs.insert("code_sha256".to_owned(), code.clone());
        }
        (id, outputs)
    }
}

fn error(kind: Kind, name: &str, operation: &'static str, message: String) -> ProviderError {
    ProviderError::Api { kind, name: name.to_owned(), operation, message }
}

impl Provider for FakeCloud {
    async fn create(&self, kind: Kind, name: &str, inputs: &Inputs) -> Result<Created, ProviderError> {
        self.enter(Call::Create(name.to_owned())).await.map_err(|m| error(kind, name, "Create", m))?;
        let mut resources = self.resources.lock().unwrap();
        if resources.contains_key(name) {
            return Err(error(kind, name, "Create", "already exists".to_owned()));
        }
        let (physical_id, outputs) = self.outputs(kind, name, inputs);
        resources.insert(name.to_owned(), (kind, outputs.clone()));
        self.inputs.lock().unwrap().insert(name.to_owned(), inputs.clone());
        Ok(Created { physical_id, outputs })
    }

    async fn update(
        &self,
        current: &ResourceState,
        inputs: &Inputs,
        changed: &[String],
    ) -> Result<Outputs, ProviderError> {
        let (kind, name) = (current.kind, current.name.as_str());
        self.enter(Call::Update(name.to_owned(), changed.to_vec()))
            .await
            .map_err(|m| error(kind, name, "Update", m))?;
        let mut resources = self.resources.lock().unwrap();
        let Some((_, outputs)) = resources.get_mut(name) else {
            return Err(error(kind, name, "Update", "does not exist".to_owned()));
        };
        if let Some(code) = inputs.get("code_sha256") {
            outputs.insert("code_sha256".to_owned(), code.clone());
        }
        self.inputs.lock().unwrap().insert(name.to_owned(), inputs.clone());
        Ok(outputs.clone())
    }

    async fn delete(&self, current: &ResourceState) -> Result<(), ProviderError> {
        let (kind, name) = (current.kind, current.name.as_str());
        self.enter(Call::Delete(name.to_owned())).await.map_err(|m| error(kind, name, "Delete", m))?;
        self.resources.lock().unwrap().remove(name);
        self.inputs.lock().unwrap().remove(name);
        Ok(())
    }

    async fn find(&self, kind: Kind, name: &str, _inputs: &Inputs) -> Result<Option<Created>, ProviderError> {
        self.enter(Call::Find(name.to_owned())).await.map_err(|m| error(kind, name, "Find", m))?;
        let resources = self.resources.lock().unwrap();
        Ok(resources.get(name).map(|(_, outputs)| Created {
            physical_id: outputs["id"].as_str().unwrap_or_default().to_owned(),
            outputs: outputs.clone(),
        }))
    }

    async fn get(&self, current: &ResourceState) -> Result<Option<Created>, ProviderError> {
        let (kind, name) = (current.kind, current.name.as_str());
        self.enter(Call::Find(name.to_owned())).await.map_err(|m| error(kind, name, "Get", m))?;
        let Some(name) = self.name_of(&current.physical_id) else { return Ok(None) };
        let outputs = self.resources.lock().unwrap()[&name].1.clone();
        Ok(Some(Created { physical_id: current.physical_id.clone(), outputs }))
    }

    async fn read(&self, current: &ResourceState) -> Result<Option<Inputs>, ProviderError> {
        let (kind, name) = (current.kind, current.name.as_str());
        self.enter(Call::Find(name.to_owned())).await.map_err(|m| error(kind, name, "Read", m))?;
        let Some(name) = self.name_of(&current.physical_id) else { return Ok(None) };
        Ok(Some(self.inputs.lock().unwrap().get(&name).cloned().unwrap_or_default()))
    }
}
