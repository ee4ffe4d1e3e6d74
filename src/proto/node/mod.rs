//! A Tox node: the protocol layers composed behind one sans-IO interface.
//!
//! The node owns the DHT, the onion relay and announce store (what it does
//! for others), the onion client and net_crypto (what it does for itself),
//! and the friend layer that ties them together ([`friends`]). Each UDP
//! datagram goes to the layer its first byte names; layer events are routed
//! between layers here; the owner sees [`NodeEvent`]s. The driver and the
//! simulator only ever see this type.
//!
//! TCP relays, the client's side ([`RelayConnections`]): the node keeps
//! connections to its own relays (`add_tcp_relay`: the user's, the
//! bootstrap nodes') and to the relays friends name (in their DHT-PK
//! announcements and SHARE_RELAYS packets), routes each friend's DHT key on
//! them, and gives net_crypto the relay path for friends reachable there.
//! Onion requests start at a relay (TCP packet 8) while UDP is off or the
//! DHT has no good node. We announce up to 2 of our connected relays in
//! DHT-PK and share up to 3 with each friend that comes online (and every
//! 5 minutes). With UDP off ([`NodeConfig::udp`] false) the node sends no
//! datagram at all.
//!
//! Hole punching between tuntox peers ([`punch`](super::punch)) may open
//! more UDP sockets: the node asks the driver for them
//! ([`Node::poll_socket_command`]), takes datagrams from each
//! ([`Node::handle_udp_on`]) and says which socket each of its datagrams
//! leaves from ([`Node::poll_datagram`]): a friend's address reached
//! through a punching socket keeps going through it. Only net_crypto and
//! DHT packets are taken on those sockets.

pub mod friends;
pub mod requests;

use std::collections::VecDeque;

use foldhash::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use self::friends::{Friend, FriendEvent, Path, PendingRequest, Status};
use self::requests::SeenRequests;
use super::dht::{Dht, DhtConfig, DhtEvent, Transmit};
use super::net_crypto::path::PathKind;
use super::net_crypto::session::{DataCipher, SendError};
use super::net_crypto::{NetCrypto, NetCryptoEvent, TcpSource};
use super::onion::announce::AnnounceStore;
use super::onion::client::{OnionClient, OnionEvent};
use super::onion::relay::OnionRelay;
use super::punch::{FriendView, PunchStats, Puncher, SocketCommand, SocketId};
use super::relay::channel::SecureChannel;
use super::relay::client::RelayId;
use super::relay::connections::{RelayCommand, RelayConnections, RelayEvent};
use super::relay::server::{ClientId, CloseReason, RelayOutput, RelayServer, RelayServerConfig, onion_conn_id};
use crate::crypto::{KeyPair, PublicKey};
use crate::wire::crypto_data::packet_id;
use crate::wire::dht_pk_announce::DHT_PK_KIND;
use crate::wire::friend_request::{FriendRequest, MAX_SENT_MESSAGE_LEN, MessageLenError};
use crate::wire::packed_node::{PackedNode, Protocol};
use crate::wire::punch::{PUNCH_ID, PUNCH_LOSSY_ID, PunchMessage};
use crate::wire::tcp::{ServerHandshake, TcpPacket};
use crate::wire::tox_id::{NoSpam, ToxId};

/// How often the friend layer's periodic work runs.
pub const FRIEND_TICK: Duration = Duration::from_millis(500);
/// How often hole punching looks at its friends (besides its own timers).
pub const PUNCH_TICK: Duration = Duration::from_millis(250);

/// A datagram for a socket other than the main one, or with an IP TTL of
/// its own (see [`Node::poll_datagram`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The socket it leaves from.
    pub socket: SocketId,
    /// Its IP TTL, when not the socket's default.
    pub ttl: Option<u32>,
    /// Where to.
    pub dst: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
}

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
    /// Our nospam: friend requests must carry it.
    pub nospam: NoSpam,
    /// Run a TCP relay server with these limits (its key is our DHT key);
    /// the driver brings the connections.
    pub tcp_server: Option<RelayServerConfig>,
    /// Use UDP. Without it the node reaches the network through TCP relays
    /// only and [`Node::poll_transmit`] yields nothing.
    pub udp: bool,
    /// Offer AEGIS-256 data packets to friends and seal with them toward
    /// friends that offer them too (tuntox peers; c-toxcore ignores the
    /// offer). On by default where the CPU has AES instructions.
    pub aegis: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            dht: DhtConfig::default(),
            onion_client: true,
            unix_time_at_start: 0,
            nospam: NoSpam::default(),
            tcp_server: None,
            udp: true,
            aegis: crate::crypto::aes_hardware(),
        }
    }
}

/// What a node tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// From the DHT.
    Dht(DhtEvent),
    /// From the onion client.
    Onion(OnionEvent),
    /// About friends: requests, connections, data.
    Friend(FriendEvent),
}

/// A Tox node.
#[derive(Debug)]
pub struct Node {
    real_keys: KeyPair,
    nospam: NoSpam,
    dht: Dht,
    relay: OnionRelay,
    tcp_server: Option<RelayServer>,
    announce: AnnounceStore,
    onion: OnionClient,
    net_crypto: NetCrypto,
    friends: HashMap<PublicKey, Friend>,
    requests_seen: SeenRequests,
    onion_client: bool,
    unix_base: u64,
    start: Option<Instant>,
    next_friend_tick: Option<Instant>,
    relays: RelayConnections,
    udp: bool,
    punch: Puncher,
    next_punch_tick: Option<Instant>,
    /// Friends' addresses reached through a punching socket.
    routes: HashMap<SocketAddr, SocketId>,
    datagrams: VecDeque<Datagram>,
    /// The socket the datagram being handled came in on.
    current_socket: SocketId,
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
        let tcp_server = config.tcp_server.clone();
        let udp = config.udp;
        let dht_pk = *dht_keys.public();
        let relay_keys = dht_keys.clone();
        let mut onion = OnionClient::new(real_keys.clone(), dht_keys.clone(), sub_seed());
        for node in bootstrap {
            onion.add_bootstrap_node(node);
        }
        let mut node = Self {
            dht: Dht::new(dht_keys.clone(), config.dht, sub_seed()),
            relay: OnionRelay::new(dht_keys.clone(), sub_seed()),
            announce: AnnounceStore::new(dht_keys.clone(), sub_seed()),
            net_crypto: NetCrypto::new(real_keys.clone(), dht_keys, sub_seed()),
            onion,
            real_keys,
            nospam: config.nospam,
            friends: HashMap::default(),
            requests_seen: SeenRequests::default(),
            onion_client,
            unix_base: config.unix_time_at_start,
            start: None,
            next_friend_tick: None,
            events: VecDeque::new(),
            tcp_server: None,
            relays: RelayConnections::new(relay_keys.clone(), [0; 32]),
            udp,
            punch: Puncher::new(PublicKey::from_bytes([0; 32]), udp, [0; 32]),
            next_punch_tick: None,
            routes: HashMap::default(),
            datagrams: VecDeque::new(),
            current_socket: SocketId::MAIN,
        };
        // Drawn last, so the other layers' seeds do not depend on them.
        node.tcp_server = tcp_server.map(|c| RelayServer::new(dht_pk, c, sub_seed()));
        node.relays = RelayConnections::new(relay_keys, sub_seed());
        node.punch = Puncher::new(*node.real_keys.public(), udp, sub_seed());
        node.net_crypto.set_aegis(config.aegis);
        node
    }

    /// Our long-term key pair.
    pub fn real_keys(&self) -> &KeyPair {
        &self.real_keys
    }

    /// Our Tox ID.
    pub fn tox_id(&self) -> ToxId {
        ToxId::new(*self.real_keys.public(), self.nospam)
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

    /// The onion client, mutable.
    pub fn onion_mut(&mut self) -> &mut OnionClient {
        &mut self.onion
    }

    /// net_crypto (sessions and their counters).
    pub fn net_crypto(&self) -> &NetCrypto {
        &self.net_crypto
    }

    /// The onion relay.
    pub fn relay(&self) -> &OnionRelay {
        &self.relay
    }

    /// The TCP relay server, when the node runs one.
    pub fn tcp_server(&self) -> Option<&RelayServer> {
        self.tcp_server.as_ref()
    }

    /// The announce store.
    pub fn announce_store(&self) -> &AnnounceStore {
        &self.announce
    }

    /// Joins the network through `node`: asks it for nodes and uses it for
    /// onion paths until the DHT provides others.
    pub fn bootstrap(&mut self, now: Instant, node: PackedNode) {
        self.start.get_or_insert(now);
        if self.udp {
            self.dht.bootstrap(now, node);
        }
        self.onion.add_bootstrap_node(node);
    }

    /// Whether the node uses UDP.
    pub fn udp_enabled(&self) -> bool {
        self.udp
    }

    /// Adds one of our own TCP relays (the user's, a bootstrap node's TCP
    /// port, our own relay server): the node stays connected to up to 3 of
    /// them, announces them and shares them with friends.
    pub fn add_tcp_relay(&mut self, now: Instant, relay: PackedNode) {
        self.start.get_or_insert(now);
        self.relays.add_relay(now, relay, true);
        self.pump_relays(now);
    }

    /// Where a router port mapping makes our UDP port reachable (`None`
    /// when none is held): announced to friends in our DHT-PK packets (see
    /// [`OnionClient::set_external_addr`]).
    pub fn set_external_addr(&mut self, addr: Option<SocketAddr>) {
        self.onion.set_external_addr(addr);
    }

    /// The relay connections (state and counters).
    pub fn tcp_relays(&self) -> &RelayConnections {
        &self.relays
    }

    // ---- friends ------------------------------------------------------------

    /// Adds a friend by key and connects to it whenever it is online (its
    /// requests are accepted; ours are not sent).
    pub fn add_friend(&mut self, real_pk: PublicKey) {
        if real_pk == *self.real_keys.public() {
            return;
        }
        self.friends.entry(real_pk).or_insert_with(|| Friend::new(real_pk));
        self.net_crypto.set_accept(real_pk, true);
        self.onion.add_friend(real_pk);
    }

    /// Adds a friend and sends it a friend request with `message` until it
    /// connects (every 5 s, doubling), and again whenever it has been away
    /// for a while (a server that forgot us takes us back).
    /// The message is 1 to [`MAX_SENT_MESSAGE_LEN`] bytes.
    pub fn add_friend_with_request(&mut self, now: Instant, id: &ToxId, message: Bytes) -> Result<(), MessageLenError> {
        if message.len() > MAX_SENT_MESSAGE_LEN {
            return Err(MessageLenError(message.len()));
        }
        let request = FriendRequest::new(id.nospam(), message)?;
        let real_pk = *id.public_key();
        self.add_friend(real_pk);
        if let Some(friend) = self.friends.get_mut(&real_pk) {
            friend.request = Some(PendingRequest { request, next: now, interval: friends::REQUEST_RESEND, steady: 0 });
        }
        self.next_friend_tick = Some(now);
        Ok(())
    }

    /// Removes a friend, closing its session.
    pub fn remove_friend(&mut self, real_pk: &PublicKey) {
        if let Some(friend) = self.friends.remove(real_pk) {
            if let Some(dht_pk) = friend.dht_pk {
                self.dht.remove_search(&dht_pk);
                if let Some(now) = self.start {
                    self.relays.remove_peer(now, &dht_pk);
                }
            }
            self.net_crypto.kill(real_pk);
            self.net_crypto.set_accept(*real_pk, false);
            self.net_crypto.set_roaming(*real_pk, false);
            self.punch.closed(real_pk);
            self.onion.remove_friend(real_pk);
        }
        // Its next request is news again.
        self.requests_seen.remove(real_pk);
    }

    /// Says goodbye before the node stops: every friend's session ends
    /// with net_crypto's kill packet (over UDP or the friend's relays), so
    /// friends see us go at once instead of after their timeout. The
    /// friends are removed; the owner stops the node after sending what
    /// this queued. Returns how many friends were online.
    pub fn goodbye(&mut self, now: Instant) -> usize {
        let keys: Vec<PublicKey> = self.friends.keys().copied().collect();
        let mut told = 0;
        for key in keys {
            if self.net_crypto.is_established(&key) {
                told += 1;
            }
            self.remove_friend(&key);
        }
        self.pump_relays(now);
        told
    }

    /// Marks a friend as used by something of ours (tunnels open, a VPN
    /// session) or not: while used, its silence counts as gone after
    /// [`friends::IN_USE_TIMEOUT`] instead of [`friends::CONNECTION_TIMEOUT`].
    pub fn set_friend_in_use(&mut self, real_pk: &PublicKey, in_use: bool) {
        if let Some(friend) = self.friends.get_mut(real_pk) {
            friend.in_use = in_use;
        }
    }

    /// A friend's state.
    pub fn friend(&self, real_pk: &PublicKey) -> Option<&Friend> {
        self.friends.get(real_pk)
    }

    /// Our friends' keys.
    pub fn friend_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.friends.keys()
    }

    /// Sends a custom lossless packet (`[id][data]`, id 160-191) to an
    /// online friend. `Full` means: wait for room (acknowledgements).
    pub fn send_lossless(&mut self, now: Instant, real_pk: &PublicKey, data: Bytes) -> Result<u32, SendError> {
        if !data.first().is_some_and(|id| packet_id::LOSSLESS_CUSTOM.contains(id)) {
            return Err(SendError::Invalid);
        }
        if self.friends.get(real_pk).is_none_or(|f| f.status != Status::Online) {
            return Err(SendError::NotConnected);
        }
        // Not a substitute for ALIVE: c-toxcore's friend layer counts only
        // ALIVE packets towards its 32 s timeout, so a friend we keep
        // sending data to still gets one every 8 s (see `tick_friends`).
        self.net_crypto.send_lossless(now, real_pk, data)
    }

    /// Sends a custom lossy packet (`[id][data]`, id 200-254) to an online
    /// friend.
    pub fn send_lossy(&mut self, now: Instant, real_pk: &PublicKey, data: Bytes) -> Result<(), SendError> {
        if !data.first().is_some_and(|id| packet_id::LOSSY_CUSTOM.contains(id)) {
            return Err(SendError::Invalid);
        }
        if self.friends.get(real_pk).is_none_or(|f| f.status != Status::Online) {
            return Err(SendError::NotConnected);
        }
        self.net_crypto.send_lossy(now, real_pk, data)
    }

    /// Holds (`true`) or releases a friend's received lossless packets:
    /// while held they are not delivered nor acknowledged, so the friend's
    /// sender waits (backpressure for one friend, not the whole node).
    /// Releasing delivers what was held, in order.
    pub fn set_receive_paused(&mut self, now: Instant, real_pk: &PublicKey, paused: bool) {
        self.net_crypto.set_receive_paused(now, real_pk, paused);
        self.pump_events(now);
    }

    /// Lossless packets that can be queued for a friend now.
    pub fn send_room(&self, real_pk: &PublicKey) -> usize {
        self.net_crypto.send_room(real_pk)
    }

    /// How a friend is reached, if it is online.
    pub fn friend_path(&self, real_pk: &PublicKey, now: Instant) -> Option<Path> {
        let friend = self.friends.get(real_pk).filter(|f| f.status == Status::Online)?;
        Some(self.path_of(&friend.real_pk, now))
    }

    /// Why a friend has no direct UDP path, or where hole punching toward
    /// it stands, for `tuntox status`.
    pub fn direct_note(&self, real_pk: &PublicKey, now: Instant) -> Option<String> {
        let friend = self.friends.get(real_pk)?;
        if !self.udp {
            return Some("UDP is off".to_owned());
        }
        if friend.dht_pk.is_none() {
            return Some("its DHT key is not known yet".to_owned());
        }
        self.punch.note(real_pk, now)
    }

    /// Hole punching's counters.
    pub fn punch_stats(&self) -> PunchStats {
        self.punch.stats()
    }

    /// Where a router's port mapping makes our main socket reachable: a
    /// candidate address for hole punching.
    pub fn set_punch_mapped_addr(&mut self, addr: Option<SocketAddr>) {
        self.punch.set_mapped(addr);
    }

    /// How long an online friend's session has been on its current path
    /// (since it last moved between direct UDP and a relay, or since its
    /// first packet when it never did).
    pub fn friend_path_age(&self, real_pk: &PublicKey, now: Instant) -> Option<Duration> {
        self.friends.get(real_pk).filter(|f| f.status == Status::Online)?;
        let (_, since) = self.net_crypto.session(real_pk)?.current_path()?;
        Some(now.saturating_duration_since(since))
    }

    /// The cipher an online friend's data packets are sealed with.
    pub fn friend_cipher(&self, real_pk: &PublicKey) -> Option<DataCipher> {
        self.friends.get(real_pk).filter(|f| f.status == Status::Online)?;
        self.net_crypto.session(real_pk).map(|s| s.cipher())
    }

    /// The path a session's packets take now: UDP while a UDP packet came
    /// recently or no relay reaches the friend.
    fn path_of(&self, real_pk: &PublicKey, now: Instant) -> Path {
        let session = self.net_crypto.session(real_pk);
        if let Some((path, _)) = session.and_then(|s| s.current_path()) {
            return match path {
                PathKind::Udp => Path::Udp,
                PathKind::Tcp => Path::Tcp,
            };
        }
        let direct = session.is_some_and(|s| s.direct(now));
        if direct || !self.net_crypto.tcp_available(real_pk) { Path::Udp } else { Path::Tcp }
    }

    // ---- the sans-IO interface ----------------------------------------------

    /// The wall-clock time at `now`, in Unix seconds.
    fn unix_secs(&mut self, now: Instant) -> u64 {
        let start = *self.start.get_or_insert(now);
        self.unix_base + (now - start).as_secs()
    }

    /// A UDP datagram arrived on the main socket.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        self.handle_udp_on(now, SocketId::MAIN, from, data);
    }

    /// A UDP datagram arrived on `socket` (one the node asked for, or the
    /// main one).
    pub fn handle_udp_on(&mut self, now: Instant, socket: SocketId, from: SocketAddr, data: Bytes) {
        self.start.get_or_insert(now);
        let from = super::addr::normalize(from);
        self.current_socket = socket;
        let main = socket == SocketId::MAIN;
        match data.first() {
            Some(0x18..=0x1c) => {
                let known = self.net_crypto.peer_at(&from);
                self.net_crypto.handle_udp(now, from, data);
                if known.is_none()
                    && let Some(peer) = self.net_crypto.peer_at(&from)
                {
                    // A new address of a friend's (a handshake, or a
                    // roaming session's packet): answer it from here.
                    self.set_route(from, socket);
                    self.punch.learned(now, peer, socket, from);
                }
            }
            Some(0x80..=0x82 | 0x8c..=0x8e) if main => self.relay.handle_packet(now, from, data),
            Some(0x83 | 0x85 | 0x87) if main => self.announce.handle_packet(now, from, data, &self.dht),
            Some(0x84) if main => self.onion.handle_announce_response(now, from, data),
            Some(0x86) if main => self.onion.handle_data_response(now, data),
            Some(0x00..=0x04) => self.dht.handle_packet(now, from, data),
            Some(_) if main => self.dht.handle_packet(now, from, data),
            _ => {}
        }
        while let Some(contact) = self.dht.poll_contact() {
            let friend = self.friends.values().find(|f| f.dht_pk == Some(contact.key)).map(|f| f.real_pk);
            if let Some(real_pk) = friend {
                self.punch.heard(now, real_pk, socket, contact.from, contact.ping_id);
            }
        }
        self.current_socket = SocketId::MAIN;
        self.pump_events(now);
        self.pump_tcp(now);
        self.pump_relays(now);
    }

    /// Datagrams to `addr` leave from `socket` from now on.
    fn set_route(&mut self, addr: SocketAddr, socket: SocketId) {
        if socket == SocketId::MAIN {
            self.routes.remove(&addr);
        } else {
            self.routes.insert(addr, socket);
        }
    }

    /// The next socket for the driver to open or close.
    pub fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        let command = self.punch.poll_socket_command()?;
        if let SocketCommand::Close(id) = command {
            self.routes.retain(|_, s| *s != id);
        }
        Some(command)
    }

    /// The driver opened socket `id` at `local` (`None`: it could not).
    pub fn socket_opened(&mut self, now: Instant, id: SocketId, local: Option<SocketAddr>) {
        self.punch.socket_opened(now, id, local.map(|a| a.port()));
        self.pump_events(now);
        self.pump_relays(now);
    }

    /// Hole punching's periodic work and what it asks for.
    fn tick_punch(&mut self, now: Instant) {
        let punch_due = self.punch.poll_timeout().is_some_and(|t| now >= t);
        if !punch_due && self.next_punch_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_punch_tick = Some(now + PUNCH_TICK);
        self.punch.set_own_reports(self.dht.own_reports(now));
        let (friends, net_crypto, dht) = (&self.friends, &self.net_crypto, &self.dht);
        self.punch.handle_timeout(now, |real_pk| {
            let session = net_crypto.session(real_pk);
            FriendView {
                established: net_crypto.is_established(real_pk),
                direct: session.is_some_and(|s| s.direct(now)),
                session_addr: session.and_then(|s| s.addr),
                reported: friends
                    .get(real_pk)
                    .and_then(|f| f.dht_pk)
                    .map(|dht_pk| dht.reports_of(&dht_pk, now))
                    .unwrap_or_default(),
            }
        });
        self.pump_punch(now);
    }

    /// Sends what hole punching queued: messages through the friends'
    /// sessions, probes (DHT pings carrying the attempt's token), and moves
    /// sessions to the paths it found.
    fn pump_punch(&mut self, now: Instant) {
        while let Some((peer, message)) = self.punch.poll_message() {
            let _ = if message.lossy() {
                self.net_crypto.send_lossy(now, &peer, message.to_bytes())
            } else {
                self.net_crypto.send_control(now, &peer, message.to_bytes()).map(|_| ())
            };
        }
        while let Some(found) = self.punch.poll_path() {
            self.set_route(found.addr, found.socket);
            self.net_crypto.set_addr(&found.peer, found.addr);
            self.net_crypto.probe_udp(&found.peer);
        }
        while let Some(probe) = self.punch.poll_probe() {
            tracing::trace!(socket = ?probe.socket, dst = %probe.dst, ttl = ?probe.ttl, "hole punching: probe");
            let Some(dht_pk) = self.friends.get(&probe.peer).and_then(|f| f.dht_pk) else { continue };
            if let Some(payload) = self.dht.ping_packet(&dht_pk, probe.token) {
                self.datagrams.push_back(Datagram { socket: probe.socket, ttl: probe.ttl, dst: probe.dst, payload });
            }
        }
    }

    /// Time passed; runs whatever is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let unix = self.unix_secs(now);
        self.dht.handle_timeout(now);
        self.relays.handle_timeout(now);
        self.pump_relays(now);
        if self.onion_client {
            let use_tcp = !self.udp || self.dht.good_nodes(now) == 0;
            self.onion.set_tcp_relays(self.relays.onion_relays(), use_tcp);
            let relays = self.relays.connected(2);
            self.onion.handle_timeout(now, unix, &mut self.dht, &relays);
        }
        self.net_crypto.handle_timeout(now);
        if self.next_friend_tick.is_none_or(|t| now >= t) {
            self.next_friend_tick = Some(now + FRIEND_TICK);
            self.tick_friends(now);
        }
        if let Some(server) = &mut self.tcp_server {
            server.handle_timeout(now);
        }
        self.tick_punch(now);
        self.pump_events(now);
        self.pump_tcp(now);
        self.pump_relays(now);
    }

    // ---- TCP relays, the client's side ------------------------------------------

    /// The relay's handshake for connection `relay` arrived: the session
    /// to seal and open its frames with, or `None` (the connection is
    /// closed).
    pub fn relay_handshake(
        &mut self,
        now: Instant,
        relay: RelayId,
        response: &ServerHandshake,
    ) -> Option<SecureChannel> {
        let channel = self.relays.handle_handshake(now, relay, response);
        self.pump_relays(now);
        channel
    }

    /// A packet from relay connection `relay`, or what was wrong with it.
    pub fn relay_packet(&mut self, now: Instant, relay: RelayId, packet: Result<TcpPacket, &'static str>) {
        match packet {
            Ok(packet) => self.relays.handle_packet(now, relay, packet),
            Err(what) => self.relays.handle_malformed(now, relay, what),
        }
        self.pump_relays(now);
    }

    /// Relay connection `relay` ended or could not be made.
    pub fn relay_closed(&mut self, now: Instant, relay: RelayId) {
        self.relays.handle_closed(now, relay);
        self.pump_relays(now);
    }

    /// The driver dropped a packet for a slow relay connection.
    pub fn relay_dropped(&mut self) {
        self.relays.handle_dropped();
    }

    /// The next thing the relay connections need from the driver.
    pub fn poll_relay_command(&mut self, now: Instant) -> Option<RelayCommand> {
        if let Some(command) = self.relays.poll_command() {
            return Some(command);
        }
        self.pump_relays(now);
        self.relays.poll_command()
    }

    /// Moves packets between net_crypto, the onion client and the relay
    /// connections, until nothing moves.
    fn pump_relays(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(t) = self.net_crypto.poll_tcp_transmit() {
                moved = true;
                match t.via {
                    Some(relay) => self.relays.send_oob(now, relay, t.dht_pk, t.payload),
                    None => self.relays.send_to(now, &t.dht_pk, t.payload),
                };
            }
            while let Some((relay, request)) = self.onion.poll_tcp_transmit() {
                moved = true;
                self.relays.send_onion(now, &relay, request);
            }
            let mut changed = false;
            while let Some(event) = self.relays.poll_event() {
                moved = true;
                match event {
                    RelayEvent::Data { peer, data, .. } => {
                        if matches!(data.first(), Some(0x18..=0x1c)) {
                            self.net_crypto.handle_tcp(now, peer, TcpSource::Routed, data);
                        }
                    }
                    RelayEvent::Oob { relay, sender, data } => {
                        if matches!(data.first(), Some(0x18..=0x1c))
                            && let Some(real_pk) = self.net_crypto.handle_tcp(now, sender, TcpSource::Oob(relay), data)
                            && self.friends.contains_key(&real_pk)
                        {
                            // It reached us there: route it there.
                            self.relays.add_peer_relay(now, sender, relay);
                        }
                    }
                    RelayEvent::Onion { relay, data } => match data.first() {
                        Some(0x84) => self.onion.handle_announce_response(now, relay.addr, data),
                        Some(0x86) => self.onion.handle_data_response(now, data),
                        _ => {}
                    },
                    RelayEvent::Changed => changed = true,
                }
            }
            if changed {
                self.update_tcp_paths(now);
            }
            if !moved {
                break;
            }
            self.pump_events(now);
        }
    }

    /// Tells net_crypto which friends relays reach.
    fn update_tcp_paths(&mut self, now: Instant) {
        let friends: Vec<(PublicKey, PublicKey)> =
            self.friends.values().filter_map(|f| f.dht_pk.map(|d| (f.real_pk, d))).collect();
        for (real_pk, dht_pk) in friends {
            let reachable = self.relays.reachable(&dht_pk);
            self.net_crypto.set_tcp(now, &real_pk, reachable);
            self.net_crypto.tcp_routes_changed(now, &real_pk);
        }
    }

    /// Routes a friend on its relays (and ours).
    fn route_friend(&mut self, now: Instant, real_pk: &PublicKey) {
        let Some(friend) = self.friends.get(real_pk) else { return };
        let Some(dht_pk) = friend.dht_pk else { return };
        let relays = friend.relays.clone();
        self.relays.set_peer(now, dht_pk, &relays);
        self.update_tcp_paths(now);
    }

    /// Sends a friend up to 3 of our connected relays (SHARE_RELAYS).
    fn share_relays(&mut self, now: Instant, real_pk: &PublicKey) {
        let ours = self.relays.connected(friends::MAX_SHARED_RELAYS);
        if let Some(friend) = self.friends.get_mut(real_pk) {
            friend.relays_shared = Some(now);
        }
        if ours.is_empty() {
            return;
        }
        let mut buf = bytes::BytesMut::with_capacity(1 + PackedNode::list_encoded_len(&ours));
        buf.extend_from_slice(&[packet_id::SHARE_RELAYS]);
        PackedNode::encode_list(&ours, &mut buf);
        let _ = self.net_crypto.send_control(now, real_pk, buf.freeze());
    }

    // ---- the TCP relay server -------------------------------------------------

    /// A TCP connection from `from` arrived at our relay; `None`: refuse it
    /// (no relay, full, or too many from that source).
    pub fn tcp_accept(&mut self, now: Instant, from: std::net::IpAddr) -> Option<ClientId> {
        self.start.get_or_insert(now);
        self.tcp_server.as_mut()?.accept(now, from)
    }

    /// A relay connection finished its handshake and its first frame opened.
    pub fn tcp_confirm(&mut self, now: Instant, client: ClientId, pk: PublicKey) -> bool {
        let confirmed = self.tcp_server.as_mut().is_some_and(|s| s.confirm(now, client, pk));
        self.pump_tcp(now);
        confirmed
    }

    /// A packet from a relay client.
    pub fn tcp_packet(&mut self, now: Instant, client: ClientId, packet: crate::wire::tcp::TcpPacket) {
        if let Some(server) = &mut self.tcp_server {
            server.handle_packet(now, client, packet);
        }
        self.pump_tcp(now);
    }

    /// A frame from a relay client opened but did not decode.
    pub fn tcp_malformed(&mut self, now: Instant, client: ClientId, what: &'static str) {
        if let Some(server) = &mut self.tcp_server {
            server.handle_malformed(client, what);
        }
        self.pump_tcp(now);
    }

    /// A relay connection ended.
    pub fn tcp_closed(&mut self, now: Instant, client: ClientId, reason: CloseReason) {
        if let Some(server) = &mut self.tcp_server {
            server.handle_closed(client, reason);
        }
        self.pump_tcp(now);
    }

    /// The driver dropped a packet for a slow relay client.
    pub fn tcp_dropped(&mut self) {
        if let Some(server) = &mut self.tcp_server {
            server.handle_dropped();
        }
    }

    /// The next thing the relay server wants done.
    pub fn poll_tcp_output(&mut self) -> Option<RelayOutput> {
        self.tcp_server.as_mut()?.poll_output()
    }

    /// Onion requests from relay clients to the onion relay, and responses
    /// back.
    fn pump_tcp(&mut self, now: Instant) {
        let Some(server) = &mut self.tcp_server else {
            // Nothing can be waiting for these.
            while self.relay.poll_tcp_return().is_some() {}
            return;
        };
        while let Some((client, request)) = server.poll_onion_request() {
            self.relay.handle_tcp_request(now, onion_conn_id(client), client, request.body().clone());
        }
        while let Some(back) = self.relay.poll_tcp_return() {
            server.handle_onion_response(back.identifier, back.conn_id, back.payload);
        }
    }

    /// Moves layer events to where they belong.
    fn pump_events(&mut self, now: Instant) {
        loop {
            let mut any = false;
            while let Some(event) = self.dht.poll_event() {
                any = true;
                match event {
                    DhtEvent::Request { sender, kind: DHT_PK_KIND, data, .. } => {
                        self.onion.handle_dht_dht_pk(now, &sender, data);
                    }
                    DhtEvent::Found { key, addr } => {
                        self.found_friend_addr(now, key, addr);
                        self.events.push_back(NodeEvent::Dht(DhtEvent::Found { key, addr }));
                    }
                    other => self.events.push_back(NodeEvent::Dht(other)),
                }
            }
            while let Some(event) = self.onion.poll_event() {
                any = true;
                self.on_onion_event(now, &event);
                self.events.push_back(NodeEvent::Onion(event));
            }
            while let Some(event) = self.net_crypto.poll_event() {
                any = true;
                self.on_net_crypto_event(now, event);
            }
            if !any {
                break;
            }
        }
        self.pump_punch(now);
    }

    fn on_onion_event(&mut self, now: Instant, event: &OnionEvent) {
        match event {
            OnionEvent::FriendRequest { real_pk, nospam, message } => {
                // As c-toxcore: the nospam must be ours, friends and repeats are ignored.
                if *nospam == self.nospam
                    && !self.friends.contains_key(real_pk)
                    && *real_pk != *self.real_keys.public()
                    && self.requests_seen.is_news(now, real_pk, message)
                {
                    self.events.push_back(NodeEvent::Friend(FriendEvent::Request {
                        real_pk: *real_pk,
                        message: message.clone(),
                    }));
                }
            }
            OnionEvent::FriendDhtPk { real_pk, dht_pk, nodes } => {
                self.set_friend_dht_pk(now, real_pk, *dht_pk);
                if let Some(friend) = self.friends.get_mut(real_pk) {
                    friend.add_relays(nodes);
                }
                self.route_friend(now, real_pk);
                for node in nodes.iter().filter(|n| n.protocol == Protocol::Udp) {
                    self.dht.ask(now, *node, *dht_pk);
                }
            }
            OnionEvent::Connected(_) => {}
        }
    }

    /// A friend's DHT key is `dht_pk` (from its announcement or handshake).
    fn set_friend_dht_pk(&mut self, now: Instant, real_pk: &PublicKey, dht_pk: PublicKey) {
        let Some(friend) = self.friends.get_mut(real_pk) else { return };
        if friend.dht_pk == Some(dht_pk) {
            return;
        }
        let old = friend.dht_pk.replace(dht_pk);
        friend.addr = None;
        if let Some(old) = old {
            self.dht.remove_search(&old);
            self.relays.remove_peer(now, &old);
            // The friend restarted: its old session is useless.
            if self.net_crypto.session(real_pk).is_some_and(|s| s.dht_pk != dht_pk) {
                self.net_crypto.kill(real_pk);
                self.went_offline(now, real_pk);
            }
        }
        self.dht.add_search(dht_pk);
        self.net_crypto.connect(now, *real_pk, dht_pk);
        self.route_friend(now, real_pk);
        if let Some(addr) = self.dht.addr_of(&dht_pk, now) {
            self.found_friend_addr(now, dht_pk, addr);
        }
    }

    /// The DHT found the node with key `dht_key` at `addr`.
    fn found_friend_addr(&mut self, now: Instant, dht_key: PublicKey, addr: SocketAddr) {
        let Some(friend) = self.friends.values_mut().find(|f| f.dht_pk == Some(dht_key)) else { return };
        friend.addr = Some(addr);
        let real_pk = friend.real_pk;
        self.net_crypto.connect(now, real_pk, dht_key);
        self.net_crypto.set_addr(&real_pk, addr);
    }

    fn on_net_crypto_event(&mut self, now: Instant, event: NetCryptoEvent) {
        match event {
            NetCryptoEvent::Established(peer) => {
                let Some(friend) = self.friends.get_mut(&peer) else {
                    self.net_crypto.kill(&peer);
                    return;
                };
                friend.status = Status::SessionUp;
                friend.last_heard = Some(now);
                friend.last_ping_sent = Some(now);
                self.onion.set_friend_online(&peer, true);
                let _ = self.net_crypto.send_control(now, &peer, Bytes::from_static(&[packet_id::ONLINE]));
                // Our hole-punching hello (other Tox clients ignore it).
                self.punch.established(now, peer);
            }
            NetCryptoEvent::Lossless(peer, data) => self.on_lossless(now, peer, data),
            NetCryptoEvent::Lossy(peer, data) => {
                let Some(friend) = self.friends.get_mut(&peer) else { return };
                friend.last_heard = Some(now);
                if data.first() == Some(&PUNCH_LOSSY_ID) {
                    if let Ok(message) = PunchMessage::decode(data) {
                        self.punch.handle_message(now, peer, message);
                    }
                } else if friend.status == Status::Online
                    && data.first().is_some_and(|id| packet_id::LOSSY_CUSTOM.contains(id))
                {
                    self.events.push_back(NodeEvent::Friend(FriendEvent::Lossy { real_pk: peer, data }));
                }
            }
            NetCryptoEvent::Closed(peer, _) => self.went_offline(now, &peer),
            NetCryptoEvent::PeerDhtPk(peer, dht_pk) => self.set_friend_dht_pk(now, &peer, dht_pk),
        }
    }

    fn on_lossless(&mut self, now: Instant, peer: PublicKey, data: Bytes) {
        let Some(friend) = self.friends.get_mut(&peer) else { return };
        friend.last_heard = Some(now);
        let Some(&id) = data.first() else { return };
        match id {
            PUNCH_ID => {
                if let Ok(message) = PunchMessage::decode(data) {
                    if matches!(message, PunchMessage::Hello(_)) {
                        // A tuntox peer: its address may change under us.
                        self.net_crypto.set_roaming(peer, true);
                    }
                    self.punch.handle_message(now, peer, message);
                }
            }
            packet_id::ALIVE => friend.last_alive = Some(now),
            packet_id::SHARE_RELAYS => {
                let mut r = crate::wire::Reader::new(data.slice(1..));
                if let Ok(nodes) = PackedNode::decode_up_to(&mut r, friends::MAX_SHARED_RELAYS) {
                    friend.add_relays(&nodes);
                    self.route_friend(now, &peer);
                }
            }
            packet_id::ONLINE if friend.status != Status::Online => {
                friend.status = Status::Online;
                let path = self.path_of(&peer, now);
                self.events.push_back(NodeEvent::Friend(FriendEvent::Connected { real_pk: peer, path }));
                self.share_relays(now, &peer);
            }
            packet_id::OFFLINE if friend.status == Status::Online => {
                friend.status = Status::SessionUp;
                friend.rearm_request(now);
                self.events.push_back(NodeEvent::Friend(FriendEvent::Lost { real_pk: peer }));
            }
            id if packet_id::LOSSLESS_CUSTOM.contains(&id) && friend.status == Status::Online => {
                self.events.push_back(NodeEvent::Friend(FriendEvent::Lossless { real_pk: peer, data }));
            }
            // Nicknames, status messages and everything else: not for us.
            _ => {}
        }
    }

    /// A friend's session ended: tell the owner, search it again.
    fn went_offline(&mut self, now: Instant, real_pk: &PublicKey) {
        self.punch.closed(real_pk);
        self.net_crypto.set_roaming(*real_pk, false);
        let Some(friend) = self.friends.get_mut(real_pk) else { return };
        if friend.status == Status::Online {
            self.events.push_back(NodeEvent::Friend(FriendEvent::Lost { real_pk: *real_pk }));
        }
        if friend.status != Status::Connecting {
            friend.rearm_request(now);
        }
        friend.status = Status::Connecting;
        self.onion.set_friend_online(real_pk, false);
        if let Some(dht_pk) = friend.dht_pk {
            self.net_crypto.connect(now, *real_pk, dht_pk);
            if let Some(addr) = friend.addr.or_else(|| self.dht.addr_of(&dht_pk, now)) {
                self.net_crypto.set_addr(real_pk, addr);
            }
        }
    }

    fn tick_friends(&mut self, now: Instant) {
        let keys: Vec<PublicKey> = self.friends.keys().copied().collect();
        for real_pk in keys {
            let Some(friend) = self.friends.get(&real_pk) else { continue };
            match friend.status {
                Status::SessionUp | Status::Online => {
                    // Any packet of the session counts, not only the
                    // friend layer's (which wait while the owner holds the
                    // session's lossless packets).
                    let heard = match (friend.last_heard, self.net_crypto.session(&real_pk)) {
                        (Some(t), Some(session)) => Some(t.max(session.last_recv())),
                        (t, _) => t,
                    };
                    let timeout = if friend.in_use { friends::IN_USE_TIMEOUT } else { friends::CONNECTION_TIMEOUT };
                    if heard.is_some_and(|t| now >= t + timeout) {
                        self.net_crypto.kill(&real_pk);
                        self.went_offline(now, &real_pk);
                        continue;
                    }
                    if friend.status == Status::Online
                        && friend.relays_shared.is_some_and(|t| now >= t + friends::SHARE_RELAYS_INTERVAL)
                    {
                        self.share_relays(now, &real_pk);
                    }
                    let Some(friend) = self.friends.get(&real_pk) else { continue };
                    if friend.last_ping_sent.is_none_or(|t| now >= t + friends::PING_INTERVAL)
                        && self.net_crypto.send_control(now, &real_pk, Bytes::from_static(&[packet_id::ALIVE])).is_ok()
                        && let Some(friend) = self.friends.get_mut(&real_pk)
                    {
                        friend.last_ping_sent = Some(now);
                    }
                }
                Status::Connecting => {
                    if let Some(dht_pk) = friend.dht_pk {
                        self.net_crypto.connect(now, real_pk, dht_pk);
                        if let Some(addr) = self.dht.addr_of(&dht_pk, now) {
                            self.found_friend_addr(now, dht_pk, addr);
                        }
                    }
                    self.resend_request(now, &real_pk);
                }
            }
        }
    }

    fn resend_request(&mut self, now: Instant, real_pk: &PublicKey) {
        let Some(pending) = self.friends.get(real_pk).and_then(|f| f.request.clone()) else { return };
        if now < pending.next {
            return;
        }
        let sent = self.onion.send_friend_request(now, real_pk, &pending.request);
        if let Some(friend) = self.friends.get_mut(real_pk) {
            friend.requests_sent += sent as u64;
        }
        if let Some(request) = self.friends.get_mut(real_pk).and_then(|f| f.request.as_mut()) {
            if sent > 0 {
                request.next = now + request.interval;
                if request.steady > 0 {
                    request.steady -= 1;
                } else {
                    request.interval = (request.interval * 2).min(friends::REQUEST_RESEND_MAX);
                }
            } else {
                // The friend's announce nodes are not found yet: try again soon.
                request.next = now + Duration::from_secs(1);
            }
        }
    }

    /// The next datagram to send from the main socket. Datagrams to a
    /// friend's address reached through another socket are held for
    /// [`poll_datagram`](Self::poll_datagram): drain this first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.udp {
            // Nothing leaves over UDP: drain what the layers queued.
            while self.net_crypto.poll_transmit().is_some()
                || self.dht.poll_transmit().is_some()
                || self.relay.poll_transmit().is_some()
                || self.announce.poll_transmit().is_some()
                || self.onion.poll_transmit().is_some()
            {}
            self.datagrams.clear();
            return None;
        }
        loop {
            let transmit = self
                .net_crypto
                .poll_transmit()
                .or_else(|| self.dht.poll_transmit())
                .or_else(|| self.relay.poll_transmit())
                .or_else(|| self.announce.poll_transmit())
                .or_else(|| self.onion.poll_transmit())?;
            match self.routes.get(&transmit.dst) {
                Some(&socket) if !self.routes.is_empty() => self.datagrams.push_back(Datagram {
                    socket,
                    ttl: None,
                    dst: transmit.dst,
                    payload: transmit.payload,
                }),
                _ => return Some(transmit),
            }
        }
    }

    /// The next datagram that leaves from another socket than the main one
    /// or with an IP TTL of its own (hole punching's probes, and whatever
    /// goes to a friend reached through a punching socket). Drain it after
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn poll_datagram(&mut self) -> Option<Datagram> {
        self.datagrams.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// Each layer's next timer, by name (for diagnostics).
    pub fn timers(&self) -> [(&'static str, Option<Instant>); 4] {
        [
            ("dht", self.dht.poll_timeout()),
            ("onion", self.onion.poll_timeout()),
            ("net_crypto", self.net_crypto.poll_timeout()),
            ("friends", self.next_friend_tick),
        ]
    }

    /// When `handle_timeout` should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let onion = if self.onion_client { self.onion.poll_timeout() } else { None };
        let friends = if self.friends.is_empty() { None } else { self.next_friend_tick };
        let tcp = self.tcp_server.as_ref().and_then(RelayServer::poll_timeout);
        let punch = self.punch.poll_timeout();
        [
            self.dht.poll_timeout(),
            onion,
            self.net_crypto.poll_timeout(),
            friends,
            tcp,
            self.relays.poll_timeout(),
            punch,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn node(udp: bool) -> (Node, Instant) {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let real = KeyPair::generate(&mut rng);
        let dht = KeyPair::generate(&mut rng);
        let config = NodeConfig { udp, ..NodeConfig::default() };
        (Node::new(real, dht, config, [4; 32]), crate::proto::test_epoch())
    }

    fn boot() -> PackedNode {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        PackedNode::udp(SocketAddr::from(([192, 0, 2, 9], 33445)), *KeyPair::generate(&mut rng).public())
    }

    #[test]
    fn without_udp_nothing_leaves_over_udp_and_relays_are_dialled() {
        let (mut n, now) = node(false);
        let relay = PackedNode::tcp(SocketAddr::from(([192, 0, 2, 7], 33446)), boot().public_key);
        n.bootstrap(now, boot());
        n.add_tcp_relay(now, relay);
        n.add_friend(*KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(23)).public());
        for step in 0..20 {
            n.handle_timeout(now + Duration::from_millis(500 * step));
            assert_eq!(n.poll_transmit(), None, "no datagram without UDP");
        }
        let dialled = std::iter::from_fn(|| n.poll_relay_command(now))
            .any(|c| matches!(c, RelayCommand::Connect { addr, .. } if addr == relay.addr));
        assert!(dialled, "the relay is dialled");
    }

    #[test]
    fn a_friend_s_address_reached_through_a_punching_socket_keeps_going_through_it() {
        let (mut n, now) = node(true);
        let friend = SocketAddr::from(([198, 18, 2, 2], 50001));
        let other = SocketAddr::from(([198, 18, 3, 3], 33445));
        let key = *KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(24)).public();
        n.set_route(friend, SocketId(7));
        n.dht_mut().ping(now, key, friend);
        n.dht_mut().ping(now, key, other);
        let main: Vec<SocketAddr> = std::iter::from_fn(|| n.poll_transmit()).map(|t| t.dst).collect();
        assert_eq!(main, vec![other]);
        let routed = n.poll_datagram().expect("routed");
        assert_eq!((routed.socket, routed.ttl, routed.dst), (SocketId(7), None, friend));
        assert_eq!(routed.payload[0], 0x00, "a DHT ping");
        // Closing the socket forgets the route.
        n.routes.retain(|_, s| *s != SocketId(7));
        n.dht_mut().ping(now, key, friend);
        assert_eq!(n.poll_transmit().map(|t| t.dst), Some(friend));
        // A punching socket takes DHT and net_crypto packets only.
        let before = n.onion().stats();
        n.handle_udp_on(now, SocketId(7), other, Bytes::from_static(&[0x84, 1, 2, 3]));
        assert_eq!(n.onion().stats(), before, "an onion packet on a punching socket is dropped");
        n.handle_udp(now, other, Bytes::from_static(&[0x84, 1, 2, 3]));
        assert_eq!(n.onion().stats().dropped, before.dropped + 1, "on the main socket it reaches the onion");
    }

    fn requests(n: &mut Node) -> Vec<(PublicKey, Bytes)> {
        std::iter::from_fn(|| n.poll_event())
            .filter_map(|e| match e {
                NodeEvent::Friend(FriendEvent::Request { real_pk, message }) => Some((real_pk, message)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn friend_requests_seen_are_bounded_and_a_refused_key_may_ask_again() {
        let (mut n, now) = node(true);
        let mut rng = ChaCha20Rng::seed_from_u64(25);
        let keys: Vec<PublicKey> = (0..100).map(|_| *KeyPair::generate(&mut rng).public()).collect();
        let nospam = n.nospam;
        let request = move |key: PublicKey, message: &'static [u8]| OnionEvent::FriendRequest {
            real_pk: key,
            nospam,
            message: Bytes::from_static(message),
        };
        let first = request(keys[0], b"wrong\0");
        n.on_onion_event(now, &first);
        n.on_onion_event(now, &first);
        assert_eq!(requests(&mut n).len(), 1, "a repeat is not news");
        // The same key with another message (the right secret this time).
        n.on_onion_event(now + Duration::from_secs(1), &request(keys[0], b"right\0"));
        assert_eq!(requests(&mut n), vec![(keys[0], Bytes::from_static(b"right\0"))]);
        // The same message again after a while is news again.
        n.on_onion_event(now + Duration::from_secs(300), &request(keys[0], b"right\0"));
        assert_eq!(requests(&mut n).len(), 1, "asked again after a while");
        // Fresh keys without end: each is news, the memory stays bounded.
        for (i, key) in keys.iter().enumerate().skip(1) {
            n.on_onion_event(now + Duration::from_millis(301_000 + i as u64), &request(*key, b"x"));
        }
        assert_eq!(requests(&mut n).len(), 99);
        assert!(n.requests_seen.len() <= 32, "{} requests remembered", n.requests_seen.len());
    }

    #[test]
    fn friend_request_messages_are_capped_where_c_toxcore_drops_them() {
        let (mut n, now) = node(true);
        let keys = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(26));
        let id = ToxId::new(*keys.public(), NoSpam([1, 2, 3, 4]));
        assert_eq!(n.add_friend_with_request(now, &id, Bytes::from(vec![b'x'; 922])), Err(MessageLenError(922)));
        assert!(n.add_friend_with_request(now, &id, Bytes::from(vec![b'x'; 921])).is_ok());
    }

    #[test]
    fn with_udp_the_same_node_sends_datagrams() {
        let (mut n, now) = node(true);
        n.bootstrap(now, boot());
        n.handle_timeout(now);
        assert!(n.poll_transmit().is_some(), "the DHT bootstraps over UDP");
    }
}
