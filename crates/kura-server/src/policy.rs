//! Key policies: the AWS IAM JSON policy language, parsed and evaluated.
//!
//! A key policy is the only thing that authorises a request for a key: kura has no IAM
//! identity policies, so the account root principal (`arn:aws:iam::<acct>:root`, or the
//! bare account id) stands for every user of that account, exactly as the default policy
//! intends.
//!
//! - [`Policy::parse`] reads a document (`Version`, `Id`, `Statement`; each statement with
//!   `Sid`, `Effect`, `Principal`/`NotPrincipal`, `Action`/`NotAction`,
//!   `Resource`/`NotResource`, `Condition`) and refuses anything it would not enforce —
//!   unknown fields, unknown or unsupported condition operators, duplicate JSON keys —
//!   with a [`Kind::MalformedPolicyDocument`] error naming the statement and the fault.
//! - [`Policy::evaluate`] answers one [`Access`]: an explicit `Deny` in any statement that
//!   applies wins, else an `Allow` that applies allows, else the request is implicitly
//!   denied.
//!
//! Matching follows AWS: actions are case-insensitive with `*`/`?` wildcards; resources are
//! case-sensitive with wildcards; principals are `"*"`, an account (root ARN or 12-digit
//! id) or an exact ARN (a wildcard inside a principal ARN is a literal character, as AWS
//! allows no partial wildcards there); `Service` and `Federated` principals never match a
//! kura user. Conditions (see `policy/condition.rs`) combine with AND across operators and
//! keys and OR across the values of one key. In `"Version": "2012-10-17"` documents,
//! resources and string/ARN condition values may use policy variables such as
//! `${aws:username}`, `${kms:CallerAccount}` and the escapes `${*}`, `${?}`, `${$}`.

use std::collections::BTreeMap;

use crate::error::{Kind, KmsError, KmsResult};

mod condition;
mod parse;
mod pattern;

#[cfg(test)]
mod tests;

use condition::Condition;
use pattern::{Template, Tok};

/// A parsed key policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    statements: Vec<Statement>,
}

/// One request to authorise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access<'a> {
    /// The caller, e.g. `arn:aws:iam::111122223333:user/alice`.
    pub(crate) principal: &'a str,
    /// The server's account id, e.g. `111122223333` (the key's account).
    pub(crate) account: &'a str,
    /// The action, e.g. `kms:Encrypt`.
    pub(crate) action: &'a str,
    /// The key ARN, `arn:aws:kms:<region>:<account>:key/<id>`.
    pub(crate) resource: &'a str,
    /// The request's encryption context (empty when it has none).
    pub(crate) encryption_context: &'a BTreeMap<String, String>,
    /// Further condition keys, e.g. `("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")`; a
    /// name given more than once is a multi-valued key. Names are case-insensitive.
    pub(crate) extra: &'a [(&'a str, &'a str)],
}

/// The answer to an [`Access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A statement allows the request and none denies it.
    Allow,
    /// A `Deny` statement applies.
    ExplicitDeny,
    /// No statement allows the request.
    ImplicitDeny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// `Principal`, `Action` or `Resource` (`not == false`), or their `Not…` forms.
#[derive(Debug, Clone)]
struct Element<T> {
    not: bool,
    items: Vec<T>,
}

impl<T> Element<T> {
    /// Whether the element admits the request, given how one item matches it.
    fn admits(&self, matches: impl Fn(&T) -> bool) -> bool {
        self.items.iter().any(matches) != self.not
    }
}

/// One principal named by a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    /// `"*"`: anyone.
    Anyone,
    /// Every principal of an account (`arn:aws:iam::<acct>:root` or `<acct>`).
    Account(String),
    /// Exactly this principal ARN.
    Arn(String),
    /// A `Service` or `Federated` principal: never a kura user.
    Other(String),
}

impl Principal {
    fn matches(&self, req: &Access<'_>) -> bool {
        match self {
            Self::Anyone => true,
            Self::Account(a) => req.principal_account() == Some(a.as_str()),
            Self::Arn(arn) => arn == req.principal,
            Self::Other(_) => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    principals: Element<Principal>,
    actions: Element<Vec<Tok>>,
    resources: Element<Template>,
    conditions: Vec<Condition>,
}

impl Statement {
    fn applies(&self, req: &Access<'_>) -> bool {
        self.principals.admits(|p| p.matches(req))
            && self.actions.admits(|a| pattern::glob(a, req.action, true))
            && self.resources.admits(|r| {
                r.expand(&|k| req.single(k))
                    .is_some_and(|toks| pattern::glob(&toks, req.resource, false))
            })
            && self.conditions.iter().all(|c| c.holds(req))
    }
}

impl Policy {
    /// Parses a policy document; errors are [`Kind::MalformedPolicyDocument`] with a
    /// message naming what is wrong (e.g. "Statement 2: Effect must be Allow or Deny").
    pub(crate) fn parse(doc: &str) -> KmsResult<Self> {
        parse::policy(doc).map_err(|m| KmsError::new(Kind::MalformedPolicyDocument, m))
    }

    /// Decides `req`: an explicit deny wins over any allow; no allow is an implicit deny.
    pub(crate) fn evaluate(&self, req: &Access<'_>) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(req) {
                match s.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

/// The fields of an ARN, `arn:partition:service:region:account:resource`.
fn arn_fields(arn: &str) -> Option<[&str; 6]> {
    let mut it = arn.splitn(6, ':');
    let f = [
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    ];
    (f[0] == "arn").then_some(f)
}

impl<'a> Access<'a> {
    /// The caller's account: the account field of its ARN.
    fn principal_account(&self) -> Option<&'a str> {
        arn_fields(self.principal)
            .map(|f| f[4])
            .filter(|a| !a.is_empty())
    }

    /// The user name of an IAM user principal (`…:user/path/name` → `name`).
    fn user_name(&self) -> Option<&'a str> {
        let f = arn_fields(self.principal)?;
        let path = f[5].strip_prefix("user/").filter(|_| f[2] == "iam")?;
        path.rsplit('/').next().filter(|n| !n.is_empty())
    }

    fn principal_type(&self) -> Option<&'static str> {
        let f = arn_fields(self.principal)?;
        match (f[2], f[5]) {
            ("iam", "root") => Some("Account"),
            ("iam", r) if r.starts_with("user/") => Some("User"),
            ("iam", r) if r.starts_with("role/") => Some("Role"),
            ("sts", r) if r.starts_with("assumed-role/") => Some("AssumedRole"),
            _ => None,
        }
    }

    /// The values of condition key `key` (case-insensitive); empty when the request has
    /// none. Keys kura computes itself are never taken from `extra`.
    fn values(&self, key: &str) -> Vec<&'a str> {
        let key = key.to_lowercase();
        if let Some(ck) = key.strip_prefix("kms:encryptioncontext:") {
            return self
                .encryption_context
                .iter()
                .filter(|(k, _)| k.to_lowercase() == ck)
                .map(|(_, v)| v.as_str())
                .collect();
        }
        let one = |v: Option<&'a str>| v.into_iter().collect();
        match key.as_str() {
            "kms:encryptioncontextkeys" => {
                self.encryption_context.keys().map(String::as_str).collect()
            }
            "kms:calleraccount" | "aws:principalaccount" => one(self.principal_account()),
            "aws:principalarn" => one(Some(self.principal)),
            "aws:username" => one(self.user_name()),
            "aws:principaltype" => one(self.principal_type()),
            "aws:resourceaccount" => one(Some(self.account).filter(|a| !a.is_empty())),
            _ => self
                .extra
                .iter()
                .filter(|(k, _)| k.to_lowercase() == key)
                .map(|(_, v)| *v)
                .collect(),
        }
    }

    /// The value of a single-valued key, for a policy variable.
    fn single(&self, key: &str) -> Option<String> {
        match self.values(key).as_slice() {
            [v] => Some((*v).to_string()),
            _ => None,
        }
    }
}
