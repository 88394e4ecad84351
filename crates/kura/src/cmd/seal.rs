//! `kura seal` and `kura open`: one value on stdin, its record envelope (or plaintext) on
//! stdout, through the same [`Vault`] applications use. `kura open` with a legacy key is
//! the dual reader: envelopes are opened as such, anything else is read as a legacy
//! AES-128-CBC value.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kura_keys::{LegacyFormat, LegacyKey, Vault};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::{Cli, OpenArgs, OutputFormat, SealArgs};
use crate::cmd::context;
use crate::{env, output};

fn read_stdin() -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .read_to_end(&mut buf)
        .context("cannot read stdin")?;
    Ok(buf)
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

fn vault(cli: &Cli) -> Result<Vault> {
    let (k, _, _) = env::open(cli)?;
    Ok(Vault::from_keyring(k))
}

#[derive(Serialize)]
struct Sealed {
    envelope_base64: String,
}

pub(crate) fn seal(cli: &Cli, a: &SealArgs) -> Result<()> {
    let ctx = context(&a.context)?;
    let vault = vault(cli)?;
    let plain = read_stdin()?;
    let envelope = vault.seal(&plain, &ctx)?;
    match cli.output {
        OutputFormat::Json => output::emit(
            cli,
            &Sealed {
                envelope_base64: STANDARD.encode(&envelope),
            },
            String::new,
        ),
        OutputFormat::Text if a.base64 => {
            write_stdout(format!("{}\n", STANDARD.encode(&envelope)).as_bytes())
        }
        OutputFormat::Text => write_stdout(&envelope),
    }
}

#[derive(Serialize)]
struct Opened {
    origin: &'static str,
    plaintext_base64: String,
}

pub(crate) fn open(cli: &Cli, a: &OpenArgs) -> Result<()> {
    let ctx = context(&a.context)?;
    let legacy = match (&a.legacy_key_file, a.legacy_format) {
        (Some(path), Some(format)) => {
            Some((LegacyKey::from_file(path)?, LegacyFormat::from(format)))
        }
        _ => None,
    };
    let vault = vault(cli)?;
    let input = read_stdin()?;
    if a.base64 && STANDARD.decode(input.trim_ascii()).is_err() {
        anyhow::bail!("--base64 is given, but stdin is not base64 text");
    }
    // The dual reader detects raw envelopes, base64 text of one, and legacy values.
    let (plain, origin) = vault.open_any(&input, &ctx, legacy.as_ref().map(|(k, f)| (k, *f)))?;
    match cli.output {
        OutputFormat::Json => output::emit(
            cli,
            &Opened {
                origin: origin.as_str(),
                plaintext_base64: STANDARD.encode(&plain[..]),
            },
            String::new,
        ),
        OutputFormat::Text => write_stdout(&plain),
    }
}
