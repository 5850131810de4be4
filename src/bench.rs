//! `hermes bench`: a load generator against a running Hermes.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of the Hermes to load.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
