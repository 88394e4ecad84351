//! # kura-fs: transparent file encryption
//!
//! Files under a data root, encrypted with per-file keys derived from the kura hierarchy
//! and tracked by a file dictionary keyed by paths relative to the root.
//!
//! - [`Method`]: `plaintext`, `aes128-ctr`, `aes192-ctr`, `aes256-ctr`, `sm4-ctr` for files
//!   written once or appended to, and `aes256-gcm-page` for files rewritten in place.
//! - [`EncryptedFs`]: create, open, read/write at offsets, set_len, sync, rename, hard
//!   link, delete, list; files already under the root in plaintext stay readable.
//! - [`dict`]: the file dictionary, an append-only log of sealed records compacted into
//!   a snapshot, durable before every call returns.

#![forbid(unsafe_code)]

mod backend;
pub mod dict;
mod error;
pub mod file;
mod fs;
mod method;
mod metrics;
pub mod page;
pub mod registry;

pub use backend::RedbBackend;
pub use dict::{Dictionary, FileInfo, Peek};
pub use error::Error;
pub use file::File;
pub use fs::{EncryptedFs, META_DIR, Options, normalize};
pub use method::Method;
pub use metrics::root_metrics;
