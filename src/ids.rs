//! Opaque, prefixed, time-ordered ids such as `bot_0193c1f2a4b87c3e9d0f5a6b7c8d9e0f`.
//!
//! The part after the prefix is a UUIDv7 in lowercase hex. UUIDv7 starts with a millisecond
//! timestamp and, within one process, a monotonic counter, so ids of one kind sort in creation
//! order. List pagination relies on that: the cursor is the last id seen, and rows inserted while
//! a client pages through a list can only land before the cursor (in `desc` order) or after the
//! last page (in `asc` order), never in the middle of the pages already handed out.

use uuid::Uuid;

/// The prefixes in use. One per resource, so an id says what it points to.
pub mod prefix {
    pub const TENANT: &str = "ten";
    pub const USER: &str = "usr";
    pub const API_TOKEN: &str = "tok";
    pub const PROVIDER: &str = "prv";
    pub const BOT: &str = "bot";
    pub const WHATSAPP_INTEGRATION: &str = "wai";
    pub const CONTACT: &str = "con";
    pub const CONVERSATION: &str = "cnv";
    pub const MESSAGE: &str = "msg";
    pub const EVENT: &str = "evt";
    pub const INBOUND: &str = "inb";
    pub const STATUS: &str = "sts";
    pub const TURN: &str = "trn";
    pub const SANDBOX_MESSAGE: &str = "sbm";
}

/// A new id with the given prefix.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

/// Longest id or cursor we accept from a client; anything longer is not one of ours.
pub const MAX_ID_LEN: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("x")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids[0].starts_with("x_"));
        assert_eq!(ids[0].len(), 2 + 32);
    }
}
