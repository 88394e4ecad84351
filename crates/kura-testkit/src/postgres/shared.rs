//! One throwaway PostgreSQL server per test binary, shared by its tests, each of which
//! takes a database of its own: [`shared_server`] and [`shared_database`].

use std::io;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};

use super::PgServer;

/// The test binary's server, started on first use. It lives in a `static`, so `Drop` never
/// runs: its watchdog stops it and removes its directory when the binary exits. A failed
/// start is kept (as its message) and reported to every caller.
static SHARED: LazyLock<Result<PgServer, String>> =
    LazyLock::new(|| PgServer::start().map_err(|e| e.to_string()));

/// The test binary's shared server, started on the first call.
///
/// A server that did not start is an error (the same for every call): a test that needs
/// PostgreSQL should fail with it, never skip.
pub fn shared_server() -> io::Result<&'static PgServer> {
    SHARED.as_ref().map_err(|e| {
        io::Error::other(format!(
            "kura-testkit: the test binary's shared PostgreSQL server did not start: {e}"
        ))
    })
}

/// A new, empty database on the test binary's shared server ([`shared_server`]): its name,
/// `<prefix>_<pid>_<n>` (`n` counts the databases made so far), and its URL. `prefix` must
/// leave the name a valid one for [`PgServer::create_database`].
pub fn shared_database(prefix: &str) -> io::Result<(String, String)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = shared_server()?;
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let url = server.create_database(&name)?;
    Ok((name, url))
}
