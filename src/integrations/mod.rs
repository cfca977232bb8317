//! Channel accounts bound to bots: what an integration is, its status, and what checking or
//! using it takes. The HTTP handlers in `http::api` stay thin and call into here.

pub mod whatsapp;
