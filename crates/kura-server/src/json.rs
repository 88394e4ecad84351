//! Reading request members with AWS's validation wording.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::{Kind, KmsError, KmsResult};

/// A request body: a JSON object.
pub(crate) struct Req(Map<String, Value>);

/// `KeyId` → `keyId`, as AWS names members in validation messages.
fn camel(member: &str) -> String {
    let mut c = member.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn wrong_type(member: &str, expected: &str) -> KmsError {
    KmsError::new(
        Kind::Serialization,
        format!("Start of structure or map found where not expected: {member} must be {expected}"),
    )
}

impl Req {
    /// Parses a body (`{}` when empty).
    pub(crate) fn parse(body: &[u8]) -> KmsResult<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Map::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Self(m)),
            _ => Err(KmsError::new(
                Kind::Serialization,
                "The request body is not a JSON object",
            )),
        }
    }

    fn get(&self, member: &str) -> Option<&Value> {
        self.0.get(member).filter(|v| !v.is_null())
    }

    /// An optional string member.
    pub(crate) fn str(&self, member: &str) -> KmsResult<Option<&str>> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(member, "a string")),
        }
    }

    /// A required string member of length `min..=max`.
    pub(crate) fn req_str(&self, member: &str, min: usize, max: usize) -> KmsResult<&str> {
        let s = self
            .str(member)?
            .ok_or_else(|| KmsError::missing(&camel(member)))?;
        check_len(s, member, s.chars().count(), min, max)?;
        Ok(s)
    }

    /// An optional string member of length `min..=max`.
    pub(crate) fn opt_str(&self, member: &str, min: usize, max: usize) -> KmsResult<Option<&str>> {
        match self.str(member)? {
            None => Ok(None),
            Some(s) => {
                check_len(s, member, s.chars().count(), min, max)?;
                Ok(Some(s))
            }
        }
    }

    /// An optional member that must be one of `allowed`.
    pub(crate) fn enum_str(&self, member: &str, allowed: &[&str]) -> KmsResult<Option<&str>> {
        match self.str(member)? {
            None => Ok(None),
            Some(s) if allowed.contains(&s) => Ok(Some(s)),
            Some(s) => Err(KmsError::validation(
                s,
                &camel(member),
                &format!("satisfy enum value set: [{}]", allowed.join(", ")),
            )),
        }
    }

    /// An optional blob member (base64), of `min..=max` decoded bytes.
    pub(crate) fn blob(&self, member: &str, min: usize, max: usize) -> KmsResult<Option<Vec<u8>>> {
        let Some(s) = self.str(member)? else {
            return Ok(None);
        };
        let b = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| {
                KmsError::new(Kind::Serialization, format!("{member} is not valid base64"))
            })?;
        check_len("<blob>", member, b.len(), min, max)?;
        Ok(Some(b))
    }

    /// A required blob member.
    pub(crate) fn req_blob(&self, member: &str, min: usize, max: usize) -> KmsResult<Vec<u8>> {
        self.blob(member, min, max)?
            .ok_or_else(|| KmsError::missing(&camel(member)))
    }

    /// An optional integer member in `min..=max`.
    pub(crate) fn int(&self, member: &str, min: i64, max: i64) -> KmsResult<Option<i64>> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let v = n.as_i64().ok_or_else(|| wrong_type(member, "an integer"))?;
                if v < min {
                    return Err(KmsError::validation(
                        v,
                        &camel(member),
                        &format!("have value greater than or equal to {min}"),
                    ));
                }
                if v > max {
                    return Err(KmsError::validation(
                        v,
                        &camel(member),
                        &format!("have value less than or equal to {max}"),
                    ));
                }
                Ok(Some(v))
            }
            Some(_) => Err(wrong_type(member, "a number")),
        }
    }

    /// An optional timestamp member: Unix seconds, which the SDKs send as an integer or,
    /// with a fraction, as a float (the fraction is dropped).
    pub(crate) fn timestamp(&self, member: &str) -> KmsResult<Option<i64>> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.abs() < 1e15)
                        .map(|f| f.floor() as i64)
                })
                .map(Some)
                .ok_or_else(|| wrong_type(member, "a timestamp")),
            Some(_) => Err(wrong_type(member, "a timestamp")),
        }
    }

    /// An optional boolean member.
    pub(crate) fn bool(&self, member: &str) -> KmsResult<Option<bool>> {
        match self.get(member) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(member, "a boolean")),
        }
    }

    /// An optional map of strings to strings (an encryption context).
    pub(crate) fn string_map(&self, member: &str) -> KmsResult<BTreeMap<String, String>> {
        match self.get(member) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(wrong_type(member, "a map of strings")),
                })
                .collect(),
            Some(_) => Err(wrong_type(member, "a map")),
        }
    }

    /// An optional list of objects.
    pub(crate) fn list(&self, member: &str) -> KmsResult<Vec<&Map<String, Value>>> {
        match self.get(member) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_object()
                        .ok_or_else(|| wrong_type(member, "a list of structures"))
                })
                .collect(),
            Some(_) => Err(wrong_type(member, "a list")),
        }
    }

    /// An optional list of strings.
    pub(crate) fn string_list(&self, member: &str) -> KmsResult<Vec<String>> {
        match self.get(member) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| wrong_type(member, "a list of strings"))
                })
                .collect(),
            Some(_) => Err(wrong_type(member, "a list")),
        }
    }
}

/// Length check with AWS's wording.
pub(crate) fn check_len(
    shown: &str,
    member: &str,
    len: usize,
    min: usize,
    max: usize,
) -> KmsResult<()> {
    if len < min {
        return Err(KmsError::validation(
            shown,
            &camel(member),
            &format!("have length greater than or equal to {min}"),
        ));
    }
    if len > max {
        return Err(KmsError::validation(
            shown,
            &camel(member),
            &format!("have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// The enum value sets `parts` joined into one, in order, for [`Req::enum_str`] (`N` is
/// the total length; a wrong `N` fails to compile).
pub(crate) const fn concat<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut n) = (0, 0);
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            out[n] = parts[i][j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(n == N, "concat: N is not the total length");
    out
}

/// Base64 of a blob for a response.
pub(crate) fn b64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_messages() {
        let r = Req::parse(br#"{"KeyId":"abc","Limit":0,"Plaintext":"aGk=","Bad":1}"#).unwrap();
        assert_eq!(r.req_str("KeyId", 1, 2048).unwrap(), "abc");
        let e = r.int("Limit", 1, 1000).unwrap_err();
        assert_eq!(
            e.message,
            "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
        assert_eq!(r.req_blob("Plaintext", 1, 4096).unwrap(), b"hi");
        let e = r.req_str("Description", 0, 10).unwrap_err();
        assert!(
            e.message.contains("Value null at 'description'"),
            "{}",
            e.message
        );
        assert_eq!(r.str("Bad").unwrap_err().kind, Kind::Serialization);
        assert!(Req::parse(b"").is_ok());
        assert!(Req::parse(b"[1]").is_err());
    }
}
