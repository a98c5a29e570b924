use serde_json::json;

use super::*;
use crate::engine::resource::{resolve_inputs, Resolved};
use crate::state::ResourceState;

fn replace_keys(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Permission => &["function_name", "source_arn"],
        Kind::Integration | Kind::Route | Kind::Stage => &["api_id"],
        _ => &["name"],
    }
}

/// A small stack with the shape of the real one.
fn stack(memory: u32) -> Vec<Resource> {
    vec![
        Resource::new("bucket.uploads", Kind::Bucket, "ia-dev-uploads")
            .input("name", "ia-dev-uploads")
            .input("expire_days", 1),
        Resource::new("role.analyze", Kind::Role, "ia-dev-analyze").input("name", "ia-dev-analyze").input(
            "policy",
            json!({"Statement": [{"Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::ia-dev-uploads/uploads/*"}]}),
        ),
        Resource::new("function.analyze", Kind::Function, "ia-dev-analyze")
            .input("name", "ia-dev-analyze")
            .input("role_arn", Reference::to("role.analyze", "arn"))
            .input("memory_mb", memory)
            .input("code_sha256", "q1w2e3"),
        Resource::new("api", Kind::HttpApi, "ia-dev-api").input("name", "ia-dev-api"),
        Resource::new("integration.analyze", Kind::Integration, "ia-dev-analyze")
            .input("api_id", Reference::to("api", "id"))
            .input("function_arn", Reference::to("function.analyze", "arn")),
        Resource::new("route.analyze", Kind::Route, "POST /analyze")
            .input("api_id", Reference::to("api", "id"))
            .input("route_key", "POST /analyze")
            .input("target", format!("integrations/{}", Reference::to("integration.analyze", "id"))),
    ]
}

fn outputs_of(resource: &Resource) -> Outputs {
    let mut outputs = Outputs::new();
    outputs.insert("id".into(), json!(format!("{}-id", resource.id)));
    outputs.insert("arn".into(), json!(format!("arn:fake:{}", resource.name)));
    outputs
}

/// The state after `desired` was applied in full.
fn applied(desired: &[Resource]) -> StateFile {
    let mut state = StateFile::new();
    let order = graph::topological_order(desired.iter().map(|r| (r.id.clone(), r.dependencies()))).unwrap();
    for id in order {
        let resource = desired.iter().find(|r| r.id == id).unwrap();
        let lookup =
            |reference: &Reference| state.resources.get(&reference.resource)?.outputs.get(&reference.output).cloned();
        let inputs = resolve_inputs(&resource.inputs, &lookup)
            .into_iter()
            .map(|(key, value)| match value {
                Resolved::Known(value) => (key, value),
                Resolved::Unknown => panic!("unresolved {key}"),
            })
            .collect();
        let recorded = ResourceState {
            kind: resource.kind,
            name: resource.name.clone(),
            physical_id: format!("{}-id", resource.id),
            inputs,
            outputs: outputs_of(resource),
            depends_on: resource.dependencies(),
        };
        state.resources.insert(id, recorded);
    }
    state
}

use crate::engine::resource::Outputs;

#[test]
fn empty_state_plans_a_create_for_everything_in_dependency_order() {
    let plan = plan(&stack(256), &StateFile::new(), replace_keys, false).unwrap();
    let order: Vec<&str> = plan.steps.iter().map(|step| step.id.as_str()).collect();
    assert_eq!(
        order,
        ["api", "bucket.uploads", "role.analyze", "function.analyze", "integration.analyze", "route.analyze"]
    );
    assert!(plan.steps.iter().all(|step| step.action == Action::Create));
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn applied_state_plans_no_changes() {
    let desired = stack(256);
    let plan = plan(&desired, &applied(&desired), replace_keys, false).unwrap();
    assert!(!plan.has_changes(), "{plan}");
    assert_eq!(plan.to_string(), "No changes. The infrastructure matches the configuration.\n");
}

#[test]
fn a_memory_change_is_one_in_place_update_naming_the_property() {
    let state = applied(&stack(256));
    let plan = plan(&stack(512), &state, replace_keys, false).unwrap();
    let changed: Vec<(&str, Action)> =
        plan.steps.iter().filter(|s| s.action != Action::NoOp).map(|s| (s.id.as_str(), s.action)).collect();
    assert_eq!(changed, [("function.analyze", Action::Update)]);
    let step = plan.step("function.analyze").unwrap();
    assert_eq!(step.changes.len(), 1);
    assert_eq!(step.changes[0].property, "memory_mb");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn a_replacement_makes_dependent_values_known_after_apply() {
    let state = applied(&stack(256));
    let mut desired = stack(256);
    desired[1] = desired[1].clone().input("name", "ia-dev-analyze-v2");
    let plan = plan(&desired, &state, replace_keys, false).unwrap();
    assert_eq!(plan.step("role.analyze").unwrap().action, Action::Replace);
    let function = plan.step("function.analyze").unwrap();
    assert_eq!(function.action, Action::Update);
    assert_eq!(function.changes[0].new, Some(PlannedValue::KnownAfterApply));
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn resources_no_longer_desired_are_deleted_dependents_first() {
    let state = applied(&stack(256));
    let plan = plan(&stack(256)[..1], &state, replace_keys, false).unwrap();
    let deletes: Vec<&str> = plan.steps.iter().filter(|s| s.action == Action::Delete).map(|s| s.id.as_str()).collect();
    assert_eq!(deletes, ["route.analyze", "integration.analyze", "function.analyze", "role.analyze", "api"]);
}

#[test]
fn protect_refuses_to_destroy_the_bucket() {
    let state = applied(&stack(256));
    let error = plan_destroy(&state, true).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`protect` is set for this environment: refusing to delete bucket.uploads (aws_s3_bucket ia-dev-uploads), \
         which holds data; set `protect: false` in the environment file to allow it"
    );
    assert_eq!(plan_destroy(&state, false).unwrap().count(Action::Delete), 6);
}

#[test]
fn a_cycle_between_resources_is_an_error_naming_it() {
    let desired = vec![
        Resource::new("a", Kind::Role, "a").input("x", Reference::to("b", "arn")),
        Resource::new("b", Kind::Role, "b").input("x", Reference::to("a", "arn")),
    ];
    let error = plan(&desired, &StateFile::new(), replace_keys, false).unwrap_err();
    assert_eq!(error.to_string(), "dependency cycle: a -> b -> a");
}

#[test]
fn a_reference_to_a_missing_resource_is_an_error() {
    let desired = vec![Resource::new("a", Kind::Role, "a").input("x", Reference::to("nope", "arn"))];
    let error = plan(&desired, &StateFile::new(), replace_keys, false).unwrap_err();
    assert_eq!(error.to_string(), "a references `nope`, which is not a resource of the stack");
}

#[test]
fn plan_json_carries_actions_and_unknown_values() {
    let plan = plan(&stack(256)[..3], &StateFile::new(), replace_keys, false).unwrap();
    let json = serde_json::to_value(&plan).unwrap();
    let function = &json["steps"][2];
    assert_eq!(function["id"], "function.analyze");
    assert_eq!(function["action"], "create");
    let role_arn = function["changes"].as_array().unwrap().iter().find(|c| c["property"] == "role_arn").unwrap();
    assert_eq!(role_arn["new"], json!({"state": "known_after_apply"}));
}
