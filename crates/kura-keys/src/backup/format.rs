//! The byte layout of a backup, version 1 (`docs/format.md`, "Keystore backup v1").
//!
//! ```text
//! 0      3   magic "KRB"
//! 3      1   version 0x01
//! 4     32   salt S (random)
//! 36     8   created at, i64 (Unix seconds)
//! 44     8   keystore generation, u64
//! 52     8   id of the active KEK, u64
//! 60     …   str master key id, str master key source
//!        …   u32 n, n KEK entries; u32 n, n data key entries; u32 n, n object entries
//! T     32   HMAC-SHA256(K, bytes 0..T), K = HKDF-SHA256(S, active KEK, "kura backup v1 mac")
//! T+32  32   SHA-256(bytes 0..T+32)
//! ```
//!
//! Integers are big-endian; `str` and `bytes` are a u32 length and that many bytes (UTF-8
//! for `str`); an optional timestamp is a flag byte (0 or 1) and an i64 (0 when absent).
//! Nothing here is secret: every key in a backup is wrapped.

use kura_store::{DataKeyRecord, DataKeyState, KekRecord, KekState, Object};

/// The backup magic.
pub const MAGIC: [u8; 3] = *b"KRB";
/// The version this build writes and reads.
pub const VERSION: u8 = 1;
/// Length of the random salt of the authentication key.
pub const SALT_LEN: usize = 32;
/// Length of the tag and of the checksum.
pub(crate) const TRAILER_LEN: usize = 2 * kura_crypto::SHA256_LEN;

/// The header fields of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) created_at: i64,
    pub(crate) generation: u64,
    pub(crate) kek_id: u64,
    pub(crate) master_key_id: String,
    pub(crate) master_key_source: String,
}

/// Everything a backup holds besides its tag and checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Body {
    pub(crate) header: Header,
    pub(crate) keks: Vec<KekRecord>,
    pub(crate) data_keys: Vec<DataKeyRecord>,
    pub(crate) objects: Vec<Object>,
}

/// A structural fault; the reader reports every one as the single opaque damaged error.
#[derive(Debug)]
pub(crate) struct Malformed;

/// Writes `body` (everything before the tag). Fails for a field longer than 4 GiB or a
/// key state this version has no code for.
pub(crate) fn encode(body: &Body) -> Result<Vec<u8>, Malformed> {
    let mut w = Vec::with_capacity(4096);
    let h = &body.header;
    w.extend_from_slice(&MAGIC);
    w.push(VERSION);
    w.extend_from_slice(&h.salt);
    w.extend_from_slice(&h.created_at.to_be_bytes());
    w.extend_from_slice(&h.generation.to_be_bytes());
    w.extend_from_slice(&h.kek_id.to_be_bytes());
    put_bytes(&mut w, h.master_key_id.as_bytes())?;
    put_bytes(&mut w, h.master_key_source.as_bytes())?;
    put_count(&mut w, body.keks.len())?;
    for k in &body.keks {
        w.extend_from_slice(&k.id.to_be_bytes());
        w.push(match k.state {
            KekState::Active => 1,
            KekState::Retired => 2,
            _ => return Err(Malformed),
        });
        w.extend_from_slice(&k.created_at.to_be_bytes());
        put_time(&mut w, k.retired_at);
        put_bytes(&mut w, k.master_key_id.as_bytes())?;
        put_bytes(&mut w, &k.wrapped)?;
    }
    put_count(&mut w, body.data_keys.len())?;
    for d in &body.data_keys {
        w.extend_from_slice(&d.id.to_be_bytes());
        w.extend_from_slice(&d.kek_id.to_be_bytes());
        w.push(match d.state {
            DataKeyState::Active => 1,
            DataKeyState::DecryptOnly => 2,
            DataKeyState::Destroyed => 3,
            _ => return Err(Malformed),
        });
        w.extend_from_slice(&d.created_at.to_be_bytes());
        put_time(&mut w, d.activated_at);
        put_time(&mut w, d.retired_at);
        put_time(&mut w, d.destroyed_at);
        put_bytes(&mut w, d.keyring.as_bytes())?;
        put_bytes(&mut w, d.method.as_bytes())?;
        put_bytes(&mut w, &d.wrapped)?;
    }
    put_count(&mut w, body.objects.len())?;
    for o in &body.objects {
        put_bytes(&mut w, o.kind.as_bytes())?;
        put_bytes(&mut w, o.id.as_bytes())?;
        w.extend_from_slice(&o.version.to_be_bytes());
        put_bytes(&mut w, o.doc.as_bytes())?;
        put_bytes(&mut w, &o.blob)?;
    }
    Ok(w)
}

fn put_count(w: &mut Vec<u8>, n: usize) -> Result<(), Malformed> {
    w.extend_from_slice(&u32::try_from(n).map_err(|_| Malformed)?.to_be_bytes());
    Ok(())
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) -> Result<(), Malformed> {
    put_count(w, b.len())?;
    w.extend_from_slice(b);
    Ok(())
}

fn put_time(w: &mut Vec<u8>, t: Option<i64>) {
    w.push(u8::from(t.is_some()));
    w.extend_from_slice(&t.unwrap_or(0).to_be_bytes());
}

/// Reads the body (bytes `0..T`, magic and version already checked); every byte must be
/// used.
pub(crate) fn decode(b: &[u8]) -> Result<Body, Malformed> {
    let mut r = Reader { b, at: 4 };
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(r.take(SALT_LEN)?);
    let header = Header {
        salt,
        created_at: r.i64()?,
        generation: r.u64()?,
        kek_id: r.u64()?,
        master_key_id: r.str()?,
        master_key_source: r.str()?,
    };
    let mut keks = Vec::new();
    for _ in 0..r.count()? {
        keks.push(KekRecord {
            id: r.u64()?,
            state: match r.u8()? {
                1 => KekState::Active,
                2 => KekState::Retired,
                _ => return Err(Malformed),
            },
            created_at: r.i64()?,
            retired_at: r.time()?,
            master_key_id: r.str()?,
            wrapped: r.bytes()?,
        });
    }
    let mut data_keys = Vec::new();
    for _ in 0..r.count()? {
        data_keys.push(DataKeyRecord {
            id: r.u64()?,
            kek_id: r.u64()?,
            state: match r.u8()? {
                1 => DataKeyState::Active,
                2 => DataKeyState::DecryptOnly,
                3 => DataKeyState::Destroyed,
                _ => return Err(Malformed),
            },
            created_at: r.i64()?,
            activated_at: r.time()?,
            retired_at: r.time()?,
            destroyed_at: r.time()?,
            keyring: r.str()?,
            method: r.str()?,
            wrapped: r.bytes()?,
        });
    }
    let mut objects = Vec::new();
    for _ in 0..r.count()? {
        objects.push(Object {
            kind: r.str()?,
            id: r.str()?,
            version: r.u64()?,
            doc: r.str()?,
            blob: r.bytes()?,
        });
    }
    if r.at != b.len() {
        return Err(Malformed);
    }
    Ok(Body {
        header,
        keks,
        data_keys,
        objects,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed)?;
        let s = self.b.get(self.at..end).ok_or(Malformed)?;
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, Malformed> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn count(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, Malformed> {
        let n = usize::try_from(self.count()?).map_err(|_| Malformed)?;
        Ok(self.take(n)?.to_vec())
    }

    fn str(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?).map_err(|_| Malformed)
    }

    fn time(&mut self) -> Result<Option<i64>, Malformed> {
        let flag = self.u8()?;
        let t = self.i64()?;
        match (flag, t) {
            (0, 0) => Ok(None),
            (1, t) => Ok(Some(t)),
            _ => Err(Malformed),
        }
    }
}
