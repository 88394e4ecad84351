//! Reading a policy document, refusing whatever kura would not enforce as written.
//!
//! Errors are plain messages; [`Policy::parse`] makes them `MalformedPolicyDocument`.
//! Statement errors start with `Statement <n>: ` (counting from 1).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::condition::{Condition, Operator, Test};
use super::pattern::{Template, Tok, tokens};
use super::{Effect, Element, Policy, Principal, Statement, arn_fields};

const STATEMENT_FIELDS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

/// Parses a whole document.
pub(super) fn policy(doc: &str) -> Result<Policy, String> {
    let Strict(v) =
        serde_json::from_str(doc).map_err(|e| format!("The policy is not valid JSON: {e}"))?;
    let Value::Object(top) = v else {
        return Err("The policy must be a JSON object with Version and Statement".into());
    };
    if let Some(k) = top
        .keys()
        .find(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement"))
    {
        return Err(format!(
            "Unknown policy field \"{k}\"; a policy has Version, Id and Statement"
        ));
    }
    // Policy variables exist only in the 2012-10-17 language; without a Version the
    // document is read as 2008-10-17, as AWS does.
    let variables = match top.get("Version") {
        None => false,
        Some(Value::String(v)) if v == "2012-10-17" => true,
        Some(Value::String(v)) if v == "2008-10-17" => false,
        Some(v) => {
            return Err(format!(
                "Version must be \"2012-10-17\" or \"2008-10-17\", not {v}"
            ));
        }
    };
    if top.get("Id").is_some_and(|id| !id.is_string()) {
        return Err("Id must be a string".into());
    }
    let list: Vec<&Value> = match top.get("Statement") {
        None => return Err("The policy has no Statement".into()),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        Some(_) => return Err("Statement must be an object or an array of objects".into()),
    };
    if list.is_empty() {
        return Err("Statement is empty; a policy needs at least one statement".into());
    }
    let statements = list
        .iter()
        .enumerate()
        .map(|(i, s)| statement(s, variables).map_err(|m| format!("Statement {}: {m}", i + 1)))
        .collect::<Result<_, _>>()?;
    Ok(Policy { statements })
}

fn statement(v: &Value, variables: bool) -> Result<Statement, String> {
    let Value::Object(s) = v else {
        return Err("a statement must be a JSON object".into());
    };
    if let Some(k) = s.keys().find(|k| !STATEMENT_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field \"{k}\"; a statement has Sid, Effect, Principal or NotPrincipal, \
             Action or NotAction, Resource or NotResource, and Condition"
        ));
    }
    if s.get("Sid").is_some_and(|id| !id.is_string()) {
        return Err("Sid must be a string".into());
    }
    let effect = match s.get("Effect") {
        None => return Err("Effect is missing; it must be Allow or Deny".into()),
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(e) => return Err(format!("Effect must be Allow or Deny, not {e}")),
    };

    let (not, name, v) = pick(s, "Principal", "NotPrincipal")?;
    let principals = Element {
        not,
        items: principals(v, name)?,
    };

    let (not, name, v) = pick(s, "Action", "NotAction")?;
    let items = strings(v, name)?
        .into_iter()
        .map(|a| action(a, name))
        .collect::<Result<_, _>>()?;
    let actions = Element { not, items };

    let (not, name, v) = pick(s, "Resource", "NotResource")?;
    let items = strings(v, name)?
        .into_iter()
        .map(|r| resource(r, name, variables))
        .collect::<Result<_, _>>()?;
    let resources = Element { not, items };

    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(c) => conditions(c, variables)?,
    };
    Ok(Statement {
        effect,
        principals,
        actions,
        resources,
        conditions,
    })
}

/// The one of `yes`/`no` the statement gives: (negated, its name, its value).
fn pick<'v>(
    s: &'v Map<String, Value>,
    yes: &'static str,
    no: &'static str,
) -> Result<(bool, &'static str, &'v Value), String> {
    match (s.get(yes), s.get(no)) {
        (Some(v), None) => Ok((false, yes, v)),
        (None, Some(v)) => Ok((true, no, v)),
        (Some(_), Some(_)) => Err(format!("give {yes} or {no}, not both")),
        (None, None) => Err(format!("{yes} or {no} is required")),
    }
}

/// A string or a non-empty array of strings.
fn strings<'v>(v: &'v Value, what: &str) -> Result<Vec<&'v str>, String> {
    let bad = || format!("{what} must be a string or an array of strings");
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(a) if a.is_empty() => Err(format!("{what} must not be an empty array")),
        Value::Array(a) => a.iter().map(|x| x.as_str().ok_or_else(bad)).collect(),
        _ => Err(bad()),
    }
}

fn principals(v: &Value, name: &str) -> Result<Vec<Principal>, String> {
    let usage = || {
        format!(
            "{name} must be \"*\" or an object such as {{\"AWS\": \"arn:aws:iam::111122223333:root\"}}"
        )
    };
    match v {
        Value::String(s) if s == "*" => Ok(vec![Principal::Anyone]),
        Value::Object(m) if !m.is_empty() => {
            let mut out = Vec::new();
            for (kind, ids) in m {
                let what = format!("{name} {kind}");
                let aws = match kind.as_str() {
                    "AWS" => true,
                    "Service" | "Federated" => false,
                    _ => {
                        return Err(format!(
                            "{name} type \"{kind}\" is not supported; use AWS, Service or Federated"
                        ));
                    }
                };
                for id in strings(ids, &what)? {
                    let p = if aws {
                        aws_principal(id).ok_or_else(|| {
                            format!(
                                "{what} \"{id}\" is not \"*\", a 12-digit account id or an ARN such as \
                                 arn:aws:iam::111122223333:user/alice"
                            )
                        })?
                    } else if id.is_empty() {
                        return Err(format!("{what} must not be empty"));
                    } else {
                        Principal::Other(id.to_string())
                    };
                    out.push(p);
                }
            }
            Ok(out)
        }
        _ => Err(usage()),
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// An `AWS` principal: `*`, an account (id or root ARN) or an ARN taken literally.
fn aws_principal(id: &str) -> Option<Principal> {
    if id == "*" {
        return Some(Principal::Anyone);
    }
    if is_account(id) {
        return Some(Principal::Account(id.to_string()));
    }
    let f = arn_fields(id)?;
    if f[1].is_empty() || f[2].is_empty() || f[5].is_empty() {
        return None;
    }
    if f[2] == "iam" && f[5] == "root" {
        return is_account(f[4]).then(|| Principal::Account(f[4].to_string()));
    }
    Some(Principal::Arn(id.to_string()))
}

fn action(a: &str, name: &str) -> Result<Vec<Tok>, String> {
    let ok = a == "*"
        || a.split_once(':')
            .is_some_and(|(svc, act)| !svc.is_empty() && !act.is_empty());
    if !ok {
        return Err(format!(
            "{name} \"{a}\" must be \"*\" or <service>:<action>, such as kms:Encrypt"
        ));
    }
    Ok(tokens(a))
}

fn resource(r: &str, name: &str, variables: bool) -> Result<Template, String> {
    if r == "*" || r.starts_with("arn:") {
        Ok(Template::new(r, variables))
    } else {
        Err(format!("{name} \"{r}\" must be \"*\" (this key) or an ARN"))
    }
}

fn conditions(v: &Value, variables: bool) -> Result<Vec<Condition>, String> {
    let Value::Object(block) = v else {
        return Err(
            "Condition must be an object such as {\"StringEquals\": {\"kms:EncryptionContext:tenant\": \"acme\"}}"
                .into(),
        );
    };
    let mut out = Vec::new();
    for (name, keys) in block {
        let op = Operator::parse(name).map_err(|m| format!("Condition: {m}"))?;
        let Value::Object(keys) = keys else {
            return Err(format!(
                "Condition {name} must be an object of condition keys and values"
            ));
        };
        if keys.is_empty() {
            return Err(format!("Condition {name} names no condition key"));
        }
        for (key, vals) in keys {
            if !key
                .split_once(':')
                .is_some_and(|(p, n)| !p.is_empty() && !n.is_empty())
            {
                return Err(format!(
                    "Condition {name}: key \"{key}\" must be <service>:<name>, such as kms:EncryptionContext:tenant"
                ));
            }
            let vals = condition_values(vals).ok_or_else(|| {
                format!("Condition {name} {key}: give a string, number or boolean, or a non-empty array of them")
            })?;
            let mut values = Vec::with_capacity(vals.len());
            for raw in vals {
                match op.test {
                    Test::Bool | Test::Null
                        if !(raw.eq_ignore_ascii_case("true")
                            || raw.eq_ignore_ascii_case("false")) =>
                    {
                        return Err(format!(
                            "Condition {name} {key}: \"{raw}\" is neither true nor false"
                        ));
                    }
                    Test::Numeric(_) if raw.trim().parse::<f64>().is_err() => {
                        return Err(format!("Condition {name} {key}: \"{raw}\" is not a number"));
                    }
                    _ => {}
                }
                let textual = !matches!(op.test, Test::Bool | Test::Null | Test::Numeric(_));
                values.push(Template::new(&raw, variables && textual));
            }
            out.push(Condition {
                op,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

fn condition_values(v: &Value) -> Option<Vec<String>> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    match v {
        Value::Array(a) if a.is_empty() => None,
        Value::Array(a) => a.iter().map(scalar).collect(),
        v => scalar(v).map(|s| vec![s]),
    }
}

/// A JSON value read with duplicate object keys refused: `{"Effect":"Deny","Effect":"Allow"}`
/// must not quietly mean whichever a parser keeps.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate field \"{k}\"")));
            }
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(s: &str) -> Result<Value, String> {
        serde_json::from_str::<Strict>(s)
            .map(|Strict(v)| v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn strict_reads_every_json_type() {
        let v = strict(r#"{"a":[1,-2,1.5,true,null,"x"],"b":{}}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a":[1,-2,1.5,true,null,"x"],"b":{}}));
    }

    #[test]
    fn strict_refuses_duplicate_keys_at_any_depth() {
        assert!(
            strict(r#"{"a":1,"a":2}"#)
                .unwrap_err()
                .contains("duplicate field \"a\"")
        );
        assert!(
            strict(r#"{"s":[{"Effect":"Deny","Effect":"Allow"}]}"#)
                .unwrap_err()
                .contains("duplicate")
        );
    }

    #[test]
    fn aws_principal_forms() {
        assert_eq!(aws_principal("*"), Some(Principal::Anyone));
        assert_eq!(
            aws_principal("111122223333"),
            Some(Principal::Account("111122223333".into()))
        );
        assert_eq!(
            aws_principal("arn:aws:iam::111122223333:root"),
            Some(Principal::Account("111122223333".into()))
        );
        assert_eq!(
            aws_principal("arn:aws:iam::111122223333:user/alice"),
            Some(Principal::Arn(
                "arn:aws:iam::111122223333:user/alice".into()
            ))
        );
        assert_eq!(aws_principal("arn:aws:iam::12:root"), None);
        assert_eq!(aws_principal("alice"), None);
        assert_eq!(aws_principal("11112222333"), None);
        assert_eq!(aws_principal("arn:aws:iam::111122223333"), None);
        assert_eq!(aws_principal("arn:aws:iam::111122223333:"), None);
    }

    #[test]
    fn condition_values_accept_scalars_and_arrays() {
        assert_eq!(
            condition_values(&serde_json::json!("a")),
            Some(vec!["a".to_string()])
        );
        assert_eq!(
            condition_values(&serde_json::json!(true)),
            Some(vec!["true".to_string()])
        );
        assert_eq!(
            condition_values(&serde_json::json!(7)),
            Some(vec!["7".to_string()])
        );
        assert_eq!(
            condition_values(&serde_json::json!(["a", false])),
            Some(vec!["a".to_string(), "false".to_string()])
        );
        assert_eq!(condition_values(&serde_json::json!([])), None);
        assert_eq!(condition_values(&serde_json::json!(null)), None);
        assert_eq!(condition_values(&serde_json::json!({"a": "b"})), None);
        assert_eq!(condition_values(&serde_json::json!([["a"]])), None);
    }
}
