//! `kura server` and `kura user`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kura_keys::clock::SystemClock;
use kura_keys::{Keyring, KeyringSettings};
use kura_server::{Identity, KMS_KEYRING, Kms};
use kura_store::Store;
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, ServerArgs, UserAction, UserArgs};
use crate::cmd::admin::dev_keystore;
use crate::env;
use crate::nodes::{NodeInfo, NodeKeys};
use crate::output::emit;

/// The KMS on the configured keystore (which must be initialised).
fn open_kms(s: &kura_keys::config::Settings, id: Identity) -> Result<Kms> {
    let store = env::store(s, false)?;
    let (master, previous, _) = env::master_keys_in(s, &*store)?;
    kms_on(store, master, previous, s, id)
}

fn kms_on(
    store: Arc<dyn Store>,
    master: env::SharedMasterKey,
    previous: Option<env::SharedMasterKey>,
    s: &kura_keys::config::Settings,
    id: Identity,
) -> Result<Kms> {
    let settings = KeyringSettings {
        keyring: KMS_KEYRING.to_string(),
        ..env::keyring_settings(s)
    };
    let clock = Arc::new(SystemClock);
    let (keyring, _) = Keyring::open(store.clone(), master, previous, settings, clock.clone())?;
    Ok(Kms::new(store, keyring, id, clock))
}

#[derive(Serialize, Deserialize)]
struct Credentials {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: String,
}

fn export_lines(c: &Credentials, region: Option<&str>) -> String {
    let mut s = format!(
        "export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
        c.access_key_id, c.secret_access_key
    );
    if let Some(r) = region {
        // AWS CLI v1 reads AWS_DEFAULT_REGION, the SDKs and CLI v2 AWS_REGION.
        s.push_str(&format!(" AWS_REGION={r} AWS_DEFAULT_REGION={r}"));
    }
    s
}

pub(crate) fn user(cli: &Cli, a: &UserArgs) -> Result<()> {
    let kms = open_kms(
        &env::settings(cli)?,
        Identity {
            region: kura_server::DEFAULT_REGION.into(),
            account: a.account_id.clone(),
        },
    )?;
    match &a.action {
        UserAction::Create { name } => {
            let c = kms.create_user(name)?;
            let out = Credentials {
                access_key_id: c.user.access_key_id.clone(),
                secret_access_key: c.secret_access_key.to_string(),
            };
            emit(cli, &out, || {
                format!(
                    "{}\n# user {} ({}); the secret is shown only now",
                    export_lines(&out, None).replace(" AWS_SECRET", "\nexport AWS_SECRET"),
                    c.user.name,
                    c.user.arn
                )
            })
        }
        UserAction::List => {
            let users = kms.list_users()?;
            emit(cli, &users, || {
                users
                    .iter()
                    .map(|u| format!("{}\t{}\t{}", u.name, u.access_key_id, u.arn))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        UserAction::Delete { name } => {
            kms.delete_user(name)?;
            let msg = format!("user {name} deleted");
            emit(cli, &serde_json::json!({ "deleted": name }), || msg.clone())
        }
    }
}

/// The dev user's credentials, kept (mode 0600) beside the dev keystore so that every
/// `kura server --dev` prints the same ones.
fn dev_credentials(kms: &Kms, dir: &Path) -> Result<Credentials> {
    let path = dir.join("dev-credentials.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let c: Credentials = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; delete it and the dev user is made again",
                path.display()
            )
        })?;
        if kms
            .list_users()?
            .iter()
            .any(|u| u.access_key_id == c.access_key_id)
        {
            return Ok(c);
        }
    }
    if kms.list_users()?.iter().any(|u| u.name == "dev") {
        kms.delete_user("dev")?;
    }
    let n = kms.create_user("dev")?;
    let c = Credentials {
        access_key_id: n.user.access_key_id.clone(),
        secret_access_key: n.secret_access_key.to_string(),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(serde_json::to_string_pretty(&c)?.as_bytes())?;
    f.sync_all()?;
    Ok(c)
}

pub(crate) fn run(cli: &Cli, a: &ServerArgs) -> Result<()> {
    let id = Identity {
        region: a.region.clone(),
        account: a.account_id.clone(),
    };
    if a.account_id.len() != 12 || !a.account_id.chars().all(|c| c.is_ascii_digit()) {
        bail!("--account-id must be 12 digits, not '{}'", a.account_id);
    }
    let source = env::SettingsSource::new(cli, a.database.as_deref());
    let (kms, dev, source) = if a.dev {
        if !a.listen.ip().is_loopback() {
            bail!(
                "--dev listens on loopback only (127.0.0.1 or ::1), not {}: dev mode keeps its master key beside the data",
                a.listen
            );
        }
        let d = dev_keystore(cli)?;
        let master = env::master_key(&d.settings)?;
        let kms = kms_on(d.store.clone(), master, None, &d.settings, id.clone())?;
        let creds = dev_credentials(&kms, &d.dir)?;
        (kms, Some((d.dir, creds)), d.source)
    } else {
        let s = source.resolve()?;
        (open_kms(&s, id.clone())?, None, source)
    };
    let kms = Arc::new(kms);
    kms.set_extra_metrics(Box::new(fs_root_metrics));
    // Rotates the data key when due even while no request asks for it; stops with us.
    let _rotator = kms
        .start_rotation(
            source
                .resolve()
                .map(|s| s.rotation_period)
                .unwrap_or(kura_keys::config::DEFAULT_ROTATION_PERIOD),
        )
        .context("cannot start the data key rotation thread")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = std::net::TcpListener::bind(a.listen).with_context(|| format!("cannot listen on {}", a.listen))?;
        let local = listener.local_addr()?;
        // Register this node in the keystore (see `crate::nodes`), heartbeat every 5 s.
        let store = kms.store();
        let node_id = crate::nodes::new_node_id()?;
        let mut node = crate::nodes::NodeInfo::new(local.to_string());
        {
            let store = store.clone();
            let id = node_id.clone();
            let kms = kms.clone();
            node = tokio::task::spawn_blocking(move || {
                crate::nodes::heartbeat(&*store, &id, &mut node, Some(NodeKeys::of(kms.keyring()))).map(|()| node)
            })
            .await
            .context("node registration")??;
        }
        let scheme = if a.tls_cert.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://{local}");
        tracing::info!(%endpoint, region = %id.region, "kura KMS server listening");
        let mut banner = format!("kura KMS listening on {endpoint} (region {}, account {})\n", id.region, id.account);
        if let Some((dir, creds)) = &dev {
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            banner.push_str(&format!(
                "development mode: keystore and master key in {}\n\n{}\naws --endpoint-url {endpoint} kms create-key\n",
                dir.display(),
                export_lines(creds, Some(&id.region)),
            ));
        }
        print!("{banner}");
        std::io::stdout().flush()?;
        // Changes other nodes make are looked for every second in the background, so
        // no request waits on the keystore (nor stalls while it is unreachable).
        kms.set_polled();
        let poller = {
            let kms = kms.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let k = kms.clone();
                    // Failures are logged (once a second at most) by poll_changes itself.
                    let _ = tokio::task::spawn_blocking(move || k.poll_changes()).await;
                }
            })
        };
        let heart = tokio::spawn(heartbeats(kms.clone(), node_id.clone(), node, source.clone()));
        let reload = tokio::spawn(reload_on_sighup(kms.clone(), source));
        let sweeper = {
            let kms = kms.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let k = kms.clone();
                    match tokio::task::spawn_blocking(move || k.sweep_deletions()).await {
                        Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "keys past their deletion date removed"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "deletion sweep failed"),
                        _ => {}
                    }
                }
            })
        };
        match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => kura_server::http::serve_tls(kms, listener, cert, key, shutdown_signal()).await?,
            _ => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                kura_server::http::serve(kms, listener, shutdown_signal()).await?
            }
        }
        sweeper.abort();
        poller.abort();
        heart.abort();
        reload.abort();
        let id = node_id.clone();
        match tokio::task::spawn_blocking(move || crate::nodes::deregister(&*store, &id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not remove this node from the registry"),
            Err(e) => tracing::warn!(error = %e, "could not remove this node from the registry"),
        }
        tracing::info!("kura KMS server stopped");
        Ok(())
    })
}

/// Refreshes the node's registration every [`crate::nodes::HEARTBEAT`] with the keys it
/// uses (current even on an idle node: the change poller looks for other nodes' changes
/// every second), and removes expired nodes once a minute.
async fn heartbeats(kms: Arc<Kms>, id: String, mut node: NodeInfo, source: env::SettingsSource) {
    let mut tick = tokio::time::interval(crate::nodes::HEARTBEAT);
    tick.tick().await;
    for beat in 1u64.. {
        tick.tick().await;
        let (kms, id, mut n, source) = (kms.clone(), id.clone(), node.clone(), source.clone());
        let sweep = beat.is_multiple_of(12);
        let r = tokio::task::spawn_blocking(move || -> anyhow::Result<NodeInfo> {
            let store = kms.store();
            if let Err(e) = follow_recorded_master_key(&kms, &source) {
                tracing::error!(error = %crate::report(&e), "cannot take the master key another node switched to");
            }
            crate::nodes::heartbeat(&*store, &id, &mut n, Some(NodeKeys::of(kms.keyring())))?;
            if sweep {
                let gone = crate::nodes::expire(&*store, false)?;
                if !gone.is_empty() {
                    tracing::info!(nodes = ?gone, "expired stale nodes removed from the registry");
                }
            }
            Ok(n)
        })
        .await;
        match r {
            Ok(Ok(n)) => node = n,
            Ok(Err(e)) => tracing::warn!(error = %e, "node heartbeat failed"),
            Err(e) => tracing::warn!(error = %e, "node heartbeat failed"),
        }
    }
}

/// A node started without a configured master key and with `use-recorded-master-key = true`
/// uses the one `kura set-mode` recorded in the keystore. When a command on another machine
/// switches or rotates it, this node takes the new key at its next heartbeat, no SIGHUP
/// needed. (A configured master key wins over the record: such a node waits for SIGHUP after
/// its configuration changed. A node whose configuration no longer opts in, the file having
/// changed, takes nothing from the record: [`env::master_keys_in`] refuses, and the error is
/// logged.)
fn follow_recorded_master_key(kms: &Kms, source: &env::SettingsSource) -> anyhow::Result<()> {
    let st = kms.keyring().status();
    if st.kek.master_key_id == st.master_key.id {
        return Ok(());
    }
    let s = source.resolve()?;
    if s.master_key.is_some() {
        return Ok(());
    }
    let (master, previous, _) = env::master_keys_in(&s, &*kms.store())?;
    if master.id() != st.kek.master_key_id {
        // The record does not name the key the KEK is wrapped by (not yet, or not at all).
        return Ok(());
    }
    let id = master.id().to_string();
    kms.keyring().use_master_keys(master, previous)?;
    tracing::info!(master_key = %id, "took the master key recorded by another node");
    Ok(())
}

/// On SIGHUP, resolves the configuration again (the file and the key files are read anew)
/// and hands the master keys it names to the keyring: a new master key is taken without a
/// restart, the KEK re-wrapped under it if another node has not done so already.
async fn reload_on_sighup(kms: Arc<Kms>, source: env::SettingsSource) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; a new master key needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        let (kms, source) = (kms.clone(), source.clone());
        let r = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
            let s = source.resolve()?;
            let (master, previous, _) = env::master_keys_in(&s, &*kms.store())?;
            let id = master.id().to_string();
            let from = kms.keyring().use_master_keys(master, previous)?;
            tracing::info!(master_key = %id, rewrapped_from = ?from, "master key configuration reloaded (SIGHUP)");
            Ok(from)
        })
        .await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %crate::report(&e), "SIGHUP: the master key configuration was not reloaded; the node goes on with the keys it had")
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed"),
        }
    }
}

/// The gauges of every kura-fs data root a `kura fs` command registered with this keystore
/// and that still exists, read without taking the roots' locks.
fn fs_root_metrics(kms: &Kms) -> String {
    let roots = match crate::usage::fs_roots(&*kms.store()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the registered data roots for /metrics");
            return String::new();
        }
    };
    let present: Vec<&std::path::Path> = roots
        .iter()
        .filter(|r| r.is_dir())
        .map(|r| r.as_path())
        .collect();
    if present.is_empty() {
        return String::new();
    }
    kura_fs::root_metrics(&present, kms.keyring())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
