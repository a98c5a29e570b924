//! AWS clients for one environment.
//!
//! Credentials and endpoints follow the SDK's conventions: the default credential chain
//! (`AWS_PROFILE`, environment variables, SSO, ...) and `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_<SERVICE>`. An environment file's `endpoint` is used only when no
//! endpoint variable is set, so pointing any environment at an emulator takes one variable
//! and no code path differs. Against an emulator (a loopback endpoint) with no credentials
//! configured, fixed test credentials are used, since emulators accept any.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::calls::CallCounter;
use crate::config::Environment;

pub mod error;

/// The ARN partition a region belongs to (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// An object's bytes; `None` when it (or its bucket) does not exist.
pub async fn get_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    use anyhow::Context as _;
    match s3.get_object().bucket(bucket).key(key).send().await {
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
                Err(anyhow::anyhow!("S3 GetObject s3://{bucket}/{key}: {}", error::explain(&error)))
            }
        }
    }
}

/// The default encryption of every bucket the tool makes: SSE-S3.
pub const BUCKET_ENCRYPTION: &str = "AES256";

/// The public access block of every bucket the tool makes: all four settings on, as the
/// `public_access_block` property records it (S3's four flags, snake_case).
pub fn block_all_public_access() -> serde_json::Value {
    serde_json::json!({
        "block_public_acls": true,
        "block_public_policy": true,
        "ignore_public_acls": true,
        "restrict_public_buckets": true,
    })
}

/// A bucket policy denying every request to `bucket` and its objects not made over TLS.
pub fn tls_only_policy(partition: &str, bucket: &str) -> serde_json::Value {
    let arn = format!("arn:{partition}:s3:::{bucket}");
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
}

/// Whether requests to this environment travel over TLS. Over a plain-HTTP emulator
/// endpoint they cannot, so TLS-only bucket policies are left out there: they would deny
/// every request (and moto evaluates any conditional Deny as matching).
pub fn uses_tls(env: &Environment) -> bool {
    !endpoint(env).is_some_and(|endpoint| endpoint.trim().to_ascii_lowercase().starts_with("http://"))
}

/// The endpoint every client of this environment uses, if it is overridden.
pub fn endpoint(env: &Environment) -> Option<String> {
    let from_var = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    from_var("AWS_ENDPOINT_URL").or_else(|| env.endpoint.clone())
}

/// Whether `endpoint` is an emulator on this machine.
pub fn is_local_endpoint(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.split(['/', ':']).next().unwrap_or(""),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn credentials_configured() -> bool {
    ["AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// The SDK configuration for an environment: its region, the endpoint rules above, and
/// rustls over ring.
pub async fn sdk_config(env: &Environment) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(env.region.clone()))
        .http_client(api_common::https_client());
    let endpoint = endpoint(env);
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        if let Some(endpoint) = &env.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
    }
    if endpoint.as_deref().is_some_and(is_local_endpoint) && !credentials_configured() {
        loader = loader.credentials_provider(Credentials::new("test", "test", None, None, "local-emulator"));
    }
    loader.load().await
}

/// The services the deployer calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    Iam,
    Lambda,
    ApiGateway,
    Logs,
    Sts,
}

/// Variable that replaces every attempt timeout, in milliseconds (the call timeout becomes
/// three times it), for slow networks and for tests that stall an endpoint on purpose.
pub const ATTEMPT_TIMEOUT_ENV: &str = "XTASK_ATTEMPT_TIMEOUT_MS";

/// How long one attempt of a call to `service` may take, and the call with all its retries.
/// Control-plane calls answer in well under a second; S3 carries artifacts of a few MB, and
/// Lambda's CreateFunction and UpdateFunctionCode copy them from S3. A call that stalls
/// fails within these bounds, so that a run holding the state lock never hangs.
pub fn timeouts(service: Service) -> (Duration, Duration) {
    let seconds = |attempt, call| (Duration::from_secs(attempt), Duration::from_secs(call));
    let configured = match service {
        Service::Sts => seconds(5, 20),
        Service::Iam | Service::ApiGateway | Service::Logs => seconds(10, 90),
        Service::S3 | Service::Lambda => seconds(30, 150),
    };
    let Ok(text) = std::env::var(ATTEMPT_TIMEOUT_ENV) else { return configured };
    match text.trim().parse::<u64>() {
        Ok(millis) if millis > 0 => (Duration::from_millis(millis), Duration::from_millis(millis) * 3),
        _ => {
            tracing::warn!("{ATTEMPT_TIMEOUT_ENV}={text:?} is not a positive number of milliseconds; ignored");
            configured
        }
    }
}

/// The SDK's timeout configuration for `service` (see [`timeouts`]).
pub fn timeout_config(service: Service) -> aws_config::timeout::TimeoutConfig {
    let (attempt, call) = timeouts(service);
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(attempt))
        .operation_attempt_timeout(attempt)
        .operation_timeout(call)
        .build()
}

/// Connecting takes milliseconds, to AWS or to an emulator on this machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One client per service the deployer uses, sharing one configuration.
#[derive(Debug, Clone)]
pub struct Clients {
    pub config: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub apigateway: aws_sdk_apigatewayv2::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub sts: aws_sdk_sts::Client,
    /// Whether S3 must be addressed path-style (emulators).
    pub path_style: bool,
}

impl Clients {
    /// Clients over `config`, each counting its calls (see [`crate::calls`]).
    pub fn new(config: SdkConfig, path_style: bool) -> Self {
        macro_rules! client {
            ($service:ident, $timeouts:expr) => {
                $service::Client::from_conf(
                    $service::config::Builder::from(&config)
                        .timeout_config(timeout_config($timeouts))
                        .interceptor(CallCounter)
                        .build(),
                )
            };
        }
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(path_style)
            .timeout_config(timeout_config(Service::S3))
            .interceptor(CallCounter)
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            iam: client!(aws_sdk_iam, Service::Iam),
            lambda: client!(aws_sdk_lambda, Service::Lambda),
            apigateway: client!(aws_sdk_apigatewayv2, Service::ApiGateway),
            logs: client!(aws_sdk_cloudwatchlogs, Service::Logs),
            sts: client!(aws_sdk_sts, Service::Sts),
            path_style,
            config,
        }
    }

    /// Clients for an environment.
    pub async fn for_environment(env: &Environment) -> Self {
        let path_style = endpoint(env).is_some();
        match endpoint(env) {
            Some(endpoint) => error::set_endpoint(&endpoint),
            None => error::set_endpoint(&format!("AWS in {}", env.region)),
        }
        Self::new(sdk_config(env).await, path_style)
    }

    /// The account the credentials belong to (STS GetCallerIdentity).
    pub async fn account_id(&self) -> anyhow::Result<String> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("STS GetCallerIdentity: {}", error::explain(&error)))?;
        identity.account.ok_or_else(|| anyhow::anyhow!("STS GetCallerIdentity returned no account"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_local() {
        assert!(is_local_endpoint("http://127.0.0.1:4566"));
        assert!(is_local_endpoint("http://localhost:5000/"));
        assert!(is_local_endpoint("http://[::1]:4566"));
        assert!(!is_local_endpoint("https://s3.eu-west-1.amazonaws.com"));
        assert!(!is_local_endpoint("http://127.example.com"));
    }
}
