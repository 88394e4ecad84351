//! `kura bench`: kura's record envelope and stream format against the raw primitive they
//! are built on, measured in the same run on the same buffers.
//!
//! "Raw" is one pre-built aws-lc-rs AES-256-GCM key sealing (or opening) the same buffer
//! with counter nonces and nothing else per call. "kura" is the real path a caller takes:
//! a keyring on a keystore, the active data key looked up and its rotation checked, a
//! fresh per-record key derived from a random nonce, the envelope written. Each pair is
//! measured alternately three times; the best of each is reported.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use kura_crypto::Key256;
use kura_format::{EncryptionContext, envelope, stream};
use kura_keys::Keyring;
use serde::Serialize;

use crate::cli::{BenchArgs, BenchMode, Cli};
use crate::output::emit;

/// One line of a report: kura's figure, the baseline's, and kura's divided by the baseline's.
#[derive(Serialize)]
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) kura: f64,
    pub(crate) raw: f64,
    pub(crate) unit: &'static str,
    pub(crate) ratio: f64,
}

#[derive(Serialize)]
struct Report {
    quick: bool,
    results: Vec<Row>,
}

const MIB: usize = 1 << 20;

/// Runs `f` repeatedly for `d`; returns calls per second.
pub(crate) fn rate(d: Duration, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm up caches and lazy state
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..8 {
            f()?;
        }
        n += 8;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn raw_key() -> Result<LessSafeKey> {
    let k = Key256::generate()?;
    let u = UnboundKey::new(&AES_256_GCM, k.expose_secret())
        .map_err(|_| anyhow!("AES-256-GCM key setup"))?;
    Ok(LessSafeKey::new(u))
}

fn counter_nonce(c: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&c.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

struct Bench {
    per: Duration,
    rows: Vec<Row>,
}

impl Bench {
    /// Measures `kura` and `raw` alternately three times; `scale` turns calls/s into `unit`.
    fn pair(
        &mut self,
        name: &'static str,
        unit: &'static str,
        scale: f64,
        mut kura: impl FnMut() -> Result<()>,
        mut raw: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        let (mut k, mut r) = (0f64, 0f64);
        for _ in 0..3 {
            k = k.max(rate(self.per, &mut kura)?);
            r = r.max(rate(self.per, &mut raw)?);
        }
        self.rows.push(Row {
            name,
            kura: k * scale,
            raw: r * scale,
            unit,
            ratio: k / r,
        });
        Ok(())
    }
}

/// The text table of `rows`; `raw` names the baseline's column.
pub(crate) fn table(rows: &[Row], raw: &str) -> String {
    let mut t = format!(
        "{:<24} {:>14} {:>14} {:>7}  {}\n",
        "benchmark", "kura", raw, "ratio", "unit"
    );
    for r in rows {
        t.push_str(&format!(
            "{:<24} {:>14.1} {:>14.1} {:>7.3}  {}\n",
            r.name, r.kura, r.raw, r.ratio, r.unit
        ));
    }
    t
}

pub(crate) fn run(cli: &Cli, a: &BenchArgs) -> Result<()> {
    match a.mode {
        BenchMode::Server => return crate::cmd::bench_server::run(cli, a),
        BenchMode::Migrate => return crate::cmd::migrate::bench(cli, a),
        BenchMode::Fs => return crate::cmd::bench_fs::run(cli, a),
        BenchMode::Formats => {}
    }
    let dir = tempfile::tempdir()?;
    let keyring = Keyring::ephemeral(&dir.path().join("keystore.db"))?;
    let ctx = EncryptionContext::new();
    let mut b = Bench {
        per: Duration::from_millis(if a.quick { 60 } else { 400 }),
        rows: Vec::new(),
    };

    for (size, name_seal, name_open, unit, scale) in [
        (
            256,
            "envelope seal 256 B",
            "envelope open 256 B",
            "ops/s",
            1.0,
        ),
        (
            MIB,
            "envelope seal 1 MiB",
            "envelope open 1 MiB",
            "MiB/s",
            1.0,
        ),
    ] {
        // Both sides write into a buffer allocated once, as a caller with its own buffers
        // (database pages, network frames) does.
        let pt = vec![0x5au8; size];
        let mut env = vec![0u8; envelope::sealed_len(size)];
        let raw = raw_key()?;
        let mut buf = pt.clone();
        let mut out = pt.clone();
        let mut c = 0u64;
        b.pair(
            name_seal,
            unit,
            scale,
            || {
                black_box(keyring.seal_into(&ctx, &pt, &mut env)?);
                Ok(())
            },
            || {
                c += 1;
                let tag = raw
                    .seal_in_place_separate_tag(counter_nonce(c), Aad::empty(), &mut buf)
                    .map_err(|_| anyhow!("seal"))?;
                let _ = black_box(tag);
                Ok(())
            },
        )?;

        keyring.seal_into(&ctx, &pt, &mut env)?;
        let mut ct = pt.clone();
        let tag = raw
            .seal_in_place_separate_tag(counter_nonce(0), Aad::empty(), &mut ct)
            .map_err(|_| anyhow!("seal"))?;
        b.pair(
            name_open,
            unit,
            scale,
            || {
                black_box(keyring.open_envelope_into(&ctx, &env, &mut out)?);
                Ok(())
            },
            || {
                raw.open_separate_gather(
                    counter_nonce(0),
                    Aad::empty(),
                    &ct,
                    tag.as_ref(),
                    &mut buf,
                )
                .map_err(|_| anyhow!("open"))?;
                black_box(&buf);
                Ok(())
            },
        )?;
    }

    // Streams: 64 MiB in 64 KiB chunks.
    let size = 64 * MIB;
    let chunk = 64 * 1024;
    let data = vec![0xa5u8; size];
    let raw = raw_key()?;
    let mut buf = data.clone();
    let mut c = 0u64;
    let scale = (size / MIB) as f64;
    b.pair(
        "stream encrypt 64 MiB",
        "MiB/s",
        scale,
        || {
            stream::encrypt(&data[..], io::sink(), keyring.stream_sealer(&ctx)?)?;
            Ok(())
        },
        || {
            for part in buf.chunks_mut(chunk) {
                c += 1;
                let tag = raw
                    .seal_in_place_separate_tag(counter_nonce(c), Aad::from(&[0u8; 80][..]), part)
                    .map_err(|_| anyhow!("seal"))?;
                let _ = black_box(tag);
            }
            Ok(())
        },
    )?;

    let mut ct = Vec::with_capacity(size + size / 1000 + 128);
    stream::encrypt(&data[..], &mut ct, keyring.stream_sealer(&ctx)?)?;
    let mut raw_ct = data.clone();
    let mut tags = Vec::new();
    for (i, part) in raw_ct.chunks_mut(chunk).enumerate() {
        let tag = raw
            .seal_in_place_separate_tag(counter_nonce(i as u64), Aad::from(&[0u8; 80][..]), part)
            .map_err(|_| anyhow!("seal"))?;
        tags.push(tag);
    }
    b.pair(
        "stream decrypt 64 MiB",
        "MiB/s",
        scale,
        || {
            stream::decrypt(&ct[..], io::sink(), |h| keyring.stream_opener(h, &ctx))?;
            Ok(())
        },
        || {
            for (i, (part, src)) in buf.chunks_mut(chunk).zip(raw_ct.chunks(chunk)).enumerate() {
                part.copy_from_slice(src);
                raw.open_in_place_separate_tag(
                    counter_nonce(i as u64),
                    Aad::from(&[0u8; 80][..]),
                    tags[i].as_ref(),
                    part,
                )
                .map_err(|_| anyhow!("open"))?;
            }
            black_box(&buf);
            Ok(())
        },
    )?;

    let report = Report {
        quick: a.quick,
        results: b.rows,
    };
    emit(cli, &report, || table(&report.results, "raw AES-GCM"))
}
