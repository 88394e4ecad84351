#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Golden errors of `migrate-encryption`, `reencrypt`, `destroy-data-key` and
//! `bench migrate`: each names what is wrong and what to do, exits non-zero, and changes
//! nothing (no backup, no progress table).

mod common;
mod legacy;

use std::path::Path;

use common::*;
use legacy::{Legacy, migrate_args};
use rusqlite::Connection;

const TARGET: (&str, &str, &[&str]) = ("t", "id", &["v"]);

fn db(sb: &Sandbox) -> String {
    let path = sb.join("app.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n REAL);
             INSERT INTO t VALUES (1, 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 1.5)",
        )
        .unwrap();
    path.display().to_string()
}

/// Nothing but the database and its key files exist: no backup, no progress table.
fn untouched(sb: &Sandbox, db: &str) {
    assert!(
        sb.files()
            .iter()
            .all(|f| !f.contains(".pre-kura-migration-")),
        "{:?}",
        sb.files()
    );
    if Path::new(db).exists() {
        let c = Connection::open(db).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'kura_migration_progress'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
    }
}

fn run(sb: &Sandbox, key: &Path, args: &[String]) -> Run {
    sb.kura(key, args)
}

fn without(args: Vec<String>, flag: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).unwrap();
    let mut a = args;
    a.drain(i..i + 2);
    a
}

#[test]
fn missing_settings_are_named() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let d = db(&sb);
    let full = migrate_args(&d, TARGET, &lg.file, &[]);
    for (flag, msg) in [
        (
            "--database",
            "--database is required (or `database` in the -d settings file)",
        ),
        (
            "--table",
            "--table is required (or `table` in the -d settings file)",
        ),
        (
            "--id-column",
            "--id-column is required (or `id_column` in the -d settings file)",
        ),
        (
            "--column",
            "--column is required (at least one, or `columns` in the -d settings file)",
        ),
        (
            "--legacy-key-file",
            "--legacy-key-file is required (or `legacy_key_file` in the -d settings file)",
        ),
    ] {
        run(&sb, &key, &without(full.clone(), flag)).fails_with(&[msg]);
    }
    untouched(&sb, &d);
}

#[test]
fn bad_tables_columns_and_databases() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let d = db(&sb);
    let go = |db: &str, target, extra: &[&str]| {
        run(&sb, &key, &migrate_args(db, target, &lg.file, extra))
    };
    let missing = sb.join("missing.db").display().to_string();
    go(&missing, TARGET, &[]).fails_with(&[
        "the database",
        "missing.db does not exist (give an SQLite file or a postgres:// URL)",
    ]);
    assert!(!Path::new(&missing).exists(), "no database is created");
    go(&d, ("nope", "id", &["v"]), &[]).fails_with(&["has no table 'nope'; check --table"]);
    go(&d, ("t", "nope", &["v"]), &[])
        .fails_with(&["table 't' has no column 'nope'; check --id-column"]);
    go(&d, ("t", "id", &["v", "nope"]), &[])
        .fails_with(&["table 't' has no column 'nope'; check --column"]);
    go(&d, ("t", "id", &["v", "v"]), &[])
        .fails_with(&["column 'v' is named twice (or is the id column)"]);
    go(&d, ("t", "id", &["id"]), &[])
        .fails_with(&["column 'id' is named twice (or is the id column)"]);
    go(&d, ("t;", "id", &["v"]), &[]).fails_with(&[
        "table 't;' is not a plain identifier (at most 63 letters, digits and underscores, not starting with a digit)",
    ]);
    let refused = go("postgres://kura@127.0.0.1:1/none", TARGET, &[])
        .fails_with(&["cannot connect to postgres://kura@127.0.0.1:1/none"]);
    // The cause is said once, though errors name their causes in their own messages.
    assert_eq!(
        refused.stderr.matches("Connection refused").count(),
        1,
        "{}",
        refused.stderr
    );
    go("postgres://kura:hunter2@127.0.0.1:1/none", TARGET, &[])
        .fails_with(&["postgres://kura:***@127.0.0.1:1/none"]);
    // The secret of a URL never reaches the output.
    let r = go("postgres://kura:hunter2@127.0.0.1:1/none", TARGET, &[]);
    assert!(!r.stderr.contains("hunter2"));
    // Flags that cannot go together.
    go(&d, TARGET, &["--dry-run", "--verify"]).usage_error(&["--verify", "--dry-run"]);
    go(&d, TARGET, &["--batch", "0"]).usage_error(&["--batch"]);
    go(&d, TARGET, &["--legacy-format", "rot13"]).usage_error(&["base64-iv-ct", "raw-iv-ct"]);
    untouched(&sb, &d);
}

#[test]
fn bad_legacy_keys_and_settings_files() {
    let (sb, key) = Sandbox::initialised();
    let d = db(&sb);
    let short = sb.write_file("short.key", b"00112233\n", 0o400);
    run(&sb, &key, &migrate_args(&d, TARGET, &short, &[])).fails_with(&[
        "short.key: an AES-128 key must be 16 bytes (32 hex digits), but it is 4 bytes",
    ]);
    let junk = sb.write_file("junk.key", b"not a key at all!\n", 0o400);
    run(&sb, &key, &migrate_args(&d, TARGET, &junk, &[]))
        .fails_with(&["junk.key: it is neither 32 hex digits nor base64 of 16 bytes"]);
    let absent = sb.join("absent.key");
    run(&sb, &key, &migrate_args(&d, TARGET, &absent, &[])).fails_with(&["absent.key"]);

    let y = sb.write_file("bad.yml", b"database: x\ntabel: t\n", 0o600);
    let args = ["migrate-encryption", "-d", y.to_str().unwrap()];
    sb.kura(&key, &args).fails_with(&[
        "bad.yml is not a valid settings file",
        "unknown field `tabel`",
    ]);
    let y = sb.write_file(
        "fmt.yml",
        format!("database: {d}\ntable: t\nid_column: id\ncolumns: [v]\nlegacy_key_file: {}\nlegacy_format: rot13\n", short.display()).as_bytes(),
        0o600,
    );
    sb.kura(&key, &["migrate-encryption", "-d", y.to_str().unwrap()])
        .fails_with(&["legacy_format 'rot13' is not base64-iv-ct, hex-iv-ct or raw-iv-ct"]);
    // reencrypt takes no legacy key.
    let lg = Legacy::new(&sb);
    let y = sb.write_file(
        "re.yml",
        format!(
            "database: {d}\ntable: t\nid_column: id\ncolumns: [v]\nlegacy_key_file: {}\n",
            lg.file.display()
        )
        .as_bytes(),
        0o600,
    );
    sb.kura(&key, &["reencrypt", "-d", y.to_str().unwrap()])
        .fails_with(&["reencrypt takes no legacy key: run migrate-encryption for legacy values"]);
    untouched(&sb, &d);
}

#[test]
fn values_that_are_not_envelopes_fail_reencrypt() {
    let (sb, key) = Sandbox::initialised();
    let d = db(&sb);
    // The summary is printed, then the error.
    let r = legacy::reencrypt(&sb, &key, &d, TARGET, &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stdout_str(),
        "re-encrypted 0, already under the active data key 0, empty 0, failed 1\n"
    );
    let r = r.stderr_has(&[
        "kura: error: 1 values could not be re-encrypted and were left unchanged (their row ids are logged above); the backup is",
    ]);
    assert!(r.stderr.contains("not a kura envelope"), "{}", r.stderr);
    assert!(r.stderr.contains("row=1"), "{}", r.stderr);
    // With redact-info-log, the row id (user data) is not in the log.
    let mut cmd = sb.keyed(&key);
    cmd.env("KURA_REDACT_INFO_LOG", "true").args([
        "reencrypt",
        "--database",
        &d,
        "--table",
        "t",
        "--id-column",
        "id",
        "--column",
        "v",
    ]);
    let redacted = sb.exec(&mut cmd);
    assert_eq!(redacted.code, Some(1));
    assert!(redacted.stderr.contains("row=?"), "{}", redacted.stderr);
    assert!(!redacted.stderr.contains("row=1"), "{}", redacted.stderr);
    // Only a text or blob column can hold envelopes: a REAL value fails, untouched.
    let r = legacy::reencrypt(&sb, &key, &d, ("t", "id", &["n"]), &[]);
    assert_eq!(r.code, Some(1));
    r.stderr_has(&["kura: error: 1 values could not be re-encrypted"]);
    let v: f64 = Connection::open(&d)
        .unwrap()
        .query_row("SELECT n FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 1.5);
}

#[test]
fn destroying_data_keys() {
    let (sb, key) = Sandbox::initialised();
    let active = active_id(&sb.status(&key));
    sb.kura(&key, &["destroy-data-key", &active]).fails_with(&[&format!(
        "destroying data key {active} makes every record and file encrypted under it unreadable forever; add --yes to confirm"
    )]);
    sb.kura(&key, &["destroy-data-key", &active, "--yes"])
        .fails_with(&[&active, "active"]);
    sb.kura(&key, &["destroy-data-key", "12345", "--yes"])
        .fails_with(&["12345"]);
    sb.kura(&key, &["destroy-data-key", "x", "--yes"])
        .usage_error(&["invalid value 'x'"]);
    // The old spelling is the same command.
    sb.kura(&key, &["data-key", "destroy", &active, "--yes"])
        .fails_with(&[&active, "active"]);
}

#[test]
fn migration_benchmark_reports_its_ratio() {
    let (sb, key) = Sandbox::initialised();
    let r = sb
        .kura(
            &key,
            &["bench", "migrate", "--rows", "3000", "--output", "json"],
        )
        .ok_logged();
    let j = r.json();
    assert_eq!(j["rows"], 3000);
    let row = &j["results"][0];
    assert_eq!(row["unit"], "rows/s");
    let (k, p, ratio) = (
        row["kura"].as_f64().unwrap(),
        row["raw"].as_f64().unwrap(),
        row["ratio"].as_f64().unwrap(),
    );
    assert!(k > 0.0 && p > 0.0);
    assert!((ratio - k / p).abs() < 1e-9);
}
