//! Engine lifecycle tests: a fake cloud and in-memory state, the real planner and executor.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{watch, Mutex};

use super::*;
use crate::engine::fake::{Call, FakeCloud};
use crate::engine::plan::{plan, plan_destroy};
use crate::state::memory::MemoryStore;
use crate::state::StateFile;

fn replace_keys(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Permission => &["function_name", "statement_id", "source_arn"],
        Kind::Integration | Kind::Route | Kind::Stage => &["api_id"],
        _ => &["name"],
    }
}

/// A stack with the real one's shape: two independent chains joined at the API.
fn stack(memory: u32, code: &str) -> Vec<Resource> {
    let mut resources = vec![
        Resource::new("bucket", Kind::Bucket, "t-uploads").input("name", "t-uploads"),
        Resource::new("api", Kind::HttpApi, "t-api").input("name", "t-api"),
        Resource::new("stage", Kind::Stage, "$default").input("api_id", Reference::to("api", "id")),
    ];
    for function in ["upload", "analyze"] {
        resources.extend([
            Resource::new(format!("role.{function}"), Kind::Role, format!("t-{function}-role"))
                .input("name", format!("t-{function}-role")),
            Resource::new(format!("logs.{function}"), Kind::LogGroup, format!("/t/{function}"))
                .input("name", format!("/t/{function}")),
            Resource::new(format!("function.{function}"), Kind::Function, format!("t-{function}"))
                .input("name", format!("t-{function}"))
                .input("role_arn", Reference::to(&format!("role.{function}"), "arn"))
                .input("memory_mb", memory)
                .input("code_sha256", if function == "analyze" { code.to_owned() } else { "same".to_owned() })
                .after(format!("logs.{function}")),
            Resource::new(format!("integration.{function}"), Kind::Integration, format!("t-{function}-integration"))
                .input("api_id", Reference::to("api", "id"))
                .input("function_arn", Reference::to(&format!("function.{function}"), "arn")),
            Resource::new(format!("route.{function}"), Kind::Route, format!("POST /{function}"))
                .input("api_id", Reference::to("api", "id"))
                .input("target", format!("integrations/{}", Reference::to(&format!("integration.{function}"), "id"))),
        ]);
    }
    resources
}

struct Harness {
    cloud: Arc<FakeCloud>,
    store: Arc<MemoryStore>,
}

impl Harness {
    fn new(cloud: FakeCloud) -> Self {
        Self { cloud: Arc::new(cloud), store: Arc::new(MemoryStore::new()) }
    }

    async fn writer(&self) -> Arc<Mutex<StateWriter<MemoryStore>>> {
        Arc::new(Mutex::new(StateWriter::open(self.store.clone()).await.unwrap()))
    }

    fn state(&self) -> StateFile {
        self.store.document().unwrap_or_default()
    }

    async fn deploy_with(&self, desired: &[Resource], options: Options) -> (Plan, Report) {
        let writer = self.writer().await;
        let plan = {
            let mut guard = writer.lock().await;
            recover(self.cloud.as_ref(), &mut guard, replace_keys).await.unwrap();
            plan(desired, guard.state(), replace_keys, false).unwrap()
        };
        let report = apply(&plan, desired, self.cloud.clone(), writer, Arc::new(Silent), options).await.unwrap();
        (plan, report)
    }

    async fn deploy(&self, desired: &[Resource]) -> (Plan, Report) {
        self.deploy_with(desired, Options::new(10)).await
    }

    async fn destroy(&self) -> Report {
        let writer = self.writer().await;
        let plan = plan_destroy(writer.lock().await.state(), false).unwrap();
        apply(&plan, &[], self.cloud.clone(), writer, Arc::new(Silent), Options::new(10)).await.unwrap()
    }
}

fn position(calls: &[Call], call: &Call) -> usize {
    calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("{call:?} not in {calls:?}"))
}

#[tokio::test]
async fn first_apply_creates_everything_after_its_dependencies() {
    let harness = Harness::new(FakeCloud::new());
    let desired = stack(256, "v1");
    let (plan, report) = harness.deploy(&desired).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(plan.count(Action::Create), desired.len());

    let calls = harness.cloud.calls();
    assert_eq!(calls.len(), desired.len());
    assert!(
        position(&calls, &Call::Create("t-analyze-role".into())) < position(&calls, &Call::Create("t-analyze".into()))
    );
    assert!(position(&calls, &Call::Create("/t/analyze".into())) < position(&calls, &Call::Create("t-analyze".into())));
    assert!(position(&calls, &Call::Create("t-api".into())) < position(&calls, &Call::Create("$default".into())));

    let state = harness.state();
    assert_eq!(state.resources.len(), desired.len());
    assert!(state.pending.is_empty());
    let function = &state.resources[&ResourceId::new("function.analyze")];
    assert_eq!(function.inputs["role_arn"], json!("arn:fake:aws_iam_role:t-analyze-role"));
    let route = &state.resources[&ResourceId::new("route.analyze")];
    let integration_id = state.resources[&ResourceId::new("integration.analyze")].outputs["id"].as_str().unwrap();
    assert_eq!(route.inputs["target"], json!(format!("integrations/{integration_id}")));
}

#[tokio::test]
async fn second_apply_is_all_no_ops_and_makes_no_mutating_call() {
    let harness = Harness::new(FakeCloud::new());
    let desired = stack(256, "v1");
    harness.deploy(&desired).await;
    let writes = harness.store.document_writes();
    harness.cloud.clear_calls();

    let (plan, report) = harness.deploy(&desired).await;
    assert!(!plan.has_changes());
    assert!(report.succeeded());
    assert_eq!(harness.cloud.calls(), []);
    assert_eq!(harness.store.document_writes(), writes, "a no-op writes no state");
}

#[tokio::test]
async fn a_code_change_updates_only_that_function() {
    let harness = Harness::new(FakeCloud::new());
    harness.deploy(&stack(256, "v1")).await;
    harness.cloud.clear_calls();

    let (_, report) = harness.deploy(&stack(256, "v2")).await;
    assert!(report.succeeded());
    assert_eq!(harness.cloud.mutations(), [Call::Update("t-analyze".into(), vec!["code_sha256".into()])]);
    assert_eq!(harness.state().resources[&ResourceId::new("function.analyze")].outputs["code_sha256"], "v2");
}

#[tokio::test]
async fn a_change_that_forces_replacement_deletes_then_creates() {
    let harness = Harness::new(FakeCloud::new());
    let mut desired = stack(256, "v1");
    harness.deploy(&desired).await;
    harness.cloud.clear_calls();

    let role = desired.iter_mut().find(|r| r.id.as_str() == "role.analyze").unwrap();
    *role = Resource::new("role.analyze", Kind::Role, "t-analyze-role-2").input("name", "t-analyze-role-2");
    let (plan, report) = harness.deploy(&desired).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(plan.step("role.analyze").unwrap().action, Action::Replace);
    let calls = harness.cloud.mutations();
    assert!(
        position(&calls, &Call::Delete("t-analyze-role".into()))
            < position(&calls, &Call::Create("t-analyze-role-2".into()))
    );
    // The function's role ARN was unknown at plan time and changed at apply time.
    assert!(calls.contains(&Call::Update("t-analyze".into(), vec!["role_arn".into()])), "{calls:?}");
    assert!(!harness.cloud.names().contains("t-analyze-role"));
}

#[tokio::test]
async fn a_failure_records_finished_siblings_and_skips_dependents() {
    let harness = Harness::new(FakeCloud::with_delay(Duration::from_millis(5)));
    harness.cloud.fail_on("t-analyze-role");
    let (_, report) = harness.deploy(&stack(256, "v1")).await;
    assert!(!report.succeeded());

    let failures: Vec<&str> = report.failures().map(|(id, _)| id.as_str()).collect();
    assert_eq!(failures, ["role.analyze"]);
    for dependent in ["function.analyze", "integration.analyze", "route.analyze"] {
        assert!(
            matches!(report.outcomes[&ResourceId::new(dependent)], Outcome::Skipped { .. }),
            "{dependent}: {:?}",
            report.outcomes[&ResourceId::new(dependent)]
        );
    }
    // Steps that were in flight when the role failed finished and are in state.
    let state = harness.state();
    for (id, outcome) in &report.outcomes {
        if matches!(outcome, Outcome::Done { .. }) {
            assert!(state.resources.contains_key(id), "{id} finished but is not recorded");
        }
    }
    assert!(state.resources.contains_key(&ResourceId::new("api")));
    // The failed create stays journaled, for the next run to resolve.
    assert!(state.pending.contains_key(&ResourceId::new("role.analyze")));

    // The next run resolves it (nothing was created) and converges.
    let (_, report) = harness.deploy(&stack(256, "v1")).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(harness.state().resources.len(), stack(256, "v1").len());
}

#[tokio::test]
async fn no_dependent_touches_the_cloud_before_the_result_it_depends_on_is_saved() {
    let harness = Harness::new(FakeCloud::with_delay(Duration::from_millis(5)));
    harness.store.fail_saves_recording("role.analyze");
    let desired = stack(256, "v1");
    let writer = harness.writer().await;
    let plan = plan(&desired, writer.lock().await.state(), replace_keys, false).unwrap();
    let error =
        apply(&plan, &desired, harness.cloud.clone(), writer, Arc::new(Silent), Options::new(10)).await.unwrap_err();
    assert!(matches!(error, ApplyError::State(StoreError::Backend { .. })), "{error}");
    assert!(
        !harness.cloud.calls().contains(&Call::Create("t-analyze".into())),
        "the function was not created on a role whose record was lost: {:?}",
        harness.cloud.calls()
    );
    let state = harness.state();
    assert!(state.pending.contains_key(&ResourceId::new("role.analyze")), "the role stays journaled");
    assert!(!state.pending.contains_key(&ResourceId::new("function.analyze")), "the function never began");

    // Once state can be written again, the next run adopts the role and converges.
    let harness = Harness { cloud: harness.cloud.clone(), store: Arc::new(MemoryStore::with_state(&state)) };
    let (_, report) = harness.deploy(&stack(256, "v1")).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(harness.state().resources.len(), stack(256, "v1").len());
    assert_eq!(
        harness.cloud.calls().iter().filter(|call| **call == Call::Create("t-analyze-role".into())).count(),
        1,
        "the role was adopted, not created twice"
    );
}

#[tokio::test]
async fn a_crash_after_the_pending_journal_is_recovered_without_a_duplicate() {
    let harness = Harness::new(FakeCloud::new());
    let desired = stack(256, "v1");
    // Simulate a run killed after the cloud created the role but before state recorded it:
    // the journal says "creating", the cloud has it, state does not.
    {
        let writer = harness.writer().await;
        let mut writer = writer.lock().await;
        let pending = Pending {
            operation: Operation::Create,
            kind: Kind::Role,
            name: "t-analyze-role".into(),
            inputs: [("name".to_owned(), json!("t-analyze-role"))].into(),
            depends_on: Default::default(),
            started_at: crate::state::lock::now_rfc3339(),
        };
        writer.begin(ResourceId::new("role.analyze"), pending).await.unwrap();
    }
    harness.cloud.create(Kind::Role, "t-analyze-role", &Inputs::new()).await.unwrap();
    harness.cloud.clear_calls();

    let (_, report) = harness.deploy(&desired).await;
    assert!(report.succeeded(), "{report:?}");
    let creates: Vec<Call> = harness.cloud.calls().into_iter().filter(|c| matches!(c, Call::Create(_))).collect();
    assert!(!creates.contains(&Call::Create("t-analyze-role".into())), "the role was created twice");
    let state = harness.state();
    assert!(state.pending.is_empty());
    assert_eq!(state.resources.len(), desired.len());
    assert_eq!(harness.cloud.names().len(), desired.len());
}

#[tokio::test]
async fn a_crash_after_a_journaled_create_that_never_happened_creates_it() {
    let harness = Harness::new(FakeCloud::new());
    {
        let writer = harness.writer().await;
        let pending = Pending {
            operation: Operation::Create,
            kind: Kind::Bucket,
            name: "t-uploads".into(),
            inputs: Inputs::new(),
            depends_on: Default::default(),
            started_at: crate::state::lock::now_rfc3339(),
        };
        writer.lock().await.begin(ResourceId::new("bucket"), pending).await.unwrap();
    }
    let (_, report) = harness.deploy(&stack(256, "v1")).await;
    assert!(report.succeeded());
    assert!(harness.cloud.names().contains("t-uploads"));
    assert!(harness.state().pending.is_empty());
}

#[tokio::test]
async fn destroy_runs_in_reverse_dependency_order() {
    let harness = Harness::new(FakeCloud::new());
    harness.deploy(&stack(256, "v1")).await;
    harness.cloud.clear_calls();

    let report = harness.destroy().await;
    assert!(report.succeeded(), "{report:?}");
    let calls = harness.cloud.calls();
    assert!(
        position(&calls, &Call::Delete("POST /analyze".into()))
            < position(&calls, &Call::Delete("t-analyze-integration".into()))
    );
    assert!(
        position(&calls, &Call::Delete("t-analyze-integration".into()))
            < position(&calls, &Call::Delete("t-analyze".into()))
    );
    assert!(
        position(&calls, &Call::Delete("t-analyze".into())) < position(&calls, &Call::Delete("t-analyze-role".into()))
    );
    assert!(position(&calls, &Call::Delete("$default".into())) < position(&calls, &Call::Delete("t-api".into())));
    assert!(harness.cloud.names().is_empty());
    assert!(harness.state().resources.is_empty());
}

#[tokio::test]
async fn independent_steps_run_in_parallel_within_the_bound() {
    let harness = Harness::new(FakeCloud::with_delay(Duration::from_millis(20)));
    harness.deploy_with(&stack(256, "v1"), Options::new(3)).await;
    assert_eq!(harness.cloud.peak_concurrency(), 3);

    let harness = Harness::new(FakeCloud::with_delay(Duration::from_millis(5)));
    harness.deploy_with(&stack(256, "v1"), Options::new(1)).await;
    assert_eq!(harness.cloud.peak_concurrency(), 1);
}

#[tokio::test]
async fn cancellation_lets_steps_in_flight_finish_and_starts_nothing_new() {
    let harness = Harness::new(FakeCloud::with_delay(Duration::from_millis(50)));
    let (cancel, receiver) = watch::channel(false);
    let options = Options::new(2).cancelled_by(receiver);
    let desired = stack(256, "v1");
    let deploy = harness.deploy_with(&desired, options);
    let interrupt = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.send(true).unwrap();
    };
    let ((_, report), ()) = tokio::join!(deploy, interrupt);
    assert_eq!(report.stopped.as_deref(), Some("cancelled"));
    let done: Vec<&ResourceId> =
        report.outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Done { .. })).map(|(id, _)| id).collect();
    assert_eq!(done.len(), 2, "the two steps in flight finish: {report:?}");
    let state = harness.state();
    assert_eq!(state.resources.len(), 2);
    assert!(state.pending.is_empty());
}

#[tokio::test]
async fn refresh_forgets_resources_deleted_behind_our_back_so_they_are_recreated() {
    let harness = Harness::new(FakeCloud::new());
    let desired = stack(256, "v1");
    harness.deploy(&desired).await;
    // Someone deletes a route by hand.
    harness.cloud.resources.lock().unwrap().remove("POST /analyze");

    let writer = harness.writer().await;
    let refreshed = refresh(harness.cloud.as_ref(), &mut *writer.lock().await).await.unwrap();
    assert!(refreshed.contains(&Refreshed::Gone { id: ResourceId::new("route.analyze") }));
    assert_eq!(refreshed.iter().filter(|r| matches!(r, Refreshed::Exists { .. })).count(), desired.len() - 1);
    assert!(!harness.state().resources.contains_key(&ResourceId::new("route.analyze")));

    harness.cloud.clear_calls();
    let (plan, report) = harness.deploy(&desired).await;
    assert!(report.succeeded());
    assert_eq!(plan.step("route.analyze").unwrap().action, Action::Create);
    assert_eq!(harness.cloud.mutations(), [Call::Create("POST /analyze".into())]);
}

#[tokio::test]
async fn refresh_records_properties_changed_behind_our_back_so_the_plan_puts_them_back() {
    let harness = Harness::new(FakeCloud::new());
    let desired = stack(256, "v1");
    harness.deploy(&desired).await;
    // Someone gives the function more memory by hand.
    harness.cloud.drift("t-analyze", "memory_mb", json!(1024));

    let writer = harness.writer().await;
    let refreshed = refresh(harness.cloud.as_ref(), &mut *writer.lock().await).await.unwrap();
    assert!(refreshed.contains(&Refreshed::Drifted {
        id: ResourceId::new("function.analyze"),
        properties: vec!["memory_mb".to_owned()]
    }));
    assert_eq!(refreshed.iter().filter(|r| matches!(r, Refreshed::Exists { .. })).count(), desired.len() - 1);
    assert_eq!(harness.state().resources[&ResourceId::new("function.analyze")].inputs["memory_mb"], json!(1024));

    harness.cloud.clear_calls();
    let (plan, report) = harness.deploy(&desired).await;
    assert!(report.succeeded());
    assert_eq!(plan.step("function.analyze").unwrap().action, Action::Update);
    assert_eq!(harness.cloud.mutations(), [Call::Update("t-analyze".into(), vec!["memory_mb".to_owned()])]);
    assert_eq!(harness.state().resources[&ResourceId::new("function.analyze")].inputs["memory_mb"], json!(256));
}

#[tokio::test]
async fn refresh_finds_a_resource_by_its_recorded_id_after_its_name_was_changed_by_hand() {
    let harness = Harness::new(FakeCloud::new());
    let desired = stack(256, "v1");
    harness.deploy(&desired).await;
    let api_id = harness.state().resources[&ResourceId::new("api")].physical_id.clone();
    // Someone edits the API's name (or a tag) by hand: a lookup by name no longer finds it.
    harness.cloud.rename("t-api", "t-api-edited");

    let writer = harness.writer().await;
    let refreshed = refresh(harness.cloud.as_ref(), &mut *writer.lock().await).await.unwrap();
    assert!(!refreshed.iter().any(|r| matches!(r, Refreshed::Gone { .. })), "{refreshed:?}");
    assert_eq!(harness.state().resources[&ResourceId::new("api")].physical_id, api_id);

    harness.cloud.clear_calls();
    let (plan, _) = harness.deploy(&desired).await;
    assert_ne!(plan.step("api").unwrap().action, Action::Create, "the API is not created again");
    assert!(!harness.cloud.mutations().iter().any(|call| matches!(call, Call::Create(_))));
}

#[tokio::test]
async fn an_interrupted_delete_records_what_identifies_the_resource_and_a_rerun_finishes_it() {
    let harness = Harness::new(FakeCloud::new());
    harness.deploy(&stack(256, "v1")).await;
    let recorded = harness.state().resources[&ResourceId::new("route.analyze")].clone();
    harness.cloud.fail_on("POST /analyze");

    let report = harness.destroy().await;
    assert!(!report.succeeded());
    let state = harness.state();
    let pending = &state.pending[&ResourceId::new("route.analyze")];
    assert_eq!(pending.operation, Operation::Delete);
    assert_eq!(pending.inputs, recorded.inputs, "the pending delete keeps the inputs that identify the route");

    // The next run resolves the entry by the recorded id, whatever the inputs say.
    let writer = harness.writer().await;
    let recovered = recover(harness.cloud.as_ref(), &mut *writer.lock().await, replace_keys).await.unwrap();
    assert_eq!(recovered, [Recovered::StillExists { id: ResourceId::new("route.analyze") }]);
    let report = harness.destroy().await;
    assert!(report.succeeded(), "{report:?}");
    assert!(harness.cloud.names().is_empty());
    assert!(harness.state().pending.is_empty() && harness.state().resources.is_empty());
}

#[tokio::test]
async fn a_pending_delete_without_inputs_from_an_older_run_is_resolved_by_the_recorded_id() {
    let harness = Harness::new(FakeCloud::new());
    harness.deploy(&stack(256, "v1")).await;
    {
        let writer = harness.writer().await;
        let mut writer = writer.lock().await;
        let pending = Pending {
            operation: Operation::Delete,
            kind: Kind::Route,
            name: "POST /analyze".into(),
            inputs: Inputs::new(),
            depends_on: Default::default(),
            started_at: crate::state::lock::now_rfc3339(),
        };
        writer.begin(ResourceId::new("route.analyze"), pending).await.unwrap();
    }
    // The delete happened before the crash.
    harness.cloud.resources.lock().unwrap().remove("POST /analyze");

    let writer = harness.writer().await;
    let recovered = recover(harness.cloud.as_ref(), &mut *writer.lock().await, replace_keys).await.unwrap();
    assert_eq!(recovered, [Recovered::Deleted { id: ResourceId::new("route.analyze") }]);
    let state = harness.state();
    assert!(state.pending.is_empty());
    assert!(!state.resources.contains_key(&ResourceId::new("route.analyze")));
}
