//! Throwaway TLS certificates for tests, made with the `openssl` command: a CA, and a
//! server certificate it signed for `127.0.0.1` and `localhost` (ECDSA P-256, one day).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of [`server_certificate`], in the directory it was given.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    /// The CA certificate (PEM): what clients trust.
    pub ca: PathBuf,
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
        cert: dir.join(cert),
        key: dir.join(key),
    })
}
