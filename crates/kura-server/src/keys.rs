//! Key management: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, EnableKey,
//! DisableKey, ScheduleKeyDeletion, CancelKeyDeletion, tags, key policies (rotation is in
//! `rotation.rs`).

use serde_json::{Value, json};

use crate::asymmetric;
use crate::error::{Kind, KmsError, KmsResult};
use crate::json::{Req, check_len, concat};
use crate::model::{
    DISABLED, ENABLED, KIND_KEY, KeyDoc, MaterialMeta, PENDING_DELETION, PENDING_IMPORT, Tag,
};
use crate::service::{CachedKey, Kms};

const DAY: i64 = 86_400;
const SPECS: &[&str] = &concat::<13>(&[
    &["SYMMETRIC_DEFAULT"],
    asymmetric::SPECS,
    &["HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2"],
]);
const USAGES: &[&str] = &[
    "ENCRYPT_DECRYPT",
    "SIGN_VERIFY",
    "GENERATE_VERIFY_MAC",
    "KEY_AGREEMENT",
];
const ORIGINS: &[&str] = &["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];

/// The default key policy: the account root (every user of the account) may do anything.
pub(crate) fn default_policy(account: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
    .to_string()
}

/// Refuses cryptographic use of a key that is not enabled, with AWS's errors.
pub(crate) fn usable(kms: &Kms, k: &CachedKey) -> KmsResult<()> {
    let arn = kms.key_arn(&k.doc.id);
    match k.doc.state.as_str() {
        ENABLED => Ok(()),
        DISABLED => Err(KmsError::new(Kind::Disabled, format!("{arn} is disabled."))),
        PENDING_IMPORT => Err(KmsError::new(
            Kind::InvalidState,
            format!("{arn} is pending import."),
        )),
        PENDING_DELETION => Err(KmsError::new(
            Kind::InvalidState,
            format!("{arn} is pending deletion."),
        )),
        other => Err(KmsError::new(
            Kind::InvalidState,
            format!("{arn} is {other}."),
        )),
    }
}

fn not_pending_deletion(kms: &Kms, doc: &KeyDoc) -> KmsResult<()> {
    if doc.state == PENDING_DELETION {
        return Err(KmsError::new(
            Kind::InvalidState,
            format!("{} is pending deletion.", kms.key_arn(&doc.id)),
        ));
    }
    Ok(())
}

fn read_tags(r: &Req) -> KmsResult<Vec<Tag>> {
    let mut tags = Vec::new();
    for t in r.list("Tags")? {
        let key = t
            .get("TagKey")
            .and_then(Value::as_str)
            .ok_or_else(|| KmsError::missing("tags.member.tagKey"))?;
        let value = t
            .get("TagValue")
            .and_then(Value::as_str)
            .ok_or_else(|| KmsError::missing("tags.member.tagValue"))?;
        check_len(key, "TagKey", key.chars().count(), 1, 128)?;
        check_len(value, "TagValue", value.chars().count(), 0, 256)?;
        if key.starts_with("aws:") {
            return Err(KmsError::new(
                Kind::Tag,
                "Tags beginning with aws: are reserved",
            ));
        }
        tags.push(Tag {
            key: key.into(),
            value: value.into(),
        });
    }
    Ok(tags)
}

fn merge_tags(doc: &mut KeyDoc, tags: Vec<Tag>) -> KmsResult<()> {
    for t in tags {
        match doc.tags.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value = t.value,
            None => doc.tags.push(t),
        }
    }
    if doc.tags.len() > 50 {
        return Err(KmsError::new(Kind::Tag, "A key can have at most 50 tags"));
    }
    Ok(())
}

fn check_policy(policy: &str) -> KmsResult<()> {
    crate::policy::Policy::parse(policy).map(|_| ())
}

pub(crate) fn create(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let spec = r
        .enum_str("KeySpec", SPECS)?
        .or(r.enum_str("CustomerMasterKeySpec", SPECS)?)
        .unwrap_or("SYMMETRIC_DEFAULT");
    let default_usage = if spec.starts_with("HMAC") {
        "GENERATE_VERIFY_MAC"
    } else {
        "ENCRYPT_DECRYPT"
    };
    let usage = r.enum_str("KeyUsage", USAGES)?.unwrap_or(default_usage);
    let origin = r.enum_str("Origin", ORIGINS)?.unwrap_or("AWS_KMS");
    let description = r.opt_str("Description", 0, 8192)?.unwrap_or("").to_string();
    let policy = match r.opt_str("Policy", 1, 131_072)? {
        Some(p) => {
            if p.len() > 32 * 1024 {
                return Err(KmsError::new(
                    Kind::LimitExceeded,
                    "The key policy is larger than 32 KiB",
                ));
            }
            check_policy(p)?;
            p.to_string()
        }
        None => default_policy(&kms.id.account),
    };
    if r.bool("MultiRegion")?.unwrap_or(false) {
        return Err(KmsError::new(
            Kind::UnsupportedOperation,
            "multi-Region keys are not supported by kura",
        ));
    }
    let valid_usage = match spec {
        "SYMMETRIC_DEFAULT" => usage == "ENCRYPT_DECRYPT",
        s if s.starts_with("HMAC") => usage == "GENERATE_VERIFY_MAC",
        s if s.starts_with("RSA") => usage == "ENCRYPT_DECRYPT" || usage == "SIGN_VERIFY",
        _ => usage == "SIGN_VERIFY" || usage == "KEY_AGREEMENT",
    };
    if !valid_usage {
        return Err(KmsError::validation(
            usage,
            "keyUsage",
            &format!("be valid for KeySpec {spec}"),
        ));
    }
    // Symmetric and HMAC material is random bytes of this length; asymmetric material is
    // a private key (PKCS#8 DER).
    let material_len = match spec {
        "SYMMETRIC_DEFAULT" => Some(32),
        "HMAC_224" => Some(28),
        "HMAC_256" => Some(32),
        "HMAC_384" => Some(48),
        "HMAC_512" => Some(64),
        other => {
            crate::asymmetric::check_create(other, usage)?;
            None
        }
    };
    match origin {
        "AWS_KMS" => {}
        // Material for any spec kura creates can be imported instead.
        "EXTERNAL" => {}
        other => {
            return Err(KmsError::new(
                Kind::UnsupportedOperation,
                format!("Origin {other} is not supported for {spec} keys"),
            ));
        }
    }
    let tags = read_tags(r)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = kms.now();
    let mut doc = KeyDoc {
        id: id.clone(),
        created: now,
        description,
        key_spec: spec.into(),
        key_usage: usage.into(),
        origin: origin.into(),
        state: if origin == "EXTERNAL" {
            PENDING_IMPORT
        } else {
            ENABLED
        }
        .into(),
        deletion_date: None,
        pending_window_days: None,
        policy,
        tags: Vec::new(),
        rotation_enabled: false,
        rotation_period_days: None,
        next_rotation: None,
        materials: Vec::new(),
        current_material: None,
        valid_to: None,
        expiration_model: None,
    };
    merge_tags(&mut doc, tags)?;
    let material = if origin == "AWS_KMS" {
        let bytes = match material_len {
            Some(n) => kura_crypto::SecretBytes::generate(n).map_err(KmsError::internal)?,
            None => crate::asymmetric::generate_material(spec)?,
        };
        let (mid, sealed) = kms.new_material(&id, bytes.expose_secret())?;
        doc.materials.push(MaterialMeta {
            id: mid.clone(),
            created: now,
            rotation_type: None,
        });
        doc.current_material = Some(mid.clone());
        Some((mid, sealed))
    } else {
        None
    };
    kms.create_key(
        &doc,
        material.as_ref().map(|(m, s)| (m.as_str(), s.clone())),
    )?;
    tracing::info!(key = %id, spec, usage, origin, "key created");
    Ok(json!({ "KeyMetadata": doc.metadata(&kms.key_arn(&id), &kms.id.account) }))
}

/// Resolves the request's `KeyId` (aliases allowed where `aliases`) and loads the key.
pub(crate) fn key_of(kms: &Kms, r: &Req, aliases: bool) -> KmsResult<std::sync::Arc<CachedKey>> {
    let id = kms.resolve(r.req_str("KeyId", 1, 2048)?, aliases)?;
    kms.key(&id)
}

pub(crate) fn describe(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let k = key_of(kms, r, true)?;
    Ok(json!({ "KeyMetadata": k.doc.metadata(&kms.key_arn(&k.doc.id), &kms.id.account) }))
}

pub(crate) fn list(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let limit = r.int("Limit", 1, 1000)?.unwrap_or(100) as usize;
    let marker = r.opt_str("Marker", 1, 1024)?;
    let page = kms.store.list(KIND_KEY, "", marker, limit + 1)?;
    let truncated = page.len() > limit;
    let keys: Vec<Value> = page
        .iter()
        .take(limit)
        .map(|o| json!({"KeyId": o.id, "KeyArn": kms.key_arn(&o.id)}))
        .collect();
    let mut v = json!({ "Keys": keys, "Truncated": truncated });
    if truncated && let (Some(obj), Some(last)) = (v.as_object_mut(), page.get(limit - 1)) {
        obj.insert("NextMarker".into(), json!(last.id));
    }
    Ok(v)
}

/// Applies `f` to the request's key (no aliases) and answers `{}`.
fn change(kms: &Kms, r: &Req, f: impl Fn(&Kms, &mut KeyDoc) -> KmsResult<()>) -> KmsResult<Value> {
    let id = kms.resolve(r.req_str("KeyId", 1, 2048)?, false)?;
    kms.update_key(&id, |doc| f(kms, doc).map(|()| Vec::new()))?;
    Ok(json!({}))
}

pub(crate) fn update_description(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let d = r.req_str("Description", 0, 8192)?.to_string();
    change(kms, r, |kms, doc| {
        not_pending_deletion(kms, doc)?;
        doc.description = d.clone();
        Ok(())
    })
}

pub(crate) fn enable(kms: &Kms, r: &Req) -> KmsResult<Value> {
    change(kms, r, |kms, doc| match doc.state.as_str() {
        ENABLED | DISABLED => {
            doc.state = ENABLED.into();
            Ok(())
        }
        s => Err(KmsError::new(
            Kind::InvalidState,
            format!("{} is {}.", kms.key_arn(&doc.id), state_words(s)),
        )),
    })
}

pub(crate) fn disable(kms: &Kms, r: &Req) -> KmsResult<Value> {
    change(kms, r, |kms, doc| match doc.state.as_str() {
        ENABLED | DISABLED => {
            doc.state = DISABLED.into();
            Ok(())
        }
        s => Err(KmsError::new(
            Kind::InvalidState,
            format!("{} is {}.", kms.key_arn(&doc.id), state_words(s)),
        )),
    })
}

fn state_words(state: &str) -> &'static str {
    match state {
        PENDING_DELETION => "pending deletion",
        PENDING_IMPORT => "pending import",
        DISABLED => "disabled",
        _ => "enabled",
    }
}

pub(crate) fn schedule_deletion(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let days = match r.get_number("PendingWindowInDays")? {
        None => 30,
        Some(d) if (7..=30).contains(&d) => d,
        Some(_) => {
            return Err(KmsError::new(
                Kind::Validation,
                "PendingWindowInDays must be between 7 and 30",
            ));
        }
    };
    let id = kms.resolve(r.req_str("KeyId", 1, 2048)?, false)?;
    let when = kms.now() + days * DAY;
    let doc = kms.update_key(&id, |doc| {
        not_pending_deletion(kms, doc)?;
        doc.state = PENDING_DELETION.into();
        doc.deletion_date = Some(when);
        doc.pending_window_days = Some(days);
        Ok(Vec::new())
    })?;
    Ok(json!({
        "KeyId": kms.key_arn(&id),
        "DeletionDate": when,
        "KeyState": doc.state,
        "PendingWindowInDays": days,
    }))
}

pub(crate) fn cancel_deletion(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let id = kms.resolve(r.req_str("KeyId", 1, 2048)?, false)?;
    kms.update_key(&id, |doc| {
        if doc.state != PENDING_DELETION {
            return Err(KmsError::new(
                Kind::InvalidState,
                format!("{} is not pending deletion.", kms.key_arn(&doc.id)),
            ));
        }
        doc.state = if doc.current_material.is_some() {
            DISABLED
        } else {
            PENDING_IMPORT
        }
        .into();
        doc.deletion_date = None;
        doc.pending_window_days = None;
        Ok(Vec::new())
    })?;
    Ok(json!({ "KeyId": kms.key_arn(&id) }))
}

pub(crate) fn tag(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let tags = read_tags(r)?;
    change(kms, r, |kms, doc| {
        not_pending_deletion(kms, doc)?;
        merge_tags(doc, tags.clone())
    })
}

pub(crate) fn untag(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let keys = r.string_list("TagKeys")?;
    change(kms, r, |kms, doc| {
        not_pending_deletion(kms, doc)?;
        doc.tags.retain(|t| !keys.contains(&t.key));
        Ok(())
    })
}

pub(crate) fn list_tags(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let k = key_of(kms, r, false)?;
    let limit = r.int("Limit", 1, 50)?.unwrap_or(50) as usize;
    let start = match r.opt_str("Marker", 1, 1024)? {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| KmsError::new(Kind::InvalidMarker, "Invalid marker"))?,
        None => 0,
    };
    let tags: Vec<Value> = k
        .doc
        .tags
        .iter()
        .skip(start)
        .take(limit)
        .map(|t| json!({"TagKey": t.key, "TagValue": t.value}))
        .collect();
    let truncated = start + limit < k.doc.tags.len();
    let mut v = json!({ "Tags": tags, "Truncated": truncated });
    if truncated && let Some(obj) = v.as_object_mut() {
        obj.insert("NextMarker".into(), json!((start + limit).to_string()));
    }
    Ok(v)
}

fn policy_name(r: &Req) -> KmsResult<()> {
    match r.opt_str("PolicyName", 1, 128)? {
        None | Some("default") => Ok(()),
        Some(other) => Err(KmsError::new(
            Kind::NotFound,
            format!("No such policy: {other}; the only policy is 'default'"),
        )),
    }
}

pub(crate) fn get_policy(kms: &Kms, r: &Req) -> KmsResult<Value> {
    policy_name(r)?;
    let k = key_of(kms, r, false)?;
    Ok(json!({ "Policy": k.doc.policy, "PolicyName": "default" }))
}

pub(crate) fn put_policy(kms: &Kms, r: &Req) -> KmsResult<Value> {
    policy_name(r)?;
    let p = r.req_str("Policy", 1, 131_072)?.to_string();
    if p.len() > 32 * 1024 {
        return Err(KmsError::new(
            Kind::LimitExceeded,
            "The key policy is larger than 32 KiB",
        ));
    }
    check_policy(&p)?;
    change(kms, r, |_, doc| {
        doc.policy = p.clone();
        Ok(())
    })
}

pub(crate) fn list_policies(kms: &Kms, r: &Req) -> KmsResult<Value> {
    key_of(kms, r, false)?;
    Ok(json!({ "PolicyNames": ["default"], "Truncated": false }))
}

impl Req {
    /// An integer member without range checks (the operation words its own message).
    fn get_number(&self, member: &str) -> KmsResult<Option<i64>> {
        self.int(member, i64::MIN, i64::MAX)
    }
}
