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
use crate::master_key;
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
        let master = master_key::load(settings.master_key.as_ref())?;
        let previous = match &settings.previous_master_key {
            Some(spec) => Some(master_key::load(Some(spec))?),
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
mod tests;
