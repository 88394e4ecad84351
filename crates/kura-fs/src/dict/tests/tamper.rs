//! Damage, tampering and torn tails: every single-bit flip, truncation at every offset,
//! reordered, dropped, replayed and foreign records.

use super::*;
use crate::dict::load::{self, Loaded};

/// A dictionary of a snapshot (two entries) and three log records, with the entries after
/// each record.
struct Fixture {
    env: Env,
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// `states[k]`: the entries after records 0..=k.
    states: Vec<BTreeMap<String, FileInfo>>,
}

fn fixture() -> Fixture {
    let env = Env::new();
    let mut d = env.open(true);
    d.insert("x/a", info(1)).unwrap();
    d.insert("x/b", info(2)).unwrap();
    d.compact().unwrap();
    let mut states = vec![entries(&d)];
    d.insert("y", info(3)).unwrap();
    states.push(entries(&d));
    d.link("x/a", "z").unwrap();
    states.push(entries(&d));
    d.remove("x/b").unwrap();
    states.push(entries(&d));
    drop(d);
    let bytes = env.bytes();
    let ranges = records(&bytes);
    assert_eq!(ranges.len(), 4);
    Fixture {
        env,
        bytes,
        ranges,
        states,
    }
}

impl Fixture {
    fn load(&self, bytes: &[u8]) -> Result<Loaded, Error> {
        load::load(&self.env.file(), bytes, &self.env.keyring)
    }

    /// The file with `f`'s records in the order `order` (indices into `ranges`).
    fn with_records(&self, order: &[usize]) -> Vec<u8> {
        let mut b = self.bytes[..HEADER_LEN].to_vec();
        for &i in order {
            b.extend_from_slice(&self.bytes[self.ranges[i].clone()]);
        }
        b
    }
}

fn is_damage<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Dictionary { .. }) | Err(Error::Decrypt))
}

#[test]
fn every_bit_flip_is_detected_or_drops_only_the_last_record() {
    let f = fixture();
    let last = f.ranges[3].clone();
    let (mut detected, mut dropped) = (0, 0);
    for bit in 0..f.bytes.len() * 8 {
        let mut b = f.bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        match f.load(&b) {
            Err(Error::Dictionary { .. } | Error::Decrypt) => detected += 1,
            Err(e) => panic!("bit {bit}: unexpected error {e}"),
            Ok(l) => {
                assert!(
                    last.contains(&(bit / 8)),
                    "a flip of bit {bit}, outside the last record, went unnoticed"
                );
                assert!(l.torn.is_some());
                assert_eq!(l.valid_len, last.start as u64);
                assert_eq!(l.entries, f.states[2], "bit {bit}");
                dropped += 1;
            }
        }
    }
    assert!(detected > 0 && dropped > 0);
    // The frame and the padding of the last record are checked, its envelope dropped.
    let Frame::Record { envelope, .. } = codec::frame(&f.bytes, last.start) else {
        panic!("no last record")
    };
    assert_eq!(dropped, envelope.len() * 8);

    // The same through `open`, which also rewrites the file after dropping.
    let mut b = f.bytes.clone();
    b[f.ranges[2].start + 40] ^= 4;
    f.env.write(&b);
    assert!(is_damage(&f.env.try_open(true)));
    let mut b = f.bytes.clone();
    b[last.start + 40] ^= 4;
    f.env.write(&b);
    let d = f.env.open(true);
    assert_eq!(entries(&d), f.states[2]);
    assert_eq!(
        records(&f.env.bytes()).len(),
        1,
        "rewritten as one snapshot"
    );
}

#[test]
fn truncation_at_every_offset_opens_to_a_prefix_of_the_history() {
    let f = fixture();
    let t = f.env.sibling();
    for cut in 0..=f.bytes.len() {
        t.write(&f.bytes[..cut]);
        let r = t.try_open(true);
        if cut < f.ranges[0].end {
            // The header and the snapshot are only ever written whole (and renamed into
            // place): cut short, they are damage, not a torn write.
            assert!(is_damage(&r), "cut at {cut}");
            continue;
        }
        let d = r.unwrap();
        let complete = f.ranges.iter().filter(|r| r.end <= cut).count();
        assert_eq!(entries(&d), f.states[complete - 1], "cut at {cut}");
        if f.ranges.iter().any(|r| r.end == cut) {
            assert_eq!(t.bytes(), &f.bytes[..cut], "nothing torn: left as it is");
        } else {
            assert_eq!(records(&t.bytes()).len(), 1, "torn: rewritten");
        }
        assert_eq!(d.size_bytes(), t.bytes().len() as u64);
    }
}

#[test]
fn torn_tails_of_every_kind_are_dropped() {
    let f = fixture();
    let mut tails: Vec<Vec<u8>> = vec![vec![0; 3], vec![0; 8], vec![0; 300]];
    // A frame whose record never arrived, or arrived as zeros, or garbage.
    let r1 = &f.bytes[f.ranges[1].clone()];
    tails.push(r1[..8].to_vec());
    tails.push(r1[..r1.len() - 1].to_vec());
    let mut zeros = r1[..8].to_vec();
    zeros.resize(r1.len(), 0);
    tails.push(zeros);
    let mut garbage = r1.to_vec();
    garbage[30..90].fill(0x5a);
    tails.push(garbage);
    for tail in tails {
        let mut b = f.bytes.clone();
        b.extend_from_slice(&tail);
        let l = f.load(&b).unwrap();
        assert_eq!(l.entries, f.states[3]);
        assert_eq!(l.valid_len, f.bytes.len() as u64);
        assert_eq!(l.torn.map(|t| t.bytes), Some(tail.len() as u64));
    }
    // A frame that is neither written nor zero is damage, even at the end.
    let mut b = f.bytes.clone();
    b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(is_damage(&f.load(&b)));
}

#[test]
fn reordered_dropped_and_replayed_records_fail() {
    let f = fixture();
    assert_eq!(
        f.load(&f.with_records(&[0, 1, 2, 3])).unwrap().entries,
        f.states[3]
    );
    for order in [
        &[0, 2, 1, 3][..], // two records swapped
        &[0, 1, 3, 2],     // the last two swapped
        &[0, 2, 3],        // one dropped from the middle
        &[1, 2, 3],        // the snapshot dropped
        &[0, 1, 1, 2, 3],  // one replayed in the middle
        &[1, 0, 2, 3],     // a change in the snapshot's place
    ] {
        assert!(is_damage(&f.load(&f.with_records(order))), "{order:?}");
    }
    // A record replayed at the end is in no valid place: left out as a torn tail, never
    // applied.
    let l = f.load(&f.with_records(&[0, 1, 2, 3, 1])).unwrap();
    assert!(l.torn.is_some());
    assert_eq!(l.entries, f.states[3]);
}

#[test]
fn records_from_another_dictionary_fail() {
    let f = fixture();
    // Another dictionary under the same keyring, with records in the same places.
    let g = f.env.sibling();
    let mut d = g.open(true);
    d.insert("x/a", info(1)).unwrap();
    d.insert("x/b", info(2)).unwrap();
    d.compact().unwrap();
    d.insert("evil", info(5)).unwrap();
    d.insert("evil2", info(6)).unwrap();
    d.insert("evil3", info(7)).unwrap();
    drop(d);
    let other = g.bytes();
    let theirs = records(&other);

    // Their record 2 in our record 2's place.
    let mut b = f.bytes[..f.ranges[2].start].to_vec();
    b.extend_from_slice(&other[theirs[2].clone()]);
    b.extend_from_slice(&f.bytes[f.ranges[3].clone()]);
    assert!(is_damage(&f.load(&b)));
    // Their header on our records, and our header on theirs.
    let mut b = f.bytes.clone();
    b[..HEADER_LEN].copy_from_slice(&other[..HEADER_LEN]);
    assert!(is_damage(&f.load(&b)));
    let mut b = other.clone();
    b[..HEADER_LEN].copy_from_slice(&f.bytes[..HEADER_LEN]);
    assert!(is_damage(&f.load(&b)));
    // Their record appended to ours: not applied.
    let mut b = f.bytes.clone();
    b.extend_from_slice(&other[theirs[1].clone()]);
    let l = f.load(&b).unwrap();
    assert!(l.torn.is_some());
    assert_eq!(l.entries, f.states[3]);

    // Our file under another keystore: nothing opens.
    let stranger = Env::new();
    stranger.write(&f.bytes);
    assert!(is_damage(&stranger.try_open(true)));
}

#[test]
fn header_damage_and_format_confusion_fail() {
    let f = fixture();
    // Version 2 relabelled as 1 (the snapshot alone, so it looks complete): the version
    // is bound into every record.
    let mut b = f.with_records(&[0]);
    b[3] = 1;
    assert!(is_damage(&f.load(&b)));
    // A snapshot-only file with records after its snapshot.
    let env = f.env.sibling();
    let mut d = env.open(false);
    d.insert("a", info(1)).unwrap();
    drop(d);
    let mut b = env.bytes();
    b.extend_from_slice(&f.bytes[f.ranges[1].clone()]);
    assert!(is_damage(&f.load(&b)));

    let mut b = f.bytes.clone();
    b[3] = 3;
    let Err(Error::Dictionary { what, .. }) = f.load(&b) else {
        panic!("version 3 read")
    };
    assert!(what.contains("format version 3"), "{what}");
    for short in [&b""[..], &f.bytes[..HEADER_LEN], &f.bytes[..10]] {
        f.env.write(short);
        assert!(is_damage(&f.env.try_open(true)), "{} bytes", short.len());
    }
}
