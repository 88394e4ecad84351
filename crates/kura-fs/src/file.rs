//! One open file: plaintext, CTR (append-only) or page mode (rewritable).
//!
//! Every encrypted file starts with a 32-byte header naming how it is encrypted, so a
//! file decrypts the same whatever the dictionary says after a crash:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `KRFS` |
//! | 4 | version: 1, or 2 for page-mode files created now (the page layout, [`crate::page`]) |
//! | 5 | method code (1–4 CTR, 5 page) |
//! | 6..8 | zero |
//! | 8..16 | data key id (u64 BE) |
//! | 16..32 | salt: the file's random id; its key is derived from the data key with it, and it is the CTR initial counter |
//!
//! CTR files are write-once/append-only: a write must start at or past the end, and
//! truncation is only to zero (the file then gets a new salt, so a new key). This is the
//! rule that keeps CTR from ever encrypting two contents at one offset under one key;
//! files rewritten in place use the page mode.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use kura_crypto::CtrCipher;
use kura_keys::Keyring;

use crate::dict::FileInfo;
use crate::page::{Layout, PAGE, PageCipher};
use crate::{Error, Method};

mod pages;

use pages::Pages;

/// Bytes of the header of an encrypted file.
pub const HEADER: usize = 32;
const MAGIC: &[u8; 4] = b"KRFS";
/// Bytes a CTR append encrypts and writes at a time.
const CTR_PIECE: usize = 256 << 10;

/// The header of `info`.
pub(crate) fn header(info: &FileInfo) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(MAGIC);
    // Page-mode files are created in the aligned layout; CTR files have one version.
    h[4] = match info.method {
        Method::Aes256GcmPage => Layout::V2.version(),
        _ => 1,
    };
    h[5] = info.method.code();
    h[8..16].copy_from_slice(&info.key_id.to_be_bytes());
    h[16..].copy_from_slice(&info.salt);
    h
}

/// The file info a header names, if it is one, and its page layout.
pub(crate) fn parse_header(h: &[u8]) -> Option<(FileInfo, Layout)> {
    if h.len() < HEADER || &h[..4] != MAGIC || h[6..8] != [0, 0] {
        return None;
    }
    let method = Method::from_code(h[5]).filter(|m| *m != Method::Plaintext)?;
    let layout = match (h[4], method) {
        (1, _) => Layout::V1,
        (2, Method::Aes256GcmPage) => Layout::V2,
        _ => return None,
    };
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[8..16]);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&h[16..32]);
    Some((
        FileInfo {
            method,
            key_id: u64::from_be_bytes(id),
            salt,
        },
        layout,
    ))
}

/// The key of a file.
pub(crate) fn file_key(
    keyring: &Keyring,
    info: &FileInfo,
) -> Result<kura_crypto::SecretBytes, Error> {
    Ok(keyring.derive(
        info.key_id,
        &info.salt,
        info.method.as_str().as_bytes(),
        info.method.key_len(),
    )?)
}

enum Kind {
    Plain,
    Ctr(CtrCipher),
    Page(Pages),
}

/// An open file. All methods take `&self` and may be called from many threads; writes
/// are serialised per file.
pub struct File {
    path: PathBuf,
    file: fs::File,
    kind: Kind,
    info: Option<FileInfo>,
    /// The plaintext length.
    len: RwLock<u64>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("method", &self.method())
            .finish_non_exhaustive()
    }
}

fn to_usize(n: u64) -> Result<usize, Error> {
    usize::try_from(n).map_err(|_| Error::TooLarge)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl File {
    /// Opens `file` at `path`: encrypted as its header says, or plaintext if it has none
    /// and `expect` (the dictionary's entry) names none.
    pub(crate) fn open(
        path: PathBuf,
        file: fs::File,
        keyring: &Keyring,
        expect: Option<FileInfo>,
    ) -> Result<Self, Error> {
        let physical = file.metadata().map_err(io(&path))?.len();
        let mut head = [0u8; HEADER];
        let info = if physical >= HEADER as u64 {
            file.read_exact_at(&mut head, 0).map_err(io(&path))?;
            parse_header(&head)
        } else {
            None
        };
        let (info, layout) = match (info, expect) {
            (Some((i, layout)), _) => (Some(i), layout),
            // An entry but an empty file: a create interrupted between the truncation and
            // the header, so the entry may be the old file's, whose salt's keystream
            // encrypted the old content at these offsets: a new salt, hence a new key. (A
            // short file with content is not emptied: it is not one of ours.)
            (None, Some(e)) if physical == 0 => {
                let mut salt = [0u8; 16];
                kura_crypto::rng::fill(&mut salt)?;
                let name = e.method.as_str().as_bytes();
                let (key_id, _) = keyring.derive_active(&salt, name, e.method.key_len())?;
                let fresh = FileInfo {
                    method: e.method,
                    key_id,
                    salt,
                };
                file.write_all_at(&header(&fresh), 0).map_err(io(&path))?;
                (Some(fresh), Layout::V2)
            }
            (None, Some(_)) => return Err(Error::Decrypt),
            (None, None) => (None, Layout::V2),
        };
        let kind = match &info {
            None => Kind::Plain,
            Some(i) => {
                let key = file_key(keyring, i)?;
                match i.method.ctr() {
                    Some(c) => Kind::Ctr(CtrCipher::new(c, key.expose_secret(), i.salt)?),
                    None => Kind::Page(Pages::new(PageCipher::new(
                        key.expose_secret(),
                        i.salt,
                        layout,
                    )?)),
                }
            }
        };
        let mut f = Self {
            path,
            file,
            kind,
            info,
            len: RwLock::new(0),
        };
        let len = f.plaintext_len()?;
        f.len = RwLock::new(len);
        Ok(f)
    }

    /// How the file is encrypted.
    pub fn method(&self) -> Method {
        self.info.map_or(Method::Plaintext, |i| i.method)
    }

    /// The page cipher of a page-mode file.
    pub(crate) fn page_cipher(&self) -> Option<&PageCipher> {
        match &self.kind {
            Kind::Page(p) => Some(p.cipher()),
            _ => None,
        }
    }

    /// The page layout of a page-mode file (`None` for other methods).
    pub fn page_layout(&self) -> Option<Layout> {
        self.page_cipher().map(PageCipher::layout)
    }

    /// Page mode: page metadata reaches the file only at [`File::sync_data`] (or when
    /// the file is dropped), for a user that reads nothing unsynced after a crash.
    pub(crate) fn defer_page_metadata(&self) {
        if let Kind::Page(p) = &self.kind {
            p.defer();
        }
    }

    /// The dictionary entry of the file (`None`: plaintext).
    pub fn info(&self) -> Option<FileInfo> {
        self.info
    }

    fn plaintext_len(&self) -> Result<u64, Error> {
        let physical = self.file.metadata().map_err(io(&self.path))?.len();
        match &self.kind {
            Kind::Plain => Ok(physical),
            Kind::Ctr(_) => Ok(physical.saturating_sub(HEADER as u64)),
            Kind::Page(p) => p.plaintext_len(&self.file, &self.path),
        }
    }

    /// The plaintext length.
    pub fn len(&self) -> u64 {
        *self
            .len
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (fewer only at the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, Error> {
        let len = self
            .len
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = usize::try_from(len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let buf = &mut buf[..n];
        if n == 0 {
            return Ok(0);
        }
        match &self.kind {
            Kind::Plain => self
                .file
                .read_exact_at(buf, offset)
                .map_err(io(&self.path))?,
            Kind::Ctr(c) => {
                self.file
                    .read_exact_at(buf, HEADER as u64 + offset)
                    .map_err(io(&self.path))?;
                c.apply_keystream(offset, buf)?;
            }
            Kind::Page(pages) => {
                // For pages wanted in part; whole pages are opened straight into `buf`.
                let mut page: Option<Box<[u8; PAGE]>> = None;
                let mut done = 0;
                while done < n {
                    let at = offset + done as u64;
                    let index = at / PAGE as u64;
                    let skip = (at % PAGE as u64) as usize;
                    let take = (PAGE - skip).min(n - done);
                    let out = &mut buf[done..done + take];
                    if let Ok(whole) = <&mut [u8; PAGE]>::try_from(&mut *out) {
                        pages.read(&self.file, &self.path, index, whole)?;
                    } else {
                        let page = page.get_or_insert_with(|| Box::new([0u8; PAGE]));
                        pages.read(&self.file, &self.path, index, page)?;
                        out.copy_from_slice(&page[skip..skip + take]);
                    }
                    done += take;
                }
            }
        }
        Ok(n)
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        if self.read_at(buf, offset)? != buf.len() {
            return Err(Error::Io {
                path: self.path.clone(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(())
    }

    /// Writes `data` at `offset` (past the end: the gap reads as zeros).
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<(), Error> {
        let mut len = self
            .len
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if data.is_empty() {
            return Ok(());
        }
        match &self.kind {
            Kind::Plain => self
                .file
                .write_all_at(data, offset)
                .map_err(io(&self.path))?,
            Kind::Ctr(c) => self.ctr_append(c, &mut len, offset, data)?,
            Kind::Page(pages) => {
                if offset > *len {
                    self.grow_pages(pages, *len, offset)?;
                    *len = offset;
                }
                let end = offset + data.len() as u64;
                self.write_pages(pages, *len, offset, data)?;
                *len = (*len).max(end);
                return Ok(());
            }
        }
        *len = (*len).max(offset + data.len() as u64);
        Ok(())
    }

    /// Encrypts `data` at `offset >= len` (the gap as zeros) and moves `len` past it.
    fn ctr_append(
        &self,
        c: &CtrCipher,
        len: &mut u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), Error> {
        if offset < *len {
            return Err(Error::CtrOverwrite {
                path: self.path.clone(),
                offset,
                len: *len,
            });
        }
        let gap = usize::try_from(offset - *len).map_err(|_| Error::TooLarge)?;
        let total = gap.checked_add(data.len()).ok_or(Error::TooLarge)?;
        // The zeros of the gap then `data`, encrypted and written a bounded piece at a
        // time through one buffer (never zero-filled where `data` goes).
        let mut buf = Vec::with_capacity(total.min(CTR_PIECE));
        let mut done = 0;
        while done < total {
            let n = (total - done).min(CTR_PIECE);
            let zeros = gap.saturating_sub(done).min(n);
            buf.clear();
            buf.resize(zeros, 0);
            if zeros < n {
                buf.extend_from_slice(&data[done + zeros - gap..done + n - gap]);
            }
            let at = *len + done as u64;
            c.apply_keystream(at, &mut buf)?;
            self.file
                .write_all_at(&buf, HEADER as u64 + at)
                .map_err(io(&self.path))?;
            done += n;
        }
        *len = offset + data.len() as u64;
        Ok(())
    }

    /// Appends `data`.
    pub fn append(&self, data: &[u8]) -> Result<(), Error> {
        self.write_at(data, self.len())
    }

    /// Seals the pages covering `[offset, offset + data.len())` of a file of `len` bytes
    /// (`offset <= len`), reading back the pages it changes only in part.
    fn write_pages(&self, pages: &Pages, len: u64, offset: u64, data: &[u8]) -> Result<(), Error> {
        let end = offset + data.len() as u64;
        let new_len = len.max(end);
        let first = offset / PAGE as u64;
        let last = (end - 1) / PAGE as u64;
        let count = usize::try_from(last - first + 1).map_err(|_| Error::TooLarge)?;
        let mut run = pages.run(first, count)?;
        // For pages changed in part: the page read back and merged (allocated only then).
        let mut page_buf = None;
        for (k, index) in (first..=last).enumerate() {
            let start = index * PAGE as u64;
            let used = usize::try_from((new_len - start).min(PAGE as u64)).unwrap_or(PAGE);
            let from = offset.max(start);
            let to = end.min(start + PAGE as u64);
            let d = usize::try_from(from - offset).unwrap_or(0);
            let p = usize::try_from(from - start).unwrap_or(0);
            let n = usize::try_from(to - from).unwrap_or(0);
            if p == 0 && n == used {
                // The write covers every byte in use: sealed straight from `data`.
                pages.seal(&self.file, &self.path, &mut run, k, &data[d..d + n])?;
                continue;
            }
            let page = page_buf.get_or_insert_with(|| Box::new([0u8; PAGE]));
            page.fill(0);
            if start < len {
                pages.read(&self.file, &self.path, index, page)?;
            }
            page[p..p + n].copy_from_slice(&data[d..d + n]);
            pages.seal(&self.file, &self.path, &mut run, k, &page[..used])?;
        }
        pages.write(&self.file, &self.path, run, new_len.div_ceil(PAGE as u64))
    }

    /// Grows a page file from `len` to `to` bytes of zeros, never holes: a page of zeros on
    /// disk does not open. Version 2: the last page so far is filled up and sealed again;
    /// the whole pages after it are written as entries of pages of zeros
    /// ([`crate::page::ZEROS`]), without ciphertext. A step at a time, so a crash leaves
    /// the file grown by whole steps.
    fn grow_pages(&self, pages: &Pages, len: u64, to: u64) -> Result<(), Error> {
        const STEP: u64 = 256 * PAGE as u64;
        let page = PAGE as u64;
        if pages.cipher().layout() == Layout::V2 {
            let boundary = len.div_ceil(page) * page;
            let fill = to.min(boundary);
            if len < fill {
                let zeros = [0u8; PAGE];
                self.write_pages(pages, len, len, &zeros[..to_usize(fill - len)?])?;
            }
            let mut at = boundary;
            while at < to {
                let stop = to.min(at + STEP);
                let count = to_usize((stop - at).div_ceil(page))?;
                let mut run = pages.zero_run(at / page, count);
                for k in 0..count {
                    let start = at + k as u64 * page;
                    let used = to_usize((stop - start).min(page))?;
                    pages.seal_zeros(&self.file, &self.path, &mut run, k, used)?;
                }
                pages.write(&self.file, &self.path, run, stop.div_ceil(page))?;
                at = stop;
            }
            return Ok(());
        }
        let mut at = len;
        while at < to {
            let n = (to - at).min(STEP - at % PAGE as u64);
            let zeros = vec![0u8; to_usize(n)?];
            self.write_pages(pages, at, at, &zeros)?;
            at += n;
        }
        Ok(())
    }

    /// Sets the plaintext length: growth reads as zeros. A CTR file can only be emptied
    /// (see the module documentation); [`crate::EncryptedFs::create`] gives it a new key.
    pub fn set_len(&self, new: u64) -> Result<(), Error> {
        let mut len = self
            .len
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &self.kind {
            Kind::Plain => self.file.set_len(new).map_err(io(&self.path))?,
            Kind::Ctr(c) => {
                if new < *len {
                    return Err(Error::CtrOverwrite {
                        path: self.path.clone(),
                        offset: new,
                        len: *len,
                    });
                }
                let at = *len;
                return self.ctr_append(
                    c,
                    &mut len,
                    at,
                    &vec![0u8; usize::try_from(new - at).map_err(|_| Error::TooLarge)?],
                );
            }
            Kind::Page(pages) => {
                if new > *len {
                    self.grow_pages(pages, *len, new)?;
                } else if new < *len {
                    let count = new.div_ceil(PAGE as u64);
                    if !new.is_multiple_of(PAGE as u64) {
                        // The new last page shrinks: reseal it with its new length.
                        let index = count - 1;
                        let mut page = Box::new([0u8; PAGE]);
                        pages.read(&self.file, &self.path, index, &mut page)?;
                        let used = usize::try_from(new - index * PAGE as u64).unwrap_or(PAGE);
                        let mut run = pages.run(index, 1)?;
                        pages.seal(&self.file, &self.path, &mut run, 0, &page[..used])?;
                        pages.write(&self.file, &self.path, run, count)?;
                    }
                    // The new last page may be one whose entry waits for a sync.
                    pages.flush(&self.file, &self.path)?;
                    pages.truncate(&self.file, &self.path, count)?;
                }
            }
        }
        *len = new;
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn sync_data(&self) -> Result<(), Error> {
        if let Kind::Page(pages) = &self.kind {
            pages.flush(&self.file, &self.path)?;
        }
        self.file.sync_data().map_err(io(&self.path))
    }
}

impl Drop for File {
    /// Deferred page metadata is written (not synced): a file closed without a sync
    /// still reads back whole, as a plain file would.
    fn drop(&mut self) {
        if let Kind::Page(pages) = &self.kind
            && let Err(e) = pages.flush(&self.file, &self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "page metadata not written at close");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
