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
mod tests;
