//! Backups in S3 (or any S3-compatible store): `s3://BUCKET/KEY` locations, written with
//! optional server-side encryption (`aws:kms` with a KMS key, or `AES256`), read back for a
//! restore. Credentials come from the standard AWS chain (environment, profile, web
//! identity, container, instance); the region from `--s3-region`, `AWS_REGION` or
//! `AWS_DEFAULT_REGION`; a custom endpoint (`--s3-endpoint`) is addressed path-style.
//! Failures name the bucket, the key and the endpoint, and say what to check.

use std::error::Error as StdError;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use kura_keys::aws::{SdkFailure, classify_sdk_failure};

use crate::cli::{S3Args, S3Sse};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one attempt of a call may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// `s3://BUCKET/KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Location {
    pub(crate) bucket: String,
    pub(crate) key: String,
}

impl S3Location {
    /// Parses `s3://BUCKET/KEY` (`rest` is what follows `s3://`).
    pub(crate) fn parse(rest: &str) -> Result<Self> {
        match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self {
                bucket: bucket.to_string(),
                key: key.to_string(),
            }),
            _ => bail!(
                "s3://{rest} names no object; give s3://BUCKET/KEY (for example s3://backups/kura/keystore.krb)"
            ),
        }
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Server-side encryption of an upload.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sse {
    pub(crate) algorithm: Option<S3Sse>,
    pub(crate) kms_key_id: Option<String>,
}

/// A client for one location, on a runtime of its own (the CLI is synchronous).
pub(crate) struct S3 {
    runtime: tokio::runtime::Runtime,
    client: Client,
    loc: S3Location,
    /// The endpoint, for messages.
    place: String,
}

impl S3 {
    pub(crate) fn new(loc: S3Location, a: &S3Args) -> Result<Self> {
        let region = a
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| {
                std::env::var("AWS_DEFAULT_REGION")
                    .ok()
                    .filter(|r| !r.is_empty())
            })
            .ok_or_else(|| {
                anyhow!(
                    "no region for {loc}: pass --s3-region, or set AWS_REGION or AWS_DEFAULT_REGION"
                )
            })?;
        let place = match &a.endpoint {
            Some(e) => format!("endpoint {e}"),
            None => format!("AWS region {region}"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow!("cannot start the S3 client for {loc}: {e}"))?;
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        let conf = runtime.block_on(loader.load());
        let mut b = aws_sdk_s3::config::Builder::from(&conf)
            // Plain checksums (Content-MD5 where required) suit every S3-compatible store.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &a.endpoint {
            b = b.endpoint_url(e).force_path_style(true);
        }
        Ok(Self {
            runtime,
            client: Client::from_conf(b.build()),
            loc,
            place,
        })
    }

    /// Uploads `bytes`; without `force`, refuses if the object exists.
    pub(crate) fn put(&self, bytes: Vec<u8>, sse: &Sse, force: bool) -> Result<()> {
        let (bucket, key) = (&self.loc.bucket, &self.loc.key);
        if !force {
            let head = self
                .runtime
                .block_on(self.client.head_object().bucket(bucket).key(key).send());
            match head {
                Ok(_) => bail!(
                    "{} already exists (at {}); choose another --out, or add --force to replace it",
                    self.loc,
                    self.place
                ),
                Err(SdkError::ServiceError(e)) if e.err().is_not_found() => {}
                // A missing bucket is named by the upload below.
                Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => {}
                Err(e) => return Err(self.error("HeadObject", e)),
            }
        }
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes));
        match sse.algorithm {
            Some(S3Sse::AwsKms) => {
                req = req.server_side_encryption(ServerSideEncryption::AwsKms);
                if let Some(id) = &sse.kms_key_id {
                    req = req.ssekms_key_id(id);
                }
            }
            Some(S3Sse::Aes256) => {
                req = req.server_side_encryption(ServerSideEncryption::Aes256);
            }
            None => {}
        }
        if !force {
            // The HEAD above gives the clear message at once; this makes it hold against an
            // upload racing ours.
            req = req.if_none_match("*");
        }
        match self.runtime.block_on(req.send()) {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if !force && e.raw().status().as_u16() == 412 => bail!(
                "{} already exists (at {}): it was written while this backup was uploaded; \
                 choose another --out, or add --force to replace it",
                self.loc,
                self.place
            ),
            Err(e) => Err(self.error("PutObject", e)),
        }
    }

    /// Downloads the object.
    pub(crate) fn get(&self) -> Result<Vec<u8>> {
        let out = self
            .runtime
            .block_on(
                self.client
                    .get_object()
                    .bucket(&self.loc.bucket)
                    .key(&self.loc.key)
                    .send(),
            )
            .map_err(|e| self.error("GetObject", e))?;
        let body = self
            .runtime
            .block_on(out.body.collect())
            .map_err(|e| anyhow!("reading {} from {} failed: {e}", self.loc, self.place))?;
        Ok(body.into_bytes().to_vec())
    }

    /// A clear error for a failed call `op`.
    fn error<E>(&self, op: &str, e: SdkError<E, HttpResponse>) -> anyhow::Error
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let (loc, place, bucket) = (&self.loc, &self.place, &self.loc.bucket);
        match classify_sdk_failure(&e) {
            SdkFailure::Service {
                status,
                code,
                message,
            } => {
                let code = code.unwrap_or("");
                let said = match message {
                    Some(m) if !m.is_empty() => format!("{code}: {m}"),
                    _ if !code.is_empty() => code.to_string(),
                    _ => format!("HTTP status {status}"),
                };
                match code {
                    "NoSuchBucket" => anyhow!(
                        "the bucket {bucket} does not exist at {place}; create it, or check the bucket name, --s3-endpoint and --s3-region"
                    ),
                    "NoSuchKey" => anyhow!(
                        "there is no backup at {loc} ({place}): no such key; check the key (list the bucket with `aws s3 ls s3://{bucket}/`)"
                    ),
                    "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => anyhow!(
                        "access to {loc} was denied at {place} ({said}); check the credentials and the bucket's policy{}",
                        if op == "PutObject" {
                            " (s3:PutObject, and kms:GenerateDataKey on the key of --s3-sse-kms-key-id)"
                        } else {
                            " (s3:GetObject, and kms:Decrypt on the key the object was encrypted with)"
                        }
                    ),
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "TokenRefreshRequired" => anyhow!(
                        "{place} refused the AWS credentials for {loc} ({said}); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) or AWS_PROFILE"
                    ),
                    "PermanentRedirect"
                    | "AuthorizationHeaderMalformed"
                    | "IllegalLocationConstraintException" => anyhow!(
                        "the bucket {bucket} is in another region than the one used for {place} ({said}); pass its region with --s3-region"
                    ),
                    _ if status == 404 => anyhow!(
                        "{op} of {loc} at {place}: not found ({said}); check the bucket and the key"
                    ),
                    _ if status == 403 => anyhow!(
                        "access to {loc} was denied at {place} ({said}); check the credentials and the bucket's policy"
                    ),
                    _ => anyhow!("{op} of {loc} failed at {place}: {said}"),
                }
            }
            SdkFailure::TimedOut => anyhow!(
                "{op} of {loc} timed out: {place} did not answer; check --s3-endpoint and the network"
            ),
            SdkFailure::Unreachable(chain) => anyhow!(
                "cannot reach {place} for {loc} ({chain}); check --s3-endpoint, --s3-region and the network"
            ),
            SdkFailure::Credentials(chain) => anyhow!(
                "no usable AWS credentials for {loc} ({chain}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            ),
            SdkFailure::NotAResponse(chain) => anyhow!(
                "{op} of {loc}: the answer from {place} is not an S3 response ({chain}); check that --s3-endpoint is an S3 service"
            ),
            SdkFailure::Other(chain) => anyhow!("{op} of {loc} failed at {place}: {chain}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn locations() {
        let l = S3Location::parse("bucket/a/b.krb").unwrap();
        assert_eq!((l.bucket.as_str(), l.key.as_str()), ("bucket", "a/b.krb"));
        assert_eq!(l.to_string(), "s3://bucket/a/b.krb");
        for bad in ["", "bucket", "bucket/", "/key"] {
            let e = S3Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains("s3://BUCKET/KEY"), "{e}");
        }
    }
}
