//! What is deployed into the emulator, read from its control planes: every HTTP API with its
//! routes, integrations, stages and CORS configuration (API Gateway v2 GetApis, GetRoutes,
//! GetIntegrations, GetStages), every Lambda function's configuration (ListFunctions), and a
//! function's exact code bytes (GetFunction, then the artifact store).
//!
//! Nothing here knows this project's routes: the deployed configuration decides the routing,
//! through [`Api::route`], which matches requests the way HTTP APIs do.
//!
//! How the emulator returns function code (moto 5.2.5, `moto/awslambda/models.py`):
//! GetFunction answers `Code.Location =
//! https://awslambda-<region>-tasks.s3.<region>.amazonaws.com/<S3Key>` and
//! `Code.RepositoryType = S3`. That URL is not served by anyone: the host is a real AWS name
//! and the bucket is not in it. What it does carry is the `S3Key` the function was created
//! or last updated from, and moto computes `CodeSha256` from that object's bytes. So the
//! code is read from the emulator's S3, from the bucket that holds that key (the deployer's
//! artifact store, `<state bucket>/<prefix>/artifacts/<sha256 hex>.zip`), and accepted only
//! when its SHA-256 equals `CodeSha256`. Real Lambda answers a presigned URL instead (and
//! newer APIs `Code.ResolvedS3Object`); both are used when present.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use serde::Serialize;

/// The credentials every local caller uses; moto accepts any.
pub const TEST_CREDENTIALS: (&str, &str) = ("test", "test");
/// The region clients that are not tied to one use (S3 is global in the emulator).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Everything deployed that the data plane serves, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub apis: Vec<Api>,
    pub functions: Vec<Function>,
}

/// One HTTP API, as deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    pub id: String,
    pub name: String,
    pub region: String,
    pub tags: BTreeMap<String, String>,
    pub routes: Vec<Route>,
    pub integrations: BTreeMap<String, Integration>,
    /// Stage names, `$default` included when deployed.
    pub stages: Vec<String>,
    pub cors: Option<Cors>,
}

/// A route: its key as deployed, parsed, and the integration its target names.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub id: String,
    pub key: String,
    pub parsed: RouteKey,
    /// From a target `integrations/<id>`.
    pub integration_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    /// `$default`: whatever no other route matches.
    Default,
    /// `METHOD /path`, METHOD possibly `ANY`; the path a template with `{name}` and a final
    /// `{name+}`.
    Route { method: String, segments: Vec<Segment> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Variable(String),
    /// `{name+}`: one or more remaining segments.
    Greedy(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: String,
    /// `AWS_PROXY`, `HTTP_PROXY`, ...
    pub kind: String,
    pub uri: String,
    pub payload_format_version: String,
    /// API Gateway's own limit for the integration (30 s unless set lower).
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<i32>,
    pub allow_credentials: bool,
}

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
}

/// A request matched to a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub stage: String,
    pub path_parameters: BTreeMap<String, String>,
}

impl Api {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The environment the API belongs to: its `environment` tag (the deployer tags every
    /// resource), else the `<env>` of a `<project>-<env>-api` name whose project tag matches.
    pub fn environment(&self) -> Option<String> {
        if let Some(environment) = self.tag("environment") {
            return Some(environment.to_owned());
        }
        let project = self.tag("project")?;
        let rest = self.name.strip_prefix(project)?.strip_prefix('-')?;
        rest.strip_suffix("-api").filter(|env| !env.is_empty()).map(str::to_owned)
    }

    /// Whether this is `project`'s API for `environment`: tagged so, and named
    /// `<project>-<environment>-api`.
    pub fn is_environment(&self, project: &str, environment: &str) -> bool {
        self.tag("project") == Some(project)
            && self.tag("environment") == Some(environment)
            && self.name == format!("{project}-{environment}-api")
    }

    /// The route a request takes, as HTTP APIs choose it: the stage first (`$default`, or
    /// the path's first segment naming a stage), then the most specific `METHOD /path` or
    /// `ANY /path` route (literal segments over `{variables}` over a greedy `{proxy+}`, and
    /// a route with the request's method over `ANY`), then `$default`. `None` is a 404.
    pub fn route(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let (stage, path): (String, &str) = if self.stages.iter().any(|stage| stage == "$default") {
            ("$default".to_owned(), path)
        } else {
            let trimmed = path.strip_prefix('/')?;
            let first = trimmed.split('/').next().unwrap_or_default();
            let stage = self.stages.iter().find(|stage| stage.as_str() == first)?;
            // What follows the stage, with its leading slash.
            (stage.clone(), &trimmed[first.len()..])
        };
        let path = if path.is_empty() { "/" } else { path };
        let segments = split_path(path);
        let mut best: Option<(RouteRank, &Route, BTreeMap<String, String>)> = None;
        for route in &self.routes {
            let RouteKey::Route { method: route_method, segments: template } = &route.parsed else { continue };
            let is_any = route_method == "ANY";
            if !is_any && route_method != method {
                continue;
            }
            let Some(parameters) = match_segments(template, &segments) else { continue };
            let rank = RouteRank::of(template, is_any);
            if best.as_ref().is_none_or(|(best_rank, _, _)| rank < *best_rank) {
                best = Some((rank, route, parameters));
            }
        }
        if let Some((_, route, path_parameters)) = best {
            return Some(Matched { route, stage, path_parameters });
        }
        let default = self.routes.iter().find(|route| route.parsed == RouteKey::Default)?;
        Some(Matched { route: default, stage, path_parameters: BTreeMap::new() })
    }
}

/// Orders candidate routes: lower is more specific.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RouteRank {
    greedy: bool,
    /// For greedy routes, more segments before the greedy one is more specific.
    fewer_fixed_segments: std::cmp::Reverse<usize>,
    /// Per segment, 0 for a literal and 1 for a variable: literals earlier win.
    kinds: Vec<u8>,
    any_method: bool,
}

impl RouteRank {
    fn of(template: &[Segment], any_method: bool) -> Self {
        let greedy = matches!(template.last(), Some(Segment::Greedy(_)));
        let fixed = template.iter().filter(|segment| !matches!(segment, Segment::Greedy(_))).count();
        Self {
            greedy,
            fewer_fixed_segments: std::cmp::Reverse(if greedy { fixed } else { 0 }),
            kinds: template.iter().map(|segment| u8::from(!matches!(segment, Segment::Literal(_)))).collect(),
            any_method,
        }
    }
}

/// `/a/b/` -> `["a", "b", ""]`; `/` -> `[]`.
fn split_path(path: &str) -> Vec<&str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    }
}

fn match_segments(template: &[Segment], segments: &[&str]) -> Option<BTreeMap<String, String>> {
    let mut parameters = BTreeMap::new();
    for (index, part) in template.iter().enumerate() {
        match part {
            Segment::Greedy(name) => {
                let rest = segments.get(index..).filter(|rest| !rest.is_empty())?;
                let value = rest.join("/");
                if value.is_empty() {
                    return None;
                }
                parameters.insert(name.clone(), decode(&value));
                return Some(parameters);
            }
            Segment::Literal(literal) => {
                if segments.get(index) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Variable(name) => {
                let value = segments.get(index).filter(|value| !value.is_empty())?;
                parameters.insert(name.clone(), decode(value));
            }
        }
    }
    (template.len() == segments.len()).then_some(parameters)
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Parses a route key: `$default`, or `METHOD /path/{var}/{proxy+}`.
pub fn parse_route_key(key: &str) -> Option<RouteKey> {
    if key == "$default" {
        return Some(RouteKey::Default);
    }
    let (method, path) = key.split_once(' ')?;
    if method.is_empty() || !path.starts_with('/') {
        return None;
    }
    let segments = split_path(path)
        .into_iter()
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => match name.strip_suffix('+') {
                Some(name) => Segment::Greedy(name.to_owned()),
                None => Segment::Variable(name.to_owned()),
            },
            None => Segment::Literal(segment.to_owned()),
        })
        .collect::<Vec<_>>();
    // A greedy variable is allowed only last.
    if segments.iter().rev().skip(1).any(|segment| matches!(segment, Segment::Greedy(_))) {
        return None;
    }
    Some(RouteKey::Route { method: method.to_ascii_uppercase(), segments })
}

/// The function an integration URI names: a function ARN, or API Gateway's
/// `arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<function arn>/invocations`.
/// Returns (region, function name, qualifier).
pub fn function_of_uri(uri: &str) -> Option<(String, String, Option<String>)> {
    let arn = match uri.split_once(":lambda:path/") {
        Some((_, path)) => path.split_once("/functions/")?.1.strip_suffix("/invocations")?,
        None => uri,
    };
    // arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", region, _, "function", name] => Some(((*region).to_owned(), (*name).to_owned(), None)),
        ["arn", _, "lambda", region, _, "function", name, qualifier] => {
            Some(((*region).to_owned(), (*name).to_owned(), Some((*qualifier).to_owned())))
        }
        _ => None,
    }
}

/// The account id in an ARN (`arn:aws:lambda:us-east-1:123456789012:function:f`).
pub fn account_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|account| !account.is_empty())
}

impl Snapshot {
    /// The function an integration invokes, in the version its qualifier names.
    pub fn function_for(&self, integration: &Integration) -> Option<&Function> {
        let (region, name, qualifier) = function_of_uri(&integration.uri)?;
        let qualifier = qualifier.filter(|qualifier| qualifier != "$LATEST");
        self.functions
            .iter()
            .find(|function| function.region == region && function.name == name && function.qualifier == qualifier)
    }

    pub fn api(&self, id: &str) -> Option<&Api> {
        self.apis.iter().find(|api| api.id == id)
    }
}

/// Clients for one region of the emulator.
#[derive(Debug, Clone)]
struct RegionClients {
    region: String,
    apigateway: aws_sdk_apigatewayv2::Client,
    lambda: aws_sdk_lambda::Client,
}

/// The emulator's control planes, across the regions environments deploy to.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    endpoint: String,
    regions: Vec<RegionClients>,
    s3: aws_sdk_s3::Client,
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

/// SDK configuration for the emulator at `endpoint`, in `region`, with test credentials.
pub async fn emulator_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(TEST_CREDENTIALS.0, TEST_CREDENTIALS.1, None, None, "local-emulator"))
        .http_client(api_common::https_client())
        .load()
        .await
}

fn sdk_error<E, R>(operation: &str, error: aws_sdk_lambda::error::SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    anyhow!("{operation}: {}", aws_sdk_lambda::error::DisplayErrorContext(error))
}

impl ControlPlane {
    /// Clients for `regions` (deduplicated; `us-east-1` when empty) of the emulator at
    /// `endpoint`.
    pub async fn connect(endpoint: &str, regions: &[String]) -> Self {
        let mut seen = HashSet::new();
        let mut names: Vec<String> = regions.iter().filter(|region| seen.insert(region.as_str())).cloned().collect();
        if names.is_empty() {
            names.push(DEFAULT_REGION.to_owned());
        }
        let mut clients = Vec::new();
        for region in names {
            let config = emulator_config(endpoint, &region).await;
            clients.push(RegionClients {
                apigateway: aws_sdk_apigatewayv2::Client::new(&config),
                lambda: aws_sdk_lambda::Client::new(&config),
                region,
            });
        }
        let s3_config = aws_sdk_s3::config::Builder::from(&emulator_config(endpoint, DEFAULT_REGION).await)
            .force_path_style(true)
            .build();
        Self { endpoint: endpoint.to_owned(), regions: clients, s3: aws_sdk_s3::Client::from_conf(s3_config) }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.iter().map(|clients| clients.region.as_str())
    }

    /// Reads every API and function of every region.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        for clients in &self.regions {
            snapshot.functions.extend(list_functions(clients).await?);
            for api in get_apis(clients).await? {
                snapshot.apis.push(api);
            }
        }
        // Integrations that name an alias or a version run that version's code and
        // configuration, which ListFunctions does not show.
        let mut qualified: Vec<(String, String, String)> = snapshot
            .apis
            .iter()
            .flat_map(|api| api.integrations.values())
            .filter_map(|integration| function_of_uri(&integration.uri))
            .filter_map(|(region, name, qualifier)| Some((region, name, qualifier.filter(|q| q != "$LATEST")?)))
            .collect();
        qualified.sort();
        qualified.dedup();
        for (region, name, qualifier) in qualified {
            let Some(clients) = self.regions.iter().find(|clients| clients.region == region) else { continue };
            let found =
                clients.lambda.get_function_configuration().function_name(&name).qualifier(&qualifier).send().await;
            match found {
                Ok(configuration) => {
                    if let Some(function) = function_of(&configuration, &region, Some(qualifier)) {
                        snapshot.functions.push(function);
                    }
                }
                Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {}
                Err(error) => {
                    return Err(sdk_error(&format!("Lambda GetFunctionConfiguration {name}:{qualifier}"), error))
                }
            }
        }
        snapshot.apis.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
        Ok(snapshot)
    }

    /// `function` as its alias resolves now. A snapshot may be up to a poll interval old, but
    /// a request made right after a deploy (a smoke test) must reach the version the alias
    /// was just moved to, as it does on AWS: so every invocation through an alias asks for
    /// the alias (one cheap call), and re-reads the configuration when it moved.
    pub async fn resolve(&self, function: &Function) -> Result<Function> {
        let Some(qualifier) = function.qualifier.as_deref().filter(|q| q.parse::<u64>().is_err()) else {
            return Ok(function.clone());
        };
        let clients = self
            .regions
            .iter()
            .find(|clients| clients.region == function.region)
            .with_context(|| format!("no clients for region {}", function.region))?;
        let alias = clients
            .lambda
            .get_alias()
            .function_name(&function.name)
            .name(qualifier)
            .send()
            .await
            .map_err(|error| sdk_error(&format!("Lambda GetAlias {}:{qualifier}", function.name), error))?;
        if alias.function_version() == Some(function.version.as_str()) {
            return Ok(function.clone());
        }
        let configuration = clients
            .lambda
            .get_function_configuration()
            .function_name(&function.name)
            .qualifier(qualifier)
            .send()
            .await
            .map_err(|error| {
                sdk_error(&format!("Lambda GetFunctionConfiguration {}:{qualifier}", function.name), error)
            })?;
        function_of(&configuration, &function.region, function.qualifier.clone())
            .with_context(|| format!("GetFunctionConfiguration {}:{qualifier} returned no name or ARN", function.name))
    }

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
                let bytes = self.get_object(bucket, key).await?.with_context(|| format!("{source} does not exist"))?;
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
                verified(&function.name, location.to_owned(), bytes.to_vec(), &expected)
            }
        }
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
            .map_err(|error| anyhow!("S3 ListBuckets: {}", aws_sdk_s3::error::DisplayErrorContext(error)))?;
        let mut buckets: Vec<&str> = listed.buckets().iter().filter_map(|bucket| bucket.name()).collect();
        buckets.sort_by_key(|bucket| !(bucket.contains("state") || bucket.contains("artifact")));
        let mut mismatches = Vec::new();
        for key in &keys {
            for bucket in &buckets {
                let Some(bytes) = self.get_object(bucket, key).await? else { continue };
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

    /// An object's bytes; `None` when the bucket or key does not exist.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(object) => {
                let bytes = object.body.collect().await.with_context(|| format!("reading s3://{bucket}/{key}"))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(error) => {
                let missing = error.as_service_error().is_some_and(|e| e.is_no_such_key())
                    || error.raw_response().is_some_and(|raw| raw.status().as_u16() == 404);
                if missing {
                    Ok(None)
                } else {
                    Err(anyhow!("S3 GetObject s3://{bucket}/{key}: {}", aws_sdk_s3::error::DisplayErrorContext(error)))
                }
            }
        }
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

fn verified(function: &str, source: String, bytes: Vec<u8>, expected: &str) -> Result<Code> {
    let (_, actual) = crate::artifact::sha256(&bytes);
    if actual != expected {
        bail!("the code of {function} from {source} has SHA-256 {actual}, but Lambda reports CodeSha256 {expected}");
    }
    Ok(Code { bytes, code_sha256: actual, source })
}

async fn list_functions(clients: &RegionClients) -> Result<Vec<Function>> {
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
fn function_of<C: FunctionConfigurationView>(
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
    })
}

/// The SDK's two shapes of a function's configuration, seen alike.
trait FunctionConfigurationView {
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

fn gateway_error<E, R>(operation: &str, error: aws_sdk_apigatewayv2::error::SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    anyhow!("{operation}: {}", aws_sdk_apigatewayv2::error::DisplayErrorContext(error))
}

/// Collects every page of a paginated API Gateway listing.
macro_rules! all_pages {
    ($request:expr, $operation:expr) => {{
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = $request
                .clone()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|error| gateway_error($operation, error))?;
            items.extend(page.items().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        items
    }};
}

async fn get_apis(clients: &RegionClients) -> Result<Vec<Api>> {
    let gateway = &clients.apigateway;
    let listed = all_pages!(gateway.get_apis(), "API Gateway GetApis");
    let mut apis = Vec::new();
    for api in listed {
        let Some(id) = api.api_id() else { continue };
        if api.protocol_type().is_some_and(|protocol| protocol.as_str() != "HTTP") {
            continue;
        }
        // An API deleted between the listing and these calls is skipped, not an error.
        let routes = match gateway.get_routes().api_id(id).all("API Gateway GetRoutes").await? {
            Some(routes) => routes,
            None => continue,
        };
        let Some(integrations) = gateway.get_integrations().api_id(id).all("API Gateway GetIntegrations").await? else {
            continue;
        };
        let Some(stages) = gateway.get_stages().api_id(id).all("API Gateway GetStages").await? else {
            continue;
        };
        apis.push(Api {
            id: id.to_owned(),
            name: api.name().unwrap_or_default().to_owned(),
            region: clients.region.clone(),
            tags: api.tags().map(|tags| tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
            routes: routes
                .iter()
                .filter_map(|route: &aws_sdk_apigatewayv2::types::Route| {
                    let key = route.route_key()?;
                    let parsed = parse_route_key(key)?;
                    Some(Route {
                        id: route.route_id().unwrap_or_default().to_owned(),
                        key: key.to_owned(),
                        parsed,
                        integration_id: route
                            .target()
                            .and_then(|target| target.strip_prefix("integrations/"))
                            .map(str::to_owned),
                    })
                })
                .collect(),
            integrations: integrations
                .iter()
                .filter_map(|integration: &aws_sdk_apigatewayv2::types::Integration| {
                    let id = integration.integration_id()?.to_owned();
                    Some((
                        id.clone(),
                        Integration {
                            id,
                            kind: integration
                                .integration_type()
                                .map(|kind| kind.as_str().to_owned())
                                .unwrap_or_default(),
                            uri: integration.integration_uri().unwrap_or_default().to_owned(),
                            payload_format_version: integration.payload_format_version().unwrap_or("1.0").to_owned(),
                            timeout: Duration::from_millis(
                                integration
                                    .timeout_in_millis()
                                    .and_then(|ms| u64::try_from(ms).ok())
                                    .filter(|ms| *ms > 0)
                                    .unwrap_or(30_000),
                            ),
                        },
                    ))
                })
                .collect(),
            stages: stages
                .iter()
                .filter_map(|stage: &aws_sdk_apigatewayv2::types::Stage| stage.stage_name().map(str::to_owned))
                .collect(),
            cors: api.cors_configuration().map(|cors| Cors {
                allow_origins: cors.allow_origins().to_vec(),
                allow_methods: cors.allow_methods().to_vec(),
                allow_headers: cors.allow_headers().to_vec(),
                expose_headers: cors.expose_headers().to_vec(),
                max_age: cors.max_age(),
                allow_credentials: cors.allow_credentials().unwrap_or(false),
            }),
        });
    }
    Ok(apis)
}

/// The three per-API listings, paged the same way.
trait PagedRequest {
    type Item;
    async fn all(self, operation: &str) -> Result<Option<Vec<Self::Item>>>;
}

macro_rules! paged_request {
    ($builder:ty, $item:ty, $error:ty) => {
        impl PagedRequest for $builder {
            type Item = $item;
            async fn all(self, operation: &str) -> Result<Option<Vec<$item>>> {
                let mut items = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let page = match self.clone().set_next_token(token.take()).send().await {
                        Ok(page) => page,
                        Err(error) if error.as_service_error().is_some_and(<$error>::is_not_found_exception) => {
                            return Ok(None)
                        }
                        Err(error) => return Err(gateway_error(operation, error)),
                    };
                    items.extend(page.items().iter().cloned());
                    match page.next_token() {
                        Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                        _ => return Ok(Some(items)),
                    }
                }
            }
        }
    };
}

paged_request!(
    aws_sdk_apigatewayv2::operation::get_routes::builders::GetRoutesFluentBuilder,
    aws_sdk_apigatewayv2::types::Route,
    aws_sdk_apigatewayv2::operation::get_routes::GetRoutesError
);
paged_request!(
    aws_sdk_apigatewayv2::operation::get_integrations::builders::GetIntegrationsFluentBuilder,
    aws_sdk_apigatewayv2::types::Integration,
    aws_sdk_apigatewayv2::operation::get_integrations::GetIntegrationsError
);
paged_request!(
    aws_sdk_apigatewayv2::operation::get_stages::builders::GetStagesFluentBuilder,
    aws_sdk_apigatewayv2::types::Stage,
    aws_sdk_apigatewayv2::operation::get_stages::GetStagesError
);

#[cfg(test)]
mod tests;
