//! Dashboard session tokens: HS256 JWTs signed with the JWT secret.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::keys::{self, Key};

const AUDIENCE: &str = "parley-dashboard";

/// What a session token says. The user's role is not in it: it is read from the database on
/// every request, so a demotion takes effect at once.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    pub aud: String,
    /// Issued at and expiry, seconds since the epoch.
    pub iat: u64,
    pub exp: u64,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &Key, ttl: Duration) -> Self {
        let bytes = keys::bytes(secret);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            ttl,
        }
    }

    /// A new session token for a user.
    pub fn issue(&self, user_id: &str, tenant_id: &str) -> ApiResult<String> {
        let iat = crate::time::now_ms().max(0) as u64 / 1000;
        let claims = Claims {
            sub: user_id.to_owned(),
            tid: tenant_id.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("signing a session token: {e}")))
    }

    /// Checks signature, audience and expiry.
    pub fn verify(&self, token: &str) -> ApiResult<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::not_authenticated("the session has expired, log in again")
                }
                _ => ApiError::not_authenticated("invalid credentials"),
            })
    }
}
