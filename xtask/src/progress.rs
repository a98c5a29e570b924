//! Progress of a run: one live line per resource on a terminal, plain lines otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::engine::apply::{Observer, Outcome};
use crate::engine::plan::{Action, Step};
use crate::engine::resource::ResourceId;

/// Draws progress on stderr, live on a terminal.
pub struct Progress {
    live: Option<MultiProgress>,
    bars: Mutex<BTreeMap<ResourceId, ProgressBar>>,
}

impl Progress {
    pub fn new() -> Self {
        let live = std::io::stderr().is_terminal().then(MultiProgress::new);
        Self { live, bars: Mutex::new(BTreeMap::new()) }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

fn doing(action: Action) -> &'static str {
    match action {
        Action::NoOp => "checking",
        Action::Create => "creating",
        Action::Update => "updating",
        Action::Replace => "replacing",
        Action::Delete => "destroying",
    }
}

fn done(action: Action) -> &'static str {
    match action {
        Action::NoOp => "unchanged",
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace => "replaced",
        Action::Delete => "destroyed",
    }
}

fn seconds(elapsed: &Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done { action, elapsed } => format!("{} after {}", done(*action), seconds(elapsed)),
        Outcome::Failed { error, elapsed } => format!("FAILED after {}: {error}", seconds(elapsed)),
        Outcome::Skipped { because } => format!("skipped: {because} did not complete"),
        Outcome::NotStarted => "not started: the run stopped".to_owned(),
    }
}

impl Observer for Progress {
    fn started(&self, step: &Step) {
        if step.action == Action::NoOp {
            return;
        }
        let line = format!("{:>3} {}", step.action.symbol(), step.id);
        match &self.live {
            Some(live) => {
                let bar = live.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}")
                        .expect("the template is valid")
                        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
                );
                bar.set_prefix(line);
                bar.set_message(format!("{}...", doing(step.action)));
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars.lock().expect("progress lock").insert(step.id.clone(), bar);
            }
            None => eprintln!("{line}: {}...", doing(step.action)),
        }
    }

    fn finished(&self, step: &Step, outcome: &Outcome) {
        let quiet = step.action == Action::NoOp && matches!(outcome, Outcome::Done { .. });
        if quiet {
            return;
        }
        let bar = self.bars.lock().expect("progress lock").remove(&step.id);
        let message = describe(outcome);
        match (bar, &self.live) {
            (Some(bar), _) => {
                bar.set_style(ProgressStyle::with_template("  {prefix} {msg}").expect("the template is valid"));
                bar.finish_with_message(message);
            }
            (None, Some(live)) => {
                let _ = live.println(format!("{:>3} {}: {message}", step.action.symbol(), step.id));
            }
            (None, None) => eprintln!("{:>3} {}: {message}", step.action.symbol(), step.id),
        }
    }
}
