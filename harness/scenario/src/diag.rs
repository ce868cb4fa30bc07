//! Diagnostics: an error a person can act on — where (`file:line:col`, the line with a
//! caret), what is wrong, and what to change.

use std::fmt;
use std::path::PathBuf;

/// One problem in a scenario, with where it is and what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (an unreadable file).
    pub line: u64,
    pub column: u64,
    pub message: String,
    /// What to change.
    pub hint: Option<String>,
    /// The offending source line, for the caret display.
    pub source_line: Option<String>,
    /// Include chain, outermost first (`a.yaml:12:5 includes b.yaml`).
    pub chain: Vec<String>,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<PathBuf>,
        line: u64,
        column: u64,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            column,
            message: message.into(),
            hint: None,
            source_line: None,
            chain: Vec::new(),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attach the source line at `self.line` from `source`.
    pub fn with_source(mut self, source: &str) -> Self {
        if self.line > 0 {
            self.source_line = source
                .lines()
                .nth((self.line - 1) as usize)
                .map(|l| l.replace('\t', " "));
        }
        self
    }

    /// `file:line:col` (or just the file when there is no position).
    pub fn location(&self) -> String {
        if self.line > 0 {
            format!("{}:{}:{}", self.file.display(), self.line, self.column)
        } else {
            self.file.display().to_string()
        }
    }
}

impl fmt::Display for Diagnostic {
    /// Renders like rustc: `error: …`, ` --> file:line:col`, the line with a caret, `= help: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        writeln!(f, "  --> {}", self.location())?;
        for link in &self.chain {
            writeln!(f, "  = note: {link}")?;
        }
        if let Some(src) = &self.source_line {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            let shown: String = src.chars().take(200).collect();
            writeln!(f, "{pad} |")?;
            writeln!(f, "{num} | {shown}")?;
            let col = (self.column.max(1) - 1) as usize;
            writeln!(f, "{pad} | {}^", " ".repeat(col.min(shown.chars().count())))?;
        }
        if let Some(h) = &self.hint {
            writeln!(f, "  = help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}
