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

/// Makes `<prefix>-ca.pem`, `<prefix>-cert.pem` and `<prefix>-key.pem` in `dir`.
pub fn server_certificate(dir: &Path, prefix: &str) -> io::Result<ServerCertificate> {
    let name = |what: &str| format!("{prefix}-{what}");
    let (ca_key, ca, csr) = (name("ca-key.pem"), name("ca.pem"), name("cert.csr"));
    let (key, cert, ext) = (name("key.pem"), name("cert.pem"), name("ext.cnf"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend(["-days", "1", "-subj", "/CN=kura test CA"]);
    args.extend(["-keyout", &ca_key, "-out", &ca]);
    openssl(&args, dir)?;
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]);
    openssl(&args, dir)?;
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )?;
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
    Ok(ServerCertificate {
        ca: dir.join(ca),
        ca_key: dir.join(ca_key),
        cert: dir.join(cert),
        key: dir.join(key),
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
    let name = |what: &str| format!("{prefix}-{what}");
    let (key, csr, cert) = (name("key.pem"), name("cert.csr"), name("cert.pem"));
    let ext = name("ext.cnf");
    std::fs::write(
        dir.join(&ext),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )?;
    let subject = format!("/CN={user}");
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    args.extend(["-nodes", "-subj", &subject, "-keyout", &key, "-out", &csr]);
    openssl(&args, dir)?;
    let (ca_cert, ca_key) = (ca.ca.display().to_string(), ca.ca_key.display().to_string());
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
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
