//! Key ids in the database: both backends store a `u64` key id as a positive `BIGINT`
//! (`INTEGER` in SQLite), so ids are in `1..2⁶³`.

use crate::Error;

/// Converts a key id to its stored form, rejecting ids outside `1..2⁶³`. `what` names the
/// key in the error (`KEK`, `data key`).
pub(crate) fn to_db_id(id: u64, what: &str) -> Result<i64, Error> {
    match i64::try_from(id) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(Error::Invalid(format!(
            "{what} id {id} is out of range (ids are in 1..2^63)"
        ))),
    }
}

/// Converts a stored key id back, rejecting ids that could not have been stored.
pub(crate) fn from_db_id(id: i64, location: &str) -> Result<u64, Error> {
    match u64::try_from(id) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(Error::Corrupt {
            location: location.to_owned(),
            what: format!("key id {id} is out of range"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_in_1_to_2_pow_63() {
        assert!(matches!(to_db_id(0, "KEK"), Err(Error::Invalid(_))));
        assert_eq!(to_db_id(1, "KEK").unwrap(), 1);
        assert_eq!(to_db_id(i64::MAX as u64, "KEK").unwrap(), i64::MAX);
        assert!(matches!(to_db_id(1 << 63, "KEK"), Err(Error::Invalid(_))));
        assert!(matches!(to_db_id(u64::MAX, "KEK"), Err(Error::Invalid(_))));

        assert_eq!(from_db_id(7, "x").unwrap(), 7);
        assert!(matches!(from_db_id(0, "x"), Err(Error::Corrupt { .. })));
        assert!(matches!(from_db_id(-1, "x"), Err(Error::Corrupt { .. })));
    }
}
