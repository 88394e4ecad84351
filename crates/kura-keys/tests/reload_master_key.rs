//! A running process told to use other master keys (what `kura server` does on SIGHUP):
//! `Keyring::use_master_keys`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kura_keys::Error;

#[test]
fn a_running_process_takes_a_master_key_another_process_rotated_to() {
    let env = Env::new();
    let m1 = Master::generate("m1");
    let m2 = Master::generate("m2");
    let running = env.init(&m1);
    let before = seal(&running, &ctx(), b"before");
    // Another process rotates the master key to m2, then makes a new KEK under it.
    let other = env.open(&m1);
    other.rotate_master_key(m2.dyn_key()).unwrap();
    other.rotate_kek().unwrap();
    other.rotate_data_key().unwrap();
    // The running process cannot load the new KEK with m1 …
    assert!(matches!(
        running.refresh(),
        Err(Error::WrongMasterKey { .. } | Error::KekUnwrap { .. })
    ));
    // … until it is told to use m2 (SIGHUP after the configuration changed).
    assert_eq!(running.use_master_keys(m2.dyn_key(), None).unwrap(), None);
    assert_eq!(running.status().master_key.id, m2.id());
    let after = seal(&running, &ctx(), b"after");
    assert_eq!(envelope_key_id(&after), other.active_data_key_id());
    assert_eq!(open(&running, &ctx(), &before).unwrap(), b"before");
    assert_eq!(open(&other, &ctx(), &after).unwrap(), b"after");
}

#[test]
fn a_new_master_key_given_to_a_running_process_rewraps_the_kek() {
    let env = Env::new();
    let m1 = Master::generate("m1");
    let m2 = Master::generate("m2");
    let running = env.init(&m1);
    let before = seal(&running, &ctx(), b"before");
    assert_eq!(
        running.use_master_keys(m2.dyn_key(), None).unwrap(),
        Some(m1.id())
    );
    let st = running.status();
    assert_eq!(st.kek.master_key_id, m2.id());
    assert_eq!(st.previous_master_key.unwrap().id, m1.id());
    // The same keys again: nothing to do.
    assert_eq!(running.use_master_keys(m2.dyn_key(), None).unwrap(), None);
    // A restart needs only m2.
    let restarted = env.open(&m2);
    assert_eq!(open(&restarted, &ctx(), &before).unwrap(), b"before");
}

#[test]
fn a_master_key_that_does_not_unwrap_the_kek_is_refused_and_nothing_changes() {
    let env = Env::new();
    let m1 = Master::generate("m1");
    let running = env.init(&m1);
    let generation = running.status().generation;
    // A key with m1's id but other bytes cannot be made; a key whose id matches the
    // stored one is checked by unwrapping. Here: a KEK made under m2 elsewhere, and the
    // running process given m3.
    let m2 = Master::generate("m2");
    let m3 = Master::generate("m3");
    let other = env.open(&m1);
    other.rotate_master_key(m2.dyn_key()).unwrap();
    other.rotate_kek().unwrap();
    assert!(running.use_master_keys(m3.dyn_key(), None).is_err());
    assert_eq!(running.status().master_key.id, m1.id());
    assert!(running.status().generation >= generation);
    // Given m2, it recovers.
    running.use_master_keys(m2.dyn_key(), None).unwrap();
    assert_eq!(running.status().kek.master_key_id, m2.id());
}
