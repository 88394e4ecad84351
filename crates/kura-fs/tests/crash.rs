#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! kill -9 at random points of a random workload on an [`EncryptedFs`], checked against a
//! model after every kill.
//!
//! The writer is a child process (this test binary re-run with `KURA_FS_CRASH_CHILD`
//! set). From the seed it is given it draws operations on a few dozen paths: creates of
//! every method (`set_method` before each), appends, writes at an offset (in place for
//! page-mode and plaintext files, at or past the end for CTR files), `set_len`, renames
//! (also over existing files and between hard links of one file), hard links, a hard link
//! onto an existing name (which must fail and change nothing), deletes, data key
//! rotations and reopens (switching `enable-file-dictionary-log` at random, so the
//! dictionary is rewritten in the other format; a run also starts in either format, and
//! in format 2 the log is compacted as it grows; every tenth run finds a log a few records
//! short of compaction). Before an operation it appends `B <n> <operation>` to a log file,
//! after it `E <n> <content hashes of the files it changed>` (and a new file's method,
//! data key and salt), each line fsynced; it also reads back what each operation changed.
//!
//! After each kill the parent reopens the data root (the dictionary must load) and checks
//! it against its model (the state before the run, every completed operation applied):
//! the files present are exactly the model's; each reads back its content with its method,
//! data key and salt; the operation in flight (a `B` line without its `E`) may or may not
//! have happened, a write in flight may be partly done (every byte old or new), and a
//! create in flight may leave the file empty or part-written. A file re-created in flight
//! must have a salt never used before (the CTR rule: its old salt's keystream encrypted
//! the old content at the same offsets), and dictionary entries must name files present
//! and agree with their headers. No error is accepted: a page-mode write in flight leaves
//! every page as before or after it (each page's new entry goes to its free slot before
//! the page is written, `docs/format.md`), never a page that fails to authenticate.
//!
//! `KURA_CRASH_TRIALS` sets the number of kills (default 100), `KURA_CRASH_SEED` replays.
//!
//! At the end, tests that make directly the states behind the bugs this test found (an
//! emptied file given its old salt back, a refused hard link rewriting its target's entry,
//! a re-created hard link leaving its other names a stale entry) and the state a rename
//! killed between the file system and the dictionary now leaves.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kura_crypto::Key256;
use kura_fs::dict::COMPACT_MIN_LOG_RECORDS;
use kura_fs::file::HEADER;
use kura_fs::{Dictionary, EncryptedFs, Error, FileInfo, META_DIR, Method, Options};
use kura_keys::clock::SystemClock;
use kura_keys::config::{DEFAULT_ROTATION_PERIOD, Method as KeyMethod};
use kura_keys::{Keyring, KeyringSettings, LocalMasterKey};
use kura_store::SqliteKeystore;
use kura_testkit::{CrashHarness, Rng};

const TEST: &str = "random_operations_survive_kill_9";
const CHILD: &str = "KURA_FS_CRASH_CHILD";
const CHILD_SEED: &str = "KURA_FS_CRASH_CHILD_SEED";
const CHILD_LOG: &str = "KURA_FS_CRASH_CHILD_LOG";
/// Files are `d<0..DIRS>/f<0..NAMES>`.
const DIRS: u64 = 3;
const NAMES: u64 = 12;
/// Files are recreated rather than grown past this.
const MAX_FILE: usize = 40_000;
/// The longest a child runs before it is killed.
const MAX_DELAY: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Keys and the data root.

fn settings() -> KeyringSettings {
    KeyringSettings::new(KeyMethod::default(), DEFAULT_ROTATION_PERIOD)
}

fn parts(dir: &Path) -> (Arc<SqliteKeystore>, Arc<LocalMasterKey>) {
    let key =
        Key256::from_slice(&std::fs::read(dir.join("master.key")).unwrap(), "test key").unwrap();
    (
        Arc::new(SqliteKeystore::open(&dir.join("keystore.db")).unwrap()),
        Arc::new(LocalMasterKey::new(&key, "test".into()).unwrap()),
    )
}

fn init_keyring(dir: &Path) {
    let key = Key256::generate().unwrap();
    std::fs::write(dir.join("master.key"), key.expose_secret()).unwrap();
    let (store, master) = parts(dir);
    Keyring::init(store, master, settings(), Arc::new(SystemClock)).unwrap();
}

fn keyring(dir: &Path) -> Arc<Keyring> {
    let (store, master) = parts(dir);
    let (k, _) = Keyring::open(store, master, None, settings(), Arc::new(SystemClock)).unwrap();
    Arc::new(k)
}

fn open_fs(dir: &Path, keyring: &Arc<Keyring>, log: bool) -> Result<EncryptedFs, Error> {
    EncryptedFs::open(
        &dir.join("root"),
        keyring.clone(),
        Options {
            method: Method::Plaintext,
            file_dictionary_log: log,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Small helpers.

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex16(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    assert_eq!(s.len(), 32, "{s}");
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// The content hash logged for a file: HKDF-SHA256 extract-and-expand of the bytes.
fn hash(data: &[u8]) -> String {
    let mut out = [0u8; 16];
    kura_crypto::hkdf_sha256(b"kura-fs crash test", data, &[], &mut out).unwrap();
    format!("{}:{}", data.len(), hex(&out))
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

fn fmt_info(i: Option<FileInfo>) -> String {
    match i {
        None => "-".into(),
        Some(i) => format!("{}:{}:{}", i.method.code(), i.key_id, hex(&i.salt)),
    }
}

fn parse_info(s: &str) -> Option<FileInfo> {
    if s == "-" {
        return None;
    }
    let mut p = s.split(':');
    let method = Method::from_code(p.next().unwrap().parse().unwrap()).unwrap();
    let key_id = p.next().unwrap().parse().unwrap();
    let salt = unhex16(p.next().unwrap());
    Some(FileInfo {
        method,
        key_id,
        salt,
    })
}

// ---------------------------------------------------------------------------------------
// Operations.

#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// `set_method(method)`, `create(path)`, write `len` bytes, sync.
    Create {
        path: String,
        method: Method,
        len: usize,
        seed: u64,
    },
    Append {
        path: String,
        len: usize,
        seed: u64,
    },
    Write {
        path: String,
        offset: usize,
        len: usize,
        seed: u64,
    },
    SetLen {
        path: String,
        len: usize,
    },
    Rename {
        from: String,
        to: String,
    },
    Link {
        from: String,
        to: String,
    },
    /// A hard link onto an existing name: refused, nothing changes.
    LinkOntoExisting {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
    Rotate,
    /// Drops the file system and opens it again with `enable-file-dictionary-log = log`.
    Reopen {
        log: bool,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create {
                path,
                method,
                len,
                seed,
            } => write!(f, "create {path} {method} {len} {seed}"),
            Op::Append { path, len, seed } => write!(f, "append {path} {len} {seed}"),
            Op::Write {
                path,
                offset,
                len,
                seed,
            } => write!(f, "write {path} {offset} {len} {seed}"),
            Op::SetLen { path, len } => write!(f, "setlen {path} {len}"),
            Op::Rename { from, to } => write!(f, "rename {from} {to}"),
            Op::Link { from, to } => write!(f, "link {from} {to}"),
            Op::LinkOntoExisting { from, to } => write!(f, "link-onto-existing {from} {to}"),
            Op::Remove { path } => write!(f, "remove {path}"),
            Op::Rotate => write!(f, "rotate"),
            Op::Reopen { log } => write!(f, "reopen {log}"),
        }
    }
}

impl Op {
    fn parse(s: &str) -> Op {
        let w: Vec<&str> = s.split(' ').collect();
        let s = |i: usize| w[i].to_string();
        let n = |i: usize| w[i].parse::<usize>().unwrap();
        let u = |i: usize| w[i].parse::<u64>().unwrap();
        match w[0] {
            "create" => Op::Create {
                path: s(1),
                method: w[2].parse().unwrap(),
                len: n(3),
                seed: u(4),
            },
            "append" => Op::Append {
                path: s(1),
                len: n(2),
                seed: u(3),
            },
            "write" => Op::Write {
                path: s(1),
                offset: n(2),
                len: n(3),
                seed: u(4),
            },
            "setlen" => Op::SetLen {
                path: s(1),
                len: n(2),
            },
            "rename" => Op::Rename {
                from: s(1),
                to: s(2),
            },
            "link" => Op::Link {
                from: s(1),
                to: s(2),
            },
            "link-onto-existing" => Op::LinkOntoExisting {
                from: s(1),
                to: s(2),
            },
            "remove" => Op::Remove { path: s(1) },
            "rotate" => Op::Rotate,
            "reopen" => Op::Reopen {
                log: w[1].parse().unwrap(),
            },
            other => panic!("unknown operation {other}"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Append { .. } => "append",
            Op::Write { .. } => "write",
            Op::SetLen { .. } => "setlen",
            Op::Rename { .. } => "rename",
            Op::Link { .. } => "link",
            Op::LinkOntoExisting { .. } => "link-onto-existing",
            Op::Remove { .. } => "remove",
            Op::Rotate => "rotate",
            Op::Reopen { .. } => "reopen",
        }
    }

    /// The paths whose content the `E` line hashes.
    fn hashed(&self) -> Vec<&str> {
        match self {
            Op::Create { path, .. }
            | Op::Append { path, .. }
            | Op::Write { path, .. }
            | Op::SetLen { path, .. } => vec![path],
            Op::Rename { to, .. } | Op::Link { to, .. } | Op::LinkOntoExisting { to, .. } => {
                vec![to]
            }
            _ => vec![],
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model: paths naming files (hard links share one), POSIX semantics, and `create`
// giving its path a new file (other hard links of the old one keep it).

#[derive(Debug, Clone, PartialEq)]
struct Node {
    data: Vec<u8>,
    method: Method,
    /// `None`: plaintext, or (in a model with an operation in flight) not known yet.
    info: Option<FileInfo>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    paths: BTreeMap<String, u64>,
    nodes: BTreeMap<u64, Node>,
    next: u64,
}

impl Model {
    fn get(&self, p: &str) -> Option<&Node> {
        self.paths.get(p).map(|id| &self.nodes[id])
    }

    /// The paths naming the file `p` names (`p` included).
    fn links(&self, p: &str) -> Vec<String> {
        let Some(id) = self.paths.get(p) else {
            return vec![];
        };
        self.paths
            .iter()
            .filter(|(_, i)| *i == id)
            .map(|(q, _)| q.clone())
            .collect()
    }

    fn node_mut(&mut self, p: &str) -> &mut Node {
        let id = self.paths[p];
        self.nodes.get_mut(&id).unwrap()
    }

    fn gc(&mut self) {
        let live: HashSet<u64> = self.paths.values().copied().collect();
        self.nodes.retain(|id, _| live.contains(id));
    }

    /// Applies `op`; `info` is the new file's for a create.
    fn apply(&mut self, op: &Op, info: Option<FileInfo>) {
        match op {
            Op::Create {
                path,
                method,
                len,
                seed,
            } => {
                let id = self.next;
                self.next += 1;
                self.nodes.insert(
                    id,
                    Node {
                        data: data(*seed, *len),
                        method: *method,
                        info,
                    },
                );
                self.paths.insert(path.clone(), id);
            }
            Op::Append { path, len, seed } => {
                self.node_mut(path).data.extend(data(*seed, *len));
            }
            Op::Write {
                path,
                offset,
                len,
                seed,
            } => {
                let d = &mut self.node_mut(path).data;
                if d.len() < offset + len {
                    d.resize(offset + len, 0);
                }
                d[*offset..offset + len].copy_from_slice(&data(*seed, *len));
            }
            Op::SetLen { path, len } => self.node_mut(path).data.resize(*len, 0),
            Op::Rename { from, to } => {
                // rename(2) between two names of one file does nothing.
                if self.paths.get(from) != self.paths.get(to) {
                    let id = self.paths.remove(from).unwrap();
                    self.paths.insert(to.clone(), id);
                }
            }
            Op::Link { from, to } => {
                let id = self.paths[from];
                self.paths.insert(to.clone(), id);
            }
            Op::Remove { path } => {
                self.paths.remove(path);
            }
            Op::LinkOntoExisting { .. } | Op::Rotate | Op::Reopen { .. } => {}
        }
        self.gc();
    }

    /// The model of what is under the root now, read through `fs`.
    fn read(fs: &EncryptedFs) -> Result<Model, String> {
        let mut m = Model::default();
        let mut by_ino: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        for p in fs.list().map_err(|e| e.to_string())? {
            let md = std::fs::metadata(fs.root().join(&p)).map_err(|e| e.to_string())?;
            let key = (md.dev(), md.ino());
            if let Some(id) = by_ino.get(&key) {
                m.paths.insert(p, *id);
                continue;
            }
            match read_file(fs, &p) {
                Ok(node) => {
                    let id = m.next;
                    m.next += 1;
                    by_ino.insert(key, id);
                    m.nodes.insert(id, node);
                    m.paths.insert(p, id);
                }
                Err(e) => return Err(format!("{p}: {e}")),
            }
        }
        Ok(m)
    }
}

fn read_file(fs: &EncryptedFs, p: &str) -> Result<Node, Error> {
    let f = fs.open_file(p)?;
    let mut data = vec![0u8; usize::try_from(f.len()).unwrap()];
    f.read_exact_at(&mut data, 0)?;
    Ok(Node {
        data,
        method: f.method(),
        info: f.info(),
    })
}

// ---------------------------------------------------------------------------------------
// The child.

fn path(rng: &mut Rng) -> String {
    format!("d{}/f{}", rng.below(DIRS), rng.below(NAMES))
}

fn pick<'a>(rng: &mut Rng, m: &'a Model) -> Option<&'a String> {
    let n = m.paths.len() as u64;
    (n > 0).then(|| m.paths.keys().nth(rng.below(n) as usize).unwrap())
}

fn create(rng: &mut Rng) -> Op {
    let method = Method::ALL[rng.below(Method::ALL.len() as u64) as usize];
    let len = match rng.below(8) {
        0 => 0,
        1 => rng.below(40) as usize,
        _ => rng.below(12_000) as usize,
    };
    Op::Create {
        path: path(rng),
        method,
        len,
        seed: rng.next_u64(),
    }
}

fn choose(rng: &mut Rng, m: &Model) -> Op {
    let roll = rng.below(100);
    if roll < 2 {
        return Op::Rotate;
    }
    if roll < 3 {
        return Op::Reopen {
            log: rng.below(4) != 0,
        };
    }
    let Some(p) = pick(rng, m).cloned() else {
        return create(rng);
    };
    let node = m.get(&p).unwrap();
    let len = node.data.len();
    let ctr = node.method.ctr().is_some();
    match roll {
        3..30 => create(rng),
        _ if len > MAX_FILE && roll < 70 => create(rng),
        30..50 => Op::Append {
            path: p,
            len: 1 + rng.below(6000) as usize,
            seed: rng.next_u64(),
        },
        50..65 => {
            // In place for page-mode and plaintext files; CTR files only from the end.
            let offset = if ctr {
                len + rng.below(3) as usize * rng.below(100) as usize
            } else {
                rng.below(len as u64 + 200) as usize
            };
            Op::Write {
                path: p,
                offset,
                len: 1 + rng.below(9000) as usize,
                seed: rng.next_u64(),
            }
        }
        65..70 => {
            let new = if ctr {
                len + rng.below(3000) as usize
            } else if rng.below(8) == 0 {
                // Growth of several steps (a page file grows 256 pages at a time).
                len + rng.below(3 << 20) as usize
            } else {
                rng.below(len as u64 + 6000) as usize
            };
            Op::SetLen { path: p, len: new }
        }
        70..80 => Op::Rename {
            from: p,
            to: path(rng),
        },
        80..88 => {
            let to = path(rng);
            if m.paths.contains_key(&to) {
                Op::LinkOntoExisting { from: p, to }
            } else {
                Op::Link { from: p, to }
            }
        }
        _ => Op::Remove { path: p },
    }
}

/// Runs `op`; returns the `E` line's extra fields.
fn perform(
    fs: &mut Option<EncryptedFs>,
    dir: &Path,
    keyring: &Arc<Keyring>,
    op: &Op,
) -> Result<String, Error> {
    let efs = fs.as_ref().unwrap();
    match op {
        Op::Create {
            path,
            method,
            len,
            seed,
        } => {
            efs.set_method(*method);
            let f = efs.create(path)?;
            f.write_at(&data(*seed, *len), 0)?;
            f.sync_data()?;
            assert_eq!(f.method(), *method);
            return Ok(format!("info={}", fmt_info(f.info())));
        }
        Op::Append { path, len, seed } => {
            let f = efs.open_file(path)?;
            f.append(&data(*seed, *len))?;
            f.sync_data()?;
        }
        Op::Write {
            path,
            offset,
            len,
            seed,
        } => {
            let f = efs.open_file(path)?;
            f.write_at(&data(*seed, *len), *offset as u64)?;
            f.sync_data()?;
        }
        Op::SetLen { path, len } => {
            let f = efs.open_file(path)?;
            f.set_len(*len as u64)?;
            f.sync_data()?;
        }
        Op::Rename { from, to } => efs.rename(from, to)?,
        Op::Link { from, to } => efs.hard_link(from, to)?,
        Op::LinkOntoExisting { from, to } => {
            assert!(
                efs.hard_link(from, to).is_err(),
                "a hard link onto an existing name succeeded"
            );
            return Ok("refused".into());
        }
        Op::Remove { path } => efs.remove(path)?,
        Op::Rotate => return Ok(format!("key={}", keyring.rotate_data_key()?)),
        Op::Reopen { log } => {
            drop(fs.take());
            *fs = Some(open_fs(dir, keyring, *log)?);
        }
    }
    Ok(String::new())
}

fn line(log: &mut std::fs::File, s: &str) {
    log.write_all(format!("{s}\n").as_bytes()).unwrap();
    log.sync_data().unwrap();
}

/// The child: random operations from `seed` until killed.
fn child(dir: &Path, seed: u64, log: bool) {
    let mut rng = Rng::new(seed);
    let keyring = keyring(dir);
    let mut fs = Some(open_fs(dir, &keyring, log).unwrap());
    let mut model = Model::read(fs.as_ref().unwrap()).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("log"))
        .unwrap();
    for n in 0u64.. {
        let op = choose(&mut rng, &model);
        line(&mut log, &format!("B {n} {op}"));
        let extra = perform(&mut fs, dir, &keyring, &op).unwrap_or_else(|e| panic!("{op}: {e}"));
        let info = extra.strip_prefix("info=").and_then(parse_info);
        model.apply(&op, info);
        // Every file the operation changed reads back as the model says.
        let efs = fs.as_ref().unwrap();
        let mut fields = vec![extra];
        for p in op.hashed() {
            let want = model.get(p).unwrap();
            let got = read_file(efs, p).unwrap_or_else(|e| panic!("{op}: reading {p}: {e}"));
            assert_eq!(got, *want, "{op}: {p} reads back otherwise");
            fields.push(format!("{p}={}", hash(&want.data)));
        }
        if let Op::Remove { path } | Op::Rename { from: path, .. } = &op {
            assert_eq!(
                efs.root().join(path).exists(),
                model.paths.contains_key(path),
                "{op}"
            );
        }
        line(&mut log, &format!("E {n} {}", fields.join(" ")));
    }
}

// ---------------------------------------------------------------------------------------
// The parent's checks.

/// One logged operation: the operation, and its `E` line's fields if it completed.
struct Logged {
    op: Op,
    end: Option<BTreeMap<String, String>>,
}

fn parse_log(text: &str) -> Vec<Logged> {
    let mut out: Vec<Logged> = Vec::new();
    // A line without its newline was being written at the kill: a `B` line not written
    // whole means its operation did not start; an `E` line means it may have completed
    // (treated as in flight).
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    for l in complete.lines() {
        let (tag, rest) = l.split_once(' ').unwrap();
        let (n, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let n: usize = n.parse().unwrap();
        match tag {
            "B" => {
                assert_eq!(n, out.len(), "log out of sequence: {l}");
                if let Some(last) = out.last() {
                    assert!(last.end.is_some(), "operation {} never ended", n - 1);
                }
                out.push(Logged {
                    op: Op::parse(rest),
                    end: None,
                });
            }
            "E" => {
                assert_eq!(n + 1, out.len(), "log out of sequence: {l}");
                out[n].end = Some(
                    rest.split(' ')
                        .filter_map(|f| f.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                );
            }
            _ => panic!("bad log line {l}"),
        }
    }
    out
}

/// The paths whose files `op` may change.
fn affected(op: &Op, m: &Model) -> BTreeSet<String> {
    match op {
        Op::Create { path, .. } | Op::Remove { path } => [path.clone()].into(),
        Op::Append { path, .. } | Op::Write { path, .. } | Op::SetLen { path, .. } => {
            m.links(path).into_iter().collect()
        }
        Op::Rename { from, to } | Op::LinkOntoExisting { from, to } => {
            [from.clone(), to.clone()].into()
        }
        Op::Link { to, .. } => [to.clone()].into(),
        Op::Rotate | Op::Reopen { .. } => BTreeSet::new(),
    }
}

type Got = Option<Result<Node, Error>>;

fn show(g: &Got) -> String {
    match g {
        None => "absent".into(),
        Some(Err(e)) => format!("error: {e}"),
        Some(Ok(n)) => format!(
            "{} bytes ({}), {}, {}",
            n.data.len(),
            hash(&n.data),
            n.method,
            fmt_info(n.info)
        ),
    }
}

fn exactly(want: Option<&Node>, got: &Got) -> bool {
    match (want, got) {
        (None, None) => true,
        (Some(w), Some(Ok(g))) => w == g,
        _ => false,
    }
}

/// Whether `got` is a state the in-flight `op` may have left the file `p` in, short of
/// the states before and after it.
fn partly(op: &Op, p: &str, before: &Model, got: &Got, seen: &HashSet<[u8; 16]>) -> Option<()> {
    let old = before.get(p);
    match (op, got) {
        (
            Op::Create {
                method, len, seed, ..
            },
            Some(Ok(g)),
        ) => {
            // Emptied, then written in part, under a new salt; or emptied before the new
            // header was written: plaintext if the old file had no entry, else given a
            // new salt when opened (with the method of the entry, the old file's).
            let fresh = g.info.is_none_or(|i| !seen.contains(&i.salt));
            let prefix = g.method == *method && data(*seed, *len).starts_with(&g.data);
            let emptied = g.data.is_empty();
            (fresh && (prefix || emptied)).then_some(())
        }
        // The old file was unlinked (it had other names) and the new one not created yet.
        (Op::Create { .. }, None) => (before.links(p).len() > 1).then_some(()),
        (Op::Append { .. } | Op::Write { .. } | Op::SetLen { .. }, Some(Ok(g))) => {
            let old = old?;
            let mut after = before.clone();
            after.apply(op, None);
            let new = &after.get(p)?.data;
            let (lo, hi) = (old.data.len().min(new.len()), old.data.len().max(new.len()));
            let at = |d: &[u8], i: usize| d.get(i).copied().unwrap_or(0);
            let bytes_ok = (lo..=hi).contains(&g.data.len())
                && g.data
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == at(&old.data, i) || *b == at(new, i));
            (bytes_ok && g.method == old.method && g.info == old.info).then_some(())
        }
        _ => None,
    }
}

#[derive(Default)]
struct Stats {
    ops: usize,
    in_flight: BTreeMap<&'static str, usize>,
    partial: usize,
    compactions: usize,
    primed: usize,
    priming: Duration,
    format1_runs: usize,
}

/// Checks the data root after a kill against `before` and the log.
fn check(
    fs: &EncryptedFs,
    before: &Model,
    log: &[Logged],
    seen: &mut HashSet<[u8; 16]>,
    stats: &mut Stats,
) -> Result<(), String> {
    let mut model = before.clone();
    let mut in_flight = None;
    for l in log {
        let Some(end) = &l.end else {
            in_flight = Some(&l.op);
            break;
        };
        let info = end.get("info").map(String::as_str).and_then(parse_info);
        if let Some(i) = info {
            assert!(seen.insert(i.salt), "{}: a salt used before", l.op);
        }
        model.apply(&l.op, info);
        for p in l.op.hashed() {
            let want = model.get(p).map(|n| hash(&n.data));
            assert_eq!(
                want.as_ref(),
                end.get(p),
                "{}: the model disagrees with the child's",
                l.op
            );
        }
        stats.ops += 1;
    }
    let listed: BTreeSet<String> = fs.list().map_err(|e| e.to_string())?.into_iter().collect();
    let touched = in_flight.map(|op| affected(op, &model)).unwrap_or_default();
    let mut after = model.clone();
    if let Some(op) = in_flight {
        *stats.in_flight.entry(op.kind()).or_default() += 1;
        after.apply(op, None);
    }
    let mut all: BTreeSet<String> = model.paths.keys().cloned().collect();
    all.extend(after.paths.keys().cloned());
    if let Some(p) = listed.difference(&all).next() {
        return Err(format!(
            "{p} is present but was never created or was deleted"
        ));
    }
    for p in &all {
        let got: Got = listed.contains(p).then(|| read_file(fs, p));
        let want = model.get(p);
        if exactly(want, &got) {
            continue;
        }
        let Some(op) = in_flight.filter(|_| touched.contains(p)) else {
            return Err(format!(
                "{p}: {} but the model says {}",
                show(&got),
                show(&want.cloned().map(Ok))
            ));
        };
        // The operation in flight done, or done in part.
        let done = match (op, after.get(p), &got) {
            (Op::Create { .. }, _, _) => None,
            (_, a, g) => exactly(a, g).then_some(()),
        };
        match done.or_else(|| partly(op, p, &model, &got, seen)) {
            Some(()) => {
                if !exactly(after.get(p), &got) {
                    stats.partial += 1;
                }
            }
            None => {
                return Err(format!(
                    "{p}: {} with `{op}` in flight; before it: {}; after it: {}",
                    show(&got),
                    show(&want.cloned().map(Ok)),
                    show(&after.get(p).cloned().map(Ok))
                ));
            }
        }
    }
    // Every entry names a file present, and agrees with its header.
    for (p, info) in fs.entries() {
        if !listed.contains(&p) {
            return Err(format!(
                "the dictionary has an entry for {p}, which is absent"
            ));
        }
        let bytes = std::fs::read(fs.root().join(&p)).map_err(|e| e.to_string())?;
        if bytes.len() >= HEADER && bytes[..4] == *b"KRFS" {
            let header = fmt_info(Some(info));
            let read = read_file(fs, &p).ok().and_then(|n| n.info);
            if Some(info) != read {
                return Err(format!(
                    "{p}: the dictionary says {header}, the file {}",
                    fmt_info(read)
                ));
            }
        }
    }
    Ok(())
}

/// Leaves the dictionary a snapshot followed by `n` (even) log records.
fn prime(dir: &Path, n: u64) {
    let mut d = Dictionary::open(&dir.join("root").join(META_DIR), keyring(dir), true).unwrap();
    d.compact().unwrap();
    let info = FileInfo {
        method: Method::Aes256Ctr,
        key_id: 1,
        salt: [0; 16],
    };
    for _ in 0..n / 2 {
        d.insert("priming", info).unwrap();
        d.remove("priming").unwrap();
    }
}

fn dict_id(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("root/.kura-fs/file.dict"))
        .map(|b| b.get(..24).unwrap_or_default().to_vec())
        .unwrap_or_default()
}

#[test]
fn random_operations_survive_kill_9() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let seed = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
        let log = std::env::var(CHILD_LOG).unwrap().parse().unwrap();
        child(&PathBuf::from(dir), seed, log);
        return;
    }
    let trials = kura_testkit::trials_from_env(100).unwrap();
    let mut h = CrashHarness::from_env("kura-fs crash").unwrap();
    let seed = h.seed();
    let start = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_keyring(dir);
    let mut seen = HashSet::new();
    let mut before = {
        let k = keyring(dir);
        Model::read(&open_fs(dir, &k, true).unwrap()).unwrap()
    };
    let mut stats = Stats::default();
    let mut prev_parent_log = true;
    for trial in 0..trials {
        let child_seed = h.rng().next_u64();
        // Format 2 (a log, compacted as it grows) mostly; format 1 (rewritten whole at
        // every change) in a quarter of the runs. The parent reopens in either.
        let primed = trial % 10 == 9;
        let child_log = primed || h.rng().below(4) != 0;
        let parent_log = h.rng().below(4) != 0;
        stats.format1_runs += usize::from(!child_log);
        if primed {
            // A child runs a few dozen operations at most, and format changes rewrite the
            // dictionary: every tenth child finds a log a few records short of compaction.
            let n = 2 * (COMPACT_MIN_LOG_RECORDS / 2 - h.rng().below(5));
            let t = Instant::now();
            prime(dir, n);
            stats.priming += t.elapsed();
            prev_parent_log = true;
            stats.primed += 1;
        }
        std::fs::write(dir.join("log"), b"").unwrap();
        let id_before = dict_id(dir);
        let err = std::fs::File::create(dir.join("child.err")).unwrap();
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, dir)
            .env(CHILD_SEED, child_seed.to_string())
            .env(CHILD_LOG, child_log.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        std::thread::sleep(h.rng().duration_up_to(MAX_DELAY));
        if c.try_wait().unwrap().is_some() {
            panic!(
                "trial {trial} (KURA_CRASH_SEED={seed}): the child exited by itself:\n{}\nlog:\n{}",
                std::fs::read_to_string(dir.join("child.err")).unwrap_or_default(),
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
        }
        c.kill().unwrap();
        c.wait().unwrap();
        // A format-2 child that found a format-2 dictionary rewrote it only to compact
        // it (a long log, or a torn last record dropped at open).
        if child_log && prev_parent_log && dict_id(dir) != id_before {
            stats.compactions += 1;
        }
        prev_parent_log = parent_log;
        let log = parse_log(&std::fs::read_to_string(dir.join("log")).unwrap());
        let k = keyring(dir);
        let fs = open_fs(dir, &k, parent_log).unwrap_or_else(|e| {
            panic!("trial {trial} (KURA_CRASH_SEED={seed}): the data root does not open: {e}")
        });
        check(&fs, &before, &log, &mut seen, &mut stats).unwrap_or_else(|e| {
            let ops: Vec<String> = log.iter().map(|l| l.op.to_string()).collect();
            panic!(
                "trial {trial} (KURA_CRASH_SEED={seed}, child seed {child_seed}): {e}\nlog:\n{}",
                ops.join("\n")
            )
        });
        before = Model::read(&fs).unwrap();
        for n in before.nodes.values() {
            if let Some(i) = n.info {
                seen.insert(i.salt);
            }
        }
        drop(fs);
        if (trial + 1) % 250 == 0 {
            eprintln!(
                "kura-fs crash: {} kills, {} operations, {:.0?}",
                trial + 1,
                stats.ops,
                start.elapsed()
            );
        }
    }
    eprintln!(
        "kura-fs crash: {trials} kills in {:.1?}, {} operations completed, in flight at the kill: {:?}; \
         {} files left part-written; {} format-2 runs compacted the dictionary ({} primed to, in {:.1?}), {} runs were in format 1; \
         {} files, {} bytes at the end",
        start.elapsed(),
        stats.ops,
        stats.in_flight,
        stats.partial,
        stats.compactions,
        stats.primed,
        stats.priming,
        stats.format1_runs,
        before.paths.len(),
        before.nodes.values().map(|n| n.data.len()).sum::<usize>(),
    );
    assert!(stats.ops > trials, "too few operations completed");
}

// ---------------------------------------------------------------------------------------
// States a crash (or a refused operation) leaves, made directly.

fn fresh_root() -> (tempfile::TempDir, Arc<Keyring>) {
    let tmp = tempfile::tempdir().unwrap();
    init_keyring(tmp.path());
    let k = keyring(tmp.path());
    (tmp, k)
}

/// A create killed between truncating the old file and writing the new header leaves an
/// empty file and the old file's entry. Opened, the file gets a new salt (and its entry
/// too), never the old one, whose keystream encrypted the old content at these offsets.
#[test]
fn an_emptied_file_never_reuses_its_old_salt() {
    let (tmp, k) = fresh_root();
    let root = tmp.path().join("root");
    for method in [Method::Aes128Ctr, Method::Sm4Ctr, Method::Aes256GcmPage] {
        let fs = open_fs(tmp.path(), &k, true).unwrap();
        fs.set_method(method);
        fs.write("f", &[7u8; 100]).unwrap();
        let old = fs.info("f").unwrap().unwrap();
        drop(fs);
        std::fs::File::create(root.join("f")).unwrap();
        let fs = open_fs(tmp.path(), &k, true).unwrap();
        let f = fs.open_file("f").unwrap();
        let new = f.info().unwrap();
        assert_eq!(new.method, method);
        assert_ne!(new.salt, old.salt, "{method}");
        assert_eq!(fs.info("f").unwrap(), Some(new));
        f.append(b"new content").unwrap();
        drop(f);
        assert_eq!(fs.read("f").unwrap(), b"new content");
        // A short file with content under an entry is not ours to empty.
        std::fs::write(root.join("f"), b"short").unwrap();
        assert!(matches!(fs.read("f"), Err(Error::Decrypt)), "{method}");
        assert_eq!(std::fs::read(root.join("f")).unwrap(), b"short");
        fs.remove("f").unwrap();
    }
}

/// A hard link onto an existing name fails and leaves that file and its entry alone.
#[test]
fn a_refused_hard_link_leaves_its_target_alone() {
    let (tmp, k) = fresh_root();
    let fs = open_fs(tmp.path(), &k, true).unwrap();
    let plain = vec![b'p'; 100];
    fs.set_method(Method::Aes128Ctr);
    fs.write("enc", b"encrypted").unwrap();
    fs.write("enc2", b"encrypted too").unwrap();
    fs.set_method(Method::Plaintext);
    fs.write("plain", &plain).unwrap();
    let enc2 = fs.info("enc2").unwrap();
    assert!(fs.hard_link("enc", "plain").is_err());
    assert!(fs.hard_link("enc", "enc2").is_err());
    assert!(fs.hard_link("plain", "enc2").is_err());
    assert_eq!(fs.read("plain").unwrap(), plain);
    assert_eq!(fs.info("plain").unwrap(), None);
    assert_eq!(fs.read("enc2").unwrap(), b"encrypted too");
    assert_eq!(fs.info("enc2").unwrap(), enc2);
}

/// Re-creating one name of a hard-linked file, in any method, gives that name a new file
/// and leaves the other names the old one, readable with their entries.
#[test]
fn recreating_a_hard_linked_file_leaves_its_other_names_alone() {
    let (tmp, k) = fresh_root();
    for method in Method::ALL {
        let fs = open_fs(tmp.path(), &k, true).unwrap();
        let old = vec![b'o'; 5000];
        let new = vec![b'n'; 70];
        fs.set_method(Method::Sm4Ctr);
        fs.write("a", &old).unwrap();
        fs.hard_link("a", "b").unwrap();
        let info = fs.info("a").unwrap();
        fs.set_method(method);
        fs.write("b", &new).unwrap();
        assert_eq!(fs.read("b").unwrap(), new, "{method}");
        assert_eq!(fs.read("a").unwrap(), old, "{method}");
        assert_eq!(fs.info("a").unwrap(), info);
        drop(fs);
        let fs = open_fs(tmp.path(), &k, true).unwrap();
        assert_eq!(fs.read("b").unwrap(), new, "{method}");
        assert_eq!(fs.read("a").unwrap(), old, "{method}");
        assert_eq!(fs.open_file("b").unwrap().method(), method);
        fs.remove("a").unwrap();
        fs.remove("b").unwrap();
    }
}

/// A rename killed after the file system's rename, before the dictionary's: the new name
/// holds the renamed file under its old entry (or none), which its header overrules.
#[test]
fn a_rename_cut_before_the_dictionary_reads_right() {
    let (tmp, k) = fresh_root();
    let root = tmp.path().join("root");
    let fs = open_fs(tmp.path(), &k, true).unwrap();
    fs.set_method(Method::Aes192Ctr);
    fs.write("from", b"renamed content, encrypted").unwrap();
    fs.write("enc", b"replaced, encrypted").unwrap();
    fs.set_method(Method::Plaintext);
    fs.write("plain", b"replaced, plaintext, longer than a header")
        .unwrap();
    let info = fs.info("from").unwrap();
    drop(fs);
    for to in ["plain", "enc"] {
        std::fs::copy(root.join("from"), root.join("copy")).unwrap();
        std::fs::rename(root.join("copy"), root.join(to)).unwrap();
        let fs = open_fs(tmp.path(), &k, true).unwrap();
        assert_eq!(fs.read(to).unwrap(), b"renamed content, encrypted", "{to}");
        assert_eq!(fs.info(to).unwrap(), info, "{to}");
    }
}
