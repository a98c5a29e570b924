//! The terminal as the operations' [`Ui`]: output on stdout, notes on stderr, questions on
//! stdin, and live progress on stderr.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context as _, Result};

use crate::engine::apply::Observer;
use crate::ops::ui::Ui;
use crate::progress::Progress;

/// Standard output, standard error and standard input.
#[derive(Debug, Default)]
pub struct Console;

impl Console {
    pub fn new() -> Self {
        Self
    }
}

impl Ui for Console {
    fn out(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        // Like print!: output that cannot be written (a closed pipe) is not worth failing for.
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    fn note(&self, line: &str) {
        eprintln!("{line}");
    }

    fn can_ask(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn ask(&self, question: &str) -> Result<String> {
        self.out(question);
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).context("reading from standard input")?;
        Ok(answer)
    }

    fn progress(&self) -> Arc<dyn Observer> {
        Arc::new(Progress::new())
    }
}
