//! `kura backup` and `kura restore`: a keystore to a backup file and back (Tableau's
//! rules: only wrapped keys leave; a restore brings the data keys back decrypt-only under a
//! new KEK, with a new active data key per keyring).

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kura_keys::backup::{self, BackupSummary, RestoreReport};
use kura_keys::clock::{Clock, SystemClock};
use kura_store::atomic::AtomicFile;
use serde::Serialize;

use crate::cli::{BackupArgs, Cli, RestoreArgs, S3Args, S3Sse};
use crate::env;
use crate::output::emit;
use s3::{S3, S3Location, Sse};

mod s3;

/// Where a backup is written to or read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// A local file.
    File(PathBuf),
    /// An S3 object.
    S3(S3Location),
}

impl Location {
    fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            bail!("the backup location is empty; give a file path or s3://BUCKET/KEY");
        }
        match s.strip_prefix("s3://") {
            Some(rest) => Ok(Self::S3(S3Location::parse(rest)?)),
            None => Ok(Self::File(PathBuf::from(s))),
        }
    }

    /// Refuses S3 options for a file.
    fn check_options(&self, a: &S3Args, sse: bool) -> Result<()> {
        if let Self::File(p) = self {
            let given = [
                (a.endpoint.is_some(), "--s3-endpoint"),
                (a.region.is_some(), "--s3-region"),
                (sse, "--s3-sse and --s3-sse-kms-key-id"),
            ];
            if let Some((_, flag)) = given.iter().find(|(g, _)| *g) {
                bail!(
                    "{flag} applies to s3:// locations only, and {} is a file",
                    p.display()
                );
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::S3(l) => write!(f, "{l}"),
        }
    }
}

/// What `kura backup` prints.
#[derive(Serialize)]
struct BackedUp {
    location: String,
    bytes: usize,
    /// S3 server-side encryption requested for the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_side_encryption: Option<&'static str>,
    #[serde(flatten)]
    summary: BackupSummary,
}

pub(crate) fn backup(cli: &Cli, a: &BackupArgs) -> Result<()> {
    let to = Location::parse(&a.out)?;
    to.check_options(&a.s3, a.s3_sse.is_some() || a.s3_sse_kms_key_id.is_some())?;
    if a.s3_sse_kms_key_id.is_some() && a.s3_sse != Some(S3Sse::AwsKms) {
        bail!("--s3-sse-kms-key-id names the key of --s3-sse aws:kms; add --s3-sse aws:kms");
    }
    // Checked before anything is read, so a mistake costs nothing.
    let s3 = match &to {
        Location::File(path) => {
            if !a.force && path.exists() {
                bail!(
                    "{} already exists; choose another --out, or add --force to replace it",
                    path.display()
                );
            }
            None
        }
        Location::S3(l) => Some(S3::new(l.clone(), &a.s3)?),
    };
    let s = env::settings(cli)?;
    let store = env::store(&s, false)?;
    let (master, previous, _) = env::master_keys_in(&s, &*store)?;
    let (bytes, summary) =
        backup::create(&*store, &*master, previous.as_deref(), SystemClock.now())
            .with_context(|| format!("cannot back up {}", env::keystore_location(&s)))?;
    let len = bytes.len();
    match (&to, s3) {
        (Location::S3(_), Some(client)) => {
            let sse = Sse {
                algorithm: a.s3_sse,
                kms_key_id: a.s3_sse_kms_key_id.clone(),
            };
            client.put(bytes, &sse, a.force)?;
        }
        (Location::File(path), _) => write_file(path, &bytes, a.force)?,
        (Location::S3(l), None) => bail!("no S3 client for {l}"),
    }
    let out = BackedUp {
        location: to.to_string(),
        bytes: len,
        server_side_encryption: a.s3_sse.map(|s| match s {
            S3Sse::AwsKms => "aws:kms",
            S3Sse::Aes256 => "AES256",
        }),
        summary,
    };
    emit(cli, &out, || backed_up_text(&out))
}

fn backed_up_text(o: &BackedUp) -> String {
    let s = &o.summary;
    let d = &s.data_keys;
    format!(
        "backed up the keystore to {}{} ({} bytes, format version {})\n\
         master key: {} ({}); restoring needs this master key\n\
         KEKs:       {} (active {})\n\
         data keys:  {} active, {} decrypt-only, {} destroyed (keyrings: {})\n\
         objects:    {}{}\n\
         generation: {}, made {}",
        o.location,
        o.server_side_encryption
            .map(|a| format!(" (server-side encryption {a})"))
            .unwrap_or_default(),
        o.bytes,
        s.format_version,
        s.master_key_id,
        s.master_key_source,
        s.keks,
        s.kek_id,
        d.active,
        d.decrypt_only,
        d.destroyed,
        s.keyrings.join(", "),
        s.objects,
        kinds(s),
        s.generation,
        s.created_at,
    )
}

fn kinds(s: &BackupSummary) -> String {
    if s.object_kinds.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = s
        .object_kinds
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    format!(" ({})", parts.join(", "))
}

/// Writes `bytes` to `path` atomically with mode 0600; without `force`, never replaces a
/// file (checked again at the final link, so a file created meanwhile is not lost).
fn write_file(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    write_atomically(path, bytes, force).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} already exists; choose another --out, or add --force to replace it",
            path.display()
        ),
        _ => anyhow::Error::new(e).context(format!("cannot write the backup {}", path.display())),
    })
}

fn write_atomically(path: &Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path, 0o600)?;
    f.file()?.write_all(bytes)?;
    if replace {
        f.commit()
    } else {
        f.commit_no_clobber()
    }
}

/// Writes the backup of a keystore about to be replaced to a new file in `dir`; returns
/// its path.
fn write_safety_backup(dir: &Path, bytes: &[u8], now: i64) -> Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for n in 1..=100 {
        let p = dir.join(format!("keystore-before-restore-{now}-{n}.krb"));
        match write_atomically(&p, bytes, false) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot write the backup of the keystore to {}, so it is not replaced",
                    p.display()
                )));
            }
        }
    }
    bail!(
        "{} holds 100 keystore backups made this second; the keystore is not replaced",
        dir.display()
    )
}

/// What `kura restore` prints.
#[derive(Serialize)]
struct Restored {
    from: String,
    keystore: String,
    /// The backup of the replaced keystore (`--force`), if one was made.
    previous_keystore_backup: Option<String>,
    #[serde(flatten)]
    report: RestoreReport,
}

pub(crate) fn restore(cli: &Cli, a: &RestoreArgs) -> Result<()> {
    let from = Location::parse(&a.from)?;
    from.check_options(&a.s3, false)?;
    let bytes = match &from {
        Location::File(path) => std::fs::read(path)
            .with_context(|| format!("cannot read the backup {}", path.display()))?,
        Location::S3(l) => S3::new(l.clone(), &a.s3)?.get()?,
    };
    let s = env::settings(cli)?;
    // With no master key configured, a keystore being replaced (--force) may hold the one
    // `kura set-mode` recorded; nothing is created before the backup is verified.
    let existing = match s.master_key {
        None => match env::store(&s, false) {
            Ok(store) => Some(store),
            // No keystore yet: nothing recorded.
            Err(e)
                if matches!(
                    e.downcast_ref::<kura_store::Error>(),
                    Some(kura_store::Error::NotInitialized { .. })
                ) =>
            {
                None
            }
            Err(e) => return Err(e),
        },
        Some(_) => None,
    };
    let (master, previous) = match existing {
        Some(store) => {
            let (m, p, _) = env::master_keys_in(&s, &*store)?;
            (m, p)
        }
        None => env::master_keys(&s)?,
    };
    let verified = backup::open(&bytes, &*master, previous.as_deref())
        .with_context(|| format!("cannot restore {from}"))?;
    let location = env::keystore_location(&s);
    let store = env::store(&s, true)?;
    let now = SystemClock.now();
    let (expected, safety) = match store.generation()? {
        None => (None, None),
        Some(_) if !a.force => bail!(
            "the keystore at {location} is already initialised; a restore replaces every key in it. \
             Add --force to replace it (its current contents are backed up to a file first), \
             or restore into an empty --data-dir"
        ),
        Some(_) => {
            // A running server could write objects between the safety backup and the
            // replacement, and they would be lost: none may be live.
            let live = crate::nodes::live_nodes(&*store)?;
            if !live.is_empty() {
                bail!(
                    "{} kura server node(s) use the keystore at {location} (see `kura nodes`); \
                     stop them before restoring over it, so that nothing they write is lost",
                    live.len()
                );
            }
            // The backup of what is replaced, made under the keys that now wrap it.
            let (old, current) = backup::create(&*store, &*master, previous.as_deref(), now)
                .with_context(|| {
                    format!(
                        "cannot back up the keystore at {location} before replacing it, so it is not replaced"
                    )
                })?;
            let p = write_safety_backup(&s.data_dir, &old, now)?;
            (Some(current.generation), Some(p))
        }
    };
    let report = backup::restore(&*store, &verified, &*master, s.method, expected, now)
        .with_context(|| format!("cannot restore {from} into {location}"))?;
    let out = Restored {
        from: from.to_string(),
        keystore: location,
        previous_keystore_backup: safety.map(|p| p.display().to_string()),
        report,
    };
    emit(cli, &out, || restored_text(&out))
}

fn restored_text(o: &Restored) -> String {
    let r = &o.report;
    let b = &r.backup;
    let mut t = String::new();
    if let Some(p) = &o.previous_keystore_backup {
        t.push_str(&format!(
            "the keystore's previous contents are backed up to {p}\n"
        ));
    }
    let actives: Vec<String> = r
        .new_active
        .iter()
        .map(|n| format!("{} ({})", n.id, n.keyring))
        .collect();
    t.push_str(&format!(
        "restored {} (made {}, generation {}) into {}\n\
         KEK:             {} (new, wrapped by master key {}); the backup's KEK {} is not carried over\n\
         data keys:       {} decrypt-only, {} destroyed\n\
         new active keys: {}\n\
         objects:         {}{}\n\
         Everything encrypted before the backup decrypts; new data is encrypted under the new keys. \
         Run `kura reencrypt` to move old data to them.",
        o.from,
        b.created_at,
        b.generation,
        o.keystore,
        r.kek_id,
        r.master_key_id,
        b.kek_id,
        r.decrypt_only,
        r.destroyed,
        if actives.is_empty() {
            "none".to_string()
        } else {
            actives.join(", ")
        },
        r.objects,
        kinds(b),
    ));
    t
}
