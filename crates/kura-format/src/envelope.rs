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
    let r = write_envelope(key, key_id, context, nonce, plaintext, out, start);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn write_envelope(
    key: &XaesCommitting,
    key_id: u64,
    context: &EncryptionContext,
    nonce: &[u8; XAES_NONCE_LEN],
    plaintext: &[u8],
    out: &mut Vec<u8>,
    start: usize,
) -> Result<(), Error> {
    out.reserve(OVERHEAD + plaintext.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&[0u8; XAES_COMMITMENT_LEN]);
    out.extend_from_slice(plaintext);
    let body = start + HEADER_LEN;
    // The commitment comes out of the same derivation as the message key and sits in the
    // header, which is the AAD: derive first, then bind.
    let (message, commitment) = key.begin(nonce)?;
    out[body - XAES_COMMITMENT_LEN..body].copy_from_slice(&commitment);
    let aad = aad(&out[start..body], context);
    let tag = message.seal_in_place(aad.as_slice(), &mut out[body..])?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// The id of the data key that sealed `envelope` (checks magic and version only).
pub fn key_id(envelope: &[u8]) -> Result<u64, Error> {
    check_magic(envelope, &MAGIC, VERSION, WHAT)?;
    if envelope.len() < OVERHEAD {
        return Err(Error::Truncated { what: WHAT });
    }
    Ok(be_u64(envelope, 4))
}

/// Opens `envelope` with data key `key` and appends the plaintext to `out`. The caller
/// must pass the key whose id [`key_id`] returned.
pub fn open(
    key: &XaesCommitting,
    context: &EncryptionContext,
    envelope: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    key_id(envelope)?;
    let header = &envelope[..HEADER_LEN];
    let mut nonce = [0u8; XAES_NONCE_LEN];
    nonce.copy_from_slice(&header[12..36]);
    let mut commitment = [0u8; XAES_COMMITMENT_LEN];
    commitment.copy_from_slice(&header[36..68]);
    let tag_at = envelope.len() - TAG_LEN;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&envelope[tag_at..]);
    let start = out.len();
    out.extend_from_slice(&envelope[HEADER_LEN..tag_at]);
    let aad = aad(header, context);
    if let Err(e) = key.open_in_place(&nonce, &commitment, aad.as_slice(), &mut out[start..], &tag)
    {
        out.truncate(start);
        return Err(e.into());
    }
    Ok(())
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
