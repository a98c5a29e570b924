//! What the emulator says a bucket notifies, and how a function is invoked asynchronously:
//! read when an object is created, never cached, so that a deploy's change applies to the
//! next object at once.

use anyhow::{anyhow, Result};

use super::{emulator_config, ControlPlane};
use crate::providers::s3::{lambda_notifications, unparsed_empty_configuration, LambdaNotification};

/// How Lambda retries an asynchronous invocation: Lambda's defaults unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncRetry {
    pub maximum_retry_attempts: u32,
    pub maximum_event_age_seconds: u32,
}

impl Default for AsyncRetry {
    fn default() -> Self {
        Self { maximum_retry_attempts: 2, maximum_event_age_seconds: 21_600 }
    }
}

impl ControlPlane {
    /// The bucket's region and its Lambda notifications; none when the bucket is gone or
    /// notifies nothing.
    pub async fn bucket_notifications(&self, bucket: &str) -> Result<(String, Vec<LambdaNotification>)> {
        let location = self
            .s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .map_err(|error| anyhow!("S3 GetBucketLocation {bucket}: {}", crate::aws::error::explain(&error)))?;
        let region = match location.location_constraint().map(|constraint| constraint.as_str()) {
            None | Some("") => super::DEFAULT_REGION.to_owned(),
            Some(region) => region.to_owned(),
        };
        // The bucket's region's client (made once), or one made now for a region no
        // environment deploys to.
        let s3 = match self.regions.iter().find(|clients| clients.region == region) {
            Some(clients) => clients.s3.clone(),
            None => super::path_style_s3(&emulator_config(&self.endpoint, &region).await),
        };
        let found = match s3.get_bucket_notification_configuration().bucket(bucket).send().await {
            Ok(found) => found,
            Err(error) if unparsed_empty_configuration(&error) => return Ok((region, Vec::new())),
            Err(error) => {
                return Err(anyhow!(
                    "S3 GetBucketNotificationConfiguration {bucket}: {}",
                    crate::aws::error::explain(&error)
                ))
            }
        };
        let targets = lambda_notifications(&found);
        Ok((region, targets))
    }

    /// The asynchronous invocation configuration of a function (or its alias); Lambda's
    /// defaults when it has none.
    pub async fn async_retry(&self, region: &str, function: &str, qualifier: Option<&str>) -> Result<AsyncRetry> {
        let Some(clients) = self.regions.iter().find(|clients| clients.region == region) else {
            return Ok(AsyncRetry::default());
        };
        let found = clients
            .lambda
            .get_function_event_invoke_config()
            .function_name(function)
            .set_qualifier(qualifier.map(str::to_owned))
            .send()
            .await;
        match found {
            Ok(config) => {
                let defaults = AsyncRetry::default();
                Ok(AsyncRetry {
                    maximum_retry_attempts: config
                        .maximum_retry_attempts()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(defaults.maximum_retry_attempts),
                    maximum_event_age_seconds: config
                        .maximum_event_age_in_seconds()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(defaults.maximum_event_age_seconds),
                })
            }
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                Ok(AsyncRetry::default())
            }
            Err(error) => Err(super::sdk_error(&format!("Lambda GetFunctionEventInvokeConfig {function}"), error)),
        }
    }
}
