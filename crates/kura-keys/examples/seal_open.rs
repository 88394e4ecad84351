//! Using kura from an application: `cargo run -p kura-keys --example seal_open`.
//!
//! Creates a throwaway keystore in a temporary directory with a generated master key,
//! seals values from 8 threads sharing one [`Vault`], opens them all, then reads a legacy
//! AES-128-CBC value (as old application data holds it) with the dual reader.
//!
//! A real application opens its configured keystore instead, exactly as the CLI would:
//! `Vault::from_config(None, &Overrides::default())` (KURA_MASTER_KEY_FILE, KURA_DATA_DIR…).

use std::error::Error;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kura_crypto::Key256;
use kura_format::EncryptionContext;
use kura_keys::clock::SystemClock;
use kura_keys::config::{DEFAULT_ROTATION_PERIOD, Method};
use kura_keys::{Keyring, KeyringSettings, LegacyFormat, LegacyKey, LocalMasterKey, Vault};
use kura_store::{Keystore, SqliteKeystore};

const THREADS: usize = 8;
const PER_THREAD: usize = 100;

fn main() -> Result<(), Box<dyn Error>> {
    // A throwaway keystore and master key. Never keep a master key next to its keystore.
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Keystore> = Arc::new(SqliteKeystore::open(&dir.path().join("keystore.db"))?);
    let master = Arc::new(LocalMasterKey::new(
        &Key256::generate()?,
        "generated".into(),
    )?);
    let keyring = Keyring::init(
        store,
        master,
        KeyringSettings::new(Method::default(), DEFAULT_ROTATION_PERIOD),
        Arc::new(SystemClock),
    )?;
    let vault = Vault::from_keyring(keyring);
    println!("keystore created in {}", dir.path().display());

    // The context binds a value to where it belongs; opening must repeat it.
    let mut ctx = EncryptionContext::new();
    ctx.insert("table", "customers");
    ctx.insert("column", "email");

    // One vault, shared by reference between threads.
    let sealed = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (vault, ctx) = (&vault, &ctx);
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let plain = format!("user{t}-{i}@example.com");
                            vault.seal(plain.as_bytes(), ctx).map(|env| (plain, env))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let part = h.join().map_err(|_| "a sealing thread panicked")??;
            all.extend(part);
        }
        Ok::<_, Box<dyn Error>>(all)
    })?;
    println!(
        "sealed {} values from {THREADS} threads; the first envelope is {} bytes:\n  {}",
        sealed.len(),
        sealed.first().map_or(0, |(_, e)| e.len()),
        sealed
            .first()
            .map(|(_, e)| STANDARD.encode(e))
            .unwrap_or_default()
    );

    for (plain, env) in &sealed {
        let opened = vault.open(env, &ctx)?;
        if opened.as_slice() != plain.as_bytes() {
            return Err(format!("{plain} did not round-trip").into());
        }
    }
    println!("opened all {} envelopes", sealed.len());

    // Another context does not open them.
    let mut wrong = EncryptionContext::new();
    wrong.insert("table", "orders");
    if let Some((_, env)) = sealed.first() {
        match vault.open(env, &wrong) {
            Err(e) => println!("with another context: {e}"),
            Ok(_) => return Err("opened under the wrong context".into()),
        }
    }

    // A legacy value, as an old application stored it: base64(IV ‖ AES-128-CBC ciphertext).
    let legacy_key = LegacyKey::from_text(b"000102030405060708090a0b0c0d0e0f")?;
    let iv = [0x42u8; 16];
    let mut raw = iv.to_vec();
    raw.extend(kura_crypto::legacy::encrypt_cbc(
        &hex::decode("000102030405060708090a0b0c0d0e0f")?,
        iv,
        b"legacy@example.com",
    )?);
    let legacy_value = STANDARD.encode(&raw);
    let legacy = Some((&legacy_key, LegacyFormat::Base64IvCt));

    // The dual reader takes either kind of value from the same column.
    let envelope_text = sealed
        .first()
        .map(|(_, e)| STANDARD.encode(e))
        .unwrap_or_default();
    for value in [legacy_value.as_str(), envelope_text.as_str()] {
        let (plain, origin) = vault.open_any(value.as_bytes(), &ctx, legacy)?;
        println!(
            "open_any: {:?} value -> {}",
            origin,
            String::from_utf8_lossy(&plain)
        );
    }
    // Re-seal the legacy value to migrate it.
    let (plain, _) = vault.open_any(legacy_value.as_bytes(), &ctx, legacy)?;
    let migrated = vault.seal(&plain, &ctx)?;
    println!(
        "migrated the legacy value into a {}-byte envelope",
        migrated.len()
    );
    Ok(())
}
