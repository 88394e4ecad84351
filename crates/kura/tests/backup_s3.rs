#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura backup --out s3://…` and `kura restore s3://…` against moto in server mode: the
//! object is stored with the requested server-side encryption (as moto records it, seen
//! through boto3's `head_object`), restores, and failures name bucket, key and endpoint.

mod common;

use std::process::Command as StdCommand;

use common::Sandbox;
use kura_testkit::{MotoServer, PythonEnv, free_port, python_env, with_aws_credentials};

const REGION: &str = "us-east-1";
const BUCKET: &str = "kura-backups";

fn py() -> PythonEnv {
    python_env().unwrap_or_else(|e| panic!("the Python test environment (moto) is required: {e}"))
}

/// Runs a boto3 script against `endpoint`; its stdout, trimmed.
fn boto3(env: &PythonEnv, endpoint: &str, script: &str) -> String {
    let mut c: StdCommand = env.command(env.python());
    with_aws_credentials(&mut c, "testing", "testing", REGION);
    c.env("ENDPOINT", endpoint).arg("-c").arg(format!(
        "import os, boto3\nE = os.environ['ENDPOINT']\ns3 = boto3.client('s3', endpoint_url=E)\n\
         kms = boto3.client('kms', endpoint_url=E)\n{script}"
    ));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `kura --data-dir data --master-key-file KEY ARGS` with moto's credentials and region.
fn kura(sb: &Sandbox, key: &std::path::Path, args: &[&str]) -> common::Run {
    let mut c = sb.keyed(key);
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .args(args);
    sb.exec(&mut c)
}

#[test]
fn backup_to_s3_with_sse_kms_and_restore_from_it() {
    let env = py();
    let moto = MotoServer::start(&env).unwrap_or_else(|e| panic!("{e}"));
    let ep = moto.endpoint();
    let kid = boto3(
        &env,
        &ep,
        &format!(
            "s3.create_bucket(Bucket='{BUCKET}')\nprint(kms.create_key()['KeyMetadata']['KeyId'])"
        ),
    );
    let (sb, key) = Sandbox::initialised();
    let ct = sb
        .kura_stdin(&key, &["encrypt", "--context", "t=s3"], b"backed up to s3")
        .ok()
        .stdout;
    let url = format!("s3://{BUCKET}/nightly/keystore.krb");
    let out = kura(
        &sb,
        &key,
        &[
            "--output",
            "json",
            "backup",
            "--out",
            &url,
            "--s3-sse",
            "aws:kms",
            "--s3-sse-kms-key-id",
            &kid,
            "--s3-endpoint",
            &ep,
        ],
    )
    .ok()
    .json();
    assert_eq!(out["location"], url.as_str());
    assert_eq!(out["server_side_encryption"], "aws:kms");

    let head = boto3(
        &env,
        &ep,
        &format!(
            "h = s3.head_object(Bucket='{BUCKET}', Key='nightly/keystore.krb')\n\
             print(h.get('ServerSideEncryption'), h.get('SSEKMSKeyId'), h['ContentLength'])"
        ),
    );
    let parts: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(parts[0], "aws:kms", "{head}");
    assert!(parts[1].contains(&kid), "the KMS key is recorded: {head}");
    assert_eq!(parts[2], out["bytes"].to_string());

    // No silent overwrite.
    kura(&sb, &key, &["backup", "--out", &url, "--s3-endpoint", &ep]).fails_with(&[
        &url,
        "already exists",
        "--force",
    ]);

    std::fs::remove_dir_all(sb.data_dir()).unwrap();
    let run = kura(&sb, &key, &["restore", &url, "--s3-endpoint", &ep]).ok();
    assert!(run.stdout_str().contains(&url), "{}", run.stdout_str());
    let back = sb
        .kura_stdin(&key, &["decrypt", "--context", "t=s3"], &ct)
        .ok()
        .stdout;
    assert_eq!(back, b"backed up to s3");

    // SSE-S3, replacing with --force.
    kura(
        &sb,
        &key,
        &[
            "backup",
            "--out",
            &url,
            "--force",
            "--s3-sse",
            "AES256",
            "--s3-endpoint",
            &ep,
        ],
    )
    .ok();
    let sse = boto3(
        &env,
        &ep,
        &format!(
            "print(s3.head_object(Bucket='{BUCKET}', Key='nightly/keystore.krb').get('ServerSideEncryption'))"
        ),
    );
    assert_eq!(sse, "AES256");
}

#[test]
fn s3_failures_name_the_bucket_the_key_and_the_endpoint() {
    let env = py();
    let moto = MotoServer::start(&env).unwrap_or_else(|e| panic!("{e}"));
    let ep = moto.endpoint();
    boto3(&env, &ep, &format!("s3.create_bucket(Bucket='{BUCKET}')"));
    let (sb, key) = Sandbox::initialised();

    kura(
        &sb,
        &key,
        &[
            "backup",
            "--out",
            "s3://no-such-bucket/k.krb",
            "--s3-endpoint",
            &ep,
        ],
    )
    .fails_with(&["the bucket no-such-bucket does not exist", &ep]);

    kura(
        &sb,
        &key,
        &[
            "restore",
            &format!("s3://{BUCKET}/missing.krb"),
            "--s3-endpoint",
            &ep,
        ],
    )
    .fails_with(&[
        &format!("there is no backup at s3://{BUCKET}/missing.krb"),
        &ep,
    ]);

    let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
    kura(
        &sb,
        &key,
        &[
            "backup",
            "--out",
            &format!("s3://{BUCKET}/k.krb"),
            "--s3-endpoint",
            &dead,
        ],
    )
    .fails_with(&["cannot reach", &dead, &format!("s3://{BUCKET}/k.krb")]);

    // No region anywhere.
    let mut c = sb.keyed(&key);
    c.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .args(["backup", "--out", "s3://b/k", "--s3-endpoint", &ep]);
    sb.exec(&mut c)
        .fails_with(&["no region for s3://b/k", "--s3-region"]);

    // Options that make no sense for files, and a location without a key.
    sb.kura(&key, &["backup", "--out", "f.krb", "--s3-sse", "AES256"])
        .fails_with(&["--s3-sse", "s3:// locations only"]);
    sb.kura(&key, &["backup", "--out", "s3://bucket-only"])
        .fails_with(&["s3://BUCKET/KEY"]);
    sb.kura(
        &key,
        &["backup", "--out", "s3://b/k", "--s3-sse-kms-key-id", "x"],
    )
    .fails_with(&["--s3-sse aws:kms"]);
}

/// A moto server that checks credentials (IAM) after its first requests: what it takes
/// for S3 to deny access. Killed on drop.
struct AuthMoto {
    child: std::process::Child,
    endpoint: String,
}

impl AuthMoto {
    /// Starts moto with `INITIAL_NO_AUTH_ACTION_COUNT=4`: the first three requests (making
    /// a bucket, a user and its access key) need no credentials, every later one does.
    fn start(env: &PythonEnv) -> Self {
        let port = free_port().unwrap();
        let child = env
            .command(env.moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server: {e}"));
        let m = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // `/moto-api/` is moto's own page, not an AWS action: it does not count.
        while !matches!(kura_testkit::http_get(port, "/moto-api/"), Ok((200, _))) {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not answer on {}",
                m.endpoint
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        m
    }
}

impl Drop for AuthMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn access_denied_names_the_object_and_what_to_check() {
    let env = py();
    let moto = AuthMoto::start(&env);
    let ep = &moto.endpoint;
    let creds = boto3(
        &env,
        ep,
        &format!(
            "s3.create_bucket(Bucket='{BUCKET}')\n\
             iam = boto3.client('iam', endpoint_url=E)\n\
             iam.create_user(UserName='nobody')\n\
             k = iam.create_access_key(UserName='nobody')['AccessKey']\n\
             print(k['AccessKeyId'], k['SecretAccessKey'])"
        ),
    );
    let (akid, secret) = creds.split_once(' ').unwrap();
    let (sb, key) = Sandbox::initialised();
    let url = format!("s3://{BUCKET}/denied.krb");
    let run = |args: &[&str]| {
        let mut c = sb.keyed(&key);
        c.env("AWS_ACCESS_KEY_ID", akid)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", REGION)
            .args(args);
        sb.exec(&mut c)
    };
    // A user without a policy.
    run(&["backup", "--out", &url, "--s3-endpoint", ep]).fails_with(&[
        &format!("access to {url} was denied at endpoint {ep}"),
        "AccessDenied",
        "s3:PutObject",
    ]);
    run(&["restore", &url, "--s3-endpoint", ep])
        .fails_with(&[&format!("access to {url} was denied"), "s3:GetObject"]);
}
