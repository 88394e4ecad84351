//! Printing results as text or JSON.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Cli, OutputFormat};

/// Prints `value` as pretty JSON when `--output json`, else the text `text` builds.
pub(crate) fn emit<T: Serialize>(
    cli: &Cli,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let out = match cli.output {
        OutputFormat::Json => serde_json::to_string_pretty(value)?,
        OutputFormat::Text => text(),
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", out.trim_end())?;
    stdout.flush()?;
    Ok(())
}
