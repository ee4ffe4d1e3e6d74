//! Requests waiting for an answer (c-toxcore's ping arrays).
//!
//! Each ping or nodes request carries a random 8-byte id; an answer counts
//! only if it echoes an id we sent, within [`REQUEST_TIMEOUT`], from the key
//! and address we sent it to. Anything else is an unsolicited answer and is
//! dropped: that is what stops forged nodes responses from filling our lists.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::crypto::PublicKey;

/// How long an answer is awaited (c-toxcore's PING_TIMEOUT).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most requests awaited at once; the oldest is forgotten beyond it
/// (c-toxcore's DHT_PING_ARRAY_SIZE).
pub const MAX_PENDING: usize = 512;

/// What a request asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A ping request (0x00).
    Ping,
    /// A nodes request (0x02).
    Nodes,
}

#[derive(Debug, Clone, Copy)]
struct Request {
    kind: RequestKind,
    key: PublicKey,
    addr: SocketAddr,
    sent: Instant,
}

/// Requests awaiting answers, by id.
#[derive(Debug, Default)]
pub struct Pending {
    by_id: HashMap<u64, Request>,
    order: VecDeque<u64>,
}

impl Pending {
    /// Remembers a request sent now with `id` (ids come from the caller's RNG
    /// and must not be 0).
    pub fn insert(&mut self, id: u64, kind: RequestKind, key: PublicKey, addr: SocketAddr, now: Instant) {
        self.expire(now);
        while self.by_id.len() >= MAX_PENDING {
            match self.order.pop_front() {
                Some(old) => self.by_id.remove(&old),
                None => break,
            };
        }
        if self.by_id.insert(id, Request { kind, key, addr, sent: now }).is_none() {
            self.order.push_back(id);
        }
    }

    /// Takes the request an answer refers to, if it is ours, not expired, and
    /// the answer comes from the key and address it was sent to.
    pub fn take(&mut self, id: u64, kind: RequestKind, key: &PublicKey, addr: SocketAddr, now: Instant) -> bool {
        match self.by_id.get(&id) {
            Some(r) if r.kind == kind && r.key == *key && r.addr == addr && now < r.sent + REQUEST_TIMEOUT => {
                self.by_id.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// Forgets expired requests.
    pub fn expire(&mut self, now: Instant) {
        while let Some(id) = self.order.front() {
            match self.by_id.get(id) {
                Some(r) if now < r.sent + REQUEST_TIMEOUT => break,
                _ => {
                    let id = *id;
                    self.order.pop_front();
                    self.by_id.remove(&id);
                }
            }
        }
    }

    /// How many requests are awaited.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is awaited.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_match_and_be_timely() {
        let t0 = crate::proto::test_epoch();
        let key = PublicKey::from_bytes([1; 32]);
        let other = PublicKey::from_bytes([2; 32]);
        let addr: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let mut p = Pending::default();
        p.insert(7, RequestKind::Nodes, key, addr, t0);
        assert!(!p.take(7, RequestKind::Ping, &key, addr, t0));
        assert!(!p.take(7, RequestKind::Nodes, &other, addr, t0));
        assert!(!p.take(7, RequestKind::Nodes, &key, "198.18.0.2:1".parse().unwrap(), t0));
        assert!(!p.take(8, RequestKind::Nodes, &key, addr, t0));
        assert!(p.take(7, RequestKind::Nodes, &key, addr, t0 + Duration::from_secs(4)));
        assert!(!p.take(7, RequestKind::Nodes, &key, addr, t0), "an answer counts once");

        p.insert(9, RequestKind::Ping, key, addr, t0);
        assert!(!p.take(9, RequestKind::Ping, &key, addr, t0 + REQUEST_TIMEOUT));
        p.expire(t0 + REQUEST_TIMEOUT);
        assert!(p.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let t0 = crate::proto::test_epoch();
        let key = PublicKey::from_bytes([1; 32]);
        let addr: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let mut p = Pending::default();
        for id in 1..=(MAX_PENDING as u64 + 10) {
            p.insert(id, RequestKind::Ping, key, addr, t0);
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert!(!p.take(1, RequestKind::Ping, &key, addr, t0), "the oldest was forgotten");
        assert!(p.take(MAX_PENDING as u64 + 10, RequestKind::Ping, &key, addr, t0));
    }
}
