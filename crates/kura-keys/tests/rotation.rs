#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Rotation at every level: data written before a rotation still decrypts, data written
//! after it is sealed under the right key, and the key states the keystore records. The
//! tests of the keystore's part run on SQLite and PostgreSQL.

mod common;

use common::*;
use kura_format::EncryptionContext;
use kura_keys::{DataKeyStatus, Error, Keyring, Status};
use kura_store::DataKeyState;

/// The status of data key `id` in `st`.
#[track_caller]
fn data_key_status(st: &Status, id: u64) -> &DataKeyStatus {
    st.data_keys
        .iter()
        .find(|d| d.id == id.to_string())
        .unwrap()
}

/// Data sealed at one moment: a record without and one with an encryption context, and
/// a stream.
struct Sealed {
    record: Vec<u8>,
    env_plain: Vec<u8>,
    env_ctx: Vec<u8>,
    stream_pt: Vec<u8>,
    stream_ct: Vec<u8>,
}

fn seal_all(k: &Keyring, tag: u8) -> Sealed {
    let record = format!("record sealed in epoch {tag}").into_bytes();
    let stream_pt = stream_plaintext(tag);
    Sealed {
        env_plain: seal(k, &no_ctx(), &record),
        env_ctx: seal(k, &ctx(), &record),
        stream_ct: seal_stream(k, &ctx(), &stream_pt),
        record,
        stream_pt,
    }
}

impl Sealed {
    /// The data key ids the three ciphertexts name (they must agree).
    fn key_id(&self) -> u64 {
        let id = envelope_key_id(&self.env_plain);
        assert_eq!(envelope_key_id(&self.env_ctx), id);
        assert_eq!(stream_key_id(&self.stream_ct), id);
        id
    }

    fn check_opens(&self, k: &Keyring) {
        assert_eq!(open(k, &no_ctx(), &self.env_plain).unwrap(), self.record);
        assert_eq!(open(k, &ctx(), &self.env_ctx).unwrap(), self.record);
        assert_eq!(
            open_stream(k, &ctx(), &self.stream_ct).unwrap(),
            self.stream_pt
        );
        // The context is bound: the right key alone is not enough.
        let mut other = EncryptionContext::new();
        other.insert("table", "orders");
        for (c, e) in [(&other, &self.env_ctx), (&other, &self.env_plain)] {
            assert!(matches!(
                open(k, c, e),
                Err(Error::Format(kura_format::Error::Decrypt))
            ));
        }
        assert!(matches!(
            open(k, &no_ctx(), &self.env_ctx),
            Err(Error::Format(kura_format::Error::Decrypt))
        ));
        assert!(matches!(
            open_stream(k, &other, &self.stream_ct),
            Err(Error::Format(kura_format::Error::Decrypt))
        ));
    }
}

#[derive(Clone, Copy, Debug)]
enum Rotation {
    DataKey,
    Kek,
    MasterKey,
}

fn data_written_before_rotation_still_decrypts(b: Backend, kind: Rotation) {
    let env = Env::on(b);
    let m1 = Master::generate("m1");
    let m2 = Master::generate("m2");
    let k = env.init(&m1);
    let before = seal_all(&k, 1);
    let old_dk = k.active_data_key_id();
    assert_eq!(before.key_id(), old_dk);
    let old_kek = k.status().kek.id;

    match kind {
        Rotation::DataKey => {
            let new = k.rotate_data_key().unwrap();
            assert_ne!(new, old_dk);
            assert_eq!(k.active_data_key_id(), new);
        }
        Rotation::Kek => {
            let new = k.rotate_kek().unwrap();
            assert_ne!(new.to_string(), old_kek);
            assert_eq!(k.status().kek.id, new.to_string());
            assert_eq!(k.active_data_key_id(), old_dk);
        }
        Rotation::MasterKey => {
            k.rotate_master_key(m2.dyn_key()).unwrap();
            let st = k.status();
            assert_eq!(st.master_key.id, m2.id());
            assert_eq!(st.previous_master_key.unwrap().id, m1.id());
            assert_eq!(st.kek.id, old_kek);
            assert_eq!(st.kek.master_key_id, m2.id());
            assert_eq!(k.active_data_key_id(), old_dk);
        }
    }
    before.check_opens(&k);

    let after = seal_all(&k, 2);
    let active = only_active(&k);
    assert_eq!(k.active_data_key_id(), active);
    assert_eq!(after.key_id(), active, "{kind:?}");
    match kind {
        Rotation::DataKey => assert_ne!(after.key_id(), before.key_id()),
        Rotation::Kek | Rotation::MasterKey => assert_eq!(after.key_id(), before.key_id()),
    }
    after.check_opens(&k);

    // Everything persisted: a keyring opened afresh from the keystore reads both epochs.
    let current = match kind {
        Rotation::MasterKey => &m2,
        _ => &m1,
    };
    let reopened = env.open(current);
    assert_eq!(reopened.active_data_key_id(), active);
    assert_eq!(reopened.status().kek.id, k.status().kek.id);
    before.check_opens(&reopened);
    after.check_opens(&reopened);
    assert_eq!(envelope_key_id(&seal(&reopened, &no_ctx(), b"x")), active);

    if let Rotation::MasterKey = kind {
        // The old master key alone no longer opens the keystore.
        assert!(matches!(
            env.try_open(&m1, None),
            Err(Error::WrongMasterKey { .. })
        ));
    }
}

fn data_key_rotation_keeps_old_data_readable(b: Backend) {
    data_written_before_rotation_still_decrypts(b, Rotation::DataKey);
}

fn kek_rotation_keeps_old_data_readable(b: Backend) {
    data_written_before_rotation_still_decrypts(b, Rotation::Kek);
}

fn master_key_rotation_keeps_old_data_readable(b: Backend) {
    data_written_before_rotation_still_decrypts(b, Rotation::MasterKey);
}

fn every_rotation_in_turn_then_reopen(b: Backend) {
    let env = Env::on(b);
    let masters: Vec<Master> = (0..3).map(|i| Master::generate(&format!("m{i}"))).collect();
    let k = env.init(&masters[0]);
    let mut epochs = vec![seal_all(&k, 0)];
    let mut current = 0;
    for round in 0..2u8 {
        k.rotate_data_key().unwrap();
        epochs.push(seal_all(&k, 10 * round + 1));
        k.rotate_kek().unwrap();
        epochs.push(seal_all(&k, 10 * round + 2));
        current += 1;
        k.rotate_master_key(masters[current].dyn_key()).unwrap();
        epochs.push(seal_all(&k, 10 * round + 3));
        for e in &epochs {
            e.check_opens(&k);
        }
    }
    let reopened = env.open(&masters[current]);
    for e in &epochs {
        e.check_opens(&reopened);
    }
    let st = reopened.status();
    assert_eq!(st.keks.len(), 3);
    assert_eq!(st.keks.iter().filter(|k| k.state == "active").count(), 1);
    assert_eq!(st.data_keys.len(), 3);
    assert_eq!(only_active(&reopened), k.active_data_key_id());
    // Only the latest master key opens it; the one before works as the previous one.
    for old in &masters[..current] {
        assert!(matches!(
            env.try_open(old, None),
            Err(Error::WrongMasterKey { .. })
        ));
    }
}

fn data_key_rotation_states(b: Backend) {
    let (env, m, k) = Env::initialised_on(b);
    let first = only_active(&k);
    let old_env = seal(&k, &ctx(), b"under the first key");
    let old_stream = seal_stream(&k, &no_ctx(), b"stream under the first key");

    env.clock.advance(HOUR);
    let second = k.rotate_data_key().unwrap();
    assert_ne!(first, second);
    assert_eq!(only_active(&k), second);
    assert_eq!(data_keys_in(&k, "decrypt-only"), vec![first]);
    let st = k.status();
    assert_eq!(st.data_keys.len(), 2);
    let old = data_key_status(&st, first);
    assert_eq!(old.retired_at.as_deref(), Some("2023-11-14T23:13:20Z"));
    assert_eq!(old.activated_at.as_deref(), Some("2023-11-14T22:13:20Z"));
    let new = data_key_status(&st, second);
    assert_eq!(new.activated_at.as_deref(), Some("2023-11-14T23:13:20Z"));
    assert_eq!(new.retired_at, None);
    assert_eq!(new.method, "aes256-ctr");
    assert_eq!(new.keyring, "default");

    // A third rotation: two decrypt-only keys, still one active.
    let third = k.rotate_data_key().unwrap();
    assert_eq!(only_active(&k), third);
    assert_eq!(data_keys_in(&k, "decrypt-only"), vec![first, second]);
    assert_eq!(only_active(&env.open(&m)), third);

    // Destroying a decrypt-only key.
    k.destroy_data_key(first).unwrap();
    let st = k.status();
    let d = data_key_status(&st, first);
    assert_eq!(d.state, "destroyed");
    assert!(d.destroyed_at.is_some());
    assert!(matches!(open(&k, &ctx(), &old_env), Err(Error::DataKeyDestroyed(id)) if id == first));
    assert!(matches!(
        open_stream(&k, &no_ctx(), &old_stream),
        Err(Error::DataKeyDestroyed(id)) if id == first
    ));
    // The material is gone from the keystore, not only from this process.
    let snap = env.store().snapshot().unwrap().unwrap();
    let rec = snap.data_keys.iter().find(|r| r.id == first).unwrap();
    assert_eq!(rec.state, DataKeyState::Destroyed);
    assert!(rec.wrapped.is_empty());
    let reopened = env.open(&m);
    assert!(
        matches!(open(&reopened, &ctx(), &old_env), Err(Error::DataKeyDestroyed(id)) if id == first)
    );
    // Destroying it again changes nothing; destroying the active key is refused.
    let generation = k.status().generation;
    k.destroy_data_key(first).unwrap();
    assert_eq!(k.status().generation, generation);
    assert!(matches!(k.destroy_data_key(third), Err(Error::DestroyActive(id)) if id == third));
    assert_eq!(only_active(&k), third);
    assert!(matches!(
        k.destroy_data_key(12345),
        Err(Error::UnknownDataKey(12345))
    ));
    // A KEK rotation after a destruction leaves the destroyed key destroyed.
    k.rotate_kek().unwrap();
    let reopened = env.open(&m);
    assert_eq!(data_keys_in(&reopened, "destroyed"), vec![first]);
    assert_eq!(data_keys_in(&reopened, "decrypt-only"), vec![second]);
    assert!(matches!(
        open(&reopened, &ctx(), &old_env),
        Err(Error::DataKeyDestroyed(_))
    ));
}

fn kek_rotation_keeps_data_keys(b: Backend) {
    let (env, m, k) = Env::initialised_on(b);
    k.rotate_data_key().unwrap();
    env.clock.advance(HOUR);
    k.rotate_data_key().unwrap();
    let data = seal_all(&k, 7);
    let before = k.status();
    let old_kek = before.kek.clone();
    assert_eq!(old_kek.state, "active");
    assert_eq!(old_kek.master_key_id, m.id());

    env.clock.advance(HOUR);
    let new_kek = k.rotate_kek().unwrap();
    let after = k.status();
    assert_eq!(after.kek.id, new_kek.to_string());
    assert_ne!(after.kek.id, old_kek.id);
    assert_eq!(after.kek.state, "active");
    assert_eq!(after.kek.master_key_id, m.id());
    assert!(after.generation > before.generation);
    // Ids, states, methods and timestamps of every data key are unchanged.
    assert_eq!(
        serde_json::to_value(&before.data_keys).unwrap(),
        serde_json::to_value(&after.data_keys).unwrap()
    );
    assert_eq!(after.keks.len(), 2);
    let retired = after.keks.iter().find(|x| x.id == old_kek.id).unwrap();
    assert_eq!(retired.state, "retired");
    assert_eq!(retired.retired_at.as_deref(), Some("2023-11-15T00:13:20Z"));
    assert_eq!(retired.created_at, old_kek.created_at);
    assert_eq!(after.keks.iter().filter(|x| x.state == "active").count(), 1);

    // In the keystore every data key is now wrapped under the new KEK.
    let snap = env.store().snapshot().unwrap().unwrap();
    assert!(snap.data_keys.iter().all(|d| d.kek_id == new_kek));
    data.check_opens(&k);
    let reopened = env.open(&m);
    data.check_opens(&reopened);
    assert_eq!(
        serde_json::to_value(&reopened.status().data_keys).unwrap(),
        serde_json::to_value(&after.data_keys).unwrap()
    );
}

fn automatic_rotation_by_age(b: Backend) {
    let env = Env::on(b);
    let m = Master::generate("m");
    let k = env.init_with(&m, settings(HOUR));
    let first = seal(&k, &ctx(), b"first");
    let id1 = envelope_key_id(&first);
    assert_eq!(k.status().next_rotation_due, "2023-11-14T23:13:20Z");

    // Not yet due: no rotation however often the key is used.
    env.clock.advance(std::time::Duration::from_secs(59 * 60));
    for _ in 0..3 {
        assert_eq!(envelope_key_id(&seal(&k, &no_ctx(), b"x")), id1);
    }
    assert_eq!(k.status().data_keys.len(), 1);

    env.clock.advance(2 * HOUR);
    let second = seal(&k, &ctx(), b"second");
    let id2 = envelope_key_id(&second);
    assert_ne!(id1, id2);
    assert_eq!(only_active(&k), id2);
    assert_eq!(data_keys_in(&k, "decrypt-only"), vec![id1]);
    assert_eq!(open(&k, &ctx(), &first).unwrap(), b"first");
    assert_eq!(open(&k, &ctx(), &second).unwrap(), b"second");
    // The new key's period starts at its activation.
    assert_eq!(envelope_key_id(&seal(&k, &no_ctx(), b"x")), id2);
    assert_eq!(k.status().data_keys.len(), 2);
    // Persisted: another handle sees the rotation.
    assert_eq!(only_active(&env.open(&m)), id2);

    // A stream also rotates a key that is due.
    env.clock.advance(2 * HOUR);
    let s = seal_stream(&k, &no_ctx(), b"streamed");
    let id3 = stream_key_id(&s);
    assert!(id3 != id1 && id3 != id2);
    assert_eq!(data_keys_in(&k, "decrypt-only"), vec![id1, id2]);
    assert_eq!(open_stream(&k, &no_ctx(), &s).unwrap(), b"streamed");
}

#[test]
fn changing_the_method_rotates_on_next_seal() {
    let (env, m, k) = Env::initialised();
    let id1 = k.active_data_key_id();
    let old = seal(&k, &no_ctx(), b"old");
    drop(k);

    let sm4 = kura_keys::KeyringSettings::new(kura_keys::config::Method::Sm4Ctr, LONG);
    let (k, _) = env.try_open_with(&m, None, sm4.clone()).unwrap();
    // Opening alone changes nothing.
    assert_eq!(k.active_data_key_id(), id1);
    assert_eq!(k.status().data_keys.len(), 1);
    assert_eq!(k.status().data_encryption_method, "sm4-ctr");

    let new = seal(&k, &no_ctx(), b"new");
    let id2 = envelope_key_id(&new);
    assert_ne!(id1, id2);
    let st = k.status();
    assert_eq!(st.data_keys.len(), 2);
    let d1 = data_key_status(&st, id1);
    let d2 = data_key_status(&st, id2);
    assert_eq!(
        (d1.state, d1.method.as_str()),
        ("decrypt-only", "aes256-ctr")
    );
    assert_eq!((d2.state, d2.method.as_str()), ("active", "sm4-ctr"));
    assert_eq!(open(&k, &no_ctx(), &old).unwrap(), b"old");
    // Once the method matches, no further rotation.
    assert_eq!(envelope_key_id(&seal(&k, &no_ctx(), b"again")), id2);
    let (k2, _) = env.try_open_with(&m, None, sm4).unwrap();
    assert_eq!(envelope_key_id(&seal(&k2, &no_ctx(), b"again")), id2);
    assert_eq!(k2.status().data_keys.len(), 2);
}

#[test]
fn derived_keys_are_found_again_after_rotations_and_reopening() {
    let (env, m1, k) = Env::initialised();
    let (id, key) = k.derive_active(b"file id 1", b"aes256-ctr", 32).unwrap();
    let again = |k: &Keyring| k.derive(id, b"file id 1", b"aes256-ctr", 32).unwrap();
    assert_eq!(again(&k).expose_secret(), key.expose_secret());
    // Salt, purpose and length each give another key.
    for (salt, info, len) in [
        (&b"file id 2"[..], &b"aes256-ctr"[..], 32),
        (b"file id 1", b"aes128-ctr", 32),
        (b"file id 1", b"aes256-ctr", 16),
    ] {
        let other = k.derive(id, salt, info, len).unwrap();
        assert_ne!(other.expose_secret(), &key.expose_secret()[..len]);
    }
    k.rotate_data_key().unwrap();
    k.rotate_kek().unwrap();
    let (new_id, new_key) = k.derive_active(b"file id 1", b"aes256-ctr", 32).unwrap();
    assert_ne!(new_id, id);
    assert_ne!(new_key.expose_secret(), key.expose_secret());
    assert_eq!(again(&k).expose_secret(), key.expose_secret());
    assert_eq!(again(&env.open(&m1)).expose_secret(), key.expose_secret());
    k.destroy_data_key(id).unwrap();
    assert!(matches!(
        k.derive(id, b"file id 1", b"aes256-ctr", 32),
        Err(Error::DataKeyDestroyed(i)) if i == id
    ));
}

#[test]
fn the_background_rotator_rotates_when_due_and_survives_failures() {
    use kura_keys::background::{Rotator, render_metrics};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let (env, _m, k) = Env::initialised();
    let k = std::sync::Arc::new(k);
    let first = k.active_data_key_id();
    let kk = k.clone();
    let r = Rotator::spawn("test", Duration::from_millis(20), move || {
        kk.rotate_if_due()
    })
    .unwrap();
    let stats = r.stats();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(stats.rotations.load(Ordering::Relaxed), 0, "not due yet");
    assert_eq!(k.active_data_key_id(), first);
    env.clock.advance(LONG + Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.rotations.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no rotation");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_ne!(k.active_data_key_id(), first);
    let text = render_metrics(&k.status(), Some(&stats));
    assert!(text.contains("kura_encryption_initialized 1\n"), "{text}");
    assert!(
        text.contains("kura_encryption_data_keys{state=\"active\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("kura_encryption_data_keys{state=\"decrypt-only\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("kura_encryption_rotations_total 1\n"),
        "{text}"
    );
    drop(r);

    // A check that fails is counted and retried; the thread goes on.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = calls.clone();
    let r = Rotator::spawn("failing", Duration::from_millis(5), move || {
        if c.fetch_add(1, Ordering::Relaxed) < 3 {
            Err(Error::UnknownDataKey(1))
        } else {
            Ok(None)
        }
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::Relaxed) < 6 {
        assert!(
            Instant::now() < deadline,
            "the rotator stopped after a failure"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(r.stats().failures.load(Ordering::Relaxed), 3);
    assert_eq!(
        Rotator::interval_for(Duration::from_secs(7 * 86400)),
        Duration::from_secs(600)
    );
    assert_eq!(
        Rotator::interval_for(Duration::from_secs(60)),
        Duration::from_secs(60)
    );
}

fn a_running_process_goes_on_across_an_online_master_key_rotation(b: Backend) {
    let env = Env::on(b);
    let m1 = Master::generate("m1");
    let m2 = Master::generate("m2");
    let running = env.init(&m1);
    let before = seal(&running, &ctx(), b"sealed before");
    // Another process rotates the master key: the KEK is re-wrapped under m2.
    let other = env.open(&m1);
    other.rotate_master_key(m2.dyn_key()).unwrap();
    assert_eq!(other.status().kek.master_key_id, m2.id());
    // The running process, still configured with m1 only, picks the change up and works.
    assert!(running.refresh().unwrap());
    assert_eq!(open(&running, &ctx(), &before).unwrap(), b"sealed before");
    let new = running.rotate_data_key().unwrap();
    let after = seal(&running, &ctx(), b"sealed after");
    assert_eq!(envelope_key_id(&after), new);
    // A restart needs the new master key (or m1 as the previous one).
    assert!(matches!(
        env.try_open(&m1, None),
        Err(Error::WrongMasterKey { .. })
    ));
    let restarted = env.open(&m2);
    assert_eq!(open(&restarted, &ctx(), &after).unwrap(), b"sealed after");
    assert_eq!(open(&restarted, &ctx(), &before).unwrap(), b"sealed before");
}

both_backends!(
    data_key_rotation_keeps_old_data_readable,
    kek_rotation_keeps_old_data_readable,
    master_key_rotation_keeps_old_data_readable,
    every_rotation_in_turn_then_reopen,
    data_key_rotation_states,
    kek_rotation_keeps_data_keys,
    automatic_rotation_by_age,
    a_running_process_goes_on_across_an_online_master_key_rotation,
);
