//! Streams: `kura_format::stream::decrypt` with the fixed data key, reading through a reader
//! that returns short reads (and `Interrupted`) as the input says, on arbitrary bytes
//! (first input byte even) or on a valid stream with the rest of the input XORed in,
//! appended or cut off (first input byte odd; see `kura_fuzz::Mutation`). The samples
//! cover the empty stream, one short chunk, one full chunk, several chunks, and a stream
//! just over one read batch (1 MiB), so the carry between batches is exercised.
//! (`decrypt_file` needs real files and is not fuzzed here.)
//!
//! Invariants: decryption succeeds only on a stream that is byte for byte one of the valid
//! samples, and then yields exactly its plaintext; whatever it wrote before failing is a
//! prefix of the genuine plaintext (only authenticated chunks are released); the reader's
//! chopping never changes the outcome.
#![no_main]

use std::sync::OnceLock;

use kura_format::EncryptionContext;
use kura_format::stream::{self, Opener, Sealer};
use kura_fuzz::{ChoppyReader, DATA_KEY_ID, context, data_key, plaintext, split_mode};
use libfuzzer_sys::fuzz_target;

struct Sample {
    context: EncryptionContext,
    plaintext: Vec<u8>,
    sealed: Vec<u8>,
}

fn samples() -> &'static [Sample] {
    static S: OnceLock<Vec<Sample>> = OnceLock::new();
    S.get_or_init(|| {
        let key = data_key();
        [
            (false, 0usize, 12u8),
            (false, 100, 12),
            (true, 4096, 12),
            (false, 2 * 4096 + 100, 12),
            (true, 5000, 13),
            // Just over one batch of 256 chunks of 4 KiB.
            (false, 256 * 4096 + 1, 12),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (ctx, len, log2))| {
            let context = context(ctx);
            let plaintext = plaintext(len, i as u8);
            let salt = [i as u8 + 1; 32];
            let sealer =
                Sealer::with_salt(&key, DATA_KEY_ID, &context, log2, &salt).expect("sealer");
            let mut sealed = Vec::new();
            stream::encrypt(&plaintext[..], &mut sealed, sealer).expect("encrypt");
            Sample {
                context,
                plaintext,
                sealed,
            }
        })
        .collect()
    })
}

/// Decrypts `bytes` under `ctx`, read in pieces of at most `step` bytes (and with
/// `Interrupted` errors when `interrupt`), and checks the invariants.
fn check(bytes: &[u8], ctx: &EncryptionContext, step: u8, interrupt: bool) {
    let key = data_key();
    let genuine = samples()
        .iter()
        .find(|s| s.sealed == bytes && s.context == *ctx);
    let mut out = Vec::new();
    let r = stream::decrypt(ChoppyReader::new(bytes, step, interrupt), &mut out, |h| {
        Opener::new(h, &key, ctx)
    });
    match r {
        Ok(n) => {
            let s = genuine.expect("a stream that was never sealed decrypted");
            assert_eq!(n, s.plaintext.len() as u64);
            assert_eq!(out, s.plaintext);
        }
        Err(e) => {
            assert!(genuine.is_none(), "a genuine stream failed: {e}");
            // Released plaintext was authenticated: it is a prefix of a genuine plaintext
            // of this context (with a header that authenticates, it is that stream's).
            if !out.is_empty() {
                assert!(
                    samples()
                        .iter()
                        .any(|s| s.context == *ctx && s.plaintext.starts_with(&out)),
                    "unauthenticated plaintext was released"
                );
            }
            let _ = e.to_string();
            // Plain reads (no chopping) fail too, and with the same kind of error.
            if step != 0 || interrupt {
                let plain = stream::decrypt(bytes, &mut Vec::new(), |h| Opener::new(h, &key, ctx));
                assert_eq!(
                    std::mem::discriminant(&plain.expect_err("chopping changed the outcome")),
                    std::mem::discriminant(&e)
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match split_mode(data) {
        None => {}
        Some(Err(rest)) => {
            // byte 1: read step (0 = whole reads); its top bit adds Interrupted errors.
            let Some((&step, bytes)) = rest.split_first() else {
                return;
            };
            check(bytes, &context(false), step & 0x7f, step & 0x80 != 0);
        }
        Some(Ok(m)) => {
            let s = &samples()[m.sample % samples().len()];
            let bytes = m.apply(&s.sealed);
            // Chop the reads by a step derived from the sample choice, so both the
            // batched fast path and the short-read path see mutated streams.
            let step = [0u8, 1, 7, 16, 0, 97][m.sample % 6];
            check(&bytes, &s.context, step, m.sample % 4 == 3);
            // Under the other context nothing decrypts, and nothing is released.
            let key = data_key();
            let mut out = Vec::new();
            let other = context(s.context.is_empty());
            let r = stream::decrypt(&bytes[..], &mut out, |h| Opener::new(h, &key, &other));
            assert!(
                r.is_err(),
                "a stream opened under another encryption context"
            );
            assert!(out.is_empty());
        }
    }
});
