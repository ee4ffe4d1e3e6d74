//! The node lists: the close list (our k-buckets) and the per-key search
//! lists, with c-toxcore's rules for what gets in.
//!
//! - The **close list** has 128 buckets of 8; a node goes into the bucket
//!   numbered by the leading bits its key shares with ours (capped at 127).
//!   A newcomer takes a free slot or one whose node has gone bad; good nodes
//!   are never pushed out (c-toxcore's `add_to_close`).
//! - A **search list** holds the 8 nodes closest to a searched key (a
//!   friend's DHT key, or one of two random keys that make us explore the
//!   network). A newcomer takes a free or bad slot, or replaces the farthest
//!   node if it is closer (c-toxcore's `replace_all`).

use std::cmp::Ordering;
use std::net::SocketAddr;
use std::time::Instant;

use super::client::{Client, cmp_distance, common_prefix_bits};
use crate::crypto::PublicKey;

/// Buckets in the close list (c-toxcore's LCLIENT_LENGTH).
pub const BUCKETS: usize = 128;
/// Nodes per bucket and per search list (LCLIENT_NODES, MAX_FRIEND_CLIENTS).
pub const BUCKET_SIZE: usize = 8;

/// What recording an answer did to a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The node was listed already; its address and time were refreshed.
    Refreshed,
    /// The node was added.
    Added,
    /// The node does not fit.
    Refused,
}

impl Admission {
    /// Whether the node is now listed.
    pub fn is_listed(self) -> bool {
        self != Self::Refused
    }
}

/// Our k-buckets.
#[derive(Debug, Clone)]
pub struct CloseList {
    own: PublicKey,
    buckets: Vec<Vec<Client>>,
}

impl CloseList {
    /// An empty close list around our DHT key.
    pub fn new(own: PublicKey) -> Self {
        Self { own, buckets: vec![Vec::new(); BUCKETS] }
    }

    fn bucket_of(&self, key: &PublicKey) -> usize {
        common_prefix_bits(&self.own, key).min(BUCKETS - 1)
    }

    /// The node with this key, if listed.
    pub fn get(&self, key: &PublicKey) -> Option<&Client> {
        self.buckets[self.bucket_of(key)].iter().find(|c| c.public_key == *key)
    }

    /// The node with this key, if listed.
    pub fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Client> {
        let bucket = self.bucket_of(key);
        self.buckets[bucket].iter_mut().find(|c| c.public_key == *key)
    }

    /// Whether a node with this key could be added now (without adding it).
    pub fn can_add(&self, key: &PublicKey, now: Instant) -> bool {
        *key != self.own && self.get(key).is_none() && self.free_slot(self.bucket_of(key), now).is_some()
    }

    fn free_slot(&self, bucket: usize, now: Instant) -> Option<usize> {
        let list = &self.buckets[bucket];
        if list.len() < BUCKET_SIZE { Some(list.len()) } else { list.iter().position(|c| !c.is_good(now)) }
    }

    /// Records that `key` answered from `addr`: refreshes it when listed,
    /// else adds it if its bucket has room.
    pub fn heard_from(&mut self, key: &PublicKey, addr: SocketAddr, now: Instant) -> Admission {
        if *key == self.own {
            return Admission::Refused;
        }
        let bucket = self.bucket_of(key);
        if let Some(client) = self.buckets[bucket].iter_mut().find(|c| c.public_key == *key) {
            client.heard_from(addr, now);
            return Admission::Refreshed;
        }
        match self.free_slot(bucket, now) {
            Some(slot) if slot == self.buckets[bucket].len() => self.buckets[bucket].push(Client::new(*key, addr, now)),
            Some(slot) => self.buckets[bucket][slot] = Client::new(*key, addr, now),
            None => return Admission::Refused,
        }
        Admission::Added
    }

    /// Every listed node.
    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.buckets.iter().flatten()
    }

    /// Every listed node, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Client> {
        self.buckets.iter_mut().flatten()
    }
}

/// The nodes closest to one searched key.
#[derive(Debug, Clone)]
pub struct SearchList {
    target: PublicKey,
    clients: Vec<Client>,
}

impl SearchList {
    /// An empty list for `target`.
    pub fn new(target: PublicKey) -> Self {
        Self { target, clients: Vec::with_capacity(BUCKET_SIZE) }
    }

    /// The searched key.
    pub fn target(&self) -> &PublicKey {
        &self.target
    }

    /// The listed nodes.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// The listed nodes, mutable.
    pub fn clients_mut(&mut self) -> &mut [Client] {
        &mut self.clients
    }

    /// The node with this key, if listed.
    pub fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Client> {
        self.clients.iter_mut().find(|c| c.public_key == *key)
    }

    /// The slot a newcomer would take: a free one, a bad one, or the
    /// farthest node's when the newcomer is closer.
    fn slot_for(&self, key: &PublicKey, now: Instant) -> Option<usize> {
        if self.clients.len() < BUCKET_SIZE {
            return Some(self.clients.len());
        }
        if let Some(bad) = self.clients.iter().position(|c| !c.is_good(now)) {
            return Some(bad);
        }
        let (far, farthest) = self
            .clients
            .iter()
            .enumerate()
            .max_by(|(_, a), (_, b)| cmp_distance(&self.target, &a.public_key, &b.public_key))?;
        (cmp_distance(&self.target, key, &farthest.public_key) == Ordering::Less).then_some(far)
    }

    /// Whether `key` would be added now (without adding it).
    pub fn can_add(&self, key: &PublicKey, now: Instant) -> bool {
        self.clients.iter().all(|c| c.public_key != *key) && self.slot_for(key, now).is_some()
    }

    /// Records that `key` answered from `addr`.
    pub fn heard_from(&mut self, key: &PublicKey, addr: SocketAddr, now: Instant) -> Admission {
        if let Some(client) = self.get_mut(key) {
            client.heard_from(addr, now);
            return Admission::Refreshed;
        }
        match self.slot_for(key, now) {
            Some(slot) if slot == self.clients.len() => self.clients.push(Client::new(*key, addr, now)),
            Some(slot) => self.clients[slot] = Client::new(*key, addr, now),
            None => return Admission::Refused,
        }
        Admission::Added
    }
}

/// A bounded list of candidate nodes kept sorted by distance to `base`:
/// when full, a closer node pushes out the farthest (c-toxcore's
/// `add_to_list`, used for the nodes to ask next and the nodes to ping).
#[derive(Debug, Clone)]
pub struct Candidates {
    capacity: usize,
    nodes: Vec<(PublicKey, SocketAddr)>,
}

impl Candidates {
    /// An empty list of at most `capacity` nodes.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, nodes: Vec::with_capacity(capacity) }
    }

    /// Adds a node unless its key is already there or the list is full of
    /// nodes closer to `base`. Returns whether it was added.
    pub fn add(&mut self, base: &PublicKey, key: PublicKey, addr: SocketAddr) -> bool {
        if self.nodes.iter().any(|(k, _)| *k == key) {
            return false;
        }
        let at = self.nodes.partition_point(|(k, _)| cmp_distance(base, k, &key) != Ordering::Greater);
        if at >= self.capacity {
            return false;
        }
        self.nodes.insert(at, (key, addr));
        self.nodes.truncate(self.capacity);
        true
    }

    /// Takes every node out.
    pub fn take(&mut self) -> Vec<(PublicKey, SocketAddr)> {
        std::mem::take(&mut self.nodes)
    }

    /// How many nodes are waiting.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proto::dht::client::BAD_NODE_TIMEOUT;

    fn key(bytes: &[u8]) -> PublicKey {
        let mut out = [0u8; 32];
        out[..bytes.len()].copy_from_slice(bytes);
        PublicKey::from_bytes(out)
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, n], 33445))
    }

    #[test]
    fn close_list_buckets_keep_good_nodes() {
        let t0 = crate::proto::test_epoch();
        let mut list = CloseList::new(key(&[0]));
        // Nine keys sharing exactly one leading bit with ours land in bucket 1.
        let keys: Vec<PublicKey> = (0..9u8).map(|i| key(&[0b0100_0000 | i])).collect();
        for (i, k) in keys.iter().take(8).enumerate() {
            assert_eq!(list.heard_from(k, addr(i as u8), t0), Admission::Added);
        }
        assert!(!list.can_add(&keys[8], t0));
        assert_eq!(list.heard_from(&keys[8], addr(9), t0), Admission::Refused);
        // Once a node goes bad, a newcomer takes its place.
        let later = t0 + BAD_NODE_TIMEOUT;
        for k in &keys[1..8] {
            assert_eq!(list.heard_from(k, addr(1), later), Admission::Refreshed);
        }
        assert!(list.can_add(&keys[8], later));
        assert_eq!(list.heard_from(&keys[8], addr(9), later), Admission::Added);
        assert!(list.get(&keys[0]).is_none());
        assert_eq!(list.iter().count(), 8);
        // Never ourselves.
        assert!(!list.heard_from(&key(&[0]), addr(1), t0).is_listed());
    }

    #[test]
    fn search_list_keeps_the_closest() {
        let t0 = crate::proto::test_epoch();
        let target = key(&[0x80]);
        let mut list = SearchList::new(target);
        for i in 0..8u8 {
            assert!(list.heard_from(&key(&[0x80 ^ (0x40 + i)]), addr(i), t0).is_listed());
        }
        // Farther than all: refused. Closer: replaces the farthest.
        assert!(!list.can_add(&key(&[0x80 ^ 0x7f]), t0));
        assert_eq!(list.heard_from(&key(&[0x80 ^ 0x01]), addr(20), t0), Admission::Added);
        assert!(list.clients().iter().all(|c| c.public_key != key(&[0x80 ^ 0x47])));
        assert!(list.clients().iter().any(|c| c.public_key == key(&[0x80 ^ 0x01])));
        // A bad node is replaced even by a farther one.
        let later = t0 + BAD_NODE_TIMEOUT + Duration::from_secs(1);
        assert_eq!(list.heard_from(&key(&[0x80 ^ 0x7f]), addr(21), later), Admission::Added);
    }

    #[test]
    fn candidates_keep_the_closest_in_order() {
        let base = key(&[0]);
        let mut c = Candidates::new(3);
        for b in [9u8, 3, 7, 1, 8] {
            c.add(&base, key(&[b]), addr(b));
        }
        assert!(!c.add(&base, key(&[3]), addr(3)), "duplicate");
        let got: Vec<u8> = c.take().iter().map(|(k, _)| k.as_bytes()[0]).collect();
        assert_eq!(got, [1, 3, 7]);
        assert!(c.is_empty());
    }
}
