//! Randomness. [`fill`] asks aws-lc's CSPRNG for every call and is used for keys.
//! [`nonce`] serves public nonces and salts from a per-thread 4 KiB pool, since one call to
//! the CSPRNG costs more than sealing a 256-byte record; the pool is refilled from the
//! CSPRNG and thrown away in a child process after `fork`, so parent and child never share
//! nonces.

use std::cell::RefCell;

use crate::Error;

/// Fills `out` from the system CSPRNG.
pub fn fill(out: &mut [u8]) -> Result<(), Error> {
    aws_lc_rs::rand::fill(out).map_err(|_| Error::Random)
}

const POOL: usize = 4096;

struct Pool {
    buf: Box<[u8; POOL]>,
    pos: usize,
    epoch: u64,
}

thread_local! {
    static NONCES: RefCell<Pool> = RefCell::new(Pool { buf: Box::new([0u8; POOL]), pos: POOL, epoch: u64::MAX });
}

/// `N` random bytes for a nonce or salt (public values, never keys).
pub fn nonce<const N: usize>() -> Result<[u8; N], Error> {
    const { assert!(N <= 64) };
    let epoch = kura_sys::fork_epoch();
    NONCES.with(|p| {
        let mut p = p.borrow_mut();
        if p.pos + N > POOL || p.epoch != epoch {
            fill(&mut p.buf[..])?;
            p.pos = 0;
            p.epoch = epoch;
        }
        let mut out = [0u8; N];
        let start = p.pos;
        // Each byte is served once (nonces are public, so the pool needs no wiping).
        out.copy_from_slice(&p.buf[start..start + N]);
        p.pos += N;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pooled_nonces_do_not_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(nonce::<24>().unwrap()));
        }
    }
}
