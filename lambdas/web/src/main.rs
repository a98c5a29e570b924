use lambda_http::{run, service_fn, Error};
use web::{handle, Config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    api_common::init_logging();
    let config = Config::from_env().inspect_err(|error| tracing::error!(%error, "cold start failed"))?;
    run(service_fn(|request| handle(&config, request))).await
}
