//! The ciphertext blob of a symmetric KMS key, version 1.
//!
//! ```text
//! offset size
//!   0     3   magic "KRK"
//!   3     1   version 0x01
//!   4    16   key id (UUID bytes)
//!  20    32   key material id
//!  52    24   nonce (random)
//!  76    32   key commitment
//! 108     n   ciphertext
//! 108+n  16   tag
//! ```
//!
//! Committing XAES-256-GCM under the key material named in the header (the format of
//! kura's record envelope, with the KMS key and material in place of the data key id); AAD
//! = bytes 0..108 ‖ the encoded encryption context. Decrypt needs no KeyId: the blob
//! names its key and the material version, so rotated keys keep decrypting.

use kura_crypto::{TAG_LEN, XAES_COMMITMENT_LEN, XAES_NONCE_LEN, XaesCommitting, rng};
use kura_format::EncryptionContext;

use crate::error::{Kind, KmsError, KmsResult};

const MAGIC: [u8; 3] = *b"KRK";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 16 + 32 + XAES_NONCE_LEN + XAES_COMMITMENT_LEN;
/// Bytes a blob adds to its plaintext.
pub(crate) const OVERHEAD: usize = HEADER + TAG_LEN;

/// What a blob's header says.
pub(crate) struct Parsed<'a> {
    pub(crate) key_id: String,
    pub(crate) material_id: String,
    bytes: &'a [u8],
}

fn invalid() -> KmsError {
    KmsError::new(Kind::InvalidCiphertext, "")
}

fn aad(header: &[u8], ctx: &EncryptionContext) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + 4);
    v.extend_from_slice(header);
    ctx.encode_into(&mut v);
    v
}

/// Seals `plaintext` under material `material_id` (hex) of key `key_id` (a UUID).
pub(crate) fn seal(
    key: &XaesCommitting,
    key_id: &str,
    material_id: &str,
    ctx: &EncryptionContext,
    plaintext: &[u8],
) -> KmsResult<Vec<u8>> {
    let uuid = uuid::Uuid::parse_str(key_id).map_err(KmsError::internal)?;
    let mid = hex::decode(material_id).map_err(KmsError::internal)?;
    if mid.len() != 32 {
        return Err(KmsError::internal("material id is not 32 bytes"));
    }
    let nonce: [u8; XAES_NONCE_LEN] = rng::nonce().map_err(KmsError::internal)?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(uuid.as_bytes());
    out.extend_from_slice(&mid);
    out.extend_from_slice(&nonce);
    let (message, commitment) = key.begin(&nonce).map_err(KmsError::internal)?;
    out.extend_from_slice(&commitment);
    out.resize(HEADER + plaintext.len(), 0);
    let (header, body) = out.split_at_mut(HEADER);
    let tag = message
        .seal_out_of_place(&aad(header, ctx), plaintext, body)
        .map_err(KmsError::internal)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Reads the header of `blob`; anything that is not a version-1 KMS blob is
/// `InvalidCiphertextException`.
pub(crate) fn parse(blob: &[u8]) -> KmsResult<Parsed<'_>> {
    if blob.len() < OVERHEAD || blob[..3] != MAGIC || blob[3] != VERSION {
        return Err(invalid());
    }
    let uuid = uuid::Uuid::from_slice(&blob[4..20]).map_err(|_| invalid())?;
    Ok(Parsed {
        key_id: uuid.to_string(),
        material_id: hex::encode(&blob[20..52]),
        bytes: blob,
    })
}

impl Parsed<'_> {
    /// Opens the blob with its material; any failure is `InvalidCiphertextException`.
    pub(crate) fn open(&self, key: &XaesCommitting, ctx: &EncryptionContext) -> KmsResult<Vec<u8>> {
        let b = self.bytes;
        let (header, rest) = b.split_at(HEADER);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut nonce = [0u8; XAES_NONCE_LEN];
        nonce.copy_from_slice(&header[52..76]);
        let mut commitment = [0u8; XAES_COMMITMENT_LEN];
        commitment.copy_from_slice(&header[76..HEADER]);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        let mut out = vec![0u8; ct.len()];
        key.open_out_of_place(&nonce, &commitment, &aad(header, ctx), ct, &t, &mut out)
            .map_err(|_| invalid())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_crypto::Key256;

    #[test]
    fn round_trip_and_every_bit_flip_fails() {
        let x = XaesCommitting::new(&Key256::generate().unwrap()).unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        let mid = hex::encode([7u8; 32]);
        let ctx: EncryptionContext = [("a", "b")].into_iter().collect();
        let blob = seal(&x, &id, &mid, &ctx, b"secret").unwrap();
        let p = parse(&blob).unwrap();
        assert_eq!(
            (p.key_id.as_str(), p.material_id.as_str()),
            (id.as_str(), mid.as_str())
        );
        assert_eq!(p.open(&x, &ctx).unwrap(), b"secret");
        assert!(p.open(&x, &EncryptionContext::new()).is_err());
        for bit in 0..blob.len() * 8 {
            let mut b = blob.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let r = parse(&b).and_then(|p| p.open(&x, &ctx));
            assert!(r.is_err(), "bit {bit}");
        }
    }
}
