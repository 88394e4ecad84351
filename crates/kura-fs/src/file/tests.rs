//! The write paths that work a piece at a time against the cipher applied in one go; page
//! files in the older layout; page writes cut short; deferred page metadata.

use super::*;
use crate::EncryptedFs;

fn fs_at(dir: &Path) -> EncryptedFs {
    EncryptedFs::ephemeral(dir, Method::default()).unwrap()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
        .collect()
}

#[test]
fn ctr_appends_larger_than_a_piece_are_one_keystream() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs_at(dir.path());
    let f = fs.create_with("big", Method::Aes256Ctr).unwrap();
    let mut model = pattern(100, 1);
    f.append(&model).unwrap();
    // A gap of more than a piece, then data of several pieces ending mid-piece.
    let gap = CTR_PIECE + 1000;
    let data = pattern(2 * CTR_PIECE + 777, 2);
    f.write_at(&data, (model.len() + gap) as u64).unwrap();
    model.resize(model.len() + gap, 0);
    model.extend_from_slice(&data);
    f.append(&data[..CTR_PIECE]).unwrap();
    model.extend_from_slice(&data[..CTR_PIECE]);
    assert_eq!(f.len(), model.len() as u64);
    let mut back = vec![0u8; model.len()];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, model);

    let info = f.info().unwrap();
    let key = file_key(fs.keyring(), &info).unwrap();
    let ctr = CtrCipher::new(info.method.ctr().unwrap(), key.expose_secret(), info.salt).unwrap();
    let mut want = model.clone();
    ctr.apply_keystream(0, &mut want).unwrap();
    let disk = std::fs::read(fs.root().join("big")).unwrap();
    assert_eq!(&disk[HEADER..], &want[..]);
}

#[test]
fn page_writes_and_reads_whole_and_in_part() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs_at(dir.path());
    let f = fs.create_with("pages", Method::Aes256GcmPage).unwrap();
    let mut model = pattern(3 * PAGE + 10, 3);
    f.write_at(&model, 0).unwrap();
    // Whole pages, a page in part, and a write across a page boundary.
    for (offset, len, seed) in [
        (PAGE, PAGE, 4u8),
        (0, 2 * PAGE, 5),
        (100, 50, 6),
        (2 * PAGE - 7, 20, 7),
        (3 * PAGE, 10, 8),
    ] {
        let data = pattern(len, seed);
        f.write_at(&data, offset as u64).unwrap();
        model[offset..offset + len].copy_from_slice(&data);
    }
    for (offset, len) in [
        (0, model.len()),
        (PAGE, PAGE),
        (PAGE, 2 * PAGE + 10),
        (5, PAGE),
    ] {
        let mut back = vec![0u8; len];
        f.read_exact_at(&mut back, offset as u64).unwrap();
        assert_eq!(back, model[offset..offset + len], "{offset}+{len}");
    }
    // A damaged unit: a whole-page read leaves no plaintext in the buffer.
    drop(f);
    let path = fs.root().join("pages");
    let mut disk = std::fs::read(&path).unwrap();
    disk[crate::page::data_at(1) as usize + 100] ^= 1;
    std::fs::write(&path, &disk).unwrap();
    let f = fs.open_file("pages").unwrap();
    let mut back = vec![0xeeu8; 2 * PAGE];
    assert!(matches!(f.read_at(&mut back, 0), Err(Error::Decrypt)));
    assert!(back[PAGE..].iter().all(|&b| b == 0));
}

#[test]
fn version_1_page_files_stay_readable_and_writable() {
    use crate::page::UNIT;
    let dir = tempfile::tempdir().unwrap();
    let fs = fs_at(dir.path());
    let info = fs
        .create_with("old", Method::Aes256GcmPage)
        .unwrap()
        .info()
        .unwrap();
    // The file as the version-1 layout wrote it: units after a version-1 header.
    let key = file_key(fs.keyring(), &info).unwrap();
    let c = PageCipher::new(key.expose_secret(), info.salt, Layout::V1).unwrap();
    let mut model = pattern(2 * PAGE + 700, 9);
    let mut disk = header(&info).to_vec();
    disk[4] = 1;
    for (i, page) in model.chunks(PAGE).enumerate() {
        let mut unit = [0u8; UNIT];
        c.seal(i as u64, page, &mut unit).unwrap();
        disk.extend_from_slice(&unit);
    }
    let path = fs.root().join("old");
    std::fs::write(&path, &disk).unwrap();
    let f = fs.open_file("old").unwrap();
    assert_eq!(f.len(), model.len() as u64);
    let mut back = vec![0u8; model.len()];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, model);
    // Written in place, appended to, cut: still version 1, still whole units.
    let data = pattern(PAGE, 10);
    f.write_at(&data, 100).unwrap();
    model[100..100 + PAGE].copy_from_slice(&data);
    f.append(&data).unwrap();
    model.extend_from_slice(&data);
    f.set_len(3 * PAGE as u64 + 5).unwrap();
    model.truncate(3 * PAGE + 5);
    f.sync_data().unwrap();
    drop(f);
    let disk = std::fs::read(&path).unwrap();
    assert_eq!(disk[4], 1);
    assert_eq!(disk.len(), HEADER + 4 * UNIT);
    let f = fs.open_file("old").unwrap();
    let mut back = vec![0u8; model.len()];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, model);
    assert_eq!(f.len(), model.len() as u64);
}

/// The disk as a page-mode write of pages 0..3 killed part-way leaves it: every new
/// entry written, the ciphertext of page 1 only.
#[test]
fn a_page_write_cut_short_reads_as_before_or_after() {
    use crate::page::data_at;
    let dir = tempfile::tempdir().unwrap();
    let fs = fs_at(dir.path());
    let path = fs.root().join("pages");
    let f = fs.create_with("pages", Method::Aes256GcmPage).unwrap();
    let mut want = pattern(3 * PAGE, 1);
    f.write_at(&want, 0).unwrap();
    drop(f);
    let block = |i: u64| data_at(i) as usize..data_at(i) as usize + PAGE;
    // Each round starts from the previous round's torn file, opened afresh: its writes
    // must find which slot of pages 0 and 2 still describes their ciphertext.
    for seed in 2..6u8 {
        let before = std::fs::read(&path).unwrap();
        let new = pattern(3 * PAGE, seed);
        let f = fs.open_file("pages").unwrap();
        f.write_at(&new, 0).unwrap();
        drop(f);
        let mut torn = std::fs::read(&path).unwrap();
        for i in [0, 2] {
            torn[block(i)].copy_from_slice(&before[block(i)]);
        }
        std::fs::write(&path, &torn).unwrap();
        want[PAGE..2 * PAGE].copy_from_slice(&new[PAGE..2 * PAGE]);
        let f = fs.open_file("pages").unwrap();
        let mut back = vec![0u8; 3 * PAGE];
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, want, "round {seed}");
    }
}

/// With page metadata deferred (the redb backend), entries reach the file at the sync,
/// or at the close when there is none.
#[test]
fn deferred_page_metadata_is_written_at_sync_or_close() {
    use crate::page::{META, meta_at};
    let dir = tempfile::tempdir().unwrap();
    let fs = fs_at(dir.path());
    let path = fs.root().join("pages");
    let entry = |i: u64| {
        let disk = std::fs::read(&path).unwrap();
        let at = meta_at(i, 0) as usize;
        disk.get(at..at + META).map(<[u8]>::to_vec)
    };
    let f = fs.create_with("pages", Method::Aes256GcmPage).unwrap();
    f.defer_page_metadata();
    let data = pattern(2 * PAGE, 3);
    f.write_at(&data, 0).unwrap();
    assert_eq!(entry(0), Some(vec![0u8; META]), "deferred");
    assert_ne!(
        entry(1),
        Some(vec![0u8; META]),
        "the last page's entry goes through"
    );
    // Read back from memory before any sync.
    let mut back = vec![0u8; 2 * PAGE];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, data);
    f.sync_data().unwrap();
    assert_ne!(entry(0), Some(vec![0u8; META]), "written by the sync");
    f.write_at(&data[..100], 5000).unwrap();
    drop(f);
    let f = fs.open_file("pages").unwrap();
    let mut back = vec![0u8; 2 * PAGE];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(
        back,
        data.iter()
            .enumerate()
            .map(|(i, b)| if (5000..5100).contains(&i) {
                data[i - 5000]
            } else {
                *b
            })
            .collect::<Vec<_>>()
    );
}

/// A process killed with page metadata deferred: the file still opens with its length,
/// the last page's entry having gone through; other pages written since the last sync
/// may fail to open (a database with two-phase commit never reads them).
#[test]
fn a_crash_with_deferred_metadata_leaves_the_length_readable() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs_at(dir.path());
    let f = fs.create_with("pages", Method::Aes256GcmPage).unwrap();
    f.defer_page_metadata();
    let old = pattern(2 * PAGE, 4);
    f.write_at(&old, 0).unwrap();
    f.sync_data().unwrap();
    let new = pattern(2 * PAGE, 5);
    f.write_at(&new[PAGE..], PAGE as u64).unwrap();
    f.write_at(&new[..PAGE], 0).unwrap();
    f.write_at(b"grown", 3 * PAGE as u64).unwrap();
    // Killed: no sync, no close.
    std::mem::forget(f);
    let f = fs.open_file("pages").unwrap();
    assert_eq!(f.len(), 3 * PAGE as u64 + 5);
    let mut back = vec![0u8; 5];
    f.read_exact_at(&mut back, 3 * PAGE as u64).unwrap();
    assert_eq!(back, b"grown");
    let mut page = vec![0u8; PAGE];
    f.read_exact_at(&mut page, PAGE as u64).unwrap();
    assert!(page == old[PAGE..] || page == new[PAGE..]);
    assert!(matches!(f.read_at(&mut page, 0), Err(Error::Decrypt)));
}

/// Two handles on one page file: what one writes, the other reads, though it had cached
/// the page's metadata before.
#[test]
fn a_second_handle_reads_what_the_first_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let fs = fs_at(dir.path());
    let w = fs.create_with("pages", Method::Aes256GcmPage).unwrap();
    w.write_at(&pattern(2 * PAGE, 1), 0).unwrap();
    let r = fs.open_file("pages").unwrap();
    let mut back = vec![0u8; 2 * PAGE];
    r.read_exact_at(&mut back, 0).unwrap();
    for seed in 2..5u8 {
        let new = pattern(2 * PAGE, seed);
        w.write_at(&new, 0).unwrap();
        r.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, new, "write {seed}");
    }
}

/// Growth writes entries of pages of zeros and no ciphertext; a page written over one
/// empties the zero entry, so damage to the newer entry is an error, never the page
/// read back as zeros. With metadata deferred or not.
#[test]
fn growth_is_entries_of_zeros_that_never_come_back_once_replaced() {
    use crate::page::{self, META, data_at, meta_at};
    let dir = tempfile::tempdir().unwrap();
    let fs = fs_at(dir.path());
    for defer in [false, true] {
        let name = format!("grown-{defer}");
        let path = fs.root().join(&name);
        let f = fs.create_with(&name, Method::Aes256GcmPage).unwrap();
        if defer {
            f.defer_page_metadata();
        }
        let head = pattern(100, 1);
        f.write_at(&head, 0).unwrap();
        let len = 10 * PAGE as u64 + 7;
        f.set_len(len).unwrap();
        f.sync_data().unwrap();
        let mut want = head.clone();
        want.resize(len as usize, 0);
        let mut back = vec![0u8; len as usize];
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, want);
        let disk = std::fs::read(&path).unwrap();
        let entry = |disk: &[u8], i: u64, s: usize| -> [u8; META] {
            disk[meta_at(i, s) as usize..][..META].try_into().unwrap()
        };
        assert!(
            !page::is_zeros(&entry(&disk, 0, 0)),
            "the first page has data"
        );
        for i in 1..=10 {
            let e = entry(&disk, i, 0);
            assert!(page::is_zeros(&e), "page {i}");
            let used = if i == 10 { 7 } else { PAGE as u16 };
            assert_eq!(e[12..14], (used | page::ZEROS).to_be_bytes());
            let at = data_at(i) as usize;
            assert!(
                disk.get(at..at + PAGE)
                    .is_none_or(|b| b.iter().all(|&x| x == 0)),
                "page {i} has no ciphertext"
            );
        }
        // Page 3 written over: its zero entry is gone.
        let data = pattern(PAGE, 2);
        f.write_at(&data, 3 * PAGE as u64).unwrap();
        f.sync_data().unwrap();
        drop(f);
        let mut disk = std::fs::read(&path).unwrap();
        assert!(page::is_unwritten(&entry(&disk, 3, 0)), "defer: {defer}");
        assert!(!page::is_zeros(&entry(&disk, 3, 1)));
        let f = fs.open_file(&name).unwrap();
        assert_eq!(f.len(), len);
        f.read_exact_at(&mut back, 0).unwrap();
        want[3 * PAGE..4 * PAGE].copy_from_slice(&data);
        assert_eq!(back, want);
        drop(f);
        // Every bit of a zero entry, and of the entry that replaced one, is authenticated.
        let pristine = disk.clone();
        for (i, s) in [(5u64, 0usize), (10, 0), (3, 1)] {
            for bit in 0..META * 8 {
                disk.copy_from_slice(&pristine);
                disk[meta_at(i, s) as usize + bit / 8] ^= 1 << (bit % 8);
                std::fs::write(&path, &disk).unwrap();
                let f = fs.open_file(&name);
                let mut page = vec![0u8; PAGE];
                let read = f.and_then(|f| f.read_exact_at(&mut page, i * PAGE as u64));
                // The last page's entry damaged: the file does not open (or is shorter).
                assert!(
                    matches!(read, Err(Error::Decrypt | Error::Io { .. })),
                    "page {i} slot {s} bit {bit}: {read:?}"
                );
            }
        }
        std::fs::write(&path, &pristine).unwrap();
    }
}
