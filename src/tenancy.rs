//! Creating tenants and their first user, and API tokens. Shared by signup, the
//! `parley tenant create` command and the token API.

use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use secrecy::SecretString;

use crate::auth::{Role, token};
use crate::error::{ApiError, ApiResult};
use crate::ids::{new_id, prefix};
use crate::store::entities::{api_token, tenant, user};
use crate::store::{Store, TenantScope, is_unique_violation};
use crate::time::now_ms;

/// Longest name (tenant, user, token) we store.
pub const MAX_NAME_LEN: usize = 200;

/// A trimmed, non-empty name without control characters.
pub fn clean_name(field: &str, raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be empty")));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {MAX_NAME_LEN} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(name.to_owned())
}

/// A lower-cased email address with one `@`, a dot in the domain, and no spaces.
pub fn clean_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(ApiError::bad_request("email is not a valid email address"))
    }
}

/// A new tenant and its owner, created together or not at all.
pub async fn create_tenant(
    store: &Store,
    tenant_name: &str,
    user_name: &str,
    email: &str,
    password_hash: Option<String>,
) -> ApiResult<(tenant::Model, user::Model)> {
    let now = now_ms();
    let txn = crate::store::begin_write(store.db()).await?;
    let tenant = tenant::ActiveModel {
        id: Set(new_id(prefix::TENANT)),
        name: Set(tenant_name.to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let user = user::ActiveModel {
        id: Set(new_id(prefix::USER)),
        tenant_id: Set(tenant.id.clone()),
        email: Set(email.to_owned()),
        name: Set(user_name.to_owned()),
        password_hash: Set(password_hash),
        role: Set(Role::Owner.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict("an account with this email already exists")
        } else {
            e.into()
        }
    })?;
    txn.commit().await?;
    Ok((tenant, user))
}

/// Creates an API token in `scope`'s tenant and returns it with its secret (shown once).
pub async fn create_token(
    scope: &TenantScope,
    user_id: Option<String>,
    name: &str,
    role: Role,
) -> ApiResult<(api_token::Model, SecretString)> {
    let minted = token::mint()?;
    let now = now_ms();
    let row = api_token::ActiveModel {
        id: Set(new_id(prefix::API_TOKEN)),
        tenant_id: Set(scope.tenant_id().to_owned()),
        user_id: Set(user_id),
        name: Set(name.to_owned()),
        role: Set(role.as_str().to_owned()),
        token_hash: Set(minted.hash),
        token_prefix: Set(minted.shown_prefix),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(scope.db())
    .await?;
    Ok((row, minted.secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_emails_are_cleaned_or_refused() {
        assert_eq!(clean_name("name", "  Acme  ").unwrap(), "Acme");
        assert!(clean_name("name", "   ").is_err());
        assert!(clean_name("name", "a\u{0}b").is_err());
        assert!(clean_name("name", &"x".repeat(201)).is_err());
        assert_eq!(clean_email(" Ana@Example.COM ").unwrap(), "ana@example.com");
        for bad in [
            "",
            "ana",
            "ana@",
            "@x.com",
            "ana@x",
            "a b@x.com",
            "a@b@x.com",
            "a@.x.com",
        ] {
            assert!(clean_email(bad).is_err(), "{bad}");
        }
    }
}
