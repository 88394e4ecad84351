//! One module per group of commands.

pub(crate) mod admin;
pub(crate) mod bench;
pub(crate) mod bench_server;
pub(crate) mod crypt;
pub(crate) mod keygen;
pub(crate) mod server;
