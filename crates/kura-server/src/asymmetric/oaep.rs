//! Encrypt and Decrypt with RSA ENCRYPT_DECRYPT keys: RSAES-OAEP with SHA-1 or SHA-256
//! (MGF1 with the same hash, empty label). The ciphertext is the raw RSA-OAEP output, as
//! AWS answers it, so anyone with the public key can encrypt for KMS to decrypt.
//!
//! `crypto::encrypt`/`crypto::decrypt` hand requests for asymmetric keys to these.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Spec, is_asymmetric, private_der};
use crate::error::{Kind, KmsError, KmsResult};
use crate::json::{Req, b64};
use crate::keys::usable;
use crate::ops::Caller;
use crate::service::{CachedKey, Kms};

const MEMBER: &str = "EncryptionAlgorithm";
const NAMES: &[&str] = &[
    "SYMMETRIC_DEFAULT",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "SM2PKE",
];

/// The asymmetric key a Decrypt request names, if it names one: RSA ciphertext does not
/// say which key made it, so `KeyId` is required for asymmetric decryption.
pub(crate) fn decrypt_key(
    kms: &Kms,
    r: &Req,
    key_id: Option<&str>,
) -> KmsResult<Option<Arc<CachedKey>>> {
    match key_id {
        Some(id) => {
            let k = kms.key(id)?;
            Ok(is_asymmetric(&k.doc).then_some(k))
        }
        None => match r.enum_str(MEMBER, NAMES)? {
            Some(a) if a.starts_with("RSAES_") => Err(KmsError::new(
                Kind::Validation,
                format!(
                    "KeyId is required to decrypt with {a}: the ciphertext does not name its key"
                ),
            )),
            _ => Ok(None),
        },
    }
}

/// Checks that `k` is an RSA ENCRYPT_DECRYPT key, the request's algorithm and context,
/// state and policy. Returns the key size in bytes and the algorithm.
fn check(
    kms: &Kms,
    caller: &Caller,
    algorithm: Option<&str>,
    k: &CachedKey,
    action: &str,
    ctx: &BTreeMap<String, String>,
) -> KmsResult<(usize, &'static OaepAlgorithm, &'static str)> {
    let arn = kms.key_arn(&k.doc.id);
    let size = match Spec::of(&k.doc) {
        Some(Spec::Rsa(size)) if k.doc.key_usage == "ENCRYPT_DECRYPT" => size.len(),
        _ => {
            return Err(KmsError::new(
                Kind::InvalidKeyUsage,
                format!(
                    "{arn} key usage is {} with spec {}; {action} needs an ENCRYPT_DECRYPT key",
                    k.doc.key_usage, k.doc.key_spec
                ),
            ));
        }
    };
    let (alg, name): (&'static OaepAlgorithm, &'static str) = match algorithm {
        Some("RSAES_OAEP_SHA_1") => (&OAEP_SHA1_MGF1SHA1, "RSAES_OAEP_SHA_1"),
        Some("RSAES_OAEP_SHA_256") => (&OAEP_SHA256_MGF1SHA256, "RSAES_OAEP_SHA_256"),
        other => {
            return Err(KmsError::new(
                Kind::InvalidKeyUsage,
                format!(
                    "{} is not a valid encryption algorithm for {arn} (spec {}); use RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
                    other.unwrap_or("SYMMETRIC_DEFAULT"),
                    k.doc.key_spec
                ),
            ));
        }
    };
    if !ctx.is_empty() {
        return Err(KmsError::new(
            Kind::Validation,
            "EncryptionContext is not supported with asymmetric KMS keys",
        ));
    }
    usable(kms, k)?;
    kms.authorize(caller, action, k, ctx)?;
    Ok((size, alg, name))
}

fn private_key(kms: &Kms, k: &CachedKey) -> KmsResult<PrivateDecryptingKey> {
    let der = private_der(kms, k)?;
    PrivateDecryptingKey::from_pkcs8(der.expose_secret()).map_err(|e| {
        KmsError::internal(format!(
            "material of key {} is not an RSA private key: {e}",
            k.doc.id
        ))
    })
}

/// The most an RSA key of `size` bytes encrypts with `alg`: k − 2·hLen − 2.
fn max_plaintext(size: usize, alg: &OaepAlgorithm) -> usize {
    let hash_len = if alg.id() == OAEP_SHA1_MGF1SHA1.id() {
        20
    } else {
        32
    };
    size - 2 * hash_len - 2
}

/// The request's algorithm member (`EncryptionAlgorithm`, or ReEncrypt's source or
/// destination one), checked against the names KMS knows.
pub(crate) fn algorithm<'r>(r: &'r Req, member: &str) -> KmsResult<Option<&'r str>> {
    r.enum_str(member, NAMES)
}

/// RSA-OAEP encryption of `plaintext` under `k` with `algorithm`, after the usage, context,
/// state and policy checks for `action`. Returns the ciphertext and the algorithm's name.
pub(crate) fn seal(
    kms: &Kms,
    caller: &Caller,
    k: &CachedKey,
    algorithm: Option<&str>,
    action: &str,
    ctx: &BTreeMap<String, String>,
    plaintext: &[u8],
) -> KmsResult<(Vec<u8>, &'static str)> {
    let (size, alg, name) = check(kms, caller, algorithm, k, action, ctx)?;
    let max = max_plaintext(size, alg);
    if plaintext.len() > max {
        return Err(KmsError::new(
            Kind::Validation,
            format!(
                "Plaintext is {} bytes; {name} with {} encrypts at most {max} bytes",
                plaintext.len(),
                k.doc.key_spec
            ),
        ));
    }
    let public = OaepPublicEncryptingKey::new(private_key(kms, k)?.public_key())
        .map_err(KmsError::internal)?;
    let mut out = vec![0u8; public.ciphertext_size()];
    let n = public
        .encrypt(alg, plaintext, &mut out, None)
        .map_err(KmsError::internal)?
        .len();
    out.truncate(n);
    Ok((out, name))
}

/// RSA-OAEP decryption under `k`; any failure to decrypt is InvalidCiphertext.
pub(crate) fn open(
    kms: &Kms,
    caller: &Caller,
    k: &CachedKey,
    algorithm: Option<&str>,
    action: &str,
    ctx: &BTreeMap<String, String>,
    ciphertext: &[u8],
) -> KmsResult<(Zeroizing<Vec<u8>>, &'static str)> {
    let (size, alg, name) = check(kms, caller, algorithm, k, action, ctx)?;
    if ciphertext.len() != size {
        return Err(KmsError::new(Kind::InvalidCiphertext, ""));
    }
    let key = OaepPrivateDecryptingKey::new(private_key(kms, k)?).map_err(KmsError::internal)?;
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let n = key
        .decrypt(alg, ciphertext, &mut out, None)
        .map_err(|_| KmsError::new(Kind::InvalidCiphertext, ""))?
        .len();
    out.truncate(n);
    Ok((out, name))
}

/// Encrypt with asymmetric key `k` (`plaintext` already read, at most 4096 bytes).
pub(crate) fn encrypt(
    kms: &Kms,
    caller: &Caller,
    r: &Req,
    k: &CachedKey,
    plaintext: &[u8],
    ctx: &BTreeMap<String, String>,
) -> KmsResult<Value> {
    let (out, name) = seal(
        kms,
        caller,
        k,
        algorithm(r, MEMBER)?,
        "kms:Encrypt",
        ctx,
        plaintext,
    )?;
    Ok(json!({
        "CiphertextBlob": b64(&out),
        "KeyId": kms.key_arn(&k.doc.id),
        "EncryptionAlgorithm": name,
    }))
}

/// Decrypt with asymmetric key `k`; any failure to decrypt is InvalidCiphertext.
pub(crate) fn decrypt(
    kms: &Kms,
    caller: &Caller,
    r: &Req,
    k: &CachedKey,
    ciphertext: &[u8],
    ctx: &BTreeMap<String, String>,
) -> KmsResult<Value> {
    let (out, name) = open(
        kms,
        caller,
        k,
        algorithm(r, MEMBER)?,
        "kms:Decrypt",
        ctx,
        ciphertext,
    )?;
    Ok(json!({
        "KeyId": kms.key_arn(&k.doc.id),
        "Plaintext": b64(&out),
        "EncryptionAlgorithm": name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::KeySize;

    #[test]
    fn limits_match_aws_and_aws_lc() {
        let table = [
            (KeySize::Rsa2048, 214, 190),
            (KeySize::Rsa3072, 342, 318),
            (KeySize::Rsa4096, 470, 446),
        ];
        for (size, sha1, sha256) in table {
            assert_eq!(max_plaintext(size.len(), &OAEP_SHA1_MGF1SHA1), sha1);
            assert_eq!(max_plaintext(size.len(), &OAEP_SHA256_MGF1SHA256), sha256);
        }
        let (der, _) = super::super::generate(Spec::Rsa(KeySize::Rsa2048)).unwrap();
        let private = PrivateDecryptingKey::from_pkcs8(der.expose_secret()).unwrap();
        let public = OaepPublicEncryptingKey::new(private.public_key()).unwrap();
        for alg in [&OAEP_SHA1_MGF1SHA1, &OAEP_SHA256_MGF1SHA256] {
            let max = max_plaintext(256, alg);
            assert_eq!(public.max_plaintext_size(alg), max);
            let mut ct = vec![0u8; public.ciphertext_size()];
            let pt = vec![7u8; max];
            let ct = public.encrypt(alg, &pt, &mut ct, None).unwrap().to_vec();
            assert!(
                public
                    .encrypt(alg, &[0u8; 300][..max + 1], &mut [0u8; 256], None)
                    .is_err()
            );
            let key = OaepPrivateDecryptingKey::new(private.clone()).unwrap();
            let mut out = vec![0u8; key.min_output_size()];
            assert_eq!(key.decrypt(alg, &ct, &mut out, None).unwrap(), &pt[..]);
        }
    }
}
