#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura server --tls-cert --tls-key`: boto3 over HTTPS, verifying the server certificate.

mod server;

use std::process::Command;

use server::{PRELUDE, Server};

#[test]
fn boto3_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = Server::start_with(
        &dir.path().join("dev"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        s.endpoint.starts_with("https://127.0.0.1:"),
        "{}",
        s.endpoint
    );
    let script = format!(
        "{PRELUDE}CERT = {:?}\n{}",
        cert.to_str().unwrap(),
        r#"
tls = boto3.client("kms", endpoint_url=os.environ["ENDPOINT"], verify=CERT)
k = tls.create_key()["KeyMetadata"]["KeyId"]
blob = tls.encrypt(KeyId=k, Plaintext=b"over tls")["CiphertextBlob"]
assert tls.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"
import botocore.exceptions
try:
    boto3.client("kms", endpoint_url=os.environ["ENDPOINT"]).list_keys()
    raise AssertionError("an unknown certificate must be refused")
except botocore.exceptions.SSLError:
    pass
print("OK")
"#
    );
    s.python_ok(&script, None);
}
