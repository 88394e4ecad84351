#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Files of every method against a plaintext model: random writes at random offsets,
//! overwrites (page mode and plaintext), appends, truncations and growth; reopening; the
//! data root moved elsewhere; renames, links and deletes keeping the dictionary right.

use std::path::Path;
use std::sync::Arc;

use kura_fs::page::{self, Layout, META, PAGE};
use kura_fs::{EncryptedFs, Error, Method, Options};
use kura_keys::Keyring;
use proptest::prelude::*;

fn keyring(dir: &Path) -> Arc<Keyring> {
    Arc::new(Keyring::ephemeral(&dir.join("keystore.db")).unwrap())
}

fn fs_at(root: &Path, k: &Arc<Keyring>, method: Method) -> EncryptedFs {
    EncryptedFs::open(
        root,
        k.clone(),
        Options {
            method,
            file_dictionary_log: true,
        },
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    Append(Vec<u8>),
    SetLen(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0u64..3 * PAGE as u64,
            prop::collection::vec(any::<u8>(), 1..2 * PAGE)
        )
            .prop_map(|(offset, data)| Op::Write { offset, data }),
        prop::collection::vec(any::<u8>(), 1..PAGE + 100).prop_map(Op::Append),
        (0u64..4 * PAGE as u64).prop_map(Op::SetLen),
        Just(Op::Reopen),
    ]
}

/// Applies `ops` to a file of `method` and to a `Vec` model; CTR files refuse what would
/// re-encrypt bytes before their end, and the model skips those.
fn check(method: Method, ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let k = keyring(dir.path());
    let root = dir.path().join("root");
    let fs = fs_at(&root, &k, method);
    let mut f = fs.create("data/file").unwrap();
    let mut model: Vec<u8> = Vec::new();
    let ctr = method.ctr().is_some();
    for op in ops {
        match op {
            Op::Write { offset, data } => {
                let r = f.write_at(data, *offset);
                if ctr && (*offset as usize) < model.len() {
                    assert!(matches!(r, Err(Error::CtrOverwrite { .. })), "{r:?}");
                    continue;
                }
                r.unwrap();
                let end = *offset as usize + data.len();
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[*offset as usize..end].copy_from_slice(data);
            }
            Op::Append(data) => {
                f.append(data).unwrap();
                model.extend_from_slice(data);
            }
            Op::SetLen(n) => {
                let r = f.set_len(*n);
                if ctr && (*n as usize) < model.len() {
                    assert!(matches!(r, Err(Error::CtrOverwrite { .. })), "{r:?}");
                    continue;
                }
                r.unwrap();
                model.resize(*n as usize, 0);
            }
            Op::Reopen => {
                f.sync_data().unwrap();
                drop(f);
                f = fs.open_file("data/file").unwrap();
            }
        }
        assert_eq!(f.len(), model.len() as u64);
    }
    let mut all = vec![0u8; model.len()];
    f.read_exact_at(&mut all, 0).unwrap();
    assert_eq!(all, model);
    // Reads at every alignment, and past the end.
    for off in [0, 1, 15, 17, PAGE as u64 - 1, PAGE as u64 + 3] {
        let mut b = vec![0u8; 100];
        let n = f.read_at(&mut b, off).unwrap();
        let want = model.get(off as usize..).unwrap_or(&[]);
        let want = &want[..want.len().min(100)];
        assert_eq!(&b[..n], want);
    }
    drop(f);
    // The on-disk bytes: a header, then the method's layout, never the plaintext.
    let disk = std::fs::read(root.join("data/file")).unwrap();
    match method {
        Method::Plaintext => assert_eq!(disk, model),
        Method::Aes256GcmPage => {
            assert_eq!(
                disk.len() as u64,
                page::stored_len(Layout::V2, model.len() as u64)
            )
        }
        _ => assert_eq!(disk.len(), 32 + model.len()),
    }
    // Reopened from a fresh handle, and with the data root moved.
    let moved = dir.path().join("moved");
    drop(fs);
    std::fs::rename(&root, &moved).unwrap();
    let fs = fs_at(&moved, &k, Method::Plaintext);
    assert_eq!(fs.read("data/file").unwrap(), model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn every_method_agrees_with_the_model(ops in prop::collection::vec(op(), 1..12)) {
        for method in Method::ALL {
            check(method, &ops);
        }
    }
}

#[test]
fn plaintext_files_already_under_the_root_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let k = keyring(dir.path());
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("old")).unwrap();
    std::fs::write(root.join("old/plain.txt"), b"written before encryption").unwrap();
    let fs = fs_at(&root, &k, Method::Aes256Ctr);
    assert_eq!(
        fs.read("old/plain.txt").unwrap(),
        b"written before encryption"
    );
    assert_eq!(fs.info("old/plain.txt").unwrap(), None);
    fs.write("new.txt", b"written after").unwrap();
    assert_eq!(
        fs.info("new.txt").unwrap().unwrap().method,
        Method::Aes256Ctr
    );
    assert_eq!(fs.list().unwrap(), vec!["new.txt", "old/plain.txt"]);
}

#[test]
fn method_changes_and_key_rotation_affect_only_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let k = keyring(dir.path());
    let fs = fs_at(&dir.path().join("root"), &k, Method::Sm4Ctr);
    fs.write("a", b"one").unwrap();
    let a = fs.info("a").unwrap().unwrap();
    k.rotate_data_key().unwrap();
    fs.set_method(Method::Aes256GcmPage);
    fs.write("b", b"two").unwrap();
    let b = fs.info("b").unwrap().unwrap();
    assert_eq!(
        (a.method, b.method),
        (Method::Sm4Ctr, Method::Aes256GcmPage)
    );
    assert_ne!(a.key_id, b.key_id);
    assert_eq!(fs.read("a").unwrap(), b"one");
    assert_eq!(fs.read("b").unwrap(), b"two");
}

#[test]
fn rename_link_and_delete_keep_the_dictionary_right() {
    let dir = tempfile::tempdir().unwrap();
    let k = keyring(dir.path());
    let root = dir.path().join("root");
    let fs = fs_at(&root, &k, Method::Aes128Ctr);
    fs.write("x/a", b"alpha").unwrap();
    fs.write("b", b"beta").unwrap();
    let info_a = fs.info("x/a").unwrap();
    fs.rename("x/a", "y/c").unwrap();
    assert_eq!(fs.info("x/a").unwrap(), None);
    assert_eq!(fs.info("y/c").unwrap(), info_a);
    assert_eq!(fs.read("y/c").unwrap(), b"alpha");
    // Rename over an existing file replaces it.
    fs.rename("y/c", "b").unwrap();
    assert_eq!(fs.read("b").unwrap(), b"alpha");
    fs.hard_link("b", "l").unwrap();
    assert_eq!(fs.read("l").unwrap(), b"alpha");
    assert_eq!(fs.info("l").unwrap(), fs.info("b").unwrap());
    fs.remove("b").unwrap();
    assert_eq!(fs.info("b").unwrap(), None);
    assert_eq!(fs.read("l").unwrap(), b"alpha");
    assert_eq!(fs.list().unwrap(), vec!["l"]);
    // Reopened: the same entries.
    let before = fs.entries();
    drop(fs);
    let fs = fs_at(&root, &k, Method::Plaintext);
    assert_eq!(fs.entries(), before);
    // Paths that are not under the root are refused.
    for bad in ["/etc/passwd", "../x", "a/../../b", "", ".kura-fs/file.dict"] {
        assert!(matches!(fs.create(bad), Err(Error::BadPath(_))), "{bad}");
    }
}

#[test]
fn a_swapped_or_flipped_page_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let k = keyring(dir.path());
    let root = dir.path().join("root");
    let fs = fs_at(&root, &k, Method::Aes256GcmPage);
    fs.write("p", &vec![1u8; 3 * PAGE]).unwrap();
    fs.write("q", &vec![2u8; 3 * PAGE]).unwrap();
    let p = std::fs::read(root.join("p")).unwrap();
    let q = std::fs::read(root.join("q")).unwrap();
    let ct = |i: u64| page::data_at(i) as usize..page::data_at(i) as usize + PAGE;
    // Written once: each page's entry is in slot 0 (slot 1 is zeros).
    let meta = |i: u64| page::meta_at(i, 0) as usize..page::meta_at(i, 0) as usize + META;
    let refused = |s: &[u8], what: &str| {
        std::fs::write(root.join("p"), s).unwrap();
        assert!(matches!(fs.read("p"), Err(Error::Decrypt)), "{what}");
    };
    // Pages 0 and 1 swapped within the file, with their entries or without.
    let mut s = p.clone();
    s[ct(0)].copy_from_slice(&p[ct(1)]);
    s[ct(1)].copy_from_slice(&p[ct(0)]);
    refused(&s, "ciphertexts swapped");
    s[meta(0)].copy_from_slice(&p[meta(1)]);
    s[meta(1)].copy_from_slice(&p[meta(0)]);
    refused(&s, "pages swapped with their entries");
    // A page from another file, with its entry.
    let mut s = p.clone();
    s[ct(1)].copy_from_slice(&q[ct(1)]);
    s[meta(1)].copy_from_slice(&q[meta(1)]);
    refused(&s, "a page of another file");
    // One flipped bit, in a ciphertext or an entry; an entry zeroed.
    for (at, what) in [
        (ct(2).start + 100, "ciphertext"),
        (meta(1).start + 3, "nonce"),
        (meta(2).start + 13, "used"),
        (meta(0).end - 1, "tag"),
    ] {
        let mut s = p.clone();
        s[at] ^= 4;
        refused(&s, what);
    }
    let mut s = p.clone();
    s[meta(1)].fill(0);
    refused(&s, "an entry zeroed");
    std::fs::write(root.join("p"), &p).unwrap();
    assert_eq!(fs.read("p").unwrap(), vec![1u8; 3 * PAGE]);
}

#[test]
fn metrics_count_files_dictionary_bytes_and_operation_times() {
    let dir = tempfile::tempdir().unwrap();
    let k = keyring(dir.path());
    let fs = fs_at(&dir.path().join("root"), &k, Method::Aes256Ctr);
    fs.write("a", b"1").unwrap();
    fs.write("b", b"2").unwrap();
    fs.remove("b").unwrap();
    let m = fs.metrics(None);
    assert!(m.contains("kura_encryption_initialized 1\n"), "{m}");
    assert!(
        m.contains("kura_encryption_data_keys{state=\"active\"} 1\n"),
        "{m}"
    );
    assert!(m.contains("kura_fs_encrypted_files 1\n"), "{m}");
    assert!(
        m.contains(&format!(
            "kura_fs_dictionary_bytes {}\n",
            fs.dictionary_size()
        )),
        "{m}"
    );
    assert!(fs.dictionary_size() > 0);
    // Two creates and a delete: three durable changes timed.
    assert!(
        m.contains("kura_fs_dictionary_operation_duration_seconds_count 3\n"),
        "{m}"
    );
    assert!(
        !m.contains("rotations_total"),
        "no rotator, no rotation counters: {m}"
    );
}
