use serde_json::json;

use super::*;

fn deployment(id: u64, analyze: (&str, &str), smoke: Option<bool>) -> Deployment {
    Deployment {
        id,
        origin: Origin::Deploy,
        time: format!("2026-11-25T00:00:0{id}Z"),
        by: "dev@host".into(),
        git: Some(Git { commit: "abc".into(), dirty: false }),
        functions: BTreeMap::from([(
            "analyze".to_owned(),
            Release { code_sha256: analyze.0.into(), version: analyze.1.into(), architecture: Arch::X86_64 },
        )]),
        config_digest: "d".into(),
        warning: None,
        smoke_test: smoke.map(|passed| SmokeOutcome { time: "t".into(), passed, failed_step: None }),
    }
}

fn history(deployments: Vec<Deployment>) -> History {
    History { env: "dev".into(), deployments }
}

fn smoke(hash: &str, passed: bool) -> SmokeTest {
    SmokeTest {
        time: "2026-11-25T01:00:00Z".into(),
        passed,
        api_url: "http://127.0.0.1:3001".into(),
        artifacts: BTreeMap::from([("analyze".to_owned(), hash.to_owned())]),
        steps: vec![StepResult { name: "POST /analyze".into(), passed, latency_ms: 1, detail: String::new() }],
    }
}

#[test]
fn deployments_are_numbered_from_one() {
    let mut history = history(Vec::new());
    assert_eq!(history.push(deployment(0, ("A", "1"), None)).id, 1);
    assert_eq!(history.push(deployment(0, ("B", "2"), None)).id, 2);
    assert_eq!(history.current().unwrap().id, 2);
}

#[test]
fn rollback_defaults_to_the_latest_earlier_deployment_with_other_versions_that_did_not_fail() {
    let history = history(vec![
        deployment(1, ("A", "1"), Some(true)),
        deployment(2, ("B", "2"), Some(false)),
        deployment(3, ("C", "3"), None),
        deployment(4, ("C", "3"), None), // a configuration-only change: same versions
    ]);
    assert_eq!(history.rollback_target(None).unwrap().id, 1, "#3 runs the same versions, #2 failed its smoke test");
    assert_eq!(history.rollback_target(Some(2)).unwrap().id, 2, "an explicit target is taken as asked");
    assert_eq!(history.rollback_target(Some(4)), Err(HistoryError::AlreadyCurrent { env: "dev".into(), id: 4 }));
    assert_eq!(history.rollback_target(Some(9)), Err(HistoryError::NoSuchDeployment { env: "dev".into(), id: 9 }));
}

#[test]
fn rollback_needs_an_earlier_deployment() {
    assert_eq!(history(vec![]).rollback_target(None), Err(HistoryError::Empty { env: "dev".into() }));
    let one = history(vec![deployment(1, ("A", "1"), None)]);
    assert_eq!(one.rollback_target(None), Err(HistoryError::NothingToRollBackTo { env: "dev".into() }));
}

#[test]
fn promotion_needs_a_passed_smoke_test_of_exactly_the_current_code() {
    let history = history(vec![deployment(1, ("A", "1"), None), deployment(2, ("B", "2"), None)]);
    assert!(matches!(history.promotable(None), Err(PromotionCheck::Refused(Refusal::NeverTested { id: 2, .. }))));
    assert!(matches!(
        history.promotable(Some(&smoke("A", true))),
        Err(PromotionCheck::Refused(Refusal::OtherCode { id: 2, .. }))
    ));
    let failed = history.promotable(Some(&smoke("B", false))).unwrap_err();
    assert!(failed.to_string().contains("failed at `POST /analyze`"), "{failed}");
    assert_eq!(history.promotable(Some(&smoke("B", true))).unwrap().id, 2);
}

#[test]
fn a_smoke_test_is_attached_only_to_the_code_it_tested() {
    let mut history = history(vec![deployment(1, ("A", "1"), None)]);
    assert!(!history.attach_smoke_test(&smoke("B", true)));
    assert_eq!(history.current().unwrap().smoke_test, None);
    assert!(history.attach_smoke_test(&smoke("A", false)));
    let outcome = history.current().unwrap().smoke_test.clone().unwrap();
    assert!(!outcome.passed);
    assert_eq!(outcome.failed_step.as_deref(), Some("POST /analyze"));
}

#[test]
fn the_record_names_the_kind_of_each_deployment() {
    let mut rolled_back = deployment(3, ("A", "1"), None);
    rolled_back.origin = Origin::Rollback { to: 1, automatic: true };
    let mut promoted = deployment(2, ("B", "2"), Some(true));
    promoted.origin = Origin::Promote { from_env: "dev".into(), from_deployment: 7, forced: false };
    let history = history(vec![deployment(1, ("A", "1"), None), promoted, rolled_back]);
    let value = history.to_value();
    assert_eq!(value[1]["kind"], "promote");
    assert_eq!(value[1]["from_env"], "dev");
    assert_eq!(value[2]["kind"], "rollback");
    assert_eq!(value[2]["automatic"], true);
    let mut state = StateFile::new();
    state.records.insert(RECORD.into(), value);
    assert_eq!(History::from_state("dev", &state).unwrap(), history);
    state.records.insert(RECORD.into(), json!([{"id": "one"}]));
    assert!(matches!(History::from_state("dev", &state), Err(HistoryError::Malformed(_))));
}

#[test]
fn config_digests_ignore_key_order() {
    assert_eq!(
        config_digest(&json!({"a": 1, "b": {"c": 2, "d": 3}})),
        config_digest(&json!({"b": {"d": 3, "c": 2}, "a": 1}))
    );
    assert_ne!(config_digest(&json!({"a": 1})), config_digest(&json!({"a": 2})));
}

fn destroy(id: u64) -> Deployment {
    Deployment {
        origin: Origin::Destroy { removed: vec!["api".into(), "function.analyze".into()] },
        functions: BTreeMap::new(),
        ..deployment(id, ("-", "-"), None)
    }
}

#[test]
fn a_destroyed_environment_cannot_be_promoted_even_with_a_passed_smoke_test() {
    let history = history(vec![deployment(1, ("A", "1"), Some(true)), destroy(2)]);
    let refused = history.promotable(Some(&smoke("A", true))).unwrap_err();
    assert_eq!(refused, PromotionCheck::History(HistoryError::Destroyed { env: "dev".into(), id: 2 }));
    assert!(refused.to_string().contains("was destroyed by deployment #2"), "{refused}");
}

#[test]
fn rollback_never_reaches_back_past_a_destroy() {
    let destroyed = history(vec![deployment(1, ("A", "1"), Some(true)), destroy(2)]);
    assert_eq!(destroyed.rollback_target(None), Err(HistoryError::Destroyed { env: "dev".into(), id: 2 }));

    // Deployed again after the destroy: versions restart, so #1's version numbers now name
    // other code.
    let redeployed = history(vec![
        deployment(1, ("A", "2"), Some(true)),
        destroy(2),
        deployment(3, ("B", "1"), Some(true)),
        deployment(4, ("C", "2"), None),
    ]);
    assert_eq!(redeployed.rollback_target(None).unwrap().id, 3);
    assert_eq!(
        redeployed.rollback_target(Some(1)),
        Err(HistoryError::BeforeDestroy { env: "dev".into(), id: 1, destroy: 2 })
    );
    let only_one_since =
        history(vec![deployment(1, ("A", "2"), Some(true)), destroy(2), deployment(3, ("B", "1"), None)]);
    assert_eq!(only_one_since.rollback_target(None), Err(HistoryError::NothingToRollBackTo { env: "dev".into() }));
}

#[test]
fn a_destroy_is_recorded_with_what_it_removed() {
    let history = history(vec![deployment(1, ("A", "1"), None), destroy(2)]);
    let value = history.to_value();
    assert_eq!(value[1]["kind"], "destroy");
    assert_eq!(value[1]["removed"], json!(["api", "function.analyze"]));
    assert_eq!(history.deployments()[1].origin.to_string(), "destroy");
    let mut state = StateFile::new();
    state.records.insert(RECORD.into(), value);
    assert_eq!(History::from_state("dev", &state).unwrap(), history);
}
