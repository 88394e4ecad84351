//! The keystore backends the life-cycle tests run against: SQLite (a file in the test's
//! temporary directory) and PostgreSQL (a database of its own on the one throwaway server of
//! the test binary), and [`both_backends!`] to run a test body against each.

use kura_testkit::postgres::shared_database;

/// Where a test's keystore lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A new, empty database on the test binary's one PostgreSQL server: its name and URL. A
/// test that cannot have a server fails (never skips).
pub(crate) fn new_database() -> (String, String) {
    shared_database("keys")
        .unwrap_or_else(|e| panic!("the PostgreSQL tests need a PostgreSQL server: {e}"))
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
