//! Documents kura refuses, and what it says about them.

use super::*;

/// A document whose second statement is `second` (the first is valid).
fn second(s: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[
          {{"Effect":"Allow","Principal":{{"AWS":"111122223333"}},"Action":"kms:*","Resource":"*"}},
          {s}]}}"#
    )
}

fn says(doc: &str, want: &str) {
    let m = malformed(doc);
    assert!(m.contains(want), "message {m:?} lacks {want:?}");
}

#[test]
fn not_json() {
    says("", "not valid JSON");
    says("{", "not valid JSON");
    says("{\"Statement\": [}", "not valid JSON");
    says("Allow everything", "not valid JSON");
    says(&format!("{DEFAULT} trailing"), "not valid JSON");
}

#[test]
fn not_an_object() {
    for doc in ["[]", "\"x\"", "null", "42", "true"] {
        says(doc, "must be a JSON object");
    }
}

#[test]
fn top_level_fields() {
    says(r#"{"Version":"2012-10-17"}"#, "no Statement");
    says(
        r#"{"Version":"2012-10-17","Statement":[]}"#,
        "Statement is empty",
    );
    says(
        r#"{"Statement":"Allow"}"#,
        "Statement must be an object or an array",
    );
    says(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"},"Comment":"x"}"#,
        "Unknown policy field \"Comment\"",
    );
    says(
        r#"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#,
        "Version must be \"2012-10-17\" or \"2008-10-17\"",
    );
    says(
        r#"{"Version":20121017,"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#,
        "Version must be",
    );
    says(
        r#"{"Id":1,"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#,
        "Id must be a string",
    );
    // Field names are case-sensitive.
    says(
        r#"{"statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#,
        "Unknown policy field",
    );
}

#[test]
fn effect() {
    says(
        &second(r#"{"Principal":"*","Action":"kms:*","Resource":"*"}"#),
        "Statement 2: Effect is missing",
    );
    says(
        &second(r#"{"Effect":"Permit","Principal":"*","Action":"kms:*","Resource":"*"}"#),
        "Statement 2: Effect must be Allow or Deny",
    );
    says(
        &second(r#"{"Effect":"allow","Principal":"*","Action":"kms:*","Resource":"*"}"#),
        "Effect must be Allow or Deny, not \"allow\"",
    );
    says(
        &second(r#"{"Effect":true,"Principal":"*","Action":"kms:*","Resource":"*"}"#),
        "Effect must be Allow or Deny",
    );
}

#[test]
fn action() {
    says(
        &second(r#"{"Effect":"Allow","Principal":"*","Resource":"*"}"#),
        "Statement 2: Action or NotAction is required",
    );
    says(
        &second(
            r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","NotAction":"kms:Decrypt","Resource":"*"}"#,
        ),
        "give Action or NotAction, not both",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":"*","Action":[],"Resource":"*"}"#),
        "Action must not be an empty array",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":"*","Action":["kms:Encrypt",3],"Resource":"*"}"#),
        "Action must be a string or an array of strings",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":"*","Action":"Encrypt","Resource":"*"}"#),
        "Action \"Encrypt\" must be \"*\" or <service>:<action>",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":"*","NotAction":"kms:","Resource":"*"}"#),
        "NotAction \"kms:\"",
    );
}

#[test]
fn principal() {
    says(
        &second(r#"{"Effect":"Allow","Action":"kms:*","Resource":"*"}"#),
        "Statement 2: Principal or NotPrincipal is required",
    );
    says(
        &second(
            r#"{"Effect":"Allow","Principal":"*","NotPrincipal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}"#,
        ),
        "give Principal or NotPrincipal, not both",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":"alice","Action":"kms:*","Resource":"*"}"#),
        "Principal must be \"*\" or an object",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":{},"Action":"kms:*","Resource":"*"}"#),
        "Principal must be \"*\" or an object",
    );
    says(
        &second(
            r#"{"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"kms:*","Resource":"*"}"#,
        ),
        "Principal AWS \"alice\" is not",
    );
    says(
        &second(
            r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::12:root"},"Action":"kms:*","Resource":"*"}"#,
        ),
        "is not \"*\", a 12-digit account id or an ARN",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":{"AWS":[]},"Action":"kms:*","Resource":"*"}"#),
        "Principal AWS must not be an empty array",
    );
    says(
        &second(
            r#"{"Effect":"Allow","Principal":{"CanonicalUser":"abc"},"Action":"kms:*","Resource":"*"}"#,
        ),
        "Principal type \"CanonicalUser\" is not supported",
    );
    says(
        &second(r#"{"Effect":"Deny","NotPrincipal":{"AWS":7},"Action":"kms:*","Resource":"*"}"#),
        "NotPrincipal AWS must be a string or an array of strings",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":{"Service":""},"Action":"kms:*","Resource":"*"}"#),
        "Principal Service must not be empty",
    );
}

#[test]
fn resource() {
    says(
        &second(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*"}"#),
        "Statement 2: Resource or NotResource is required",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"this key"}"#),
        "Resource \"this key\" must be \"*\" (this key) or an ARN",
    );
    says(
        &second(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":""}"#),
        "Resource \"\" must be",
    );
    says(
        &second(
            r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","NotResource":"*"}"#,
        ),
        "give Resource or NotResource, not both",
    );
}

#[test]
fn statement_shape() {
    says(
        &second(r#""Allow""#),
        "Statement 2: a statement must be a JSON object",
    );
    says(
        &second(
            r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Principals":"*"}"#,
        ),
        "Statement 2: unknown field \"Principals\"",
    );
    says(
        &second(r#"{"Sid":1,"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#),
        "Sid must be a string",
    );
    // The first statement is numbered 1.
    says(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*"}]}"#,
        "Statement 1: Resource or NotResource",
    );
}

#[test]
fn conditions() {
    let with = |c: &str| {
        second(&format!(
            r#"{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{c}}}"#
        ))
    };
    says(
        &with(r#""tenant=acme""#),
        "Statement 2: Condition must be an object",
    );
    says(
        &with(r#"{"StringEqual":{"kms:EncryptionContext:t":"a"}}"#),
        "unknown condition operator StringEqual",
    );
    says(
        &with(r#"{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#),
        "not supported by kura",
    );
    says(
        &with(r#"{"StringEquals":"acme"}"#),
        "Condition StringEquals must be an object",
    );
    says(
        &with(r#"{"StringEquals":{}}"#),
        "Condition StringEquals names no condition key",
    );
    says(
        &with(r#"{"StringEquals":{"tenant":"acme"}}"#),
        "key \"tenant\" must be <service>:<name>",
    );
    says(
        &with(r#"{"StringEquals":{"kms:EncryptionContext:t":[]}}"#),
        "non-empty array",
    );
    says(
        &with(r#"{"StringEquals":{"kms:EncryptionContext:t":null}}"#),
        "give a string, number or boolean",
    );
    says(
        &with(r#"{"StringEquals":{"kms:EncryptionContext:t":{"a":"b"}}}"#),
        "give a string, number or boolean",
    );
    says(
        &with(r#"{"Bool":{"kms:GrantIsForAWSResource":"yes"}}"#),
        "\"yes\" is neither true nor false",
    );
    says(
        &with(r#"{"Null":{"kms:EncryptionContext:t":"maybe"}}"#),
        "neither true nor false",
    );
    says(
        &with(r#"{"NullIfExists":{"kms:EncryptionContext:t":"true"}}"#),
        "Null takes neither",
    );
    says(
        &with(r#"{"NumericLessThan":{"kms:X":"ten"}}"#),
        "\"ten\" is not a number",
    );
}

#[test]
fn duplicate_keys_are_refused() {
    says(
        r#"{"Statement":{"Effect":"Deny","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}}"#,
        "duplicate field \"Effect\"",
    );
    says(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*",
           "Condition":{"StringEquals":{"kms:EncryptionContext:t":"a","kms:EncryptionContext:t":"b"}}}}"#,
        "duplicate field",
    );
}

#[test]
fn error_is_malformed_policy_document() {
    let e = Policy::parse("nope").unwrap_err();
    assert_eq!(e.kind, Kind::MalformedPolicyDocument);
    assert_eq!(e.kind.aws_type(), "MalformedPolicyDocumentException");
    assert!(
        e.to_string()
            .starts_with("MalformedPolicyDocumentException: ")
    );
}

#[test]
fn deeply_nested_json_is_refused_not_overflowed() {
    let doc = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    says(&doc, "not valid JSON");
    let doc = format!(
        r#"{{"Statement":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    says(&doc, "not valid JSON");
}

#[test]
fn truncated_and_mutated_documents_never_panic() {
    for doc in [DEFAULT, CONSOLE] {
        for (i, _) in doc.char_indices() {
            let _ = Policy::parse(&doc[..i]);
        }
        let bytes = doc.as_bytes();
        for i in 0..bytes.len() {
            for b in [
                b'"', b'{', b'}', b'[', b']', b',', b':', b'*', b'?', b'$', b' ',
            ] {
                let mut m = bytes.to_vec();
                m[i] = b;
                if let Ok(p) = std::str::from_utf8(&m).map(Policy::parse) {
                    let _ = p.map(|p| decide(&p, ALICE, "kms:Encrypt"));
                }
            }
        }
    }
}
