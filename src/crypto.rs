//! Tenant secrets at rest: AES-256-GCM under the master key.
//!
//! A stored value looks like `v1.3f9a0c2e.<base64url(nonce || ciphertext || tag)>`: a format
//! version, the id of the key that sealed it, then a fresh random 96-bit nonce per value and the
//! sealed bytes. The key id lets a key rotation re-encrypt rows one at a time while both keys are
//! loaded. The tenant and column are bound in as associated data, so a ciphertext copied into
//! another row or another tenant does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::keys::{self, Key};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with key {0}, which is not loaded")]
    UnknownKey(String),
    #[error("sealed value does not authenticate under its key")]
    Tampered,
    #[error("no randomness available")]
    Rng,
}

struct LoadedKey {
    id: String,
    cipher: Aes256Gcm,
}

/// Seals and opens tenant secrets. Holds the current key and, during a rotation, older ones.
pub struct Vault {
    current: LoadedKey,
    older: Vec<LoadedKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("current_key_id", &self.current.id)
            .finish_non_exhaustive()
    }
}

/// A short, public fingerprint of a key: the first 4 bytes of SHA-256 over a domain tag and the key.
pub fn key_id(key: &Key) -> String {
    let mut h = Sha256::new();
    h.update(b"parley master key id\0");
    h.update(keys::bytes(key));
    hex::encode(&h.finalize()[..4])
}

fn load(key: &Key) -> LoadedKey {
    let bytes = keys::bytes(key);
    LoadedKey {
        id: key_id(key),
        cipher: Aes256Gcm::new(&(*bytes).into()),
    }
}

impl Vault {
    pub fn new(current: &Key) -> Self {
        Self {
            current: load(current),
            older: Vec::new(),
        }
    }

    /// Adds a key that may still have sealed some values (used while rotating keys).
    pub fn with_older(mut self, key: &Key) -> Self {
        self.older.push(load(key));
        self
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext`. `context` names where it will be stored, such as
    /// `"ten_…/integration.access_token"`; the same context must be given to [`Vault::open`].
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Rng)?;
        let sealed = self
            .current
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Malformed)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// Opens a value sealed by [`Vault::seal`] with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, CryptoError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.id == kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        let plain = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Tampered)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Malformed)
    }

    /// The id of the key that sealed `sealed`, if it is well-formed.
    pub fn sealed_key_id(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, '.');
        (parts.next() == Some(VERSION))
            .then(|| parts.next())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn key(b: u8) -> Key {
        Key::new(Box::new([b; 32]))
    }

    #[test]
    fn seal_then_open_round_trips_with_fresh_nonces() {
        let v = Vault::new(&key(1));
        let a = v.seal("EAAG-token", "ten_1/x").unwrap();
        let b = v.seal("EAAG-token", "ten_1/x").unwrap();
        assert_ne!(a, b, "each value gets its own nonce");
        assert!(!a.contains("EAAG"));
        assert_eq!(v.open(&a, "ten_1/x").unwrap().expose_secret(), "EAAG-token");
    }

    #[test]
    fn wrong_context_tampering_and_unknown_keys_fail() {
        let v = Vault::new(&key(1));
        let sealed = v.seal("secret", "ten_1/x").unwrap();
        assert!(matches!(
            v.open(&sealed, "ten_2/x"),
            Err(CryptoError::Tampered)
        ));
        let mut bad = sealed.clone();
        bad.pop();
        bad.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(v.open(&bad, "ten_1/x").is_err());
        let other = Vault::new(&key(2));
        assert!(matches!(
            other.open(&sealed, "ten_1/x"),
            Err(CryptoError::UnknownKey(_))
        ));
        assert!(matches!(
            v.open("plaintext", "ten_1/x"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn older_keys_still_open_their_values() {
        let old = Vault::new(&key(1));
        let sealed = old.seal("s", "c").unwrap();
        let rotated = Vault::new(&key(2)).with_older(&key(1));
        assert_eq!(rotated.open(&sealed, "c").unwrap().expose_secret(), "s");
        assert_eq!(Vault::sealed_key_id(&sealed), Some(old.current_key_id()));
    }
}
