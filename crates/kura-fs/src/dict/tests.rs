//! Unit tests of the file dictionary: the operations, both formats and the conversion
//! between them, compaction, durability bookkeeping, locking, and a model-based property
//! test. Tampering and truncation are in `tests/tamper.rs`.

mod tamper;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use kura_crypto::Key256;
use kura_keys::clock::SystemClock;
use kura_keys::{KeyringSettings, LocalMasterKey};
use kura_store::{Keystore, SqliteKeystore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tempfile::TempDir;

use super::codec::{Frame, HEADER_LEN};
use super::*;

/// A keyring over a new SQLite keystore in its own temporary directory.
pub(super) fn keyring() -> (TempDir, Arc<Keyring>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Keystore> =
        Arc::new(SqliteKeystore::open(&dir.path().join("keystore.db")).unwrap());
    let master =
        Arc::new(LocalMasterKey::new(&Key256::generate().unwrap(), "test".into()).unwrap());
    let settings = KeyringSettings::new(
        kura_keys::config::Method::Aes256Ctr,
        Duration::from_secs(365 * 24 * 3600),
    );
    let k = Keyring::init(store, master, settings, Arc::new(SystemClock)).unwrap();
    (dir, Arc::new(k))
}

/// A data root in a temporary directory and the keyring its dictionary uses.
pub(super) struct Env {
    pub(super) root: TempDir,
    pub(super) keyring: Arc<Keyring>,
    _keys: TempDir,
}

impl Env {
    pub(super) fn new() -> Self {
        let (keys, keyring) = keyring();
        Self::with(keyring, keys)
    }

    /// Another root sharing this keyring.
    pub(super) fn sibling(&self) -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
            keyring: self.keyring.clone(),
            _keys: tempfile::tempdir().unwrap(),
        }
    }

    fn with(keyring: Arc<Keyring>, keys: TempDir) -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
            keyring,
            _keys: keys,
        }
    }

    pub(super) fn dir(&self) -> PathBuf {
        self.root.path().join(".kura-fs")
    }

    pub(super) fn file(&self) -> PathBuf {
        self.dir().join(FILE_NAME)
    }

    pub(super) fn try_open(&self, log: bool) -> Result<Dictionary, Error> {
        Dictionary::open(&self.dir(), self.keyring.clone(), log)
    }

    pub(super) fn open(&self, log: bool) -> Dictionary {
        self.try_open(log).unwrap()
    }

    pub(super) fn bytes(&self) -> Vec<u8> {
        fs::read(self.file()).unwrap()
    }

    pub(super) fn write(&self, bytes: &[u8]) {
        fs::create_dir_all(self.dir()).unwrap();
        fs::write(self.file(), bytes).unwrap();
    }
}

pub(super) fn info(n: u64) -> FileInfo {
    FileInfo {
        method: Method::ALL[(n % 6) as usize],
        key_id: n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        salt: [n as u8; 16],
    }
}

pub(super) fn entries(d: &Dictionary) -> BTreeMap<String, FileInfo> {
    d.iter().map(|(p, i)| (p.to_string(), *i)).collect()
}

/// The byte ranges of the records of a well-formed dictionary file.
pub(super) fn records(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let Frame::Record { end, .. } = codec::frame(bytes, at) else {
            panic!("no record at {at}");
        };
        out.push(at..end);
        at = end;
    }
    out
}

/// The data key ids of the records of a dictionary file.
fn record_key_ids(bytes: &[u8]) -> Vec<u64> {
    records(bytes)
        .into_iter()
        .map(|r| kura_format::envelope::key_id(&bytes[r.start + codec::FRAME_LEN..]).unwrap())
        .collect()
}

fn header_id(bytes: &[u8]) -> [u8; 16] {
    codec::parse_header(bytes).unwrap().1
}

#[test]
fn insert_remove_link_round_trip_and_reopen() {
    for log in [true, false] {
        let env = Env::new();
        let mut d = env.open(log);
        assert!(d.is_empty());
        d.insert("a", info(1)).unwrap();
        d.insert("dir/b", info(2)).unwrap();
        d.insert("a", info(3)).unwrap(); // replaces
        d.link("dir/b", "dir/c").unwrap();
        assert_eq!(d.remove("dir/b").unwrap(), Some(info(2)));
        assert_eq!(d.remove("dir/b").unwrap(), None);
        d.insert("z/y/x", info(4)).unwrap();
        // Linking from a path without an entry takes the entry of `to` away too.
        d.link("nothing", "z/y/x").unwrap();
        assert_eq!(d.get("z/y/x"), None);
        let want: BTreeMap<String, FileInfo> =
            [("a".to_string(), info(3)), ("dir/c".to_string(), info(2))].into();
        assert_eq!(entries(&d), want);
        assert_eq!(d.len(), 2);
        assert_eq!(d.iter().map(|(p, _)| p).collect::<Vec<_>>(), ["a", "dir/c"]);
        drop(d);
        let d = env.open(log);
        assert_eq!(entries(&d), want, "log = {log}");
        assert_eq!(d.get("a"), Some(info(3)));
        assert_eq!(d.get("dir/b"), None);
    }
}

#[test]
fn paths_must_be_normalised_and_relative() {
    let env = Env::new();
    let mut d = env.open(true);
    let long = "x".repeat(codec::MAX_PATH + 1);
    for bad in [
        "", "/abs", "a//b", "a/", "./a", "a/./b", "..", "a/../b", "a\0b", &long,
    ] {
        assert!(
            matches!(d.insert(bad, info(1)), Err(Error::BadPath(_))),
            "{bad:?}"
        );
        assert!(matches!(d.remove(bad), Err(Error::BadPath(_))));
        assert!(matches!(d.link("a", bad), Err(Error::BadPath(_))));
        assert!(matches!(d.link(bad, "a"), Err(Error::BadPath(_))));
    }
    d.insert(&"y".repeat(codec::MAX_PATH), info(1)).unwrap();
    d.insert("ünïcödé/名前 with spaces/.hidden", info(2))
        .unwrap();
    drop(d);
    assert_eq!(env.open(true).len(), 2);
}

#[test]
fn nothing_but_sizes_is_visible_on_disk() {
    let env = Env::new();
    let mut d = env.open(true);
    let salt = *b"SALT-0123456789!";
    let path = "very/secret-file-name.sst";
    d.insert(
        path,
        FileInfo {
            method: Method::Sm4Ctr,
            key_id: 0x1122_3344_5566_7788,
            salt,
        },
    )
    .unwrap();
    d.compact().unwrap();
    d.link(path, "another/secret-name.sst").unwrap();
    let bytes = env.bytes();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"secret"));
    assert!(!contains(&salt));
    assert!(!contains(&0x1122_3344_5566_7788u64.to_be_bytes()));
    assert_eq!(&bytes[..4], b"KRD\x02");
}

#[test]
fn log_mode_appends_one_record_per_change() {
    let env = Env::new();
    let mut d = env.open(true);
    let mut before = env.bytes();
    for n in 0..5 {
        d.insert(&format!("f{n}"), info(n)).unwrap();
        let after = env.bytes();
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "the file is only appended to"
        );
        // A 2-byte path: 120 + 2 bytes, rounded up to 8 (docs/format.md).
        assert_eq!(after.len() - before.len(), 128);
        assert!(matches!(
            codec::frame(&after, before.len()),
            Frame::Record { end, .. } if end == after.len()
        ));
        before = after;
    }
    // Changes that change nothing write nothing.
    let len = d.size_bytes();
    d.insert("f1", info(1)).unwrap();
    d.remove("absent").unwrap();
    d.link("f1", "f1").unwrap();
    d.link("absent", "also-absent").unwrap();
    assert_eq!(d.size_bytes(), len);
    assert_eq!(records(&env.bytes()).len(), 6);
}

#[test]
fn size_bytes_is_the_file_size() {
    for log in [true, false] {
        let env = Env::new();
        let mut d = env.open(log);
        let size = |d: &Dictionary| (d.size_bytes(), fs::metadata(env.file()).unwrap().len());
        let (a, b) = size(&d);
        assert_eq!(a, b);
        assert_eq!(a, 128, "an empty dictionary (docs/format.md)");
        for n in 0..20 {
            d.insert(&format!("p/{}", n % 7), info(n)).unwrap();
            if n % 3 == 0 {
                d.link(&format!("p/{}", n % 7), "q").unwrap();
            }
            if n % 5 == 0 {
                d.remove("q").unwrap();
            }
            if n == 11 {
                d.compact().unwrap();
            }
            let (a, b) = size(&d);
            assert_eq!(a, b);
        }
        drop(d);
        let d = env.open(log);
        let (a, b) = size(&d);
        assert_eq!(a, b);
    }
}

#[test]
fn snapshot_only_format_rewrites_the_whole_file() {
    let env = Env::new();
    let mut d = env.open(false);
    let mut ids = vec![header_id(&env.bytes())];
    for n in 0..4 {
        d.insert(&format!("f{n}"), info(n)).unwrap();
        let bytes = env.bytes();
        assert_eq!(bytes[3], 1, "format version 1");
        assert_eq!(records(&bytes).len(), 1, "one snapshot, no log");
        ids.push(header_id(&bytes));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every rewrite has a new dictionary id");
    drop(d);
    assert_eq!(env.open(false).len(), 4);
}

#[test]
fn downgrade_to_snapshot_only_and_back() {
    let env = Env::new();
    let mut d = env.open(true);
    for n in 0..6 {
        d.insert(&format!("f{n}"), info(n)).unwrap();
    }
    d.link("f1", "g").unwrap();
    let want = entries(&d);
    assert_eq!(records(&env.bytes()).len(), 8);
    drop(d);

    // enable-file-dictionary-log = false: rewritten in format 1 at open.
    let mut d = env.open(false);
    assert_eq!(entries(&d), want);
    let bytes = env.bytes();
    assert_eq!(&bytes[..4], b"KRD\x01");
    assert_eq!(records(&bytes).len(), 1);
    assert_eq!(d.size_bytes(), bytes.len() as u64);
    d.remove("g").unwrap();
    assert_eq!(records(&env.bytes()).len(), 1);
    drop(d);

    // And back: format 2, appending again.
    let mut d = env.open(true);
    assert_eq!(env.bytes()[3], 2);
    assert_eq!(d.len(), 6);
    d.insert("h", info(9)).unwrap();
    assert_eq!(records(&env.bytes()).len(), 2);
    drop(d);
    assert_eq!(env.open(true).get("h"), Some(info(9)));
}

#[test]
fn the_log_is_compacted_when_long() {
    let env = Env::new();
    let mut d = env.open(true);
    let id0 = header_id(&env.bytes());
    // One entry updated over and over: the threshold is the 1000-record floor.
    for n in 0..COMPACT_MIN_LOG_RECORDS {
        d.insert("hot", info(n)).unwrap();
    }
    assert_eq!(d.log_records, COMPACT_MIN_LOG_RECORDS);
    assert_eq!(header_id(&env.bytes()), id0);
    d.insert("hot", info(7777)).unwrap();
    assert_eq!(d.log_records, 0);
    let bytes = env.bytes();
    assert_ne!(header_id(&bytes), id0);
    assert_eq!(records(&bytes).len(), 1);
    assert_eq!(d.size_bytes(), bytes.len() as u64);
    drop(d);
    assert_eq!(env.open(true).get("hot"), Some(info(7777)));

    // Above the floor, the threshold is twice the number of entries.
    let env = Env::new();
    let mut d = env.open(true);
    d.set_min_log_records(1);
    for n in 0..10 {
        d.insert(&format!("f{n}"), info(n)).unwrap();
    }
    for n in 0..10 {
        d.insert("f0", info(100 + n)).unwrap();
    }
    assert_eq!(d.log_records, 20);
    d.insert("f0", info(7)).unwrap();
    assert_eq!(d.log_records, 0);
    assert_eq!(records(&env.bytes()).len(), 1);
    drop(d);
    assert_eq!(env.open(true).len(), 10);
}

#[test]
fn records_survive_data_key_rotation() {
    let env = Env::new();
    let mut d = env.open(true);
    d.insert("a", info(1)).unwrap();
    env.keyring.rotate_data_key().unwrap();
    d.insert("b", info(2)).unwrap();
    env.keyring.rotate_data_key().unwrap();
    d.link("a", "c").unwrap();
    let ids = record_key_ids(&env.bytes());
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], ids[1]);
    assert!(ids[1] != ids[2] && ids[2] != ids[3] && ids[1] != ids[3]);
    let want = entries(&d);
    drop(d);

    let mut d = env.open(true);
    assert_eq!(entries(&d), want);
    // Compaction reseals everything under the active key.
    d.compact().unwrap();
    assert_eq!(
        record_key_ids(&env.bytes()),
        [env.keyring.active_data_key_id()]
    );
    drop(d);
    assert_eq!(entries(&env.open(true)), want);
}

#[test]
fn a_stray_temporary_file_is_removed_at_open() {
    let env = Env::new();
    let mut d = env.open(true);
    d.insert("a", info(1)).unwrap();
    drop(d);
    let stray = env.dir().join(".file.dict.4242-0-123456789.tmp");
    let unrelated = env.dir().join(".something-else.tmp");
    fs::write(&stray, b"half a compaction").unwrap();
    fs::write(&unrelated, b"not ours").unwrap();
    let d = env.open(true);
    assert!(!stray.exists());
    assert!(unrelated.exists());
    assert_eq!(d.get("a"), Some(info(1)));
}

#[test]
fn the_folder_is_created() {
    let (_keys, keyring) = keyring();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data/.kura-fs");
    let mut d = Dictionary::open(&dir, keyring.clone(), true).unwrap();
    d.insert("x", info(1)).unwrap();
    drop(d);
    assert!(dir.join(FILE_NAME).is_file());
    assert_eq!(
        fs::metadata(&dir).unwrap().mode() & 0o777,
        0o700,
        "the folder is private"
    );
    assert_eq!(
        fs::metadata(dir.join(FILE_NAME)).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(Dictionary::open(&dir, keyring, true).unwrap().len(), 1);
}

#[test]
fn one_open_at_a_time() {
    let env = Env::new();
    let mut d = env.open(true);
    let busy = |r: Result<Dictionary, Error>| matches!(r, Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::WouldBlock);
    assert!(busy(env.try_open(true)));
    // The lock moves to the new file with every rewrite.
    d.compact().unwrap();
    assert!(busy(env.try_open(true)));
    d.insert("a", info(1)).unwrap();
    assert!(busy(env.try_open(false)));
    drop(d);
    let mut d = env.open(false);
    d.insert("b", info(2)).unwrap();
    assert!(busy(env.try_open(false)));
    drop(d);
    assert_eq!(env.open(true).len(), 2);
}

#[test]
fn a_failed_append_is_not_applied_and_the_next_change_rewrites() {
    let env = Env::new();
    let mut d = env.open(true);
    d.insert("a", info(1)).unwrap();
    let len = d.size_bytes();
    // A handle that cannot write stands in for a full or failing disk.
    d.file = File::open(env.file()).unwrap();
    assert!(matches!(d.insert("b", info(2)), Err(Error::Io { .. })));
    assert!(d.rewrite_needed);
    assert_eq!(d.get("b"), None);
    assert_eq!(fs::metadata(env.file()).unwrap().len(), len);
    // The next change rewrites the whole file instead of appending after the failure.
    d.insert("c", info(3)).unwrap();
    assert!(!d.rewrite_needed);
    assert_eq!(records(&env.bytes()).len(), 1);
    d.insert("d", info(4)).unwrap();
    assert_eq!(records(&env.bytes()).len(), 2, "appending again");
    drop(d);
    let d = env.open(true);
    assert_eq!(
        d.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        ["a", "c", "d"]
    );
}

#[test]
fn debug_shows_no_entries() {
    let env = Env::new();
    let mut d = env.open(true);
    d.insert("secret-path", info(1)).unwrap();
    let s = format!("{d:?}");
    assert!(!s.contains("secret"), "{s}");
    assert!(s.contains("entries: 1"), "{s}");
}

#[derive(Debug, Clone)]
enum Op {
    Insert(usize, u64),
    Remove(usize),
    Link(usize, usize),
    Compact,
    Reopen,
}

const PATHS: [&str; 5] = ["a", "b/c", "b/d", "e/f/g", "h"];

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        4 => (p.clone(), 0u64..4).prop_map(|(p, n)| Op::Insert(p, n)),
        2 => p.clone().prop_map(Op::Remove),
        3 => (p.clone(), p).prop_map(|(a, b)| Op::Link(a, b)),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

#[test]
fn random_changes_agree_with_a_model() {
    let (_keys, keyring) = keyring();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (any::<bool>(), proptest::collection::vec(op(), 0..40));
    runner
        .run(&strategy, |(log, ops)| {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join(".kura-fs");
            let open = || Dictionary::open(&dir, keyring.clone(), log).unwrap();
            let mut d = open();
            // A low compaction threshold, so compaction happens mid-sequence too.
            d.set_min_log_records(8);
            let mut model = BTreeMap::<String, FileInfo>::new();
            for op in ops {
                match op {
                    Op::Insert(p, n) => {
                        d.insert(PATHS[p], info(n)).unwrap();
                        model.insert(PATHS[p].to_string(), info(n));
                    }
                    Op::Remove(p) => {
                        let got = d.remove(PATHS[p]).unwrap();
                        prop_assert_eq!(got, model.remove(PATHS[p]));
                    }
                    Op::Link(a, b) => {
                        d.link(PATHS[a], PATHS[b]).unwrap();
                        match model.get(PATHS[a]).copied() {
                            Some(i) => model.insert(PATHS[b].to_string(), i),
                            None => model.remove(PATHS[b]),
                        };
                    }
                    Op::Compact => d.compact().unwrap(),
                    Op::Reopen => {
                        drop(d);
                        d = open();
                        d.set_min_log_records(8);
                    }
                }
                prop_assert_eq!(&entries(&d), &model);
                prop_assert_eq!(
                    d.size_bytes(),
                    fs::metadata(dir.join(FILE_NAME)).unwrap().len()
                );
            }
            drop(d);
            let d = open();
            prop_assert_eq!(&entries(&d), &model);
            prop_assert_eq!(d.len(), model.len());
            Ok(())
        })
        .unwrap();
}
