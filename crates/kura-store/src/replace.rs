//! What both backends share in [`Store::replace_all`](crate::Store::replace_all): the
//! contents checked and the objects restored as they are, so that a restore follows the
//! same rules on SQLite and on PostgreSQL (its generation checks are in
//! [`crate::generation`]).

use crate::objects::{Contents, ObjectWriter};
use crate::{Error, NODE_KIND, Object};

/// Refuses replaced contents without a KEK (`has_kek`: whether the replacement added one).
pub(crate) fn check_has_kek(has_kek: bool) -> Result<(), Error> {
    if has_kek {
        Ok(())
    } else {
        Err(Error::Invalid(
            "replacing a keystore's contents must add a KEK".into(),
        ))
    }
}

/// Inserts `objects` through `w` as they are (versions included), refusing node
/// registrations, versions outside `1..2⁶³` and duplicates.
pub(crate) fn insert_objects(w: &mut impl ObjectWriter, objects: &[Object]) -> Result<(), Error> {
    for o in objects {
        if o.kind == NODE_KIND {
            return Err(Error::Invalid(format!(
                "object {NODE_KIND}/{} is a node registration; those are never replaced",
                o.id
            )));
        }
        let version = i64::try_from(o.version)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "object {}/{} has version {}; versions are in 1..2^63",
                    o.kind, o.id, o.version
                ))
            })?;
        if !w.insert(&Contents::new(&o.kind, &o.id, version, &o.doc, &o.blob))? {
            return Err(Error::AlreadyExists {
                what: format!("{} {}", o.kind, o.id),
            });
        }
    }
    Ok(())
}
