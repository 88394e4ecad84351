//! The data encryption methods.

use std::fmt;

use serde::Deserialize;

use crate::Error;

/// The method of transparent file encryption (`kura-fs`, `kura fs`): new files are
/// encrypted with it, and it is recorded with each data key (the names are TiKV's, plus
/// `aes256-gcm-page` for files rewritten in place). Records and streams are always sealed
/// with AES-256-GCM whatever the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Method {
    /// No file encryption.
    Plaintext,
    /// AES-128-CTR.
    Aes128Ctr,
    /// AES-192-CTR.
    Aes192Ctr,
    /// AES-256-CTR.
    #[default]
    Aes256Ctr,
    /// SM4-CTR.
    Sm4Ctr,
    /// AES-256-GCM per 4 KiB page (kura-fs files rewritten in place, such as databases).
    Aes256GcmPage,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 6] = [
        Self::Plaintext,
        Self::Aes128Ctr,
        Self::Aes192Ctr,
        Self::Aes256Ctr,
        Self::Sm4Ctr,
        Self::Aes256GcmPage,
    ];

    /// The configuration name, e.g. `aes256-ctr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Aes128Ctr => "aes128-ctr",
            Self::Aes192Ctr => "aes192-ctr",
            Self::Aes256Ctr => "aes256-ctr",
            Self::Sm4Ctr => "sm4-ctr",
            Self::Aes256GcmPage => "aes256-gcm-page",
        }
    }

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "data-encryption-method \"{s}\" is unknown; use plaintext, aes128-ctr, aes192-ctr, aes256-ctr, sm4-ctr or aes256-gcm-page"
                ))
            })
    }

    /// The method's number in kura-fs file headers and dictionaries (part of the format).
    pub fn code(self) -> u8 {
        match self {
            Self::Plaintext => 0,
            Self::Aes128Ctr => 1,
            Self::Aes192Ctr => 2,
            Self::Aes256Ctr => 3,
            Self::Sm4Ctr => 4,
            Self::Aes256GcmPage => 5,
        }
    }

    /// The method numbered `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    /// The CTR cipher of a CTR method.
    pub fn ctr(self) -> Option<kura_crypto::CtrMethod> {
        use kura_crypto::CtrMethod;
        match self {
            Self::Aes128Ctr => Some(CtrMethod::Aes128),
            Self::Aes192Ctr => Some(CtrMethod::Aes192),
            Self::Aes256Ctr => Some(CtrMethod::Aes256),
            Self::Sm4Ctr => Some(CtrMethod::Sm4),
            Self::Plaintext | Self::Aes256GcmPage => None,
        }
    }

    /// The length of a file key.
    pub fn key_len(self) -> usize {
        self.ctr().map_or(32, |c| c.key_len())
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}
