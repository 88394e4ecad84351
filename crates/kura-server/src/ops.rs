//! Dispatch of `TrentService.<Operation>` to its handler, and authorisation by key policy.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Kind, KmsError, KmsResult};
use crate::json::Req;
use crate::policy::{Access, Decision};
use crate::service::{CachedKey, Kms};
use crate::{aliases, asymmetric, crypto, import, keys, rotation};

/// Who is calling, once SigV4 has verified the request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user name.
    pub user: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
}

/// Every operation kura answers.
pub const OPERATIONS: &[&str] = &[
    "CancelKeyDeletion",
    "CreateAlias",
    "CreateKey",
    "Decrypt",
    "DeleteAlias",
    "DeleteImportedKeyMaterial",
    "DescribeKey",
    "DisableKey",
    "DisableKeyRotation",
    "EnableKey",
    "EnableKeyRotation",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "GenerateRandom",
    "GetKeyPolicy",
    "GetKeyRotationStatus",
    "GetParametersForImport",
    "GetPublicKey",
    "ImportKeyMaterial",
    "ListAliases",
    "ListKeyPolicies",
    "ListKeyRotations",
    "ListKeys",
    "ListResourceTags",
    "PutKeyPolicy",
    "ReEncrypt",
    "RotateKeyOnDemand",
    "ScheduleKeyDeletion",
    "Sign",
    "TagResource",
    "UntagResource",
    "UpdateAlias",
    "UpdateKeyDescription",
    "Verify",
    "VerifyMac",
];

impl Kms {
    /// Checks the key policy of `k` for `action` by `caller`; a denial is logged (without
    /// secrets) and answered with AWS's AccessDeniedException.
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        k: &CachedKey,
        ctx: &BTreeMap<String, String>,
    ) -> KmsResult<()> {
        let arn = self.key_arn(&k.doc.id);
        let policy = k.policy()?;
        let decision = policy.evaluate(&Access {
            principal: &caller.arn,
            account: &self.id.account,
            action,
            resource: &arn,
            encryption_context: ctx,
            extra: &[],
        });
        match decision {
            Decision::Allow => Ok(()),
            d => {
                tracing::warn!(principal = %caller.arn, action, key = %arn, decision = ?d, "access denied");
                let why = match d {
                    Decision::ExplicitDeny => "with an explicit deny in a resource-based policy",
                    _ => "because no resource-based policy allows the action",
                };
                Err(KmsError::new(
                    Kind::AccessDenied,
                    format!(
                        "User: {} is not authorized to perform: {action} on resource: {arn} {why}",
                        caller.arn
                    ),
                ))
            }
        }
    }

    /// Answers one request.
    pub fn handle(&self, caller: &Caller, operation: &str, body: &[u8]) -> KmsResult<Value> {
        let r = Req::parse(body)?;
        // Key-management operations check the key policy of the key they touch.
        let on_key = |action: &str, aliases: bool| -> KmsResult<()> {
            let k = keys::key_of(self, &r, aliases)?;
            self.authorize(caller, action, &k, &BTreeMap::new())
        };
        let action = format!("kms:{operation}");
        match operation {
            "CreateKey" => keys::create(self, &r),
            "ListKeys" => keys::list(self, &r),
            "ListAliases" => aliases::list(self, &r),
            "GenerateRandom" => crypto::generate_random(&r),
            "DescribeKey" => {
                on_key(&action, true)?;
                keys::describe(self, &r)
            }
            "UpdateKeyDescription"
            | "EnableKey"
            | "DisableKey"
            | "ScheduleKeyDeletion"
            | "CancelKeyDeletion"
            | "TagResource"
            | "UntagResource"
            | "ListResourceTags"
            | "GetKeyPolicy"
            | "PutKeyPolicy"
            | "ListKeyPolicies" => {
                on_key(&action, false)?;
                match operation {
                    "UpdateKeyDescription" => keys::update_description(self, &r),
                    "EnableKey" => keys::enable(self, &r),
                    "DisableKey" => keys::disable(self, &r),
                    "ScheduleKeyDeletion" => keys::schedule_deletion(self, &r),
                    "CancelKeyDeletion" => keys::cancel_deletion(self, &r),
                    "TagResource" => keys::tag(self, &r),
                    "UntagResource" => keys::untag(self, &r),
                    "ListResourceTags" => keys::list_tags(self, &r),
                    "GetKeyPolicy" => keys::get_policy(self, &r),
                    "PutKeyPolicy" => keys::put_policy(self, &r),
                    _ => keys::list_policies(self, &r),
                }
            }
            "GetParametersForImport" | "ImportKeyMaterial" | "DeleteImportedKeyMaterial" => {
                on_key(&action, false)?;
                match operation {
                    "GetParametersForImport" => import::get_parameters(self, &r),
                    "ImportKeyMaterial" => import::import(self, &r),
                    _ => import::delete(self, &r),
                }
            }
            "EnableKeyRotation"
            | "DisableKeyRotation"
            | "GetKeyRotationStatus"
            | "RotateKeyOnDemand"
            | "ListKeyRotations" => {
                on_key(&action, false)?;
                match operation {
                    "EnableKeyRotation" => rotation::enable(self, &r),
                    "DisableKeyRotation" => rotation::disable(self, &r),
                    "GetKeyRotationStatus" => rotation::status(self, &r),
                    "RotateKeyOnDemand" => rotation::rotate_on_demand(self, &r),
                    _ => rotation::list(self, &r),
                }
            }
            "CreateAlias" | "UpdateAlias" | "DeleteAlias" => {
                if let Some(t) = r.opt_str("TargetKeyId", 1, 2048)? {
                    let k = self.key(&self.resolve(t, false)?)?;
                    self.authorize(caller, &action, &k, &BTreeMap::new())?;
                }
                match operation {
                    "CreateAlias" => aliases::create(self, &r),
                    "UpdateAlias" => aliases::update(self, &r),
                    _ => aliases::delete(self, &r),
                }
            }
            "Encrypt" => crypto::encrypt(self, caller, &r),
            "Decrypt" => crypto::decrypt(self, caller, &r),
            "ReEncrypt" => crypto::re_encrypt(self, caller, &r),
            "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
                let with_plaintext = operation == "GenerateDataKey";
                crypto::generate_data_key(self, caller, &r, &action, with_plaintext)
            }
            "GenerateMac" => crypto::generate_mac(self, caller, &r),
            "VerifyMac" => crypto::verify_mac(self, caller, &r),
            "GetPublicKey" => asymmetric::get_public_key(self, caller, &r),
            "Sign" => asymmetric::sign(self, caller, &r),
            "Verify" => asymmetric::verify(self, caller, &r),
            "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
                let with_plaintext = operation == "GenerateDataKeyPair";
                asymmetric::generate_data_key_pair(self, caller, &r, &action, with_plaintext)
            }
            other => Err(KmsError::new(
                Kind::UnsupportedOperation,
                format!("{other} is not supported by this kura server"),
            )),
        }
    }
}
