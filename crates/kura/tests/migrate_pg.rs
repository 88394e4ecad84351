#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura migrate-encryption` and `kura reencrypt` on PostgreSQL: text and bytea columns,
//! values from `openssl enc` and from the library's legacy encryptor, integer and text row
//! ids, `--dry-run`, `--verify`, the backup table and its restore, refusals, an online run
//! beside a concurrent writer, and the data-key destruction guard.
//!
//! One PostgreSQL server serves the whole test binary; each test has a database of its own.

mod common;
mod legacy;

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use kura_keys::{LegacyFormat, Vault};
use kura_testkit::postgres::PgServer;
use legacy::{Legacy, Seen, ctx, migrate, plain, reencrypt, see, vault};
use postgres::{Client, NoTls};
use serde_json::Value;

const START: &str = "Starting migration from AES-128-CBC Legacy to AES-GCM-256";

/// A fresh database `name` on the test binary's server; its URL.
fn database(name: &str) -> String {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    let server = SERVER.get_or_init(|| PgServer::start().expect("a PostgreSQL 15 server"));
    server.create_database(name).unwrap()
}

fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap()
}

/// The tables of the database, sorted.
fn tables(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The row ids named by the warnings of a run (`row=<id>`).
fn warned_rows(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter(|l| l.contains("WARN"))
        .filter_map(|l| l.split(" row=").nth(1))
        .map(|r| r.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// The one integer a query returns.
fn scalar(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn u(j: &Value, key: &str) -> u64 {
    j[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {j}"))
}

/// The numbers `keys` of a JSON summary.
fn nums<const N: usize>(j: &Value, keys: [&str; N]) -> [u64; N] {
    keys.map(|k| u(j, k))
}

/// An IV whose base64 text starts with `KRE3`, as one legacy value in 262 144 does: given
/// to the openssl values of body 14 and photo 22, which must not be taken for envelopes.
const KRE_IV: [u8; 16] = [
    0x29, 0x11, 0x37, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];

/// What a value of the `docs` table starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Null,
    Empty,
    /// Already a kura envelope bound to its row.
    Sealed,
    /// Legacy, under another legacy key: fails.
    Foreign,
    /// Legacy, base64 text made by `openssl enc`.
    Openssl,
    /// Legacy, by the library (base64 in text, raw `IV ‖ CT` in bytea).
    Library,
}

const DOCS_ROWS: i64 = 300;

fn kind(column: &str, i: i64) -> Kind {
    match (column, i) {
        ("body", 3) | ("photo", 4) => Kind::Sealed,
        ("body", 5) => Kind::Foreign,
        ("body", _) if i % 50 == 0 => Kind::Null,
        ("body", _) if i % 60 == 0 => Kind::Empty,
        ("body", _) if i % 7 == 0 => Kind::Openssl,
        ("photo", _) if i % 40 == 0 => Kind::Null,
        ("photo", _) if i % 45 == 0 => Kind::Empty,
        ("photo", _) if i % 11 == 0 => Kind::Openssl,
        _ => Kind::Library,
    }
}

fn docs_plain(column: &str, i: i64) -> Vec<u8> {
    plain(column, i, if column == "body" { 120 } else { 200 })
}

/// One `docs` value as stored, for the text (`body`) or bytea (`photo`) column.
fn docs_value(column: &str, i: i64, lg: &Legacy, other: &Legacy, v: &Vault) -> Option<Vec<u8>> {
    let p = docs_plain(column, i);
    let format = match column {
        "body" => LegacyFormat::Base64IvCt,
        _ => LegacyFormat::RawIvCt,
    };
    Some(match kind(column, i) {
        Kind::Null => return None,
        Kind::Empty => Vec::new(),
        Kind::Sealed => {
            let env = v.seal(&p, &ctx("docs", column, &i.to_string())).unwrap();
            match column {
                "body" => STANDARD.encode(env).into_bytes(),
                _ => env,
            }
        }
        Kind::Foreign => other.encrypt_foreign(&p, format, lg),
        Kind::Openssl if matches!((column, i), ("body", 14) | ("photo", 22)) => {
            lg.openssl(&p, KRE_IV).into_bytes()
        }
        Kind::Openssl => lg.openssl(&p, [i as u8; 16]).into_bytes(),
        Kind::Library => lg.encrypt(&p, format),
    })
}

type DocRow = (i64, Option<String>, Option<Vec<u8>>);

fn docs_rows(c: &mut Client, table: &str) -> Vec<DocRow> {
    c.query(
        &format!("SELECT id, body, photo FROM {table} ORDER BY id"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[test]
fn text_and_bytea_columns_dry_run_verify_backup_and_restore() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let other = Legacy::new(&Sandbox::new());
    let v = vault(&sb, &key);
    let url = database("docs_mix");
    let mut c = connect(&url);
    c.batch_execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text, photo bytea, note text)")
        .unwrap();
    let mut tx = c.transaction().unwrap();
    for i in 1..=DOCS_ROWS {
        let body = docs_value("body", i, &lg, &other, &v).map(|b| String::from_utf8(b).unwrap());
        let photo = docs_value("photo", i, &lg, &other, &v);
        tx.execute(
            "INSERT INTO docs VALUES ($1, $2, $3, 'not encrypted')",
            &[&i, &body, &photo],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let before = docs_rows(&mut c, "docs");
    assert!(before[13].1.as_ref().unwrap().starts_with("KRE3"));
    assert!(before[21].2.as_ref().unwrap().starts_with(b"KRE3"));
    let mut want = HashMap::new();
    for i in 1..=DOCS_ROWS {
        for col in ["body", "photo"] {
            *want.entry(kind(col, i)).or_insert(0u64) += 1;
        }
    }
    let n = |k: Kind| want.get(&k).copied().unwrap_or(0);
    let migrated = n(Kind::Openssl) + n(Kind::Library);
    let (already, empty) = (n(Kind::Sealed), n(Kind::Null) + n(Kind::Empty));
    assert_eq!((already, n(Kind::Foreign)), (2, 1));
    assert!(n(Kind::Openssl) > 40 && n(Kind::Null) > 5 && n(Kind::Empty) > 5);
    let target = ("docs", "id", &["body", "photo"][..]);
    let mig = |extra: &[&str]| migrate(&sb, &key, &url, target, &lg, extra);

    // A dry run counts, changes nothing and creates nothing.
    let run = mig(&["--dry-run", "--output", "json"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["backup"], Value::Null);
    let counts = |j: &Value| nums(j, ["migrated", "already_migrated", "empty", "failed"]);
    assert_eq!(counts(&j), [migrated, already, empty, 1], "{j}");
    assert_eq!(docs_rows(&mut c, "docs"), before);
    assert_eq!(tables(&mut c), ["docs"]);

    let run = mig(&["--verify", "--output", "json"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["dry_run"], false);
    assert_eq!(counts(&j), [migrated, already, empty, 1], "{j}");
    let active: u64 = active_id(&sb.status(&key)).parse().unwrap();
    assert_eq!(
        j["data_keys"][active.to_string()],
        migrated + already,
        "{j}"
    );
    let verify = nums(&j["verify"], ["good", "empty", "changed", "bad"]);
    assert_eq!(verify, [migrated + already, empty, 0, 1], "{j}");
    // Row 5 (another legacy key) is the only one named, by the pass and by --verify.
    assert_eq!(warned_rows(&run.stderr), BTreeSet::from(["5".to_string()]));
    assert!(run.stderr.contains(START), "{}", run.stderr);
    assert!(run.stderr.contains("error: 1 values could not be migrated"));
    let backup = j["backup"].as_str().unwrap().to_string();
    assert!(backup.starts_with("kura_backup_docs_"), "{backup}");
    assert!(
        run.stderr.contains(&format!("written to {backup}")),
        "{}",
        run.stderr
    );
    assert_eq!(tables(&mut c), ["docs", &backup, "kura_migration_progress"]);
    let progress = scalar(&mut c, "SELECT count(*) FROM kura_migration_progress");
    assert_eq!(progress, 0, "the finished job's progress row is deleted");

    let after = docs_rows(&mut c, "docs");
    assert_eq!(after.len(), before.len());
    for ((id, body, photo), (id0, body0, photo0)) in after.iter().zip(&before) {
        assert_eq!(id, id0);
        let text = |t: &Option<String>| t.clone().map(String::into_bytes);
        let cols = [
            ("body", text(body), text(body0), LegacyFormat::Base64IvCt),
            (
                "photo",
                photo.clone(),
                photo0.clone(),
                LegacyFormat::RawIvCt,
            ),
        ];
        for (col, now, was, format) in cols {
            if !matches!(kind(col, *id), Kind::Openssl | Kind::Library) {
                assert_eq!(now, was, "{col} of row {id}");
                continue;
            }
            let now = now.unwrap();
            let seen = see(&v, &lg, format, "docs", col, &id.to_string(), Some(&now));
            assert_eq!(
                seen,
                Seen::Envelope(docs_plain(col, *id)),
                "{col} of row {id}"
            );
            // Text holds a base64 envelope, bytea a raw one.
            assert_eq!(now.starts_with(b"KRE"), col == "photo", "{col} of row {id}");
            // Bound to its row: it does not open as another row's.
            let elsewhere = (id % DOCS_ROWS + 1).to_string();
            let env = legacy::envelope_bytes(&now);
            assert!(v.open(&env, &ctx("docs", col, &elsewhere)).is_err());
        }
    }
    // The backup holds the original table.
    assert_eq!(docs_rows(&mut c, &backup), before);

    // A re-run finds everything migrated (and row 5 still failing), and changes nothing.
    let run = mig(&["--output", "json", "--batch", "64"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let j = run.json();
    assert_eq!(counts(&j), [0, migrated + already, empty, 1], "{j}");
    assert_ne!(j["backup"].as_str().unwrap(), backup);
    assert_eq!(docs_rows(&mut c, "docs"), after);

    // Restoring the first backup gives back the original rows exactly.
    c.batch_execute(&format!(
        "BEGIN; DELETE FROM docs; INSERT INTO docs SELECT * FROM {backup}; COMMIT"
    ))
    .unwrap();
    assert_eq!(docs_rows(&mut c, "docs"), before);
    let notes = "SELECT count(*) FROM docs WHERE note = 'not encrypted'";
    assert_eq!(scalar(&mut c, notes), DOCS_ROWS);
}

#[test]
fn text_primary_key_and_hex_legacy_format() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let v = vault(&sb, &key);
    let url = database("users_hex");
    let mut c = connect(&url);
    c.batch_execute("CREATE TABLE users (uid text PRIMARY KEY, secret text)")
        .unwrap();
    // Ids with their plaintext's number; one id needs quoting in SQL.
    let mut ids: Vec<(String, i64)> = (1..=60).map(|i| (format!("user-{i:04}"), i)).collect();
    ids.push(("user-o'brien \"x\"".to_string(), 0));
    for (uid, i) in &ids {
        let p = plain("secret", *i, 80);
        let library = String::from_utf8(lg.encrypt(&p, LegacyFormat::HexIvCt)).unwrap();
        let openssl = || hex::encode(STANDARD.decode(lg.openssl(&p, [*i as u8; 16])).unwrap());
        let value = match i {
            20 => None,
            _ if i % 10 == 0 => Some(openssl()),
            _ if i % 9 == 0 => Some(library.to_uppercase()),
            _ => Some(library),
        };
        c.execute("INSERT INTO users VALUES ($1, $2)", &[uid, &value])
            .unwrap();
    }
    let mig = |extra: &[&str]| {
        let target = ("users", "uid", &["secret"][..]);
        let hex = ["--legacy-format", "hex-iv-ct"];
        migrate(&sb, &key, &url, target, &lg, &[&hex[..], extra].concat()).ok_logged()
    };
    let run = mig(&["--batch", "7"]);
    let all = ids.len() - 1;
    let want = format!("migrated {all}, already migrated 0, empty 1, failed 0");
    assert_eq!(run.stdout_str().trim(), want);
    let rows: HashMap<String, Option<String>> = c
        .query("SELECT uid, secret FROM users", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), ids.len());
    for (uid, i) in &ids {
        let value = rows[uid].as_deref();
        if *i == 20 {
            assert_eq!(value, None);
            continue;
        }
        let value = value.unwrap().as_bytes();
        let seen = see(
            &v,
            &lg,
            LegacyFormat::HexIvCt,
            "users",
            "secret",
            uid,
            Some(value),
        );
        assert_eq!(seen, Seen::Envelope(plain("secret", *i, 80)), "row {uid}");
        // The row of the context is the text id, not the row's number.
        let env = STANDARD.decode(value).unwrap();
        assert!(
            v.open(&env, &ctx("users", "secret", &i.to_string()))
                .is_err()
        );
    }
    // Nothing left to do on a second run.
    let j = mig(&["--output", "json"]).json();
    assert_eq!(nums(&j, ["migrated", "already_migrated"]), [0, all as u64]);
}

#[test]
fn refusals_change_nothing() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let url = database("refusals");
    let mut c = connect(&url);
    let legacy_value = String::from_utf8(lg.encrypt(b"secret", LegacyFormat::Base64IvCt)).unwrap();
    c.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, v varchar(255), c char(64), j jsonb, s text)",
    )
    .unwrap();
    c.execute(
        "INSERT INTO t VALUES (1, $1, NULL, NULL, $2)",
        &[&legacy_value, &legacy_value],
    )
    .unwrap();
    let rows = |c: &mut Client| -> Vec<(Option<String>, Option<String>)> {
        c.query("SELECT v, s FROM t ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let before = rows(&mut c);
    for (col, ty) in [
        ("v", "character varying(255)"),
        ("c", "character(64)"),
        ("j", "jsonb"),
    ] {
        let target = ("t", "id", &[col, "s"][..]);
        migrate(&sb, &key, &url, target, &lg, &[]).fails_with(&[
            &format!("column '{col}' is {ty}"),
            "ALTER TABLE t ALTER COLUMN",
        ]);
    }
    migrate(&sb, &key, &url, ("nosuch", "id", &["s"]), &lg, &[])
        .fails_with(&["no table 'nosuch'", "--table"]);
    migrate(&sb, &key, &url, ("t", "id", &["s", "nope"]), &lg, &[])
        .fails_with(&["table 't' has no column 'nope'", "--column"]);
    migrate(&sb, &key, &url, ("t", "key", &["s"]), &lg, &[])
        .fails_with(&["table 't' has no column 'key'", "--id-column"]);
    reencrypt(&sb, &key, &url, ("t", "id", &["v"]), &[]).fails_with(&["ALTER TABLE"]);
    assert_eq!(tables(&mut c), ["t"]);
    assert_eq!(rows(&mut c), before);

    // Unreachable servers: a closed port, a missing database, a bad port; the password of
    // the URL is never shown.
    let closed = kura_testkit::free_port().unwrap();
    let gone = url.rsplit_once('/').unwrap().0.to_string() + "/no_such_db";
    let bad_port = "postgres://postgres@127.0.0.1:99999/x".to_string();
    for (db, shown) in [
        (
            format!("postgres://app:hunter2@127.0.0.1:{closed}/app"),
            format!("postgres://app:***@127.0.0.1:{closed}/app"),
        ),
        (gone.clone(), gone),
        (bad_port.clone(), bad_port),
    ] {
        let run = migrate(&sb, &key, &db, ("t", "id", &["s"]), &lg, &[])
            .fails_with(&[&format!("cannot connect to {shown}")]);
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    }
    assert_eq!(tables(&mut c), ["t"]);
    assert_eq!(rows(&mut c), before);
}

const ONLINE_ROWS: i64 = 20_000;

#[test]
fn online_run_beside_a_concurrent_writer_loses_no_update() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let v = vault(&sb, &key);
    let url = database("online");
    let mut c = connect(&url);
    c.batch_execute("CREATE TABLE acct (id bigint PRIMARY KEY, secret text)")
        .unwrap();
    let ids: Vec<i64> = (1..=ONLINE_ROWS).collect();
    let values: Vec<String> = ids
        .iter()
        .map(|i| {
            String::from_utf8(lg.encrypt(&plain("secret", *i, 40), LegacyFormat::Base64IvCt))
                .unwrap()
        })
        .collect();
    c.execute(
        "INSERT INTO acct SELECT * FROM unnest($1::bigint[], $2::text[])",
        &[&ids, &values],
    )
    .unwrap();

    let target = ("acct", "id", &["secret"][..]);
    let args = legacy::migrate_args(
        &url,
        target,
        &lg.file,
        &["--online", "--batch", "200", "--output", "json"],
    );
    let mut cmd = sb.keyed(&key);
    cmd.args(&args);
    let done = AtomicBool::new(false);
    let (out, last, during) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut w = connect(&url);
            // Rows chosen at random, by a simple LCG over the ids.
            let mut x = 7u64;
            let mut last: HashMap<i64, Vec<u8>> = HashMap::new();
            let (mut n, mut started, mut during) = (0u64, false, 0u64);
            while !done.load(Ordering::SeqCst) {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let id = (x >> 33) as i64 % ONLINE_ROWS + 1;
                let p = format!("write {n} to row {id}").into_bytes();
                let value = if n % 2 == 0 {
                    String::from_utf8(lg.encrypt(&p, LegacyFormat::Base64IvCt)).unwrap()
                } else {
                    STANDARD.encode(v.seal(&p, &ctx("acct", "secret", &id.to_string())).unwrap())
                };
                w.execute("UPDATE acct SET secret = $1 WHERE id = $2", &[&value, &id])
                    .unwrap();
                last.insert(id, p);
                n += 1;
                // Committed after the backup and before the migration ended.
                if !started && n % 20 == 0 {
                    let backups =
                        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'kura_backup%'";
                    started = scalar(&mut w, backups) > 0;
                }
                if started && !done.load(Ordering::SeqCst) {
                    during += 1;
                }
            }
            (last, during)
        });
        let out = cmd.output().unwrap();
        done.store(true, Ordering::SeqCst);
        let (last, during) = writer.join().unwrap();
        (out, last, during)
    });
    let run = Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    sb.check(&run);
    let run = run.ok_logged();
    assert!(
        during > 0,
        "the writer wrote nothing while the migration ran"
    );
    let j = run.json();
    assert_eq!(u(&j, "failed"), 0, "{j}");
    assert_eq!(
        u(&j, "migrated") + u(&j, "already_migrated"),
        ONLINE_ROWS as u64,
        "{j}"
    );

    let expected = |id: i64| match last.get(&id) {
        Some(p) => String::from_utf8_lossy(p).into_owned(),
        None => String::from_utf8(plain("secret", id, 40)).unwrap(),
    };
    // Every row as the application reads it: (id, still legacy, plaintext).
    let read = |c: &mut Client| -> Vec<(i64, bool, String)> {
        let rows = c
            .query("SELECT id, secret FROM acct ORDER BY id", &[])
            .unwrap();
        assert_eq!(rows.len(), ONLINE_ROWS as usize);
        rows.iter()
            .map(|r| {
                let (id, value): (i64, String) = (r.get(0), r.get(1));
                let row = id.to_string();
                let b64 = LegacyFormat::Base64IvCt;
                match see(&v, &lg, b64, "acct", "secret", &row, Some(value.as_bytes())) {
                    Seen::Envelope(p) => (id, false, String::from_utf8(p).unwrap()),
                    Seen::Legacy(p) => (id, true, String::from_utf8(p).unwrap()),
                    other => panic!("row {id}: {other:?}"),
                }
            })
            .collect()
    };
    let mut leftovers = 0;
    for (id, is_legacy, p) in read(&mut c) {
        assert_eq!(p, expected(id), "row {id}: an update was lost");
        leftovers += u64::from(is_legacy);
    }
    eprintln!(
        "{during} writes during the run, {} rows written, {leftovers} legacy leftovers",
        last.len()
    );

    // A plain second run migrates what the writer left in the legacy form.
    let j = migrate(&sb, &key, &url, target, &lg, &["--output", "json"])
        .ok_logged()
        .json();
    assert_eq!(u(&j, "migrated"), leftovers, "{j}");
    for (id, is_legacy, p) in read(&mut c) {
        assert!(!is_legacy, "row {id} is still legacy");
        assert_eq!(p, expected(id), "row {id}");
    }
}

#[test]
fn reencrypt_after_rotation_then_destroy_the_old_data_key() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let url = database("rotation");
    let mut c = connect(&url);
    c.batch_execute("CREATE TABLE r (id bigint PRIMARY KEY, s text, b bytea)")
        .unwrap();
    const ROWS: i64 = 150;
    for i in 1..=ROWS {
        let s =
            String::from_utf8(lg.encrypt(&plain("s", i, 60), LegacyFormat::Base64IvCt)).unwrap();
        let b = (i % 10 != 0).then(|| lg.encrypt(&plain("b", i, 90), LegacyFormat::RawIvCt));
        c.execute("INSERT INTO r VALUES ($1, $2, $3)", &[&i, &s, &b])
            .unwrap();
    }
    let values = ROWS as u64 + (ROWS - ROWS / 10) as u64;
    let target = ("r", "id", &["s", "b"][..]);
    let j = migrate(&sb, &key, &url, target, &lg, &["--output", "json"])
        .ok_logged()
        .json();
    assert_eq!(u(&j, "migrated"), values);
    let old = active_id(&sb.status(&key));
    sb.kura(&key, &["rotate", "data-key"]).ok();
    let new = active_id(&sb.status(&key));
    assert_ne!(old, new);

    // The table still uses the old key: destroying it is refused, naming the table.
    let run = sb
        .kura(&key, &["destroy-data-key", &old, "--yes"])
        .fails_with(&[
            "is still in use",
            "table r (s, b)",
            "kura reencrypt",
            &format!("{values} values"),
        ]);
    assert!(run.stderr.contains(&url), "{}", run.stderr);

    let run = reencrypt(&sb, &key, &url, target, &["--output", "json"]).ok_logged();
    assert!(
        run.stderr.contains(&format!("under data key {new}")),
        "{}",
        run.stderr
    );
    let j = run.json();
    let counts = |j: &Value| nums(j, ["reencrypted", "already_current", "failed"]);
    assert_eq!(counts(&j), [values, 0, 0], "{j}");
    assert_eq!(j["data_keys"][&new], values, "{j}");
    let j = reencrypt(&sb, &key, &url, target, &["--output", "json"])
        .ok_logged()
        .json();
    assert_eq!(counts(&j), [0, values, 0], "{j}");
    sb.kura(&key, &["destroy-data-key", &old, "--yes"]).ok();

    // Every value opens, under the new key, in its column's form.
    let v = vault(&sb, &key);
    let new: u64 = new.parse().unwrap();
    for r in c
        .query("SELECT id, s::bytea, b FROM r ORDER BY id", &[])
        .unwrap()
    {
        let id: i64 = r.get(0);
        for (i, col, len) in [(1, "s", 60), (2, "b", 90)] {
            let Some(value) = r.get::<_, Option<Vec<u8>>>(i) else {
                assert_eq!((col, id % 10), ("b", 0));
                continue;
            };
            // Base64 text in the text column, raw bytes in the bytea one.
            assert_eq!(value.starts_with(b"KRE"), col == "b", "{col} of row {id}");
            let env = legacy::envelope_bytes(&value);
            assert_eq!(kura_format::envelope::key_id(&env).unwrap(), new);
            let p = v.open(&env, &ctx("r", col, &id.to_string())).unwrap();
            assert_eq!(&p[..], plain(col, id, len));
        }
    }
}
