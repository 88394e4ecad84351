#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Interoperability of `kura server`:
//!
//! - the AWS Encryption SDK for Python, with its KMS master key provider pointed at kura,
//!   encrypts and decrypts messages (also in a new process, with either key of a multi-key
//!   message, and across a rotation), and an envelope made the other way round (a kura data
//!   key wrapping an ESDK message through the SDK's raw-key path) opens again;
//! - kura's own formats never pass for KMS blobs and the other way round: a `kura encrypt`
//!   stream or a kura record envelope given to KMS Decrypt is InvalidCiphertextException,
//!   and a KMS CiphertextBlob given to `kura decrypt` is "not a kura stream".

mod server;

use std::path::Path;
use std::process::Output;

use base64::Engine;
use server::{PRELUDE, Server, kura, ok};

/// Runs `body` after the prelude, with the ESDK's KMS clients sent to the server (botocore
/// honours `AWS_ENDPOINT_URL_KMS`) and `WORK` naming a directory shared between runs.
fn esdk(s: &Server, work: &Path, body: &str) -> String {
    let script = format!("{PRELUDE}{ESDK_PRELUDE}{body}");
    let env = server::py();
    let mut c = env.command(env.python());
    kura_testkit::with_aws_credentials(&mut c, &s.access_key_id, &s.secret, server::REGION);
    c.env("ENDPOINT", &s.endpoint)
        .env("AWS_ENDPOINT_URL_KMS", &s.endpoint)
        .env("WORK", work)
        .arg("-c")
        .arg(script);
    let out = ok(&c.output().unwrap());
    assert!(out.contains("OK"), "{out}");
    out
}

const ESDK_PRELUDE: &str = r#"
import botocore.session
import aws_encryption_sdk
import aws_encryption_sdk.exceptions
import cryptography.exceptions
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import WrappingAlgorithm, EncryptionKeyType
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

WORK = os.environ["WORK"]
assert os.environ["AWS_ENDPOINT_URL_KMS"] == os.environ["ENDPOINT"]
esdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)

def provider(*arns):
    # A fresh botocore session: its KMS clients take the endpoint from AWS_ENDPOINT_URL_KMS.
    return aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=list(arns), botocore_session=botocore.session.Session())

class KuraDataKey(RawMasterKeyProvider):
    """The ESDK's raw-key path with a wrapping key that kura generated."""
    provider_id = "kura-data-key"
    def _get_raw_key(self, key_id):
        return WrappingKey(wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                           wrapping_key=self.wrapping_key, wrapping_key_type=EncryptionKeyType.SYMMETRIC)

def raw_provider(key):
    p = KuraDataKey()
    p.wrapping_key = key
    p.add_master_key(b"wrapping-key-1")
    return p

def save(name, data):
    with open(os.path.join(WORK, name), "wb") as f:
        f.write(data)

def load(name):
    with open(os.path.join(WORK, name), "rb") as f:
        return f.read()

def must_fail(f, *a, **k):
    # The ESDK's own errors (and a failed GCM tag, which it passes through) only: a bug in
    # this script must not pass for a refusal.
    try:
        f(*a, **k)
    except (aws_encryption_sdk.exceptions.AWSEncryptionSDKClientError, cryptography.exceptions.InvalidTag) as e:
        return e
    raise AssertionError("expected a failure")
"#;

/// First process: keys, messages made with the ESDK, and checks that kura made every
/// encrypted data key.
const ENCRYPT: &str = r#"
k1 = kms.create_key(Description="esdk one")["KeyMetadata"]["Arn"]
k2 = kms.create_key(Description="esdk two")["KeyMetadata"]["Arn"]
save("arns.json", json.dumps([k1, k2]).encode())
ctx = {"tenant": "acme", "purpose": "interop"}
plain = os.urandom(100_000)
save("plain.bin", plain)

ct, header = esdk.encrypt(source=plain, key_provider=provider(k1), encryption_context=ctx)
assert header.algorithm.is_committing(), header.algorithm
edks = list(header.encrypted_data_keys)
assert [e.key_provider.provider_id for e in edks] == ["aws-kms"], edks
assert edks[0].key_provider.key_info.decode() == k1
# The encrypted data key is a kura blob: kura's own Decrypt opens it with the message's
# context (which the ESDK extends with its signing key).
raw = kms.decrypt(CiphertextBlob=edks[0].encrypted_data_key, EncryptionContext=header.encryption_context)
assert raw["KeyId"] == k1 and len(raw["Plaintext"]) == 32, raw
assert edks[0].encrypted_data_key[:3] == b"KRK"
save("one.msg", ct)

back, dheader = esdk.decrypt(source=ct, key_provider=provider(k1))
assert back == plain
assert all(dheader.encryption_context[k] == v for k, v in ctx.items()), dheader.encryption_context

# A message for two kura keys (the second data key made with Encrypt).
ct2, header2 = esdk.encrypt(source=b"for either key", key_provider=provider(k1, k2), encryption_context=ctx)
assert sorted(e.key_provider.key_info.decode() for e in header2.encrypted_data_keys) == sorted([k1, k2])
save("two.msg", ct2)

# The other direction: a data key from kura's GenerateDataKey wraps an ESDK message through
# the SDK's raw-key path; only its KMS-encrypted copy is kept.
dk = kms.generate_data_key(KeyId=k2, KeySpec="AES_256", EncryptionContext={"use": "esdk-raw"})
rawp = raw_provider(dk["Plaintext"])
ct3, _ = esdk.encrypt(source=b"wrapped by a kura data key", key_provider=rawp, encryption_context=ctx)
save("raw.msg", ct3)
save("raw.key", dk["CiphertextBlob"])
print("OK")
"#;

/// Second process: a fresh ESDK client opens everything; either key opens the two-key
/// message; rotation and disabling behave.
const DECRYPT: &str = r#"
k1, k2 = json.loads(load("arns.json"))
ctx = {"tenant": "acme", "purpose": "interop"}
plain = load("plain.bin")
one, two = load("one.msg"), load("two.msg")

back, h = esdk.decrypt(source=one, key_provider=provider(k1))
assert back == plain and h.encryption_context["tenant"] == "acme"
# Strict: a provider for the other key cannot open a message made for k1 alone.
must_fail(esdk.decrypt, source=one, key_provider=provider(k2))
for p in (provider(k1), provider(k2), provider(k1, k2)):
    assert esdk.decrypt(source=two, key_provider=p)[0] == b"for either key"

# Tampering with the message is caught.
bad = bytearray(one); bad[-200] ^= 1
must_fail(esdk.decrypt, source=bytes(bad), key_provider=provider(k1))

# Rotating k1 changes nothing for existing messages; new ones use the new material.
before = kms.describe_key(KeyId=k1)["KeyMetadata"]["CurrentKeyMaterialId"]
kms.rotate_key_on_demand(KeyId=k1)
assert kms.describe_key(KeyId=k1)["KeyMetadata"]["CurrentKeyMaterialId"] != before
assert esdk.decrypt(source=one, key_provider=provider(k1))[0] == plain
fresh, _ = esdk.encrypt(source=b"after rotation", key_provider=provider(k1), encryption_context=ctx)
assert esdk.decrypt(source=fresh, key_provider=provider(k1))[0] == b"after rotation"

# With k2 disabled, the two-key message still opens through k1.
kms.disable_key(KeyId=k2)
must_fail(esdk.decrypt, source=two, key_provider=provider(k2))
assert esdk.decrypt(source=two, key_provider=provider(k1))[0] == b"for either key"
kms.enable_key(KeyId=k2)

# The kura-wrapped raw key: recover it with Decrypt, then the ESDK opens the message.
key = kms.decrypt(CiphertextBlob=load("raw.key"), EncryptionContext={"use": "esdk-raw"})["Plaintext"]
rawp = raw_provider(key)
back, h = esdk.decrypt(source=load("raw.msg"), key_provider=rawp)
assert back == b"wrapped by a kura data key" and h.encryption_context["purpose"] == "interop"
must_fail(esdk.decrypt, source=load("raw.msg"), key_provider=raw_provider(os.urandom(32)))
print("OK")
"#;

#[test]
fn aws_encryption_sdk_for_python_round_trips_through_kura() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    esdk(&s, work.path(), ENCRYPT);
    // A new process: nothing cached from the first one.
    esdk(&s, work.path(), DECRYPT);
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `aws kms decrypt` on the bytes of `file`: must fail with InvalidCiphertextException.
fn kms_refuses(s: &Server, file: &Path, what: &str) {
    let o = s.aws(&[
        "kms",
        "decrypt",
        "--ciphertext-blob",
        &format!("fileb://{}", file.display()),
    ]);
    assert!(!o.status.success(), "{what} decrypted as a KMS blob");
    assert!(
        stderr(&o).contains("InvalidCiphertextException"),
        "{what}: {}",
        stderr(&o)
    );
}

#[test]
fn kura_formats_and_kms_blobs_never_pass_for_each_other() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // A kura stream made by `kura encrypt` on the server's own keystore.
    let plain = w.join("plain.txt");
    std::fs::write(&plain, b"kura stream payload").unwrap();
    let stream = w.join("plain.krs");
    ok(&kura(&s.data_dir)
        .arg("encrypt")
        .arg(&plain)
        .arg("-o")
        .arg(&stream)
        .output()
        .unwrap());
    let bytes = std::fs::read(&stream).unwrap();
    assert_eq!(&bytes[..3], b"KRS");
    assert!(
        bytes.len() < 6144,
        "small enough that only the format is judged"
    );
    kms_refuses(&s, &stream, "a kura stream");
    // The stream still decrypts with kura.
    assert_eq!(
        ok(&kura(&s.data_dir)
            .arg("decrypt")
            .arg(&stream)
            .output()
            .unwrap()),
        "kura stream payload"
    );

    // A KMS CiphertextBlob given to `kura decrypt`.
    let key = s.aws_text(&["kms", "create-key", "--query", "KeyMetadata.KeyId"]);
    let blob_b64 = ok(&s.aws(&[
        "kms",
        "encrypt",
        "--key-id",
        key.trim(),
        "--plaintext",
        &format!("fileb://{}", plain.display()),
        "--query",
        "CiphertextBlob",
        "--output",
        "text",
    ]));
    let blob = base64::engine::general_purpose::STANDARD
        .decode(blob_b64.trim())
        .unwrap();
    assert_eq!(&blob[..3], b"KRK");
    let blob_file = w.join("kms.blob");
    std::fs::write(&blob_file, &blob).unwrap();
    let o = kura(&s.data_dir)
        .arg("decrypt")
        .arg(&blob_file)
        .output()
        .unwrap();
    assert!(!o.status.success(), "kura decrypted a KMS blob");
    assert!(o.stdout.is_empty(), "no plaintext on stdout");
    assert!(stderr(&o).contains("not a kura stream"), "{}", stderr(&o));
    // Through stdin too.
    let o = kura(&s.data_dir)
        .arg("decrypt")
        .stdin(std::fs::File::open(&blob_file).unwrap())
        .output()
        .unwrap();
    assert!(!o.status.success() && stderr(&o).contains("not a kura stream"));

    // kura record envelopes: a real one (the sealed key material the server keeps in its
    // keystore) and a fresh one with the same layout.
    let db = s.data_dir.join("keystore.db");
    let store = kura_store::SqliteKeystore::open_existing(&db).unwrap();
    let sealed = kura_store::ObjectStore::list(&store, "kms-material", "", None, 1).unwrap();
    let real = &sealed.first().expect("the key's material is stored").blob;
    assert_eq!(&real[..3], kura_format::envelope::MAGIC.as_slice());
    let real_file = w.join("material.kre");
    std::fs::write(&real_file, real).unwrap();
    kms_refuses(&s, &real_file, "a stored record envelope");

    let data_key = kura_crypto::Key256::generate().unwrap();
    let x = kura_crypto::XaesCommitting::new(&data_key).unwrap();
    let mut env = Vec::new();
    kura_format::envelope::seal(
        &x,
        1,
        &kura_format::EncryptionContext::new(),
        b"record",
        &mut env,
    )
    .unwrap();
    let env_file = w.join("record.kre");
    std::fs::write(&env_file, &env).unwrap();
    kms_refuses(&s, &env_file, "a record envelope");

    // The same through boto3, with and without a KeyId: never a different error, never the
    // key's plaintext.
    let script = format!(
        "{PRELUDE}{}",
        r#"
kid = sys.argv[1]
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=data)
    expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=data, KeyId=kid)
print("OK")
"#
    );
    let env = server::py();
    let mut c = env.command(env.python());
    kura_testkit::with_aws_credentials(&mut c, &s.access_key_id, &s.secret, server::REGION);
    c.env("ENDPOINT", &s.endpoint)
        .arg("-c")
        .arg(script)
        .arg(key.trim())
        .args([&stream, &real_file, &env_file]);
    let out = ok(&c.output().unwrap());
    assert!(out.contains("OK"), "{out}");
}
