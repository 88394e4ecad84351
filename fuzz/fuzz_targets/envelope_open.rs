//! Record envelopes: `envelope::key_id`, `opened_len`, `open` and `open_into` with the fixed
//! data key, on arbitrary bytes (first input byte even) or on a valid sealed envelope with
//! the rest of the input XORed in, appended or cut off (first input byte odd; see
//! `kura_fuzz::Mutation`).
//!
//! Invariants: the header accessors agree with the bytes; an envelope opens only if it is
//! byte for byte one of the valid samples (sealed under this key and this context), and
//! then yields exactly its plaintext; a failed `open` leaves the output untouched.
#![no_main]

use std::sync::OnceLock;

use kura_format::{EncryptionContext, envelope};
use kura_fuzz::{DATA_KEY_ID, context, plaintext, split_mode, xaes};
use libfuzzer_sys::fuzz_target;

struct Sample {
    context: EncryptionContext,
    plaintext: Vec<u8>,
    sealed: Vec<u8>,
}

fn samples() -> &'static [Sample] {
    static S: OnceLock<Vec<Sample>> = OnceLock::new();
    S.get_or_init(|| {
        [(false, 0usize), (false, 37), (true, 37), (true, 300)]
            .into_iter()
            .enumerate()
            .map(|(i, (ctx, len))| {
                let context = context(ctx);
                let plaintext = plaintext(len, i as u8);
                let mut sealed = Vec::new();
                let nonce = [i as u8 + 1; 24];
                envelope::seal_with_nonce(
                    xaes(),
                    DATA_KEY_ID,
                    &context,
                    &nonce,
                    &plaintext,
                    &mut sealed,
                )
                .expect("seal");
                Sample {
                    context,
                    plaintext,
                    sealed,
                }
            })
            .collect()
    })
}

/// Opens `bytes` under `ctx` every way the API allows and checks the invariants.
fn check(bytes: &[u8], ctx: &EncryptionContext) {
    let well_formed = bytes.len() >= envelope::OVERHEAD
        && bytes[..3] == envelope::MAGIC
        && bytes[3] == envelope::VERSION;
    match envelope::key_id(bytes) {
        Ok(id) => {
            assert!(well_formed);
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[4..12]);
            assert_eq!(id, u64::from_be_bytes(b));
            assert_eq!(
                envelope::opened_len(bytes).expect("opened_len after key_id"),
                bytes.len() - envelope::OVERHEAD
            );
        }
        Err(_) => {
            assert!(!well_formed);
            assert!(envelope::opened_len(bytes).is_err());
        }
    }

    let genuine = samples()
        .iter()
        .find(|s| s.sealed == bytes && s.context == *ctx);

    let prefix = b"prefix";
    let mut out = prefix.to_vec();
    match envelope::open(xaes(), ctx, bytes, &mut out) {
        Ok(()) => {
            let s = genuine.expect("an envelope that was never sealed opened");
            assert_eq!(&out[..prefix.len()], prefix);
            assert_eq!(&out[prefix.len()..], s.plaintext);
        }
        Err(_) => {
            assert!(genuine.is_none(), "a genuine envelope failed to open");
            assert_eq!(out, prefix, "a failed open left bytes in the output");
        }
    }

    // open_into, with a buffer one byte too short when there is room to be short.
    let need = bytes.len().saturating_sub(envelope::OVERHEAD);
    let mut buf = vec![0u8; need + 3];
    match envelope::open_into(xaes(), ctx, bytes, &mut buf) {
        Ok(n) => {
            let s = genuine.expect("an envelope that was never sealed opened (open_into)");
            assert_eq!(n, s.plaintext.len());
            assert_eq!(&buf[..n], s.plaintext);
        }
        Err(_) => assert!(genuine.is_none()),
    }
    if need > 0 && well_formed {
        let mut short = vec![0u8; need - 1];
        assert!(envelope::open_into(xaes(), ctx, bytes, &mut short).is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    match split_mode(data) {
        None => {}
        Some(Err(bytes)) => {
            check(bytes, &context(false));
            check(bytes, &context(true));
        }
        Some(Ok(m)) => {
            let s = &samples()[m.sample % samples().len()];
            let bytes = m.apply(&s.sealed);
            check(&bytes, &s.context);
            // The same bytes under the other context never open.
            let other = context(s.context.is_empty());
            let mut out = Vec::new();
            assert!(envelope::open(xaes(), &other, &bytes, &mut out).is_err());
            assert!(out.is_empty());
        }
    }
});
