//! The record envelope, version 1: one value sealed under a data key.
//!
//! ```text
//! offset size
//!  0      3   magic "KRE"
//!  3      1   version 0x01
//!  4      8   data key id, u64 big-endian
//! 12     24   nonce (random, per record)
//! 36     32   key commitment
//! 68      n   ciphertext
//! 68+n   16   tag
//! ```
//!
//! Sealed with committing XAES-256-GCM (see `kura_crypto::XaesCommitting`) under the data
//! key; AAD = bytes 0..68 ‖ the encoded [`EncryptionContext`]. The per-record AES-256-GCM
//! key is derived from the data key and the nonce, so no GCM key ever seals more than a
//! handful of records.

use kura_crypto::{TAG_LEN, XAES_COMMITMENT_LEN, XAES_NONCE_LEN, XaesCommitting, rng};

use crate::{EncryptionContext, Error, be_u64, check_magic};

/// The envelope magic.
pub const MAGIC: [u8; 3] = *b"KRE";
/// The version this build writes.
pub const VERSION: u8 = 1;
/// Length of the header (magic through commitment).
pub const HEADER_LEN: usize = 4 + 8 + XAES_NONCE_LEN + XAES_COMMITMENT_LEN;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

const WHAT: &str = "record envelope";

/// Length of the envelope of a `plaintext_len`-byte plaintext.
pub const fn sealed_len(plaintext_len: usize) -> usize {
    plaintext_len + OVERHEAD
}

/// Seals `plaintext` under data key `key` (id `key_id`) and appends the envelope to `out`.
pub fn seal(
    key: &XaesCommitting,
    key_id: u64,
    context: &EncryptionContext,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let nonce: [u8; XAES_NONCE_LEN] = rng::nonce()?;
    seal_with_nonce(key, key_id, context, &nonce, plaintext, out)
}

/// [`seal`] with a given nonce: for known-answer vectors only. A nonce must never repeat
/// under one data key.
pub fn seal_with_nonce(
    key: &XaesCommitting,
    key_id: u64,
    context: &EncryptionContext,
    nonce: &[u8; XAES_NONCE_LEN],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let start = out.len();
    out.resize(start + sealed_len(plaintext.len()), 0);
    let r = write_envelope(key, key_id, context, nonce, plaintext, &mut out[start..]);
    if r.is_err() {
        out.truncate(start);
    }
    r.map(|_| ())
}

/// Seals `plaintext` into the first [`sealed_len`] bytes of `out` and returns that length.
/// The plaintext is read once and the ciphertext written once: no copy, no allocation.
pub fn seal_into(
    key: &XaesCommitting,
    key_id: u64,
    context: &EncryptionContext,
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    let nonce: [u8; XAES_NONCE_LEN] = rng::nonce()?;
    write_envelope(key, key_id, context, &nonce, plaintext, out)
}

fn write_envelope(
    key: &XaesCommitting,
    key_id: u64,
    context: &EncryptionContext,
    nonce: &[u8; XAES_NONCE_LEN],
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    let n = sealed_len(plaintext.len());
    let Some(out) = out.get_mut(..n) else {
        return Err(Error::Malformed {
            what: WHAT,
            detail: format!(
                "output buffer of {} bytes is smaller than the {n}-byte envelope",
                out.len()
            ),
        });
    };
    out[..3].copy_from_slice(&MAGIC);
    out[3] = VERSION;
    out[4..12].copy_from_slice(&key_id.to_be_bytes());
    out[12..36].copy_from_slice(nonce);
    // The commitment comes out of the same derivation as the message key and sits in the
    // header, which is the AAD: derive first, then bind.
    let (message, commitment) = key.begin(nonce)?;
    out[36..HEADER_LEN].copy_from_slice(&commitment);
    let (header, rest) = out.split_at_mut(HEADER_LEN);
    let (ct, tag_out) = rest.split_at_mut(plaintext.len());
    let aad = aad(header, context);
    let tag = message.seal_out_of_place(aad.as_slice(), plaintext, ct)?;
    tag_out.copy_from_slice(&tag);
    Ok(n)
}

/// The id of the data key that sealed `envelope` (checks magic, version and length only).
pub fn key_id(envelope: &[u8]) -> Result<u64, Error> {
    check_magic(envelope, &MAGIC, VERSION, WHAT)?;
    if envelope.len() < OVERHEAD {
        return Err(Error::Truncated { what: WHAT });
    }
    Ok(be_u64(envelope, 4))
}

/// Length of the plaintext inside `envelope`.
pub fn opened_len(envelope: &[u8]) -> Result<usize, Error> {
    key_id(envelope)?;
    Ok(envelope.len() - OVERHEAD)
}

/// Opens `envelope` with data key `key` and appends the plaintext to `out`. The caller
/// must pass the key whose id [`key_id`] returned.
pub fn open(
    key: &XaesCommitting,
    context: &EncryptionContext,
    envelope: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let start = out.len();
    out.resize(start + opened_len(envelope)?, 0);
    let r = open_into(key, context, envelope, &mut out[start..]);
    if r.is_err() {
        out.truncate(start);
    }
    r.map(|_| ())
}

/// Opens `envelope` into the first [`opened_len`] bytes of `out` and returns that length.
/// On failure `out` holds no plaintext.
pub fn open_into(
    key: &XaesCommitting,
    context: &EncryptionContext,
    envelope: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    let n = opened_len(envelope)?;
    let Some(out) = out.get_mut(..n) else {
        return Err(Error::Malformed {
            what: WHAT,
            detail: format!(
                "output buffer of {} bytes is smaller than the {n}-byte plaintext",
                out.len()
            ),
        });
    };
    let (header, rest) = envelope.split_at(HEADER_LEN);
    let (ct, tag) = rest.split_at(n);
    let mut nonce = [0u8; XAES_NONCE_LEN];
    nonce.copy_from_slice(&header[12..36]);
    let mut commitment = [0u8; XAES_COMMITMENT_LEN];
    commitment.copy_from_slice(&header[36..HEADER_LEN]);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag);
    let aad = aad(header, context);
    key.open_out_of_place(&nonce, &commitment, aad.as_slice(), ct, &t, out)?;
    Ok(n)
}

/// Header ‖ context, on the stack when the context is empty (the common, fast case).
enum Aad {
    Inline([u8; HEADER_LEN + 4]),
    Heap(Vec<u8>),
}

impl Aad {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline(a) => a,
            Self::Heap(v) => v,
        }
    }
}

fn aad(header: &[u8], context: &EncryptionContext) -> Aad {
    if context.is_empty() {
        let mut a = [0u8; HEADER_LEN + 4];
        a[..HEADER_LEN].copy_from_slice(header);
        Aad::Inline(a)
    } else {
        let mut v = Vec::with_capacity(HEADER_LEN + 64);
        v.extend_from_slice(header);
        context.encode_into(&mut v);
        Aad::Heap(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_crypto::Key256;

    fn key() -> XaesCommitting {
        XaesCommitting::new(&Key256::generate().unwrap()).unwrap()
    }

    #[test]
    fn round_trip_with_context() {
        let k = key();
        let mut ctx = EncryptionContext::new();
        ctx.insert("table", "users");
        let mut env = Vec::new();
        seal(&k, 42, &ctx, b"secret", &mut env).unwrap();
        assert_eq!(env.len(), OVERHEAD + 6);
        assert_eq!(key_id(&env).unwrap(), 42);
        let mut out = Vec::new();
        open(&k, &ctx, &env, &mut out).unwrap();
        assert_eq!(out, b"secret");
        let mut out = Vec::new();
        assert!(matches!(
            open(&k, &EncryptionContext::new(), &env, &mut out),
            Err(Error::Decrypt)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_version_is_named() {
        let k = key();
        let mut env = Vec::new();
        seal(&k, 1, &EncryptionContext::new(), b"x", &mut env).unwrap();
        env[3] = 7;
        let e = key_id(&env).unwrap_err();
        assert!(e.to_string().contains("version 7"), "{e}");
    }
}
