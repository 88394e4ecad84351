//! Imported key material (keys of origin `EXTERNAL`): GetParametersForImport,
//! ImportKeyMaterial, DeleteImportedKeyMaterial, and the expiry of material whose
//! `ValidTo` has passed.
//!
//! The import token is stateless: it carries the wrapping private key itself, sealed as a
//! kura record under the `kms` keyring with the encryption context
//! `{"kura:import-token": <key id>}`. It therefore survives restarts, works on every node
//! sharing the keystore, and a token of one key cannot be opened for another. Its plaintext
//! (version 1):
//!
//! ```text
//! offset size
//!   0     1   version 0x01
//!   1     8   expiry (Unix seconds, big-endian)
//!   9     1   wrapping algorithm: 1 RSAES_OAEP_SHA_1, 2 RSAES_OAEP_SHA_256,
//!             3 RSA_AES_KEY_WRAP_SHA_1, 4 RSA_AES_KEY_WRAP_SHA_256
//!  10    16   key id (UUID bytes)
//!  26     n   the wrapping private key, PKCS#8 DER
//! ```
//!
//! Imported material gets a deterministic id, HMAC-SHA256 keyed by the material over a
//! fixed label and the key id (as AWS derives its id from the key and the material). The
//! id names the material in ciphertext blobs and stays in the key's metadata after the
//! material is deleted or expires, so re-importing the same material brings old
//! ciphertexts back, and different material is recognised and refused.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    PrivateDecryptingKey,
};
use kura_crypto::ct_eq;
use kura_format::EncryptionContext;
use kura_store::ObjectChange;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::{Kind, KmsError, KmsResult};
use crate::json::{Req, b64};
use crate::keys::key_of;
use crate::model::{
    ENABLED, KIND_KEY, KIND_MATERIAL, KeyDoc, MaterialMeta, PENDING_DELETION, PENDING_IMPORT,
};
use crate::service::Kms;

const DAY: i64 = 86_400;
/// How long a public key and import token stay valid.
const TOKEN_LIFETIME: i64 = DAY;
/// How far ahead `ValidTo` may be.
const MAX_VALIDITY: i64 = 365 * DAY;
const TOKEN_VERSION: u8 = 1;
const TOKEN_HEADER: usize = 26;
/// AWS's limits on `ImportToken` and `EncryptedKeyMaterial`.
const MAX_TOKEN: usize = 6144;
const MAX_WRAPPED: usize = 6144;
/// `ExpirationModel` values.
const EXPIRES: &str = "KEY_MATERIAL_EXPIRES";
const DOES_NOT_EXPIRE: &str = "KEY_MATERIAL_DOES_NOT_EXPIRE";
const MATERIAL_ID_LABEL: &[u8] = b"kura:kms-imported-material-id:v1\0";
const TOKEN_CONTEXT: &str = "kura:import-token";

const ALGORITHMS: &[&str] = &[
    "RSAES_PKCS1_V1_5",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
    "SM2PKE",
];
const WRAPPING_SPECS: &[&str] = &["RSA_2048", "RSA_3072", "RSA_4096", "SM2"];

/// How the material is wrapped for import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrapping {
    /// RSA-OAEP (SHA-1, MGF1 SHA-1) of the material.
    OaepSha1,
    /// RSA-OAEP (SHA-256, MGF1 SHA-256) of the material.
    OaepSha256,
    /// RSA-OAEP (SHA-1) of an AES key ‖ RFC 5649 AES key wrap of the material.
    RsaAesSha1,
    /// RSA-OAEP (SHA-256) of an AES key ‖ RFC 5649 AES key wrap of the material.
    RsaAesSha256,
}

impl Wrapping {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "RSAES_OAEP_SHA_1" => Some(Self::OaepSha1),
            "RSAES_OAEP_SHA_256" => Some(Self::OaepSha256),
            "RSA_AES_KEY_WRAP_SHA_1" => Some(Self::RsaAesSha1),
            "RSA_AES_KEY_WRAP_SHA_256" => Some(Self::RsaAesSha256),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::OaepSha1 => 1,
            Self::OaepSha256 => 2,
            Self::RsaAesSha1 => 3,
            Self::RsaAesSha256 => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Self::OaepSha1),
            2 => Some(Self::OaepSha256),
            3 => Some(Self::RsaAesSha1),
            4 => Some(Self::RsaAesSha256),
            _ => None,
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            Self::OaepSha1 | Self::RsaAesSha1 => &OAEP_SHA1_MGF1SHA1,
            Self::OaepSha256 | Self::RsaAesSha256 => &OAEP_SHA256_MGF1SHA256,
        }
    }

    fn hybrid(self) -> bool {
        matches!(self, Self::RsaAesSha1 | Self::RsaAesSha256)
    }
}

/// An opened import token.
struct Token {
    wrapping: Wrapping,
    expires: i64,
    key: PrivateDecryptingKey,
}

fn token_context(key_id: &str) -> EncryptionContext {
    [(TOKEN_CONTEXT, key_id)].into_iter().collect()
}

fn invalid_token() -> KmsError {
    KmsError::new(
        Kind::InvalidImportToken,
        "The import token is invalid or was issued for another KMS key; call GetParametersForImport for this key",
    )
}

/// Seals a token for `key_id`.
fn seal_token(
    kms: &Kms,
    key_id: &str,
    wrapping: Wrapping,
    expires: i64,
    key: &PrivateDecryptingKey,
) -> KmsResult<Vec<u8>> {
    let uuid = uuid::Uuid::parse_str(key_id).map_err(KmsError::internal)?;
    let pkcs8 = key.as_der().map_err(KmsError::internal)?;
    let der: &[u8] = pkcs8.as_ref();
    let mut plain = Zeroizing::new(Vec::with_capacity(TOKEN_HEADER + der.len()));
    plain.push(TOKEN_VERSION);
    plain.extend_from_slice(&expires.to_be_bytes());
    plain.push(wrapping.code());
    plain.extend_from_slice(uuid.as_bytes());
    plain.extend_from_slice(der);
    let mut token = Vec::new();
    kms.keyring
        .seal(&token_context(key_id), &plain, &mut token)?;
    Ok(token)
}

/// Opens a token for `key_id`; anything that does not open, or names another key, is
/// `InvalidImportTokenException`. Expiry is the caller's to check.
fn open_token(kms: &Kms, key_id: &str, token: &[u8]) -> KmsResult<Token> {
    // Room for the whole plaintext up front, so it is never copied by a reallocation.
    let mut plain = Zeroizing::new(Vec::with_capacity(token.len()));
    kms.keyring
        .open_envelope(&token_context(key_id), token, &mut plain)
        .map_err(|_| invalid_token())?;
    if plain.len() <= TOKEN_HEADER || plain[0] != TOKEN_VERSION {
        return Err(invalid_token());
    }
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&plain[1..9]);
    let wrapping = Wrapping::from_code(plain[9]).ok_or_else(invalid_token)?;
    let uuid = uuid::Uuid::from_slice(&plain[10..TOKEN_HEADER]).map_err(|_| invalid_token())?;
    if uuid.to_string() != key_id {
        return Err(invalid_token());
    }
    let key =
        PrivateDecryptingKey::from_pkcs8(&plain[TOKEN_HEADER..]).map_err(|_| invalid_token())?;
    Ok(Token {
        wrapping,
        expires: i64::from_be_bytes(exp),
        key,
    })
}

fn undecryptable() -> KmsError {
    KmsError::new(
        Kind::InvalidCiphertext,
        "The encrypted key material could not be decrypted with this import token's wrapping key; \
         wrap it with the PublicKey returned with this token, using the WrappingAlgorithm requested",
    )
}

/// RSA-OAEP decryption of one block of `key`'s size.
fn oaep_decrypt(
    key: &OaepPrivateDecryptingKey,
    alg: &'static OaepAlgorithm,
    ct: &[u8],
) -> KmsResult<Zeroizing<Vec<u8>>> {
    if ct.len() != key.key_size_bytes() {
        return Err(undecryptable());
    }
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let n = key
        .decrypt(alg, ct, &mut out, None)
        .map_err(|_| undecryptable())?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Unwraps the key material with the token's private key.
fn unwrap_material(token: Token, wrapped: &[u8]) -> KmsResult<Zeroizing<Vec<u8>>> {
    let key = OaepPrivateDecryptingKey::new(token.key).map_err(KmsError::internal)?;
    let alg = token.wrapping.oaep();
    if !token.wrapping.hybrid() {
        return oaep_decrypt(&key, alg, wrapped);
    }
    let n = key.key_size_bytes();
    if wrapped.len() <= n {
        return Err(undecryptable());
    }
    let (rsa, kwp) = wrapped.split_at(n);
    let aes = oaep_decrypt(&key, alg, rsa)?;
    let cipher = match aes.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err(undecryptable()),
    };
    let kek = AesKek::new(cipher, &aes).map_err(|_| undecryptable())?;
    let mut out = Zeroizing::new(vec![0u8; kwp.len()]);
    let len = kek
        .unwrap_with_padding(kwp, &mut out)
        .map_err(|_| undecryptable())?
        .len();
    out.truncate(len);
    Ok(out)
}

/// The length range of material a key spec takes, or an error for specs kura cannot
/// import into.
fn material_lengths(kms: &Kms, doc: &KeyDoc) -> KmsResult<(usize, usize)> {
    match doc.key_spec.as_str() {
        "SYMMETRIC_DEFAULT" => Ok((32, 32)),
        "HMAC_224" => Ok((28, 64)),
        "HMAC_256" => Ok((32, 64)),
        "HMAC_384" => Ok((48, 128)),
        "HMAC_512" => Ok((64, 128)),
        // A PKCS#8 private key (checked against the spec once unwrapped).
        other if crate::asymmetric::Spec::parse(other).is_some() => Ok((1, 16_384)),
        other => Err(KmsError::new(
            Kind::UnsupportedOperation,
            format!(
                "{} has KeySpec {other}; kura imports key material into symmetric, HMAC, RSA and ECC keys only",
                kms.key_arn(&doc.id)
            ),
        )),
    }
}

/// For asymmetric keys: the material must be a PKCS#8 private key of the key's spec.
fn check_private_key(doc: &KeyDoc, material: &[u8]) -> KmsResult<()> {
    let Some(spec) = crate::asymmetric::Spec::parse(&doc.key_spec) else {
        return Ok(());
    };
    crate::asymmetric::Private::parse(spec, material)
        .map(|_| ())
        .map_err(|why| {
            KmsError::new(
                Kind::IncorrectKeyMaterial,
                format!(
                    "The imported key material is not a PKCS#8 private key for {}: {why}",
                    doc.key_spec
                ),
            )
        })
}

/// Refuses keys that cannot take imported material: not `EXTERNAL`, a spec kura cannot
/// import, or pending deletion.
fn importable(kms: &Kms, doc: &KeyDoc) -> KmsResult<()> {
    let arn = kms.key_arn(&doc.id);
    if doc.origin != "EXTERNAL" {
        return Err(KmsError::new(
            Kind::UnsupportedOperation,
            format!(
                "{arn} origin is {} which is not valid for this operation; only keys created with Origin EXTERNAL take imported key material",
                doc.origin
            ),
        ));
    }
    material_lengths(kms, doc)?;
    if doc.state == PENDING_DELETION {
        return Err(KmsError::new(
            Kind::InvalidState,
            format!("{arn} is pending deletion."),
        ));
    }
    Ok(())
}

/// The deterministic id of imported `material` for key `key_id` (64 hex digits).
fn material_id(key_id: &str, material: &[u8]) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, material);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(MATERIAL_ID_LABEL);
    ctx.update(key_id.as_bytes());
    hex::encode(ctx.sign().as_ref())
}

fn known(doc: &KeyDoc, mid: &str) -> bool {
    // Every id is compared, in constant time: the ids fingerprint secret material.
    doc.materials
        .iter()
        .fold(false, |acc, m| ct_eq(m.id.as_bytes(), mid.as_bytes()) | acc)
}

pub(crate) fn get_parameters(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let alg = r
        .enum_str("WrappingAlgorithm", ALGORITHMS)?
        .ok_or_else(|| KmsError::missing("wrappingAlgorithm"))?;
    let spec = r
        .enum_str("WrappingKeySpec", WRAPPING_SPECS)?
        .ok_or_else(|| KmsError::missing("wrappingKeySpec"))?;
    let wrapping = Wrapping::from_name(alg).ok_or_else(|| {
        KmsError::new(
            Kind::UnsupportedOperation,
            format!(
                "WrappingAlgorithm {alg} is not supported; use RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, \
                 RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1"
            ),
        )
    })?;
    let size = match spec {
        "RSA_2048" => KeySize::Rsa2048,
        "RSA_3072" => KeySize::Rsa3072,
        "RSA_4096" => KeySize::Rsa4096,
        other => {
            return Err(KmsError::new(
                Kind::UnsupportedOperation,
                format!(
                    "WrappingKeySpec {other} is not supported; use RSA_2048, RSA_3072 or RSA_4096"
                ),
            ));
        }
    };
    let k = key_of(kms, r, false)?;
    importable(kms, &k.doc)?;
    let key = PrivateDecryptingKey::generate(size).map_err(KmsError::internal)?;
    let public = key.public_key().as_der().map_err(KmsError::internal)?;
    let expires = kms.now() + TOKEN_LIFETIME;
    let token = seal_token(kms, &k.doc.id, wrapping, expires, &key)?;
    tracing::info!(key = %k.doc.id, wrapping = alg, spec, "import parameters issued");
    Ok(json!({
        "KeyId": kms.key_arn(&k.doc.id),
        "ImportToken": b64(&token),
        "PublicKey": b64(public.as_ref()),
        "ParametersValidTo": expires,
    }))
}

/// `ValidTo` as the expiration model allows it.
fn valid_to(model: &str, valid_to: Option<i64>, now: i64) -> KmsResult<Option<i64>> {
    match (model, valid_to) {
        (EXPIRES, None) => Err(KmsError::new(
            Kind::Validation,
            "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES",
        )),
        (EXPIRES, Some(t)) if t <= now => Err(KmsError::new(
            Kind::Validation,
            "The validTo date must be in the future",
        )),
        (EXPIRES, Some(t)) if t > now + MAX_VALIDITY => Err(KmsError::new(
            Kind::Validation,
            "The validTo date must be at most 365 days in the future",
        )),
        (EXPIRES, t) => Ok(t),
        (_, Some(_)) => Err(KmsError::new(
            Kind::Validation,
            "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE",
        )),
        (_, None) => Ok(None),
    }
}

pub(crate) fn import(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let token_bytes = r.req_blob("ImportToken", 1, MAX_TOKEN)?;
    let wrapped = r.req_blob("EncryptedKeyMaterial", 1, MAX_WRAPPED)?;
    let model = r
        .enum_str("ExpirationModel", &[EXPIRES, DOES_NOT_EXPIRE])?
        .unwrap_or(EXPIRES);
    let now = kms.now();
    let valid_to = valid_to(model, r.timestamp("ValidTo")?, now)?;
    let import_type = r.enum_str("ImportType", &["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"])?;
    let wanted_id = r.opt_str("KeyMaterialId", 64, 64)?;
    let k = key_of(kms, r, false)?;
    importable(kms, &k.doc)?;
    let id = k.doc.id.clone();
    let arn = kms.key_arn(&id);
    let token = open_token(kms, &id, &token_bytes)?;
    if token.expires <= now {
        return Err(KmsError::new(
            Kind::ExpiredImportToken,
            format!(
                "The import token expired at {}; call GetParametersForImport again",
                kura_keys::clock::rfc3339(token.expires)
            ),
        ));
    }
    let material = unwrap_material(token, &wrapped)?;
    let (min, max) = material_lengths(kms, &k.doc)?;
    if !(min..=max).contains(&material.len()) {
        let want = if min == max {
            format!("{min} bytes")
        } else {
            format!("{min} to {max} bytes")
        };
        return Err(KmsError::new(
            Kind::IncorrectKeyMaterial,
            format!(
                "The imported key material is {} bytes; {} keys take {want}",
                material.len(),
                k.doc.key_spec
            ),
        ));
    }
    check_private_key(&k.doc, &material)?;
    let mid = material_id(&id, &material);
    if let Some(w) = wanted_id
        && !ct_eq(w.as_bytes(), mid.as_bytes())
    {
        return Err(KmsError::new(
            Kind::IncorrectKeyMaterial,
            format!("The imported key material is not the key material {w}"),
        ));
    }
    let mut sealed = Vec::new();
    kms.keyring
        .seal(&Kms::material_context(&id, &mid), &material, &mut sealed)?;
    drop(material);
    let doc = kms.update_key(&id, |doc| {
        if doc.state == PENDING_DELETION {
            return Err(KmsError::new(
                Kind::InvalidState,
                format!("{arn} is pending deletion."),
            ));
        }
        let seen = known(doc, &mid);
        if !doc.materials.is_empty() && !seen {
            return Err(KmsError::new(
                Kind::IncorrectKeyMaterial,
                format!("The key material is not the key material previously imported into {arn}"),
            ));
        }
        match import_type {
            Some("NEW_KEY_MATERIAL") if seen => {
                return Err(KmsError::new(
                    Kind::IncorrectKeyMaterial,
                    format!("ImportType is NEW_KEY_MATERIAL but this key material is already associated with {arn}"),
                ));
            }
            Some("EXISTING_KEY_MATERIAL") if !seen => {
                return Err(KmsError::new(
                    Kind::IncorrectKeyMaterial,
                    format!("ImportType is EXISTING_KEY_MATERIAL but no key material was imported into {arn} before"),
                ));
            }
            _ => {}
        }
        let mut changes = Vec::new();
        if doc.current_material.as_deref() != Some(mid.as_str()) {
            changes.push(kms.material_object(&doc.id, &mid, sealed.clone()));
            doc.current_material = Some(mid.clone());
            if !seen {
                doc.materials.push(MaterialMeta {
                    id: mid.clone(),
                    created: now,
                    rotation_type: None,
                });
            }
        }
        if doc.state == PENDING_IMPORT {
            doc.state = ENABLED.into();
        }
        doc.valid_to = valid_to;
        doc.expiration_model = Some(model.into());
        Ok(changes)
    })?;
    tracing::info!(key = %id, expiration_model = model, valid_to = ?valid_to, state = %doc.state, "key material imported");
    Ok(json!({ "KeyId": arn, "KeyMaterialId": mid }))
}

pub(crate) fn delete(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let wanted = r.opt_str("KeyMaterialId", 64, 64)?;
    let k = key_of(kms, r, false)?;
    let id = k.doc.id.clone();
    let arn = kms.key_arn(&id);
    if k.doc.origin != "EXTERNAL" {
        return Err(KmsError::new(
            Kind::UnsupportedOperation,
            format!(
                "{arn} origin is {} which is not valid for this operation; only keys with Origin EXTERNAL have imported key material",
                k.doc.origin
            ),
        ));
    }
    let mut deleted: Option<String> = None;
    kms.update_key(&id, |doc| {
        deleted = None;
        if let Some(w) = wanted
            && !known(doc, w)
        {
            return Err(KmsError::new(
                Kind::NotFound,
                format!("Key material {w} of {arn} does not exist"),
            ));
        }
        let Some(cur) = doc.current_material.clone() else {
            return Ok(Vec::new());
        };
        if wanted.is_some_and(|w| w != cur) {
            // That material was deleted already.
            return Ok(Vec::new());
        }
        doc.current_material = None;
        doc.valid_to = None;
        if doc.state != PENDING_DELETION {
            doc.state = PENDING_IMPORT.into();
        }
        let change = ObjectChange::Delete {
            kind: KIND_MATERIAL.into(),
            id: format!("{}/{cur}", doc.id),
        };
        deleted = Some(cur);
        Ok(vec![change])
    })?;
    tracing::info!(key = %id, deleted = deleted.is_some(), "imported key material deleted");
    let mut v = json!({ "KeyId": arn });
    if let (Some(m), Some(o)) = (deleted, v.as_object_mut()) {
        o.insert("KeyMaterialId".into(), json!(m));
    }
    Ok(v)
}

/// Whether `doc`'s imported material has passed its `ValidTo`.
pub(crate) fn material_expired(doc: &KeyDoc, now: i64) -> bool {
    doc.current_material.is_some()
        && doc.expiration_model.as_deref() == Some(EXPIRES)
        && doc.valid_to.is_some_and(|t| t <= now)
}

/// Deletes the expired material of key `doc` (stored at `version`): the key becomes
/// PendingImport (or stays PendingDeletion). If another writer changed the key meanwhile
/// nothing is done; the next load looks again. The caller drops its cached copy.
pub(crate) fn expire(kms: &Kms, version: u64, doc: &KeyDoc) -> KmsResult<()> {
    let Some(cur) = &doc.current_material else {
        return Ok(());
    };
    let mut d = doc.clone();
    d.current_material = None;
    d.valid_to = None;
    if d.state != PENDING_DELETION {
        d.state = PENDING_IMPORT.into();
    }
    let changes = [
        ObjectChange::Update {
            kind: KIND_KEY.into(),
            id: doc.id.clone(),
            version,
            doc: serde_json::to_string(&d).map_err(KmsError::internal)?,
            blob: Vec::new(),
        },
        ObjectChange::Delete {
            kind: KIND_MATERIAL.into(),
            id: format!("{}/{cur}", doc.id),
        },
    ];
    match kms.store.apply(&changes) {
        Ok(()) => {
            tracing::info!(key = %doc.id, "imported key material expired and was deleted");
            Ok(())
        }
        Err(kura_store::Error::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
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
        let pk =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public).unwrap()).unwrap();
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
            e.ok("Encrypt", json!({"KeyId": key, "Plaintext": "aGVsbG8="}))["CiphertextBlob"]
                .clone();
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
}
