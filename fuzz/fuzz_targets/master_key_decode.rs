//! Master keys from the environment: `LocalMasterKey::from_env_value(variable, value)` (the
//! private `decode_key` behind it: 64 hex digits or base64, one trailing newline). Input:
//! byte 0 selects the mode. Even: byte 1 is the length of the variable name, which is
//! followed by the value (both UTF-8, lossily). Odd: the value is a valid encoding of the
//! fixed master key (hex, hex with CRLF, base64, base64 with newline; chosen by byte 0)
//! with the rest of the input XORed in, appended or cut off (see `kura_fuzz::Mutation`).
//!
//! Invariants: `from_env_value` accepts a value exactly when an independent decoder (the
//! `hex` and `base64` crates) gets 32 bytes out of it, and then yields that key (same
//! fingerprint id); a key decrypts the KEK wrapped under the fixed master key only if it
//! is that key; a decoded key unwraps what it wrapped; errors never echo the value.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use kura_crypto::Key256;
use kura_fuzz::split_mode;
use kura_keys::{LocalMasterKey, MasterKey};
use libfuzzer_sys::fuzz_target;

const MASTER: [u8; 32] = [
    0x3b, 0x58, 0x96, 0xb5, 0xbe, 0x69, 0x10, 0x06, 0xe0, 0xf7, 0x1c, 0x30, 0x40, 0xa2, 0x94, 0x95,
    0xdd, 0xca, 0xd2, 0x0b, 0x14, 0xaf, 0xf6, 0x18, 0x06, 0x94, 0x0e, 0xbd, 0x78, 0x0d, 0x3c, 0x62,
];
const KEK_ID: u64 = 7;

struct Fixture {
    master: LocalMasterKey,
    kek: [u8; 32],
    wrapped_kek: Vec<u8>,
    encodings: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = Key256::from_slice(&MASTER, "fuzz master key").expect("32 bytes");
        let master = LocalMasterKey::new(&key, "fuzz".into()).expect("master key");
        let kek = [0x5a; 32];
        let wrapped_kek = master
            .wrap_kek(KEK_ID, &Key256::from_slice(&kek, "kek").expect("32 bytes"))
            .expect("wrap");
        let b64 = base64::engine::general_purpose::STANDARD.encode(MASTER);
        let hex = hex::encode(MASTER);
        let encodings = vec![
            hex.clone(),
            format!("{}\r\n", hex.to_uppercase()),
            b64.clone(),
            format!("{b64}\n"),
        ];
        Fixture {
            master,
            kek,
            wrapped_kek,
            encodings,
        }
    })
}

/// The key `value` should decode to, by the documented rule, with other crates' decoders.
fn reference(value: &str) -> Option<[u8; 32]> {
    let t = value.as_bytes();
    let t = t.strip_suffix(b"\n").unwrap_or(t);
    let t = t.strip_suffix(b"\r").unwrap_or(t);
    let bytes = if !t.is_empty() && t.len().is_multiple_of(2) && t.iter().all(u8::is_ascii_hexdigit)
    {
        hex::decode(t).ok()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(t).ok()?
    };
    bytes.try_into().ok()
}

fn check(variable: &str, value: &str) {
    let f = fixture();
    let expected = reference(value);
    match LocalMasterKey::from_env_value(variable, value) {
        Ok(k) => {
            let want = expected.expect("from_env_value accepted what the reference rejects");
            let want =
                LocalMasterKey::new(&Key256::from_slice(&want, "ref").expect("32"), "r".into())
                    .expect("key");
            assert_eq!(
                k.id(),
                want.id(),
                "decoded to another key than the reference"
            );
            assert_eq!(k.source(), format!("environment variable {variable}"));

            let is_master = want.id() == f.master.id();
            match k.unwrap_kek(KEK_ID, &f.wrapped_kek) {
                Ok(kek) => {
                    assert!(is_master, "another key unwrapped the master key's KEK");
                    assert_eq!(kek.expose_secret(), &f.kek);
                }
                Err(_) => assert!(!is_master, "the master key failed to unwrap its KEK"),
            }
            let kek = Key256::from_slice(&[0xc3; 32], "kek").expect("32");
            let blob = k.wrap_kek(KEK_ID + 1, &kek).expect("wrap");
            let back = k.unwrap_kek(KEK_ID + 1, &blob).expect("own round trip");
            assert_eq!(back.expose_secret(), kek.expose_secret());
            assert_eq!(f.master.unwrap_kek(KEK_ID + 1, &blob).is_ok(), is_master);
        }
        Err(e) => {
            assert!(
                expected.is_none(),
                "from_env_value rejected a valid key: {e}"
            );
            let msg = e.to_string();
            let v = value.trim();
            if v.len() >= 8 && !variable.contains(v) {
                assert!(!msg.contains(v), "the error echoes the value: {msg}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match split_mode(data) {
        None => {}
        Some(Err(rest)) => {
            let Some((&n, rest)) = rest.split_first() else {
                return;
            };
            let (var, value) = rest.split_at(usize::from(n).min(rest.len()));
            check(
                &String::from_utf8_lossy(var),
                &String::from_utf8_lossy(value),
            );
        }
        Some(Ok(m)) => {
            let enc = &fixture().encodings[m.sample % fixture().encodings.len()];
            let value = m.apply(enc.as_bytes());
            check("KURA_MASTER_KEY_ENV", &String::from_utf8_lossy(&value));
        }
    }
});
