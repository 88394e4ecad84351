//! `kura set-mode local|kms|pkcs11` and `kura rotate master-key --key-id …`: the KEK
//! re-wrapped under a new master key, online, and the new mode recorded in the keystore
//! (`kura_keys::master_key::descriptor`).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kura_keys::Keyring;
use kura_keys::clock::SystemClock;
use kura_keys::config::{DEFAULT_KMS_ENCRYPTION_CONTEXT, ENV_AWS_REGIONS, KMS_CONTEXT_KEY};
use kura_keys::master_key::{self, MasterKeyDescriptor, descriptor};
use serde::Serialize;

use crate::cli::{Cli, Mode, NewMasterKeyArgs, SetModeArgs};
use crate::env;
use crate::output::emit;

/// What a switch reports.
#[derive(Serialize)]
struct Switched {
    /// `set-mode` or `rotate`.
    action: &'static str,
    /// The new mode and where its key is, as recorded.
    master_key: MasterKeyDescriptor,
    /// The new master key's id (stored with the KEK).
    master_key_id: String,
    /// The master key that wrapped the KEK before.
    previous_master_key_id: String,
    /// The KEK that was re-wrapped.
    kek_id: String,
    message: String,
}

pub(crate) fn set_mode(cli: &Cli, a: &SetModeArgs) -> Result<()> {
    let desc = descriptor_of(a.mode, &a.key)?;
    switch_to(cli, desc, "set-mode")
}

/// `kura rotate master-key` with new-key flags: like `set-mode` in the mode the flags name.
pub(crate) fn rotate_to(cli: &Cli, key: &NewMasterKeyArgs) -> Result<()> {
    let mode = if key.key_id.is_some() {
        Mode::Kms
    } else if key.key_file.is_some() {
        Mode::Local
    } else if key.pkcs11.module.is_some() {
        Mode::Pkcs11
    } else {
        bail!(
            "kura rotate master-key needs --key-id (a KMS key), --key-file or --module to name the new master key"
        )
    };
    switch_to(cli, descriptor_of(mode, key)?, "rotate")
}

fn switch_to(cli: &Cli, desc: MasterKeyDescriptor, action: &'static str) -> Result<()> {
    let s = env::settings(cli)?;
    let store = env::store(&s, false)?;
    let (master, previous, old_desc) = env::master_keys_in(&s, &*store)?;
    let (k, _) = Keyring::open(
        store.clone(),
        master,
        previous,
        env::keyring_settings(&s),
        Arc::new(SystemClock),
    )?;
    let spec = desc.to_spec("the new master key (kura set-mode)", &|v| {
        std::env::var(v).ok()
    })?;
    let new = master_key::load(Some(&spec)).context("the new master key")?;
    let sw = descriptor::switch(&k, &*store, new, desc.clone(), old_desc)?;
    let message = if sw.from == sw.to {
        format!(
            "master key mode: {} ({desc}); KEK {} was already wrapped by {}; the mode is recorded",
            desc.mode(),
            sw.kek_id,
            sw.to
        )
    } else {
        format!(
            "master key mode: {} ({desc})\nKEK {} re-wrapped from master key {} to master key {}; \
             the previous master key is recorded as previous-master-key",
            desc.mode(),
            sw.kek_id,
            sw.from,
            sw.to
        )
    };
    let out = Switched {
        action,
        master_key: desc,
        master_key_id: sw.to,
        previous_master_key_id: sw.from,
        kek_id: sw.kek_id,
        message,
    };
    emit(cli, &out, || out.message.clone())
}

/// The descriptor the flags of `mode` give; flags of another mode are refused.
fn descriptor_of(mode: Mode, k: &NewMasterKeyArgs) -> Result<MasterKeyDescriptor> {
    let given = |flags: &[(&str, bool)]| -> Vec<String> {
        flags
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| format!("--{n}"))
            .collect()
    };
    let local = [("key-file", k.key_file.is_some())];
    let kms = [
        ("key-id", k.key_id.is_some()),
        ("region", k.region.is_some()),
        ("endpoint", k.endpoint.is_some()),
        ("encryption-context", !k.encryption_context.is_empty()),
    ];
    let pkcs11 = [
        ("module", k.pkcs11.module.is_some()),
        ("token-label", k.pkcs11.token_label.is_some()),
        ("key-label", k.pkcs11.key_label.is_some()),
        ("pin-env", k.pkcs11.pin_env.is_some()),
    ];
    let (name, others) = match mode {
        Mode::Local => ("local", [&kms[..], &pkcs11[..]].concat()),
        Mode::Kms => ("kms", [&local[..], &pkcs11[..]].concat()),
        Mode::Pkcs11 => ("pkcs11", [&local[..], &kms[..]].concat()),
    };
    let wrong = given(&others);
    if !wrong.is_empty() {
        bail!(
            "mode {name} takes no {}; give only the flags of that mode",
            wrong.join(", ")
        );
    }
    let need = |v: Option<String>, flag: &str| -> Result<String> {
        v.ok_or_else(|| anyhow::anyhow!("mode {name} needs --{flag}"))
    };
    Ok(match mode {
        Mode::Local => {
            let path = k
                .key_file
                .clone()
                .ok_or_else(|| anyhow::anyhow!("mode local needs --key-file"))?;
            MasterKeyDescriptor::Local {
                key_file: Some(std::path::absolute(&path).unwrap_or(path)),
                variable: None,
            }
        }
        Mode::Kms => {
            let mut encryption_context = BTreeMap::new();
            for (key, v) in &k.encryption_context {
                if encryption_context.insert(key.clone(), v.clone()).is_some() {
                    bail!("--encryption-context {key}=… is given twice; each key may appear once");
                }
            }
            if encryption_context.is_empty() {
                encryption_context.insert(
                    KMS_CONTEXT_KEY.to_string(),
                    DEFAULT_KMS_ENCRYPTION_CONTEXT.to_string(),
                );
            }
            // The region is recorded explicitly, so that later processes do not depend on
            // their environment.
            let region = k
                .region
                .clone()
                .or_else(|| ENV_AWS_REGIONS.iter().find_map(|v| nonempty(v)));
            MasterKeyDescriptor::Kms {
                key_id: need(k.key_id.clone(), "key-id")?,
                region,
                endpoint: k.endpoint.clone(),
                encryption_context,
            }
        }
        Mode::Pkcs11 => MasterKeyDescriptor::Pkcs11 {
            module: k
                .pkcs11
                .module
                .clone()
                .ok_or_else(|| anyhow::anyhow!("mode pkcs11 needs --module"))?,
            token_label: need(k.pkcs11.token_label.clone(), "token-label")?,
            key_label: need(k.pkcs11.key_label.clone(), "key-label")?,
            pin_env: need(k.pkcs11.pin_env.clone(), "pin-env")?,
        },
    })
}

fn nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}
