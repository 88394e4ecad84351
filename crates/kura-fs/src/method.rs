//! `data-encryption-method`: the configuration's own [`kura_keys::config::Method`] (names,
//! format codes, CTR ciphers and key lengths live there).

pub use kura_keys::config::Method;
