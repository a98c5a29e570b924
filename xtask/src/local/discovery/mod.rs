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

use std::collections::HashSet;

use anyhow::Result;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

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

mod apis;
mod functions;
mod notifications;

use apis::get_apis;
pub use apis::{
    account_of_arn, function_of_uri, parse_route_key, Api, Cors, Integration, Limit, Matched, Route, RouteKey, Segment,
    Throttling,
};
pub use functions::{content_addressed_sibling, moto_code_key, Code, Function};
use functions::{function_of, list_functions, sdk_error};
pub use notifications::AsyncRetry;

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
    s3: aws_sdk_s3::Client,
}

/// The emulator's control planes, across the regions environments deploy to.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    endpoint: String,
    regions: Vec<RegionClients>,
    s3: aws_sdk_s3::Client,
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

/// An S3 client for the emulator, which serves buckets path-style.
fn path_style_s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
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
                s3: path_style_s3(&config),
                region,
            });
        }
        let s3 = path_style_s3(&emulator_config(endpoint, DEFAULT_REGION).await);
        Self { endpoint: endpoint.to_owned(), regions: clients, s3 }
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
        let invoked: std::collections::BTreeSet<(String, String)> =
            qualified.iter().map(|(region, name, _)| (region.clone(), name.clone())).collect();
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
        // The reserved concurrency of each function an integration invokes: its cap.
        for (region, name) in invoked {
            let Some(clients) = self.regions.iter().find(|clients| clients.region == region) else { continue };
            let reserved = match clients.lambda.get_function_concurrency().function_name(&name).send().await {
                Ok(answer) => answer.reserved_concurrent_executions().and_then(|n| u32::try_from(n).ok()),
                Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => None,
                Err(error) => return Err(sdk_error(&format!("Lambda GetFunctionConcurrency {name}"), error)),
            };
            for function in snapshot.functions.iter_mut().filter(|f| f.region == region && f.name == name) {
                function.reserved_concurrency = reserved;
            }
        }
        snapshot.apis.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests;
