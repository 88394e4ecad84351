//! Finding and parsing the signature of a request: the `Authorization` header, or the
//! `X-Amz-*` query parameters of a presigned request. Only the request's form is checked
//! here; scope, time and signature are checked by the caller.

use super::canonical::header_values;
use super::{ALGORITHM, Request, SigError, time};

/// The query parameters of the presigned form.
pub(crate) mod param {
    pub(crate) const ALGORITHM: &str = "X-Amz-Algorithm";
    pub(crate) const CREDENTIAL: &str = "X-Amz-Credential";
    pub(crate) const DATE: &str = "X-Amz-Date";
    pub(crate) const EXPIRES: &str = "X-Amz-Expires";
    pub(crate) const SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
    pub(crate) const SIGNATURE: &str = "X-Amz-Signature";
    pub(crate) const SECURITY_TOKEN: &str = "X-Amz-Security-Token";
}

/// The longest `X-Amz-Expires` AWS accepts: seven days.
pub(crate) const MAX_EXPIRES_SECS: i64 = 604_800;

/// Where the signature was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// The `Authorization` header.
    Header,
    /// Presigned: query parameters, with the validity from `X-Amz-Expires` if given.
    Query { expires_secs: Option<i64> },
}

/// The parts of `Credential=AKID/date/region/service/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    pub(crate) access_key_id: String,
    pub(crate) date: String,
    pub(crate) region: String,
    pub(crate) service: String,
    pub(crate) terminator: String,
}

/// A request's signature and everything needed to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Auth {
    pub(crate) form: Form,
    pub(crate) credential: Credential,
    /// `SignedHeaders` exactly as sent (it is hashed verbatim).
    pub(crate) signed_headers: String,
    pub(crate) signature: String,
    /// The request time as `yyyymmddTHHMMSSZ`, as it goes into the string to sign.
    pub(crate) amz_date: String,
    /// The request time in Unix seconds.
    pub(crate) time: i64,
    /// Whether a security token came with the request (header or query parameter).
    pub(crate) has_security_token: bool,
}

fn incomplete(msg: impl Into<String>) -> SigError {
    SigError::IncompleteSignature(msg.into())
}

/// The single value of a header, `Ok(None)` if absent, or an error if it is repeated.
fn single_header<'r>(req: &Request<'r>, name: &str) -> Result<Option<&'r str>, SigError> {
    let mut values = header_values(req.headers, name);
    let first = values.next();
    if values.next().is_some() {
        return Err(incomplete(format!(
            "Found more than one '{name}' header; send it once."
        )));
    }
    Ok(first)
}

/// Finds the request's signature. `MissingAuthenticationToken` if it carries none.
pub(crate) fn parse(req: &Request<'_>, query: &[(Vec<u8>, Vec<u8>)]) -> Result<Auth, SigError> {
    let authorization = single_header(req, "authorization")?;
    let query_auth = [
        param::ALGORITHM,
        param::CREDENTIAL,
        param::SIGNATURE,
        param::SIGNED_HEADERS,
    ]
    .iter()
    .any(|p| query.iter().any(|(n, _)| n.as_slice() == p.as_bytes()));
    let has_token_param = query
        .iter()
        .any(|(n, _)| n.as_slice() == param::SECURITY_TOKEN.as_bytes());
    let token_header = header_values(req.headers, "x-amz-security-token")
        .next()
        .is_some();
    match (authorization, query_auth) {
        (Some(_), true) => Err(incomplete(
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
        )),
        (Some(value), false) => parse_header_form(req, value, token_header || has_token_param),
        (None, true) => parse_query_form(query, token_header || has_token_param),
        (None, false) => Err(SigError::MissingAuthenticationToken),
    }
}

/// Splits `AKID/date/region/service/aws4_request`.
fn parse_credential(value: &str) -> Result<Credential, SigError> {
    let parts: Vec<&str> = value.split('/').collect();
    match parts.as_slice() {
        [akid, date, region, service, terminator] => Ok(Credential {
            access_key_id: (*akid).to_owned(),
            date: (*date).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
            terminator: (*terminator).to_owned(),
        }),
        _ => Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{value}'"
        ))),
    }
}

fn parse_amz_date(value: &str) -> Result<(String, i64), SigError> {
    match time::parse_iso_basic(value) {
        Some(t) => Ok((value.to_owned(), t)),
        None => Err(incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
        ))),
    }
}

/// The request time of the header form: `X-Amz-Date`, else `Date` (IMF-fixdate, or ISO
/// 8601 basic as some clients send it there). `Ok(None)` if neither header is present.
fn header_form_date(req: &Request<'_>) -> Result<Option<(String, i64)>, SigError> {
    if let Some(value) = single_header(req, "x-amz-date")? {
        return parse_amz_date(value.trim()).map(Some);
    }
    let Some(value) = single_header(req, "date")? else {
        return Ok(None);
    };
    let value = value.trim();
    match time::parse_imf_fixdate(value).or_else(|| time::parse_iso_basic(value)) {
        Some(t) => Ok(Some((time::format_iso_basic(t), t))),
        None => Err(incomplete(format!(
            "Date header must be an HTTP date (IMF-fixdate) or ISO-8601 'basic format'. Got '{value}'."
        ))),
    }
}

fn parse_header_form(
    req: &Request<'_>,
    value: &str,
    has_security_token: bool,
) -> Result<Auth, SigError> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported Authorization scheme '{algorithm}': only '{ALGORITHM}' is accepted."
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for item in rest.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((key, val)) = item.split_once('=') else {
            return Err(incomplete(format!(
                "Invalid key=value pair (missing equal-sign) in Authorization header: '{item}'."
            )));
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(val.trim()).is_some() {
            return Err(incomplete(format!(
                "Authorization header has more than one '{}' parameter.",
                key.trim()
            )));
        }
    }
    let date = header_form_date(req)?;
    let mut missing = String::new();
    for (name, v) in [
        ("Credential", credential.is_none()),
        ("Signature", signature.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
    ] {
        if v {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    if date.is_none() {
        missing.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    match (credential, signed_headers, signature, date) {
        (Some(credential), Some(signed_headers), Some(signature), Some((amz_date, time)))
            if missing.is_empty() =>
        {
            Ok(Auth {
                form: Form::Header,
                credential: parse_credential(credential)?,
                signed_headers: signed_headers.to_owned(),
                signature: signature.to_owned(),
                amz_date,
                time,
                has_security_token,
            })
        }
        _ => Err(incomplete(missing.trim_end())),
    }
}

fn parse_query_form(
    query: &[(Vec<u8>, Vec<u8>)],
    has_security_token: bool,
) -> Result<Auth, SigError> {
    // Each parameter once; its value as UTF-8 (they are all ASCII in a valid request).
    let get = |name: &str| -> Result<Option<String>, SigError> {
        let mut found = query
            .iter()
            .filter(|(n, _)| n.as_slice() == name.as_bytes());
        let first = found.next();
        if found.next().is_some() {
            return Err(incomplete(format!(
                "Found more than one '{name}' query-string parameter."
            )));
        }
        Ok(first.map(|(_, v)| String::from_utf8_lossy(v).into_owned()))
    };
    let algorithm = get(param::ALGORITHM)?;
    let credential = get(param::CREDENTIAL)?;
    let date = get(param::DATE)?;
    let signed_headers = get(param::SIGNED_HEADERS)?;
    let signature = get(param::SIGNATURE)?;
    let expires = get(param::EXPIRES)?;
    let (Some(algorithm), Some(credential), Some(date), Some(signed_headers), Some(signature)) = (
        algorithm.as_ref(),
        credential,
        date,
        signed_headers,
        signature,
    ) else {
        let missing: Vec<String> = [
            (param::ALGORITHM, algorithm.is_none()),
            (param::CREDENTIAL, query_missing(query, param::CREDENTIAL)),
            (param::SIGNATURE, query_missing(query, param::SIGNATURE)),
            (param::DATE, query_missing(query, param::DATE)),
            (
                param::SIGNED_HEADERS,
                query_missing(query, param::SIGNED_HEADERS),
            ),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| format!("'{n}'"))
        .collect();
        return Err(incomplete(format!(
            "AWS query-string parameters must include {}. Re-examine the query-string parameters.",
            missing.join(", ")
        )));
    };
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'; only '{ALGORITHM}' is accepted."
        )));
    }
    let expires_secs = match expires {
        None => None,
        Some(e) => match e.parse::<i64>() {
            Ok(n) if (0..=MAX_EXPIRES_SECS).contains(&n) && !e.starts_with('+') => Some(n),
            Ok(_) => {
                return Err(incomplete(format!(
                    "X-Amz-Expires must be non-negative and less than a week (in seconds) that is {MAX_EXPIRES_SECS}"
                )));
            }
            Err(_) => return Err(incomplete("X-Amz-Expires should be a number")),
        },
    };
    let (amz_date, time) = parse_amz_date(&date)?;
    Ok(Auth {
        form: Form::Query { expires_secs },
        credential: parse_credential(&credential)?,
        signed_headers,
        signature,
        amz_date,
        time,
        has_security_token,
    })
}

fn query_missing(query: &[(Vec<u8>, Vec<u8>)], name: &str) -> bool {
    !query.iter().any(|(n, _)| n.as_slice() == name.as_bytes())
}
