//! How an operation talks to whoever runs it: what it says, the progress of an apply, and
//! the one question it may ask (confirmation). Operations never touch standard input or
//! output themselves; the command that runs one hands it a [`Ui`].

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use crate::engine::apply::Observer;

/// The operations' view of the person (or program) running them.
pub trait Ui: Send + Sync {
    /// Output, exactly as given (a console writes it to standard output).
    fn out(&self, text: &str);
    /// A note beside the output: warnings, interruptions, what starts in the background (a
    /// console writes it to standard error). One line, without its newline.
    fn note(&self, line: &str);
    /// Whether a question can be asked and answered (a console: standard input is a
    /// terminal).
    fn can_ask(&self) -> bool;
    /// Asks `question` and returns the answer as typed.
    fn ask(&self, question: &str) -> Result<String>;
    /// Watches an apply, one resource at a time.
    fn progress(&self) -> Arc<dyn Observer>;

    /// One line of output.
    fn say(&self, line: &str) {
        self.out(&format!("{line}\n"));
    }
}

/// Fails when a confirmation is needed (no `--yes`) but cannot be asked for; operations call
/// it before they write anything.
pub fn ensure_can_confirm(ui: &dyn Ui, yes: bool, what: &str) -> Result<()> {
    if !yes && !ui.can_ask() {
        bail!("refusing to {what} without confirmation: standard input is not a terminal; pass --yes to {what} anyway");
    }
    Ok(())
}

/// Asks before changing anything, unless `yes`. Without a way to ask, refuses.
pub fn confirm(ui: &dyn Ui, yes: bool, what: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    ensure_can_confirm(ui, yes, what)?;
    let answer = ui
        .ask("\nDo you want to perform these actions? Only 'yes' will be accepted: ")
        .context("reading the answer")?;
    if answer.trim() != "yes" {
        bail!("{what} cancelled: the answer was not 'yes'");
    }
    Ok(())
}

#[cfg(test)]
pub mod script {
    //! A [`Ui`] for tests: records what is said and answers from a script.

    use std::sync::Mutex;

    use super::*;
    use crate::engine::apply::Silent;

    #[derive(Default)]
    pub struct Scripted {
        pub answers: Mutex<Vec<String>>,
        pub terminal: bool,
        pub out: Mutex<String>,
        pub notes: Mutex<Vec<String>>,
        pub asked: Mutex<Vec<String>>,
    }

    impl Scripted {
        /// A terminal that will answer `answers`, in order.
        pub fn answering(answers: &[&str]) -> Self {
            Self {
                answers: Mutex::new(answers.iter().rev().map(|a| (*a).to_owned()).collect()),
                terminal: true,
                ..Self::default()
            }
        }
    }

    impl Ui for Scripted {
        fn out(&self, text: &str) {
            self.out.lock().unwrap().push_str(text);
        }
        fn note(&self, line: &str) {
            self.notes.lock().unwrap().push(line.to_owned());
        }
        fn can_ask(&self) -> bool {
            self.terminal
        }
        fn ask(&self, question: &str) -> Result<String> {
            self.asked.lock().unwrap().push(question.to_owned());
            self.answers.lock().unwrap().pop().context("the script has no more answers")
        }
        fn progress(&self) -> Arc<dyn Observer> {
            Arc::new(Silent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::script::Scripted;
    use super::*;

    #[test]
    fn only_yes_confirms() {
        assert!(confirm(&Scripted::answering(&["yes\n"]), false, "deploy").is_ok());
        let error = confirm(&Scripted::answering(&["y\n"]), false, "deploy").unwrap_err();
        assert_eq!(error.to_string(), "deploy cancelled: the answer was not 'yes'");
    }

    #[test]
    fn yes_confirms_without_asking() {
        let ui = Scripted::default();
        confirm(&ui, true, "destroy").unwrap();
        assert!(ui.asked.lock().unwrap().is_empty());
    }

    #[test]
    fn without_a_terminal_a_confirmation_is_refused_before_asking() {
        let ui = Scripted::default();
        let error = confirm(&ui, false, "destroy").unwrap_err();
        assert!(error.to_string().contains("pass --yes to destroy anyway"), "{error}");
        assert!(ui.asked.lock().unwrap().is_empty());
    }
}
