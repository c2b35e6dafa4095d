//! Which of the extension's log lines the sandbox prints while it runs, so that an invalid
//! setting or a refused request is seen at once rather than only in the report.
//!
//! The harness collects every line of the extension's stderr and stdout; the sandbox looks
//! at the new ones after each step (init, each invocation, while Managed Instances workers
//! run, SHUTDOWN) and prints those asked for, prefixed `[extension] `. `HARNESS_ECHO_LOG=1`
//! (the sandbox's `--verbose`) makes the harness print every line itself, live.

use kte_test_support::Lambda;

/// Which extension log lines to print (to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Echo {
    /// None (tests; or every line through `HARNESS_ECHO_LOG`).
    #[default]
    Nothing,
    /// `WARN` and `ERROR` lines.
    Problems,
}

/// Whether a line of the extension's log is a warning or an error.
pub fn is_problem(line: &str) -> bool {
    line.contains("] WARN ") || line.contains("] ERROR ")
}

/// The lines printed so far.
#[derive(Default)]
pub(super) struct Tail {
    mode: Echo,
    seen: usize,
}

impl Tail {
    pub(super) fn new(mode: Echo) -> Self {
        Tail { mode, seen: 0 }
    }

    /// Prints the new lines asked for.
    pub(super) fn poll(&mut self, lambda: &Lambda) {
        if self.mode == Echo::Nothing {
            return;
        }
        let log = lambda.log();
        for line in log.iter().skip(self.seen) {
            if is_problem(line) {
                eprintln!("[extension] {line}");
            }
        }
        self.seen = log.len();
    }
}
