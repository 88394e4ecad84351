//! Configuration files: `kura_keys::config::resolve` with the input as the TOML text (invalid
//! UTF-8 is replaced, as a lossy read would), an empty environment and no flags. Byte 0
//! selects the mode: even, the rest of the input is the text; odd, the text is one of a few
//! valid configurations with the rest of the input XORed in, appended or cut off (see
//! `kura_fuzz::Mutation`), so the fuzzer starts inside the schema.
//!
//! Invariants: `resolve` never panics and answers the same twice; accepted settings are
//! valid (a rotation period above zero, a known method, and no master key taken from the
//! environment, which is empty); rejections are `Config` or `MissingMasterKey` errors.
//! There is nothing to decrypt here: the invariant that nothing decrypts without its key is
//! covered by the other targets.
#![no_main]

use std::path::Path;

use kura_fuzz::split_mode;
use kura_keys::Error;
use kura_keys::config::{self, MasterKeySpec, Method, Overrides};
use libfuzzer_sys::fuzz_target;

/// Valid configurations (the documented shape, and variants of each section).
const SAMPLES: [&str; 4] = [
    r#"
[storage]
data-dir = "/var/lib/kura"

[security.encryption]
data-encryption-method = "aes256-ctr"
data-key-rotation-period = "168h"

[security.encryption.master-key]
type = "file"
path = "/etc/kura/master.key"

[security.encryption.previous-master-key]
type = "file"
path = "/etc/kura/old-master.key"
"#,
    r#"
[security.encryption]
data-encryption-method = "sm4-ctr"
data-key-rotation-period = "7days 12h"
master-key = { type = "file", path = "k" }
"#,
    "security.encryption.data-key-rotation-period = '30m'\nstorage = { data-dir = 'd' }\n",
    r#"
[security.encryption.master-key]
type = "env"
variable = "KURA_MASTER_KEY_ENV"
"#,
];

fn resolve(text: &str) -> Result<config::Settings, Error> {
    config::resolve(
        Some((Path::new("fuzz.toml"), text)),
        &|_| None,
        &Overrides::default(),
    )
}

fuzz_target!(|data: &[u8]| {
    let bytes = match split_mode(data) {
        None => return,
        Some(Err(rest)) => rest.to_vec(),
        Some(Ok(m)) => m.apply(SAMPLES[m.sample % SAMPLES.len()].as_bytes()),
    };
    let text = String::from_utf8_lossy(&bytes);
    let first = resolve(&text);
    let again = resolve(&text);
    if let Some(i) = SAMPLES.iter().position(|s| s.as_bytes() == bytes) {
        // The samples are valid; the last names an unset variable.
        assert_eq!(first.is_ok(), i != 3, "sample {i}: {first:?}");
    }
    match (&first, &again) {
        (Ok(s), Ok(t)) => {
            assert!(!s.rotation_period.is_zero());
            assert_eq!(
                Method::parse(s.method.as_str()).expect("method name"),
                s.method
            );
            for spec in [&s.master_key, &s.previous_master_key]
                .into_iter()
                .flatten()
            {
                assert!(
                    matches!(spec, MasterKeySpec::File { .. }),
                    "a master key came from an empty environment: {spec:?}"
                );
            }
            let _ = config::format_duration(s.rotation_period);
            let _ = s.keystore_path();
            assert_eq!(format!("{s:?}"), format!("{t:?}"));
        }
        (Err(e), Err(f)) => {
            assert!(
                matches!(e, Error::Config(_) | Error::MissingMasterKey(_)),
                "unexpected error kind: {e:?}"
            );
            assert_eq!(e.to_string(), f.to_string());
        }
        _ => panic!("resolve answered differently for the same text"),
    }
});
