//! argon2id password hashing, off the async threads.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use std::sync::LazyLock;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{ApiError, ApiResult};

/// Shortest password we accept.
pub const MIN_LEN: usize = 8;
/// Longest: argon2 would take any length, but hashing megabytes is a denial of service.
pub const MAX_LEN: usize = 256;

/// Hashes a password into an argon2id PHC string (salt included).
pub async fn hash(password: SecretString) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Checks `password` against `stored`. With no stored hash (unknown user, or a user without a
/// password) it still spends the time of one verification against a fixed hash, so response
/// times do not tell whether an email exists.
pub async fn verify(password: SecretString, stored: Option<String>) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let (phc, real) = match stored {
            Some(h) => (h, true),
            None => (DUMMY_HASH.clone(), false),
        };
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        let ok = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        Ok::<bool, anyhow::Error>(ok && real)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// An argon2id hash, with the same parameters as real ones, of a password nobody knows.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut secret = [0u8; 32];
    let _ = getrandom::fill(&mut secret);
    Argon2::default()
        .hash_password(&secret)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Validates a new password's length.
pub fn check_new(password: &SecretString) -> ApiResult<()> {
    let n = password.expose_secret().chars().count();
    if n < MIN_LEN {
        return Err(ApiError::bad_request(format!(
            "password must be at least {MIN_LEN} characters"
        )));
    }
    if password.expose_secret().len() > MAX_LEN {
        return Err(ApiError::bad_request(format!(
            "password must be at most {MAX_LEN} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hash(SecretString::from("correct horse")).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify(SecretString::from("correct horse"), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify(SecretString::from("wrong horse"), Some(h))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify_but_do_the_work() {
        // The dummy hash must parse, or unknown users would answer faster (or 500).
        assert!(PasswordHash::new(&DUMMY_HASH).is_ok());
        assert!(!verify(SecretString::from("anything"), None).await.unwrap());
    }
}
