//! From global options to settings, a keystore and a keyring.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use kura_keys::clock::SystemClock;
use kura_keys::config::{self, Overrides, Settings};
use kura_keys::master_key::{MasterKeyDescriptor, descriptor};
use kura_keys::{Keyring, KeyringSettings, MasterKey, OpenReport, master_key};
use kura_store::{PgKeystore, SqliteKeystore, Store};

use crate::cli::Cli;

/// Resolves flags, environment and configuration file.
pub(crate) fn settings(cli: &Cli) -> Result<Settings> {
    SettingsSource::new(cli, None).resolve()
}

/// What settings are resolved from, kept by a long-running process to resolve them again
/// (`kura server` on SIGHUP reads its configuration file and key files anew).
#[derive(Debug, Clone)]
pub(crate) struct SettingsSource {
    config: Option<PathBuf>,
    flags: Overrides,
}

impl SettingsSource {
    pub(crate) fn new(cli: &Cli, database: Option<&str>) -> Self {
        Self {
            // An empty KURA_CONFIG counts as unset, like every other KURA_* variable.
            config: cli.config.clone().filter(|p| !p.as_os_str().is_empty()),
            flags: Overrides {
                data_dir: cli.data_dir.clone(),
                database_url: database
                    .map(str::to_string)
                    .or_else(|| cli.database_url.clone()),
                master_key_file: cli.master_key_file.clone(),
                previous_master_key_file: cli.previous_master_key_file.clone(),
            },
        }
    }

    /// Reads the configuration file (if any) and resolves the settings.
    pub(crate) fn resolve(&self) -> Result<Settings> {
        let text =
            match &self.config {
                Some(p) => Some(std::fs::read_to_string(p).with_context(|| {
                    format!("cannot read the configuration file {}", p.display())
                })?),
                None => None,
            };
        let file = self.config.as_deref().zip(text.as_deref());
        let s = config::resolve(file, &|k| std::env::var(k).ok(), &self.flags)?;
        kura_keys::redact::set_enabled(s.redact_info_log);
        Ok(s)
    }
}

/// A master key shared with the keyring.
pub(crate) type SharedMasterKey = Arc<dyn MasterKey>;

/// The current master key the settings name (required).
pub(crate) fn master_key(s: &Settings) -> Result<SharedMasterKey> {
    Ok(master_key::load(s.master_key.as_ref())?)
}

/// The master keys the settings name: the current one (required) and the previous one.
pub(crate) fn master_keys(s: &Settings) -> Result<(SharedMasterKey, Option<SharedMasterKey>)> {
    let master = master_key::load(s.master_key.as_ref())?;
    let previous = match &s.previous_master_key {
        Some(spec) => Some(master_key::load(Some(spec)).context("the previous master key")?),
        None => None,
    };
    Ok((master, previous))
}

/// The master keys to open `store` with, and the descriptor of the current one: the
/// configured ones or, when no master key is configured, the ones `kura set-mode` recorded
/// in the keystore (the recorded previous one only if the KEK is not wrapped by the current),
/// if the settings opt in to that record (`use-recorded-master-key`); without the opt-in a
/// recorded mode is an error that names it, and nothing is loaded from the record.
pub(crate) fn master_keys_in(
    s: &Settings,
    store: &dyn Store,
) -> Result<(
    SharedMasterKey,
    Option<SharedMasterKey>,
    Option<MasterKeyDescriptor>,
)> {
    if let Some(spec) = &s.master_key {
        let (master, previous) = master_keys(s)?;
        return Ok((master, previous, Some(MasterKeyDescriptor::from_spec(spec))));
    }
    let env = |v: &str| std::env::var(v).ok().filter(|v| !v.is_empty());
    let trust = descriptor::RecordTrust::of(s);
    match descriptor::load_recorded(store, s.previous_master_key.as_ref(), trust, &env)? {
        Some(r) => Ok((r.current, r.previous, Some(r.recorded.current))),
        None => {
            let (master, previous) = master_keys(s)?;
            Ok((master, previous, None))
        }
    }
}

pub(crate) fn keyring_settings(s: &Settings) -> KeyringSettings {
    KeyringSettings::new(s.method, s.rotation_period)
}

/// Where the keystore is, for messages: the SQLite file, or the database URL with its
/// password hidden.
pub(crate) fn keystore_location(s: &Settings) -> String {
    match &s.database_url {
        Some(url) => url.redacted(),
        None => s.keystore_path().display().to_string(),
    }
}

/// The keystore the settings name: the PostgreSQL database of a cluster, or the SQLite file
/// in the data directory (created if `create`, else it must exist).
pub(crate) fn store(s: &Settings, create: bool) -> Result<Arc<dyn Store>> {
    Ok(match &s.database_url {
        Some(url) => Arc::new(PgKeystore::connect(url.expose())?),
        None if create => Arc::new(SqliteKeystore::open(&s.keystore_path())?),
        None => Arc::new(SqliteKeystore::open_existing(&s.keystore_path())?),
    })
}

/// Opens an existing keystore and its keyring.
pub(crate) fn open(cli: &Cli) -> Result<(Keyring, OpenReport, Settings)> {
    let (k, report, s, _) = open_store(cli)?;
    Ok((k, report, s))
}

/// [`open`], also returning the keystore.
pub(crate) fn open_store(cli: &Cli) -> Result<(Keyring, OpenReport, Settings, Arc<dyn Store>)> {
    let s = settings(cli)?;
    let store = self::store(&s, false)?;
    let (master, previous, _) = master_keys_in(&s, &*store)?;
    let opened = Keyring::open(
        store.clone(),
        master,
        previous,
        keyring_settings(&s),
        Arc::new(SystemClock),
    );
    let (k, report) = match opened {
        Err(e @ kura_keys::Error::WrongMasterKey { .. }) if s.master_key.is_some() => {
            return Err(with_recorded_hint(e, &*store));
        }
        r => r?,
    };
    Ok((k, report, s, store))
}

/// A wrong configured master key, with the key `kura set-mode` recorded, if any: the
/// configuration wins over the record, which is the likely mistake.
fn with_recorded_hint(e: kura_keys::Error, store: &dyn Store) -> anyhow::Error {
    match descriptor::recorded(store) {
        Ok(Some((r, _))) => anyhow::Error::new(e).context(format!(
            "the keystore records the master key {} (kura set-mode), but another one is configured, \
             which wins; configure the recorded one instead, or unset the configured master key \
             (--master-key-file, KURA_MASTER_KEY_FILE, KURA_MASTER_KEY_ENV, KURA_AWS_CMK or \
             [security.encryption.master-key]) and set use-recorded-master-key = true \
             (KURA_USE_RECORDED_MASTER_KEY=true) if you trust everyone who can write the keystore database",
            r.current
        )),
        _ => e.into(),
    }
}
