//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Kind, KmsError, KmsResult};
use crate::json::Req;
use crate::model::{KIND_ALIAS, PENDING_DELETION};
use crate::service::Kms;
use kura_store::ObjectChange;

/// What an alias names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AliasDoc {
    pub(crate) target: String,
    pub(crate) created: i64,
    pub(crate) updated: i64,
}

/// The aliases that point at `key_id`.
pub(crate) fn aliases_of(kms: &Kms, key_id: &str) -> KmsResult<Vec<String>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = kms
            .store
            .list(KIND_ALIAS, "alias/", after.as_deref(), 500)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for o in page {
            let a: AliasDoc = serde_json::from_str(&o.doc).map_err(KmsError::internal)?;
            if a.target == key_id {
                out.push(o.id);
            }
        }
    }
    Ok(out)
}

fn alias_name(r: &Req) -> KmsResult<String> {
    let name = r.req_str("AliasName", 1, 256)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_-:".contains(c))
    {
        return Err(KmsError::validation(
            name,
            "aliasName",
            "satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ));
    }
    if !name.starts_with("alias/") || name.len() <= "alias/".len() {
        return Err(KmsError::new(
            Kind::InvalidAliasName,
            format!("Alias must start with the prefix \"alias/\": {name}"),
        ));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::new(
            Kind::InvalidAliasName,
            "Cannot create alias with prefix 'alias/aws/'".to_string(),
        ));
    }
    Ok(name.to_string())
}

/// The key an alias may point at: an existing key, not an alias, not pending deletion.
fn target(kms: &Kms, r: &Req) -> KmsResult<String> {
    let id = kms.resolve(r.req_str("TargetKeyId", 1, 2048)?, false)?;
    let k = kms.key(&id)?;
    if k.doc.state == PENDING_DELETION {
        return Err(KmsError::new(
            Kind::InvalidState,
            format!("{} is pending deletion.", kms.key_arn(&id)),
        ));
    }
    Ok(id)
}

pub(crate) fn create(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let name = alias_name(r)?;
    let target = target(kms, r)?;
    let now = kms.now();
    let doc = AliasDoc {
        target,
        created: now,
        updated: now,
    };
    match kms.store.apply(&[ObjectChange::Create {
        kind: KIND_ALIAS.into(),
        id: name.clone(),
        doc: serde_json::to_string(&doc).map_err(KmsError::internal)?,
        blob: Vec::new(),
    }]) {
        Ok(()) => Ok(json!({})),
        Err(kura_store::Error::AlreadyExists { .. }) => Err(KmsError::new(
            Kind::AlreadyExists,
            format!(
                "An alias with the name {} already exists",
                kms.alias_arn(&name)
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

fn existing(kms: &Kms, name: &str) -> KmsResult<(kura_store::Object, AliasDoc)> {
    let o = kms.store.get(KIND_ALIAS, name)?.ok_or_else(|| {
        KmsError::new(
            Kind::NotFound,
            format!("Alias {} is not found.", kms.alias_arn(name)),
        )
    })?;
    let d: AliasDoc = serde_json::from_str(&o.doc).map_err(KmsError::internal)?;
    Ok((o, d))
}

pub(crate) fn update(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let name = alias_name(r)?;
    let target = target(kms, r)?;
    let (o, mut d) = existing(kms, &name)?;
    let (old, new) = (kms.key(&d.target)?, kms.key(&target)?);
    if old.doc.key_usage != new.doc.key_usage || old.doc.is_symmetric() != new.doc.is_symmetric() {
        return Err(KmsError::new(
            Kind::Validation,
            format!(
                "{} has key usage {} and spec {}, but the alias points at a key of usage {} and spec {}; an alias keeps its key type",
                kms.key_arn(&target),
                new.doc.key_usage,
                new.doc.key_spec,
                old.doc.key_usage,
                old.doc.key_spec
            ),
        ));
    }
    d.target = target;
    d.updated = kms.now();
    kms.store.apply(&[ObjectChange::Update {
        kind: KIND_ALIAS.into(),
        id: name,
        version: o.version,
        doc: serde_json::to_string(&d).map_err(KmsError::internal)?,
        blob: Vec::new(),
    }])?;
    Ok(json!({}))
}

pub(crate) fn delete(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let name = alias_name(r)?;
    existing(kms, &name)?;
    kms.store.apply(&[ObjectChange::Delete {
        kind: KIND_ALIAS.into(),
        id: name,
    }])?;
    Ok(json!({}))
}

pub(crate) fn list(kms: &Kms, r: &Req) -> KmsResult<Value> {
    let limit = r.int("Limit", 1, 100)?.unwrap_or(50) as usize;
    let filter = match r.opt_str("KeyId", 1, 2048)? {
        Some(k) => Some(kms.resolve(k, false)?),
        None => None,
    };
    let marker = r.opt_str("Marker", 1, 1024)?;
    let mut out = Vec::new();
    let mut after = marker.map(str::to_string);
    let mut truncated = false;
    'pages: loop {
        let page = kms
            .store
            .list(KIND_ALIAS, "alias/", after.as_deref(), 200)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for o in page {
            let d: AliasDoc = serde_json::from_str(&o.doc).map_err(KmsError::internal)?;
            if filter.as_ref().is_some_and(|f| *f != d.target) {
                continue;
            }
            if out.len() == limit {
                truncated = true;
                break 'pages;
            }
            out.push((o.id, d));
        }
    }
    let aliases: Vec<Value> = out
        .iter()
        .map(|(name, d)| {
            json!({
                "AliasName": name,
                "AliasArn": kms.alias_arn(name),
                "TargetKeyId": d.target,
                "CreationDate": d.created,
                "LastUpdatedDate": d.updated,
            })
        })
        .collect();
    let mut v = json!({ "Aliases": aliases, "Truncated": truncated });
    if truncated && let (Some(obj), Some((last, _))) = (v.as_object_mut(), out.last()) {
        obj.insert("NextMarker".into(), json!(last));
    }
    Ok(v)
}
