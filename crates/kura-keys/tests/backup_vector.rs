#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The frozen known-answer vector of the keystore backup format, version 1
//! (`testdata/backup-v1.json`, `docs/format.md` "Keystore backup v1").
//!
//! The check rebuilds the backup from the recorded inputs and compares byte for byte, opens
//! the stored bytes and compares what they hold, and re-derives the tag and checksum and
//! the fixed fields from the document alone, with kura-crypto primitives. The file is
//! written by the ignored test `regenerate`:
//!
//! ```text
//! cargo test -p kura-keys --test backup_vector -- --ignored regenerate
//! ```

use kura_crypto::{Key256, XaesCommitting};
use kura_format::wrapped::{self, Kind};
use kura_keys::backup;
use kura_keys::{LocalMasterKey, MasterKey};
use kura_store::{
    Change, DataKeyRecord, DataKeyState, KekRecord, KekState, Keystore, ObjectChange, ObjectStore,
    SqliteKeystore,
};
use serde::{Deserialize, Serialize};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/backup-v1.json");
const REGENERATE: &str = "cargo test -p kura-keys --test backup_vector -- --ignored regenerate";

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Vector {
    format: String,
    spec: String,
    notes: Vec<String>,
    regenerate: String,
    master_key: String,
    master_key_id: String,
    master_key_source: String,
    kek: String,
    kek_id: u64,
    kek_nonce: String,
    data_key: String,
    data_key_id: u64,
    data_key_nonce: String,
    keyring: String,
    method: String,
    created_at: i64,
    object_kind: String,
    object_id: String,
    object_doc: String,
    object_blob: String,
    salt: String,
    backup: String,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn n24(s: &str) -> [u8; 24] {
    h(s).try_into().unwrap()
}

fn key(s: &str) -> Key256 {
    Key256::from_slice(&h(s), "test").unwrap()
}

fn inputs() -> Vector {
    let pattern = |start: u8| -> String {
        hex::encode(
            (0..32u8)
                .map(|i| start.wrapping_add(i * 7))
                .collect::<Vec<_>>(),
        )
    };
    let master =
        LocalMasterKey::new(&key(&pattern(0x10)), "file /etc/kura/master.key".into()).unwrap();
    Vector {
        format: "kura keystore backup, version 1".into(),
        spec: "docs/format.md".into(),
        notes: vec![
            "All byte strings are hex. The master key (master_key) wraps KEK kek_id (kek) with nonce kek_nonce; \
             the KEK wraps data key data_key_id (data_key) with nonce data_key_nonce (kura-format wrapped keys)."
                .into(),
            "The keystore holds that KEK (active, created at created_at), that data key (active, keyring, method, \
             created and activated at created_at) and one object at version 1; generation 1."
                .into(),
            "backup = the backup made of it at created_at with salt `salt`.".into(),
        ],
        regenerate: REGENERATE.into(),
        master_key_id: master.id().into(),
        master_key_source: master.source().into(),
        master_key: pattern(0x10),
        kek: pattern(0x20),
        kek_id: 0x0123_4567_89ab_cdef,
        kek_nonce: hex::encode([0x31u8; 24]),
        data_key: pattern(0x30),
        data_key_id: 0x1122_3344_5566_7788,
        data_key_nonce: hex::encode([0x42u8; 24]),
        keyring: "default".into(),
        method: "aes256-ctr".into(),
        created_at: 1_700_000_000,
        object_kind: "alias".into(),
        object_id: "alias/example".into(),
        object_doc: "{\"target\":\"k\"}".into(),
        object_blob: "0102".into(),
        salt: hex::encode([0x5au8; 32]),
        backup: String::new(),
    }
}

/// Builds the keystore the vector describes and backs it up.
fn build(v: &Vector) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteKeystore::open(&dir.path().join("k.db")).unwrap();
    let master = LocalMasterKey::new(&key(&v.master_key), v.master_key_source.clone()).unwrap();
    let mx = XaesCommitting::new(&key(&v.master_key)).unwrap();
    let kek_blob = wrapped::wrap_with_nonce(
        &mx,
        master.id(),
        Kind::KekUnderMasterKey,
        v.kek_id,
        &n24(&v.kek_nonce),
        &h(&v.kek),
    )
    .unwrap();
    let kx = XaesCommitting::new(&key(&v.kek)).unwrap();
    let dk_blob = wrapped::wrap_with_nonce(
        &kx,
        &v.kek_id.to_string(),
        Kind::DataKeyUnderKek,
        v.data_key_id,
        &n24(&v.data_key_nonce),
        &h(&v.data_key),
    )
    .unwrap();
    store
        .initialize(&[
            Change::InsertKek(KekRecord {
                id: v.kek_id,
                wrapped: kek_blob,
                master_key_id: master.id().into(),
                state: KekState::Active,
                created_at: v.created_at,
                retired_at: None,
            }),
            Change::InsertDataKey(DataKeyRecord {
                id: v.data_key_id,
                keyring: v.keyring.clone(),
                method: v.method.clone(),
                wrapped: dk_blob,
                kek_id: v.kek_id,
                state: DataKeyState::Active,
                created_at: v.created_at,
                activated_at: Some(v.created_at),
                retired_at: None,
                destroyed_at: None,
            }),
        ])
        .unwrap();
    store
        .apply(&[ObjectChange::Create {
            kind: v.object_kind.clone(),
            id: v.object_id.clone(),
            doc: v.object_doc.clone(),
            blob: h(&v.object_blob),
        }])
        .unwrap();
    let salt: [u8; 32] = h(&v.salt).try_into().unwrap();
    backup::create_with_salt(&store, &master, None, v.created_at, salt)
        .unwrap()
        .0
}

fn generate() -> Vector {
    let mut v = inputs();
    v.backup = hex::encode(build(&v));
    v
}

#[test]
#[ignore = "writes testdata/; run explicitly"]
fn regenerate() {
    let v = generate();
    if let Ok(text) = std::fs::read_to_string(FILE) {
        let old: Vector = serde_json::from_str(&text).unwrap();
        if old.backup != v.backup && std::env::var_os("KURA_VECTORS_FORCE").is_none() {
            panic!(
                "refusing to change the frozen backup vector (a format break; set KURA_VECTORS_FORCE=1)"
            );
        }
    }
    let mut text = serde_json::to_string_pretty(&v).unwrap();
    text.push('\n');
    std::fs::write(FILE, text).unwrap();
}

fn stored() -> Vector {
    let text =
        std::fs::read_to_string(FILE).unwrap_or_else(|e| panic!("{FILE}: {e}; run `{REGENERATE}`"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_stored_vector_matches_the_writer() {
    assert_eq!(stored(), generate(), "run `{REGENERATE}`");
}

#[test]
fn the_stored_vector_opens_and_holds_its_inputs() {
    let v = stored();
    let bytes = h(&v.backup);
    let master = LocalMasterKey::new(&key(&v.master_key), "another source".into()).unwrap();
    let b = backup::open(&bytes, &master, None).unwrap();
    let s = b.summary();
    assert_eq!(s.master_key_id, v.master_key_id);
    assert_eq!(s.master_key_source, v.master_key_source);
    assert_eq!(s.kek_id, v.kek_id.to_string());
    assert_eq!(s.generation, 1);
    assert_eq!(b.keks().len(), 1);
    let d = &b.data_keys()[0];
    assert_eq!(
        (d.id, d.keyring.as_str(), d.method.as_str()),
        (v.data_key_id, "default", "aes256-ctr")
    );
    let kx = XaesCommitting::new(&key(&v.kek)).unwrap();
    let dk = wrapped::unwrap(&kx, Kind::DataKeyUnderKek, d.id, &d.wrapped).unwrap();
    assert_eq!(dk.expose_secret(), h(&v.data_key).as_slice());
    let o = &b.objects()[0];
    assert_eq!(
        (o.kind.as_str(), o.id.as_str(), o.version),
        ("alias", "alias/example", 1)
    );
}

/// Re-derives the fixed fields, the tag and the checksum from `docs/format.md` alone.
#[test]
fn the_stored_vector_follows_the_document() {
    let v = stored();
    let b = h(&v.backup);
    let be64 = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    assert_eq!(&b[0..4], b"KRB\x01");
    assert_eq!(b[4..36], h(&v.salt)[..]);
    assert_eq!(be64(36), v.created_at as u64);
    assert_eq!(be64(44), 1);
    assert_eq!(be64(52), v.kek_id);
    let id_len = u32::from_be_bytes(b[60..64].try_into().unwrap()) as usize;
    assert_eq!(&b[64..64 + id_len], v.master_key_id.as_bytes());
    let t = b.len() - 64;
    let mut mac_key = [0u8; 32];
    kura_crypto::hkdf_sha256(
        &h(&v.salt),
        &h(&v.kek),
        &[b"kura backup v1 mac"],
        &mut mac_key,
    )
    .unwrap();
    assert_eq!(kura_crypto::hmac_sha256(&mac_key, &[&b[..t]]), b[t..t + 32]);
    assert_eq!(kura_crypto::sha256(&[&b[..t + 32]]), b[t + 32..]);
}
