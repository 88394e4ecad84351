//! Conformance: the whole-keystore export and replacement of backup and restore
//! (`Store::export`, `Store::replace_all`), each one transaction.

use kura_store::{
    Change, DataKeyRecord, DataKeyState, Error, KekRecord, KekState, NODE_KIND, Object,
    ObjectChange,
};

use super::super::{Backend, Fixture};

fn kek(id: u64) -> KekRecord {
    KekRecord {
        id,
        wrapped: vec![1, 2, 3],
        master_key_id: "mk".into(),
        state: KekState::Active,
        created_at: 100,
        retired_at: None,
    }
}

fn dk(id: u64, kek_id: u64, state: DataKeyState) -> DataKeyRecord {
    DataKeyRecord {
        id,
        keyring: "default".into(),
        method: "aes256-ctr".into(),
        wrapped: if state == DataKeyState::Destroyed {
            Vec::new()
        } else {
            vec![9; 8]
        },
        kek_id,
        state,
        created_at: 100,
        activated_at: Some(100),
        retired_at: None,
        destroyed_at: None,
    }
}

fn object(kind: &str, id: &str, version: u64) -> Object {
    Object {
        kind: kind.into(),
        id: id.into(),
        version,
        doc: format!("{{\"v\":{version}}}"),
        blob: vec![7; 3],
    }
}

/// A new `(kind, id)` with an empty document and blob.
fn create(kind: &str, id: &str) -> ObjectChange {
    ObjectChange::Create {
        kind: kind.into(),
        id: id.into(),
        doc: "{}".into(),
        blob: Vec::new(),
    }
}

fn contents(kek_id: u64, dk_id: u64) -> Vec<Change> {
    vec![
        Change::InsertKek(kek(kek_id)),
        Change::InsertDataKey(dk(dk_id, kek_id, DataKeyState::Active)),
        Change::InsertDataKey(dk(dk_id + 1, kek_id, DataKeyState::Destroyed)),
    ]
}

pub(crate) fn replace_into_an_empty_keystore_and_back_out(b: Backend) {
    let f = Fixture::fresh(b);
    let s = &f.store;
    assert!(s.export().unwrap().is_none());
    s.apply_quiet(&[create(NODE_KIND, "n1")]).unwrap();
    let objects = [object("kms-key", "b", 3), object("alias", "a", 1)];
    assert_eq!(s.replace_all(None, &contents(1, 10), &objects).unwrap(), 1);
    let e = s.export().unwrap().unwrap();
    assert_eq!(e.snapshot.generation, 1);
    assert_eq!(e.snapshot.keks, vec![kek(1)]);
    assert_eq!(e.snapshot.data_keys.len(), 2);
    // (kind, id) order, versions kept, the node left out.
    assert_eq!(e.objects, vec![objects[1].clone(), objects[0].clone()]);
    assert!(s.get(NODE_KIND, "n1").unwrap().is_some());
    assert_eq!(s.objects_generation().unwrap(), 1);
    // A second replacement into what is now initialised needs its generation.
    assert!(matches!(
        s.replace_all(None, &contents(2, 20), &[]),
        Err(Error::AlreadyInitialized { .. })
    ));
}

pub(crate) fn replace_replaces_everything_but_nodes_at_the_expected_generation(b: Backend) {
    let f = Fixture::fresh(b);
    let s = &f.store;
    s.initialize(&contents(1, 10)).unwrap();
    s.apply(&[create("alias", "old")]).unwrap();
    s.apply_quiet(&[create(NODE_KIND, "n1")]).unwrap();
    assert!(matches!(
        s.replace_all(Some(7), &contents(2, 20), &[]),
        Err(Error::Conflict {
            expected: 7,
            found: 1
        })
    ));
    let g = s
        .replace_all(Some(1), &contents(2, 20), &[object("user", "u", 2)])
        .unwrap();
    assert_eq!(g, 2);
    let e = s.export().unwrap().unwrap();
    assert_eq!(e.snapshot.keks, vec![kek(2)]);
    let ids: Vec<u64> = e.snapshot.data_keys.iter().map(|d| d.id).collect();
    assert_eq!(ids, [20, 21]);
    assert_eq!(e.objects, vec![object("user", "u", 2)]);
    assert!(s.get("alias", "old").unwrap().is_none());
    assert!(s.get(NODE_KIND, "n1").unwrap().is_some());
}

pub(crate) fn replace_a_failed_replacement_changes_nothing(b: Backend) {
    let f = Fixture::fresh(b);
    let s = &f.store;
    s.initialize(&contents(1, 10)).unwrap();
    let before = s.export().unwrap().unwrap();
    // No KEK.
    let r = s.replace_all(Some(1), &[], &[]);
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    // A duplicate object.
    let r = s.replace_all(
        Some(1),
        &contents(2, 20),
        &[object("a", "x", 1), object("a", "x", 2)],
    );
    assert!(matches!(r, Err(Error::AlreadyExists { .. })), "{r:?}");
    // A node, a version 0, a data key under a missing KEK.
    for (changes, objects) in [
        (contents(2, 20), vec![object(NODE_KIND, "n", 1)]),
        (contents(2, 20), vec![object("a", "x", 0)]),
        (
            vec![
                Change::InsertKek(kek(2)),
                Change::InsertDataKey(dk(20, 3, DataKeyState::Active)),
            ],
            vec![],
        ),
    ] {
        let r = s.replace_all(Some(1), &changes, &objects);
        assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    }
    assert_eq!(s.export().unwrap().unwrap(), before);
    // Into an uninitialised keystore with a generation.
    let empty = Fixture::fresh(b);
    let empty = &empty.store;
    assert!(matches!(
        empty.replace_all(Some(1), &contents(2, 20), &[]),
        Err(Error::NotInitialized { .. })
    ));
}
