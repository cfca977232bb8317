//! What the callback endpoint and the engine need to know about an integration, cached briefly.
//!
//! Meta may call thousands of times a second, and every turn needs the integration too; reading
//! and decrypting it each time would cost more than the rest of the request. Entries live
//! [`TTL`]; this replica forgets an entry at once when the integration is updated or deleted
//! through it, other replicas within the TTL. A deleted integration is also checked for again
//! in the storing transaction, so its callback stops working at once everywhere.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sea_orm::EntityTrait;
use secrecy::{ExposeSecret, SecretBox};

use crate::channels::whatsapp::allow_from::AllowFrom;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::entities::whatsapp_integration as wi;

pub const TTL: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 50_000;

/// An integration, as its callback sees it: the stored row (the engine reads it for every turn
/// too), with its app secret opened and its `allowFrom` parsed once.
#[derive(Debug)]
pub struct CallbackTarget {
    pub row: wi::Model,
    /// Opened app secret, if one is set.
    pub app_secret: Option<SecretBox<Vec<u8>>>,
    pub allow_from: AllowFrom,
}

/// When an entry was loaded, and the integration (`None`: there is no such integration).
type Entry = (Instant, Option<Arc<CallbackTarget>>);

#[derive(Debug, Default)]
pub struct CallbackCache {
    entries: RwLock<HashMap<String, Entry>>,
}

impl CallbackCache {
    /// The integration, or `None` when there is no such integration.
    pub async fn get(&self, state: &AppState, id: &str) -> ApiResult<Option<Arc<CallbackTarget>>> {
        if id.len() > crate::ids::MAX_ID_LEN {
            return Ok(None);
        }
        {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some((at, target)) = entries.get(id)
                && at.elapsed() < TTL
            {
                return Ok(target.clone());
            }
        }
        // Webhook routing decides the tenant from the integration id, as login does from the
        // email: this is the one lookup by id across tenants.
        let row = wi::Entity::find_by_id(id.to_owned())
            .one(state.store().db())
            .await?;
        let target = row.map(|r| load(state, r)).transpose()?.map(Arc::new);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(id.to_owned(), (Instant::now(), target.clone()));
        Ok(target)
    }

    /// Drops an integration from this replica's cache (after an update or delete).
    pub fn forget(&self, id: &str) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

fn load(state: &AppState, row: wi::Model) -> ApiResult<CallbackTarget> {
    let app_secret = match &row.app_secret {
        None => None,
        Some(sealed) => {
            let ctx = crate::integrations::whatsapp::app_secret_context(&row);
            let opened = state
                .vault()
                .open(sealed, &ctx)
                .map_err(ApiError::internal)?;
            Some(SecretBox::new(Box::new(
                opened.expose_secret().as_bytes().to_vec(),
            )))
        }
    };
    // A stored allowFrom was validated on write; if it somehow no longer parses, nobody is
    // allowed rather than everybody.
    let allow_from = AllowFrom::parse(&row.allow_from).unwrap_or(AllowFrom::Numbers(Vec::new()));
    Ok(CallbackTarget {
        row,
        app_secret,
        allow_from,
    })
}
