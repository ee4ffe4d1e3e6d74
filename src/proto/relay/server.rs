//! The TCP relay server, sans-IO: who is connected, who asked to be linked
//! to whom, and what goes where (c-toxcore's `TCP_server.c`).
//!
//! The driver owns the sockets and the [`channel`](super::channel) of each
//! connection (handshake, sealing, opening); this core sees plaintext
//! packets. A connection's life:
//!
//! 1. [`accept`](RelayServer::accept) gives it a [`ClientId`], or refuses it
//!    when the relay is full or its source address (an IPv4 address, an IPv6
//!    /64) holds too many connections already. When
//!    [`RelayServerConfig::max_pending`] connections are in their handshake
//!    the oldest of them is closed to make room, as c-toxcore does, so that
//!    one attacker opening connections cannot lock everyone out. It must
//!    complete the handshake and send one
//!    valid frame within [`RelayServerConfig::confirm_timeout`] (10 s, the
//!    `TCP_CONNECTION_TIMEOUT` c-toxcore clients give themselves).
//! 2. [`confirm`](RelayServer::confirm) with the client's key once its first
//!    frame opened ("unconfirmed until a packet decrypts", as c-toxcore). An
//!    older connection with the same key is closed.
//! 3. [`handle_packet`](RelayServer::handle_packet) for each packet. Routing
//!    requests take one of the client's 240 slots; when two clients asked for
//!    each other both get a connect notification and data flows between the
//!    slots. Out-of-band data goes to any connected key. Onion requests go to
//!    the node's onion relay ([`poll_onion_request`](RelayServer::poll_onion_request))
//!    and the answers come back through
//!    [`handle_onion_response`](RelayServer::handle_onion_response).
//! 4. Every 30 s the relay pings each client; one that has not answered
//!    within 10 s is closed. A packet c-toxcore would end the connection for
//!    (wrong length, a reserved id, data on a slot never asked for, a pong
//!    with id 0, a disconnect for a free slot) closes it here too.
//! 5. [`handle_closed`](RelayServer::handle_closed) when the socket ends:
//!    its peers get disconnect notifications and wait for it again.
//!
//! What to send and whom to close comes out of
//! [`poll_output`](RelayServer::poll_output). Each client's state is a few
//! dozen bytes plus its slots in use, so idle connections cost little.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::crypto::PublicKey;
use crate::wire::tcp::{
    ConnectNotification, ConnectionId, Data, DisconnectNotification, NUM_CONNECTION_SLOTS, OobRecv, Ping, Pong,
    RoutingResponse, TcpOnionRequest, TcpOnionResponse, TcpPacket,
};

/// A connection's number, unique for the relay's lifetime (never reused).
pub type ClientId = u64;

/// How often the relay pings a client (`TCP_PING_FREQUENCY`).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a client has to answer a ping (`TCP_PING_TIMEOUT`).
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection has to send its handshake and a first frame.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the timers are checked.
pub const TICK: Duration = Duration::from_secs(1);
/// See [`RelayServerConfig::max_per_source`] (room for a household or an
/// office behind one NAT address).
pub const MAX_PER_SOURCE: usize = 32;
/// See [`RelayServerConfig::max_pending_per_source`].
pub const MAX_PENDING_PER_SOURCE: usize = 8;

/// Limits and timers.
#[derive(Debug, Clone)]
pub struct RelayServerConfig {
    /// Connections at most, confirmed or not; more are refused at accept.
    pub max_clients: usize,
    /// Connections still in their handshake at most (c-toxcore keeps 256);
    /// past it the oldest is closed to make room.
    pub max_pending: usize,
    /// Connections from one source (IPv4 address, IPv6 /64) at most;
    /// loopback is not capped.
    pub max_per_source: usize,
    /// Connections in their handshake from one source at most.
    pub max_pending_per_source: usize,
    /// See [`CONFIRM_TIMEOUT`].
    pub confirm_timeout: Duration,
    /// See [`PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`PING_TIMEOUT`].
    pub ping_timeout: Duration,
}

impl Default for RelayServerConfig {
    fn default() -> Self {
        Self {
            max_clients: 4096,
            max_pending: 256,
            max_per_source: MAX_PER_SOURCE,
            max_pending_per_source: MAX_PENDING_PER_SOURCE,
            confirm_timeout: CONFIRM_TIMEOUT,
            ping_interval: PING_INTERVAL,
            ping_timeout: PING_TIMEOUT,
        }
    }
}

/// Why the relay closes a connection, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No handshake and first frame in time.
    ConfirmTimeout,
    /// No pong in time.
    PingTimeout,
    /// A packet c-toxcore ends connections for; names what was wrong.
    Protocol(&'static str),
    /// A newer connection with the same key replaced it.
    Replaced,
    /// The client does not read what we send (its control queue is full).
    TooSlow,
    /// The handshake did not open or was malformed.
    BadHandshake,
    /// A frame length outside 17..=2048.
    BadFrame,
    /// A frame that did not open with the session key.
    Undecryptable,
    /// Still in its handshake, the oldest such, when a new connection
    /// needed its room.
    Evicted,
    /// The client closed the socket, or it failed.
    Gone,
}

/// What the relay wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOutput {
    /// Seal and send `packet` to `client`. Control packets
    /// ([`TcpPacket::is_control`]) must not be dropped; others may be when
    /// the client is slow.
    Send {
        /// The connection.
        client: ClientId,
        /// The packet.
        packet: TcpPacket,
    },
    /// Close the connection; the relay has already forgotten it.
    Close {
        /// The connection.
        client: ClientId,
        /// Why.
        reason: CloseReason,
    },
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused because the relay was full.
    pub refused_full: u64,
    /// Connections refused because their source had too many.
    pub refused_source: u64,
    /// Connections in their handshake closed to make room for a new one.
    pub evicted: u64,
    /// Connections confirmed (handshake and first frame done).
    pub confirmed: u64,
    /// Connections replaced by a newer one with the same key.
    pub replaced: u64,
    /// Closed for not confirming in time.
    pub confirm_timeouts: u64,
    /// Closed for not answering pings.
    pub ping_timeouts: u64,
    /// Closed for a packet c-toxcore ends connections for.
    pub protocol_errors: u64,
    /// Closed for a bad handshake.
    pub bad_handshakes: u64,
    /// Closed for a bad frame length.
    pub bad_frames: u64,
    /// Closed for a frame that did not open.
    pub undecryptable: u64,
    /// Closed for not reading.
    pub too_slow: u64,
    /// Routing requests refused (the client's own key, or all slots taken).
    pub routing_refused: u64,
    /// Data packets passed between linked clients.
    pub data_routed: u64,
    /// Data packets for a slot whose peer is not there (dropped, as c-toxcore does).
    pub data_unlinked: u64,
    /// Out-of-band packets passed on.
    pub oob_routed: u64,
    /// Out-of-band packets for a key that is not connected.
    pub oob_unknown: u64,
    /// Onion requests passed to the onion relay.
    pub onion_requests: u64,
    /// Onion responses passed back to clients.
    pub onion_responses: u64,
    /// Onion responses for a connection that is gone.
    pub onion_responses_lost: u64,
    /// Forward requests (group announcements) ignored.
    pub forwards_ignored: u64,
    /// Packets the driver dropped because the client's queue was full.
    pub send_dropped: u64,
}

/// One of a client's slots: the key it asked for, and where that peer's
/// end is once it asked for us too.
#[derive(Debug, Clone, Copy)]
struct Link {
    peer: PublicKey,
    online: Option<(ClientId, u8)>,
}

#[derive(Debug)]
struct Client {
    pk: PublicKey,
    source: Source,
    /// Slot i is connection id 16 + i; grows only as slots are used.
    links: Vec<Option<Link>>,
    last_pinged: Instant,
    ping_id: u64,
}

#[derive(Debug)]
enum Conn {
    Pending { since: Instant, source: Source },
    Confirmed(Client),
}

/// Where connections come from, for the per-source limits: an IPv4
/// address, or an IPv6 /64 (one host may hold a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source(u128);

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(a) => Source(u128::from(a.to_bits())),
            // (Bit 32 set: never an IPv4 value.)
            IpAddr::V6(a) => Source((a.to_bits() & !u128::from(u64::MAX)) | (1 << 32)),
        }
    }
}

/// Connections from one source.
#[derive(Debug, Clone, Copy, Default)]
struct PerSource {
    all: usize,
    pending: usize,
}

/// The relay server.
#[derive(Debug)]
pub struct RelayServer {
    own_pk: PublicKey,
    config: RelayServerConfig,
    conns: HashMap<ClientId, Conn>,
    by_key: HashMap<PublicKey, ClientId>,
    pending: usize,
    sources: HashMap<Source, PerSource>,
    next_id: ClientId,
    rng: ChaCha20Rng,
    outputs: VecDeque<RelayOutput>,
    onion_requests: VecDeque<(ClientId, TcpOnionRequest)>,
    next_tick: Option<Instant>,
    stats: RelayServerStats,
}

impl RelayServer {
    /// A relay whose (DHT) public key is `own_pk`; `seed` makes its ping ids.
    pub fn new(own_pk: PublicKey, config: RelayServerConfig, seed: [u8; 32]) -> Self {
        Self {
            own_pk,
            config,
            conns: HashMap::new(),
            by_key: HashMap::new(),
            pending: 0,
            sources: HashMap::new(),
            next_id: 1,
            rng: ChaCha20Rng::from_seed(seed),
            outputs: VecDeque::new(),
            onion_requests: VecDeque::new(),
            next_tick: None,
            stats: RelayServerStats::default(),
        }
    }

    /// The relay's (DHT) public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.own_pk
    }

    /// Counters.
    pub fn stats(&self) -> RelayServerStats {
        self.stats
    }

    /// Connections, confirmed or not.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Confirmed clients.
    pub fn clients(&self) -> usize {
        self.conns.len() - self.pending
    }

    /// The connection of the client with key `pk`.
    pub fn client_by_key(&self, pk: &PublicKey) -> Option<ClientId> {
        self.by_key.get(pk).copied()
    }

    /// A new TCP connection arrived from `from`; `None` means refuse it
    /// (full, or too many from that source). With
    /// [`RelayServerConfig::max_pending`] handshakes under way the oldest is
    /// closed (see [`poll_output`](Self::poll_output)) to make room.
    pub fn accept(&mut self, now: Instant, from: IpAddr) -> Option<ClientId> {
        let source = Source::of(from);
        let counts = self.sources.get(&source).copied().unwrap_or_default();
        // Loopback is this host's own clients (and tests): not capped.
        let capped = !from.to_canonical().is_loopback();
        if capped && (counts.all >= self.config.max_per_source || counts.pending >= self.config.max_pending_per_source)
        {
            self.stats.refused_source += 1;
            return None;
        }
        if self.conns.len() >= self.config.max_clients {
            self.stats.refused_full += 1;
            return None;
        }
        if self.pending >= self.config.max_pending {
            // Ids grow with age: the smallest pending one is the oldest.
            let oldest = self.conns.iter().filter(|(_, c)| matches!(c, Conn::Pending { .. })).map(|(id, _)| *id).min();
            match oldest {
                Some(oldest) => self.close(oldest, CloseReason::Evicted),
                None => {
                    self.stats.refused_full += 1;
                    return None;
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(id, Conn::Pending { since: now, source });
        self.pending += 1;
        let counts = self.sources.entry(source).or_default();
        counts.all += 1;
        counts.pending += 1;
        self.stats.accepted += 1;
        self.next_tick.get_or_insert(now + TICK);
        Some(id)
    }

    /// The connection's handshake succeeded and its first frame opened:
    /// it is the client with key `pk` from now on. False if the connection
    /// is not pending any more (timed out); the driver then drops it.
    pub fn confirm(&mut self, now: Instant, client: ClientId, pk: PublicKey) -> bool {
        let Some(&Conn::Pending { source, .. }) = self.conns.get(&client) else {
            return false;
        };
        if let Some(old) = self.by_key.get(&pk).copied() {
            self.close(old, CloseReason::Replaced);
        }
        self.pending -= 1;
        if let Some(counts) = self.sources.get_mut(&source) {
            counts.pending -= 1;
        }
        self.conns
            .insert(client, Conn::Confirmed(Client { pk, source, links: Vec::new(), last_pinged: now, ping_id: 0 }));
        self.by_key.insert(pk, client);
        self.stats.confirmed += 1;
        true
    }

    /// The connection ended on its own or the driver gave up on it.
    pub fn handle_closed(&mut self, client: ClientId, reason: CloseReason) {
        if self.forget(client) {
            self.count(reason);
        }
    }

    fn count(&mut self, reason: CloseReason) {
        let s = &mut self.stats;
        match reason {
            CloseReason::ConfirmTimeout => s.confirm_timeouts += 1,
            CloseReason::PingTimeout => s.ping_timeouts += 1,
            CloseReason::Protocol(_) => s.protocol_errors += 1,
            CloseReason::Replaced => s.replaced += 1,
            CloseReason::TooSlow => s.too_slow += 1,
            CloseReason::BadHandshake => s.bad_handshakes += 1,
            CloseReason::BadFrame => s.bad_frames += 1,
            CloseReason::Undecryptable => s.undecryptable += 1,
            CloseReason::Evicted => s.evicted += 1,
            CloseReason::Gone => {}
        }
    }

    /// Closes a connection from our side.
    fn close(&mut self, client: ClientId, reason: CloseReason) {
        if self.forget(client) {
            self.count(reason);
            self.outputs.push_back(RelayOutput::Close { client, reason });
        }
    }

    /// Removes a connection; its linked peers are told. False if unknown.
    fn forget(&mut self, client: ClientId) -> bool {
        match self.conns.remove(&client) {
            None => false,
            Some(Conn::Pending { source, .. }) => {
                self.pending -= 1;
                self.leave(source, true);
                true
            }
            Some(Conn::Confirmed(gone)) => {
                self.leave(gone.source, false);
                if self.by_key.get(&gone.pk) == Some(&client) {
                    self.by_key.remove(&gone.pk);
                }
                for link in gone.links.iter().flatten() {
                    if let Some((other, other_slot)) = link.online {
                        self.unlink_other(other, other_slot);
                    }
                }
                true
            }
        }
    }

    fn leave(&mut self, source: Source, pending: bool) {
        if let Some(counts) = self.sources.get_mut(&source) {
            counts.all -= 1;
            counts.pending -= usize::from(pending);
            if counts.all == 0 {
                self.sources.remove(&source);
            }
        }
    }

    /// The peer at `other`'s slot left: the slot waits for it again.
    fn unlink_other(&mut self, other: ClientId, other_slot: u8) {
        let Some(Conn::Confirmed(peer)) = self.conns.get_mut(&other) else { return };
        if let Some(Some(link)) = peer.links.get_mut(usize::from(other_slot)) {
            link.online = None;
            if let Some(connection) = ConnectionId::from_slot(usize::from(other_slot)) {
                self.outputs.push_back(RelayOutput::Send {
                    client: other,
                    packet: TcpPacket::DisconnectNotification(DisconnectNotification::new(connection)),
                });
            }
        }
    }

    fn send(&mut self, client: ClientId, packet: TcpPacket) {
        self.outputs.push_back(RelayOutput::Send { client, packet });
    }

    /// A packet from a confirmed client. (`now` is unused today; packets
    /// carry no timers but the pong, which the ping's time covers.)
    pub fn handle_packet(&mut self, _now: Instant, client: ClientId, packet: TcpPacket) {
        let Some(Conn::Confirmed(_)) = self.conns.get(&client) else { return };
        let result = match packet {
            TcpPacket::RoutingRequest(request) => {
                self.routing_request(client, request.peer);
                Ok(())
            }
            TcpPacket::ConnectNotification(_) => Ok(()),
            TcpPacket::DisconnectNotification(n) => self.disconnect_request(client, n.connection),
            TcpPacket::Ping(ping) => {
                self.send(client, TcpPacket::Pong(Pong::new(ping.ping_id)));
                Ok(())
            }
            TcpPacket::Pong(pong) => self.pong(client, pong),
            TcpPacket::OobSend(oob) => {
                self.oob_send(client, oob.dest, oob.data);
                Ok(())
            }
            TcpPacket::OnionRequest(request) => {
                self.stats.onion_requests += 1;
                self.onion_requests.push_back((client, request));
                Ok(())
            }
            TcpPacket::ForwardRequest(_) => {
                self.stats.forwards_ignored += 1;
                Ok(())
            }
            TcpPacket::RoutingResponse(_) => Err("a routing response from a client"),
            TcpPacket::OobRecv(_) => Err("an OOB receive from a client"),
            TcpPacket::OnionResponse(_) => Err("an onion response from a client"),
            TcpPacket::Forwarding(_) => Err("a forwarding packet from a client"),
            TcpPacket::Data(data) => self.data(client, data),
        };
        if let Err(why) = result {
            self.close(client, CloseReason::Protocol(why));
        }
    }

    /// The driver dropped a (non-control) packet for a slow client.
    pub fn handle_dropped(&mut self) {
        self.stats.send_dropped += 1;
    }

    /// A packet that did not decode: c-toxcore ends the connection.
    pub fn handle_malformed(&mut self, client: ClientId, what: &'static str) {
        self.close(client, CloseReason::Protocol(what));
    }

    fn confirmed(&mut self, client: ClientId) -> Option<&mut Client> {
        match self.conns.get_mut(&client) {
            Some(Conn::Confirmed(c)) => Some(c),
            _ => None,
        }
    }

    fn routing_request(&mut self, client: ClientId, peer: PublicKey) {
        let Some(me) = self.confirmed(client) else { return };
        let my_pk = me.pk;
        // Refused: a link to oneself. The relay's own key is allowed: a node
        // that runs a relay is a client of it too, with that key (`-t`).
        if peer == my_pk {
            self.stats.routing_refused += 1;
            self.send(client, TcpPacket::RoutingResponse(RoutingResponse::new(None, peer)));
            return;
        }
        if let Some(slot) = me.links.iter().position(|l| l.is_some_and(|l| l.peer == peer)) {
            self.send(client, TcpPacket::RoutingResponse(RoutingResponse::new(ConnectionId::from_slot(slot), peer)));
            return;
        }
        let slot = match me.links.iter().position(Option::is_none) {
            Some(slot) => slot,
            None if me.links.len() < NUM_CONNECTION_SLOTS => {
                me.links.push(None);
                me.links.len() - 1
            }
            None => {
                self.stats.routing_refused += 1;
                self.send(client, TcpPacket::RoutingResponse(RoutingResponse::new(None, peer)));
                return;
            }
        };
        me.links[slot] = Some(Link { peer, online: None });
        let Some(connection) = ConnectionId::from_slot(slot) else { return };
        self.send(client, TcpPacket::RoutingResponse(RoutingResponse::new(Some(connection), peer)));

        // Linked when the peer is here and asked for us too.
        let Some(other) = self.by_key.get(&peer).copied() else { return };
        let Some(Conn::Confirmed(them)) = self.conns.get_mut(&other) else { return };
        let Some(other_slot) = them.links.iter().position(|l| l.is_some_and(|l| l.peer == my_pk && l.online.is_none()))
        else {
            return;
        };
        let (Ok(slot8), Ok(other_slot8)) = (u8::try_from(slot), u8::try_from(other_slot)) else { return };
        if let Some(Some(link)) = them.links.get_mut(other_slot) {
            link.online = Some((client, slot8));
        }
        if let Some(Some(link)) = self.confirmed(client).and_then(|me| me.links.get_mut(slot)) {
            link.online = Some((other, other_slot8));
        }
        let Some(other_connection) = ConnectionId::from_slot(other_slot) else { return };
        self.send(client, TcpPacket::ConnectNotification(ConnectNotification::new(connection)));
        self.send(other, TcpPacket::ConnectNotification(ConnectNotification::new(other_connection)));
    }

    fn disconnect_request(&mut self, client: ClientId, connection: ConnectionId) -> Result<(), &'static str> {
        let slot = connection.slot();
        let Some(me) = self.confirmed(client) else { return Ok(()) };
        let Some(link) = me.links.get_mut(slot).and_then(Option::take) else {
            return Err("a disconnect for a free slot");
        };
        if let Some((other, other_slot)) = link.online {
            self.unlink_other(other, other_slot);
        }
        Ok(())
    }

    fn pong(&mut self, client: ClientId, pong: Pong) -> Result<(), &'static str> {
        if pong.ping_id == 0 {
            return Err("a pong with id 0");
        }
        if let Some(me) = self.confirmed(client)
            && me.ping_id == pong.ping_id
        {
            me.ping_id = 0;
        }
        Ok(())
    }

    fn oob_send(&mut self, client: ClientId, dest: PublicKey, data: Bytes) {
        let Some(sender) = self.confirmed(client).map(|c| c.pk) else { return };
        let Some(other) = self.by_key.get(&dest).copied() else {
            self.stats.oob_unknown += 1;
            return;
        };
        if let Some(packet) = OobRecv::new(sender, data) {
            self.stats.oob_routed += 1;
            self.send(other, TcpPacket::OobRecv(packet));
        }
    }

    fn data(&mut self, client: ClientId, data: Data) -> Result<(), &'static str> {
        let Some(me) = self.confirmed(client) else { return Ok(()) };
        let Some(link) = me.links.get(data.connection.slot()).copied().flatten() else {
            return Err("data on a slot never asked for");
        };
        let Some((other, other_slot)) = link.online else {
            self.stats.data_unlinked += 1;
            return Ok(());
        };
        let Some(connection) = ConnectionId::from_slot(usize::from(other_slot)) else { return Ok(()) };
        self.stats.data_routed += 1;
        self.send(other, TcpPacket::Data(Data { connection, payload: data.payload }));
        Ok(())
    }

    /// An onion response for the connection the onion relay's return block
    /// named (`low` is the low 32 bits it carried, a check).
    pub fn handle_onion_response(&mut self, client: ClientId, low: u32, payload: Bytes) {
        let known = low == onion_conn_id(client) && matches!(self.conns.get(&client), Some(Conn::Confirmed(_)));
        match TcpOnionResponse::new(payload) {
            Some(response) if known => {
                self.stats.onion_responses += 1;
                self.send(client, TcpPacket::OnionResponse(response));
            }
            _ => self.stats.onion_responses_lost += 1,
        }
    }

    /// Time passed: confirmation deadlines, pings and their answers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_tick = if self.conns.is_empty() { None } else { Some(now + TICK) };
        let mut to_close = Vec::new();
        let mut pings = Vec::new();
        for (&id, conn) in &mut self.conns {
            match conn {
                Conn::Pending { since, .. } => {
                    if now >= *since + self.config.confirm_timeout {
                        to_close.push((id, CloseReason::ConfirmTimeout));
                    }
                }
                Conn::Confirmed(client) => {
                    if client.ping_id != 0 && now >= client.last_pinged + self.config.ping_timeout {
                        to_close.push((id, CloseReason::PingTimeout));
                    } else if now >= client.last_pinged + self.config.ping_interval {
                        let ping_id = self.rng.next_u64().max(1);
                        client.ping_id = ping_id;
                        client.last_pinged = now;
                        pings.push((id, ping_id));
                    }
                }
            }
        }
        // Ids are unique and ordered by age: handle them in a fixed order.
        to_close.sort_unstable_by_key(|(id, _)| *id);
        pings.sort_unstable_by_key(|(id, _)| *id);
        for (id, reason) in to_close {
            self.close(id, reason);
        }
        for (id, ping_id) in pings {
            self.send(id, TcpPacket::Ping(Ping::new(ping_id)));
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<RelayOutput> {
        self.outputs.pop_front()
    }

    /// The next onion request for the onion relay: from which connection,
    /// and the request.
    pub fn poll_onion_request(&mut self) -> Option<(ClientId, TcpOnionRequest)> {
        self.onion_requests.pop_front()
    }
}

/// The 32-bit connection number the onion relay's return block carries for
/// `client` (the block also carries the whole id).
pub fn onion_conn_id(client: ClientId) -> u32 {
    (client & 0xffff_ffff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::test_epoch;
    use crate::wire::tcp::{OobSend, RoutingRequest};

    fn pk(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn server() -> RelayServer {
        RelayServer::new(pk(0xee), RelayServerConfig::default(), [7; 32])
    }

    /// A distinct address per `n`.
    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + n))
    }

    fn connect(s: &mut RelayServer, now: Instant, key: u8) -> ClientId {
        let id = s.accept(now, ip(u32::from(key))).unwrap();
        assert!(s.confirm(now, id, pk(key)));
        id
    }

    fn outputs(s: &mut RelayServer) -> Vec<RelayOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn sent(client: ClientId, packet: TcpPacket) -> RelayOutput {
        RelayOutput::Send { client, packet }
    }

    fn cid(slot: usize) -> ConnectionId {
        ConnectionId::from_slot(slot).unwrap()
    }

    fn route(s: &mut RelayServer, now: Instant, client: ClientId, key: u8) {
        s.handle_packet(now, client, TcpPacket::RoutingRequest(RoutingRequest::new(pk(key))));
    }

    fn data(slot: usize, payload: &'static [u8]) -> TcpPacket {
        TcpPacket::Data(Data::new(cid(slot), Bytes::from_static(payload)).unwrap())
    }

    #[test]
    fn two_clients_link_and_exchange_data() {
        let now = test_epoch();
        let mut s = server();
        let a = connect(&mut s, now, 1);
        let b = connect(&mut s, now, 2);
        // A takes a slot for something else first, so the two ends differ.
        route(&mut s, now, a, 9);
        route(&mut s, now, a, 2);
        assert_eq!(
            outputs(&mut s),
            [
                sent(a, TcpPacket::RoutingResponse(RoutingResponse::new(Some(cid(0)), pk(9)))),
                sent(a, TcpPacket::RoutingResponse(RoutingResponse::new(Some(cid(1)), pk(2)))),
            ]
        );
        // Data before B asked: dropped quietly.
        s.handle_packet(now, a, data(1, b"early"));
        assert!(outputs(&mut s).is_empty());
        assert_eq!(s.stats().data_unlinked, 1);

        route(&mut s, now, b, 1);
        assert_eq!(
            outputs(&mut s),
            [
                sent(b, TcpPacket::RoutingResponse(RoutingResponse::new(Some(cid(0)), pk(1)))),
                sent(b, TcpPacket::ConnectNotification(ConnectNotification::new(cid(0)))),
                sent(a, TcpPacket::ConnectNotification(ConnectNotification::new(cid(1)))),
            ]
        );
        s.handle_packet(now, a, data(1, b"to b"));
        s.handle_packet(now, b, data(0, b"to a"));
        assert_eq!(outputs(&mut s), [sent(b, data(0, b"to b")), sent(a, data(1, b"to a"))]);
        assert_eq!(s.stats().data_routed, 2);

        // Asking again answers with the same slot and changes nothing.
        route(&mut s, now, a, 2);
        assert_eq!(outputs(&mut s), [sent(a, TcpPacket::RoutingResponse(RoutingResponse::new(Some(cid(1)), pk(2))))]);

        // A drops the link: B is told, and its slot waits for A again.
        s.handle_packet(now, a, TcpPacket::DisconnectNotification(DisconnectNotification::new(cid(1))));
        assert_eq!(outputs(&mut s), [sent(b, TcpPacket::DisconnectNotification(DisconnectNotification::new(cid(0))))]);
        s.handle_packet(now, b, data(0, b"nobody"));
        assert!(outputs(&mut s).is_empty());
        // A asks again: linked again through the freed slot 1.
        route(&mut s, now, a, 2);
        let out = outputs(&mut s);
        assert!(out.contains(&sent(b, TcpPacket::ConnectNotification(ConnectNotification::new(cid(0))))), "{out:?}");

        // A goes away: B is told.
        s.handle_closed(a, CloseReason::Gone);
        assert_eq!(outputs(&mut s), [sent(b, TcpPacket::DisconnectNotification(DisconnectNotification::new(cid(0))))]);
        assert_eq!(s.clients(), 1);
        assert_eq!(s.client_by_key(&pk(1)), None);
    }

    #[test]
    fn routing_to_ourselves_is_refused() {
        let now = test_epoch();
        let mut s = server();
        let a = connect(&mut s, now, 1);
        route(&mut s, now, a, 1);
        // The relay's own key is a client like any other (a node that is
        // its own relay's client, as c-toxcore's with a TCP server).
        route(&mut s, now, a, 0xee);
        assert_eq!(
            outputs(&mut s),
            [
                sent(a, TcpPacket::RoutingResponse(RoutingResponse::new(None, pk(1)))),
                sent(a, TcpPacket::RoutingResponse(RoutingResponse::new(Some(cid(0)), pk(0xee)))),
            ]
        );
        assert_eq!(s.stats().routing_refused, 1);
    }

    #[test]
    fn slots_run_out_at_240_and_memory_stays_bounded() {
        let now = test_epoch();
        let mut s = server();
        let a = connect(&mut s, now, 1);
        for i in 0..2000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            key[31] = 0xaa;
            s.handle_packet(now, a, TcpPacket::RoutingRequest(RoutingRequest::new(PublicKey::from_bytes(key))));
            let out = outputs(&mut s);
            let RelayOutput::Send { packet: TcpPacket::RoutingResponse(r), .. } = &out[0] else { panic!("{out:?}") };
            assert_eq!(r.connection().is_some(), i < 240, "request {i}");
        }
        assert_eq!(s.stats().routing_refused, 2000 - 240);
        let Some(Conn::Confirmed(client)) = s.conns.get(&a) else { panic!() };
        assert_eq!(client.links.len(), 240);
    }

    #[test]
    fn protocol_violations_close_the_connection() {
        let now = test_epoch();
        let pong0 = TcpPacket::Pong(Pong::new(0));
        let free_slot = TcpPacket::DisconnectNotification(DisconnectNotification::new(cid(5)));
        let from_relay = TcpPacket::OobRecv(OobRecv::new(pk(3), Bytes::from_static(b"x")).unwrap());
        let response = TcpPacket::OnionResponse(TcpOnionResponse::new(Bytes::from_static(&[0x84])).unwrap());
        for (packet, why) in [
            (data(3, b"x"), "data on a slot never asked for"),
            (pong0, "a pong with id 0"),
            (free_slot, "a disconnect for a free slot"),
            (from_relay, "an OOB receive from a client"),
            (response, "an onion response from a client"),
        ] {
            let mut s = server();
            let a = connect(&mut s, now, 1);
            s.handle_packet(now, a, packet);
            assert_eq!(outputs(&mut s), [RelayOutput::Close { client: a, reason: CloseReason::Protocol(why) }]);
            assert_eq!(s.connections(), 0);
            assert_eq!(s.stats().protocol_errors, 1);
            // Later input for the closed connection is ignored.
            route(&mut s, now, a, 2);
            assert!(outputs(&mut s).is_empty());
        }
        let mut s = server();
        let a = connect(&mut s, now, 1);
        s.handle_malformed(a, "a packet that does not decode");
        assert_eq!(s.stats().protocol_errors, 1);
    }

    #[test]
    fn pings_every_30_s_and_closes_the_silent() {
        let t0 = test_epoch();
        let mut s = server();
        let a = connect(&mut s, t0, 1);
        let b = connect(&mut s, t0, 2);
        // A client's ping is answered.
        s.handle_packet(t0, a, TcpPacket::Ping(Ping::new(77)));
        assert_eq!(outputs(&mut s), [sent(a, TcpPacket::Pong(Pong::new(77)))]);

        s.handle_timeout(t0 + Duration::from_secs(29));
        assert!(outputs(&mut s).is_empty());
        let t30 = t0 + Duration::from_secs(30);
        s.handle_timeout(t30);
        let out = outputs(&mut s);
        assert_eq!(out.len(), 2);
        let ping_of = |client| {
            out.iter()
                .find_map(|o| match o {
                    RelayOutput::Send { client: c, packet: TcpPacket::Ping(p) } if *c == client => Some(p.ping_id),
                    _ => None,
                })
                .unwrap()
        };
        let a_ping = ping_of(a);
        assert_ne!(a_ping, 0);
        // A answers (a wrong id first changes nothing), B does not.
        s.handle_packet(t30, a, TcpPacket::Pong(Pong::new(a_ping ^ 1)));
        s.handle_packet(t30, a, TcpPacket::Pong(Pong::new(a_ping)));
        s.handle_timeout(t30 + Duration::from_secs(10));
        assert_eq!(outputs(&mut s), [RelayOutput::Close { client: b, reason: CloseReason::PingTimeout }]);
        assert_eq!(s.stats().ping_timeouts, 1);
        assert_eq!(s.clients(), 1);
        // A is pinged again 30 s after the last ping.
        s.handle_timeout(t30 + Duration::from_secs(30));
        assert!(
            matches!(outputs(&mut s)[..], [RelayOutput::Send { client, packet: TcpPacket::Ping(_) }] if client == a)
        );
    }

    #[test]
    fn unconfirmed_connections_time_out_and_limits_hold() {
        let t0 = test_epoch();
        let config = RelayServerConfig { max_clients: 3, max_pending: 2, ..RelayServerConfig::default() };
        let mut s = RelayServer::new(pk(0xee), config, [1; 32]);
        let p1 = s.accept(t0, ip(1)).unwrap();
        let p2 = s.accept(t0, ip(2)).unwrap();
        assert!(s.confirm(t0, p1, pk(1)));
        let p3 = s.accept(t0, ip(3)).unwrap();
        assert_eq!(s.accept(t0, ip(4)), None, "too many connections");
        assert_eq!(s.stats().refused_full, 1);
        assert_eq!(s.poll_timeout(), Some(t0 + TICK));
        s.handle_timeout(t0 + CONFIRM_TIMEOUT);
        let out = outputs(&mut s);
        assert_eq!(
            out,
            [
                RelayOutput::Close { client: p2, reason: CloseReason::ConfirmTimeout },
                RelayOutput::Close { client: p3, reason: CloseReason::ConfirmTimeout },
            ]
        );
        // Too late to confirm.
        assert!(!s.confirm(t0 + CONFIRM_TIMEOUT, p2, pk(2)));
        assert_eq!(s.stats().confirm_timeouts, 2);
        assert_eq!((s.connections(), s.clients()), (1, 1));
        // Failed handshakes and bad frames are counted.
        let p4 = s.accept(t0, ip(4)).unwrap();
        s.handle_closed(p4, CloseReason::BadHandshake);
        let p5 = s.accept(t0, ip(5)).unwrap();
        assert!(s.confirm(t0, p5, pk(5)));
        s.handle_closed(p5, CloseReason::Undecryptable);
        s.handle_closed(p5, CloseReason::Undecryptable);
        assert_eq!((s.stats().bad_handshakes, s.stats().undecryptable), (1, 1));
    }

    #[test]
    fn a_full_handshake_queue_makes_room_by_closing_its_oldest() {
        let t0 = test_epoch();
        let mut s = server();
        // An attacker fills the handshake queue from many addresses.
        let flood: Vec<ClientId> = (0..256u32).map(|i| s.accept(t0, ip(i)).unwrap()).collect();
        assert!(outputs(&mut s).is_empty());
        // Someone else still gets in; the oldest half-open one goes.
        let honest = s.accept(t0, "198.51.100.7".parse().unwrap()).expect("not locked out");
        assert_eq!(outputs(&mut s), [RelayOutput::Close { client: flood[0], reason: CloseReason::Evicted }]);
        assert!(s.confirm(t0, honest, pk(7)));
        assert!(!s.confirm(t0, flood[0], pk(8)), "the evicted one is gone");
        assert_eq!((s.stats().evicted, s.stats().refused_full), (1, 0));
        assert_eq!((s.connections(), s.clients()), (256, 1));
    }

    #[test]
    fn one_source_gets_a_bounded_share() {
        let t0 = test_epoch();
        let mut s = server();
        let from: IpAddr = "203.0.113.9".parse().unwrap();
        let mut open = Vec::new();
        for _ in 0..MAX_PENDING_PER_SOURCE {
            open.push(s.accept(t0, from).unwrap());
        }
        assert_eq!(s.accept(t0, from), None, "too many handshakes from one address");
        // An IPv4-mapped IPv6 address is the same source.
        assert_eq!(s.accept(t0, "::ffff:203.0.113.9".parse().unwrap()), None);
        // Confirmed ones count toward the whole share only.
        for (i, id) in open.iter().enumerate() {
            assert!(s.confirm(t0, *id, pk(i as u8)));
        }
        for i in MAX_PENDING_PER_SOURCE..MAX_PER_SOURCE {
            let id = s.accept(t0, from).unwrap();
            assert!(s.confirm(t0, id, pk(i as u8)));
        }
        assert_eq!(s.accept(t0, from), None, "too many connections from one address");
        assert_eq!(s.stats().refused_source, 3);
        // Others are not affected; one that leaves frees a place.
        assert!(s.accept(t0, "203.0.113.10".parse().unwrap()).is_some());
        s.handle_closed(open[0], CloseReason::Gone);
        assert!(s.accept(t0, from).is_some());
        // An IPv6 /64 is one source.
        for i in 0..MAX_PENDING_PER_SOURCE {
            assert!(s.accept(t0, format!("2001:db8:1:2::{i:x}").parse().unwrap()).is_some());
        }
        assert_eq!(s.accept(t0, "2001:db8:1:2:ffff::1".parse().unwrap()), None);
        assert!(s.accept(t0, "2001:db8:1:3::1".parse().unwrap()).is_some());
        // This host's own clients are not capped.
        for _ in 0..MAX_PER_SOURCE + 1 {
            assert!(s.accept(t0, "127.0.0.1".parse().unwrap()).is_some());
        }
    }

    #[test]
    fn a_second_connection_with_the_same_key_replaces_the_first() {
        let now = test_epoch();
        let mut s = server();
        let a = connect(&mut s, now, 1);
        let b = connect(&mut s, now, 2);
        route(&mut s, now, a, 2);
        route(&mut s, now, b, 1);
        outputs(&mut s);
        let a2 = connect(&mut s, now, 1);
        assert_eq!(
            outputs(&mut s),
            [
                sent(b, TcpPacket::DisconnectNotification(DisconnectNotification::new(cid(0)))),
                RelayOutput::Close { client: a, reason: CloseReason::Replaced },
            ]
        );
        assert_eq!(s.client_by_key(&pk(1)), Some(a2));
        // The old connection's late close does not touch the new one.
        s.handle_closed(a, CloseReason::Gone);
        assert_eq!(s.client_by_key(&pk(1)), Some(a2));
        route(&mut s, now, a2, 2);
        let out = outputs(&mut s);
        assert!(out.contains(&sent(b, TcpPacket::ConnectNotification(ConnectNotification::new(cid(0))))), "{out:?}");
    }

    #[test]
    fn out_of_band_and_onion() {
        let now = test_epoch();
        let mut s = server();
        let a = connect(&mut s, now, 1);
        let b = connect(&mut s, now, 2);
        let oob = |to| TcpPacket::OobSend(OobSend::new(pk(to), Bytes::from_static(b"cookie")).unwrap());
        s.handle_packet(now, a, oob(2));
        s.handle_packet(now, a, oob(3));
        assert_eq!(
            outputs(&mut s),
            [sent(b, TcpPacket::OobRecv(OobRecv::new(pk(1), Bytes::from_static(b"cookie")).unwrap()))]
        );
        assert_eq!((s.stats().oob_routed, s.stats().oob_unknown), (1, 1));

        let body = Bytes::from(vec![0u8; TcpOnionRequest::MIN_BODY_LEN]);
        s.handle_packet(now, a, TcpPacket::OnionRequest(TcpOnionRequest::from_body(body.clone()).unwrap()));
        let (from, request) = s.poll_onion_request().unwrap();
        assert_eq!((from, request.body()), (a, &body));
        s.handle_onion_response(a, onion_conn_id(a), Bytes::from_static(&[0x84, 1]));
        assert_eq!(
            outputs(&mut s),
            [sent(a, TcpPacket::OnionResponse(TcpOnionResponse::new(Bytes::from_static(&[0x84, 1])).unwrap()))]
        );
        // For a connection that is gone, or with a wrong check: lost.
        s.handle_onion_response(a, onion_conn_id(a) ^ 1, Bytes::from_static(&[0x84]));
        s.handle_onion_response(99, onion_conn_id(99), Bytes::from_static(&[0x84]));
        assert!(outputs(&mut s).is_empty());
        assert_eq!(s.stats().onion_responses_lost, 2);
    }
}
