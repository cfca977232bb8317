//! sea-orm entities, one file per table. Tables are singular, keys are `<table>_id` in foreign
//! columns, times are `*_at` milliseconds since the epoch. Every table holding tenant data has a
//! `tenant_id` and implements [`crate::store::TenantOwned`].

pub mod api_token;
pub mod bot;
pub mod contact;
pub mod contact_lane;
pub mod conversation;
pub mod event_log;
pub mod inbound_message;
pub mod login_throttle;
pub mod message;
pub mod message_status;
pub mod provider;
pub mod sandbox_message;
pub mod tenant;
pub mod turn;
pub mod user;
pub mod whatsapp_integration;
