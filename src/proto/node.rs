//! A Tox node: the protocol layers composed behind one sans-IO interface.
//!
//! Today it holds the DHT; the onion, net_crypto and friend connections join
//! it as they land, and the driver and simulator only ever see this type.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::dht::{Dht, DhtConfig, DhtEvent, Transmit};
use crate::crypto::KeyPair;

/// How a node behaves.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// The DHT's settings.
    pub dht: DhtConfig,
}

/// What a node tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// From the DHT.
    Dht(DhtEvent),
}

/// A Tox node.
#[derive(Debug)]
pub struct Node {
    dht: Dht,
}

impl Node {
    /// A node with the DHT key pair `dht_keys`; `seed` drives all of its
    /// randomness (nonces, request ids, exploration keys).
    pub fn new(dht_keys: KeyPair, config: NodeConfig, seed: [u8; 32]) -> Self {
        Self { dht: Dht::new(dht_keys, config.dht, seed) }
    }

    /// The DHT.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// The DHT, mutable (to bootstrap, search, set LAN targets).
    pub fn dht_mut(&mut self) -> &mut Dht {
        &mut self.dht
    }

    /// A UDP datagram arrived.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        self.dht.handle_packet(now, from, data);
    }

    /// Time passed; runs whatever is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dht.handle_timeout(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.dht.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.dht.poll_event().map(NodeEvent::Dht)
    }

    /// When `handle_timeout` should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dht.poll_timeout()
    }
}
