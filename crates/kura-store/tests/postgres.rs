#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `PgKeystore`: the conformance suite every backend passes, then what only a shared
//! database has: nodes creating the schema at once, racing commits of two nodes, a pool
//! shared by threads, connections killed or the server restarted under a running store, and
//! passwords never shown. One PostgreSQL server per test binary, one database per test; the
//! restart test has a server of its own.

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::backend::{new_database, server};
use common::{Backend, Fixture, data_key, initial_changes, kek};
use kura_store::{
    Change, DataKeyState, Error, KekState, Keystore, ObjectChange, ObjectStore, PgKeystore,
};
use kura_testkit::PgServer;

common::conformance::conformance_tests!(Backend::Postgres);

const SECRET: &str = "pw-Zq8s3cr3t";

/// `url` with the password [`SECRET`] (the test server trusts everyone and ignores it).
fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{SECRET}@"), 1)
}

fn raw(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

fn active_kek(store: &PgKeystore) -> u64 {
    let snap = store.snapshot().unwrap().unwrap();
    snap.keks
        .iter()
        .find(|k| k.state == KekState::Active)
        .unwrap()
        .id
}

/// The message of `e` and its sources, and its `Debug` form.
fn texts(e: &Error) -> String {
    let mut text = format!("{e}\n{e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!("\n{s}\n{s:?}"));
        source = s.source();
    }
    text
}

#[test]
fn schema_is_created_once_when_four_nodes_connect_at_once() {
    let url = new_database();
    let barrier = Arc::new(Barrier::new(4));
    let stores: Vec<PgKeystore> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PgKeystore::connect(&url)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    let mut c = raw(&url);
    let version: i64 = c
        .query_one("SELECT version FROM kura_schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, 2);
    let meta: i64 = c
        .query_one("SELECT count(*) FROM meta", &[])
        .unwrap()
        .get(0);
    assert_eq!(meta, 1);
    // All four work on the one schema.
    stores[0].initialize(&initial_changes()).unwrap();
    for s in &stores {
        assert_eq!(s.generation().unwrap(), Some(1));
    }
}

#[test]
fn racing_commits_of_two_nodes_exactly_one_wins() {
    let url = new_database();
    let nodes = [
        Arc::new(PgKeystore::connect(&url).unwrap()),
        Arc::new(PgKeystore::connect(&url).unwrap()),
    ];
    // Both initialise at once: one does, the other is told it is done.
    let race = |f: &(dyn Fn(usize, &PgKeystore) -> Result<u64, Error> + Sync)| {
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let (node, barrier) = (&nodes[i], &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        f(i, node)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    };
    let results = race(&|_, n| n.initialize(&initial_changes()));
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(Error::AlreadyInitialized { .. }))),
        "{results:?}"
    );
    // Then rotations from the same generation: one wins, the other conflicts.
    for round in 0..15u64 {
        let generation = round + 1;
        let results = race(&|i, n| {
            let id = 1_000 + round * 2 + i as u64;
            n.commit(
                generation,
                &[
                    Change::RetireKek {
                        id: active_kek(n),
                        at: 5,
                    },
                    Change::InsertKek(kek(id, KekState::Active, 5)),
                ],
            )
        });
        let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        assert_eq!(*won[0].as_ref().unwrap(), generation + 1);
        assert!(
            results.iter().any(|r| matches!(
                r,
                Err(Error::Conflict { expected, found }) if *expected == generation && *found == generation + 1
            )),
            "round {round}: {results:?}"
        );
    }
    let snap = nodes[1].snapshot().unwrap().unwrap();
    assert_eq!(snap.generation, 16);
    assert_eq!(snap.keks.len(), 16);
    assert_eq!(
        snap.keks
            .iter()
            .filter(|k| k.state == KekState::Active)
            .count(),
        1
    );
}

#[test]
fn threads_share_one_store_through_its_pool() {
    let f = Fixture::initialised(Backend::Postgres);
    let store: &dyn kura_store::Store = &*f.store;
    let (threads, commits) = (6, 10);
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..commits {
                    // Optimistic: read, write, retry on conflict.
                    loop {
                        let g = store.generation().unwrap().unwrap();
                        let key = data_key(
                            10_000 + t * 100 + i,
                            &format!("ring-{t}"),
                            DataKeyState::DecryptOnly,
                            2_000,
                        );
                        match store.commit(g, &[Change::InsertDataKey(key)]) {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    store
                        .apply(&[ObjectChange::Create {
                            kind: "k".into(),
                            id: format!("{t}/{i}"),
                            doc: "{}".into(),
                            blob: Vec::new(),
                        }])
                        .unwrap();
                }
            });
        }
    });
    let expected = threads * commits;
    let snap = f.snapshot();
    assert_eq!(snap.generation, 1 + expected);
    assert_eq!(snap.data_keys.len() as u64, 1 + expected);
    assert_eq!(store.objects_generation().unwrap(), expected);
    assert_eq!(
        store.list("k", "", None, 1000).unwrap().len() as u64,
        expected
    );
}

#[test]
fn the_password_never_shows() {
    let url = with_password(&new_database());
    let store = PgKeystore::connect(&url).unwrap();
    let redacted = url.replace(SECRET, "***");
    assert_eq!(store.location(), redacted);
    let debug = format!("{store:?}");
    assert!(
        debug.contains(&redacted) && !debug.contains(SECRET),
        "{debug}"
    );
    // Errors of a working store name it by the redacted URL.
    store.initialize(&initial_changes()).unwrap();
    let e = store.initialize(&initial_changes()).unwrap_err();
    assert!(texts(&e).contains(&redacted), "{}", texts(&e));

    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = [
        format!("postgres://kura:{SECRET}@127.0.0.1:{port}/kura"),
        format!("postgresql://kura@127.0.0.1:{port}/kura?password={SECRET}&sslmode=disable"),
        format!("host=127.0.0.1 port={port} user=kura password={SECRET} dbname=kura"),
        format!("host=127.0.0.1 port={port} password = '{SECRET} x\\' y' dbname=kura"),
        // Not a valid URL at all.
        format!("postgres://kura:{SECRET}@127.0.0.1:notaport/kura"),
        // A database that does not exist.
        with_password(&server().database_url("no_such_database")),
    ];
    for url in unreachable {
        let e = PgKeystore::connect(&url).unwrap_err();
        let text = texts(&e);
        assert!(matches!(e, Error::Database { .. }), "{text}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("3cr3t"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}

#[test]
fn an_unreachable_server_fails_fast_with_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://kura@127.0.0.1:{port}/kura");
    let start = Instant::now();
    let e = PgKeystore::connect(&url).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let text = e.to_string();
    assert!(
        text.contains(&url) && text.contains("unreachable") && text.contains("refused"),
        "{text}"
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let url = new_database();
    drop(PgKeystore::connect(&url).unwrap());
    raw(&url)
        .execute("UPDATE kura_schema_version SET version = 99", &[])
        .unwrap();
    match PgKeystore::connect(&url) {
        Err(Error::SchemaTooNew {
            found: 99,
            supported: 2,
            location,
        }) => assert_eq!(location, url),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn killed_connections_are_replaced() {
    let url = new_database();
    let store = PgKeystore::connect(&url).unwrap();
    store.initialize(&initial_changes()).unwrap();
    // Several idle connections in the pool.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    store.snapshot().unwrap();
                }
            });
        }
    });
    let killed: i64 = raw(&server().url())
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            &[&url.rsplit('/').next().unwrap()],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    // Reads and writes go on, on new connections.
    assert_eq!(store.generation().unwrap(), Some(1));
    assert_eq!(store.commit(1, &[]).unwrap(), 2);
    assert_eq!(store.snapshot().unwrap().unwrap().generation, 2);
}

#[test]
fn postgres_stopped_then_started_again_the_same_store_works_again() {
    let pg = PgServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = with_password(&pg.create_database("restart").unwrap());
    let store = PgKeystore::connect(&url).unwrap();
    store.initialize(&initial_changes()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| store.snapshot().unwrap());
        }
    });

    pg.stop_server().unwrap_or_else(|e| panic!("{e}"));
    let failures = [
        store.generation().map(drop).unwrap_err(),
        store.snapshot().map(drop).unwrap_err(),
        store.commit(1, &[]).map(drop).unwrap_err(),
        store.objects_generation().map(drop).unwrap_err(),
        store
            .apply(&[ObjectChange::Delete {
                kind: "k".into(),
                id: "a".into(),
            }])
            .unwrap_err(),
    ];
    for e in &failures {
        let text = texts(e);
        assert!(matches!(e, Error::Database { .. }), "{text}");
        assert!(text.contains(store.location()), "{text}");
        assert!(text.contains("unreachable"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }

    pg.start_server().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.generation().unwrap(), Some(1));
    assert_eq!(store.commit(1, &[]).unwrap(), 2);
    assert_eq!(store.snapshot().unwrap().unwrap().generation, 2);
    assert_eq!(store.objects_generation().unwrap(), 0);

    // Restarted while the pool holds idle connections: the first call already works.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| store.snapshot().unwrap());
        }
    });
    pg.stop_server().unwrap_or_else(|e| panic!("{e}"));
    pg.start_server().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.commit(2, &[]).unwrap(), 3);
    assert_eq!(store.generation().unwrap(), Some(3));
}

/// The KMS server answers cryptographic requests on its async workers, where a keystore
/// call (a cache miss, the once-a-second change check) must not panic: the synchronous
/// client cannot start its runtime inside another one, so every call runs off the caller's
/// thread.
#[test]
fn calls_from_inside_an_async_runtime_work() {
    let url = new_database();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(async { Arc::new(PgKeystore::connect(&url).unwrap()) });
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            rt.spawn(async move {
                for _ in 0..5 {
                    assert_eq!(store.generation().unwrap(), None);
                    store.objects_generation().unwrap();
                    assert!(store.get("k", &i.to_string()).unwrap().is_none());
                }
            })
        })
        .collect();
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    // Dropped inside the runtime too (its idle connections are closed).
    rt.block_on(async move { drop(store) });
}
