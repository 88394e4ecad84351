//! Installing the Debian packages tests need, and what the test support says when a tool
//! fails: the ends of outputs, and error context.

use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Installs the Debian package `package` with apt-get (non-interactive, waiting for the
/// package lock), running `apt-get update` and trying once more if the first attempt fails.
/// Returns the last attempt's output and the ends of what apt-get said.
pub(crate) fn apt_install(package: &str) -> io::Result<(Output, String)> {
    let apt_get = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-q", "-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                io::Error::other(format!(
                    "kura-testkit: cannot run apt-get {}: {e}",
                    args.join(" ")
                ))
            })
    };
    let install = || apt_get(&["install", "-y", "--no-install-recommends", package]);
    let mut out = install()?;
    let mut log = output_tail(&out);
    if !out.status.success() {
        let up = apt_get(&["update"])?;
        log = format!("{log}\n(apt-get update: {})\n", up.status);
        out = install()?;
        log.push_str(&output_tail(&out));
    }
    Ok((out, log))
}

/// The last 4000 bytes of `bytes`, as text.
pub(crate) fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(4000);
    let text = String::from_utf8_lossy(bytes.get(start..).unwrap_or_default());
    let text = text.trim();
    if text.is_empty() {
        "(nothing)".to_owned()
    } else {
        text.to_owned()
    }
}

/// The ends of a command's stdout and stderr (only the one that has something, if one is
/// empty).
pub(crate) fn output_tail(out: &Output) -> String {
    let (o, e) = (tail(&out.stdout), tail(&out.stderr));
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        e
    } else if out.stderr.iter().all(u8::is_ascii_whitespace) {
        o
    } else {
        format!("{o}\n{e}")
    }
}

/// `e` with what was being done to `path`.
pub(crate) fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("kura-testkit: {what} {}: {e}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails() {
        assert_eq!(tail(b"  \n"), "(nothing)");
        let long = vec![b'x'; 5000];
        assert_eq!(tail(&long).len(), 4000);
    }
}
