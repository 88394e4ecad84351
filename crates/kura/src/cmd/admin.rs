//! `kura init`, `status`, `rotate` and `data-key`.

use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use kura_keys::clock::SystemClock;
use kura_keys::{Keyring, Status};
use kura_store::{Keystore, SqliteKeystore};
use serde::Serialize;

use crate::cli::{
    Cli, Command, DataKeyAction, DataKeyArgs, DestroyArgs, InitArgs, KeyEncoding, RotateArgs,
    RotateWhat,
};

/// Where `kura init --dev` keeps its keystore and key by default.
const DEV_DIR: &str = "kura-dev";
use crate::env;
use crate::output::emit;

pub(crate) fn init(cli: &Cli, a: &InitArgs) -> Result<()> {
    if a.dev {
        return init_dev(cli);
    }
    let s = env::settings(cli)?;
    let master = env::master_key(&s)?;
    let location = env::keystore_location(&s);
    let store = env::store(&s, true)?;
    let k = Keyring::init(
        store,
        master,
        env::keyring_settings(&s),
        Arc::new(SystemClock),
    )?;
    let st = k.status();
    emit(cli, &st, || {
        format!(
            "initialised the keystore at {}\nmaster key: {} ({})\nKEK:        {}\ndata key:   {} (active)",
            location,
            st.master_key.id,
            st.master_key.source,
            st.kek.id,
            k.active_data_key_id()
        )
    })
}

/// `kura init --dev`: a keystore and a master key file in one directory, made on first
/// use and reused after, so that trying kura takes one command.
/// A development keystore: the directory, its generated master key file, the settings
/// that name both, and whether the keystore was created just now. The default keyring is
/// initialised on first use.
pub(crate) struct DevKeystore {
    pub(crate) dir: PathBuf,
    pub(crate) key_path: PathBuf,
    pub(crate) settings: kura_keys::config::Settings,
    pub(crate) store: Arc<SqliteKeystore>,
    pub(crate) fresh: bool,
    pub(crate) keyring: Keyring,
    /// What the settings were resolved from (to resolve them again on SIGHUP).
    pub(crate) source: env::SettingsSource,
}

/// Creates or reuses the development keystore in --data-dir or ./kura-dev.
pub(crate) fn dev_keystore(cli: &Cli) -> Result<DevKeystore> {
    let dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEV_DIR));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let key_path = dir.join("master.key");
    if !key_path.exists() {
        crate::cmd::keygen::write_key(&key_path, KeyEncoding::Hex)?;
    }
    let dev = Cli {
        data_dir: Some(dir.clone()),
        database_url: None,
        config: None,
        master_key_file: Some(key_path.clone()),
        previous_master_key_file: None,
        output: cli.output,
        command: Command::Status,
    };
    let source = env::SettingsSource::new(&dev, None);
    let settings = source.resolve()?;
    let store = Arc::new(SqliteKeystore::open(&settings.keystore_path())?);
    // Only the generated key: a previous master key configured in the environment belongs
    // to some other keystore.
    let master = env::master_key(&settings)?;
    let fresh = store.generation()?.is_none();
    let ks = env::keyring_settings(&settings);
    let keyring = if fresh {
        Keyring::init(store.clone(), master, ks, Arc::new(SystemClock))?
    } else {
        Keyring::open(store.clone(), master, None, ks, Arc::new(SystemClock))?.0
    };
    Ok(DevKeystore {
        dir,
        key_path,
        settings,
        store,
        fresh,
        keyring,
        source,
    })
}

fn init_dev(cli: &Cli) -> Result<()> {
    let DevKeystore {
        dir,
        key_path,
        fresh,
        keyring: k,
        ..
    } = dev_keystore(cli)?;
    let st = k.status();
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (d, kf) = (abs(&dir), abs(&key_path));
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kura"));
    emit(cli, &st, || {
        format!(
            "kura development keystore {} in {} (master key file {}: for development only)\n\n\
             alias kura={}\n\
             export KURA_DATA_DIR={} KURA_MASTER_KEY_FILE={}\n\
             echo 'hello, kura' | kura encrypt --context app=demo | kura decrypt --context app=demo\n\
             kura status\n\
             kura rotate data-key",
            if fresh { "created" } else { "reused" },
            d.display(),
            kf.display(),
            exe.display(),
            d.display(),
            kf.display(),
        )
    })
}

pub(crate) fn status(cli: &Cli) -> Result<()> {
    let (k, report, s, store) = env::open_store(cli)?;
    let st = k.status();
    let cluster = crate::nodes::cluster_view(&*store)?;
    let recorded = kura_keys::master_key::descriptor::recorded(&*store)?.map(|(r, _)| r);
    #[derive(Serialize)]
    struct Out<'a> {
        keystore: String,
        #[serde(flatten)]
        status: &'a Status,
        kek_rewrapped_from: Option<String>,
        /// The master keys `kura set-mode` recorded, if it was run.
        recorded_master_key: Option<kura_keys::master_key::descriptor::RecordedMasterKeys>,
        nodes: &'a [crate::nodes::view::NodeView],
        cluster: Counts,
    }
    #[derive(Serialize)]
    struct Counts {
        live: usize,
        stale: usize,
        disagreeing: usize,
    }
    let out = Out {
        keystore: env::keystore_location(&s),
        status: &st,
        kek_rewrapped_from: report.kek_rewrapped_from.clone(),
        recorded_master_key: recorded,
        nodes: &cluster.nodes,
        cluster: Counts {
            live: cluster.live,
            stale: cluster.stale,
            disagreeing: cluster.disagreeing,
        },
    };
    emit(cli, &out, || {
        let mut t = status_text(&out.keystore, &st, report.kek_rewrapped_from.as_deref());
        if let Some(r) = &out.recorded_master_key {
            let _ = writeln!(t, "recorded mode:       {} (kura set-mode)", r.current);
        }
        t.push_str("nodes:\n");
        t.push_str(&cluster.text());
        t
    })
}

/// `kura nodes`: the servers registered with the keystore; `--prune` removes stale ones.
pub(crate) fn nodes(cli: &Cli, prune: bool) -> Result<()> {
    let s = env::settings(cli)?;
    let store = env::store(&s, false)?;
    let removed = crate::nodes::expire(&*store, prune)?;
    let cluster = crate::nodes::cluster_view(&*store)?;
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        cluster: &'a crate::nodes::ClusterView,
        removed: &'a [String],
    }
    emit(
        cli,
        &Out {
            cluster: &cluster,
            removed: &removed,
        },
        || {
            let mut t = cluster.text();
            if !removed.is_empty() {
                t.push_str(&format!(
                    "  removed {} stale node(s): {}\n",
                    removed.len(),
                    removed.join(", ")
                ));
            }
            t
        },
    )
}

fn status_text(keystore: &str, st: &Status, rewrapped: Option<&str>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "keystore:            {keystore} (generation {})",
        st.generation
    );
    let _ = writeln!(
        t,
        "master key:          {} ({})",
        st.master_key.id, st.master_key.source
    );
    let _ = writeln!(t, "mode:                {}", st.master_key.mode);
    if let Some(p) = &st.previous_master_key {
        let _ = writeln!(t, "previous master key: {} ({})", p.id, p.source);
    }
    if let Some(from) = rewrapped {
        let _ = writeln!(
            t,
            "                     KEK re-wrapped from {from} just now"
        );
    }
    let _ = writeln!(
        t,
        "KEK:                 {} (created {}, wrapped by {})",
        st.kek.id, st.kek.created_at, st.kek.master_key_id
    );
    let _ = writeln!(t, "method:              {}", st.data_encryption_method);
    let _ = writeln!(t, "rotation period:     {}", st.data_key_rotation_period);
    let _ = writeln!(t, "next rotation due:   {}", st.next_rotation_due);
    let _ = writeln!(t, "data keys:");
    let _ = writeln!(
        t,
        "  {:<20} {:<13} {:<11} {:<21} {:<21} RETIRED",
        "ID", "STATE", "METHOD", "CREATED", "ACTIVATED"
    );
    for d in &st.data_keys {
        let _ = writeln!(
            t,
            "  {:<20} {:<13} {:<11} {:<21} {:<21} {}",
            d.id,
            d.state,
            d.method,
            d.created_at,
            d.activated_at.as_deref().unwrap_or("-"),
            d.destroyed_at
                .as_deref()
                .or(d.retired_at.as_deref())
                .unwrap_or("-"),
        );
    }
    t
}

#[derive(Serialize)]
struct Rotated {
    rotated: &'static str,
    id: String,
    message: String,
}

pub(crate) fn rotate(cli: &Cli, a: &RotateArgs) -> Result<()> {
    if a.new_master_key.any() {
        if a.what != RotateWhat::MasterKey {
            bail!(
                "--key-id, --key-file and the other new-master-key flags apply to `kura rotate master-key` only"
            );
        }
        return crate::cmd::mode::rotate_to(cli, &a.new_master_key);
    }
    let (k, report, _) = env::open(cli)?;
    let r = match a.what {
        RotateWhat::DataKey => {
            let old = k.active_data_key_id();
            let id = k.rotate_data_key()?;
            Rotated {
                rotated: "data-key",
                id: id.to_string(),
                message: format!("data key {id} is active; data key {old} is now decrypt-only"),
            }
        }
        RotateWhat::Kek => {
            let old = k.status().kek.id;
            let id = k.rotate_kek()?;
            let n = k
                .status()
                .data_keys
                .iter()
                .filter(|d| d.state != "destroyed")
                .count();
            Rotated {
                rotated: "kek",
                id: id.to_string(),
                message: format!(
                    "KEK {id} is active; {n} data keys re-wrapped under it; KEK {old} is retired"
                ),
            }
        }
        RotateWhat::MasterKey => {
            let st = k.status();
            let message = match report.kek_rewrapped_from {
                Some(from) => format!(
                    "KEK {} re-wrapped from master key {from} to master key {}; the previous master key is no longer needed",
                    st.kek.id, st.master_key.id
                ),
                None => format!(
                    "KEK {} is already wrapped by the configured master key {}; nothing to do. To rotate, configure the new key as \
                     the master key and the old one as the previous master key, then run this again",
                    st.kek.id, st.master_key.id
                ),
            };
            Rotated {
                rotated: "master-key",
                id: st.master_key.id,
                message,
            }
        }
    };
    emit(cli, &r, || r.message.clone())
}

pub(crate) fn data_key(cli: &Cli, a: &DataKeyArgs) -> Result<()> {
    match &a.action {
        DataKeyAction::Destroy(d) => destroy_data_key(cli, d),
    }
}

/// `kura destroy-data-key ID --yes`: refused for the active key and while anything known
/// (a migrated table, KMS key material) still uses the key.
pub(crate) fn destroy_data_key(cli: &Cli, a: &DestroyArgs) -> Result<()> {
    let id = a.id;
    if !a.yes {
        bail!(
            "destroying data key {id} makes every record and file encrypted under it unreadable forever; add --yes to confirm"
        );
    }
    let (k, _, _, store) = env::open_store(cli)?;
    // (The active key is refused by the keyring itself, with its own message.)
    let users = if id == k.active_data_key_id() {
        Vec::new()
    } else {
        let mut u = crate::usage::users_of(&*store, id)?;
        u.extend(crate::cmd::fs::files_under(&k, &*store, id)?);
        u
    };
    if !users.is_empty() {
        bail!(
            "data key {id} is still in use, so it is not destroyed:\n  {}",
            users.join("\n  ")
        );
    }
    k.destroy_data_key(id)?;
    let r = Rotated {
        rotated: "destroyed",
        id: id.to_string(),
        message: format!("data key {id} is destroyed"),
    };
    emit(cli, &r, || r.message.clone())
}
