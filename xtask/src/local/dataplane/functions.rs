//! Deployed functions made ready to run: their code fetched and unpacked once per code hash,
//! their spec and environment, and one Lambda runtime per region.

use crate::local::discovery::{Function, Snapshot, TEST_CREDENTIALS};
use crate::local::runtime::{extract_bootstrap, FunctionSpec, Runtime, RuntimeConfig};
use crate::local::trust;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

impl DataPlane {
    /// Makes every function an integration of `snapshot` invokes ready to run, before the
    /// snapshot is served: its code fetched (once per code hash) and unpacked, its spec
    /// built. Runs in the background refresh, never on the request path. A function whose
    /// code cannot be made ready is logged and forgotten, so that its requests answer 500
    /// rather than run code that is no longer deployed.
    pub(super) async fn prepare_all(&self, snapshot: &Snapshot) {
        let functions: Vec<&Function> = snapshot
            .apis
            .iter()
            .flat_map(|api| api.integrations.values())
            .filter_map(|integration| snapshot.function_for(integration))
            .collect();
        self.prepare(functions).await;
    }

    /// Makes `functions` ready to run (see [`Self::prepare_all`]).
    pub(super) async fn prepare(&self, mut functions: Vec<&Function>) {
        let face_url = self.options.state_dir.face_url();
        functions.sort_by_key(|function| key(function));
        functions.dedup_by_key(|function| key(function));
        for function in functions {
            // Code this checkout did not put there is never fetched. (What was prepared for
            // the name before stays: requests check the code first, and it serves again if the
            // name returns to that code.)
            if let Err(refusal) = self.check_trusted(function) {
                if self.refusals.lock().unwrap().insert(refusal.clone()) {
                    tracing::error!("{refusal}");
                }
                continue;
            }
            let unpacked = {
                let prepared = self.prepared.lock().unwrap();
                let current = prepared.get(&key(function));
                if current.is_some_and(|known| known.function == *function && known.face_url == face_url) {
                    continue;
                }
                // The same code is unpacked once, whichever version or alias names it.
                prepared
                    .values()
                    .find(|known| {
                        known.function.name == function.name && known.spec.code_sha256 == function.code_sha256
                    })
                    .map(|known| known.spec.bootstrap.clone())
            };
            let bootstrap = match unpacked {
                Some(bootstrap) => Ok(bootstrap),
                None => self.unpack(function).await,
            };
            match bootstrap {
                Ok(bootstrap) => {
                    let log_file = self.options.state_dir.function_log(&function.name);
                    let spec = deployed_spec(
                        function,
                        function.code_sha256.clone(),
                        bootstrap,
                        &self.endpoints(face_url.as_deref()),
                        log_file,
                    );
                    let prepared = Prepared { function: function.clone(), face_url: face_url.clone(), spec };
                    self.prepared.lock().unwrap().insert(key(function), prepared);
                }
                Err(error) => {
                    tracing::error!("cannot make {} ready to run: {error:#}", function.name);
                    self.prepared.lock().unwrap().remove(&key(function));
                }
            }
        }
    }

    /// Whether `function`'s code is this checkout's to run: its hash is in the checkout's
    /// record of code the tool built or deployed ([`crate::local::trust`]). The record (a few
    /// lines) is re-read only when a hash is not in the copy last read. The error says why the
    /// function is refused.
    pub(super) fn check_trusted(&self, function: &Function) -> Result<(), String> {
        let sha256 = &function.code_sha256;
        let path = &self.options.trusted_code;
        let mut trusted = self.trusted.lock().unwrap();
        if !trusted.contains(sha256) {
            match trust::hashes(path) {
                Ok(hashes) => *trusted = hashes,
                Err(error) => tracing::warn!("reading the record of trusted code: {error:#}"),
            }
        }
        if trusted.contains(sha256) {
            return Ok(());
        }
        Err(format!(
            "refusing to run {} ({}): its code {sha256} was not built, deployed, promoted or rolled back to by this \
             checkout's xtask (it is not in {}); it was put into the emulator some other way. Deploy with `cargo \
             xtask deploy` to run it",
            function.name,
            function.qualifier.as_deref().unwrap_or("$LATEST"),
            path.display()
        ))
    }

    /// Fetches `function`'s code from the emulator and unpacks its bootstrap.
    async fn unpack(&self, function: &Function) -> Result<std::path::PathBuf> {
        let code = self.control.fetch_code(function).await?;
        let dir = self.options.state_dir.dir().join("functions").join(&function.name);
        let bootstrap = extract_bootstrap(&code.bytes, &code.code_sha256, &dir)
            .with_context(|| format!("unpacking the code of {} from {}", function.name, code.source))?;
        tracing::info!(
            "{}: code {} from {} ({} bytes) unpacked to {}",
            function.name,
            code.code_sha256,
            code.source,
            code.bytes.len(),
            bootstrap.display()
        );
        Ok(bootstrap)
    }

    /// The spec of `function` as the last refresh made it ready, if it did; pointed at the
    /// face-analysis service `face.url` names now (a file read, never the emulator).
    pub(super) fn prepared_spec(&self, function: &Function) -> Option<FunctionSpec> {
        let face_url = self.options.state_dir.face_url();
        let mut prepared = self.prepared.lock().unwrap();
        let known = prepared.get_mut(&key(function)).filter(|known| known.function == *function)?;
        if known.face_url != face_url {
            known.spec.environment = function_environment(function, &self.endpoints(face_url.as_deref()));
            known.face_url = face_url;
        }
        Some(known.spec.clone())
    }

    /// Where this data plane's functions send their AWS calls.
    pub(super) fn endpoints<'a>(&'a self, face_url: Option<&'a str>) -> Endpoints<'a> {
        Endpoints { emulator: &self.options.endpoint, s3: Some(&self.s3_url), rekognition: face_url }
    }

    pub(super) async fn runtime(&self, region: &str) -> Result<Arc<Runtime>> {
        let mut runtimes = self.runtimes.lock().await;
        if let Some(runtime) = runtimes.get(region) {
            return Ok(Arc::clone(runtime));
        }
        anyhow::ensure!(!self.stopping.load(Ordering::SeqCst), "the data plane is stopping");
        let config = RuntimeConfig {
            region: region.to_owned(),
            max_instances_per_function: self.options.max_instances,
            ..RuntimeConfig::default()
        };
        let runtime = Arc::new(Runtime::start_with(config).await.context("starting the Lambda Runtime API")?);
        tracing::info!("Lambda Runtime API for {region} on {}", runtime.address());
        runtimes.insert(region.to_owned(), Arc::clone(&runtime));
        Ok(runtime)
    }
}

/// A function by region, name and qualifier.
fn key(function: &Function) -> FunctionKey {
    (function.region.clone(), function.name.clone(), function.qualifier.clone())
}

/// How the local runtime runs a deployed function: as configured, from `bootstrap` (unpacked
/// from code `code_sha256`), with [`function_environment`].
pub fn deployed_spec(
    function: &Function,
    code_sha256: String,
    bootstrap: std::path::PathBuf,
    endpoints: &Endpoints<'_>,
    log_file: std::path::PathBuf,
) -> FunctionSpec {
    FunctionSpec {
        name: function.name.clone(),
        arn: function.arn.clone(),
        code_sha256,
        bootstrap,
        environment: function_environment(function, endpoints),
        memory_mb: function.memory_mb,
        timeout: function.timeout,
        log_file,
        max_instances: function.reserved_concurrency.and_then(|n| usize::try_from(n).ok()),
    }
}

/// Where a local function's AWS calls go.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints<'a> {
    /// The emulator, for every service without an endpoint of its own.
    pub emulator: &'a str,
    /// The data plane's S3 endpoint, when it serves one: S3 calls and the URLs the function
    /// presigns go there, so that objects created with them are announced.
    pub s3: Option<&'a str>,
    /// The local face-analysis service, when it runs.
    pub rekognition: Option<&'a str>,
}

/// The environment of a function process: the deployed variables, then what points its SDK
/// at the local cloud. `AWS_REGION` comes from the region's runtime.
pub fn function_environment(function: &Function, endpoints: &Endpoints<'_>) -> BTreeMap<String, String> {
    let mut environment = function.environment.clone();
    environment.insert("AWS_ENDPOINT_URL".to_owned(), endpoints.emulator.to_owned());
    environment.insert("AWS_ACCESS_KEY_ID".to_owned(), TEST_CREDENTIALS.0.to_owned());
    environment.insert("AWS_SECRET_ACCESS_KEY".to_owned(), TEST_CREDENTIALS.1.to_owned());
    environment.insert(api_common::FORCE_PATH_STYLE_ENV.to_owned(), "true".to_owned());
    for (variable, url) in [(S3_ENDPOINT_VAR, endpoints.s3), (REKOGNITION_ENDPOINT_VAR, endpoints.rekognition)] {
        match url {
            Some(url) => environment.insert(variable.to_owned(), url.to_owned()),
            None => environment.remove(variable),
        };
    }
    environment
}
