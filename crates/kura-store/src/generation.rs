//! The generation: the counter every key change bumps (see [`crate::Keystore::generation`]),
//! stored as a signed 64-bit number and checked the same way by both backends.

use crate::Error;

/// The generation as [`crate::Keystore::generation`] reports it, from the stored counter
/// and whether the keystore at `location` holds a KEK: `None` if it does not, an error if the
/// counter is not a positive number although it does.
pub(crate) fn from_stored(
    generation: i64,
    initialised: bool,
    location: &str,
) -> Result<Option<u64>, Error> {
    if !initialised {
        return Ok(None);
    }
    match u64::try_from(generation) {
        Ok(g) if g > 0 => Ok(Some(g)),
        _ => Err(Error::Corrupt {
            location: location.to_owned(),
            what: format!("generation {generation} in an initialised keystore"),
        }),
    }
}

/// Checks the generation a [`crate::Keystore::commit`] expects against `found`, the
/// keystore's (`None` if it is not initialised), and returns it.
pub(crate) fn check_commit(
    expected: u64,
    found: Option<u64>,
    location: &str,
) -> Result<u64, Error> {
    let found = found.ok_or_else(|| Error::NotInitialized {
        location: location.to_owned(),
    })?;
    if found != expected {
        return Err(Error::Conflict { expected, found });
    }
    Ok(found)
}

/// Checks the generation the caller expects (`None`: an uninitialised keystore) against
/// `found`, the keystore's (`None` if it is not initialised).
pub(crate) fn check_replace(
    expected: Option<u64>,
    found: Option<u64>,
    location: &str,
) -> Result<(), Error> {
    match (expected, found) {
        (None, Some(_)) => Err(Error::AlreadyInitialized {
            location: location.to_owned(),
        }),
        (Some(_), None) => Err(Error::NotInitialized {
            location: location.to_owned(),
        }),
        (Some(expected), Some(found)) if expected != found => {
            Err(Error::Conflict { expected, found })
        }
        (None, None) | (Some(_), Some(_)) => Ok(()),
    }
}

/// The generation after a replacement: one past `stored`, the stored counter (which may be
/// 0 when no key is stored).
pub(crate) fn after_replace(stored: i64, location: &str) -> Result<u64, Error> {
    u64::try_from(stored)
        .ok()
        .and_then(|g| g.checked_add(1))
        .ok_or_else(|| Error::Corrupt {
            location: location.to_owned(),
            what: format!("generation {stored} cannot be bumped"),
        })
}
