#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura seal` and `kura open`: one value between stdin and stdout, raw and base64,
//! contexts, legacy AES-128-CBC values through the dual reader, and tampered input.

mod common;

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;

const DECRYPT: &str = "decryption failed";

/// A legacy key file (hex) holding 16 random bytes, registered as a secret.
fn legacy_key(sb: &Sandbox, name: &str, base64_text: bool) -> (PathBuf, Vec<u8>) {
    let key = random_key()[..16].to_vec();
    sb.secret(&key);
    let text = if base64_text {
        format!("{}\n", STANDARD.encode(&key))
    } else {
        format!("{}\n", hex::encode(&key))
    };
    (sb.write_file(name, text.as_bytes(), 0o400), key)
}

/// A legacy value: IV ‖ AES-128-CBC(PKCS#7) ciphertext, as base64 (`hex == false`) or hex.
fn legacy_value(key: &[u8], plain: &[u8], hex_text: bool) -> Vec<u8> {
    let iv: [u8; 16] = data(16, 99).try_into().unwrap();
    let mut raw = iv.to_vec();
    raw.extend(kura_crypto::legacy::encrypt_cbc(key, iv, plain).unwrap());
    let text = if hex_text {
        hex::encode(raw)
    } else {
        STANDARD.encode(raw)
    };
    format!("{text}\n").into_bytes()
}

fn raw_round_trip_through_stdin_and_stdout() {
    let (sb, key) = Sandbox::initialised();
    let plain = b"4111 1111 1111 1111".to_vec();
    let env = sb.kura_stdin(&key, &["seal"], &plain).ok().stdout;
    assert_eq!(&env[..4], b"KRE\x01");
    assert_eq!(env.len(), plain.len() + 84);
    assert!(!env.windows(plain.len()).any(|w| w == plain));
    let back = sb.kura_stdin(&key, &["open"], &env).ok().stdout;
    assert_eq!(back, plain);
    // Binary and empty values survive.
    for v in [data(1000, 3), Vec::new()] {
        let env = sb.kura_stdin(&key, &["seal"], &v).ok().stdout;
        assert_eq!(sb.kura_stdin(&key, &["open"], &env).ok().stdout, v);
    }
}

fn base64_round_trip_and_json() {
    let (sb, key) = Sandbox::initialised();
    let run = sb.kura_stdin(&key, &["seal", "--base64"], b"hello").ok();
    let text = run.stdout_str();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    assert!(
        STANDARD
            .decode(text.trim_end())
            .unwrap()
            .starts_with(b"KRE\x01")
    );
    let back = sb
        .kura_stdin(&key, &["open", "--base64"], text.as_bytes())
        .ok();
    assert_eq!(back.stdout, b"hello");
    // The dual reader recognises base64 text even without --base64.
    let back = sb.kura_stdin(&key, &["open"], text.as_bytes()).ok();
    assert_eq!(back.stdout, b"hello");

    let j = sb
        .kura_stdin(&key, &["--output", "json", "open"], text.as_bytes())
        .ok()
        .json();
    assert_eq!(j["origin"], "envelope");
    assert_eq!(j["plaintext_base64"], STANDARD.encode(b"hello"));

    let j = sb
        .kura_stdin(&key, &["--output", "json", "seal"], b"hi")
        .ok()
        .json();
    let env = STANDARD
        .decode(j["envelope_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(sb.kura_stdin(&key, &["open"], &env).ok().stdout, b"hi");

    sb.kura_stdin(&key, &["open", "--base64"], b"not base64!\n")
        .fails_with(&["not base64"]);
}

fn contexts_must_match() {
    let (sb, key) = Sandbox::initialised();
    let env = sb
        .kura_stdin(
            &key,
            &["seal", "--context", "table=users", "--context", "col=email"],
            b"a@example.com",
        )
        .ok()
        .stdout;
    let back = sb
        .kura_stdin(
            &key,
            &["open", "--context", "col=email", "--context", "table=users"],
            &env,
        )
        .ok();
    assert_eq!(back.stdout, b"a@example.com");
    for wrong in [
        vec!["open"],
        vec!["open", "--context", "table=users"],
        vec![
            "open",
            "--context",
            "table=orders",
            "--context",
            "col=email",
        ],
    ] {
        sb.kura_stdin(&key, &wrong, &env).fails_with(&[DECRYPT]);
    }
    sb.kura_stdin(
        &key,
        &["seal", "--context", "a=1", "--context", "a=2"],
        b"x",
    )
    .fails_with(&["given twice"]);
}

fn legacy_values_open_with_a_legacy_key_in_both_formats() {
    let (sb, key) = Sandbox::initialised();
    for (i, key_as_base64) in [false, true].into_iter().enumerate() {
        let (lk_path, lk) = legacy_key(&sb, &format!("legacy{i}.key"), key_as_base64);
        let lk_arg = lk_path.to_str().unwrap();
        for (format, hex_text) in [("base64-iv-ct", false), ("hex-iv-ct", true)] {
            let value = legacy_value(&lk, b"written in 2015", hex_text);
            let args = [
                "open",
                "--legacy-key-file",
                lk_arg,
                "--legacy-format",
                format,
            ];
            let back = sb.kura_stdin(&key, &args, &value).ok();
            assert_eq!(back.stdout, b"written in 2015");
            let mut json_args = vec!["--output", "json"];
            json_args.extend(args);
            let j = sb.kura_stdin(&key, &json_args, &value).ok().json();
            assert_eq!(j["origin"], "legacy");
            assert_eq!(j["plaintext_base64"], STANDARD.encode(b"written in 2015"));
            // Envelopes still open as envelopes with a legacy key given.
            let env = sb.kura_stdin(&key, &["seal"], b"new").ok().stdout;
            let j = sb.kura_stdin(&key, &json_args, &env).ok().json();
            assert_eq!(j["origin"], "envelope");
        }
    }
    // Without a legacy key, a legacy value is refused with a message naming both kinds.
    let (_, lk) = legacy_key(&sb, "legacy-x.key", false);
    let value = legacy_value(&lk, b"old", false);
    sb.kura_stdin(&key, &["open"], &value)
        .fails_with(&["envelope", "legacy"]);
    // Both legacy options go together.
    sb.kura_stdin(&key, &["open", "--legacy-format", "hex-iv-ct"], &value)
        .usage_error(&["--legacy-key-file"]);
}

fn a_wrong_size_legacy_key_is_refused() {
    let (sb, key) = Sandbox::initialised();
    let bad = sb.write_file("bad.key", b"00112233445566778899aabbccddeeff0011\n", 0o400);
    sb.kura_stdin(
        &key,
        &[
            "open",
            "--legacy-key-file",
            bad.to_str().unwrap(),
            "--legacy-format",
            "hex-iv-ct",
        ],
        b"x",
    )
    .fails_with(&["invalid legacy key", "16 bytes"]);
}

fn tampered_input_exits_1() {
    let (sb, key) = Sandbox::initialised();
    let (lk_path, _) = legacy_key(&sb, "legacy.key", false);
    let env = sb.kura_stdin(&key, &["seal"], b"precious").ok().stdout;
    for i in [0usize, 3, 4, 20, 40, 70, env.len() - 1] {
        let mut bad = env.clone();
        bad[i] ^= 0x01;
        let run = sb.kura_stdin(&key, &["open"], &bad);
        assert_eq!(run.code, Some(1), "byte {i}: {}", run.stderr);
        assert!(run.stdout.is_empty());
        if i >= 12 {
            run.fails_with(&[DECRYPT]);
        }
    }
    // A tampered envelope (raw or base64) never falls back to the legacy reader.
    let mut bad = env.clone();
    *bad.last_mut().unwrap() ^= 0x80;
    let text = format!("{}\n", STANDARD.encode(&bad));
    for input in [bad.clone(), text.into_bytes()] {
        sb.kura_stdin(
            &key,
            &[
                "open",
                "--legacy-key-file",
                lk_path.to_str().unwrap(),
                "--legacy-format",
                "base64-iv-ct",
            ],
            &input,
        )
        .fails_with(&[DECRYPT]);
    }
    // Truncated.
    sb.kura_stdin(&key, &["open"], &env[..env.len() - 1])
        .fails_with(&[DECRYPT]);
}

on_both_backends!(
    raw_round_trip_through_stdin_and_stdout,
    base64_round_trip_and_json,
    contexts_must_match,
    legacy_values_open_with_a_legacy_key_in_both_formats,
    a_wrong_size_legacy_key_is_refused,
    tampered_input_exits_1,
);
