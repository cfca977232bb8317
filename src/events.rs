//! The tenant's event log: what happened to integrations, bots and conversations, in
//! ChatBotKit's event shape (`type` such as `whatsapp.setup.failed`).

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr};
use serde_json::{Value, json};

use crate::ids::{new_id, prefix};
use crate::store::entities::event_log;
use crate::time::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// An entry to record. Build with [`Event::new`] and the setters, then [`Event::record`].
#[derive(Debug, Clone)]
pub struct Event {
    kind: &'static str,
    level: Level,
    message: String,
    integration_id: Option<String>,
    bot_id: Option<String>,
    conversation_id: Option<String>,
    contact_id: Option<String>,
    data: Value,
}

impl Event {
    pub fn new(kind: &'static str, level: Level, message: impl Into<String>) -> Self {
        Self {
            kind,
            level,
            message: message.into(),
            integration_id: None,
            bot_id: None,
            conversation_id: None,
            contact_id: None,
            data: json!({}),
        }
    }

    pub fn integration(mut self, id: &str) -> Self {
        self.integration_id = Some(id.to_owned());
        self
    }

    pub fn bot(mut self, id: Option<&str>) -> Self {
        self.bot_id = id.map(str::to_owned);
        self
    }

    pub fn conversation(mut self, id: &str) -> Self {
        self.conversation_id = Some(id.to_owned());
        self
    }

    pub fn contact(mut self, id: Option<&str>) -> Self {
        self.contact_id = id.map(str::to_owned);
        self
    }

    /// Structured details. Never put secrets or message bodies here.
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// Columns of [`Event::into_row`], for multi-row inserts.
    pub const COLUMNS: &'static str = "id, tenant_id, kind, level, message, integration_id, bot_id, \
                                        conversation_id, contact_id, data, created_at";

    /// The values of an `event_log` row, in [`Event::COLUMNS`] order.
    pub fn into_row(self, tenant_id: &str, now: i64) -> Vec<sea_orm::Value> {
        vec![
            new_id(prefix::EVENT).into(),
            tenant_id.into(),
            self.kind.into(),
            self.level.as_str().into(),
            self.message.into(),
            self.integration_id.into(),
            self.bot_id.into(),
            self.conversation_id.into(),
            self.contact_id.into(),
            self.data.into(),
            now.into(),
        ]
    }

    pub async fn record(self, db: &impl ConnectionTrait, tenant_id: &str) -> Result<(), DbErr> {
        event_log::ActiveModel {
            id: Set(new_id(prefix::EVENT)),
            tenant_id: Set(tenant_id.to_owned()),
            kind: Set(self.kind.to_owned()),
            level: Set(self.level.as_str().to_owned()),
            message: Set(self.message),
            integration_id: Set(self.integration_id),
            bot_id: Set(self.bot_id),
            conversation_id: Set(self.conversation_id),
            contact_id: Set(self.contact_id),
            data: Set(self.data),
            created_at: Set(now_ms()),
        }
        .insert(db)
        .await?;
        Ok(())
    }
}
