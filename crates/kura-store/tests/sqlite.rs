#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Behaviour of `SqliteKeystore` through the `Keystore` and `ObjectStore` traits: the
//! conformance suite every backend passes (round trips, ordering, the generation guard, the
//! one-active-key invariants, rollback, objects). File-level behaviour (persistence, modes,
//! schema versions, concurrency) is in `sqlite_files.rs`; the same suite runs against
//! PostgreSQL in `postgres.rs`.

mod common;

use common::Backend;

common::conformance::conformance_tests!(Backend::Sqlite);
