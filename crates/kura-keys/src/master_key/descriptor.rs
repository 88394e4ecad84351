//! Master-key modes recorded in the keystore (`kura set-mode`, Tableau's
//! `tsm security kms set-mode`): which master key wraps the KEK, said without a secret, so
//! that `kura status` shows the mode and a process started without master-key configuration
//! that opted in ([`RecordTrust::Trust`]) loads the recorded key.
//!
//! ## Trust
//!
//! The record is not authenticated: whoever can write the keystore database can rewrite it
//! and name their own KMS endpoint (which would then be sent the KEK to wrap), a key file
//! they can read, or a PKCS#11 module to be loaded into the process. So the keystore is no
//! trust anchor by default: [`load_recorded`] refuses a recorded mode
//! ([`Error::RecordedMasterKeyNotTrusted`]) unless the process opted in locally
//! (`use-recorded-master-key = true`, `KURA_USE_RECORDED_MASTER_KEY=true`). Recording a
//! mode ([`switch`]) and showing it need no opt-in.
//!
//! The record is one object of kind [`MASTER_KEY_KIND`] (id `current`) in the keystore's
//! object store: a JSON document `{"current": …, "previous": …}` of
//! [`MasterKeyDescriptor`]s. A local key is recorded by its file path (or the name of the
//! variable holding it), a KMS key by key id, region, endpoint and encryption context, a
//! PKCS#11 key by module, token and key labels and the name of the PIN variable.
//!
//! ## Switching
//!
//! [`switch`] first checks the new key (a test wrap and unwrap) and, on a fresh snapshot,
//! that the active KEK is wrapped by a master key the keyring holds, then records
//! `{current: new, previous: old}`, then re-wraps every KEK under the new key in one
//! transaction. Keys and objects are two transactions, in that order:
//! a crash between them leaves the record naming the new key with the old one as previous,
//! and the next process re-wraps the KEK at start-up (the previous key is tried when the
//! current one did not wrap the KEK), which completes the switch.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use kura_crypto::Key256;
use kura_store::{Change, KekState, ObjectChange, Store};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{MasterKey, load};
use crate::config::{KmsSpec, MasterKeySpec, Pkcs11Spec, Settings};
use crate::{Error, Keyring};

/// The object kind of the recorded master keys.
pub const MASTER_KEY_KIND: &str = "master-key";
/// The id of the one object of that kind.
const RECORD_ID: &str = "current";
/// How errors and `source()` name a key loaded from the record.
const RECORDED: &str = "the master key recorded in the keystore by `kura set-mode`";

/// A master key, as recorded: where to find it, never its bytes or a PIN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "mode",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum MasterKeyDescriptor {
    /// A key file, or an environment variable holding the key.
    Local {
        /// The key file (absolute).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_file: Option<PathBuf>,
        /// The variable holding the key in base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variable: Option<String>,
    },
    /// A key in AWS KMS or a service speaking its API.
    Kms {
        /// Key id, ARN or alias, as given.
        key_id: String,
        /// The region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// The endpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// The encryption context (kura adds the KEK id).
        #[serde(default)]
        encryption_context: BTreeMap<String, String>,
    },
    /// A key in a PKCS#11 token.
    Pkcs11 {
        /// The PKCS#11 library.
        module: PathBuf,
        /// The token's label.
        token_label: String,
        /// The key's label.
        key_label: String,
        /// The environment variable holding the user PIN.
        pin_env: String,
    },
}

impl MasterKeyDescriptor {
    /// What `spec` names; a key file's path is made absolute.
    pub fn from_spec(spec: &MasterKeySpec) -> Self {
        match spec {
            MasterKeySpec::File { path, .. } => Self::Local {
                key_file: Some(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
                variable: None,
            },
            MasterKeySpec::Env { variable, .. } => Self::Local {
                key_file: None,
                variable: Some(variable.clone()),
            },
            MasterKeySpec::Kms(k) => Self::Kms {
                key_id: k.key_id.clone(),
                region: k.region.clone(),
                endpoint: k.endpoint.clone(),
                encryption_context: k.encryption_context.clone(),
            },
            MasterKeySpec::Pkcs11(p) => Self::Pkcs11 {
                module: p.module.clone(),
                token_label: p.token_label.clone(),
                key_label: p.key_label.clone(),
                pin_env: p.pin_env.clone(),
            },
        }
    }

    /// The spec to load this key with; `origin` says where it came from in messages, and
    /// `env` gives the variables a local key or a PIN is read from.
    pub fn to_spec(
        &self,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<MasterKeySpec, Error> {
        Ok(match self {
            Self::Local {
                key_file: Some(path),
                ..
            } => MasterKeySpec::File {
                path: path.clone(),
                origin: origin.to_string(),
            },
            Self::Local {
                variable: Some(variable),
                ..
            } => match env(variable) {
                Some(value) => MasterKeySpec::Env {
                    variable: variable.clone(),
                    value: Zeroizing::new(value),
                },
                None => {
                    return Err(Error::MissingMasterKey(format!(
                        "{origin} is held in the environment variable {variable}, which is not set; set it"
                    )));
                }
            },
            Self::Local { .. } => {
                return Err(Error::Config(format!(
                    "{origin} is a local key with neither a key file nor a variable"
                )));
            }
            Self::Kms {
                key_id,
                region,
                endpoint,
                encryption_context,
            } => MasterKeySpec::Kms(KmsSpec {
                key_id: key_id.clone(),
                region: region.clone(),
                endpoint: endpoint.clone(),
                encryption_context: encryption_context.clone(),
                origin: origin.to_string(),
            }),
            Self::Pkcs11 {
                module,
                token_label,
                key_label,
                pin_env,
            } => MasterKeySpec::Pkcs11(Pkcs11Spec {
                module: module.clone(),
                token_label: token_label.clone(),
                key_label: key_label.clone(),
                pin: env(pin_env).map(Zeroizing::new),
                pin_env: pin_env.clone(),
                origin: origin.to_string(),
            }),
        })
    }

    /// `local`, `kms` or `pkcs11`.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::Kms { .. } => "kms",
            Self::Pkcs11 { .. } => "pkcs11",
        }
    }
}

impl fmt::Display for MasterKeyDescriptor {
    /// `kms key alias/kura, region us-east-1, endpoint http://…`, and the like.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local {
                key_file: Some(p), ..
            } => write!(f, "local key file {}", p.display()),
            Self::Local {
                variable: Some(v), ..
            } => write!(f, "local key in the variable {v}"),
            Self::Local { .. } => f.write_str("local key"),
            Self::Kms {
                key_id,
                region,
                endpoint,
                encryption_context,
            } => {
                write!(f, "kms key {key_id}")?;
                if let Some(r) = region {
                    write!(f, ", region {r}")?;
                }
                if let Some(e) = endpoint {
                    write!(f, ", endpoint {e}")?;
                }
                write!(f, ", encryption context {encryption_context:?}")
            }
            Self::Pkcs11 {
                module,
                token_label,
                key_label,
                pin_env,
            } => write!(
                f,
                "pkcs11 key {key_label:?} in token {token_label:?} of {} (PIN from {pin_env})",
                module.display()
            ),
        }
    }
}

/// What the keystore records: the master key in use and the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedMasterKeys {
    /// The master key that wraps the KEK (or will, once a switch completes).
    pub current: MasterKeyDescriptor,
    /// The one before, tried at start-up when the current one did not wrap the KEK.
    #[serde(default)]
    pub previous: Option<MasterKeyDescriptor>,
}

/// The recorded master keys and the version of their object, if any were recorded.
pub fn recorded(store: &dyn Store) -> Result<Option<(RecordedMasterKeys, u64)>, Error> {
    let Some(o) = store.get(MASTER_KEY_KIND, RECORD_ID)? else {
        return Ok(None);
    };
    let r: RecordedMasterKeys = serde_json::from_str(&o.doc).map_err(|e| {
        Error::Store(kura_store::Error::Corrupt {
            location: "keystore".into(),
            what: format!(
                "the recorded master key ({MASTER_KEY_KIND}/{RECORD_ID}) is not readable: {e}"
            ),
        })
    })?;
    Ok(Some((r, o.version)))
}

/// Records `r`, replacing the record at `version` (`None`: there is none yet).
pub fn record(
    store: &dyn Store,
    r: &RecordedMasterKeys,
    version: Option<u64>,
) -> Result<(), Error> {
    let doc = serde_json::to_string(r).map_err(|e| Error::Config(e.to_string()))?;
    let (kind, id) = (MASTER_KEY_KIND.to_string(), RECORD_ID.to_string());
    let change = match version {
        None => ObjectChange::Create {
            kind,
            id,
            doc,
            blob: Vec::new(),
        },
        Some(version) => ObjectChange::Update {
            kind,
            id,
            version,
            doc,
            blob: Vec::new(),
        },
    };
    Ok(store.apply(&[change])?)
}

/// Whether a process may load the master key recorded in the keystore (see the
/// [module docs](self#trust)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordTrust {
    /// A recorded mode is an error naming it ([`Error::RecordedMasterKeyNotTrusted`]): the
    /// default.
    Refuse,
    /// The record is used: everyone who can write the keystore database is trusted with
    /// the choice of master key (`use-recorded-master-key = true`).
    Trust,
}

impl RecordTrust {
    /// What `settings` say (`use-recorded-master-key`, `KURA_USE_RECORDED_MASTER_KEY`).
    pub fn of(settings: &Settings) -> Self {
        if settings.use_recorded_master_key {
            Self::Trust
        } else {
            Self::Refuse
        }
    }
}

/// The master keys to open `store` with when none is configured: the recorded current one
/// and, if the KEK is not wrapped by it, the recorded previous one (`configured_previous`
/// if one is configured). Returns `None` if nothing is recorded, and
/// [`Error::RecordedMasterKeyNotTrusted`] if something is but `trust` refuses it (nothing
/// is loaded then).
pub fn load_recorded(
    store: &dyn Store,
    configured_previous: Option<&MasterKeySpec>,
    trust: RecordTrust,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RecordedKeys>, Error> {
    load_recorded_with(store, configured_previous, trust, env, &|spec| {
        load(Some(spec))
    })
}

/// [`load_recorded`], loading each key with `load` (for applications that hold their own
/// KMS credentials: see [`super::KmsMasterKey::connect_with`]).
pub fn load_recorded_with(
    store: &dyn Store,
    configured_previous: Option<&MasterKeySpec>,
    trust: RecordTrust,
    env: &dyn Fn(&str) -> Option<String>,
    load: &Loader,
) -> Result<Option<RecordedKeys>, Error> {
    let Some((r, _)) = recorded(store)? else {
        return Ok(None);
    };
    if trust == RecordTrust::Refuse {
        return Err(Error::RecordedMasterKeyNotTrusted {
            recorded: r.current.to_string(),
        });
    }
    let current = load(&r.current.to_spec(RECORDED, env)?)?;
    let previous = match configured_previous {
        Some(spec) => Some(load(spec)?),
        None => {
            let wrapped_by = store.snapshot()?.and_then(|s| {
                s.keks
                    .into_iter()
                    .find(|k| k.state == KekState::Active)
                    .map(|k| k.master_key_id)
            });
            match (&r.previous, wrapped_by) {
                (Some(p), Some(by)) if by != current.id() => {
                    let origin = "the previous master key recorded by `kura set-mode`";
                    Some(load(&p.to_spec(origin, env)?)?)
                }
                _ => None,
            }
        }
    };
    Ok(Some(RecordedKeys {
        current,
        previous,
        recorded: r,
    }))
}

/// How [`load_recorded_with`] loads one master key.
pub type Loader = dyn Fn(&MasterKeySpec) -> Result<Arc<dyn MasterKey>, Error>;

/// What [`load_recorded`] loaded.
pub struct RecordedKeys {
    /// The recorded current master key.
    pub current: Arc<dyn MasterKey>,
    /// The previous one, loaded only when the KEK is not wrapped by the current one.
    pub previous: Option<Arc<dyn MasterKey>>,
    /// The record.
    pub recorded: RecordedMasterKeys,
}

/// What [`switch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// The master key wrapping the KEK before.
    pub from: String,
    /// The master key wrapping it now.
    pub to: String,
    /// The KEK.
    pub kek_id: String,
}

/// Switches `keyring` (opened on `store`) to the master key `new`, described by
/// `new_descriptor`; `old_descriptor` describes the key in use until now and is recorded
/// as the previous one. See the [module docs](self) for the order of the writes.
pub fn switch(
    keyring: &Keyring,
    store: &dyn Store,
    new: Arc<dyn MasterKey>,
    new_descriptor: MasterKeyDescriptor,
    old_descriptor: Option<MasterKeyDescriptor>,
) -> Result<Switched, Error> {
    // The new key must both wrap and unwrap before anything is written: a key that can
    // Encrypt but not Decrypt would lock the keystore out.
    let probe = Key256::generate()?;
    let blob = new.wrap_kek(0, &probe)?;
    let back = new.unwrap_kek(0, &blob)?;
    if !kura_crypto::ct_eq(back.expose_secret(), probe.expose_secret()) {
        return Err(Error::Config(format!(
            "master key {} returned another key than it was given; it cannot be used",
            new.id()
        )));
    }
    let before = keyring.status();
    // The active KEK must be wrapped by a key this keyring holds (or by the new one) now,
    // not only when it was opened: else another process switched the master key meanwhile,
    // and recording `new` would name a key that cannot unwrap the KEK.
    let Some(snap) = store.snapshot()? else {
        return Err(Error::Store(kura_store::Error::NotInitialized {
            location: "the keystore".into(),
        }));
    };
    let holders = held(keyring);
    for k in snap.keks.iter().filter(|k| k.state == KekState::Active) {
        if k.master_key_id != new.id() && !holders.iter().any(|m| m.id() == k.master_key_id) {
            return Err(not_held(
                k.id,
                &k.master_key_id,
                &holders,
                "nothing was written",
            ));
        }
    }
    let version = recorded(store)?.map(|(_, v)| v);
    let previous = old_descriptor.filter(|o| *o != new_descriptor);
    record(
        store,
        &RecordedMasterKeys {
            current: new_descriptor,
            previous,
        },
        version,
    )?;
    rewrap_every_kek(keyring, store, &new)?;
    Ok(Switched {
        from: before.kek.master_key_id,
        to: new.id().to_string(),
        kek_id: before.kek.id,
    })
}

/// The master keys `keyring` holds: its current one and its previous one, if any.
fn held(keyring: &Keyring) -> Vec<Arc<dyn MasterKey>> {
    [Some(keyring.master()), keyring.previous()]
        .into_iter()
        .flatten()
        .collect()
}

/// The error of a switch that found the active KEK `kek_id` wrapped by `wrapped_by`, a key
/// none of `holders` is; `written` says what was written before.
fn not_held(
    kek_id: u64,
    wrapped_by: &str,
    holders: &[Arc<dyn MasterKey>],
    written: &'static str,
) -> Error {
    Error::SwitchKekNotHeld {
        kek_id,
        wrapped_by: wrapped_by.to_string(),
        held: holders
            .iter()
            .map(|m| m.id().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        written,
    }
}

/// Re-wraps every KEK the keyring's master keys (current and previous) wrapped under `new`,
/// in one transaction, then makes `new` the keyring's master key and the one in use until
/// now its previous one. An active KEK wrapped by a key the keyring does not hold is an
/// error (nothing is committed); a retired KEK wrapped by an older master key is left as it
/// is (no data key uses a retired KEK).
fn rewrap_every_kek(
    keyring: &Keyring,
    store: &dyn Store,
    new: &Arc<dyn MasterKey>,
) -> Result<(), Error> {
    let old = keyring.master();
    let holders = held(keyring);
    let mut done = false;
    for _ in 0..8 {
        let Some(snap) = store.snapshot()? else {
            return Err(Error::Store(kura_store::Error::NotInitialized {
                location: "the keystore".into(),
            }));
        };
        let mut changes = Vec::new();
        for rec in snap.keks.iter().filter(|k| k.master_key_id != new.id()) {
            let Some(by) = holders.iter().find(|m| m.id() == rec.master_key_id) else {
                if rec.state == KekState::Active {
                    // Data keys depend on it: leaving it behind would strand them.
                    return Err(not_held(
                        rec.id,
                        &rec.master_key_id,
                        &holders,
                        "the new master key is recorded, but no KEK was re-wrapped",
                    ));
                }
                tracing::warn!(
                    kek = rec.id,
                    wrapped_by = %rec.master_key_id,
                    "a retired KEK stays wrapped by a master key that is no longer configured"
                );
                continue;
            };
            let kek = by.unwrap_kek(rec.id, &rec.wrapped)?;
            changes.push(Change::RewrapKek {
                id: rec.id,
                wrapped: new.wrap_kek(rec.id, &kek)?,
                master_key_id: new.id().to_string(),
            });
        }
        if changes.is_empty() {
            done = true;
            break;
        }
        match store.commit(snap.generation, &changes) {
            Ok(_) => {
                done = true;
                break;
            }
            Err(kura_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if !done {
        return Err(Error::Contention("master key switch"));
    }
    // The KEK is now wrapped by `new`: the keyring checks that, and re-wraps nothing.
    keyring.use_master_keys(new.clone(), Some(old))?;
    Ok(())
}
