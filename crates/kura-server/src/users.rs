//! Users and their access keys. A secret access key is shown once, at creation; the
//! keystore holds it sealed under the `kms` keyring (SigV4 needs the secret itself to
//! check a signature), and this process caches it unsealed, in a zeroizing type.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use kura_crypto::rng;
use kura_format::EncryptionContext;
use kura_store::ObjectChange;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Kind, KmsError, KmsResult};
use crate::model::{KIND_ACCESS_KEY, KIND_USER};
use crate::service::Kms;
use crate::sigv4::{Secret, SecretLookup};

/// A user as stored (the secret is the object's sealed blob).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDoc {
    /// The user's name.
    pub name: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    /// The access key id.
    pub access_key_id: String,
    /// Unix seconds.
    pub created: i64,
}

/// A new user's credentials, shown once.
pub struct NewCredentials {
    /// The user.
    pub user: UserDoc,
    /// The secret access key.
    pub secret_access_key: Zeroizing<String>,
}

#[derive(Serialize, Deserialize)]
struct AccessKeyDoc {
    user: String,
}

/// Access key id → (user name, secret), filled on first use.
#[derive(Default)]
pub(crate) struct UserCache(RwLock<HashMap<String, (String, Secret)>>);

impl UserCache {
    pub(crate) fn clear(&self) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

fn secret_context(name: &str) -> EncryptionContext {
    [("kura:user", name)].into_iter().collect()
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(prefix: &str, n: usize, alphabet: &[u8]) -> KmsResult<String> {
    let mut b = vec![0u8; n];
    rng::fill(&mut b).map_err(KmsError::internal)?;
    let mut s = String::from(prefix);
    s.extend(
        b.iter()
            .map(|x| alphabet[*x as usize % alphabet.len()] as char),
    );
    Ok(s)
}

fn valid_name(name: &str) -> KmsResult<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(KmsError::new(
            Kind::Validation,
            format!("user name '{name}' must be 1 to 64 characters of letters, digits and +=,.@_-"),
        ));
    }
    Ok(())
}

impl Kms {
    /// The ARN of user `name`.
    pub fn user_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:user/{name}", self.id.account)
    }

    /// Creates user `name` with a new access key.
    pub fn create_user(&self, name: &str) -> KmsResult<NewCredentials> {
        valid_name(name)?;
        let akid = random_string("AKIA", 16, ALPHABET)?;
        let secret = Zeroizing::new(random_string("", 40, SECRET_ALPHABET)?);
        let mut sealed = Vec::new();
        self.keyring
            .seal(&secret_context(name), secret.as_bytes(), &mut sealed)?;
        let user = UserDoc {
            name: name.to_string(),
            arn: self.user_arn(name),
            access_key_id: akid.clone(),
            created: self.now(),
        };
        let r = self.store.apply(&[
            ObjectChange::Create {
                kind: KIND_USER.into(),
                id: name.into(),
                doc: serde_json::to_string(&user).map_err(KmsError::internal)?,
                blob: sealed,
            },
            ObjectChange::Create {
                kind: KIND_ACCESS_KEY.into(),
                id: akid,
                doc: serde_json::to_string(&AccessKeyDoc { user: name.into() })
                    .map_err(KmsError::internal)?,
                blob: Vec::new(),
            },
        ]);
        match r {
            Ok(()) => Ok(NewCredentials {
                user,
                secret_access_key: secret,
            }),
            Err(kura_store::Error::AlreadyExists { .. }) => Err(KmsError::new(
                Kind::AlreadyExists,
                format!("user {name} already exists; delete it first or choose another name"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Every user, by name.
    pub fn list_users(&self) -> KmsResult<Vec<UserDoc>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(KIND_USER, "", after.as_deref(), 500)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for o in page {
                out.push(serde_json::from_str(&o.doc).map_err(KmsError::internal)?);
            }
        }
        Ok(out)
    }

    /// Deletes user `name` and its access key; requests signed with it fail from now on
    /// (on other processes within a second).
    pub fn delete_user(&self, name: &str) -> KmsResult<()> {
        let o = self
            .store
            .get(KIND_USER, name)?
            .ok_or_else(|| KmsError::new(Kind::NotFound, format!("no user named {name}")))?;
        let u: UserDoc = serde_json::from_str(&o.doc).map_err(KmsError::internal)?;
        self.store.apply(&[
            ObjectChange::Delete {
                kind: KIND_USER.into(),
                id: name.into(),
            },
            ObjectChange::Delete {
                kind: KIND_ACCESS_KEY.into(),
                id: u.access_key_id,
            },
        ])?;
        self.users.clear();
        Ok(())
    }

    /// The user and secret of access key `akid`.
    fn lookup(&self, akid: &str) -> KmsResult<Option<(String, Secret)>> {
        // A user deleted by another process must stop working within a second.
        self.refresh()?;
        if let Some((u, s)) = self
            .users
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(akid)
        {
            return Ok(Some((u.clone(), s.clone_secret())));
        }
        let Some(a) = self.store.get(KIND_ACCESS_KEY, akid)? else {
            return Ok(None);
        };
        let a: AccessKeyDoc = serde_json::from_str(&a.doc).map_err(KmsError::internal)?;
        let Some(o) = self.store.get(KIND_USER, &a.user)? else {
            return Ok(None);
        };
        let mut out = Zeroizing::new(Vec::new());
        self.keyring
            .open_envelope(&secret_context(&a.user), &o.blob, &mut out)?;
        let secret = String::from_utf8(out.to_vec()).map_err(KmsError::internal)?;
        let s = Secret::new(secret);
        self.users
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(akid.to_string(), (a.user.clone(), s.clone_secret()));
        Ok(Some((a.user, s)))
    }

    /// The user name of access key `akid`, if it exists.
    pub(crate) fn user_of(&self, akid: &str) -> KmsResult<Option<String>> {
        // Right after a signature check the key is cached: take the name without copying
        // the secret again.
        let cached = self
            .users
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(akid)
            .map(|(u, _)| u.clone());
        match cached {
            Some(u) => Ok(Some(u)),
            None => Ok(self.lookup(akid)?.map(|(u, _)| u)),
        }
    }
}

impl SecretLookup for Kms {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        match self.lookup(access_key_id) {
            Ok(found) => found.map(|(_, s)| s),
            Err(e) => {
                tracing::error!(error = %e, "access key lookup failed");
                None
            }
        }
    }
}
