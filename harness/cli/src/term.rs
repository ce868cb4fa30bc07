//! Terminal output: colour only on a TTY, and never when `NO_COLOR` is set.

use std::io::IsTerminal;

/// How to write to the terminal.
#[derive(Clone, Copy, Debug)]
pub struct Term {
    pub color_out: bool,
    pub color_err: bool,
}

impl Term {
    /// Colour on stdout/stderr when each is a terminal and `NO_COLOR` is unset or empty
    /// (https://no-color.org).
    pub fn detect() -> Term {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Term {
            color_out: !no_color && std::io::stdout().is_terminal(),
            color_err: !no_color && std::io::stderr().is_terminal(),
        }
    }

    pub fn red(&self, s: &str, err: bool) -> String {
        self.paint("31;1", s, err)
    }
    pub fn green(&self, s: &str, err: bool) -> String {
        self.paint("32", s, err)
    }
    pub fn bold(&self, s: &str, err: bool) -> String {
        self.paint("1", s, err)
    }
    pub fn dim(&self, s: &str, err: bool) -> String {
        self.paint("2", s, err)
    }

    /// Print a scenario diagnostic on stderr, `error:` in red on a terminal.
    pub fn diagnostic(&self, d: &harness_scenario::Diagnostic) {
        eprint!(
            "{}",
            d.to_string()
                .replacen("error:", &self.red("error:", true), 1)
        );
    }

    fn paint(&self, code: &str, s: &str, err: bool) -> String {
        if (err && self.color_err) || (!err && self.color_out) {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}
