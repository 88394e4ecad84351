//! Fixed SigV4 vectors (AWS test suite, botocore) and malformed requests, checked against
//! the exact error AWS would answer with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use kura_server::sigv4::{Request, Secret, SigError, Verified, verify};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the AWS test suite's time.
const SUITE_TIME: i64 = 1_440_938_160;
/// 2026-01-01T00:00:00Z, the botocore vectors' time.
const T0: i64 = 1_767_225_600;
const GET_VANILLA_SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
const GET_VANILLA_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

fn lookup(akid: &str) -> Option<Secret> {
    (akid == AKID).then(|| Secret::new(SECRET.to_owned()))
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn check(
    method: &str,
    target: &str,
    hs: &[(&str, &str)],
    body: &[u8],
    now: i64,
    service: &str,
) -> Result<Verified, SigError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let hs = headers(hs);
    let req = Request {
        method,
        path,
        query,
        headers: &hs,
        body,
    };
    verify(&req, &lookup, now, service, 300)
}

/// get-vanilla with its `Authorization` header replaced (or removed when `None`).
fn vanilla(auth: Option<&str>) -> Result<Verified, SigError> {
    let mut hs = vec![
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
    ];
    hs.extend(auth.map(|a| ("authorization", a)));
    check("GET", "/", &hs, b"", SUITE_TIME, "service")
}

fn ok(region: &str, service: &str) -> Result<Verified, SigError> {
    Ok(Verified {
        access_key_id: AKID.into(),
        region: region.into(),
        service: service.into(),
    })
}

fn incomplete(result: Result<Verified, SigError>) -> String {
    match result {
        Err(e @ SigError::IncompleteSignature(_)) => {
            assert_eq!(e.aws_type(), "IncompleteSignatureException");
            e.message()
        }
        other => panic!("expected IncompleteSignature, got {other:?}"),
    }
}

#[test]
fn get_vanilla_from_the_aws_test_suite() {
    assert_eq!(vanilla(Some(GET_VANILLA_AUTH)), ok("us-east-1", "service"));
    // aws-sigv4 computes the same signature for the same request.
    let identity = Credentials::new(AKID, SECRET, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("service")
        .time(UNIX_EPOCH + Duration::from_secs(1_440_938_160))
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "GET",
        "https://example.amazonaws.com/",
        std::iter::empty(),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (instructions, signature) = sign(signable, &params).unwrap().into_parts();
    assert_eq!(signature, GET_VANILLA_SIG);
    let auth = instructions
        .headers()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .unwrap()
        .1;
    assert_eq!(auth, GET_VANILLA_AUTH);
    // Wrong service for this verifier.
    let hs = [
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        ("authorization", GET_VANILLA_AUTH),
    ];
    assert!(matches!(
        check("GET", "/", &hs, b"", SUITE_TIME, "kms"),
        Err(SigError::InvalidScope(_))
    ));
}

/// A KMS Encrypt call as the AWS CLI (botocore 1.43) signs it against `http://localhost:8443/`.
#[test]
fn botocore_kms_request() {
    let body = br#"{"KeyId": "alias/kura-test", "Plaintext": "aGVsbG8="}"#;
    let hs = [
        ("host", "localhost:8443"),
        ("x-amz-target", "TrentService.Encrypt"),
        ("content-type", "application/x-amz-json-1.1"),
        (
            "user-agent",
            "aws-cli/2.27.0 md/awscrt#0.26.1 ua/2.1 os/linux#6.8 md/arch#x86_64 lang/python#3.13.4 cfg/retry-mode#standard md/command#kms.encrypt",
        ),
        (
            "amz-sdk-invocation-id",
            "b2f1c9a4-3c57-4b8e-9d0f-1b2a3c4d5e6f",
        ),
        ("amz-sdk-request", "attempt=1"),
        ("content-length", "53"),
        ("x-amz-date", "20260101T000000Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/kms/aws4_request, SignedHeaders=amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;host;x-amz-date;x-amz-target, Signature=4fa2408c43e1f2e5e94a18c718ea39b891ebc5f098949c36d29f2b7f686746a6",
        ),
    ];
    assert_eq!(body.len(), 53);
    assert_eq!(
        check("POST", "/", &hs, body, T0, "kms"),
        ok("eu-west-1", "kms")
    );
    assert_eq!(
        check("POST", "/", &hs, body, T0 + 300, "kms"),
        ok("eu-west-1", "kms")
    );
    assert!(matches!(
        check("POST", "/", &hs, body, T0 + 301, "kms"),
        Err(SigError::SignatureExpired { .. })
    ));
    // The port is part of the signed host.
    let mut no_port = hs;
    no_port[0].1 = "localhost";
    assert_eq!(
        check("POST", "/", &no_port, body, T0, "kms"),
        Err(SigError::InvalidSignature)
    );
    let mut tampered = body.to_vec();
    tampered[12] ^= 1;
    assert_eq!(
        check("POST", "/", &hs, &tampered, T0, "kms"),
        Err(SigError::InvalidSignature)
    );
}

/// A presigned ListKeys URL from botocore's `SigV4QueryAuth` (expires 900 s); botocore
/// re-encodes `+` in the original query as `%20`.
#[test]
fn botocore_presigned_url() {
    let target = "/?Action=ListKeys&Version=2014-11-01&Marker=a%2Fb%20c&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Feu-west-1%2Fkms%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=d16c29eaea051085e99d701cab38bf7dc920cff624da959dbebbd98a74fa6c3f";
    let hs = [("host", "kms.eu-west-1.amazonaws.com")];
    assert_eq!(
        check("GET", target, &hs, b"", T0, "kms"),
        ok("eu-west-1", "kms")
    );
    // `+` decodes as a space, so it is the same query.
    let plus = target.replace("a%2Fb%20c", "a%2Fb+c");
    assert_eq!(
        check("GET", &plus, &hs, b"", T0, "kms"),
        ok("eu-west-1", "kms")
    );
    let changed = target.replace("ListKeys", "ListAliases");
    assert_eq!(
        check("GET", &changed, &hs, b"", T0, "kms"),
        Err(SigError::InvalidSignature)
    );
    let extra = format!("{target}&Limit=1");
    assert_eq!(
        check("GET", &extra, &hs, b"", T0, "kms"),
        Err(SigError::InvalidSignature)
    );
}

/// The `Date` header stands in for `X-Amz-Date`; the string to sign uses its ISO form.
#[test]
fn date_header_instead_of_x_amz_date() {
    let creq = "GET\n/\n\ndate:Sun, 30 Aug 2015 12:36:00 GMT\nhost:example.amazonaws.com\n\ndate;host\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let hash = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        creq.as_bytes(),
    ));
    let sts = format!(
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{hash}"
    );
    let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let key = v4::generate_signing_key(SECRET, time, "us-east-1", "service");
    let sig = v4::calculate_signature(key, sts.as_bytes());
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=date;host, Signature={sig}"
    );
    let hs = [
        ("host", "example.amazonaws.com"),
        ("date", "Sun, 30 Aug 2015 12:36:00 GMT"),
        ("authorization", auth.as_str()),
    ];
    assert_eq!(
        check("GET", "/", &hs, b"", SUITE_TIME, "service"),
        ok("us-east-1", "service")
    );
    let bad = [hs[0], ("date", "yesterday"), hs[2]];
    assert!(
        incomplete(check("GET", "/", &bad, b"", SUITE_TIME, "service"))
            .starts_with("Date header must be")
    );
}

#[test]
fn invalid_region_or_terminator_in_scope() {
    for region in ["", "US-EAST-1", "us east 1"] {
        let auth = GET_VANILLA_AUTH.replace("/us-east-1/", &format!("/{region}/"));
        let err = vanilla(Some(&auth)).unwrap_err();
        assert_eq!(
            err,
            SigError::InvalidScope("Credential should be scoped to a valid region. ".into())
        );
        assert_eq!(err.aws_type(), "InvalidSignatureException");
    }
    let auth = GET_VANILLA_AUTH.replace("/aws4_request,", "/aws5_request,");
    assert_eq!(
        vanilla(Some(&auth)),
        Err(SigError::InvalidScope(
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'."
                .into()
        ))
    );
}

#[test]
fn missing_authentication() {
    let err = vanilla(None).unwrap_err();
    assert_eq!(err, SigError::MissingAuthenticationToken);
    assert_eq!(err.aws_type(), "MissingAuthenticationTokenException");
    assert_eq!(err.message(), "Missing Authentication Token");
    assert_eq!(
        err.to_string(),
        "MissingAuthenticationTokenException: Missing Authentication Token"
    );
    // Ordinary query parameters are not a signature.
    let hs = [("host", "example.amazonaws.com")];
    assert_eq!(
        check(
            "GET",
            "/?X-Amz-Date=20150830T123600Z&a=b",
            &hs,
            b"",
            SUITE_TIME,
            "service"
        ),
        Err(SigError::MissingAuthenticationToken)
    );
}

#[test]
fn malformed_authorization_headers() {
    let cred = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    let signed = "SignedHeaders=host;x-amz-date";
    let sig = format!("Signature={GET_VANILLA_SIG}");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("AWS4-HMAC-SHA256 {cred}, {signed}"),
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {signed}, {sig}"),
            "Authorization header requires 'Credential' parameter.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {cred}, {sig}"),
            "Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256".into(),
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {cred}, {signed}, Signature"),
            "Invalid key=value pair (missing equal-sign) in Authorization header: 'Signature'.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {cred}, {cred}, {signed}, {sig}"),
            "Authorization header has more than one 'Credential' parameter.",
        ),
        (
            format!("AWS4-HMAC-SHA1 {cred}, {signed}, {sig}"),
            "Unsupported Authorization scheme 'AWS4-HMAC-SHA1': only 'AWS4-HMAC-SHA256' is accepted.",
        ),
        (
            format!("AWS4-ECDSA-P256-SHA256 {cred}, {signed}, {sig}"),
            "Unsupported Authorization scheme 'AWS4-ECDSA-P256-SHA256': only 'AWS4-HMAC-SHA256' is accepted.",
        ),
        (
            "AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=".into(),
            "Unsupported Authorization scheme 'AWS': only 'AWS4-HMAC-SHA256' is accepted.",
        ),
        (
            "".into(),
            "Unsupported Authorization scheme '': only 'AWS4-HMAC-SHA256' is accepted.",
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/aws4_request, {signed}, {sig}"
            ),
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'AKIDEXAMPLE/20150830/us-east-1/aws4_request'",
        ),
        (
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;;x-amz-date, {sig}"),
            "SignedHeaders must be a ';'-separated list of header names, got 'host;;x-amz-date'.",
        ),
        (
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=x-amz-date, {sig}"),
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ),
    ];
    for (auth, message) in cases {
        assert_eq!(incomplete(vanilla(Some(&auth))), message, "{auth}");
    }
    // Without spaces after the commas, and with unknown extra parameters, it still verifies.
    let compact = format!("AWS4-HMAC-SHA256 {cred},{signed},{sig},Extra=1");
    assert_eq!(vanilla(Some(&compact)), ok("us-east-1", "service"));
}

#[test]
fn request_time_must_be_present_once_and_well_formed() {
    let hs = [
        ("host", "example.amazonaws.com"),
        ("authorization", GET_VANILLA_AUTH),
    ];
    assert_eq!(
        incomplete(check("GET", "/", &hs, b"", SUITE_TIME, "service")),
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    );
    for bad in [
        "2015-08-30T12:36:00Z",
        "20150830T123600",
        "20150231T123600Z",
        "",
    ] {
        let hs = [
            ("host", "example.amazonaws.com"),
            ("x-amz-date", bad),
            ("authorization", GET_VANILLA_AUTH),
        ];
        assert_eq!(
            incomplete(check("GET", "/", &hs, b"", SUITE_TIME, "service")),
            format!(
                "Date must be in ISO-8601 'basic format'. Got '{bad}'. See http://en.wikipedia.org/wiki/ISO_8601"
            )
        );
    }
    let twice = [
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        ("x-amz-date", "20150830T123600Z"),
        ("authorization", GET_VANILLA_AUTH),
    ];
    assert!(
        incomplete(check("GET", "/", &twice, b"", SUITE_TIME, "service"))
            .contains("more than one 'x-amz-date'")
    );
    let two_auth = [
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        ("authorization", GET_VANILLA_AUTH),
        ("Authorization", GET_VANILLA_AUTH),
    ];
    assert!(
        incomplete(check("GET", "/", &two_auth, b"", SUITE_TIME, "service"))
            .contains("more than one 'authorization'")
    );
}

#[test]
fn malformed_presigned_requests() {
    let hs = [("host", "example.amazonaws.com")];
    let full = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=8a7a28e9e1e1bdc3ac1e3fd4b2ebcc0c6ef3c7e7e1b1d7c0b0f1a1b2c3d4e5f6";
    let run = |q: &str| check("GET", &format!("/?{q}"), &hs, b"", SUITE_TIME, "service");
    assert_eq!(run(full), Err(SigError::InvalidSignature));
    let without = |name: &str| {
        full.split('&')
            .filter(|p| !p.starts_with(&format!("{name}=")))
            .collect::<Vec<_>>()
            .join("&")
    };
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ] {
        assert_eq!(
            incomplete(run(&without(name))),
            format!(
                "AWS query-string parameters must include '{name}'. Re-examine the query-string parameters."
            ),
        );
    }
    // X-Amz-Expires is optional.
    assert_eq!(
        run(&without("X-Amz-Expires")),
        Err(SigError::InvalidSignature)
    );
    assert!(
        incomplete(run(&format!("{full}&X-Amz-Date=20150830T123600Z")))
            .contains("more than one 'X-Amz-Date'")
    );
    assert!(
        incomplete(run(&full.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1")))
            .starts_with("Unsupported AWS 'algorithm'")
    );
    // Both forms at once.
    let both = [
        ("host", "example.amazonaws.com"),
        ("authorization", GET_VANILLA_AUTH),
    ];
    assert_eq!(
        incomplete(check(
            "GET",
            &format!("/?{full}"),
            &both,
            b"",
            SUITE_TIME,
            "service"
        )),
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
    );
}

#[test]
fn errors_have_aws_types_and_display() {
    let cases = [
        (
            SigError::MissingAuthenticationToken,
            "MissingAuthenticationTokenException",
        ),
        (
            SigError::IncompleteSignature("x".into()),
            "IncompleteSignatureException",
        ),
        (SigError::UnrecognizedClient, "UnrecognizedClientException"),
        (SigError::InvalidSignature, "InvalidSignatureException"),
        (
            SigError::InvalidScope("x".into()),
            "InvalidSignatureException",
        ),
    ];
    for (e, t) in cases {
        assert_eq!(e.aws_type(), t);
        assert_eq!(e.to_string(), format!("{t}: {}", e.message()));
    }
    let e = SigError::SignatureNotYetCurrent {
        signed: "20260101T001000Z".into(),
        latest: "20260101T000130Z".into(),
        now: "20260101T000000Z".into(),
        max_skew_secs: 90,
    };
    assert_eq!(
        e.message(),
        "Signature not yet current: 20260101T001000Z is still later than 20260101T000130Z (20260101T000000Z + 90 sec.)"
    );
}

#[test]
fn secrets_copy_only_on_purpose() {
    let s = Secret::new("abc".into());
    let t = s.clone_secret();
    drop(s);
    assert_eq!(t.expose(), "abc");
    // A lookup may be any closure, or a type implementing the trait.
    struct Nobody;
    impl kura_server::sigv4::SecretLookup for Nobody {
        fn secret(&self, _: &str) -> Option<Secret> {
            None
        }
    }
    let hs = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        ("authorization", GET_VANILLA_AUTH),
    ]);
    let req = Request {
        method: "GET",
        path: "/",
        query: "",
        headers: &hs,
        body: b"",
    };
    assert_eq!(
        verify(&req, &Nobody, SUITE_TIME, "service", 300),
        Err(SigError::UnrecognizedClient)
    );
}
