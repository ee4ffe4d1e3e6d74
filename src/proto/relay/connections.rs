//! The client's TCP relay connections, sans-IO (c-toxcore's
//! `TCP_connection.c`).
//!
//! Relays come from the user (`--relay`), from bootstrap nodes' TCP ports,
//! from our own relay server (`-t`), and from friends (the relays in their
//! DHT-PK announcements and SHARE_RELAYS packets). The policy:
//!
//! - **Our relays**: we stay connected to up to [`OWN_RELAYS`] of the
//!   relays the user and the bootstrap list gave, whatever UDP does, so
//!   that friends without UDP can reach us; they are the ones we announce
//!   and share, and the onion's first hop when UDP does not work. A relay
//!   that fails is retried later (2 s, doubling up to a minute) while
//!   others are tried.
//! - **Peers**: a peer (a friend's DHT key) is routed on every one of our
//!   relays and on the relays it named, connecting to up to
//!   [`PEER_RELAYS`] of those (newest first), [`MAX_CONNECTIONS`] in all.
//!   A connection opened for peers only is closed once no peer needs it
//!   for [`IDLE_CLOSE`].
//! - **Sending**: a packet for a peer goes as routed data on its first
//!   online route (oldest connection first); with none online, as
//!   out-of-band data on every relay where the peer is registered
//!   (c-toxcore's `send_packet_tcp_connection`). When a relay dies, its
//!   routes vanish and the next online route carries the peer's packets.
//!
//! The driver opens the sockets ([`RelayCommand::Connect`]), passes the
//! relay's handshake back, seals and opens frames, and reports packets and
//! closes; see `driver::relay_client`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::channel::SecureChannel;
use super::client::{ClientEvent, CloseReason, RelayClient, RelayId, RouteStatus};
use crate::crypto::{KeyPair, PublicKey};
use crate::wire::packed_node::{PackedNode, Protocol};
use crate::wire::tcp::{ClientHandshake, ServerHandshake, TcpOnionRequest, TcpPacket};

/// Our own relays kept connected (`RECOMMENDED_FRIEND_TCP_CONNECTIONS`,
/// `NUM_ONION_TCP_CONNECTIONS`).
pub const OWN_RELAYS: usize = 3;
/// New connections opened for one peer's relays at most.
pub const PEER_RELAYS: usize = 3;
/// Relay connections at most.
pub const MAX_CONNECTIONS: usize = 16;
/// Relays remembered at most.
pub const MAX_KNOWN: usize = 64;
/// First wait before a failed relay is tried again; it doubles.
pub const RETRY_MIN: Duration = Duration::from_secs(2);
/// The longest wait before a failed relay is tried again.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// A connection no peer needs is closed after this.
pub const IDLE_CLOSE: Duration = Duration::from_secs(30);

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayCommand {
    /// Open a TCP connection to `addr` (bounded by
    /// [`CONNECT_TIMEOUT`](super::client::CONNECT_TIMEOUT)), write `hello`,
    /// read the relay's 96-byte answer and pass it to the node.
    Connect {
        /// The connection's id.
        relay: RelayId,
        /// Where.
        addr: SocketAddr,
        /// Our handshake.
        hello: ClientHandshake,
    },
    /// Seal and send a packet. Control packets ([`TcpPacket::is_control`])
    /// must not be dropped; others may be when the socket is slow (counted,
    /// see [`RelayConnections::handle_dropped`]).
    Send {
        /// The connection.
        relay: RelayId,
        /// The packet.
        packet: TcpPacket,
    },
    /// Close the connection; it is forgotten already.
    Close {
        /// The connection.
        relay: RelayId,
    },
}

/// What the connections tell the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// Routed data from a peer.
    Data {
        /// The connection it came through.
        relay: RelayId,
        /// The peer's DHT key.
        peer: PublicKey,
        /// The payload.
        data: Bytes,
    },
    /// Out-of-band data.
    Oob {
        /// The connection it came through.
        relay: RelayId,
        /// The sender's DHT key.
        sender: PublicKey,
        /// The payload.
        data: Bytes,
    },
    /// An onion response from a request sent through `relay`.
    Onion {
        /// The relay (hop 1 of the path).
        relay: PackedNode,
        /// The 0x84 or 0x86 packet.
        data: Bytes,
    },
    /// Connections or routes changed: who is reachable may have too.
    Changed,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayClientStats {
    /// Connections attempted.
    pub connects: u64,
    /// Connections that finished their handshake.
    pub confirmed: u64,
    /// Connections that ended (any reason).
    pub closed: u64,
    /// Packets sent as routed data.
    pub data_sent: u64,
    /// Packets sent out-of-band.
    pub oob_sent: u64,
    /// Packets for a peer with no route anywhere.
    pub unroutable: u64,
    /// Packets the driver dropped because a connection was slow.
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct Known {
    node: PackedNode,
    own: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Conn {
    client: RelayClient,
    own: bool,
    confirmed: bool,
    idle_since: Option<Instant>,
}

/// All relay connections of a node.
#[derive(Debug)]
pub struct RelayConnections {
    dht_keys: KeyPair,
    rng: ChaCha20Rng,
    next_id: RelayId,
    known: Vec<Known>,
    conns: BTreeMap<RelayId, Conn>,
    peers: HashMap<PublicKey, Vec<PackedNode>>,
    commands: VecDeque<RelayCommand>,
    events: VecDeque<RelayEvent>,
    stats: RelayClientStats,
}

impl RelayConnections {
    /// Connections made with our DHT key pair; randomness from `seed`.
    pub fn new(dht_keys: KeyPair, seed: [u8; 32]) -> Self {
        Self {
            dht_keys,
            rng: ChaCha20Rng::from_seed(seed),
            next_id: 1,
            known: Vec::new(),
            conns: BTreeMap::new(),
            peers: HashMap::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            stats: RelayClientStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RelayClientStats {
        self.stats
    }

    /// Remembers a relay: `own` for ours (user, bootstrap list, our own
    /// server), else learned from a friend. Nodes that are not TCP relays
    /// are ignored.
    pub fn add_relay(&mut self, now: Instant, node: PackedNode, own: bool) {
        if node.protocol != Protocol::Tcp || node.public_key == *self.dht_keys.public() && !own {
            return;
        }
        if let Some(known) = self.known.iter_mut().find(|k| k.node.public_key == node.public_key) {
            known.node.addr = node.addr;
            known.own |= own;
        } else {
            if self.known.len() >= MAX_KNOWN {
                // Forget the oldest relay learned from a friend.
                let Some(i) = self.known.iter().position(|k| !k.own) else { return };
                self.known.remove(i);
            }
            self.known.push(Known { node, own, failures: 0, retry_at: None });
        }
        self.maintain(now);
    }

    /// Routes `peer` (a DHT key) on our relays and on `relays`, the ones it
    /// named (newest first). Replaces what was given for it before.
    pub fn set_peer(&mut self, now: Instant, peer: PublicKey, relays: &[PackedNode]) {
        let list: Vec<PackedNode> = relays.iter().filter(|n| n.protocol == Protocol::Tcp).copied().collect();
        for node in &list {
            self.add_relay(now, *node, false);
        }
        self.peers.insert(peer, list);
        self.maintain(now);
    }

    /// Whether `peer` is being routed.
    pub fn has_peer(&self, peer: &PublicKey) -> bool {
        self.peers.contains_key(peer)
    }

    /// Stops routing `peer`.
    pub fn remove_peer(&mut self, now: Instant, peer: &PublicKey) {
        if self.peers.remove(peer).is_none() {
            return;
        }
        let ids: Vec<RelayId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.client.unroute(peer);
            }
            self.pump(now, id);
        }
        self.maintain(now);
    }

    /// Adds `relay` (a connection) to the relays `peer` is routed on: it
    /// reached us through it.
    pub fn add_peer_relay(&mut self, now: Instant, peer: PublicKey, relay: RelayId) {
        let Some(node) = self.conns.get(&relay).map(|c| *c.client.relay()) else { return };
        let list = self.peers.entry(peer).or_default();
        list.retain(|n| n.public_key != node.public_key);
        list.insert(0, node);
        self.maintain(now);
    }

    /// Whether `peer` has a route (registered or online) on a relay.
    pub fn reachable(&self, peer: &PublicKey) -> bool {
        self.conns
            .values()
            .any(|c| matches!(c.client.route_status(peer), Some(RouteStatus::Registered | RouteStatus::Online)))
    }

    /// Whether `peer` has an online route.
    pub fn online(&self, peer: &PublicKey) -> bool {
        self.conns.values().any(|c| c.client.route_status(peer) == Some(RouteStatus::Online))
    }

    /// Relays we are connected to (handshake done), ours first, up to `max`.
    pub fn connected(&self, max: usize) -> Vec<PackedNode> {
        let ours = self.conns.values().filter(|c| c.own && c.client.is_confirmed());
        let others = self.conns.values().filter(|c| !c.own && c.client.is_confirmed());
        ours.chain(others).map(|c| *c.client.relay()).take(max).collect()
    }

    /// Relays for the onion's first hop: ours that are connected, or any
    /// connected one when none of ours is.
    pub fn onion_relays(&self) -> Vec<PackedNode> {
        let ours: Vec<PackedNode> =
            self.conns.values().filter(|c| c.own && c.client.is_confirmed()).map(|c| *c.client.relay()).collect();
        if ours.is_empty() { self.connected(OWN_RELAYS) } else { ours }
    }

    /// How many connections exist (connecting or connected).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    // ---- sending -----------------------------------------------------------

    /// Sends a net_crypto packet to `peer`: routed on its first online
    /// route, else out-of-band wherever it is registered. False when it
    /// went nowhere.
    pub fn send_to(&mut self, now: Instant, peer: &PublicKey, data: Bytes) -> bool {
        let online = self
            .conns
            .iter()
            .find(|(_, c)| c.client.route_status(peer) == Some(RouteStatus::Online))
            .map(|(id, _)| *id);
        if let Some(id) = online {
            let sent = self.conns.get_mut(&id).is_some_and(|c| c.client.send_data(peer, data));
            self.pump(now, id);
            if sent {
                self.stats.data_sent += 1;
            }
            return sent;
        }
        let registered: Vec<RelayId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.client.route_status(peer) == Some(RouteStatus::Registered))
            .map(|(id, _)| *id)
            .collect();
        let mut sent = false;
        for id in registered {
            if self.conns.get_mut(&id).is_some_and(|c| c.client.send_oob(*peer, data.clone())) {
                sent = true;
                self.stats.oob_sent += 1;
            }
            self.pump(now, id);
        }
        if !sent {
            self.stats.unroutable += 1;
        }
        sent
    }

    /// Sends out-of-band data to `peer` through connection `relay`.
    pub fn send_oob(&mut self, now: Instant, relay: RelayId, peer: PublicKey, data: Bytes) -> bool {
        let sent = self.conns.get_mut(&relay).is_some_and(|c| c.client.send_oob(peer, data));
        if sent {
            self.stats.oob_sent += 1;
        }
        self.pump(now, relay);
        sent
    }

    /// Sends an onion request through the connected relay with key `relay`.
    pub fn send_onion(&mut self, now: Instant, relay: &PublicKey, request: TcpOnionRequest) -> bool {
        let Some(id) = self
            .conns
            .iter()
            .find(|(_, c)| c.client.relay().public_key == *relay && c.client.is_confirmed())
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let sent = self.conns.get_mut(&id).is_some_and(|c| c.client.send_onion(request));
        self.pump(now, id);
        sent
    }

    // ---- from the driver -----------------------------------------------------

    /// The relay's handshake for connection `relay` arrived: the session for
    /// the driver, or `None` (the connection is closed).
    pub fn handle_handshake(
        &mut self,
        now: Instant,
        relay: RelayId,
        response: &ServerHandshake,
    ) -> Option<SecureChannel> {
        let conn = self.conns.get_mut(&relay)?;
        let channel = conn.client.handle_handshake(now, response);
        if channel.is_some() {
            conn.confirmed = true;
            self.stats.confirmed += 1;
            let key = conn.client.relay().public_key;
            if let Some(known) = self.known.iter_mut().find(|k| k.node.public_key == key) {
                known.failures = 0;
                known.retry_at = None;
            }
            self.route_peers(relay);
        }
        self.pump(now, relay);
        self.events.push_back(RelayEvent::Changed);
        channel
    }

    /// A packet from connection `relay`.
    pub fn handle_packet(&mut self, now: Instant, relay: RelayId, packet: TcpPacket) {
        let Some(conn) = self.conns.get_mut(&relay) else { return };
        conn.client.handle_packet(now, packet);
        self.pump(now, relay);
    }

    /// A frame from connection `relay` opened but did not decode.
    pub fn handle_malformed(&mut self, now: Instant, relay: RelayId, what: &'static str) {
        let Some(conn) = self.conns.get_mut(&relay) else { return };
        conn.client.handle_malformed(what);
        self.pump(now, relay);
    }

    /// Connection `relay` ended (or could not be made).
    pub fn handle_closed(&mut self, now: Instant, relay: RelayId) {
        let Some(conn) = self.conns.get_mut(&relay) else { return };
        conn.client.handle_closed();
        self.pump(now, relay);
        self.maintain(now);
    }

    /// The driver dropped a packet for a slow connection.
    pub fn handle_dropped(&mut self) {
        self.stats.dropped += 1;
    }

    /// Runs the timers (handshakes, pings, reconnecting, idle connections).
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<RelayId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.client.handle_timeout(now);
            }
            self.pump(now, id);
        }
        self.maintain(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| c.client.poll_timeout());
        let idle = self.conns.values().filter_map(|c| c.idle_since.map(|t| t + IDLE_CLOSE));
        let retries = self.known.iter().filter_map(|k| k.retry_at);
        conns.chain(idle).chain(retries).min()
    }

    /// The next thing for the driver.
    pub fn poll_command(&mut self) -> Option<RelayCommand> {
        self.commands.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    // ---- internals -------------------------------------------------------------

    /// Routes on connection `id` every peer that should be routed there.
    fn route_peers(&mut self, id: RelayId) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let key = conn.client.relay().public_key;
        for (peer, relays) in &self.peers {
            if conn.own || relays.iter().any(|n| n.public_key == key) {
                conn.client.route(*peer);
            }
        }
    }

    /// Moves one connection's output to the driver and its events to ours.
    fn pump(&mut self, now: Instant, id: RelayId) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        while let Some(packet) = conn.client.poll_packet() {
            self.commands.push_back(RelayCommand::Send { relay: id, packet });
        }
        let relay = *conn.client.relay();
        let mut closed = None;
        while let Some(event) = conn.client.poll_event() {
            match event {
                ClientEvent::Confirmed | ClientEvent::Route { .. } => self.events.push_back(RelayEvent::Changed),
                ClientEvent::Data { peer, data } => self.events.push_back(RelayEvent::Data { relay: id, peer, data }),
                ClientEvent::Oob { sender, data } => {
                    self.events.push_back(RelayEvent::Oob { relay: id, sender, data });
                }
                ClientEvent::Onion(data) => self.events.push_back(RelayEvent::Onion { relay, data }),
                ClientEvent::Closed(reason) => closed = Some(reason),
            }
        }
        if let Some(reason) = closed {
            let worked = conn.confirmed;
            self.conns.remove(&id);
            self.commands.push_back(RelayCommand::Close { relay: id });
            self.stats.closed += 1;
            tracing::debug!(relay = %relay.addr, key = %relay.public_key, ?reason, "relay connection ended");
            if let Some(known) = self.known.iter_mut().find(|k| k.node.public_key == relay.public_key) {
                // A relay that worked is tried again soon; one that never
                // answered waits longer each time.
                known.failures = if worked { 0 } else { known.failures.saturating_add(1) };
                let wait = RETRY_MIN * (1 << known.failures.min(5));
                known.retry_at = Some(now + wait.min(RETRY_MAX));
            }
            self.events.push_back(RelayEvent::Changed);
        }
    }

    fn connected_to(&self, key: &PublicKey) -> bool {
        self.conns.values().any(|c| c.client.relay().public_key == *key)
    }

    fn connect(&mut self, now: Instant, index: usize) {
        let known = &mut self.known[index];
        known.retry_at = None;
        let node = known.node;
        let own = known.own;
        let Ok((client, hello)) = RelayClient::start(&mut self.rng, &self.dht_keys, node, now) else {
            // A key no shared key can be made with: never again.
            known.retry_at = Some(now + RETRY_MAX * 1000);
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        self.stats.connects += 1;
        tracing::debug!(relay = %node.addr, key = %node.public_key, own, "connecting to a TCP relay");
        self.conns.insert(id, Conn { client, own, confirmed: false, idle_since: None });
        self.commands.push_back(RelayCommand::Connect { relay: id, addr: node.addr, hello });
        self.route_peers(id);
    }

    fn can_try(known: &Known, now: Instant) -> bool {
        known.retry_at.is_none_or(|t| now >= t)
    }

    /// Opens the connections the policy wants, routes peers, closes idle
    /// connections.
    fn maintain(&mut self, now: Instant) {
        // Our own relays.
        let own_count = self.conns.values().filter(|c| c.own).count();
        if own_count < OWN_RELAYS {
            let mut missing = OWN_RELAYS - own_count;
            for i in 0..self.known.len() {
                if missing == 0 || self.conns.len() >= MAX_CONNECTIONS {
                    break;
                }
                let k = &self.known[i];
                if k.own && !self.connected_to(&k.node.public_key) && Self::can_try(k, now) {
                    self.connect(now, i);
                    missing -= 1;
                }
            }
        }
        // Peers' relays.
        let wanted: Vec<Vec<PackedNode>> = self.peers.values().cloned().collect();
        for relays in wanted {
            let mut have = relays.iter().filter(|n| self.connected_to(&n.public_key)).count();
            for node in &relays {
                if have >= PEER_RELAYS || self.conns.len() >= MAX_CONNECTIONS {
                    break;
                }
                if self.connected_to(&node.public_key) {
                    continue;
                }
                if let Some(i) = self.known.iter().position(|k| k.node.public_key == node.public_key)
                    && Self::can_try(&self.known[i], now)
                {
                    self.connect(now, i);
                    have += 1;
                }
            }
        }
        // Routes on existing connections (a peer may have named a relay we
        // were already connected to), and idle connections.
        let ids: Vec<RelayId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(conn) = self.conns.get_mut(&id) else { continue };
            let key = conn.client.relay().public_key;
            let used = conn.own || self.peers.values().any(|relays| relays.iter().any(|n| n.public_key == key));
            if used {
                conn.idle_since = None;
                self.route_peers(id);
            } else {
                let since = *conn.idle_since.get_or_insert(now);
                if now >= since + IDLE_CLOSE {
                    conn.client.close(CloseReason::Local);
                }
            }
            self.pump(now, id);
        }
        // A wait that is over needs no timer: the relay is simply eligible.
        for known in &mut self.known {
            if known.retry_at.is_some_and(|t| now >= t) {
                known.retry_at = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;
    use crate::proto::relay::channel::accept_handshake;
    use crate::proto::relay::server::{RelayOutput, RelayServer, RelayServerConfig};

    /// Relay servers and one client node's connections, wired in memory.
    struct World {
        now: Instant,
        rng: ChaCha20Rng,
        relays: Vec<(KeyPair, RelayServer, SocketAddr, bool)>,
        /// (relay index, client id at the relay) per connection.
        links: HashMap<RelayId, (usize, u64)>,
        conns: RelayConnections,
        events: Vec<RelayEvent>,
    }

    impl World {
        fn new(relays: usize) -> Self {
            let mut rng = ChaCha20Rng::seed_from_u64(11);
            let relays = (0..relays)
                .map(|i| {
                    let keys = KeyPair::generate(&mut rng);
                    let server = RelayServer::new(*keys.public(), RelayServerConfig::default(), [i as u8; 32]);
                    (keys, server, SocketAddr::from(([192, 0, 2, i as u8 + 1], 33445)), true)
                })
                .collect();
            let dht = KeyPair::generate(&mut rng);
            Self {
                now: crate::proto::test_epoch(),
                rng,
                relays,
                links: HashMap::new(),
                conns: RelayConnections::new(dht, [5; 32]),
                events: Vec::new(),
            }
        }

        fn node(&self, i: usize) -> PackedNode {
            PackedNode::tcp(self.relays[i].2, *self.relays[i].0.public())
        }

        fn step(&mut self) {
            for _ in 0..10 {
                while let Some(command) = self.conns.poll_command() {
                    match command {
                        RelayCommand::Connect { relay, addr, hello } => {
                            let i = self.relays.iter().position(|r| r.2 == addr).unwrap();
                            if !self.relays[i].3 {
                                self.conns.handle_closed(self.now, relay);
                                continue;
                            }
                            let client =
                                self.relays[i].1.accept(self.now, std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
                            let accepted = accept_handshake(&mut self.rng, &self.relays[i].0, &hello).unwrap();
                            self.relays[i].1.confirm(self.now, client, accepted.client_pk);
                            self.links.insert(relay, (i, client));
                            self.conns.handle_handshake(self.now, relay, &accepted.response).unwrap();
                        }
                        RelayCommand::Send { relay, packet } => {
                            if let Some((i, client)) = self.links.get(&relay) {
                                self.relays[*i].1.handle_packet(self.now, *client, packet);
                            }
                        }
                        RelayCommand::Close { relay } => {
                            if let Some((i, client)) = self.links.remove(&relay) {
                                self.relays[i].1.handle_closed(client, crate::proto::relay::server::CloseReason::Gone);
                            }
                        }
                    }
                }
                for i in 0..self.relays.len() {
                    while let Some(out) = self.relays[i].1.poll_output() {
                        if let RelayOutput::Send { client, packet } = out
                            && let Some((relay, _)) = self.links.iter().find(|(_, l)| **l == (i, client))
                        {
                            let relay = *relay;
                            self.conns.handle_packet(self.now, relay, packet);
                        }
                    }
                }
                while let Some(e) = self.conns.poll_event() {
                    self.events.push(e);
                }
            }
        }

        /// Kills relay `i`: its connections end.
        fn kill(&mut self, i: usize) {
            self.relays[i].3 = false;
            let dead: Vec<RelayId> = self.links.iter().filter(|(_, l)| l.0 == i).map(|(r, _)| *r).collect();
            for relay in dead {
                self.links.remove(&relay);
                self.conns.handle_closed(self.now, relay);
            }
        }
    }

    #[test]
    fn keeps_three_own_relays_and_replaces_a_dead_one() {
        let mut w = World::new(5);
        for i in 0..5 {
            let node = w.node(i);
            let now = w.now;
            w.conns.add_relay(now, node, true);
        }
        w.step();
        assert_eq!(w.conns.connected(10).len(), OWN_RELAYS);
        let first = w.conns.connected(10);
        assert_eq!(first, vec![w.node(0), w.node(1), w.node(2)]);
        w.kill(1);
        w.step();
        let now_connected = w.conns.connected(10);
        assert_eq!(now_connected.len(), OWN_RELAYS, "a replacement at once");
        assert!(!now_connected.contains(&w.node(1)) && now_connected.contains(&w.node(3)));
        assert!(w.conns.poll_timeout().is_some(), "the dead relay is retried later");
    }

    #[test]
    fn peers_are_routed_and_packets_take_the_online_route() {
        let mut w = World::new(2);
        let peer_keys = KeyPair::generate(&mut w.rng);
        let peer = *peer_keys.public();
        let (n0, n1) = (w.node(0), w.node(1));
        let now = w.now;
        w.conns.add_relay(now, n0, true);
        // The peer is on relay 1 only; we learn it from the peer.
        w.conns.set_peer(now, peer, &[n1]);
        w.step();
        assert_eq!(w.conns.connection_count(), 2);
        assert!(w.conns.reachable(&peer), "registered on both");
        assert!(!w.conns.online(&peer));
        // The peer connects to relay 1 and routes us: online there.
        let peer_client = w.relays[1].1.accept(now, std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
        w.relays[1].1.confirm(now, peer_client, peer);
        let ours = *w.conns.dht_keys.public();
        w.relays[1].1.handle_packet(
            now,
            peer_client,
            TcpPacket::RoutingRequest(crate::wire::tcp::RoutingRequest::new(ours)),
        );
        w.step();
        assert!(w.conns.online(&peer));
        // Data goes routed on relay 1.
        assert!(w.conns.send_to(now, &peer, Bytes::from_static(b"\x1bdata")));
        let on_relay1: Vec<RelayId> = w.links.iter().filter(|(_, l)| l.0 == 1).map(|(r, _)| *r).collect();
        let mut got = Vec::new();
        while let Some(command) = w.conns.poll_command() {
            if let RelayCommand::Send { relay, packet } = command {
                got.push((relay, packet));
            }
        }
        assert!(
            got.iter().any(|(relay, p)| on_relay1.contains(relay)
                && matches!(p, TcpPacket::Data(d) if d.payload == Bytes::from_static(b"\x1bdata"))),
            "{got:?}"
        );
        assert_eq!(w.conns.stats().data_sent, 1);
        // Relay 1 dies: the peer is left registered on relay 0 (our own).
        w.kill(1);
        w.step();
        assert!(!w.conns.online(&peer));
        assert!(w.conns.reachable(&peer));
        assert!(w.events.contains(&RelayEvent::Changed));
        assert!(w.conns.send_to(w.now, &peer, Bytes::from_static(b"\x18cookie")), "out-of-band on relay 0");
        assert_eq!(w.conns.stats().oob_sent, 1);
        w.conns.remove_peer(w.now, &peer);
        assert!(!w.conns.reachable(&peer));
        assert!(!w.conns.send_to(w.now, &peer, Bytes::from_static(b"x")));
    }

    #[test]
    fn connections_no_peer_needs_are_closed_when_idle() {
        let mut w = World::new(1);
        let peer = *KeyPair::generate(&mut w.rng).public();
        let n0 = w.node(0);
        let now = w.now;
        w.conns.set_peer(now, peer, &[n0]);
        w.step();
        assert_eq!(w.conns.connection_count(), 1);
        w.conns.remove_peer(now, &peer);
        w.conns.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(w.conns.connection_count(), 1, "kept a while");
        w.conns.handle_timeout(now + Duration::from_secs(1) + IDLE_CLOSE);
        assert_eq!(w.conns.connection_count(), 0);
        assert!(matches!(w.conns.poll_command(), Some(RelayCommand::Send { .. }) | Some(RelayCommand::Close { .. })));
    }

    #[test]
    fn failed_relays_back_off() {
        let mut w = World::new(1);
        w.kill(0);
        let n0 = w.node(0);
        let now = w.now;
        w.conns.add_relay(now, n0, true);
        w.step();
        assert_eq!(w.conns.connection_count(), 0);
        assert_eq!(w.conns.stats().connects, 1);
        w.conns.handle_timeout(now + Duration::from_millis(500));
        w.step();
        assert_eq!(w.conns.stats().connects, 1, "not retried at once");
        let retry = w.conns.poll_timeout().unwrap();
        assert!(retry > now + RETRY_MIN, "{:?}", retry - now);
        w.now = retry;
        w.conns.handle_timeout(retry);
        w.step();
        assert_eq!(w.conns.stats().connects, 2);
        let next = w.conns.poll_timeout().unwrap();
        assert!(next - retry > retry - now, "the wait doubles");
    }
}
