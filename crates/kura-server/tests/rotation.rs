#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Automatic rotation of KMS key material, on a manual clock: it happens once the period
//! has passed (on the next encrypt or sweep), exactly once however many writers race for
//! it, never while the key is disabled, and every earlier ciphertext keeps decrypting.

use std::sync::Arc;
use std::time::Duration;

use kura_crypto::Key256;
use kura_keys::clock::{Clock, ManualClock};
use kura_keys::config::{DEFAULT_ROTATION_PERIOD, Method};
use kura_keys::{Keyring, KeyringSettings, LocalMasterKey, MasterKey};
use kura_server::error::{Kind, KmsError};
use kura_server::{Caller, Identity, KMS_KEYRING, Kms};
use kura_store::{Keystore, SqliteKeystore, Store};
use serde_json::{Value, json};

const T0: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

/// A keystore on disk with a master key and a manual clock; makes any number of `Kms`
/// over it (as several processes or nodes would have).
struct Env {
    dir: tempfile::TempDir,
    master: Arc<dyn MasterKey>,
    clock: Arc<ManualClock>,
}

fn settings(keyring: &str) -> KeyringSettings {
    KeyringSettings {
        keyring: keyring.into(),
        ..KeyringSettings::new(Method::default(), DEFAULT_ROTATION_PERIOD)
    }
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master: Arc<dyn MasterKey> =
            Arc::new(LocalMasterKey::new(&Key256::generate().unwrap(), "test".into()).unwrap());
        let clock = Arc::new(ManualClock::new(T0));
        let store: Arc<dyn Keystore> =
            Arc::new(SqliteKeystore::open(&dir.path().join("k.db")).unwrap());
        Keyring::init(store, master.clone(), settings("default"), clock.clone()).unwrap();
        Self { dir, master, clock }
    }

    /// A new KMS on its own keystore handle.
    fn kms(&self) -> Kms {
        let store = Arc::new(SqliteKeystore::open(&self.dir.path().join("k.db")).unwrap());
        let clock: Arc<dyn Clock> = self.clock.clone();
        let (keyring, _) = Keyring::open(
            store.clone(),
            self.master.clone(),
            None,
            settings(KMS_KEYRING),
            clock.clone(),
        )
        .unwrap();
        let store: Arc<dyn Store> = store;
        Kms::new(
            store,
            keyring,
            Identity {
                region: "us-east-1".into(),
                account: "111122223333".into(),
            },
            clock,
        )
    }

    fn advance_days(&self, days: i64) {
        self.clock.advance(Duration::from_secs((days * DAY) as u64));
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }
}

fn caller() -> Caller {
    Caller {
        user: "dev".into(),
        arn: "arn:aws:iam::111122223333:user/dev".into(),
    }
}

fn call(kms: &Kms, op: &str, body: Value) -> Result<Value, KmsError> {
    kms.handle(&caller(), op, body.to_string().as_bytes())
}

fn ok(kms: &Kms, op: &str, body: Value) -> Value {
    call(kms, op, body).unwrap_or_else(|e| panic!("{op}: {e}"))
}

fn new_key(kms: &Kms) -> String {
    ok(kms, "CreateKey", json!({}))["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// EnableKeyRotation of `key` with a period of `days`.
fn rotate_every(kms: &Kms, key: &str, days: u32) -> Value {
    ok(
        kms,
        "EnableKeyRotation",
        json!({ "KeyId": key, "RotationPeriodInDays": days }),
    )
}

fn current(kms: &Kms, key: &str) -> String {
    ok(kms, "DescribeKey", json!({ "KeyId": key }))["KeyMetadata"]["CurrentKeyMaterialId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn encrypt(kms: &Kms, key: &str, plaintext: &str) -> String {
    use base64::Engine;
    let p = base64::engine::general_purpose::STANDARD.encode(plaintext);
    ok(
        kms,
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": p, "EncryptionContext": {"k": "v"} }),
    )["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string()
}

fn decrypt(kms: &Kms, blob: &str) -> String {
    use base64::Engine;
    let out = ok(
        kms,
        "Decrypt",
        json!({ "CiphertextBlob": blob, "EncryptionContext": {"k": "v"} }),
    );
    let b = base64::engine::general_purpose::STANDARD
        .decode(out["Plaintext"].as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

fn rotations(kms: &Kms, key: &str) -> Vec<Value> {
    ok(kms, "ListKeyRotations", json!({ "KeyId": key }))["Rotations"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn rotates_on_the_first_encrypt_after_the_period_and_old_blobs_still_decrypt() {
    let env = Env::new();
    let kms = env.kms();
    let key = new_key(&kms);
    let first = current(&kms, &key);
    rotate_every(&kms, &key, 90);
    let st = ok(&kms, "GetKeyRotationStatus", json!({ "KeyId": key }));
    assert_eq!(st["KeyRotationEnabled"], true);
    assert_eq!(st["RotationPeriodInDays"], 90);
    assert_eq!(st["NextRotationDate"], T0 + 90 * DAY);
    let before = encrypt(&kms, &key, "before");

    env.advance_days(89);
    let still = encrypt(&kms, &key, "day 89");
    assert_eq!(current(&kms, &key), first, "not due yet");
    assert!(rotations(&kms, &key).is_empty());

    env.advance_days(1);
    let rotated_at = env.now();
    let after = encrypt(&kms, &key, "after");
    let second = current(&kms, &key);
    assert_ne!(second, first, "the encrypt past the date rotated the key");
    let rs = rotations(&kms, &key);
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0]["RotationType"], "AUTOMATIC");
    assert_eq!(rs[0]["KeyMaterialId"], second.as_str());
    assert_eq!(rs[0]["KeyMaterialState"], "CURRENT");
    assert_eq!(rs[0]["RotationDate"], rotated_at);
    let st = ok(&kms, "GetKeyRotationStatus", json!({ "KeyId": key }));
    assert_eq!(
        st["NextRotationDate"],
        T0 + 180 * DAY,
        "the schedule keeps its rhythm"
    );

    for (blob, want) in [(&before, "before"), (&still, "day 89"), (&after, "after")] {
        assert_eq!(decrypt(&kms, blob), want);
    }
    // Another process (fresh caches) reads the same.
    let other = env.kms();
    assert_eq!(current(&other, &key), second);
    assert_eq!(decrypt(&other, &before), "before");

    // With ALL_KEY_MATERIAL the first material appears too, as NON_CURRENT.
    let all = ok(
        &kms,
        "ListKeyRotations",
        json!({ "KeyId": key, "IncludeKeyMaterial": "ALL_KEY_MATERIAL" }),
    )["Rotations"]
        .clone();
    assert_eq!(all[0]["KeyMaterialId"], first.as_str());
    assert_eq!(all[0]["KeyMaterialState"], "NON_CURRENT");
    assert!(all[0].get("RotationType").is_none());
}

#[test]
fn the_sweep_rotates_due_keys_once_and_leaves_others_alone() {
    let env = Env::new();
    let kms = env.kms();
    let due = new_key(&kms);
    let off = new_key(&kms);
    let later = new_key(&kms);
    ok(&kms, "EnableKeyRotation", json!({ "KeyId": due }));
    rotate_every(&kms, &later, 2560);
    let (m_due, m_off, m_later) = (
        current(&kms, &due),
        current(&kms, &off),
        current(&kms, &later),
    );

    env.advance_days(365);
    assert_eq!(kms.sweep_deletions().unwrap(), 0, "nothing deleted");
    assert_ne!(current(&kms, &due), m_due);
    assert_eq!(current(&kms, &off), m_off, "rotation not enabled");
    assert_eq!(current(&kms, &later), m_later, "not due for years");
    let rotated = current(&kms, &due);
    kms.sweep_deletions().unwrap();
    assert_eq!(current(&kms, &due), rotated, "a second sweep does nothing");
    assert_eq!(rotations(&kms, &due).len(), 1);

    // A key that slept through several periods rotates once and counts from now.
    env.advance_days(3 * 365);
    kms.sweep_deletions().unwrap();
    assert_eq!(rotations(&kms, &due).len(), 2);
    let st = ok(&kms, "GetKeyRotationStatus", json!({ "KeyId": due }));
    assert_eq!(st["NextRotationDate"], env.now() + 365 * DAY);
}

#[test]
fn racing_writers_rotate_exactly_once() {
    let env = Env::new();
    let a = Arc::new(env.kms());
    let b = Arc::new(env.kms());
    let key = new_key(&a);
    ok(
        &a,
        "EnableKeyRotation",
        json!({ "KeyId": key, "RotationPeriodInDays": 90 }),
    );
    // Both nodes have the key cached from before the date.
    let first = current(&a, &key);
    assert_eq!(current(&b, &key), first);
    env.advance_days(91);

    let mut threads = Vec::new();
    for i in 0..8 {
        let kms = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = key.clone();
        threads.push(std::thread::spawn(move || {
            if i % 3 == 0 {
                kms.sweep_deletions().unwrap();
                String::new()
            } else {
                encrypt(&kms, &key, &format!("writer {i}"))
            }
        }));
    }
    let blobs: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let rs = rotations(&env.kms(), &key);
    assert_eq!(rs.len(), 1, "exactly one automatic rotation: {rs:?}");
    let fresh = env.kms();
    for (i, blob) in blobs.iter().enumerate() {
        if !blob.is_empty() {
            assert_eq!(decrypt(&fresh, blob), format!("writer {i}"));
        }
    }
    assert_eq!(
        current(&fresh, &key),
        rs[0]["KeyMaterialId"].as_str().unwrap()
    );
}

#[test]
fn disabled_keys_wait_and_rotate_once_enabled() {
    let env = Env::new();
    let kms = env.kms();
    let key = new_key(&kms);
    rotate_every(&kms, &key, 90);
    let first = current(&kms, &key);
    ok(&kms, "DisableKey", json!({ "KeyId": key }));
    let e = call(&kms, "EnableKeyRotation", json!({ "KeyId": key })).unwrap_err();
    assert_eq!(e.kind, Kind::Disabled);
    env.advance_days(100);
    kms.sweep_deletions().unwrap();
    assert_eq!(current(&kms, &key), first, "disabled keys do not rotate");
    ok(&kms, "EnableKey", json!({ "KeyId": key }));
    encrypt(&kms, &key, "x");
    assert_ne!(current(&kms, &key), first);

    // Pending deletion: no rotation, and the rotation settings cannot change.
    ok(
        &kms,
        "ScheduleKeyDeletion",
        json!({ "KeyId": key, "PendingWindowInDays": 30 }),
    );
    for op in [
        "EnableKeyRotation",
        "DisableKeyRotation",
        "RotateKeyOnDemand",
    ] {
        let e = call(&kms, op, json!({ "KeyId": key })).unwrap_err();
        assert_eq!(e.kind, Kind::InvalidState, "{op}");
    }
    // Reading the status is allowed in any state.
    ok(&kms, "GetKeyRotationStatus", json!({ "KeyId": key }));
}

#[test]
fn changing_the_period_counts_from_the_last_rotation() {
    let env = Env::new();
    let kms = env.kms();
    let key = new_key(&kms);
    ok(&kms, "EnableKeyRotation", json!({ "KeyId": key }));
    env.advance_days(100);
    rotate_every(&kms, &key, 200);
    let st = ok(&kms, "GetKeyRotationStatus", json!({ "KeyId": key }));
    assert_eq!(st["NextRotationDate"], T0 + 200 * DAY);
    // Shortening it below the time already waited makes the key rotate at once.
    rotate_every(&kms, &key, 90);
    let first = current(&kms, &key);
    kms.sweep_deletions().unwrap();
    assert_ne!(current(&kms, &key), first);
    ok(&kms, "DisableKeyRotation", json!({ "KeyId": key }));
    let st = ok(&kms, "GetKeyRotationStatus", json!({ "KeyId": key }));
    assert_eq!(st["KeyRotationEnabled"], false);
    assert!(st.get("NextRotationDate").is_none());
    env.advance_days(1000);
    let before = current(&kms, &key);
    kms.sweep_deletions().unwrap();
    assert_eq!(current(&kms, &key), before, "disabled rotation stays off");
}

#[test]
fn on_demand_rotations_are_capped_and_automatic_ones_are_not_counted() {
    let env = Env::new();
    let kms = env.kms();
    let key = new_key(&kms);
    rotate_every(&kms, &key, 90);
    let mut blobs = vec![encrypt(&kms, &key, "0")];
    for i in 1..=25 {
        let r = ok(&kms, "RotateKeyOnDemand", json!({ "KeyId": key }));
        assert_eq!(r["KeyId"], key.as_str());
        blobs.push(encrypt(&kms, &key, &i.to_string()));
    }
    let e = call(&kms, "RotateKeyOnDemand", json!({ "KeyId": key })).unwrap_err();
    assert_eq!(e.kind, Kind::LimitExceeded);
    // On-demand rotation left the automatic schedule alone.
    let st = ok(&kms, "GetKeyRotationStatus", json!({ "KeyId": key }));
    assert_eq!(st["NextRotationDate"], T0 + 90 * DAY);
    env.advance_days(90);
    blobs.push(encrypt(&kms, &key, "26"));
    let rs = rotations(&kms, &key);
    assert_eq!(rs.len(), 26);
    assert_eq!(rs[25]["RotationType"], "AUTOMATIC");
    let fresh = env.kms();
    for (i, b) in blobs.iter().enumerate() {
        assert_eq!(decrypt(&fresh, b), i.to_string());
    }
}
