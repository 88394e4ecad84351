#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Authentication and authorisation of `kura server`: every refusal with AWS's error.

mod server;

use server::{PRELUDE, Server, kura, ok};

/// Creates a user with `kura user create` while the server runs; returns its keys.
fn new_user(s: &Server, name: &str) -> (String, String) {
    let out = ok(&kura(&s.data_dir)
        .args(["user", "create", name, "--output", "json"])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["AccessKeyId"].as_str().unwrap().to_string(),
        v["SecretAccessKey"].as_str().unwrap().to_string(),
    )
}

#[test]
fn signatures_are_checked_as_aws_does() {
    let s = Server::start();
    let script = format!(
        "{PRELUDE}{}",
        r#"
import datetime, urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

kid = kms.create_key()["KeyMetadata"]["KeyId"]
ep = os.environ["ENDPOINT"]
creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])

def send(body, headers):
    req = urllib.request.Request(ep + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

def signed(body, creds=creds, region="us-east-1", when=None, tamper=None):
    r = AWSRequest(method="POST", url=ep + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.DescribeKey"})
    auth = SigV4Auth(creds, "kms", region)
    if when is not None:
        import botocore.auth
        real = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda *a, **k: when
        try:
            auth.add_auth(r)
        finally:
            botocore.auth.get_current_datetime = real
    else:
        auth.add_auth(r)
    h = dict(r.headers.items())
    return (tamper or body), h

body = json.dumps({"KeyId": kid}).encode()
st, v = send(*signed(body))
assert st == 200 and v["KeyMetadata"]["KeyId"] == kid, (st, v)

st, v = send(body, {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.DescribeKey"})
assert st == 400 and v["__type"] == "MissingAuthenticationTokenException", v
assert v["message"] == "Missing Authentication Token"

st, v = send(*signed(body, creds=Credentials(creds.access_key, "wrong" + creds.secret_key[5:])))
assert v["__type"] == "InvalidSignatureException", v
assert v["message"].startswith("The request signature we calculated does not match"), v

st, v = send(*signed(body, creds=Credentials("AKIAUNKNOWNUNKNOWN12", creds.secret_key)))
assert v["__type"] == "UnrecognizedClientException", v
assert v["message"] == "The security token included in the request is invalid.", v

other = json.dumps({"KeyId": kid, "GrantTokens": []}).encode()
st, v = send(*signed(body, tamper=other))
assert v["__type"] == "InvalidSignatureException", v

old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=6)
st, v = send(*signed(body, when=old))
assert v["__type"] == "InvalidSignatureException" and "Signature expired" in v["message"] and "5 min" in v["message"], v
future = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=6)
st, v = send(*signed(body, when=future))
assert v["__type"] == "InvalidSignatureException" and "not yet current" in v["message"], v

st, v = send(*signed(body, region="eu-west-1"))
assert v["__type"] == "InvalidSignatureException" and "region" in v["message"], v

h = signed(body)[1]
h["X-Amz-Target"] = "TrentService.NoSuchThing"
st, v = send(body, h)
assert st == 400 and v.get("__type") == "InvalidSignatureException", (st, v, h)   # the target header is signed
print("OK")
"#
    );
    s.python_ok(&script, None);
}

#[test]
fn key_policies_split_administrators_and_users() {
    let s = Server::start();
    let (admin_id, admin_secret) = new_user(&s, "alice");
    let (user_id, user_secret) = new_user(&s, "bob");
    let users = ok(&kura(&s.data_dir).args(["user", "list"]).output().unwrap());
    assert!(
        users.contains("alice") && users.contains("bob") && users.contains("dev"),
        "{users}"
    );

    // The dev user (account root by the default policy) writes the split policy.
    let setup = format!(
        "{PRELUDE}{}",
        r#"
policy = {
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Key administrators", "Effect": "Allow",
     "Principal": {"AWS": ["arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:user/dev"]},
     "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"],
     "Resource": "*"},
    {"Sid": "Key users", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"},
     "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
     "Resource": "*",
     "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "acme"}}}
  ]
}
k = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/split", TargetKeyId=k)
print(k)
"#
    );
    let key = ok(&s.python(&setup, None)).trim().to_string();

    let admin = format!(
        "{PRELUDE}KEY = {key:?}\n{}",
        r#"
kms.describe_key(KeyId=KEY)
kms.tag_resource(KeyId=KEY, Tags=[{"TagKey": "a", "TagValue": "b"}])
e = expect_error("AccessDeniedException", kms.encrypt, KeyId=KEY, Plaintext=b"x", EncryptionContext={"tenant": "acme"})
assert "arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:Encrypt" in str(e), e
kms.disable_key(KeyId=KEY)
kms.enable_key(KeyId=KEY)
print("OK")
"#
    );
    s.python_ok(&admin, Some((&admin_id, &admin_secret)));

    let user = format!(
        "{PRELUDE}KEY = {key:?}\n{}",
        r#"
ctx = {"tenant": "acme"}
blob = kms.encrypt(KeyId="alias/split", Plaintext=b"hello", EncryptionContext=ctx)["CiphertextBlob"]
assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"hello"
kms.generate_data_key(KeyId=KEY, KeySpec="AES_256", EncryptionContext=ctx)
expect_error("AccessDeniedException", kms.encrypt, KeyId=KEY, Plaintext=b"x", EncryptionContext={"tenant": "evil"})
expect_error("AccessDeniedException", kms.encrypt, KeyId=KEY, Plaintext=b"x")
expect_error("AccessDeniedException", kms.schedule_key_deletion, KeyId=KEY, PendingWindowInDays=7)
expect_error("AccessDeniedException", kms.put_key_policy, KeyId=KEY, PolicyName="default", Policy="{}")
expect_error("AccessDeniedException", kms.disable_key, KeyId=KEY)
print(blob.hex())
"#
    );
    let blob = ok(&s.python(&user, Some((&user_id, &user_secret))))
        .trim()
        .to_string();

    // The administrator disables the key and schedules it for deletion: the key user is
    // refused with the state errors, then the deleted user is refused outright.
    let states = format!(
        "{PRELUDE}KEY = {key:?}\nBLOB = bytes.fromhex({blob:?})\n{}",
        r#"
e = expect_error("AccessDeniedException", kms.decrypt, CiphertextBlob=BLOB, EncryptionContext={"tenant": "acme"})
assert "kms:Decrypt" in str(e), e
kms.disable_key(KeyId=KEY)
print("disabled")
"#
    );
    ok(&s.python(&states, Some((&admin_id, &admin_secret))));
    let refused = format!(
        "{PRELUDE}KEY = {key:?}\nBLOB = bytes.fromhex({blob:?})\n{}",
        r#"
expect_error("DisabledException", kms.decrypt, CiphertextBlob=BLOB, EncryptionContext={"tenant": "acme"})
print("OK")
"#
    );
    s.python_ok(&refused, Some((&user_id, &user_secret)));
    let pending = format!(
        "{PRELUDE}KEY = {key:?}\n{}",
        r#"
kms.enable_key(KeyId=KEY)
kms.schedule_key_deletion(KeyId=KEY, PendingWindowInDays=7)
print("OK")
"#
    );
    ok(&s.python(&pending, Some((&admin_id, &admin_secret))));
    let refused = format!(
        "{PRELUDE}KEY = {key:?}\nBLOB = bytes.fromhex({blob:?})\n{}",
        r#"
expect_error("KMSInvalidStateException", kms.decrypt, CiphertextBlob=BLOB, EncryptionContext={"tenant": "acme"})
print("OK")
"#
    );
    s.python_ok(&refused, Some((&user_id, &user_secret)));

    ok(&kura(&s.data_dir)
        .args(["user", "delete", "bob"])
        .output()
        .unwrap());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let gone = format!(
        "{PRELUDE}{}",
        r#"
expect_error("UnrecognizedClientException", kms.list_keys)
print("OK")
"#
    );
    s.python_ok(&gone, Some((&user_id, &user_secret)));
}
