#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! XAES-256-GCM known answers: the C2SP vectors, the C2SP accumulated test (10 000
//! iterations), and the kura key commitment (KDF blocks 3 and 4) for the C2SP inputs.
//!
//! The accumulated test needs SHAKE-128, for which no crate is available here, so a small
//! Keccak-f[1600] sponge is included below and checked against FIPS 202 outputs first.

use kura_crypto::{Error, Key256, TAG_LEN, XAES_COMMITMENT_LEN, XAES_NONCE_LEN, XaesCommitting};

// ---------------------------------------------------------------------------------------
// SHAKE-128 (FIPS 202), test-only.

const RC: [u64; 24] = [
    0x0000_0000_0000_0001,
    0x0000_0000_0000_8082,
    0x8000_0000_0000_808a,
    0x8000_0000_8000_8000,
    0x0000_0000_0000_808b,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8009,
    0x0000_0000_0000_008a,
    0x0000_0000_0000_0088,
    0x0000_0000_8000_8009,
    0x0000_0000_8000_000a,
    0x0000_0000_8000_808b,
    0x8000_0000_0000_008b,
    0x8000_0000_0000_8089,
    0x8000_0000_0000_8003,
    0x8000_0000_0000_8002,
    0x8000_0000_0000_0080,
    0x0000_0000_0000_800a,
    0x8000_0000_8000_000a,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8080,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8008,
];
/// ρ rotation amounts, in the order of the π lane walk below.
const RHO: [u32; 24] = [
    1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
];
/// π: the lane visited after lane 1, then after that one, and so on.
const PI: [usize; 24] = [
    10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
];

fn keccak_f1600(a: &mut [u64; 25]) {
    for rc in RC {
        // θ
        let mut c = [0u64; 5];
        for (x, cx) in c.iter_mut().enumerate() {
            *cx = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        }
        for x in 0..5 {
            let d = c[(x + 4) % 5] ^ c[(x + 1) % 5].rotate_left(1);
            for y in 0..5 {
                a[5 * y + x] ^= d;
            }
        }
        // ρ and π
        let mut last = a[1];
        for (&j, &r) in PI.iter().zip(RHO.iter()) {
            let t = a[j];
            a[j] = last.rotate_left(r);
            last = t;
        }
        // χ
        for y in 0..5 {
            let row = [
                a[5 * y],
                a[5 * y + 1],
                a[5 * y + 2],
                a[5 * y + 3],
                a[5 * y + 4],
            ];
            for x in 0..5 {
                a[5 * y + x] = row[x] ^ (!row[(x + 1) % 5] & row[(x + 2) % 5]);
            }
        }
        // ι
        a[0] ^= rc;
    }
}

/// SHAKE-128: absorb with `update`, then read any amount with `read`.
struct Shake128 {
    state: [u64; 25],
    pos: usize,
    squeezing: bool,
}

impl Shake128 {
    const RATE: usize = 168;

    fn new() -> Self {
        Self {
            state: [0; 25],
            pos: 0,
            squeezing: false,
        }
    }

    fn xor_byte(&mut self, i: usize, b: u8) {
        self.state[i / 8] ^= u64::from(b) << (8 * (i % 8));
    }

    fn update(&mut self, data: &[u8]) {
        assert!(!self.squeezing);
        for &b in data {
            self.xor_byte(self.pos, b);
            self.pos += 1;
            if self.pos == Self::RATE {
                keccak_f1600(&mut self.state);
                self.pos = 0;
            }
        }
    }

    fn read(&mut self, out: &mut [u8]) {
        if !self.squeezing {
            self.xor_byte(self.pos, 0x1f);
            self.xor_byte(Self::RATE - 1, 0x80);
            keccak_f1600(&mut self.state);
            self.pos = 0;
            self.squeezing = true;
        }
        for o in out {
            if self.pos == Self::RATE {
                keccak_f1600(&mut self.state);
                self.pos = 0;
            }
            *o = (self.state[self.pos / 8] >> (8 * (self.pos % 8))) as u8;
            self.pos += 1;
        }
    }
}

#[test]
fn shake128_self_check() {
    // FIPS 202 SHAKE128(""), first 32 bytes.
    let mut s = Shake128::new();
    let mut out = [0u8; 32];
    s.read(&mut out);
    assert_eq!(
        hex::encode(out),
        "7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb1a6eacfa66ef26"
    );
    // SHAKE128 of 0x00..0xff repeated to 500 bytes (three rate blocks absorbed), 400 bytes
    // read in uneven pieces (three rate blocks squeezed); the digest of the output is
    // compared with Python's hashlib.shake_128.
    let input: Vec<u8> = (0..500u32).map(|i| i as u8).collect();
    let mut s = Shake128::new();
    s.update(&input[..7]);
    s.update(&input[7..300]);
    s.update(&input[300..]);
    let mut out = vec![0u8; 400];
    let (a, rest) = out.split_at_mut(1);
    s.read(a);
    let (b, c) = rest.split_at_mut(200);
    s.read(b);
    s.read(c);
    let mut d = Shake128::new();
    d.update(&out);
    let mut sum = [0u8; 16];
    d.read(&mut sum);
    assert_eq!(hex::encode(sum), SHAKE_SELF_CHECK);
}

/// hashlib.shake_128(hashlib.shake_128(bytes(i % 256 for i in range(500))).digest(400))
/// .hexdigest(16)
const SHAKE_SELF_CHECK: &str = "cccacbc3dfb41f0956ae070b7192e9bc";

// ---------------------------------------------------------------------------------------
// XAES-256-GCM.

const C2SP_NONCE: &[u8; XAES_NONCE_LEN] = b"ABCDEFGHIJKLMNOPQRSTUVWX";

fn xaes(key: &[u8; 32]) -> XaesCommitting {
    XaesCommitting::new(&Key256::from_slice(key, "test").unwrap()).unwrap()
}

/// Seals like C2SP (`ciphertext ‖ tag`), also returning kura's commitment.
fn seal(
    x: &XaesCommitting,
    nonce: &[u8; XAES_NONCE_LEN],
    pt: &[u8],
    aad: &[u8],
) -> (Vec<u8>, [u8; XAES_COMMITMENT_LEN]) {
    let mut buf = pt.to_vec();
    let (commitment, tag) = x.seal_in_place(nonce, aad, &mut buf).unwrap();
    buf.extend_from_slice(&tag);
    (buf, commitment)
}

fn open(
    x: &XaesCommitting,
    nonce: &[u8; XAES_NONCE_LEN],
    commitment: &[u8; XAES_COMMITMENT_LEN],
    sealed: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, Error> {
    let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let tag: [u8; TAG_LEN] = tag.try_into().unwrap();
    let mut buf = ct.to_vec();
    x.open_in_place(nonce, commitment, aad, &mut buf, &tag)?;
    Ok(buf)
}

/// The two C2SP vectors, plus kura's commitment for them: blocks 3 and 4 of the same
/// SP 800-108r1 counter KDF (CMAC_K([0, i] ‖ "X" ‖ 0 ‖ N[..12]) for i = 3, 4), computed
/// independently with pyca/cryptography's AES-CMAC. This pins the commitment format.
#[test]
fn c2sp_vectors_and_commitments() {
    let cases: [(u8, &[u8], &str, &str); 2] = [
        (
            0x01,
            b"",
            "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
            "10d116570a259d2843ae5bedf27c30031b7ec9a8c5039639b8afc10af0722d9a",
        ),
        (
            0x03,
            b"c2sp.org/XAES-256-GCM",
            "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
            "6eeed565f0c9d2332b86a5141da7a2458828269731bf51d3c539d6fe28f7fdda",
        ),
    ];
    for (k, aad, want_ct, want_commitment) in cases {
        let x = xaes(&[k; 32]);
        let (sealed, commitment) = seal(&x, C2SP_NONCE, b"XAES-256-GCM", aad);
        assert_eq!(hex::encode(&sealed), want_ct);
        assert_eq!(hex::encode(commitment), want_commitment);
        let pt = open(&x, C2SP_NONCE, &commitment, &sealed, aad).unwrap();
        assert_eq!(pt, b"XAES-256-GCM");
    }
}

/// The two-step API (`begin`, then `XaesMessage::seal_in_place`, for formats that bind the
/// commitment into their AAD) gives the same commitment and C2SP ciphertext.
#[test]
fn begin_then_seal_matches_c2sp() {
    let x = xaes(&[0x03; 32]);
    let aad = b"c2sp.org/XAES-256-GCM";
    let (msg, commitment) = x.begin(C2SP_NONCE).unwrap();
    let mut buf = b"XAES-256-GCM".to_vec();
    let tag = msg.seal_in_place(aad, &mut buf).unwrap();
    buf.extend_from_slice(&tag);
    assert_eq!(
        hex::encode(&buf),
        "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d"
    );
    assert_eq!(
        hex::encode(commitment),
        "6eeed565f0c9d2332b86a5141da7a2458828269731bf51d3c539d6fe28f7fdda"
    );
    assert_eq!(
        open(&x, C2SP_NONCE, &commitment, &buf, aad).unwrap(),
        b"XAES-256-GCM"
    );
}

/// C2SP XAES-256-GCM accumulated test: key, nonce, plaintext and AAD are read from one
/// SHAKE-128 stream (lengths are single bytes), and every `ciphertext ‖ tag` is absorbed
/// into a second SHAKE-128, whose first 32 bytes after 10 000 iterations are fixed.
#[test]
fn c2sp_accumulated_10k() {
    const ITERATIONS: usize = 10_000;
    const EXPECTED: &str = "e6b9edf2df6cec60c8cbd864e2211b597fb69a529160cd040d56c0c210081939";

    let mut s = Shake128::new();
    let mut d = Shake128::new();
    for i in 0..ITERATIONS {
        let mut key = [0u8; 32];
        s.read(&mut key);
        let mut nonce = [0u8; XAES_NONCE_LEN];
        s.read(&mut nonce);
        let mut len = [0u8; 1];
        s.read(&mut len);
        let mut pt = vec![0u8; usize::from(len[0])];
        s.read(&mut pt);
        s.read(&mut len);
        let mut aad = vec![0u8; usize::from(len[0])];
        s.read(&mut aad);

        let x = xaes(&key);
        let (sealed, commitment) = seal(&x, &nonce, &pt, &aad);
        let back = open(&x, &nonce, &commitment, &sealed, &aad)
            .unwrap_or_else(|e| panic!("iteration {i}: {e}"));
        assert_eq!(back, pt, "iteration {i}");
        d.update(&sealed);
    }
    let mut sum = [0u8; 32];
    d.read(&mut sum);
    assert_eq!(hex::encode(sum), EXPECTED);
}
