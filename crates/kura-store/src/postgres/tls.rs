//! TLS to PostgreSQL. kura reads `sslmode` and `sslrootcert` from the connection string
//! itself (the driver knows neither `verify-full` nor `sslrootcert`) and never uses TLS
//! without verifying the server: `sslmode=require`, `sslmode=verify-full` and an
//! `sslrootcert` all mean TLS whose certificate chains to the CA certificates in
//! `sslrootcert` (PEM), or to the system's when it is not given, and names the host
//! connected to. `disable`, `prefer` and no `sslmode` connect without TLS (a TLS session
//! whose server is not verified would not stop an active attacker; use a tunnel, or
//! `verify-full`). `verify-ca` (the chain without the name) is refused. `sslcert` and
//! `sslkey` (PEM files, given together) are the client's certificate chain and key, for
//! servers that authenticate clients by certificate; they imply TLS too.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use ::postgres::config::SslMode;
use ::postgres::{Client, Config, NoTls};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::errors::chain;
use super::url::redact_url_password;
use crate::Error;

/// The TLS a connection string asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TlsRequest {
    /// TLS with a verified server is required.
    pub(super) verify: bool,
    /// The CA certificates (PEM) the server's must chain to; `None`: the system's.
    pub(super) root_cert: Option<PathBuf>,
    /// The client's certificate chain (PEM), shown to servers that ask for one.
    pub(super) client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub(super) client_key: Option<PathBuf>,
}

/// Splits `url` into the connection string for the driver (`sslrootcert` taken out,
/// `verify-full` as `require`) and the TLS it asks for. Errors say what to change.
pub(super) fn take_tls(url: &str) -> Result<(String, TlsRequest), String> {
    let mut req = TlsRequest::default();
    let mut mode = None;
    let driver = if let Some(rest) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|p| url.strip_prefix(p).map(|r| (p, r)))
    {
        let (scheme, rest) = rest;
        // The query starts at the first `?` after the user information (which may hold
        // one unencoded, as the driver reads it).
        let from = rest.find('@').map_or(0, |at| at + 1);
        match rest[from..].find('?') {
            None => url.to_owned(),
            Some(q) => {
                let (base, query) = rest.split_at(from + q);
                let mut kept = Vec::new();
                for param in query[1..].split('&') {
                    let (key, value) = param.split_once('=').unwrap_or((param, ""));
                    // Only kura's own values are decoded (and may be shown in an error):
                    // the others, a password among them, go to the driver untouched.
                    if !KURA_KEYS.contains(&key) {
                        kept.push(param.to_owned());
                        continue;
                    }
                    match edit(key, &decode(value)?, &mut req, &mut mode)? {
                        Edit::Keep => kept.push(param.to_owned()),
                        Edit::Drop => {}
                        Edit::Replace(v) => kept.push(format!("{key}={v}")),
                    }
                }
                match kept.is_empty() {
                    true => format!("{scheme}{base}"),
                    false => format!("{scheme}{base}?{}", kept.join("&")),
                }
            }
        }
    } else {
        // `key=value` pairs: the two keys are read where a pair starts, unquoted.
        let mut out = String::new();
        let mut rest = url;
        while !rest.is_empty() {
            let start = rest.len() - rest.trim_start().len();
            out.push_str(&rest[..start]);
            rest = &rest[start..];
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let (pair, after) = rest.split_at(end);
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if KURA_KEYS.contains(&key) && value.starts_with('\'') {
                return Err(format!(
                    "give {key} unquoted (a path without spaces), or use a postgres:// URL"
                ));
            }
            match edit(key, value, &mut req, &mut mode)? {
                Edit::Keep => out.push_str(pair),
                Edit::Drop => {}
                Edit::Replace(v) => out.push_str(&format!("{key}={v}")),
            }
            rest = after;
        }
        out
    };
    if req.client_cert.is_some() != req.client_key.is_some() {
        return Err("give sslcert and sslkey together (the client certificate and its key)".into());
    }
    if mode == Some("disable") && req.verify {
        return Err(
            "sslmode=disable contradicts sslrootcert, sslcert and sslkey; drop one or the other"
                .into(),
        );
    }
    Ok((driver, req))
}

/// The keys kura reads itself.
const KURA_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

enum Edit {
    Keep,
    Drop,
    Replace(&'static str),
}

fn edit(
    key: &str,
    value: &str,
    req: &mut TlsRequest,
    mode: &mut Option<&'static str>,
) -> Result<Edit, String> {
    match (key, value) {
        ("sslrootcert" | "sslcert" | "sslkey", path) => {
            let slot = match key {
                "sslrootcert" => &mut req.root_cert,
                "sslcert" => &mut req.client_cert,
                _ => &mut req.client_key,
            };
            *slot = Some(PathBuf::from(path));
            req.verify = true;
            Ok(Edit::Drop)
        }
        ("sslmode", "require" | "verify-full") => {
            req.verify = true;
            *mode = Some("require");
            Ok(Edit::Replace("require"))
        }
        ("sslmode", "verify-ca") => Err("sslmode=verify-ca is not supported: kura checks the \
             server's host name too; use sslmode=verify-full"
            .into()),
        ("sslmode", "disable") => {
            *mode = Some("disable");
            Ok(Edit::Keep)
        }
        _ => Ok(Edit::Keep),
    }
}

/// A URL query value with its `%XX` escapes decoded, as the driver decodes its own (a `+`
/// stays a `+`: a path such as `/etc/c++/ca.pem` is taken as written).
fn decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("a bad %-escape in {value:?}"))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

/// The driver's configuration of `url` and the TLS connector it asks for (`None`: no
/// TLS; otherwise the driver is told to require it). Errors say what to change.
pub(super) fn configure(url: &str) -> Result<(Config, Option<MakeRustlsConnect>), String> {
    let (driver_url, req) = take_tls(url)?;
    let tls = connector(&req)?;
    let mut config = Config::from_str(&driver_url).map_err(|e| chain(&e))?;
    if tls.is_some() {
        // Never the driver's `prefer`: without TLS it would go on in the clear.
        config.ssl_mode(SslMode::Require);
    }
    Ok((config, tls))
}

/// A client of another PostgreSQL database at `url` (an application's, for
/// `kura migrate-encryption`), under the keystore's TLS rules (the module documentation).
///
/// # Errors
///
/// [`Error::Connect`] naming the URL with its password hidden: a URL to fix, or a
/// database that cannot be reached or refuses the connection.
pub fn connect_client(url: &str) -> Result<Client, Error> {
    let failed = |message: String| Error::Connect {
        location: redact_url_password(url),
        message,
    };
    let (config, tls) = configure(url).map_err(|e| failed(format!("{e}; fix the URL")))?;
    connect(&config, tls.as_ref()).map_err(|e| failed(chain(&e)))
}

/// Connects with `config`, over `tls` if given.
pub(super) fn connect(
    config: &Config,
    tls: Option<&MakeRustlsConnect>,
) -> Result<Client, ::postgres::Error> {
    match tls {
        Some(tls) => config.connect(tls.clone()),
        None => config.connect(NoTls),
    }
}

/// The TLS connector `req` asks for (`None`: no TLS).
fn connector(req: &TlsRequest) -> Result<Option<MakeRustlsConnect>, String> {
    if !req.verify {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &req.root_cert {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
            if certs.is_empty() {
                return Err(format!(
                    "sslrootcert {shown} holds no PEM certificate; give the CA certificate \
                     that signed the server's"
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
            }
        }
        None => {
            // Certificates the system has but rustls cannot use are left out.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("this system has no CA certificates to verify the database \
                     server with; give its CA with sslrootcert=PATH"
                    .into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match (&req.client_cert, &req.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("cannot read sslcert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "sslcert {} holds no PEM certificate",
                    cert.display()
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read sslkey {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert and sslkey do not make a client identity: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn take(url: &str) -> (String, TlsRequest) {
        take_tls(url).unwrap()
    }

    #[test]
    fn urls_without_tls_settings_are_left_alone() {
        for url in [
            "postgres://kura@db/kura",
            "postgres://kura:p?w@db/kura?connect_timeout=3",
            "host=db user=kura password='a b' dbname=kura",
            "postgresql://db/kura?sslmode=prefer",
        ] {
            assert_eq!(take(url), (url.to_owned(), TlsRequest::default()), "{url}");
        }
    }

    #[test]
    fn kura_reads_sslmode_and_sslrootcert_itself() {
        let verify = |path: Option<&str>| TlsRequest {
            verify: true,
            root_cert: path.map(PathBuf::from),
            ..TlsRequest::default()
        };
        assert_eq!(
            take(
                "postgres://kura:p?w@db/kura?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem&connect_timeout=3"
            ),
            (
                "postgres://kura:p?w@db/kura?sslmode=require&connect_timeout=3".into(),
                verify(Some("/etc/ca x.pem"))
            )
        );
        assert_eq!(
            take("postgres://db/kura?sslrootcert=/ca.pem"),
            ("postgres://db/kura".into(), verify(Some("/ca.pem")))
        );
        assert_eq!(
            take("postgres://db/kura?sslrootcert=/etc/c++/ca.pem"),
            ("postgres://db/kura".into(), verify(Some("/etc/c++/ca.pem")))
        );
        assert_eq!(
            take("postgres://db/kura?sslmode=require"),
            ("postgres://db/kura?sslmode=require".into(), verify(None))
        );
        assert_eq!(
            take("postgres://db/kura?sslkey=/k.pem&sslcert=/c.pem"),
            (
                "postgres://db/kura".into(),
                TlsRequest {
                    verify: true,
                    root_cert: None,
                    client_cert: Some("/c.pem".into()),
                    client_key: Some("/k.pem".into()),
                }
            )
        );
        assert_eq!(
            take("host=db  sslmode=verify-full sslrootcert=/ca.pem password='a b'"),
            (
                "host=db  sslmode=require  password='a b'".into(),
                verify(Some("/ca.pem"))
            )
        );
    }

    #[test]
    fn contradictions_and_unsupported_modes_are_refused() {
        for (url, says) in [
            ("postgres://db/k?sslmode=verify-ca", "verify-full"),
            (
                "postgres://db/k?sslmode=disable&sslrootcert=/ca",
                "contradict",
            ),
            ("host=db sslrootcert='/a b'", "unquoted"),
            ("postgres://db/k?sslcert=/c.pem", "together"),
            ("host=db sslkey='/k.pem'", "unquoted"),
            ("postgres://db/k?sslrootcert=%zz", "escape"),
            // Other values are not decoded, so never shown: a password's bad escape is
            // the driver's to report.
            (
                "postgres://db/k?password=%zz&sslmode=verify-ca",
                "verify-full",
            ),
        ] {
            let e = take_tls(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn a_root_certificate_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for (path, says) in [
            (empty, "no PEM certificate"),
            (dir.path().join("absent.pem"), "cannot read"),
        ] {
            let req = TlsRequest {
                verify: true,
                root_cert: Some(path.clone()),
                ..TlsRequest::default()
            };
            let e = connector(&req).err().unwrap();
            assert!(e.contains(says), "{}: {e}", path.display());
        }
        assert!(connector(&TlsRequest::default()).unwrap().is_none());
    }
}
