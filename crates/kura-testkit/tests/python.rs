//! The pinned Python clients, for real: the virtualenv builds (or is reused), boto3, moto and
//! the AWS Encryption SDK import, the AWS CLI runs, and both the CLI and boto3 (with the
//! Encryption SDK on top) do a KMS round trip against a moto server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kura_testkit::python::REQUIREMENTS;
use kura_testkit::{MotoServer, PythonEnv, python_env, with_aws_credentials};

/// The environment, or a failure that shows the whole message (never a skip).
fn env() -> PythonEnv {
    python_env().unwrap_or_else(|e| panic!("{e}"))
}

/// The version pinned for `pkg` in requirements.txt.
fn pinned(pkg: &str) -> &'static str {
    REQUIREMENTS
        .lines()
        .find_map(|l| l.strip_prefix(pkg)?.strip_prefix("=="))
        .unwrap_or_else(|| panic!("{pkg} is not pinned"))
        .trim()
}

/// Runs `cmd` (stdin from /dev/null) and returns its stdout; fails with its output if it
/// fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An AWS CLI command against moto, with moto's customary dummy credentials.
fn aws(env: &PythonEnv, moto: &MotoServer) -> Command {
    let mut c = env.command(env.aws_cli());
    with_aws_credentials(&mut c, "testing", "testing", "us-east-1");
    c.args(["--endpoint-url", &moto.endpoint(), "--output", "text"]);
    c
}

/// Standard base64 (with padding) decoded; the CLI prints blobs that way.
fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.trim().bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {s:?}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap());
        }
    }
    out
}

#[test]
fn clients_import_at_the_pinned_versions() {
    let env = env();
    assert!(env.python().is_file());
    assert!(env.aws_cli().is_file());
    assert!(env.moto_server().is_file());

    let out = run(env.command(env.python()).args([
        "-c",
        "import boto3, botocore, moto, aws_encryption_sdk; print(boto3.__version__)",
    ]));
    assert_eq!(out.trim(), pinned("boto3"));

    let out = run(env.command(env.python()).args([
        "-c",
        "import botocore, moto, aws_encryption_sdk, cryptography; \
         print(botocore.__version__, moto.__version__, aws_encryption_sdk.__version__, \
         cryptography.__version__)",
    ]));
    let expected = [
        pinned("botocore"),
        pinned("moto[server]"),
        pinned("aws-encryption-sdk"),
        pinned("cryptography"),
    ]
    .join(" ");
    assert_eq!(out.trim(), expected);

    // `aws --version` prints to stdout on current releases, to stderr on older ones.
    let out = env
        .command("aws")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "aws --version: {}", out.status);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("aws-cli/{} ", pinned("awscli"))),
        "aws --version: {text}"
    );
}

#[test]
fn the_environment_is_cached() {
    let first = env();
    let start = Instant::now();
    let second = python_env().unwrap();
    assert_eq!(first, second);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(first.root().join("ready").is_file());
    // The published name is a symlink to the build directory, in the target directory.
    let name = first
        .root()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let (published, _) = name.split_once(".build-").unwrap();
    let link = first.root().with_file_name(published);
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(link.canonicalize().unwrap(), first.root());
}

#[test]
fn aws_cli_kms_round_trip_against_moto() {
    let env = env();
    let moto = MotoServer::start(&env).unwrap_or_else(|e| panic!("{e}"));
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));

    let key_id = run(aws(&env, &moto).args([
        "kms",
        "create-key",
        "--description",
        "kura-testkit",
        "--query",
        "KeyMetadata.KeyId",
    ]));
    let key_id = key_id.trim();
    assert_eq!(key_id.len(), 36, "{key_id}");

    let dir = tempfile::tempdir().unwrap();
    let plaintext = b"kura round trip \x00\xff through the AWS CLI";
    let pt_file = dir.path().join("pt");
    std::fs::write(&pt_file, plaintext).unwrap();
    let blob = run(aws(&env, &moto)
        .args([
            "kms",
            "encrypt",
            "--key-id",
            key_id,
            "--query",
            "CiphertextBlob",
        ])
        .arg("--plaintext")
        .arg(format!("fileb://{}", pt_file.display())));
    let ciphertext = base64_decode(&blob);
    assert!(ciphertext.len() > plaintext.len());

    let ct_file = dir.path().join("ct");
    std::fs::write(&ct_file, &ciphertext).unwrap();
    let out = run(aws(&env, &moto)
        .args(["kms", "decrypt", "--query", "[KeyId, Plaintext]"])
        .arg("--ciphertext-blob")
        .arg(format!("fileb://{}", ct_file.display())));
    let mut fields = out.split_whitespace();
    let arn = fields.next().unwrap();
    assert!(arn.ends_with(&format!(":key/{key_id}")), "{out}");
    assert_eq!(base64_decode(fields.next().unwrap()), plaintext);

    // The server stops with its handle.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, moto.port()));
    drop(moto);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

const BOTO3_SCRIPT: &str = r#"
import sys
import boto3
import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy

endpoint = sys.argv[1]
kms = boto3.client("kms", endpoint_url=endpoint)
key = kms.create_key(Description="kura-testkit")["KeyMetadata"]
ctx = {"purpose": "test"}
ct = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"boto3 \x00\xff", EncryptionContext=ctx)
pt = kms.decrypt(CiphertextBlob=ct["CiphertextBlob"], EncryptionContext=ctx)
assert pt["Plaintext"] == b"boto3 \x00\xff", pt
assert pt["KeyId"] == key["Arn"], (pt["KeyId"], key["Arn"])
dk = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
assert len(dk["Plaintext"]) == 32
again = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])
assert again["Plaintext"] == dk["Plaintext"]

# The Encryption SDK makes its own clients: AWS_ENDPOINT_URL (set by the caller) sends them
# to moto too.
client = aws_encryption_sdk.EncryptionSDKClient(
    commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
)
provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[key["Arn"]])
message, _ = client.encrypt(source=b"envelope", key_provider=provider, encryption_context=ctx)
plain, header = client.decrypt(source=message, key_provider=provider)
assert plain == b"envelope"
assert header.encryption_context["purpose"] == "test"
print("ok", key["KeyId"])
"#;

#[test]
fn boto3_and_encryption_sdk_round_trip_against_moto() {
    let env = env();
    let moto = MotoServer::start(&env).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = env.command(env.python());
    with_aws_credentials(&mut cmd, "testing", "testing", "us-east-1");
    let out = run(cmd.env("AWS_ENDPOINT_URL", moto.endpoint()).args([
        "-c",
        BOTO3_SCRIPT,
        &moto.endpoint(),
    ]));
    assert!(
        out.starts_with("ok "),
        "{out}\nmoto said:\n{}",
        moto.output()
    );
}
