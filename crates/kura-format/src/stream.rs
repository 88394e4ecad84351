//! The stream format, version 1: data of any length in chunks of AES-256-GCM under a key
//! derived for this stream alone.
//!
//! ```text
//! header, 80 bytes
//!  0   3   magic "KRS"
//!  3   1   version 0x01
//!  4   1   log2 of the chunk size (16 = 64 KiB; readers accept 12..=24)
//!  5   3   reserved, zero
//!  8   8   data key id, u64 big-endian
//! 16  32   salt (random, per stream)
//! 48  32   key commitment
//! then chunks: ciphertext (chunk size bytes, the last 0..=chunk size) ‖ 16-byte tag
//! ```
//!
//! `OKM = HKDF-SHA256(salt, IKM = data key, info = "kura stream v1" ‖ header[0..16] ‖
//! encoded context)`, 64 bytes: the stream key is `OKM[0..32]`, the commitment
//! `OKM[32..64]`, checked in constant time before any chunk is opened. Chunk `i` uses nonce
//! `i` (11 bytes, big-endian) ‖ `last` (0x01 on the final chunk, else 0x00) and AAD = the
//! whole 80-byte header. Every chunk but the last is full; the last is empty only when the
//! whole stream is. So truncation at a chunk boundary (no chunk flagged last), reordering
//! (nonce mismatch) and appending (a flagged chunk not at the end) all fail.

mod io;
mod parallel;

use kura_crypto::{Aes256Gcm, GCM_NONCE_LEN, Key256, TAG_LEN, ct_eq, hkdf_sha256, rng};
use zeroize::Zeroize;

pub use io::{decrypt, encrypt};
pub use parallel::{decrypt_file, encrypt_file};

use crate::{EncryptionContext, Error, be_u64, check_magic};

/// The stream magic.
pub const MAGIC: [u8; 3] = *b"KRS";
/// The version this build writes.
pub const VERSION: u8 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = 80;
/// log2 of the chunk size written by default (64 KiB).
pub const DEFAULT_CHUNK_LOG2: u8 = 16;
const MIN_CHUNK_LOG2: u8 = 12;
const MAX_CHUNK_LOG2: u8 = 24;
const INFO: &[u8] = b"kura stream v1";
const WHAT: &str = "stream";

/// A parsed stream header (not yet authenticated).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; HEADER_LEN],
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("chunk_size", &self.chunk_size())
            .field("data_key_id", &self.data_key_id())
            .finish_non_exhaustive()
    }
}

impl Header {
    /// Parses and checks the 80 header bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        check_magic(bytes, &MAGIC, VERSION, WHAT)?;
        let Some(b) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated { what: WHAT });
        };
        if !(MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&b[4]) {
            return Err(Error::Malformed {
                what: WHAT,
                detail: format!("chunk size 2^{} is outside 2^12..=2^24", b[4]),
            });
        }
        if b[5..8] != [0, 0, 0] {
            return Err(Error::Malformed {
                what: WHAT,
                detail: "reserved header bytes are not zero".into(),
            });
        }
        Ok(Self { bytes: *b })
    }

    /// The id of the data key the stream was written under.
    pub fn data_key_id(&self) -> u64 {
        be_u64(&self.bytes, 8)
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        1usize << self.bytes[4]
    }

    /// The header bytes.
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    /// Derives (stream key, commitment) from the data key.
    fn derive(
        &self,
        data_key: &Key256,
        context: &EncryptionContext,
    ) -> Result<(Aes256Gcm, [u8; 32]), Error> {
        let ctx = context.encode();
        let mut okm = [0u8; 64];
        hkdf_sha256(
            &self.bytes[16..48],
            data_key.expose_secret(),
            &[INFO, &self.bytes[..16], &ctx],
            &mut okm,
        )?;
        let key = Key256::from_slice(&okm[..32], "stream key");
        let mut commitment = [0u8; 32];
        commitment.copy_from_slice(&okm[32..]);
        okm.zeroize();
        Ok((Aes256Gcm::new(&key?)?, commitment))
    }
}

/// A fresh salt: 32 bytes from the kernel's CSPRNG (`/dev/urandom`), or from
/// [`rng::nonce`] where that device cannot be read. aws-lc's generator would first seed
/// itself from CPU jitter, about 20 ms of CPU once per process: most of what `kura encrypt`
/// spends outside its I/O, for the one random value a stream needs.
fn salt() -> Result<[u8; 32], Error> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let mut salt = [0u8; 32];
    let from_kernel = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        if !f.metadata()?.file_type().is_char_device() {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        f.read_exact(&mut salt)
    });
    match from_kernel {
        Ok(()) => Ok(salt),
        Err(_) => Ok(rng::nonce()?),
    }
}

fn nonce(counter: u64, last: bool) -> [u8; GCM_NONCE_LEN] {
    let mut n = [0u8; GCM_NONCE_LEN];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Seals the chunks of one stream, in order.
pub struct Sealer(Chunks);

/// What both directions share: the stream key, the header and the position in the stream.
struct Chunks {
    gcm: Aes256Gcm,
    header: Header,
    counter: u64,
    done: bool,
}

impl Chunks {
    fn new(gcm: Aes256Gcm, header: Header) -> Self {
        Self {
            gcm,
            header,
            counter: 0,
            done: false,
        }
    }

    /// Runs `op` on the next chunk's index; moves on only if it succeeds. `finished` is the
    /// error for a chunk after the last.
    fn next<T>(
        &mut self,
        last: bool,
        finished: impl FnOnce() -> Error,
        op: impl FnOnce(&Self, u64) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.done {
            return Err(finished());
        }
        let out = op(self, self.counter)?;
        self.counter += 1;
        self.done = last;
        Ok(out)
    }

    fn seal_at(&self, index: u64, buf: &mut [u8], last: bool) -> Result<[u8; TAG_LEN], Error> {
        if !shape_ok(self.header.chunk_size(), index, buf.len(), last) {
            return Err(Error::Malformed {
                what: WHAT,
                detail: format!("chunk {index} of {} bytes cannot be sealed here", buf.len()),
            });
        }
        Ok(self
            .gcm
            .seal_in_place(&nonce(index, last), self.header.as_bytes(), buf)?)
    }

    fn open_at(
        &self,
        index: u64,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
        last: bool,
    ) -> Result<(), Error> {
        if !shape_ok(self.header.chunk_size(), index, buf.len(), last) {
            return Err(Error::Decrypt);
        }
        Ok(self
            .gcm
            .open_in_place(&nonce(index, last), self.header.as_bytes(), buf, tag)?)
    }
}

impl Sealer {
    /// Starts a stream under data key `data_key` (id `data_key_id`) with 2^`chunk_log2`-byte
    /// chunks.
    pub fn new(
        data_key: &Key256,
        data_key_id: u64,
        context: &EncryptionContext,
        chunk_log2: u8,
    ) -> Result<Self, Error> {
        Self::with_salt(data_key, data_key_id, context, chunk_log2, &salt()?)
    }

    /// [`Sealer::new`] with a given salt: for known-answer vectors only.
    pub fn with_salt(
        data_key: &Key256,
        data_key_id: u64,
        context: &EncryptionContext,
        chunk_log2: u8,
        salt: &[u8; 32],
    ) -> Result<Self, Error> {
        let mut b = [0u8; HEADER_LEN];
        b[..3].copy_from_slice(&MAGIC);
        b[3] = VERSION;
        b[4] = chunk_log2;
        b[8..16].copy_from_slice(&data_key_id.to_be_bytes());
        b[16..48].copy_from_slice(salt);
        let mut header = Header::parse(&b)?;
        let (gcm, commitment) = header.derive(data_key, context)?;
        header.bytes[48..80].copy_from_slice(&commitment);
        Ok(Self(Chunks::new(gcm, header)))
    }

    /// The header, to be written before the first chunk.
    pub fn header(&self) -> &Header {
        &self.0.header
    }

    /// Encrypts the next chunk in place and returns its tag. Every chunk but the last must
    /// be exactly the chunk size; the last may be shorter (empty only if it is the first).
    pub fn seal_chunk(&mut self, buf: &mut [u8], last: bool) -> Result<[u8; TAG_LEN], Error> {
        let done = || Error::Malformed {
            what: WHAT,
            detail: "the last chunk was already sealed".into(),
        };
        self.0.next(last, done, |c, i| c.seal_at(i, buf, last))
    }

    /// Seals chunk `index` (for workers sealing chunks of one stream in parallel; each
    /// index must be sealed once).
    pub(crate) fn seal_at(
        &self,
        index: u64,
        buf: &mut [u8],
        last: bool,
    ) -> Result<[u8; TAG_LEN], Error> {
        self.0.seal_at(index, buf, last)
    }
}

/// Every chunk but the last is full; the last is at most full, and empty only as the first.
fn shape_ok(chunk_size: usize, index: u64, len: usize, last: bool) -> bool {
    if last {
        len <= chunk_size && (len > 0 || index == 0)
    } else {
        len == chunk_size
    }
}

/// Opens the chunks of one stream, in order.
pub struct Opener(Chunks);

impl Opener {
    /// Checks the commitment of `header` against `data_key` and `context`.
    pub fn new(
        header: Header,
        data_key: &Key256,
        context: &EncryptionContext,
    ) -> Result<Self, Error> {
        let (gcm, commitment) = header.derive(data_key, context)?;
        if !ct_eq(&commitment, &header.bytes[48..80]) {
            return Err(Error::Decrypt);
        }
        Ok(Self(Chunks::new(gcm, header)))
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.0.header
    }

    /// Verifies and decrypts the next chunk in place.
    pub fn open_chunk(
        &mut self,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
        last: bool,
    ) -> Result<(), Error> {
        self.0
            .next(last, || Error::Decrypt, |c, i| c.open_at(i, buf, tag, last))
    }

    /// Verifies and decrypts chunk `index` in place (for parallel workers).
    pub(crate) fn open_at(
        &self,
        index: u64,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
        last: bool,
    ) -> Result<(), Error> {
        self.0.open_at(index, buf, tag, last)
    }

    /// Whether the last chunk has been opened (the stream is complete).
    pub fn is_done(&self) -> bool {
        self.0.done
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn salts_are_fresh() {
        let (a, b) = (super::salt().unwrap(), super::salt().unwrap());
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
