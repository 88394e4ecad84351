//! Master keys held in a PKCS#11 token (an HSM), through the `cryptoki` crate.
//!
//! The AES-256 key never leaves the token: the KEK is sealed inside it with `CKM_AES_GCM`
//! through `C_Encrypt` (a random 12-byte IV from kura's RNG, a 128-bit tag, the blob's
//! header and a fixed label as AAD) and opened with `C_Decrypt`. The blob is a wrapped key
//! of kind `04` (`kura_format::wrapped::external`), body `01 ‖ IV ‖ ciphertext ‖ tag`
//! (`docs/format.md`). The IV stored is the one the token used: a token in FIPS mode draws
//! its own and writes it back over kura's. Every new blob is opened once in the token and
//! compared with the KEK before it is returned, so no KEK is stored under a blob that
//! cannot be opened.
//!
//! Loading a module runs its initialisation code in this process, as any PKCS#11 client
//! does; `cryptoki` does it behind a safe API, so no `unsafe` is needed here. Each module
//! is loaded and `C_Initialize`d once per process (PKCS#11 allows one initialisation per
//! application) and never finalised, so several providers on one module coexist.
//!
//! One session per provider, logged in as the user, behind a mutex: calls from several
//! threads take turns (an unwrap is a fraction of a millisecond). If the token drops the
//! session or the login (a restarted HSM, a closed session, a logout), the provider opens
//! a new session, logs in, finds the key again (it must still have the same id) and
//! retries once, which is why it keeps the PIN, in a zeroizing string that no `Debug`,
//! log line or error shows.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use kura_crypto::{Key256, rng};
use kura_format::wrapped;
use zeroize::Zeroizing;

use super::MasterKey;
use crate::Error;
use crate::config::Pkcs11Spec;

/// The first bytes of the AAD of every KEK sealed in a token.
pub const AAD_LABEL: &[u8] = b"kura pkcs11 KEK v1";
/// The version byte that starts the body of a wrapped KEK.
pub const BODY_VERSION: u8 = 1;
/// GCM IV length.
pub const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const BODY_LEN: usize = 1 + IV_LEN + Key256::LEN + TAG_LEN;

/// An AES-256 key in a PKCS#11 token, used as the master key.
pub struct Pkcs11MasterKey {
    token: Token,
    id: String,
    source: String,
}

/// What is needed to (re)open a logged-in session and find the key again.
struct Token {
    ctx: Pkcs11,
    slot: Slot,
    pin: Zeroizing<String>,
    /// The spec without its PIN, for finding the key again and for error messages.
    spec: Pkcs11Spec,
    session: Mutex<Option<Open>>,
}

/// A logged-in session and the key's handle in it.
struct Open {
    session: Session,
    key: ObjectHandle,
}

impl Pkcs11MasterKey {
    /// Opens the module, finds the token, logs in and finds the key that `spec` names.
    pub fn open(spec: &Pkcs11Spec) -> Result<Self, Error> {
        let token = Token::open(spec)?;
        let session = token.login(false)?;
        let key = find_key(&session, spec)?;
        let (id, source) = describe(&session, key, spec)?;
        *token.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(Open { session, key });
        Ok(Self { token, id, source })
    }
}

/// Generates a new AES-256 key labelled `spec.key_label` inside the token (sensitive,
/// never extractable, for encryption and decryption only) and opens it as a master key.
/// Refuses if a secret key with that label exists already.
pub fn generate_key(spec: &Pkcs11Spec) -> Result<Pkcs11MasterKey, Error> {
    let token = Token::open(spec)?;
    let session = token.login(true)?;
    let existing = session
        .find_objects(&key_template(spec))
        .map_err(|e| failed("C_FindObjects", &e))?;
    if !existing.is_empty() {
        return Err(Error::Pkcs11Key {
            token: spec.token_label.clone(),
            key: spec.key_label.clone(),
            detail: "a secret key with this label exists already; choose another key-label, \
                     or use the existing key"
                .into(),
        });
    }
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Label(spec.key_label.as_bytes().to_vec()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|e| failed("C_GenerateKey", &e))?;
    drop(session);
    drop(token);
    Pkcs11MasterKey::open(spec)
}

impl MasterKey for Pkcs11MasterKey {
    fn id(&self) -> &str {
        &self.id
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn wrap_kek(&self, kek_id: u64, kek: &Key256) -> Result<Vec<u8>, Error> {
        let mut blob = wrapped::external(&self.id, kek_id)?;
        let iv: [u8; IV_LEN] = rng::nonce()?;
        let aad = aad(&blob);
        // `pIv` points into `used`, which the token may overwrite: a token in FIPS mode
        // (CloudHSM, Luna, nShield) ignores the IV offered and writes back the one it drew.
        // The mechanism is dropped with the statement, so `used` then holds the IV the
        // token actually used, and that is the one the blob must carry. A retry after a
        // lost session starts again from kura's IV.
        let (used_iv, sealed) = self.token.with_session(&self.id, "C_Encrypt", |s, key| {
            let mut used = iv;
            let params = GcmParams::new(&mut used, &aad, (TAG_LEN as u64 * 8).into())?;
            let sealed = s.encrypt(&Mechanism::AesGcm(params), key, kek.expose_secret())?;
            Ok((used, sealed))
        })?;
        if sealed.len() != Key256::LEN + TAG_LEN {
            return Err(Error::Pkcs11 {
                operation: "C_Encrypt",
                detail: format!(
                    "the token returned {} bytes for CKM_AES_GCM of 32 bytes, not 48",
                    sealed.len()
                ),
            });
        }
        blob.reserve(BODY_LEN);
        blob.push(BODY_VERSION);
        blob.extend_from_slice(&used_iv);
        blob.extend_from_slice(&sealed);
        // Never hand back a blob the token cannot open: the caller commits the KEK under it.
        self.check_opens_to(kek_id, kek, &blob)?;
        Ok(blob)
    }

    fn unwrap_kek(&self, kek_id: u64, blob: &[u8]) -> Result<Key256, Error> {
        match self.open_in_token(kek_id, blob)? {
            Ok(kek) => Ok(Key256::from_slice(&kek, "KEK")?),
            Err(Failure::Ck(CkError::Pkcs11(
                RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                _,
            ))) => Err(self.not_authentic(kek_id)),
            // Some tokens (SoftHSM2 among them) report a tag that does not verify as a
            // general failure: if a fresh KEK still goes round the token, the token is
            // healthy and it was the blob.
            Err(Failure::Ck(CkError::Pkcs11(
                RvError::GeneralError | RvError::FunctionFailed,
                _,
            ))) if self.round_trips() => Err(self.not_authentic(kek_id)),
            Err(f) => Err(f.into_error("C_Decrypt")),
        }
    }
}

impl Pkcs11MasterKey {
    /// Checks the blob's shape, then `C_Decrypt`s its body: the outer error is a malformed
    /// blob, the inner one the token's answer.
    fn open_in_token(
        &self,
        kek_id: u64,
        blob: &[u8],
    ) -> Result<Result<Zeroizing<Vec<u8>>, Failure>, Error> {
        let (header, body) = wrapped::open_external(kek_id, blob)?;
        if body.len() != BODY_LEN || body[0] != BODY_VERSION {
            return Err(kura_format::Error::Malformed {
                what: "wrapped key",
                detail: format!(
                    "a KEK under a PKCS#11 key has a {BODY_LEN}-byte body of version {BODY_VERSION}, \
                     not {} bytes starting with {}",
                    body.len(),
                    body[0]
                ),
            }
            .into());
        }
        let aad = aad(header);
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&body[1..1 + IV_LEN]);
        let sealed = &body[1 + IV_LEN..];
        Ok(self.token.try_with_session(&self.id, |s, key| {
            let mut iv = iv;
            let params = GcmParams::new(&mut iv, &aad, (TAG_LEN as u64 * 8).into())?;
            s.decrypt(&Mechanism::AesGcm(params), key, sealed)
                .map(Zeroizing::new)
        }))
    }

    /// Opens `blob` in the token once and checks, in constant time, that it gives back
    /// `kek`: a wrap is only as good as the unwrap it allows.
    fn check_opens_to(&self, kek_id: u64, kek: &Key256, blob: &[u8]) -> Result<(), Error> {
        round_trip_verdict(kek, self.open_in_token(kek_id, blob)?)
    }

    fn not_authentic(&self, kek_id: u64) -> Error {
        Error::KekUnwrap {
            kek_id,
            master_key_id: self.id.clone(),
        }
    }

    /// Whether a random KEK wraps and unwraps through the token.
    fn round_trips(&self) -> bool {
        let Ok(probe) = Key256::generate() else {
            return false;
        };
        let Ok(blob) = self.wrap_kek(0, &probe) else {
            return false;
        };
        matches!(
            self.open_in_token(0, &blob),
            Ok(Ok(back)) if kura_crypto::ct_eq(&back, probe.expose_secret())
        )
    }
}

/// Whether a freshly wrapped KEK came back out of the token as `kek` (`opened` is the
/// token's answer to `C_Decrypt` of the new blob); if not, an error saying that nothing
/// was wrapped. A lost session that could not be re-opened keeps its own error.
fn round_trip_verdict(
    kek: &Key256,
    opened: Result<Zeroizing<Vec<u8>>, Failure>,
) -> Result<(), Error> {
    let why = match opened {
        Ok(back) if kura_crypto::ct_eq(&back, kek.expose_secret()) => return Ok(()),
        Ok(_) => "C_Decrypt of the new blob gave back another key".to_string(),
        Err(Failure::Ck(e)) => format!("C_Decrypt of the new blob failed: {}", rv_text(&e)),
        Err(Failure::Reopen(e)) => return Err(e),
    };
    Err(Error::Pkcs11 {
        operation: "C_Encrypt",
        detail: format!(
            "the KEK the token sealed with CKM_AES_GCM does not open again ({why}), so it was \
             not wrapped and nothing was stored under it"
        ),
    })
}

/// `AAD_LABEL ‖ header ‖ BODY_VERSION`.
fn aad(header: &[u8]) -> Vec<u8> {
    [AAD_LABEL, header, &[BODY_VERSION]].concat()
}

/// Why an operation in a session failed: the token said no, or the session was lost and
/// could not be re-opened (already an [`Error`]).
enum Failure {
    Ck(CkError),
    Reopen(Error),
}

impl Failure {
    fn into_error(self, operation: &'static str) -> Error {
        match self {
            Self::Ck(e) => failed(operation, &e),
            Self::Reopen(e) => e,
        }
    }
}

impl Token {
    fn open(spec: &Pkcs11Spec) -> Result<Self, Error> {
        let Some(pin) = spec.pin.as_ref() else {
            return Err(Error::Pkcs11PinUnset {
                variable: spec.pin_env.clone(),
                origin: spec.origin.clone(),
            });
        };
        let ctx = context(&spec.module, &spec.origin)?;
        // Initialised tokens only: SoftHSM2 always offers one more, empty, slot.
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| failed("C_GetSlotList", &e))?;
        let mut present = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| failed("C_GetTokenInfo", &e))?;
            let label = info.label().trim_end().to_string();
            if label == spec.token_label && found.is_none() {
                found = Some(slot);
            }
            present.push(format!("{label:?}"));
        }
        let Some(slot) = found else {
            return Err(Error::Pkcs11TokenMissing {
                token: spec.token_label.clone(),
                module: spec.module.clone(),
                origin: spec.origin.clone(),
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            });
        };
        Ok(Self {
            ctx,
            slot,
            pin: Zeroizing::new(pin.as_str().to_owned()),
            spec: Pkcs11Spec {
                module: spec.module.clone(),
                token_label: spec.token_label.clone(),
                key_label: spec.key_label.clone(),
                pin_env: spec.pin_env.clone(),
                pin: None,
                origin: spec.origin.clone(),
            },
            session: Mutex::new(None),
        })
    }

    /// A new session, logged in as the user.
    fn login(&self, read_write: bool) -> Result<Session, Error> {
        let session = if read_write {
            self.ctx.open_rw_session(self.slot)
        } else {
            self.ctx.open_ro_session(self.slot)
        }
        .map_err(|e| failed("C_OpenSession", &e))?;
        let pin = AuthPin::new(self.pin.as_str().into());
        match session.login(UserType::User, Some(&pin)) {
            // Login is per application and token: another provider in this process may
            // have logged in already.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                Err(Error::Pkcs11PinIncorrect {
                    token: self.spec.token_label.clone(),
                    variable: self.spec.pin_env.clone(),
                })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Error::Pkcs11PinLocked {
                token: self.spec.token_label.clone(),
            }),
            Err(e) => Err(failed("C_Login", &e)),
        }
    }

    /// Runs `op` in the provider's session with the key's handle; if the token lost the
    /// session, opens a new one, logs in, finds the key again (checking that it is still
    /// the key `id` names) and runs `op` once more.
    fn with_session<T>(
        &self,
        id: &str,
        operation: &'static str,
        op: impl Fn(&Session, ObjectHandle) -> Result<T, CkError>,
    ) -> Result<T, Error> {
        self.try_with_session(id, op)
            .map_err(|f| f.into_error(operation))
    }

    fn try_with_session<T>(
        &self,
        id: &str,
        op: impl Fn(&Session, ObjectHandle) -> Result<T, CkError>,
    ) -> Result<T, Failure> {
        // A panic while holding the lock cannot leave the session half-changed: every
        // operation here is a single C_*Init + C_* pair that the token resets itself.
        let mut guard = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = guard.as_ref() {
            match op(&o.session, o.key) {
                Err(CkError::Pkcs11(rv, _)) if session_lost(rv) => {}
                other => return other.map_err(Failure::Ck),
            }
        }
        *guard = None;
        let o = self.reopen(id).map_err(Failure::Reopen)?;
        let out = op(&o.session, o.key).map_err(Failure::Ck);
        *guard = Some(o);
        out
    }

    /// A new logged-in session and the key found again in it.
    fn reopen(&self, id: &str) -> Result<Open, Error> {
        let session = self.login(false)?;
        let key = find_key(&session, &self.spec)?;
        let (now, _) = describe(&session, key, &self.spec)?;
        if now != id {
            return Err(Error::Pkcs11Key {
                token: self.spec.token_label.clone(),
                key: self.spec.key_label.clone(),
                detail: format!(
                    "the key with this label changed while kura ran: it was {id}, it is now {now}; \
                     restart kura (the keystore names the key that wrapped the KEK)"
                ),
            });
        }
        Ok(Open { session, key })
    }
}

/// Whether `rv` means the session is gone (and a new one may work).
fn session_lost(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::ObjectHandleInvalid
            | RvError::KeyHandleInvalid
    )
}

/// The module at `module`, loaded and initialised once per process.
fn context(module: &Path, origin: &str) -> Result<Pkcs11, Error> {
    static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let module_error = |detail: String| Error::Pkcs11Module {
        module: module.to_path_buf(),
        origin: origin.to_string(),
        detail,
    };
    let path = module.canonicalize().map_err(|e| {
        module_error(if e.kind() == std::io::ErrorKind::NotFound {
            "no such file".into()
        } else {
            e.to_string()
        })
    })?;
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ctx)) = modules.iter().find(|(p, _)| *p == path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(&path).map_err(|e| module_error(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(module_error(format!(
                "C_Initialize failed: {}",
                rv_text(&e)
            )));
        }
    }
    modules.push((path, ctx.clone()));
    Ok(ctx)
}

fn key_template(spec: &Pkcs11Spec) -> [Attribute; 2] {
    [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(spec.key_label.as_bytes().to_vec()),
    ]
}

/// The one secret key labelled `spec.key_label`, checked to be an AES-256 key that may
/// encrypt and decrypt.
fn find_key(session: &Session, spec: &Pkcs11Spec) -> Result<ObjectHandle, Error> {
    let key_error = |detail: String| Error::Pkcs11Key {
        token: spec.token_label.clone(),
        key: spec.key_label.clone(),
        detail,
    };
    let found = session
        .find_objects(&key_template(spec))
        .map_err(|e| failed("C_FindObjects", &e))?;
    let key = match found.as_slice() {
        [key] => *key,
        [] => {
            return Err(key_error(format!(
                "the token holds no secret key with this label; fix key-label in {}, or create \
                 the key with `kura pkcs11 keygen --module {} --token-label {} --key-label {} --pin-env {}`",
                spec.origin,
                spec.module.display(),
                spec.token_label,
                spec.key_label,
                spec.pin_env
            )));
        }
        many => {
            return Err(key_error(format!(
                "{} secret keys have this label; give the master key a label of its own",
                many.len()
            )));
        }
    };
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
            ],
        )
        .map_err(|e| failed("C_GetAttributeValue", &e))?;
    let (mut aes, mut len, mut encrypt, mut decrypt) = (false, None, false, false);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => aes = t == KeyType::AES,
            Attribute::ValueLen(n) => len = Some(u64::from(n)),
            Attribute::Encrypt(b) => encrypt = b,
            Attribute::Decrypt(b) => decrypt = b,
            _ => {}
        }
    }
    if !aes || len != Some(32) {
        return Err(key_error(format!(
            "is not an AES-256 key ({}); the master key must be a 32-byte AES key",
            match (aes, len) {
                (false, _) => "its key type is not CKK_AES".to_string(),
                (true, Some(n)) => format!("an AES key of {n} bytes"),
                (true, None) => "an AES key of unknown length".to_string(),
            }
        )));
    }
    if !(encrypt && decrypt) {
        return Err(key_error(
            "may not be used to encrypt and decrypt (CKA_ENCRYPT and CKA_DECRYPT must both be \
             true); create a key for encryption, e.g. with `kura pkcs11 keygen`"
                .into(),
        ));
    }
    Ok(key)
}

/// The id (`pkcs11:<token>/<key>` and the key's check value, else its CKA_ID) and source.
fn describe(
    session: &Session,
    key: ObjectHandle,
    spec: &Pkcs11Spec,
) -> Result<(String, String), Error> {
    let attrs = session
        .get_attributes(key, &[AttributeType::CheckValue, AttributeType::Id])
        .map_err(|e| failed("C_GetAttributeValue", &e))?;
    let (mut kcv, mut ckid) = (Vec::new(), Vec::new());
    for a in attrs {
        match a {
            Attribute::CheckValue(v) => kcv = v,
            Attribute::Id(v) => ckid = v,
            _ => {}
        }
    }
    let mut id = format!("pkcs11:{}/{}", spec.token_label, spec.key_label);
    if !kcv.is_empty() {
        id.push_str(&format!("#kcv:{}", hex::encode(&kcv)));
    } else if !ckid.is_empty() {
        id.push_str(&format!("#id:{}", hex::encode(&ckid)));
    }
    if id.len() > 255 {
        return Err(Error::Pkcs11Key {
            token: spec.token_label.clone(),
            key: spec.key_label.clone(),
            detail: format!(
                "the master key id {id:?} is {} bytes, longer than the 255 a wrapped key can \
                 name; use a shorter key-label",
                id.len()
            ),
        });
    }
    let source = format!(
        "PKCS#11 module {}, token {:?}, key {:?}",
        spec.module.display(),
        spec.token_label,
        spec.key_label
    );
    Ok((id, source))
}

/// An [`Error::Pkcs11`] for `operation`.
fn failed(operation: &'static str, e: &CkError) -> Error {
    Error::Pkcs11 {
        operation,
        detail: rv_text(e),
    }
}

/// The PKCS#11 return value's name (`CKR_DEVICE_ERROR` as `DeviceError`), or the error.
fn rv_text(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, _) => format!("{rv:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_is_label_header_and_version() {
        let header = wrapped::external("pkcs11:t/k", 5).unwrap();
        let a = aad(&header);
        assert!(a.starts_with(b"kura pkcs11 KEK v1KRW\x01\x04\x0apkcs11:t/k"));
        assert_eq!(a.len(), AAD_LABEL.len() + header.len() + 1);
        assert_eq!(a.last(), Some(&1));
        assert_eq!(BODY_LEN, 61);
    }

    #[test]
    fn the_round_trip_check_accepts_only_the_kek() {
        let kek = Key256::generate().unwrap();
        let same = Zeroizing::new(kek.expose_secret().to_vec());
        round_trip_verdict(&kek, Ok(same)).unwrap();

        let mut other = kek.expose_secret().to_vec();
        other[31] ^= 1;
        let short = kek.expose_secret()[..31].to_vec();
        let refused = Failure::Ck(CkError::Pkcs11(
            RvError::EncryptedDataInvalid,
            cryptoki::context::Function::Decrypt,
        ));
        for (opened, needle) in [
            (Ok(Zeroizing::new(other)), "gave back another key"),
            (Ok(Zeroizing::new(short)), "gave back another key"),
            (Ok(Zeroizing::new(Vec::new())), "gave back another key"),
            (Err(refused), "EncryptedDataInvalid"),
        ] {
            let e = round_trip_verdict(&kek, opened).err().unwrap();
            assert!(
                matches!(
                    e,
                    Error::Pkcs11 {
                        operation: "C_Encrypt",
                        ..
                    }
                ),
                "{e}"
            );
            let text = e.to_string();
            assert!(text.contains(needle), "{text}");
            assert!(text.contains("does not open again"), "{text}");
            assert!(text.contains("nothing was stored"), "{text}");
        }

        // A session that could not be re-opened keeps its own error.
        let lost = Error::Pkcs11PinLocked { token: "t".into() };
        let e = round_trip_verdict(&kek, Err(Failure::Reopen(lost)))
            .err()
            .unwrap();
        assert!(matches!(e, Error::Pkcs11PinLocked { .. }), "{e}");
    }

    /// Against a real SoftHSM2 token, in a child process as in `tests/pkcs11_master_key.rs`
    /// (SoftHSM reads its configuration once per process).
    #[test]
    fn a_blob_that_does_not_open_to_the_kek_is_refused() {
        use kura_testkit::softhsm;

        const PIN: &str = "kura-user-1234";
        const TOKEN_VAR: &str = "KURA_TEST_TOKEN";
        if !softhsm::in_child() {
            let hsm = kura_testkit::SoftHsm::new().unwrap();
            let label = "kura-unit-round-trip";
            hsm.init_token(label, PIN, "kura-so-5678").unwrap();
            let name = concat!(
                module_path!(),
                "::a_blob_that_does_not_open_to_the_kek_is_refused"
            );
            let name = name.split_once("::").unwrap().1;
            hsm.run_test(name, &[(TOKEN_VAR, label.as_ref())]).unwrap();
            return;
        }
        let spec = Pkcs11Spec {
            module: softhsm::module_path().unwrap(),
            token_label: std::env::var(TOKEN_VAR).unwrap(),
            key_label: "kura-master".into(),
            pin_env: "KURA_TEST_HSM_PIN".into(),
            pin: Some(Zeroizing::new(PIN.into())),
            origin: "[security.encryption.master-key]".into(),
        };
        let mk = generate_key(&spec).unwrap();
        let kek = Key256::generate().unwrap();
        let blob = mk.wrap_kek(9, &kek).unwrap();
        mk.check_opens_to(9, &kek, &blob).unwrap();

        // The blob with another IV than the one the token used (what kura stored before it
        // read the IV back from a token that draws its own), another ciphertext or tag.
        let body_at = blob.len() - BODY_LEN;
        for at in [
            body_at + 1,
            body_at + IV_LEN,
            body_at + 1 + IV_LEN,
            blob.len() - 1,
        ] {
            let mut bad = blob.clone();
            bad[at] ^= 0x80;
            let e = mk.check_opens_to(9, &kek, &bad).err().unwrap();
            assert!(
                matches!(
                    e,
                    Error::Pkcs11 {
                        operation: "C_Encrypt",
                        ..
                    }
                ),
                "byte {at}: {e}"
            );
            assert!(e.to_string().contains("does not open again"), "{e}");
        }

        // A blob that opens, but to another key than the one being wrapped.
        let other = Key256::generate().unwrap();
        let e = mk.check_opens_to(9, &other, &blob).err().unwrap();
        assert!(e.to_string().contains("gave back another key"), "{e}");
    }

    #[test]
    fn a_missing_module_is_named() {
        let e = context(Path::new("/nonexistent/libpkcs11.so"), "[x]")
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(text.contains("/nonexistent/libpkcs11.so"), "{text}");
        assert!(text.contains("no such file"), "{text}");
    }
}
