#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura server` driven by the unmodified boto3 and AWS CLI: every operation, success and
//! error paths, with AWS's error types.

mod server;

use server::{PRELUDE, Server, ok};

#[test]
fn boto3_symmetric_keys_end_to_end() {
    let s = Server::start();
    let script = format!(
        "{PRELUDE}{}",
        r#"
k = kms.create_key(Description="orders", Tags=[{"TagKey": "team", "TagValue": "billing"}])["KeyMetadata"]
kid, arn = k["KeyId"], k["Arn"]
assert arn == f"arn:aws:kms:us-east-1:111122223333:key/{kid}", arn
assert k["KeyState"] == "Enabled" and k["KeySpec"] == "SYMMETRIC_DEFAULT" and k["Enabled"] is True
assert k["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
assert len(k["CurrentKeyMaterialId"]) == 64

# aliases, ARNs and ids are accepted wherever AWS accepts them
kms.create_alias(AliasName="alias/orders", TargetKeyId=kid)
expect_error("AlreadyExistsException", kms.create_alias, AliasName="alias/orders", TargetKeyId=kid)
expect_error("InvalidAliasNameException", kms.create_alias, AliasName="alias/aws/x", TargetKeyId=kid)
for ref in (kid, arn, "alias/orders", "arn:aws:kms:us-east-1:111122223333:alias/orders"):
    assert kms.describe_key(KeyId=ref)["KeyMetadata"]["KeyId"] == kid

ctx = {"tenant": "acme", "table": "orders"}
enc = kms.encrypt(KeyId="alias/orders", Plaintext=b"card 4111", EncryptionContext=ctx)
assert enc["KeyId"] == arn and enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
blob = enc["CiphertextBlob"]
dec = kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
assert dec["Plaintext"] == b"card 4111" and dec["KeyId"] == arn
assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx, KeyId=kid)["Plaintext"] == b"card 4111"
expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob, EncryptionContext={"tenant": "evil"})
expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob)
bad = bytearray(blob); bad[-1] ^= 1
expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=bytes(bad), EncryptionContext=ctx)
expect_error("InvalidCiphertextException", kms.decrypt, CiphertextBlob=b"not a kura blob at all")

other = kms.create_key()["KeyMetadata"]["KeyId"]
expect_error("IncorrectKeyException", kms.decrypt, CiphertextBlob=blob, EncryptionContext=ctx, KeyId=other)
re = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=ctx, DestinationKeyId=other)
assert re["SourceKeyId"] == arn and re["KeyId"].endswith(other)
assert kms.decrypt(CiphertextBlob=re["CiphertextBlob"])["Plaintext"] == b"card 4111"

dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext=ctx)
assert len(dk["Plaintext"]) == 32
assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
assert len(kms.generate_data_key(KeyId=kid, NumberOfBytes=64)["Plaintext"]) == 64
assert len(kms.generate_data_key(KeyId=kid, KeySpec="AES_128")["Plaintext"]) == 16
expect_error("ValidationException", kms.generate_data_key, KeyId=kid, KeySpec="AES_256", NumberOfBytes=32)
expect_error("ValidationException", kms.generate_data_key, KeyId=kid)
wo = kms.generate_data_key_without_plaintext(KeyId=kid, KeySpec="AES_256")
assert "Plaintext" not in wo and len(kms.decrypt(CiphertextBlob=wo["CiphertextBlob"])["Plaintext"]) == 32
assert len(kms.generate_random(NumberOfBytes=100)["Plaintext"]) == 100
expect_error("ValidationException", kms.generate_random, NumberOfBytes=2000)
expect_error("ValidationException", kms.encrypt, KeyId=kid, Plaintext=b"x" * 4097)

# tags, descriptions, policies
kms.tag_resource(KeyId=kid, Tags=[{"TagKey": "env", "TagValue": "prod"}])
tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=kid)["Tags"]}
assert tags == {"team": "billing", "env": "prod"}, tags
kms.untag_resource(KeyId=kid, TagKeys=["team"])
assert [t["TagKey"] for t in kms.list_resource_tags(KeyId=kid)["Tags"]] == ["env"]
expect_error("TagException", kms.tag_resource, KeyId=kid, Tags=[{"TagKey": "aws:x", "TagValue": "y"}])
kms.update_key_description(KeyId=kid, Description="orders v2")
assert kms.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == "orders v2"
assert kms.list_key_policies(KeyId=kid)["PolicyNames"] == ["default"]
pol = json.loads(kms.get_key_policy(KeyId=kid, PolicyName="default")["Policy"])
assert pol["Statement"][0]["Principal"]["AWS"] == "arn:aws:iam::111122223333:root"
expect_error("MalformedPolicyDocumentException", kms.put_key_policy, KeyId=kid, PolicyName="default", Policy="{not json")

# states: disabled, pending deletion, cancelled
kms.disable_key(KeyId=kid)
assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
expect_error("DisabledException", kms.encrypt, KeyId=kid, Plaintext=b"x")
expect_error("DisabledException", kms.decrypt, CiphertextBlob=blob, EncryptionContext=ctx)
kms.enable_key(KeyId=kid)
expect_error("ValidationException", kms.schedule_key_deletion, KeyId=kid, PendingWindowInDays=3)
d = kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
assert d["KeyState"] == "PendingDeletion" and d["PendingWindowInDays"] == 7
expect_error("KMSInvalidStateException", kms.encrypt, KeyId=kid, Plaintext=b"x")
expect_error("KMSInvalidStateException", kms.enable_key, KeyId=kid)
expect_error("KMSInvalidStateException", kms.schedule_key_deletion, KeyId=kid)
kms.cancel_key_deletion(KeyId=kid)
assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
expect_error("KMSInvalidStateException", kms.cancel_key_deletion, KeyId=kid)
kms.enable_key(KeyId=kid)
assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"card 4111"

# aliases move between keys of the same type, and list with paging
kms.update_alias(AliasName="alias/orders", TargetKeyId=other)
assert kms.describe_key(KeyId="alias/orders")["KeyMetadata"]["KeyId"] == other
kms.create_alias(AliasName="alias/second", TargetKeyId=kid)
names = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
assert names == ["alias/orders", "alias/second"], names
page = kms.list_aliases(Limit=1)
assert page["Truncated"] and len(page["Aliases"]) == 1
rest = kms.list_aliases(Limit=1, Marker=page["NextMarker"])
assert rest["Aliases"][0]["AliasName"] == "alias/second"
assert [a["AliasName"] for a in kms.list_aliases(KeyId=kid)["Aliases"]] == ["alias/second"]
kms.delete_alias(AliasName="alias/second")
expect_error("NotFoundException", kms.delete_alias, AliasName="alias/second")
expect_error("NotFoundException", kms.describe_key, KeyId="alias/nope")
expect_error("NotFoundException", kms.describe_key, KeyId="00000000-0000-0000-0000-000000000000")

# list keys with paging, through the paginator boto3 users reach for
for _ in range(3):
    kms.create_key()
ids = [k["KeyId"] for p in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2}) for k in p["Keys"]]
assert len(ids) == 5 and len(set(ids)) == 5 and kid in ids, ids

# HMAC keys
h = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
assert h["MacAlgorithms"] == ["HMAC_SHA_256"]
mac = kms.generate_mac(KeyId=h["KeyId"], Message=b"msg", MacAlgorithm="HMAC_SHA_256")["Mac"]
assert kms.verify_mac(KeyId=h["KeyId"], Message=b"msg", Mac=mac, MacAlgorithm="HMAC_SHA_256")["MacValid"] is True
expect_error("KMSInvalidMacException", kms.verify_mac, KeyId=h["KeyId"], Message=b"msg!", Mac=mac, MacAlgorithm="HMAC_SHA_256")
expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=h["KeyId"], Plaintext=b"x")
expect_error("InvalidKeyUsageException", kms.generate_mac, KeyId=kid, Message=b"m", MacAlgorithm="HMAC_SHA_256")
print("OK")
"#
    );
    s.python_ok(&script, None);
}

#[test]
fn aws_cli_round_trip_and_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let s = Server::start_in(&data);
    let key = s.aws_text(&[
        "kms",
        "create-key",
        "--description",
        "cli",
        "--query",
        "KeyMetadata.KeyId",
    ]);
    ok(&s.aws(&[
        "kms",
        "create-alias",
        "--alias-name",
        "alias/cli",
        "--target-key-id",
        &key,
    ]));
    let plain = dir.path().join("plain.bin");
    std::fs::write(&plain, b"\x00\x01secret bytes\xff").unwrap();
    let blob = ok(&s.aws(&[
        "kms",
        "encrypt",
        "--key-id",
        "alias/cli",
        "--plaintext",
        &format!("fileb://{}", plain.display()),
        "--encryption-context",
        "purpose=test",
        "--query",
        "CiphertextBlob",
        "--output",
        "text",
    ]));
    let ct = dir.path().join("ct.bin");
    use base64::Engine;
    std::fs::write(
        &ct,
        base64::engine::general_purpose::STANDARD
            .decode(blob.trim())
            .unwrap(),
    )
    .unwrap();
    let decrypt = |s: &Server| {
        let out = ok(&s.aws(&[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &format!("fileb://{}", ct.display()),
            "--encryption-context",
            "purpose=test",
            "--query",
            "Plaintext",
            "--output",
            "text",
        ]));
        base64::engine::general_purpose::STANDARD
            .decode(out.trim())
            .unwrap()
    };
    assert_eq!(decrypt(&s), b"\x00\x01secret bytes\xff");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}]}"#;
    ok(&s.aws(&[
        "kms",
        "put-key-policy",
        "--key-id",
        &key,
        "--policy-name",
        "default",
        "--policy",
        policy,
    ]));
    ok(&s.aws(&[
        "kms",
        "tag-resource",
        "--key-id",
        &key,
        "--tags",
        "TagKey=env,TagValue=prod",
    ]));
    let health = server::http_get(&s.endpoint, "/health");
    assert_eq!(health.trim(), "ok");
    let metrics = server::http_get(&s.endpoint, "/metrics");
    assert!(
        metrics.contains("kura_kms_requests_total{operation=\"Encrypt\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kura_kms_request_duration_seconds_count{operation=\"Decrypt\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kura_kms_keys{state=\"Enabled\"} 1"),
        "{metrics}"
    );
    // The key hierarchy's own metrics, with the background rotation's counters.
    for line in [
        "kura_encryption_initialized 1\n",
        "kura_encryption_data_keys{state=\"active\"} ",
        "kura_encryption_rotations_total 0\n",
        "kura_encryption_rotation_failures_total 0\n",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    assert_eq!(s.stop().code(), Some(0), "SIGTERM ends the server cleanly");

    // Keys, aliases and material survive a restart; the dev credentials are the same.
    let s = Server::start_in(&data);
    assert_eq!(decrypt(&s), b"\x00\x01secret bytes\xff");
    let desc = ok(&s.aws(&[
        "kms",
        "describe-key",
        "--key-id",
        "alias/cli",
        "--query",
        "KeyMetadata.Description",
        "--output",
        "text",
    ]));
    assert_eq!(desc.trim(), "cli");
    let got = ok(&s.aws(&[
        "kms",
        "get-key-policy",
        "--key-id",
        &key,
        "--policy-name",
        "default",
        "--query",
        "Policy",
        "--output",
        "text",
    ]));
    assert_eq!(got.trim(), policy, "the policy survives a restart");
    let tags = ok(&s.aws(&[
        "kms",
        "list-resource-tags",
        "--key-id",
        &key,
        "--query",
        "Tags[0].TagValue",
        "--output",
        "text",
    ]));
    assert_eq!(tags.trim(), "prod");
    let err = s.aws(&["kms", "describe-key", "--key-id", "alias/missing"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("NotFoundException"));
}

#[test]
fn dev_mode_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = server::kura(&dir.path().join("dev"))
        .args(["server", "--dev", "--data-dir"])
        .arg(dir.path().join("dev"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("loopback only"), "{err}");
}

#[test]
fn the_dev_banner_is_enough_for_the_aws_cli() {
    let s = Server::start();
    let names: Vec<&str> = s.exports.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_DEFAULT_REGION"
        ]
    );
    let env = server::py();
    let mut c = env.command(env.aws_cli());
    c.envs(s.exports.iter().map(|(k, v)| (k, v)));
    c.args([
        "--endpoint-url",
        &s.endpoint,
        "kms",
        "create-key",
        "--query",
        "KeyMetadata.KeyState",
        "--output",
        "text",
    ]);
    assert_eq!(ok(&c.output().unwrap()).trim(), "Enabled");
}

/// `/metrics` also carries the gauges of every kura-fs data root a `kura fs` command used
/// with the server's keystore, read while the server runs.
#[test]
fn metrics_include_registered_data_roots() {
    let s = Server::start();
    let root = s.data_dir.parent().unwrap().join("files");
    for (path, content) in [("a.txt", "one"), ("b/c.txt", "two")] {
        let mut put = server::kura(&s.data_dir)
            .args(["fs", "put", "--root"])
            .arg(&root)
            .arg(path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        put.stdin
            .take()
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        ok(&put.wait_with_output().unwrap());
    }
    let label = std::fs::canonicalize(&root).unwrap().display().to_string();
    let metrics = server::http_get(&s.endpoint, "/metrics");
    for line in [
        format!("kura_fs_root_up{{root=\"{label}\"}} 1"),
        format!("kura_fs_root_encrypted_files{{root=\"{label}\"}} 2"),
        "# TYPE kura_fs_root_dictionary_bytes gauge".to_string(),
    ] {
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
}
