//! What can go wrong with a master key in a KMS, said so that an operator knows what to
//! do: every message names the key and the KMS (endpoint or region). Raw SDK errors are
//! never shown; a service's own error code and message are.

use std::error::Error as StdError;
use std::fmt;

use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

use crate::aws::{SdkFailure, classify_sdk_failure};

/// The kind of a [`KmsError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KmsErrorKind {
    /// The KMS did not answer: connection refused, timeout, DNS.
    Unreachable,
    /// The KMS has no such key (`NotFoundException`).
    UnknownKey,
    /// The credentials may not use the key (`AccessDeniedException`).
    AccessDenied,
    /// The key is disabled, pending deletion or unavailable (`DisabledException`,
    /// `KMSInvalidStateException`).
    Disabled,
    /// The ciphertext does not decrypt under this key with this encryption context
    /// (`InvalidCiphertextException`, `IncorrectKeyException`).
    WrongContext,
    /// The KMS does not accept the credentials, or there are none
    /// (`UnrecognizedClientException`, signature errors).
    BadCredentials,
    /// No region is configured.
    MissingRegion,
    /// The key cannot encrypt (an asymmetric or HMAC key).
    Unusable,
    /// Anything else the KMS answered.
    Other,
}

/// A failure of a KMS master key. [`std::fmt::Display`] gives the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsError {
    kind: KmsErrorKind,
    message: String,
}

impl KmsError {
    pub(crate) fn new(kind: KmsErrorKind, message: String) -> Self {
        Self { kind, message }
    }

    /// What went wrong.
    pub fn kind(&self) -> KmsErrorKind {
        self.kind
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KmsError {}

/// The names an error message uses for one key: the key as configured (and as resolved),
/// the KMS, and the encryption context.
pub(crate) struct Names<'a> {
    /// `alias/kura`, or `alias/kura (arn:…)` once resolved.
    pub(crate) key: &'a str,
    /// `the KMS at http://… (region r)` or `AWS KMS in region r`.
    pub(crate) place: &'a str,
}

impl Names<'_> {
    pub(crate) fn error(&self, kind: KmsErrorKind, detail: &str) -> crate::Error {
        let (key, place) = (self.key, self.place);
        let message = match kind {
            KmsErrorKind::Unreachable => format!(
                "cannot reach {place} for master key {key} ({detail}); check the endpoint \
                 (endpoint = … in [security.encryption.master-key], KURA_KMS_ENDPOINT), the region \
                 and the network, and that the KMS is running"
            ),
            KmsErrorKind::UnknownKey => format!(
                "{place} has no key {key} ({detail}); check the key id (key-id = …, KURA_AWS_CMK) \
                 and the region: a key id or alias exists in one account and region only"
            ),
            KmsErrorKind::AccessDenied => format!(
                "{place} denies these credentials the use of master key {key} ({detail}); grant \
                 them kms:DescribeKey, kms:Encrypt and kms:Decrypt on the key (key policy or IAM \
                 policy), or use credentials that have them"
            ),
            KmsErrorKind::Disabled => format!(
                "master key {key} in {place} cannot be used now ({detail}); enable it \
                 (aws kms enable-key) or, if it is pending deletion, cancel the deletion \
                 (aws kms cancel-key-deletion)"
            ),
            KmsErrorKind::WrongContext => format!(
                "{detail} does not decrypt under key {key} in {place}: it was wrapped under another \
                 key or another encryption context; configure the key and the encryption context \
                 it was wrapped with (key-id and encryption-context in \
                 [security.encryption.master-key], KURA_AWS_CMK and KURA_AWS_CMK_EC), or restore \
                 the keystore from a backup"
            ),
            KmsErrorKind::BadCredentials => format!(
                "{place} does not accept the AWS credentials, or none were found, for master key \
                 {key} ({detail}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) \
                 to credentials this KMS knows"
            ),
            KmsErrorKind::MissingRegion => format!(
                "master key {key}: no AWS region is configured; set region = … in \
                 [security.encryption.master-key], AWS_REGION, or --region"
            ),
            KmsErrorKind::Unusable => format!(
                "master key {key} in {place} cannot wrap keys ({detail}); use a symmetric \
                 ENCRYPT_DECRYPT key (aws kms create-key with the default key spec)"
            ),
            KmsErrorKind::Other => {
                format!("{place} failed for master key {key}: {detail}")
            }
        };
        crate::Error::Kms(KmsError::new(kind, message))
    }

    /// Classifies a failed call `op` (`Encrypt`, …). `what` names the object of a
    /// wrong-context failure ("KEK 17 (encryption context {…})").
    pub(crate) fn sdk<E>(&self, op: &str, e: SdkError<E, HttpResponse>, what: &str) -> crate::Error
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        match classify_sdk_failure(&e) {
            SdkFailure::Service { code, message, .. } => {
                let code = code.unwrap_or("an unnamed error");
                let detail = match message {
                    Some(m) if !m.is_empty() => format!("{op}: {code}: {m}"),
                    _ => format!("{op}: {code}"),
                };
                let kind = match code {
                    "NotFoundException" => KmsErrorKind::UnknownKey,
                    "AccessDeniedException" | "AccessDenied" => KmsErrorKind::AccessDenied,
                    "DisabledException"
                    | "KMSInvalidStateException"
                    | "KeyUnavailableException" => KmsErrorKind::Disabled,
                    "InvalidCiphertextException" | "IncorrectKeyException" => {
                        return self.error(KmsErrorKind::WrongContext, what);
                    }
                    "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "IncompleteSignature"
                    | "IncompleteSignatureException"
                    | "MissingAuthenticationToken"
                    | "MissingAuthenticationTokenException"
                    | "InvalidClientTokenId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredTokenException" => KmsErrorKind::BadCredentials,
                    "InvalidKeyUsageException" => KmsErrorKind::Unusable,
                    _ => KmsErrorKind::Other,
                };
                self.error(kind, &detail)
            }
            SdkFailure::TimedOut => {
                self.error(KmsErrorKind::Unreachable, &format!("{op} timed out"))
            }
            SdkFailure::Unreachable(chain) => {
                self.error(KmsErrorKind::Unreachable, &format!("{op}: {chain}"))
            }
            SdkFailure::Credentials(chain) => {
                self.error(KmsErrorKind::BadCredentials, &format!("{op}: {chain}"))
            }
            SdkFailure::NotAResponse(chain) => self.error(
                KmsErrorKind::Other,
                &format!(
                    "{op}: the answer is not a KMS response ({chain}); check that the endpoint is a KMS"
                ),
            ),
            SdkFailure::Other(chain) => self.error(KmsErrorKind::Other, &format!("{op}: {chain}")),
        }
    }
}
