//! # kura (the command line)
//!
//! A thin layer over the libraries: [`cli`] declares the commands, `cmd/*` run them,
//! [`env`] turns global options into a keyring, and [`run`] maps every error to a message
//! on stderr and an exit status in one place.

#![forbid(unsafe_code)]

pub mod cli;
mod cmd;
mod env;
mod nodes;
mod output;
mod table;
mod usage;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Exit status for a failure the user can fix (bad input, wrong key, missing file).
const EXIT_FAILURE: u8 = 1;

/// Parses the command line, runs the command and returns the process exit status.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // A server reports what it does; one-shot commands speak only when something is wrong.
    init_logging(if matches!(cli.command, Command::Server(_)) {
        "info"
    } else {
        "warn"
    });
    // Every kura process may hold key material: never let it reach a core file.
    if let Err(e) = kura_sys::disable_core_dumps() {
        tracing::warn!(error = %e, "could not disable core dumps of this process");
    }
    let result = match &cli.command {
        Command::Keygen(a) => cmd::keygen::run(&cli, a),
        Command::Pkcs11(a) => cmd::pkcs11::run(&cli, a),
        Command::Init(a) => cmd::admin::init(&cli, a),
        Command::Status => cmd::admin::status(&cli),
        Command::Nodes(a) => cmd::admin::nodes(&cli, a.prune),
        Command::Rotate(a) => cmd::admin::rotate(&cli, a),
        Command::SetMode(a) => cmd::mode::set_mode(&cli, a),
        Command::DataKey(a) => cmd::admin::data_key(&cli, a),
        Command::Encrypt(a) => cmd::crypt::encrypt(&cli, a),
        Command::Decrypt(a) => cmd::crypt::decrypt(&cli, a),
        Command::Seal(a) => cmd::seal::seal(&cli, a),
        Command::Open(a) => cmd::seal::open(&cli, a),
        Command::Bench(a) => cmd::bench::run(&cli, a),
        Command::Server(a) => cmd::server::run(&cli, a),
        Command::User(a) => cmd::server::user(&cli, a),
        Command::MigrateEncryption(a) => cmd::migrate::run(&cli, a),
        Command::Reencrypt(a) => cmd::migrate::reencrypt(&cli, a),
        Command::DestroyDataKey(a) => cmd::admin::destroy_data_key(&cli, a),
        Command::Fs(a) => cmd::fs::run(&cli, a),
        Command::Backup(a) => cmd::backup::backup(&cli, a),
        Command::Restore(a) => cmd::backup::restore(&cli, a),
    };
    if let Some(m) = kura_sys::take_mlock_refusal() {
        tracing::warn!("{m}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`kura status | head -1`): nothing to report.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_FAILURE),
        Err(e) => {
            eprintln!("kura: error: {}", report(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `e` and its causes on one line, as `{:#}` would put them, but each said once: errors
/// that name their cause in their own message (`cannot read x: No such file…`) would
/// otherwise have it repeated.
pub(crate) fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<kura_format::Error>()
                .is_some_and(|f| matches!(f, kura_format::Error::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
    })
}

/// Targets of the libraries under kura whose debug and trace events may carry request
/// bodies (an AWS KMS Encrypt request holds the KEK in plaintext) or connection details:
/// never shown below INFO, whatever `KURA_LOG` says.
const QUIET_BELOW_INFO: [&str; 9] = [
    "aws_smithy",
    "aws_sigv4",
    "aws_runtime",
    "aws_sdk_",
    "hyper",
    "h2",
    "rustls",
    "tokio_postgres",
    "postgres",
];

fn init_logging(default: &str) {
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt};
    // The AWS SDK's credential chain warns about every provider it tries (with raw
    // responses); the error kura reports already names what was tried.
    let filter = EnvFilter::try_from_env("KURA_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},aws_config=error")));
    let no_bodies = filter_fn(|m| {
        *m.level() <= tracing::Level::INFO
            || !QUIET_BELOW_INFO.iter().any(|t| m.target().starts_with(t))
    });
    let layer = fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter.and(no_bodies));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::report;

    #[test]
    fn a_report_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        // A store error that names its cause in its own message, under some context.
        let store = kura_store::Error::Io {
            location: "/k/keys.db".into(),
            source: io,
        };
        let e = anyhow::Error::new(store).context("cannot open the keystore");
        assert_eq!(
            report(&e),
            "cannot open the keystore: cannot access the keystore at /k/keys.db: no such file"
        );
        assert_eq!(format!("{e:#}").matches("no such file").count(), 2);
        // Causes not named before are all kept.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(report(&e), "outer: middle: inner");
    }
}
