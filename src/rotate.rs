//! `parley keys rotate`: re-encrypt every tenant secret under a new master key.
//!
//! All rows change in one transaction, so a failure leaves every value under the old key. The
//! sealing context of each value (tenant, table, row, column) stays the same.

use anyhow::Context;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use secrecy::ExposeSecret;

use crate::crypto::Vault;
use crate::http::api::fields::secret_context;
use crate::store::Store;
use crate::store::entities::{provider, whatsapp_integration as wi};

/// Counts of what a rotation touched.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotated {
    pub values: usize,
}

fn reseal(vault: &Vault, sealed: &Option<String>, context: &str) -> anyhow::Result<Option<String>> {
    match sealed {
        None => Ok(None),
        Some(s) => {
            let plain = vault
                .open(s, context)
                .with_context(|| format!("cannot open the secret at {context}"))?;
            Ok(Some(vault.seal(plain.expose_secret(), context)?))
        }
    }
}

/// Re-seals every secret with `vault`'s current key. `vault` must also hold the key(s) the
/// values are sealed with now.
pub async fn rotate(store: &Store, vault: &Vault) -> anyhow::Result<Rotated> {
    let txn = crate::store::begin_write(store.db()).await?;
    let mut n = 0;
    for row in provider::Entity::find().all(&txn).await? {
        let ctx = secret_context(&row.tenant_id, "provider", &row.id, "api_key");
        let api_key = reseal(vault, &row.api_key, &ctx)?;
        n += usize::from(api_key.is_some());
        let mut am: provider::ActiveModel = row.into();
        am.api_key = Set(api_key);
        am.update(&txn).await?;
    }
    for row in wi::Entity::find().all(&txn).await? {
        let access_token = reseal(
            vault,
            &row.access_token,
            &crate::integrations::whatsapp::access_token_context(&row),
        )?;
        let app_secret = reseal(
            vault,
            &row.app_secret,
            &crate::integrations::whatsapp::app_secret_context(&row),
        )?;
        n += usize::from(access_token.is_some()) + usize::from(app_secret.is_some());
        let mut am: wi::ActiveModel = row.into();
        am.access_token = Set(access_token);
        am.app_secret = Set(app_secret);
        am.update(&txn).await?;
    }
    txn.commit().await?;
    Ok(Rotated { values: n })
}
