//! What both backends' schema migrations share: which stored schema versions a build can
//! open.

use crate::Error;

/// The schema version `migrations` take a database to (entry `n` upgrades version `n` to
/// `n + 1`).
// The lists are tiny; the cast cannot truncate.
#[allow(clippy::cast_possible_wrap)]
pub(crate) const fn latest_version(migrations: &[&str]) -> i64 {
    migrations.len() as i64
}

/// Checks that `version`, the stored schema version of the keystore at `location`, is one
/// this build can open (`latest` is the newest it knows), returning it as the index of the
/// first migration still to apply.
pub(crate) fn check_version(version: i64, latest: i64, location: &str) -> Result<usize, Error> {
    if version > latest {
        return Err(Error::SchemaTooNew {
            location: location.to_owned(),
            found: version,
            supported: latest,
        });
    }
    usize::try_from(version).map_err(|_| Error::Corrupt {
        location: location.to_owned(),
        what: format!("negative schema version {version}"),
    })
}
