//! Sign and Verify: RSASSA-PSS (salt length = hash length), RSASSA-PKCS1-v1_5 and ECDSA
//! (DER signatures), over a RAW message (hashed here) or a DIGEST the caller computed.
//!
//! Both message types go through aws-lc-rs's digest APIs (`sign_digest`, `verify_digest`):
//! a RAW message is hashed with `aws_lc_rs::digest` first, which is exactly what signing
//! the message does.

use std::collections::BTreeMap;

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{self, RsaEncoding, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Value, json};

use super::{Private, Spec, private_key};
use crate::error::{Kind, KmsError, KmsResult};
use crate::json::{Req, b64, concat};
use crate::keys::{key_of, usable};
use crate::model::{RSA_SIGNING_ALGORITHMS, signing_algorithms};
use crate::ops::Caller;
use crate::service::{CachedKey, Kms};

const MAX_MESSAGE: usize = 4096;
const MAX_SIGNATURE: usize = 6144;

/// Every `SigningAlgorithm` AWS defines (kura implements those [`Algorithm::named`] knows;
/// which of them a key spec supports is [`signing_algorithms`]).
const NAMES: &[&str] = &concat::<13>(&[
    RSA_SIGNING_ALGORITHMS,
    &["ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512"],
    &[
        "SM2DSA",
        "ML_DSA_SHAKE_256",
        "ED25519_SHA_512",
        "ED25519_PH_SHA_512",
    ],
]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Pss,
    Pkcs1,
    Ecdsa,
}

struct Algorithm {
    name: &'static str,
    scheme: Scheme,
    hash: &'static digest::Algorithm,
}

impl Algorithm {
    /// The algorithm `name` (one of [`NAMES`]), if kura implements it: the scheme from its
    /// prefix, the hash from its `SHA_*` suffix.
    fn named(name: &str) -> Option<Self> {
        let name = *NAMES.iter().find(|n| **n == name)?;
        let (scheme, hash) = [
            ("RSASSA_PSS_", Scheme::Pss),
            ("RSASSA_PKCS1_V1_5_", Scheme::Pkcs1),
            ("ECDSA_", Scheme::Ecdsa),
        ]
        .into_iter()
        .find_map(|(prefix, scheme)| Some((scheme, name.strip_prefix(prefix)?)))?;
        let hash = match hash {
            "SHA_256" => &digest::SHA256,
            "SHA_384" => &digest::SHA384,
            "SHA_512" => &digest::SHA512,
            _ => return None,
        };
        Some(Self { name, scheme, hash })
    }

    /// The RSA padding for signing (PSS salt length = hash length, aws-lc-rs's default).
    fn rsa_encoding(&self) -> &'static dyn RsaEncoding {
        match (self.scheme, self.hash.output_len()) {
            (Scheme::Pss, 32) => &signature::RSA_PSS_SHA256,
            (Scheme::Pss, 48) => &signature::RSA_PSS_SHA384,
            (Scheme::Pss, _) => &signature::RSA_PSS_SHA512,
            (_, 32) => &signature::RSA_PKCS1_SHA256,
            (_, 48) => &signature::RSA_PKCS1_SHA384,
            (_, _) => &signature::RSA_PKCS1_SHA512,
        }
    }

    /// The verification algorithm for a key of `spec` (usage already checked).
    fn verification(&self, spec: Spec) -> &'static dyn VerificationAlgorithm {
        match (spec, self.scheme, self.hash.output_len()) {
            (Spec::Ecc(curve), _, _) => curve.verification(),
            (Spec::Rsa(_), Scheme::Pss, 32) => &signature::RSA_PSS_2048_8192_SHA256,
            (Spec::Rsa(_), Scheme::Pss, 48) => &signature::RSA_PSS_2048_8192_SHA384,
            (Spec::Rsa(_), Scheme::Pss, _) => &signature::RSA_PSS_2048_8192_SHA512,
            (Spec::Rsa(_), _, 32) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (Spec::Rsa(_), _, 48) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (Spec::Rsa(_), _, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        }
    }
}

/// What a Sign or Verify request asks for: the algorithm and the digest to sign.
struct Request {
    alg: Algorithm,
    digest: Digest,
}

fn request(r: &Req) -> KmsResult<Request> {
    let message = r.req_blob("Message", 1, MAX_MESSAGE)?;
    let message_type = r
        .enum_str("MessageType", &["RAW", "DIGEST", "EXTERNAL_MU"])?
        .unwrap_or("RAW");
    let name = r
        .enum_str("SigningAlgorithm", NAMES)?
        .ok_or_else(|| KmsError::missing("signingAlgorithm"))?;
    let Some(alg) = Algorithm::named(name) else {
        return Err(KmsError::new(
            Kind::InvalidKeyUsage,
            format!("SigningAlgorithm {name} is not supported by kura"),
        ));
    };
    let digest = match message_type {
        "RAW" => digest::digest(alg.hash, &message),
        "DIGEST" => Digest::import_less_safe(&message, alg.hash).map_err(|_| {
            KmsError::new(
                Kind::Validation,
                format!(
                    "Digest is invalid length for algorithm {name}: it must be {} bytes",
                    alg.hash.output_len()
                ),
            )
        })?,
        other => {
            return Err(KmsError::new(
                Kind::Validation,
                format!("MessageType {other} is only valid for ML_DSA keys"),
            ));
        }
    };
    Ok(Request { alg, digest })
}

/// Checks that `k` signs with `alg`, is usable, and that `caller` may do `action`.
fn signing_key(
    kms: &Kms,
    caller: &Caller,
    k: &CachedKey,
    alg: &Algorithm,
    action: &str,
) -> KmsResult<Spec> {
    let arn = kms.key_arn(&k.doc.id);
    let spec = match Spec::of(&k.doc) {
        Some(s) if k.doc.key_usage == "SIGN_VERIFY" => s,
        _ => {
            return Err(KmsError::new(
                Kind::InvalidKeyUsage,
                format!(
                    "{arn} key usage is {} with spec {}; {action} needs an asymmetric SIGN_VERIFY key",
                    k.doc.key_usage, k.doc.key_spec
                ),
            ));
        }
    };
    if !signing_algorithms(&k.doc.key_spec).contains(&alg.name) {
        return Err(KmsError::new(
            Kind::InvalidKeyUsage,
            format!(
                "{} is not a valid signing algorithm for {arn} (spec {})",
                alg.name, k.doc.key_spec
            ),
        ));
    }
    usable(kms, k)?;
    kms.authorize(caller, action, k, &BTreeMap::new())?;
    Ok(spec)
}

pub(crate) fn sign(kms: &Kms, caller: &Caller, r: &Req) -> KmsResult<Value> {
    let req = request(r)?;
    let k = key_of(kms, r, true)?;
    let spec = signing_key(kms, caller, &k, &req.alg, "kms:Sign")?;
    let sig = match private_key(kms, &k, spec)? {
        Private::Rsa(kp) => {
            let mut sig = vec![0u8; kp.public_modulus_len()];
            kp.sign_digest(req.alg.rsa_encoding(), &req.digest, &mut sig)
                .map_err(KmsError::internal)?;
            sig
        }
        Private::Ecc(kp) => kp
            .sign_digest(&req.digest)
            .map_err(KmsError::internal)?
            .as_ref()
            .to_vec(),
    };
    Ok(json!({
        "KeyId": kms.key_arn(&k.doc.id),
        "Signature": b64(&sig),
        "SigningAlgorithm": req.alg.name,
    }))
}

pub(crate) fn verify(kms: &Kms, caller: &Caller, r: &Req) -> KmsResult<Value> {
    let req = request(r)?;
    let sig = r.req_blob("Signature", 1, MAX_SIGNATURE)?;
    let k = key_of(kms, r, true)?;
    let spec = signing_key(kms, caller, &k, &req.alg, "kms:Verify")?;
    let public = private_key(kms, &k, spec)?.public_der()?;
    UnparsedPublicKey::new(req.alg.verification(spec), &public)
        .verify_digest(&req.digest, &sig)
        .map_err(|_| KmsError::new(Kind::InvalidSignature, ""))?;
    Ok(json!({
        "KeyId": kms.key_arn(&k.doc.id),
        "SignatureValid": true,
        "SigningAlgorithm": req.alg.name,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{Curve, generate};
    use super::*;
    use aws_lc_rs::rsa::KeySize;

    /// Signs `digest` with `alg` under a fresh key of `spec` and verifies it (and a
    /// tampered digest) with the public key, as `sign`/`verify` do.
    fn round_trip(spec: Spec, name: &str) {
        let alg = Algorithm::named(name).unwrap();
        let (der, public) = generate(spec).unwrap();
        let key = Private::parse(spec, der.expose_secret()).unwrap();
        let d = digest::digest(alg.hash, b"message");
        let sig = match &key {
            Private::Rsa(kp) => {
                let mut s = vec![0u8; kp.public_modulus_len()];
                kp.sign_digest(alg.rsa_encoding(), &d, &mut s).unwrap();
                s
            }
            Private::Ecc(kp) => kp.sign_digest(&d).unwrap().as_ref().to_vec(),
        };
        let pk = UnparsedPublicKey::new(alg.verification(spec), &public);
        pk.verify_digest(&d, &sig).unwrap();
        // The RAW path agrees: aws-lc-rs verifying the message itself accepts it.
        pk.verify(b"message", &sig).unwrap();
        let other = digest::digest(alg.hash, b"messagE");
        assert!(pk.verify_digest(&other, &sig).is_err(), "{}", alg.name);
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        let rsa = Spec::Rsa(KeySize::Rsa2048);
        for name in RSA_SIGNING_ALGORITHMS {
            round_trip(rsa, name);
        }
        round_trip(Spec::Ecc(Curve::P256), "ECDSA_SHA_256");
        round_trip(Spec::Ecc(Curve::P384), "ECDSA_SHA_384");
        round_trip(Spec::Ecc(Curve::P521), "ECDSA_SHA_512");
        round_trip(Spec::Ecc(Curve::Secp256k1), "ECDSA_SHA_256");
    }

    #[test]
    fn every_algorithm_a_spec_supports_is_implemented() {
        for spec in [
            "RSA_2048",
            "ECC_NIST_P256",
            "ECC_NIST_P384",
            "ECC_NIST_P521",
        ] {
            for name in signing_algorithms(spec) {
                assert_eq!(Algorithm::named(name).map(|a| a.name), Some(name));
            }
        }
        assert!(Algorithm::named("SM2DSA").is_none());
        assert!(Algorithm::named("ED25519_SHA_512").is_none());
    }

    #[test]
    fn digest_length_and_message_type_are_validated() {
        let r = Req::parse(
            br#"{"Message":"AAAA","MessageType":"DIGEST","SigningAlgorithm":"ECDSA_SHA_256"}"#,
        )
        .unwrap();
        assert_eq!(request(&r).err().unwrap().kind, Kind::Validation);
        let r = Req::parse(br#"{"Message":"AAAA","SigningAlgorithm":"SM2DSA"}"#).unwrap();
        assert_eq!(request(&r).err().unwrap().kind, Kind::InvalidKeyUsage);
        let r = Req::parse(br#"{"Message":"AAAA"}"#).unwrap();
        assert_eq!(request(&r).err().unwrap().kind, Kind::Validation);
    }
}
