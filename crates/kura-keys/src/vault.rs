//! The [`Vault`]: the library API for applications. It seals values into record envelopes,
//! opens them, and reads legacy values during a migration ([`Vault::open_any`]).
//!
//! ```no_run
//! use kura_format::EncryptionContext;
//! use kura_keys::config::Overrides;
//! use kura_keys::Vault;
//!
//! # fn main() -> Result<(), kura_keys::Error> {
//! // Settings come from the same places as the CLI's: the file, KURA_* variables, flags.
//! let vault = Vault::from_config(None, &Overrides::default())?;
//! let mut ctx = EncryptionContext::new();
//! ctx.insert("table", "users");
//! let envelope = vault.seal(b"4111 1111 1111 1111", &ctx)?;
//! assert_eq!(&vault.open(&envelope, &ctx)?[..], b"4111 1111 1111 1111");
//! # Ok(())
//! # }
//! ```
//!
//! A vault is `Send + Sync`: share one through `&Vault` or `Arc<Vault>` between threads.
//! Run `cargo run -p kura-keys --example seal_open` for a complete, self-contained demo.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kura_format::{EncryptionContext, envelope};
use kura_store::{Keystore, SqliteKeystore};
use zeroize::Zeroizing;

use crate::clock::SystemClock;
use crate::config::{self, Overrides};
use crate::master_key::{self, MasterKey};
use crate::{Error, Keyring, KeyringSettings};

/// Length of an AES-128 legacy key.
pub const LEGACY_KEY_LEN: usize = kura_crypto::legacy::KEY_LEN;
const IV_LEN: usize = kura_crypto::legacy::IV_LEN;

/// How a legacy value is stored: the 16-byte IV followed by the AES-128-CBC ciphertext
/// with PKCS#7 padding (`IV ‖ CT`, at least 32 bytes, a multiple of 16), e.g.
/// `openssl enc -aes-128-cbc -K <key> -iv <iv>` with the IV prepended, as text (base64 or
/// hex; leading and trailing ASCII whitespace such as a newline is ignored) or as raw bytes
/// (binary columns).
///
/// CBC is unauthenticated: a legacy value under another key usually fails its padding
/// check ("decryption failed"), but may decrypt to garbage. Re-seal legacy values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyFormat {
    /// Standard base64 (with padding) of `IV ‖ CT`.
    Base64IvCt,
    /// Hex (either case) of `IV ‖ CT`.
    HexIvCt,
    /// The bytes `IV ‖ CT` themselves (BLOB/BYTEA columns).
    RawIvCt,
}

impl LegacyFormat {
    /// The name used on the command line (`base64-iv-ct`, `hex-iv-ct`, `raw-iv-ct`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base64IvCt => "base64-iv-ct",
            Self::HexIvCt => "hex-iv-ct",
            Self::RawIvCt => "raw-iv-ct",
        }
    }

    fn decode(self, value: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let text = value.trim_ascii();
        let bytes = match self {
            Self::Base64IvCt => STANDARD.decode(text).ok(),
            Self::HexIvCt => hex::decode(text).ok(),
            Self::RawIvCt => Some(value.to_vec()),
        }
        .map(Zeroizing::new)
        .ok_or_else(|| Error::LegacyValue(format!("it is not {} text", self.as_str())))?;
        if bytes.len() < IV_LEN + 16 || !bytes.len().is_multiple_of(16) {
            return Err(Error::LegacyValue(format!(
                "{} bytes cannot be a 16-byte IV followed by AES-128-CBC blocks",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// A legacy AES-128 key (16 bytes), erased from memory when dropped.
pub struct LegacyKey(Zeroizing<[u8; LEGACY_KEY_LEN]>);

impl fmt::Debug for LegacyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LegacyKey(…)")
    }
}

impl LegacyKey {
    /// A key from its 16 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut k = Zeroizing::new([0u8; LEGACY_KEY_LEN]);
        if bytes.len() != LEGACY_KEY_LEN {
            return Err(Error::LegacyKey(format!(
                "an AES-128 key must be {LEGACY_KEY_LEN} bytes (32 hex digits), but it is {} bytes",
                bytes.len()
            )));
        }
        k.copy_from_slice(bytes);
        Ok(Self(k))
    }

    /// A key from text: 32 hex digits or base64 of 16 bytes; surrounding whitespace (a
    /// trailing newline) is ignored.
    pub fn from_text(text: &[u8]) -> Result<Self, Error> {
        let t = text.trim_ascii();
        let bytes = Zeroizing::new(
            if !t.is_empty() && t.len().is_multiple_of(2) && t.iter().all(u8::is_ascii_hexdigit) {
                hex::decode(t).ok()
            } else {
                STANDARD.decode(t).ok()
            }
            .ok_or_else(|| {
                Error::LegacyKey("it is neither 32 hex digits nor base64 of 16 bytes".into())
            })?,
        );
        Self::from_bytes(&bytes)
    }

    /// Reads a key file holding [`LegacyKey::from_text`]'s text.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?);
        Self::from_text(&text).map_err(|e| match e {
            Error::LegacyKey(m) => Error::LegacyKey(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Encrypts `plaintext` the legacy way, under a random IV, in `format`: what an
    /// application still on the old scheme writes (and what tests use to make legacy data).
    pub fn encrypt(&self, plaintext: &[u8], format: LegacyFormat) -> Result<Vec<u8>, Error> {
        let mut iv = [0u8; IV_LEN];
        kura_crypto::rng::fill(&mut iv).map_err(|e| Error::Format(kura_format::Error::from(e)))?;
        let mut raw = iv.to_vec();
        raw.extend(
            kura_crypto::legacy::encrypt_cbc(&self.0[..], iv, plaintext)
                .map_err(|e| Error::Format(kura_format::Error::from(e)))?,
        );
        Ok(match format {
            LegacyFormat::Base64IvCt => STANDARD.encode(raw).into_bytes(),
            LegacyFormat::HexIvCt => hex::encode(raw).into_bytes(),
            LegacyFormat::RawIvCt => raw,
        })
    }

    /// Decrypts a legacy value of format `format`. A bad padding (tampered data, or
    /// another key) is the opaque decryption failure.
    pub fn decrypt(&self, value: &[u8], format: LegacyFormat) -> Result<Zeroizing<Vec<u8>>, Error> {
        let bytes = format.decode(value)?;
        let (iv, ct) = bytes.split_at(IV_LEN);
        let mut iv_arr = [0u8; IV_LEN];
        iv_arr.copy_from_slice(iv);
        kura_crypto::legacy::decrypt_cbc(&self.0[..], iv_arr, ct)
            .map(Zeroizing::new)
            .map_err(|e| Error::Format(kura_format::Error::from(e)))
    }
}

/// Where [`Vault::open_any`] found the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A kura record envelope (raw, or base64 text of one).
    Envelope,
    /// A legacy AES-128-CBC value.
    Legacy,
}

impl Origin {
    /// `envelope` or `legacy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Envelope => "envelope",
            Self::Legacy => "legacy",
        }
    }
}

/// An opened keystore for applications: seal and open values, read legacy ones.
pub struct Vault {
    keyring: Keyring,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens the keystore configured exactly as for the CLI: the TOML file at `config` (if
    /// any; an empty path counts as none), the environment (`KURA_*`), then `overrides`
    /// (the CLI's flags), which win. Loads the master key (and the previous one, if
    /// configured: a KEK it wrapped is re-wrapped under the current key) and opens the
    /// existing keystore; it never creates one (`kura init` does).
    pub fn from_config(config: Option<&Path>, overrides: &Overrides) -> Result<Self, Error> {
        let config = config.filter(|p| !p.as_os_str().is_empty());
        let text = match config {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.to_path_buf(),
                source,
            })?),
            None => None,
        };
        let settings = config::resolve(
            config.zip(text.as_deref()),
            &|k| std::env::var(k).ok(),
            overrides,
        )?;
        let master: Arc<dyn MasterKey> = Arc::new(master_key::load(settings.master_key.as_ref())?);
        let previous = match &settings.previous_master_key {
            Some(spec) => Some(Arc::new(master_key::load(Some(spec))?) as Arc<dyn MasterKey>),
            None => None,
        };
        let store: Arc<dyn Keystore> =
            Arc::new(SqliteKeystore::open_existing(&settings.keystore_path())?);
        let (keyring, _) = Keyring::open(
            store,
            master,
            previous,
            KeyringSettings::new(settings.method, settings.rotation_period),
            Arc::new(SystemClock),
        )?;
        Ok(Self { keyring })
    }

    /// A vault over a keyring opened by other means (e.g. [`Keyring::init`]).
    pub fn from_keyring(keyring: Keyring) -> Self {
        Self { keyring }
    }

    /// The keyring, to share with other parts of kura (e.g. an `Arc<Keyring>` for kura-fs).
    pub fn into_keyring(self) -> Keyring {
        self.keyring
    }

    /// The keyring underneath (rotation, status, streams).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seals `plaintext` into a record envelope bound to `context` (which opening must
    /// repeat exactly).
    pub fn seal(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(envelope::sealed_len(plaintext.len()));
        self.keyring.seal(context, plaintext, &mut out)?;
        Ok(out)
    }

    /// Opens a record envelope sealed under `context`. Any alteration, another keystore's
    /// key or another context is the opaque decryption failure.
    pub fn open(
        &self,
        envelope_bytes: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        // Sized up front so the plaintext is never copied by a reallocation.
        let cap = envelope::opened_len(envelope_bytes).unwrap_or(0);
        let mut out = Zeroizing::new(Vec::with_capacity(cap));
        self.keyring
            .open_envelope(context, envelope_bytes, &mut out)?;
        Ok(out)
    }

    /// The dual reader, for data written partly before kura:
    ///
    /// 1. a value starting with the envelope magic `KRE` (and version 1, or any byte that
    ///    cannot be base64 text) is opened as an envelope, and its error, if any, is
    ///    returned: a tampered envelope never falls back to the legacy reader;
    /// 2. base64 text (a TEXT column) that decodes to an envelope is opened likewise;
    /// 3. otherwise, with `legacy`, the value is decoded as that format and decrypted with
    ///    AES-128-CBC (`context` does not apply: legacy values had none);
    /// 4. otherwise the value is refused ([`Error::UnrecognisedValue`]).
    ///
    /// A legacy base64 value whose random IV starts with `KRE\x01` (odds 2⁻³²) would be
    /// taken for an envelope and fail; re-sealing legacy values removes the ambiguity.
    pub fn open_any(
        &self,
        value: &[u8],
        context: &EncryptionContext,
        legacy: Option<(&LegacyKey, LegacyFormat)>,
    ) -> Result<(Zeroizing<Vec<u8>>, Origin), Error> {
        if let Some(env) = find_envelope(value) {
            return Ok((self.open(&env, context)?, Origin::Envelope));
        }
        match legacy {
            Some((key, format)) => Ok((key.decrypt(value, format)?, Origin::Legacy)),
            None => Err(Error::UnrecognisedValue),
        }
    }
}

/// The record envelope a stored value holds, raw or as base64 text, if it looks like one
/// (see [`Vault::open_any`] for how the forms are told apart).
pub fn find_envelope(value: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if looks_like_envelope(value) {
        return Some(std::borrow::Cow::Borrowed(value));
    }
    let text = value.trim_ascii();
    // Only base64 text starting like an envelope is decoded whole.
    let head = STANDARD.decode(text.get(..8)?).ok()?;
    if !looks_like_envelope(&head) {
        return None;
    }
    STANDARD
        .decode(text)
        .ok()
        .filter(|d| looks_like_envelope(d))
        .map(std::borrow::Cow::Owned)
}

/// Whether `value` starts like a record envelope: the magic, then the version or a byte
/// that no base64 text holds (an envelope of another version: its error is the answer).
fn looks_like_envelope(value: &[u8]) -> bool {
    value.starts_with(&envelope::MAGIC)
        && match value.get(3) {
            None => true,
            Some(&v) => {
                v == envelope::VERSION || !(v.is_ascii_alphanumeric() || b"+/=".contains(&v))
            }
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalMasterKey;
    use crate::config::{DEFAULT_ROTATION_PERIOD, Method};
    use kura_crypto::Key256;
    use std::collections::HashSet;

    const LEGACY: [u8; 16] = *b"0123456789abcdef";

    fn vault() -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Keystore> =
            Arc::new(SqliteKeystore::open(&dir.path().join("keystore.db")).unwrap());
        let master =
            Arc::new(LocalMasterKey::new(&Key256::generate().unwrap(), "test".into()).unwrap());
        let k = Keyring::init(
            store,
            master,
            KeyringSettings::new(Method::default(), DEFAULT_ROTATION_PERIOD),
            Arc::new(SystemClock),
        )
        .unwrap();
        (dir, Vault::from_keyring(k))
    }

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        let mut c = EncryptionContext::new();
        for (k, v) in pairs {
            c.insert(*k, *v);
        }
        c
    }

    fn legacy_value(plain: &[u8], format: LegacyFormat) -> Vec<u8> {
        let iv = [7u8; 16];
        let mut raw = iv.to_vec();
        raw.extend(kura_crypto::legacy::encrypt_cbc(&LEGACY, iv, plain).unwrap());
        match format {
            LegacyFormat::Base64IvCt => STANDARD.encode(raw).into_bytes(),
            LegacyFormat::HexIvCt => hex::encode(raw).into_bytes(),
            LegacyFormat::RawIvCt => raw,
        }
    }

    #[test]
    fn base64_text_starting_with_the_magic_letters_is_not_an_envelope() {
        // One base64 legacy value in 2^18 starts with the letters "KRE".
        let text = format!("KRE{}", "A".repeat(41));
        assert!(STANDARD.decode(&text).is_ok());
        assert!(find_envelope(text.as_bytes()).is_none());
        assert!(
            find_envelope(b"KRE").is_some(),
            "a truncated envelope is one"
        );
        assert!(find_envelope(b"short").is_none());
        let (_d, v) = vault();
        let env = v.seal(b"x", &ctx(&[])).unwrap();
        assert_eq!(find_envelope(&env).unwrap()[..], env[..]);
        let b64 = format!("{}\n", STANDARD.encode(&env));
        assert_eq!(find_envelope(b64.as_bytes()).unwrap()[..], env[..]);
    }

    #[test]
    fn legacy_encryptor_round_trips_in_every_format() {
        let (_d, v) = vault();
        let key = LegacyKey::from_bytes(&LEGACY).unwrap();
        let c = ctx(&[("row", "1")]);
        for format in [
            LegacyFormat::Base64IvCt,
            LegacyFormat::HexIvCt,
            LegacyFormat::RawIvCt,
        ] {
            for plain in [&b""[..], b"x", b"sixteen bytes!!!", &[0u8; 100]] {
                let a = key.encrypt(plain, format).unwrap();
                let b = key.encrypt(plain, format).unwrap();
                assert_ne!(a, b, "a fresh IV each time");
                let (out, origin) = v.open_any(&a, &c, Some((&key, format))).unwrap();
                assert_eq!((&out[..], origin), (plain, Origin::Legacy));
                assert_eq!(legacy_value(plain, format).len(), a.len());
            }
        }
    }

    fn is_decrypt(e: &Error) -> bool {
        matches!(e, Error::Format(kura_format::Error::Decrypt))
    }

    #[test]
    fn vault_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Vault>();
        check::<LegacyKey>();
    }

    #[test]
    fn seal_open_round_trip_with_contexts() {
        let (_d, v) = vault();
        let c = ctx(&[("table", "users"), ("column", "card")]);
        let env = v.seal(b"4111", &c).unwrap();
        assert!(env.starts_with(b"KRE\x01"));
        assert_eq!(env.len(), envelope::sealed_len(4));
        assert_eq!(&v.open(&env, &c).unwrap()[..], b"4111");
        let empty = v.seal(b"", &EncryptionContext::new()).unwrap();
        assert!(
            v.open(&empty, &EncryptionContext::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn wrong_context_fails_opaquely() {
        let (_d, v) = vault();
        let env = v.seal(b"secret", &ctx(&[("table", "users")])).unwrap();
        for wrong in [
            ctx(&[]),
            ctx(&[("table", "orders")]),
            ctx(&[("x", "users")]),
        ] {
            let e = v.open(&env, &wrong).unwrap_err();
            assert!(is_decrypt(&e), "{e}");
            assert!(e.to_string().starts_with("decryption failed"), "{e}");
        }
    }

    #[test]
    fn dual_reader_reads_envelopes_raw_and_base64() {
        let (_d, v) = vault();
        let key = LegacyKey::from_bytes(&LEGACY).unwrap();
        let c = ctx(&[("app", "billing")]);
        let env = v.seal(b"new value", &c).unwrap();
        for legacy in [None, Some((&key, LegacyFormat::Base64IvCt))] {
            let (p, o) = v.open_any(&env, &c, legacy).unwrap();
            assert_eq!((&p[..], o), (&b"new value"[..], Origin::Envelope));
            let text = format!("{}\n", STANDARD.encode(&env));
            let (p, o) = v.open_any(text.as_bytes(), &c, legacy).unwrap();
            assert_eq!((&p[..], o), (&b"new value"[..], Origin::Envelope));
        }
    }

    #[test]
    fn dual_reader_reads_legacy_base64_and_hex() {
        let (_d, v) = vault();
        let c = ctx(&[("app", "billing")]);
        for key in [
            LegacyKey::from_text(format!("{}\n", hex::encode(LEGACY)).as_bytes()).unwrap(),
            LegacyKey::from_text(STANDARD.encode(LEGACY).as_bytes()).unwrap(),
        ] {
            for format in [LegacyFormat::Base64IvCt, LegacyFormat::HexIvCt] {
                let value = legacy_value(b"old value from 2015", format);
                let (p, o) = v.open_any(&value, &c, Some((&key, format))).unwrap();
                assert_eq!((&p[..], o), (&b"old value from 2015"[..], Origin::Legacy));
            }
        }
        // Read in the wrong format, a legacy value is refused with a clear message.
        let key = LegacyKey::from_bytes(&LEGACY).unwrap();
        let value = legacy_value(b"x", LegacyFormat::Base64IvCt);
        let e = v
            .open_any(&value, &c, Some((&key, LegacyFormat::HexIvCt)))
            .unwrap_err();
        assert!(e.to_string().contains("not hex-iv-ct text"), "{e}");
        // Under another key the padding check fails: the opaque error.
        let other = LegacyKey::from_bytes(&[9u8; 16]).unwrap();
        let value = legacy_value(b"x", LegacyFormat::HexIvCt);
        let e = v
            .open_any(&value, &c, Some((&other, LegacyFormat::HexIvCt)))
            .unwrap_err();
        assert!(is_decrypt(&e) || matches!(e, Error::LegacyValue(_)), "{e}");
    }

    #[test]
    fn a_tampered_envelope_never_falls_back_to_legacy() {
        let (_d, v) = vault();
        let key = LegacyKey::from_bytes(&LEGACY).unwrap();
        let c = ctx(&[("app", "billing")]);
        let mut env = v.seal(b"new value", &c).unwrap();
        let last = env.len() - 1;
        env[last] ^= 1;
        for format in [LegacyFormat::Base64IvCt, LegacyFormat::HexIvCt] {
            let e = v.open_any(&env, &c, Some((&key, format))).unwrap_err();
            assert!(is_decrypt(&e), "{e}");
            let text = STANDARD.encode(&env);
            let e = v
                .open_any(text.as_bytes(), &c, Some((&key, format)))
                .unwrap_err();
            assert!(is_decrypt(&e), "{e}");
        }
        // A newer envelope version is reported as such, not read as legacy.
        env[3] = 2;
        let e = v
            .open_any(&env, &c, Some((&key, LegacyFormat::Base64IvCt)))
            .unwrap_err();
        assert!(e.to_string().contains("unsupported"), "{e}");
    }

    #[test]
    fn a_legacy_value_without_a_key_is_refused_clearly() {
        let (_d, v) = vault();
        let value = legacy_value(b"old", LegacyFormat::Base64IvCt);
        let e = v.open_any(&value, &ctx(&[]), None).unwrap_err();
        assert!(matches!(e, Error::UnrecognisedValue));
        let m = e.to_string();
        assert!(m.contains("envelope") && m.contains("legacy"), "{m}");
    }

    #[test]
    fn legacy_keys_of_the_wrong_size_or_encoding_are_refused() {
        for bad in [
            &b"00112233445566778899aabbccddeeff0011"[..],
            b"AAAA",
            b"not a key!",
            b"",
        ] {
            let e = LegacyKey::from_text(bad).unwrap_err();
            assert!(matches!(e, Error::LegacyKey(_)), "{e}");
        }
        let e = LegacyKey::from_bytes(&[0u8; 32]).unwrap_err();
        assert!(e.to_string().contains("must be 16 bytes"), "{e}");
        assert_eq!(
            format!("{:?}", LegacyKey::from_bytes(&LEGACY).unwrap()),
            "LegacyKey(…)"
        );
    }

    #[test]
    fn many_threads_seal_distinct_envelopes_that_all_open() {
        let (_d, v) = vault();
        let c = ctx(&[("app", "threads")]);
        let sealed: Vec<(Vec<u8>, Vec<u8>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (v, c) = (&v, &c);
                    s.spawn(move || {
                        (0..50)
                            .map(|i| {
                                let plain = format!("value {t}/{i}").into_bytes();
                                (v.seal(&plain, c).unwrap(), plain)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(sealed.len(), 400);
        let distinct: HashSet<&Vec<u8>> = sealed.iter().map(|(e, _)| e).collect();
        assert_eq!(distinct.len(), 400);
        let shared = Arc::new(v);
        for (env, plain) in &sealed {
            assert_eq!(&shared.open(env, &c).unwrap()[..], &plain[..]);
        }
    }

    #[test]
    fn from_config_resolves_like_the_cli() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = Key256::generate().unwrap();
        let key_path = dir.path().join("master.key");
        std::fs::write(&key_path, format!("{}\n", hex::encode(key.expose_secret()))).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let data_dir = dir.path().join("data");
        let overrides = Overrides {
            data_dir: Some(data_dir.clone()),
            master_key_file: Some(key_path.clone()),
            previous_master_key_file: None,
        };
        // Nothing initialised yet: the keystore's own error.
        let e = Vault::from_config(None, &overrides).unwrap_err();
        assert!(matches!(e, Error::Store(_)), "{e}");
        let store: Arc<dyn Keystore> =
            Arc::new(SqliteKeystore::open(&data_dir.join("keystore.db")).unwrap());
        let master = Arc::new(LocalMasterKey::from_file(&key_path, "test").unwrap());
        let k = Keyring::init(
            store,
            master,
            KeyringSettings::new(Method::default(), DEFAULT_ROTATION_PERIOD),
            Arc::new(SystemClock),
        )
        .unwrap();
        let env = Vault::from_keyring(k).seal(b"hi", &ctx(&[])).unwrap();
        let v = Vault::from_config(Some(Path::new("")), &overrides).unwrap();
        assert_eq!(&v.open(&env, &ctx(&[])).unwrap()[..], b"hi");
        // A configuration file that is not there is an I/O error naming it.
        let e = Vault::from_config(Some(&dir.path().join("nope.toml")), &overrides).unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }
}
