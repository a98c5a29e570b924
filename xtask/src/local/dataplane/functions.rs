//! Deployed functions made ready to run: their code fetched and unpacked once per code hash,
//! their spec and environment, and one Lambda runtime per region.

use crate::local::discovery::{Function, TEST_CREDENTIALS};
use crate::local::runtime::{extract_bootstrap, FunctionSpec, Runtime, RuntimeConfig};
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

impl DataPlane {
    /// The function's spec for the runtime: its code fetched (once per code hash) and
    /// unpacked, its deployed configuration, and the local variables.
    pub(super) async fn prepare(&self, function: &Function) -> Result<FunctionSpec> {
        let face_url = self.options.state_dir.face_url();
        let key = (function.region.clone(), function.name.clone(), function.qualifier.clone());
        let mut prepared = self.prepared.lock().await;
        if let Some(known) = prepared.get(&key) {
            if known.function == *function && known.face_url == face_url {
                return Ok(known.spec.clone());
            }
        }
        let (bootstrap, code_sha256) = match prepared.get(&key) {
            Some(known) if known.spec.code_sha256 == function.code_sha256 => {
                (known.spec.bootstrap.clone(), known.spec.code_sha256.clone())
            }
            _ => {
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
                (bootstrap, code.code_sha256)
            }
        };
        let log_file = self.options.state_dir.function_log(&function.name);
        let spec =
            deployed_spec(function, code_sha256, bootstrap, &self.options.endpoint, face_url.as_deref(), log_file);
        prepared.insert(key, Prepared { function: function.clone(), face_url, spec: spec.clone() });
        Ok(spec)
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

/// How the local runtime runs a deployed function: as configured, from `bootstrap` (unpacked
/// from code `code_sha256`), with [`function_environment`].
pub fn deployed_spec(
    function: &Function,
    code_sha256: String,
    bootstrap: std::path::PathBuf,
    endpoint: &str,
    face_url: Option<&str>,
    log_file: std::path::PathBuf,
) -> FunctionSpec {
    FunctionSpec {
        name: function.name.clone(),
        arn: function.arn.clone(),
        code_sha256,
        bootstrap,
        environment: function_environment(function, endpoint, face_url),
        memory_mb: function.memory_mb,
        timeout: function.timeout,
        log_file,
    }
}

/// The environment of a function process: the deployed variables, then what points its SDK
/// at the emulator. `AWS_REGION` comes from the region's runtime.
pub fn function_environment(function: &Function, endpoint: &str, face_url: Option<&str>) -> BTreeMap<String, String> {
    let mut environment = function.environment.clone();
    environment.insert("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned());
    environment.insert("AWS_ACCESS_KEY_ID".to_owned(), TEST_CREDENTIALS.0.to_owned());
    environment.insert("AWS_SECRET_ACCESS_KEY".to_owned(), TEST_CREDENTIALS.1.to_owned());
    environment.insert(api_common::FORCE_PATH_STYLE_ENV.to_owned(), "true".to_owned());
    match face_url {
        Some(url) => environment.insert(REKOGNITION_ENDPOINT_VAR.to_owned(), url.to_owned()),
        None => environment.remove(REKOGNITION_ENDPOINT_VAR),
    };
    environment
}
