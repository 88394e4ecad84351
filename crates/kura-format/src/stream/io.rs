//! Whole-stream encryption and decryption over `Read` and `Write`, in constant memory.
//!
//! I/O is batched: about 1 MiB of chunks is read straight into place (each chunk's slot is
//! followed by room for its tag), sealed in place, and written with one call, so the data
//! is copied only by the kernel.

use std::io::{ErrorKind, Read, Write};

use kura_crypto::TAG_LEN;

use super::{HEADER_LEN, Header, Opener, Sealer, WHAT};
use crate::{Error, check_magic};

/// Chunks per batch: about 1 MiB of plaintext.
fn batch_chunks(chunk_size: usize) -> usize {
    ((1 << 20) / chunk_size).max(1)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, Error> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(n)
}

/// Encrypts all of `input` to `output` (header, then chunks) with `sealer`. Returns the
/// number of plaintext bytes. Does not flush or sync `output`.
pub fn encrypt<R: Read, W: Write>(
    mut input: R,
    mut output: W,
    mut sealer: Sealer,
) -> Result<u64, Error> {
    output.write_all(sealer.header().as_bytes())?;
    let cs = sealer.header().chunk_size();
    let slot = cs + TAG_LEN;
    let batch = batch_chunks(cs);
    let mut buf = vec![0u8; batch * slot];
    let mut carry: Option<u8> = None;
    let mut total = 0u64;
    loop {
        // Fill slots; `chunks` counts the slots to seal, `last_len` is the length of the
        // final one when the input has ended.
        let mut chunks = 0;
        let mut end: Option<usize> = None;
        while chunks < batch {
            let s = &mut buf[chunks * slot..chunks * slot + cs];
            let mut f = 0;
            if let Some(c) = carry.take() {
                s[0] = c;
                f = 1;
            }
            f += read_full(&mut input, &mut s[f..])?;
            if f < cs {
                if f > 0 || (chunks == 0 && total == 0) {
                    chunks += 1;
                    end = Some(f);
                } else {
                    // The previous slot, full, was the last one.
                    end = Some(cs);
                }
                break;
            }
            chunks += 1;
            if chunks == batch {
                let mut one = [0u8; 1];
                if read_full(&mut input, &mut one)? == 0 {
                    end = Some(cs);
                } else {
                    carry = Some(one[0]);
                }
            }
        }
        if chunks == 0 {
            return Err(Error::Malformed {
                what: WHAT,
                detail: "internal: no chunk to seal".into(),
            });
        }
        let mut written = 0;
        for i in 0..chunks {
            let last = end.is_some() && i + 1 == chunks;
            let len = if last { end.unwrap_or(cs) } else { cs };
            let at = i * slot;
            let tag = sealer.seal_chunk(&mut buf[at..at + len], last)?;
            buf[at + len..at + len + TAG_LEN].copy_from_slice(&tag);
            written = at + len + TAG_LEN;
            total += len as u64;
        }
        output.write_all(&buf[..written])?;
        if end.is_some() {
            return Ok(total);
        }
    }
}

/// Decrypts a whole stream from `input` to `output`. `open` receives the parsed header and
/// returns the [`Opener`] (it looks up the data key named there). Returns the number of
/// plaintext bytes.
///
/// Plaintext is written chunk by chunk as each chunk is verified; a stream cut short is
/// reported only at its end, so callers that must not expose partial output write to a
/// temporary file and rename it on success.
pub fn decrypt<R: Read, W: Write, E: From<Error>>(
    mut input: R,
    mut output: W,
    open: impl FnOnce(Header) -> Result<Opener, E>,
) -> Result<u64, E> {
    let mut hb = [0u8; HEADER_LEN];
    let n = read_full(&mut input, &mut hb)?;
    if n < HEADER_LEN {
        check_magic(&hb[..n], &super::MAGIC, super::VERSION, WHAT)?;
        return Err(Error::Truncated { what: WHAT }.into());
    }
    let mut opener = open(Header::parse(&hb)?)?;
    let cs = opener.header().chunk_size();
    let slot = cs + TAG_LEN;
    let mut buf = vec![0u8; batch_chunks(cs) * slot + 1];
    let mut have = 0;
    let mut total = 0u64;
    loop {
        have += read_full(&mut input, &mut buf[have..])?;
        let eof = have < buf.len();
        let data_len = if eof { have } else { have - 1 };
        let mut off = 0;
        while off < data_len {
            let end = (off + slot).min(data_len);
            let last = eof && end == data_len;
            if end - off < TAG_LEN {
                return Err(Error::Decrypt.into());
            }
            let (ct, tag) = buf[off..end].split_at_mut(end - off - TAG_LEN);
            let mut t = [0u8; TAG_LEN];
            t.copy_from_slice(tag);
            opener.open_chunk(ct, &t, last)?;
            output.write_all(ct).map_err(Error::Io)?;
            total += ct.len() as u64;
            off = end;
        }
        if eof {
            return if opener.is_done() {
                Ok(total)
            } else {
                Err(Error::Decrypt.into())
            };
        }
        buf[0] = buf[have - 1];
        have = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EncryptionContext;
    use kura_crypto::Key256;

    fn round_trip(len: usize, chunk_log2: u8) {
        let key = Key256::generate().unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let ctx = EncryptionContext::new();
        let sealer = Sealer::new(&key, 5, &ctx, chunk_log2).unwrap();
        let mut ct = Vec::new();
        assert_eq!(encrypt(&data[..], &mut ct, sealer).unwrap(), len as u64);
        let cs = 1usize << chunk_log2;
        let chunks = if len == 0 { 1 } else { len.div_ceil(cs) };
        assert_eq!(ct.len(), HEADER_LEN + len + chunks * TAG_LEN, "len {len}");
        let mut pt = Vec::new();
        decrypt(&ct[..], &mut pt, |h| Opener::new(h, &key, &ctx)).unwrap();
        assert_eq!(pt, data);
    }

    #[test]
    fn boundaries() {
        let cs = 1 << 12;
        let batch = batch_chunks(cs) * cs;
        for len in [
            0,
            1,
            cs - 1,
            cs,
            cs + 1,
            2 * cs,
            batch - 1,
            batch,
            batch + 1,
            3 * batch + 5,
        ] {
            round_trip(len, 12);
        }
    }

    #[test]
    fn truncation_at_every_chunk_boundary_fails() {
        let key = Key256::generate().unwrap();
        let ctx = EncryptionContext::new();
        let data = vec![1u8; 5 * 4096 + 10];
        let mut ct = Vec::new();
        encrypt(&data[..], &mut ct, Sealer::new(&key, 1, &ctx, 12).unwrap()).unwrap();
        let slot = 4096 + TAG_LEN;
        for k in 0..=5 {
            let cut = HEADER_LEN + k * slot;
            let r = decrypt(&ct[..cut], &mut Vec::new(), |h| Opener::new(h, &key, &ctx));
            assert!(
                matches!(r, Err(Error::Decrypt)),
                "cut after {k} chunks: {r:?}"
            );
        }
    }
}
