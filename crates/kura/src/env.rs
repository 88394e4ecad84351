//! From global options to settings, a keystore and a keyring.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use kura_keys::clock::SystemClock;
use kura_keys::config::{self, Overrides, Settings};
use kura_keys::{Keyring, KeyringSettings, MasterKey, OpenReport, master_key};
use kura_store::{Keystore, SqliteKeystore};

use crate::cli::Cli;

/// Resolves flags, environment and configuration file.
pub(crate) fn settings(cli: &Cli) -> Result<Settings> {
    // An empty KURA_CONFIG counts as unset, like every other KURA_* variable.
    let config = cli.config.as_deref().filter(|p| !p.as_os_str().is_empty());
    let text = match config {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the configuration file {}", p.display()))?,
        ),
        None => None,
    };
    let file = config.zip(text.as_deref());
    let flags = Overrides {
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        master_key_file: cli.master_key_file.clone(),
        previous_master_key_file: cli.previous_master_key_file.clone(),
    };
    let s = config::resolve(file, &|k| std::env::var(k).ok(), &flags)?;
    kura_keys::redact::set_enabled(s.redact_info_log);
    Ok(s)
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

pub(crate) fn keyring_settings(s: &Settings) -> KeyringSettings {
    KeyringSettings::new(s.method, s.rotation_period)
}

/// The keystore path, for messages.
pub(crate) fn keystore_path(s: &Settings) -> PathBuf {
    s.keystore_path()
}

/// Opens an existing keystore and its keyring.
pub(crate) fn open(cli: &Cli) -> Result<(Keyring, OpenReport, Settings)> {
    let s = settings(cli)?;
    let path = keystore_path(&s);
    let store: Arc<dyn Keystore> = Arc::new(SqliteKeystore::open_existing(&path)?);
    let (master, previous) = master_keys(&s)?;
    let (k, report) = Keyring::open(
        store,
        master,
        previous,
        keyring_settings(&s),
        Arc::new(SystemClock),
    )?;
    Ok((k, report, s))
}
