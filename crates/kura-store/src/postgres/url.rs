//! Database URLs in messages: the password hidden, whatever form the URL has.

use ::postgres::Config;

/// The connection target of `config` without its password: `postgres://user@host:port/db`.
pub(super) fn describe(config: &Config) -> String {
    use ::postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgres://{}@{}{}/{}",
        config.get_user().unwrap_or_default(),
        hosts.join(","),
        if ports.is_empty() {
            String::new()
        } else {
            format!(":{}", ports.join(","))
        },
        config.get_dbname().unwrap_or_default()
    )
}

/// `url` with any password replaced by `***`, for messages: the password of a URL's user
/// information (`scheme://user:password@host/db`, whatever the scheme), `password=` query
/// parameters, and the `password` key of a PostgreSQL `key=value` connection string (quoted
/// or not).
///
/// ```
/// assert_eq!(
///     kura_store::redact_url_password("postgres://kura:secret@db/kura?password=x"),
///     "postgres://kura:***@db/kura?password=***"
/// );
/// assert_eq!(
///     kura_store::redact_url_password("postgres://kura:ab/c?d#e@db/kura"),
///     "postgres://kura:***@db/kura"
/// );
/// assert_eq!(
///     kura_store::redact_url_password("host=db password='a b' dbname=kura"),
///     "host=db password=*** dbname=kura"
/// );
/// ```
pub fn redact_url_password(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let mut out = url.to_owned();
        let rest_start = scheme_end + 3;
        // As the driver reads it: the user information runs to the first `@` anywhere
        // after the scheme, so a password may hold `/`, `?` or `#` unencoded.
        if let Some(at) = out[rest_start..].find('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
        // Every `password=` parameter of the query.
        let mut from = out.find('?').unwrap_or(out.len());
        while let Some(i) = out[from..].find("password=") {
            let start = from + i + "password=".len();
            let preceded = out[..from + i].ends_with(['?', '&']);
            let end = out[start..].find('&').map_or(out.len(), |j| start + j);
            if preceded {
                out.replace_range(start..end, "***");
                from = start + 3;
            } else {
                from = start;
            }
        }
        return out;
    }
    redact_key_value(url)
}

/// The `key=value` form: every `password = value` with its value (bare, or single-quoted
/// with backslash escapes) replaced by `***`.
fn redact_key_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let Some(i) = rest.find("password") else {
            out.push_str(rest);
            return out;
        };
        let starts_word = rest[..i]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace);
        let after = &rest[i + "password".len()..];
        let trimmed = after.trim_start();
        match trimmed.strip_prefix('=') {
            Some(value) if starts_word => {
                let value = value.trim_start();
                let consumed = rest.len() - value.len();
                out.push_str(&rest[..consumed]);
                out.push_str("***");
                rest = &value[value_len(value)..];
            }
            _ => {
                let consumed = i + "password".len();
                out.push_str(&rest[..consumed]);
                rest = &rest[consumed..];
            }
        }
    }
}

/// The length of the value at the start of `s`: up to the closing quote of a quoted value,
/// else up to the next white space.
fn value_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    if s.starts_with('\'') {
        chars.next();
        let mut escaped = false;
        for (i, c) in chars {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return i + 1,
                _ => {}
            }
        }
        return s.len();
    }
    s.find(char::is_whitespace).unwrap_or(s.len())
}
