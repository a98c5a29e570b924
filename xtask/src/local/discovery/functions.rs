//! Lambda functions as deployed: their configuration (ListFunctions, and GetFunction for a
//! qualifier), and their exact code bytes, checked against the `CodeSha256` Lambda reports.

use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::apis::decode;
use super::*;

/// A Lambda function's deployed configuration: `$LATEST`, or the version an integration's
/// qualifier (an alias or a version number) resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub arn: String,
    pub region: String,
    /// The qualifier integrations name it by; `None` for `$LATEST`.
    pub qualifier: Option<String>,
    /// `$LATEST` or the published version number.
    pub version: String,
    /// Base64 of the zip's SHA-256, as Lambda reports it.
    pub code_sha256: String,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub environment: BTreeMap<String, String>,
    /// Its reserved concurrency, when it has one: at most this many instances run at once.
    pub reserved_concurrency: Option<u32>,
}

/// A function's deployment package, checked against the `CodeSha256` Lambda reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub bytes: Vec<u8>,
    /// Base64 of the SHA-256 of `bytes`, equal to the function's `CodeSha256`.
    pub code_sha256: String,
    /// Where the bytes came from, e.g. `s3://bucket/key`.
    pub source: String,
}

pub(super) fn sdk_error<E>(
    operation: &str,
    error: aws_sdk_lambda::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> anyhow::Error
where
    E: aws_sdk_lambda::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    anyhow!("{operation}: {}", crate::aws::error::explain(&error))
}

impl ControlPlane {
    /// The exact zip `function` runs now, checked against its `CodeSha256` (which GetFunction
    /// reports anew, so code updated since the last snapshot is fetched as it is now).
    pub async fn fetch_code(&self, function: &Function) -> Result<Code> {
        let clients = self
            .regions
            .iter()
            .find(|clients| clients.region == function.region)
            .with_context(|| format!("no clients for region {}", function.region))?;
        let found = clients
            .lambda
            .get_function()
            .function_name(&function.name)
            .set_qualifier(function.qualifier.clone())
            .send()
            .await
            .map_err(|error| sdk_error("Lambda GetFunction", error))?;
        let expected = found.configuration().and_then(|c| c.code_sha256()).unwrap_or(&function.code_sha256).to_owned();
        let code = found.code().with_context(|| format!("GetFunction {} returned no Code", function.name))?;
        if let Some(resolved) = code.resolved_s3_object() {
            if let (Some(bucket), Some(key)) = (resolved.s3_bucket(), resolved.s3_key()) {
                let source = format!("s3://{bucket}/{key}");
                let bytes = crate::aws::get_object(&self.s3, bucket, key)
                    .await?
                    .with_context(|| format!("{source} does not exist"))?;
                return verified(&function.name, source, bytes, &expected);
            }
        }
        let location =
            code.location().with_context(|| format!("GetFunction {} returned no Code.Location", function.name))?;
        match moto_code_key(location) {
            Some(key) => self.find_code(&function.name, &key, &expected).await,
            None => {
                let response = reqwest::get(location)
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .with_context(|| format!("downloading the code of {} from {location}", function.name))?;
                let bytes = response.bytes().await.with_context(|| format!("downloading {location}"))?;
                match verified(&function.name, location.to_owned(), bytes.to_vec(), &expected) {
                    Ok(code) => Ok(code),
                    // MiniStack serves $LATEST's code at every version's Code.Location; the
                    // deployer's content-addressed store holds each version's own.
                    Err(mismatch) => self
                        .find_by_digest(function, &expected)
                        .await
                        .map_err(|error| anyhow!("{mismatch:#}; nor is it in the artifact store: {error:#}")),
                }
            }
        }
    }

    /// The object `<...>/<sha256 hex>.zip` whose SHA-256 is `expected` (base64, as Lambda's
    /// `CodeSha256`), in the emulator's state and artifact buckets: the deployer's
    /// content-addressed artifact store.
    async fn find_by_digest(&self, function: &Function, expected: &str) -> Result<Code> {
        use base64::Engine as _;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(expected.trim())
            .with_context(|| format!("CodeSha256 {expected} of {} is not base64", function.name))?;
        let file = format!("{}.zip", hex::encode(digest));
        let listed = self
            .s3
            .list_buckets()
            .send()
            .await
            .map_err(|error| anyhow!("S3 ListBuckets: {}", crate::aws::error::explain(&error)))?;
        let stores = listed.buckets().iter().filter_map(|bucket| {
            let name = bucket.name().filter(|name| name.contains("state") || name.contains("artifact"))?;
            Some((name, bucket.bucket_region().unwrap_or(&function.region)))
        });
        for (bucket, region) in stores {
            // A bucket is addressed in its own region (MiniStack, like S3, redirects otherwise).
            let s3 = aws_sdk_s3::Client::from_conf(
                self.s3.config().to_builder().region(aws_sdk_s3::config::Region::new(region.to_owned())).build(),
            );
            let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|error| anyhow!("S3 ListObjectsV2 {bucket}: {}", crate::aws::error::explain(&error)))?;
                let found = page
                    .contents()
                    .iter()
                    .filter_map(|object| object.key())
                    .find(|key| key.rsplit('/').next() == Some(file.as_str()));
                if let Some(key) = found {
                    let source = format!("s3://{bucket}/{key}");
                    let bytes = crate::aws::get_object(&s3, bucket, key)
                        .await?
                        .with_context(|| format!("{source} vanished"))?;
                    return verified(&function.name, source, bytes, expected);
                }
            }
        }
        bail!("no {file} in the emulator's state or artifact buckets")
    }

    /// Looks for `key` in the emulator's buckets (state and artifact buckets first) and
    /// returns the first object whose SHA-256 is `expected`.
    ///
    /// moto shares one code record between a function and its published versions, so a
    /// version's `Code.Location` names the key of `$LATEST`'s code. The deployer's artifact
    /// store is content-addressed (`<prefix>/<sha256 hex>.zip`), so the version's own code is
    /// looked for beside it too.
    async fn find_code(&self, function: &str, key: &str, expected: &str) -> Result<Code> {
        let mut keys = vec![key.to_owned()];
        if let Some(sibling) = content_addressed_sibling(key, expected) {
            keys.push(sibling);
        }
        let listed = self
            .s3
            .list_buckets()
            .send()
            .await
            .map_err(|error| anyhow!("S3 ListBuckets: {}", crate::aws::error::explain(&error)))?;
        let mut buckets: Vec<&str> = listed.buckets().iter().filter_map(|bucket| bucket.name()).collect();
        buckets.sort_by_key(|bucket| !(bucket.contains("state") || bucket.contains("artifact")));
        let mut mismatches = Vec::new();
        for key in &keys {
            for bucket in &buckets {
                let Some(bytes) = crate::aws::get_object(&self.s3, bucket, key).await? else { continue };
                let (_, actual) = crate::artifact::sha256(&bytes);
                if actual == expected {
                    let source = format!("s3://{bucket}/{key}");
                    tracing::debug!("code of {function}: {source}, SHA-256 {actual}");
                    return Ok(Code { bytes, code_sha256: actual, source });
                }
                mismatches.push(format!("s3://{bucket}/{key} has SHA-256 {actual}"));
            }
        }
        if mismatches.is_empty() {
            bail!("the code of {function} (key {key}, CodeSha256 {expected}) is in no bucket of the emulator");
        }
        bail!("no copy of the code of {function} has its CodeSha256 {expected}: {}", mismatches.join("; "))
    }
}

/// `<dir>/<hex of expected>.zip` for a content-addressed `<dir>/<64 hex digits>.zip` key;
/// `expected` is base64, as Lambda's `CodeSha256`.
pub fn content_addressed_sibling(key: &str, expected: &str) -> Option<String> {
    use base64::Engine as _;
    let (dir, file) = key.rsplit_once('/').map_or(("", key), |(dir, file)| (dir, file));
    let stem = file.strip_suffix(".zip")?;
    if stem.len() != 64 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digest = base64::engine::general_purpose::STANDARD.decode(expected.trim()).ok()?;
    let sibling = format!("{}.zip", hex::encode(digest));
    Some(if dir.is_empty() { sibling } else { format!("{dir}/{sibling}") }).filter(|sibling| sibling != key)
}

/// The `S3Key` in moto's `Code.Location`
/// (`https://awslambda-<region>-tasks.s3.<region>.amazonaws.com/<key>`).
pub fn moto_code_key(location: &str) -> Option<String> {
    let rest = location.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    if !(host.starts_with("awslambda-") && host.contains("-tasks.s3.") && host.ends_with(".amazonaws.com")) {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    (!path.is_empty()).then(|| decode(path))
}

pub(super) fn verified(function: &str, source: String, bytes: Vec<u8>, expected: &str) -> Result<Code> {
    let (_, actual) = crate::artifact::sha256(&bytes);
    if actual != expected {
        bail!("the code of {function} from {source} has SHA-256 {actual}, but Lambda reports CodeSha256 {expected}");
    }
    Ok(Code { bytes, code_sha256: actual, source })
}

pub(super) async fn list_functions(clients: &RegionClients) -> Result<Vec<Function>> {
    let mut functions = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = clients
            .lambda
            .list_functions()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|error| sdk_error(&format!("Lambda ListFunctions ({})", clients.region), error))?;
        functions.extend(
            page.functions().iter().filter_map(|configuration| function_of(configuration, &clients.region, None)),
        );
        match page.next_marker() {
            Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
            _ => return Ok(functions),
        }
    }
}

/// What the data plane needs of a function's configuration (as ListFunctions and
/// GetFunctionConfiguration report it); `None` without a name or ARN.
pub(super) fn function_of<C: FunctionConfigurationView>(
    configuration: &C,
    region: &str,
    qualifier: Option<String>,
) -> Option<Function> {
    let (name, arn) = (configuration.name()?, configuration.arn()?);
    Some(Function {
        name: name.to_owned(),
        arn: arn.to_owned(),
        region: region.to_owned(),
        qualifier,
        version: configuration.version().unwrap_or("$LATEST").to_owned(),
        code_sha256: configuration.code_sha256().unwrap_or_default().to_owned(),
        memory_mb: configuration.memory_mb().and_then(|m| u32::try_from(m).ok()).unwrap_or(128),
        timeout: Duration::from_secs(configuration.timeout().and_then(|t| u64::try_from(t).ok()).unwrap_or(3)),
        environment: configuration
            .variables()
            .map(|variables| variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        reserved_concurrency: None,
    })
}

/// The SDK's two shapes of a function's configuration, seen alike.
pub(super) trait FunctionConfigurationView {
    fn name(&self) -> Option<&str>;
    fn arn(&self) -> Option<&str>;
    fn version(&self) -> Option<&str>;
    fn code_sha256(&self) -> Option<&str>;
    fn memory_mb(&self) -> Option<i32>;
    fn timeout(&self) -> Option<i32>;
    fn variables(&self) -> Option<&HashMap<String, String>>;
}

macro_rules! function_configuration_view {
    ($type:ty) => {
        impl FunctionConfigurationView for $type {
            fn name(&self) -> Option<&str> {
                self.function_name()
            }
            fn arn(&self) -> Option<&str> {
                self.function_arn()
            }
            fn version(&self) -> Option<&str> {
                <$type>::version(self)
            }
            fn code_sha256(&self) -> Option<&str> {
                <$type>::code_sha256(self)
            }
            fn memory_mb(&self) -> Option<i32> {
                self.memory_size()
            }
            fn timeout(&self) -> Option<i32> {
                <$type>::timeout(self)
            }
            fn variables(&self) -> Option<&HashMap<String, String>> {
                self.environment().and_then(|environment| environment.variables())
            }
        }
    };
}

function_configuration_view!(aws_sdk_lambda::types::FunctionConfiguration);
function_configuration_view!(aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput);
