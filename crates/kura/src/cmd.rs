//! One module per group of commands.

pub(crate) mod admin;
pub(crate) mod backup;
pub(crate) mod bench;
pub(crate) mod bench_fs;
pub(crate) mod bench_server;
pub(crate) mod crypt;
pub(crate) mod fs;
pub(crate) mod keygen;
pub(crate) mod migrate;
pub(crate) mod mode;
pub(crate) mod pkcs11;
pub(crate) mod seal;
pub(crate) mod server;

use anyhow::Result;
use kura_format::EncryptionContext;

use crate::cli::ContextArgs;

/// The encryption context of `--context KEY=VALUE` flags; a key given twice is refused.
pub(crate) fn context(a: &ContextArgs) -> Result<EncryptionContext> {
    let mut ctx = EncryptionContext::new();
    for (k, v) in &a.pairs {
        if ctx.iter().any(|(key, _)| key == k) {
            anyhow::bail!("--context {k}=… is given twice; each key may appear once");
        }
        ctx.insert(k.clone(), v.clone());
    }
    Ok(ctx)
}
