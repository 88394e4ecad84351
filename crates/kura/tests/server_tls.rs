#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura server --tls-cert --tls-key`: boto3 over HTTPS, verifying the server certificate
//! against the CA that signed it.

mod server;

use server::{PRELUDE, Server};

#[test]
fn boto3_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let certs = kura_testkit::tls::server_certificate(dir.path(), "kms").unwrap();
    let (cert, key) = (&certs.cert, &certs.key);
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
        "{PRELUDE}CA = {:?}\n{}",
        certs.ca.to_str().unwrap(),
        r#"
tls = boto3.client("kms", endpoint_url=os.environ["ENDPOINT"], verify=CA)
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
