//! Unit tests of the PostgreSQL keystore's internals: password redaction, the schema and its
//! migrations, and detection of corrupt data. The behaviour through the traits is in
//! `tests/postgres.rs`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};

use kura_testkit::PgServer;

use super::PgKeystore;
use super::schema::{LATEST_VERSION, V1_FOR_TESTS};
use super::url::redact_url_password;
use crate::{Change, DataKeyRecord, DataKeyState, Error, KekRecord, KekState, Keystore};
use crate::{ObjectChange, ObjectStore};

static SERVER: LazyLock<Result<PgServer, String>> =
    LazyLock::new(|| PgServer::start().map_err(|e| e.to_string()));

/// A new database on the binary's one server: its URL and a raw client on it.
fn database() -> (String, ::postgres::Client) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = match &*SERVER {
        Ok(s) => s,
        Err(e) => panic!("these tests need a PostgreSQL server: {e}"),
    };
    let name = format!("unit_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let url = server
        .create_database(&name)
        .unwrap_or_else(|e| panic!("{e}"));
    let client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    (url, client)
}

fn initialised() -> (PgKeystore, ::postgres::Client) {
    let (url, client) = database();
    let store = PgKeystore::connect(&url).unwrap();
    store
        .initialize(&[
            Change::InsertKek(KekRecord {
                id: 1,
                wrapped: vec![1, 2, 3],
                master_key_id: "mk".into(),
                state: KekState::Active,
                created_at: 100,
                retired_at: None,
            }),
            Change::InsertDataKey(DataKeyRecord {
                id: 10,
                keyring: "default".into(),
                method: "aes256-ctr".into(),
                wrapped: vec![9; 8],
                kek_id: 1,
                state: DataKeyState::Active,
                created_at: 100,
                activated_at: Some(100),
                retired_at: None,
                destroyed_at: None,
            }),
        ])
        .unwrap();
    (store, client)
}

#[test]
fn passwords_are_redacted_in_every_form() {
    let cases = [
        ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
        ("postgres://u:p:w@h:5432/db", "postgres://u:***@h:5432/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgres://h/db?user=u", "postgres://h/db?user=u"),
        (
            "postgresql://u@h/db?sslmode=disable&password=pw&x=1",
            "postgresql://u@h/db?sslmode=disable&password=***&x=1",
        ),
        (
            "postgres://u@h/db?password=a&password=b",
            "postgres://u@h/db?password=***&password=***",
        ),
        (
            "postgres://u@h/db?xpassword=a",
            "postgres://u@h/db?xpassword=a",
        ),
        (
            "host=h password=pw dbname=d",
            "host=h password=*** dbname=d",
        ),
        (
            "host=h password = pw dbname=d",
            "host=h password = *** dbname=d",
        ),
        (
            r"host=h password='p w\' x' dbname=d",
            "host=h password=*** dbname=d",
        ),
        ("password=pw", "password=***"),
        ("host=h mypassword=x", "host=h mypassword=x"),
        ("host=h", "host=h"),
    ];
    for (url, redacted) in cases {
        assert_eq!(redact_url_password(url), redacted, "{url}");
    }
}

#[test]
fn schema_objects_and_version() {
    let (url, mut c) = database();
    let store = PgKeystore::connect(&url).unwrap();
    let names: Vec<String> = c
        .query(
            "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        names,
        [
            "data_keys",
            "data_keys_kek_id",
            "data_keys_one_active_per_keyring",
            "data_keys_pkey",
            "data_keys_seq_key",
            "keks",
            "keks_one_active",
            "keks_pkey",
            "keks_seq_key",
            "kura_schema_version",
            "kura_schema_version_pkey",
            "meta",
            "meta_pkey",
            "objects",
            "objects_pkey",
        ]
    );
    let version: i64 = c
        .query_one("SELECT version FROM kura_schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, LATEST_VERSION);
    // Connecting again changes nothing.
    drop(store);
    let store = PgKeystore::connect(&url).unwrap();
    assert_eq!(store.generation().unwrap(), None);
}

#[test]
fn schema_rejects_bad_states_and_destroyed_material() {
    let (_store, mut c) = initialised();
    assert!(c.execute("UPDATE keks SET state = 'bogus'", &[]).is_err());
    assert!(
        c.execute("UPDATE data_keys SET state = 'bogus'", &[])
            .is_err()
    );
    assert!(
        c.execute("UPDATE data_keys SET state = 'destroyed'", &[])
            .is_err(),
        "a destroyed key must have an empty blob"
    );
    assert!(
        c.execute("INSERT INTO meta (id, generation) VALUES (2, 0)", &[])
            .is_err(),
        "meta has a single row"
    );
}

#[test]
fn a_version_1_keystore_is_upgraded_in_place() {
    let (url, mut c) = database();
    c.batch_execute(V1_FOR_TESTS).unwrap();
    c.batch_execute(super::schema::VERSION_TABLE).unwrap();
    c.execute("INSERT INTO kura_schema_version VALUES (1, 1)", &[])
        .unwrap();
    let store = PgKeystore::connect(&url).unwrap();
    store
        .apply(&[ObjectChange::Create {
            kind: "k".into(),
            id: "a".into(),
            doc: "{}".into(),
            blob: Vec::new(),
        }])
        .unwrap();
    assert_eq!(store.objects_generation().unwrap(), 1);
    let version: i64 = c
        .query_one("SELECT version FROM kura_schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, LATEST_VERSION);
}

#[test]
fn negative_schema_version_is_corrupt() {
    let (url, mut c) = database();
    c.batch_execute(super::schema::VERSION_TABLE).unwrap();
    c.execute("INSERT INTO kura_schema_version VALUES (1, -3)", &[])
        .unwrap();
    assert!(matches!(
        PgKeystore::connect(&url),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn unknown_stored_state_is_corrupt() {
    let (store, mut c) = initialised();
    c.batch_execute(
        "ALTER TABLE data_keys DROP CONSTRAINT data_keys_state_check;
         UPDATE data_keys SET state = 'bogus'",
    )
    .unwrap();
    match store.snapshot() {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("bogus"), "{what}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn missing_meta_row_is_corrupt() {
    let (store, mut c) = initialised();
    c.execute("DELETE FROM meta", &[]).unwrap();
    assert!(matches!(store.generation(), Err(Error::Corrupt { .. })));
    assert!(matches!(store.snapshot(), Err(Error::Corrupt { .. })));
    assert!(matches!(store.commit(1, &[]), Err(Error::Corrupt { .. })));
    assert!(matches!(
        store.objects_generation(),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn destroyed_material_is_gone_from_the_row() {
    let (store, mut c) = initialised();
    store
        .commit(1, &[Change::DestroyDataKey { id: 10, at: 5 }])
        .unwrap();
    let len: i32 = c
        .query_one(
            "SELECT octet_length(wrapped) FROM data_keys WHERE id = 10",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(len, 0);
}

#[test]
fn debug_shows_the_location_only() {
    let (url, _c) = database();
    let store = PgKeystore::connect(&url).unwrap();
    assert_eq!(store.location(), url);
    let debug = format!("{store:?}");
    assert!(debug.contains(&url), "{debug}");
}

#[test]
fn connections_in_use_are_bounded_and_calls_wait_for_a_slot() {
    let (url, _client) = database();
    let store = std::sync::Arc::new(PgKeystore::connect(&url).unwrap());
    let slots: Vec<_> = (0..PgKeystore::MAX_BUSY)
        .map(|_| store.permit().unwrap())
        .collect();
    // Every slot is taken: a call waits, and goes on as soon as one is given back.
    // The clock starts before the thread does, so the call cannot have finished sooner
    // than 300 ms after it unless it failed to wait for the slots given back below.
    let started = std::time::Instant::now();
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.objects_generation().unwrap();
            started.elapsed()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!waiter.is_finished(), "a call did not wait for a slot");
    drop(slots);
    let waited = waiter.join().unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "{waited:?}"
    );
    // Forty threads at once never hold more than MAX_BUSY connections.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let (store, peak) = (store.clone(), peak.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    store.generation().unwrap();
                    let busy = *store.busy.lock().unwrap();
                    peak.fetch_max(busy, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(peak.load(Ordering::Relaxed) <= PgKeystore::MAX_BUSY);
    assert_eq!(*store.busy.lock().unwrap(), 0, "every slot was given back");
}

/// The keystore's clock is the database server's: epoch seconds, here on this machine.
#[test]
fn the_clock_is_the_database_servers() {
    let (url, mut client) = database();
    let store = PgKeystore::connect(&url).unwrap();
    let local = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let before = local();
    let t = store.clock().unwrap();
    let after = local();
    assert!(before - 2 <= t && t <= after + 2, "{before} {t} {after}");
    let server: i64 = client
        .query_one("SELECT extract(epoch FROM now())::int8", &[])
        .unwrap()
        .get(0);
    assert!((server - t).abs() <= 2, "{server} {t}");
}

/// Statements time out after 30 s unless the URL's `options` set something else.
#[test]
fn statements_time_out_unless_the_url_says_otherwise() {
    let (url, _client) = database();
    let timeout = |url: &str| -> String {
        let store = PgKeystore::connect(url).unwrap();
        store
            .read(|c| c.query_one("SHOW statement_timeout", &[]))
            .unwrap()
            .get(0)
    };
    assert_eq!(timeout(&url), "30s");
    let sep = if url.contains('?') { '&' } else { '?' };
    let own = format!("{url}{sep}options=-c%20statement_timeout%3D5s");
    assert_eq!(timeout(&own), "5s");
}

/// TLS when the URL asks for it, always verifying the server: its certificate must chain to
/// `sslrootcert` (or the system's CAs) and name the host.
#[test]
fn tls_is_used_when_asked_for_and_the_server_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let server = PgServer::start().unwrap();
    let certs = kura_testkit::tls::server_certificate(dir.path(), "pg").unwrap();
    let other = kura_testkit::tls::server_certificate(dir.path(), "other").unwrap();
    server.enable_tls(&certs.cert, &certs.key).unwrap();
    let url = server.url();
    let uses_tls = |store: &PgKeystore| -> bool {
        store
            .read(|c| {
                c.query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
            })
            .unwrap()
            .get(0)
    };
    let ca = certs.ca.display().to_string();
    for query in [
        format!("sslmode=verify-full&sslrootcert={ca}"),
        format!("sslrootcert={ca}"),
        format!("sslmode=require&sslrootcert={ca}"),
    ] {
        let store = PgKeystore::connect(&format!("{url}?{query}")).unwrap();
        assert!(uses_tls(&store), "{query}");
    }
    // Without TLS settings, as before: no TLS.
    assert!(!uses_tls(&PgKeystore::connect(&url).unwrap()));
    // An application's database (migrations) follows the same rules.
    let mut app =
        crate::connect_client(&format!("{url}?sslmode=verify-full&sslrootcert={ca}")).unwrap();
    let ssl: bool = app
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl);
    let Err(e) = crate::connect_client(&format!("{url}?sslmode=verify-full")) else {
        panic!("connected to a server no CA vouches for");
    };
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
    // A server whose certificate another CA signed, or no CA given (the system's do not
    // know the test CA): refused, saying why.
    for query in [
        format!("sslmode=verify-full&sslrootcert={}", other.ca.display()),
        "sslmode=require".to_owned(),
    ] {
        let Err(e) = PgKeystore::connect(&format!("{url}?{query}")) else {
            panic!("{query}: connected");
        };
        let text = e.to_string();
        assert!(
            text.contains("invalid peer certificate") && text.contains("sslrootcert=PATH"),
            "{query}: {text}"
        );
    }
    // A server without TLS, asked for it: refused, saying what to change.
    let plain = PgServer::start().unwrap();
    let Err(e) = PgKeystore::connect(&format!("{}?sslrootcert={ca}", plain.url())) else {
        panic!("connected without TLS");
    };
    assert!(e.to_string().contains("turn ssl on"), "{e}");
}

/// A server that authenticates clients by certificate: `sslcert` and `sslkey` are shown to
/// it; without them, or with another user's, it refuses.
#[test]
fn a_client_certificate_is_shown_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let server = PgServer::start().unwrap();
    let ca = kura_testkit::tls::server_certificate(dir.path(), "pg").unwrap();
    server.enable_tls(&ca.cert, &ca.key).unwrap();
    server.require_client_certificates(&ca.ca).unwrap();
    let (cert, key) =
        kura_testkit::tls::client_certificate(dir.path(), "client", &ca, "postgres").unwrap();
    let (other_cert, other_key) =
        kura_testkit::tls::client_certificate(dir.path(), "other", &ca, "someone").unwrap();
    let base = format!("{}?sslrootcert={}", server.url(), ca.ca.display());
    let with = |c: &std::path::Path, k: &std::path::Path| {
        format!("{base}&sslcert={}&sslkey={}", c.display(), k.display())
    };
    let store = PgKeystore::connect(&with(&cert, &key)).unwrap();
    let dn: String = store
        .read(|c| {
            c.query_one(
                "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
        })
        .unwrap()
        .get(0);
    assert!(dn.contains("CN=postgres"), "{dn}");
    for url in [base.clone(), with(&other_cert, &other_key)] {
        let Err(e) = PgKeystore::connect(&url) else {
            panic!("{url}: connected");
        };
        let text = e.to_string();
        assert!(text.contains("certificate"), "{url}: {text}");
    }
}
