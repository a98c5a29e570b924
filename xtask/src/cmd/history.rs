//! `cargo xtask history --env E [--json]`: the environment's deployments, newest first, with
//! their code hashes and versions, who ran them, and their smoke-test results.

use anyhow::Result;

use super::flags::EnvArg;
use crate::history::{Deployment, History, Origin};
use crate::ops;

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub env: EnvArg,
    /// Print the deployments as JSON, oldest first.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &HistoryArgs) -> Result<()> {
    let (history, location) = super::runtime()?.block_on(ops::history::history(&args.env.name))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&history.to_value())?);
    } else {
        print!("{}", render(&args.env.name, &location, &history));
    }
    Ok(())
}

/// The table `history` prints.
pub fn render(env: &str, location: &str, history: &History) -> String {
    let mut out = format!("Deployments of `{env}` ({location}), newest first:\n");
    if history.deployments().is_empty() {
        out.push_str("  none yet\n");
        return out;
    }
    let rows: Vec<[String; 6]> = history.deployments().iter().rev().map(row).collect();
    let header = ["#", "time", "what", "by", "commit", "smoke test"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for cells in &rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 6]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(&header));
    for (cells, deployment) in rows.iter().zip(history.deployments().iter().rev()) {
        out.push_str(&line(cells));
        for (function, release) in &deployment.functions {
            out.push_str(&format!(
                "      {function:<12} version {:<4} code {} ({})\n",
                release.version, release.code_sha256, release.architecture
            ));
        }
        if let Origin::Destroy { removed } = &deployment.origin {
            out.push_str(&format!("      removed {} resources: {}\n", removed.len(), removed.join(", ")));
        }
        if let Some(warning) = &deployment.warning {
            out.push_str(&format!("      WARNING: {warning}\n"));
        }
    }
    out
}

fn row(deployment: &Deployment) -> [String; 6] {
    let commit = deployment.git.as_ref().map_or("-".to_owned(), |git| {
        format!("{}{}", git.commit.chars().take(8).collect::<String>(), if git.dirty { " (dirty)" } else { "" })
    });
    let smoke = match &deployment.smoke_test {
        None => "not run".to_owned(),
        Some(outcome) if outcome.passed => "passed".to_owned(),
        Some(outcome) => format!("FAILED at {}", outcome.failed_step.as_deref().unwrap_or("?")),
    };
    [
        deployment.id.to_string(),
        deployment.time.clone(),
        deployment.origin.to_string(),
        deployment.by.clone(),
        commit,
        smoke,
    ]
}
