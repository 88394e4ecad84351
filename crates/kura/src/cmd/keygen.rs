//! `kura keygen`: a new master key file.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use kura_crypto::Key256;
use kura_keys::{LocalMasterKey, MasterKey};
use kura_store::atomic::AtomicFile;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::{Cli, KeyEncoding, KeygenArgs};
use crate::output::emit;

#[derive(Serialize)]
struct Generated {
    path: String,
    format: &'static str,
    mode: &'static str,
    master_key_id: String,
}

pub(crate) fn run(cli: &Cli, a: &KeygenArgs) -> Result<()> {
    let exists = |p: &std::path::Path| p.symlink_metadata().is_ok();
    if exists(&a.out) {
        bail!(
            "{} already exists; kura keygen never overwrites a key file (move it away or choose another --out)",
            a.out.display()
        );
    }
    let id = write_key(&a.out, a.format)?;
    let g = Generated {
        path: a.out.display().to_string(),
        format: match a.format {
            KeyEncoding::Hex => "hex",
            KeyEncoding::Base64 => "base64",
        },
        mode: "0400",
        master_key_id: id,
    };
    emit(cli, &g, || {
        format!(
            "wrote a new 32-byte master key to {} ({}, mode 0400)\nmaster key id: {}\nkeep a copy somewhere safe: data encrypted under it is lost with it",
            g.path, g.format, g.master_key_id
        )
    })
}

/// Writes a new random master key to `out` (mode 0400, never replacing a file) and returns
/// its id.
pub(crate) fn write_key(out: &Path, format: KeyEncoding) -> Result<String> {
    let key = Key256::generate()?;
    let text = Zeroizing::new(match format {
        KeyEncoding::Hex => hex::encode(key.expose_secret()),
        KeyEncoding::Base64 => {
            base64::engine::general_purpose::STANDARD.encode(key.expose_secret())
        }
    });
    let mut f = AtomicFile::create(out, 0o400)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let file = f.file()?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    f.commit_no_clobber().map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; kura keygen never overwrites a key file",
                out.display()
            )
        } else {
            anyhow::anyhow!("cannot write {}: {e}", out.display())
        }
    })?;
    Ok(LocalMasterKey::new(&key, String::new())?.id().to_string())
}
