//! Policies as users write them, evaluated end to end.

use std::collections::BTreeMap;

use super::*;

mod conditions;
mod keys;
mod malformed;

const ACCT: &str = "111122223333";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";
const CAROL: &str = "arn:aws:iam::111122223333:user/carol";
const MALLORY: &str = "arn:aws:iam::444455556666:user/mallory";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

static NO_CONTEXT: BTreeMap<String, String> = BTreeMap::new();

const DEFAULT: &str = r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

/// The console's policy for administrator alice and key user bob, without the statement
/// that enables IAM policies (the account root).
const CONSOLE: &str = r#"{
  "Id": "key-consolepolicy-3",
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Allow access for Key Administrators",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
      "Action": [
        "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
        "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
        "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"
      ],
      "Resource": "*"
    },
    {
      "Sid": "Allow use of the key",
      "Effect": "Allow",
      "Principal": {"AWS": ["arn:aws:iam::111122223333:user/bob"]},
      "Action": [
        "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey",
        "kms:Sign", "kms:Verify", "kms:GetPublicKey"
      ],
      "Resource": "*"
    },
    {
      "Sid": "Allow attachment of persistent resources",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"},
      "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
      "Resource": "*",
      "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    }
  ]
}"#;

fn policy(doc: &str) -> Policy {
    match Policy::parse(doc) {
        Ok(p) => p,
        Err(e) => panic!("{doc} did not parse: {e}"),
    }
}

fn req<'a>(
    principal: &'a str,
    action: &'a str,
    ctx: &'a BTreeMap<String, String>,
    extra: &'a [(&'a str, &'a str)],
) -> Access<'a> {
    Access {
        principal,
        account: ACCT,
        action,
        resource: KEY,
        encryption_context: ctx,
        extra,
    }
}

/// Bob's CreateGrant with `kms:GrantIsForAWSResource` set to `value`.
fn grant_for_aws_resource(p: &Policy, value: &str) -> Decision {
    decide_extra(
        p,
        BOB,
        "kms:CreateGrant",
        &[("kms:GrantIsForAWSResource", value)],
    )
}

/// The decision for a request with no encryption context and no extra keys.
fn decide(p: &Policy, principal: &str, action: &str) -> Decision {
    p.evaluate(&req(principal, action, &NO_CONTEXT, &[]))
}

fn decide_ctx(p: &Policy, principal: &str, action: &str, ctx: &[(&str, &str)]) -> Decision {
    let ctx: BTreeMap<String, String> = ctx
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    p.evaluate(&req(principal, action, &ctx, &[]))
}

fn decide_extra(p: &Policy, principal: &str, action: &str, extra: &[(&str, &str)]) -> Decision {
    p.evaluate(&req(principal, action, &NO_CONTEXT, extra))
}

/// A one-statement policy allowing anyone of the account `action`s with `condition`.
fn allow_if(action: &str, condition: &str) -> Policy {
    policy(&format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{{"AWS":"{ACCT}"}},
        "Action":"{action}","Resource":"*","Condition":{condition}}}}}"#
    ))
}

fn malformed(doc: &str) -> String {
    match Policy::parse(doc) {
        Ok(p) => panic!("{doc} parsed as {p:?}"),
        Err(e) => {
            assert_eq!(e.kind, Kind::MalformedPolicyDocument, "{e}");
            e.message
        }
    }
}

use Decision::{Allow, ExplicitDeny, ImplicitDeny};

// --- the default policy ---------------------------------------------------------------

#[test]
fn default_policy_allows_every_user_of_the_account_every_kms_action() {
    let p = policy(DEFAULT);
    for who in [
        ALICE,
        BOB,
        "arn:aws:iam::111122223333:user/path/to/dave",
        "arn:aws:iam::111122223333:root",
    ] {
        for action in [
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:PutKeyPolicy",
            "kms:ScheduleKeyDeletion",
            "kms:CreateGrant",
        ] {
            assert_eq!(decide(&p, who, action), Allow, "{who} {action}");
        }
    }
}

#[test]
fn default_policy_denies_other_accounts_and_other_services() {
    let p = policy(DEFAULT);
    assert_eq!(decide(&p, MALLORY, "kms:Decrypt"), ImplicitDeny);
    assert_eq!(
        decide(&p, "arn:aws:iam::111122223334:user/alice", "kms:Encrypt"),
        ImplicitDeny
    );
    assert_eq!(decide(&p, ALICE, "s3:GetObject"), ImplicitDeny);
    // A principal that is not an ARN belongs to no account.
    assert_eq!(decide(&p, "alice", "kms:Encrypt"), ImplicitDeny);
    assert_eq!(decide(&p, "", "kms:Encrypt"), ImplicitDeny);
}

#[test]
fn bare_account_id_principal_means_the_whole_account() {
    let p = policy(
        r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}]}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    assert_eq!(decide(&p, MALLORY, "kms:Encrypt"), ImplicitDeny);
}

// --- key administrators and key users ------------------------------------------------

#[test]
fn key_administrator_manages_but_cannot_use_the_key() {
    let p = policy(CONSOLE);
    for action in [
        "kms:CreateAlias",
        "kms:DescribeKey",
        "kms:EnableKey",
        "kms:EnableKeyRotation",
        "kms:ListResourceTags",
        "kms:PutKeyPolicy",
        "kms:UpdateKeyDescription",
        "kms:RevokeGrant",
        "kms:DisableKey",
        "kms:GetKeyPolicy",
        "kms:DeleteAlias",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
    ] {
        assert_eq!(decide(&p, ALICE, action), Allow, "{action}");
    }
    for action in [
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "kms:ReEncryptFrom",
        "kms:Sign",
    ] {
        assert_eq!(decide(&p, ALICE, action), ImplicitDeny, "{action}");
    }
}

#[test]
fn key_user_uses_but_cannot_manage_the_key() {
    let p = policy(CONSOLE);
    for action in [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:GenerateDataKeyPair",
        "kms:DescribeKey",
        "kms:Sign",
        "kms:Verify",
        "kms:GetPublicKey",
    ] {
        assert_eq!(decide(&p, BOB, action), Allow, "{action}");
    }
    for action in [
        "kms:ScheduleKeyDeletion",
        "kms:PutKeyPolicy",
        "kms:DisableKey",
        "kms:DeleteImportedKeyMaterial",
        "kms:CreateAlias",
    ] {
        assert_eq!(decide(&p, BOB, action), ImplicitDeny, "{action}");
    }
}

#[test]
fn grants_for_aws_resources_need_the_bool_condition() {
    let p = policy(CONSOLE);
    assert_eq!(decide(&p, BOB, "kms:CreateGrant"), ImplicitDeny);
    assert_eq!(grant_for_aws_resource(&p, "true"), Allow);
    assert_eq!(grant_for_aws_resource(&p, "false"), ImplicitDeny);
    // Alice has CreateGrant through kms:Create* regardless.
    assert_eq!(decide(&p, ALICE, "kms:CreateGrant"), Allow);
}

#[test]
fn users_the_policy_does_not_name_get_nothing() {
    let p = policy(CONSOLE);
    for action in ["kms:Encrypt", "kms:DescribeKey", "kms:PutKeyPolicy"] {
        assert_eq!(decide(&p, CAROL, action), ImplicitDeny);
        assert_eq!(decide(&p, MALLORY, action), ImplicitDeny);
        // Not even the account root: the console policy here has no root statement.
        assert_eq!(
            decide(&p, "arn:aws:iam::111122223333:root", action),
            ImplicitDeny
        );
    }
}

#[test]
fn actions_match_case_insensitively() {
    let p = policy(CONSOLE);
    assert_eq!(decide(&p, BOB, "KMS:ENCRYPT"), Allow);
    assert_eq!(
        decide(&p, BOB, "kms:generatedatakeypairwithoutplaintext"),
        Allow
    );
    assert_eq!(decide(&p, ALICE, "kms:describekey"), Allow);
}

// --- deny, Not… elements -----------------------------------------------------------------

#[test]
fn an_explicit_deny_overrides_an_allow() {
    let p = policy(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
          {"Sid":"No deletion for bob","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:user/bob"},
           "Action":["kms:ScheduleKeyDeletion","kms:Disable*"],"Resource":"*"}]}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:ScheduleKeyDeletion"), ExplicitDeny);
    assert_eq!(decide(&p, BOB, "kms:DisableKeyRotation"), ExplicitDeny);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    assert_eq!(decide(&p, ALICE, "kms:ScheduleKeyDeletion"), Allow);
    // A deny that applies is explicit even when nothing would have allowed the request.
    assert_eq!(decide(&p, BOB, "kms:ScheduleKeyDeletion"), ExplicitDeny);
}

#[test]
fn deny_order_does_not_matter() {
    let p = policy(
        r#"{"Statement":[
          {"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"},
          {"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#,
    );
    assert_eq!(decide(&p, ALICE, "kms:Decrypt"), ExplicitDeny);
    assert_eq!(decide(&p, MALLORY, "kms:Decrypt"), ExplicitDeny);
    assert_eq!(decide(&p, MALLORY, "kms:Encrypt"), Allow);
}

#[test]
fn not_action_allows_everything_else() {
    let p = policy(
        r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},
           "NotAction":["kms:ScheduleKeyDeletion","kms:Delete*","kms:PutKeyPolicy"],"Resource":"*"}}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    assert_eq!(decide(&p, BOB, "kms:CreateAlias"), Allow);
    assert_eq!(decide(&p, BOB, "kms:ScheduleKeyDeletion"), ImplicitDeny);
    assert_eq!(decide(&p, BOB, "kms:DeleteAlias"), ImplicitDeny);
    assert_eq!(decide(&p, BOB, "kms:putkeypolicy"), ImplicitDeny);
}

#[test]
fn deny_with_not_action_limits_a_user_to_some_actions() {
    let p = policy(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"},
          {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:user/carol"},
           "NotAction":["kms:Decrypt","kms:DescribeKey"],"Resource":"*"}]}"#,
    );
    assert_eq!(decide(&p, CAROL, "kms:Decrypt"), Allow);
    assert_eq!(decide(&p, CAROL, "kms:Encrypt"), ExplicitDeny);
    assert_eq!(decide(&p, ALICE, "kms:Encrypt"), Allow);
}

#[test]
fn not_principal_denies_everyone_else() {
    let p = policy(
        r#"{"Statement":[
          {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
          {"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:user/alice"]},
           "Action":"kms:PutKeyPolicy","Resource":"*"}]}"#,
    );
    assert_eq!(decide(&p, ALICE, "kms:PutKeyPolicy"), Allow);
    assert_eq!(decide(&p, BOB, "kms:PutKeyPolicy"), ExplicitDeny);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
}

#[test]
fn resources_match_the_key_arn() {
    let doc = |r: &str| {
        policy(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":{r}}}}}"#
        ))
    };
    assert_eq!(decide(&doc(r#""*""#), ALICE, "kms:Encrypt"), Allow);
    assert_eq!(
        decide(&doc(&format!("\"{KEY}\"")), ALICE, "kms:Encrypt"),
        Allow
    );
    assert_eq!(
        decide(
            &doc(r#""arn:aws:kms:us-east-1:111122223333:key/*""#),
            ALICE,
            "kms:Encrypt"
        ),
        Allow
    );
    assert_eq!(
        decide(
            &doc(r#""arn:aws:kms:*:111122223333:key/1234abcd-*""#),
            ALICE,
            "kms:Encrypt"
        ),
        Allow
    );
    assert_eq!(
        decide(
            &doc(r#"["arn:aws:kms:eu-west-1:111122223333:key/*"]"#),
            ALICE,
            "kms:Encrypt"
        ),
        ImplicitDeny
    );
    // Resources are case-sensitive.
    assert_eq!(
        decide(
            &doc(r#""arn:aws:kms:US-EAST-1:111122223333:key/*""#),
            ALICE,
            "kms:Encrypt"
        ),
        ImplicitDeny
    );
    let p = policy(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","NotResource":"arn:aws:kms:*:*:key/1234abcd-*"}}"#,
    );
    assert_eq!(decide(&p, ALICE, "kms:Encrypt"), ImplicitDeny);
}

#[test]
fn principal_forms() {
    let doc = |pr: &str| {
        policy(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{pr},"Action":"kms:*","Resource":"*"}}}}"#
        ))
    };
    assert_eq!(decide(&doc(r#""*""#), MALLORY, "kms:Encrypt"), Allow);
    assert_eq!(
        decide(&doc(r#"{"AWS":"*"}"#), MALLORY, "kms:Encrypt"),
        Allow
    );
    let several = doc(r#"{"AWS":["arn:aws:iam::111122223333:user/alice","444455556666"]}"#);
    assert_eq!(decide(&several, ALICE, "kms:Encrypt"), Allow);
    assert_eq!(decide(&several, MALLORY, "kms:Encrypt"), Allow);
    assert_eq!(decide(&several, BOB, "kms:Encrypt"), ImplicitDeny);
    // Service and federated principals are accepted but never match a user.
    let svc =
        doc(r#"{"Service":"ec2.amazonaws.com","Federated":["cognito-identity.amazonaws.com"]}"#);
    assert_eq!(decide(&svc, ALICE, "kms:Encrypt"), ImplicitDeny);
    // A wildcard inside a principal ARN is a literal character.
    let wild = doc(r#"{"AWS":"arn:aws:iam::111122223333:user/*"}"#);
    assert_eq!(decide(&wild, ALICE, "kms:Encrypt"), ImplicitDeny);
    assert_eq!(
        decide(&wild, "arn:aws:iam::111122223333:user/*", "kms:Encrypt"),
        Allow
    );
    // A user ARN matches exactly that user.
    let exact = doc(r#"{"AWS":"arn:aws:iam::111122223333:user/alice"}"#);
    assert_eq!(
        decide(
            &exact,
            "arn:aws:iam::111122223333:user/alice2",
            "kms:Encrypt"
        ),
        ImplicitDeny
    );
    assert_eq!(
        decide(
            &exact,
            "arn:aws:iam::111122223333:user/Alice",
            "kms:Encrypt"
        ),
        ImplicitDeny
    );
}

#[test]
fn statement_may_be_a_single_object_and_version_optional() {
    for doc in [
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"}}"#,
        r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"}]}"#,
        r#"{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"","Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{}}]}"#,
    ] {
        assert_eq!(decide(&policy(doc), ALICE, "kms:Encrypt"), Allow, "{doc}");
    }
}
