//! [`RedbBackend`]: redb's `StorageBackend` over a kura-fs file, so a redb database keeps
//! everything it writes encrypted and authenticated.
//!
//! The database file is a page-mode file ([`crate::page`]): every 4 KiB page sealed with
//! a fresh nonce, bound to its index and its file. redb rewrites its header (the first
//! 320 bytes) in place on every commit and relies on that write being atomic enough for
//! its commit protocol; a torn write of an authenticated page would make the database
//! unopenable. So logical page 0 lives apart, in `<db>.kura-head`: two sealed slots, each
//! with a sequence number bound into its authentication. A write of page 0 always goes
//! to the slot that was not synced last, so a crash can tear only a slot whose contents
//! were never durable, and the other slot holds the header as of the last sync. The
//! database should use redb's two-phase commit (`set_two_phase_commit(true)`), whose
//! recovery trusts the header as of the last sync.
//!
//! `len` is the plaintext length; growth reads as zeros (sealed zero pages, never holes);
//! `sync_data` makes the pages, their nonces and tags, the length and the header slot
//! durable. Between syncs, the nonces and tags of written pages stay in memory (the file's
//! metadata blocks are written at the sync): redb never reads a page of an interrupted
//! commit after a crash, so one redb page write costs one aligned 4 KiB write, as on a
//! plain file.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::page::{PAGE, PageCipher, UNIT};
use crate::{EncryptedFs, Error, File, Method};

const SLOT: usize = 8 + UNIT;
/// Slot sequence numbers are sealed as page indices with the top bit set, which no data
/// page index reaches.
const SLOT_INDEX: u64 = 1 << 63;

struct Head {
    page: Box<[u8; PAGE]>,
    seq: u64,
    /// The slot synced last (`None`: neither holds anything yet).
    durable: Option<usize>,
    /// Whether a slot was written since the last sync.
    dirty: bool,
}

/// A redb storage backend on an encrypted file. Plaintext when the file system's method
/// is `plaintext`; otherwise always the page mode (CTR cannot serve in-place writes).
pub struct RedbBackend {
    data: File,
    head: Option<(PathBuf, fs::File, Mutex<Head>)>,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend")
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io { source, .. } => source,
        other => io::Error::other(other),
    }
}

impl RedbBackend {
    /// Opens (or creates) the database file `path` of `fs`.
    pub fn open(fs: &EncryptedFs, path: &str) -> Result<Self, Error> {
        let rel = crate::normalize(path)?;
        let abs = fs.root().join(&rel);
        let data = if abs.exists() {
            fs.open_file(&rel)?
        } else {
            match fs.method() {
                Method::Plaintext => fs.create_with(&rel, Method::Plaintext)?,
                _ => fs.create_with(&rel, Method::Aes256GcmPage)?,
            }
        };
        // redb syncs what it relies on, so page metadata waits for the sync (see
        // `File::defer_page_metadata`): one redb page write is one aligned block write.
        data.defer_page_metadata();
        let head = match data.page_cipher() {
            None => None,
            Some(cipher) => {
                let head_path = abs.with_file_name(format!(
                    "{}.kura-head",
                    abs.file_name().and_then(|n| n.to_str()).unwrap_or("db")
                ));
                let file = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&head_path)
                    .map_err(|source| Error::Io {
                        path: head_path.clone(),
                        source,
                    })?;
                let head = load_head(cipher, &file, !data.is_empty())?;
                Some((head_path, file, Mutex::new(head)))
            }
        };
        Ok(Self { data, head })
    }

    fn cipher(&self) -> Result<&PageCipher, Error> {
        self.data.page_cipher().ok_or(Error::Decrypt)
    }

    /// Writes page 0 into the slot not synced last.
    fn store_head(&self, file: &fs::File, h: &mut Head) -> Result<(), Error> {
        let slot = match h.durable {
            Some(d) => 1 - d,
            None => 0,
        };
        h.seq += 1;
        let mut buf = vec![0u8; SLOT];
        buf[..8].copy_from_slice(&h.seq.to_be_bytes());
        let unit: &mut [u8; UNIT] = (&mut buf[8..]).try_into().map_err(|_| Error::TooLarge)?;
        self.cipher()?.seal(SLOT_INDEX | h.seq, &h.page[..], unit)?;
        file.write_all_at(&buf, (slot * SLOT) as u64)
            .map_err(|source| Error::Io {
                path: PathBuf::from("kura-head"),
                source,
            })?;
        h.dirty = true;
        Ok(())
    }
}

/// The newest slot that opens. A database that has data but no readable slot is damaged.
fn load_head(cipher: &PageCipher, file: &fs::File, has_data: bool) -> Result<Head, Error> {
    let mut best: Option<(u64, usize, Box<[u8; PAGE]>)> = None;
    for slot in 0..2 {
        let mut buf = vec![0u8; SLOT];
        if file.read_exact_at(&mut buf, (slot * SLOT) as u64).is_err() {
            continue;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&buf[..8]);
        let seq = u64::from_be_bytes(seq);
        let Ok(unit) = <&[u8; UNIT]>::try_from(&buf[8..]) else {
            continue;
        };
        let mut page = Box::new([0u8; PAGE]);
        if cipher.open(SLOT_INDEX | seq, unit, &mut page).is_ok()
            && best.as_ref().is_none_or(|(s, _, _)| seq > *s)
        {
            best = Some((seq, slot, page));
        }
    }
    match best {
        Some((seq, slot, page)) => Ok(Head {
            page,
            seq,
            durable: Some(slot),
            dirty: false,
        }),
        None if !has_data => Ok(Head {
            page: Box::new([0u8; PAGE]),
            seq: 0,
            durable: None,
            dirty: false,
        }),
        None => Err(Error::Decrypt),
    }
}

impl redb::StorageBackend for RedbBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.data.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        let Some((_, _, head)) = &self.head else {
            return self.data.read_exact_at(out, offset).map_err(to_io);
        };
        let split = usize::try_from(PAGE as u64 - offset.min(PAGE as u64))
            .unwrap_or(0)
            .min(out.len());
        if split > 0 {
            let h = head.lock().unwrap_or_else(PoisonError::into_inner);
            let at = usize::try_from(offset).unwrap_or(0);
            out[..split].copy_from_slice(&h.page[at..at + split]);
        }
        if end > PAGE as u64 && split < out.len() {
            self.data
                .read_exact_at(&mut out[split..], offset + split as u64)
                .map_err(to_io)?;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.data.set_len(len).map_err(to_io)?;
        if let Some((_, file, head)) = &self.head
            && len < PAGE as u64
        {
            let mut h = head.lock().unwrap_or_else(PoisonError::into_inner);
            h.page[usize::try_from(len).unwrap_or(0)..].fill(0);
            self.store_head(file, &mut h).map_err(to_io)?;
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.data.sync_data().map_err(to_io)?;
        if let Some((_, file, head)) = &self.head {
            let mut h = head.lock().unwrap_or_else(PoisonError::into_inner);
            if h.dirty {
                file.sync_data()?;
                let written = match h.durable {
                    Some(d) => 1 - d,
                    None => 0,
                };
                h.durable = Some(written);
                h.dirty = false;
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let Some((_, file, head)) = &self.head else {
            return self.data.write_at(data, offset).map_err(to_io);
        };
        let split = usize::try_from(PAGE as u64 - offset.min(PAGE as u64))
            .unwrap_or(0)
            .min(data.len());
        let end = offset + data.len() as u64;
        if end > self.data.len() {
            // The length covers the whole write, page 0 included.
            self.data.set_len(end).map_err(to_io)?;
        }
        if split > 0 {
            let mut h = head.lock().unwrap_or_else(PoisonError::into_inner);
            let at = usize::try_from(offset).unwrap_or(0);
            h.page[at..at + split].copy_from_slice(&data[..split]);
            self.store_head(file, &mut h).map_err(to_io)?;
        }
        if split < data.len() {
            self.data
                .write_at(&data[split..], offset + split as u64)
                .map_err(to_io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! A torn write of page 0: the slot written after the last sync is damaged (a flipped
    //! byte, or the file cut short), and the header reads as of the last sync; with both
    //! slots damaged the database does not open.

    use std::path::Path;

    use redb::StorageBackend;

    use super::*;

    fn fs_at(dir: &Path) -> EncryptedFs {
        EncryptedFs::ephemeral(dir, Method::Aes256GcmPage).unwrap()
    }

    /// A header-sized write at offset 0 (redb's header is 320 bytes) plus a page after it.
    fn commit(b: &RedbBackend, tag: u8, sync: bool) {
        b.write(0, &[tag; 320]).unwrap();
        b.write(PAGE as u64, &[tag; 100]).unwrap();
        if sync {
            b.sync_data().unwrap();
        }
    }

    fn header(b: &RedbBackend) -> Vec<u8> {
        let mut h = vec![0u8; 320];
        b.read(0, &mut h).unwrap();
        h
    }

    enum Damage {
        Flip(usize),
        Cut(u64),
    }

    fn damage(head: &Path, slot: usize, how: &Damage) {
        let mut bytes = std::fs::read(head).unwrap();
        match how {
            Damage::Flip(at) => bytes[slot * SLOT + at] ^= 0x10,
            Damage::Cut(keep) => bytes.truncate(slot * SLOT + *keep as usize),
        }
        std::fs::write(head, bytes).unwrap();
    }

    #[test]
    fn a_torn_head_slot_reads_as_of_the_last_sync() {
        let dir = tempfile::tempdir().unwrap();
        let fs = fs_at(dir.path());
        let head = dir.path().join("root/db.kura-head");
        // Rounds of commits alternate the slots; the last one is never synced.
        for synced in [1u8, 2, 3] {
            let damages = [
                Damage::Flip(3),           // the sequence number
                Damage::Flip(8 + 5),       // the nonce
                Damage::Flip(8 + 13),      // `used`
                Damage::Flip(8 + 16 + 77), // the ciphertext
                Damage::Flip(SLOT - 1),    // the tag
                Damage::Cut(0),
                Damage::Cut(SLOT as u64 / 2),
                Damage::Cut(SLOT as u64 - 1),
            ];
            for how in &damages {
                let _ = std::fs::remove_file(dir.path().join("root/db"));
                let _ = std::fs::remove_file(&head);
                let b = RedbBackend::open(&fs, "db").unwrap();
                for t in 1..=synced {
                    commit(&b, t, true);
                }
                commit(&b, 0xee, false);
                assert_eq!(header(&b), vec![0xee; 320]);
                drop(b);
                // `synced` syncs alternate from slot 0; the unsynced write went to the
                // other slot than the last synced one.
                let newest = usize::from(synced % 2 == 1);
                if matches!(how, Damage::Cut(_)) && newest == 0 {
                    // Cutting slot 0 would cut slot 1 too; flips cover slot 0.
                    continue;
                }
                damage(&head, newest, how);
                let b = RedbBackend::open(&fs, "db").unwrap();
                assert_eq!(header(&b), vec![synced; 320], "after {synced} syncs");
                // Later commits still work and survive a reopen.
                commit(&b, 0x55, true);
                drop(b);
                let b = RedbBackend::open(&fs, "db").unwrap();
                assert_eq!(header(&b), vec![0x55; 320]);
            }
        }
    }

    #[test]
    fn both_slots_damaged_is_a_decryption_error() {
        let dir = tempfile::tempdir().unwrap();
        let fs = fs_at(dir.path());
        let head = dir.path().join("root/db.kura-head");
        for how in [Damage::Flip(8 + 200), Damage::Flip(2)] {
            let _ = std::fs::remove_file(dir.path().join("root/db"));
            let _ = std::fs::remove_file(&head);
            let b = RedbBackend::open(&fs, "db").unwrap();
            commit(&b, 1, true);
            commit(&b, 2, false);
            drop(b);
            damage(&head, 0, &how);
            damage(&head, 1, &how);
            assert!(matches!(RedbBackend::open(&fs, "db"), Err(Error::Decrypt)));
        }
        // A head file cut to nothing, or swapped with another database's.
        let b = RedbBackend::open(&fs, "other").unwrap();
        commit(&b, 9, true);
        drop(b);
        std::fs::copy(dir.path().join("root/other.kura-head"), &head).unwrap();
        assert!(matches!(RedbBackend::open(&fs, "db"), Err(Error::Decrypt)));
        std::fs::write(&head, b"").unwrap();
        assert!(matches!(RedbBackend::open(&fs, "db"), Err(Error::Decrypt)));
    }
}
