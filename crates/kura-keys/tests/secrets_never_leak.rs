#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! No master key and no sealed plaintext ever shows up in anything kura-keys renders:
//! `Debug` of its public types, `kura status` (also as JSON), error messages of every
//! failure path, the tracing output, or the keystore file itself.

mod common;

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use common::*;
use kura_keys::config::{self, Overrides};
use kura_keys::{Error, Keyring, master_key};
use tracing_subscriber::fmt::MakeWriter;

const SECRET: &str = "correct horse battery staple 7f3a9c";

/// Every rendering of the master keys and the plaintext that must never appear.
struct Needles(Vec<(String, Vec<u8>)>);

impl Needles {
    fn new(keys: &[&[u8; 32]]) -> Self {
        let mut n = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let lower = hex::encode(k);
            let upper = lower.to_uppercase();
            let debug = format!("{:?}", &k[..]);
            let mut texts = vec![
                STANDARD.encode(k),
                STANDARD_NO_PAD.encode(k),
                URL_SAFE.encode(k),
                URL_SAFE_NO_PAD.encode(k),
                // Fragments: 8 key bytes are already too many to show.
                lower[..16].to_string(),
                lower[32..48].to_string(),
                upper[..16].to_string(),
                STANDARD.encode(&k[..9]),
                debug[..debug.len() / 3].to_string(),
            ];
            texts.push(lower);
            texts.push(upper);
            texts.push(debug);
            for t in texts {
                n.push((format!("master key {i} as {t}"), t.into_bytes()));
            }
            n.push((format!("master key {i} raw"), k.to_vec()));
        }
        n.push(("the plaintext".into(), SECRET.as_bytes().to_vec()));
        n.push((
            "the plaintext in hex".into(),
            hex::encode(SECRET).into_bytes(),
        ));
        n.push((
            "the plaintext as bytes".into(),
            format!("{:?}", &SECRET.as_bytes()[..12])
                .trim_end_matches(']')
                .as_bytes()
                .to_vec(),
        ));
        Self(n)
    }

    fn found_in(&self, haystack: &[u8]) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, needle)| {
                haystack
                    .windows(needle.len())
                    .any(|w| w == needle.as_slice())
            })
            .map(|(name, _)| name.as_str())
    }

    fn assert_absent(&self, what: &str, haystack: &[u8]) {
        if let Some(name) = self.found_in(haystack) {
            panic!(
                "{name} leaks through {what}: {}",
                String::from_utf8_lossy(haystack)
            );
        }
    }
}

/// Collects everything rendered, by label.
#[derive(Default)]
struct Rendered(Vec<(String, String)>);

impl Rendered {
    fn debug(&mut self, what: &str, v: &dyn Debug) {
        self.0.push((format!("{what} (Debug)"), format!("{v:?}")));
        self.0
            .push((format!("{what} (Debug, alternate)"), format!("{v:#?}")));
    }

    fn error(&mut self, what: &str, e: &Error) {
        self.debug(what, e);
        self.0.push((format!("{what} (Display)"), e.to_string()));
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            self.0.push((format!("{what} (source)"), s.to_string()));
            source = s.source();
        }
    }

    fn err<T>(&mut self, what: &str, r: Result<T, Error>) -> Error {
        match r {
            Ok(_) => panic!("{what} succeeded"),
            Err(e) => {
                self.error(what, &e);
                e
            }
        }
    }

    fn check(&self, needles: &Needles) {
        for (what, text) in &self.0 {
            needles.assert_absent(what, text.as_bytes());
        }
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

fn key_file(dir: &Path, name: &str, contents: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, contents).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn the_needles_do_find_leaks() {
    // The checker itself must be able to fail.
    let m = Master::generate("m");
    let n = Needles::new(&[&m.bytes]);
    assert!(n.found_in(hex::encode(m.bytes).as_bytes()).is_some());
    assert!(n.found_in(hex::encode_upper(m.bytes).as_bytes()).is_some());
    assert!(n.found_in(STANDARD.encode(m.bytes).as_bytes()).is_some());
    assert!(n.found_in(format!("x{:?}y", m.bytes).as_bytes()).is_some());
    assert!(n.found_in(format!("'{SECRET}'").as_bytes()).is_some());
    assert!(n.found_in(m.id().as_bytes()).is_none());
}

#[test]
fn nothing_rendered_contains_a_secret() {
    let env = Env::new();
    let old = Master::generate("old");
    let cur = Master::generate("cur");
    let stranger = Master::generate("stranger");
    let needles = Needles::new(&[&old.bytes, &cur.bytes, &stranger.bytes]);
    let mut r = Rendered::default();

    let (sealed, sealed_ctx, stream_ct, destroyed_env) = {
        let k = env.init(&old);
        let destroyed_env = seal(&k, &ctx(), SECRET.as_bytes());
        let first = k.active_data_key_id();
        k.rotate_data_key().unwrap();
        k.destroy_data_key(first).unwrap();
        k.rotate_kek().unwrap();
        let out = (
            seal(&k, &no_ctx(), SECRET.as_bytes()),
            seal(&k, &ctx(), SECRET.as_bytes()),
            seal_stream(&k, &ctx(), SECRET.as_bytes()),
            destroyed_env,
        );
        r.err(
            "destroying the active key",
            k.destroy_data_key(k.active_data_key_id()),
        );
        r.err("destroying an unknown key", k.destroy_data_key(1));
        out
    };

    // Wrong master keys, then recovery through the previous one (with tracing captured).
    r.err("wrong master key", env.try_open(&cur, None));
    r.err(
        "wrong previous master key",
        env.try_open(&cur, Some(&stranger)),
    );
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let (k, report) = tracing::subscriber::with_default(subscriber, || {
        let (k, report) = env.try_open(&cur, Some(&old)).unwrap();
        // Everything else this keyring does is traced too.
        assert_eq!(open(&k, &no_ctx(), &sealed).unwrap(), SECRET.as_bytes());
        assert_eq!(
            open_stream(&k, &ctx(), &stream_ct).unwrap(),
            SECRET.as_bytes()
        );
        k.rotate_data_key().unwrap();
        k.rotate_kek().unwrap();
        k.rotate_master_key(old.dyn_key()).unwrap();
        k.rotate_master_key(cur.dyn_key()).unwrap();
        (k, report)
    });
    let log = captured.text();
    assert!(
        String::from_utf8_lossy(&log).contains("re-wrapped"),
        "the re-wrap was not logged: {}",
        String::from_utf8_lossy(&log)
    );
    needles.assert_absent("tracing output", &log);
    assert_eq!(report.kek_rewrapped_from, Some(old.id()));
    r.debug("OpenReport", &report);

    let status = k.status();
    assert!(status.previous_master_key.is_some());
    r.debug("Status", &status);
    r.0.push((
        "status JSON".into(),
        serde_json::to_string(&status).unwrap(),
    ));
    r.0.push((
        "status JSON, pretty".into(),
        serde_json::to_string_pretty(&status).unwrap(),
    ));
    r.debug("KeyringSettings", &settings(HOUR));
    r.debug("keystore snapshot", &env.store().snapshot().unwrap());
    r.debug(
        "SqliteKeystore",
        &kura_store::SqliteKeystore::open(&env.path()).unwrap(),
    );
    r.debug(
        "stream header",
        &kura_format::stream::Header::parse(&stream_ct[..80]).unwrap(),
    );
    r.debug("clock", &*env.clock);

    // Failures of records and streams.
    let mut wrong = ctx();
    wrong.insert("row", "2");
    r.err("wrong context", open(&k, &wrong, &sealed_ctx));
    r.err("wrong stream context", open_stream(&k, &wrong, &stream_ct));
    r.err("destroyed data key", open(&k, &ctx(), &destroyed_env));
    let mut unknown = sealed.clone();
    unknown[4..12].copy_from_slice(&7u64.to_be_bytes());
    r.err("unknown data key", open(&k, &no_ctx(), &unknown));
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    r.err("altered envelope", open(&k, &no_ctx(), &flipped));
    r.err(
        "truncated stream",
        open_stream(&k, &ctx(), &stream_ct[..100]),
    );
    drop(k);

    // Keystore states.
    r.err(
        "init twice",
        Keyring::init(env.store(), cur.dyn_key(), settings(LONG), env.clock()),
    );
    let empty = Env::new();
    r.err("open empty", empty.try_open(&cur, None));

    // Altered KEK and data key blobs.
    let (kek_id, kek_blob) = env.kek_blob();
    let mut bad = kek_blob.clone();
    let n = bad.len();
    bad[n - 20] ^= 4;
    env.set_kek_blob(kek_id, &bad);
    let e = r.err("altered KEK", env.try_open(&cur, None));
    assert!(matches!(e, Error::KekUnwrap { .. }));
    env.set_kek_blob(kek_id, &kek_blob);
    let (dk_id, dk_blob) = env.active_data_key_blob();
    let mut bad = dk_blob.clone();
    bad[n - 20] ^= 4;
    env.set_data_key_blob(dk_id, &bad);
    r.err("altered data key", env.try_open(&cur, None));
    env.set_data_key_blob(dk_id, &dk_blob);
    env.open(&cur);

    // Configuration: keys in the environment and in files, right and wrong.
    let dir = tempfile::tempdir().unwrap();
    let b64 = STANDARD.encode(cur.bytes);
    let env_vars: HashMap<&str, String> = [
        (config::ENV_MASTER_KEY_ENV, b64.clone()),
        (
            config::ENV_PREVIOUS_MASTER_KEY_ENV,
            STANDARD.encode(old.bytes),
        ),
    ]
    .into_iter()
    .collect();
    let settings_env =
        config::resolve(None, &|v| env_vars.get(v).cloned(), &Overrides::default()).unwrap();
    r.debug("Settings with env master keys", &settings_env);
    r.debug("MasterKeySpec", &settings_env.master_key);
    let loaded = master_key::load(settings_env.master_key.as_ref()).unwrap();
    assert_eq!(kura_keys::MasterKey::id(&*loaded), cur.id());
    r.0.push((
        "master key source".into(),
        kura_keys::MasterKey::source(&*loaded).into(),
    ));

    let hex_key = format!("{}\n", hex::encode(cur.bytes));
    let open_file = key_file(dir.path(), "open.key", &hex_key, 0o644);
    let flags = Overrides {
        master_key_file: Some(open_file.clone()),
        ..Overrides::default()
    };
    let s = config::resolve(None, &|_| None, &flags).unwrap();
    r.debug("Settings with a key file", &s);
    r.debug("Overrides", &flags);
    r.err(
        "key file mode 0644",
        master_key::load(s.master_key.as_ref()),
    );
    let short = key_file(
        dir.path(),
        "short.key",
        &hex::encode(&cur.bytes[..31]),
        0o400,
    );
    r.err(
        "31-byte key file",
        kura_keys::LocalMasterKey::from_file(&short, "test"),
    );
    let garbled = key_file(dir.path(), "garbled.key", &format!("{hex_key}zz!"), 0o400);
    r.err(
        "garbled key file",
        kura_keys::LocalMasterKey::from_file(&garbled, "test"),
    );
    r.err(
        "garbled key variable",
        kura_keys::LocalMasterKey::from_env_value("K", &format!("{b64}!")),
    );
    r.err(
        "hex key in a variable, one digit short",
        kura_keys::LocalMasterKey::from_env_value("K", &hex::encode(cur.bytes)[1..]),
    );
    r.err(
        "missing key file",
        kura_keys::LocalMasterKey::from_file(&dir.path().join("absent"), "test"),
    );
    r.err("no master key", master_key::load(None));
    let both: HashMap<&str, String> = [
        (config::ENV_MASTER_KEY_ENV, b64.clone()),
        (config::ENV_MASTER_KEY_FILE, "/k".into()),
    ]
    .into_iter()
    .collect();
    r.err(
        "both variables set",
        config::resolve(None, &|v| both.get(v).cloned(), &Overrides::default()),
    );
    // A key pasted into the config file where a table belongs.
    for text in [
        format!("[security.encryption]\nmaster-key = \"{b64}\"\n"),
        format!(
            "[security.encryption]\nprevious-master-key = \"{}\"\n",
            hex::encode(cur.bytes)
        ),
        format!("[security.encryption.master-key]\ntype = \"file\"\npath = [\"{b64}\"]\n"),
        format!(
            "[security.encryption.master-key]\ntype = \"env\"\nvariable = 7\nkey = \"{b64}\"\n"
        ),
    ] {
        r.err(
            "a key in the config file",
            config::resolve(
                Some((Path::new("kura.toml"), &text)),
                &|_| None,
                &Overrides::default(),
            ),
        );
    }

    assert!(r.0.len() > 100, "{}", r.0.len());
    r.check(&needles);

    // The keystore on disk holds no master key and no plaintext either.
    for entry in fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        needles.assert_absent(&path.display().to_string(), &fs::read(&path).unwrap());
    }
}
