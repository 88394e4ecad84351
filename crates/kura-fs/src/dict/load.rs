//! Reading a dictionary file: the header, the snapshot, then the log, record by record,
//! each opened under the context of its position. Only the last record may be torn (an
//! interrupted append): it is reported and left out. Anything else that does not read is
//! damage.

use std::collections::BTreeMap;
use std::path::Path;

use kura_keys::Keyring;
use zeroize::Zeroizing;

use super::FileInfo;
use super::codec::{self, Body, Frame, HEADER_LEN, SNAPSHOT_ONLY, WITH_LOG};
use crate::Error;

/// A dictionary as read.
#[derive(Debug)]
pub(super) struct Loaded {
    /// The format version (1 or 2).
    pub(super) version: u8,
    /// The dictionary id.
    pub(super) id: [u8; 16],
    /// The entries after every record that read.
    pub(super) entries: BTreeMap<String, FileInfo>,
    /// Log records after the snapshot that read.
    pub(super) log_records: u64,
    /// Bytes up to the end of the last record that read.
    pub(super) valid_len: u64,
    /// The torn tail left out, if any.
    pub(super) torn: Option<Torn>,
}

/// A torn last record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Torn {
    /// Where it starts.
    pub(super) offset: u64,
    /// How many bytes were left out.
    pub(super) bytes: u64,
    /// Why it does not read.
    pub(super) reason: &'static str,
}

/// Reads the dictionary file `path`, whose contents are `bytes`.
pub(super) fn load(path: &Path, bytes: &[u8], keyring: &Keyring) -> Result<Loaded, Error> {
    let damage = |what: String| Error::Dictionary {
        path: path.to_path_buf(),
        what,
    };
    let (version, id) = codec::parse_header(bytes).map_err(damage)?;
    let mut entries = BTreeMap::new();
    let mut at = HEADER_LEN;
    let mut seq: u64 = 0;
    let mut torn = None;
    while at < bytes.len() || seq == 0 {
        if version == SNAPSHOT_ONLY && seq > 0 {
            return Err(damage(format!(
                "a snapshot-only (version 1) dictionary has {} bytes after its snapshot",
                bytes.len() - at
            )));
        }
        // Only an append can be interrupted, so only a log record can be torn.
        let may_tear = version == WITH_LOG && seq > 0;
        let tear = |reason: &'static str| {
            if may_tear {
                Ok(Torn {
                    offset: at as u64,
                    bytes: (bytes.len() - at) as u64,
                    reason,
                })
            } else {
                Err(damage(format!(
                    "record {seq} at offset {at} is incomplete ({reason}), but it was written whole"
                )))
            }
        };
        let (envelope, end) = match codec::frame(bytes, at) {
            Frame::Record { envelope, end } => (envelope, end),
            Frame::Torn(reason) => {
                torn = Some(tear(reason)?);
                break;
            }
            Frame::Bad(what) => return Err(damage(format!("record {seq} at offset {at}: {what}"))),
        };
        let mut body = Zeroizing::new(Vec::new());
        let context = codec::context(version, &id, seq);
        if let Err(e) = keyring.open_envelope(&context, envelope, &mut body) {
            match e {
                // Altered, misplaced, foreign or half-written bytes (a half-written key id
                // names no key). The last record may be an interrupted append.
                kura_keys::Error::Format(_) | kura_keys::Error::UnknownDataKey(_) => {
                    if end == bytes.len() && may_tear {
                        torn = Some(tear("the last record does not authenticate")?);
                        break;
                    }
                    return Err(damage(format!(
                        "record {seq} at offset {at} does not authenticate: it was altered, moved, \
                         or comes from another dictionary or keystore ({e})"
                    )));
                }
                // A destroyed data key, an unreachable keystore: not damage to this file.
                e => return Err(e.into()),
            }
        }
        match (seq, codec::decode(&body)) {
            (0, Ok(Body::Snapshot(s))) => entries = s,
            (1.., Ok(Body::Change(c))) => codec::apply(&mut entries, c),
            (_, Ok(_)) => {
                return Err(damage(format!(
                    "record {seq} at offset {at} is of the wrong kind for its place"
                )));
            }
            (_, Err(what)) => return Err(damage(format!("record {seq} at offset {at}: {what}"))),
        }
        at = end;
        seq += 1;
    }
    Ok(Loaded {
        version,
        id,
        entries,
        log_records: seq.saturating_sub(1),
        valid_len: at as u64,
        torn,
    })
}
