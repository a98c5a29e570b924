//! An environment's deployment history and smoke-test results, kept in its state document
//! (records `deployments` and `smoke_tests`, oldest first).
//!
//! Every deploy, destroy, promotion and rollback that changes something appends a
//! [`Deployment`]: who ran it and when, the commit the code was built from, the code hash and
//! published version of each function that went live (for a destroy, what it removed), a
//! digest of the configuration, and the smoke-test result once one runs. Promotion reads the
//! source's current deployment; rollback moves the aliases back to an earlier deployment's
//! versions. Everything here is pure.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arch::Arch;
use crate::state::StateFile;

/// The state record the history is kept in.
pub const RECORD: &str = "deployments";

/// The state record the smoke-test results are kept in, newest last.
pub const SMOKE_TESTS_RECORD: &str = "smoke_tests";

/// One step of a smoke test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub name: String,
    pub passed: bool,
    pub latency_ms: u64,
    /// What was checked, or what failed, including the response at fault.
    pub detail: String,
}

/// A smoke-test run, as recorded in state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmokeTest {
    pub time: String,
    pub passed: bool,
    pub api_url: String,
    /// Function -> the CodeSha256 that was deployed when the test ran.
    pub artifacts: BTreeMap<String, String>,
    pub steps: Vec<StepResult>,
}

impl SmokeTest {
    /// The first step that failed, if any.
    pub fn first_failure(&self) -> Option<&StepResult> {
        self.steps.iter().find(|step| !step.passed)
    }
}

/// The latest smoke test recorded in a state document.
pub fn latest_smoke_test(state: &StateFile) -> Option<SmokeTest> {
    match state.records.get(SMOKE_TESTS_RECORD)? {
        Value::Array(items) => items.last().and_then(|item| serde_json::from_value(item.clone()).ok()),
        _ => None,
    }
}

/// One change to what an environment serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// 1 for an environment's first deployment, then counting up.
    pub id: u64,
    #[serde(flatten)]
    pub origin: Origin,
    /// RFC 3339, when the change finished.
    pub time: String,
    /// `user@host` of whoever ran it.
    pub by: String,
    /// The commit the code was built from (for a promotion: the source's; for a rollback:
    /// the restored deployment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<Git>,
    /// Function name -> what went live.
    pub functions: BTreeMap<String, Release>,
    /// SHA-256 (hex) of the environment's configuration, canonical JSON.
    pub config_digest: String,
    /// A warning the run gave, e.g. a promotion forced past a failed smoke test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The latest smoke test run while this deployment was live, against its code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_test: Option<SmokeOutcome>,
}

/// How a deployment came about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// `deploy`: a local build.
    Deploy,
    /// `promote`: another environment's current deployment, byte for byte.
    Promote { from_env: String, from_deployment: u64, forced: bool },
    /// `rollback`, or the automatic one after a promotion failed its smoke test.
    Rollback { to: u64, automatic: bool },
    /// `destroy`: every resource the state recorded was deleted; these, by id.
    Destroy { removed: Vec<String> },
}

/// A function's live code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Base64 SHA-256 of the zip, as Lambda's `CodeSha256`.
    pub code_sha256: String,
    /// The published version the `live` alias points at.
    pub version: String,
    pub architecture: Arch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Git {
    pub commit: String,
    /// Whether the working tree had uncommitted changes.
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmokeOutcome {
    pub time: String,
    pub passed: bool,
    /// The first step that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
}

impl Deployment {
    /// Function name -> code hash.
    pub fn hashes(&self) -> BTreeMap<String, String> {
        self.functions.iter().map(|(name, release)| (name.clone(), release.code_sha256.clone())).collect()
    }

    /// Function name -> published version.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.functions.iter().map(|(name, release)| (name.clone(), release.version.clone())).collect()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Deploy => f.write_str("deploy"),
            Origin::Promote { from_env, from_deployment, forced: false } => {
                write!(f, "promote from {from_env} #{from_deployment}")
            }
            Origin::Promote { from_env, from_deployment, forced: true } => {
                write!(f, "promote from {from_env} #{from_deployment} (FORCED)")
            }
            Origin::Rollback { to, automatic: false } => write!(f, "rollback to #{to}"),
            Origin::Rollback { to, automatic: true } => write!(f, "automatic rollback to #{to}"),
            Origin::Destroy { .. } => f.write_str("destroy"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("the deployment history in the state document is malformed: {0}")]
    Malformed(String),
    #[error("`{env}` has no deployments yet")]
    Empty { env: String },
    #[error("`{env}` has no deployment #{id}; `cargo xtask history --env {env}` lists them")]
    NoSuchDeployment { env: String, id: u64 },
    #[error("`{env}` has no earlier deployment with other versions to roll back to")]
    NothingToRollBackTo { env: String },
    #[error("deployment #{id} of `{env}` is the current one: nothing to roll back")]
    AlreadyCurrent { env: String, id: u64 },
    #[error(
        "`{env}` was destroyed by deployment #{id}: it serves nothing, and the versions deployed before it \
         were deleted with its functions; deploy `{env}` again"
    )]
    Destroyed { env: String, id: u64 },
    #[error(
        "deployment #{id} of `{env}` came before the destroy #{destroy}, which deleted its versions; \
         `cargo xtask history --env {env}` lists the deployments since"
    )]
    BeforeDestroy { env: String, id: u64, destroy: u64 },
}

/// Why a promotion is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "`{env}` deployment #{id} has never been smoke-tested; run `cargo xtask smoke-test --env {env}` first \
         (or pass --force)"
    )]
    NeverTested { env: String, id: u64 },
    #[error("`{env}`'s last smoke test ({time}) failed at `{step}`; fix and redeploy `{env}` (or pass --force)")]
    Failed { env: String, time: String, step: String },
    #[error(
        "`{env}`'s last smoke test ({time}) ran against other code than its current deployment #{id} \
         ({differences}); run `cargo xtask smoke-test --env {env}` again (or pass --force)"
    )]
    OtherCode { env: String, id: u64, time: String, differences: String },
}

/// An environment's deployments, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    env: String,
    deployments: Vec<Deployment>,
}

impl History {
    /// The history recorded in `state` (empty when none is).
    pub fn from_state(env: &str, state: &StateFile) -> Result<Self, HistoryError> {
        let deployments = match state.records.get(RECORD) {
            None => Vec::new(),
            Some(value) => {
                serde_json::from_value(value.clone()).map_err(|error| HistoryError::Malformed(error.to_string()))?
            }
        };
        Ok(Self { env: env.to_owned(), deployments })
    }

    /// The record to write back.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(&self.deployments).expect("deployments serialize")
    }

    pub fn deployments(&self) -> &[Deployment] {
        &self.deployments
    }

    /// What the environment serves now: the latest deployment.
    pub fn current(&self) -> Option<&Deployment> {
        self.deployments.last()
    }

    pub fn require_current(&self) -> Result<&Deployment, HistoryError> {
        self.current().ok_or_else(|| HistoryError::Empty { env: self.env.clone() })
    }

    /// The current deployment, when it serves something (is not a destroy).
    pub fn require_serving(&self) -> Result<&Deployment, HistoryError> {
        let current = self.require_current()?;
        match current.origin {
            Origin::Destroy { .. } => Err(HistoryError::Destroyed { env: self.env.clone(), id: current.id }),
            Origin::Deploy | Origin::Promote { .. } | Origin::Rollback { .. } => Ok(current),
        }
    }

    /// The latest destroy, if any: the deployments before it no longer exist in the cloud.
    fn last_destroy(&self) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|deployment| matches!(deployment.origin, Origin::Destroy { .. }))
    }

    pub fn get(&self, id: u64) -> Result<&Deployment, HistoryError> {
        self.deployments
            .iter()
            .find(|deployment| deployment.id == id)
            .ok_or_else(|| HistoryError::NoSuchDeployment { env: self.env.clone(), id })
    }

    pub fn next_id(&self) -> u64 {
        self.deployments.iter().map(|deployment| deployment.id).max().unwrap_or(0) + 1
    }

    /// Appends a deployment, numbered next.
    pub fn push(&mut self, mut deployment: Deployment) -> &Deployment {
        deployment.id = self.next_id();
        self.deployments.push(deployment);
        self.deployments.last().expect("just pushed")
    }

    /// The deployment a rollback restores: `to`, or by default the latest earlier one that
    /// runs other versions than the current one and did not fail its smoke test. Only
    /// deployments since the last destroy can be restored: a destroy deletes the functions,
    /// and their versions with them.
    pub fn rollback_target(&self, to: Option<u64>) -> Result<&Deployment, HistoryError> {
        let current = self.require_serving()?;
        let since = self.last_destroy().map_or(0, |destroy| destroy.id);
        if let Some(id) = to {
            let target = self.get(id)?;
            if target.id == current.id {
                return Err(HistoryError::AlreadyCurrent { env: self.env.clone(), id });
            }
            if target.id <= since {
                return Err(HistoryError::BeforeDestroy { env: self.env.clone(), id, destroy: since });
            }
            return Ok(target);
        }
        let versions = current.versions();
        self.deployments
            .iter()
            .rev()
            .skip(1)
            .take_while(|deployment| deployment.id > since)
            .find(|deployment| {
                deployment.versions() != versions && deployment.smoke_test.as_ref().is_none_or(|outcome| outcome.passed)
            })
            .ok_or_else(|| HistoryError::NothingToRollBackTo { env: self.env.clone() })
    }

    /// Records a smoke test on the current deployment, when it tested exactly that
    /// deployment's code. Returns whether it did.
    pub fn attach_smoke_test(&mut self, test: &SmokeTest) -> bool {
        let Some(current) = self.deployments.last_mut() else { return false };
        if current.hashes() != test.artifacts {
            return false;
        }
        current.smoke_test = Some(SmokeOutcome {
            time: test.time.clone(),
            passed: test.passed,
            failed_step: test.first_failure().map(|step| step.name.clone()),
        });
        true
    }

    /// The current deployment, if `latest` (the environment's last smoke test) passed for
    /// exactly its code.
    pub fn promotable(&self, latest: Option<&SmokeTest>) -> Result<&Deployment, PromotionCheck> {
        let current = self.require_serving().map_err(PromotionCheck::History)?;
        let refuse = |refusal| Err(PromotionCheck::Refused(refusal));
        let Some(test) = latest else {
            return refuse(Refusal::NeverTested { env: self.env.clone(), id: current.id });
        };
        let hashes = current.hashes();
        if test.artifacts != hashes {
            let differences = differences(&hashes, &test.artifacts);
            return refuse(Refusal::OtherCode {
                env: self.env.clone(),
                id: current.id,
                time: test.time.clone(),
                differences,
            });
        }
        if !test.passed {
            let step = test.first_failure().map_or("?", |step| step.name.as_str());
            return refuse(Refusal::Failed { env: self.env.clone(), time: test.time.clone(), step: step.to_owned() });
        }
        Ok(current)
    }
}

/// Why [`History::promotable`] said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromotionCheck {
    #[error(transparent)]
    History(HistoryError),
    #[error(transparent)]
    Refused(Refusal),
}

/// `analyze: deployed X, tested Y; ...` for the functions whose hashes differ.
fn differences(deployed: &BTreeMap<String, String>, tested: &BTreeMap<String, String>) -> String {
    let names: std::collections::BTreeSet<&String> = deployed.keys().chain(tested.keys()).collect();
    names
        .into_iter()
        .filter(|name| deployed.get(*name) != tested.get(*name))
        .map(|name| {
            let show = |hash: Option<&String>| hash.map_or("none".to_owned(), |hash| short(hash));
            format!("{name}: deployed {}, tested {}", show(deployed.get(name)), show(tested.get(name)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first 12 characters of a base64 hash, enough to tell builds apart in a table.
pub fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// SHA-256 (hex) of a configuration, as canonical JSON (object keys sorted).
pub fn config_digest(config: &Value) -> String {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, Value> = map.iter().map(|(k, v)| (k, canonical(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let text = canonical(config).to_string();
    crate::artifact::sha256(text.as_bytes()).0
}

#[cfg(test)]
mod tests;
