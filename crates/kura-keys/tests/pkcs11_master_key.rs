#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PKCS#11 master keys against a real SoftHSM2 token: no mocks.
//!
//! SoftHSM reads `SOFTHSM2_CONF` when the module is initialised, and a test cannot set a
//! variable in its own multi-threaded process, so each test runs twice: in the test
//! process it makes a token of its own in a throwaway SoftHSM directory, then re-runs
//! itself in a child process with `SOFTHSM2_CONF` set (`kura_testkit::SoftHsm::run_test`),
//! where the body loads the module. Each test has a SoftHSM directory of its own. A machine without SoftHSM gets it installed, or the
//! test fails saying how to install it: nothing is skipped.

use std::path::PathBuf;
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use kura_crypto::{Aes256Gcm, CtrCipher, CtrMethod, Key256};
use kura_format::wrapped::{self, Kind};
use kura_keys::Error;
use kura_keys::config::{MasterKeySpec, Pkcs11Spec};
use kura_keys::master_key::{self, MasterKey, Pkcs11MasterKey, pkcs11};
use kura_testkit::SoftHsm;
use kura_testkit::softhsm::{self, module_path};
use zeroize::Zeroizing;

const PIN: &str = "kura-user-1234";
const SO_PIN: &str = "kura-so-5678";
const PIN_VAR: &str = "KURA_TEST_HSM_PIN";
const TOKEN_VAR: &str = "KURA_TEST_TOKEN";
const ORIGIN: &str = "[security.encryption.master-key]";

/// Parent side: a SoftHSM directory and token of the test's own (another test's child
/// scanning a token directory while a token is being created in it gets
/// `CKR_GENERAL_ERROR`), then the test again in a child.
fn in_child_with_a_token(name: &str) {
    let hsm = SoftHsm::new().unwrap();
    let label: String = name.chars().take(32).collect();
    hsm.init_token(&label, PIN, SO_PIN).unwrap();
    hsm.run_test(name, &[(TOKEN_VAR, label.as_ref())]).unwrap();
}

/// Child side: the test's token.
struct Token {
    module: PathBuf,
    label: String,
}

impl Token {
    fn from_env() -> Self {
        Self {
            module: module_path().unwrap(),
            label: std::env::var(TOKEN_VAR).unwrap(),
        }
    }

    fn spec(&self, key_label: &str) -> Pkcs11Spec {
        Pkcs11Spec {
            module: self.module.clone(),
            token_label: self.label.clone(),
            key_label: key_label.into(),
            pin_env: PIN_VAR.into(),
            pin: Some(Zeroizing::new(PIN.into())),
            origin: ORIGIN.into(),
        }
    }

    /// The module, loaded and initialised in this process through cryptoki directly, and
    /// the slot of the test's token.
    fn module_and_slot(&self) -> (Pkcs11, Slot) {
        let ctx = Pkcs11::new(&self.module).unwrap();
        // The provider may have initialised the module in this process already.
        let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == self.label)
            .unwrap();
        (ctx, slot)
    }

    /// Makes a secret key with `template` (plus the label) directly through cryptoki:
    /// generated with `mechanism`, or imported when `mechanism` is `None`.
    fn raw_key(&self, label: &str, mechanism: Option<&Mechanism>, template: &[Attribute]) {
        let (ctx, slot) = self.module_and_slot();
        let session = ctx.open_rw_session(slot).unwrap();
        let _ = session.login(UserType::User, Some(&AuthPin::new(PIN.into())));
        let mut t = template.to_vec();
        t.push(Attribute::Label(label.as_bytes().to_vec()));
        t.push(Attribute::Token(true));
        match mechanism {
            Some(m) => session.generate_key(m, &t).map(drop).unwrap(),
            None => session.create_object(&t).map(drop).unwrap(),
        }
    }
}

/// A test that runs its body in a child process with a token of its own.
macro_rules! hsm_test {
    ($name:ident, |$t:ident| $body:block) => {
        #[test]
        fn $name() {
            if softhsm::in_child() {
                let $t = Token::from_env();
                $body
            } else {
                in_child_with_a_token(stringify!($name));
            }
        }
    };
}

hsm_test!(wrap_unwrap_round_trip, |t| {
    let mk = pkcs11::generate_key(&t.spec("kura-master")).unwrap();
    let prefix = format!("pkcs11:{}/kura-master#kcv:", t.label);
    assert!(mk.id().starts_with(&prefix), "{}", mk.id());
    assert_eq!(mk.id().len(), prefix.len() + 6, "a 3-byte check value");
    for part in [t.module.to_str().unwrap(), &t.label, "kura-master"] {
        assert!(mk.source().contains(part), "{}", mk.source());
    }

    let kek = Key256::generate().unwrap();
    let blob = mk.wrap_kek(7, &kek).unwrap();
    let h = wrapped::parse(&blob).unwrap();
    assert_eq!(
        (h.kind, h.wrapping_key_id, h.key_id),
        (Kind::KekUnderExternalKey, mk.id(), 7)
    );
    assert_eq!(blob.len(), 6 + mk.id().len() + 8 + 1 + 12 + 32 + 16);
    assert_eq!(blob[6 + mk.id().len() + 8], 1, "body version");
    let back = mk.unwrap_kek(7, &blob).unwrap();
    assert_eq!(back.expose_secret(), kek.expose_secret());
    assert!(
        !blob
            .windows(32)
            .any(|w| w == kek.expose_secret().as_slice()),
        "the KEK in the clear"
    );
    // A fresh IV each time.
    assert_ne!(mk.wrap_kek(7, &kek).unwrap(), blob);

    // Another provider on the same key (as after a restart) has the same id and unwraps it,
    // through load() as the configuration gives it.
    let again = master_key::load(Some(&MasterKeySpec::Pkcs11(t.spec("kura-master")))).unwrap();
    assert_eq!(again.id(), mk.id());
    let back = again.unwrap_kek(7, &blob).unwrap();
    assert_eq!(back.expose_secret(), kek.expose_secret());
});

hsm_test!(another_kek_id_or_key_is_refused, |t| {
    let mk = pkcs11::generate_key(&t.spec("kura-master")).unwrap();
    let kek = Key256::generate().unwrap();
    let blob = mk.wrap_kek(7, &kek).unwrap();
    // The keystore asks for another KEK than the blob names.
    let e = mk.unwrap_kek(8, &blob).err().unwrap();
    assert!(
        matches!(e, Error::Format(kura_format::Error::KeyMismatch { .. })),
        "{e}"
    );
    // The body moved under a header naming KEK 8: the KEK id is bound as AAD.
    let (header, body) = wrapped::open_external(7, &blob).unwrap();
    let mut moved = wrapped::external(mk.id(), 8).unwrap();
    moved.extend_from_slice(body);
    assert_eq!(moved.len(), blob.len());
    assert_ne!(&moved[..header.len()], header);
    let e = mk.unwrap_kek(8, &moved).err().unwrap();
    assert!(matches!(e, Error::KekUnwrap { kek_id: 8, .. }), "{e}");
    assert!(e.to_string().contains(mk.id()), "{e}");

    // Another key of the same token, labelled differently: another id, and no unwrap.
    let other = pkcs11::generate_key(&t.spec("kura-other")).unwrap();
    assert_ne!(other.id(), mk.id());
    let e = other.unwrap_kek(7, &blob).err().unwrap();
    assert!(matches!(e, Error::KekUnwrap { .. }), "{e}");
});

hsm_test!(every_flipped_bit_is_refused, |t| {
    let mk = pkcs11::generate_key(&t.spec("kura-master")).unwrap();
    let kek = Key256::generate().unwrap();
    let blob = mk.wrap_kek(3, &kek).unwrap();
    let body_at = 6 + mk.id().len() + 8;
    for i in 0..blob.len() * 8 {
        let mut bad = blob.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let e = mk.unwrap_kek(3, &bad).err().unwrap_or_else(|| {
            panic!("bit {i} flipped still unwraps");
        });
        if i / 8 > body_at {
            // IV, ciphertext or tag: the token's GCM refuses it.
            assert!(
                matches!(e, Error::KekUnwrap { kek_id: 3, .. }),
                "bit {i}: {e}"
            );
        }
    }
    for cut in [1, 16, 60] {
        assert!(mk.unwrap_kek(3, &blob[..blob.len() - cut]).is_err());
    }
    assert!(mk.unwrap_kek(3, &[&blob[..], &[0]].concat()).is_err());
});

hsm_test!(a_wrong_pin_is_named, |t| {
    pkcs11::generate_key(&t.spec("kura-master")).unwrap();
    let mut spec = t.spec("kura-master");
    spec.pin = Some(Zeroizing::new("not-the-pin".into()));
    let e = Pkcs11MasterKey::open(&spec).err().unwrap();
    assert!(matches!(e, Error::Pkcs11PinIncorrect { .. }), "{e}");
    let text = e.to_string();
    for part in [PIN_VAR, &t.label, "user PIN"] {
        assert!(text.contains(part), "{text}");
    }
    assert!(!text.contains("not-the-pin"), "{text}");
    // The right PIN still works afterwards.
    Pkcs11MasterKey::open(&t.spec("kura-master")).unwrap();
});

hsm_test!(an_unset_pin_variable_is_named, |t| {
    let mut spec = t.spec("kura-master");
    spec.pin = None;
    let e = Pkcs11MasterKey::open(&spec).err().unwrap();
    assert!(matches!(e, Error::Pkcs11PinUnset { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains(PIN_VAR) && text.contains("not set") && text.contains(ORIGIN));
});

hsm_test!(a_missing_token_lists_the_tokens_present, |t| {
    let mut spec = t.spec("kura-master");
    spec.token_label = "no-such-token".into();
    let e = Pkcs11MasterKey::open(&spec).err().unwrap();
    assert!(matches!(e, Error::Pkcs11TokenMissing { .. }), "{e}");
    let text = e.to_string();
    for part in [
        "\"no-such-token\"",
        &format!("\"{}\"", t.label),
        "token-label",
    ] {
        assert!(text.contains(part), "{text}");
    }
});

hsm_test!(a_missing_or_unsuitable_key_is_named, |t| {
    let e = Pkcs11MasterKey::open(&t.spec("absent")).err().unwrap();
    assert!(matches!(e, Error::Pkcs11Key { .. }), "{e}");
    let text = e.to_string();
    for part in [
        "\"absent\"",
        "no secret key",
        "key-label",
        "kura pkcs11 keygen",
    ] {
        assert!(text.contains(part), "{text}");
    }

    let aes = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
    ];
    let usable = [Attribute::Encrypt(true), Attribute::Decrypt(true)];
    let aes128 = [&aes[..], &usable, &[Attribute::ValueLen(16.into())]].concat();
    t.raw_key("aes128", Some(&Mechanism::AesKeyGen), &aes128);
    let no_encrypt = [
        &aes[..],
        &[Attribute::Encrypt(false), Attribute::Decrypt(true)],
        &[Attribute::ValueLen(32.into())],
    ]
    .concat();
    t.raw_key("sign-only", Some(&Mechanism::AesKeyGen), &no_encrypt);
    let generic = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(32.into()),
    ];
    t.raw_key("generic", Some(&Mechanism::GenericSecretKeyGen), &generic);
    for (label, needle) in [
        ("aes128", "an AES key of 16 bytes"),
        ("sign-only", "CKA_ENCRYPT"),
        ("generic", "not CKK_AES"),
    ] {
        let e = Pkcs11MasterKey::open(&t.spec(label)).err().unwrap();
        assert!(matches!(e, Error::Pkcs11Key { .. }), "{label}: {e}");
        assert!(e.to_string().contains(needle), "{label}: {e}");
    }

    // Two keys with one label are ambiguous; keygen refuses to make the second.
    pkcs11::generate_key(&t.spec("kura-master")).unwrap();
    let e = pkcs11::generate_key(&t.spec("kura-master")).err().unwrap();
    assert!(e.to_string().contains("exists already"), "{e}");
    t.raw_key(
        "kura-master",
        Some(&Mechanism::AesKeyGen),
        &[&aes[..], &usable, &[Attribute::ValueLen(32.into())]].concat(),
    );
    let e = Pkcs11MasterKey::open(&t.spec("kura-master")).err().unwrap();
    assert!(
        e.to_string().contains("2 secret keys have this label"),
        "{e}"
    );
});

hsm_test!(a_missing_module_is_named, |t| {
    let mut spec = t.spec("kura-master");
    spec.module = "/nonexistent/libvendor-pkcs11.so".into();
    let e = Pkcs11MasterKey::open(&spec).err().unwrap();
    assert!(matches!(e, Error::Pkcs11Module { .. }), "{e}");
    assert!(
        e.to_string().contains("/nonexistent/libvendor-pkcs11.so"),
        "{e}"
    );
    // A file that is no PKCS#11 library.
    spec.module = "/etc/hostname".into();
    let e = Pkcs11MasterKey::open(&spec).err().unwrap();
    assert!(matches!(e, Error::Pkcs11Module { .. }), "{e}");
});

hsm_test!(two_threads_share_one_provider, |t| {
    let mk: Arc<dyn MasterKey> = Arc::new(pkcs11::generate_key(&t.spec("kura-master")).unwrap());
    let threads: Vec<_> = (0..2u64)
        .map(|n| {
            let mk = Arc::clone(&mk);
            std::thread::spawn(move || {
                for i in 0..100 {
                    let id = n * 1000 + i;
                    let kek = Key256::generate().unwrap();
                    let blob = mk.wrap_kek(id, &kek).unwrap();
                    let back = mk.unwrap_kek(id, &blob).unwrap();
                    assert_eq!(back.expose_secret(), kek.expose_secret());
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
});

hsm_test!(the_blob_is_as_docs_format_md_says, |t| {
    // An imported key whose bytes the test knows, so that software can check the token.
    let key: [u8; 32] = std::array::from_fn(|i| i as u8 * 7 + 1);
    t.raw_key(
        "known",
        None,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(key.to_vec()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Sensitive(true),
        ],
    );
    let mk = Pkcs11MasterKey::open(&t.spec("known")).unwrap();
    let aes = Aes256Gcm::new(&Key256::from_slice(&key, "test key").unwrap()).unwrap();

    // The id's check value is AES-256(key, 0¹²⁸)[0..3]: the CTR keystream at counter 0.
    let mut block = [0u8; 16];
    CtrCipher::new(CtrMethod::Aes256, &key, [0; 16])
        .unwrap()
        .apply_keystream(0, &mut block)
        .unwrap();
    assert_eq!(
        mk.id(),
        format!("pkcs11:{}/known#kcv:{}", t.label, hex::encode(&block[..3]))
    );

    // Token → software: header, then 01 ‖ IV ‖ ciphertext ‖ tag, AAD as documented.
    let kek = Key256::generate().unwrap();
    let blob = mk.wrap_kek(42, &kek).unwrap();
    let w = mk.id().len();
    let header = &blob[..14 + w];
    assert_eq!(&header[..6], &[b'K', b'R', b'W', 1, 4, w as u8]);
    assert_eq!(&header[6..6 + w], mk.id().as_bytes());
    assert_eq!(&header[6 + w..], &42u64.to_be_bytes());
    let body = &blob[14 + w..];
    assert_eq!((body.len(), body[0]), (61, 1));
    let aad = [&b"kura pkcs11 KEK v1"[..], header, &[1]].concat();
    let iv: [u8; 12] = body[1..13].try_into().unwrap();
    let mut ct = body[13..45].to_vec();
    let tag: [u8; 16] = body[45..61].try_into().unwrap();
    aes.open_in_place(&iv, &aad, &mut ct, &tag).unwrap();
    assert_eq!(ct, kek.expose_secret());

    // Software → token: a blob sealed from the document alone unwraps.
    let iv = [0x5a; 12];
    let mut ct = kek.expose_secret().to_vec();
    let tag = aes.seal_in_place(&iv, &aad, &mut ct).unwrap();
    let mine = [header, &[1], &iv, &ct, &tag].concat();
    let back = mk.unwrap_kek(42, &mine).unwrap();
    assert_eq!(back.expose_secret(), kek.expose_secret());
    // Without the label in the AAD it does not.
    let mut ct = kek.expose_secret().to_vec();
    let tag = aes
        .seal_in_place(&iv, &[header, &[1]].concat(), &mut ct)
        .unwrap();
    let unlabelled = [header, &[1], &iv, &ct, &tag].concat();
    let e = mk.unwrap_kek(42, &unlabelled).err().unwrap();
    assert!(matches!(e, Error::KekUnwrap { .. }), "{e}");
});

hsm_test!(a_logged_out_token_is_logged_in_again, |t| {
    let mk = pkcs11::generate_key(&t.spec("kura-master")).unwrap();
    let kek = Key256::generate().unwrap();
    let blob = mk.wrap_kek(5, &kek).unwrap();
    // Login is per application: logging out through another session logs the provider's
    // session out too, as a token restart would.
    let (ctx, slot) = t.module_and_slot();
    ctx.open_ro_session(slot).unwrap().logout().unwrap();
    let back = mk.unwrap_kek(5, &blob).unwrap();
    assert_eq!(back.expose_secret(), kek.expose_secret());
    let again = mk.wrap_kek(6, &kek).unwrap();
    assert_eq!(
        mk.unwrap_kek(6, &again).unwrap().expose_secret(),
        kek.expose_secret()
    );

    // The key replaced by another with the same label: found again, but refused.
    let session = ctx.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::new(PIN.into())));
    let label = Attribute::Label(b"kura-master".to_vec());
    for h in session.find_objects(&[label]).unwrap() {
        session.destroy_object(h).unwrap();
    }
    let replaced = pkcs11::generate_key(&t.spec("kura-master")).unwrap();
    assert_ne!(replaced.id(), mk.id());
    let e = mk.wrap_kek(7, &kek).err().unwrap();
    let text = e.to_string();
    assert!(text.contains("changed while kura ran"), "{text}");
    assert!(
        text.contains(mk.id()) && text.contains(replaced.id()),
        "{text}"
    );
});
