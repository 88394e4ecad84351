#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `KmsMasterKey` against a real KMS API: moto in server mode on loopback (one per test
//! binary, shared by the tests that run at once). Keys are created with the AWS SDK for
//! Rust; the provider wraps KEKs with Encrypt and unwraps them with Decrypt, from plain
//! threads, from `spawn_blocking` and from inside an async task, and reports each failure
//! moto can produce with a message naming the key and the endpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use aws_config::BehaviorVersion;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use kura_crypto::Key256;
use kura_format::EncryptionContext;
use kura_format::wrapped::{self, Kind};
use kura_keys::clock::SystemClock;
use kura_keys::config::{DEFAULT_ROTATION_PERIOD, KmsSpec, MasterKeySpec, Method};
use kura_keys::master_key::descriptor::{self, RecordTrust, RecordedMasterKeys};
use kura_keys::master_key::{self, KmsErrorKind, KmsMasterKey, MasterKeyDescriptor};
use kura_keys::{Error, Keyring, KeyringSettings, MasterKey};
use kura_store::{Keystore, SqliteKeystore};
use kura_testkit::{MotoServer, free_port, python_env};

const REGION: &str = "us-east-1";

/// The moto server of this test binary: started by the first test that needs it, stopped
/// when the last test holding it ends.
fn moto() -> Arc<MotoServer> {
    static M: Mutex<Weak<MotoServer>> = Mutex::new(Weak::new());
    let mut g = M.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(m) = g.upgrade() {
        return m;
    }
    let env =
        python_env().unwrap_or_else(|e| panic!("the Python test environment is required: {e}"));
    let m = Arc::new(MotoServer::start(&env).unwrap_or_else(|e| panic!("{e}")));
    *g = Arc::downgrade(&m);
    m
}

fn creds() -> Credentials {
    Credentials::new("testing", "testing", None, None, "test")
}

/// An SDK client on moto, for creating and disabling keys, and its runtime.
struct Admin {
    rt: tokio::runtime::Runtime,
    kms: Client,
}

impl Admin {
    fn new(endpoint: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conf = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(Region::new(REGION))
                .credentials_provider(creds())
                .load(),
        );
        Self {
            rt,
            kms: Client::new(&conf),
        }
    }

    /// A new symmetric key; returns its key id.
    fn create_key(&self) -> String {
        self.rt.block_on(async {
            let out = self.kms.create_key().send().await.unwrap();
            out.key_metadata().unwrap().key_id().to_string()
        })
    }

    fn create_alias(&self, alias: &str, key_id: &str) {
        self.rt.block_on(async {
            self.kms
                .create_alias()
                .alias_name(alias)
                .target_key_id(key_id)
                .send()
                .await
                .unwrap();
        });
    }

    fn disable_key(&self, key_id: &str) {
        self.rt.block_on(async {
            self.kms.disable_key().key_id(key_id).send().await.unwrap();
        });
    }

    fn create_rsa_key(&self) -> String {
        self.rt.block_on(async {
            let out = self
                .kms
                .create_key()
                .key_spec(KeySpec::Rsa2048)
                .key_usage(KeyUsageType::EncryptDecrypt)
                .send()
                .await
                .unwrap();
            out.key_metadata().unwrap().key_id().to_string()
        })
    }
}

fn spec(key_id: &str, endpoint: &str, context: &[(&str, &str)]) -> KmsSpec {
    KmsSpec {
        key_id: key_id.to_string(),
        region: Some(REGION.to_string()),
        endpoint: Some(endpoint.to_string()),
        encryption_context: context
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect::<BTreeMap<_, _>>(),
        origin: "the test".to_string(),
    }
}

fn connect(s: &KmsSpec) -> Result<KmsMasterKey, Error> {
    KmsMasterKey::connect_with(s, Some(creds()))
}

fn kms_error(r: Result<impl Sized, Error>) -> (KmsErrorKind, String) {
    match r {
        Err(Error::Kms(e)) => (e.kind(), e.to_string()),
        Err(e) => panic!("expected a KMS error, got {e:?}"),
        Ok(_) => panic!("expected a KMS error, got success"),
    }
}

fn settings() -> KeyringSettings {
    KeyringSettings::new(Method::default(), DEFAULT_ROTATION_PERIOD)
}

fn ctx() -> EncryptionContext {
    let mut c = EncryptionContext::new();
    c.insert("app", "kms-test");
    c
}

#[test]
fn a_keystore_rooted_in_moto_survives_a_restart() {
    let moto = moto();
    let admin = Admin::new(&moto.endpoint());
    let key = admin.create_key();
    admin.create_alias("alias/kura-restart", &key);
    let s = spec(
        "alias/kura-restart",
        &moto.endpoint(),
        &[("context", "kura_encryption_context")],
    );

    let mk = Arc::new(connect(&s).unwrap());
    assert_eq!(
        mk.id(),
        format!("kms:arn:aws:kms:{REGION}:123456789012:key/{key}"),
        "the id is the ARN the alias resolved to"
    );
    for part in ["alias/kura-restart", REGION, &moto.endpoint()] {
        assert!(mk.source().contains(part), "{}", mk.source());
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.db");
    let store: Arc<dyn Keystore> = Arc::new(SqliteKeystore::open(&path).unwrap());
    let k = Keyring::init(store, mk.clone(), settings(), Arc::new(SystemClock)).unwrap();
    let mut sealed = Vec::new();
    k.seal(&ctx(), b"rooted in a KMS", &mut sealed).unwrap();
    let kek = k.status().kek;
    assert_eq!(kek.master_key_id, mk.id());
    drop(k);
    drop(mk);

    // The stored KEK: kura's header (kind 0x04, the master key id, the KEK id) and the
    // KMS's ciphertext.
    let store = Arc::new(SqliteKeystore::open_existing(&path).unwrap());
    let snap = store.snapshot().unwrap().unwrap();
    let rec = &snap.keks[0];
    let h = wrapped::parse(&rec.wrapped).unwrap();
    assert_eq!(h.kind, Kind::KekUnderExternalKey);
    assert_eq!(h.key_id.to_string(), kek.id);
    assert_eq!(h.wrapping_key_id, rec.master_key_id);

    // A new provider (as a new process would make) opens it.
    let mk = Arc::new(connect(&s).unwrap());
    let (k, report) = Keyring::open(store, mk, None, settings(), Arc::new(SystemClock)).unwrap();
    assert_eq!(report.kek_rewrapped_from, None);
    let mut out = Vec::new();
    k.open_envelope(&ctx(), &sealed, &mut out).unwrap();
    assert_eq!(out, b"rooted in a KMS");
}

#[test]
fn calls_work_from_plain_threads_spawn_blocking_and_async_tasks() {
    let moto = moto();
    let admin = Admin::new(&moto.endpoint());
    let key = admin.create_key();
    let mk = Arc::new(connect(&spec(&key, &moto.endpoint(), &[])).unwrap());
    let kek = Key256::generate().unwrap();
    let blob = mk.wrap_kek(7, &kek).unwrap();

    // Plain threads, several at once.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (mk, blob) = (mk.clone(), blob.clone());
            std::thread::spawn(move || mk.unwrap_kek(7, &blob).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().expose_secret(), kek.expose_secret());
    }

    // From another runtime: spawn_blocking (as the KMS server calls the keyring), and an
    // async task calling straight in (it blocks its worker, but cannot deadlock).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let (m1, b1) = (mk.clone(), blob.clone());
        let a = tokio::task::spawn_blocking(move || m1.unwrap_kek(7, &b1).unwrap())
            .await
            .unwrap();
        let (m2, b2) = (mk.clone(), blob.clone());
        let b = tokio::spawn(async move { m2.unwrap_kek(7, &b2).unwrap() })
            .await
            .unwrap();
        (a, b)
    });
    assert_eq!(got.0.expose_secret(), kek.expose_secret());
    assert_eq!(got.1.expose_secret(), kek.expose_secret());

    // The KEK id is bound: the blob of KEK 7 is refused as KEK 8 (by kura's header, and by
    // the encryption context if the header is rewritten).
    assert!(matches!(
        mk.unwrap_kek(8, &blob),
        Err(Error::Format(kura_format::Error::KeyMismatch { .. }))
    ));
    let (_, body) = wrapped::open_external(7, &blob).unwrap();
    let mut relabelled = wrapped::external(mk.id(), 8).unwrap();
    relabelled.extend_from_slice(body);
    let (kind, msg) = kms_error(mk.unwrap_kek(8, &relabelled));
    assert_eq!(kind, KmsErrorKind::WrongContext, "{msg}");

    // Dropping the provider inside an async context does not panic.
    let last = Arc::try_unwrap(mk).ok().unwrap();
    rt.block_on(async move { drop(last) });
}

#[test]
fn errors_name_the_key_and_the_kms_and_say_what_to_do() {
    let moto = moto();
    let ep = moto.endpoint();
    let admin = Admin::new(&ep);

    // Unknown key.
    let (kind, msg) = kms_error(connect(&spec("alias/no-such-key", &ep, &[])));
    assert_eq!(kind, KmsErrorKind::UnknownKey, "{msg}");
    assert!(
        msg.contains("alias/no-such-key") && msg.contains(&ep),
        "{msg}"
    );
    assert!(
        msg.contains("NotFoundException") && msg.contains("KURA_AWS_CMK"),
        "{msg}"
    );

    // Disabled key: refused at connect.
    let disabled = admin.create_key();
    admin.disable_key(&disabled);
    let (kind, msg) = kms_error(connect(&spec(&disabled, &ep, &[])));
    assert_eq!(kind, KmsErrorKind::Disabled, "{msg}");
    assert!(msg.contains(&disabled) && msg.contains("Disabled"), "{msg}");
    assert!(msg.contains("enable-key"), "{msg}");

    // Not a symmetric key.
    let rsa = admin.create_rsa_key();
    let (kind, msg) = kms_error(connect(&spec(&rsa, &ep, &[])));
    assert_eq!(kind, KmsErrorKind::Unusable, "{msg}");
    assert!(
        msg.contains("RSA_2048") && msg.contains("symmetric"),
        "{msg}"
    );

    // Wrong encryption context, and a blob from another key.
    let key = admin.create_key();
    let a = connect(&spec(&key, &ep, &[("tenant", "a")])).unwrap();
    let kek = Key256::generate().unwrap();
    let blob = a.wrap_kek(5, &kek).unwrap();
    let b = connect(&spec(&key, &ep, &[("tenant", "b")])).unwrap();
    let (kind, msg) = kms_error(b.unwrap_kek(5, &blob));
    assert_eq!(kind, KmsErrorKind::WrongContext, "{msg}");
    assert!(
        msg.contains("KEK 5") && msg.contains("does not decrypt under key"),
        "{msg}"
    );
    assert!(
        msg.contains("\"tenant\": \"b\"") && msg.contains("kura:kek-id"),
        "{msg}"
    );
    assert!(
        msg.contains(&key) && msg.contains("KURA_AWS_CMK_EC"),
        "{msg}"
    );
    let other = connect(&spec(&admin.create_key(), &ep, &[("tenant", "a")])).unwrap();
    // (AWS answers IncorrectKeyException, moto AccessDeniedException.)
    let (kind, msg) = kms_error(other.unwrap_kek(5, &blob));
    assert!(
        matches!(
            kind,
            KmsErrorKind::WrongContext | KmsErrorKind::AccessDenied
        ),
        "{msg}"
    );
    assert!(msg.contains(other.arn()), "{msg}");

    // (A key disabled after start-up: moto goes on encrypting with it; the test against a
    // `kura server` in crates/kura/tests/master_key_kms.rs covers it.)

    // Nothing listens: unreachable, and quickly.
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let t = Instant::now();
    let (kind, msg) = kms_error(connect(&spec("alias/x", &closed, &[])));
    eprintln!("unreachable KMS reported in {:?}", t.elapsed());
    assert_eq!(kind, KmsErrorKind::Unreachable, "{msg}");
    assert!(msg.contains(&closed) && msg.contains("alias/x"), "{msg}");
    assert!(msg.contains("KURA_KMS_ENDPOINT"), "{msg}");

    // No region.
    let mut s = spec(&key, &ep, &[]);
    s.region = None;
    let (kind, msg) = kms_error(connect(&s));
    assert_eq!(kind, KmsErrorKind::MissingRegion, "{msg}");
    assert!(msg.contains(&key) && msg.contains("AWS_REGION"), "{msg}");

    // The KEK binding's context key is kura's own.
    let e = connect(&spec(&key, &ep, &[("kura:kek-id", "1")]))
        .err()
        .unwrap();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}

#[test]
fn previous_kms_key_is_tried_only_when_the_current_one_did_not_wrap_the_kek() {
    let moto = moto();
    let ep = moto.endpoint();
    let admin = Admin::new(&ep);
    let (old_key, new_key) = (admin.create_key(), admin.create_key());
    let old: Arc<dyn MasterKey> = Arc::new(connect(&spec(&old_key, &ep, &[])).unwrap());
    let new: Arc<dyn MasterKey> = Arc::new(connect(&spec(&new_key, &ep, &[])).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.db");
    let store = || -> Arc<dyn Keystore> { Arc::new(SqliteKeystore::open_existing(&path).unwrap()) };
    let k = Keyring::init(
        Arc::new(SqliteKeystore::open(&path).unwrap()),
        old.clone(),
        settings(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut sealed = Vec::new();
    k.seal(&ctx(), b"before the rotation", &mut sealed).unwrap();
    drop(k);

    // New key configured, old one as previous: the KEK is re-wrapped under the new one.
    let (k, report) = Keyring::open(
        store(),
        new.clone(),
        Some(old.clone()),
        settings(),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert_eq!(report.kek_rewrapped_from.as_deref(), Some(old.id()));
    assert_eq!(k.status().kek.master_key_id, new.id());
    drop(k);

    // From now on the old key is not needed: configured as previous, it is never called.
    let counted = Arc::new(Counted {
        inner: old,
        calls: AtomicUsize::new(0),
    });
    let (k, report) = Keyring::open(
        store(),
        new,
        Some(counted.clone()),
        settings(),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert_eq!(report.kek_rewrapped_from, None);
    assert_eq!(counted.calls.load(Ordering::SeqCst), 0);
    let mut out = Vec::new();
    k.open_envelope(&ctx(), &sealed, &mut out).unwrap();
    assert_eq!(out, b"before the rotation");
}

/// A master key that counts the calls made to it.
struct Counted {
    inner: Arc<dyn MasterKey>,
    calls: AtomicUsize,
}

impl MasterKey for Counted {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn source(&self) -> &str {
        self.inner.source()
    }

    fn wrap_kek(&self, kek_id: u64, kek: &Key256) -> Result<Vec<u8>, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.wrap_kek(kek_id, kek)
    }

    fn unwrap_kek(&self, kek_id: u64, blob: &[u8]) -> Result<Key256, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_kek(kek_id, blob)
    }
}

/// A local master key in a key file, and its descriptor.
fn local_key(dir: &Path, name: &str, byte: u8) -> (Arc<dyn MasterKey>, MasterKeyDescriptor) {
    let path = kura_testkit::write_master_key(dir, name, &[byte; 32]).unwrap();
    let spec = MasterKeySpec::File {
        path,
        origin: "the test".into(),
    };
    (
        master_key::load(Some(&spec)).unwrap(),
        MasterKeyDescriptor::from_spec(&spec),
    )
}

/// A SQLite keystore at `path` initialised under a local master key (`m.key` beside it,
/// 32 bytes `byte`): the key, its descriptor and the keyring.
fn local_keystore(path: &Path, byte: u8) -> (Arc<dyn MasterKey>, MasterKeyDescriptor, Keyring) {
    let dir = path.parent().unwrap();
    let (local, desc) = local_key(dir, "m.key", byte);
    let store = Arc::new(SqliteKeystore::open(path).unwrap());
    let keyring = Keyring::init(store, local.clone(), settings(), Arc::new(SystemClock));
    (local, desc, keyring.unwrap())
}

/// Loads a master key as `master_key::load` does, KMS keys with the test's credentials.
fn load_with_creds(spec: &MasterKeySpec) -> Result<Arc<dyn MasterKey>, Error> {
    match spec {
        MasterKeySpec::Kms(k) => Ok(Arc::new(connect(k)?)),
        other => master_key::load(Some(other)),
    }
}

fn kms_descriptor(key_id: &str, endpoint: &str) -> MasterKeyDescriptor {
    MasterKeyDescriptor::from_spec(&MasterKeySpec::Kms(spec(key_id, endpoint, &[])))
}

#[test]
fn a_running_keyring_keeps_working_across_a_switch_to_kms() {
    let moto = moto();
    let admin = Admin::new(&moto.endpoint());
    let key = admin.create_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.db");
    let (local, local_desc, running) = local_keystore(&path, 3);
    let mut before = Vec::new();
    running.seal(&ctx(), b"before", &mut before).unwrap();

    // Another process switches the keystore to the KMS key.
    let store = Arc::new(SqliteKeystore::open_existing(&path).unwrap());
    let (other, _) = Keyring::open(
        store.clone(),
        local,
        None,
        settings(),
        Arc::new(SystemClock),
    )
    .unwrap();
    // (A KEK rotation first, so that a retired KEK is re-wrapped too.)
    other.rotate_kek().unwrap();
    assert!(running.refresh().unwrap());
    let kms: Arc<dyn MasterKey> = Arc::new(connect(&spec(&key, &moto.endpoint(), &[])).unwrap());
    let desc = kms_descriptor(&key, &moto.endpoint());
    let sw = descriptor::switch(
        &other,
        &*store,
        kms.clone(),
        desc.clone(),
        Some(local_desc.clone()),
    )
    .unwrap();
    assert_eq!(sw.to, kms.id());
    assert!(sw.from.starts_with("local:"));
    let (rec, _) = descriptor::recorded(&*store).unwrap().unwrap();
    assert_eq!(rec.current, desc);
    assert_eq!(rec.previous, Some(local_desc));
    let snap = store.snapshot().unwrap().unwrap();
    assert_eq!(snap.keks.len(), 2);
    for k in &snap.keks {
        assert_eq!(k.master_key_id, kms.id(), "every KEK is re-wrapped");
    }
    let st = other.status();
    assert_eq!(st.master_key.id, kms.id());
    assert_eq!(st.previous_master_key.map(|p| p.id), Some(sw.from.clone()));

    // The running keyring notices the re-wrap and goes on with the KEK it holds.
    assert!(running.refresh().unwrap());
    let mut out = Vec::new();
    running.open_envelope(&ctx(), &before, &mut out).unwrap();
    assert_eq!(out, b"before");
    let mut after = Vec::new();
    running.seal(&ctx(), b"after", &mut after).unwrap();

    // A new process with nothing configured loads nothing from the record unless it opted
    // in: the error names the recorded key and the opt-in.
    let e = descriptor::load_recorded_with(&*store, None, RecordTrust::Refuse, &|_| None, &|_| {
        panic!("nothing is loaded from the record without the opt-in")
    })
    .err()
    .unwrap();
    let Error::RecordedMasterKeyNotTrusted { ref recorded } = e else {
        panic!("{e:?}");
    };
    assert_eq!(*recorded, desc.to_string());
    let msg = e.to_string();
    for part in [
        desc.to_string().as_str(),
        "use-recorded-master-key = true",
        "KURA_USE_RECORDED_MASTER_KEY=true",
        "[security.encryption.master-key]",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    // With the opt-in, it loads the recorded KMS key, and only it.
    let loaded = descriptor::load_recorded_with(
        &*store,
        None,
        RecordTrust::Trust,
        &|_| None,
        &load_with_creds,
    )
    .unwrap()
    .unwrap();
    assert_eq!(loaded.current.id(), kms.id());
    assert_eq!(loaded.current.mode(), "kms");
    assert!(
        loaded.previous.is_none(),
        "the KEK is wrapped by the current key"
    );
    let (k, report) = Keyring::open(
        store,
        loaded.current,
        None,
        settings(),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert_eq!(report.kek_rewrapped_from, None);
    assert_eq!(k.status().master_key.mode, "kms");
    for (sealed, text) in [(&before, &b"before"[..]), (&after, b"after")] {
        let mut out = Vec::new();
        k.open_envelope(&ctx(), sealed, &mut out).unwrap();
        assert_eq!(out, text);
    }
}

#[test]
fn a_switch_cut_short_after_the_record_completes_at_the_next_start() {
    let moto = moto();
    let admin = Admin::new(&moto.endpoint());
    let key = admin.create_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.db");
    let (local, local_desc, k) = local_keystore(&path, 4);
    let mut sealed = Vec::new();
    k.seal(&ctx(), b"kept", &mut sealed).unwrap();
    drop(k);

    // The record is written, the process dies before the KEK is re-wrapped.
    let store = Arc::new(SqliteKeystore::open_existing(&path).unwrap());
    descriptor::record(
        &*store,
        &RecordedMasterKeys {
            current: kms_descriptor(&key, &moto.endpoint()),
            previous: Some(local_desc),
        },
        None,
    )
    .unwrap();

    // The next start: the recorded previous (local) key unwraps the KEK, which is then
    // re-wrapped under the recorded current (KMS) key.
    let loaded = descriptor::load_recorded_with(
        &*store,
        None,
        RecordTrust::Trust,
        &|_| None,
        &load_with_creds,
    )
    .unwrap()
    .unwrap();
    assert_eq!(loaded.previous.as_ref().map(|p| p.id()), Some(local.id()));
    let (k, report) = Keyring::open(
        store.clone(),
        loaded.current.clone(),
        loaded.previous,
        settings(),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert_eq!(report.kek_rewrapped_from.as_deref(), Some(local.id()));
    assert_eq!(k.status().kek.master_key_id, loaded.current.id());
    let mut out = Vec::new();
    k.open_envelope(&ctx(), &sealed, &mut out).unwrap();
    assert_eq!(out, b"kept");
}

#[test]
fn a_switch_refuses_when_the_active_kek_is_wrapped_by_a_key_it_does_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keystore.db");
    let (m1, d1, stale) = local_keystore(&path, 1);

    // Another process switches the keystore to m2.
    let store = Arc::new(SqliteKeystore::open_existing(&path).unwrap());
    let (other, _) = Keyring::open(
        store.clone(),
        m1.clone(),
        None,
        settings(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let (m2, d2) = local_key(dir.path(), "m2.key", 2);
    descriptor::switch(&other, &*store, m2.clone(), d2.clone(), Some(d1.clone())).unwrap();
    let (_, version) = descriptor::recorded(&*store).unwrap().unwrap();

    // The stale keyring still holds only m1: its switch to m3 is refused, nothing written.
    let (m3, d3) = local_key(dir.path(), "m3.key", 3);
    let e = descriptor::switch(&stale, &*store, m3, d3, Some(d1)).unwrap_err();
    let Error::SwitchKekNotHeld {
        ref wrapped_by,
        ref held,
        ..
    } = e
    else {
        panic!("{e:?}");
    };
    assert_eq!(*wrapped_by, m2.id());
    assert_eq!(*held, m1.id());
    let msg = e.to_string();
    assert!(
        msg.contains("nothing was written") && msg.contains("kura status"),
        "{msg}"
    );
    let (rec, after) = descriptor::recorded(&*store).unwrap().unwrap();
    assert_eq!(
        (rec.current, after),
        (d2, version),
        "the record is unchanged"
    );
    let snap = store.snapshot().unwrap().unwrap();
    assert!(
        snap.keks.iter().all(|k| k.master_key_id == m2.id()),
        "{snap:?}"
    );
}
