#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura migrate-encryption` and `kura reencrypt` on SQLite: text and BLOB columns, values
//! from `openssl enc` and from the library's legacy encryptor, `--dry-run`, `--verify`,
//! `--no-row-binding`, restoring the backup, and the data-key destruction guard.

mod common;
mod legacy;

use std::path::{Path, PathBuf};

use common::*;
use kura_keys::LegacyFormat;
use legacy::{Legacy, Seen, migrate, plain, reencrypt, see, vault};
use rusqlite::Connection;
use rusqlite::types::Value;

const ROWS: i64 = 600;
const TARGET: (&str, &str, &[&str]) = ("docs", "id", &["body", "photo"]);

/// `docs(id TEXT PRIMARY KEY, body TEXT, photo BLOB)`: body legacy base64 (from openssl on
/// every 7th row, else the library), photo raw legacy bytes; NULLs, empty values, one
/// already-sealed body (row 0003) and one value under another key (row 0005).
fn build(sb: &Sandbox, lg: &Legacy, vault: &kura_keys::Vault) -> PathBuf {
    let path = sb.join("docs.db");
    let mut c = Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE docs (id TEXT PRIMARY KEY, body TEXT, photo BLOB, note TEXT)")
        .unwrap();
    let other = Legacy::new(&Sandbox::new());
    let tx = c.transaction().unwrap();
    for i in 1..=ROWS {
        let id = format!("{i:04}");
        let body: Option<String> = match i {
            _ if i % 50 == 0 => None,
            _ if i % 60 == 0 => Some(String::new()),
            3 => Some(base64_env(vault, &plain("body", i, 200), "body", &id)),
            5 => Some(
                String::from_utf8(other.encrypt_foreign(b"x", LegacyFormat::Base64IvCt, lg))
                    .unwrap(),
            ),
            _ if i % 7 == 0 => Some(lg.openssl(&plain("body", i, 200), [i as u8; 16])),
            _ => Some(
                String::from_utf8(lg.encrypt(&plain("body", i, 200), LegacyFormat::Base64IvCt))
                    .unwrap(),
            ),
        };
        let photo: Option<Vec<u8>> = match i {
            _ if i % 40 == 0 => None,
            _ if i % 45 == 0 => Some(Vec::new()),
            _ => Some(lg.encrypt(&plain("photo", i, 300), LegacyFormat::RawIvCt)),
        };
        tx.execute(
            "INSERT INTO docs VALUES (?1, ?2, ?3, 'not encrypted')",
            rusqlite::params![id, body, photo],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    path
}

fn base64_env(vault: &kura_keys::Vault, p: &[u8], col: &str, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(vault.seal(p, &legacy::ctx("docs", col, id)).unwrap())
}

/// Every row: (id, body, photo), as stored.
fn rows(db: &Path) -> Vec<(String, Value, Value)> {
    let c = Connection::open(db).unwrap();
    let mut s = c
        .prepare("SELECT id, body, photo FROM docs ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::Text(t) => Some(t.clone().into_bytes()),
        Value::Blob(b) => Some(b.clone()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn text_and_blob_columns_migrate_with_dry_run_and_verify() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let v = vault(&sb, &key);
    let db = build(&sb, &lg, &v);
    let dbs = db.to_str().unwrap();
    let before = rows(&db);

    // A dry run counts and changes nothing, takes no backup.
    let run = migrate(
        &sb,
        &key,
        dbs,
        TARGET,
        &lg,
        &["--dry-run", "--output", "json"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["failed"], 1);
    assert_eq!(j["already_migrated"], 1);
    assert_eq!(rows(&db), before);
    assert!(
        sb.files()
            .iter()
            .all(|f| !f.contains(".pre-kura-migration-"))
    );

    let run = migrate(
        &sb,
        &key,
        dbs,
        TARGET,
        &lg,
        &["--verify", "--output", "json"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["failed"], 1, "{j}");
    assert!(run.stderr.contains("row=0005"), "{}", run.stderr);
    // Verification flags the one value left in the legacy form, nothing else.
    assert_eq!(j["verify"]["bad"], 1, "{j}");
    let migrated = j["migrated"].as_u64().unwrap();
    assert_eq!(j["verify"]["good"].as_u64().unwrap(), migrated + 1);

    let after = rows(&db);
    for ((id, body, photo), (_, body0, photo0)) in after.iter().zip(&before) {
        let i: i64 = id.parse().unwrap();
        // Text stays text (base64 envelopes), BLOB stays BLOB (raw envelopes).
        assert!(!matches!(body, Value::Blob(_)));
        assert!(!matches!(photo, Value::Text(_)));
        let b = see(
            &v,
            &lg,
            LegacyFormat::Base64IvCt,
            "docs",
            "body",
            id,
            bytes(body).as_deref(),
        );
        let p = see(
            &v,
            &lg,
            LegacyFormat::RawIvCt,
            "docs",
            "photo",
            id,
            bytes(photo).as_deref(),
        );
        match bytes(body0) {
            None => assert_eq!(body, body0),
            Some(x) if x.is_empty() => assert_eq!(body, body0),
            Some(_) if i == 5 => assert_eq!(body, body0),
            Some(_) => assert_eq!(b, Seen::Envelope(plain("body", i, 200)), "row {id}"),
        }
        match bytes(photo0) {
            None => assert_eq!(photo, photo0),
            Some(x) if x.is_empty() => assert_eq!(photo, photo0),
            Some(_) => assert_eq!(p, Seen::Envelope(plain("photo", i, 300)), "row {id}"),
        }
    }
    // Row 0003 was already sealed: left byte for byte.
    assert_eq!(after[2].1, before[2].1);

    // The backup restores the original table.
    let backup = sb.join(
        &sb.files()
            .into_iter()
            .find(|f| f.contains(".pre-kura-migration-") && f.ends_with(".bak"))
            .unwrap(),
    );
    std::fs::copy(&backup, &db).unwrap();
    assert_eq!(rows(&db), before);
}

#[test]
fn no_row_binding_and_reencrypt_then_destroy() {
    let (sb, key) = Sandbox::initialised();
    let lg = Legacy::new(&sb);
    let v = vault(&sb, &key);
    let db = build(&sb, &lg, &v);
    let dbs = db.to_str().unwrap();
    // Row 0003's envelope is row-bound and row 0005 is under another key: drop both.
    Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM docs WHERE id IN ('0003', '0005')", [])
        .unwrap();
    migrate(&sb, &key, dbs, TARGET, &lg, &["--no-row-binding"]).ok_logged();
    // Without row binding, values open under the empty context and can be moved.
    let after = rows(&db);
    let env = bytes(&after[0].2).unwrap();
    let p = v
        .open(&env, &kura_format::EncryptionContext::new())
        .unwrap();
    assert_eq!(&p[..], plain("photo", 1, 300));

    // After a rotation the old data key is still in use: destroying it is refused.
    let old = active_id(&sb.status(&key));
    sb.kura(&key, &["rotate", "data-key"]).ok();
    let run = sb
        .kura(&key, &["destroy-data-key", &old, "--yes"])
        .fails_with(&[
            "is still in use",
            "table docs (body, photo)",
            "kura reencrypt",
        ]);
    assert!(run.stderr.contains(dbs), "{}", run.stderr);
    let run = reencrypt(
        &sb,
        &key,
        dbs,
        TARGET,
        &["--no-row-binding", "--output", "json"],
    );
    let j = run.ok_logged().json();
    assert_eq!(j["already_current"], 0);
    assert!(j["reencrypted"].as_u64().unwrap() > 1000);
    // A second pass has nothing left to do.
    let j = reencrypt(
        &sb,
        &key,
        dbs,
        TARGET,
        &["--no-row-binding", "--output", "json"],
    )
    .ok_logged()
    .json();
    assert_eq!(j["reencrypted"], 0);
    sb.kura(&key, &["destroy-data-key", &old, "--yes"]).ok();
    // Everything still opens.
    for (id, body, _) in rows(&db) {
        if let Some(b) = bytes(&body).filter(|b| !b.is_empty()) {
            let i: i64 = id.parse().unwrap();
            let e = legacy::envelope_bytes(&b);
            let p = v.open(&e, &kura_format::EncryptionContext::new()).unwrap();
            assert_eq!(&p[..], plain("body", i, 200));
        }
    }
}
