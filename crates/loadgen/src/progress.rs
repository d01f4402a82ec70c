//! Progress bars and status lines on stderr.
//!
//! Stdout belongs to the CLI's final report (and to `--json`), so everything live goes to stderr.
//! indicatif draws nothing when stderr is not a terminal; long runs in CI logs would then be
//! silent, so [`PlainStatus`] prints an occasional plain line there instead.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a plain status line is written when stderr is not a terminal.
const PLAIN_STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// A live one-line status (no known total), hidden when `quiet`.
pub fn status_line(quiet: bool) -> ProgressBar {
    let line = ProgressBar::with_draw_target(None, draw_target(quiet));
    line.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    line.enable_steady_tick(Duration::from_millis(200));
    line
}

/// A bar towards a known total, hidden when `quiet`.
pub fn bar(total: u64, what: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), draw_target(quiet));
    bar.set_style(
        ProgressStyle::with_template(&bar_template(what))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    // indicatif's own {per_sec} prints four decimals of noise.
                    let _ = write!(out, "{:.0}/s", state.per_sec());
                },
            )
            .progress_chars("=> "),
    );
    bar
}

fn bar_template(what: &str) -> String {
    format!(
        "{what:>12} [{{elapsed_precise}}] [{{bar:40}}] {{human_pos}}/{{human_len}} ({{rate}}, eta {{eta}})"
    )
}

fn draw_target(quiet: bool) -> ProgressDrawTarget {
    if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// Writes `line` to stderr only when stderr is not a terminal: there the bars draw nothing, and a
/// log of a long run should still say what finished.
pub fn note_when_unseen(line: impl FnOnce() -> String) {
    if !std::io::stderr().is_terminal() {
        eprintln!("{}", line());
    }
}

/// Writes a status line to stderr every few seconds, only when nobody sees the live one.
#[derive(Debug)]
pub struct PlainStatus {
    enabled: bool,
    last_written: Instant,
}

impl PlainStatus {
    pub fn new(quiet: bool) -> PlainStatus {
        PlainStatus {
            enabled: !quiet && !std::io::stderr().is_terminal(),
            last_written: Instant::now(),
        }
    }

    pub fn maybe_write(&mut self, line: impl FnOnce() -> String) {
        if self.enabled && self.last_written.elapsed() >= PLAIN_STATUS_INTERVAL {
            self.last_written = Instant::now();
            eprintln!("{}", line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_template_is_valid() {
        assert!(ProgressStyle::with_template(&bar_template("loading")).is_ok());
        let quiet = bar(10, "loading", true);
        assert!(quiet.is_hidden());
    }
}
