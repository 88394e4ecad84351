#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Reading a data root's dictionary while another handle owns it: `Dictionary::peek` and
//! the per-root gauges `kura server` serves.

use std::sync::Arc;

use kura_fs::{Dictionary, EncryptedFs, META_DIR, Method, Options, root_metrics};
use kura_keys::Keyring;

#[test]
fn a_root_in_use_is_read_without_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let k = Arc::new(Keyring::ephemeral(&dir.path().join("keystore.db")).unwrap());
    let root = dir.path().join("root");
    let fs = EncryptedFs::open(
        &root,
        k.clone(),
        Options {
            method: Method::Aes256Ctr,
            file_dictionary_log: true,
        },
    )
    .unwrap();
    fs.write("a", b"one").unwrap();
    fs.write("d/b", b"two").unwrap();
    let first = k.active_data_key_id();
    k.rotate_data_key().unwrap();
    fs.write("c", b"three").unwrap();
    // The owner still holds the dictionary's lock.
    let peek = Dictionary::peek(&root.join(META_DIR), &k).unwrap().unwrap();
    assert_eq!(peek.entries.len(), 3);
    assert_eq!(peek.entries["a"].key_id, first);
    assert_eq!(peek.size_bytes, fs.dictionary_size());
    let m = root_metrics(&[root.as_path()], &k);
    let label = root.display().to_string();
    for line in [
        format!("kura_fs_root_up{{root=\"{label}\"}} 1"),
        format!("kura_fs_root_encrypted_files{{root=\"{label}\"}} 3"),
        format!("kura_fs_root_files{{root=\"{label}\",data_key=\"{first}\"}} 2"),
        format!(
            "kura_fs_root_files{{root=\"{label}\",data_key=\"{}\"}} 1",
            k.active_data_key_id()
        ),
        format!(
            "kura_fs_root_dictionary_bytes{{root=\"{label}\"}} {}",
            fs.dictionary_size()
        ),
    ] {
        assert!(m.contains(&line), "{line}\n{m}");
    }
    assert!(m.contains("# TYPE kura_fs_root_files gauge"), "{m}");
    // A root without a dictionary has no files; a damaged dictionary is reported down.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(
        Dictionary::peek(&empty.join(META_DIR), &k)
            .unwrap()
            .is_none()
    );
    drop(fs);
    let dict = root.join(META_DIR).join(kura_fs::dict::FILE_NAME);
    let mut raw = std::fs::read(&dict).unwrap();
    raw[0] ^= 1;
    std::fs::write(&dict, raw).unwrap();
    let m = root_metrics(&[root.as_path(), empty.as_path()], &k);
    assert!(
        m.contains(&format!("kura_fs_root_up{{root=\"{label}\"}} 0")),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "kura_fs_root_encrypted_files{{root=\"{}\"}} 0",
            empty.display()
        )),
        "{m}"
    );
}
