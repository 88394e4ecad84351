//! `kura pkcs11 keygen`: a new master key generated inside a PKCS#11 token.

use anyhow::{Result, bail};
use kura_keys::MasterKey;
use kura_keys::config::{MasterKeySpec, Pkcs11Spec};
use kura_keys::master_key::pkcs11;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::{Cli, Pkcs11Action, Pkcs11Args, Pkcs11KeyArgs};
use crate::env;
use crate::output::emit;

#[derive(Serialize)]
struct Generated {
    module: String,
    token_label: String,
    key_label: String,
    master_key_id: String,
}

pub(crate) fn run(cli: &Cli, a: &Pkcs11Args) -> Result<()> {
    match &a.action {
        Pkcs11Action::Keygen(k) => keygen(cli, k),
    }
}

fn keygen(cli: &Cli, a: &Pkcs11KeyArgs) -> Result<()> {
    let spec = spec(cli, a)?;
    let mk = pkcs11::generate_key(&spec)?;
    let g = Generated {
        module: spec.module.display().to_string(),
        token_label: spec.token_label.clone(),
        key_label: spec.key_label.clone(),
        master_key_id: mk.id().to_string(),
    };
    emit(cli, &g, || {
        format!(
            "generated AES-256 key {:?} in token {:?} (never leaves the token)\n\
             master key id: {}\n\
             configure it:\n\
             [security.encryption.master-key]\n\
             type = \"pkcs11\"\n\
             module = {:?}\n\
             token-label = {:?}\n\
             key-label = {:?}\n\
             pin-env = {:?}",
            g.key_label,
            g.token_label,
            g.master_key_id,
            g.module,
            g.token_label,
            g.key_label,
            spec.pin_env
        )
    })
}

/// The flags, completed from `[security.encryption.master-key]` when it has type = "pkcs11".
fn spec(cli: &Cli, a: &Pkcs11KeyArgs) -> Result<Pkcs11Spec> {
    let all_flags = a.module.is_some()
        && a.token_label.is_some()
        && a.key_label.is_some()
        && a.pin_env.is_some();
    let configured = if all_flags {
        None
    } else {
        match env::settings(cli)?.master_key {
            Some(MasterKeySpec::Pkcs11(p)) => Some(p),
            _ => None,
        }
    };
    let origin = if configured.is_some() {
        "[security.encryption.master-key] and the flags of kura pkcs11 keygen"
    } else {
        "the flags of kura pkcs11 keygen"
    };
    let missing = |flag: &str| {
        anyhow::anyhow!(
            "kura pkcs11 keygen needs {flag}: give it, or configure [security.encryption.master-key] \
             type = \"pkcs11\" in the file given with --config"
        )
    };
    let pick = |flag: Option<&String>, conf: Option<&String>, name: &str| {
        flag.or(conf).cloned().ok_or_else(|| missing(name))
    };
    let module = a
        .module
        .clone()
        .or_else(|| configured.as_ref().map(|p| p.module.clone()))
        .ok_or_else(|| missing("--module"))?;
    let token_label = pick(
        a.token_label.as_ref(),
        configured.as_ref().map(|p| &p.token_label),
        "--token-label",
    )?;
    let key_label = pick(
        a.key_label.as_ref(),
        configured.as_ref().map(|p| &p.key_label),
        "--key-label",
    )?;
    let pin_env = pick(
        a.pin_env.as_ref(),
        configured.as_ref().map(|p| &p.pin_env),
        "--pin-env",
    )?;
    if pin_env.is_empty() {
        bail!("--pin-env names no variable");
    }
    // The PIN is read here, from the variable the flag or the file names: it is never a
    // flag (flags show in `ps`) nor in the file.
    let pin = match configured {
        Some(p) if p.pin_env == pin_env => p.pin,
        _ => std::env::var(&pin_env)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Zeroizing::new),
    };
    Ok(Pkcs11Spec {
        module,
        token_label,
        key_label,
        pin_env,
        pin,
        origin: origin.to_string(),
    })
}
