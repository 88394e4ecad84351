//! A master key held by AWS KMS, or by any service speaking its API (a `kura server`):
//! the KEK is wrapped with `Encrypt` and unwrapped with `Decrypt`, and never leaves this
//! process otherwise.
//!
//! - At start-up the key is resolved with `DescribeKey` (an alias becomes the key's ARN,
//!   which is the master key's id, `kms:<ARN>`), so a wrong key id, region, endpoint or
//!   credential is reported before anything else happens.
//! - Every call carries the configured encryption context plus `"kura:kek-id": "<id>"`,
//!   which binds each blob to its KEK.
//! - The blob kura stores is a wrapped key of kind 0x04 (`docs/format.md`): kura's header
//!   (`KRW`, version, kind, the master key id and the KEK id) followed by the KMS's
//!   `CiphertextBlob` as it was returned.
//!
//! The [`MasterKey`] trait is synchronous and the SDK is async: the provider owns a
//! one-worker tokio runtime and runs each call there, waiting on a std channel, so it can
//! be called from a plain thread, from `spawn_blocking`, or from a thread of another runtime
//! (never `block_on` inside an async task). Connect and call timeouts keep an unreachable
//! KMS from hanging a process.

mod error;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
use kura_crypto::Key256;
use kura_format::wrapped;
use zeroize::Zeroizing;

pub use error::{KmsError, KmsErrorKind};

use super::MasterKey;
use crate::Error;
use crate::config::KmsSpec;
use error::Names;

/// The encryption-context key that binds each wrapped KEK to its id.
pub const KEK_ID_CONTEXT_KEY: &str = "kura:kek-id";
/// How long connecting to the KMS may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt of a call may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call may take in all, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// A master key in a KMS. See the module documentation of `kura_keys::master_key::kms`.
pub struct KmsMasterKey {
    /// `Some` until dropped (then shut down without blocking, wherever the drop happens).
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    /// The key's ARN (as `DescribeKey` returned it; the key id if it returned none).
    arn: String,
    id: String,
    source: String,
    /// For messages: the key as configured, and its ARN.
    key_name: String,
    place: String,
    context: BTreeMap<String, String>,
    spec: KmsSpec,
}

impl KmsMasterKey {
    /// Connects to the KMS `spec` names and resolves the key (`DescribeKey`): fails, with a
    /// message that says what to do, if the KMS is unreachable, the region is missing, the
    /// credentials are refused, or the key is unknown, not usable for Encrypt and Decrypt,
    /// disabled or pending deletion.
    pub fn connect(spec: &KmsSpec) -> Result<Self, Error> {
        Self::connect_with(spec, None)
    }

    /// [`KmsMasterKey::connect`] with the given credentials instead of the standard AWS
    /// chain (environment, profile, instance role): for applications that hold their own.
    pub fn connect_with(spec: &KmsSpec, credentials: Option<Credentials>) -> Result<Self, Error> {
        let configured = &spec.key_id;
        let place_of = |region: &str| match &spec.endpoint {
            Some(e) => format!("the KMS at {e} (region {region})"),
            None => format!("AWS KMS in region {region}"),
        };
        if spec.encryption_context.contains_key(KEK_ID_CONTEXT_KEY) {
            return Err(Error::Config(format!(
                "the encryption context of master key {configured} ({}) sets {KEK_ID_CONTEXT_KEY:?}, \
                 which kura sets itself to bind each KEK; use another key",
                spec.origin
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kura-kms")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::Config(format!(
                    "cannot start the KMS client for master key {configured}: {e}"
                ))
            })?;
        let region = match &spec.region {
            Some(r) => Some(r.clone()),
            None => run_on(&runtime, async {
                use aws_config::meta::region::ProvideRegion;
                aws_config::profile::ProfileFileRegionProvider::new()
                    .region()
                    .await
                    .map(|r| r.to_string())
            })?,
        };
        let Some(region) = region else {
            let names = Names {
                key: configured,
                place: "",
            };
            return Err(names.error(KmsErrorKind::MissingRegion, ""));
        };
        let place = place_of(&region);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        if let Some(e) = &spec.endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some(c) = credentials {
            loader = loader.credentials_provider(c);
        }
        let conf = run_on(&runtime, loader.load())?;
        let client = Client::new(&conf);
        let names = Names {
            key: configured,
            place: &place,
        };
        let described = {
            let c = client.clone();
            let key_id = configured.clone();
            run_on(&runtime, async move {
                c.describe_key().key_id(key_id).send().await
            })?
        }
        .map_err(|e| names.sdk("DescribeKey", e, ""))?;
        let Some(meta) = described.key_metadata() else {
            return Err(names.error(KmsErrorKind::Other, "DescribeKey returned no key metadata"));
        };
        let arn = meta
            .arn()
            .filter(|a| !a.is_empty())
            .unwrap_or(meta.key_id())
            .to_string();
        let key_name = if &arn == configured {
            arn.clone()
        } else {
            format!("{configured} ({arn})")
        };
        let names = Names {
            key: &key_name,
            place: &place,
        };
        match meta.key_state() {
            Some(KeyState::Enabled) | None => {}
            Some(state) => {
                return Err(names.error(
                    KmsErrorKind::Disabled,
                    &format!("its state is {}", state.as_str()),
                ));
            }
        }
        if meta
            .key_usage()
            .is_some_and(|u| *u != KeyUsageType::EncryptDecrypt)
            || meta
                .key_spec()
                .is_some_and(|s| *s != KeySpec::SymmetricDefault)
        {
            return Err(names.error(
                KmsErrorKind::Unusable,
                &format!(
                    "its key spec is {} and its usage {}",
                    meta.key_spec().map_or("unknown", |s| s.as_str()),
                    meta.key_usage().map_or("unknown", |u| u.as_str())
                ),
            ));
        }
        let source = format!(
            "KMS key {configured}, region {region}, endpoint {} (from {})",
            spec.endpoint.as_deref().unwrap_or("AWS's"),
            spec.origin
        );
        Ok(Self {
            runtime: Some(runtime),
            client,
            id: format!("kms:{arn}"),
            arn,
            source,
            key_name,
            place,
            context: spec.encryption_context.clone(),
            spec: spec.clone(),
        })
    }

    /// The key's ARN, as the KMS named it.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// What the key was configured with (never a secret).
    pub fn spec(&self) -> &KmsSpec {
        &self.spec
    }

    fn names(&self) -> Names<'_> {
        Names {
            key: &self.key_name,
            place: &self.place,
        }
    }

    /// The encryption context of every call about KEK `kek_id`.
    fn context_for(&self, kek_id: u64) -> HashMap<String, String> {
        let mut c: HashMap<String, String> = self
            .context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        c.insert(KEK_ID_CONTEXT_KEY.to_string(), kek_id.to_string());
        c
    }

    /// "KEK 17 (encryption context {…})", for wrong-context messages.
    fn kek_with_context(&self, kek_id: u64) -> String {
        let ctx: BTreeMap<String, String> = self.context_for(kek_id).into_iter().collect();
        format!("KEK {kek_id} (encryption context {ctx:?})")
    }

    /// Runs `fut` on the provider's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Error> {
        match &self.runtime {
            Some(rt) => run_on(rt, fut),
            None => Err(self
                .names()
                .error(KmsErrorKind::Unreachable, "the KMS client was shut down")),
        }
    }

    /// Runs the SDK call `op` about KEK `kek_id` (`fut`), and words its failure.
    fn call_for_kek<T: Send + 'static, E>(
        &self,
        op: &str,
        kek_id: u64,
        fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>> + Send + 'static,
    ) -> Result<T, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + 'static,
    {
        self.run(fut)?
            .map_err(|e| self.names().sdk(op, e, &self.kek_with_context(kek_id)))
    }
}

/// Spawns `fut` on `rt` and waits for its result on a std channel: safe from any thread,
/// including one that belongs to another tokio runtime.
fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| Error::Config("the KMS client's runtime stopped before answering".to_string()))
}

impl MasterKey for KmsMasterKey {
    fn id(&self) -> &str {
        &self.id
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn wrap_kek(&self, kek_id: u64, kek: &Key256) -> Result<Vec<u8>, Error> {
        let mut blob = wrapped::external(&self.id, kek_id)?;
        let c = self.client.clone();
        let (arn, ctx) = (self.arn.clone(), self.context_for(kek_id));
        // The SDK keeps the plaintext in its request, which it does not zeroize: one copy,
        // made here (a zeroizing copy copied again would only add one).
        let body = Blob::new(kek.expose_secret().to_vec());
        let out = self.call_for_kek("Encrypt", kek_id, async move {
            c.encrypt()
                .key_id(arn)
                .plaintext(body)
                .set_encryption_context(Some(ctx))
                .send()
                .await
        })?;
        let ct = out.ciphertext_blob().map(Blob::as_ref).unwrap_or_default();
        if ct.len() < 16 {
            return Err(self.names().error(
                KmsErrorKind::Other,
                &format!("Encrypt returned a ciphertext of {} bytes", ct.len()),
            ));
        }
        blob.extend_from_slice(ct);
        Ok(blob)
    }

    fn unwrap_kek(&self, kek_id: u64, blob: &[u8]) -> Result<Key256, Error> {
        let (_, body) = wrapped::open_external(kek_id, blob)?;
        let c = self.client.clone();
        let (arn, ctx) = (self.arn.clone(), self.context_for(kek_id));
        let body = Blob::new(body.to_vec());
        let out = self.call_for_kek("Decrypt", kek_id, async move {
            c.decrypt()
                .key_id(arn)
                .ciphertext_blob(body)
                .set_encryption_context(Some(ctx))
                .send()
                .await
        })?;
        let plain = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        if plain.len() != Key256::LEN {
            return Err(self.names().error(
                KmsErrorKind::Other,
                &format!(
                    "Decrypt of KEK {kek_id} returned {} bytes instead of {}",
                    plain.len(),
                    Key256::LEN
                ),
            ));
        }
        Ok(Key256::from_slice(&plain, "KEK")?)
    }
}

impl Drop for KmsMasterKey {
    fn drop(&mut self) {
        // Never blocks, so a provider may be dropped inside an async context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
