//! Driver errors as kura shows them: one line, the password scrubbed, and whether the
//! connection is gone.

use std::error::Error as StdError;
use std::fmt;

use ::postgres::error::SqlState;

/// A driver error as text (already scrubbed of the password).
#[derive(Debug)]
pub(super) struct DriverError(pub(super) String);

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for DriverError {}

/// Whether `e` means the connection is gone or could not be made (rather than a statement
/// failing): an I/O error, a closed connection, a timeout, or the server shutting down.
pub(super) fn is_connection_error(e: &::postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code);
    }
    if e.is_closed() {
        return true;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    // `connect_timeout` expired; the driver gives no other sign of it.
    e.to_string() == "timeout waiting for server"
}

/// `e` and its causes, one line (a server error with its SQLSTATE, detail and hint).
pub(super) fn chain(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
