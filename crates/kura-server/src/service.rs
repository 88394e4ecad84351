//! The KMS service: keys, their material and the caches in front of the keystore.
//!
//! Key metadata lives in the keystore's object table as JSON documents; each version of a
//! key's material is a separate object whose blob is the material sealed as a kura record
//! under the `kms` keyring (so it is wrapped by a data key, which is wrapped by the KEK,
//! which is wrapped by the master key). Rotating the KEK therefore re-wraps a handful of
//! data keys, never every KMS key. Metadata and unsealed material are cached in memory; the
//! cache is dropped whenever another process or node changed the object table (checked at
//! most once a second).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use kura_crypto::{Key256, XaesCommitting, rng};
use kura_format::EncryptionContext;
use kura_keys::Keyring;
use kura_keys::clock::Clock;
use kura_store::{Object, ObjectChange, Store};

use crate::error::{Kind, KmsError, KmsResult};
use crate::model::{KIND_ALIAS, KIND_KEY, KIND_MATERIAL, KeyDoc, PENDING_DELETION};

/// How long (whole seconds, so up to one more) a node answers from its caches without a
/// successful check of the keystore: with checks every second, a change another node made
/// is honoured within about 5 s even while this node cannot reach the keystore.
pub const MAX_UNCHECKED_SECS: i64 = 3;

/// The keyring whose data keys seal KMS key material and user secrets.
pub const KMS_KEYRING: &str = "kms";
const WRITE_RETRIES: usize = 8;

/// A key as cached: its metadata at a version, and the material unsealed so far.
pub(crate) struct CachedKey {
    pub(crate) version: u64,
    pub(crate) doc: KeyDoc,
    material: RwLock<HashMap<String, Arc<XaesCommitting>>>,
    policy: std::sync::OnceLock<crate::policy::Policy>,
}

impl CachedKey {
    /// The key policy, parsed once per cached version of the key.
    pub(crate) fn policy(&self) -> KmsResult<&crate::policy::Policy> {
        if let Some(p) = self.policy.get() {
            return Ok(p);
        }
        let parsed = crate::policy::Policy::parse(&self.doc.policy)?;
        Ok(self.policy.get_or_init(|| parsed))
    }
}

/// Where the service runs (for ARNs).
#[derive(Debug, Clone)]
pub struct Identity {
    /// AWS region name, e.g. `us-east-1`.
    pub region: String,
    /// 12-digit account id.
    pub account: String,
}

/// The KMS.
pub struct Kms {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keyring: Keyring,
    pub(crate) id: Identity,
    pub(crate) clock: Arc<dyn Clock>,
    keys: RwLock<HashMap<String, Arc<CachedKey>>>,
    pub(crate) users: crate::users::UserCache,
    seen_generation: AtomicU64,
    checked_at: AtomicI64,
    /// When the keystore was last checked for changes successfully.
    verified_at: AtomicI64,
    /// A background task checks for changes every second ([`Kms::poll_changes`]): requests
    /// then only look at [`Kms::verified_at`], never at the keystore.
    polled: std::sync::atomic::AtomicBool,
    /// When a failed check was last logged (one line a second at most).
    logged_at: AtomicI64,
    rotation: std::sync::OnceLock<Arc<kura_keys::background::RotationStats>>,
    extra_metrics: std::sync::OnceLock<ExtraMetrics>,
}

/// More Prometheus text for `/metrics`, made on the blocking pool at each scrape.
pub type ExtraMetrics = Box<dyn Fn(&Kms) -> String + Send + Sync>;

fn lock_err<T>(p: PoisonError<T>) -> T {
    p.into_inner()
}

impl Kms {
    /// A KMS over `store`, sealing material with `keyring` (the `kms` keyring).
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Keyring,
        id: Identity,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let now = clock.now();
        Self {
            store,
            keyring,
            id,
            clock,
            keys: RwLock::new(HashMap::new()),
            users: crate::users::UserCache::default(),
            seen_generation: AtomicU64::new(0),
            checked_at: AtomicI64::new(i64::MIN),
            verified_at: AtomicI64::new(now),
            polled: std::sync::atomic::AtomicBool::new(false),
            logged_at: AtomicI64::new(i64::MIN),
            rotation: std::sync::OnceLock::new(),
            extra_metrics: std::sync::OnceLock::new(),
        }
    }

    /// Starts rotating the KMS keyring's data key in the background when it is due (every
    /// [`kura_keys::background::Rotator::interval_for`] the period); its counters appear in
    /// `/metrics`. Rotation stops when the returned handle is dropped.
    pub fn start_rotation(
        self: &Arc<Self>,
        period: std::time::Duration,
    ) -> std::io::Result<kura_keys::background::Rotator> {
        let weak = Arc::downgrade(self);
        let r = kura_keys::background::Rotator::spawn(
            KMS_KEYRING,
            kura_keys::background::Rotator::interval_for(period),
            move || match weak.upgrade() {
                Some(kms) => kms.keyring.rotate_if_due(),
                None => Ok(None),
            },
        )?;
        let _ = self.rotation.set(r.stats());
        Ok(r)
    }

    /// The hierarchy's metrics (Prometheus text).
    pub(crate) fn key_metrics(&self) -> String {
        kura_keys::background::render_metrics(
            &self.keyring.status(),
            self.rotation.get().map(|s| s.as_ref()),
        )
    }

    /// Adds `f`'s Prometheus text to every `/metrics` answer (once; later calls are
    /// ignored). `kura server` serves the gauges of the kura-fs data roots this way.
    pub fn set_extra_metrics(&self, f: ExtraMetrics) {
        let _ = self.extra_metrics.set(f);
    }

    /// The extra Prometheus text, if any was set.
    pub(crate) fn extra_metrics(&self) -> String {
        self.extra_metrics
            .get()
            .map(|f| f(self))
            .unwrap_or_default()
    }

    /// The keystore underneath (e.g. for the node registry of `kura server`).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The `kms` keyring (for the node registry and for reloading master keys).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Looks for changes other nodes made to the keystore now, as every request does at
    /// most once a second unless a background task calls this every second (see
    /// [`Kms::set_polled`]). Fails only once the keystore has been unreachable for longer
    /// than [`MAX_UNCHECKED_SECS`].
    pub fn poll_changes(&self) -> KmsResult<()> {
        let now = self.now();
        self.checked_at.store(now, Ordering::Relaxed);
        match self.check_for_changes() {
            Ok(()) => {
                self.verified_at.store(now, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let unchecked = now - self.verified_at.load(Ordering::Relaxed);
                if self.logged_at.swap(now, Ordering::Relaxed) != now {
                    tracing::error!(error = %e, unchecked_secs = unchecked, "cannot check the keystore for changes");
                }
                if unchecked <= MAX_UNCHECKED_SECS {
                    Ok(())
                } else {
                    Err(Self::unreachable(unchecked))
                }
            }
        }
    }

    /// Tells the KMS that a background task calls [`Kms::poll_changes`] every second:
    /// requests then never wait on the keystore to check for changes (a slow or unreachable
    /// database stalls no request), and are refused once the last successful check is older
    /// than [`MAX_UNCHECKED_SECS`].
    pub fn set_polled(&self) {
        self.polled.store(true, Ordering::Relaxed);
    }

    /// The current time (Unix seconds).
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether a request may be answered from the caches: with a background poller (see
    /// [`Kms::set_polled`]) this only looks at the age of its last successful check;
    /// without one, one request a second checks the keystore itself.
    ///
    /// No silent fallback: while the keystore cannot be reached, requests are answered
    /// from the caches for at most [`MAX_UNCHECKED_SECS`] after the last successful
    /// check, then refused until a check succeeds again, so that no node goes on using a
    /// key another node has disabled or deleted.
    pub(crate) fn refresh(&self) -> KmsResult<()> {
        let now = self.now();
        let unchecked = now - self.verified_at.load(Ordering::Relaxed);
        if self.polled.load(Ordering::Relaxed) {
            return if unchecked <= MAX_UNCHECKED_SECS {
                Ok(())
            } else {
                Err(Self::unreachable(unchecked))
            };
        }
        // No background task: one request a second checks, within the window; past it
        // every request checks for itself rather than answer from caches.
        let last = self.checked_at.load(Ordering::Relaxed);
        let checked_this_second =
            now == last || self.checked_at.swap(now, Ordering::Relaxed) == now;
        if checked_this_second && unchecked <= MAX_UNCHECKED_SECS {
            return Ok(());
        }
        self.poll_changes()
    }

    fn check_for_changes(&self) -> Result<(), kura_keys::Error> {
        let g = self.store.objects_generation()?;
        if self.seen_generation.swap(g, Ordering::Relaxed) != g {
            self.keys.write().unwrap_or_else(lock_err).clear();
            self.users.clear();
        }
        self.keyring.refresh()?;
        Ok(())
    }

    fn unreachable(secs: i64) -> KmsError {
        KmsError::new(
            Kind::Internal,
            format!(
                "The keystore has not been reachable for {secs} s; requests are refused until it is (see the server log)"
            ),
        )
    }

    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    pub(crate) fn key_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:kms:{}:{}:key/{id}",
            self.id.region, self.id.account
        )
    }

    /// `arn:aws:kms:<region>:<account>:alias/<name>` for `alias/<name>`.
    pub(crate) fn alias_arn(&self, alias: &str) -> String {
        format!("arn:aws:kms:{}:{}:{alias}", self.id.region, self.id.account)
    }

    fn not_found_key(&self, id: &str) -> KmsError {
        KmsError::new(
            Kind::NotFound,
            format!("Key '{}' does not exist", self.key_arn(id)),
        )
    }

    /// Resolves a `KeyId` member: a key id, a key ARN, and where `aliases` is true an alias
    /// name or alias ARN. Returns the key id.
    pub(crate) fn resolve(&self, key_id: &str, aliases: bool) -> KmsResult<String> {
        let prefix = format!("arn:aws:kms:{}:{}:", self.id.region, self.id.account);
        let rest = match key_id.strip_prefix(&prefix) {
            Some(r) => r,
            None if key_id.starts_with("arn:") => {
                return Err(KmsError::new(
                    Kind::NotFound,
                    format!("Invalid arn {key_id}"),
                ));
            }
            None => key_id,
        };
        if let Some(alias) = rest.strip_prefix("alias/").map(|_| rest) {
            if !aliases {
                return Err(KmsError::new(
                    Kind::NotFound,
                    format!("Invalid keyId {key_id}: an alias is not accepted here"),
                ));
            }
            let Some(o) = self.store.get(KIND_ALIAS, alias)? else {
                return Err(KmsError::new(
                    Kind::NotFound,
                    format!("Alias '{}' is not found.", self.alias_arn(alias)),
                ));
            };
            let a: crate::aliases::AliasDoc =
                serde_json::from_str(&o.doc).map_err(KmsError::internal)?;
            return Ok(a.target);
        }
        let id = rest.strip_prefix("key/").unwrap_or(rest);
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(self.not_found_key(id));
        }
        Ok(id.to_string())
    }

    /// The key `id`, from the cache or the keystore. A key whose deletion date has passed
    /// is deleted here and reported missing; imported material whose `ValidTo` has passed
    /// is deleted here (the key becomes PendingImport).
    pub(crate) fn key(&self, id: &str) -> KmsResult<Arc<CachedKey>> {
        self.refresh()?;
        let cached = self.keys.read().unwrap_or_else(lock_err).get(id).cloned();
        let key = match cached {
            Some(k) => k,
            None => {
                let o = self
                    .store
                    .get(KIND_KEY, id)?
                    .ok_or_else(|| self.not_found_key(id))?;
                self.cache(o)?
            }
        };
        if key.doc.state == PENDING_DELETION
            && key.doc.deletion_date.is_some_and(|d| d <= self.now())
        {
            self.delete_now(&key.doc)?;
            return Err(self.not_found_key(id));
        }
        if crate::import::material_expired(&key.doc, self.now()) {
            crate::import::expire(self, key.version, &key.doc)?;
            self.forget(id);
            let o = self
                .store
                .get(KIND_KEY, id)?
                .ok_or_else(|| self.not_found_key(id))?;
            return self.cache(o);
        }
        Ok(key)
    }

    fn cache(&self, o: Object) -> KmsResult<Arc<CachedKey>> {
        let doc: KeyDoc = serde_json::from_str(&o.doc).map_err(KmsError::internal)?;
        let k = Arc::new(CachedKey {
            version: o.version,
            doc,
            material: RwLock::new(HashMap::new()),
            policy: std::sync::OnceLock::new(),
        });
        self.keys
            .write()
            .unwrap_or_else(lock_err)
            .insert(o.id, k.clone());
        Ok(k)
    }

    fn forget(&self, id: &str) {
        self.keys.write().unwrap_or_else(lock_err).remove(id);
    }

    /// Creates key `doc` with its first material (if any) in one transaction.
    pub(crate) fn create_key(
        &self,
        doc: &KeyDoc,
        material: Option<(&str, Vec<u8>)>,
    ) -> KmsResult<()> {
        let mut changes = vec![ObjectChange::Create {
            kind: KIND_KEY.into(),
            id: doc.id.clone(),
            doc: serde_json::to_string(doc).map_err(KmsError::internal)?,
            blob: Vec::new(),
        }];
        if let Some((mid, sealed)) = material {
            changes.push(self.material_object(&doc.id, mid, sealed));
        }
        self.store.apply(&changes)?;
        Ok(())
    }

    pub(crate) fn material_object(
        &self,
        key_id: &str,
        material_id: &str,
        sealed: Vec<u8>,
    ) -> ObjectChange {
        ObjectChange::Create {
            kind: KIND_MATERIAL.into(),
            id: format!("{key_id}/{material_id}"),
            doc: "{}".into(),
            blob: sealed,
        }
    }

    /// Changes key `id` with `f` and stores it, retrying if another writer got there first;
    /// `extra` adds changes to the same transaction. Returns the new metadata.
    pub(crate) fn update_key(
        &self,
        id: &str,
        mut f: impl FnMut(&mut KeyDoc) -> KmsResult<Vec<ObjectChange>>,
    ) -> KmsResult<KeyDoc> {
        for _ in 0..WRITE_RETRIES {
            let k = self.key(id)?;
            let mut doc = k.doc.clone();
            let mut changes = f(&mut doc)?;
            changes.insert(
                0,
                ObjectChange::Update {
                    kind: KIND_KEY.into(),
                    id: id.into(),
                    version: k.version,
                    doc: serde_json::to_string(&doc).map_err(KmsError::internal)?,
                    blob: Vec::new(),
                },
            );
            let r = self.store.apply(&changes);
            self.forget(id);
            match r {
                Ok(()) => return Ok(doc),
                Err(kura_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::internal(format!(
            "key {id} kept changing under an update"
        )))
    }

    /// Deletes a key, its material and its aliases.
    fn delete_now(&self, doc: &KeyDoc) -> KmsResult<()> {
        let mut changes = vec![ObjectChange::Delete {
            kind: KIND_KEY.into(),
            id: doc.id.clone(),
        }];
        for m in &doc.materials {
            changes.push(ObjectChange::Delete {
                kind: KIND_MATERIAL.into(),
                id: format!("{}/{}", doc.id, m.id),
            });
        }
        for a in crate::aliases::aliases_of(self, &doc.id)? {
            changes.push(ObjectChange::Delete {
                kind: KIND_ALIAS.into(),
                id: a,
            });
        }
        self.store.apply(&changes)?;
        self.forget(&doc.id);
        tracing::info!(key = %doc.id, "key deleted at the end of its waiting period");
        Ok(())
    }

    /// Deletes every key whose deletion date has passed (returns how many), imported key
    /// material whose `ValidTo` has passed, and rotates every key whose automatic rotation
    /// date has passed.
    pub fn sweep_deletions(&self) -> KmsResult<usize> {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(KIND_KEY, "", after.as_deref(), 500)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for o in page {
                let doc: KeyDoc = serde_json::from_str(&o.doc).map_err(KmsError::internal)?;
                if doc.state == PENDING_DELETION
                    && doc.deletion_date.is_some_and(|d| d <= self.now())
                {
                    self.delete_now(&doc)?;
                    n += 1;
                } else if crate::import::material_expired(&doc, self.now()) {
                    crate::import::expire(self, o.version, &doc)?;
                    self.forget(&doc.id);
                } else {
                    crate::rotation::sweep(self, &doc, self.now());
                }
            }
        }
        Ok(n)
    }

    pub(crate) fn material_context(key_id: &str, material_id: &str) -> EncryptionContext {
        [("kura:kms-key", key_id), ("kura:material", material_id)]
            .into_iter()
            .collect()
    }

    /// New random key material for `key_id`: its id (64 hex digits) and the material
    /// sealed for storage. `bytes` is the material's length.
    pub(crate) fn new_material(&self, key_id: &str, bytes: &[u8]) -> KmsResult<(String, Vec<u8>)> {
        let id: [u8; 32] = rng::nonce().map_err(KmsError::internal)?;
        let mid = hex::encode(id);
        let mut sealed = Vec::new();
        self.keyring
            .seal(&Self::material_context(key_id, &mid), bytes, &mut sealed)?;
        Ok((mid, sealed))
    }

    /// The unsealed material `material_id` of `key`.
    pub(crate) fn material_bytes(
        &self,
        key: &CachedKey,
        material_id: &str,
    ) -> KmsResult<kura_crypto::SecretBytes> {
        let o = self
            .store
            .get(KIND_MATERIAL, &format!("{}/{material_id}", key.doc.id))?
            .ok_or_else(|| {
                KmsError::internal(format!(
                    "material {material_id} of key {} is missing",
                    key.doc.id
                ))
            })?;
        let mut out = Vec::new();
        self.keyring.open_envelope(
            &Self::material_context(&key.doc.id, material_id),
            &o.blob,
            &mut out,
        )?;
        Ok(kura_crypto::SecretBytes::new(out))
    }

    /// The symmetric material `material_id` of `key`, prepared for sealing.
    pub(crate) fn symmetric(
        &self,
        key: &CachedKey,
        material_id: &str,
    ) -> KmsResult<Arc<XaesCommitting>> {
        if let Some(x) = key
            .material
            .read()
            .unwrap_or_else(lock_err)
            .get(material_id)
        {
            return Ok(x.clone());
        }
        let bytes = self.material_bytes(key, material_id)?;
        let k = Key256::from_slice(bytes.expose_secret(), "KMS key material")
            .map_err(KmsError::internal)?;
        let x = Arc::new(XaesCommitting::new(&k).map_err(KmsError::internal)?);
        key.material
            .write()
            .unwrap_or_else(lock_err)
            .insert(material_id.to_string(), x.clone());
        Ok(x)
    }
}
