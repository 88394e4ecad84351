//! The SigV4 canonical request: URI encoding, path normalisation, the canonical query
//! string and canonical headers, computed from the request as the server received it.

use std::fmt::Write as _;

/// `UriEncode` of SigV4: every byte except the RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) becomes `%XX` with upper-case hex; `/` is kept when `keep_slash`.
pub(crate) fn uri_encode(bytes: &[u8], keep_slash: bool, out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one `application/x-www-form-urlencoded` component to bytes: `+` is a space,
/// `%XX` a byte; a `%` not followed by two hex digits stays literal (as the `url` crate's
/// form parser, used by the AWS Rust SDK's signer, does). No UTF-8 is required.
fn form_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                s.get(i + 1).copied().and_then(hex_value),
                s.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The decoded `(name, value)` pairs of a raw query string, in order. Empty pieces
/// (`a=1&&b=2`) are skipped; a piece without `=` has an empty value.
pub(crate) fn parse_query(raw: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw.as_bytes()
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (form_decode(&piece[..eq]), form_decode(&piece[eq + 1..])),
            None => (form_decode(piece), Vec::new()),
        })
        .collect()
}

/// The canonical query string: each name and value URI-encoded, pairs sorted by encoded
/// name then encoded value, joined as `n=v&n=v`. Pairs whose decoded name is `exclude`
/// (the presigned form's `X-Amz-Signature`) are left out.
pub(crate) fn canonical_query(pairs: &[(Vec<u8>, Vec<u8>)], exclude: Option<&str>) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| exclude.is_none_or(|x| name.as_slice() != x.as_bytes()))
        .map(|(name, value)| {
            let (mut n, mut v) = (String::new(), String::new());
            uri_encode(name, false, &mut n);
            uri_encode(value, false, &mut v);
            (n, v)
        })
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (i, (n, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// RFC 3986 dot-segment removal as the AWS SDKs do it for non-S3 services: empty and `.`
/// segments vanish, `..` drops the previous segment, a trailing slash is kept.
pub(crate) fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    if !path.contains('.') && !path.contains("//") {
        return if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    let trailing = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|end| path.ends_with(end));
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// The canonical URI of a path as received on the wire (still percent-encoded): the path
/// normalised, then URI-encoded once more with `/` kept. This is the "double encoding" that
/// the AWS SDKs apply for every service but S3; for KMS the path is `/` and stays `/`.
pub(crate) fn canonical_uri(raw_path: &str) -> String {
    let normalized = normalize_path(raw_path);
    let mut out = String::with_capacity(normalized.len());
    uri_encode(normalized.as_bytes(), true, &mut out);
    out
}

/// A header value as SigV4 canonicalises it: leading and trailing spaces and tabs removed,
/// and each inner run of spaces collapsed to one space.
pub(crate) fn trim_all(value: &str, out: &mut String) {
    let trimmed = value.trim_matches(|c| c == ' ' || c == '\t');
    let mut prev_space = false;
    for c in trimmed.chars() {
        if c == ' ' {
            if !prev_space {
                out.push(' ');
            }
            prev_space = true;
        } else {
            out.push(c);
            prev_space = false;
        }
    }
}

/// All values of the header `name` (ASCII case-insensitive), in the order received.
pub(crate) fn header_values<'h, 'n>(
    headers: &'h [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'h str> + use<'h, 'n> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The canonical headers block (`name:value\n` for each signed header, in the order of
/// `SignedHeaders`; repeated headers joined with `,`), or `Err(name)` naming the first
/// signed header the request does not carry.
pub(crate) fn canonical_headers<'s>(
    headers: &[(String, String)],
    signed: &[&'s str],
) -> Result<String, &'s str> {
    let mut out = String::new();
    for &name in signed {
        out.push_str(name);
        out.push(':');
        let mut any = false;
        for value in header_values(headers, name) {
            if any {
                out.push(',');
            }
            trim_all(value, &mut out);
            any = true;
        }
        if !any {
            return Err(name);
        }
        out.push('\n');
    }
    Ok(out)
}

/// Assembles the canonical request from its six parts.
pub(crate) fn canonical_request(
    method: &str,
    uri: &str,
    query: &str,
    headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!("{method}\n{uri}\n{query}\n{headers}\n{signed_headers}\n{payload_hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str, keep_slash: bool) -> String {
        let mut out = String::new();
        uri_encode(s.as_bytes(), keep_slash, &mut out);
        out
    }

    #[test]
    fn encoding_keeps_only_unreserved() {
        assert_eq!(enc("AZaz09-._~", false), "AZaz09-._~");
        assert_eq!(enc("a b+c/d=e&f%", false), "a%20b%2Bc%2Fd%3De%26f%25");
        assert_eq!(enc("a/b c", true), "a/b%20c");
        assert_eq!(enc("ሴ", false), "%E1%88%B4");
        assert_eq!(enc("*!'()", false), "%2A%21%27%28%29");
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        let pairs = parse_query("b=2&a=z&a=y&%61%62=%7e+x&c&&d=");
        assert_eq!(canonical_query(&pairs, None), "a=y&a=z&ab=~%20x&b=2&c=&d=");
        let pairs = parse_query("Param2=value2&Param1=value1");
        assert_eq!(canonical_query(&pairs, None), "Param1=value1&Param2=value2");
        // Upper case sorts before lower case (byte order).
        let pairs = parse_query("a=1&B=2");
        assert_eq!(canonical_query(&pairs, None), "B=2&a=1");
        // Broken escapes stay literal; raw non-ASCII bytes are encoded.
        let pairs = parse_query("x=%zz%4&y=ሴ");
        assert_eq!(canonical_query(&pairs, None), "x=%25zz%254&y=%E1%88%B4");
        let pairs = parse_query("X-Amz-Signature=abc&X-Amz-Date=1");
        assert_eq!(
            canonical_query(&pairs, Some("X-Amz-Signature")),
            "X-Amz-Date=1"
        );
        assert_eq!(canonical_query(&parse_query(""), None), "");
    }

    #[test]
    fn paths_normalise_like_the_sdks() {
        for (raw, canon) in [
            ("", "/"),
            ("/", "/"),
            ("/foo", "/foo"),
            ("foo", "/foo"),
            ("//example//", "/example/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/./", "/"),
            ("/./example", "/example"),
            ("/example/.", "/example/"),
            ("/a/b/../c/./d", "/a/c/d"),
            ("/../..", "/"),
        ] {
            assert_eq!(normalize_path(raw), canon, "{raw:?}");
        }
    }

    #[test]
    fn uri_is_double_encoded() {
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/example space/"), "/example%20space/");
        assert_eq!(canonical_uri("/a%3Db"), "/a%253Db");
        assert_eq!(
            canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D"),
            "/test/%40connections/JBDvjfGEIAMCERw%253D"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let headers = vec![
            ("host".to_owned(), "example.com:8443".to_owned()),
            ("my-header".to_owned(), "  a   b \t".to_owned()),
            ("My-Header".to_owned(), "c".to_owned()),
            ("empty".to_owned(), String::new()),
        ];
        assert_eq!(
            canonical_headers(&headers, &["empty", "host", "my-header"]),
            Ok("empty:\nhost:example.com:8443\nmy-header:a b,c\n".to_owned())
        );
        assert_eq!(canonical_headers(&headers, &["host", "nope"]), Err("nope"));
    }
}
