//! The dictionary's bytes, without I/O or keys: the header, the frame around each sealed
//! record, the record bodies, the encryption context that binds a record to its place, and
//! the one function that applies a change (the same at run time and at replay).
//! `docs/format.md` ("File dictionary (kura-fs)") gives every byte.

use std::collections::BTreeMap;

use kura_format::EncryptionContext;

use super::FileInfo;
use crate::{Error, Method};

/// The file magic.
pub(super) const MAGIC: [u8; 3] = *b"KRD";
/// Format version 1: a header and one snapshot record, rewritten whole on every change.
pub(super) const SNAPSHOT_ONLY: u8 = 1;
/// Format version 2: a header, a snapshot record, then appended change records.
pub(super) const WITH_LOG: u8 = 2;
/// Length of the header: magic, version, 4 reserved bytes, the 16-byte dictionary id.
pub(super) const HEADER_LEN: usize = 24;
/// Length of a record's frame: the envelope length and its complement.
pub(super) const FRAME_LEN: usize = 8;
/// Records start and end on multiples of 8 bytes (so a frame never straddles a sector).
pub(super) const ALIGN: usize = 8;
/// The longest path a record holds (its length is a u16).
pub(super) const MAX_PATH: usize = u16::MAX as usize;

const SNAPSHOT: u8 = 1;
const INSERT: u8 = 2;
const REMOVE: u8 = 3;
const LINK: u8 = 4;
const ENTRY_FIXED: usize = 1 + 8 + 16;

/// The file header.
pub(super) fn header(version: u8, id: &[u8; 16]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..3].copy_from_slice(&MAGIC);
    h[3] = version;
    h[8..].copy_from_slice(id);
    h
}

/// Version and dictionary id of a header, or what is wrong with it.
pub(super) fn parse_header(bytes: &[u8]) -> Result<(u8, [u8; 16]), String> {
    let Some(h) = bytes.get(..HEADER_LEN) else {
        return Err(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ));
    };
    if h[..3] != MAGIC {
        return Err("not a kura file dictionary (bad magic)".into());
    }
    if h[3] != SNAPSHOT_ONLY && h[3] != WITH_LOG {
        return Err(format!(
            "format version {} is unknown; this kura reads versions 1 and 2 (a newer kura wrote it?)",
            h[3]
        ));
    }
    if h[4..8] != [0; 4] {
        return Err("reserved header bytes are not zero".into());
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[8..]);
    Ok((h[3], id))
}

/// The encryption context of record `seq` of dictionary `id` in format `version`.
pub(super) fn context(version: u8, id: &[u8; 16], seq: u64) -> EncryptionContext {
    let mut c = EncryptionContext::new();
    c.insert("purpose", "kura-fs file dictionary");
    c.insert("dictionary-id", hex(id));
    c.insert("format-version", version.to_string());
    c.insert("sequence", seq.to_string());
    c
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Zero bytes after an envelope of `len` bytes, so that the record ends aligned.
pub(super) fn padding(len: usize) -> usize {
    (ALIGN - (FRAME_LEN + len) % ALIGN) % ALIGN
}

/// Writes the frame of the envelope that fills `record[FRAME_LEN..]`, then the padding.
/// `None` if the envelope is longer than a frame can say (4 GiB).
pub(super) fn finish_frame(record: &mut Vec<u8>) -> Option<()> {
    let len = record.len().checked_sub(FRAME_LEN)?;
    let l = u32::try_from(len).ok()?;
    record[..4].copy_from_slice(&l.to_be_bytes());
    record[4..FRAME_LEN].copy_from_slice(&(!l).to_be_bytes());
    record.resize(record.len() + padding(len), 0);
    Some(())
}

/// What the bytes at a record's offset hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// A complete frame: the envelope, and the offset where the next record starts.
    Record { envelope: &'a [u8], end: usize },
    /// What an interrupted append leaves: too short for its frame or its record, or a frame
    /// that was never written (zeros).
    Torn(&'static str),
    /// Damage: a frame no writer produces.
    Bad(String),
}

/// The record starting at `at` (not at the end of `bytes`).
pub(super) fn frame(bytes: &[u8], at: usize) -> Frame<'_> {
    let rest = bytes.get(at..).unwrap_or_default();
    let Some(f) = rest.get(..FRAME_LEN) else {
        return Frame::Torn("the file ends inside a record's frame");
    };
    if f.iter().all(|&b| b == 0) {
        return Frame::Torn("a record's frame is zero (never written)");
    }
    let l = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
    let check = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
    if check != !l {
        return Frame::Bad("its length field does not match its check".into());
    }
    let len = l as usize;
    if len < kura_format::envelope::OVERHEAD {
        return Frame::Bad(format!("its length {len} is shorter than an envelope"));
    }
    let total = FRAME_LEN + len + padding(len);
    let Some(record) = rest.get(..total) else {
        return Frame::Torn("the file ends inside a record");
    };
    if record[FRAME_LEN + len..].iter().any(|&b| b != 0) {
        return Frame::Bad("its padding is not zero".into());
    }
    Frame::Record {
        envelope: &record[FRAME_LEN..FRAME_LEN + len],
        end: at + total,
    }
}

/// One change to the dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// `path` gets `info` (replacing any entry).
    Insert(String, FileInfo),
    /// `path` loses its entry.
    Remove(String),
    /// `to` gets `from`'s entry, or loses its own if `from` has none.
    Link { from: String, to: String },
}

/// A decoded record body.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Body {
    /// Every entry (record 0, and only record 0).
    Snapshot(BTreeMap<String, FileInfo>),
    /// A change (records 1 onwards).
    Change(Change),
}

/// Applies `change` to `entries`.
pub(super) fn apply(entries: &mut BTreeMap<String, FileInfo>, change: Change) {
    match change {
        Change::Insert(path, info) => {
            entries.insert(path, info);
        }
        Change::Remove(path) => {
            entries.remove(&path);
        }
        Change::Link { from, to } => match entries.get(&from).copied() {
            Some(info) => {
                entries.insert(to, info);
            }
            None => {
                entries.remove(&to);
            }
        },
    }
}

/// Checks that `path` is a normalised relative path: non-empty `/`-separated components,
/// none `.` or `..`, no NUL, at most [`MAX_PATH`] bytes.
pub(super) fn check_path(path: &str) -> Result<(), Error> {
    let ok = !path.is_empty()
        && path.len() <= MAX_PATH
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::BadPath(path.to_string()))
    }
}

/// Appends the body of a snapshot of `entries`.
pub(super) fn encode_snapshot(entries: &BTreeMap<String, FileInfo>, out: &mut Vec<u8>) {
    out.push(SNAPSHOT);
    // More than 2³² entries cannot be sealed in one 4 GiB record anyway; the frame check
    // refuses the record before this count could wrap.
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (path, info) in entries {
        encode_entry(path, info, out);
    }
}

/// Appends the body of a change record.
pub(super) fn encode_change(change: &Change, out: &mut Vec<u8>) {
    match change {
        Change::Insert(path, info) => {
            out.push(INSERT);
            encode_entry(path, info, out);
        }
        Change::Remove(path) => {
            out.push(REMOVE);
            encode_path(path, out);
        }
        Change::Link { from, to } => {
            out.push(LINK);
            encode_path(from, out);
            encode_path(to, out);
        }
    }
}

/// The paths were checked by [`check_path`], so their length fits a u16.
fn encode_path(path: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(path.len() as u16).to_be_bytes());
    out.extend_from_slice(path.as_bytes());
}

fn encode_entry(path: &str, info: &FileInfo, out: &mut Vec<u8>) {
    encode_path(path, out);
    out.push(info.method.code());
    out.extend_from_slice(&info.key_id.to_be_bytes());
    out.extend_from_slice(&info.salt);
}

/// Decodes a record body (which authenticated, so a failure here is a writer's bug or a
/// newer writer, never a torn write).
pub(super) fn decode(body: &[u8]) -> Result<Body, String> {
    let mut r = Reader(body);
    let kind = r.take(1)?[0];
    let decoded = match kind {
        SNAPSHOT => {
            let count = u32::from_be_bytes(r.array()?);
            let mut entries = BTreeMap::new();
            let mut last: Option<String> = None;
            for _ in 0..count {
                let (path, info) = r.entry()?;
                if last.as_deref().is_some_and(|l| l >= path.as_str()) {
                    return Err("snapshot entries are not in ascending path order".into());
                }
                last = Some(path.clone());
                entries.insert(path, info);
            }
            Body::Snapshot(entries)
        }
        INSERT => {
            let (path, info) = r.entry()?;
            Body::Change(Change::Insert(path, info))
        }
        REMOVE => Body::Change(Change::Remove(r.path()?)),
        LINK => {
            let from = r.path()?;
            let to = r.path()?;
            Body::Change(Change::Link { from, to })
        }
        k => return Err(format!("unknown record kind {k}")),
    };
    if !r.0.is_empty() {
        return Err("bytes after the record's end".into());
    }
    Ok(decoded)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("a record ends inside a field".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn path(&mut self) -> Result<String, String> {
        let n = usize::from(u16::from_be_bytes(self.array()?));
        let p = std::str::from_utf8(self.take(n)?)
            .map_err(|_| "a path is not UTF-8".to_string())?
            .to_string();
        check_path(&p).map_err(|_| "a path is not a normalised relative path".to_string())?;
        Ok(p)
    }

    fn entry(&mut self) -> Result<(String, FileInfo), String> {
        let path = self.path()?;
        let fixed = self.take(ENTRY_FIXED)?;
        let method = Method::from_code(fixed[0])
            .ok_or_else(|| format!("unknown method code {} (a newer kura?)", fixed[0]))?;
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&fixed[1..9]);
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&fixed[9..]);
        Ok((
            path,
            FileInfo {
                method,
                key_id: u64::from_be_bytes(key_id),
                salt,
            },
        ))
    }
}
