//! `kura bench fs`: kura-fs against the same work on plain files, in the same run, on the
//! same temporary directory.
//!
//! - **CTR, sequential.** For each CTR method, a file of 256 MiB (quick: 16 MiB) written
//!   through kura-fs `File` in 1 MiB appends then synced (the file created each time, as
//!   `EncryptedFs::create` does: new salt, key derived, header, dictionary entry), and read
//!   back in 1 MiB `read_at`s; against the raw cipher (`kura_crypto::CtrCipher`, built
//!   once) applying its keystream to the same 1 MiB buffers around the same positioned
//!   reads and writes of a plain file, then synced. The ratio isolates kura-fs's own
//!   overhead (goal: 0.9 or more). SM4 is software-only and slow; it is reported as is
//!   (quick: on a 4 MiB file). Before the writes and again before the reads both files are
//!   written a chunk of each in turn, so that neither side holds the memory a virtual
//!   machine serves slower (see [`interleaved`]).
//! - **Page mode.** Random page-aligned 4 KiB reads, then writes, on a 64 MiB (quick:
//!   8 MiB) `aes256-gcm-page` file against the same pattern on a plain file (no goal: every
//!   kura-fs page is opened or sealed with AES-256-GCM under a fresh nonce).
//! - **redb.** 100 000 (quick: 10 000) inserts of 100-byte values under random `u64` keys
//!   in transactions of 1000 with two-phase commit, on a new database; then, reopened
//!   (redb's cache cold), as many random point reads; `RedbBackend` over `EncryptedFs`
//!   (`aes256-gcm-page`) against redb on a plain file (`Database::create`), default cache
//!   (goal: 0.85 or more). When that ran in memory, the inserts run again in the system's
//!   temporary directory on a device (`(disk)` rows), where every commit's syncs reach the
//!   device as they do under a real database.
//!
//! Each pair is measured alternately three times; the best of each is reported. The
//! directory is `$TMPDIR` when set; otherwise the system's temporary directory, or
//! `/dev/shm` instead when that is a RAM file system and the former is not, so the figures
//! are kura-fs's and not a disk's. The report says where it ran.

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use kura_crypto::CtrCipher;
use kura_fs::{EncryptedFs, Method, RedbBackend};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::Serialize;

use crate::cli::{BenchArgs, Cli};
use crate::cmd::bench::{Row, rate, table};
use crate::output::emit;

const MIB: usize = 1 << 20;
/// Bytes per append and per read of the sequential runs.
const CHUNK: usize = MIB;
const PAGE: usize = 4096;
const VALUE_LEN: usize = 100;
const TXN: u64 = 1000;
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");

#[derive(Serialize)]
struct Report {
    quick: bool,
    /// The directory the files were in.
    dir: String,
    /// Its file system type (from /proc/mounts; "unknown" when not found).
    filesystem: String,
    /// Whether that file system keeps files in memory (tmpfs, ramfs).
    in_memory: bool,
    sequential_mib: usize,
    sm4_sequential_mib: usize,
    page_file_mib: usize,
    redb_records: u64,
    /// Where the `(disk)` rows ran, when the rest ran in memory and a device was found.
    disk: Option<String>,
    results: Vec<Row>,
}

/// Sizes of one run.
struct Sizes {
    seq: usize,
    /// The sequential file of SM4, software-only and slow.
    sm4_seq: usize,
    page_file: usize,
    records: u64,
    /// Time per measurement of the page-mode operations.
    per: Duration,
}

/// The file system type of the mount holding `path`, from /proc/mounts.
fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_), Some(at), Some(ty)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let at = at.replace("\\040", " ");
        let depth = Path::new(&at).components().count();
        if path.starts_with(&at) && best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((depth, ty.to_string()));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, t)| t)
}

fn in_memory(fs_type: &str) -> bool {
    matches!(fs_type, "tmpfs" | "ramfs")
}

/// The temporary directory to run in, and its file system type.
fn workdir() -> Result<(tempfile::TempDir, String)> {
    let explicit = std::env::var_os("TMPDIR").is_some_and(|t| !t.is_empty());
    let tmp = std::env::temp_dir();
    let ty = fs_type(&tmp);
    if !explicit && !in_memory(&ty) {
        let shm = Path::new("/dev/shm");
        let shm_ty = fs_type(shm);
        if in_memory(&shm_ty)
            && let Ok(d) = tempfile::Builder::new()
                .prefix("kura-bench-fs")
                .tempdir_in(shm)
        {
            return Ok((d, shm_ty));
        }
    }
    Ok((temp_in(&tmp)?, ty))
}

/// A new temporary directory in `dir`.
fn temp_in(dir: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("kura-bench-fs")
        .tempdir_in(dir)
        .with_context(|| format!("a temporary directory in {}", dir.display()))
}

/// In `dir`: a page-mode data root under a throwaway keystore, and a folder for the plain
/// files to compare with.
fn bench_root(dir: &Path) -> Result<(EncryptedFs, PathBuf)> {
    let fs = EncryptedFs::ephemeral(dir, Method::Aes256GcmPage)?;
    let plain_dir = dir.join("plain");
    std::fs::create_dir(&plain_dir)?;
    Ok((fs, plain_dir))
}

/// A small deterministic generator (xorshift64*), the same sequence on both sides.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A bijection on `u64` (splitmix64's finaliser): record `i`'s key.
fn key_of(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn value_of(i: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let n = i.to_le_bytes();
    for (j, b) in v.iter_mut().enumerate() {
        *b = n[j % 8] ^ (j as u8);
    }
    v
}

/// Runs `kura` and `raw` (each returning a rate) alternately three times; the best of each.
fn best_of_3(
    mut kura: impl FnMut() -> Result<f64>,
    mut raw: impl FnMut() -> Result<f64>,
) -> Result<(f64, f64)> {
    let (mut k, mut r) = (0f64, 0f64);
    for _ in 0..3 {
        k = k.max(kura()?);
        r = r.max(raw()?);
    }
    Ok((k, r))
}

fn row(name: &'static str, unit: &'static str, (kura, raw): (f64, f64)) -> Row {
    Row {
        name,
        kura,
        raw,
        unit,
        ratio: kura / raw,
    }
}

fn open_plain(path: &Path, truncate: bool) -> Result<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// MiB/s of `size` bytes done since `start`.
fn mib_per_s(size: usize, start: Instant) -> f64 {
    size as f64 / MIB as f64 / start.elapsed().as_secs_f64()
}

/// Writes both sequential files anew, a chunk of each in turn, so that both sit in memory
/// handed out alike. Memory is not all equally fast (on the virtual machine of
/// docs/design.md, of five plain files written one after the other on tmpfs the first
/// read at half the speed of the others), and a write pass mostly gets back the pages its
/// own file has just freed, so without this one side could keep the slow memory.
fn interleaved(
    fs: &EncryptedFs,
    method: Method,
    plain_path: &Path,
    raw: &CtrCipher,
    data: &[u8],
    chunks: usize,
) -> Result<()> {
    let f = fs.create_with("seq", method)?;
    let p = open_plain(plain_path, true)?;
    let mut buf = data.to_vec();
    for i in 0..chunks {
        let at = (i * CHUNK) as u64;
        f.append(data)?;
        buf.copy_from_slice(data);
        raw.apply_keystream(at, &mut buf)?;
        p.write_all_at(&buf, at)?;
    }
    f.sync_data()?;
    p.sync_data()?;
    Ok(())
}

/// Sequential write and read of each CTR method.
fn ctr(fs: &EncryptedFs, plain_dir: &Path, s: &Sizes, rows: &mut Vec<Row>) -> Result<()> {
    let mut data = vec![0u8; CHUNK];
    kura_crypto::rng::fill(&mut data)?;
    let plain_path = plain_dir.join("seq");
    for (method, write, read) in [
        (
            Method::Aes128Ctr,
            "aes128-ctr seq write",
            "aes128-ctr seq read",
        ),
        (
            Method::Aes192Ctr,
            "aes192-ctr seq write",
            "aes192-ctr seq read",
        ),
        (
            Method::Aes256Ctr,
            "aes256-ctr seq write",
            "aes256-ctr seq read",
        ),
        (Method::Sm4Ctr, "sm4-ctr seq write", "sm4-ctr seq read"),
    ] {
        let ctr = method.ctr().ok_or_else(|| anyhow!("{method} is not CTR"))?;
        let size = if method == Method::Sm4Ctr {
            s.sm4_seq
        } else {
            s.seq
        };
        let chunks = size / CHUNK;
        let mut key = vec![0u8; ctr.key_len()];
        kura_crypto::rng::fill(&mut key)?;
        let mut iv = [0u8; 16];
        kura_crypto::rng::fill(&mut iv)?;
        let raw = CtrCipher::new(ctr, &key, iv)?;
        let (mut kbuf, mut buf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);

        interleaved(fs, method, &plain_path, &raw, &data, chunks)?;
        let w = best_of_3(
            || {
                let start = Instant::now();
                let f = fs.create_with("seq", method)?;
                for _ in 0..chunks {
                    f.append(&data)?;
                }
                f.sync_data()?;
                drop(f);
                Ok(mib_per_s(size, start))
            },
            || {
                let start = Instant::now();
                let f = open_plain(&plain_path, true)?;
                for i in 0..chunks {
                    let at = (i * CHUNK) as u64;
                    buf.copy_from_slice(&data);
                    raw.apply_keystream(at, &mut buf)?;
                    f.write_all_at(&buf, at)?;
                }
                f.sync_data()?;
                drop(f);
                Ok(mib_per_s(size, start))
            },
        )?;
        rows.push(row(write, "MiB/s", w));

        interleaved(fs, method, &plain_path, &raw, &data, chunks)?;
        let r = best_of_3(
            || {
                let start = Instant::now();
                let f = fs.open_file("seq")?;
                for i in 0..chunks {
                    let n = f.read_at(&mut kbuf, (i * CHUNK) as u64)?;
                    black_box(&kbuf[..n]);
                }
                let rate = mib_per_s(size, start);
                if kbuf != data {
                    bail!("{method}: kura-fs read back other bytes than it wrote");
                }
                Ok(rate)
            },
            || {
                let start = Instant::now();
                let f = open_plain(&plain_path, false)?;
                for i in 0..chunks {
                    let at = (i * CHUNK) as u64;
                    f.read_exact_at(&mut buf, at)?;
                    raw.apply_keystream(at, &mut buf)?;
                    black_box(&buf);
                }
                let rate = mib_per_s(size, start);
                if buf != data {
                    bail!("{method}: the raw cipher read back other bytes than it wrote");
                }
                Ok(rate)
            },
        )?;
        rows.push(row(read, "MiB/s", r));
    }
    fs.remove("seq")?;
    std::fs::remove_file(&plain_path)?;
    Ok(())
}

/// Random 4 KiB reads and writes, page mode against a plain file.
fn pages(fs: &EncryptedFs, plain_dir: &Path, s: &Sizes, rows: &mut Vec<Row>) -> Result<()> {
    let mut data = vec![0u8; CHUNK];
    kura_crypto::rng::fill(&mut data)?;
    let kf = fs.create_with("pages", Method::Aes256GcmPage)?;
    let plain_path = plain_dir.join("pages");
    let pf = open_plain(&plain_path, true)?;
    for i in 0..s.page_file / CHUNK {
        let at = (i * CHUNK) as u64;
        kf.write_at(&data, at)?;
        pf.write_all_at(&data, at)?;
    }
    kf.sync_data()?;
    pf.sync_data()?;
    let n = (s.page_file / PAGE) as u64;
    let (mut kbuf, mut buf) = ([0u8; PAGE], [0u8; PAGE]);
    let (mut kr, mut pr) = (Rng(0x1234_5678), Rng(0x1234_5678));

    let r = best_of_3(
        || {
            rate(s.per, || {
                kf.read_exact_at(&mut kbuf, kr.below(n) * PAGE as u64)?;
                black_box(&kbuf);
                Ok(())
            })
        },
        || {
            rate(s.per, || {
                pf.read_exact_at(&mut buf, pr.below(n) * PAGE as u64)?;
                black_box(&buf);
                Ok(())
            })
        },
    )?;
    rows.push(row("page random read 4 KiB", "ops/s", r));

    let page = &data[..PAGE];
    let w = best_of_3(
        || {
            rate(s.per, || {
                kf.write_at(page, kr.below(n) * PAGE as u64)?;
                Ok(())
            })
        },
        || {
            rate(s.per, || {
                pf.write_all_at(page, pr.below(n) * PAGE as u64)?;
                Ok(())
            })
        },
    )?;
    rows.push(row("page random write 4 KiB", "ops/s", w));

    kf.read_exact_at(&mut buf, 0)?;
    if buf != page {
        bail!("page mode: the first page reads back other bytes than were written");
    }
    drop((kf, pf));
    fs.remove("pages")?;
    std::fs::remove_file(&plain_path)?;
    Ok(())
}

/// Inserts `records` in transactions of [`TXN`]; returns inserts per second.
fn redb_insert(db: &Database, records: u64) -> Result<f64> {
    let start = Instant::now();
    let mut i = 0;
    while i < records {
        let mut tx = db.begin_write()?;
        tx.set_two_phase_commit(true);
        {
            let mut t = tx.open_table(RECORDS)?;
            for j in i..(i + TXN).min(records) {
                t.insert(key_of(j), &value_of(j)[..])?;
            }
        }
        tx.commit()?;
        i += TXN;
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

/// `records` random point reads; returns reads per second.
fn redb_get(db: &Database, records: u64) -> Result<f64> {
    let mut rng = Rng(0x9abc_def0);
    let start = Instant::now();
    let tx = db.begin_read()?;
    let t = tx.open_table(RECORDS)?;
    for _ in 0..records {
        let i = rng.below(records);
        let v = t
            .get(key_of(i))?
            .ok_or_else(|| anyhow!("redb: record {i} is missing"))?;
        if v.value() != value_of(i) {
            bail!("redb: record {i} holds another value");
        }
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

/// The rows of a redb run: inserts, and random gets (`None`: not measured).
type RedbRows = (&'static str, Option<&'static str>);
const REDB_MEMORY: RedbRows = ("redb insert 100 B", Some("redb random get"));
const REDB_DISK: RedbRows = ("redb insert 100 B (disk)", None);

/// The redb inserts again in the system's temporary directory when it is on a device;
/// returns where they ran.
fn redb_on_disk(s: &Sizes, rows: &mut Vec<Row>) -> Result<Option<String>> {
    let tmp = std::env::temp_dir();
    let ty = fs_type(&tmp);
    if in_memory(&ty) {
        return Ok(None);
    }
    let dir = temp_in(&tmp)?;
    let (fs, plain_dir) = bench_root(dir.path())?;
    redb(&fs, &plain_dir, s, rows, REDB_DISK)?;
    drop(fs);
    let at = format!("{} ({ty})", dir.path().display());
    dir.close()?;
    Ok(Some(at))
}

/// redb on kura-fs against redb on a plain file.
fn redb(
    fs: &EncryptedFs,
    plain_dir: &Path,
    s: &Sizes,
    rows: &mut Vec<Row>,
    (insert_row, get_row): RedbRows,
) -> Result<()> {
    const DB: &str = "bench.redb";
    let kura_head = fs.root().join(format!("{DB}.kura-head"));
    let plain_path = plain_dir.join(DB);
    let remove_kura = || -> Result<()> {
        if fs.root().join(DB).exists() {
            fs.remove(DB)?;
        }
        if kura_head.exists() {
            std::fs::remove_file(&kura_head)?;
        }
        Ok(())
    };
    let kura_db = || -> Result<Database> {
        Ok(Database::builder().create_with_backend(RedbBackend::open(fs, DB)?)?)
    };
    let (mut ins, mut get) = ((0f64, 0f64), (0f64, 0f64));
    for _ in 0..3 {
        // Both removed first, so both grow into the same freed memory.
        remove_kura()?;
        if plain_path.exists() {
            std::fs::remove_file(&plain_path)?;
        }
        let k_ins = redb_insert(&kura_db()?, s.records)?;
        let k_get = match get_row {
            Some(_) => redb_get(&kura_db()?, s.records)?,
            None => 0.0,
        };
        let r_ins = redb_insert(&Database::create(&plain_path)?, s.records)?;
        let r_get = match get_row {
            Some(_) => redb_get(&Database::create(&plain_path)?, s.records)?,
            None => 0.0,
        };

        ins = (ins.0.max(k_ins), ins.1.max(r_ins));
        get = (get.0.max(k_get), get.1.max(r_get));
    }
    rows.push(row(insert_row, "ops/s", ins));
    if let Some(name) = get_row {
        rows.push(row(name, "ops/s", get));
    }
    remove_kura()?;
    std::fs::remove_file(&plain_path)?;
    Ok(())
}

pub(crate) fn run(cli: &Cli, a: &BenchArgs) -> Result<()> {
    let s = if a.quick {
        Sizes {
            seq: 16 * MIB,
            sm4_seq: 4 * MIB,
            page_file: 8 * MIB,
            records: 10_000,
            per: Duration::from_millis(40),
        }
    } else {
        Sizes {
            seq: 256 * MIB,
            sm4_seq: 256 * MIB,
            page_file: 64 * MIB,
            records: 100_000,
            per: Duration::from_millis(400),
        }
    };
    let (dir, filesystem) = workdir()?;
    let where_ = format!(
        "{} ({filesystem}{})",
        dir.path().display(),
        if in_memory(&filesystem) {
            ""
        } else {
            ": not in memory, figures include the device"
        }
    );

    let (fs, plain_dir) = bench_root(dir.path())?;

    let mut results = Vec::new();
    ctr(&fs, &plain_dir, &s, &mut results)?;
    pages(&fs, &plain_dir, &s, &mut results)?;
    redb(&fs, &plain_dir, &s, &mut results, REDB_MEMORY)?;
    drop(fs);
    let disk = if in_memory(&filesystem) {
        redb_on_disk(&s, &mut results)?
    } else {
        None
    };

    let report = Report {
        quick: a.quick,
        dir: dir.path().display().to_string(),
        in_memory: in_memory(&filesystem),
        filesystem,
        sequential_mib: s.seq / MIB,
        sm4_sequential_mib: s.sm4_seq / MIB,
        page_file_mib: s.page_file / MIB,
        redb_records: s.records,
        disk,
        results,
    };
    let text = format!(
        "in {where_}\n\
         CTR: a {} MiB file (SM4: {} MiB) in 1 MiB appends + sync, read in 1 MiB reads; raw: \
         the same keystream and positioned I/O on a plain file (goal: ratio >= 0.9)\n\
         page: random 4 KiB reads and writes on a {} MiB aes256-gcm-page file; raw: a plain file\n\
         redb: {} inserts of {VALUE_LEN} B in transactions of {TXN} (two-phase commit), then \
         as many random gets after reopening; raw: redb on a plain file (goal: ratio >= 0.85)\n{}{}",
        report.sequential_mib,
        report.sm4_sequential_mib,
        report.page_file_mib,
        report.redb_records,
        match &report.disk {
            Some(d) =>
                format!("redb (disk): the inserts again in {d}, syncs reaching the device\n"),
            None => String::new(),
        },
        table(&report.results, "raw")
    );
    dir.close()?;
    emit(cli, &report, || text)
}
