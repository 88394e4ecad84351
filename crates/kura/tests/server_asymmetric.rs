#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Asymmetric KMS keys through the unmodified boto3: RSA and ECC signing keys, RSA
//! encryption keys and data key pairs. Every signature and ciphertext is also checked
//! independently, with the `cryptography` package and with the `openssl` command line,
//! against the public key GetPublicKey answers.

mod server;

use std::path::Path;
use std::process::Command;

use server::{PRELUDE, Server};

/// Python helpers shared by the scripts: `cryptography` imports and GetPublicKey.
const CRYPTO: &str = r#"
import hashlib
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.exceptions import InvalidSignature
HASH = {"256": (hashes.SHA256, hashlib.sha256), "384": (hashes.SHA384, hashlib.sha384), "512": (hashes.SHA512, hashlib.sha512)}
def public_key(kid):
    r = kms.get_public_key(KeyId=kid)
    return r, serialization.load_der_public_key(r["PublicKey"])
def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
"#;

fn script(out: &Path, body: &str) -> String {
    format!(
        "{PRELUDE}{CRYPTO}\nOUT = {:?}\n{body}",
        out.display().to_string()
    )
}

/// Runs `openssl` with `args` in `dir`; returns (success, stdout + stderr).
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// `openssl dgst <hash> -verify` of signature file `sig` over file `msg` with the DER
/// public key file `public`, with `sigopts` (each a `-sigopt`).
fn dgst_verify(
    dir: &Path,
    hash: &str,
    public: &str,
    sigopts: &[&str],
    sig: &str,
    msg: &str,
) -> (bool, String) {
    let mut args = vec!["dgst", hash, "-verify", public, "-keyform", "DER"];
    for o in sigopts {
        args.extend(["-sigopt", o]);
    }
    args.extend(["-signature", sig, msg]);
    openssl(dir, &args)
}

#[test]
fn boto3_sign_and_verify_with_rsa_and_ecc_keys() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
msg = b"kura signs this message"

def check_independently(pk, alg, sig, m, mtype):
    bits = alg[-3:]
    h = HASH[bits][0]()
    if mtype == "DIGEST":
        prehashed = utils.Prehashed(h)
    if alg.startswith("ECDSA"):
        pk.verify(sig, m, ec.ECDSA(prehashed if mtype == "DIGEST" else h))
    else:
        pad = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size) if "PSS" in alg else padding.PKCS1v15()
        pk.verify(sig, m, pad, prehashed if mtype == "DIGEST" else h)

def exercise(kid, algs):
    arn = kms.describe_key(KeyId=kid)["KeyMetadata"]["Arn"]
    r, pk = public_key(kid)
    assert r["KeyId"] == arn and r["KeyUsage"] == "SIGN_VERIFY", r
    assert r["SigningAlgorithms"] == algs, r
    assert "EncryptionAlgorithms" not in r
    for alg in algs:
        for mtype in ("RAW", "DIGEST"):
            m = msg if mtype == "RAW" else HASH[alg[-3:]][1](msg).digest()
            sg = kms.sign(KeyId=kid, Message=m, MessageType=mtype, SigningAlgorithm=alg)
            assert sg["KeyId"] == arn and sg["SigningAlgorithm"] == alg
            sig = sg["Signature"]
            check_independently(pk, alg, sig, m, mtype)
            v = kms.verify(KeyId=kid, Message=m, MessageType=mtype, Signature=sig, SigningAlgorithm=alg)
            assert v["SignatureValid"] is True and v["KeyId"] == arn and v["SigningAlgorithm"] == alg
            # a RAW signature is a signature of the message's digest, and vice versa
            other_type = "DIGEST" if mtype == "RAW" else "RAW"
            other_m = HASH[alg[-3:]][1](msg).digest() if other_type == "DIGEST" else msg
            assert kms.verify(KeyId=kid, Message=other_m, MessageType=other_type, Signature=sig, SigningAlgorithm=alg)["SignatureValid"]
            # tampered message, digest or signature
            bad = bytearray(m); bad[0] ^= 1
            expect_error("KMSInvalidSignatureException", kms.verify, KeyId=kid, Message=bytes(bad), MessageType=mtype, Signature=sig, SigningAlgorithm=alg)
            try:
                check_independently(pk, alg, sig, bytes(bad), mtype)
                raise AssertionError("cryptography accepted a tampered message")
            except InvalidSignature:
                pass
            bad_sig = bytearray(sig); bad_sig[len(bad_sig) // 2] ^= 0x10
            expect_error("KMSInvalidSignatureException", kms.verify, KeyId=kid, Message=m, MessageType=mtype, Signature=bytes(bad_sig), SigningAlgorithm=alg)
        # a digest of the wrong length
        expect_error("ValidationException", kms.sign, KeyId=kid, Message=b"x" * 20, MessageType="DIGEST", SigningAlgorithm=alg)
        expect_error("ValidationException", kms.verify, KeyId=kid, Message=b"x" * 20, MessageType="DIGEST", Signature=b"sig", SigningAlgorithm=alg)
    expect_error("ValidationException", kms.sign, KeyId=kid, Message=b"x" * 4097, SigningAlgorithm=algs[0])
    return arn, r, pk

RSA_ALGS = ["RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
            "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"]
k = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY", Description="rsa signer")["KeyMetadata"]
assert k["KeySpec"] == "RSA_2048" and k["CustomerMasterKeySpec"] == "RSA_2048" and k["KeyUsage"] == "SIGN_VERIFY"
assert k["SigningAlgorithms"] == RSA_ALGS and "EncryptionAlgorithms" not in k, k
kms.create_alias(AliasName="alias/signer", TargetKeyId=k["KeyId"])
arn, r, pk = exercise(k["KeyId"], RSA_ALGS)
assert isinstance(pk, rsa.RSAPublicKey) and pk.key_size == 2048 and r["KeySpec"] == "RSA_2048"
assert r["CustomerMasterKeySpec"] == "RSA_2048"
sig = kms.sign(KeyId="alias/signer", Message=msg, SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
assert len(sig) == 256
write("rsa_pub.der", r["PublicKey"]); write("msg.bin", msg); write("rsa_pss_sha256.sig", sig)
# PKCS#1 v1.5 is deterministic: KMS and a local signature agree byte for byte
s1 = kms.sign(KeyId=k["KeyId"], Message=msg, SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")["Signature"]
s2 = kms.sign(KeyId=k["KeyId"], Message=msg, SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")["Signature"]
assert s1 == s2
expect_error("InvalidKeyUsageException", kms.sign, KeyId=k["KeyId"], Message=msg, SigningAlgorithm="ECDSA_SHA_256")
expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")

curves = {"ECC_NIST_P256": ("256", "secp256r1"), "ECC_NIST_P384": ("384", "secp384r1"),
          "ECC_NIST_P521": ("512", "secp521r1"), "ECC_SECG_P256K1": ("256", "secp256k1")}
for spec, (bits, curve) in curves.items():
    k = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    alg = "ECDSA_SHA_" + bits
    assert k["SigningAlgorithms"] == [alg], k
    arn, r, pk = exercise(k["KeyId"], [alg])
    assert isinstance(pk, ec.EllipticCurvePublicKey) and pk.curve.name == curve, (spec, pk.curve.name)
    assert r["KeySpec"] == spec
    wrong = "ECDSA_SHA_384" if bits != "384" else "ECDSA_SHA_256"
    expect_error("InvalidKeyUsageException", kms.sign, KeyId=k["KeyId"], Message=msg, SigningAlgorithm=wrong)
    expect_error("InvalidKeyUsageException", kms.sign, KeyId=k["KeyId"], Message=msg, SigningAlgorithm="RSASSA_PSS_SHA_256")
    expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x")
    expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=k["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    if spec == "ECC_NIST_P384":
        digest = hashlib.sha384(msg).digest()
        write("ec_pub.der", r["PublicKey"])
        write("ecdsa_sha384.sig", kms.sign(KeyId=k["KeyId"], Message=msg, SigningAlgorithm=alg)["Signature"])
        write("digest384.bin", digest)
        write("ecdsa_digest384.sig", kms.sign(KeyId=k["KeyId"], Message=digest, MessageType="DIGEST", SigningAlgorithm=alg)["Signature"])
        # states: disabled keys neither sign nor verify nor give their public key
        kms.disable_key(KeyId=k["KeyId"])
        expect_error("DisabledException", kms.sign, KeyId=k["KeyId"], Message=msg, SigningAlgorithm=alg)
        expect_error("DisabledException", kms.get_public_key, KeyId=k["KeyId"])
        kms.enable_key(KeyId=k["KeyId"])

# a 4096-bit key, and key specs and usages kura refuses
big = kms.create_key(KeySpec="RSA_4096", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
assert public_key(big)[1].key_size == 4096
assert len(kms.sign(KeyId=big, Message=msg, SigningAlgorithm="RSASSA_PSS_SHA_512")["Signature"]) == 512
expect_error("ValidationException", kms.create_key, KeySpec="ECC_NIST_P256")  # default usage ENCRYPT_DECRYPT
expect_error("ValidationException", kms.create_key, KeySpec="ECC_NIST_P256", KeyUsage="ENCRYPT_DECRYPT")
expect_error("UnsupportedOperationException", kms.create_key, KeySpec="SM2", KeyUsage="SIGN_VERIFY")
expect_error("UnsupportedOperationException", kms.create_key, KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")

# symmetric and HMAC keys neither sign nor have a public key
sym = kms.create_key()["KeyMetadata"]["KeyId"]
expect_error("InvalidKeyUsageException", kms.sign, KeyId=sym, Message=msg, SigningAlgorithm="RSASSA_PSS_SHA_256")
expect_error("InvalidKeyUsageException", kms.verify, KeyId=sym, Message=msg, Signature=b"s", SigningAlgorithm="ECDSA_SHA_256")
expect_error("UnsupportedOperationException", kms.get_public_key, KeyId=sym)
hmac = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
expect_error("UnsupportedOperationException", kms.get_public_key, KeyId=hmac)
expect_error("NotFoundException", kms.get_public_key, KeyId="alias/none")
print("OK")
"#;
    s.python_ok(&script(dir.path(), body), None);

    // openssl, given only the DER public keys GetPublicKey answered.
    let d = dir.path();
    let pss = ["rsa_padding_mode:pss", "rsa_pss_saltlen:32"];
    let (good, text) = dgst_verify(
        d,
        "-sha256",
        "rsa_pub.der",
        &pss,
        "rsa_pss_sha256.sig",
        "msg.bin",
    );
    assert!(good && text.contains("Verified OK"), "RSA-PSS: {text}");
    let (good, text) = dgst_verify(
        d,
        "-sha384",
        "ec_pub.der",
        &[],
        "ecdsa_sha384.sig",
        "msg.bin",
    );
    assert!(good && text.contains("Verified OK"), "ECDSA: {text}");
    let (good, text) = openssl(
        d,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "ec_pub.der",
            "-keyform",
            "DER",
            "-in",
            "digest384.bin",
            "-sigfile",
            "ecdsa_digest384.sig",
        ],
    );
    assert!(
        good && text.contains("Signature Verified Successfully"),
        "ECDSA over a digest: {text}"
    );
    // and openssl rejects a signature over another message
    std::fs::write(d.join("other.bin"), b"kura signs this messagE").unwrap();
    let (good, text) = dgst_verify(
        d,
        "-sha384",
        "ec_pub.der",
        &[],
        "ecdsa_sha384.sig",
        "other.bin",
    );
    assert!(!good && text.contains("Verification failure"), "{text}");
}

#[test]
fn boto3_rsa_encryption_keys() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
k = kms.create_key(KeySpec="RSA_3072", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
kid, arn = k["KeyId"], k["Arn"]
assert k["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"] and "SigningAlgorithms" not in k, k
kms.create_alias(AliasName="alias/rsa-enc", TargetKeyId=kid)
r, pk = public_key("alias/rsa-enc")
assert r["KeyId"] == arn and r["KeyUsage"] == "ENCRYPT_DECRYPT" and r["KeySpec"] == "RSA_3072"
assert r["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"] and "SigningAlgorithms" not in r
assert pk.key_size == 3072
write("rsa_enc_pub.der", r["PublicKey"])

oaep = {"RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256}
limit = {"RSAES_OAEP_SHA_1": 342, "RSAES_OAEP_SHA_256": 318}
for alg, h in oaep.items():
    pad = padding.OAEP(mgf=padding.MGF1(algorithm=h()), algorithm=h(), label=None)
    # KMS encrypts, KMS decrypts
    enc = kms.encrypt(KeyId="alias/rsa-enc", Plaintext=b"top secret", EncryptionAlgorithm=alg)
    assert enc["KeyId"] == arn and enc["EncryptionAlgorithm"] == alg and len(enc["CiphertextBlob"]) == 384
    dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], KeyId=kid, EncryptionAlgorithm=alg)
    assert dec["Plaintext"] == b"top secret" and dec["KeyId"] == arn and dec["EncryptionAlgorithm"] == alg
    # OAEP is randomised
    assert kms.encrypt(KeyId=kid, Plaintext=b"top secret", EncryptionAlgorithm=alg)["CiphertextBlob"] != enc["CiphertextBlob"]
    # anyone with the public key encrypts; KMS decrypts
    ct = pk.encrypt(b"from outside", pad)
    assert kms.decrypt(CiphertextBlob=ct, KeyId=arn, EncryptionAlgorithm=alg)["Plaintext"] == b"from outside"
    # the limit is k - 2*hLen - 2
    full = os.urandom(limit[alg])
    ct = kms.encrypt(KeyId=kid, Plaintext=full, EncryptionAlgorithm=alg)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=ct, KeyId=kid, EncryptionAlgorithm=alg)["Plaintext"] == full
    expect_error("ValidationException", kms.encrypt, KeyId=kid, Plaintext=full + b"x", EncryptionAlgorithm=alg)
    # the other OAEP hash, or a flipped bit, does not decrypt
    other = "RSAES_OAEP_SHA_1" if alg == "RSAES_OAEP_SHA_256" else "RSAES_OAEP_SHA_256"
    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct, KeyId=kid, EncryptionAlgorithm=other)
    bad = bytearray(ct); bad[-1] ^= 1
    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=bytes(bad), KeyId=kid, EncryptionAlgorithm=alg)

ct = kms.encrypt(KeyId=kid, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct[:-1], KeyId=kid, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
# the algorithm is required, and no encryption context is allowed
expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=kid, Plaintext=b"x")
expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=kid, Plaintext=b"x", EncryptionAlgorithm="SYMMETRIC_DEFAULT")
expect_error("InvalidKeyUsageException", kms.decrypt, CiphertextBlob=ct, KeyId=kid)
expect_error("ValidationException", kms.encrypt, KeyId=kid, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256", EncryptionContext={"a": "b"})
expect_error("ValidationException", kms.decrypt, CiphertextBlob=ct, KeyId=kid, EncryptionAlgorithm="RSAES_OAEP_SHA_256", EncryptionContext={"a": "b"})
# RSA ciphertext does not name its key: KeyId is required
expect_error("ValidationException", kms.decrypt, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct)
# an encryption key does not sign, and symmetric blobs are not RSA ciphertext
expect_error("InvalidKeyUsageException", kms.sign, KeyId=kid, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
sym = kms.create_key()["KeyMetadata"]["KeyId"]
blob = kms.encrypt(KeyId=sym, Plaintext=b"sym")["CiphertextBlob"]
expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob, KeyId=kid, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=sym, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"sym"
# an RSA key is no data key encryption key
expect_error("InvalidKeyUsageException", kms.generate_data_key, KeyId=kid, KeySpec="AES_256")
kms.disable_key(KeyId=kid)
expect_error("DisabledException", kms.decrypt, CiphertextBlob=ct, KeyId=kid, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
kms.enable_key(KeyId=kid)
print("OK")
"#;
    s.python_ok(&script(dir.path(), body), None);

    // openssl encrypts with the DER public key; KMS decrypts.
    let d = dir.path();
    std::fs::write(d.join("plain.bin"), b"sealed by openssl").unwrap();
    let (good, text) = openssl(
        d,
        &[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            "rsa_enc_pub.der",
            "-keyform",
            "DER",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
            "-in",
            "plain.bin",
            "-out",
            "openssl.ct",
        ],
    );
    assert!(good, "openssl pkeyutl -encrypt: {text}");
    let body = r#"
kid = kms.describe_key(KeyId="alias/rsa-enc")["KeyMetadata"]["KeyId"]
ct = open(os.path.join(OUT, "openssl.ct"), "rb").read()
assert kms.decrypt(CiphertextBlob=ct, KeyId="alias/rsa-enc", EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == b"sealed by openssl"
print("OK")
"#;
    s.python_ok(&script(dir.path(), body), None);
}

#[test]
fn boto3_generate_data_key_pair() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
sym = kms.create_key(Description="wraps private keys")["KeyMetadata"]
kms.create_alias(AliasName="alias/pairs", TargetKeyId=sym["KeyId"])
ctx = {"purpose": "device-identity"}
der = lambda pk: pk.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

seen = set()
for spec, kind in (("RSA_2048", rsa.RSAPrivateKey), ("ECC_NIST_P256", ec.EllipticCurvePrivateKey),
                   ("ECC_NIST_P384", ec.EllipticCurvePrivateKey), ("ECC_SECG_P256K1", ec.EllipticCurvePrivateKey),
                   ("ECC_NIST_EDWARDS25519", ed25519.Ed25519PrivateKey)):
    p = kms.generate_data_key_pair(KeyId="alias/pairs", KeyPairSpec=spec, EncryptionContext=ctx)
    assert p["KeyId"] == sym["Arn"] and p["KeyPairSpec"] == spec, p
    priv = serialization.load_der_private_key(p["PrivateKeyPlaintext"], password=None)
    assert isinstance(priv, kind), (spec, type(priv))
    assert der(priv.public_key()) == p["PublicKey"], spec
    assert isinstance(serialization.load_der_public_key(p["PublicKey"]), type(priv.public_key()))
    if spec == "RSA_2048":
        assert priv.key_size == 2048
    # the private key blob is a normal KMS ciphertext under the symmetric key and context
    dec = kms.decrypt(CiphertextBlob=p["PrivateKeyCiphertextBlob"], EncryptionContext=ctx)
    assert dec["Plaintext"] == p["PrivateKeyPlaintext"] and dec["KeyId"] == sym["Arn"]
    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=p["PrivateKeyCiphertextBlob"])
    # the key pair signs, and a new pair is made every call
    if spec == "RSA_2048":
        sig = priv.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
        priv.public_key().verify(sig, b"m", padding.PKCS1v15(), hashes.SHA256())
    elif spec == "ECC_NIST_EDWARDS25519":
        priv.public_key().verify(priv.sign(b"m"), b"m")
    else:
        priv.public_key().verify(priv.sign(b"m", ec.ECDSA(hashes.SHA256())), b"m", ec.ECDSA(hashes.SHA256()))
    assert p["PublicKey"] not in seen
    seen.add(p["PublicKey"])
    again = kms.generate_data_key_pair(KeyId=sym["KeyId"], KeyPairSpec=spec, EncryptionContext=ctx)
    assert again["PublicKey"] != p["PublicKey"]

for spec in ("RSA_2048", "ECC_NIST_P256"):
    w = kms.generate_data_key_pair_without_plaintext(KeyId=sym["Arn"], KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in w and w["KeyPairSpec"] == spec and w["KeyId"] == sym["Arn"]
    pt = kms.decrypt(CiphertextBlob=w["PrivateKeyCiphertextBlob"])["Plaintext"]
    priv = serialization.load_der_private_key(pt, password=None)
    assert der(priv.public_key()) == w["PublicKey"]

# errors
asym = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
expect_error("InvalidKeyUsageException", kms.generate_data_key_pair, KeyId=asym, KeyPairSpec="ECC_NIST_P256")
hmac = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
expect_error("InvalidKeyUsageException", kms.generate_data_key_pair_without_plaintext, KeyId=hmac, KeyPairSpec="RSA_2048")
expect_error("UnsupportedOperationException", kms.generate_data_key_pair, KeyId=sym["KeyId"], KeyPairSpec="SM2")
expect_error("ValidationException", kms.generate_data_key_pair, KeyId=sym["KeyId"], KeyPairSpec="RSA_1024")
expect_error("NotFoundException", kms.generate_data_key_pair, KeyId="alias/none", KeyPairSpec="RSA_2048")
kms.disable_key(KeyId=sym["KeyId"])
expect_error("DisabledException", kms.generate_data_key_pair, KeyId=sym["KeyId"], KeyPairSpec="ECC_NIST_P256")
print("OK")
"#;
    s.python_ok(&script(dir.path(), body), None);
}

#[test]
fn key_policies_govern_asymmetric_operations() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // A policy that allows everything but Sign: the dev user may verify and read the
    // public key, not sign.
    let body = r#"
policy = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
    {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["kms:Sign", "kms:GenerateDataKeyPair"], "Resource": "*"}]})
k = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Policy=policy)["KeyMetadata"]["KeyId"]
expect_error("AccessDeniedException", kms.sign, KeyId=k, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
kms.get_public_key(KeyId=k)
expect_error("KMSInvalidSignatureException", kms.verify, KeyId=k, Message=b"m", Signature=b"0", SigningAlgorithm="ECDSA_SHA_256")
sym = kms.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
expect_error("AccessDeniedException", kms.generate_data_key_pair, KeyId=sym, KeyPairSpec="ECC_NIST_P256")
assert "PrivateKeyPlaintext" not in kms.generate_data_key_pair_without_plaintext(KeyId=sym, KeyPairSpec="ECC_NIST_P256")
print("OK")
"#;
    s.python_ok(&script(dir.path(), body), None);
}

#[test]
fn boto3_re_encrypt_between_rsa_and_symmetric_keys() {
    let s = Server::start();
    let script = format!(
        "{PRELUDE}{}",
        r#"
rsa_a = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
rsa_b = kms.create_key(KeySpec="RSA_3072", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
sym = kms.create_key()["KeyMetadata"]["KeyId"]
ctx = {"purpose": "move"}

# symmetric -> RSA
blob = kms.encrypt(KeyId=sym, Plaintext=b"secret", EncryptionContext=ctx)["CiphertextBlob"]
r = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=ctx, DestinationKeyId=rsa_a,
                   DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
assert r["SourceEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT" and r["DestinationEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256", r
rsa_blob = r["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=rsa_blob, KeyId=rsa_a, EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == b"secret"

# RSA -> RSA
r = kms.re_encrypt(CiphertextBlob=rsa_blob, SourceKeyId=rsa_a, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
                   DestinationKeyId=rsa_b, DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_1")
assert r["SourceKeyId"].endswith(rsa_a) and r["KeyId"].endswith(rsa_b), r
assert kms.decrypt(CiphertextBlob=r["CiphertextBlob"], KeyId=rsa_b, EncryptionAlgorithm="RSAES_OAEP_SHA_1")["Plaintext"] == b"secret"

# RSA -> symmetric, with a destination context
r = kms.re_encrypt(CiphertextBlob=rsa_blob, SourceKeyId=rsa_a, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
                   DestinationKeyId=sym, DestinationEncryptionContext={"purpose": "back"})
assert r["SourceEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256" and r["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT", r
assert kms.decrypt(CiphertextBlob=r["CiphertextBlob"], EncryptionContext={"purpose": "back"})["Plaintext"] == b"secret"

# errors
expect_error("ValidationException", kms.re_encrypt, CiphertextBlob=rsa_blob,
             SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256", DestinationKeyId=sym)
expect_error("ValidationException", kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext=ctx,
             DestinationKeyId=rsa_a, DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_1", DestinationEncryptionContext=ctx)
expect_error("InvalidKeyUsageException", kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext=ctx,
             DestinationKeyId=rsa_a)
expect_error("InvalidCiphertextException", kms.re_encrypt, CiphertextBlob=rsa_blob, SourceKeyId=rsa_a,
             SourceEncryptionAlgorithm="RSAES_OAEP_SHA_1", DestinationKeyId=sym)
print("OK")
"#
    );
    s.python_ok(&script, None);
}
