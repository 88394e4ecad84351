//! Where a page-mode file keeps its pages ([`crate::page`] has the bytes): the version-1
//! units, or the version-2 aligned pages with two entry slots each in group blocks.
//!
//! A version-2 file keeps the metadata blocks it has used in memory (at most
//! [`CACHED_GROUPS`] clean ones), and for each page the slot known to describe its
//! current ciphertext, so reading a page is one aligned read and one decryption. A write
//! puts each page's new entry in its other slot and then the ciphertexts: a crash between
//! the two, or a write cut short, leaves every page readable as before or after it (pages
//! are whole 4 KiB blocks of the file, which a killed write never leaves in part). With
//! [`Pages::defer`] (the redb backend) entries are written only by [`Pages::flush`], which
//! `sync_data` calls first: one page write is then one aligned block write, and a crash
//! loses only what was never synced, which a database with two-phase commit never reads
//! again. Growth writes entries only ([`Pages::zero_run`]): pages of zeros need no
//! ciphertext.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::Error;
use crate::page::{
    self, GROUP, Layout, META, PAGE, PageCipher, SLOTS, UNIT, data_at, group_at, meta_at, pages_in,
};

use super::{HEADER, io, to_usize};

/// Clean metadata blocks kept in memory (about 16 MiB, the entries of 1 GiB of pages).
const CACHED_GROUPS: usize = 4096;
/// The largest write buffer kept for the next write.
const KEPT_BUFFER: usize = 1 << 20;
/// Bytes of one page's slots in a metadata block.
const PAIR: usize = SLOTS * META;

/// The pages of one page-mode file.
pub(super) struct Pages {
    cipher: PageCipher,
    /// Version 2: the metadata blocks read or written so far.
    meta: Mutex<Meta>,
    /// The buffers of the last write, reused by the next (writes are one at a time).
    spare: Mutex<Run>,
}

#[derive(Default)]
struct Meta {
    groups: HashMap<u64, Group, BuildHasherDefault<GroupHasher>>,
    /// Groups with entries not yet written to the file (only with `defer`).
    dirty: BTreeSet<u64>,
    defer: bool,
}

struct Group {
    block: Box<[u8; PAGE]>,
    /// Per page: the slot that opened or was written last ([`UNKNOWN`]: not yet seen).
    current: [u8; GROUP as usize],
}

const UNKNOWN: u8 = u8::MAX;

/// Pages sealed for one write: ciphertexts (version 1: whole units), entries and the slot
/// each entry goes to.
#[derive(Default)]
pub(super) struct Run {
    first: u64,
    stored: Vec<u8>,
    metas: Vec<[u8; META]>,
    slots: Vec<u8>,
}

impl Pages {
    pub(super) fn new(cipher: PageCipher) -> Self {
        Self {
            cipher,
            meta: Mutex::new(Meta::default()),
            spare: Mutex::default(),
        }
    }

    pub(super) fn cipher(&self) -> &PageCipher {
        &self.cipher
    }

    fn meta(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, entries reach the file at [`Pages::flush`] only.
    pub(super) fn defer(&self) {
        self.meta().defer = true;
    }

    /// Both entry slots of page `index` and the slot known current (version 2).
    fn slots(
        &self,
        file: &fs::File,
        path: &Path,
        index: u64,
    ) -> Result<([[u8; META]; SLOTS], u8), Error> {
        let mut m = self.meta();
        let g = m.group(file, path, index / GROUP)?;
        let k = to_usize(index % GROUP)?;
        Ok((g.entries(k), g.current[k]))
    }

    fn set_current(&self, file: &fs::File, path: &Path, index: u64, slot: u8) -> Result<(), Error> {
        let mut m = self.meta();
        let g = m.group(file, path, index / GROUP)?;
        g.current[to_usize(index % GROUP)?] = slot;
        Ok(())
    }

    /// The plaintext length of `file`: its pages, as its last page says.
    pub(super) fn plaintext_len(&self, file: &fs::File, path: &Path) -> Result<u64, Error> {
        let physical = file.metadata().map_err(io(path))?.len();
        let pages = match self.cipher.layout() {
            // A unit torn off the end by a crash is not part of the file.
            Layout::V1 => physical.saturating_sub(HEADER as u64) / UNIT as u64,
            Layout::V2 => {
                // Pages appended but never completed have no entry: not part of the file.
                let mut n = pages_in(physical);
                while n > 0
                    && self
                        .slots(file, path, n - 1)?
                        .0
                        .iter()
                        .all(page::is_unwritten)
                {
                    n -= 1;
                }
                n
            }
        };
        if pages == 0 {
            return Ok(0);
        }
        let mut buf = Box::new([0u8; PAGE]);
        let used = self.read(file, path, pages - 1, &mut buf)?;
        Ok((pages - 1) * PAGE as u64 + used as u64)
    }

    /// Reads and opens page `index` into `out`; returns how many bytes are in use.
    pub(super) fn read(
        &self,
        file: &fs::File,
        path: &Path,
        index: u64,
        out: &mut [u8; PAGE],
    ) -> Result<usize, Error> {
        if self.cipher.layout() == Layout::V1 {
            let mut unit = Box::new([0u8; UNIT]);
            file.read_exact_at(&mut unit[..], HEADER as u64 + index * UNIT as u64)
                .map_err(io(path))?;
            return self.cipher.open(index, &unit, out);
        }
        let mut ct = [0u8; PAGE];
        file.read_exact_at(&mut ct, data_at(index))
            .map_err(io(path))?;
        // Another handle on the file may have written the page since its metadata block
        // was cached: a page that does not open is tried once more against the block as
        // the file has it (unless this handle holds entries not written yet).
        for fresh in [false, true] {
            if fresh && !self.forget_group(index / GROUP) {
                break;
            }
            let (entries, current) = self.slots(file, path, index)?;
            for slot in candidates(&entries, current) {
                if let Ok(used) = self.cipher.open_parts(index, &entries[slot], &ct, out) {
                    if usize::from(current) != slot {
                        self.set_current(file, path, index, slot as u8)?;
                    }
                    return Ok(used);
                }
            }
        }
        Err(Error::Decrypt)
    }

    /// Drops the cached block of `group` unless it has entries not written yet; returns
    /// whether it did.
    fn forget_group(&self, group: u64) -> bool {
        let mut m = self.meta();
        if m.dirty.contains(&group) {
            return false;
        }
        m.groups.remove(&group);
        true
    }

    /// Room for `count` pages from `first`.
    pub(super) fn run(&self, first: u64, count: usize) -> Result<Run, Error> {
        let stride = match self.cipher.layout() {
            Layout::V1 => UNIT,
            Layout::V2 => PAGE,
        };
        let mut run =
            std::mem::take(&mut *self.spare.lock().unwrap_or_else(PoisonError::into_inner));
        run.first = first;
        // Every byte is sealed over before it is written: no need to clear a reused buffer.
        run.stored
            .resize(count.checked_mul(stride).ok_or(Error::TooLarge)?, 0);
        run.metas.resize(count, [0u8; META]);
        run.slots.clear();
        Ok(run)
    }

    /// Room for `count` pages of zeros from `first`: entries only (version 2).
    pub(super) fn zero_run(&self, first: u64, count: usize) -> Run {
        Run {
            first,
            stored: Vec::new(),
            metas: vec![[0u8; META]; count],
            slots: Vec::with_capacity(count),
        }
    }

    /// Seals page `first + k` of a [`Pages::zero_run`] as `used` zero bytes.
    pub(super) fn seal_zeros(
        &self,
        file: &fs::File,
        path: &Path,
        run: &mut Run,
        k: usize,
        used: usize,
    ) -> Result<(), Error> {
        let index = run.first + k as u64;
        let (slot, generation) = self.next_slot(file, path, index)?;
        let meta = run.metas.get_mut(k).ok_or(Error::TooLarge)?;
        self.cipher.seal_zeros(index, used, generation, meta)?;
        run.slots.push(slot);
        Ok(())
    }

    /// Seals `plain` as page `first + k` of `run` (pages in order).
    pub(super) fn seal(
        &self,
        file: &fs::File,
        path: &Path,
        run: &mut Run,
        k: usize,
        plain: &[u8],
    ) -> Result<(), Error> {
        let index = run.first + k as u64;
        match self.cipher.layout() {
            Layout::V1 => {
                let unit = <&mut [u8; UNIT]>::try_from(
                    run.stored
                        .get_mut(k * UNIT..(k + 1) * UNIT)
                        .ok_or(Error::TooLarge)?,
                )
                .map_err(|_| Error::TooLarge)?;
                self.cipher.seal(index, plain, unit)
            }
            Layout::V2 => {
                let (slot, generation) = self.next_slot(file, path, index)?;
                let ct = <&mut [u8; PAGE]>::try_from(
                    run.stored
                        .get_mut(k * PAGE..(k + 1) * PAGE)
                        .ok_or(Error::TooLarge)?,
                )
                .map_err(|_| Error::TooLarge)?;
                let meta = run.metas.get_mut(k).ok_or(Error::TooLarge)?;
                self.cipher.seal_parts(index, plain, generation, meta, ct)?;
                run.slots.push(slot);
                Ok(())
            }
        }
    }

    /// The slot and generation of the next write of page `index`: the slot that does not
    /// describe the current ciphertext, one generation on. With both slots in use and
    /// neither known current (a page not touched since the file was opened), the page is
    /// opened to learn which is, unless entries are deferred (the ciphertext is then
    /// replaced before any entry reaches the file: nothing to keep).
    fn next_slot(&self, file: &fs::File, path: &Path, index: u64) -> Result<(u8, u16), Error> {
        let (entries, mut current) = self.slots(file, path, index)?;
        let used = [0, 1].map(|s| !page::is_unwritten(&entries[s]));
        let newer = || {
            u8::from(page::newer(
                page::generation(&entries[1]),
                page::generation(&entries[0]),
            ))
        };
        if current == UNKNOWN {
            current = match (used[0], used[1]) {
                (false, false) => return Ok((0, 1)),
                (true, false) => 0,
                (false, true) => 1,
                (true, true) if self.meta().defer => newer(),
                (true, true) => {
                    let mut scratch = Box::new([0u8; PAGE]);
                    match self.read(file, path, index, &mut scratch) {
                        Ok(_) => self.slots(file, path, index)?.1,
                        // Unreadable already: keep the newer entry, replace the older.
                        Err(Error::Decrypt) => newer(),
                        Err(e) => return Err(e),
                    }
                }
            };
        }
        let c = usize::from(current).min(SLOTS - 1);
        Ok((1 - c as u8, page::generation(&entries[c]).wrapping_add(1)))
    }

    /// Writes the pages of `run` into a file of `pages` pages after it: entries first (each
    /// in its page's free slot), then the ciphertexts (a zero run has none: the file is
    /// made long enough for its pages instead). Deferred entries wait for
    /// [`Pages::flush`], but never the last page's: the file's length is read from it.
    pub(super) fn write(
        &self,
        file: &fs::File,
        path: &Path,
        run: Run,
        pages: u64,
    ) -> Result<(), Error> {
        let done = self.write_run(file, path, &run, pages);
        if done.is_err() {
            // What reached the file is unknown: both slots are tried at the next read.
            // (Best effort: the write's own error is the one to report.)
            for r in 0..run.slots.len() {
                let _ = self.set_current(file, path, run.first + r as u64, UNKNOWN);
            }
        }
        if (1..=KEPT_BUFFER).contains(&run.stored.capacity()) {
            *self.spare.lock().unwrap_or_else(PoisonError::into_inner) = run;
        }
        done
    }

    fn write_run(&self, file: &fs::File, path: &Path, run: &Run, pages: u64) -> Result<(), Error> {
        if self.cipher.layout() == Layout::V1 {
            return file
                .write_all_at(&run.stored, HEADER as u64 + run.first * UNIT as u64)
                .map_err(io(path));
        }
        let end = run.first + run.metas.len() as u64;
        let mut m = self.meta();
        let defer = m.defer;
        // Pages whose entry being replaced is of a page of zeros (see `clear_zeros`).
        let mut replaced_zeros = Vec::new();
        let mut at = run.first;
        while at < end {
            let group = at / GROUP;
            let stop = end.min((group + 1) * GROUP);
            let g = m.group(file, path, group)?;
            let (from, to) = (to_usize(at % GROUP)?, to_usize(stop - group * GROUP)?);
            for k in from..to {
                let r = to_usize(group * GROUP + k as u64 - run.first)?;
                let slot = *run.slots.get(r).ok_or(Error::TooLarge)?;
                let pair = &mut g.block[k * PAIR..(k + 1) * PAIR];
                let other =
                    <&[u8; META]>::try_from(&pair[(1 - usize::from(slot)) * META..][..META])
                        .map_err(|_| Error::TooLarge)?;
                if page::is_zeros(other) {
                    replaced_zeros.push(group * GROUP + k as u64);
                }
                pair[usize::from(slot) * META..][..META].copy_from_slice(&run.metas[r]);
                // Current once the page is written below; a failure makes it unknown
                // again (`write`), and nothing reads the file in between (writes hold
                // the file's length lock).
                g.current[k] = slot;
            }
            if defer {
                let last = pages.wrapping_sub(1);
                if (at..stop).contains(&last) {
                    let k = to_usize(last % GROUP)?;
                    file.write_all_at(&g.block[k * PAIR..(k + 1) * PAIR], meta_at(last, 0))
                        .map_err(io(path))?;
                }
                m.dirty.insert(group);
            } else {
                // The pages' slot pairs: the other slots are rewritten as they are.
                file.write_all_at(&g.block[from * PAIR..to * PAIR], meta_at(at, 0))
                    .map_err(io(path))?;
            }
            at = stop;
        }
        drop(m);
        if run.stored.is_empty() {
            let room = data_at(end - 1) + PAGE as u64;
            if file.metadata().map_err(io(path))?.len() < room {
                file.set_len(room).map_err(io(path))?;
            }
        }
        let mut at = run.first;
        while at < end && !run.stored.is_empty() {
            // Pages of one group are one stretch of the file.
            let stop = end.min((at / GROUP + 1) * GROUP);
            let (a, b) = (to_usize(at - run.first)?, to_usize(stop - run.first)?);
            file.write_all_at(&run.stored[a * PAGE..b * PAGE], data_at(at))
                .map_err(io(path))?;
            at = stop;
        }
        self.clear_zeros(file, path, &replaced_zeros)
    }

    /// Empties the slot of a replaced entry of a page of zeros, once the new entry and its
    /// ciphertext are in place. An ordinary replaced entry describes a ciphertext that is
    /// gone, but one of zeros needs none and would still open: damage to the newer entry
    /// must not bring the page back as zeros. (Deferred: at the flush, with the new entry.)
    fn clear_zeros(&self, file: &fs::File, path: &Path, pages: &[u64]) -> Result<(), Error> {
        if pages.is_empty() {
            return Ok(());
        }
        let mut m = self.meta();
        let defer = m.defer;
        for &index in pages {
            let g = m.group(file, path, index / GROUP)?;
            let k = to_usize(index % GROUP)?;
            let e = g.entries(k);
            // The older of the two, when it is of zeros and the newer is in use.
            let old = usize::from(page::newer(
                page::generation(&e[0]),
                page::generation(&e[1]),
            ));
            if !page::is_zeros(&e[old]) || page::is_unwritten(&e[1 - old]) {
                continue;
            }
            g.block[k * PAIR + old * META..][..META].fill(0);
            if defer {
                m.dirty.insert(index / GROUP);
            } else {
                file.write_all_at(&[0u8; META], meta_at(index, old))
                    .map_err(io(path))?;
            }
        }
        Ok(())
    }

    /// Cuts the file to its first `pages` pages. Version 2: the slots past them in the last
    /// group are cleared first (never deferred), so a page later appended there never
    /// meets an old entry.
    pub(super) fn truncate(&self, file: &fs::File, path: &Path, pages: u64) -> Result<(), Error> {
        if self.cipher.layout() == Layout::V1 {
            return file
                .set_len(HEADER as u64 + pages * UNIT as u64)
                .map_err(io(path));
        }
        let mut m = self.meta();
        if !pages.is_multiple_of(GROUP) {
            let from = to_usize(pages % GROUP)?;
            let g = m.group(file, path, pages / GROUP)?;
            g.block[from * PAIR..].fill(0);
            g.current[from..].fill(UNKNOWN);
            file.write_all_at(&g.block[from * PAIR..], meta_at(pages, 0))
                .map_err(io(path))?;
        }
        let keep = pages.div_ceil(GROUP);
        m.groups.retain(|g, _| *g < keep);
        m.dirty.retain(|g| *g < keep);
        drop(m);
        let physical = match pages {
            0 => HEADER as u64,
            n => data_at(n - 1) + PAGE as u64,
        };
        file.set_len(physical).map_err(io(path))
    }

    /// Writes the deferred entries, group by group in file order (so a crash part-way
    /// leaves a prefix of them).
    pub(super) fn flush(&self, file: &fs::File, path: &Path) -> Result<(), Error> {
        let mut m = self.meta();
        while let Some(group) = m.dirty.first().copied() {
            if let Some(g) = m.groups.get(&group) {
                file.write_all_at(&g.block[..], group_at(group))
                    .map_err(io(path))?;
            }
            m.dirty.remove(&group);
        }
        Ok(())
    }
}

/// The slots worth trying for a page, best first: the one known current alone, else those
/// in use, the newer generation first.
fn candidates(entries: &[[u8; META]; SLOTS], current: u8) -> impl Iterator<Item = usize> {
    let known = usize::from(current) < SLOTS;
    let first = if known {
        usize::from(current)
    } else {
        usize::from(page::newer(
            page::generation(&entries[1]),
            page::generation(&entries[0]),
        ))
    };
    [first, 1 - first]
        .into_iter()
        .take(if known { 1 } else { SLOTS })
        .filter(|s| !page::is_unwritten(&entries[*s]))
}

impl Group {
    /// Both entry slots of the group's page `k`.
    fn entries(&self, k: usize) -> [[u8; META]; SLOTS] {
        let mut e = [[0u8; META]; SLOTS];
        for (s, slot) in e.iter_mut().enumerate() {
            slot.copy_from_slice(&self.block[k * PAIR + s * META..][..META]);
        }
        e
    }
}

impl Meta {
    /// Group `group`, its block read from the file the first time (zeros past its end).
    fn group(&mut self, file: &fs::File, path: &Path, group: u64) -> Result<&mut Group, Error> {
        if !self.groups.contains_key(&group) {
            if self.groups.len() >= CACHED_GROUPS {
                let dirty = &self.dirty;
                self.groups.retain(|g, _| dirty.contains(g));
            }
            let mut block = Box::new([0u8; PAGE]);
            let mut got = 0;
            while got < PAGE {
                match file.read_at(&mut block[got..], group_at(group) + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io(path)(e)),
                }
            }
            self.groups.insert(
                group,
                Group {
                    block,
                    current: [UNKNOWN; GROUP as usize],
                },
            );
        }
        self.groups.get_mut(&group).ok_or(Error::TooLarge)
    }
}

/// Hashes group numbers (small integers chosen by the file's layout, never by an
/// attacker who could aim at collisions) with one multiplication instead of SipHash.
#[derive(Default)]
struct GroupHasher(u64);

impl Hasher for GroupHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
