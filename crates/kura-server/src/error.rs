//! KMS errors as AWS names them, and the one place they become `__type` and a status.

/// The kinds of error a KMS answers with (the `__type` of the response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A field failed validation.
    Validation,
    /// The key, alias or resource does not exist.
    NotFound,
    /// The key is disabled.
    Disabled,
    /// The key's state does not allow the operation.
    InvalidState,
    /// The ciphertext is not valid for this key or context.
    InvalidCiphertext,
    /// Decrypt was given a KeyId other than the ciphertext's key.
    IncorrectKey,
    /// The key's usage does not allow the operation.
    InvalidKeyUsage,
    /// The caller may not do this.
    AccessDenied,
    /// The alias or resource exists already.
    AlreadyExists,
    /// The alias name is invalid.
    InvalidAliasName,
    /// A marker for paging is invalid.
    InvalidMarker,
    /// A tag is invalid.
    Tag,
    /// The operation is not supported for this key or by this server.
    UnsupportedOperation,
    /// A limit was exceeded.
    LimitExceeded,
    /// The policy document is malformed.
    MalformedPolicyDocument,
    /// The import token has expired.
    ExpiredImportToken,
    /// The import token is invalid.
    InvalidImportToken,
    /// The imported material does not match the key's earlier material.
    IncorrectKeyMaterial,
    /// A signature did not verify.
    InvalidSignature,
    /// A MAC did not verify.
    InvalidMac,
    /// The request was malformed at the protocol level.
    Serialization,
    /// The target operation is unknown.
    UnknownOperation,
    /// The request carries no signature.
    MissingAuthenticationToken,
    /// The signature is malformed.
    IncompleteSignature,
    /// The access key id is unknown.
    UnrecognizedClient,
    /// The request signature does not verify (or is too old, or for another region).
    RequestSignature,
    /// Something failed inside the server.
    Internal,
}

impl Kind {
    /// The `__type` clients match on.
    pub fn aws_type(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::NotFound => "NotFoundException",
            Self::Disabled => "DisabledException",
            Self::InvalidState => "KMSInvalidStateException",
            Self::InvalidCiphertext => "InvalidCiphertextException",
            Self::IncorrectKey => "IncorrectKeyException",
            Self::InvalidKeyUsage => "InvalidKeyUsageException",
            Self::AccessDenied => "AccessDeniedException",
            Self::AlreadyExists => "AlreadyExistsException",
            Self::InvalidAliasName => "InvalidAliasNameException",
            Self::InvalidMarker => "InvalidMarkerException",
            Self::Tag => "TagException",
            Self::UnsupportedOperation => "UnsupportedOperationException",
            Self::LimitExceeded => "LimitExceededException",
            Self::MalformedPolicyDocument => "MalformedPolicyDocumentException",
            Self::ExpiredImportToken => "ExpiredImportTokenException",
            Self::InvalidImportToken => "InvalidImportTokenException",
            Self::IncorrectKeyMaterial => "IncorrectKeyMaterialException",
            Self::InvalidSignature => "KMSInvalidSignatureException",
            Self::InvalidMac => "KMSInvalidMacException",
            Self::Serialization => "SerializationException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::RequestSignature => "InvalidSignatureException",
            Self::Internal => "KMSInternalException",
        }
    }

    /// The HTTP status: 400 for every client error (as AWS sends them), 500 for ours.
    pub fn status(self) -> u16 {
        match self {
            Self::Internal => 500,
            Self::Validation
            | Self::NotFound
            | Self::Disabled
            | Self::InvalidState
            | Self::InvalidCiphertext
            | Self::IncorrectKey
            | Self::InvalidKeyUsage
            | Self::AccessDenied
            | Self::AlreadyExists
            | Self::InvalidAliasName
            | Self::InvalidMarker
            | Self::Tag
            | Self::UnsupportedOperation
            | Self::LimitExceeded
            | Self::MalformedPolicyDocument
            | Self::ExpiredImportToken
            | Self::InvalidImportToken
            | Self::IncorrectKeyMaterial
            | Self::InvalidSignature
            | Self::InvalidMac
            | Self::Serialization
            | Self::UnknownOperation
            | Self::MissingAuthenticationToken
            | Self::IncompleteSignature
            | Self::UnrecognizedClient
            | Self::RequestSignature => 400,
        }
    }
}

/// An error answered to a KMS client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.aws_type())]
pub struct KmsError {
    /// The kind.
    pub kind: Kind,
    /// The message (never a secret).
    pub message: String,
}

impl KmsError {
    /// An error of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// AWS's validation wording for one field.
    pub fn validation(value: impl std::fmt::Display, member: &str, constraint: &str) -> Self {
        Self::new(
            Kind::Validation,
            format!(
                "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must {constraint}"
            ),
        )
    }

    /// A required field is missing.
    pub fn missing(member: &str) -> Self {
        Self::new(
            Kind::Validation,
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )
    }

    /// A failure inside the server; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            Kind::Internal,
            "An internal error occurred; see the server log",
        )
    }
}

impl From<crate::sigv4::SigError> for KmsError {
    fn from(e: crate::sigv4::SigError) -> Self {
        use crate::sigv4::SigError as S;
        let kind = match e {
            S::MissingAuthenticationToken => Kind::MissingAuthenticationToken,
            S::IncompleteSignature(_) => Kind::IncompleteSignature,
            S::UnrecognizedClient => Kind::UnrecognizedClient,
            _ => Kind::RequestSignature,
        };
        Self::new(kind, e.message())
    }
}

impl From<kura_store::Error> for KmsError {
    fn from(e: kura_store::Error) -> Self {
        Self::internal(e)
    }
}

impl From<kura_keys::Error> for KmsError {
    fn from(e: kura_keys::Error) -> Self {
        Self::internal(e)
    }
}

/// The result of an operation.
pub type KmsResult<T> = Result<T, KmsError>;
