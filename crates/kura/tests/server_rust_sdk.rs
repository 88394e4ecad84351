#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kura server` driven by the AWS SDK for Rust (`aws-sdk-kms`): the SDK's own parsing of
//! kura's responses (timestamps as epoch seconds, `x-amzn-RequestId`, blobs, paginated
//! lists) and of its errors (`__type` into the typed error variants), over plain HTTP on
//! loopback with the SDK's default HTTP client.

mod server;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::operation::create_alias::CreateAliasError;
use aws_sdk_kms::operation::decrypt::DecryptError;
use aws_sdk_kms::operation::describe_key::DescribeKeyError;
use aws_sdk_kms::operation::encrypt::EncryptError;
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{
    DataKeySpec, EncryptionAlgorithmSpec, KeySpec, KeyState, KeyUsageType, Tag,
};
use server::{REGION, Server};

async fn client(s: &Server, akid: &str, secret: &str) -> Client {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&s.endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(akid, secret, None, None, "test"))
        .load()
        .await;
    Client::new(&conf)
}

/// Asserts `t` is within five minutes of now: the SDK parsed kura's epoch seconds.
#[track_caller]
fn recent(t: Option<&DateTime>) {
    let t = t.expect("a timestamp").secs();
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    assert!((t - now).abs() < 300, "timestamp {t}, now {now}");
}

#[test]
fn rust_sdk_round_trips_and_typed_errors() {
    let s = Server::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kms = client(&s, &s.access_key_id, &s.secret).await;

        // CreateKey and DescribeKey: metadata, ARNs and timestamps.
        let created = kms
            .create_key()
            .description("rust sdk")
            .tags(
                Tag::builder()
                    .tag_key("team")
                    .tag_value("core")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert!(created.request_id().is_some_and(|r| !r.is_empty()));
        let k = created.key_metadata().unwrap();
        let kid = k.key_id().to_string();
        let arn = k.arn().unwrap().to_string();
        assert_eq!(arn, format!("arn:aws:kms:us-east-1:111122223333:key/{kid}"));
        assert_eq!(k.key_state(), Some(&KeyState::Enabled));
        assert_eq!(k.key_spec(), Some(&KeySpec::SymmetricDefault));
        assert_eq!(k.key_usage(), Some(&KeyUsageType::EncryptDecrypt));
        assert!(k.enabled());
        assert_eq!(k.description(), Some("rust sdk"));
        assert_eq!(
            k.encryption_algorithms(),
            [EncryptionAlgorithmSpec::SymmetricDefault]
        );
        recent(k.creation_date());

        kms.create_alias()
            .alias_name("alias/rust")
            .target_key_id(&kid)
            .send()
            .await
            .unwrap();
        for r in [kid.as_str(), arn.as_str(), "alias/rust"] {
            let d = kms.describe_key().key_id(r).send().await.unwrap();
            let m = d.key_metadata().unwrap();
            assert_eq!(m.key_id(), kid);
            recent(m.creation_date());
        }
        let aliases = kms.list_aliases().send().await.unwrap();
        let a = &aliases.aliases()[0];
        assert_eq!(a.alias_name(), Some("alias/rust"));
        assert_eq!(a.target_key_id(), Some(kid.as_str()));
        let tags = kms.list_resource_tags().key_id(&kid).send().await.unwrap();
        assert_eq!(tags.tags()[0].tag_key(), "team");

        // Encrypt and Decrypt with an encryption context.
        let ctx = HashMap::from([
            ("tenant".to_string(), "acme".to_string()),
            ("table".to_string(), "orders".to_string()),
        ]);
        let enc = kms
            .encrypt()
            .key_id("alias/rust")
            .plaintext(Blob::new(b"\x00rust sdk\xff".to_vec()))
            .set_encryption_context(Some(ctx.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(enc.key_id(), Some(arn.as_str()));
        assert_eq!(
            enc.encryption_algorithm(),
            Some(&EncryptionAlgorithmSpec::SymmetricDefault)
        );
        let blob = enc.ciphertext_blob().unwrap().clone();
        let dec = kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .set_encryption_context(Some(ctx.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(dec.plaintext().unwrap().as_ref(), b"\x00rust sdk\xff");
        assert_eq!(dec.key_id(), Some(arn.as_str()));

        // A wrong context, or a damaged blob: InvalidCiphertextException, typed.
        let err = kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("tenant", "evil")
            .send()
            .await
            .unwrap_err();
        let svc = err.into_service_error();
        assert!(
            matches!(svc, DecryptError::InvalidCiphertextException(_)),
            "{svc:?}"
        );
        assert_eq!(svc.code(), Some("InvalidCiphertextException"));
        let err = kms
            .decrypt()
            .ciphertext_blob(Blob::new(b"not a kura blob at all".to_vec()))
            .send()
            .await
            .unwrap_err();
        assert!(matches!(
            err.into_service_error(),
            DecryptError::InvalidCiphertextException(_)
        ));

        // GenerateDataKey: the plaintext key and its encrypted copy agree.
        let dk = kms
            .generate_data_key()
            .key_id(&kid)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(ctx.clone()))
            .send()
            .await
            .unwrap();
        let plain = dk.plaintext().unwrap().as_ref().to_vec();
        assert_eq!(plain.len(), 32);
        assert_eq!(dk.key_id(), Some(arn.as_str()));
        let back = kms
            .decrypt()
            .ciphertext_blob(dk.ciphertext_blob().unwrap().clone())
            .set_encryption_context(Some(ctx))
            .send()
            .await
            .unwrap();
        assert_eq!(back.plaintext().unwrap().as_ref(), plain.as_slice());

        // ListKeys through the SDK's paginator, two keys a page.
        let mut made = vec![kid.clone()];
        for _ in 0..4 {
            let k = kms.create_key().send().await.unwrap();
            made.push(k.key_metadata().unwrap().key_id().to_string());
        }
        let listed: Vec<String> = kms
            .list_keys()
            .limit(2)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.key_id().unwrap().to_string())
            .collect();
        let (mut a, mut b) = (listed.clone(), made.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "paginated ListKeys");
        let pages = kms
            .list_keys()
            .limit(2)
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .unwrap();
        assert_eq!(pages.len(), 3);
        assert!(pages[0].truncated() && pages[0].next_marker().is_some());
        assert!(!pages[2].truncated());

        // ScheduleKeyDeletion: state, date and window; the key then refuses to encrypt.
        let victim = made[1].clone();
        let del = kms
            .schedule_key_deletion()
            .key_id(&victim)
            .pending_window_in_days(7)
            .send()
            .await
            .unwrap();
        assert_eq!(del.key_state(), Some(&KeyState::PendingDeletion));
        assert_eq!(del.pending_window_in_days(), Some(7));
        let when = del.deletion_date().unwrap().secs();
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        assert!(
            (when - now - 7 * 86_400).abs() < 300,
            "deletion date {when}"
        );
        let m = kms.describe_key().key_id(&victim).send().await.unwrap();
        let m = m.key_metadata().unwrap();
        assert_eq!(m.key_state(), Some(&KeyState::PendingDeletion));
        assert_eq!(m.deletion_date().map(DateTime::secs), Some(when));
        let err = kms
            .encrypt()
            .key_id(&victim)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap_err();
        let svc = err.into_service_error();
        assert!(
            matches!(svc, EncryptError::KmsInvalidStateException(_)),
            "{svc:?}"
        );

        // NotFoundException and AlreadyExistsException, typed, with a request id.
        let err = kms
            .describe_key()
            .key_id("00000000-0000-0000-0000-000000000000")
            .send()
            .await
            .unwrap_err();
        assert!(err.request_id().is_some_and(|r| !r.is_empty()), "{err:?}");
        let svc = err.into_service_error();
        assert!(
            matches!(svc, DescribeKeyError::NotFoundException(_)),
            "{svc:?}"
        );
        assert!(svc.message().unwrap().contains("does not exist"), "{svc:?}");
        let err = kms
            .describe_key()
            .key_id("alias/missing")
            .send()
            .await
            .unwrap_err();
        assert!(matches!(
            err.into_service_error(),
            DescribeKeyError::NotFoundException(_)
        ));
        let err = kms
            .create_alias()
            .alias_name("alias/rust")
            .target_key_id(&kid)
            .send()
            .await
            .unwrap_err();
        assert!(matches!(
            err.into_service_error(),
            CreateAliasError::AlreadyExistsException(_)
        ));

        // An unknown access key: an error KMS does not model, with its code.
        let stranger = client(&s, "AKIAAAAAAAAAAAAAAAAA", &"x".repeat(40)).await;
        let err = stranger.list_keys().send().await.unwrap_err();
        let svc = err.into_service_error();
        assert_eq!(svc.code(), Some("UnrecognizedClientException"), "{svc:?}");
    });
}
