//! AWS Signature Version 4 verification, as KMS clients (AWS CLI, boto3, the AWS SDKs)
//! sign their requests.
//!
//! [`verify`] is pure and synchronous: it takes the request as received, a way to look up
//! secret keys, and the current time, and either names the caller or says why not with an
//! error whose [`SigError::aws_type`] and [`SigError::message`] are what AWS answers.
//!
//! Both forms are accepted: the `Authorization: AWS4-HMAC-SHA256 …` header, and presigned
//! requests (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-SignedHeaders`,
//! `X-Amz-Signature`, optional `X-Amz-Expires` query parameters). The canonical request is
//! rebuilt from what the server received, with the path normalised and encoded as the AWS
//! SDKs do for every service but S3, and the body hashed by the server.
//!
//! Checks, in order: the form of the signature ([`SigError::MissingAuthenticationToken`],
//! [`SigError::IncompleteSignature`]); the credential scope ([`SigError::InvalidScope`]);
//! the clock ([`SigError::SignatureExpired`], [`SigError::SignatureNotYetCurrent`],
//! [`SigError::RequestExpired`]); the key id ([`SigError::UnrecognizedClient`]); the
//! signature itself ([`SigError::InvalidSignature`]), compared in constant time.
//!
//! Choices where clients or AWS services differ:
//! - Query strings are decoded as forms (`+` is a space, a broken `%` escape stays
//!   literal), then re-encoded, as the Rust, Go and Java SDK signers do; botocore always
//!   sends `%20`/`%2B`, so it agrees either way.
//! - Header values: leading and trailing spaces and tabs removed, inner runs of spaces
//!   collapsed (as the Rust SDK signer and the SigV4 specification do).
//! - The request time is `X-Amz-Date` (ISO 8601 basic), else `Date` (IMF-fixdate). A
//!   repeated `Authorization`, `X-Amz-Date` or `Date` header is refused, as is a
//!   request carrying both an `Authorization` header and presigned parameters.
//! - A header named in `SignedHeaders` that did not arrive makes the signature invalid.
//! - A session token (`X-Amz-Security-Token`, header or query) is refused as unknown,
//!   since kura issues no temporary credentials; in the header it must also be signed.
//! - `X-Amz-Content-SHA256`, if sent, must be the hex SHA-256 of the body
//!   (`UNSIGNED-PAYLOAD` is refused).

use aws_lc_rs::{constant_time, digest, hmac};
use zeroize::Zeroizing;

mod auth;
mod canonical;
mod time;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of a credential scope.
pub const TERMINATOR: &str = "aws4_request";
/// KMS's clock-skew window, in seconds (5 minutes; other services use 15).
pub const KMS_MAX_SKEW_SECS: i64 = 300;

/// An HTTP request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path of the request target as sent on the wire (still percent-encoded), without
    /// the query: `/` for KMS.
    pub path: &'a str,
    /// The raw query string, without the `?`; empty if none.
    pub query: &'a str,
    /// The headers as received, repeated names repeated, in order. Names should be lower
    /// case; they are compared ignoring ASCII case. HTTP/2's `:authority` must be given as
    /// `host`.
    pub headers: &'a [(String, String)],
    /// The whole body.
    pub body: &'a [u8],
}

/// Who signed a request that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id of the credential.
    pub access_key_id: String,
    /// The region of the credential scope; the caller decides whether it serves it.
    pub region: String,
    /// The service of the credential scope (always the expected one).
    pub service: String,
}

/// A secret access key. It is wiped from memory when dropped, and can be neither printed
/// nor copied by accident (no `Debug`, no `Clone`).
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret access key.
    pub fn new(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }

    /// The secret. Named so that every use is easy to find in review.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A second copy, for a cache. Deliberately not `Clone`, so copies are visible.
    pub fn clone_secret(&self) -> Self {
        Self::new(self.expose().to_owned())
    }
}

/// Finds the secret access key of an access key id.
pub trait SecretLookup {
    /// The secret of `access_key_id`, or `None` if the id is unknown (or not usable).
    fn secret(&self, access_key_id: &str) -> Option<Secret>;
}

impl<F: Fn(&str) -> Option<Secret>> SecretLookup for F {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        self(access_key_id)
    }
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigError {
    /// Neither an `Authorization` header nor presigned query parameters.
    MissingAuthenticationToken,
    /// The signature is malformed or incomplete; the text names what is wrong.
    IncompleteSignature(String),
    /// The access key id is unknown, or a security token was sent (no temporary
    /// credentials are issued).
    UnrecognizedClient,
    /// The signature does not match the request.
    InvalidSignature,
    /// The credential scope is wrong (terminator, date, region or service); the text is
    /// AWS's message for it.
    InvalidScope(String),
    /// The request time is more than the skew window before now.
    SignatureExpired {
        /// The request time, `yyyymmddTHHMMSSZ`.
        signed: String,
        /// The earliest acceptable time (`now` minus the window).
        earliest: String,
        /// The server's time.
        now: String,
        /// The window, in seconds.
        max_skew_secs: i64,
    },
    /// The request time is more than the skew window after now.
    SignatureNotYetCurrent {
        /// The request time, `yyyymmddTHHMMSSZ`.
        signed: String,
        /// The latest acceptable time (`now` plus the window).
        latest: String,
        /// The server's time.
        now: String,
        /// The window, in seconds.
        max_skew_secs: i64,
    },
    /// A presigned request is past its `X-Amz-Date` + `X-Amz-Expires`.
    RequestExpired {
        /// When it expired, `yyyymmddTHHMMSSZ`.
        expired_at: String,
        /// The server's time.
        now: String,
    },
}

/// The skew window as AWS words it: `5 min` (or `90 sec` when not whole minutes).
fn window(secs: i64) -> String {
    if secs % 60 == 0 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} sec")
    }
}

impl SigError {
    /// The AWS error code (`__type`) to answer with; all are sent with status 400.
    pub fn aws_type(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature(_) => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::InvalidSignature
            | Self::InvalidScope(_)
            | Self::SignatureExpired { .. }
            | Self::SignatureNotYetCurrent { .. }
            | Self::RequestExpired { .. } => "InvalidSignatureException",
        }
    }

    /// The message to answer with, in AWS's words.
    pub fn message(&self) -> String {
        match self {
            Self::MissingAuthenticationToken => "Missing Authentication Token".to_owned(),
            Self::IncompleteSignature(m) | Self::InvalidScope(m) => m.clone(),
            Self::UnrecognizedClient => {
                "The security token included in the request is invalid.".to_owned()
            }
            Self::InvalidSignature => "The request signature we calculated does not match the \
                signature you provided. Check your AWS Secret Access Key and signing method. \
                Consult the service documentation for details."
                .to_owned(),
            Self::SignatureExpired {
                signed,
                earliest,
                now,
                max_skew_secs,
            } => format!(
                "Signature expired: {signed} is now earlier than {earliest} ({now} - {}.)",
                window(*max_skew_secs)
            ),
            Self::SignatureNotYetCurrent {
                signed,
                latest,
                now,
                max_skew_secs,
            } => format!(
                "Signature not yet current: {signed} is still later than {latest} ({now} + {}.)",
                window(*max_skew_secs)
            ),
            Self::RequestExpired { expired_at, now } => format!(
                "Request has expired: X-Amz-Date + X-Amz-Expires is {expired_at}, now is {now}."
            ),
        }
    }
}

impl std::fmt::Display for SigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.aws_type(), self.message())
    }
}

impl std::error::Error for SigError {}

/// Lower-case hex SHA-256.
fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    Zeroizing::new(hmac::sign(&key, data).as_ref().to_vec())
}

/// The SigV4 signing key: HMAC chain from `AWS4` + secret over date, region, service and
/// `aws4_request`.
fn signing_key(secret: &Secret, date: &str, region: &str, service: &str) -> Zeroizing<Vec<u8>> {
    let k_secret = Zeroizing::new(format!("AWS4{}", secret.expose()));
    let k_date = hmac_sha256(k_secret.as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

/// A region name as AWS spells them: lower-case letters, digits and dashes.
fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_scope(a: &auth::Auth, expected_service: &str) -> Result<(), SigError> {
    let c = &a.credential;
    if c.terminator != TERMINATOR {
        return Err(SigError::InvalidScope(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            c.terminator
        )));
    }
    let http_date = a.amz_date.get(..8).unwrap_or_default();
    if c.date != http_date {
        return Err(SigError::InvalidScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{http_date}', from '{}'.",
            c.date, a.amz_date
        )));
    }
    if !valid_region(&c.region) {
        return Err(SigError::InvalidScope(
            "Credential should be scoped to a valid region. ".to_owned(),
        ));
    }
    if c.service != expected_service {
        return Err(SigError::InvalidScope(format!(
            "Credential should be scoped to correct service: '{expected_service}'. "
        )));
    }
    Ok(())
}

fn check_time(a: &auth::Auth, now: i64, max_skew_secs: i64) -> Result<(), SigError> {
    let (t, now128, skew) = (
        i128::from(a.time),
        i128::from(now),
        i128::from(max_skew_secs.max(0)),
    );
    if now128 - t > skew {
        return Err(SigError::SignatureExpired {
            signed: a.amz_date.clone(),
            earliest: time::format_iso_basic(now.saturating_sub(max_skew_secs)),
            now: time::format_iso_basic(now),
            max_skew_secs,
        });
    }
    if t - now128 > skew {
        return Err(SigError::SignatureNotYetCurrent {
            signed: a.amz_date.clone(),
            latest: time::format_iso_basic(now.saturating_add(max_skew_secs)),
            now: time::format_iso_basic(now),
            max_skew_secs,
        });
    }
    if let auth::Form::Query {
        expires_secs: Some(expires),
    } = a.form
    {
        let expired_at = a.time.saturating_add(expires);
        if now > expired_at {
            return Err(SigError::RequestExpired {
                expired_at: time::format_iso_basic(expired_at),
                now: time::format_iso_basic(now),
            });
        }
    }
    Ok(())
}

/// Verifies the SigV4 signature of `req`.
///
/// `now_unix` is the server's time in Unix seconds; `expected_service` the signing name
/// (`"kms"`); `max_skew_secs` the clock-skew window ([`KMS_MAX_SKEW_SECS`]). Presigned
/// requests must also be within that window (as KMS and STS treat them), and, when they
/// carry `X-Amz-Expires`, not past it. Nothing is cached.
pub fn verify(
    req: &Request<'_>,
    lookup: &dyn SecretLookup,
    now_unix: i64,
    expected_service: &str,
    max_skew_secs: i64,
) -> Result<Verified, SigError> {
    let query = canonical::parse_query(req.query);
    let a = auth::parse(req, &query)?;

    let signed: Vec<&str> = a.signed_headers.split(';').collect();
    if signed.iter().any(|n| n.is_empty()) {
        return Err(SigError::IncompleteSignature(format!(
            "SignedHeaders must be a ';'-separated list of header names, got '{}'.",
            a.signed_headers
        )));
    }
    if !signed.iter().any(|n| n.eq_ignore_ascii_case("host")) {
        return Err(SigError::IncompleteSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    let token_header = canonical::header_values(req.headers, "x-amz-security-token")
        .next()
        .is_some();
    if token_header
        && !signed
            .iter()
            .any(|n| n.eq_ignore_ascii_case("x-amz-security-token"))
    {
        return Err(SigError::IncompleteSignature(
            "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    check_scope(&a, expected_service)?;
    check_time(&a, now_unix, max_skew_secs)?;

    // No temporary credentials are issued, so any session token is unknown.
    if a.has_security_token || a.credential.access_key_id.is_empty() {
        return Err(SigError::UnrecognizedClient);
    }
    let secret = lookup
        .secret(&a.credential.access_key_id)
        .ok_or(SigError::UnrecognizedClient)?;

    let payload_hash = sha256_hex(req.body);
    if canonical::header_values(req.headers, "x-amz-content-sha256")
        .any(|v| v.trim() != payload_hash)
    {
        return Err(SigError::InvalidSignature);
    }
    let names: Vec<String> = signed.iter().map(|n| n.to_ascii_lowercase()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let headers = canonical::canonical_headers(req.headers, &names)
        .map_err(|_missing| SigError::InvalidSignature)?;
    let exclude = match a.form {
        auth::Form::Header => None,
        auth::Form::Query { .. } => Some(auth::param::SIGNATURE),
    };
    let creq = canonical::canonical_request(
        req.method,
        &canonical::canonical_uri(req.path),
        &canonical::canonical_query(&query, exclude),
        &headers,
        &a.signed_headers,
        &payload_hash,
    );
    let c = &a.credential;
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}/{}/{}/{TERMINATOR}\n{}",
        a.amz_date,
        c.date,
        c.region,
        c.service,
        sha256_hex(creq.as_bytes())
    );
    let key = signing_key(&secret, &c.date, &c.region, &c.service);
    let expected = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()).as_slice());
    constant_time::verify_slices_are_equal(expected.as_bytes(), a.signature.as_bytes())
        .map_err(|_| SigError::InvalidSignature)?;

    Ok(Verified {
        access_key_id: a.credential.access_key_id,
        region: a.credential.region,
        service: a.credential.service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing-key example of the AWS SigV4 documentation.
    #[test]
    fn signing_key_matches_the_aws_docs_example() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned());
        let key = signing_key(&secret, "20120215", "us-east-1", "iam");
        assert_eq!(
            hex::encode(key.as_slice()),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn regions_and_windows() {
        for r in [
            "us-east-1",
            "eu-west-1",
            "cn-north-1",
            "us-gov-west-1",
            "local",
        ] {
            assert!(valid_region(r), "{r}");
        }
        for r in ["", "US-EAST-1", "us east", "us_east_1", &"a".repeat(65)] {
            assert!(!valid_region(r), "{r}");
        }
        assert_eq!(window(300), "5 min");
        assert_eq!(window(900), "15 min");
        assert_eq!(window(90), "90 sec");
    }
}
