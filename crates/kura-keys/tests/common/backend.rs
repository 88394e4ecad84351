//! The keystore backends the life-cycle tests run against: SQLite (a file in the test's
//! temporary directory) and PostgreSQL (a database of its own on the one throwaway server of
//! the test binary), and [`both_backends!`] to run a test body against each.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};

use kura_testkit::PgServer;

/// Where a test's keystore lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The test binary's PostgreSQL server, started on first use and stopped by its watchdog
/// when the binary exits.
static SERVER: LazyLock<Result<PgServer, String>> =
    LazyLock::new(|| PgServer::start().map_err(|e| e.to_string()));

/// A new, empty database on the shared server: its name and URL. A test that cannot have a
/// server fails (never skips).
pub(crate) fn new_database() -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = match &*SERVER {
        Ok(s) => s,
        Err(e) => panic!("the PostgreSQL tests need a PostgreSQL server: {e}"),
    };
    let name = format!(
        "keys_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let url = server
        .create_database(&name)
        .unwrap_or_else(|e| panic!("{e}"));
    (name, url)
}

/// Runs each listed `fn name(b: Backend)` against both backends, as the tests
/// `sqlite::name` and `postgres::name`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::common::Backend::Sqlite);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::common::Backend::Postgres);
                }
            )*
        }
    };
}

pub(crate) use both_backends;
