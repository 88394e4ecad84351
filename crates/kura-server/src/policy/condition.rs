//! The `Condition` element: operators, set qualifiers and `…IfExists`.
//!
//! Each `Condition` here is one operator applied to one key (a condition block holds
//! several; all must hold). The request's values for the key form a set (empty when the
//! request lacks the key):
//!
//! - a plain positive operator holds when some request value matches some policy value;
//!   a negated one (`StringNotEquals`, …) is its exact negation, so a missing key makes
//!   a positive operator false and a negated one true;
//! - `ForAnyValue:` holds when some request value passes the operator (false for an empty
//!   set); `ForAllValues:` when every one does (true for an empty set);
//! - `…IfExists` makes a missing key true;
//! - `Null` with `true` holds when the key is missing, with `false` when it is present.

use super::Access;
use super::pattern::{self, Template, Tok};

/// How the request's set of values is quantified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Qualifier {
    /// No set qualifier.
    Plain,
    /// `ForAnyValue:`.
    AnyValue,
    /// `ForAllValues:`.
    AllValues,
}

/// A numeric comparison (request value against policy value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The comparison an operator makes, before negation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Test {
    /// `StringEquals`.
    Equals,
    /// `StringEqualsIgnoreCase`.
    EqualsIgnoreCase,
    /// `StringLike`.
    Like,
    /// `ArnEquals`/`ArnLike`: wildcards within each of the six ARN fields.
    ArnLike,
    /// `Numeric…`.
    Numeric(Cmp),
    /// `Bool`.
    Bool,
    /// `Null`.
    Null,
}

/// A parsed operator name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Operator {
    pub(super) qualifier: Qualifier,
    pub(super) test: Test,
    pub(super) negated: bool,
    pub(super) if_exists: bool,
}

fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ci<'s>(s: &'s str, suffix: &str) -> Option<&'s str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..cut])
}

impl Operator {
    /// Reads an operator name such as `ForAllValues:StringEqualsIfExists`.
    pub(super) fn parse(name: &str) -> Result<Self, String> {
        let (qualifier, rest) = if let Some(r) = strip_prefix_ci(name, "ForAnyValue:") {
            (Qualifier::AnyValue, r)
        } else if let Some(r) = strip_prefix_ci(name, "ForAllValues:") {
            (Qualifier::AllValues, r)
        } else {
            (Qualifier::Plain, name)
        };
        let (base, if_exists) = match strip_suffix_ci(rest, "IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let (test, negated) = match base.to_ascii_lowercase().as_str() {
            "stringequals" => (Test::Equals, false),
            "stringnotequals" => (Test::Equals, true),
            "stringequalsignorecase" => (Test::EqualsIgnoreCase, false),
            "stringnotequalsignorecase" => (Test::EqualsIgnoreCase, true),
            "stringlike" => (Test::Like, false),
            "stringnotlike" => (Test::Like, true),
            "arnequals" | "arnlike" => (Test::ArnLike, false),
            "arnnotequals" | "arnnotlike" => (Test::ArnLike, true),
            "numericequals" => (Test::Numeric(Cmp::Eq), false),
            "numericnotequals" => (Test::Numeric(Cmp::Eq), true),
            "numericlessthan" => (Test::Numeric(Cmp::Lt), false),
            "numericlessthanequals" => (Test::Numeric(Cmp::Le), false),
            "numericgreaterthan" => (Test::Numeric(Cmp::Gt), false),
            "numericgreaterthanequals" => (Test::Numeric(Cmp::Ge), false),
            "bool" => (Test::Bool, false),
            "null" => (Test::Null, false),
            "dateequals"
            | "datenotequals"
            | "datelessthan"
            | "datelessthanequals"
            | "dategreaterthan"
            | "dategreaterthanequals"
            | "binaryequals"
            | "ipaddress"
            | "notipaddress" => {
                return Err(format!(
                    "condition operator {name} is not supported by kura; use String*, Arn*, Numeric*, Bool or Null"
                ));
            }
            _ => return Err(format!("unknown condition operator {name}")),
        };
        if test == Test::Null && (if_exists || qualifier != Qualifier::Plain) {
            return Err(format!(
                "condition operator {name}: Null takes neither IfExists nor ForAnyValue:/ForAllValues:"
            ));
        }
        Ok(Self {
            qualifier,
            test,
            negated,
            if_exists,
        })
    }
}

/// One operator on one key, with the policy's values for it (any may match).
#[derive(Debug, Clone)]
pub(super) struct Condition {
    pub(super) op: Operator,
    /// The key as written (matched case-insensitively).
    pub(super) key: String,
    pub(super) values: Vec<Template>,
}

impl Condition {
    /// Whether the condition holds for `req`.
    pub(super) fn holds(&self, req: &Access<'_>) -> bool {
        let got = req.values(&self.key);
        let op = self.op;
        if op.test == Test::Null {
            let absent = got.is_empty();
            return self
                .values
                .iter()
                .any(|p| p.raw().eq_ignore_ascii_case("true") == absent);
        }
        if got.is_empty() {
            return op.if_exists
                || match op.qualifier {
                    Qualifier::Plain => op.negated,
                    Qualifier::AnyValue => false,
                    Qualifier::AllValues => true,
                };
        }
        let lookup = |k: &str| req.single(k);
        // A value whose variable has no value matches nothing.
        let patterns: Vec<Vec<Tok>> = self
            .values
            .iter()
            .filter_map(|t| t.expand(&lookup))
            .collect();
        let passes = |v: &&str| patterns.iter().any(|p| test(op.test, p, v)) != op.negated;
        match op.qualifier {
            // A negated plain operator is the negation of the positive one: no request
            // value may match any policy value.
            Qualifier::Plain if op.negated => got.iter().all(passes),
            Qualifier::Plain | Qualifier::AnyValue => got.iter().any(passes),
            Qualifier::AllValues => got.iter().all(passes),
        }
    }
}

/// Whether request value `v` matches policy value `p` under `t`.
fn test(t: Test, p: &[Tok], v: &str) -> bool {
    match t {
        Test::Equals => pattern::literal(p) == v,
        Test::EqualsIgnoreCase => pattern::equal(&pattern::literal(p), v, true),
        Test::Like => pattern::glob(p, v, false),
        Test::ArnLike => arn_like(p, v),
        Test::Numeric(c) => match (
            v.trim().parse::<f64>(),
            pattern::literal(p).trim().parse::<f64>(),
        ) {
            (Ok(a), Ok(b)) => match c {
                Cmp::Eq => a == b,
                Cmp::Lt => a < b,
                Cmp::Le => a <= b,
                Cmp::Gt => a > b,
                Cmp::Ge => a >= b,
            },
            _ => false,
        },
        Test::Bool => pattern::literal(p).eq_ignore_ascii_case(v.trim()),
        Test::Null => false,
    }
}

/// ARN matching: each of the six colon-separated fields is matched on its own, so a `*`
/// never spans a colon except in the last field (the resource, which may hold colons).
fn arn_like(p: &[Tok], v: &str) -> bool {
    let mut pf: Vec<&[Tok]> = Vec::with_capacity(6);
    let mut rest = p;
    while pf.len() < 5 {
        let Some(i) = rest.iter().position(|t| *t == Tok::Char(':')) else {
            return false;
        };
        pf.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    pf.push(rest);
    let vf: Vec<&str> = v.splitn(6, ':').collect();
    vf.len() == 6 && pf.iter().zip(&vf).all(|(p, v)| pattern::glob(p, v, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::pattern::tokens;

    #[test]
    fn operator_names() {
        let o = Operator::parse("StringEquals").unwrap();
        assert_eq!(
            (o.qualifier, o.test, o.negated, o.if_exists),
            (Qualifier::Plain, Test::Equals, false, false)
        );
        let o = Operator::parse("ForAllValues:StringNotLikeIfExists").unwrap();
        assert_eq!(
            (o.qualifier, o.test, o.negated, o.if_exists),
            (Qualifier::AllValues, Test::Like, true, true)
        );
        let o = Operator::parse("ForAnyValue:StringEqualsIgnoreCase").unwrap();
        assert_eq!(
            (o.qualifier, o.test, o.negated),
            (Qualifier::AnyValue, Test::EqualsIgnoreCase, false)
        );
        let o = Operator::parse("ArnEquals").unwrap();
        assert_eq!((o.test, o.negated), (Test::ArnLike, false));
        let o = Operator::parse("NumericLessThanEqualsIfExists").unwrap();
        assert_eq!((o.test, o.if_exists), (Test::Numeric(Cmp::Le), true));
        let o = Operator::parse("BoolIfExists").unwrap();
        assert_eq!((o.test, o.if_exists), (Test::Bool, true));
        assert_eq!(Operator::parse("Null").unwrap().test, Test::Null);
    }

    #[test]
    fn bad_operator_names() {
        assert!(
            Operator::parse("StringEqual")
                .unwrap_err()
                .contains("unknown condition operator StringEqual")
        );
        assert!(
            Operator::parse("ForSomeValues:StringEquals")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(Operator::parse("IfExists").unwrap_err().contains("unknown"));
        assert!(Operator::parse("").unwrap_err().contains("unknown"));
        assert!(
            Operator::parse("DateLessThan")
                .unwrap_err()
                .contains("not supported by kura")
        );
        assert!(
            Operator::parse("IpAddress")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            Operator::parse("NullIfExists")
                .unwrap_err()
                .contains("Null takes neither")
        );
        assert!(
            Operator::parse("ForAnyValue:Null")
                .unwrap_err()
                .contains("Null takes neither")
        );
        // Multi-byte names must not split a character.
        assert!(Operator::parse("é").is_err());
        assert!(Operator::parse("ForAnyValueéééééééééé").is_err());
    }

    #[test]
    fn arn_like_matches_field_by_field() {
        let p = tokens("arn:aws:iam::*:user/*");
        assert!(arn_like(&p, "arn:aws:iam::111122223333:user/alice"));
        assert!(arn_like(&p, "arn:aws:iam::111122223333:user/a:b"));
        assert!(!arn_like(&p, "arn:aws:iam::111122223333:role/alice"));
        assert!(!arn_like(&p, "arn:aws:iam::111122223333"));
        // A `*` in one field does not span into the next.
        assert!(!arn_like(
            &tokens("arn:*:user/alice"),
            "arn:aws:iam::111122223333:user/alice"
        ));
        assert!(arn_like(
            &tokens("arn:*:*:*:*:*"),
            "arn:aws:iam::111122223333:user/alice"
        ));
        assert!(!arn_like(
            &tokens("arn:aws:iam::111122223333:user/alice"),
            "arn:aws:iam::111122223333:user/Alice"
        ));
    }

    #[test]
    fn numeric_and_bool_tests() {
        assert!(test(Test::Numeric(Cmp::Lt), &tokens("10"), "9"));
        assert!(!test(Test::Numeric(Cmp::Lt), &tokens("10"), "10"));
        assert!(test(Test::Numeric(Cmp::Le), &tokens("10"), "10"));
        assert!(test(Test::Numeric(Cmp::Gt), &tokens("1.5"), "2"));
        assert!(test(Test::Numeric(Cmp::Ge), &tokens("2"), "2.0"));
        assert!(test(Test::Numeric(Cmp::Eq), &tokens("2"), "2.0"));
        assert!(!test(Test::Numeric(Cmp::Eq), &tokens("2"), "two"));
        assert!(test(Test::Bool, &tokens("true"), "True"));
        assert!(!test(Test::Bool, &tokens("true"), "false"));
    }
}
