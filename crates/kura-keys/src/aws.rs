//! What a failed call of an AWS SDK client (KMS, S3, …) amounts to, for messages that say
//! what to check: the service's own error, a timeout, an unreachable endpoint, missing or
//! unusable credentials, an answer that is not the service's, or anything else. Each
//! caller words its messages for its own service; the classification is shared.

use std::error::Error as StdError;

use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

/// How an SDK call failed. Every variant but [`SdkFailure::Service`] and
/// [`SdkFailure::TimedOut`] carries the messages of the error's sources, innermost last.
/// Not `#[non_exhaustive]`: a new kind of failure must be worded by every caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkFailure<'a> {
    /// The service answered with an error of its own.
    Service {
        /// The HTTP status of the answer.
        status: u16,
        /// The service's error code (`NotFoundException`, `NoSuchBucket`, …), if any.
        code: Option<&'a str>,
        /// The service's message, if any.
        message: Option<&'a str>,
    },
    /// The call timed out.
    TimedOut,
    /// The service could not be reached: connection refused, timeout, DNS.
    Unreachable(String),
    /// No credentials were found, or they could not be loaded.
    Credentials(String),
    /// The answer is not one of the service's responses (another service at the endpoint).
    NotAResponse(String),
    /// Anything else.
    Other(String),
}

/// Classifies a failed call of any AWS SDK client.
pub fn classify_sdk_failure<E>(e: &SdkError<E, HttpResponse>) -> SdkFailure<'_>
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match e {
        SdkError::ServiceError(s) => SdkFailure::Service {
            status: s.raw().status().as_u16(),
            code: s.err().code(),
            message: s.err().message(),
        },
        SdkError::TimeoutError(_) => SdkFailure::TimedOut,
        SdkError::DispatchFailure(d) => {
            let chain = chain(e);
            if !d.is_io() && !d.is_timeout() && looks_like_credentials(&chain) {
                SdkFailure::Credentials(chain)
            } else {
                SdkFailure::Unreachable(chain)
            }
        }
        SdkError::ResponseError(_) => SdkFailure::NotAResponse(chain(e)),
        _ => {
            let chain = chain(e);
            if looks_like_credentials(&chain) {
                SdkFailure::Credentials(chain)
            } else {
                SdkFailure::Other(chain)
            }
        }
    }
}

/// The messages of an error's sources, innermost last, without repeats (the error's own
/// message if it has no sources).
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !m.is_empty() && !parts.iter().any(|p| p == &m) {
            parts.push(m);
        }
        cur = c.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Whether an error chain speaks of credentials (the SDK's credential providers say
/// "credential" or "identity").
fn looks_like_credentials(chain: &str) -> bool {
    let c = chain.to_ascii_lowercase();
    c.contains("credential") || c.contains("identity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_recognised_in_any_case() {
        assert!(looks_like_credentials("failed to load Credentials"));
        assert!(looks_like_credentials("no IDENTITY resolver"));
        assert!(!looks_like_credentials("connection refused"));
    }
}
