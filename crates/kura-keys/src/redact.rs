//! `redact-info-log`: when on, values that may be user data (row ids, file paths,
//! encryption context values) are written to logs as `?`. Keys and plaintexts never
//! reach a log either way.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

static REDACT: AtomicBool = AtomicBool::new(false);

/// Turns redaction of user data in logs on or off for this process.
pub fn set_enabled(on: bool) {
    REDACT.store(on, Ordering::Relaxed);
}

/// Whether user data is redacted from logs.
pub fn enabled() -> bool {
    REDACT.load(Ordering::Relaxed)
}

/// `value` for a log line: itself, or `?` when redaction is on.
pub fn user_data<T: fmt::Display + ?Sized>(value: &T) -> UserData<'_, T> {
    UserData(value)
}

/// See [`user_data`].
pub struct UserData<'a, T: ?Sized>(&'a T);

impl<T: fmt::Display + ?Sized> fmt::Display for UserData<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if enabled() {
            f.write_str("?")
        } else {
            self.0.fmt(f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_user_data_when_on() {
        assert_eq!(user_data("row 42").to_string(), "row 42");
        set_enabled(true);
        assert_eq!(user_data("row 42").to_string(), "?");
        assert_eq!(format!("{}", user_data(&7)), "?");
        set_enabled(false);
        assert_eq!(user_data(&7).to_string(), "7");
    }
}
