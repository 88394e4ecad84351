#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Key rotation through the unmodified boto3 and AWS CLI: automatic-rotation settings,
//! on-demand rotation with its limit, ListKeyRotations with paging, and every ciphertext
//! decrypting across rotations and across a server restart.

mod server;

use server::{PRELUDE, Server, ok};

#[test]
fn boto3_rotation_settings_and_errors() {
    let s = Server::start();
    let script = format!(
        "{PRELUDE}{}",
        r#"
from botocore.config import Config
# botocore checks minimums itself; this client lets the server judge them.
raw = boto3.client("kms", endpoint_url=os.environ["ENDPOINT"], config=Config(parameter_validation=False))

kid = kms.create_key()["KeyMetadata"]["KeyId"]
st = kms.get_key_rotation_status(KeyId=kid)
assert st["KeyRotationEnabled"] is False and st["KeyId"] == kid, st
assert "NextRotationDate" not in st and "RotationPeriodInDays" not in st, st

kms.enable_key_rotation(KeyId=kid)
st = kms.get_key_rotation_status(KeyId=kid)
assert st["KeyRotationEnabled"] is True and st["RotationPeriodInDays"] == 365, st
created = kms.describe_key(KeyId=kid)["KeyMetadata"]["CreationDate"]
days = (st["NextRotationDate"] - created).total_seconds() / 86400
assert 364.9 < days < 365.1, days

kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
st = kms.get_key_rotation_status(KeyId=kid)
assert st["RotationPeriodInDays"] == 90, st
days = (st["NextRotationDate"] - created).total_seconds() / 86400
assert 89.9 < days < 90.1, days
kms.enable_key_rotation(KeyId=f"arn:aws:kms:us-east-1:111122223333:key/{kid}", RotationPeriodInDays=2560)
assert kms.get_key_rotation_status(KeyId=kid)["RotationPeriodInDays"] == 2560

e = expect_error("ValidationException", kms.enable_key_rotation, KeyId=kid, RotationPeriodInDays=2561)
assert "rotationPeriodInDays" in str(e), e
expect_error("ValidationException", raw.enable_key_rotation, KeyId=kid, RotationPeriodInDays=89)
expect_error("ValidationException", raw.enable_key_rotation, KeyId=kid, RotationPeriodInDays=0)
expect_error("ValidationException", raw.list_key_rotations, KeyId=kid, Limit=0)
expect_error("ValidationException", kms.list_key_rotations, KeyId=kid, Limit=1001)
expect_error("ValidationException", kms.list_key_rotations, KeyId=kid, IncludeKeyMaterial="SOME")
expect_error("InvalidMarkerException", kms.list_key_rotations, KeyId=kid, Marker="x")

kms.disable_key_rotation(KeyId=kid)
st = kms.get_key_rotation_status(KeyId=kid)
assert st["KeyRotationEnabled"] is False and "NextRotationDate" not in st, st

# Only symmetric encryption keys with material kura made rotate.
h = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
for f in (kms.enable_key_rotation, kms.disable_key_rotation, kms.get_key_rotation_status,
          kms.rotate_key_on_demand, kms.list_key_rotations):
    expect_error("UnsupportedOperationException", f, KeyId=h)
ext = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
for f in (kms.enable_key_rotation, kms.disable_key_rotation, kms.get_key_rotation_status):
    expect_error("UnsupportedOperationException", f, KeyId=ext)

# Key states: Disabled → DisabledException, PendingDeletion → KMSInvalidStateException.
kms.disable_key(KeyId=kid)
for f in (kms.enable_key_rotation, kms.disable_key_rotation, kms.rotate_key_on_demand):
    expect_error("DisabledException", f, KeyId=kid)
assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is False
kms.enable_key(KeyId=kid)
kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
for f in (kms.enable_key_rotation, kms.disable_key_rotation, kms.rotate_key_on_demand):
    expect_error("KMSInvalidStateException", f, KeyId=kid)
kms.get_key_rotation_status(KeyId=kid)
kms.list_key_rotations(KeyId=kid)
kms.cancel_key_deletion(KeyId=kid)

# Aliases are not accepted (key id or ARN only); unknown keys are NotFound.
kms.create_alias(AliasName="alias/rot", TargetKeyId=kid)
expect_error("NotFoundException", kms.get_key_rotation_status, KeyId="alias/rot")
expect_error("NotFoundException", kms.enable_key_rotation, KeyId="00000000-0000-0000-0000-000000000000")
print("OK")
"#
    );
    s.python_ok(&script, None);

    // The AWS CLI reads the same answers.
    let kid = &s.aws_text(&["kms", "create-key", "--query", "KeyMetadata.KeyId"]);
    ok(&s.aws(&[
        "kms",
        "enable-key-rotation",
        "--key-id",
        kid,
        "--rotation-period-in-days",
        "180",
    ]));
    let period = ok(&s.aws(&[
        "kms",
        "get-key-rotation-status",
        "--key-id",
        kid,
        "--query",
        "RotationPeriodInDays",
        "--output",
        "text",
    ]));
    assert_eq!(period.trim(), "180");
    ok(&s.aws(&["kms", "rotate-key-on-demand", "--key-id", kid]));
    let kinds = ok(&s.aws(&[
        "kms",
        "list-key-rotations",
        "--key-id",
        kid,
        "--query",
        "Rotations[].RotationType",
        "--output",
        "text",
    ]));
    assert_eq!(kinds.trim(), "ON_DEMAND");
}

/// Makes blobs, rotates on demand three times in between, and leaves `state.json` for the
/// script after the restart.
const ROTATE_AND_RECORD: &str = r#"
from botocore.config import Config
kid = kms.create_key(Description="rotating")["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/rotating", TargetKeyId=kid)
ctx = {"purpose": "rotation"}
materials = [kms.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"]]
blobs = []
for i in range(4):
    blobs.append((kms.encrypt(KeyId="alias/rotating", Plaintext=f"msg {i}".encode(), EncryptionContext=ctx)["CiphertextBlob"], f"msg {i}"))
    dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext=ctx)
    blobs.append((dk["CiphertextBlob"], dk["Plaintext"].decode("latin-1")))
    if i < 3:
        r = kms.rotate_key_on_demand(KeyId=kid)
        assert r["KeyId"] == kid, r
        m = kms.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"]
        assert len(m) == 64 and m not in materials, (m, materials)
        materials.append(m)

# Every blob, before and after each rotation, decrypts; each names its own material.
for blob, want in blobs:
    got = kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"].decode("latin-1")
    assert got == want
# ReEncrypt moves an old blob onto the current material.
re = kms.re_encrypt(CiphertextBlob=blobs[0][0], SourceEncryptionContext=ctx, DestinationKeyId=kid,
                    DestinationEncryptionContext=ctx)["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=re, EncryptionContext=ctx)["Plaintext"] == b"msg 0"

rot = kms.list_key_rotations(KeyId=kid)
assert rot["Truncated"] is False and "NextMarker" not in rot, rot
rs = rot["Rotations"]
assert [r["RotationType"] for r in rs] == ["ON_DEMAND"] * 3, rs
assert [r["KeyMaterialId"] for r in rs] == materials[1:], (rs, materials)
assert [r["KeyMaterialState"] for r in rs] == ["NON_CURRENT", "NON_CURRENT", "CURRENT"], rs
assert all(r["KeyId"] == kid and r["RotationDate"].year >= 2024 for r in rs), rs
every = kms.list_key_rotations(KeyId=kid, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
assert [r["KeyMaterialId"] for r in every] == materials, every
assert "RotationType" not in every[0] and every[0]["KeyMaterialState"] == "NON_CURRENT", every[0]
only = kms.list_key_rotations(KeyId=kid, IncludeKeyMaterial="ROTATIONS_ONLY")["Rotations"]
assert only == rs

# Paging with Limit=1, by hand and through the paginator.
seen, marker = [], None
while True:
    page = kms.list_key_rotations(KeyId=kid, Limit=1, IncludeKeyMaterial="ALL_KEY_MATERIAL", **({"Marker": marker} if marker else {}))
    assert len(page["Rotations"]) == 1, page
    seen += [r["KeyMaterialId"] for r in page["Rotations"]]
    if not page["Truncated"]:
        assert "NextMarker" not in page
        break
    marker = page["NextMarker"]
assert seen == materials, seen
paged = [r["KeyMaterialId"] for p in kms.get_paginator("list_key_rotations").paginate(KeyId=kid, PaginationConfig={"PageSize": 1}) for r in p["Rotations"]]
assert paged == materials[1:], paged

# Automatic rotation is independent of on-demand rotation.
kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
st = kms.get_key_rotation_status(KeyId=kid)
assert st["KeyRotationEnabled"] and st["RotationPeriodInDays"] == 90, st

# The 26th on-demand rotation is refused (LimitExceeded is retried by the SDKs: ask once).
once = boto3.client("kms", endpoint_url=os.environ["ENDPOINT"], config=Config(retries={"total_max_attempts": 1}))
capped = kms.create_key()["KeyMetadata"]["KeyId"]
capped_blobs = []
for i in range(25):
    once.rotate_key_on_demand(KeyId=capped)
    capped_blobs.append(kms.encrypt(KeyId=capped, Plaintext=str(i).encode())["CiphertextBlob"])
e = expect_error("LimitExceededException", once.rotate_key_on_demand, KeyId=capped)
assert len(kms.list_key_rotations(KeyId=capped)["Rotations"]) == 25
for i, b in enumerate(capped_blobs):
    assert kms.decrypt(CiphertextBlob=b)["Plaintext"] == str(i).encode()

with open(os.environ["STATE"], "w") as f:
    json.dump({"kid": kid, "capped": capped, "materials": materials,
               "blobs": [(base64.b64encode(b).decode(), w) for b, w in blobs],
               "capped_blobs": [base64.b64encode(b).decode() for b in capped_blobs]}, f)
print("OK")
"#;

/// After the restart: everything still decrypts and the rotation history is intact.
const CHECK_AFTER_RESTART: &str = r#"
state = json.load(open(os.environ["STATE"]))
kid, ctx = state["kid"], {"purpose": "rotation"}
for blob, want in state["blobs"]:
    got = kms.decrypt(CiphertextBlob=base64.b64decode(blob), EncryptionContext=ctx)["Plaintext"].decode("latin-1")
    assert got == want
for i, b in enumerate(state["capped_blobs"]):
    assert kms.decrypt(CiphertextBlob=base64.b64decode(b))["Plaintext"] == str(i).encode()
assert kms.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"] == state["materials"][-1]
every = kms.list_key_rotations(KeyId=kid, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
assert [r["KeyMaterialId"] for r in every] == state["materials"], every
st = kms.get_key_rotation_status(KeyId=kid)
assert st["KeyRotationEnabled"] and st["RotationPeriodInDays"] == 90, st
expect_error("LimitExceededException", boto3.client("kms", endpoint_url=os.environ["ENDPOINT"],
             config=botocore.config.Config(retries={"total_max_attempts": 1})).rotate_key_on_demand, KeyId=state["capped"])
# A new rotation after the restart still works and keeps the old blobs readable.
kms.rotate_key_on_demand(KeyId=kid)
assert kms.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"] not in state["materials"]
blob, want = state["blobs"][0]
assert kms.decrypt(CiphertextBlob=base64.b64decode(blob), EncryptionContext=ctx)["Plaintext"].decode() == want
print("OK")
"#;

#[test]
fn boto3_on_demand_rotation_keeps_every_blob_decrypting_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let state = dir.path().join("state.json");
    let run = |s: &Server, body: &str| {
        let script = format!("{PRELUDE}import botocore.config\n{body}");
        let env = server::py();
        let mut c = env.command(env.python());
        kura_testkit::with_aws_credentials(&mut c, &s.access_key_id, &s.secret, server::REGION);
        c.env("ENDPOINT", &s.endpoint)
            .env("STATE", &state)
            .arg("-c")
            .arg(script);
        let out = ok(&c.output().unwrap());
        assert!(out.contains("OK"), "{out}");
    };
    let s = Server::start_in(&data);
    run(&s, ROTATE_AND_RECORD);
    assert_eq!(s.stop().code(), Some(0), "SIGTERM ends the server cleanly");
    let s = Server::start_in(&data);
    run(&s, CHECK_AFTER_RESTART);
    assert_eq!(s.stop().code(), Some(0));
}
