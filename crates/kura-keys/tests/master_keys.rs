#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The master key guards the KEK: a wrong one is refused with a useful message, the
//! previous one recovers a keystore after a master key change, and an altered KEK or data
//! key blob in the keystore is refused, never turned into wrong keys.

mod common;

use common::*;
use kura_keys::{Error, Keyring, OpenReport};

#[test]
fn wrong_master_key_is_refused() {
    let env = Env::new();
    let m1 = Master::generate("m1");
    let m2 = Master::generate("m2");
    let m3 = Master::generate("m3");
    let k = env.init(&m1);
    let kek_id = k.status().kek.id;
    drop(k);

    let e = env.try_open(&m2, None).err().unwrap();
    let Error::WrongMasterKey {
        kek_id: id,
        ref wrapped_by,
        ref current,
        ref previous,
    } = e
    else {
        panic!("{e:?}");
    };
    assert_eq!(id.to_string(), kek_id);
    assert_eq!(*wrapped_by, m1.id());
    assert_eq!(*current, m2.id());
    assert_eq!(previous, "");
    let msg = e.to_string();
    assert!(msg.contains(&format!("KEK {kek_id}")), "{msg}");
    assert!(msg.contains("previous-master-key"), "{msg}");
    assert!(msg.contains(&m1.id()) && msg.contains(&m2.id()), "{msg}");

    // A previous master key that is not the right one either is named in the message.
    let e = env.try_open(&m2, Some(&m3)).err().unwrap();
    assert!(matches!(e, Error::WrongMasterKey { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&m3.id()), "{msg}");
    assert!(msg.contains("previous-master-key"), "{msg}");

    // Nothing was changed by the failed attempts.
    let (k, report) = env.try_open(&m1, Some(&m2)).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(k.status().kek.master_key_id, m1.id());
}

#[test]
fn previous_master_key_recovers_and_rewraps() {
    let env = Env::new();
    let old = Master::generate("old");
    let new = Master::generate("new");
    let k = env.init(&old);
    let e1 = seal(&k, &ctx(), b"sealed under the old master key");
    let s1 = seal_stream(&k, &no_ctx(), &stream_plaintext(3));
    let generation = k.status().generation;
    drop(k);

    assert!(matches!(
        env.try_open(&new, None),
        Err(Error::WrongMasterKey { .. })
    ));
    let (k, report) = env.try_open(&new, Some(&old)).unwrap();
    assert_eq!(report.kek_rewrapped_from, Some(old.id()));
    assert_eq!(
        open(&k, &ctx(), &e1).unwrap(),
        b"sealed under the old master key"
    );
    assert_eq!(
        open_stream(&k, &no_ctx(), &s1).unwrap(),
        stream_plaintext(3)
    );
    let st = k.status();
    assert_eq!(st.master_key.id, new.id());
    assert_eq!(st.previous_master_key.unwrap().id, old.id());
    assert_eq!(st.kek.master_key_id, new.id());
    assert_eq!(st.generation, generation + 1);
    // The keyring keeps working: new data, a rotation.
    let e2 = seal(&k, &no_ctx(), b"after recovery");
    k.rotate_data_key().unwrap();
    drop(k);

    // The re-wrap was persisted: the new master key alone is enough now...
    let (k, report) = env.try_open(&new, None).unwrap();
    assert_eq!(report.kek_rewrapped_from, None);
    assert_eq!(
        open(&k, &ctx(), &e1).unwrap(),
        b"sealed under the old master key"
    );
    assert_eq!(open(&k, &no_ctx(), &e2).unwrap(), b"after recovery");
    // ...and the old one alone no longer is.
    let e = env.try_open(&old, None).err().unwrap();
    assert!(matches!(e, Error::WrongMasterKey { .. }), "{e:?}");
    // Opening again with both configured does not re-wrap again.
    let (_, report) = env.try_open(&new, Some(&old)).unwrap();
    assert_eq!(report.kek_rewrapped_from, None);
}

#[test]
fn keyring_keeps_working_after_master_key_rotation() {
    let env = Env::new();
    let m1 = Master::generate("m1");
    let m2 = Master::generate("m2");
    let k = env.init(&m1);
    let e1 = seal(&k, &ctx(), b"one");
    k.rotate_master_key(m2.dyn_key()).unwrap();
    // Every later change is made with the new master key.
    let kek = k.rotate_kek().unwrap();
    let st = k.status();
    assert_eq!(st.kek.id, kek.to_string());
    assert_eq!(st.kek.master_key_id, m2.id());
    k.rotate_data_key().unwrap();
    assert_eq!(open(&k, &ctx(), &e1).unwrap(), b"one");
    let k2 = env.open(&m2);
    assert_eq!(open(&k2, &ctx(), &e1).unwrap(), b"one");
    assert_eq!(k2.active_data_key_id(), k.active_data_key_id());
}

#[test]
fn tampered_kek_blob_is_refused() {
    let (env, m, k) = Env::initialised();
    let sealed = seal(&k, &no_ctx(), b"guarded");
    drop(k);
    let (id, blob) = env.kek_blob();
    // Header: magic, version, kind, W, W bytes of master key id, 8 bytes of KEK id; then
    // nonce, commitment, ciphertext and tag, all authenticated.
    let w = blob[5] as usize;
    assert_eq!(&blob[6..6 + w], m.id().as_bytes());
    let body = 6 + w + 8;

    for i in 0..blob.len() {
        let mut bad = blob.clone();
        bad[i] ^= 0x01;
        env.set_kek_blob(id, &bad);
        let r = env.try_open(&m, None);
        match r {
            Ok(_) => panic!("a KEK blob with byte {i} flipped was accepted"),
            Err(Error::KekUnwrap {
                kek_id,
                ref master_key_id,
            }) => {
                assert_eq!(kek_id as i64, id);
                assert_eq!(*master_key_id, m.id());
                let msg = r.as_ref().err().unwrap().to_string();
                assert!(msg.contains(&id.to_string()), "{msg}");
                assert!(msg.contains("restore the keystore"), "{msg}");
            }
            Err(ref e) => assert!(i < body, "byte {i}: {e:?}"),
        }
        if i >= body {
            assert!(
                matches!(r, Err(Error::KekUnwrap { .. })),
                "byte {i} of the authenticated body flipped"
            );
        }
    }
    // Truncated blobs are refused too.
    for len in [0, 3, 5, body, blob.len() - 1] {
        env.set_kek_blob(id, &blob[..len]);
        assert!(env.try_open(&m, None).is_err(), "truncated to {len}");
    }

    // The original blob still works (the test altered only what it meant to).
    env.set_kek_blob(id, &blob);
    let k = env.open(&m);
    assert_eq!(open(&k, &no_ctx(), &sealed).unwrap(), b"guarded");
}

#[test]
fn tampered_data_key_blob_is_refused() {
    let (env, m, k) = Env::initialised();
    let old_sealed = seal(&k, &no_ctx(), b"old");
    let old = k.active_data_key_id();
    let new = k.rotate_data_key().unwrap();
    let new_sealed = seal(&k, &no_ctx(), b"new");
    drop(k);

    for target in [old, new] {
        let blob = env.data_key_blob(target);
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x80;
            env.set_data_key_blob(target, &bad);
            match env.try_open(&m, None) {
                Ok(_) => panic!("data key {target}: blob with byte {i} flipped was accepted"),
                Err(Error::Format(_)) => {}
                Err(e) => panic!("data key {target}, byte {i}: unexpected {e:?}"),
            }
        }
        for len in [0, 4, 20, blob.len() - 16, blob.len() - 1] {
            env.set_data_key_blob(target, &blob[..len]);
            assert!(
                matches!(env.try_open(&m, None), Err(Error::Format(_))),
                "truncated to {len}"
            );
        }
        env.set_data_key_blob(target, &blob);
    }

    // Swapping the two blobs (each valid under the KEK) is detected: the blob names its key.
    let (a, b) = (env.data_key_blob(old), env.data_key_blob(new));
    env.set_data_key_blob(old, &b);
    env.set_data_key_blob(new, &a);
    let e = env.try_open(&m, None).err().unwrap();
    assert!(
        matches!(e, Error::Format(kura_format::Error::KeyMismatch { .. })),
        "{e:?}"
    );
    env.set_data_key_blob(old, &a);
    env.set_data_key_blob(new, &b);

    let k: Keyring = env.open(&m);
    assert_eq!(open(&k, &no_ctx(), &old_sealed).unwrap(), b"old");
    assert_eq!(open(&k, &no_ctx(), &new_sealed).unwrap(), b"new");
}

#[test]
fn kek_blob_moved_to_another_master_key_id_is_refused() {
    // The master key id stored beside the blob is not trusted: the blob's own header is.
    let env = Env::new();
    let m = Master::generate("m");
    let other = Master::generate("other");
    drop(env.init(&m));
    let n = env
        .sql()
        .execute("UPDATE keks SET master_key_id = ?1", [other.id()])
        .unwrap();
    assert_eq!(n, 1);
    assert!(env.try_open(&m, None).is_ok());
    assert!(matches!(
        env.try_open(&other, None),
        Err(Error::WrongMasterKey { .. })
    ));
}
