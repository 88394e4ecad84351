//! Throwaway TLS certificates for tests, made with the `openssl` command: a CA, a server
//! certificate it signed for `127.0.0.1` and `localhost`, and client certificates it signed
//! (ECDSA P-256, one day).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of [`server_certificate`], in the directory it was given.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    /// The CA certificate (PEM): what clients trust.
    pub ca: PathBuf,
    /// The CA's private key (PEM), to sign more certificates with.
    pub ca_key: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// The server's private key (PEM, unencrypted).
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) -> io::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("kura-testkit: cannot run openssl ({e}); install the openssl package"),
            )
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "kura-testkit: `openssl {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    )))
}

/// The arguments that make a new P-256 key, unencrypted.
const NEW_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// Makes a key `<prefix>-key.pem` and a certificate `<prefix>-cert.pem` in `dir` for
/// `subject`, signed by the CA `ca` / `ca_key` with the extensions `extensions`.
fn signed(
    dir: &Path,
    prefix: &str,
    subject: &str,
    (ca, ca_key): (&Path, &Path),
    extensions: &str,
) -> io::Result<(PathBuf, PathBuf)> {
    let name = |what: &str| format!("{prefix}-{what}");
    let (key, csr, cert, ext) = (
        name("key.pem"),
        name("cert.csr"),
        name("cert.pem"),
        name("ext.cnf"),
    );
    std::fs::write(dir.join(&ext), extensions)?;
    let mut args = vec!["req"];
    args.extend(NEW_KEY);
    args.extend(["-subj", subject, "-keyout", &key, "-out", &csr]);
    openssl(&args, dir)?;
    let (ca, ca_key) = (ca.display().to_string(), ca_key.display().to_string());
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
        dir,
    )?;
    Ok((dir.join(cert), dir.join(key)))
}

/// Makes `<prefix>-ca.pem`, `<prefix>-cert.pem` and `<prefix>-key.pem` in `dir`.
pub fn server_certificate(dir: &Path, prefix: &str) -> io::Result<ServerCertificate> {
    let (ca, ca_key) = (
        dir.join(format!("{prefix}-ca.pem")),
        dir.join(format!("{prefix}-ca-key.pem")),
    );
    let (ca_name, ca_key_name) = (ca.display().to_string(), ca_key.display().to_string());
    let mut args = vec!["req", "-x509"];
    args.extend(NEW_KEY);
    args.extend(["-days", "1", "-subj", "/CN=kura test CA"]);
    args.extend(["-keyout", &ca_key_name, "-out", &ca_name]);
    openssl(&args, dir)?;
    let (cert, key) = signed(
        dir,
        prefix,
        "/CN=localhost",
        (&ca, &ca_key),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )?;
    Ok(ServerCertificate {
        ca,
        ca_key,
        cert,
        key,
    })
}

/// A client certificate for user `user` (its common name) signed by `ca`'s CA: returns the
/// certificate and key files, `<prefix>-cert.pem` and `<prefix>-key.pem` in `dir`.
pub fn client_certificate(
    dir: &Path,
    prefix: &str,
    ca: &ServerCertificate,
    user: &str,
) -> io::Result<(PathBuf, PathBuf)> {
    signed(
        dir,
        prefix,
        &format!("/CN={user}"),
        (&ca.ca, &ca.ca_key),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
}
