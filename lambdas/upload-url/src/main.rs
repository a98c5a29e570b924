use lambda_http::{run, service_fn, Error};
use upload_url::{handle, s3_client, Config, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    api_common::init_logging();

    let config = Config::from_env().inspect_err(|error| tracing::error!(%error, "cold start failed"))?;
    let sdk_config = api_common::load_sdk_config().await;
    let force_path_style = api_common::force_path_style(std::env::var(api_common::FORCE_PATH_STYLE_ENV).ok());
    let deps = Deps { s3: s3_client(&sdk_config, force_path_style), config };

    run(service_fn(|request| handle(&deps, request))).await
}
