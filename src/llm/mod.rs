//! Language models: the model string ([`model`]), the vendor-neutral [`LlmProvider`] with its
//! request and response types ([`provider`]), and one module per vendor API ([`openai`],
//! [`anthropic`]). `sse` parses the event streams both vendors answer with.

pub mod anthropic;
pub mod model;
pub mod openai;
pub mod provider;
mod sse;

pub use provider::*;
