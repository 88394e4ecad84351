//! Stream headers: `stream::Header::parse` on arbitrary bytes (first input byte even) or
//! on the header of a valid stream with the rest of the input XORed in or cut off (first
//! input byte odd; see `kura_fuzz::Mutation`), then `Opener::new` with the fixed data key.
//!
//! Invariants: `parse` accepts exactly the inputs of at least 80 bytes with the magic,
//! version 1, a chunk size of 2^12..=2^24 and zero reserved bytes, and its accessors agree
//! with the bytes; the key commitment accepts a header only if it is byte for byte a
//! header written under this key and context.
#![no_main]

use std::sync::OnceLock;

use kura_format::EncryptionContext;
use kura_format::stream::{self, Header, Opener, Sealer};
use kura_fuzz::{DATA_KEY_ID, context, data_key, split_mode};
use libfuzzer_sys::fuzz_target;

/// (context, header) of streams sealed under the fixed key.
fn samples() -> &'static [(EncryptionContext, [u8; stream::HEADER_LEN])] {
    static S: OnceLock<Vec<(EncryptionContext, [u8; stream::HEADER_LEN])>> = OnceLock::new();
    S.get_or_init(|| {
        let key = data_key();
        [(false, 12u8), (true, 16), (false, 24), (true, 13)]
            .into_iter()
            .enumerate()
            .map(|(i, (ctx, log2))| {
                let ctx = context(ctx);
                let salt = [0xA0 ^ i as u8; 32];
                let sealer = Sealer::with_salt(&key, DATA_KEY_ID + i as u64, &ctx, log2, &salt)
                    .expect("sealer");
                (ctx, *sealer.header().as_bytes())
            })
            .collect()
    })
}

fn check(bytes: &[u8], ctx: &EncryptionContext) {
    let expect_ok = bytes.len() >= stream::HEADER_LEN
        && bytes[..3] == stream::MAGIC
        && bytes[3] == stream::VERSION
        && (12..=24).contains(&bytes[4])
        && bytes[5..8] == [0, 0, 0];
    let h = match Header::parse(bytes) {
        Ok(h) => {
            assert!(expect_ok, "parse accepted an invalid header");
            h
        }
        Err(e) => {
            assert!(!expect_ok, "parse rejected a valid header: {e}");
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(h.as_bytes()[..], bytes[..stream::HEADER_LEN]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..16]);
    assert_eq!(h.data_key_id(), u64::from_be_bytes(id));
    assert_eq!(h.chunk_size(), 1usize << bytes[4]);
    assert_eq!(Header::parse(h.as_bytes()).expect("reparse"), h);
    let _ = format!("{h:?}");

    let genuine = samples()
        .iter()
        .any(|(c, hb)| c == ctx && hb[..] == bytes[..stream::HEADER_LEN]);
    match Opener::new(h, &data_key(), ctx) {
        Ok(o) => {
            assert!(genuine, "a forged header passed the key commitment");
            assert!(!o.is_done());
        }
        Err(_) => assert!(!genuine, "a genuine header failed the key commitment"),
    }
}

fuzz_target!(|data: &[u8]| {
    match split_mode(data) {
        None => {}
        Some(Err(bytes)) => check(bytes, &context(false)),
        Some(Ok(m)) => {
            let (ctx, header) = &samples()[m.sample % samples().len()];
            check(&m.apply(header), ctx);
        }
    }
});
