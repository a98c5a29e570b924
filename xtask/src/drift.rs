//! Drift: what the cloud holds compared with what state records. Pure: the live values come
//! from [`crate::providers::AwsProvider::read_live`].
//!
//! Values are compared after normalization, so that a difference in form is not drift:
//! policy documents (IAM JSON) with their statements, actions, resources and principals in
//! any order and single values written as one-element lists; lists of CORS origins in any
//! order; numbers whatever their JSON type (`50` and `50.0`).
//!
//! Besides each resource's own properties, drift sees what was added next to them, where an
//! addition changes who may do what: every policy inlined in or attached to a role beyond the
//! one this tool writes, and every statement of a function's resource policy (its own, and
//! its `live` alias's) beyond the permissions state records. [`exclusive_expectations`] says
//! what each should hold; anything more is drift.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::resource::{Inputs, Kind, ResourceId};
use crate::state::ResourceState;

/// The inputs holding IAM policy documents.
const POLICY_KEYS: [&str; 2] = ["policy", "assume_role_policy"];
/// The inputs holding lists whose order means nothing (and where no list means none).
const SET_KEYS: [&str; 4] = ["cors_allowed_origins", INLINE_POLICIES, ATTACHED_POLICIES, POLICY_STATEMENTS];

/// A role's inline policies, by name: only the one this tool writes.
pub const INLINE_POLICIES: &str = "inline_policies";
/// The managed policies attached to a role, by ARN: none.
pub const ATTACHED_POLICIES: &str = "attached_policies";
/// The statement ids of a function's or alias's resource policy: the recorded permissions'.
pub const POLICY_STATEMENTS: &str = "policy_statements";

/// How one recorded resource compares with the cloud.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Every property read back matches.
    InSync,
    /// Some properties differ.
    Changed { properties: Vec<PropertyDrift> },
    /// It no longer exists.
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyDrift {
    pub property: String,
    /// What state records (the inputs last applied).
    pub recorded: Value,
    /// What the cloud holds.
    pub live: Value,
}

/// One resource's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceDrift {
    pub id: ResourceId,
    pub kind: Kind,
    pub physical_id: String,
    #[serde(flatten)]
    pub status: Status,
}

/// Compares a recorded resource with what the cloud holds (`None`: it is gone). Only the
/// properties the live read returns are compared.
pub fn compare(id: &ResourceId, recorded: &ResourceState, live: Option<&Inputs>) -> ResourceDrift {
    let status = match live {
        None => Status::Deleted,
        Some(live) => {
            let properties: Vec<PropertyDrift> = live
                .iter()
                .filter_map(|(key, live)| {
                    let recorded = recorded.inputs.get(key).cloned().unwrap_or(Value::Null);
                    (normalize(key, &recorded) != normalize(key, live)).then(|| PropertyDrift {
                        property: key.clone(),
                        recorded,
                        live: live.clone(),
                    })
                })
                .collect();
            if properties.is_empty() {
                Status::InSync
            } else {
                Status::Changed { properties }
            }
        }
    };
    ResourceDrift { id: id.clone(), kind: recorded.kind, physical_id: recorded.physical_id.clone(), status }
}

/// What a resource's neighbours must hold for it to be as the tool left it, as properties
/// compared like its inputs (see the module's documentation): for a role, its one inline
/// policy and no attached one; for a function, no resource-policy statement of its own (the
/// stack grants on aliases only) unless state records one; for an alias, exactly the statement
/// ids of the permissions state records on it. Empty for every other kind.
pub fn exclusive_expectations(recorded: &ResourceState, all: &BTreeMap<ResourceId, ResourceState>) -> Inputs {
    let text =
        |resource: &ResourceState, key: &str| resource.inputs.get(key).and_then(Value::as_str).map(str::to_owned);
    let statements = |function: Option<String>, qualifier: Option<String>| -> Value {
        let mut sids: Vec<String> = all
            .values()
            .filter(|resource| resource.kind == Kind::Permission)
            .filter(|permission| {
                text(permission, "function_name") == function && text(permission, "qualifier") == qualifier
            })
            .filter_map(|permission| text(permission, "statement_id"))
            .collect();
        sids.sort();
        json!(sids)
    };
    let mut expected = Inputs::new();
    match neighbours(recorded.kind) {
        Neighbours::None => {}
        Neighbours::RolePolicies => {
            let inline: Vec<String> = text(recorded, "policy_name").into_iter().collect();
            expected.insert(INLINE_POLICIES.to_owned(), json!(inline));
            expected.insert(ATTACHED_POLICIES.to_owned(), json!([]));
        }
        Neighbours::FunctionPolicy => {
            let name = text(recorded, "name").unwrap_or_else(|| recorded.physical_id.clone());
            expected.insert(POLICY_STATEMENTS.to_owned(), statements(Some(name), None));
        }
        Neighbours::AliasPolicy => {
            let (function, name) = (text(recorded, "function_name"), text(recorded, "name"));
            expected.insert(POLICY_STATEMENTS.to_owned(), statements(function, name));
        }
    }
    expected
}

/// What sits next to a resource and is compared with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Neighbours {
    None,
    /// A role's inline and attached policies.
    RolePolicies,
    /// A function's own (unqualified) resource policy.
    FunctionPolicy,
    /// The resource policy of an alias (a qualified function).
    AliasPolicy,
}

/// What sits next to a resource of `kind` that drift compares.
pub const fn neighbours(kind: Kind) -> Neighbours {
    match kind {
        Kind::Role => Neighbours::RolePolicies,
        Kind::Function => Neighbours::FunctionPolicy,
        Kind::Alias => Neighbours::AliasPolicy,
        Kind::Bucket
        | Kind::LogGroup
        | Kind::HttpApi
        | Kind::Integration
        | Kind::Route
        | Kind::Stage
        | Kind::Permission
        | Kind::EventInvokeConfig
        | Kind::Concurrency
        | Kind::BucketNotification => Neighbours::None,
    }
}

/// A value in the form that makes equal meanings equal.
pub fn normalize(key: &str, value: &Value) -> Value {
    if POLICY_KEYS.contains(&key) {
        return normalize_policy(value);
    }
    let value = canonical(&numbers(value));
    if SET_KEYS.contains(&key) {
        return sorted(&value);
    }
    value
}

/// `value` with every object's keys in sorted order, whether or not serde_json preserves
/// insertion order in this build (a feature another crate may turn on): what is sorted or
/// printed by its text must not depend on that.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|key| (key.clone(), canonical(&map[key]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Numbers as floats, everywhere in `value`.
fn numbers(value: &Value) -> Value {
    match value {
        Value::Number(number) => number.as_f64().map_or_else(|| value.clone(), Value::from),
        Value::Array(items) => Value::Array(items.iter().map(numbers).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), numbers(v))).collect()),
        other => other.clone(),
    }
}

/// A list (or a single value) as a sorted list.
fn sorted(value: &Value) -> Value {
    let mut items = match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        single => vec![single.clone()],
    };
    items.sort_by_key(|item| item.to_string());
    items.dedup();
    Value::Array(items)
}

/// An IAM policy document in canonical form. Text is parsed first.
pub fn normalize_policy(value: &Value) -> Value {
    let parsed;
    let value = match value {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(document) => {
                parsed = document;
                &parsed
            }
            Err(_) => return value.clone(),
        },
        other => other,
    };
    let Value::Object(document) = value else { return value.clone() };
    let mut out = document.clone();
    if let Some(statements) = document.get("Statement") {
        let mut statements: Vec<Value> = sorted(statements)
            .as_array()
            .into_iter()
            .flatten()
            .map(|statement| canonical(&normalize_statement(statement)))
            .collect();
        statements.sort_by_key(|statement| statement.to_string());
        out.insert("Statement".to_owned(), Value::Array(statements));
    }
    canonical(&Value::Object(out))
}

fn normalize_statement(statement: &Value) -> Value {
    let Value::Object(statement) = statement else { return statement.clone() };
    let mut out = statement.clone();
    for key in ["Action", "NotAction", "Resource", "NotResource"] {
        if let Some(value) = statement.get(key) {
            out.insert(key.to_owned(), sorted(value));
        }
    }
    for key in ["Principal", "NotPrincipal"] {
        if let Some(Value::Object(principal)) = statement.get(key) {
            out.insert(key.to_owned(), Value::Object(principal.iter().map(|(k, v)| (k.clone(), sorted(v))).collect()));
        }
    }
    if let Some(Value::Object(condition)) = statement.get("Condition") {
        let condition = condition
            .iter()
            .map(|(operator, tests)| {
                let tests = match tests {
                    Value::Object(tests) => Value::Object(tests.iter().map(|(k, v)| (k.clone(), sorted(v))).collect()),
                    other => other.clone(),
                };
                (operator.clone(), tests)
            })
            .collect();
        out.insert("Condition".to_owned(), Value::Object(condition));
    }
    Value::Object(out)
}

/// Every resource's result, by id; and the state bucket's protections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub resources: Vec<ResourceDrift>,
    /// The state bucket compared with what the tool configures it as (its id is
    /// [`STATE_BUCKET_ID`]); `None` when it was not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_bucket: Option<ResourceDrift>,
}

/// How the state bucket is named in a report.
pub const STATE_BUCKET_ID: &str = "state-bucket";

impl Report {
    pub fn has_drift(&self) -> bool {
        self.resources.iter().chain(&self.state_bucket).any(|resource| resource.status != Status::InSync)
    }

    /// Counts by status: (in sync, changed, deleted).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for resource in &self.resources {
            match resource.status {
                Status::InSync => counts.0 += 1,
                Status::Changed { .. } => counts.1 += 1,
                Status::Deleted => counts.2 += 1,
            }
        }
        counts
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for resource in self.resources.iter().chain(&self.state_bucket) {
            match &resource.status {
                Status::InSync => {}
                Status::Deleted => {
                    writeln!(f, "  - {} ({}) is gone: deleted outside this tool", resource.id, resource.physical_id)?;
                }
                Status::Changed { properties } => {
                    writeln!(f, "  ~ {} ({}) changed outside this tool:", resource.id, resource.physical_id)?;
                    for property in properties {
                        match statement_changes(&property.property, &property.recorded, &property.live) {
                            Some(lines) => {
                                writeln!(f, "      {}: statements differ", property.property)?;
                                for line in lines {
                                    writeln!(f, "        {line}")?;
                                }
                            }
                            None => writeln!(
                                f,
                                "      {}: {} (state) != {} (live)",
                                property.property, property.recorded, property.live
                            )?,
                        }
                    }
                }
            }
        }
        let (in_sync, changed, deleted) = self.counts();
        write!(f, "Drift: {in_sync} in sync, {changed} changed, {deleted} deleted.")
    }
}

/// For a policy property: the statements only state has (`- `) and only the cloud has
/// (`+ `), normalized; `None` for other properties.
fn statement_changes(key: &str, recorded: &Value, live: &Value) -> Option<Vec<String>> {
    if !POLICY_KEYS.contains(&key) {
        return None;
    }
    let statements = |value: &Value| -> Option<Vec<Value>> { normalize_policy(value)["Statement"].as_array().cloned() };
    let (recorded, live) = (statements(recorded)?, statements(live)?);
    let mut lines: Vec<String> = recorded.iter().filter(|s| !live.contains(s)).map(|s| format!("- {s}")).collect();
    lines.extend(live.iter().filter(|s| !recorded.contains(s)).map(|s| format!("+ {s}")));
    Some(lines)
}

/// Sorts results by resource id, for deterministic output.
pub fn report(mut resources: Vec<ResourceDrift>, state_bucket: Option<ResourceDrift>) -> Report {
    resources.sort_by(|a, b| a.id.cmp(&b.id));
    Report { resources, state_bucket }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;

    fn recorded(kind: Kind, inputs: Value) -> ResourceState {
        ResourceState {
            kind,
            name: "n".into(),
            physical_id: "p".into(),
            inputs: serde_json::from_value(inputs).unwrap(),
            outputs: Default::default(),
            depends_on: BTreeSet::new(),
        }
    }

    fn live(inputs: Value) -> Inputs {
        serde_json::from_value(inputs).unwrap()
    }

    #[test]
    fn reordered_iam_json_is_not_drift() {
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:x"},
            {"Sid": "B", "Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": ["arn:y"],
             "Condition": {"ArnLike": {"aws:SourceArn": ["b", "a"]}}}
        ]});
        let reordered = json!({"Statement": [
            {"Resource": "arn:y", "Action": ["logs:PutLogEvents"], "Effect": "Allow", "Sid": "B",
             "Condition": {"ArnLike": {"aws:SourceArn": ["a", "b"]}}},
            {"Action": ["s3:PutObject", "s3:GetObject"], "Sid": "A", "Resource": ["arn:x"], "Effect": "Allow"}
        ], "Version": "2012-10-17"});
        let state = recorded(Kind::Role, json!({"policy": policy}));
        let as_text = live(json!({"policy": reordered.to_string()}));
        assert_eq!(compare(&"role.a".into(), &state, Some(&as_text)).status, Status::InSync);
    }

    #[test]
    fn a_changed_policy_is_drift_naming_the_property() {
        let state =
            recorded(Kind::Role, json!({"policy": {"Statement": [{"Action": "s3:GetObject", "Resource": "*"}]}}));
        let widened = live(json!({"policy": {"Statement": [{"Action": "s3:*", "Resource": "*"}]}}));
        let drift = compare(&"role.a".into(), &state, Some(&widened));
        let Status::Changed { properties } = drift.status else { panic!("{drift:?}") };
        assert_eq!(properties.len(), 1);
        assert_eq!(properties[0].property, "policy");
    }

    #[test]
    fn numbers_and_origin_order_are_not_drift_but_values_are() {
        let state = recorded(
            Kind::Stage,
            json!({"throttling_rate_limit": 50.0, "throttling_burst_limit": 100, "cors_allowed_origins": ["a", "b"], "tags": {"k": "v"}}),
        );
        let same = live(
            json!({"throttling_rate_limit": 50, "throttling_burst_limit": 100.0, "cors_allowed_origins": ["b", "a"], "tags": {"k": "v"}}),
        );
        assert_eq!(compare(&"stage".into(), &state, Some(&same)).status, Status::InSync);
        let changed = live(json!({"throttling_rate_limit": 50, "throttling_burst_limit": 10, "tags": {"k": "w"}}));
        let Status::Changed { properties } = compare(&"stage".into(), &state, Some(&changed)).status else { panic!() };
        let names: Vec<&str> = properties.iter().map(|p| p.property.as_str()).collect();
        assert_eq!(names, ["tags", "throttling_burst_limit"]);
    }

    #[test]
    fn a_missing_resource_is_deleted_and_the_report_counts_it() {
        let state = recorded(Kind::Function, json!({"memory_mb": 256}));
        let report = report(
            vec![
                compare(&"function.b".into(), &state, None),
                compare(&"function.a".into(), &state, Some(&live(json!({"memory_mb": 256})))),
                compare(&"function.c".into(), &state, Some(&live(json!({"memory_mb": 512})))),
                compare(
                    &"role.a".into(),
                    &recorded(
                        Kind::Role,
                        json!({"policy": {"Statement": [
                            {"Sid": "Get", "Action": "s3:GetObject", "Resource": "*"},
                            {"Sid": "Logs", "Action": "logs:PutLogEvents", "Resource": "*"}
                        ]}}),
                    ),
                    Some(&live(json!({"policy": {"Statement": [
                        {"Sid": "Logs", "Action": ["logs:PutLogEvents"], "Resource": "*"},
                        {"Sid": "Get", "Action": "s3:*", "Resource": "*"}
                    ]}}))),
                ),
            ],
            None,
        );
        assert!(report.has_drift());
        assert_eq!(report.counts(), (1, 2, 1));
        let ids: Vec<&str> = report.resources.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["function.a", "function.b", "function.c", "role.a"]);
        insta::assert_snapshot!(report.to_string());
    }

    fn resource(kind: Kind, physical_id: &str, inputs: Value) -> ResourceState {
        ResourceState { physical_id: physical_id.into(), ..recorded(kind, inputs) }
    }

    /// A role, a function with its alias, and the permissions state records on the alias.
    fn stack() -> BTreeMap<ResourceId, ResourceState> {
        BTreeMap::from([
            (
                "role.f".into(),
                resource(Kind::Role, "app-f", json!({"name": "app-f", "policy_name": "least-privilege"})),
            ),
            ("function.f".into(), resource(Kind::Function, "app-f", json!({"name": "app-f"}))),
            ("alias.f".into(), resource(Kind::Alias, "live", json!({"function_name": "app-f", "name": "live"}))),
            (
                "permission.get".into(),
                resource(
                    Kind::Permission,
                    "apigateway-GET-get",
                    json!({"function_name": "app-f", "qualifier": "live", "statement_id": "apigateway-GET-get"}),
                ),
            ),
            (
                "permission.s3".into(),
                resource(
                    Kind::Permission,
                    "s3-uploads-f",
                    json!({"function_name": "app-f", "qualifier": "live", "statement_id": "s3-uploads-f"}),
                ),
            ),
        ])
    }

    /// `recorded` with its neighbours' expectations, compared with `live`.
    fn compare_exclusive(id: &str, live_exclusive: Value) -> Status {
        let all = stack();
        let mut recorded = all[&ResourceId::new(id)].clone();
        recorded.inputs.extend(exclusive_expectations(&recorded, &all));
        compare(&id.into(), &recorded, Some(&live(live_exclusive))).status
    }

    #[test]
    fn a_role_holds_its_one_inline_policy_and_nothing_attached() {
        let as_deployed = json!({"inline_policies": ["least-privilege"], "attached_policies": []});
        assert_eq!(compare_exclusive("role.f", as_deployed), Status::InSync);
        let Status::Changed { properties } = compare_exclusive(
            "role.f",
            json!({"inline_policies": ["least-privilege", "backdoor"], "attached_policies": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
        ) else {
            panic!("extra policies are drift")
        };
        let names: Vec<&str> = properties.iter().map(|p| p.property.as_str()).collect();
        assert_eq!(names, [ATTACHED_POLICIES, INLINE_POLICIES]);
    }

    #[test]
    fn an_alias_holds_exactly_the_recorded_permissions_and_its_function_none() {
        let recorded = json!({"policy_statements": ["s3-uploads-f", "apigateway-GET-get"]});
        assert_eq!(compare_exclusive("alias.f", recorded), Status::InSync);
        let extra = json!({"policy_statements": ["apigateway-GET-get", "s3-uploads-f", "anyone"]});
        let Status::Changed { properties } = compare_exclusive("alias.f", extra) else { panic!("an extra statement") };
        assert_eq!(properties[0].recorded, json!(["apigateway-GET-get", "s3-uploads-f"]));
        assert_eq!(compare_exclusive("function.f", json!({"policy_statements": []})), Status::InSync);
        assert!(matches!(compare_exclusive("function.f", json!({"policy_statements": ["x"]})), Status::Changed { .. }));
    }

    #[test]
    fn the_state_bucket_is_reported_apart_and_counts_as_drift() {
        let expected = resource(Kind::Bucket, "state", json!({"versioning": "Enabled"}));
        let in_sync = compare(&STATE_BUCKET_ID.into(), &expected, Some(&live(json!({"versioning": "Enabled"}))));
        let report_in_sync = report(Vec::new(), Some(in_sync));
        assert!(!report_in_sync.has_drift());
        assert_eq!(report_in_sync.to_string(), "Drift: 0 in sync, 0 changed, 0 deleted.");
        let suspended = compare(&STATE_BUCKET_ID.into(), &expected, Some(&live(json!({"versioning": "Suspended"}))));
        let report = report(Vec::new(), Some(suspended));
        assert!(report.has_drift());
        assert_eq!(
            report.to_string(),
            "  ~ state-bucket (state) changed outside this tool:\n      versioning: \"Enabled\" (state) != \"Suspended\" \
             (live)\nDrift: 0 in sync, 0 changed, 0 deleted."
        );
    }
}
