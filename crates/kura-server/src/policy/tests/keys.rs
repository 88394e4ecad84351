//! Condition keys: the caller, `extra` keys, numbers and policy variables.

use super::*;

#[test]
fn caller_and_principal_keys() {
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:CallerAccount":"999999999999"}}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ImplicitDeny);
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"aws:username":["alice","carol"]}}"#,
    );
    assert_eq!(decide(&p, ALICE, "kms:Encrypt"), Allow);
    assert_eq!(
        decide(
            &p,
            "arn:aws:iam::111122223333:user/team/carol",
            "kms:Encrypt"
        ),
        Allow
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ImplicitDeny);
    assert_eq!(
        decide(&p, "arn:aws:iam::111122223333:root", "kms:Encrypt"),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"aws:PrincipalAccount":"111122223333","aws:PrincipalType":"User","aws:ResourceAccount":"111122223333"}}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    assert_eq!(
        decide(&p, "arn:aws:iam::111122223333:root", "kms:Encrypt"),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/a*"}}"#,
    );
    assert_eq!(decide(&p, ALICE, "kms:Encrypt"), Allow);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ImplicitDeny);
    let p = allow_if(
        "kms:*",
        r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/bob"}}"#,
    );
    assert_eq!(decide(&p, ALICE, "kms:Encrypt"), Allow);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ImplicitDeny);
}

#[test]
fn extra_keys_are_case_insensitive_and_may_repeat() {
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}"#,
    );
    assert_eq!(
        decide_extra(
            &p,
            BOB,
            "kms:Encrypt",
            &[("KMS:VIASERVICE", "s3.us-east-1.amazonaws.com")]
        ),
        Allow
    );
    assert_eq!(
        decide_extra(
            &p,
            BOB,
            "kms:Encrypt",
            &[("kms:ViaService", "S3.us-east-1.amazonaws.com")]
        ),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"ForAllValues:StringLike":{"kms:GrantOperations":["Decrypt","GenerateDataKey*"]}}"#,
    );
    let ops = [
        ("kms:GrantOperations", "Decrypt"),
        ("kms:GrantOperations", "GenerateDataKeyWithoutPlaintext"),
    ];
    assert_eq!(decide_extra(&p, BOB, "kms:CreateGrant", &ops), Allow);
    let ops = [
        ("kms:GrantOperations", "Decrypt"),
        ("kms:GrantOperations", "Encrypt"),
    ];
    assert_eq!(decide_extra(&p, BOB, "kms:CreateGrant", &ops), ImplicitDeny);
}

#[test]
fn extra_cannot_override_computed_keys() {
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/alice"}}"#,
    );
    assert_eq!(
        decide_extra(&p, BOB, "kms:Encrypt", &[("aws:PrincipalArn", ALICE)]),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:EncryptionContext:tenant":"acme"}}"#,
    );
    assert_eq!(
        decide_extra(
            &p,
            BOB,
            "kms:Encrypt",
            &[("kms:EncryptionContext:tenant", "acme")]
        ),
        ImplicitDeny
    );
}

#[test]
fn numeric_operators() {
    let p = allow_if(
        "kms:*",
        r#"{"NumericLessThanEquals":{"kms:ScheduleKeyDeletionPendingWindowInDays":14}}"#,
    );
    let d = |n| {
        decide_extra(
            &p,
            BOB,
            "kms:ScheduleKeyDeletion",
            &[("kms:ScheduleKeyDeletionPendingWindowInDays", n)],
        )
    };
    assert_eq!(d("7"), Allow);
    assert_eq!(d("14"), Allow);
    assert_eq!(d("30"), ImplicitDeny);
    assert_eq!(d("many"), ImplicitDeny);
    assert_eq!(decide(&p, BOB, "kms:ScheduleKeyDeletion"), ImplicitDeny);
}

#[test]
fn policy_variables_in_conditions_and_resources() {
    // The tenant in the context must be the caller's user name.
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:EncryptionContext:owner":"${aws:username}"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, ALICE, "kms:Decrypt", &[("owner", "alice")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("owner", "alice")]),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(
            &p,
            "arn:aws:iam::111122223333:root",
            "kms:Decrypt",
            &[("owner", "alice")]
        ),
        ImplicitDeny
    );
    // ${*} is a literal asterisk, not a wildcard.
    let p = allow_if(
        "kms:*",
        r#"{"StringLike":{"kms:EncryptionContext:owner":"${*}"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, ALICE, "kms:Decrypt", &[("owner", "*")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, ALICE, "kms:Decrypt", &[("owner", "alice")]),
        ImplicitDeny
    );
    let p = policy(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*",
           "Resource":"arn:aws:kms:*:${aws:PrincipalAccount}:key/*"}}"#,
    );
    assert_eq!(decide(&p, ALICE, "kms:Encrypt"), Allow);
    assert_eq!(decide(&p, MALLORY, "kms:Encrypt"), ImplicitDeny);
    // Without Version 2012-10-17 the text is literal.
    let p = policy(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*",
           "Condition":{"StringEquals":{"kms:EncryptionContext:owner":"${aws:username}"}}}}"#,
    );
    assert_eq!(
        decide_ctx(&p, ALICE, "kms:Decrypt", &[("owner", "alice")]),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(&p, ALICE, "kms:Decrypt", &[("owner", "${aws:username}")]),
        Allow
    );
}

#[test]
fn deny_unless_context_protects_even_account_root() {
    // AWS's pattern: refuse Decrypt without the expected context, whatever else allows it.
    let p = policy(
        r#"{"Version":"2012-10-17","Statement":[
          {"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
          {"Effect":"Deny","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*",
           "Condition":{"StringNotEqualsIfExists":{"kms:EncryptionContext:app":"payroll"}}}]}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("app", "payroll")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("app", "crm")]),
        ExplicitDeny
    );
    assert_eq!(
        decide(&p, "arn:aws:iam::111122223333:root", "kms:Decrypt"),
        ExplicitDeny
    );
    // IfExists makes a missing key true, and a negated operator is already true for one:
    // a request without the key is denied too.
    assert_eq!(decide(&p, BOB, "kms:Decrypt"), ExplicitDeny);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
}
