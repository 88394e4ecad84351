#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The most verbose logging never shows a secret: with `KURA_LOG=trace`, a keystore whose
//! master key is a KMS key (another kura) is initialised and used, and the log holds no
//! KMS request body (an Encrypt request carries the KEK in plaintext).

mod server;

use std::process::Command;

use server::{REGION, Server};

#[test]
fn trace_logging_shows_no_kms_request_body() {
    let kms = Server::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = rt.block_on(async {
        let c = server::kms_client(&kms.endpoint, &kms.access_key_id, &kms.secret).await;
        c.create_key()
            .send()
            .await
            .unwrap()
            .key_metadata()
            .unwrap()
            .key_id()
            .to_string()
    });
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
        for v in kura_testkit::KURA_VARS {
            c.env_remove(v);
        }
        kura_testkit::with_aws_credentials(&mut c, &kms.access_key_id, &kms.secret, REGION);
        c.env("KURA_LOG", "trace")
            .env("KURA_DATA_DIR", dir.path().join("data"))
            .env("KURA_AWS_CMK", &key)
            .env("KURA_KMS_ENDPOINT", &kms.endpoint)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {log}");
        log
    };
    let mut log = run(&["init"], b"");
    log.push_str(&run(&["encrypt"], b"hello"));
    log.push_str(&run(&["rotate", "kek"], b""));
    // Trace logging is on (kura's own events show) …
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    // … but no request body of the KMS: Encrypt's holds the KEK, Decrypt's the wrapped one.
    for needle in [
        "Plaintext",
        "CiphertextBlob",
        "EncryptionContext",
        "kura:kek-id",
    ] {
        assert!(!log.contains(needle), "the log shows {needle}:\n{log}");
    }
}
