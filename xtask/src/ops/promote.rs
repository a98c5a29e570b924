//! Promote: deploys to B exactly the code A serves, after A's smoke test passed for it.
//!
//! 1. A's current deployment gives the code hashes; A's last smoke test must have passed
//!    for exactly those hashes (`--force` overrides, and the warning is recorded in B's
//!    history). An A whose last deployment is a destroy serves nothing and is refused, even
//!    with `--force`.
//! 2. The zips are copied from A's artifact store to B's when B's lacks them (another
//!    account or region), and their SHA-256 is checked after the copy. Nothing is built.
//! 3. B is planned with its own configuration and A's hashes, shown, confirmed and applied;
//!    the deployment is recorded.
//! 4. B's smoke test runs. If it fails, B's aliases go back to the versions B served before,
//!    and that rollback is recorded too.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;

use super::apply::{self, ApplyOptions, Desired, Outcome, Record};
use super::smoke_test;
use super::ui::{ensure_can_confirm, Ui};
use crate::aws::get_object;
use crate::history::{latest_smoke_test, History, HistoryError, Origin, PromotionCheck, Release};
use crate::manifest::{Artifact, Manifest};
use crate::session::Session;
use crate::state::s3::{ensure_bucket, Transport};

/// What to promote where, and how.
#[derive(Debug, Clone)]
pub struct PromoteOptions {
    /// The source (default: `promote_from` in the target's environment file).
    pub from: Option<String>,
    pub to: String,
    /// Promote even though the source's last smoke test did not pass for its current code.
    pub force: bool,
    pub yes: bool,
    pub parallelism: usize,
    pub lock_timeout: Duration,
}

/// Promotes, smoke-tests the target, and rolls it back when that fails (then fails too).
/// `Outcome::NoChanges` when the target already served that code with its configuration.
pub async fn promote(ui: &dyn Ui, options: &PromoteOptions) -> Result<Outcome> {
    let target_env = crate::config::Environment::load(&crate::config::environments_dir(), &options.to)?;
    let from = match (&options.from, &target_env.promote_from) {
        (Some(from), _) => from.clone(),
        (None, Some(from)) => from.clone(),
        (None, None) => bail!(
            "promote to `{}` needs a source: pass --from, or set `promote_from:` in {}",
            options.to,
            target_env.file.display()
        ),
    };
    if from == options.to {
        bail!("cannot promote `{from}` to itself");
    }
    super::local::ensure_for_environment(ui, &from)?;
    super::local::ensure_for_environment(ui, &options.to)?;
    promote_from(ui, options, &from).await
}

async fn promote_from(ui: &dyn Ui, args: &PromoteOptions, from: &str) -> Result<Outcome> {
    let source = Session::open(from).await?;
    let source_state = source
        .read_state()
        .await?
        .with_context(|| format!("environment `{from}` has never been deployed: there is nothing to promote"))?
        .value;
    let source_history = History::from_state(from, &source_state)?;
    let latest_smoke = latest_smoke_test(&source_state);
    let (deployment, warning) = match source_history.promotable(latest_smoke.as_ref()) {
        Ok(deployment) => (deployment.clone(), None),
        Err(PromotionCheck::History(error @ HistoryError::Destroyed { .. })) => {
            bail!("refusing to promote `{from}` to `{}`: {error}", args.to)
        }
        Err(PromotionCheck::History(error)) => return Err(error.into()),
        Err(PromotionCheck::Refused(refusal)) if args.force => {
            let warning = format!("promoted with --force: {refusal}");
            ui.note("");
            ui.note(&format!("WARNING: {warning}"));
            ui.note(&format!("WARNING: this is recorded in `{}`'s history.\n", args.to));
            (source_history.require_serving()?.clone(), Some(warning))
        }
        Err(PromotionCheck::Refused(refusal)) => bail!("refusing to promote `{from}` to `{}`: {refusal}", args.to),
    };

    let mut target = Session::open(&args.to).await?;
    let target_state = target.read_state().await?;
    let current = target_state.as_ref().map(|versioned| versioned.value.clone()).unwrap_or_default();
    let target_history = History::from_state(&args.to, &current)?;
    let previous = target_history.current().cloned();
    ui.say(&format!("Promoting `{from}` deployment #{} to `{}`:", deployment.id, args.to));
    for (function, release) in &deployment.functions {
        let old = previous.as_ref().and_then(|d| d.functions.get(function)).map(|r| r.code_sha256.as_str());
        let change = if old == Some(release.code_sha256.as_str()) { "unchanged" } else { "changes" };
        ui.say(&format!("  {function:<12} {} -> {}  ({change})", old.unwrap_or("(none)"), release.code_sha256));
    }

    let manifest = manifest_of(&target, &deployment.functions, from)?;
    ensure_can_confirm(ui, args.yes, "promote")?;
    if target_state.is_none() {
        // The artifact store lives in the state bucket.
        let transport = Transport::for_endpoint(crate::aws::endpoint(&target.env).as_deref());
        ensure_bucket(&target.clients.s3, &target.state_bucket, &target.env.region, transport).await?;
    }
    copy_artifacts(ui, &source, &target, &deployment.functions).await?;
    let account_id = target.account_id(&current).await?;
    let desired = target.desired(&account_id, &manifest)?;
    let options = ApplyOptions {
        operation: "promote",
        yes: args.yes,
        parallelism: args.parallelism,
        lock_timeout: args.lock_timeout,
        refresh: false,
    };
    let record = Record {
        origin: Origin::Promote {
            from_env: from.to_owned(),
            from_deployment: deployment.id,
            forced: warning.is_some(),
        },
        git: deployment.git.clone(),
        functions: None,
        config_digest: apply::config_digest(&target.env)?,
        warning,
    };
    // The provider has no local zips: the code can only come from the artifact store.
    let provider = target.provider(None);
    let outcome =
        apply::apply_and_record(ui, &target, &account_id, Desired::Stack(desired), provider, &options, record).await?;
    if outcome == Outcome::NoChanges {
        ui.say(&format!(
            "`{}` already serves `{from}` deployment #{}'s code with its configuration.",
            args.to, deployment.id
        ));
        return Ok(outcome);
    }

    ui.say("");
    let result = smoke_test::test_and_record(&target).await?;
    ui.out(&smoke_test::render(&args.to, &result));
    if result.passed {
        ui.say(&format!("Promotion of `{from}` #{} to `{}` passed its smoke test.", deployment.id, args.to));
        return Ok(outcome);
    }
    let failed = result.first_failure().map_or("?", |step| step.name.as_str()).to_owned();
    let Some(previous) = previous else {
        bail!(
            "`{}` failed its smoke test at `{failed}` after the promotion, and has no earlier deployment to roll \
             back to: it keeps the promoted code",
            args.to
        );
    };
    ui.say(&format!(
        "\nThe smoke test failed at `{failed}`: rolling `{}` back to deployment #{}.",
        args.to, previous.id
    ));
    let state = target.read_state().await?.context("the state is gone")?.value;
    let history = History::from_state(&args.to, &state)?;
    let rollback_options = ApplyOptions { operation: "rollback", yes: true, ..options };
    super::rollback::roll_back(ui, &target, &account_id, &history, &previous, true, &rollback_options).await?;
    bail!(
        "the promotion of `{from}` #{} to `{}` failed its smoke test at `{failed}`; `{}` was rolled back to \
         deployment #{}",
        deployment.id,
        args.to,
        args.to,
        previous.id
    )
}

/// A build manifest naming the promoted zips, for the target's stack. The target's
/// architecture must be the one the code was built for.
fn manifest_of(target: &Session, releases: &BTreeMap<String, Release>, from: &str) -> Result<Manifest> {
    let mut functions = BTreeMap::new();
    for (function, release) in releases {
        let wanted = target
            .env
            .functions
            .get(function)
            .with_context(|| format!("`{}` has no function `{function}`", target.env.name))?
            .architecture;
        if wanted != release.architecture {
            bail!(
                "`{from}` runs {function} built for {}, but {} wants {wanted}: promotion moves bytes, so both \
                 environments need the same architecture",
                release.architecture,
                target.env.file.display()
            );
        }
        let digest = base64::engine::general_purpose::STANDARD
            .decode(&release.code_sha256)
            .with_context(|| format!("the recorded hash of {function} is not base64: {}", release.code_sha256))?;
        let artifact = Artifact {
            zip_path: String::new(),
            zipped_bytes: 0,
            unzipped_bytes: 0,
            sha256_hex: hex::encode(digest),
            sha256_base64: release.code_sha256.clone(),
        };
        functions.insert(function.clone(), BTreeMap::from([(release.architecture, artifact)]));
    }
    Ok(Manifest {
        format_version: crate::manifest::FORMAT_VERSION,
        fingerprint: format!("promoted from {from}"),
        functions,
    })
}

/// Makes sure the target's artifact store holds every promoted zip: each must be in the
/// source's store; one the target lacks is copied, checked against its hash before the
/// upload (and by S3 during it), and read back and checked again after.
async fn copy_artifacts(
    ui: &dyn Ui,
    source: &Session,
    target: &Session,
    releases: &BTreeMap<String, Release>,
) -> Result<()> {
    let (from, to) = (source.provider(None), target.provider(None));
    for (function, release) in releases {
        let (hex, base64) = (hex_of(&release.code_sha256)?, release.code_sha256.as_str());
        let (from_key, to_key) = (from.artifact_key(&hex), to.artifact_key(&hex));
        let from_uri = format!("s3://{}/{from_key}", from.artifact_bucket);
        let to_uri = format!("s3://{}/{to_key}", to.artifact_bucket);
        let Some(bytes) = get_object(&from.clients.s3, &from.artifact_bucket, &from_key).await? else {
            bail!(
                "the code of {function} ({base64}) is not in `{}`'s artifact store ({from_uri}); it cannot be \
                 promoted without a rebuild: deploy `{}` again",
                source.env.name,
                source.env.name
            );
        };
        verify(&bytes, base64, &from_uri)?;
        if from_uri == to_uri {
            ui.say(&format!("  {function:<12} {from_uri} (shared store)"));
            continue;
        }
        if let Some(existing) = get_object(&to.clients.s3, &to.artifact_bucket, &to_key).await? {
            verify(&existing, base64, &to_uri)?;
            ui.say(&format!("  {function:<12} already in {to_uri}"));
            continue;
        }
        to.clients
            .s3
            .put_object()
            .bucket(&to.artifact_bucket)
            .key(&to_key)
            .content_type("application/zip")
            .checksum_sha256(base64)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .with_context(|| format!("copying {from_uri} to {to_uri}"))?;
        let copied = get_object(&to.clients.s3, &to.artifact_bucket, &to_key)
            .await?
            .with_context(|| format!("{to_uri} is missing right after the copy"))?;
        verify(&copied, base64, &to_uri)?;
        ui.say(&format!("  {function:<12} copied {from_uri} -> {to_uri}, SHA-256 verified"));
    }
    Ok(())
}

fn hex_of(base64: &str) -> Result<String> {
    let digest = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .with_context(|| format!("`{base64}` is not a base64 SHA-256"))?;
    Ok(hex::encode(digest))
}

fn verify(bytes: &[u8], expected: &str, uri: &str) -> Result<()> {
    let (_, actual) = crate::artifact::sha256(bytes);
    if actual != expected {
        bail!("{uri} has SHA-256 {actual}, not {expected}: the artifact store is corrupt");
    }
    Ok(())
}
