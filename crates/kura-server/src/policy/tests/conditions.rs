//! Conditions: operators, keys, set qualifiers, `…IfExists`, `Null`, policy variables.

use super::*;

#[test]
fn encryption_context_condition_allows_only_that_context() {
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:EncryptionContext:tenant":"acme"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "acme")]),
        Allow
    );
    assert_eq!(
        decide_ctx(
            &p,
            BOB,
            "kms:Decrypt",
            &[("tenant", "acme"), ("purpose", "x")]
        ),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "globex")]),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "ACME")]),
        ImplicitDeny,
        "values are case-sensitive"
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("other", "acme")]),
        ImplicitDeny
    );
    assert_eq!(
        decide(&p, BOB, "kms:Decrypt"),
        ImplicitDeny,
        "a missing key fails a positive operator"
    );
    // The other account's user stays out whatever the context.
    assert_eq!(
        decide_ctx(&p, MALLORY, "kms:Decrypt", &[("tenant", "acme")]),
        ImplicitDeny
    );
}

#[test]
fn encryption_context_key_names_are_case_insensitive() {
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:EncryptionContext:Tenant":"acme"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "acme")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("TENANT", "acme")]),
        Allow
    );
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"KMS:ENCRYPTIONCONTEXT:tenant":"acme"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("Tenant", "acme")]),
        Allow
    );
}

#[test]
fn several_values_are_or_several_keys_and_operators_are_and() {
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:EncryptionContext:tenant":["acme","globex"],"kms:EncryptionContext:env":"prod"},
            "StringLike":{"kms:EncryptionContext:app":"billing-*"}}"#,
    );
    let ok = [("tenant", "globex"), ("env", "prod"), ("app", "billing-eu")];
    assert_eq!(decide_ctx(&p, BOB, "kms:Encrypt", &ok), Allow);
    assert_eq!(
        decide_ctx(
            &p,
            BOB,
            "kms:Encrypt",
            &[("tenant", "acme"), ("env", "prod"), ("app", "billing-")]
        ),
        Allow
    );
    assert_eq!(
        decide_ctx(
            &p,
            BOB,
            "kms:Encrypt",
            &[("tenant", "acme"), ("env", "dev"), ("app", "billing-eu")]
        ),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(
            &p,
            BOB,
            "kms:Encrypt",
            &[("tenant", "acme"), ("env", "prod"), ("app", "crm")]
        ),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(
            &p,
            BOB,
            "kms:Encrypt",
            &[("tenant", "acme"), ("env", "prod")]
        ),
        ImplicitDeny
    );
}

#[test]
fn string_not_equals_and_missing_keys() {
    let p = policy(
        r#"{"Statement":[
          {"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"},
          {"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*",
           "Condition":{"StringNotEquals":{"kms:EncryptionContext:tenant":["acme","globex"]}}}]}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "acme")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "globex")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "initech")]),
        ExplicitDeny
    );
    // A missing key makes a negated operator true: the deny applies.
    assert_eq!(decide(&p, BOB, "kms:Decrypt"), ExplicitDeny);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
}

#[test]
fn ignore_case_operators() {
    let p = allow_if(
        "kms:*",
        r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:tenant":"Acme"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "ACME")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "acmex")]),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:tenant":"Acme"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "ACME")]),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Decrypt", &[("tenant", "globex")]),
        Allow
    );
}

#[test]
fn for_all_values_on_encryption_context_keys() {
    let p = allow_if(
        "kms:*",
        r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["tenant","purpose"]}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a"), ("purpose", "b")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a"), ("extra", "c")]),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("Tenant", "a")]),
        ImplicitDeny,
        "StringEquals is case-sensitive"
    );
    // Vacuously true for an empty context, as AWS does; pair it with Null to refuse that.
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    let p = allow_if(
        "kms:*",
        r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["tenant","purpose"]},
            "Null":{"kms:EncryptionContextKeys":"false"}}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ImplicitDeny);
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("purpose", "b")]),
        Allow
    );
}

#[test]
fn for_any_value_on_encryption_context_keys() {
    let p = allow_if(
        "kms:*",
        r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"tenant"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a"), ("other", "b")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("other", "b")]),
        ImplicitDeny
    );
    assert_eq!(
        decide(&p, BOB, "kms:Encrypt"),
        ImplicitDeny,
        "false for an empty set"
    );
}

#[test]
fn set_qualifiers_with_negated_operators() {
    // ForAllValues:StringNotLike: no key may look like aws*.
    let p = allow_if(
        "kms:*",
        r#"{"ForAllValues:StringNotLike":{"kms:EncryptionContextKeys":"aws*"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a"), ("aws:x", "b")]),
        ImplicitDeny
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    // ForAnyValue:StringNotEquals: some key other than tenant.
    let p = allow_if(
        "kms:*",
        r#"{"ForAnyValue:StringNotEquals":{"kms:EncryptionContextKeys":"tenant"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a")]),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a"), ("x", "b")]),
        Allow
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ImplicitDeny);
}

#[test]
fn plain_operators_on_multi_valued_keys() {
    // Plain positive: some value matches; plain negated: no value matches.
    let p = allow_if(
        "kms:*",
        r#"{"StringEquals":{"kms:EncryptionContextKeys":"tenant"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a"), ("x", "b")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("x", "b")]),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"StringNotEquals":{"kms:EncryptionContextKeys":"tenant"}}"#,
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "a"), ("x", "b")]),
        ImplicitDeny
    );
    assert_eq!(decide_ctx(&p, BOB, "kms:Encrypt", &[("x", "b")]), Allow);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
}

#[test]
fn string_like_wildcards() {
    let p = allow_if(
        "kms:*",
        r#"{"StringLike":{"kms:EncryptionContext:aws:s3:arn":"arn:aws:s3:::bucket-?/*"}}"#,
    );
    assert_eq!(
        decide_ctx(
            &p,
            BOB,
            "kms:Decrypt",
            &[("aws:s3:arn", "arn:aws:s3:::bucket-a/x/y.txt")]
        ),
        Allow
    );
    assert_eq!(
        decide_ctx(
            &p,
            BOB,
            "kms:Decrypt",
            &[("aws:s3:arn", "arn:aws:s3:::bucket-ab/x")]
        ),
        ImplicitDeny
    );
    assert_eq!(
        decide_ctx(
            &p,
            BOB,
            "kms:Decrypt",
            &[("aws:s3:arn", "arn:aws:s3:::bucket-a")]
        ),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/a*"}}"#,
    );
    assert_eq!(decide(&p, ALICE, "kms:Encrypt"), Allow);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ImplicitDeny);
    let p = allow_if(
        "kms:*",
        r#"{"StringNotLike":{"kms:RequestAlias":"alias/prod-*"}}"#,
    );
    assert_eq!(
        decide_extra(
            &p,
            BOB,
            "kms:Encrypt",
            &[("kms:RequestAlias", "alias/dev-app")]
        ),
        Allow
    );
    assert_eq!(
        decide_extra(
            &p,
            BOB,
            "kms:Encrypt",
            &[("kms:RequestAlias", "alias/prod-app")]
        ),
        ImplicitDeny
    );
}

#[test]
fn null_tests_presence() {
    let p = policy(
        r#"{"Statement":[
          {"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"},
          {"Effect":"Deny","Principal":"*","Action":["kms:Encrypt","kms:GenerateDataKey*"],"Resource":"*",
           "Condition":{"Null":{"kms:EncryptionContext:tenant":"true"}}}]}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ExplicitDeny);
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("other", "x")]),
        ExplicitDeny
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "x")]),
        Allow
    );
    assert_eq!(decide(&p, BOB, "kms:Decrypt"), Allow);
    let p = allow_if(
        "kms:*",
        r#"{"Null":{"kms:EncryptionContext:tenant":false}}"#,
    );
    assert_eq!(decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "")]), Allow);
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), ImplicitDeny);
}

#[test]
fn if_exists_passes_missing_keys() {
    let p = allow_if(
        "kms:*",
        r#"{"StringEqualsIfExists":{"kms:EncryptionContext:tenant":"acme"}}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "acme")]),
        Allow
    );
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("tenant", "globex")]),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"ForAnyValue:StringEqualsIfExists":{"kms:EncryptionContextKeys":"tenant"}}"#,
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
    assert_eq!(
        decide_ctx(&p, BOB, "kms:Encrypt", &[("x", "y")]),
        ImplicitDeny
    );
    let p = allow_if(
        "kms:*",
        r#"{"StringEqualsIfExists":{"kms:EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#,
    );
    assert_eq!(
        decide_extra(
            &p,
            BOB,
            "kms:Encrypt",
            &[("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")]
        ),
        Allow
    );
    assert_eq!(
        decide_extra(
            &p,
            BOB,
            "kms:Encrypt",
            &[("kms:EncryptionAlgorithm", "RSAES_OAEP_SHA_1")]
        ),
        ImplicitDeny
    );
    assert_eq!(decide(&p, BOB, "kms:Encrypt"), Allow);
}

#[test]
fn bool_accepts_json_booleans_and_strings() {
    for v in ["true", r#""true""#, r#""TRUE""#] {
        let p = allow_if(
            "kms:CreateGrant",
            &format!(r#"{{"Bool":{{"kms:GrantIsForAWSResource":{v}}}}}"#),
        );
        assert_eq!(grant_for_aws_resource(&p, "true"), Allow);
        assert_eq!(grant_for_aws_resource(&p, "false"), ImplicitDeny);
        assert_eq!(decide(&p, BOB, "kms:CreateGrant"), ImplicitDeny);
    }
}
