//! Keeps floods out of the event log: at most one entry per key per interval, with a count of
//! what was held back carried by the next one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked; beyond this, expired keys are dropped, and if none are, the map is reset
/// (erring towards logging rather than remembering forever).
const MAX_KEYS: usize = 10_000;

#[derive(Debug)]
pub struct EventLimiter {
    interval: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl EventLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` when an entry for `key` may be written now (with how many were held
    /// back since the last one); `None` when it must be skipped.
    pub fn admit(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_KEYS && !seen.contains_key(key) {
            let interval = self.interval;
            seen.retain(|_, (at, _)| now.duration_since(*at) < interval);
            if seen.len() >= MAX_KEYS {
                seen.clear();
            }
        }
        match seen.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            Some(entry) => {
                let held = entry.1;
                *entry = (now, 0);
                Some(held)
            }
            None => {
                seen.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_interval_with_a_count_of_the_rest() {
        let l = EventLimiter::new(Duration::from_millis(50));
        assert_eq!(l.admit("a"), Some(0));
        assert_eq!(l.admit("a"), None);
        assert_eq!(l.admit("a"), None);
        assert_eq!(l.admit("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.admit("a"), Some(2));
    }
}
