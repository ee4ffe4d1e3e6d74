//! Onion paths and the nodes they are built from (c-toxcore's
//! `onion_client.c`: `random_path`, `path_timed_out`, `set_path_timeouts`,
//! `onion_add_path_node`).
//!
//! A client keeps two sets of 6 paths, one for announcing itself and one for
//! searching friends. A path is 3 nodes picked at random from recently
//! heard-of DHT nodes (or the bootstrap nodes while there are none), never
//! the same node twice in a row while another is known. Hop 1
//! sees our DHT key (it sees our address anyway); hops 2 and 3 see fresh
//! temporary keys. A path is replaced when it is 20 minutes old, or when it
//! was used 4 times without a response for 4 s (a new path) or 10 s (one
//! that worked before). Each path has a number whose low digits say its
//! slot, so a response can name the path it came back on.

use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

use crate::crypto::{KeyPair, PublicKey};
use crate::wire::onion_request::OnionPath;
use crate::wire::packed_node::{PackedNode, Protocol};

/// Paths per purpose (NUMBER_ONION_PATHS).
pub const PATHS: usize = 6;
/// A new path is dropped after this long without a response (ONION_PATH_FIRST_TIMEOUT).
pub const PATH_FIRST_TIMEOUT: Duration = Duration::from_secs(4);
/// A path that worked is dropped after this long without a response (ONION_PATH_TIMEOUT).
pub const PATH_TIMEOUT: Duration = Duration::from_secs(10);
/// No path lives longer (ONION_PATH_MAX_LIFETIME).
pub const PATH_MAX_LIFETIME: Duration = Duration::from_secs(1200);
/// Uses without a response before the timeouts apply (ONION_PATH_MAX_NO_RESPONSE_USES).
pub const PATH_MAX_NO_RESPONSE_USES: u32 = 4;
/// Recently heard-of nodes kept for building paths (MAX_PATH_NODES).
pub const MAX_PATH_NODES: usize = 32;

/// A ring of recently heard-of nodes, newest replacing oldest. Each node
/// counts the paths through it that failed since one last worked: new paths
/// avoid nodes that keep failing (a node that left the network), as long as
/// others are left to choose from.
#[derive(Debug, Clone, Default)]
pub struct PathNodes {
    nodes: Vec<PackedNode>,
    failures: Vec<u8>,
    next: usize,
}

/// Failed paths after which a node is avoided.
const AVOID_AFTER_FAILURES: u8 = 2;

impl PathNodes {
    /// Adds a node unless its key is known already. UDP nodes only.
    pub fn add(&mut self, node: PackedNode) -> bool {
        if node.protocol != crate::wire::packed_node::Protocol::Udp
            || self.nodes.iter().any(|n| n.public_key == node.public_key)
        {
            return false;
        }
        if self.nodes.len() < MAX_PATH_NODES {
            self.nodes.push(node);
            self.failures.push(0);
        } else {
            self.nodes[self.next] = node;
            self.failures[self.next] = 0;
        }
        self.next = (self.next + 1) % MAX_PATH_NODES;
        true
    }

    /// The nodes.
    pub fn as_slice(&self) -> &[PackedNode] {
        &self.nodes
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A random node, avoiding nodes whose paths keep failing unless all do.
    pub fn random(&self, rng: &mut ChaCha20Rng) -> Option<PackedNode> {
        let trusted = self.failures.iter().filter(|&&f| f < AVOID_AFTER_FAILURES).count();
        if trusted == 0 {
            return (!self.nodes.is_empty()).then(|| self.nodes[(rng.next_u64() % self.nodes.len() as u64) as usize]);
        }
        let pick = (rng.next_u64() % trusted as u64) as usize;
        self.nodes.iter().zip(&self.failures).filter(|(_, f)| **f < AVOID_AFTER_FAILURES).nth(pick).map(|(n, _)| *n)
    }

    /// A random node as [`random`](Self::random), other than `except`
    /// while another is left to choose: a path does not pass the same node
    /// twice in a row (a node behind a NAT cannot send to its own public
    /// address unless its router hairpins).
    pub fn random_except(&self, rng: &mut ChaCha20Rng, except: &PublicKey) -> Option<PackedNode> {
        for _ in 0..8 {
            let node = self.random(rng)?;
            if node.public_key != *except {
                return Some(node);
            }
        }
        let others: Vec<&PackedNode> = self.nodes.iter().filter(|n| n.public_key != *except).collect();
        match others.len() {
            0 => self.random(rng),
            n => Some(*others[(rng.next_u64() % n as u64) as usize]),
        }
    }

    /// A path through these nodes failed.
    pub fn failed(&mut self, hops: &[PackedNode]) {
        for (node, failures) in self.nodes.iter().zip(&mut self.failures) {
            if hops.iter().any(|h| h.public_key == node.public_key) {
                *failures = failures.saturating_add(1);
            }
        }
    }

    /// A path through these nodes worked.
    pub fn worked(&mut self, hops: &[PackedNode]) {
        for (node, failures) in self.nodes.iter().zip(&mut self.failures) {
            if hops.iter().any(|h| h.public_key == node.public_key) {
                *failures = 0;
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Path {
    number: u32,
    onion: OnionPath,
    created: Instant,
    last_success: Instant,
    last_used: Instant,
    uses_without_response: u32,
}

/// One set of paths.
#[derive(Debug, Default)]
pub struct Paths {
    slots: [Option<Path>; PATHS],
}

/// A path handed out for one request: its number and the path itself.
#[derive(Debug, Clone)]
pub struct ChosenPath {
    /// Names the path in sendbacks, so the response can refresh it.
    pub number: u32,
    /// The three hops and their keys.
    pub onion: OnionPath,
}

impl Paths {
    fn timed_out(path: &Path, now: Instant) -> bool {
        let fresh = path.last_success == path.created;
        let timeout = if fresh { PATH_FIRST_TIMEOUT } else { PATH_TIMEOUT };
        (path.uses_without_response >= PATH_MAX_NO_RESPONSE_USES && now >= path.last_used + timeout)
            || now >= path.created + PATH_MAX_LIFETIME
    }

    /// Whether the path with this number still exists and works.
    pub fn exists(&self, number: u32, now: Instant) -> bool {
        self.slots[number as usize % PATHS].as_ref().is_some_and(|p| p.number == number && !Self::timed_out(p, now))
    }

    /// Whether a path starts where it should: at one of `tcp_first` (TCP
    /// relays we are connected to) when given, else at a UDP node.
    fn fits(path: &Path, tcp_first: Option<&[PackedNode]>) -> bool {
        let hop1 = &path.onion.nodes()[0];
        match tcp_first {
            Some(relays) => hop1.protocol == Protocol::Tcp && relays.iter().any(|r| r.public_key == hop1.public_key),
            None => hop1.protocol == Protocol::Udp,
        }
    }

    /// A path: the one numbered `preferred` if it still exists, else the
    /// path in a random slot, rebuilt from `nodes` (or `fallback` when
    /// `nodes` is empty) if that slot has none or it timed out. With
    /// `tcp_first`, hop 1 is one of those TCP relays (c-toxcore's paths
    /// when UDP does not work): a path that starts elsewhere is rebuilt.
    #[allow(clippy::too_many_arguments)]
    pub fn choose(
        &mut self,
        now: Instant,
        preferred: Option<u32>,
        nodes: &mut PathNodes,
        fallback: &mut PathNodes,
        tcp_first: Option<&[PackedNode]>,
        dht_keys: &KeyPair,
        rng: &mut ChaCha20Rng,
    ) -> Option<ChosenPath> {
        let tcp_first = tcp_first.filter(|r| !r.is_empty());
        let slot = match preferred {
            Some(number) => number as usize % PATHS,
            None => (rng.next_u64() % PATHS as u64) as usize,
        };
        let usable = self.slots[slot].as_ref().is_some_and(|p| !Self::timed_out(p, now) && Self::fits(p, tcp_first));
        if !usable {
            // A path that stopped answering (not one that only grew old, or
            // one on the other transport) counts against its nodes.
            if let Some(old) = self.slots[slot].take()
                && now < old.created + PATH_MAX_LIFETIME
                && Self::timed_out(&old, now)
            {
                tracing::trace!(hops = ?old.onion.nodes().map(|n| n.addr), "an onion path stopped answering");
                nodes.failed(old.onion.nodes());
                fallback.failed(old.onion.nodes());
            }
            let source: &PathNodes = if nodes.len() >= 2 || fallback.is_empty() { nodes } else { fallback };
            let first = match tcp_first {
                Some(relays) => relays[(rng.next_u64() % relays.len() as u64) as usize],
                None => source.random(rng)?,
            };
            let second = source.random_except(rng, &first.public_key)?;
            let third = source.random_except(rng, &second.public_key)?;
            let hops = [first, second, third];
            // Reuse a live path that already ends at the same node.
            let same_end = self.slots.iter().flatten().find(|p| {
                !Self::timed_out(p, now)
                    && Self::fits(p, tcp_first)
                    && p.onion.nodes()[2].public_key == hops[2].public_key
            });
            if let Some(existing) = same_end {
                let number = existing.number;
                return self.take(number, now);
            }
            let temp = [KeyPair::generate(rng), KeyPair::generate(rng)];
            let onion = OnionPath::new(hops, [dht_keys, &temp[0], &temp[1]]).ok()?;
            let number = (rng.next_u32() / PATHS as u32) * PATHS as u32 + slot as u32;
            self.slots[slot] = Some(Path {
                number,
                onion,
                created: now,
                last_success: now,
                last_used: now,
                uses_without_response: PATH_MAX_NO_RESPONSE_USES / 2,
            });
        }
        let number = self.slots[slot].as_ref()?.number;
        self.take(number, now)
    }

    fn take(&mut self, number: u32, now: Instant) -> Option<ChosenPath> {
        let path = self.slots[number as usize % PATHS].as_mut()?;
        if path.uses_without_response < PATH_MAX_NO_RESPONSE_USES {
            path.last_used = now;
        }
        path.uses_without_response += 1;
        Some(ChosenPath { number: path.number, onion: path.onion.clone() })
    }

    /// A response came back on path `number`: it works. Returns its nodes.
    pub fn success(&mut self, number: u32, now: Instant) -> Option<[PackedNode; 3]> {
        let path = self.slots[number as usize % PATHS].as_mut().filter(|p| p.number == number)?;
        path.last_success = now;
        path.uses_without_response = 0;
        Some(*path.onion.nodes())
    }

    /// The keys of the nodes of live paths (for tests and status).
    pub fn live_nodes(&self, now: Instant) -> Vec<PublicKey> {
        self.slots
            .iter()
            .flatten()
            .filter(|p| !Self::timed_out(p, now))
            .flat_map(|p| p.onion.nodes().iter().map(|n| n.public_key))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rand_core::SeedableRng;

    use super::*;

    fn node(rng: &mut ChaCha20Rng, i: u8) -> PackedNode {
        PackedNode::udp(SocketAddr::from(([198, 18, 0, i], 33445)), *KeyPair::generate(rng).public())
    }

    #[test]
    fn paths_are_reused_then_replaced_when_silent() {
        let t0 = crate::proto::test_epoch();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let dht = KeyPair::generate(&mut rng);
        let mut nodes = PathNodes::default();
        for i in 0..5 {
            assert!(nodes.add(node(&mut rng, i)));
        }
        let mut paths = Paths::default();
        let first = paths.choose(t0, None, &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        assert!(paths.exists(first.number, t0));
        // The same path again while it is healthy.
        let again =
            paths.choose(t0, Some(first.number), &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        assert_eq!(again.number, first.number);
        // It answered once (after its creation: no longer a new path).
        let t1 = t0 + Duration::from_secs(1);
        assert!(paths.success(first.number, t1).is_some());
        // Used 4 times without an answer, then 10 s of silence: replaced.
        for _ in 0..4 {
            paths.choose(t1, Some(first.number), &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        }
        assert!(!paths.exists(first.number, t1 + PATH_TIMEOUT));
        assert!(paths.exists(first.number, t1 + PATH_TIMEOUT - Duration::from_secs(1)));
        // Old paths die anyway.
        assert!(!paths.exists(first.number, t0 + PATH_MAX_LIFETIME));
    }

    #[test]
    fn with_tcp_relays_hop_one_is_a_relay_and_udp_paths_are_rebuilt() {
        let t0 = crate::proto::test_epoch();
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let dht = KeyPair::generate(&mut rng);
        let mut nodes = PathNodes::default();
        for i in 0..3 {
            nodes.add(node(&mut rng, i));
        }
        let relay = PackedNode::tcp(SocketAddr::from(([198, 18, 1, 1], 443)), *KeyPair::generate(&mut rng).public());
        let mut paths = Paths::default();
        let udp = paths.choose(t0, None, &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        assert_eq!(udp.onion.nodes()[0].protocol, Protocol::Udp);
        let relays = [relay];
        let tcp = paths
            .choose(t0, Some(udp.number), &mut nodes, &mut PathNodes::default(), Some(&relays), &dht, &mut rng)
            .unwrap();
        assert_ne!(tcp.number, udp.number, "rebuilt for the relay");
        assert_eq!(tcp.onion.nodes()[0], relay);
        assert!(tcp.onion.nodes()[1..].iter().all(|n| n.protocol == Protocol::Udp));
        // The UDP path was not counted as failed: its nodes stay trusted.
        assert!(nodes.failures.iter().all(|f| *f == 0));
        // Back to UDP: a UDP path again.
        let back =
            paths.choose(t0, Some(tcp.number), &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        assert_eq!(back.onion.nodes()[0].protocol, Protocol::Udp);
    }

    #[test]
    fn no_nodes_no_path_and_the_ring_is_bounded() {
        let t0 = crate::proto::test_epoch();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let dht = KeyPair::generate(&mut rng);
        let mut paths = Paths::default();
        assert!(
            paths
                .choose(t0, None, &mut PathNodes::default(), &mut PathNodes::default(), None, &dht, &mut rng)
                .is_none()
        );
        let mut nodes = PathNodes::default();
        let first = node(&mut rng, 0);
        nodes.add(first);
        assert!(!nodes.add(first), "no duplicates");
        for i in 1..40 {
            nodes.add(node(&mut rng, i));
        }
        assert_eq!(nodes.len(), MAX_PATH_NODES);
        assert!(!nodes.as_slice().contains(&first), "the oldest was replaced");
        // One node is enough: all three hops may be the same node.
        let mut one = PathNodes::default();
        one.add(first);
        let path = paths.choose(t0, None, &mut one, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        assert!(path.onion.nodes().iter().all(|n| n.public_key == first.public_key));
    }

    #[test]
    fn a_path_does_not_pass_the_same_node_twice_in_a_row() {
        let t0 = crate::proto::test_epoch();
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let dht = KeyPair::generate(&mut rng);
        // Two nodes (a public one and one behind a NAT, say): every path
        // alternates between them.
        let mut two = PathNodes::default();
        two.add(node(&mut rng, 0));
        two.add(node(&mut rng, 1));
        let relays = [PackedNode::tcp(SocketAddr::from(([198, 18, 1, 1], 443)), two.as_slice()[0].public_key)];
        for i in 0..50 {
            let mut paths = Paths::default();
            let tcp = (i % 2 == 0).then_some(&relays[..]);
            let path = paths.choose(t0, None, &mut two, &mut PathNodes::default(), tcp, &dht, &mut rng).unwrap();
            let keys = path.onion.nodes().map(|n| n.public_key);
            assert!(keys[0] != keys[1] && keys[1] != keys[2], "{:?}", path.onion.nodes());
        }
    }

    #[test]
    fn nodes_of_failed_paths_are_avoided_until_one_works() {
        let t0 = crate::proto::test_epoch();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let dht = KeyPair::generate(&mut rng);
        let mut nodes = PathNodes::default();
        let all: Vec<PackedNode> = (0..4).map(|i| node(&mut rng, i)).collect();
        for n in &all {
            nodes.add(*n);
        }
        let gone = all[0];
        nodes.failed(&[gone]);
        assert!((0..200).any(|_| nodes.random(&mut rng) == Some(gone)), "one failure is not enough to avoid");
        nodes.failed(&[gone]);
        assert!((0..200).all(|_| nodes.random(&mut rng) != Some(gone)), "avoided after two");
        nodes.worked(&[gone]);
        assert!((0..200).any(|_| nodes.random(&mut rng) == Some(gone)), "trusted again once a path worked");

        // A path that stops answering counts against its nodes when replaced.
        let mut paths = Paths::default();
        let first = paths.choose(t0, None, &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        for _ in 0..4 {
            paths.choose(t0, Some(first.number), &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        }
        let later = t0 + PATH_FIRST_TIMEOUT;
        let hops = *first.onion.nodes();
        paths.choose(later, Some(first.number), &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        paths.choose(later, Some(first.number), &mut nodes, &mut PathNodes::default(), None, &dht, &mut rng).unwrap();
        let failures: Vec<u8> = hops
            .iter()
            .map(|h| nodes.failures[nodes.nodes.iter().position(|n| n.public_key == h.public_key).unwrap()])
            .collect();
        assert!(failures.iter().all(|&f| f >= 1), "{failures:?}");
    }
}
