#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `-o` naming a device writes to it and never replaces it.

use std::os::unix::fs::FileTypeExt;
use std::process::Command;

#[test]
fn decrypt_to_dev_null_verifies_without_replacing_it() {
    let dir = tempfile::tempdir().unwrap();
    let kura = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
        for v in kura_testkit::KURA_VARS {
            c.env_remove(v);
        }
        c.current_dir(dir.path())
            .env("KURA_DATA_DIR", dir.path().join("data"));
        c.env("KURA_MASTER_KEY_FILE", dir.path().join("k.key"));
        c.args(args).output().unwrap()
    };
    assert!(kura(&["keygen", "--out", "k.key"]).status.success());
    assert!(kura(&["init"]).status.success());
    std::fs::write(dir.path().join("p"), vec![7u8; 200_000]).unwrap();
    assert!(kura(&["encrypt", "p", "-o", "c"]).status.success());
    let o = kura(&["decrypt", "c", "-o", "/dev/null"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let mut bad = std::fs::read(dir.path().join("c")).unwrap();
    bad[1000] ^= 1;
    std::fs::write(dir.path().join("bad"), bad).unwrap();
    let o = kura(&["decrypt", "bad", "-o", "/dev/null"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("decryption failed"));
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}
