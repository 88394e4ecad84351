//! `data-encryption-method`.

use std::fmt;
use std::str::FromStr;

use kura_crypto::CtrMethod;

use crate::Error;

/// How a file is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// Not encrypted (the default, as TiKV's).
    #[default]
    Plaintext,
    /// AES-128 in CTR mode: write-once and append-only files.
    Aes128Ctr,
    /// AES-192 in CTR mode.
    Aes192Ctr,
    /// AES-256 in CTR mode.
    Aes256Ctr,
    /// SM4 in CTR mode.
    Sm4Ctr,
    /// AES-256-GCM per 4 KiB page with a fresh nonce per write: files rewritten in place.
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

    /// The configuration name.
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

    /// The method's number in the dictionary (stable: part of the format).
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
    pub fn ctr(self) -> Option<CtrMethod> {
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
        match self.ctr() {
            Some(c) => c.key_len(),
            None => 32,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::UnknownMethod(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
            assert_eq!(Method::from_code(m.code()), Some(m));
        }
        assert!("aes256-gcm".parse::<Method>().is_err());
        assert_eq!(Method::from_code(9), None);
        assert_eq!(Method::Sm4Ctr.key_len(), 16);
        assert_eq!(Method::Aes192Ctr.key_len(), 24);
        assert_eq!(Method::Aes256GcmPage.key_len(), 32);
    }
}
