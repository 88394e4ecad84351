#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Imported key material (BYOK) through `kura server`: the AWS CLI + OpenSSL procedure of
//! AWS's documentation (and of the seed tutorial), and boto3 for the error paths,
//! deletion, re-import and expiry.

mod server;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use server::{PRELUDE, Server, ok};

/// Runs `openssl` with `args` in `dir`, asserting success.
fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed");
    assert!(
        o.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The AWS CLI's `--output text` of one value, trimmed.
/// `openssl pkeyutl` RSA-OAEP encryption of `input` to `output` in `dir` under the wrapping
/// public key, with the digest options `oaep` (each a `-pkeyopt`).
fn pkeyutl_oaep(dir: &Path, input: &str, output: &str, oaep: &[&str]) {
    let mut args = vec![
        "pkeyutl",
        "-encrypt",
        "-in",
        input,
        "-out",
        output,
        "-inkey",
        "PublicKey.bin",
        "-keyform",
        "DER",
        "-pubin",
        "-pkeyopt",
        "rsa_padding_mode:oaep",
    ];
    for o in oaep {
        args.extend(["-pkeyopt", o]);
    }
    openssl(dir, &args);
}

/// RSAES_OAEP_SHA_256 for [`pkeyutl_oaep`]: SHA-256 for both OAEP and MGF1.
const OAEP_SHA_256: &[&str] = &["rsa_oaep_md:sha256", "rsa_mgf1_md:sha256"];

fn write_b64(path: &Path, b64: &str) {
    std::fs::write(
        path,
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
    )
    .unwrap();
}

/// One EXTERNAL key imported step by step: create the key, download the wrapping key and
/// token, wrap 32 random bytes with OpenSSL (`wrap` runs the OpenSSL commands in `dir`),
/// import, then encrypt and decrypt.
fn cli_import(s: &Server, dir: &Path, algorithm: &str, spec: &str, wrap: &dyn Fn(&Path)) {
    let key = s.aws_text(&[
        "kms",
        "create-key",
        "--origin",
        "EXTERNAL",
        "--description",
        &format!("imported with {algorithm}"),
        "--query",
        "KeyMetadata.KeyId",
    ]);
    let state = |s: &Server| {
        s.aws_text(&[
            "kms",
            "describe-key",
            "--key-id",
            &key,
            "--query",
            "KeyMetadata.[KeyState,Origin,ExpirationModel]",
        ])
    };
    assert!(
        state(s).starts_with("PendingImport\tEXTERNAL"),
        "{}",
        state(s)
    );
    // One call: the public key and the token belong together.
    let params = s.aws_text(&[
        "kms",
        "get-parameters-for-import",
        "--key-id",
        &key,
        "--wrapping-algorithm",
        algorithm,
        "--wrapping-key-spec",
        spec,
        "--query",
        "[PublicKey,ImportToken]",
    ]);
    let (public, token) = params.split_once('\t').unwrap();
    write_b64(&dir.join("PublicKey.bin"), public);
    write_b64(&dir.join("ImportToken.bin"), token);

    openssl(dir, &["rand", "-out", "PlaintextKeyMaterial.bin", "32"]);
    wrap(dir);
    ok(&s.aws(&[
        "kms",
        "import-key-material",
        "--key-id",
        &key,
        "--encrypted-key-material",
        &format!("fileb://{}", dir.join("EncryptedKeyMaterial.bin").display()),
        "--import-token",
        &format!("fileb://{}", dir.join("ImportToken.bin").display()),
        "--expiration-model",
        "KEY_MATERIAL_DOES_NOT_EXPIRE",
    ]));
    assert_eq!(
        state(s),
        "Enabled\tEXTERNAL\tKEY_MATERIAL_DOES_NOT_EXPIRE",
        "{algorithm}"
    );

    let plain = dir.join("plain.txt");
    std::fs::write(&plain, "注文データ").unwrap();
    let blob = s.aws_text(&[
        "kms",
        "encrypt",
        "--key-id",
        &key,
        "--plaintext",
        &format!("fileb://{}", plain.display()),
        "--query",
        "CiphertextBlob",
    ]);
    write_b64(&dir.join("ct.bin"), &blob);
    let out = s.aws_text(&[
        "kms",
        "decrypt",
        "--ciphertext-blob",
        &format!("fileb://{}", dir.join("ct.bin").display()),
        "--query",
        "Plaintext",
    ]);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(out)
            .unwrap(),
        "注文データ".as_bytes(),
        "{algorithm}"
    );
}

#[test]
fn aws_cli_and_openssl_import_procedure() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let step = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    };

    // The tutorial's command as written: `openssl rsautl -oaep` is RSAES_OAEP_SHA_1.
    cli_import(&s, &step("rsautl"), "RSAES_OAEP_SHA_1", "RSA_2048", &|d| {
        openssl(
            d,
            &[
                "rsautl",
                "-encrypt",
                "-in",
                "PlaintextKeyMaterial.bin",
                "-oaep",
                "-inkey",
                "PublicKey.bin",
                "-keyform",
                "DER",
                "-pubin",
                "-out",
                "EncryptedKeyMaterial.bin",
            ],
        )
    });
    // AWS's current documentation: `openssl pkeyutl`, SHA-1 and SHA-256.
    cli_import(&s, &step("sha1"), "RSAES_OAEP_SHA_1", "RSA_2048", &|d| {
        pkeyutl_oaep(
            d,
            "PlaintextKeyMaterial.bin",
            "EncryptedKeyMaterial.bin",
            &["rsa_oaep_md:sha1"],
        )
    });
    cli_import(
        &s,
        &step("sha256"),
        "RSAES_OAEP_SHA_256",
        "RSA_4096",
        &|d| {
            pkeyutl_oaep(
                d,
                "PlaintextKeyMaterial.bin",
                "EncryptedKeyMaterial.bin",
                OAEP_SHA_256,
            )
        },
    );
    // RSA_AES_KEY_WRAP_SHA_256: an AES key wrapped with RSA-OAEP, then the material
    // wrapped with that AES key (RFC 5649), concatenated.
    cli_import(
        &s,
        &step("rsa-aes"),
        "RSA_AES_KEY_WRAP_SHA_256",
        "RSA_3072",
        &|d| {
            openssl(d, &["rand", "-out", "aes-key.bin", "32"]);
            let aes = hex::encode(std::fs::read(d.join("aes-key.bin")).unwrap());
            openssl(
                d,
                &[
                    "enc",
                    "-id-aes256-wrap-pad",
                    "-K",
                    &aes,
                    "-iv",
                    "A65959A6",
                    "-in",
                    "PlaintextKeyMaterial.bin",
                    "-out",
                    "key-material-wrapped.bin",
                ],
            );
            pkeyutl_oaep(d, "aes-key.bin", "aes-key-wrapped.bin", OAEP_SHA_256);
            let mut both = std::fs::read(d.join("aes-key-wrapped.bin")).unwrap();
            both.extend(std::fs::read(d.join("key-material-wrapped.bin")).unwrap());
            std::fs::write(d.join("EncryptedKeyMaterial.bin"), both).unwrap();
        },
    );
}

#[test]
fn boto3_import_errors_delete_reimport_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let s = Server::start_in(&data);
    let script = format!(
        "{PRELUDE}{}",
        r#"
import datetime, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

def params(kid, alg="RSAES_OAEP_SHA_256", spec="RSA_2048"):
    p = kms.get_parameters_for_import(KeyId=kid, WrappingAlgorithm=alg, WrappingKeySpec=spec)
    assert p["KeyId"].endswith(kid)
    left = p["ParametersValidTo"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=23, minutes=59) < left <= datetime.timedelta(hours=24, seconds=5), left
    return p["PublicKey"], p["ImportToken"]

def wrap(public, material, sha=hashes.SHA256):
    pk = serialization.load_der_public_key(public)
    return pk.encrypt(material, padding.OAEP(mgf=padding.MGF1(algorithm=sha()), algorithm=sha(), label=None))

def state(kid):
    return kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"]

a = kms.create_key(Origin="EXTERNAL", Description="byok")["KeyMetadata"]["KeyId"]
b = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
native = kms.create_key()["KeyMetadata"]["KeyId"]
assert state(a) == "PendingImport"
expect_error("KMSInvalidStateException", kms.encrypt, KeyId=a, Plaintext=b"x")
expect_error("UnsupportedOperationException", kms.get_parameters_for_import, KeyId=native,
             WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
expect_error("UnsupportedOperationException", kms.delete_imported_key_material, KeyId=native)
expect_error("UnsupportedOperationException", kms.get_parameters_for_import, KeyId=a,
             WrappingAlgorithm="RSAES_PKCS1_V1_5", WrappingKeySpec="RSA_2048")

material = os.urandom(32)
pub_a, tok_a = params(a)
pub_b, tok_b = params(b)
wrapped = wrap(pub_a, material)
never = dict(ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")

# tokens: another key's, garbage
expect_error("InvalidImportTokenException", kms.import_key_material, KeyId=a, ImportToken=tok_b, EncryptedKeyMaterial=wrapped, **never)
expect_error("InvalidImportTokenException", kms.import_key_material, KeyId=b, ImportToken=tok_a, EncryptedKeyMaterial=wrapped, **never)
expect_error("InvalidImportTokenException", kms.import_key_material, KeyId=a, ImportToken=b"garbage" * 10, EncryptedKeyMaterial=wrapped, **never)
# material wrapped for another public key, or with SHA-1 when SHA-256 was asked for
expect_error("InvalidCiphertextException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=wrap(pub_b, material), **never)
expect_error("InvalidCiphertextException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=wrap(pub_a, material, hashes.SHA1), **never)
# 128-bit material for a 256-bit key
expect_error("IncorrectKeyMaterialException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=wrap(pub_a, material[:16]), **never)
# ValidTo: required by default, in the future, within 365 days, forbidden when not expiring
now = datetime.datetime.now(datetime.timezone.utc)
expect_error("ValidationException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=wrapped)
expect_error("ValidationException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=wrapped, ValidTo=now - datetime.timedelta(hours=1))
expect_error("ValidationException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=wrapped, ValidTo=now + datetime.timedelta(days=400))
expect_error("ValidationException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=wrapped, ValidTo=now + datetime.timedelta(days=1), **never)
assert state(a) == "PendingImport"

r = kms.import_key_material(KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=wrapped, **never)
assert r["KeyId"].endswith(a) and len(r["KeyMaterialId"]) == 64, r
md = kms.describe_key(KeyId=a)["KeyMetadata"]
assert md["KeyState"] == "Enabled" and md["Origin"] == "EXTERNAL", md
assert md["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE" and "ValidTo" not in md, md
assert md["CurrentKeyMaterialId"] == r["KeyMaterialId"]
blob = kms.encrypt(KeyId=a, Plaintext=b"imported", EncryptionContext={"k": "v"})["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})["Plaintext"] == b"imported"

# different material is refused, before and after deletion
other = wrap(pub_a, os.urandom(32))
expect_error("IncorrectKeyMaterialException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=other, **never)
d = kms.delete_imported_key_material(KeyId=a)
assert d["KeyMaterialId"] == r["KeyMaterialId"], d
assert state(a) == "PendingImport"
expect_error("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob, EncryptionContext={"k": "v"})
expect_error("KMSInvalidStateException", kms.encrypt, KeyId=a, Plaintext=b"x")
expect_error("IncorrectKeyMaterialException", kms.import_key_material, KeyId=a, ImportToken=tok_a, EncryptedKeyMaterial=other, **never)
# the same material (with a new token, SHA-1 this time) brings the old ciphertexts back
pub_a1, tok_a1 = params(a, "RSAES_OAEP_SHA_1", "RSA_3072")
kms.import_key_material(KeyId=a, ImportToken=tok_a1, EncryptedKeyMaterial=wrap(pub_a1, material, hashes.SHA1), **never)
assert state(a) == "Enabled"
assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})["Plaintext"] == b"imported"

# material that expires a few seconds from now: the key goes back to PendingImport
mb = os.urandom(32)
valid_to = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
kms.import_key_material(KeyId=b, ImportToken=tok_b, EncryptedKeyMaterial=wrap(pub_b, mb), ValidTo=valid_to)
md = kms.describe_key(KeyId=b)["KeyMetadata"]
assert md["KeyState"] == "Enabled" and md["ExpirationModel"] == "KEY_MATERIAL_EXPIRES", md
assert abs((md["ValidTo"] - valid_to).total_seconds()) < 1.5, (md["ValidTo"], valid_to)
blob_b = kms.encrypt(KeyId=b, Plaintext=b"short-lived")["CiphertextBlob"]
deadline = time.time() + 12
while state(b) != "PendingImport":
    assert time.time() < deadline, "the material did not expire"
    time.sleep(0.5)
expect_error("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob_b)
assert "ValidTo" not in kms.describe_key(KeyId=b)["KeyMetadata"]
kms.import_key_material(KeyId=b, ImportToken=tok_b, EncryptedKeyMaterial=wrap(pub_b, mb), **never)
assert kms.decrypt(CiphertextBlob=blob_b)["Plaintext"] == b"short-lived"

# pending deletion: no new parameters
kms.schedule_key_deletion(KeyId=b, PendingWindowInDays=7)
expect_error("KMSInvalidStateException", kms.get_parameters_for_import, KeyId=b,
             WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
kms.cancel_key_deletion(KeyId=b)
print(json.dumps({"a": a, "blob": base64.b64encode(blob).decode(), "pub": base64.b64encode(pub_a1).decode(), "tok": base64.b64encode(tok_a1).decode()}))
"#
    );
    let out = ok(&s.python(&script, None));
    let v: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();

    // Tokens are stateless: one issued before a restart still imports after it.
    assert_eq!(s.stop().code(), Some(0));
    let s = Server::start_in(&data);
    let script = format!(
        "{PRELUDE}{}",
        r#"
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
v = json.loads(os.environ["STATE"])
a, blob = v["a"], base64.b64decode(v["blob"])
assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})["Plaintext"] == b"imported"
kms.delete_imported_key_material(KeyId=a)
assert kms.describe_key(KeyId=a)["KeyMetadata"]["KeyState"] == "PendingImport"
pk = serialization.load_der_public_key(base64.b64decode(v["pub"]))
garbage = pk.encrypt(os.urandom(32), padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
# the pre-restart token opens (different material is recognised as such)
expect_error("IncorrectKeyMaterialException", kms.import_key_material, KeyId=a, ImportToken=base64.b64decode(v["tok"]),
             EncryptedKeyMaterial=garbage, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
"#
    );
    let env = server::py();
    let mut c = env.command(env.python());
    kura_testkit::with_aws_credentials(&mut c, &s.access_key_id, &s.secret, server::REGION);
    c.env("ENDPOINT", &s.endpoint)
        .env("STATE", v.to_string())
        .arg("-c")
        .arg(&script);
    ok(&c.output().unwrap());
}

#[test]
fn boto3_imports_asymmetric_and_hmac_key_material() {
    let s = Server::start();
    let script = format!(
        "{PRELUDE}{}",
        r#"
import hashlib, hmac as hmac_mod
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

def wrap(params, material):
    # RSA_AES_KEY_WRAP_SHA_256: an ephemeral AES key under RSA-OAEP, then RFC 5649.
    wrapping = serialization.load_der_public_key(params["PublicKey"])
    aes = os.urandom(32)
    head = wrapping.encrypt(aes, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    return head + aes_key_wrap_with_padding(aes, material)

def import_into(key_id, material):
    p = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256", WrappingKeySpec="RSA_4096")
    return kms.import_key_material(KeyId=key_id, ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrap(p, material),
                                   ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")

def pkcs8(k):
    return k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

# RSA signing key with our own private key
local = rsa.generate_private_key(public_exponent=65537, key_size=2048)
k = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY", Origin="EXTERNAL")["KeyMetadata"]
assert k["KeyState"] == "PendingImport", k
expect_error("KMSInvalidStateException", kms.sign, KeyId=k["KeyId"], Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
import_into(k["KeyId"], pkcs8(local))
assert kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
pub = kms.get_public_key(KeyId=k["KeyId"])["PublicKey"]
assert pub == local.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
sig = kms.sign(KeyId=k["KeyId"], Message=b"imported", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")["Signature"]
local.public_key().verify(sig, b"imported", padding.PKCS1v15(), hashes.SHA256())

# ECC key; material of the wrong type is refused
local_ec = ec.generate_private_key(ec.SECP256R1())
e = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
expect_error("IncorrectKeyMaterialException", import_into, e, pkcs8(local))
expect_error("IncorrectKeyMaterialException", import_into, e, pkcs8(ec.generate_private_key(ec.SECP384R1())))
import_into(e, pkcs8(local_ec))
sig = kms.sign(KeyId=e, Message=b"ec", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
local_ec.public_key().verify(sig, b"ec", ec.ECDSA(hashes.SHA256()))

# HMAC key with our own secret
h = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC", Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
secret = os.urandom(32)
import_into(h, secret)
mac = kms.generate_mac(KeyId=h, Message=b"msg", MacAlgorithm="HMAC_SHA_256")["Mac"]
assert mac == hmac_mod.new(secret, b"msg", hashlib.sha256).digest()
print("OK")
"#
    );
    s.python_ok(&script, None);
}
