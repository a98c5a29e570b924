//! The `--env` flag every stack command takes.

/// Which environment a command works on: `environments/<env>.yaml`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvArg {
    /// The environment, a file in environments/ (local, dev, staging, prod, ...).
    #[arg(long = "env", short = 'e', default_value = "local", env = "IMAGE_ANALYZER_ENV")]
    pub name: String,
}
