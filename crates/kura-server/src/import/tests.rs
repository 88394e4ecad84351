#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine;
use kura_crypto::Key256;
use kura_keys::clock::{Clock, ManualClock};
use kura_keys::config::Method;
use kura_keys::{Keyring, KeyringSettings, LocalMasterKey, MasterKey};
use kura_store::{Keystore, SqliteKeystore, Store};

use super::*;
use crate::ops::Caller;
use crate::{Identity, KMS_KEYRING};

const T0: i64 = 1_700_000_000;
const HOUR: u64 = 3600;

struct Env {
    _dir: tempfile::TempDir,
    kms: Kms,
    clock: Arc<ManualClock>,
    caller: Caller,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteKeystore::open(&dir.path().join("keystore.db")).unwrap());
    let clock = Arc::new(ManualClock::new(T0));
    let master: Arc<dyn MasterKey> =
        Arc::new(LocalMasterKey::new(&Key256::generate().unwrap(), "m".into()).unwrap());
    let settings = KeyringSettings {
        keyring: KMS_KEYRING.into(),
        ..KeyringSettings::new(Method::Aes256Ctr, Duration::from_secs(400 * 86_400))
    };
    let ks: Arc<dyn Keystore> = store.clone();
    let c: Arc<dyn Clock> = clock.clone();
    let keyring = Keyring::init(ks, master, settings, c.clone()).unwrap();
    let s: Arc<dyn Store> = store;
    let kms = Kms::new(
        s,
        keyring,
        Identity {
            region: crate::DEFAULT_REGION.into(),
            account: crate::DEFAULT_ACCOUNT.into(),
        },
        c,
    );
    Env {
        _dir: dir,
        kms,
        clock,
        caller: Caller {
            user: "admin".into(),
            arn: format!("arn:aws:iam::{}:user/admin", crate::DEFAULT_ACCOUNT),
        },
    }
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

impl Env {
    fn call(&self, op: &str, body: Value) -> KmsResult<Value> {
        self.kms
            .handle(&self.caller, op, &serde_json::to_vec(&body).unwrap())
    }

    fn ok(&self, op: &str, body: Value) -> Value {
        self.call(op, body)
            .unwrap_or_else(|e| panic!("{op} failed: {e}"))
    }

    fn err(&self, op: &str, body: Value) -> Kind {
        match self.call(op, body) {
            Ok(v) => panic!("{op} succeeded: {v}"),
            Err(e) => e.kind,
        }
    }

    fn external_key(&self) -> String {
        let k = self.ok("CreateKey", json!({"Origin": "EXTERNAL"}));
        assert_eq!(k["KeyMetadata"]["KeyState"], "PendingImport");
        k["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
    }

    /// Parameters for `key`: (public key DER, token).
    fn params(&self, key: &str, alg: &str, spec: &str) -> (Vec<u8>, Vec<u8>) {
        let p = self.ok(
            "GetParametersForImport",
            json!({"KeyId": key, "WrappingAlgorithm": alg, "WrappingKeySpec": spec}),
        );
        assert_eq!(
            p["ParametersValidTo"].as_i64().unwrap(),
            self.clock.now() + 86_400
        );
        assert!(p["KeyId"].as_str().unwrap().ends_with(key));
        (unb64(&p["PublicKey"]), unb64(&p["ImportToken"]))
    }

    fn state(&self, key: &str) -> String {
        let d = self.ok("DescribeKey", json!({"KeyId": key}));
        d["KeyMetadata"]["KeyState"].as_str().unwrap().to_string()
    }
}

fn wrap(public: &[u8], alg: &str, material: &[u8]) -> Vec<u8> {
    let pk = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public).unwrap()).unwrap();
    let (oaep, hybrid) = match alg {
        "RSAES_OAEP_SHA_1" => (&OAEP_SHA1_MGF1SHA1, false),
        "RSAES_OAEP_SHA_256" => (&OAEP_SHA256_MGF1SHA256, false),
        "RSA_AES_KEY_WRAP_SHA_1" => (&OAEP_SHA1_MGF1SHA1, true),
        _ => (&OAEP_SHA256_MGF1SHA256, true),
    };
    let mut out = vec![0u8; pk.ciphertext_size()];
    if !hybrid {
        return pk.encrypt(oaep, material, &mut out, None).unwrap().to_vec();
    }
    let aes = [0x42u8; 32];
    let mut v = pk.encrypt(oaep, &aes, &mut out, None).unwrap().to_vec();
    let mut kw = vec![0u8; material.len() + 16];
    let kek = AesKek::new(&AES_256, &aes).unwrap();
    v.extend_from_slice(kek.wrap_with_padding(material, &mut kw).unwrap());
    v
}

fn import_body(key: &str, token: &[u8], wrapped: &[u8], valid_to: Option<i64>) -> Value {
    let mut b = json!({
        "KeyId": key,
        "ImportToken": base64::engine::general_purpose::STANDARD.encode(token),
        "EncryptedKeyMaterial": base64::engine::general_purpose::STANDARD.encode(wrapped),
    });
    let o = b.as_object_mut().unwrap();
    match valid_to {
        Some(t) => {
            o.insert("ValidTo".into(), json!(t));
        }
        None => {
            o.insert("ExpirationModel".into(), json!(DOES_NOT_EXPIRE));
        }
    }
    b
}

#[test]
fn import_expiry_delete_and_reimport() {
    let e = env();
    let key = e.external_key();
    let material = [7u8; 32];
    let (public, token) = e.params(&key, "RSAES_OAEP_SHA_256", "RSA_2048");
    let wrapped = wrap(&public, "RSAES_OAEP_SHA_256", &material);

    // The token expires after 24 hours.
    e.clock.advance(Duration::from_secs(24 * HOUR));
    assert_eq!(
        e.err(
            "ImportKeyMaterial",
            import_body(&key, &token, &wrapped, None)
        ),
        Kind::ExpiredImportToken
    );
    assert_eq!(e.state(&key), "PendingImport");

    // ValidTo: required by default, in the future, at most 365 days ahead.
    let (public, token) = e.params(&key, "RSAES_OAEP_SHA_256", "RSA_2048");
    let wrapped = wrap(&public, "RSAES_OAEP_SHA_256", &material);
    let now = e.clock.now();
    let mut b = import_body(&key, &token, &wrapped, None);
    b.as_object_mut().unwrap().remove("ExpirationModel");
    assert_eq!(e.err("ImportKeyMaterial", b), Kind::Validation);
    for t in [now - 1, now, now + 366 * 86_400] {
        assert_eq!(
            e.err(
                "ImportKeyMaterial",
                import_body(&key, &token, &wrapped, Some(t))
            ),
            Kind::Validation
        );
    }
    let mut b = import_body(&key, &token, &wrapped, Some(now + 60));
    b["ExpirationModel"] = json!(DOES_NOT_EXPIRE);
    assert_eq!(e.err("ImportKeyMaterial", b), Kind::Validation);

    // Import, expiring in an hour.
    let r = e.ok(
        "ImportKeyMaterial",
        import_body(&key, &token, &wrapped, Some(now + 3600)),
    );
    let mid = r["KeyMaterialId"].as_str().unwrap().to_string();
    assert_eq!(mid, material_id(&key, &material));
    let d = e.ok("DescribeKey", json!({"KeyId": key}))["KeyMetadata"].clone();
    assert_eq!(d["KeyState"], "Enabled");
    assert_eq!(d["Origin"], "EXTERNAL");
    assert_eq!(d["ValidTo"], json!(now + 3600));
    assert_eq!(d["ExpirationModel"], EXPIRES);
    assert_eq!(d["CurrentKeyMaterialId"], json!(mid));
    let blob =
        e.ok("Encrypt", json!({"KeyId": key, "Plaintext": "aGVsbG8="}))["CiphertextBlob"].clone();
    assert_eq!(
        e.ok("Decrypt", json!({"CiphertextBlob": blob}))["Plaintext"],
        "aGVsbG8="
    );

    // Different material is refused; the same token imports the same material again.
    let other = wrap(&public, "RSAES_OAEP_SHA_256", &[8u8; 32]);
    assert_eq!(
        e.err("ImportKeyMaterial", import_body(&key, &token, &other, None)),
        Kind::IncorrectKeyMaterial
    );

    // The material expires: the key is PendingImport on the next load.
    e.clock.advance(Duration::from_secs(3600));
    assert_eq!(e.state(&key), "PendingImport");
    assert_eq!(
        e.err("Decrypt", json!({"CiphertextBlob": blob})),
        Kind::InvalidState
    );
    assert!(
        e.kms
            .store
            .get(KIND_MATERIAL, &format!("{key}/{mid}"))
            .unwrap()
            .is_none()
    );

    // Re-import through the RSA + AES key wrap, never expiring: old blobs decrypt.
    for alg in ["RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"] {
        let (public, token) = e.params(&key, alg, "RSA_3072");
        let wrapped = wrap(&public, alg, &material);
        let r = e.ok(
            "ImportKeyMaterial",
            import_body(&key, &token, &wrapped, None),
        );
        assert_eq!(r["KeyMaterialId"], json!(mid));
    }
    assert_eq!(
        e.ok("Decrypt", json!({"CiphertextBlob": blob}))["Plaintext"],
        "aGVsbG8="
    );
    let d = e.ok("DescribeKey", json!({"KeyId": key}))["KeyMetadata"].clone();
    assert_eq!(d["ExpirationModel"], DOES_NOT_EXPIRE);
    assert!(d.get("ValidTo").is_none());

    // Delete: PendingImport, blobs refused, then the same material restores them.
    let r = e.ok("DeleteImportedKeyMaterial", json!({"KeyId": key}));
    assert_eq!(r["KeyMaterialId"], json!(mid));
    assert_eq!(e.state(&key), "PendingImport");
    assert_eq!(
        e.err("Decrypt", json!({"CiphertextBlob": blob})),
        Kind::InvalidState
    );
    assert_eq!(
        e.err("Encrypt", json!({"KeyId": key, "Plaintext": "aGVsbG8="})),
        Kind::InvalidState
    );
    let (public, token) = e.params(&key, "RSAES_OAEP_SHA_1", "RSA_2048");
    assert_eq!(
        e.err(
            "ImportKeyMaterial",
            import_body(
                &key,
                &token,
                &wrap(&public, "RSAES_OAEP_SHA_1", &[9u8; 32]),
                None
            )
        ),
        Kind::IncorrectKeyMaterial
    );
    e.ok(
        "ImportKeyMaterial",
        import_body(
            &key,
            &token,
            &wrap(&public, "RSAES_OAEP_SHA_1", &material),
            None,
        ),
    );
    assert_eq!(e.state(&key), "Enabled");
    assert_eq!(
        e.ok("Decrypt", json!({"CiphertextBlob": blob}))["Plaintext"],
        "aGVsbG8="
    );
}

#[test]
fn tokens_ciphertexts_and_keys_refused() {
    let e = env();
    let a = e.external_key();
    let b = e.external_key();
    let material = [1u8; 32];
    let (public_a, token_a) = e.params(&a, "RSAES_OAEP_SHA_1", "RSA_2048");
    let wrapped_a = wrap(&public_a, "RSAES_OAEP_SHA_1", &material);
    // A's token for B, garbage, a flipped bit.
    assert_eq!(
        e.err(
            "ImportKeyMaterial",
            import_body(&b, &token_a, &wrapped_a, None)
        ),
        Kind::InvalidImportToken
    );
    assert_eq!(
        e.err(
            "ImportKeyMaterial",
            import_body(&a, b"garbage", &wrapped_a, None)
        ),
        Kind::InvalidImportToken
    );
    let mut bad = token_a.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        e.err("ImportKeyMaterial", import_body(&a, &bad, &wrapped_a, None)),
        Kind::InvalidImportToken
    );
    // Wrapped for another public key, with another algorithm, or not wrapped at all.
    let (public_b, _) = e.params(&b, "RSAES_OAEP_SHA_1", "RSA_2048");
    for w in [
        wrap(&public_b, "RSAES_OAEP_SHA_1", &material),
        wrap(&public_a, "RSAES_OAEP_SHA_256", &material),
        vec![0u8; 256],
        vec![1u8; 10],
    ] {
        assert_eq!(
            e.err("ImportKeyMaterial", import_body(&a, &token_a, &w, None)),
            Kind::InvalidCiphertext
        );
    }
    // Wrong length.
    assert_eq!(
        e.err(
            "ImportKeyMaterial",
            import_body(
                &a,
                &token_a,
                &wrap(&public_a, "RSAES_OAEP_SHA_1", &[1u8; 16]),
                None
            )
        ),
        Kind::IncorrectKeyMaterial
    );
    // KeyMaterialId naming other material; EXISTING_KEY_MATERIAL on a fresh key.
    let mut body = import_body(&a, &token_a, &wrapped_a, None);
    body["KeyMaterialId"] = json!("00".repeat(32));
    assert_eq!(e.err("ImportKeyMaterial", body), Kind::IncorrectKeyMaterial);
    let mut body = import_body(&a, &token_a, &wrapped_a, None);
    body["ImportType"] = json!("EXISTING_KEY_MATERIAL");
    assert_eq!(e.err("ImportKeyMaterial", body), Kind::IncorrectKeyMaterial);
    assert_eq!(e.state(&a), "PendingImport");
    e.ok(
        "ImportKeyMaterial",
        import_body(&a, &token_a, &wrapped_a, None),
    );
    let mut body = import_body(&a, &token_a, &wrapped_a, None);
    body["ImportType"] = json!("NEW_KEY_MATERIAL");
    assert_eq!(e.err("ImportKeyMaterial", body), Kind::IncorrectKeyMaterial);

    // Unsupported wrapping, non-EXTERNAL keys, keys pending deletion.
    for (alg, spec) in [
        ("RSAES_PKCS1_V1_5", "RSA_2048"),
        ("SM2PKE", "SM2"),
        ("RSAES_OAEP_SHA_1", "SM2"),
    ] {
        assert_eq!(
            e.err(
                "GetParametersForImport",
                json!({"KeyId": a, "WrappingAlgorithm": alg, "WrappingKeySpec": spec})
            ),
            Kind::UnsupportedOperation
        );
    }
    assert_eq!(
        e.err(
            "GetParametersForImport",
            json!({"KeyId": a, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_1024"})
        ),
        Kind::Validation
    );
    let native = e.ok("CreateKey", json!({}))["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    for (op, body) in [
        (
            "GetParametersForImport",
            json!({"KeyId": native, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_2048"}),
        ),
        ("DeleteImportedKeyMaterial", json!({"KeyId": native})),
        (
            "ImportKeyMaterial",
            import_body(&native, &token_a, &wrapped_a, None),
        ),
    ] {
        assert_eq!(e.err(op, body), Kind::UnsupportedOperation, "{op}");
    }
    e.ok(
        "ScheduleKeyDeletion",
        json!({"KeyId": b, "PendingWindowInDays": 7}),
    );
    assert_eq!(
        e.err(
            "GetParametersForImport",
            json!({"KeyId": b, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_2048"})
        ),
        Kind::InvalidState
    );
}

#[test]
fn sweep_expires_material() {
    let e = env();
    let key = e.external_key();
    let (public, token) = e.params(&key, "RSAES_OAEP_SHA_256", "RSA_2048");
    let wrapped = wrap(&public, "RSAES_OAEP_SHA_256", &[3u8; 32]);
    e.ok(
        "ImportKeyMaterial",
        import_body(&key, &token, &wrapped, Some(T0 + 10)),
    );
    e.clock.advance(Duration::from_secs(10));
    assert_eq!(e.kms.sweep_deletions().unwrap(), 0);
    let o = e.kms.store.get(KIND_KEY, &key).unwrap().unwrap();
    let doc: KeyDoc = serde_json::from_str(&o.doc).unwrap();
    assert_eq!(doc.state, PENDING_IMPORT);
    assert_eq!(doc.current_material, None);
    assert_eq!(doc.materials.len(), 1);
    assert_eq!(e.state(&key), "PendingImport");
}
