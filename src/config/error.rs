//! The error of loading a config: `FILE:LINE:COL: what is wrong`.

use std::io;
use std::ops::Range;

use toml_edit::Table;

use super::spans::{self, KeyPath, Position};
use super::validate::Problem;

/// Why a config could not be loaded.
///
/// Displays as `FILE:LINE:COL: message` (the form editors and CI logs
/// link), or `FILE: message` when no place in the file is to blame.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read: {source}")]
    Read {
        /// The file name as given.
        origin: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The text is not a valid config.
    #[error("{origin}{}: {message}", .position.map_or(String::new(), |p| format!(":{p}")))]
    Invalid {
        /// The file name as given, or the command-line option at fault.
        origin: String,
        /// Where in the file, when known.
        position: Option<Position>,
        /// What is wrong and, where it helps, what is expected.
        message: String,
    },
}

impl ConfigError {
    /// Where in the file the error is, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { position, .. } => *position,
        }
    }

    /// The 1-based line of the error, when known.
    pub fn line(&self) -> Option<usize> {
        self.position().map(|p| p.line)
    }

    /// The message without file and position.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Read { source, .. } => format!("cannot read: {source}"),
            ConfigError::Invalid { message, .. } => message.clone(),
        }
    }

    /// A syntax or serde error of `text` with its message and span; `doc`,
    /// when the text parsed, names the key it concerns.
    pub(super) fn from_toml(
        message: &str,
        span: Option<Range<usize>>,
        doc: Option<&Table>,
        text: &str,
        origin: &str,
    ) -> ConfigError {
        // Syntax errors come in several lines ("invalid table header\nexpected
        // `.`, `]`"); keep one line per error.
        let mut message = message.trim_end().replace('\n', "; ");
        // serde says "field"; a TOML file has keys.
        for (from, to) in [
            ("unknown field", "unknown key"),
            ("missing field", "missing key"),
        ] {
            if let Some(rest) = message.strip_prefix(from) {
                message = format!("{to}{rest}");
            }
        }
        if let Some(context) = doc
            .zip(span.clone())
            .and_then(|(d, s)| spans::context(d, s.start))
        {
            message = format!("{message} {context}");
        }
        ConfigError::Invalid {
            origin: origin.to_string(),
            position: span.map(|s| Position::of(text, s.start)),
            message,
        }
    }

    /// A failed semantic check, placed in `doc`, the document of `text`,
    /// when there is one (`None` for a config changed from the command line).
    pub(super) fn from_problem(
        p: Problem,
        text: Option<(&str, &Table)>,
        origin: &str,
    ) -> ConfigError {
        let locate = |path: &KeyPath| -> Option<Position> {
            let (text, doc) = text?;
            spans::locate(doc, path).map(|s| Position::of(text, s.start))
        };
        let mut message = p.message;
        if let Some((locus, label)) = &p.see {
            if let Some(pos) = locate(locus) {
                message = format!("{message} ({label} at line {})", pos.line);
            }
        }
        ConfigError::Invalid {
            origin: origin.to_string(),
            position: p.at.iter().find_map(locate),
            message,
        }
    }
}
