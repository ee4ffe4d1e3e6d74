//! The friend requests a node has already reported, so that the copies a
//! sender keeps resending are reported once.
//!
//! As c-toxcore's `friend_requests.c`, at most [`REQUESTS_KEPT`] senders are
//! remembered, the oldest forgotten first, so strangers sending from fresh
//! keys cannot grow it. Unlike it, a request is news again when its message
//! differs from the one remembered (a client that was refused for a wrong
//! secret and comes back with the right one), or once [`REQUEST_MEMORY`] has
//! passed since it was reported: a refusal is not forever, and a sender
//! resending one request is reported at most once per that time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::crypto::PublicKey;

/// How many senders are remembered (c-toxcore's `MAX_RECEIVED_STORED`).
pub const REQUESTS_KEPT: usize = 32;

/// How long a reported request stays known.
pub const REQUEST_MEMORY: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Seen {
    key: PublicKey,
    message: Bytes,
    at: Instant,
}

/// Requests reported, newest last.
#[derive(Debug, Default)]
pub struct SeenRequests {
    seen: VecDeque<Seen>,
}

impl SeenRequests {
    /// Whether a request from `key` with `message` is news (to report);
    /// remembers it when it is.
    pub fn is_news(&mut self, now: Instant, key: &PublicKey, message: &Bytes) -> bool {
        if let Some(at) = self.seen.iter().position(|s| s.key == *key) {
            let old = &self.seen[at];
            if old.message == *message && now.saturating_duration_since(old.at) < REQUEST_MEMORY {
                return false;
            }
            self.seen.remove(at);
        }
        if self.seen.len() >= REQUESTS_KEPT {
            self.seen.pop_front();
        }
        self.seen.push_back(Seen { key: *key, message: message.clone(), at: now });
        true
    }

    /// Forgets `key`: its next request is news.
    pub fn remove(&mut self, key: &PublicKey) {
        self.seen.retain(|s| s.key != *key);
    }

    /// How many senders are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PublicKey {
        PublicKey::from_bytes([i; 32])
    }

    #[test]
    fn oldest_sender_is_forgotten_first() {
        let now = crate::proto::test_epoch();
        let mut seen = SeenRequests::default();
        let m = Bytes::from_static(b"m");
        for i in 0..40 {
            assert!(seen.is_news(now, &key(i), &m));
        }
        assert_eq!(seen.len(), REQUESTS_KEPT);
        // The first eight were pushed out; the rest are still known.
        assert!(seen.is_news(now, &key(0), &m));
        assert!(!seen.is_news(now, &key(39), &m));
        seen.remove(&key(39));
        assert!(seen.is_news(now, &key(39), &m));
        assert!(!seen.is_news(now + REQUEST_MEMORY - Duration::from_millis(1), &key(39), &m));
        assert!(seen.is_news(now + REQUEST_MEMORY, &key(39), &m));
    }
}
