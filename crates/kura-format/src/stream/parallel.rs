//! Whole-file encryption and decryption on several cores.
//!
//! Every chunk of a stream has a fixed place in both the plaintext and the ciphertext
//! (chunk `i` starts at `i × chunk size` in one and at `80 + i × (chunk size + 16)` in the
//! other) and its own nonce, so batches of chunks can be read, sealed or opened, and
//! written by independent workers with positioned I/O. The bytes produced are exactly
//! those of the sequential [`super::encrypt`]; the kernel's copying, which dominates on a
//! RAM-backed file system, is spread over the cores too.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kura_crypto::TAG_LEN;

use super::{HEADER_LEN, Header, Opener, Sealer, WHAT};
use crate::{Error, check_magic};

/// Chunks per unit of work: about 1 MiB of plaintext.
fn batch_chunks(chunk_size: usize) -> u64 {
    ((1u64 << 20) / chunk_size as u64).max(1)
}

/// Runs `work(batch, buffer)` for every batch on `threads` workers; stops at the first
/// error and returns it.
fn run_batches<E: Send>(
    batches: u64,
    threads: usize,
    buf_len: usize,
    work: impl Fn(u64, &mut [u8]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, 16) {
            s.spawn(|| {
                let mut buf = vec![0u8; buf_len];
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = work(b, &mut buf) {
                        failed.store(true, Ordering::Relaxed);
                        let mut slot = first_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        slot.get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Encrypts the regular file `input` into `output` (from offset 0) with `threads` workers.
/// Returns the number of plaintext bytes. Fails if `input` changes size meanwhile.
pub fn encrypt_file(
    input: &File,
    output: &File,
    sealer: Sealer,
    threads: usize,
) -> Result<u64, Error> {
    let len = input.metadata()?.len();
    let cs = sealer.header().chunk_size();
    let slot = cs + TAG_LEN;
    let chunks = len.div_ceil(cs as u64).max(1);
    let per = batch_chunks(cs);
    output.write_all_at(sealer.header().as_bytes(), 0)?;
    run_batches(
        chunks.div_ceil(per),
        threads,
        per as usize * slot,
        |b, buf| {
            let first = b * per;
            let end = (first + per).min(chunks);
            let mut written = 0;
            for (j, c) in (first..end).enumerate() {
                let start = c * cs as u64;
                let n = (len - start).min(cs as u64) as usize;
                let at = j * slot;
                input.read_exact_at(&mut buf[at..at + n], start)?;
                let tag = sealer.seal_at(c, &mut buf[at..at + n], c + 1 == chunks)?;
                buf[at + n..at + n + TAG_LEN].copy_from_slice(&tag);
                written = at + n + TAG_LEN;
            }
            output.write_all_at(&buf[..written], HEADER_LEN as u64 + first * slot as u64)?;
            Ok::<(), Error>(())
        },
    )?;
    if input.metadata()?.len() != len {
        return Err(Error::Io(std::io::Error::other(
            "the input file changed size while it was being encrypted; encrypt a stable copy",
        )));
    }
    Ok(len)
}

/// Decrypts the regular file `input` into `output` (from offset 0) with `threads` workers.
/// `open` receives the parsed header and returns the [`Opener`]. Returns the number of
/// plaintext bytes. On failure `output` holds partial plaintext: callers write to a
/// temporary file and drop it.
pub fn decrypt_file<E: From<Error> + Send>(
    input: &File,
    output: &File,
    open: impl FnOnce(Header) -> Result<Opener, E>,
    threads: usize,
) -> Result<u64, E> {
    let len = input.metadata().map_err(Error::Io)?.len();
    let mut hb = [0u8; HEADER_LEN];
    let n = (len as usize).min(HEADER_LEN);
    input.read_exact_at(&mut hb[..n], 0).map_err(Error::Io)?;
    if n < HEADER_LEN {
        check_magic(&hb[..n], &super::MAGIC, super::VERSION, WHAT)?;
        return Err(Error::Truncated { what: WHAT }.into());
    }
    let opener = open(Header::parse(&hb)?)?;
    let cs = opener.header().chunk_size();
    let slot = (cs + TAG_LEN) as u64;
    let body = len - HEADER_LEN as u64;
    let chunks = body.div_ceil(slot);
    // A stream has at least one chunk, and its last chunk holds at least a tag.
    if chunks == 0 || body - (chunks - 1) * slot < TAG_LEN as u64 {
        return Err(Error::Decrypt.into());
    }
    let per = batch_chunks(cs);
    run_batches(
        chunks.div_ceil(per),
        threads,
        (per * slot) as usize,
        |b, buf| {
            let first = b * per;
            let end = (first + per).min(chunks);
            let from = first * slot;
            let to = (end * slot).min(body);
            let data = &mut buf[..(to - from) as usize];
            input.read_exact_at(data, HEADER_LEN as u64 + from)?;
            for (j, c) in (first..end).enumerate() {
                let at = j * slot as usize;
                let stop = (at + slot as usize).min(data.len());
                let (ct, tag) = data[at..stop].split_at_mut(stop - at - TAG_LEN);
                let mut t = [0u8; TAG_LEN];
                t.copy_from_slice(tag);
                opener.open_at(c, ct, &t, c + 1 == chunks)?;
                output.write_all_at(ct, c * cs as u64)?;
            }
            Ok::<(), Error>(())
        },
    )?;
    Ok(body - chunks * TAG_LEN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EncryptionContext;
    use kura_crypto::Key256;
    use std::io::{Read, Seek, Write};

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile_in_target();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    fn tempfile_in_target() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "kura-par-{}-{}",
            std::process::id(),
            kura_crypto::rng::nonce::<8>()
                .map(u64::from_ne_bytes)
                .unwrap()
        ));
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn parallel_equals_sequential_and_round_trips() {
        let key = Key256::generate().unwrap();
        let ctx = EncryptionContext::new();
        let salt = [7u8; 32];
        for len in [
            0usize,
            1,
            4095,
            4096,
            4097,
            256 * 4096,
            256 * 4096 + 1,
            700_001,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut seq = Vec::new();
            super::super::encrypt(
                &data[..],
                &mut seq,
                Sealer::with_salt(&key, 3, &ctx, 12, &salt).unwrap(),
            )
            .unwrap();
            let input = file_with(&data);
            let out = tempfile_in_target();
            let n = encrypt_file(
                &input,
                &out,
                Sealer::with_salt(&key, 3, &ctx, 12, &salt).unwrap(),
                3,
            )
            .unwrap();
            assert_eq!(n, len as u64);
            let mut par = Vec::new();
            (&out).read_to_end(&mut par).unwrap();
            assert_eq!(par, seq, "len {len}");
            let plain = tempfile_in_target();
            let m = decrypt_file(&out, &plain, |h| Opener::new(h, &key, &ctx), 3).unwrap();
            assert_eq!(m, len as u64);
            let mut back = Vec::new();
            (&plain).read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn tampering_and_truncation_fail() {
        let key = Key256::generate().unwrap();
        let ctx = EncryptionContext::new();
        let data = vec![9u8; 3 * 4096 + 5];
        let mut ct = Vec::new();
        super::super::encrypt(&data[..], &mut ct, Sealer::new(&key, 3, &ctx, 12).unwrap()).unwrap();
        let open = |bytes: &[u8]| {
            let f = file_with(bytes);
            decrypt_file(&f, &tempfile_in_target(), |h| Opener::new(h, &key, &ctx), 2)
        };
        let slot = 4096 + TAG_LEN;
        for cut in [
            HEADER_LEN,
            HEADER_LEN + slot,
            HEADER_LEN + 3 * slot,
            ct.len() - 1,
            HEADER_LEN + 10,
        ] {
            assert!(matches!(open(&ct[..cut]), Err(Error::Decrypt)), "cut {cut}");
        }
        let mut bad = ct.clone();
        bad[HEADER_LEN + slot + 7] ^= 1;
        assert!(matches!(open(&bad), Err(Error::Decrypt)));
        assert!(matches!(open(&ct[..40]), Err(Error::Truncated { .. })));
        assert!(open(&ct).is_ok());
    }
}
