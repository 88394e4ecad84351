#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Initialising and opening keystores, and ciphertexts that name keys the keystore does
//! not hold; on SQLite and PostgreSQL.

mod common;

use common::*;
use kura_format::{envelope, stream};
use kura_keys::{Error, Keyring};

fn init_twice_is_refused(b: Backend) {
    let (env, m, k) = Env::initialised_on(b);
    let active = k.active_data_key_id();
    let sealed = seal(&k, &no_ctx(), b"kept");
    let st = k.status();
    assert_eq!(st.generation, 1);
    assert_eq!(st.keks.len(), 1);
    assert_eq!(st.data_keys.len(), 1);
    assert_eq!(st.kek.master_key_id, m.id());
    assert_eq!(st.data_keys[0].state, "active");
    drop(k);

    for master in [&m, &Master::generate("other")] {
        let e = Keyring::init(env.store(), master.dyn_key(), settings(LONG), env.clock())
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                Error::Store(kura_store::Error::AlreadyInitialized { ref location })
                    if location.contains(env.location_word())
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("already initialised"), "{e}");
    }
    // The keystore is untouched.
    let k = env.open(&m);
    assert_eq!(k.active_data_key_id(), active);
    assert_eq!(k.status().generation, 1);
    assert_eq!(open(&k, &no_ctx(), &sealed).unwrap(), b"kept");
}

fn open_on_an_empty_keystore_is_not_initialized(b: Backend) {
    let env = Env::on(b);
    let m = Master::generate("m");
    for _ in 0..2 {
        let e = env.try_open(&m, None).err().unwrap();
        assert!(
            matches!(e, Error::Store(kura_store::Error::NotInitialized { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("kura init"), "{e}");
    }
    // Opening created no keys: init still works afterwards.
    let k = env.init(&m);
    assert_eq!(only_active(&k), k.active_data_key_id());
}

fn unknown_data_key_id_in_an_envelope(b: Backend) {
    let (_env, m, k) = Env::initialised_on(b);
    let mut sealed = seal(&k, &ctx(), b"record");
    let real = envelope_key_id(&sealed);
    let unknown = real ^ 0x0102_0304_0506_0708;
    sealed[4..12].copy_from_slice(&unknown.to_be_bytes());
    assert_eq!(envelope_key_id(&sealed), unknown);
    let e = open(&k, &ctx(), &sealed).err().unwrap();
    assert!(
        matches!(e, Error::UnknownDataKey(id) if id == unknown),
        "{e:?}"
    );
    assert!(e.to_string().contains(&unknown.to_string()), "{e}");

    // Pointing the envelope at another key this keystore does hold fails authentication
    // (the key id is bound), never decrypts to something.
    let other = k.rotate_data_key().unwrap();
    sealed[4..12].copy_from_slice(&other.to_be_bytes());
    assert!(matches!(
        open(&k, &ctx(), &sealed),
        Err(Error::Format(kura_format::Error::Decrypt))
    ));
    // Restored, it opens.
    sealed[4..12].copy_from_slice(&real.to_be_bytes());
    assert_eq!(open(&k, &ctx(), &sealed).unwrap(), b"record");

    // An envelope from another keystore names a key this one never had.
    let env2 = Env::on(b);
    let k2 = env2.init(&m);
    let foreign = seal(&k2, &ctx(), b"elsewhere");
    let id = envelope_key_id(&foreign);
    assert!(matches!(open(&k, &ctx(), &foreign), Err(Error::UnknownDataKey(x)) if x == id));

    // Not an envelope at all, or cut short: a format error, no lookup.
    assert!(matches!(
        open(&k, &ctx(), b"KRX\x01"),
        Err(Error::Format(kura_format::Error::BadMagic { .. }))
    ));
    assert!(matches!(
        open(&k, &ctx(), &sealed[..envelope::OVERHEAD - 1]),
        Err(Error::Format(kura_format::Error::Truncated { .. }))
    ));
}

fn unknown_data_key_id_in_a_stream(b: Backend) {
    let (_env, _m, k) = Env::initialised_on(b);
    let mut ct = seal_stream(&k, &no_ctx(), b"streamed data");
    let real = stream_key_id(&ct);
    let unknown = real.wrapping_add(1);
    ct[8..16].copy_from_slice(&unknown.to_be_bytes());
    let e = open_stream(&k, &no_ctx(), &ct).err().unwrap();
    assert!(
        matches!(e, Error::UnknownDataKey(id) if id == unknown),
        "{e:?}"
    );
    ct[8..16].copy_from_slice(&real.to_be_bytes());
    assert_eq!(open_stream(&k, &no_ctx(), &ct).unwrap(), b"streamed data");
    assert!(open_stream(&k, &no_ctx(), &ct[..stream::HEADER_LEN - 1]).is_err());
}

fn keyring_survives_reopen_with_many_handles(b: Backend) {
    // Opening does not write: a keystore opened many times keeps its generation.
    let env = Env::on(b);
    let m = Master::generate("m");
    drop(env.init(&m));
    for _ in 0..5 {
        let k = env.open(&m);
        assert_eq!(k.status().generation, 1);
        assert!(!k.refresh().unwrap());
    }
}

both_backends!(
    init_twice_is_refused,
    open_on_an_empty_keystore_is_not_initialized,
    unknown_data_key_id_in_an_envelope,
    unknown_data_key_id_in_a_stream,
    keyring_survives_reopen_with_many_handles,
);
