//! GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext: a new key pair per call,
//! its private key (PKCS#8 DER) sealed under a symmetric KMS key as a normal kura blob
//! (so Decrypt opens it with the same encryption context), its public key as
//! SubjectPublicKeyInfo DER.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use kura_crypto::SecretBytes;
use serde_json::{Value, json};

use super::{SPECS, Spec, generate};
use crate::crypto::{check_encryption_key, seal};
use crate::error::{Kind, KmsError, KmsResult};
use crate::json::{Req, b64, concat};
use crate::keys::key_of;
use crate::ops::Caller;
use crate::service::Kms;

/// Every `KeyPairSpec` AWS defines that kura might be asked for.
const NAMES: &[&str] = &concat::<9>(&[SPECS, &["ECC_NIST_EDWARDS25519", "SM2"]]);

/// A new key pair of `spec`: PKCS#8 DER private key and SPKI DER public key.
fn new_pair(spec: &str) -> KmsResult<(SecretBytes, Vec<u8>)> {
    if spec == "ECC_NIST_EDWARDS25519" {
        let kp = Ed25519KeyPair::generate().map_err(KmsError::internal)?;
        let private = kp.to_pkcs8v1().map_err(KmsError::internal)?;
        let public = kp.public_key().as_der().map_err(KmsError::internal)?;
        return Ok((
            SecretBytes::new(private.as_ref().to_vec()),
            public.as_ref().to_vec(),
        ));
    }
    let s = Spec::parse(spec).ok_or_else(|| {
        KmsError::new(
            Kind::UnsupportedOperation,
            format!("KeyPairSpec {spec} is not supported by kura (aws-lc-rs has no {spec} keys)"),
        )
    })?;
    generate(s)
}

/// GenerateDataKeyPair (`with_plaintext`) or GenerateDataKeyPairWithoutPlaintext.
pub(crate) fn generate_data_key_pair(
    kms: &Kms,
    caller: &Caller,
    r: &Req,
    action: &str,
    with_plaintext: bool,
) -> KmsResult<Value> {
    let spec = r
        .enum_str("KeyPairSpec", NAMES)?
        .ok_or_else(|| KmsError::missing("keyPairSpec"))?;
    let ctx = r.string_map("EncryptionContext")?;
    if !r.string_map("Recipient")?.is_empty() {
        return Err(KmsError::new(
            Kind::UnsupportedOperation,
            "Recipient (Nitro Enclaves attestation) is not supported by kura",
        ));
    }
    let k = key_of(kms, r, true)?;
    // All checks before the (for RSA, costly) key generation.
    check_encryption_key(kms, caller, &k, action, &ctx)?;
    let (private, public) = new_pair(spec)?;
    let blob = seal(kms, &k, &ctx, private.expose_secret())?;
    let mut v = json!({
        "KeyId": kms.key_arn(&k.doc.id),
        "KeyPairSpec": spec,
        "PrivateKeyCiphertextBlob": b64(&blob),
        "PublicKey": b64(&public),
    });
    if with_plaintext && let Some(o) = v.as_object_mut() {
        o.insert("PrivateKeyPlaintext".into(), b64(private.expose_secret()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_implemented_pair_spec_generates() {
        for spec in NAMES
            .iter()
            .filter(|s| **s != "SM2" && !s.starts_with("RSA_"))
        {
            let (private, public) = new_pair(spec).unwrap();
            assert_eq!(
                (private.expose_secret()[0], public[0]),
                (0x30, 0x30),
                "{spec}"
            );
        }
        let (private, _) = new_pair("RSA_2048").unwrap();
        assert!(private.len() > 1000);
        assert_eq!(
            new_pair("SM2").err().unwrap().kind,
            Kind::UnsupportedOperation
        );
    }
}
