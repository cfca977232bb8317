//! API tokens: `prl_` followed by 256 random bits in base64url. Only their SHA-256 is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// Every API token starts with this, which also tells it apart from a JWT.
pub const PREFIX: &str = "prl_";
/// How much of the token is kept in clear, to tell tokens apart in lists.
const SHOWN_LEN: usize = 12;

/// A freshly minted token: the secret (shown once) and what gets stored.
pub struct NewToken {
    pub secret: SecretString,
    pub hash: String,
    pub shown_prefix: String,
}

pub fn mint() -> ApiResult<NewToken> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("no randomness: {e}")))?;
    let secret = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    Ok(NewToken {
        hash: hash(&secret),
        shown_prefix: secret[..SHOWN_LEN].to_owned(),
        secret: SecretString::from(secret),
    })
}

/// Hex SHA-256 of a token, as stored.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a bearer credential looks like one of our API tokens.
pub fn looks_like_token(credential: &SecretString) -> bool {
    credential.expose_secret().starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = mint().unwrap();
        let b = mint().unwrap();
        assert_ne!(a.secret.expose_secret(), b.secret.expose_secret());
        assert_eq!(a.secret.expose_secret().len(), PREFIX.len() + 43);
        assert_eq!(a.hash, hash(a.secret.expose_secret()));
        assert!(!a.hash.contains(&a.secret.expose_secret()[PREFIX.len()..]));
        assert!(a.secret.expose_secret().starts_with(&a.shown_prefix));
    }
}
