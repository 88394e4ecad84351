//! The encryption context: caller-chosen, non-secret key/value pairs bound to a ciphertext
//! as AAD (like AWS KMS's `EncryptionContext`). Decryption must present the same pairs.

use std::collections::BTreeMap;

/// Key/value pairs bound to a ciphertext. Order of insertion does not matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a pair.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The canonical encoding bound as AAD: `count:u32`, then for each pair in byte order
    /// of keys `klen:u32 ‖ key ‖ vlen:u32 ‖ value` (all big-endian, UTF-8).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (k, v) in &self.0 {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }

    /// The canonical encoding as a new vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_canonical_and_unambiguous() {
        let a: EncryptionContext = [("b", "2"), ("a", "1")].into_iter().collect();
        let b: EncryptionContext = [("a", "1"), ("b", "2")].into_iter().collect();
        assert_eq!(a.encode(), b.encode());
        let c: EncryptionContext = [("a", "1b"), ("", "2")].into_iter().collect();
        assert_ne!(a.encode(), c.encode());
        assert_eq!(EncryptionContext::new().encode(), vec![0, 0, 0, 0]);
    }
}
