//! Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey[WithoutPlaintext],
//! GenerateRandom, GenerateMac, VerifyMac.

use std::collections::BTreeMap;

use aws_lc_rs::hmac;
use kura_format::EncryptionContext;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::blob;
use crate::error::{Kind, KmsError, KmsResult};
use crate::json::{Req, b64};
use crate::keys::{key_of, usable};
use crate::ops::Caller;
use crate::service::{CachedKey, Kms};

const MAX_PLAINTEXT: usize = 4096;
const MAX_CIPHERTEXT: usize = 6144;

fn context(map: &BTreeMap<String, String>) -> EncryptionContext {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn encryption_key(kms: &Kms, k: &CachedKey) -> KmsResult<()> {
    if k.doc.key_usage != "ENCRYPT_DECRYPT" || !k.doc.is_symmetric() {
        return Err(KmsError::new(
            Kind::InvalidKeyUsage,
            format!(
                "{} key usage is {} with spec {}; this operation needs a symmetric ENCRYPT_DECRYPT key",
                kms.key_arn(&k.doc.id),
                k.doc.key_usage,
                k.doc.key_spec
            ),
        ));
    }
    Ok(())
}

fn algorithm(r: &Req, member: &str) -> KmsResult<()> {
    r.enum_str(
        member,
        &[
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "RSAES_OAEP_SHA_256",
            "SM2PKE",
        ],
    )?
    .filter(|a| *a != "SYMMETRIC_DEFAULT")
    .map_or(Ok(()), |a| {
        Err(KmsError::new(
            Kind::InvalidKeyUsage,
            format!("{a} is not valid for a symmetric key; use SYMMETRIC_DEFAULT"),
        ))
    })
}

/// Seals `plaintext` under the current material of `k` (checks done by the caller).
pub(crate) fn seal(
    kms: &Kms,
    k: &CachedKey,
    ctx: &BTreeMap<String, String>,
    plaintext: &[u8],
) -> KmsResult<Vec<u8>> {
    // A key whose automatic rotation date has passed rotates before it seals.
    let rotated = crate::rotation::rotate_if_due(kms, k)?;
    let k = rotated.as_deref().unwrap_or(k);
    let mid = k.doc.current_material.as_deref().ok_or_else(|| {
        KmsError::new(
            Kind::InvalidState,
            format!("{} is pending import.", kms.key_arn(&k.doc.id)),
        )
    })?;
    let x = kms.symmetric(k, mid)?;
    blob::seal(&x, &k.doc.id, mid, &context(ctx), plaintext)
}

/// Checks usage, state and policy for sealing under the request's key.
pub(crate) fn check_encryption_key(
    kms: &Kms,
    caller: &Caller,
    k: &CachedKey,
    action: &str,
    ctx: &BTreeMap<String, String>,
) -> KmsResult<()> {
    encryption_key(kms, k)?;
    usable(kms, k)?;
    kms.authorize(caller, action, k, ctx)
}

/// Checks usage, state and policy for sealing under the request's key, then seals.
fn encrypt_for(
    kms: &Kms,
    caller: &Caller,
    k: &CachedKey,
    action: &str,
    ctx: &BTreeMap<String, String>,
    plaintext: &[u8],
) -> KmsResult<Vec<u8>> {
    check_encryption_key(kms, caller, k, action, ctx)?;
    seal(kms, k, ctx, plaintext)
}

pub(crate) fn encrypt(kms: &Kms, caller: &Caller, r: &Req) -> KmsResult<Value> {
    let plaintext = Zeroizing::new(r.req_blob("Plaintext", 1, MAX_PLAINTEXT)?);
    let ctx = r.string_map("EncryptionContext")?;
    let k = key_of(kms, r, true)?;
    if crate::asymmetric::is_asymmetric(&k.doc) {
        return crate::asymmetric::encrypt(kms, caller, r, &k, &plaintext, &ctx);
    }
    algorithm(r, "EncryptionAlgorithm")?;
    let blob = encrypt_for(kms, caller, &k, "kms:Encrypt", &ctx, &plaintext)?;
    Ok(json!({
        "CiphertextBlob": b64(&blob),
        "KeyId": kms.key_arn(&k.doc.id),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

/// Opens `blob`, checking that it belongs to `expected` (a resolved KeyId) if given.
fn open(
    kms: &Kms,
    caller: &Caller,
    action: &str,
    blob_bytes: &[u8],
    expected: Option<&str>,
    ctx: &BTreeMap<String, String>,
) -> KmsResult<(String, Zeroizing<Vec<u8>>)> {
    let parsed = blob::parse(blob_bytes)?;
    if let Some(e) = expected
        && e != parsed.key_id
    {
        return Err(KmsError::new(
            Kind::IncorrectKey,
            "The key ID in the request does not identify a CMK that can perform this operation.",
        ));
    }
    let k = match kms.key(&parsed.key_id) {
        Ok(k) => k,
        Err(e) if e.kind == Kind::NotFound => {
            return Err(KmsError::new(
                Kind::AccessDenied,
                format!(
                    "User: {} is not authorized to perform: {action} on resource: {} because the key does not exist",
                    caller.arn,
                    kms.key_arn(&parsed.key_id)
                ),
            ));
        }
        Err(e) => return Err(e),
    };
    encryption_key(kms, &k)?;
    usable(kms, &k)?;
    kms.authorize(caller, action, &k, ctx)?;
    if !k.doc.materials.iter().any(|m| m.id == parsed.material_id) {
        return Err(KmsError::new(Kind::InvalidCiphertext, ""));
    }
    let x = kms.symmetric(&k, &parsed.material_id)?;
    let pt = Zeroizing::new(parsed.open(&x, &context(ctx))?);
    Ok((k.doc.id.clone(), pt))
}

fn expected_key(kms: &Kms, r: &Req, member: &str) -> KmsResult<Option<String>> {
    r.opt_str(member, 1, 2048)?
        .map(|k| kms.resolve(k, true))
        .transpose()
}

pub(crate) fn decrypt(kms: &Kms, caller: &Caller, r: &Req) -> KmsResult<Value> {
    let blob_bytes = r.req_blob("CiphertextBlob", 1, MAX_CIPHERTEXT)?;
    let ctx = r.string_map("EncryptionContext")?;
    let expected = expected_key(kms, r, "KeyId")?;
    if let Some(k) = crate::asymmetric::decrypt_key(kms, r, expected.as_deref())? {
        return crate::asymmetric::decrypt(kms, caller, r, &k, &blob_bytes, &ctx);
    }
    algorithm(r, "EncryptionAlgorithm")?;
    let (id, pt) = open(
        kms,
        caller,
        "kms:Decrypt",
        &blob_bytes,
        expected.as_deref(),
        &ctx,
    )?;
    Ok(json!({
        "KeyId": kms.key_arn(&id),
        "Plaintext": b64(&pt),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

pub(crate) fn re_encrypt(kms: &Kms, caller: &Caller, r: &Req) -> KmsResult<Value> {
    use crate::asymmetric::{is_asymmetric, oaep_algorithm, oaep_open, oaep_seal};
    let blob_bytes = r.req_blob("CiphertextBlob", 1, MAX_CIPHERTEXT)?;
    let src_ctx = r.string_map("SourceEncryptionContext")?;
    let dst_ctx = r.string_map("DestinationEncryptionContext")?;
    let src_alg = oaep_algorithm(r, "SourceEncryptionAlgorithm")?;
    let dst_alg = oaep_algorithm(r, "DestinationEncryptionAlgorithm")?;
    let expected = expected_key(kms, r, "SourceKeyId")?;
    let dst_id = kms.resolve(r.req_str("DestinationKeyId", 1, 2048)?, true)?;
    let dst = kms.key(&dst_id)?;

    // The source: RSA ciphertext names no key, so an RSA source needs SourceKeyId.
    let asymmetric_source = match expected.as_deref() {
        Some(id) => {
            let k = kms.key(id)?;
            is_asymmetric(&k.doc).then_some(k)
        }
        None if src_alg.is_some_and(|a| a.starts_with("RSAES_")) => {
            return Err(KmsError::new(
                Kind::Validation,
                "SourceKeyId is required to re-encrypt RSA ciphertext: it does not name its key",
            ));
        }
        None => None,
    };
    let (src, pt, src_name) = match asymmetric_source {
        Some(k) => {
            let (pt, name) = oaep_open(
                kms,
                caller,
                &k,
                src_alg,
                "kms:ReEncryptFrom",
                &src_ctx,
                &blob_bytes,
            )?;
            (k.doc.id.clone(), pt, name)
        }
        None => {
            algorithm(r, "SourceEncryptionAlgorithm")?;
            let (id, pt) = open(
                kms,
                caller,
                "kms:ReEncryptFrom",
                &blob_bytes,
                expected.as_deref(),
                &src_ctx,
            )?;
            (id, pt, "SYMMETRIC_DEFAULT")
        }
    };
    let (out, dst_name) = if is_asymmetric(&dst.doc) {
        oaep_seal(kms, caller, &dst, dst_alg, "kms:ReEncryptTo", &dst_ctx, &pt)?
    } else {
        algorithm(r, "DestinationEncryptionAlgorithm")?;
        (
            encrypt_for(kms, caller, &dst, "kms:ReEncryptTo", &dst_ctx, &pt)?,
            "SYMMETRIC_DEFAULT",
        )
    };
    Ok(json!({
        "CiphertextBlob": b64(&out),
        "SourceKeyId": kms.key_arn(&src),
        "KeyId": kms.key_arn(&dst_id),
        "SourceEncryptionAlgorithm": src_name,
        "DestinationEncryptionAlgorithm": dst_name,
    }))
}

fn data_key_len(r: &Req) -> KmsResult<usize> {
    let spec = r.enum_str("KeySpec", &["AES_256", "AES_128"])?;
    let n = r.int("NumberOfBytes", 1, 1024)?;
    match (spec, n) {
        (Some(_), Some(_)) | (None, None) => Err(KmsError::new(
            Kind::Validation,
            "Please specify either number of bytes or key spec.",
        )),
        (Some("AES_128"), None) => Ok(16),
        (Some(_), None) => Ok(32),
        (None, Some(n)) => Ok(n as usize),
    }
}

/// GenerateDataKey (`with_plaintext`) or GenerateDataKeyWithoutPlaintext.
pub(crate) fn generate_data_key(
    kms: &Kms,
    caller: &Caller,
    r: &Req,
    action: &str,
    with_plaintext: bool,
) -> KmsResult<Value> {
    let len = data_key_len(r)?;
    let ctx = r.string_map("EncryptionContext")?;
    let k = key_of(kms, r, true)?;
    let mut dk = Zeroizing::new(vec![0u8; len]);
    kura_crypto::rng::fill(&mut dk).map_err(KmsError::internal)?;
    let blob = encrypt_for(kms, caller, &k, action, &ctx, &dk)?;
    let mut v = json!({ "CiphertextBlob": b64(&blob), "KeyId": kms.key_arn(&k.doc.id) });
    if with_plaintext && let Some(o) = v.as_object_mut() {
        o.insert("Plaintext".into(), b64(&dk));
    }
    Ok(v)
}

pub(crate) fn generate_random(r: &Req) -> KmsResult<Value> {
    let n = r
        .int("NumberOfBytes", 1, 1024)?
        .ok_or_else(|| KmsError::missing("numberOfBytes"))?;
    let mut b = Zeroizing::new(vec![0u8; n as usize]);
    kura_crypto::rng::fill(&mut b).map_err(KmsError::internal)?;
    Ok(json!({ "Plaintext": b64(&b) }))
}

fn mac_key(
    kms: &Kms,
    caller: &Caller,
    r: &Req,
    action: &str,
) -> KmsResult<(String, hmac::Key, &'static str)> {
    let alg_name = r
        .enum_str(
            "MacAlgorithm",
            &[
                "HMAC_SHA_224",
                "HMAC_SHA_256",
                "HMAC_SHA_384",
                "HMAC_SHA_512",
            ],
        )?
        .ok_or_else(|| KmsError::missing("macAlgorithm"))?;
    let k = key_of(kms, r, true)?;
    let (want, alg, name) = match k.doc.key_spec.as_str() {
        "HMAC_224" => ("HMAC_SHA_224", hmac::HMAC_SHA224, "HMAC_SHA_224"),
        "HMAC_256" => ("HMAC_SHA_256", hmac::HMAC_SHA256, "HMAC_SHA_256"),
        "HMAC_384" => ("HMAC_SHA_384", hmac::HMAC_SHA384, "HMAC_SHA_384"),
        "HMAC_512" => ("HMAC_SHA_512", hmac::HMAC_SHA512, "HMAC_SHA_512"),
        _ => {
            return Err(KmsError::new(
                Kind::InvalidKeyUsage,
                format!("{} is not an HMAC key", kms.key_arn(&k.doc.id)),
            ));
        }
    };
    if want != alg_name {
        return Err(KmsError::new(
            Kind::InvalidKeyUsage,
            format!(
                "{alg_name} is not supported by {} (spec {})",
                kms.key_arn(&k.doc.id),
                k.doc.key_spec
            ),
        ));
    }
    usable(kms, &k)?;
    kms.authorize(caller, action, &k, &BTreeMap::new())?;
    let mid = k
        .doc
        .current_material
        .clone()
        .ok_or_else(|| KmsError::internal("HMAC key without material"))?;
    let bytes = kms.material_bytes(&k, &mid)?;
    Ok((
        k.doc.id.clone(),
        hmac::Key::new(alg, bytes.expose_secret()),
        name,
    ))
}

pub(crate) fn generate_mac(kms: &Kms, caller: &Caller, r: &Req) -> KmsResult<Value> {
    let msg = r.req_blob("Message", 1, MAX_PLAINTEXT)?;
    let (id, key, alg) = mac_key(kms, caller, r, "kms:GenerateMac")?;
    let tag = hmac::sign(&key, &msg);
    Ok(json!({ "Mac": b64(tag.as_ref()), "KeyId": kms.key_arn(&id), "MacAlgorithm": alg }))
}

pub(crate) fn verify_mac(kms: &Kms, caller: &Caller, r: &Req) -> KmsResult<Value> {
    let msg = r.req_blob("Message", 1, MAX_PLAINTEXT)?;
    let mac = r.req_blob("Mac", 1, 6144)?;
    let (id, key, alg) = mac_key(kms, caller, r, "kms:VerifyMac")?;
    hmac::verify(&key, &msg, &mac).map_err(|_| KmsError::new(Kind::InvalidMac, ""))?;
    Ok(json!({ "KeyId": kms.key_arn(&id), "MacValid": true, "MacAlgorithm": alg }))
}
