//! # kura-server
//!
//! The KMS service: the AWS KMS JSON 1.1 protocol over HTTP, authenticated with SigV4,
//! authorised by key policies, with every key's material sealed by the kura hierarchy.
//!
//! - [`http`]: the axum router: `POST /` (KMS), `GET /health`, `GET /metrics`.
//! - [`Kms`]: keys, aliases, users and the operations on them; [`Kms::handle`] answers
//!   one verified request.
//! - [`sigv4`]: signature verification; `policy`: key policies.
//! - [`error::KmsError`]: every error as AWS names it, mapped to `__type` and a status in
//!   one exhaustive `match`.
//!
//! Key material never leaves the process unsealed: it is stored as kura records under the
//! `kms` keyring's data keys and cached in memory in zeroizing types.

#![forbid(unsafe_code)]

mod aliases;
mod asymmetric;
mod blob;
mod crypto;
pub mod error;
pub mod http;
mod import;
mod json;
mod keys;
mod metrics;
mod model;
mod ops;
pub(crate) mod policy;
mod rotation;
mod service;
pub mod sigv4;
mod users;

/// The region a server answers for unless told otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The account id in ARNs unless told otherwise (the example account of AWS's documents).
pub const DEFAULT_ACCOUNT: &str = "111122223333";

pub use ops::{Caller, OPERATIONS};
pub use service::{ExtraMetrics, Identity, KMS_KEYRING, Kms, MAX_UNCHECKED_SECS};
pub use users::{NewCredentials, UserDoc};
