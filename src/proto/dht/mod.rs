//! The DHT, sans-IO: how a node finds other nodes and is found by them.
//!
//! Protocol flow (spec: <https://toktok.ltd/spec.html#dht>), following
//! c-toxcore 0.2.18's behaviour so that its nodes keep us in their lists:
//!
//! - **Bootstrap**: ask a known node for the nodes closest to our DHT key
//!   (a nodes request, 0x02). Every node in an answer (0x04) that would fit
//!   our close list is asked the same on the next tick, so we walk towards
//!   our own key, learning the nodes around us.
//! - **Admission**: a node enters a list only after it answered one of our
//!   requests (matching 8-byte id, key and address). Whoever asks us
//!   something is pinged (0x00) within 2 seconds, which is how c-toxcore
//!   nodes learn about us and how we learn about them.
//! - **Upkeep**: every listed node is asked for nodes once per minute (the
//!   DHT's keep-alive); one random good node per list every 20 seconds. A
//!   node silent for 122 s is bad (replaceable, not given out), for 182 s
//!   dead (no longer asked). When the close list runs dry we go back to the
//!   bootstrap nodes, every 10 seconds, for as long as it takes.
//! - **Searches**: for each searched key (friends' DHT keys, plus two random
//!   keys that keep us exploring, as c-toxcore does) a list of the 8 closest
//!   nodes is kept the same way; the node with the key itself is found when
//!   it answers.
//! - **Answers**: pings are echoed; nodes requests get up to 4 good nodes
//!   closest to the asked key, LAN addresses only to LAN peers.
//! - **DHT requests** (0x20) addressed to us are decrypted (NAT pings are
//!   answered here; the rest go up as events); others are routed to the
//!   addressee if it is in our close list.
//! - **LAN discovery** (0x21) announces our key to the LAN every 10 s, and
//!   a LAN peer's announcement is answered with a nodes request.
//! - **Bootstrap info** (0xF0) is answered when a version and MOTD are set
//!   (relay nodes set them).
//!
//! Time is passed in; the DHT does its periodic work on a one-second tick
//! and says when it next wants to run through [`Dht::poll_timeout`].

pub mod client;
pub mod lists;
pub mod nat;
pub mod pending;
pub mod probe;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use self::client::{BAD_NODE_TIMEOUT, Client, PING_INTERVAL};
use self::lists::{Admission, Candidates, CloseList, SearchList};
use self::nat::NatState;
use self::pending::{Pending, RequestKind};
use super::addr::{is_lan, normalize};
use super::key_cache::KeyCache;
use crate::crypto::{KeyPair, Nonce, PublicKey};
use crate::wire::bootstrap_info::{BootstrapInfoRequest, BootstrapInfoResponse};
use crate::wire::dht_packet::{DhtPacket, DhtPacketKind, DhtPayload};
use crate::wire::dht_request::{DhtRequest, DhtRequestPayload};
use crate::wire::lan_discovery::LanDiscovery;
use crate::wire::nat_ping::NatPingRequest;
use crate::wire::nodes_request::NodesRequest;
use crate::wire::nodes_response::NodesResponse;
use crate::wire::packed_node::{PackedNode, Protocol};
use crate::wire::ping_request::PingRequest;
use crate::wire::ping_response::PingResponse;

/// How often the periodic work runs.
pub const TICK: Duration = Duration::from_secs(1);
/// How often one random good node of each list is asked for nodes
/// (c-toxcore's GET_NODE_INTERVAL).
pub const RANDOM_ASK_INTERVAL: Duration = Duration::from_secs(20);
/// How soon an unanswered keep-alive is repeated. c-toxcore waits a full
/// minute, so two lost datagrams make a node bad; retrying keeps lossy links'
/// nodes listed, at no cost on clean ones.
pub const KEEPALIVE_RETRY: Duration = Duration::from_secs(10);
/// How often nodes that asked us something are pinged (TIME_TO_PING).
pub const PING_ROUND_INTERVAL: Duration = Duration::from_secs(2);
/// How often the bootstrap nodes are asked while the close list is empty.
pub const REBOOTSTRAP_INTERVAL: Duration = Duration::from_secs(10);
/// How often our key is announced on the LAN (LAN_DISCOVERY_INTERVAL).
pub const LAN_DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);
/// Nodes in a nodes response (MAX_SENT_NODES).
pub const MAX_SENT_NODES: usize = 4;
/// Nodes pinged per round (MAX_TO_PING).
pub const MAX_TO_PING: usize = 32;
/// Close-list candidates asked per tick (MAX_CLOSE_TO_BOOTSTRAP_NODES).
pub const MAX_CLOSE_TO_ASK: usize = 8;
/// Random keys searched to keep exploring (DHT_FAKE_FRIEND_NUMBER).
pub const EXPLORATION_SEARCHES: usize = 2;
/// While a list keeps changing, its periodic ask happens every tick rather
/// than every 20 s, until this many asks in a row changed nothing (c-toxcore
/// asks fast only for its first 5, MAX_BOOTSTRAP_TIMES; settling by result
/// converges faster under loss and is as quiet once settled).
pub const FAST_ASKS_UNTIL_SETTLED: u32 = 10;
/// Tox's default UDP port, where LAN discovery is always sent.
pub const DEFAULT_PORT: u16 = 33445;
/// The end of Tox's default port range.
pub const LAST_DEFAULT_PORT: u16 = 33545;
/// Extra ports tried per LAN discovery round (PORTS_PER_DISCOVERY).
pub const LAN_PORTS_PER_ROUND: u16 = 10;

/// How the DHT behaves.
#[derive(Debug, Clone, Default)]
pub struct DhtConfig {
    /// Announce ourselves on the LAN and answer LAN announcements.
    pub lan_discovery: bool,
    /// Nodes to bootstrap from, and to return to when the close list is empty.
    pub bootstrap_nodes: Vec<PackedNode>,
    /// Answer bootstrap-info requests with this version and message of the day.
    pub bootstrap_info: Option<(u32, Bytes)>,
}

/// What the DHT tells the layers above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtEvent {
    /// The node holding a searched key answered from `addr`.
    Found {
        /// The searched key.
        key: PublicKey,
        /// Where it is.
        addr: SocketAddr,
    },
    /// A DHT request (0x20) addressed to us with a payload another layer
    /// handles (DHT-PK announcements, friend requests).
    Request {
        /// Its sender's public key (a real or DHT key, depending on kind).
        sender: PublicKey,
        /// The payload's first byte.
        kind: u8,
        /// The payload after that byte.
        data: Bytes,
        /// Where it came from (the last hop).
        from: SocketAddr,
    },
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub dst: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
}

/// A ping or ping answer from a searched key (a friend's DHT key), opened
/// and so authentic: hole punching reads its ping id
/// ([`punch`](crate::proto::punch)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// The sender's DHT key.
    pub key: PublicKey,
    /// Where it came from.
    pub from: SocketAddr,
    /// The ping id.
    pub ping_id: u64,
}

/// Contacts kept for the owner at most (the oldest go first).
const MAX_CONTACTS: usize = 64;

/// Counters of what the DHT sent, answered and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Nodes requests sent.
    pub nodes_requests_sent: u64,
    /// Ping requests sent.
    pub pings_sent: u64,
    /// Requests of others answered.
    pub requests_answered: u64,
    /// Ping responses that matched a ping of ours.
    pub pongs_accepted: u64,
    /// Nodes responses that matched a request of ours.
    pub nodes_responses_accepted: u64,
    /// Packets that did not decode or decrypt.
    pub dropped_malformed: u64,
    /// Answers to requests we did not send (or too late).
    pub dropped_unsolicited: u64,
    /// Packets claiming to come from our own key.
    pub dropped_from_self: u64,
    /// DHT requests routed on to another node.
    pub requests_routed: u64,
    /// NAT ping requests sent toward friends we cannot reach directly.
    pub nat_pings_sent: u64,
    /// Rounds of hole-punching pings sent.
    pub punch_rounds: u64,
    /// DHT requests for unknown nodes, dropped.
    pub dropped_unroutable: u64,
}

#[derive(Debug)]
struct Search {
    list: SearchList,
    to_ask: Candidates,
    last_random_ask: Option<Instant>,
    asks: u32,
    /// Periodic asks since a node last entered the list.
    asks_since_change: u32,
    nat: NatState,
}

impl Search {
    fn new(target: PublicKey) -> Self {
        Self {
            list: SearchList::new(target),
            to_ask: Candidates::new(MAX_SENT_NODES),
            last_random_ask: None,
            asks: 0,
            asks_since_change: 0,
            nat: NatState::default(),
        }
    }
}

/// The DHT state machine. Feed it packets and time; drain its transmits
/// and events.
#[derive(Debug)]
pub struct Dht {
    keys: KeyPair,
    config: DhtConfig,
    close: CloseList,
    close_to_ask: Candidates,
    close_last_random_ask: Option<Instant>,
    close_asks: u32,
    close_asks_since_change: u32,
    searches: Vec<Search>,
    to_ping: Candidates,
    last_ping_round: Option<Instant>,
    pending: Pending,
    key_cache: KeyCache,
    last_bootstrap: Option<Instant>,
    lan_targets: Vec<IpAddr>,
    last_lan_discovery: Option<Instant>,
    next_lan_port: u16,
    next_tick: Option<Instant>,
    rng: ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    contacts: VecDeque<Contact>,
    events: VecDeque<DhtEvent>,
    stats: DhtStats,
}

impl Dht {
    /// A DHT with the key pair `keys` (the node's DHT key pair, made fresh at
    /// every start), whose randomness comes from `seed`.
    pub fn new(keys: KeyPair, config: DhtConfig, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let searches = (0..EXPLORATION_SEARCHES)
            .map(|_| {
                let mut random = [0u8; 32];
                rng.fill_bytes(&mut random);
                Search::new(PublicKey::from_bytes(random))
            })
            .collect();
        Self {
            close: CloseList::new(*keys.public()),
            keys,
            config,
            close_to_ask: Candidates::new(MAX_CLOSE_TO_ASK),
            close_last_random_ask: None,
            close_asks: 0,
            close_asks_since_change: 0,
            searches,
            to_ping: Candidates::new(MAX_TO_PING),
            last_ping_round: None,
            pending: Pending::default(),
            key_cache: KeyCache::new(1024),
            last_bootstrap: None,
            lan_targets: Vec::new(),
            last_lan_discovery: None,
            next_lan_port: DEFAULT_PORT + 1,
            next_tick: None,
            rng,
            transmits: VecDeque::new(),
            contacts: VecDeque::new(),
            events: VecDeque::new(),
            stats: DhtStats::default(),
        }
    }

    /// Our DHT public key.
    pub fn public_key(&self) -> &PublicKey {
        self.keys.public()
    }

    /// Counters.
    pub fn stats(&self) -> DhtStats {
        self.stats
    }

    /// The close list.
    pub fn close_list(&self) -> &CloseList {
        &self.close
    }

    /// Good nodes in the close list.
    pub fn good_nodes(&self, now: Instant) -> usize {
        self.close.iter().filter(|c| c.is_good(now)).count()
    }

    /// Where LAN discovery announcements go (the driver knows the
    /// interfaces' broadcast addresses).
    pub fn set_lan_targets(&mut self, targets: Vec<IpAddr>) {
        self.lan_targets = targets;
    }

    /// Asks `node` for the nodes around our key and remembers it as a
    /// bootstrap node.
    pub fn bootstrap(&mut self, now: Instant, node: PackedNode) {
        if node.protocol != Protocol::Udp {
            return;
        }
        if !self.config.bootstrap_nodes.contains(&node) {
            self.config.bootstrap_nodes.push(node);
        }
        self.next_tick.get_or_insert(now);
        let own = *self.keys.public();
        self.send_nodes_request(now, node.public_key, normalize(node.addr), own);
    }

    /// Sends a DHT request (0x20) to the node with DHT key `receiver`:
    /// directly if we know where it is, else through the nodes of its search
    /// list that report its address. Returns how many copies went out.
    pub fn send_request_to(&mut self, now: Instant, receiver: PublicKey, payload: &DhtRequestPayload) -> usize {
        let before = self.transmits.len();
        self.send_dht_request(now, receiver, payload, Route::All);
        self.transmits.len() - before
    }

    /// Asks `node` for the nodes closest to `searched` (a friend's DHT key
    /// it was named with, say); its answer feeds our lists as usual.
    pub fn ask(&mut self, now: Instant, node: PackedNode, searched: PublicKey) {
        self.next_tick.get_or_insert(now);
        if node.protocol == Protocol::Udp {
            self.send_nodes_request(now, node.public_key, normalize(node.addr), searched);
        }
    }

    /// Pings a node; if it answers, it may enter our lists.
    pub fn ping(&mut self, now: Instant, key: PublicKey, addr: SocketAddr) {
        self.next_tick.get_or_insert(now);
        self.send_ping(now, key, normalize(addr));
    }

    /// Starts looking for the node with DHT key `key`. Returns false if it
    /// is already searched.
    pub fn add_search(&mut self, key: PublicKey) -> bool {
        if self.searches.iter().any(|s| *s.list.target() == key) {
            return false;
        }
        self.searches.push(Search::new(key));
        true
    }

    /// Stops looking for `key`.
    pub fn remove_search(&mut self, key: &PublicKey) {
        self.searches.retain(|s| s.list.target() != key);
    }

    /// The nodes found so far closest to a searched key.
    pub fn search_results(&self, key: &PublicKey) -> Option<&[Client]> {
        self.searches.iter().find(|s| s.list.target() == key).map(|s| s.list.clients())
    }

    /// Where the node with key `key` is, if it is in one of our lists and good.
    pub fn addr_of(&self, key: &PublicKey, now: Instant) -> Option<SocketAddr> {
        self.close
            .get(key)
            .into_iter()
            .chain(self.searches.iter().filter_map(|s| s.list.clients().iter().find(|c| c.public_key == *key)))
            .find_map(|c| c.best_addr(now))
    }

    /// Up to `max` good nodes closest to `key` from all our lists,
    /// closest first; LAN addresses only if `lan_ok`.
    pub fn closest_nodes(&self, key: &PublicKey, max: usize, lan_ok: bool, now: Instant) -> Vec<PackedNode> {
        let mut best = Candidates::new(max);
        let lists = self.close.iter().chain(self.searches.iter().flat_map(|s| s.list.clients()));
        for client in lists {
            if let Some(addr) = client.best_addr(now)
                && (lan_ok || !is_lan(addr.ip()))
            {
                best.add(key, client.public_key, addr);
            }
        }
        best.take()
            .into_iter()
            .map(|(public_key, addr)| PackedNode { protocol: Protocol::Udp, addr, public_key })
            .collect()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next ping or ping answer that came from a searched key.
    pub fn poll_contact(&mut self) -> Option<Contact> {
        self.contacts.pop_front()
    }

    /// A ping request (0x00) for the node with `key`, carrying `ping_id`,
    /// sealed but not sent and not awaited: hole punching sends it where
    /// and how it needs, and reads the answer's id itself. `None` if the
    /// key is unusable.
    pub fn ping_packet(&mut self, key: &PublicKey, ping_id: u64) -> Option<Bytes> {
        let nonce = Nonce::random(&mut self.rng);
        let shared = self.key_cache.get(key, self.keys.secret()).ok()?;
        let packet = DhtPacket::seal_payload(*self.keys.public(), shared, nonce, &PingRequest::new(ping_id));
        let mut buf = BytesMut::with_capacity(packet.encoded_len());
        packet.encode(&mut buf);
        Some(buf.freeze())
    }

    /// Where the nodes of our close list see us (fresh reports, one per
    /// node and address family).
    pub fn own_reports(&self, now: Instant) -> Vec<SocketAddr> {
        self.close
            .iter()
            .flat_map(|c| c.assocs())
            .filter_map(|a| a.returned.filter(|(_, at)| now < *at + BAD_NODE_TIMEOUT).map(|(addr, _)| addr))
            .collect()
    }

    /// Where the nodes of a search list see the searched key (fresh
    /// reports); empty for a key not searched.
    pub fn reports_of(&self, key: &PublicKey, now: Instant) -> Vec<SocketAddr> {
        self.searches
            .iter()
            .skip(EXPLORATION_SEARCHES)
            .find(|s| s.list.target() == key)
            .map(|s| returned_addrs(s.list.clients(), now))
            .unwrap_or_default()
    }

    /// The next event for the layers above.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called;
    /// `None` until the first input or timeout call (the owner calls
    /// `handle_timeout` once at start).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Runs the periodic work if it is due. The first call runs it at once.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_tick = Some(now + TICK);
        self.pending.expire(now);
        self.tick_close(now);
        self.tick_searches(now);
        self.tick_pings(now);
        self.tick_nat(now);
        self.tick_bootstrap(now);
        self.tick_lan(now);
    }

    /// Handles one UDP datagram. Packets of kinds the DHT does not handle
    /// are ignored (the node dispatches those elsewhere).
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        self.next_tick.get_or_insert(now);
        let from = normalize(from);
        let Some(&kind) = data.first() else { return };
        let handled = match kind {
            0x00..=0x02 | 0x04 => self.handle_dht_packet(now, from, data),
            0x20 => self.handle_dht_request(now, from, data),
            0x21 => self.handle_lan_discovery(now, from, data),
            0xf0 => self.handle_bootstrap_info(from, data),
            _ => Ok(()),
        };
        if handled.is_err() {
            self.stats.dropped_malformed += 1;
        }
    }

    // ---- receiving --------------------------------------------------------

    fn handle_dht_packet(&mut self, now: Instant, from: SocketAddr, data: Bytes) -> Result<(), Malformed> {
        let packet = DhtPacket::decode(data).map_err(|_| Malformed)?;
        if packet.sender == *self.keys.public() {
            self.stats.dropped_from_self += 1;
            return Ok(());
        }
        let key = self.key_cache.get(&packet.sender, self.keys.secret()).map_err(|_| Malformed)?;
        let plain = packet.open(key).map_err(|_| Malformed)?;
        let sender = packet.sender;
        match packet.kind {
            DhtPacketKind::PingRequest => {
                let ping = PingRequest::decode(plain).map_err(|_| Malformed)?;
                self.note_contact(sender, from, ping.ping_id);
                self.send_sealed(from, sender, &ping.response());
                self.stats.requests_answered += 1;
                self.consider_pinging(now, sender, from);
            }
            DhtPacketKind::PingResponse => {
                let pong = PingResponse::decode(plain).map_err(|_| Malformed)?;
                self.note_contact(sender, from, pong.ping_id);
                if self.pending.take(pong.ping_id, RequestKind::Ping, &sender, from, now) {
                    self.stats.pongs_accepted += 1;
                    self.heard_from(now, sender, from);
                } else {
                    self.stats.dropped_unsolicited += 1;
                }
            }
            DhtPacketKind::NodesRequest => {
                let request = NodesRequest::decode(plain).map_err(|_| Malformed)?;
                let nodes = self.closest_nodes(&request.searched, MAX_SENT_NODES, is_lan(from.ip()), now);
                let response = NodesResponse::new(nodes, request.ping_id).map_err(|_| Malformed)?;
                self.send_sealed(from, sender, &response);
                self.stats.requests_answered += 1;
                self.consider_pinging(now, sender, from);
            }
            DhtPacketKind::NodesResponse => {
                let response = NodesResponse::decode(plain).map_err(|_| Malformed)?;
                if !self.pending.take(response.ping_id, RequestKind::Nodes, &sender, from, now) {
                    self.stats.dropped_unsolicited += 1;
                    return Ok(());
                }
                self.stats.nodes_responses_accepted += 1;
                self.heard_from(now, sender, from);
                for node in response.into_nodes() {
                    if node.protocol == Protocol::Udp {
                        self.learned_of(now, node.public_key, normalize(node.addr), sender);
                    }
                }
            }
            _ => return Err(Malformed),
        }
        Ok(())
    }

    /// Keeps a ping or answer from a searched key for the owner.
    fn note_contact(&mut self, key: PublicKey, from: SocketAddr, ping_id: u64) {
        if self.searches.iter().skip(EXPLORATION_SEARCHES).any(|s| *s.list.target() == key) {
            if self.contacts.len() >= MAX_CONTACTS {
                self.contacts.pop_front();
            }
            self.contacts.push_back(Contact { key, from, ping_id });
        }
    }

    fn handle_dht_request(&mut self, now: Instant, from: SocketAddr, data: Bytes) -> Result<(), Malformed> {
        let request = DhtRequest::decode(data.clone()).map_err(|_| Malformed)?;
        if request.receiver != *self.keys.public() {
            // Not for us: pass it on if we know the addressee.
            match self.close.get(&request.receiver).and_then(|c| c.best_addr(now)) {
                Some(dst) => {
                    self.transmits.push_back(Transmit { dst, payload: data });
                    self.stats.requests_routed += 1;
                }
                None => self.stats.dropped_unroutable += 1,
            }
            return Ok(());
        }
        if request.sender == *self.keys.public() {
            self.stats.dropped_from_self += 1;
            return Ok(());
        }
        let key = self.key_cache.get(&request.sender, self.keys.secret()).map_err(|_| Malformed)?;
        let plain = request.open(key).map_err(|_| Malformed)?;
        match DhtRequestPayload::decode(plain).map_err(|_| Malformed)? {
            DhtRequestPayload::NatPingRequest(ping) => {
                self.send_dht_request(now, request.sender, &ping.response().into(), Route::One);
                if let Some(search) = self.searches.iter_mut().find(|s| *s.list.target() == request.sender) {
                    search.nat.received_ping = Some(now);
                }
            }
            DhtRequestPayload::NatPingResponse(pong) => {
                let fresh = self.rng.next_u64() | 1;
                if let Some(search) = self.searches.iter_mut().find(|s| *s.list.target() == request.sender)
                    && search.nat.ping_id == pong.ping_id
                {
                    search.nat.ping_id = fresh;
                    search.nat.punch_armed = true;
                }
            }
            DhtRequestPayload::Other { kind, data } => {
                self.events.push_back(DhtEvent::Request { sender: request.sender, kind, data, from });
            }
        }
        Ok(())
    }

    fn handle_lan_discovery(&mut self, now: Instant, from: SocketAddr, data: Bytes) -> Result<(), Malformed> {
        let announce = LanDiscovery::decode(data).map_err(|_| Malformed)?;
        if self.config.lan_discovery && is_lan(from.ip()) && announce.public_key != *self.keys.public() {
            let own = *self.keys.public();
            self.send_nodes_request(now, announce.public_key, from, own);
        }
        Ok(())
    }

    fn handle_bootstrap_info(&mut self, from: SocketAddr, data: Bytes) -> Result<(), Malformed> {
        BootstrapInfoRequest::decode(data).map_err(|_| Malformed)?;
        if let Some((version, motd)) = &self.config.bootstrap_info {
            let response = BootstrapInfoResponse::new(*version, motd.clone());
            let mut buf = BytesMut::with_capacity(response.encoded_len());
            response.encode(&mut buf);
            self.transmits.push_back(Transmit { dst: from, payload: buf.freeze() });
            self.stats.requests_answered += 1;
        }
        Ok(())
    }

    /// A node answered one of our requests: it may enter our lists. A node
    /// that just entered one is asked once for the nodes around its own key:
    /// answers carry only 4 nodes, so without this the 5th to 8th closest
    /// nodes to a key are never named by anyone once the closest 4 are known.
    fn heard_from(&mut self, now: Instant, key: PublicKey, addr: SocketAddr) {
        let mut added = self.close.heard_from(&key, addr, now) == Admission::Added;
        if added {
            self.close_asks_since_change = 0;
        }
        for search in &mut self.searches {
            let admission = search.list.heard_from(&key, addr, now);
            if admission == Admission::Added {
                added = true;
                search.asks_since_change = 0;
            }
            if admission.is_listed() && *search.list.target() == key {
                self.events.push_back(DhtEvent::Found { key, addr });
            }
        }
        if added {
            self.send_nodes_request(now, key, addr, key);
        }
    }

    /// A node we heard of from `via`: ask it for nodes if it would improve a
    /// list, and note what `via` says about searched keys and about us.
    fn learned_of(&mut self, now: Instant, key: PublicKey, addr: SocketAddr, via: PublicKey) {
        let own = *self.keys.public();
        if key == own {
            if let Some(client) = self.close.get_mut(&via) {
                for assoc in client.assocs_mut() {
                    assoc.returned = Some((addr, now));
                }
            }
            return;
        }
        if self.close.can_add(&key, now) {
            self.close_to_ask.add(&own, key, addr);
        }
        for search in &mut self.searches {
            if *search.list.target() == key
                && let Some(client) = search.list.get_mut(&via)
            {
                for assoc in client.assocs_mut() {
                    assoc.returned = Some((addr, now));
                }
            }
            if search.list.can_add(&key, now) {
                let target = *search.list.target();
                search.to_ask.add(&target, key, addr);
            }
        }
    }

    /// Someone asked us something: ping them soon if they would fit a list
    /// (c-toxcore's `ping_add`), which is how we learn about them safely.
    fn consider_pinging(&mut self, now: Instant, key: PublicKey, addr: SocketAddr) {
        let useful = self.close.can_add(&key, now) || self.searches.iter().any(|s| s.list.can_add(&key, now));
        if useful {
            let own = *self.keys.public();
            self.to_ping.add(&own, key, addr);
        }
    }

    // ---- periodic work ----------------------------------------------------

    fn tick_close(&mut self, now: Instant) {
        let own = *self.keys.public();
        for (key, addr) in self.close_to_ask.take() {
            self.send_nodes_request(now, key, addr, own);
        }
        let due = self.keepalive_due(now, ListRef::Close);
        for (key, addr) in due {
            self.send_nodes_request(now, key, addr, own);
        }
        let fast = self.close_asks_since_change < FAST_ASKS_UNTIL_SETTLED;
        if (fast || self.close_last_random_ask.is_none_or(|t| now >= t + RANDOM_ASK_INTERVAL))
            && let Some((key, addr, probe)) = plan_ask(&mut self.rng, self.close_asks, &own, self.close.iter(), now)
        {
            self.send_nodes_request(now, key, addr, probe);
            self.close_last_random_ask = Some(now);
            self.close_asks += 1;
            self.close_asks_since_change += 1;
        }
    }

    fn tick_searches(&mut self, now: Instant) {
        for i in 0..self.searches.len() {
            let target = *self.searches[i].list.target();
            for (key, addr) in self.searches[i].to_ask.take() {
                self.send_nodes_request(now, key, addr, target);
            }
            for (key, addr) in self.keepalive_due(now, ListRef::Search(i)) {
                self.send_nodes_request(now, key, addr, target);
            }
            let search = &self.searches[i];
            let fast = search.asks_since_change < FAST_ASKS_UNTIL_SETTLED;
            if (fast || search.last_random_ask.is_none_or(|t| now >= t + RANDOM_ASK_INTERVAL))
                && let Some((key, addr, probe)) =
                    plan_ask(&mut self.rng, search.asks, &target, search.list.clients().iter(), now)
            {
                self.send_nodes_request(now, key, addr, probe);
                let search = &mut self.searches[i];
                search.last_random_ask = Some(now);
                search.asks += 1;
                search.asks_since_change += 1;
            }
        }
    }

    /// Addresses of a list's live nodes that are due a keep-alive: not asked
    /// for a minute, or, once a keep-alive went unanswered, not asked for
    /// [`KEEPALIVE_RETRY`] (so a lost datagram or two does not make a node
    /// bad). Marks them asked.
    fn keepalive_due(&mut self, now: Instant, list: ListRef) -> Vec<(PublicKey, SocketAddr)> {
        let mut due = Vec::new();
        let mut visit = |client: &mut Client| {
            let key = client.public_key;
            for assoc in client.assocs_mut() {
                let overdue = now >= assoc.last_seen + PING_INTERVAL + pending::REQUEST_TIMEOUT;
                let wait = if overdue { KEEPALIVE_RETRY } else { PING_INTERVAL };
                if assoc.is_alive(now) && assoc.last_pinged.is_none_or(|t| now >= t + wait) {
                    assoc.last_pinged = Some(now);
                    due.push((key, assoc.addr));
                }
            }
        };
        match list {
            ListRef::Close => self.close.iter_mut().for_each(&mut visit),
            ListRef::Search(i) => self.searches[i].list.clients_mut().iter_mut().for_each(&mut visit),
        }
        due
    }

    fn tick_pings(&mut self, now: Instant) {
        if self.to_ping.is_empty() || self.last_ping_round.is_some_and(|t| now < t + PING_ROUND_INTERVAL) {
            return;
        }
        self.last_ping_round = Some(now);
        for (key, addr) in self.to_ping.take() {
            let useful = self.close.can_add(&key, now) || self.searches.iter().any(|s| s.list.can_add(&key, now));
            if useful {
                self.send_ping(now, key, addr);
            }
        }
    }

    /// Hole punching toward searched keys we cannot reach directly (see
    /// [`nat`]). The exploration searches are skipped: nobody reports
    /// random keys' addresses.
    fn tick_nat(&mut self, now: Instant) {
        for i in EXPLORATION_SEARCHES..self.searches.len() {
            let search = &self.searches[i];
            let target = *search.list.target();
            if search.list.clients().iter().any(|c| c.public_key == target && c.is_good(now)) {
                continue;
            }
            let reports = returned_addrs(search.list.clients(), now);
            if reports.len() < nat::MIN_REPORTS {
                continue;
            }
            if search.nat.ping_due(now) {
                if self.searches[i].nat.ping_id == 0 {
                    self.searches[i].nat.ping_id = self.rng.next_u64() | 1;
                }
                let request = NatPingRequest::new(self.searches[i].nat.ping_id);
                self.send_dht_request(now, target, &request.into(), Route::All);
                self.searches[i].nat.last_ping = Some(now);
                self.stats.nat_pings_sent += 1;
            }
            if self.searches[i].nat.punch_due(now)
                && let Some(targets) = self.searches[i].nat.punch(now, &reports)
            {
                self.stats.punch_rounds += 1;
                for addr in targets {
                    self.send_ping(now, target, addr);
                }
            }
        }
    }

    fn tick_bootstrap(&mut self, now: Instant) {
        if self.good_nodes(now) > 0 || self.last_bootstrap.is_some_and(|t| now < t + REBOOTSTRAP_INTERVAL) {
            return;
        }
        self.last_bootstrap = Some(now);
        let own = *self.keys.public();
        let nodes: Vec<PackedNode> = self.config.bootstrap_nodes.clone();
        for node in nodes {
            self.send_nodes_request(now, node.public_key, normalize(node.addr), own);
        }
    }

    fn tick_lan(&mut self, now: Instant) {
        if !self.config.lan_discovery
            || self.lan_targets.is_empty()
            || self.last_lan_discovery.is_some_and(|t| now < t + LAN_DISCOVERY_INTERVAL)
        {
            return;
        }
        self.last_lan_discovery = Some(now);
        let first = self.next_lan_port;
        let last = (first + LAN_PORTS_PER_ROUND).min(LAST_DEFAULT_PORT);
        self.next_lan_port = if last == LAST_DEFAULT_PORT { DEFAULT_PORT + 1 } else { last };
        let mut packet = BytesMut::new();
        LanDiscovery { public_key: *self.keys.public() }.encode(&mut packet);
        let packet = packet.freeze();
        for ip in self.lan_targets.clone() {
            for port in std::iter::once(DEFAULT_PORT).chain(first..last) {
                self.transmits.push_back(Transmit { dst: SocketAddr::new(ip, port), payload: packet.clone() });
            }
        }
    }

    // ---- sending ----------------------------------------------------------

    fn new_request_id(&mut self) -> u64 {
        loop {
            let id = self.rng.next_u64();
            if id != 0 {
                return id;
            }
        }
    }

    fn send_nodes_request(&mut self, now: Instant, key: PublicKey, addr: SocketAddr, searched: PublicKey) {
        if key == *self.keys.public() {
            return;
        }
        let ping_id = self.new_request_id();
        if self.send_sealed(addr, key, &NodesRequest { searched, ping_id }) {
            self.pending.insert(ping_id, RequestKind::Nodes, key, addr, now);
            self.stats.nodes_requests_sent += 1;
        }
    }

    fn send_ping(&mut self, now: Instant, key: PublicKey, addr: SocketAddr) {
        let ping_id = self.new_request_id();
        if self.send_sealed(addr, key, &PingRequest::new(ping_id)) {
            self.pending.insert(ping_id, RequestKind::Ping, key, addr, now);
            self.stats.pings_sent += 1;
        }
    }

    /// Seals a DHT packet for `key` and queues it; false if the key is unusable.
    fn send_sealed<P: DhtPayload>(&mut self, dst: SocketAddr, key: PublicKey, payload: &P) -> bool {
        let nonce = Nonce::random(&mut self.rng);
        let Ok(shared) = self.key_cache.get(&key, self.keys.secret()) else { return false };
        let packet = DhtPacket::seal_payload(*self.keys.public(), shared, nonce, payload);
        let mut buf = BytesMut::with_capacity(packet.encoded_len());
        packet.encode(&mut buf);
        self.transmits.push_back(Transmit { dst, payload: buf.freeze() });
        true
    }

    /// Sends a DHT request to the node with `receiver`'s key: directly when
    /// we know where it is, else through the nodes of its search list that
    /// report its address (all of them, or one at random).
    fn send_dht_request(&mut self, now: Instant, receiver: PublicKey, payload: &DhtRequestPayload, route: Route) {
        let nonce = Nonce::random(&mut self.rng);
        let Ok(shared) = self.key_cache.get(&receiver, self.keys.secret()) else { return };
        let Ok(request) = DhtRequest::seal(receiver, *self.keys.public(), shared, nonce, payload) else { return };
        let mut buf = BytesMut::with_capacity(request.encoded_len());
        request.encode(&mut buf);
        let payload = buf.freeze();
        let mut targets: Vec<SocketAddr> = match self.addr_of(&receiver, now) {
            Some(addr) => vec![addr],
            None => self
                .searches
                .iter()
                .filter(|s| *s.list.target() == receiver)
                .flat_map(|s| s.list.clients().iter())
                .filter(|c| c.assocs().any(|a| a.returned.is_some_and(|(_, at)| now < at + BAD_NODE_TIMEOUT)))
                .filter_map(|c| c.best_addr(now))
                .collect(),
        };
        if route == Route::One && targets.len() > 1 {
            let pick = (self.rng.next_u64() % targets.len() as u64) as usize;
            targets = vec![targets[pick]];
        }
        for dst in targets {
            self.transmits.push_back(Transmit { dst, payload: payload.clone() });
        }
    }
}

/// The periodic ask of a list: which node to ask about which key.
///
/// Rounds cycle through the list's own key (asked of a random good node)
/// and that key with one bit flipped at each of the 4 depths from where its
/// 8th closest known node sits (asked of the good node closest to that
/// probe key, which knows that part of the key space best). Answers carry
/// only the 4 nodes closest to the asked key, so asking about the exact key
/// alone never names the 5th to 8th closest once the 4 closest are known;
/// asking about a neighbouring subtree's key names that subtree's nodes
/// closest to ours (Kademlia's bucket refresh, aimed where it matters).
fn plan_ask<'a>(
    rng: &mut ChaCha20Rng,
    round: u32,
    base: &PublicKey,
    clients: impl Iterator<Item = &'a Client>,
    now: Instant,
) -> Option<(PublicKey, SocketAddr, PublicKey)> {
    let good: Vec<(PublicKey, SocketAddr)> =
        clients.filter_map(|c| c.best_addr(now).map(|addr| (c.public_key, addr))).collect();
    if good.is_empty() {
        return None;
    }
    let step = (round % 5) as usize;
    if step == 0 {
        let (key, addr) = good[(rng.next_u64() % good.len() as u64) as usize];
        return Some((key, addr, *base));
    }
    let mut closest = Candidates::new(lists::BUCKET_SIZE);
    for (key, addr) in &good {
        closest.add(base, *key, *addr);
    }
    let radius = closest.take().last().map_or(0, |(key, _)| client::common_prefix_bits(base, key)).min(252);
    let bit = radius + step - 1;
    let mut probe = *base.as_bytes();
    probe[bit / 8] ^= 0x80 >> (bit % 8);
    let probe = PublicKey::from_bytes(probe);
    let (key, addr) = good.into_iter().min_by(|a, b| client::cmp_distance(&probe, &a.0, &b.0))?;
    Some((key, addr, probe))
}

/// The addresses the nodes of a search list report for its key (fresh ones).
fn returned_addrs(clients: &[Client], now: Instant) -> Vec<SocketAddr> {
    clients
        .iter()
        .flat_map(|c| c.assocs())
        .filter_map(|a| a.returned.filter(|(_, at)| now < *at + BAD_NODE_TIMEOUT).map(|(addr, _)| addr))
        .collect()
}

/// How a DHT request travels when we do not know the addressee's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Through every node that reports the addressee's address.
    All,
    /// Through one of them.
    One,
}

#[derive(Debug, Clone, Copy)]
enum ListRef {
    Close,
    Search(usize),
}

/// A packet that did not decode or decrypt (counted, never fatal).
#[derive(Debug, Clone, Copy)]
struct Malformed;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::crypto::SharedKey;

    fn dht(seed: u64, config: DhtConfig) -> Dht {
        let keys = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(seed));
        Dht::new(keys, config, [seed as u8; 32])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Delivers everything `from` queued for `to_addr` to `to`.
    fn deliver(from: &mut Dht, from_addr: SocketAddr, to: &mut Dht, to_addr: SocketAddr, now: Instant) -> usize {
        let mut n = 0;
        let mut keep = Vec::new();
        while let Some(t) = from.poll_transmit() {
            if t.dst == to_addr {
                to.handle_packet(now, from_addr, t.payload);
                n += 1;
            } else {
                keep.push(t);
            }
        }
        from.transmits.extend(keep);
        n
    }

    #[test]
    fn a_bootstrap_exchange_lists_both_sides() {
        let t0 = crate::proto::test_epoch();
        let (a_addr, b_addr) = (addr("198.18.0.1:33445"), addr("198.18.0.2:33445"));
        let (mut a, mut b) = (dht(1, DhtConfig::default()), dht(2, DhtConfig::default()));
        a.bootstrap(t0, PackedNode::udp(b_addr, *b.public_key()));
        assert_eq!(deliver(&mut a, a_addr, &mut b, b_addr, t0), 1);
        assert_eq!(deliver(&mut b, b_addr, &mut a, a_addr, t0), 1, "the nodes response");
        assert!(a.close_list().get(b.public_key()).is_some(), "b answered: a lists it");
        assert!(b.close_list().get(a.public_key()).is_none(), "a only asked: b does not list it yet");
        // b pings a at its next ping round; a's answer lists a in b.
        b.handle_timeout(t0);
        assert_eq!(deliver(&mut b, b_addr, &mut a, a_addr, t0), 1, "the ping");
        // The pong, and a's nodes request about b's own neighbourhood (b just
        // entered a's close list).
        assert_eq!(deliver(&mut a, a_addr, &mut b, b_addr, t0), 2);
        assert!(b.close_list().get(a.public_key()).is_some());
        assert_eq!(b.stats().pongs_accepted, 1);
    }

    #[test]
    fn unsolicited_and_self_addressed_answers_are_dropped() {
        let t0 = crate::proto::test_epoch();
        let (a_addr, b_addr) = (addr("198.18.0.1:33445"), addr("198.18.0.2:33445"));
        let (mut a, mut b) = (dht(1, DhtConfig::default()), dht(2, DhtConfig::default()));
        a.bootstrap(t0, PackedNode::udp(b_addr, *b.public_key()));
        deliver(&mut a, a_addr, &mut b, b_addr, t0);
        let response = b.poll_transmit().unwrap();
        // From another address than asked: refused.
        a.handle_packet(t0, addr("198.18.0.9:33445"), response.payload.clone());
        assert_eq!(a.stats().dropped_unsolicited, 1);
        // Too late: refused.
        a.handle_packet(t0 + pending::REQUEST_TIMEOUT, b_addr, response.payload.clone());
        assert_eq!(a.stats().dropped_unsolicited, 2);
        assert!(a.close_list().get(b.public_key()).is_none());

        // A packet claiming our own key.
        let own = *a.public_key();
        let key = SharedKey::precompute(&own, a.keys.secret()).unwrap();
        let packet = DhtPacket::seal_payload(own, &key, Nonce::ZERO, &PingRequest::new(5));
        let mut buf = BytesMut::new();
        packet.encode(&mut buf);
        a.handle_packet(t0, b_addr, buf.freeze());
        assert_eq!(a.stats().dropped_from_self, 1);
        assert!(a.poll_transmit().is_none(), "nothing answered");
    }

    #[test]
    fn lan_addresses_are_only_given_to_lan_peers() {
        let t0 = crate::proto::test_epoch();
        let mut a = dht(1, DhtConfig::default());
        let lan_node = dht(3, DhtConfig::default());
        let public_node = dht(4, DhtConfig::default());
        a.close.heard_from(lan_node.public_key(), addr("192.168.1.7:33445"), t0);
        a.close.heard_from(public_node.public_key(), addr("198.18.0.4:33445"), t0);
        let target = *a.public_key();
        let to_lan = a.closest_nodes(&target, 4, true, t0);
        let to_public = a.closest_nodes(&target, 4, false, t0);
        assert_eq!(to_lan.len(), 2);
        assert_eq!(to_public.len(), 1);
        assert_eq!(to_public[0].public_key, *public_node.public_key());
    }

    #[test]
    fn bootstrap_info_is_answered_only_when_set() {
        let t0 = crate::proto::test_epoch();
        let request = Bytes::from({
            let mut v = vec![0u8; 78];
            v[0] = 0xf0;
            v
        });
        let mut silent = dht(1, DhtConfig::default());
        silent.handle_packet(t0, addr("198.18.0.2:1"), request.clone());
        assert!(silent.poll_transmit().is_none());
        let info = DhtConfig { bootstrap_info: Some((1000002018, Bytes::from_static(b"hi"))), ..DhtConfig::default() };
        let mut relay = dht(2, info);
        relay.handle_packet(t0, addr("198.18.0.2:1"), request);
        let answer = relay.poll_transmit().unwrap();
        assert_eq!(&answer.payload[..], &[0xf0, 0x3b, 0x9a, 0xd1, 0xe2, b'h', b'i']);
    }

    #[test]
    fn dht_requests_are_routed_to_listed_nodes_only() {
        let t0 = crate::proto::test_epoch();
        let mut router = dht(1, DhtConfig::default());
        let (sender, receiver, stranger) =
            (dht(2, DhtConfig::default()), dht(3, DhtConfig::default()), dht(4, DhtConfig::default()));
        router.close.heard_from(receiver.public_key(), addr("198.18.0.3:33445"), t0);
        let seal = |to: &Dht| {
            let key = SharedKey::precompute(to.public_key(), sender.keys.secret()).unwrap();
            let payload = DhtRequestPayload::Other { kind: 156, data: Bytes::from_static(b"dhtpk") };
            let request =
                DhtRequest::seal(*to.public_key(), *sender.public_key(), &key, Nonce::ZERO, &payload).unwrap();
            let mut buf = BytesMut::new();
            request.encode(&mut buf);
            buf.freeze()
        };
        router.handle_packet(t0, addr("198.18.0.2:33445"), seal(&receiver));
        let forwarded = router.poll_transmit().unwrap();
        assert_eq!(forwarded.dst, addr("198.18.0.3:33445"));
        router.handle_packet(t0, addr("198.18.0.2:33445"), seal(&stranger));
        assert!(router.poll_transmit().is_none());
        assert_eq!((router.stats().requests_routed, router.stats().dropped_unroutable), (1, 1));

        // The addressee opens it and hands it up.
        let mut receiver = receiver;
        receiver.handle_packet(t0, addr("198.18.0.1:33445"), forwarded.payload);
        assert_eq!(
            receiver.poll_event(),
            Some(DhtEvent::Request {
                sender: *sender.public_key(),
                kind: 156,
                data: Bytes::from_static(b"dhtpk"),
                from: addr("198.18.0.1:33445"),
            })
        );
    }

    #[test]
    fn lan_discovery_announces_and_answers() {
        let t0 = crate::proto::test_epoch();
        let config = DhtConfig { lan_discovery: true, ..DhtConfig::default() };
        let mut a = dht(1, config.clone());
        a.set_lan_targets(vec!["192.168.1.255".parse().unwrap()]);
        a.handle_timeout(t0);
        let announces: Vec<Transmit> =
            std::iter::from_fn(|| a.poll_transmit()).filter(|t| t.payload[0] == 0x21).collect();
        let ports: Vec<u16> = announces.iter().map(|t| t.dst.port()).collect();
        assert_eq!(ports, [33445, 33446, 33447, 33448, 33449, 33450, 33451, 33452, 33453, 33454, 33455]);

        let mut b = dht(2, config);
        b.handle_packet(t0, addr("192.168.1.20:33445"), announces[0].payload.clone());
        let asked = b.poll_transmit().unwrap();
        assert_eq!((asked.dst, asked.payload[0]), (addr("192.168.1.20:33445"), 0x02));
        // Not from a LAN address: ignored.
        b.handle_packet(t0, addr("198.18.0.20:33445"), announces[0].payload.clone());
        assert!(b.poll_transmit().is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(kind in prop::sample::select(vec![0u8, 1, 2, 4, 0x20, 0x21, 0xf0, 0x18, 0x99]), body in prop::collection::vec(any::<u8>(), 0..300)) {
            let t0 = crate::proto::test_epoch();
            let mut a = dht(1, DhtConfig::default());
            let mut data = vec![kind];
            data.extend(body);
            a.handle_packet(t0, addr("198.18.0.2:1"), Bytes::from(data));
            a.handle_timeout(t0);
            prop_assert!(a.poll_event().is_none());
        }
    }
}
