#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A redb database on kura-fs whose file is tampered with: pages (with their metadata
//! entries) swapped within the file, bits flipped in every page or its current entry, pages taken from
//! another database, the file cut short. Each time the database fails to open or a read
//! fails with an error, or (when the damage is in a page redb does not read, such as a
//! free page) every row reads back right: never a panic, never a wrong or missing row.

use std::collections::BTreeMap;

use kura_fs::file::HEADER;
use kura_fs::page::{self, META, PAGE};
use kura_fs::{EncryptedFs, Method, RedbBackend};
use kura_testkit::Rng;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
const ROWS: u64 = 1500;

fn value(k: u64) -> Vec<u8> {
    Rng::new(k).bytes(20 + (k * 37 % 200) as usize)
}

/// A database `name` holding rows `0..ROWS`, written in a few transactions.
fn build(fs: &EncryptedFs, name: &str) {
    let db = Database::builder()
        .create_with_backend(RedbBackend::open(fs, name).unwrap())
        .unwrap();
    for chunk in 0..3 {
        let mut tx = db.begin_write().unwrap();
        tx.set_two_phase_commit(true);
        {
            let mut t = tx.open_table(T).unwrap();
            for k in (chunk * ROWS / 3)..((chunk + 1) * ROWS / 3) {
                t.insert(k, value(k).as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

/// What opening and reading the whole database gave.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Every row, right.
    Intact,
    /// An error, at open or at a read.
    Refused(String),
}

fn read_all(fs: &EncryptedFs, name: &str) -> Outcome {
    let backend = match RedbBackend::open(fs, name) {
        Ok(b) => b,
        Err(e) => return Outcome::Refused(format!("backend: {e}")),
    };
    let db = match Database::builder().create_with_backend(backend) {
        Ok(db) => db,
        Err(e) => return Outcome::Refused(format!("open: {e}")),
    };
    let tx = match db.begin_read() {
        Ok(tx) => tx,
        Err(e) => return Outcome::Refused(format!("begin_read: {e}")),
    };
    let table = match tx.open_table(T) {
        Ok(t) => t,
        Err(e) => return Outcome::Refused(format!("open_table: {e}")),
    };
    let iter = match table.iter() {
        Ok(i) => i,
        Err(e) => return Outcome::Refused(format!("iter: {e}")),
    };
    let mut got = BTreeMap::new();
    for e in iter {
        match e {
            Ok((k, v)) => {
                got.insert(k.value(), v.value().to_vec());
            }
            Err(e) => return Outcome::Refused(format!("read: {e}")),
        }
    }
    // A row read back must be right, and none may be missing: damage that is not an
    // error must not change the data.
    assert_eq!(got.len() as u64, ROWS, "rows missing without an error");
    for (k, v) in got {
        assert_eq!(v, value(k), "row {k} reads wrong without an error");
    }
    Outcome::Intact
}

struct Fixture {
    _dir: tempfile::TempDir,
    fs: EncryptedFs,
    path: std::path::PathBuf,
    pristine: Vec<u8>,
    head: std::path::PathBuf,
    pristine_head: Vec<u8>,
    other: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fs = EncryptedFs::ephemeral(dir.path(), Method::Aes256GcmPage).unwrap();
        build(&fs, "db.redb");
        build(&fs, "other.redb");
        let root = dir.path().join("root");
        let path = root.join("db.redb");
        let head = root.join("db.redb.kura-head");
        let f = Fixture {
            pristine: std::fs::read(&path).unwrap(),
            pristine_head: std::fs::read(&head).unwrap(),
            other: std::fs::read(root.join("other.redb")).unwrap(),
            _dir: dir,
            fs,
            path,
            head,
        };
        let n = page::pages_in(f.pristine.len() as u64);
        assert_eq!(page::data_at(n - 1) as usize + PAGE, f.pristine.len());
        assert_eq!(f.check(f.pristine.clone()), Outcome::Intact);
        f
    }

    fn pages(&self) -> usize {
        page::pages_in(self.pristine.len() as u64) as usize
    }

    /// Reads the database from `bytes` (and the pristine head), then restores it.
    fn check(&self, bytes: Vec<u8>) -> Outcome {
        std::fs::write(&self.path, bytes).unwrap();
        std::fs::write(&self.head, &self.pristine_head).unwrap();
        let out = read_all(&self.fs, "db.redb");
        std::fs::write(&self.path, &self.pristine).unwrap();
        out
    }
}

/// The ciphertext of page `i`.
fn ct(i: usize) -> std::ops::Range<usize> {
    let at = page::data_at(i as u64) as usize;
    at..at + PAGE
}

/// Both entry slots of page `i`.
fn slots(i: usize) -> std::ops::Range<usize> {
    let at = page::meta_at(i as u64, 0) as usize;
    at..at + 2 * META
}

/// The entry of page `i` in `bytes` with the newer generation (the one describing its
/// ciphertext in a database closed cleanly).
fn meta(bytes: &[u8], i: usize) -> std::ops::Range<usize> {
    let entry = |s: usize| -> [u8; META] {
        let at = page::meta_at(i as u64, s) as usize;
        bytes[at..at + META].try_into().unwrap()
    };
    let (a, b) = (entry(0), entry(1));
    let slot = usize::from(
        page::is_unwritten(&a)
            || (!page::is_unwritten(&b) && page::newer(page::generation(&b), page::generation(&a))),
    );
    let at = page::meta_at(i as u64, slot) as usize;
    at..at + META
}

/// Page `i` of `to` (ciphertext and entry slots) replaced by page `j` of `from`.
fn put(to: &mut [u8], i: usize, from: &[u8], j: usize) {
    to[ct(i)].copy_from_slice(&from[ct(j)]);
    to[slots(i)].copy_from_slice(&from[slots(j)]);
}

#[test]
fn tampered_database_files_are_refused_never_misread() {
    let f = Fixture::new();
    let n = f.pages();
    assert!(
        n >= 20,
        "a database of {n} pages is too small to tamper with"
    );
    let mut refused = BTreeMap::<&str, (usize, usize)>::new();
    let mut tally = |kind: &'static str, o: Outcome| {
        let e = refused.entry(kind).or_default();
        e.1 += 1;
        if matches!(o, Outcome::Refused(_)) {
            e.0 += 1;
        }
    };

    // One bit flipped in every page, at a position cycling through the entry's nonce,
    // `used`, reserved bytes and tag, and the ciphertext.
    for i in 0..n {
        let mut b = f.pristine.clone();
        let m = meta(&f.pristine, i);
        let at = [
            m.start,
            m.start + 12,
            m.start + 13,
            m.start + 15,
            m.start + 16,
            m.end - 1,
            ct(i).start,
            ct(i).start + 2000,
        ][i % 8];
        b[at] ^= 1 << (i % 8);
        tally("flip", f.check(b));
    }
    // Pages swapped: neighbours, and pairs far apart.
    let mut rng = Rng::new(0x5eed);
    let pairs: Vec<(usize, usize)> = (1..n)
        .map(|i| (i - 1, i))
        .chain((0..n).map(|_| (rng.below(n as u64) as usize, rng.below(n as u64) as usize)))
        .filter(|(a, b)| a != b)
        .collect();
    for (a, c) in pairs {
        let mut b = f.pristine.clone();
        put(&mut b, a, &f.pristine, c);
        put(&mut b, c, &f.pristine, a);
        tally("swap", f.check(b));
    }
    // A page from another database at the same index (same key hierarchy, other salt).
    for i in 0..n.min(page::pages_in(f.other.len() as u64) as usize) {
        let mut b = f.pristine.clone();
        put(&mut b, i, &f.other, i);
        tally("foreign", f.check(b));
    }
    // The header of another database: its salt, so its key.
    let mut b = f.pristine.clone();
    b[..HEADER].copy_from_slice(&f.other[..HEADER]);
    tally("header", f.check(b));
    // Cut inside a page (a torn tail, left out), or to half the file.
    for len in [
        f.pristine.len() - 1,
        f.pristine.len() - PAGE / 2,
        page::data_at(n as u64 / 2) as usize,
    ] {
        tally("cut", f.check(f.pristine[..len].to_vec()));
    }

    eprintln!("refused / tried: {refused:?}");
    for (kind, (r, tried)) in &refused {
        assert!(*r > 0, "no {kind} damage was refused ({tried} tried)");
    }
    // Most pages are live: most damage must be seen.
    let (r, tried) = refused["flip"];
    assert!(
        r * 4 >= tried * 3,
        "only {r} of {tried} flipped pages refused"
    );
    // The pristine database is still whole.
    assert_eq!(f.check(f.pristine.clone()), Outcome::Intact);
}
