//! Master keys (CMKs): where the root of the hierarchy comes from, and how it wraps the
//! KEK. kura never stores a master key; it stores only the KEK wrapped by one.
//!
//! Providers here are local: a key file (TiKV's 64 hex digits and a newline, or Looker's
//! base64; mode 0400) and an environment variable (base64). A KMS implements the same
//! [`MasterKey`] trait by calling Encrypt and Decrypt.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use kura_crypto::{Key256, XaesCommitting, hkdf_sha256};
use kura_format::wrapped::{self, Kind};
use zeroize::Zeroizing;

use crate::Error;
use crate::config::{ENV_MASTER_KEY_ENV, ENV_MASTER_KEY_FILE, MasterKeySpec};

pub mod descriptor;
mod kms;

pub use descriptor::MasterKeyDescriptor;
pub use kms::{KEK_ID_CONTEXT_KEY, KmsError, KmsErrorKind, KmsMasterKey};

pub mod pkcs11;

pub use pkcs11::Pkcs11MasterKey;

/// A master key: wraps and unwraps KEKs.
pub trait MasterKey: Send + Sync {
    /// A stable, non-secret identifier stored with each KEK it wraps (for local keys a
    /// fingerprint of the key, so the same key read from a file or a variable matches).
    fn id(&self) -> &str;
    /// Where the key comes from, for `kura status` (never its bytes).
    fn source(&self) -> &str;
    /// `local`, `kms` or `pkcs11`: by default the part of [`MasterKey::id`] before its
    /// first `:`.
    fn mode(&self) -> &str {
        self.id().split_once(':').map_or("local", |(mode, _)| mode)
    }
    /// Wraps KEK `kek_id`.
    fn wrap_kek(&self, kek_id: u64, kek: &Key256) -> Result<Vec<u8>, Error>;
    /// Unwraps KEK `kek_id`; a blob that does not authenticate is [`Error::KekUnwrap`].
    fn unwrap_kek(&self, kek_id: u64, blob: &[u8]) -> Result<Key256, Error>;
}

/// A 32-byte master key held in this process.
pub struct LocalMasterKey {
    xaes: XaesCommitting,
    id: String,
    source: String,
}

impl LocalMasterKey {
    /// Wraps raw key bytes; `source` says where they came from.
    pub fn new(key: &Key256, source: String) -> Result<Self, Error> {
        let mut fp = [0u8; 8];
        hkdf_sha256(
            b"",
            key.expose_secret(),
            &[b"kura master key fingerprint v1"],
            &mut fp,
        )?;
        Ok(Self {
            xaes: XaesCommitting::new(key)?,
            id: format!("local:{}", hex::encode(fp)),
            source,
        })
    }

    /// Reads a key file: mode 0400, 64 hex digits and an optional newline, or base64.
    pub fn from_file(path: &Path, origin: &str) -> Result<Self, Error> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::MissingMasterKey(format!(
                    "the master key file {} (from {origin}) does not exist; check the path, or create one with `kura keygen --out {}`",
                    path.display(),
                    path.display()
                )));
            }
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode != 0o400 {
            return Err(Error::KeyFilePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?);
        let name = format!("file {}", path.display());
        let key = decode_key(&text, &name)?;
        Self::new(&key, name)
    }

    /// Decodes a base64 key held in environment variable `variable`.
    pub fn from_env_value(variable: &str, value: &str) -> Result<Self, Error> {
        let name = format!("environment variable {variable}");
        let key = decode_key(value.as_bytes(), &name)?;
        Self::new(&key, name)
    }
}

impl MasterKey for LocalMasterKey {
    fn id(&self) -> &str {
        &self.id
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn wrap_kek(&self, kek_id: u64, kek: &Key256) -> Result<Vec<u8>, Error> {
        Ok(wrapped::wrap(
            &self.xaes,
            &self.id,
            Kind::KekUnderMasterKey,
            kek_id,
            kek.expose_secret(),
        )?)
    }

    fn unwrap_kek(&self, kek_id: u64, blob: &[u8]) -> Result<Key256, Error> {
        match wrapped::unwrap(&self.xaes, Kind::KekUnderMasterKey, kek_id, blob) {
            Ok(k) => Ok(Key256::from_slice(k.expose_secret(), "KEK")?),
            Err(kura_format::Error::Decrypt) => Err(Error::KekUnwrap {
                kek_id,
                master_key_id: self.id.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Decodes 64 hex digits (TiKV) or base64 (Looker), ignoring one trailing newline.
fn decode_key(text: &[u8], source_name: &str) -> Result<Key256, Error> {
    let t = text.strip_suffix(b"\n").unwrap_or(text);
    let t = t.strip_suffix(b"\r").unwrap_or(t);
    let bytes = Zeroizing::new(
        if !t.is_empty() && t.len().is_multiple_of(2) && t.iter().all(u8::is_ascii_hexdigit) {
            hex::decode(t).map_err(|_| Error::MasterKeyEncoding {
                source_name: source_name.to_string(),
            })?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| Error::MasterKeyEncoding {
                    source_name: source_name.to_string(),
                })?
        },
    );
    if bytes.len() != Key256::LEN {
        return Err(Error::MasterKeySize {
            actual: bytes.len(),
            source_name: source_name.to_string(),
        });
    }
    Ok(Key256::from_slice(&bytes, "master key")?)
}

/// Loads the master key `spec` names, or explains what is missing.
pub fn load(spec: Option<&MasterKeySpec>) -> Result<Arc<dyn MasterKey>, Error> {
    Ok(match spec {
        Some(MasterKeySpec::Kms(k)) => Arc::new(KmsMasterKey::connect(k)?),
        Some(MasterKeySpec::Pkcs11(p)) => Arc::new(pkcs11::Pkcs11MasterKey::open(p)?),
        local => Arc::new(load_local(local)?),
    })
}

/// Loads a local master key (a file or a variable), or explains what is missing.
pub fn load_local(spec: Option<&MasterKeySpec>) -> Result<LocalMasterKey, Error> {
    match spec {
        None => Err(Error::MissingMasterKey(format!(
            "no master key is configured; set {ENV_MASTER_KEY_FILE} (a key file) or {ENV_MASTER_KEY_ENV} (a base64 key), \
             pass --master-key-file, or add [security.encryption.master-key] to the config file"
        ))),
        Some(MasterKeySpec::File { path, origin }) => LocalMasterKey::from_file(path, origin),
        Some(MasterKeySpec::Env { variable, value }) => {
            LocalMasterKey::from_env_value(variable, value)
        }
        Some(MasterKeySpec::Kms(k)) => Err(Error::Config(format!(
            "{} names the KMS key {}, not a local master key",
            k.origin, k.key_id
        ))),
        Some(MasterKeySpec::Pkcs11(p)) => Err(Error::Config(format!(
            "{} names a PKCS#11 key, not a local master key",
            p.origin
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_decode_to_the_same_key() {
        let hex_key = b"3b5896b5be691006e0f71c3040a29495ddcad20b14aff61806940ebd780d3c62\n";
        let a = decode_key(hex_key, "t").unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(a.expose_secret());
        let b = decode_key(b64.as_bytes(), "t").unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        let ma = LocalMasterKey::new(&a, "a".into()).unwrap();
        let mb = LocalMasterKey::new(&b, "b".into()).unwrap();
        assert_eq!(ma.id(), mb.id());
        assert!(ma.id().starts_with("local:"));
    }

    #[test]
    fn wrong_sizes_and_encodings() {
        let e = decode_key(b"00112233445566778899aabbccddeeff\n", "t")
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("Size of the Master Key is invalid it must be 32 bytes however is 16")
        );
        let e = decode_key(b"not base64 at all!", "t").err().unwrap();
        assert!(matches!(e, Error::MasterKeyEncoding { .. }));
    }
}
