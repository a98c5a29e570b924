//! Resources as data: what the stack wants to exist, and the references between resources
//! that make up the dependency graph.
//!
//! A resource's inputs are JSON. A string input may reference another resource's output as
//! `${<resource id>.<output>}`, e.g. `${role.analyze.arn}`; such references are the edges of
//! the dependency graph, and a value that depends on an output not known yet is shown in
//! plans as `(known after apply)`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The inputs of a resource: property name to JSON value, possibly with references.
pub type Inputs = BTreeMap<String, Value>;
/// The outputs a provider reports for a resource, e.g. `arn`, `id`.
pub type Outputs = BTreeMap<String, Value>;

/// The logical id of a resource within a stack, e.g. `function.analyze`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceId(pub String);

impl ResourceId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ResourceId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// Every kind of resource the engine manages. Closed: each provider matches it exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Bucket,
    Role,
    LogGroup,
    Function,
    /// A named pointer to a published version of a function.
    Alias,
    HttpApi,
    Integration,
    Route,
    Stage,
    Permission,
    /// How Lambda retries asynchronous invocations of a function's alias.
    EventInvokeConfig,
    /// A function's reserved concurrency: at most this many instances run at once.
    Concurrency,
    /// A bucket's event notifications (the whole configuration, one per bucket).
    BucketNotification,
}

impl Kind {
    /// The name users of Terraform's AWS provider know the kind by, for plan output.
    pub const fn type_name(self) -> &'static str {
        match self {
            Kind::Bucket => "aws_s3_bucket",
            Kind::Role => "aws_iam_role",
            Kind::LogGroup => "aws_cloudwatch_log_group",
            Kind::Function => "aws_lambda_function",
            Kind::Alias => "aws_lambda_alias",
            Kind::HttpApi => "aws_apigatewayv2_api",
            Kind::Integration => "aws_apigatewayv2_integration",
            Kind::Route => "aws_apigatewayv2_route",
            Kind::Stage => "aws_apigatewayv2_stage",
            Kind::Permission => "aws_lambda_permission",
            Kind::EventInvokeConfig => "aws_lambda_function_event_invoke_config",
            // Terraform sets it on aws_lambda_function; here it is its own resource, named
            // after Lambda's PutFunctionConcurrency.
            Kind::Concurrency => "aws_lambda_function_concurrency",
            Kind::BucketNotification => "aws_s3_bucket_notification",
        }
    }

    /// Whether destroying the resource loses data; `protect` forbids deleting these.
    pub const fn holds_data(self) -> bool {
        match self {
            Kind::Bucket => true,
            Kind::Role
            | Kind::LogGroup
            | Kind::Function
            | Kind::Alias
            | Kind::HttpApi
            | Kind::Integration
            | Kind::Route
            | Kind::Stage
            | Kind::Permission
            | Kind::EventInvokeConfig
            | Kind::Concurrency
            | Kind::BucketNotification => false,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

/// A resource the stack wants to exist.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    pub id: ResourceId,
    pub kind: Kind,
    /// The deterministic physical name, `<project>-<env>-<name>` or derived from it. It is how
    /// a resource is found again after a crash, so it never depends on another's outputs.
    pub name: String,
    pub inputs: Inputs,
    /// Dependencies beyond those the inputs reference (ordering only).
    pub depends_on: BTreeSet<ResourceId>,
}

impl Resource {
    pub fn new(id: impl Into<String>, kind: Kind, name: impl Into<String>) -> Self {
        Self { id: ResourceId::new(id), kind, name: name.into(), inputs: Inputs::new(), depends_on: BTreeSet::new() }
    }

    pub fn input(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.inputs.insert(key.to_owned(), value.into());
        self
    }

    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.depends_on.insert(ResourceId::new(id));
        self
    }

    /// Every resource this one must wait for: explicit dependencies plus referenced ones.
    pub fn dependencies(&self) -> BTreeSet<ResourceId> {
        let mut dependencies = self.depends_on.clone();
        for value in self.inputs.values() {
            for reference in references(value) {
                dependencies.insert(reference.resource);
            }
        }
        dependencies
    }
}

/// A reference to another resource's output, `${<resource>.<output>}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub resource: ResourceId,
    pub output: String,
}

impl Reference {
    /// The `${...}` text of a reference to `output` of `resource`.
    pub fn to(resource: &str, output: &str) -> String {
        format!("${{{resource}.{output}}}")
    }
}

/// Every reference inside a value, in order of appearance.
pub fn references(value: &Value) -> Vec<Reference> {
    let mut found = Vec::new();
    visit_strings(value, &mut |text| {
        for_each_reference(text, |reference| found.push(reference));
    });
    found
}

fn visit_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| visit_strings(item, visit)),
        Value::Object(map) => map.values().for_each(|item| visit_strings(item, visit)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn for_each_reference(text: &str, mut found: impl FnMut(Reference)) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        if let Some((resource, output)) = after[..end].rsplit_once('.') {
            found(Reference { resource: ResourceId::new(resource), output: output.to_owned() });
        }
        rest = &after[end + 1..];
    }
}

/// The result of resolving a value's references.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Known(Value),
    /// Some referenced output is not known until apply.
    Unknown,
}

/// Replaces every reference in `value` using `lookup`; `None` from the lookup makes the whole
/// value unknown.
pub fn resolve(value: &Value, lookup: &impl Fn(&Reference) -> Option<Value>) -> Resolved {
    match resolve_value(value, lookup) {
        Some(value) => Resolved::Known(value),
        None => Resolved::Unknown,
    }
}

fn resolve_value(value: &Value, lookup: &impl Fn(&Reference) -> Option<Value>) -> Option<Value> {
    Some(match value {
        Value::String(text) => Value::String(resolve_text(text, lookup)?),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| resolve_value(item, lookup)).collect::<Option<_>>()?)
        }
        Value::Object(map) => Value::Object(
            map.iter().map(|(key, item)| Some((key.clone(), resolve_value(item, lookup)?))).collect::<Option<_>>()?,
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
    })
}

fn resolve_text(text: &str, lookup: &impl Fn(&Reference) -> Option<Value>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Some(out);
        };
        match after[..end].rsplit_once('.') {
            Some((resource, output)) => {
                let value = lookup(&Reference { resource: ResourceId::new(resource), output: output.to_owned() })?;
                match value {
                    Value::String(text) => out.push_str(&text),
                    other => out.push_str(&other.to_string()),
                }
            }
            None => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Resolves every input; `None` for inputs that are not known yet.
pub fn resolve_inputs(inputs: &Inputs, lookup: &impl Fn(&Reference) -> Option<Value>) -> BTreeMap<String, Resolved> {
    inputs.iter().map(|(key, value)| (key.clone(), resolve(value, lookup))).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_are_found_in_nested_strings() {
        let value = json!({"a": ["x ${role.analyze.arn} y", "${api.id}"], "b": 3});
        let found: Vec<String> = references(&value).iter().map(|r| format!("{}:{}", r.resource, r.output)).collect();
        assert_eq!(found, ["role.analyze:arn", "api:id"]);
    }

    #[test]
    fn resolving_substitutes_known_outputs() {
        let value = json!({"source": "arn:aws:execute-api:eu-west-1:1:${api.id}/*/GET/upload-url"});
        let lookup = |reference: &Reference| (reference.resource.as_str() == "api").then(|| json!("abc123"));
        assert_eq!(
            resolve(&value, &lookup),
            Resolved::Known(json!({"source": "arn:aws:execute-api:eu-west-1:1:abc123/*/GET/upload-url"}))
        );
    }

    #[test]
    fn any_unknown_reference_makes_the_value_unknown() {
        let value = json!(["${api.id}", "${role.x.arn}"]);
        let lookup = |reference: &Reference| (reference.resource.as_str() == "api").then(|| json!("abc"));
        assert_eq!(resolve(&value, &lookup), Resolved::Unknown);
    }

    #[test]
    fn dependencies_combine_references_and_explicit_ordering() {
        let resource = Resource::new("function.analyze", Kind::Function, "ia-dev-analyze")
            .input("role", Reference::to("role.analyze", "arn"))
            .after("logs.analyze");
        let dependencies = resource.dependencies();
        let ids: Vec<&str> = dependencies.iter().map(ResourceId::as_str).collect();
        assert_eq!(ids, ["logs.analyze", "role.analyze"]);
    }
}
