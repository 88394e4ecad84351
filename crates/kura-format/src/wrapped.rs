//! Wrapped keys, version 1: a secret key sealed under another key, with the ids of both
//! bound as AAD so that a blob moved to another row of the keystore fails to unwrap.
//!
//! ```text
//! offset  size
//!  0       3   magic "KRW"
//!  3       1   version 0x01
//!  4       1   kind: 0x01 KEK under a master key, 0x02 data key under a KEK,
//!              0x03 KMS key material under a KEK, 0x04 KEK under an external master key
//!  5       1   W = length of the wrapping key id (1..=255)
//!  6       W   wrapping key id, UTF-8 (master key fingerprint, or KEK id in decimal)
//!  6+W     8   id of the wrapped key, u64 big-endian
//! 14+W    24   nonce (random)
//! 38+W    32   key commitment
//! 70+W     n   ciphertext of the key
//! 70+W+n  16   tag
//! ```
//!
//! Sealed with committing XAES-256-GCM under the wrapping key; AAD = bytes 0..70+W.
//!
//! Kind 0x04 (a KEK under a master key kura never holds: a key in an HSM) keeps bytes
//! 0..14+W and follows them with a body of at least 16 bytes that only the provider
//! reads ([`external`], [`open_external`]); the provider binds bytes 0..14+W as AAD.

use kura_crypto::{SecretBytes, TAG_LEN, XAES_COMMITMENT_LEN, XAES_NONCE_LEN, XaesCommitting, rng};

use crate::{Error, be_u64, check_magic};

/// The wrapped-key magic.
pub const MAGIC: [u8; 3] = *b"KRW";
/// The version this build writes.
pub const VERSION: u8 = 1;

const WHAT: &str = "wrapped key";

/// What a wrapped key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A KEK wrapped by a master key.
    KekUnderMasterKey,
    /// A data key wrapped by a KEK.
    DataKeyUnderKek,
    /// Key material of a KMS key wrapped by a KEK.
    KmsKeyUnderKek,
    /// A KEK wrapped by a master key held outside kura (an HSM): the body after the
    /// key id belongs to the provider.
    KekUnderExternalKey,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Self::KekUnderMasterKey => 1,
            Self::DataKeyUnderKek => 2,
            Self::KmsKeyUnderKek => 3,
            Self::KekUnderExternalKey => 4,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::KekUnderMasterKey),
            2 => Some(Self::DataKeyUnderKek),
            3 => Some(Self::KmsKeyUnderKek),
            4 => Some(Self::KekUnderExternalKey),
            _ => None,
        }
    }
}

/// The parsed, not yet authenticated header of a wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// What it is.
    pub kind: Kind,
    /// The id of the key that wrapped it.
    pub wrapping_key_id: &'a str,
    /// The id of the wrapped key.
    pub key_id: u64,
    header_len: usize,
}

/// Wraps `secret` (the key `key_id`) under `wrapping` (whose id is `wrapping_key_id`).
pub fn wrap(
    wrapping: &XaesCommitting,
    wrapping_key_id: &str,
    kind: Kind,
    key_id: u64,
    secret: &[u8],
) -> Result<Vec<u8>, Error> {
    let nonce: [u8; XAES_NONCE_LEN] = rng::nonce()?;
    wrap_with_nonce(wrapping, wrapping_key_id, kind, key_id, &nonce, secret)
}

/// [`wrap`] with a given nonce: for known-answer vectors only.
pub fn wrap_with_nonce(
    wrapping: &XaesCommitting,
    wrapping_key_id: &str,
    kind: Kind,
    key_id: u64,
    nonce: &[u8; XAES_NONCE_LEN],
    secret: &[u8],
) -> Result<Vec<u8>, Error> {
    if kind == Kind::KekUnderExternalKey {
        return Err(Error::Malformed {
            what: WHAT,
            detail: "a KEK under an external master key is written by its provider".into(),
        });
    }
    let mut out = prefix(wrapping_key_id, kind, key_id)?;
    let header_len = out.len() + XAES_NONCE_LEN + XAES_COMMITMENT_LEN;
    out.reserve(XAES_NONCE_LEN + XAES_COMMITMENT_LEN + secret.len() + TAG_LEN);
    out.extend_from_slice(nonce);
    let (message, commitment) = wrapping.begin(nonce)?;
    out.extend_from_slice(&commitment);
    out.extend_from_slice(secret);
    let (header, body) = out.split_at_mut(header_len);
    let tag = message.seal_in_place(header, body)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Bytes 0..14+W: magic, version, kind, W, wrapping key id, key id.
fn prefix(wrapping_key_id: &str, kind: Kind, key_id: u64) -> Result<Vec<u8>, Error> {
    let w = wrapping_key_id.len();
    if w == 0 || w > 255 {
        return Err(Error::Malformed {
            what: WHAT,
            detail: format!("wrapping key id must be 1 to 255 bytes, is {w}"),
        });
    }
    let mut out = Vec::with_capacity(6 + w + 8 + 128);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind.byte());
    out.push(w as u8);
    out.extend_from_slice(wrapping_key_id.as_bytes());
    out.extend_from_slice(&key_id.to_be_bytes());
    Ok(out)
}

/// The header of a KEK wrapped by an external master key (kind 0x04): bytes 0..14+W.
/// The provider binds it as AAD and appends its body (at least 16 bytes).
pub fn external(wrapping_key_id: &str, key_id: u64) -> Result<Vec<u8>, Error> {
    prefix(wrapping_key_id, Kind::KekUnderExternalKey, key_id)
}

/// Splits a KEK wrapped by an external master key into its header (bytes 0..14+W, the
/// provider's AAD) and its body, checking kind and key id ([`Error::KeyMismatch`]).
pub fn open_external(key_id: u64, blob: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let h = parse(blob)?;
    if h.kind != Kind::KekUnderExternalKey || h.key_id != key_id {
        return Err(Error::KeyMismatch {
            expected: format!("{:?} {key_id}", Kind::KekUnderExternalKey),
            found: format!("{:?} {}", h.kind, h.key_id),
        });
    }
    Ok(blob.split_at(h.header_len))
}

/// Parses the header of `blob` without authenticating it.
pub fn parse(blob: &[u8]) -> Result<Header<'_>, Error> {
    check_magic(blob, &MAGIC, VERSION, WHAT)?;
    if blob.len() < 6 {
        return Err(Error::Truncated { what: WHAT });
    }
    let kind = Kind::from_byte(blob[4]).ok_or_else(|| Error::Malformed {
        what: WHAT,
        detail: format!("unknown kind {}", blob[4]),
    })?;
    let w = blob[5] as usize;
    if w == 0 {
        return Err(Error::Malformed {
            what: WHAT,
            detail: "wrapping key id is empty".into(),
        });
    }
    let header_len = match kind {
        Kind::KekUnderExternalKey => 6 + w + 8,
        _ => 6 + w + 8 + XAES_NONCE_LEN + XAES_COMMITMENT_LEN,
    };
    if blob.len() < header_len + TAG_LEN {
        return Err(Error::Truncated { what: WHAT });
    }
    let wrapping_key_id = std::str::from_utf8(&blob[6..6 + w]).map_err(|_| Error::Malformed {
        what: WHAT,
        detail: "wrapping key id is not UTF-8".into(),
    })?;
    Ok(Header {
        kind,
        wrapping_key_id,
        key_id: be_u64(blob, 6 + w),
        header_len,
    })
}

/// Unwraps `blob` with `wrapping`, checking that it is a `kind` for key `key_id`.
pub fn unwrap(
    wrapping: &XaesCommitting,
    kind: Kind,
    key_id: u64,
    blob: &[u8],
) -> Result<SecretBytes, Error> {
    let h = parse(blob)?;
    if h.kind != kind || h.key_id != key_id || kind == Kind::KekUnderExternalKey {
        return Err(Error::KeyMismatch {
            expected: format!("{kind:?} {key_id}"),
            found: format!("{:?} {}", h.kind, h.key_id),
        });
    }
    let n = 6 + h.wrapping_key_id.len() + 8;
    let mut nonce = [0u8; XAES_NONCE_LEN];
    nonce.copy_from_slice(&blob[n..n + XAES_NONCE_LEN]);
    let mut commitment = [0u8; XAES_COMMITMENT_LEN];
    commitment.copy_from_slice(&blob[n + XAES_NONCE_LEN..h.header_len]);
    let tag_at = blob.len() - TAG_LEN;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&blob[tag_at..]);
    let mut secret = SecretBytes::new(blob[h.header_len..tag_at].to_vec());
    wrapping.open_in_place(
        &nonce,
        &commitment,
        &blob[..h.header_len],
        secret.expose_secret_mut(),
        &tag,
    )?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_crypto::Key256;

    #[test]
    fn wrap_unwrap_and_swap_detection() {
        let kek = XaesCommitting::new(&Key256::generate().unwrap()).unwrap();
        let dk = Key256::generate().unwrap();
        let blob = wrap(&kek, "17", Kind::DataKeyUnderKek, 99, dk.expose_secret()).unwrap();
        let h = parse(&blob).unwrap();
        assert_eq!(
            (h.kind, h.wrapping_key_id, h.key_id),
            (Kind::DataKeyUnderKek, "17", 99)
        );
        let back = unwrap(&kek, Kind::DataKeyUnderKek, 99, &blob).unwrap();
        assert_eq!(back.expose_secret(), dk.expose_secret());
        assert!(matches!(
            unwrap(&kek, Kind::DataKeyUnderKek, 98, &blob),
            Err(Error::KeyMismatch { .. })
        ));
        let other = XaesCommitting::new(&Key256::generate().unwrap()).unwrap();
        assert!(matches!(
            unwrap(&other, Kind::DataKeyUnderKek, 99, &blob),
            Err(Error::Decrypt)
        ));
    }

    #[test]
    fn external_header_and_body() {
        let mut blob = external("pkcs11:t/k", 7).unwrap();
        assert_eq!(blob.len(), 6 + 10 + 8);
        blob.extend_from_slice(&[0xab; 16]);
        let h = parse(&blob).unwrap();
        assert_eq!(
            (h.kind, h.wrapping_key_id, h.key_id),
            (Kind::KekUnderExternalKey, "pkcs11:t/k", 7)
        );
        let (head, body) = open_external(7, &blob).unwrap();
        assert_eq!((head.len(), body), (24, &[0xab; 16][..]));
        assert!(matches!(
            open_external(8, &blob),
            Err(Error::KeyMismatch { .. })
        ));
        assert!(matches!(
            open_external(7, &blob[..blob.len() - 1]),
            Err(Error::Truncated { .. })
        ));
        let kek = XaesCommitting::new(&Key256::generate().unwrap()).unwrap();
        for kind in [Kind::KekUnderMasterKey, Kind::KekUnderExternalKey] {
            assert!(matches!(
                unwrap(&kek, kind, 7, &blob),
                Err(Error::KeyMismatch { .. })
            ));
        }
        assert!(matches!(
            wrap(&kek, "x", Kind::KekUnderExternalKey, 7, &[0; 32]),
            Err(Error::Malformed { .. })
        ));
        let xaes_blob = wrap(&kek, "x", Kind::KekUnderMasterKey, 7, &[0; 32]).unwrap();
        assert!(matches!(
            open_external(7, &xaes_blob),
            Err(Error::KeyMismatch { .. })
        ));
        assert!(matches!(external("", 7), Err(Error::Malformed { .. })));
    }
}
