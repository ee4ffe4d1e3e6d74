//! A Tox node: the protocol layers composed behind one sans-IO interface.
//!
//! The node owns the DHT, the onion relay and announce store (what it does
//! for others), and the onion client (what it does for itself), and routes
//! each UDP datagram to the layer its first byte names. net_crypto and
//! friend connections join as they land; the driver and the simulator only
//! ever see this type.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::dht::{Dht, DhtConfig, DhtEvent, Transmit};
use super::onion::announce::AnnounceStore;
use super::onion::client::{OnionClient, OnionEvent};
use super::onion::relay::OnionRelay;
use crate::crypto::KeyPair;
use crate::wire::dht_pk_announce::DHT_PK_KIND;
use crate::wire::packed_node::PackedNode;

/// How a node behaves.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The DHT's settings.
    pub dht: DhtConfig,
    /// Run the onion client (announce ourselves, search friends). A pure
    /// bootstrap node serves the DHT and the onion without one, as
    /// tox-bootstrapd does.
    pub onion_client: bool,
    /// Wall-clock time (Unix seconds) at the node's first `now`: DHT-PK
    /// announcements carry the current Unix time, so that they keep rising
    /// across restarts as c-toxcore requires.
    pub unix_time_at_start: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { dht: DhtConfig::default(), onion_client: true, unix_time_at_start: 0 }
    }
}

/// What a node tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// From the DHT.
    Dht(DhtEvent),
    /// From the onion client.
    Onion(OnionEvent),
}

/// A Tox node.
#[derive(Debug)]
pub struct Node {
    real_keys: KeyPair,
    dht: Dht,
    relay: OnionRelay,
    announce: AnnounceStore,
    onion: OnionClient,
    onion_client: bool,
    unix_base: u64,
    start: Option<Instant>,
    events: VecDeque<NodeEvent>,
}

impl Node {
    /// A node with the long-term key pair `real_keys` and the DHT key pair
    /// `dht_keys` (made fresh at every start); `seed` drives all of its
    /// randomness (nonces, request ids, temporary keys).
    pub fn new(real_keys: KeyPair, dht_keys: KeyPair, config: NodeConfig, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut sub_seed = || {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            s
        };
        let bootstrap = config.dht.bootstrap_nodes.clone();
        let onion_client = config.onion_client;
        let mut onion = OnionClient::new(real_keys.clone(), dht_keys.clone(), sub_seed());
        for node in bootstrap {
            onion.add_bootstrap_node(node);
        }
        Self {
            dht: Dht::new(dht_keys.clone(), config.dht, sub_seed()),
            relay: OnionRelay::new(dht_keys.clone(), sub_seed()),
            announce: AnnounceStore::new(dht_keys, sub_seed()),
            onion,
            real_keys,
            onion_client,
            unix_base: config.unix_time_at_start,
            start: None,
            events: VecDeque::new(),
        }
    }

    /// Our long-term key pair.
    pub fn real_keys(&self) -> &KeyPair {
        &self.real_keys
    }

    /// The DHT.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// The DHT, mutable (to search, set LAN targets).
    pub fn dht_mut(&mut self) -> &mut Dht {
        &mut self.dht
    }

    /// The onion client.
    pub fn onion(&self) -> &OnionClient {
        &self.onion
    }

    /// The onion client, mutable (to add friends, send onion data).
    pub fn onion_mut(&mut self) -> &mut OnionClient {
        &mut self.onion
    }

    /// The onion relay.
    pub fn relay(&self) -> &OnionRelay {
        &self.relay
    }

    /// The announce store.
    pub fn announce_store(&self) -> &AnnounceStore {
        &self.announce
    }

    /// Joins the network through `node`: asks it for nodes and uses it for
    /// onion paths until the DHT provides others.
    pub fn bootstrap(&mut self, now: Instant, node: PackedNode) {
        self.start.get_or_insert(now);
        self.dht.bootstrap(now, node);
        self.onion.add_bootstrap_node(node);
    }

    /// The wall-clock time at `now`, in Unix seconds.
    fn unix_secs(&mut self, now: Instant) -> u64 {
        let start = *self.start.get_or_insert(now);
        self.unix_base + (now - start).as_secs()
    }

    /// A UDP datagram arrived.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        self.start.get_or_insert(now);
        let from = super::addr::normalize(from);
        match data.first() {
            Some(0x80..=0x82 | 0x8c..=0x8e) => self.relay.handle_packet(now, from, data),
            Some(0x83 | 0x85 | 0x87) => self.announce.handle_packet(now, from, data, &self.dht),
            Some(0x84) => self.onion.handle_announce_response(now, from, data),
            Some(0x86) => self.onion.handle_data_response(now, data),
            Some(_) => self.dht.handle_packet(now, from, data),
            None => {}
        }
        self.pump_events(now);
    }

    /// Time passed; runs whatever is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let unix = self.unix_secs(now);
        self.dht.handle_timeout(now);
        if self.onion_client {
            self.onion.handle_timeout(now, unix, &mut self.dht, &[]);
        }
        self.pump_events(now);
    }

    /// Moves layer events to where they belong: DHT-PK announcements that
    /// came over the DHT go to the onion client, the rest to the owner.
    fn pump_events(&mut self, now: Instant) {
        while let Some(event) = self.dht.poll_event() {
            match event {
                DhtEvent::Request { sender, kind: DHT_PK_KIND, data, .. } => {
                    self.onion.handle_dht_dht_pk(now, &sender, data);
                }
                other => self.events.push_back(NodeEvent::Dht(other)),
            }
        }
        while let Some(event) = self.onion.poll_event() {
            self.events.push_back(NodeEvent::Onion(event));
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.dht
            .poll_transmit()
            .or_else(|| self.relay.poll_transmit())
            .or_else(|| self.announce.poll_transmit())
            .or_else(|| self.onion.poll_transmit())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let onion = if self.onion_client { self.onion.poll_timeout() } else { None };
        [self.dht.poll_timeout(), onion].into_iter().flatten().min()
    }
}
