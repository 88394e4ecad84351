//! Rotation of key material: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
//! RotateKeyOnDemand, ListKeyRotations, and automatic rotation once a key's date has come.
//!
//! A rotation adds a material object and makes it current, in the same transaction as the
//! key's metadata ([`Kms::update_key`]); earlier materials stay, so every blob (which names
//! its material) keeps decrypting. Automatic rotation happens lazily: when a key is about
//! to seal with material whose rotation date has passed ([`rotate_if_due`]) and from the
//! server's minute sweep ([`sweep`]). Both re-check the date on the freshly read key inside
//! the versioned update, so concurrent writers (threads, processes, nodes) rotate once.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{Kind, KmsError, KmsResult};
use crate::json::Req;
use crate::keys::key_of;
use crate::model::{DISABLED, ENABLED, KeyDoc, MaterialMeta, PENDING_DELETION, PENDING_IMPORT};
use crate::service::{CachedKey, Kms};
use kura_store::ObjectChange;

const DAY: i64 = 86_400;
/// `RotationPeriodInDays` when the request names none.
pub(crate) const DEFAULT_PERIOD_DAYS: i64 = 365;
const MIN_PERIOD_DAYS: i64 = 90;
const MAX_PERIOD_DAYS: i64 = 2560;
/// On-demand rotations a key may have in its lifetime.
pub(crate) const MAX_ON_DEMAND: usize = 25;
/// `RotationType` of a rotation made because the key's rotation date passed.
pub(crate) const AUTOMATIC: &str = "AUTOMATIC";
/// `RotationType` of a rotation asked for with RotateKeyOnDemand.
pub(crate) const ON_DEMAND: &str = "ON_DEMAND";
/// Bytes of symmetric key material.
const SYMMETRIC_LEN: usize = 32;

/// Whether `doc` is a symmetric encryption key (any origin).
fn symmetric_encryption(doc: &KeyDoc) -> bool {
    doc.is_symmetric() && doc.key_usage == "ENCRYPT_DECRYPT"
}

/// Whether kura rotates `doc`'s material: symmetric encryption keys whose material kura
/// made (AWS_KMS origin).
fn rotatable(doc: &KeyDoc) -> bool {
    symmetric_encryption(doc) && doc.origin == "AWS_KMS"
}

/// UnsupportedOperationException unless `doc` is a rotatable key.
fn require_rotatable(kms: &Kms, doc: &KeyDoc) -> KmsResult<()> {
    if rotatable(doc) {
        return Ok(());
    }
    Err(KmsError::new(
        Kind::UnsupportedOperation,
        format!(
            "{} does not support key rotation: only symmetric encryption keys with AWS_KMS origin rotate (this key has KeySpec {}, KeyUsage {}, Origin {})",
            kms.key_arn(&doc.id),
            doc.key_spec,
            doc.key_usage,
            doc.origin
        ),
    ))
}

/// The key-state rules for changing rotation: Disabled → DisabledException, every other
/// state but Enabled → KMSInvalidStateException.
fn require_enabled(kms: &Kms, doc: &KeyDoc) -> KmsResult<()> {
    let arn = kms.key_arn(&doc.id);
    match doc.state.as_str() {
        ENABLED => Ok(()),
        DISABLED => Err(KmsError::new(Kind::Disabled, format!("{arn} is disabled."))),
        PENDING_DELETION => Err(KmsError::new(
            Kind::InvalidState,
            format!("{arn} is pending deletion."),
        )),
        PENDING_IMPORT => Err(KmsError::new(
            Kind::InvalidState,
            format!("{arn} is pending import."),
        )),
        other => Err(KmsError::new(
            Kind::InvalidState,
            format!("{arn} is {other}."),
        )),
    }
}

/// The request's key id (no aliases: the rotation operations take a key id or ARN only).
fn key_id(kms: &Kms, r: &Req) -> KmsResult<String> {
    kms.resolve(r.req_str("KeyId", 1, 2048)?, false)
}

/// Adds new random material to `doc` and makes it current; returns the object to create in
/// the same transaction.
fn add_material(
    kms: &Kms,
    doc: &mut KeyDoc,
    rotation_type: &str,
    now: i64,
) -> KmsResult<ObjectChange> {
    let bytes = kura_crypto::SecretBytes::generate(SYMMETRIC_LEN).map_err(KmsError::internal)?;
    let (mid, sealed) = kms.new_material(&doc.id, bytes.expose_secret())?;
    doc.materials.push(MaterialMeta {
        id: mid.clone(),
        created: now,
        rotation_type: Some(rotation_type.to_string()),
    });
    doc.current_material = Some(mid.clone());
    Ok(kms.material_object(&doc.id, &mid, sealed))
}

/// Whether `doc` is due for automatic rotation at `now`. Keys that are disabled or pending
/// deletion wait: they rotate once enabled again.
pub(crate) fn due(doc: &KeyDoc, now: i64) -> bool {
    doc.rotation_enabled
        && doc.state == ENABLED
        && rotatable(doc)
        && doc.next_rotation.is_some_and(|n| n <= now)
}

/// Rotates key `id` automatically if it is (still) due at `now`. Returns whether this call
/// rotated it; `false` when it was not due or another writer rotated it first.
pub(crate) fn rotate_automatically(kms: &Kms, id: &str, now: i64) -> KmsResult<bool> {
    let mut not_due = false;
    let r = kms.update_key(id, |doc| {
        not_due = !due(doc, now);
        if not_due {
            // Abandons the update without writing (mapped to `Ok(false)` below).
            return Err(KmsError::new(Kind::InvalidState, "not due for rotation"));
        }
        let change = add_material(kms, doc, AUTOMATIC, now)?;
        let period = doc.rotation_period_days.unwrap_or(DEFAULT_PERIOD_DAYS) * DAY;
        // Keep the schedule (rotation date + period) unless the key waited longer than a
        // whole period (disabled, or the server was down): then count from now.
        let mut next = doc.next_rotation.unwrap_or(now).saturating_add(period);
        if next <= now {
            next = now.saturating_add(period);
        }
        doc.next_rotation = Some(next);
        Ok(vec![change])
    });
    match r {
        Ok(doc) => {
            tracing::info!(
                key = %id,
                material = doc.current_material.as_deref().unwrap_or(""),
                "key material rotated automatically"
            );
            Ok(true)
        }
        Err(_) if not_due => Ok(false),
        Err(e) => Err(e),
    }
}

/// If `k` is due for automatic rotation, rotates it and returns the key as it now is (with
/// the new material current); `None` when nothing changed.
pub(crate) fn rotate_if_due(kms: &Kms, k: &CachedKey) -> KmsResult<Option<Arc<CachedKey>>> {
    let now = kms.now();
    if !due(&k.doc, now) {
        return Ok(None);
    }
    rotate_automatically(kms, &k.doc.id, now)?;
    kms.key(&k.doc.id).map(Some)
}

/// The sweep's part: rotates `doc`'s key if due. A failure is logged, not returned, so one
/// key cannot stop the sweep of the others.
pub(crate) fn sweep(kms: &Kms, doc: &KeyDoc, now: i64) -> bool {
    if !due(doc, now) {
        return false;
    }
    match rotate_automatically(kms, &doc.id, now) {
        Ok(rotated) => rotated,
        Err(e) => {
            tracing::warn!(key = %doc.id, error = %e, "automatic rotation failed");
            false
        }
    }
}

pub(crate) fn enable(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let period = r
        .int("RotationPeriodInDays", MIN_PERIOD_DAYS, MAX_PERIOD_DAYS)?
        .unwrap_or(DEFAULT_PERIOD_DAYS);
    let id = key_id(kms, r)?;
    let now = kms.now();
    kms.update_key(&id, |doc| {
        require_rotatable(kms, doc)?;
        require_enabled(kms, doc)?;
        let next = match (
            doc.rotation_enabled,
            doc.next_rotation,
            doc.rotation_period_days,
        ) {
            // Already on: a new period counts from the last rotation (or from enabling),
            // as AWS does; a date already past makes the key rotate at once.
            (true, Some(n), Some(p)) => n - p * DAY + period * DAY,
            _ => now + period * DAY,
        };
        doc.rotation_enabled = true;
        doc.rotation_period_days = Some(period);
        doc.next_rotation = Some(next);
        Ok(Vec::new())
    })?;
    tracing::info!(key = %id, period_days = period, "automatic key rotation enabled");
    Ok(json!({}))
}

pub(crate) fn disable(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let id = key_id(kms, r)?;
    kms.update_key(&id, |doc| {
        require_rotatable(kms, doc)?;
        require_enabled(kms, doc)?;
        doc.rotation_enabled = false;
        doc.rotation_period_days = None;
        doc.next_rotation = None;
        Ok(Vec::new())
    })?;
    tracing::info!(key = %id, "automatic key rotation disabled");
    Ok(json!({}))
}

pub(crate) fn status(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let k = key_of(kms, r, false)?;
    require_rotatable(kms, &k.doc)?;
    let k = rotate_if_due(kms, &k)?.unwrap_or(k);
    let d = &k.doc;
    let mut v = json!({ "KeyRotationEnabled": d.rotation_enabled, "KeyId": d.id });
    if d.rotation_enabled
        && let Some(o) = v.as_object_mut()
    {
        o.insert(
            "RotationPeriodInDays".into(),
            json!(d.rotation_period_days.unwrap_or(DEFAULT_PERIOD_DAYS)),
        );
        if let Some(n) = d.next_rotation {
            o.insert("NextRotationDate".into(), json!(n));
        }
    }
    Ok(v)
}

pub(crate) fn rotate_on_demand(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let id = key_id(kms, r)?;
    let now = kms.now();
    let doc = kms.update_key(&id, |doc| {
        require_rotatable(kms, doc)?;
        require_enabled(kms, doc)?;
        let done = doc
            .materials
            .iter()
            .filter(|m| m.rotation_type.as_deref() == Some(ON_DEMAND))
            .count();
        if done >= MAX_ON_DEMAND {
            return Err(KmsError::new(
                Kind::LimitExceeded,
                format!(
                    "{} has had the maximum of {MAX_ON_DEMAND} on-demand rotations",
                    kms.key_arn(&doc.id)
                ),
            ));
        }
        // On-demand rotation leaves the automatic schedule as it is.
        Ok(vec![add_material(kms, doc, ON_DEMAND, now)?])
    })?;
    tracing::info!(
        key = %id,
        material = doc.current_material.as_deref().unwrap_or(""),
        "key material rotated on demand"
    );
    Ok(json!({ "KeyId": id }))
}

pub(crate) fn list(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let all = r.enum_str(
        "IncludeKeyMaterial",
        &["ALL_KEY_MATERIAL", "ROTATIONS_ONLY"],
    )? == Some("ALL_KEY_MATERIAL");
    let limit = r.int("Limit", 1, 1000)?.unwrap_or(100) as usize;
    let marker = r.opt_str("Marker", 1, 1024)?;
    let k = key_of(kms, r, false)?;
    if !symmetric_encryption(&k.doc) {
        return Err(KmsError::new(
            Kind::UnsupportedOperation,
            format!(
                "{} has KeySpec {}: only symmetric encryption keys have rotations",
                kms.key_arn(&k.doc.id),
                k.doc.key_spec
            ),
        ));
    }
    let k = rotate_if_due(kms, &k)?.unwrap_or(k);
    let d = &k.doc;
    let listed: Vec<&MaterialMeta> = d
        .materials
        .iter()
        .filter(|m| all || m.rotation_type.is_some())
        .collect();
    let start = match marker {
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= listed.len())
            .ok_or_else(|| KmsError::new(Kind::InvalidMarker, "Invalid marker"))?,
        None => 0,
    };
    let rotations: Vec<Value> = listed
        .iter()
        .skip(start)
        .take(limit)
        .map(|m| entry(d, m))
        .collect();
    let truncated = start + limit < listed.len();
    let mut v = json!({ "Rotations": rotations, "Truncated": truncated });
    if truncated && let Some(o) = v.as_object_mut() {
        o.insert("NextMarker".into(), json!((start + limit).to_string()));
    }
    Ok(v)
}

/// One `Rotations` entry.
fn entry(d: &KeyDoc, m: &MaterialMeta) -> Value {
    let state = if d.current_material.as_deref() == Some(m.id.as_str()) {
        "CURRENT"
    } else {
        "NON_CURRENT"
    };
    let mut e = json!({
        "KeyId": d.id,
        "KeyMaterialId": m.id,
        "KeyMaterialState": state,
    });
    if let (Some(t), Some(o)) = (&m.rotation_type, e.as_object_mut()) {
        o.insert("RotationDate".into(), json!(m.created));
        o.insert("RotationType".into(), json!(t));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key document as stored (built from JSON so that fields added later with serde
    /// defaults do not break the test).
    fn doc() -> KeyDoc {
        serde_json::from_value(serde_json::json!({
            "id": "k", "created": 0, "description": "", "key_spec": "SYMMETRIC_DEFAULT",
            "key_usage": "ENCRYPT_DECRYPT", "origin": "AWS_KMS", "state": ENABLED,
            "deletion_date": null, "pending_window_days": null, "policy": "", "tags": [],
            "rotation_enabled": true, "rotation_period_days": 90, "next_rotation": 100,
            "materials": [], "current_material": null, "valid_to": null,
            "expiration_model": null
        }))
        .unwrap()
    }

    #[test]
    fn due_only_for_enabled_symmetric_kms_keys_past_their_date() {
        let d = doc();
        assert!(!due(&d, 99));
        assert!(due(&d, 100));
        let mut off = d.clone();
        off.rotation_enabled = false;
        assert!(!due(&off, 1000));
        let mut disabled = d.clone();
        disabled.state = DISABLED.into();
        assert!(!due(&disabled, 1000));
        let mut external = d.clone();
        external.origin = "EXTERNAL".into();
        assert!(!due(&external, 1000));
        let mut hmac = d;
        hmac.key_spec = "HMAC_256".into();
        assert!(!due(&hmac, 1000));
    }

    #[test]
    fn entries_name_their_state_and_only_rotations_have_dates() {
        let mut d = doc();
        let meta = |v: Value| -> MaterialMeta { serde_json::from_value(v).unwrap() };
        let first = meta(json!({"id": "a", "created": 1, "rotation_type": null}));
        let second = meta(json!({"id": "b", "created": 2, "rotation_type": ON_DEMAND}));
        d.current_material = Some("b".into());
        let e = entry(&d, &first);
        assert_eq!(e["KeyMaterialState"], "NON_CURRENT");
        assert!(e.get("RotationDate").is_none() && e.get("RotationType").is_none());
        let e = entry(&d, &second);
        assert_eq!(e["KeyMaterialState"], "CURRENT");
        assert_eq!(
            (e["RotationType"].as_str(), e["RotationDate"].as_i64()),
            (Some(ON_DEMAND), Some(2))
        );
    }
}
