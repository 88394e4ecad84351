//! What the KMS stores about a key, and how it appears on the wire.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Object kinds in the keystore's object table.
pub(crate) const KIND_KEY: &str = "kms-key";
pub(crate) const KIND_MATERIAL: &str = "kms-material";
pub(crate) const KIND_ALIAS: &str = "alias";
pub(crate) const KIND_USER: &str = "user";
pub(crate) const KIND_ACCESS_KEY: &str = "access-key";

/// Key states.
pub(crate) const ENABLED: &str = "Enabled";
pub(crate) const DISABLED: &str = "Disabled";
pub(crate) const PENDING_DELETION: &str = "PendingDeletion";
pub(crate) const PENDING_IMPORT: &str = "PendingImport";

/// A tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tag {
    pub(crate) key: String,
    pub(crate) value: String,
}

/// One version of a key's material (the current one encrypts; all decrypt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MaterialMeta {
    /// 64 hex digits, as in `CurrentKeyMaterialId`.
    pub(crate) id: String,
    pub(crate) created: i64,
    /// `AUTOMATIC` or `ON_DEMAND` for rotations; `None` for the first material.
    pub(crate) rotation_type: Option<String>,
}

/// A KMS key's metadata (the material lives in separate, sealed objects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyDoc {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) description: String,
    pub(crate) key_spec: String,
    pub(crate) key_usage: String,
    pub(crate) origin: String,
    pub(crate) state: String,
    pub(crate) deletion_date: Option<i64>,
    pub(crate) pending_window_days: Option<i64>,
    pub(crate) policy: String,
    pub(crate) tags: Vec<Tag>,
    pub(crate) rotation_enabled: bool,
    pub(crate) rotation_period_days: Option<i64>,
    pub(crate) next_rotation: Option<i64>,
    pub(crate) materials: Vec<MaterialMeta>,
    pub(crate) current_material: Option<String>,
    pub(crate) valid_to: Option<i64>,
    pub(crate) expiration_model: Option<String>,
}

impl KeyDoc {
    /// Whether this key encrypts (a symmetric encryption key).
    pub(crate) fn is_symmetric(&self) -> bool {
        self.key_spec == "SYMMETRIC_DEFAULT"
    }

    /// `DescribeKey`'s `KeyMetadata`.
    pub(crate) fn metadata(&self, arn: &str, account: &str) -> Value {
        let mut m = json!({
            "AWSAccountId": account,
            "KeyId": self.id,
            "Arn": arn,
            "CreationDate": self.created,
            "Enabled": self.state == ENABLED,
            "Description": self.description,
            "KeyUsage": self.key_usage,
            "KeyState": self.state,
            "Origin": self.origin,
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": self.key_spec,
            "KeySpec": self.key_spec,
            "MultiRegion": false,
        });
        if let Some(obj) = m.as_object_mut() {
            if let Some(d) = self.deletion_date {
                obj.insert("DeletionDate".into(), json!(d));
            }
            if let Some(w) = self.pending_window_days {
                obj.insert("PendingDeletionWindowInDays".into(), json!(w));
            }
            if let Some(v) = self.valid_to {
                obj.insert("ValidTo".into(), json!(v));
            }
            if let Some(e) = &self.expiration_model {
                obj.insert("ExpirationModel".into(), json!(e));
            }
            if let Some(c) = &self.current_material {
                obj.insert("CurrentKeyMaterialId".into(), json!(c));
            }
            match self.key_usage.as_str() {
                "ENCRYPT_DECRYPT" => {
                    obj.insert(
                        "EncryptionAlgorithms".into(),
                        json!(encryption_algorithms(&self.key_spec)),
                    );
                }
                "SIGN_VERIFY" => {
                    obj.insert(
                        "SigningAlgorithms".into(),
                        json!(signing_algorithms(&self.key_spec)),
                    );
                }
                "GENERATE_VERIFY_MAC" => {
                    obj.insert(
                        "MacAlgorithms".into(),
                        json!(mac_algorithms(&self.key_spec)),
                    );
                }
                _ => {}
            }
        }
        m
    }
}

/// Encryption algorithms a key spec supports.
pub(crate) fn encryption_algorithms(spec: &str) -> Vec<&'static str> {
    match spec {
        "SYMMETRIC_DEFAULT" => vec!["SYMMETRIC_DEFAULT"],
        s if s.starts_with("RSA_") => vec!["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"],
        _ => Vec::new(),
    }
}

/// The signing algorithms of an RSA key spec.
pub(crate) const RSA_SIGNING_ALGORITHMS: &[&str] = &[
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
];

/// Signing algorithms a key spec supports.
pub(crate) fn signing_algorithms(spec: &str) -> Vec<&'static str> {
    match spec {
        s if s.starts_with("RSA_") => RSA_SIGNING_ALGORITHMS.to_vec(),
        "ECC_NIST_P256" | "ECC_SECG_P256K1" => vec!["ECDSA_SHA_256"],
        "ECC_NIST_P384" => vec!["ECDSA_SHA_384"],
        "ECC_NIST_P521" => vec!["ECDSA_SHA_512"],
        _ => Vec::new(),
    }
}

/// MAC algorithms a key spec supports.
pub(crate) fn mac_algorithms(spec: &str) -> Vec<&'static str> {
    match spec {
        "HMAC_256" => vec!["HMAC_SHA_256"],
        "HMAC_384" => vec!["HMAC_SHA_384"],
        "HMAC_512" => vec!["HMAC_SHA_512"],
        _ => Vec::new(),
    }
}
