//! Strings in a policy: `*` and `?` wildcards, and policy variables (`${aws:username}`,
//! `${kms:CallerAccount, 'default'}`, the escapes `${*}`, `${?}`, `${$}`).

/// One element of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
    /// This character (a `*` or `?` here is literal).
    Char(char),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

/// Reads `s` as a pattern: `*` and `?` are wildcards, everything else is literal.
pub(super) fn tokens(s: &str) -> Vec<Tok> {
    let mut out = Vec::with_capacity(s.len());
    push_wild(&mut out, s);
    out
}

fn push_wild(out: &mut Vec<Tok>, s: &str) {
    out.extend(s.chars().map(|c| match c {
        '*' => Tok::Star,
        '?' => Tok::One,
        c => Tok::Char(c),
    }));
}

/// The pattern as plain text (wildcards as their characters), for exact comparisons.
pub(super) fn literal(pat: &[Tok]) -> String {
    pat.iter()
        .map(|t| match t {
            Tok::Char(c) => *c,
            Tok::Star => '*',
            Tok::One => '?',
        })
        .collect()
}

fn same(a: char, b: char, fold: bool) -> bool {
    a == b || (fold && a.to_lowercase().eq(b.to_lowercase()))
}

/// Whether `s` matches `pat`, ignoring case when `fold`.
pub(super) fn glob(pat: &[Tok], s: &str, fold: bool) -> bool {
    let s: Vec<char> = s.chars().collect();
    let (mut p, mut i) = (0, 0);
    // The last `*` seen and the position in `s` it is currently taken to end at.
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(Tok::One) => {
                p += 1;
                i += 1;
            }
            Some(Tok::Char(c)) if same(*c, s[i], fold) => {
                p += 1;
                i += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, i));
                p += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    star = Some((sp, si + 1));
                    p = sp + 1;
                    i = si + 1;
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|t| *t == Tok::Star)
}

/// Whether the strings are equal, ignoring case when `fold`.
pub(super) fn equal(a: &str, b: &str, fold: bool) -> bool {
    if fold {
        a.to_lowercase() == b.to_lowercase()
    } else {
        a == b
    }
}

/// A policy string that may hold policy variables (only in 2012-10-17 documents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Template {
    raw: String,
    vars: bool,
}

impl Template {
    /// `raw` as written; `${…}` is a variable only when `variables` (Version 2012-10-17).
    pub(super) fn new(raw: &str, variables: bool) -> Self {
        Self {
            raw: raw.to_string(),
            vars: variables && raw.contains("${"),
        }
    }

    /// The text as written.
    pub(super) fn raw(&self) -> &str {
        &self.raw
    }

    /// The pattern with every variable replaced by its value from `lookup` (a value is
    /// literal text, never wildcards), or by its default. `None` when a variable has
    /// neither: the string then matches nothing.
    pub(super) fn expand(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Option<Vec<Tok>> {
        if !self.vars {
            return Some(tokens(&self.raw));
        }
        let mut out = Vec::with_capacity(self.raw.len());
        let mut rest = self.raw.as_str();
        while let Some(start) = rest.find("${") {
            push_wild(&mut out, &rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                // An unterminated `${` is literal text.
                push_wild(&mut out, &rest[start..]);
                return Some(out);
            };
            match after[..end].trim() {
                "*" => out.push(Tok::Char('*')),
                "?" => out.push(Tok::Char('?')),
                "$" => out.push(Tok::Char('$')),
                var => {
                    let (key, default) = match var.split_once(',') {
                        Some((k, d)) => (k.trim(), Some(unquote(d.trim()))),
                        None => (var, None),
                    };
                    let value = lookup(key).or_else(|| default.map(str::to_string))?;
                    out.extend(value.chars().map(Tok::Char));
                }
            }
            rest = &after[end + 1..];
        }
        push_wild(&mut out, rest);
        Some(out)
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pat: &str, s: &str) -> bool {
        glob(&tokens(pat), s, false)
    }

    #[test]
    fn glob_literal_and_wildcards() {
        assert!(m("kms:Encrypt", "kms:Encrypt"));
        assert!(!m("kms:Encrypt", "kms:EncryptX"));
        assert!(!m("kms:Encrypt", "kms:Encryp"));
        assert!(m("kms:*", "kms:Decrypt"));
        assert!(m("kms:*", "kms:"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("kms:ReEncrypt*", "kms:ReEncryptFrom"));
        assert!(m("kms:ReEncrypt*", "kms:ReEncrypt"));
        assert!(!m("kms:ReEncrypt*", "kms:Encrypt"));
        assert!(m("kms:?ecrypt", "kms:Decrypt"));
        assert!(!m("kms:?ecrypt", "kms:ecrypt"));
        assert!(m("a*b*c", "axxbyybzzc"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyyd"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("*a*", "bab"));
        assert!(m("**x", "x"));
        assert!(m("a*?", "ab"));
        assert!(!m("a*?", "a"));
    }

    #[test]
    fn glob_case() {
        assert!(!m("kms:encrypt", "kms:Encrypt"));
        assert!(glob(&tokens("KMS:encrypt"), "kms:Encrypt", true));
        assert!(glob(
            &tokens("kms:generatedatakey*"),
            "kms:GenerateDataKeyPair",
            true
        ));
        assert!(glob(&tokens("ÄB*"), "äbc", true));
    }

    #[test]
    fn literal_keeps_wildcard_characters() {
        assert_eq!(literal(&tokens("a*b?c")), "a*b?c");
        assert!(equal("Acme", "aCME", true));
        assert!(!equal("Acme", "aCME", false));
    }

    fn lookup(k: &str) -> Option<String> {
        match k {
            "aws:username" => Some("alice".into()),
            "kms:CallerAccount" => Some("111122223333".into()),
            "star" => Some("*".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_expand() {
        let t = Template::new("team/${aws:username}/*", true);
        let toks = t.expand(&lookup).unwrap();
        assert!(glob(&toks, "team/alice/x", false));
        assert!(!glob(&toks, "team/bob/x", false));
        assert_eq!(t.raw(), "team/${aws:username}/*");
        let t = Template::new("arn:aws:kms:*:${ kms:CallerAccount }:key/*", true);
        assert!(glob(
            &t.expand(&lookup).unwrap(),
            "arn:aws:kms:us-east-1:111122223333:key/k",
            false
        ));
    }

    #[test]
    fn variable_values_and_escapes_are_literal() {
        let t = Template::new("${star}", true);
        let toks = t.expand(&lookup).unwrap();
        assert!(glob(&toks, "*", false));
        assert!(!glob(&toks, "anything", false));
        let t = Template::new("a${*}b${?}c${$}", true);
        assert_eq!(
            t.expand(&lookup).unwrap(),
            vec![
                Tok::Char('a'),
                Tok::Char('*'),
                Tok::Char('b'),
                Tok::Char('?'),
                Tok::Char('c'),
                Tok::Char('$'),
            ]
        );
    }

    #[test]
    fn variable_defaults_and_missing() {
        let t = Template::new("${aws:nothing, 'none'}", true);
        assert_eq!(literal(&t.expand(&lookup).unwrap()), "none");
        let t = Template::new("x-${aws:nothing}", true);
        assert_eq!(t.expand(&lookup), None);
        let t = Template::new("x-${aws:username", true);
        assert_eq!(literal(&t.expand(&lookup).unwrap()), "x-${aws:username");
    }

    #[test]
    fn variables_off_in_old_versions() {
        let t = Template::new("${aws:username}", false);
        assert_eq!(literal(&t.expand(&lookup).unwrap()), "${aws:username}");
    }
}
