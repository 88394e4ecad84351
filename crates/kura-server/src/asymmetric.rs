//! Asymmetric KMS keys: RSA (2048/3072/4096) and ECC (NIST P-256/P-384/P-521, secp256k1)
//! key pairs, and the operations on them: GetPublicKey here, Sign and Verify in [`sign`],
//! RSA-OAEP Encrypt and Decrypt in [`oaep`], GenerateDataKeyPair[WithoutPlaintext] in
//! [`pair`].
//!
//! A key's material is its private key as PKCS#8 (v1) DER, sealed like symmetric material;
//! the public key is derived from it on demand and answered as SubjectPublicKeyInfo DER.
//! Every primitive is aws-lc-rs's.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair, RsaKeyPair,
};
use kura_crypto::SecretBytes;
use serde_json::{Value, json};

use crate::error::{Kind, KmsError, KmsResult};
use crate::json::{Req, b64};
use crate::keys::{key_of, usable};
use crate::model::{KeyDoc, encryption_algorithms, signing_algorithms};
use crate::ops::Caller;
use crate::service::{CachedKey, Kms};

mod oaep;
mod pair;
mod sign;

pub(crate) use oaep::{algorithm as oaep_algorithm, open as oaep_open, seal as oaep_seal};
pub(crate) use oaep::{decrypt, decrypt_key, encrypt};
pub(crate) use pair::generate_data_key_pair;
pub(crate) use sign::{sign, verify};

/// The asymmetric `KeySpec`s (and `KeyPairSpec`s) kura implements: those [`Spec::parse`]
/// knows.
pub(crate) const SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
];

/// An elliptic curve kura signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
    P521,
    Secp256k1,
}

impl Curve {
    /// The one ECDSA algorithm KMS allows on this curve (DER signatures).
    fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Self::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
            Self::Secp256k1 => &signature::ECDSA_P256K1_SHA256_ASN1_SIGNING,
        }
    }

    fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1,
            Self::P521 => &signature::ECDSA_P521_SHA512_ASN1,
            Self::Secp256k1 => &signature::ECDSA_P256K1_SHA256_ASN1,
        }
    }
}

/// An asymmetric key spec kura implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spec {
    Rsa(KeySize),
    Ecc(Curve),
}

impl Spec {
    /// The spec named `name` (a `KeySpec` or `KeyPairSpec`), if kura implements it.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RSA_2048" => Self::Rsa(KeySize::Rsa2048),
            "RSA_3072" => Self::Rsa(KeySize::Rsa3072),
            "RSA_4096" => Self::Rsa(KeySize::Rsa4096),
            "ECC_NIST_P256" => Self::Ecc(Curve::P256),
            "ECC_NIST_P384" => Self::Ecc(Curve::P384),
            "ECC_NIST_P521" => Self::Ecc(Curve::P521),
            "ECC_SECG_P256K1" => Self::Ecc(Curve::Secp256k1),
            _ => return None,
        })
    }

    /// The spec of key `doc`, if it is an asymmetric key kura implements.
    pub(crate) fn of(doc: &KeyDoc) -> Option<Self> {
        Self::parse(&doc.key_spec)
    }
}

/// Whether `doc` is an asymmetric key (its Encrypt/Decrypt take the asymmetric path).
pub(crate) fn is_asymmetric(doc: &KeyDoc) -> bool {
    Spec::of(doc).is_some()
}

/// Checks that CreateKey may make a key of `spec` for `usage` (the usage already checked
/// against the spec in general); an asymmetric spec kura lacks is UnsupportedOperation.
pub(crate) fn check_create(spec: &str, usage: &str) -> KmsResult<()> {
    if Spec::parse(spec).is_none() {
        return Err(KmsError::new(
            Kind::UnsupportedOperation,
            format!("KeySpec {spec} is not supported by kura (aws-lc-rs has no {spec} keys)"),
        ));
    }
    if usage == "KEY_AGREEMENT" {
        return Err(KmsError::new(
            Kind::UnsupportedOperation,
            "KeyUsage KEY_AGREEMENT is not supported by kura (DeriveSharedSecret is not implemented)",
        ));
    }
    Ok(())
}

/// A new key pair of `spec`: the private key as PKCS#8 DER, and the public key as
/// SubjectPublicKeyInfo DER.
pub(crate) fn generate(spec: Spec) -> KmsResult<(SecretBytes, Vec<u8>)> {
    match spec {
        Spec::Rsa(size) => {
            let kp = RsaKeyPair::generate(size).map_err(KmsError::internal)?;
            let der: Pkcs8V1Der<'static> = kp.as_der().map_err(KmsError::internal)?;
            let public = kp.public_key().as_der().map_err(KmsError::internal)?;
            Ok((
                SecretBytes::new(der.as_ref().to_vec()),
                public.as_ref().to_vec(),
            ))
        }
        Spec::Ecc(curve) => {
            let kp = EcdsaKeyPair::generate(curve.signing()).map_err(KmsError::internal)?;
            let doc = kp.to_pkcs8v1().map_err(KmsError::internal)?;
            let public = kp.public_key().as_der().map_err(KmsError::internal)?;
            Ok((
                SecretBytes::new(doc.as_ref().to_vec()),
                public.as_ref().to_vec(),
            ))
        }
    }
}

/// The material of a new key of `spec` (PKCS#8 DER).
pub(crate) fn generate_material(spec: &str) -> KmsResult<SecretBytes> {
    let s = Spec::parse(spec).ok_or_else(|| {
        KmsError::new(
            Kind::UnsupportedOperation,
            format!("KeySpec {spec} is not supported by kura"),
        )
    })?;
    generate(s).map(|(private, _)| private)
}

/// A parsed private key.
pub(crate) enum Private {
    Rsa(RsaKeyPair),
    Ecc(EcdsaKeyPair),
}

impl Private {
    /// Parses PKCS#8 `der` as a key of `spec`; a key of another type or size is refused
    /// (also the check for imported asymmetric material).
    pub(crate) fn parse(spec: Spec, der: &[u8]) -> Result<Self, String> {
        match spec {
            Spec::Rsa(size) => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(|e| e.to_string())?;
                if kp.public_modulus_len() != size.len() {
                    return Err(format!(
                        "the RSA modulus is {} bits, not {}",
                        kp.public_modulus_len() * 8,
                        size.len() * 8
                    ));
                }
                Ok(Self::Rsa(kp))
            }
            Spec::Ecc(curve) => EcdsaKeyPair::from_pkcs8(curve.signing(), der)
                .map(Self::Ecc)
                .map_err(|e| e.to_string()),
        }
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub(crate) fn public_der(&self) -> KmsResult<Vec<u8>> {
        let der = match self {
            Self::Rsa(kp) => kp.public_key().as_der(),
            Self::Ecc(kp) => kp.public_key().as_der(),
        }
        .map_err(KmsError::internal)?;
        Ok(der.as_ref().to_vec())
    }
}

/// The unsealed private key (PKCS#8 DER) of asymmetric key `k`.
pub(crate) fn private_der(kms: &Kms, k: &CachedKey) -> KmsResult<SecretBytes> {
    let mid = k.doc.current_material.as_deref().ok_or_else(|| {
        KmsError::new(
            Kind::InvalidState,
            format!("{} is pending import.", kms.key_arn(&k.doc.id)),
        )
    })?;
    kms.material_bytes(k, mid)
}

/// The parsed private key of `k`, of spec `spec`.
pub(crate) fn private_key(kms: &Kms, k: &CachedKey, spec: Spec) -> KmsResult<Private> {
    let der = private_der(kms, k)?;
    Private::parse(spec, der.expose_secret()).map_err(|e| {
        KmsError::internal(format!(
            "material of key {} is not a {} private key: {e}",
            k.doc.id, k.doc.key_spec
        ))
    })
}

pub(crate) fn get_public_key(kms: &Kms, caller: &Caller, r: &Req) -> KmsResult<Value> {
    let k = key_of(kms, r, true)?;
    let arn = kms.key_arn(&k.doc.id);
    let Some(spec) = Spec::of(&k.doc) else {
        return Err(KmsError::new(
            Kind::UnsupportedOperation,
            format!(
                "{arn} is a {} key; GetPublicKey needs an asymmetric key",
                k.doc.key_spec
            ),
        ));
    };
    usable(kms, &k)?;
    kms.authorize(caller, "kms:GetPublicKey", &k, &BTreeMap::new())?;
    let public = private_key(kms, &k, spec)?.public_der()?;
    let mut v = json!({
        "KeyId": arn,
        "PublicKey": b64(&public),
        "CustomerMasterKeySpec": k.doc.key_spec,
        "KeySpec": k.doc.key_spec,
        "KeyUsage": k.doc.key_usage,
    });
    if let Some(o) = v.as_object_mut() {
        match k.doc.key_usage.as_str() {
            "ENCRYPT_DECRYPT" => {
                o.insert(
                    "EncryptionAlgorithms".into(),
                    json!(encryption_algorithms(&k.doc.key_spec)),
                );
            }
            "SIGN_VERIFY" => {
                o.insert(
                    "SigningAlgorithms".into(),
                    json!(signing_algorithms(&k.doc.key_spec)),
                );
            }
            _ => {}
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_and_sizes_are_checked() {
        for name in [
            "RSA_2048",
            "ECC_NIST_P256",
            "ECC_NIST_P384",
            "ECC_NIST_P521",
            "ECC_SECG_P256K1",
        ] {
            let spec = Spec::parse(name).unwrap();
            let (private, public) = generate(spec).unwrap();
            let p = Private::parse(spec, private.expose_secret()).unwrap();
            assert_eq!(p.public_der().unwrap(), public, "{name}");
            // SPKI DER starts with a SEQUENCE.
            assert_eq!(public[0], 0x30);
        }
        let (rsa, _) = generate(Spec::Rsa(KeySize::Rsa2048)).unwrap();
        let e = Private::parse(Spec::Rsa(KeySize::Rsa3072), rsa.expose_secret())
            .err()
            .unwrap();
        assert!(e.contains("2048 bits"), "{e}");
        assert!(Private::parse(Spec::Ecc(Curve::P256), rsa.expose_secret()).is_err());
        let (p384, _) = generate(Spec::Ecc(Curve::P384)).unwrap();
        assert!(Private::parse(Spec::Ecc(Curve::P256), p384.expose_secret()).is_err());
        assert!(Spec::parse("SM2").is_none() && Spec::parse("SYMMETRIC_DEFAULT").is_none());
        assert!(check_create("SM2", "SIGN_VERIFY").is_err());
        assert!(check_create("ECC_NIST_P256", "KEY_AGREEMENT").is_err());
        assert!(check_create("RSA_4096", "ENCRYPT_DECRYPT").is_ok());
    }
}
