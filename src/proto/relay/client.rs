//! One connection to a TCP relay, the client's side, sans-IO (c-toxcore's
//! `TCP_client.c`).
//!
//! Its life:
//! 1. [`RelayClient::start`] makes the 128-byte handshake (our DHT key
//!    pair, a temporary key pair and a base nonce, sealed for the relay's
//!    key); the driver opens the TCP connection and writes it.
//! 2. The relay's 96-byte answer goes to
//!    [`handle_handshake`](RelayClient::handle_handshake), which returns the
//!    session ([`SecureChannel`]): the driver seals and opens the frames
//!    with it, so this side sees plaintext [`TcpPacket`]s only. Connecting
//!    and the handshake must be done within [`CONNECT_TIMEOUT`] (10 s,
//!    `TCP_CONNECTION_TIMEOUT`). The first packet is a ping: the relay
//!    counts a client as confirmed once a frame from it opens.
//! 3. Routing: [`route`](RelayClient::route) asks the relay to link us to a
//!    peer (by its DHT key). The relay answers with a connection id (the
//!    route is *registered*; refused when the relay has no slot left), and
//!    sends a connect notification once the peer asked for us too (the route
//!    is *online*: data flows). A disconnect notification means the peer
//!    left: registered again. Out-of-band data reaches any key connected to
//!    the relay, routed or not; onion requests use the relay as hop 1.
//! 4. Pings: we ping every 30 s and close the connection when no pong comes
//!    within 10 s (`TCP_PING_FREQUENCY`, `TCP_PING_TIMEOUT`); the relay's
//!    pings are answered at once.
//!
//! A packet c-toxcore's client would disconnect for (a packet only clients
//! send: routing request, out-of-band send, onion request, forward request)
//! closes the connection here too.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_core::CryptoRng;

use super::channel::{HandshakeError, PendingHandshake, SecureChannel, start_handshake};
use crate::crypto::{KeyPair, PublicKey};
use crate::wire::packed_node::PackedNode;
use crate::wire::tcp::{
    ClientHandshake, ConnectionId, Data, DisconnectNotification, MAX_OOB_DATA_LEN, OobSend, Ping, Pong, RoutingRequest,
    ServerHandshake, TcpOnionRequest, TcpPacket,
};

/// Names one connection attempt for its whole life (never reused).
pub type RelayId = u64;

/// Connecting and the handshake must be done within this (`TCP_CONNECTION_TIMEOUT`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often we ping the relay (`TCP_PING_FREQUENCY`).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long the relay has to answer a ping (`TCP_PING_TIMEOUT`).
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a route to a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteStatus {
    /// Asked for; no answer yet.
    Requested,
    /// The relay gave it a connection id; the peer has not asked for us
    /// (out-of-band data may still reach it).
    Registered,
    /// Both sides asked: routed data flows.
    Online,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Not connected and handshaken within [`CONNECT_TIMEOUT`].
    HandshakeTimeout,
    /// The relay's handshake did not open (wrong key?).
    BadHandshake,
    /// No pong within [`PING_TIMEOUT`].
    PingTimeout,
    /// A packet a relay never sends; names it.
    Protocol(&'static str),
    /// The socket ended or failed.
    Gone,
    /// We closed it.
    Local,
}

/// What a connection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The handshake is done: the connection can be used.
    Confirmed,
    /// A route changed: its new status, or `None` when the relay refused it.
    Route {
        /// The peer's DHT key.
        peer: PublicKey,
        /// Where it stands.
        status: Option<RouteStatus>,
    },
    /// Routed data from a peer.
    Data {
        /// The peer's DHT key.
        peer: PublicKey,
        /// The payload.
        data: Bytes,
    },
    /// Out-of-band data.
    Oob {
        /// The sender's DHT key.
        sender: PublicKey,
        /// The payload.
        data: Bytes,
    },
    /// An onion response (a 0x84 or 0x86 packet) for a request we sent
    /// through this relay.
    Onion(Bytes),
    /// The connection ended.
    Closed(CloseReason),
}

#[derive(Debug)]
enum State {
    Handshaking(PendingHandshake),
    Confirmed,
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct Route {
    status: RouteStatus,
    connection: Option<ConnectionId>,
}

/// One relay connection.
#[derive(Debug)]
pub struct RelayClient {
    relay: PackedNode,
    state: State,
    deadline: Instant,
    routes: HashMap<PublicKey, Route>,
    slots: HashMap<ConnectionId, PublicKey>,
    ping: Option<(u64, Instant)>,
    next_ping: Instant,
    next_ping_id: u64,
    out: VecDeque<TcpPacket>,
    events: VecDeque<ClientEvent>,
}

impl RelayClient {
    /// A connection to `relay` (its address and DHT key) for our DHT key
    /// pair `ours`; returns the handshake to write first. `rng` makes the
    /// temporary key pair, the base nonce and the first ping id.
    pub fn start<R: CryptoRng + ?Sized>(
        rng: &mut R,
        ours: &KeyPair,
        relay: PackedNode,
        now: Instant,
    ) -> Result<(Self, ClientHandshake), HandshakeError> {
        let (hello, pending) = start_handshake(rng, ours, &relay.public_key)?;
        let client = Self {
            relay,
            state: State::Handshaking(pending),
            deadline: now + CONNECT_TIMEOUT,
            routes: HashMap::new(),
            slots: HashMap::new(),
            ping: None,
            next_ping: now,
            next_ping_id: rng.next_u64() | 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        Ok((client, hello))
    }

    /// The relay (address and key).
    pub fn relay(&self) -> &PackedNode {
        &self.relay
    }

    /// Whether the handshake is done and the connection open.
    pub fn is_confirmed(&self) -> bool {
        matches!(self.state, State::Confirmed)
    }

    /// Whether the connection ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The relay's handshake arrived: the session, or `None` (and the
    /// connection closes) when it does not open.
    pub fn handle_handshake(&mut self, now: Instant, response: &ServerHandshake) -> Option<SecureChannel> {
        let State::Handshaking(_) = self.state else { return None };
        let State::Handshaking(pending) = std::mem::replace(&mut self.state, State::Confirmed) else {
            return None;
        };
        match pending.finish(response) {
            Ok(channel) => {
                self.events.push_back(ClientEvent::Confirmed);
                // The first frame confirms us to the relay.
                self.send_ping(now);
                let peers: Vec<PublicKey> = self.routes.keys().copied().collect();
                for peer in peers {
                    self.out.push_back(TcpPacket::RoutingRequest(RoutingRequest::new(peer)));
                }
                Some(channel)
            }
            Err(_) => {
                self.close(CloseReason::BadHandshake);
                None
            }
        }
    }

    fn send_ping(&mut self, now: Instant) {
        let id = self.next_ping_id;
        self.next_ping_id = self.next_ping_id.wrapping_add(2).max(1);
        self.out.push_back(TcpPacket::Ping(Ping::new(id)));
        self.ping = Some((id, now));
        self.next_ping = now + PING_INTERVAL;
    }

    /// A packet from the relay.
    pub fn handle_packet(&mut self, _now: Instant, packet: TcpPacket) {
        if !self.is_confirmed() {
            return;
        }
        match packet {
            TcpPacket::RoutingResponse(response) => {
                let peer = response.peer;
                match (response.connection(), self.routes.get(&peer).copied()) {
                    (Some(connection), Some(route)) if route.status == RouteStatus::Requested => {
                        if self.slots.contains_key(&connection) {
                            return;
                        }
                        self.slots.insert(connection, peer);
                        self.routes
                            .insert(peer, Route { status: RouteStatus::Registered, connection: Some(connection) });
                        self.events.push_back(ClientEvent::Route { peer, status: Some(RouteStatus::Registered) });
                    }
                    (None, Some(route)) if route.status == RouteStatus::Requested => {
                        self.routes.remove(&peer);
                        self.events.push_back(ClientEvent::Route { peer, status: None });
                    }
                    // An answer for a route we gave up on meanwhile: free its slot.
                    (Some(connection), None) if !self.slots.contains_key(&connection) => {
                        self.out.push_back(TcpPacket::DisconnectNotification(DisconnectNotification::new(connection)));
                    }
                    _ => {}
                }
            }
            TcpPacket::ConnectNotification(n) => self.set_online(n.connection, true),
            TcpPacket::DisconnectNotification(n) => self.set_online(n.connection, false),
            TcpPacket::Ping(ping) => self.out.push_back(TcpPacket::Pong(Pong::new(ping.ping_id))),
            TcpPacket::Pong(pong) => {
                if self.ping.is_some_and(|(id, _)| id == pong.ping_id) {
                    self.ping = None;
                }
            }
            TcpPacket::OobRecv(oob) => self.events.push_back(ClientEvent::Oob { sender: oob.sender, data: oob.data }),
            TcpPacket::OnionResponse(response) => self.events.push_back(ClientEvent::Onion(response.payload)),
            TcpPacket::Data(data) => {
                if let Some(peer) = self.slots.get(&data.connection) {
                    self.events.push_back(ClientEvent::Data { peer: *peer, data: data.payload });
                }
            }
            // Group forwarding: not used.
            TcpPacket::Forwarding(_) => {}
            TcpPacket::RoutingRequest(_) => self.close(CloseReason::Protocol("a routing request from the relay")),
            TcpPacket::OobSend(_) => self.close(CloseReason::Protocol("an out-of-band send from the relay")),
            TcpPacket::OnionRequest(_) => self.close(CloseReason::Protocol("an onion request from the relay")),
            TcpPacket::ForwardRequest(_) => self.close(CloseReason::Protocol("a forward request from the relay")),
        }
    }

    fn set_online(&mut self, connection: ConnectionId, online: bool) {
        let Some(peer) = self.slots.get(&connection).copied() else { return };
        let Some(route) = self.routes.get_mut(&peer) else { return };
        let status = if online { RouteStatus::Online } else { RouteStatus::Registered };
        if route.status != status {
            route.status = status;
            self.events.push_back(ClientEvent::Route { peer, status: Some(status) });
        }
    }

    /// A frame from the relay opened but did not decode: c-toxcore ends
    /// the connection.
    pub fn handle_malformed(&mut self, what: &'static str) {
        self.close(CloseReason::Protocol(what));
    }

    /// The socket ended (or the driver gave up connecting).
    pub fn handle_closed(&mut self) {
        self.close(CloseReason::Gone);
    }

    /// Ends the connection (the driver is told through
    /// [`poll_event`](Self::poll_event)'s `Closed`).
    pub fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.state = State::Closed;
        self.out.clear();
        self.routes.clear();
        self.slots.clear();
        self.events.push_back(ClientEvent::Closed(reason));
    }

    /// Runs the timers: the handshake deadline, pings and their timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Handshaking(_) if now >= self.deadline => self.close(CloseReason::HandshakeTimeout),
            State::Confirmed => {
                if self.ping.is_some_and(|(_, sent)| now >= sent + PING_TIMEOUT) {
                    self.close(CloseReason::PingTimeout);
                } else if now >= self.next_ping {
                    self.send_ping(now);
                }
            }
            _ => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking(_) => Some(self.deadline),
            State::Confirmed => {
                Some(self.ping.map_or(self.next_ping, |(_, sent)| (sent + PING_TIMEOUT).min(self.next_ping)))
            }
            State::Closed => None,
        }
    }

    // ---- routes and data -----------------------------------------------------

    /// Asks the relay to link us to `peer` (a DHT key), unless asked already.
    /// Before the handshake is done the request waits.
    pub fn route(&mut self, peer: PublicKey) {
        if self.is_closed() || self.routes.contains_key(&peer) {
            return;
        }
        self.routes.insert(peer, Route { status: RouteStatus::Requested, connection: None });
        if self.is_confirmed() {
            self.out.push_back(TcpPacket::RoutingRequest(RoutingRequest::new(peer)));
        }
    }

    /// Drops the route to `peer`, telling the relay.
    pub fn unroute(&mut self, peer: &PublicKey) {
        let Some(route) = self.routes.remove(peer) else { return };
        if let Some(connection) = route.connection {
            self.slots.remove(&connection);
            self.out.push_back(TcpPacket::DisconnectNotification(DisconnectNotification::new(connection)));
        }
    }

    /// Where the route to `peer` stands.
    pub fn route_status(&self, peer: &PublicKey) -> Option<RouteStatus> {
        self.routes.get(peer).map(|r| r.status)
    }

    /// The peers we route (or asked to).
    pub fn routed_peers(&self) -> impl Iterator<Item = &PublicKey> {
        self.routes.keys()
    }

    /// Sends routed data to `peer`; false unless its route is online.
    pub fn send_data(&mut self, peer: &PublicKey, payload: Bytes) -> bool {
        let Some(Route { status: RouteStatus::Online, connection: Some(connection) }) = self.routes.get(peer).copied()
        else {
            return false;
        };
        match Data::new(connection, payload) {
            Some(data) => {
                self.out.push_back(TcpPacket::Data(data));
                true
            }
            None => false,
        }
    }

    /// Sends out-of-band data (1 to 1024 bytes) to `peer`, which must be
    /// connected to the relay to get it.
    pub fn send_oob(&mut self, peer: PublicKey, data: Bytes) -> bool {
        if !self.is_confirmed() || data.is_empty() || data.len() > MAX_OOB_DATA_LEN {
            return false;
        }
        match OobSend::new(peer, data) {
            Some(oob) => {
                self.out.push_back(TcpPacket::OobSend(oob));
                true
            }
            None => false,
        }
    }

    /// Sends an onion request with the relay as hop 1.
    pub fn send_onion(&mut self, request: TcpOnionRequest) -> bool {
        if !self.is_confirmed() {
            return false;
        }
        self.out.push_back(TcpPacket::OnionRequest(request));
        true
    }

    /// The next packet to seal and send.
    pub fn poll_packet(&mut self) -> Option<TcpPacket> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::proto::relay::channel::accept_handshake;
    use crate::proto::relay::server::{RelayOutput, RelayServer, RelayServerConfig};
    use crate::wire::tcp::TcpOnionResponse;

    /// A relay core and clients wired in memory (no sockets, no sealing:
    /// the handshake is real, the packets cross as values).
    struct Net {
        now: Instant,
        rng: ChaCha20Rng,
        relay_keys: KeyPair,
        server: RelayServer,
        clients: Vec<(RelayClient, u64, PublicKey)>,
        events: Vec<Vec<ClientEvent>>,
    }

    impl Net {
        fn new() -> Self {
            let mut rng = ChaCha20Rng::seed_from_u64(7);
            let relay_keys = KeyPair::generate(&mut rng);
            let server = RelayServer::new(*relay_keys.public(), RelayServerConfig::default(), [3; 32]);
            Self { now: crate::proto::test_epoch(), rng, relay_keys, server, clients: Vec::new(), events: Vec::new() }
        }

        fn relay_node(&self) -> PackedNode {
            PackedNode::tcp(SocketAddr::from(([192, 0, 2, 1], 33445)), *self.relay_keys.public())
        }

        fn connect(&mut self) -> usize {
            let keys = KeyPair::generate(&mut self.rng);
            let relay = self.relay_node();
            let (mut client, hello) = RelayClient::start(&mut self.rng, &keys, relay, self.now).unwrap();
            let id = self.server.accept(self.now, std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
            let accepted = accept_handshake(&mut self.rng, &self.relay_keys, &hello).unwrap();
            assert_eq!(accepted.client_pk, *keys.public());
            assert!(client.handle_handshake(self.now, &accepted.response).is_some());
            self.clients.push((client, id, *keys.public()));
            self.events.push(Vec::new());
            self.clients.len() - 1
        }

        fn pk(&self, i: usize) -> PublicKey {
            self.clients[i].2
        }

        /// Moves packets both ways until nothing moves.
        fn settle(&mut self) {
            loop {
                let mut moved = false;
                for i in 0..self.clients.len() {
                    while let Some(packet) = self.clients[i].0.poll_packet() {
                        moved = true;
                        let (id, pk) = (self.clients[i].1, self.clients[i].2);
                        if self.server.client_by_key(&pk) != Some(id) {
                            self.server.confirm(self.now, id, pk);
                        }
                        self.server.handle_packet(self.now, id, packet);
                    }
                }
                while let Some(out) = self.server.poll_output() {
                    moved = true;
                    if let RelayOutput::Send { client, packet } = out {
                        let i = self.clients.iter().position(|c| c.1 == client).unwrap();
                        self.clients[i].0.handle_packet(self.now, packet);
                    }
                }
                for i in 0..self.clients.len() {
                    while let Some(e) = self.clients[i].0.poll_event() {
                        self.events[i].push(e);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
    }

    #[test]
    fn two_clients_route_to_each_other_and_exchange_data() {
        let mut net = Net::new();
        let (a, b) = (net.connect(), net.connect());
        net.settle();
        assert_eq!(net.events[a][0], ClientEvent::Confirmed);
        let (pa, pb) = (net.pk(a), net.pk(b));
        net.clients[a].0.route(pb);
        net.settle();
        assert_eq!(net.clients[a].0.route_status(&pb), Some(RouteStatus::Registered));
        assert!(!net.clients[a].0.send_data(&pb, Bytes::from_static(b"early")), "not online yet");
        // Out-of-band works without a route on the other side.
        assert!(net.clients[a].0.send_oob(pb, Bytes::from_static(b"hello")));
        net.clients[b].0.route(pa);
        net.settle();
        assert_eq!(net.clients[a].0.route_status(&pb), Some(RouteStatus::Online));
        assert_eq!(net.clients[b].0.route_status(&pa), Some(RouteStatus::Online));
        assert!(net.events[b].contains(&ClientEvent::Oob { sender: pa, data: Bytes::from_static(b"hello") }));
        assert!(net.clients[a].0.send_data(&pb, Bytes::from_static(b"routed")));
        net.settle();
        assert!(net.events[b].contains(&ClientEvent::Data { peer: pa, data: Bytes::from_static(b"routed") }));
        // b leaves the route: a sees it registered again, then can route anew.
        net.clients[b].0.unroute(&pa);
        net.settle();
        assert_eq!(net.clients[a].0.route_status(&pb), Some(RouteStatus::Registered));
        assert!(
            net.events[a].contains(&ClientEvent::Route { peer: pb, status: Some(RouteStatus::Registered) }),
            "{:?}",
            net.events[a]
        );
        net.clients[b].0.route(pa);
        net.settle();
        assert_eq!(net.clients[a].0.route_status(&pb), Some(RouteStatus::Online));
    }

    #[test]
    fn routes_asked_before_the_handshake_go_out_after_it() {
        let mut net = Net::new();
        let keys = KeyPair::generate(&mut net.rng);
        let other = net.connect();
        let other_pk = net.pk(other);
        let relay = net.relay_node();
        let (mut client, hello) = RelayClient::start(&mut net.rng, &keys, relay, net.now).unwrap();
        client.route(other_pk);
        assert_eq!(client.poll_packet(), None, "nothing before the handshake");
        let accepted = accept_handshake(&mut net.rng, &net.relay_keys, &hello).unwrap();
        client.handle_handshake(net.now, &accepted.response).unwrap();
        assert!(matches!(client.poll_packet(), Some(TcpPacket::Ping(_))), "a ping confirms us first");
        assert_eq!(client.poll_packet(), Some(TcpPacket::RoutingRequest(RoutingRequest::new(other_pk))));
    }

    #[test]
    fn pings_are_answered_and_a_silent_relay_is_dropped() {
        let mut net = Net::new();
        let a = net.connect();
        net.settle();
        let t0 = net.now;
        let client = &mut net.clients[a].0;
        client.handle_packet(t0, TcpPacket::Ping(Ping::new(42)));
        assert_eq!(client.poll_packet(), Some(TcpPacket::Pong(Pong::new(42))));
        // Our own pings: one every 30 s; no pong within 10 s ends it.
        client.handle_timeout(t0 + PING_INTERVAL);
        let Some(TcpPacket::Ping(ping)) = client.poll_packet() else { panic!("no ping") };
        client.handle_packet(t0 + PING_INTERVAL, TcpPacket::Pong(Pong::new(ping.ping_id)));
        client.handle_timeout(t0 + PING_INTERVAL + PING_TIMEOUT);
        assert!(client.is_confirmed());
        client.handle_timeout(t0 + PING_INTERVAL * 2);
        assert!(matches!(client.poll_packet(), Some(TcpPacket::Ping(_))));
        assert_eq!(client.poll_timeout(), Some(t0 + PING_INTERVAL * 2 + PING_TIMEOUT));
        client.handle_timeout(t0 + PING_INTERVAL * 2 + PING_TIMEOUT);
        assert!(client.is_closed());
        assert_eq!(client.poll_event(), Some(ClientEvent::Closed(CloseReason::PingTimeout)));
        assert_eq!(client.poll_timeout(), None);
    }

    #[test]
    fn handshakes_time_out_and_bad_ones_close() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let ours = KeyPair::generate(&mut rng);
        let relay = PackedNode::tcp(SocketAddr::from(([192, 0, 2, 1], 1)), *KeyPair::generate(&mut rng).public());
        let now = crate::proto::test_epoch();
        let (mut client, _) = RelayClient::start(&mut rng, &ours, relay, now).unwrap();
        client.handle_timeout(now + CONNECT_TIMEOUT - Duration::from_millis(1));
        assert!(!client.is_closed());
        client.handle_timeout(now + CONNECT_TIMEOUT);
        assert_eq!(client.poll_event(), Some(ClientEvent::Closed(CloseReason::HandshakeTimeout)));

        let (mut client, _) = RelayClient::start(&mut rng, &ours, relay, now).unwrap();
        let junk = ServerHandshake::decode(vec![5u8; 96]).unwrap();
        assert!(client.handle_handshake(now, &junk).is_none());
        assert_eq!(client.poll_event(), Some(ClientEvent::Closed(CloseReason::BadHandshake)));
        // Packets after the close are ignored, sends refused.
        client.handle_packet(now, TcpPacket::Ping(Ping::new(1)));
        assert_eq!(client.poll_packet(), None);
        assert!(!client.send_oob(relay.public_key, Bytes::from_static(b"x")));
    }

    #[test]
    fn refusals_onion_responses_and_protocol_errors() {
        let mut net = Net::new();
        let a = net.connect();
        net.settle();
        let pa = net.pk(a);
        // A route to ourselves is refused by the relay.
        net.clients[a].0.route(pa);
        net.settle();
        assert!(net.events[a].contains(&ClientEvent::Route { peer: pa, status: None }));
        assert_eq!(net.clients[a].0.route_status(&pa), None);
        let now = net.now;
        let client = &mut net.clients[a].0;
        let response = TcpOnionResponse::new(Bytes::from_static(&[0x84, 1, 2])).unwrap();
        client.handle_packet(now, TcpPacket::OnionResponse(response));
        assert_eq!(client.poll_event(), Some(ClientEvent::Onion(Bytes::from_static(&[0x84, 1, 2]))));
        // Data for a slot we never had is ignored.
        let stray = Data::new(ConnectionId::from_byte(99).unwrap(), Bytes::from_static(b"x")).unwrap();
        client.handle_packet(now, TcpPacket::Data(stray));
        assert_eq!(client.poll_event(), None);
        // A routing request from the relay ends the connection.
        client.handle_packet(now, TcpPacket::RoutingRequest(RoutingRequest::new(pa)));
        assert!(matches!(client.poll_event(), Some(ClientEvent::Closed(CloseReason::Protocol(_)))));
    }

    #[test]
    fn a_late_answer_for_a_dropped_route_frees_its_slot() {
        let mut net = Net::new();
        let (a, b) = (net.connect(), net.connect());
        net.settle();
        let pb = net.pk(b);
        net.clients[a].0.route(pb);
        // Dropped before the relay answered.
        let request = net.clients[a].0.poll_packet().unwrap();
        assert!(matches!(request, TcpPacket::RoutingRequest(_)));
        net.clients[a].0.unroute(&pb);
        let id = net.clients[a].1;
        net.server.handle_packet(net.now, id, request);
        let Some(RelayOutput::Send { packet: answer, .. }) = net.server.poll_output() else { panic!() };
        let now = net.now;
        net.clients[a].0.handle_packet(now, answer);
        assert!(matches!(net.clients[a].0.poll_packet(), Some(TcpPacket::DisconnectNotification(_))));
    }
}
