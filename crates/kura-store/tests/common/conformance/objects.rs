//! Conformance: the object store (versions, conflicts, atomic batches, quiet writes, listing
//! in byte order by prefix and page).

use kura_store::{Error, Object, ObjectChange};

use super::super::{Backend, Fixture};

fn create(kind: &str, id: &str, doc: &str) -> ObjectChange {
    ObjectChange::Create {
        kind: kind.into(),
        id: id.into(),
        doc: doc.into(),
        blob: vec![1, 2, 3],
    }
}

fn update(kind: &str, id: &str, version: u64, doc: &str) -> ObjectChange {
    ObjectChange::Update {
        kind: kind.into(),
        id: id.into(),
        version,
        doc: doc.into(),
        blob: vec![],
    }
}

pub(crate) fn objects_create_get_update_delete(b: Backend) {
    let f = Fixture::fresh(b);
    let s = &f.store;
    assert_eq!(s.objects_generation().unwrap(), 0);
    assert!(s.get("k", "a").unwrap().is_none());
    s.apply(&[create("k", "a", "{}")]).unwrap();
    let o = s.get("k", "a").unwrap().unwrap();
    assert_eq!(
        (o.version, o.doc.as_str(), o.blob.as_slice()),
        (1, "{}", &[1u8, 2, 3][..])
    );
    match s.apply(&[create("k", "a", "{}")]) {
        Err(Error::AlreadyExists { what }) => assert_eq!(what, "k a"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    s.apply(&[update("k", "a", 1, "{\"x\":1}")]).unwrap();
    assert!(matches!(
        s.apply(&[update("k", "a", 1, "{}")]),
        Err(Error::Conflict {
            expected: 1,
            found: 2
        })
    ));
    let o = s.get("k", "a").unwrap().unwrap();
    assert_eq!(
        (o.version, o.doc.as_str(), o.blob.len()),
        (2, "{\"x\":1}", 0)
    );
    s.apply(&[ObjectChange::Delete {
        kind: "k".into(),
        id: "a".into(),
    }])
    .unwrap();
    assert!(s.get("k", "a").unwrap().is_none());
    // Deleting nothing is not an error (and still bumps).
    s.apply(&[ObjectChange::Delete {
        kind: "k".into(),
        id: "a".into(),
    }])
    .unwrap();
    assert_eq!(s.objects_generation().unwrap(), 4);
}

pub(crate) fn objects_quiet_writes_leave_the_generation_alone(b: Backend) {
    let f = Fixture::fresh(b);
    let s = &f.store;
    s.apply_quiet(&[create("node", "n1", "{}")]).unwrap();
    assert_eq!(s.objects_generation().unwrap(), 0);
    assert!(s.get("node", "n1").unwrap().is_some());
    s.apply(&[create("k", "a", "{}")]).unwrap();
    assert_eq!(s.objects_generation().unwrap(), 1);
    // Object writes do not touch the key generation.
    assert_eq!(s.generation().unwrap(), None);
}

pub(crate) fn objects_batches_are_atomic(b: Backend) {
    let f = Fixture::fresh(b);
    let s = &f.store;
    s.apply(&[create("k", "a", "1")]).unwrap();
    let r = s.apply(&[create("k", "b", "2"), create("k", "a", "dup")]);
    assert!(matches!(r, Err(Error::AlreadyExists { .. })), "{r:?}");
    assert!(s.get("k", "b").unwrap().is_none());
    assert_eq!(s.get("k", "a").unwrap().unwrap().doc, "1");
    let r = s.apply(&[create("k", "c", "3"), update("k", "a", 9, "x")]);
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
    assert!(s.get("k", "c").unwrap().is_none());
    assert_eq!(s.objects_generation().unwrap(), 1);
}

pub(crate) fn objects_list_by_prefix_and_page(b: Backend) {
    let f = Fixture::fresh(b);
    let s = &f.store;
    // Byte order: upper case before lower case, '/' before letters, 'é' after 'z'.
    let ids = ["a/1", "a/2", "a/3", "ab", "b/1", "B", "zz", "é"];
    s.apply(&ids.iter().map(|i| create("m", i, "{}")).collect::<Vec<_>>())
        .unwrap();
    s.apply(&[create("other", "a/9", "{}")]).unwrap();
    let ids_of = |v: Vec<Object>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(
        ids_of(s.list("m", "a/", None, 10).unwrap()),
        ["a/1", "a/2", "a/3"]
    );
    assert_eq!(
        ids_of(s.list("m", "a/", Some("a/1"), 10).unwrap()),
        ["a/2", "a/3"]
    );
    assert_eq!(ids_of(s.list("m", "", None, 2).unwrap()), ["B", "a/1"]);
    assert_eq!(
        ids_of(s.list("m", "", Some("a/3"), 10).unwrap()),
        ["ab", "b/1", "zz", "é"]
    );
    assert_eq!(ids_of(s.list("m", "zz", None, 10).unwrap()), ["zz"]);
    assert_eq!(
        ids_of(s.list("m", "zzz", None, 10).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        ids_of(s.list("m", "a", Some("0"), 2).unwrap()),
        ["a/1", "a/2"]
    );
    assert_eq!(
        ids_of(s.list("m", "", None, 0).unwrap()),
        Vec::<String>::new()
    );
    let all = s.list("other", "", None, usize::MAX).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].kind.as_str(), all[0].id.as_str(), all[0].version),
        ("other", "a/9", 1)
    );
}

pub(crate) fn objects_update_of_a_missing_object_is_invalid(b: Backend) {
    let f = Fixture::fresh(b);
    let s = &f.store;
    match s.apply(&[update("k", "nope", 1, "{}")]) {
        Err(Error::Invalid(msg)) => assert_eq!(msg, "no k nope"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        s.apply(&[update("k", "nope", u64::MAX, "{}")]),
        Err(Error::Invalid(_))
    ));
    assert_eq!(s.objects_generation().unwrap(), 0);
}

pub(crate) fn objects_two_handles_conflict_on_one_version(b: Backend) {
    let f = Fixture::fresh(b);
    let other = f.open_again();
    f.store.apply(&[create("k", "a", "0")]).unwrap();
    let seen = other.get("k", "a").unwrap().unwrap();
    f.store.apply(&[update("k", "a", 1, "first")]).unwrap();
    assert!(matches!(
        other.apply(&[update("k", "a", seen.version, "second")]),
        Err(Error::Conflict {
            expected: 1,
            found: 2
        })
    ));
    assert_eq!(other.get("k", "a").unwrap().unwrap().doc, "first");
    assert_eq!(other.objects_generation().unwrap(), 2);
}
