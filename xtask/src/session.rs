//! Opening an environment for a command: its configuration, AWS clients, state store, and
//! the desired resources, so that every command (plan, deploy, destroy, outputs, unlock)
//! sees the same data flow: YAML -> Environment -> desired resources -> plan.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use crate::aws::Clients;
use crate::config::{environments_dir, Environment, ACCOUNT_ID_PLACEHOLDER};
use crate::engine::resource::Resource;
use crate::manifest::Manifest;
use crate::providers::AwsProvider;
use crate::stack::{self, Context};
use crate::state::s3::S3Store;
use crate::state::{StateFile, Versioned};
use crate::workspace;

pub struct Session {
    pub env: Environment,
    pub clients: Clients,
    pub state_bucket: String,
    pub store: Arc<S3Store>,
    /// Learned from STS when the state bucket's name needs it; otherwise from state.
    account_id: Option<String>,
}

impl Session {
    /// Loads `environments/<name>.yaml` and builds the clients and state store. Makes an AWS
    /// call only when the state bucket's name contains `{account_id}`.
    pub async fn open(name: &str) -> Result<Self> {
        let env = Environment::load(&environments_dir(), name)?;
        let clients = Clients::for_environment(&env).await;
        let mut account_id = None;
        let state_bucket = if env.state.bucket.contains(ACCOUNT_ID_PLACEHOLDER) {
            let id = clients.account_id().await?;
            let bucket = env.state.bucket_for_account(&id);
            account_id = Some(id);
            bucket
        } else {
            env.state.bucket.clone()
        };
        let store = Arc::new(S3Store::new(clients.s3.clone(), &state_bucket, &env.state.prefix, &env.name));
        Ok(Self { env, clients, state_bucket, store, account_id })
    }

    /// The state document, if one was ever written.
    pub async fn read_state(&self) -> Result<Option<Versioned<StateFile>>> {
        use crate::state::StateStore as _;
        Ok(self.store.load().await?)
    }

    /// The account id: already known, recorded in state, or asked of STS.
    pub async fn account_id(&mut self, state: &StateFile) -> Result<String> {
        if let Some(id) = self.account_id.clone().or_else(|| state.account_id.clone()) {
            self.account_id = Some(id.clone());
            return Ok(id);
        }
        let id = self.clients.account_id().await?;
        self.account_id = Some(id.clone());
        Ok(id)
    }

    /// The resources this environment should have, from the current build.
    pub fn desired(&self, account_id: &str, manifest: &Manifest) -> Result<Vec<Resource>> {
        let tls = crate::aws::uses_tls(&self.env);
        // The local data plane serves the `local` environment's API at a port known before
        // the API exists; any other environment's on the next free port, known only after.
        let local_api_url = match crate::aws::endpoint(&self.env).filter(|url| crate::aws::is_local_endpoint(url)) {
            Some(endpoint) if self.env.name == crate::local::layout::LOCAL_ENVIRONMENT => {
                Some(crate::local::cloud::api_url_for(&endpoint)?)
            }
            Some(_) | None => None,
        };
        let cx = Context { env: &self.env, account_id, manifest, tls, local_api_url: local_api_url.as_deref() };
        Ok(stack::resources(&cx)?)
    }

    /// The AWS provider, with the artifact store in the state bucket and, when given, the
    /// zips of a local build to upload to it.
    pub fn provider(&self, manifest: Option<&Manifest>) -> AwsProvider {
        let provider =
            AwsProvider::new(self.clients.clone(), &self.state_bucket, format!("{}/artifacts", self.env.state.prefix));
        match manifest {
            Some(manifest) => provider.with_manifest(&workspace::root(), manifest),
            None => provider,
        }
    }

    /// `s3://<bucket>/<prefix>/<env>/state.json`
    pub fn state_location(&self) -> String {
        use crate::state::StateStore as _;
        self.store.location()
    }
}

/// The build manifest, which every command that plans needs: `path`, or the workspace's
/// `target/lambda/manifest.json`.
pub fn manifest(path: Option<&Path>) -> Result<Manifest> {
    match path {
        Some(path) => {
            Manifest::read(path)?.with_context(|| format!("there is no build manifest at {}", path.display()))
        }
        None => Manifest::load(&workspace::root())?
            .context("there is no build yet (target/lambda/manifest.json): run `cargo xtask build` first"),
    }
}
