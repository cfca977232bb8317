//! The bot and model provider a turn talks to, kept briefly in memory.
//!
//! Every turn needs the bot (backstory, model) and its provider (endpoint, opened API key,
//! vision model); reading both and decrypting the key for each turn cost about as much as the
//! rest of the turn's reads. Entries live [`TTL`]; updating a bot or provider through this replica clears
//! the cache at once, other replicas within the TTL. Deleting needs no clearing: a deleted
//! bot is unlinked from its integrations (which each turn reads fresh), and a provider can only
//! be deleted when no bot uses it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::llm::provider::LlmProvider;
use crate::state::AppState;
use crate::store::entities::bot;

pub const TTL: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 10_000;

/// A bot with its model client, or why it has none (`Err`, shown in the event log).
pub struct BotModel {
    pub bot: bot::Model,
    pub llm: Result<(Arc<dyn LlmProvider>, Option<String>), String>,
    /// Who looks at the images of its turns (reads the provider's `visionModel`).
    pub vision: super::input::Vision,
}

type Entry = (Instant, Arc<BotModel>);

#[derive(Default)]
pub struct BotCache {
    entries: RwLock<HashMap<(String, String), Entry>>,
}

impl std::fmt::Debug for BotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotCache").finish_non_exhaustive()
    }
}

impl BotCache {
    /// The tenant's bot and its model client. `Err` when the bot no longer exists.
    pub async fn get(
        &self,
        state: &AppState,
        tenant_id: &str,
        bot_id: &str,
    ) -> Result<Arc<BotModel>, String> {
        let key = (tenant_id.to_owned(), bot_id.to_owned());
        {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some((at, entry)) = entries.get(&key)
                && at.elapsed() < TTL
            {
                return Ok(entry.clone());
            }
        }
        let bot = state
            .store()
            .scope(tenant_id)
            .find::<bot::Entity>(bot_id)
            .await
            .map_err(|_| "the linked bot no longer exists".to_owned())?;
        let llm = super::resolve_provider(state, tenant_id, bot.provider_id.as_deref()).await;
        let vision = super::input::vision(state, &bot).await;
        let entry = Arc::new(BotModel { bot, llm, vision });
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), entry.clone()));
        Ok(entry)
    }

    /// Forgets everything (after a bot or provider changed).
    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
