//! Typed access to a resource's resolved inputs, and the errors that name the resource.

use std::collections::{BTreeMap, HashMap};

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::error::operation::BuildError;
use serde_json::Value;

use super::error::{describe, CallError};
use crate::engine::provider::ProviderError;
use crate::engine::resource::{Inputs, Kind};

/// A resource's kind, name and inputs, as one call site sees them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec<'a> {
    pub kind: Kind,
    /// The deterministic name, used to name the resource in errors.
    pub name: &'a str,
    pub inputs: &'a Inputs,
}

impl<'a> Spec<'a> {
    pub fn new(kind: Kind, name: &'a str, inputs: &'a Inputs) -> Self {
        Self { kind, name, inputs }
    }

    /// The error for a failed SDK call.
    pub fn api<E>(&self, operation: &'static str, error: CallError<E>) -> ProviderError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.failed(operation, describe(&error))
    }

    /// The error for a call that failed in another way than with an SDK error.
    pub fn failed(&self, operation: &'static str, message: impl Into<String>) -> ProviderError {
        ProviderError::Api { kind: self.kind, name: self.name.to_owned(), operation, message: message.into() }
    }

    /// The error for a request the SDK could not build from the inputs.
    pub fn built<T>(&self, operation: &'static str, result: Result<T, BuildError>) -> Result<T, ProviderError> {
        result.map_err(|error| self.failed(operation, format!("could not build the request: {error}")))
    }

    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ProviderError {
        ProviderError::Input {
            kind: self.kind,
            name: self.name.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn value(&self, key: &str) -> Option<&'a Value> {
        self.inputs.get(key).filter(|value| !value.is_null())
    }

    fn required(&self, key: &str) -> Result<&'a Value, ProviderError> {
        self.value(key).ok_or_else(|| self.invalid(key, "missing"))
    }

    pub fn str(&self, key: &str) -> Result<&'a str, ProviderError> {
        let value = self.required(key)?;
        value.as_str().ok_or_else(|| self.invalid(key, format!("expected a string, got {value}")))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ProviderError> {
        self.value(key).map(|_| self.str(key)).transpose()
    }

    pub fn i32(&self, key: &str) -> Result<i32, ProviderError> {
        let value = self.required(key)?;
        value
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .ok_or_else(|| self.invalid(key, format!("expected a 32-bit integer, got {value}")))
    }

    pub fn opt_i32(&self, key: &str) -> Result<Option<i32>, ProviderError> {
        self.value(key).map(|_| self.i32(key)).transpose()
    }

    pub fn f64(&self, key: &str) -> Result<f64, ProviderError> {
        let value = self.required(key)?;
        value.as_f64().ok_or_else(|| self.invalid(key, format!("expected a number, got {value}")))
    }

    pub fn bool(&self, key: &str) -> Result<bool, ProviderError> {
        let value = self.required(key)?;
        value.as_bool().ok_or_else(|| self.invalid(key, format!("expected true or false, got {value}")))
    }

    /// A list of strings; absent is empty.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        let Some(value) = self.value(key) else { return Ok(Vec::new()) };
        let items = value.as_array().ok_or_else(|| self.invalid(key, format!("expected a list, got {value}")))?;
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.invalid(key, format!("expected strings, got {item}")))
            })
            .collect()
    }

    /// A map of strings (tags, environment variables); absent is empty.
    pub fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        let Some(value) = self.value(key) else { return Ok(BTreeMap::new()) };
        let map = value.as_object().ok_or_else(|| self.invalid(key, format!("expected a map, got {value}")))?;
        map.iter()
            .map(|(name, item)| match item.as_str() {
                Some(text) => Ok((name.clone(), text.to_owned())),
                None => Err(self.invalid(key, format!("`{name}`: expected a string, got {item}"))),
            })
            .collect()
    }

    /// The resource's tags; absent is none.
    pub fn tags(&self) -> Result<BTreeMap<String, String>, ProviderError> {
        self.string_map("tags")
    }

    /// A JSON object input (a policy document) as the JSON text AWS takes.
    pub fn json_text(&self, key: &str) -> Result<String, ProviderError> {
        let value = self.required(key)?;
        if !value.is_object() {
            return Err(self.invalid(key, format!("expected a JSON object, got {value}")));
        }
        serde_json::to_string(value).map_err(|error| self.invalid(key, error.to_string()))
    }
}

/// The calls that bring tags from `old` to `new`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct TagChanges {
    /// Tags to add or overwrite.
    pub set: HashMap<String, String>,
    /// Keys to remove.
    pub remove: Vec<String>,
}

impl TagChanges {
    pub fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Self {
        Self {
            set: new
                .iter()
                .filter(|(key, value)| old.get(*key) != Some(*value))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            remove: old.keys().filter(|key| !new.contains_key(*key)).cloned().collect(),
        }
    }
}

/// A `HashMap` of tags, as the SDKs take them.
pub(crate) fn hash_map(tags: &BTreeMap<String, String>) -> HashMap<String, String> {
    tags.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn inputs(value: Value) -> Inputs {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn typed_access_names_the_key_and_what_was_wrong() {
        let inputs = inputs(json!({"memory_mb": "a lot", "name": "f", "tags": {"a": 1}, "nothing": null}));
        let spec = Spec::new(Kind::Function, "ia-dev-f", &inputs);
        assert_eq!(spec.str("name").unwrap(), "f");
        assert!(spec.i32("memory_mb").unwrap_err().to_string().contains("invalid input `memory_mb`"));
        assert!(spec.str("missing").unwrap_err().to_string().contains("missing"));
        assert_eq!(spec.opt_str("nothing").unwrap(), None);
        assert!(spec.tags().unwrap_err().to_string().contains("`a`"));
    }

    #[test]
    fn tag_changes_set_what_differs_and_remove_what_is_gone() {
        let old = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
        let new = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("c".to_owned(), "3".to_owned())]);
        let changes = TagChanges::between(&old, &new);
        assert_eq!(changes.set, HashMap::from([("c".to_owned(), "3".to_owned())]));
        assert_eq!(changes.remove, ["b"]);
    }
}
