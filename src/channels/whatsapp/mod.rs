//! WhatsApp Cloud API: the Graph API client, and (later) the webhook model.

pub mod allow_from;
pub mod graph;
pub mod signature;
pub mod webhook;
