#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two keyrings on one keystore (as two processes or cluster nodes would have), on SQLite and
//! PostgreSQL: each sees the other's rotations, and racing rotations never leave two active
//! keys.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use kura_keys::{Error, Keyring};
use kura_store::{DataKeyState, KekState};

fn keyring_b_reads_what_keyring_a_sealed_after_rotating(b: Backend) {
    let (env, m, a) = Env::initialised_on(b);
    let b = env.open(&m);
    let id1 = a.active_data_key_id();
    assert_eq!(b.active_data_key_id(), id1);

    let e1 = seal(&a, &ctx(), b"before");
    assert_eq!(open(&b, &ctx(), &e1).unwrap(), b"before");

    let id2 = a.rotate_data_key().unwrap();
    let e2 = seal(&a, &ctx(), b"after");
    let s2 = seal_stream(&a, &no_ctx(), &stream_plaintext(9));
    assert_eq!(envelope_key_id(&e2), id2);
    // B has never seen id2: it reloads on the unknown id instead of failing.
    assert_eq!(open(&b, &ctx(), &e2).unwrap(), b"after");
    assert_eq!(b.active_data_key_id(), id2);
    assert_eq!(data_keys_in(&b, "decrypt-only"), vec![id1]);
    assert_eq!(
        open_stream(&b, &no_ctx(), &s2).unwrap(),
        stream_plaintext(9)
    );
    // And B now seals under the new key.
    assert_eq!(envelope_key_id(&seal(&b, &no_ctx(), b"x")), id2);

    // The same for a stream sealed after another rotation.
    let id3 = a.rotate_data_key().unwrap();
    let s3 = seal_stream(&a, &no_ctx(), b"third");
    assert_eq!(stream_key_id(&s3), id3);
    assert_eq!(open_stream(&b, &no_ctx(), &s3).unwrap(), b"third");

    // After A rotates the KEK, B still opens everything, old and new.
    a.rotate_kek().unwrap();
    let id4 = a.rotate_data_key().unwrap();
    let e4 = seal(&a, &no_ctx(), b"fourth");
    assert_eq!(open(&b, &no_ctx(), &e4).unwrap(), b"fourth");
    assert_eq!(open(&b, &ctx(), &e1).unwrap(), b"before");
    assert_eq!(b.status().kek.id, a.status().kek.id);
    assert_eq!(b.active_data_key_id(), id4);

    // B's own rotation is seen by A the same way.
    b.rotate_data_key().unwrap();
    let e5 = seal(&b, &no_ctx(), b"fifth");
    assert_eq!(open(&a, &no_ctx(), &e5).unwrap(), b"fifth");

    // A destroys a key: B reports it destroyed once it reloads.
    a.destroy_data_key(id1).unwrap();
    assert!(b.refresh().unwrap());
    assert!(matches!(open(&b, &ctx(), &e1), Err(Error::DataKeyDestroyed(id)) if id == id1));
    assert!(!b.refresh().unwrap());
}

/// Checks the keystore as a freshly opened keyring and the raw records see it.
fn check_one_active(env: &Env, m: &Master) -> Keyring {
    let snap = env.store().snapshot().unwrap().unwrap();
    let keks: Vec<_> = snap
        .keks
        .iter()
        .filter(|k| k.state == KekState::Active)
        .collect();
    assert_eq!(keks.len(), 1);
    let active: Vec<_> = snap
        .data_keys
        .iter()
        .filter(|d| d.state == DataKeyState::Active)
        .collect();
    assert_eq!(active.len(), 1, "{:#?}", snap.data_keys);
    assert!(
        snap.data_keys
            .iter()
            .all(|d| d.kek_id == keks[0].id && d.state != DataKeyState::Destroyed)
    );
    let fresh = env.open(m);
    assert_eq!(only_active(&fresh), active[0].id);
    fresh
}

fn concurrent_rotations_never_make_two_active_keys(b: Backend) {
    const THREADS: usize = 4;
    const ROUNDS: usize = 12;
    let env = Env::on(b);
    let m = Arc::new(Master::generate("m"));
    drop(env.init(&m));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            // Each thread has its own keystore handle and keyring, like a process.
            let k = env.open(&m);
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut rotated = 0;
                let mut sealed = Vec::new();
                for r in 0..ROUNDS {
                    let result = if t == 0 && r % 4 == 3 {
                        k.rotate_kek().map(drop)
                    } else {
                        k.rotate_data_key().map(drop)
                    };
                    match result {
                        Ok(()) => rotated += usize::from(!(t == 0 && r % 4 == 3)),
                        // Losing every retry to the others is allowed; anything else is not.
                        Err(Error::Contention(_)) => {}
                        Err(e) => panic!("thread {t}, round {r}: {e:?}"),
                    }
                    let pt = format!("thread {t} round {r}").into_bytes();
                    let e = seal(&k, &ctx(), &pt);
                    assert_eq!(open(&k, &ctx(), &e).unwrap(), pt);
                    sealed.push((pt, e));
                }
                (rotated, sealed)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let fresh = check_one_active(&env, &m);
    let rotations: usize = results.iter().map(|r| r.0).sum();
    assert!(rotations > 0);
    let st = fresh.status();
    assert_eq!(st.data_keys.len(), 1 + rotations);
    assert_eq!(
        st.data_keys
            .iter()
            .filter(|d| d.state == "decrypt-only")
            .count(),
        rotations
    );
    for (pt, e) in results.iter().flat_map(|r| &r.1) {
        assert_eq!(&open(&fresh, &ctx(), e).unwrap(), pt);
    }
}

fn concurrent_automatic_rotation_rotates_once(b: Backend) {
    // Many keyrings find the key due at the same moment: exactly one rotation happens.
    const THREADS: usize = 6;
    let env = Env::on(b);
    let m = Arc::new(Master::generate("m"));
    let first = env.init_with(&m, settings(HOUR)).active_data_key_id();
    let keyrings: Vec<Keyring> = (0..THREADS)
        .map(|_| env.try_open_with(&m, None, settings(HOUR)).unwrap().0)
        .collect();
    env.clock.advance(2 * HOUR);
    let barrier = Arc::new(Barrier::new(THREADS));
    let ids: Vec<u64> = keyrings
        .into_iter()
        .map(|k| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                envelope_key_id(&seal(&k, &no_ctx(), b"due"))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(ids.iter().all(|&id| id == ids[0] && id != first), "{ids:?}");
    let fresh = check_one_active(&env, &m);
    assert_eq!(fresh.status().data_keys.len(), 2);
    assert_eq!(data_keys_in(&fresh, "decrypt-only"), vec![first]);
}

both_backends!(
    keyring_b_reads_what_keyring_a_sealed_after_rotating,
    concurrent_rotations_never_make_two_active_keys,
    concurrent_automatic_rotation_rotates_once,
);
