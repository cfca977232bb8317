//! Messaging channels. WhatsApp's Cloud API today; Twilio joins later.

pub mod whatsapp;
