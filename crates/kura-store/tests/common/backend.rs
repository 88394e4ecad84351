//! The backend fixture: a fresh, empty store on SQLite (a file in a temporary directory) or
//! PostgreSQL (a database of its own on the one throwaway server of the test binary).

use kura_store::{PgKeystore, Snapshot, SqliteKeystore, Store};
use kura_testkit::PgServer;
use tempfile::TempDir;

use super::initial_changes;

/// Which store a conformance test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The test binary's shared PostgreSQL server; a test that cannot have one fails (never
/// skips).
pub(crate) fn server() -> &'static PgServer {
    kura_testkit::postgres::shared_server()
        .unwrap_or_else(|e| panic!("the PostgreSQL tests need a PostgreSQL server: {e}"))
}

/// A new, empty database on the shared server; its URL.
pub(crate) fn new_database() -> String {
    kura_testkit::postgres::shared_database("kura")
        .unwrap_or_else(|e| panic!("the PostgreSQL tests need a PostgreSQL server: {e}"))
        .1
}

/// A store of one backend and the means to open it again.
pub(crate) struct Fixture {
    pub(crate) backend: Backend,
    pub(crate) store: Box<dyn Store>,
    /// Where the store is, as its errors name it.
    pub(crate) location: String,
    /// The file or URL to open it again.
    target: String,
    _dir: Option<TempDir>,
}

impl Fixture {
    /// A new, empty store.
    pub(crate) fn fresh(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("keystore.db");
                let target = path.display().to_string();
                Self {
                    backend,
                    store: Box::new(SqliteKeystore::open(&path).unwrap()),
                    location: target.clone(),
                    target,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let url = new_database();
                let store = PgKeystore::connect(&url).unwrap();
                Self {
                    backend,
                    location: store.location().to_owned(),
                    store: Box::new(store),
                    target: url,
                    _dir: None,
                }
            }
        }
    }

    /// A store initialised with [`initial_changes`], at generation 1.
    pub(crate) fn initialised(backend: Backend) -> Self {
        let f = Self::fresh(backend);
        let generation = f.store.initialize(&initial_changes()).unwrap();
        assert_eq!(generation, 1);
        f
    }

    /// Another handle on the same store (as another process or node would have).
    pub(crate) fn open_again(&self) -> Box<dyn Store> {
        match self.backend {
            Backend::Sqlite => {
                Box::new(SqliteKeystore::open(std::path::Path::new(&self.target)).unwrap())
            }
            Backend::Postgres => Box::new(PgKeystore::connect(&self.target).unwrap()),
        }
    }

    /// The snapshot of an initialised store.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.store.snapshot().unwrap().expect("initialised")
    }
}
