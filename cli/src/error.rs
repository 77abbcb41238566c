//! [`CliError`]: a failure of the command, with its exit code and the one line
//! printed on stderr.

use std::fmt;

/// Exit code of a failed command.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of a usage error (as clap's own).
pub const EXIT_USAGE: i32 = 2;

/// What failed, as one line, and the exit code it gives.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: i32,
    /// The message (one line).
    pub message: String,
}

impl CliError {
    /// A usage error (exit code 2): an argument value the command cannot use.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A failure (exit code 1): bad input files, or the work itself failed.
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    /// A failure described as `context: error`.
    pub fn context(context: impl fmt::Display, error: impl fmt::Display) -> CliError {
        CliError::failed(format!("{context}: {error}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the underlying errors contained.
        let one_line: Vec<&str> = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        f.write_str(&one_line.join("; "))
    }
}
