//! `kura encrypt` and `kura decrypt`: the stream format between files or pipes.
//!
//! With `-o`, output goes to a temporary file beside the destination that is renamed into
//! place only after the whole input was processed (and, for decryption, authenticated): a
//! tampered or truncated input leaves no output file. File to file, the work is spread
//! over every core with positioned reads and writes. Without `-o`, decrypted chunks are
//! written to stdout as each is verified, and a bad stream is reported (non-zero exit)
//! when it is detected.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use kura_format::stream;
use kura_store::atomic::AtomicFile;

use crate::cli::{Cli, CryptArgs};
use crate::cmd::context;
use crate::env;

/// The input: a file, or stdin as a plain file descriptor (no extra buffering).
fn input(a: &CryptArgs) -> Result<File> {
    match &a.input {
        Some(p) => File::open(p).with_context(|| format!("cannot open {}", p.display())),
        None => Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?)),
    }
}

/// Workers for a file-to-file run: every core (the kernel's copying is most of the work).
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Whether positioned reads can serve `f` (a regular file, not a pipe or a terminal).
fn seekable(f: &File) -> bool {
    f.metadata().is_ok_and(|m| m.is_file())
}

/// Runs `work` on the output: a temporary file committed on success (`-o`), or stdout.
/// `work` gets the output file and whether it may use positioned writes.
fn with_output(a: &CryptArgs, work: impl FnOnce(&File, bool) -> Result<u64>) -> Result<u64> {
    match &a.out {
        // A device or a FIFO (`-o /dev/null`): write straight to it, there is nothing to
        // replace atomically.
        Some(p) if std::fs::metadata(p).is_ok_and(|m| !m.is_file()) => {
            let out = File::options()
                .write(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?;
            let n = work(&out, false)?;
            (&out).flush()?;
            Ok(n)
        }
        Some(p) => {
            let mut f = AtomicFile::create(p, 0o600)
                .with_context(|| format!("cannot create {}", p.display()))?;
            let n = work(f.file()?, true)?;
            f.commit()
                .with_context(|| format!("cannot write {}", p.display()))?;
            Ok(n)
        }
        None => {
            let out = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
            let n = work(&out, false)?;
            (&out).flush()?;
            Ok(n)
        }
    }
}

pub(crate) fn encrypt(cli: &Cli, a: &CryptArgs) -> Result<()> {
    let (k, _, _) = env::open(cli)?;
    let sealer = k.stream_sealer(&context(&a.context)?)?;
    let inp = input(a)?;
    with_output(a, |out, positioned| {
        Ok(if positioned && seekable(&inp) {
            stream::encrypt_file(&inp, out, sealer, workers())?
        } else {
            stream::encrypt(&inp, out, sealer)?
        })
    })?;
    Ok(())
}

pub(crate) fn decrypt(cli: &Cli, a: &CryptArgs) -> Result<()> {
    let (k, _, _) = env::open(cli)?;
    let ctx = context(&a.context)?;
    let inp = input(a)?;
    let what = a
        .input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stdin".into());
    with_output(a, |out, positioned| {
        let open = |h| k.stream_opener(h, &ctx);
        let r = if positioned && seekable(&inp) {
            stream::decrypt_file(&inp, out, open, workers())
        } else {
            stream::decrypt(&inp, out, open)
        };
        r.map_err(|e| anyhow::Error::new(e).context(format!("cannot decrypt {what}")))
    })?;
    Ok(())
}
