//! The onion client: announcing ourselves, finding friends, and onion data
//! (c-toxcore's `onion_client.c`).
//!
//! - **Announcing**: we keep the (up to) 12 nodes closest to our real key
//!   that answered an announce request, and announce to them through our
//!   paths: every 3 s until they store us, then every 15 s (2 minutes once
//!   the node and path proved stable). Announce responses name closer
//!   nodes, which we ask in turn; that is how we converge on the nodes
//!   friends will search.
//! - **Searching**: for each friend not online, the same walk with a
//!   temporary key toward the friend's real key, keeping its 8 closest
//!   nodes; a node that stores the friend returns the friend's *data key*.
//!   New friends are searched every few seconds, long-lost ones with an
//!   exponentially growing interval (capped at an hour).
//! - **Onion data**: sealed twice (for the friend's data key and for its
//!   real key) and sent through every node that stores the friend. It
//!   carries friend requests (32) and DHT public-key announcements (156):
//!   how a friend learns our current DHT key and relays, every 30 s over
//!   the onion and every 20 s over the DHT while it is not connected.
//!
//! Unlike c-toxcore, which waits 3 s after start and then until it counts
//! itself connected for 3 s before searching friends, we announce and
//! search as soon as there are nodes to build paths from: the first
//! connection to a friend comes seconds sooner.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::paths::{PathNodes, Paths};
use crate::crypto::{KeyPair, Nonce, PublicKey, SharedKey};
use crate::proto::addr::is_lan;
use crate::proto::dht::client::cmp_distance;
use crate::proto::dht::{Dht, Transmit};
use crate::proto::key_cache::KeyCache;
use crate::wire::dht_pk_announce::{DhtPkAnnounce, DhtPkEnvelope};
use crate::wire::dht_request::DhtRequestPayload;
use crate::wire::friend_request::FriendRequest;
use crate::wire::onion_announce_request::{AnnounceRequestPayload, OnionAnnounceRequest};
use crate::wire::onion_announce_response::{AnnounceStatus, OnionAnnounceResponse};
use crate::wire::onion_data_request::{OnionDataEnvelope, OnionDataPayload, OnionDataRequest};
use crate::wire::onion_data_response::OnionDataResponse;
use crate::wire::packed_node::{PackedNode, Protocol};
use crate::wire::tcp::TcpOnionRequest;
use crate::wire::tox_id::NoSpam;

/// Nodes we announce ourselves to (MAX_ONION_CLIENTS_ANNOUNCE).
pub const MAX_ANNOUNCE_NODES: usize = 12;
/// Nodes kept per friend search (MAX_ONION_CLIENTS).
pub const MAX_FRIEND_NODES: usize = 8;
/// Announce interval while not stored (ANNOUNCE_INTERVAL_NOT_ANNOUNCED).
pub const ANNOUNCE_INTERVAL_NOT_ANNOUNCED: Duration = Duration::from_secs(3);
/// Announce interval once stored (ONION_NODE_PING_INTERVAL).
pub const NODE_PING_INTERVAL: Duration = Duration::from_secs(15);
/// Announce interval on a stable node and path (ANNOUNCE_INTERVAL_STABLE).
pub const ANNOUNCE_INTERVAL_STABLE: Duration = Duration::from_secs(15 * 8);
/// How long a node and path must live to count as stable (TIME_TO_STABLE).
pub const TIME_TO_STABLE: Duration = Duration::from_secs(15 * 6);
/// Unanswered pings before a node is dropped (ONION_NODE_MAX_PINGS).
pub const NODE_MAX_PINGS: u32 = 3;
/// How long the sendback of a request stays valid (ANNOUNCE_TIMEOUT).
pub const SENDBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Most requests awaiting a response (ANNOUNCE_ARRAY_SIZE).
pub const MAX_SENDBACKS: usize = 256;
/// A node is not asked again within this (MIN_NODE_PING_TIME).
pub const MIN_NODE_PING_TIME: Duration = Duration::from_secs(10);
/// A path node that a thin list is refilled from is asked again after
/// this, when it did not answer: its request may have been lost on a path
/// that does not work (on a small network most paths pass through nodes
/// behind NATs), and with [`MIN_NODE_PING_TIME`] between tries a node
/// that starts with two or three path nodes waits 10 s per lost request
/// before it is announced or finds a friend. c-toxcore refills from its
/// path nodes without such a limit, up to 6 requests once a second; with
/// this gap a node is asked at most once a second too. Only until we are
/// announced, and while a friend is new to its search; after that, a node
/// that never answers is asked once per [`MIN_NODE_PING_TIME`] again.
pub const REFILL_GAP: Duration = Duration::from_secs(1);
/// DHT-PK announcements over the onion (ONION_DHTPK_SEND_INTERVAL).
pub const DHTPK_ONION_INTERVAL: Duration = Duration::from_secs(30);
/// DHT-PK announcements over the onion to a friend we are still searching
/// for in its first rounds (c-toxcore always waits 30 s).
pub const DHTPK_ONION_INTERVAL_NEW: Duration = Duration::from_secs(5);
/// DHT-PK announcements over the DHT (DHT_DHTPK_SEND_INTERVAL).
pub const DHTPK_DHT_INTERVAL: Duration = Duration::from_secs(20);
/// Search interval per node for new friends. c-toxcore waits 3 s
/// (ANNOUNCE_FRIEND_NEW_INTERVAL); a friend that is starting too is often
/// announced a moment after our first ask, and asking again sooner is what
/// brings two fresh nodes together in about a second instead of several.
/// It costs one small onion request per node per second, for the first
/// rounds only.
pub const FRIEND_NEW_INTERVAL: Duration = Duration::from_secs(1);
/// The slowest interval of the exponential back-off starts from this.
pub const FRIEND_BACKOFF_FLOOR: Duration = Duration::from_secs(3);
/// Rounds a friend counts as new (ANNOUNCE_FRIEND_RUN_COUNT_BEGINNING).
pub const FRIEND_NEW_ROUNDS: u32 = 5;
/// Longest search interval (ANNOUNCE_FRIEND_MAX_INTERVAL).
pub const FRIEND_MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Lists are refilled from path nodes at least this often (ANNOUNCE_POPULATE_TIMEOUT).
pub const POPULATE_TIMEOUT: Duration = Duration::from_secs(600);
/// We count as offline after this long without any response (ONION_OFFLINE_TIMEOUT).
pub const OFFLINE_TIMEOUT: Duration = Duration::from_secs(15 * (3 + 2));
/// How often the client's periodic work runs.
pub const TICK: Duration = Duration::from_millis(500);

/// What the onion client tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnionEvent {
    /// Someone sent us a friend request through the onion.
    FriendRequest {
        /// Their real public key.
        real_pk: PublicKey,
        /// The nospam they used (to check against ours).
        nospam: NoSpam,
        /// Their message.
        message: Bytes,
    },
    /// A friend told us its DHT key (and where it is reachable).
    FriendDhtPk {
        /// The friend's real public key.
        real_pk: PublicKey,
        /// Its current DHT public key.
        dht_pk: PublicKey,
        /// DHT nodes near it and TCP relays it is connected to.
        nodes: Vec<PackedNode>,
    },
    /// We became announced (connected to the onion) or stopped being so.
    Connected(bool),
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnionClientStats {
    /// Announce requests sent (for ourselves and for friends).
    pub announce_requests_sent: u64,
    /// Announce responses accepted.
    pub announce_responses: u64,
    /// Onion data packets sent.
    pub data_sent: u64,
    /// Onion data packets received and opened.
    pub data_received: u64,
    /// Packets that did not decode or decrypt, or answered nothing we asked.
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct OnionNode {
    public_key: PublicKey,
    addr: SocketAddr,
    ping_id: [u8; 32],
    /// Friend lists: the friend's data key, when this node stores it.
    data_pk: Option<PublicKey>,
    stored: bool,
    last_response: Instant,
    last_pinged: Option<Instant>,
    unanswered: u32,
    added: Instant,
    path: u32,
}

impl OnionNode {
    fn timed_out(&self, now: Instant) -> bool {
        self.unanswered >= NODE_MAX_PINGS && self.last_pinged.is_some_and(|t| now >= t + NODE_PING_INTERVAL)
    }
}

/// Which list a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own,
    Friend(PublicKey),
}

#[derive(Debug, Clone, Copy)]
struct Sendback {
    target: Target,
    node_pk: PublicKey,
    node_addr: SocketAddr,
    path: u32,
    sent: Instant,
}

#[derive(Debug)]
struct Friend {
    real_pk: PublicKey,
    /// The key pair our searches for this friend are sent with.
    search_keys: KeyPair,
    nodes: Vec<OnionNode>,
    online: bool,
    last_no_replay: u64,
    dht_pk: Option<PublicKey>,
    rounds: u32,
    pings: u32,
    last_search_ping: Option<Instant>,
    last_populated: Option<Instant>,
    last_dhtpk_onion: Option<Instant>,
    last_dhtpk_dht: Option<Instant>,
    /// The external address our last DHT-PK to this friend carried.
    told_external: Option<SocketAddr>,
    recently_pinged: VecDeque<(PublicKey, Instant)>,
}

/// The onion client.
#[derive(Debug)]
pub struct OnionClient {
    real_keys: KeyPair,
    dht_keys: KeyPair,
    data_keys: KeyPair,
    announce_nodes: Vec<OnionNode>,
    friends: Vec<Friend>,
    own_paths: Paths,
    friend_paths: Paths,
    path_nodes: PathNodes,
    bootstrap_nodes: PathNodes,
    sendbacks: HashMap<u64, Sendback>,
    recently_pinged: VecDeque<(PublicKey, Instant)>,
    last_announce: Option<Instant>,
    last_populated: Option<Instant>,
    last_response: Option<Instant>,
    connected_seconds: u32,
    connected: bool,
    last_second: Option<Instant>,
    next_tick: Option<Instant>,
    key_cache: KeyCache,
    rng: ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    tcp_relays: Vec<PackedNode>,
    use_tcp: bool,
    tcp_transmits: VecDeque<(PublicKey, TcpOnionRequest)>,
    /// Where the router maps our UDP port (a port mapping), announced in
    /// our DHT-PK packets.
    external: Option<SocketAddr>,
    events: VecDeque<OnionEvent>,
    stats: OnionClientStats,
}

impl OnionClient {
    /// A client for the long-term key pair `real_keys`, building paths whose
    /// first hop sees `dht_keys`; randomness from `seed`.
    pub fn new(real_keys: KeyPair, dht_keys: KeyPair, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let data_keys = KeyPair::generate(&mut rng);
        Self {
            real_keys,
            dht_keys,
            data_keys,
            announce_nodes: Vec::new(),
            friends: Vec::new(),
            own_paths: Paths::default(),
            friend_paths: Paths::default(),
            path_nodes: PathNodes::default(),
            bootstrap_nodes: PathNodes::default(),
            sendbacks: HashMap::new(),
            recently_pinged: VecDeque::new(),
            last_announce: None,
            last_populated: None,
            last_response: None,
            connected_seconds: 0,
            connected: false,
            last_second: None,
            next_tick: None,
            key_cache: KeyCache::new(256),
            rng,
            transmits: VecDeque::new(),
            tcp_relays: Vec::new(),
            use_tcp: false,
            tcp_transmits: VecDeque::new(),
            external: None,
            events: VecDeque::new(),
            stats: OnionClientStats::default(),
        }
    }

    /// Where a router port mapping makes our UDP port reachable (`None`:
    /// nowhere known). It goes into our DHT-PK announcements as a DHT node
    /// with our own DHT key: a friend (tuntox or c-toxcore) asks that node
    /// for nodes, our answer puts us in its DHT lists, and it tries the
    /// address for a direct session. On a change, friends not online get a
    /// fresh announcement at the next tick, online ones one through the DHT.
    pub fn set_external_addr(&mut self, addr: Option<SocketAddr>) {
        if self.external == addr {
            return;
        }
        self.external = addr;
        for friend in &mut self.friends {
            friend.last_dhtpk_onion = None;
            friend.last_dhtpk_dht = None;
        }
    }

    /// The address set by [`set_external_addr`](Self::set_external_addr).
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external
    }

    /// The TCP relays we are connected to, and whether paths should start
    /// at them (UDP off or not working): then hop 1 is a relay, reached
    /// with TCP packet 8, and hops 2 and 3 are UDP nodes as usual.
    pub fn set_tcp_relays(&mut self, relays: Vec<PackedNode>, use_tcp: bool) {
        self.tcp_relays = relays;
        self.use_tcp = use_tcp;
    }

    /// The next onion request for a TCP relay (by the relay's key).
    pub fn poll_tcp_transmit(&mut self) -> Option<(PublicKey, TcpOnionRequest)> {
        self.tcp_transmits.pop_front()
    }

    /// Counters.
    pub fn stats(&self) -> OnionClientStats {
        self.stats
    }

    /// Whether we are announced (c-toxcore's "onion connected").
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Nodes that store us now.
    pub fn announced_to(&self, now: Instant) -> usize {
        self.announce_nodes.iter().filter(|n| n.stored && !n.timed_out(now)).count()
    }

    /// A bootstrap node, used for paths until the DHT gives us others.
    pub fn add_bootstrap_node(&mut self, node: PackedNode) {
        self.bootstrap_nodes.add(node);
    }

    /// Starts searching for a friend (by its real key).
    pub fn add_friend(&mut self, real_pk: PublicKey) {
        if self.friends.iter().any(|f| f.real_pk == real_pk) {
            return;
        }
        let search_keys = KeyPair::generate(&mut self.rng);
        self.friends.push(Friend {
            real_pk,
            search_keys,
            nodes: Vec::new(),
            online: false,
            last_no_replay: 0,
            dht_pk: None,
            rounds: 0,
            pings: 0,
            last_search_ping: None,
            last_populated: None,
            last_dhtpk_onion: None,
            last_dhtpk_dht: None,
            told_external: None,
            recently_pinged: VecDeque::new(),
        });
    }

    /// Stops searching for a friend.
    pub fn remove_friend(&mut self, real_pk: &PublicKey) {
        self.friends.retain(|f| f.real_pk != *real_pk);
    }

    /// Tells the client whether a friend is connected; online friends are
    /// not searched.
    pub fn set_friend_online(&mut self, real_pk: &PublicKey, online: bool) {
        if let Some(friend) = self.friends.iter_mut().find(|f| f.real_pk == *real_pk) {
            friend.online = online;
            if !online {
                friend.last_no_replay = 0;
                friend.rounds = 0;
            }
        }
    }

    /// Nodes that store a friend's announcement now: the friend is on the
    /// network when some do (its friend requests can be delivered).
    pub fn friend_announced(&self, real_pk: &PublicKey, now: Instant) -> usize {
        self.friends
            .iter()
            .find(|f| f.real_pk == *real_pk)
            .map_or(0, |f| f.nodes.iter().filter(|n| n.data_pk.is_some() && !n.timed_out(now)).count())
    }

    /// The DHT key a friend last announced.
    pub fn friend_dht_pk(&self, real_pk: &PublicKey) -> Option<PublicKey> {
        self.friends.iter().find(|f| f.real_pk == *real_pk)?.dht_pk
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<OnionEvent> {
        self.events.pop_front()
    }

    /// When the periodic work next runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    // ---- sending requests -------------------------------------------------

    /// Sends an announce request for `target` to `node` through a path.
    fn send_announce(
        &mut self,
        now: Instant,
        target: Target,
        node: PackedNode,
        ping_id: [u8; 32],
        path: Option<u32>,
    ) -> bool {
        let (paths, keys, searched, data_pk) = match target {
            Target::Own => (&mut self.own_paths, &self.real_keys, *self.real_keys.public(), *self.data_keys.public()),
            Target::Friend(pk) => {
                let Some(friend) = self.friends.iter().find(|f| f.real_pk == pk) else { return false };
                (&mut self.friend_paths, &friend.search_keys, pk, PublicKey::from_bytes([0; 32]))
            }
        };
        let tcp_first = self.use_tcp.then_some(self.tcp_relays.as_slice());
        let Some(chosen) = paths.choose(
            now,
            path,
            &mut self.path_nodes,
            &mut self.bootstrap_nodes,
            tcp_first,
            &self.dht_keys,
            &mut self.rng,
        ) else {
            return false;
        };
        let keys = keys.clone();
        let sendback = loop {
            let id = self.rng.next_u64();
            if id != 0 && !self.sendbacks.contains_key(&id) {
                break id;
            }
        };
        let payload = AnnounceRequestPayload { ping_id, searched_pk: searched, data_pk, sendback, extra: None };
        let Ok(key) = SharedKey::precompute(&node.public_key, keys.secret()) else { return false };
        let nonce = Nonce::random(&mut self.rng);
        let Ok(request) = OnionAnnounceRequest::seal(*keys.public(), &key, nonce, &payload) else { return false };
        let mut body = BytesMut::with_capacity(request.encoded_len());
        request.encode(&mut body);
        if !self.send_onion(&chosen.onion, node.addr, &body) {
            return false;
        }
        self.expire_sendbacks(now);
        if self.sendbacks.len() >= MAX_SENDBACKS
            && let Some(oldest) = self.sendbacks.iter().min_by_key(|(_, s)| s.sent).map(|(id, _)| *id)
        {
            self.sendbacks.remove(&oldest);
        }
        tracing::trace!(
            ?target,
            node = %node.addr,
            path = chosen.number,
            hops = ?chosen.onion.nodes().map(|n| n.addr),
            "onion announce request"
        );
        let entry = Sendback { target, node_pk: node.public_key, node_addr: node.addr, path: chosen.number, sent: now };
        self.sendbacks.insert(sendback, entry);
        self.stats.announce_requests_sent += 1;
        true
    }

    fn send_onion(&mut self, path: &crate::wire::onion_request::OnionPath, dest: SocketAddr, payload: &[u8]) -> bool {
        let nonce = Nonce::random(&mut self.rng);
        let hop1 = path.nodes()[0];
        if hop1.protocol == Protocol::Tcp {
            let Ok(request) = path.tcp_request(nonce, dest, payload) else { return false };
            self.tcp_transmits.push_back((hop1.public_key, TcpOnionRequest::new(&request)));
            return true;
        }
        let Ok(request) = path.request(nonce, dest, payload) else { return false };
        let mut buf = BytesMut::with_capacity(request.encoded_len());
        request.encode(&mut buf);
        self.transmits.push_back(Transmit { dst: hop1.addr, payload: buf.freeze() });
        true
    }

    fn expire_sendbacks(&mut self, now: Instant) {
        self.sendbacks.retain(|_, s| now < s.sent + SENDBACK_TIMEOUT);
    }

    /// Sends onion data (`[kind][data]`) to a friend through every node
    /// that stores it. Returns how many copies went out.
    pub fn send_data(&mut self, now: Instant, friend_pk: &PublicKey, plaintext: &[u8]) -> usize {
        let Some(friend) = self.friends.iter().find(|f| f.real_pk == *friend_pk) else { return 0 };
        let live: Vec<&OnionNode> = friend.nodes.iter().filter(|n| !n.timed_out(now)).collect();
        let good: Vec<(SocketAddr, PublicKey, u32)> =
            live.iter().filter_map(|n| n.data_pk.map(|data_pk| (n.addr, data_pk, n.path))).collect();
        // As c-toxcore: enough of the live nodes must store the friend.
        if good.is_empty() || good.len() < (live.len().saturating_sub(1)) / 4 + 1 {
            return 0;
        }
        let nonce = Nonce::random(&mut self.rng);
        let Ok(inner_key) = self.key_cache.get(friend_pk, self.real_keys.secret()).cloned() else { return 0 };
        let envelope = OnionDataEnvelope::seal(*self.real_keys.public(), &inner_key, &nonce, plaintext);
        let mut sent = 0;
        for (addr, data_pk, answered_on) in good {
            let temp = KeyPair::generate(&mut self.rng);
            let Ok(key) = SharedKey::precompute(&data_pk, temp.secret()) else { continue };
            let Ok(request) = OnionDataRequest::seal(*friend_pk, nonce, *temp.public(), &key, &envelope) else {
                continue;
            };
            let mut body = BytesMut::with_capacity(request.encoded_len());
            request.encode(&mut body);
            // The path the node last answered on is known to reach it.
            let tcp_first = self.use_tcp.then_some(self.tcp_relays.as_slice());
            let Some(path) = self.friend_paths.choose(
                now,
                Some(answered_on),
                &mut self.path_nodes,
                &mut self.bootstrap_nodes,
                tcp_first,
                &self.dht_keys,
                &mut self.rng,
            ) else {
                continue;
            };
            if self.send_onion(&path.onion, addr, &body) {
                sent += 1;
            }
        }
        self.stats.data_sent += sent as u64;
        sent
    }

    /// Sends a friend request through the onion; how many copies went out
    /// (0 while the friend's announce nodes are not found yet).
    pub fn send_friend_request(&mut self, now: Instant, friend_pk: &PublicKey, request: &FriendRequest) -> usize {
        let mut plain = BytesMut::with_capacity(request.encoded_len());
        request.encode(&mut plain);
        self.send_data(now, friend_pk, &plain)
    }

    /// Our DHT-PK announcement: our DHT key, up to 2 TCP relays, our
    /// mapped address when a router maps our port, and DHT nodes close to
    /// us, 4 in all.
    fn dht_pk_announce(&self, unix_secs: u64, dht: &Dht, relays: &[PackedNode], now: Instant) -> Option<DhtPkAnnounce> {
        let mut nodes: Vec<PackedNode> = relays.iter().take(2).copied().collect();
        let own = *dht.public_key();
        // Ourselves at the router's mapped address, before the DHT nodes.
        nodes.extend(self.external.map(|addr| PackedNode::udp(addr, own)));
        nodes.extend(dht.closest_nodes(&own, 4 - nodes.len(), false, now));
        DhtPkAnnounce::new(unix_secs, own, nodes).ok()
    }

    // ---- receiving --------------------------------------------------------

    /// An announce response (0x84) arrived from hop 1 at `from`.
    pub fn handle_announce_response(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        if self.handle_announce_response_inner(now, from, data).is_none() {
            self.stats.dropped += 1;
        }
    }

    fn handle_announce_response_inner(&mut self, now: Instant, from: SocketAddr, data: Bytes) -> Option<()> {
        let response = OnionAnnounceResponse::decode(data).ok()?;
        self.expire_sendbacks(now);
        let sendback = self.sendbacks.remove(&response.sendback)?;
        let secret = match sendback.target {
            Target::Own => self.real_keys.secret().clone(),
            Target::Friend(pk) => self.friends.iter().find(|f| f.real_pk == pk)?.search_keys.secret().clone(),
        };
        let key = SharedKey::precompute(&sendback.node_pk, &secret).ok()?;
        let plain = response.open(&key).ok()?;
        tracing::trace!(
            target = ?sendback.target,
            node = %sendback.node_addr,
            path = sendback.path,
            status = ?plain.status,
            "onion announce response"
        );
        let paths = match sendback.target {
            Target::Own => &mut self.own_paths,
            Target::Friend(_) => &mut self.friend_paths,
        };
        if let Some(hops) = paths.success(sendback.path, now) {
            for hop in hops {
                self.path_nodes.add(hop);
            }
            self.path_nodes.worked(&hops);
            self.bootstrap_nodes.worked(&hops);
        }
        self.stats.announce_responses += 1;
        self.last_response = Some(now);
        let node = PackedNode::udp(sendback.node_addr, sendback.node_pk);
        self.path_nodes.add(node);
        self.add_to_list(now, sendback.target, node, plain.status, sendback.path);
        let lan_ok = is_lan(from.ip());
        for found in plain.nodes() {
            if found.protocol == Protocol::Udp && (lan_ok || !is_lan(found.addr.ip())) {
                self.consider(now, sendback.target, *found, MIN_NODE_PING_TIME);
            }
        }
        Some(())
    }

    /// Records a node's answer in the list for `target` (c-toxcore's
    /// `client_add_to_list`): it takes its own slot, the worst slot if it is
    /// closer than that node, or a timed-out slot.
    fn add_to_list(&mut self, now: Instant, target: Target, node: PackedNode, status: AnnounceStatus, path: u32) {
        let own_data = *self.data_keys.public();
        let (list, reference, capacity) = match target {
            Target::Own => (&mut self.announce_nodes, *self.real_keys.public(), MAX_ANNOUNCE_NODES),
            Target::Friend(pk) => {
                let Some(friend) = self.friends.iter_mut().find(|f| f.real_pk == pk) else { return };
                (&mut friend.nodes, pk, MAX_FRIEND_NODES)
            }
        };
        let (stored, data_pk, ping_id) = match (target, status) {
            (Target::Own, AnnounceStatus::Announced { ping_id }) => (true, None, ping_id),
            (Target::Own, AnnounceStatus::NotStored { ping_id }) => (false, None, ping_id),
            // Our own key found with our data key means stored; else not.
            (Target::Own, AnnounceStatus::Found { data_pk }) => (data_pk == own_data, None, [0; 32]),
            (Target::Friend(friend), AnnounceStatus::Found { data_pk }) => {
                tracing::trace!(%friend, node = %node.addr, "found where the friend is announced");
                (true, Some(data_pk), [0; 32])
            }
            (Target::Friend(_), AnnounceStatus::NotStored { ping_id }) => (false, None, ping_id),
            (Target::Friend(_), AnnounceStatus::Announced { .. }) => return,
        };
        let index = match list.iter().position(|n| n.public_key == node.public_key) {
            Some(i) => i,
            None if list.len() < capacity => {
                list.push(OnionNode {
                    public_key: node.public_key,
                    addr: node.addr,
                    ping_id,
                    data_pk,
                    stored,
                    last_response: now,
                    last_pinged: None,
                    unanswered: 0,
                    added: now,
                    path,
                });
                return;
            }
            None => {
                let worst = list.iter().enumerate().max_by(|(_, a), (_, b)| {
                    a.timed_out(now)
                        .cmp(&b.timed_out(now))
                        .then_with(|| cmp_distance(&reference, &a.public_key, &b.public_key))
                });
                match worst {
                    Some((i, w))
                        if w.timed_out(now) || cmp_distance(&reference, &node.public_key, &w.public_key).is_lt() =>
                    {
                        list[i].last_pinged = None;
                        list[i].added = now;
                        i
                    }
                    _ => return,
                }
            }
        };
        let entry = &mut list[index];
        entry.public_key = node.public_key;
        entry.addr = node.addr;
        entry.ping_id = ping_id;
        entry.data_pk = data_pk;
        entry.stored = stored;
        entry.last_response = now;
        entry.unanswered = 0;
        entry.path = path;
    }

    /// A node named in a response: ask it too if it would improve the list
    /// (c-toxcore's `client_ping_nodes`), at most once per `gap` per node
    /// ([`MIN_NODE_PING_TIME`] for nodes named in responses; less for the
    /// path nodes a thin list is refilled from, see [`REFILL_GAP`]).
    fn consider(&mut self, now: Instant, target: Target, node: PackedNode, gap: Duration) {
        let (list, reference, capacity, recent) = match target {
            Target::Own => {
                (&self.announce_nodes, *self.real_keys.public(), MAX_ANNOUNCE_NODES, &mut self.recently_pinged)
            }
            Target::Friend(pk) => {
                let Some(friend) = self.friends.iter_mut().find(|f| f.real_pk == pk) else { return };
                (&friend.nodes, pk, MAX_FRIEND_NODES, &mut friend.recently_pinged)
            }
        };
        if list.iter().any(|n| n.public_key == node.public_key) || node.public_key == *self.dht_keys.public() {
            return;
        }
        let improves = list.len() < capacity
            || list
                .iter()
                .any(|n| n.timed_out(now) || cmp_distance(&reference, &node.public_key, &n.public_key).is_lt());
        if !improves {
            return;
        }
        recent.retain(|(_, at)| now < *at + MIN_NODE_PING_TIME);
        if recent.iter().any(|(k, at)| *k == node.public_key && now < *at + gap) {
            return;
        }
        recent.retain(|(k, _)| *k != node.public_key);
        recent.push_back((node.public_key, now));
        self.send_announce(now, target, node, [0; 32], None);
    }

    /// An onion data response (0x86) arrived: open it and report friend
    /// requests and DHT-PK announcements.
    pub fn handle_data_response(&mut self, now: Instant, data: Bytes) {
        if self.handle_data_response_inner(now, data).is_none() {
            self.stats.dropped += 1;
        }
    }

    fn handle_data_response_inner(&mut self, now: Instant, data: Bytes) -> Option<()> {
        let response = OnionDataResponse::decode(data).ok()?;
        let outer = SharedKey::precompute(&response.temp_pk, self.data_keys.secret()).ok()?;
        let envelope = response.open(&outer).ok()?;
        let inner = self.key_cache.get(&envelope.sender_pk, self.real_keys.secret()).ok()?;
        let plain = envelope.open(inner, &response.nonce).ok()?;
        self.stats.data_received += 1;
        match OnionDataPayload::decode(plain).ok()? {
            OnionDataPayload::FriendRequest(request) => {
                self.events.push_back(OnionEvent::FriendRequest {
                    real_pk: envelope.sender_pk,
                    nospam: request.nospam,
                    message: request.message().clone(),
                });
            }
            OnionDataPayload::DhtPk(announce) => self.accept_dht_pk(now, envelope.sender_pk, announce)?,
            OnionDataPayload::Other { .. } => return None,
        }
        Some(())
    }

    /// A DHT-PK announcement sent to us over the DHT (DHT request 156 from
    /// the DHT key `sender_dht_pk`).
    pub fn handle_dht_dht_pk(&mut self, now: Instant, sender_dht_pk: &PublicKey, data: Bytes) {
        let accepted = (|| {
            let envelope = DhtPkEnvelope::decode(data).ok()?;
            let key = self.key_cache.get(&envelope.sender_pk, self.real_keys.secret()).ok()?;
            let announce = envelope.open(key).ok()?;
            // It must come from the DHT key it announces.
            if announce.dht_pk != *sender_dht_pk {
                return None;
            }
            self.accept_dht_pk(now, envelope.sender_pk, announce)
        })();
        if accepted.is_none() {
            self.stats.dropped += 1;
        }
    }

    fn accept_dht_pk(&mut self, _now: Instant, real_pk: PublicKey, announce: DhtPkAnnounce) -> Option<()> {
        let friend = self.friends.iter_mut().find(|f| f.real_pk == real_pk)?;
        if announce.no_replay <= friend.last_no_replay {
            return None;
        }
        friend.last_no_replay = announce.no_replay;
        if friend.dht_pk != Some(announce.dht_pk) {
            // A new key: the friend just started, or just accepted us. Answer
            // with our own announcement now rather than at the next interval
            // (once per new key, so two friends never ping-pong).
            friend.last_dhtpk_onion = None;
            friend.last_dhtpk_dht = None;
        }
        tracing::debug!(friend = %real_pk, dht_pk = %announce.dht_pk, "friend announced its DHT key");
        friend.dht_pk = Some(announce.dht_pk);
        self.events.push_back(OnionEvent::FriendDhtPk {
            real_pk,
            dht_pk: announce.dht_pk,
            nodes: announce.nodes().to_vec(),
        });
        Some(())
    }

    // ---- periodic work ----------------------------------------------------

    /// Runs the periodic work if due. `unix_secs` is the wall-clock time in
    /// seconds (DHT-PK announcements carry it so that they keep rising
    /// across restarts); `relays` are TCP relays we are connected to.
    pub fn handle_timeout(&mut self, now: Instant, unix_secs: u64, dht: &mut Dht, relays: &[PackedNode]) {
        if self.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_tick = Some(now + TICK);
        self.populate_path_nodes(dht, now);
        self.do_announce(now);
        self.update_connected(now);
        for i in 0..self.friends.len() {
            self.do_friend(now, i, unix_secs, dht, relays);
        }
    }

    /// Sends friend `index` our DHT-PK through the DHT (when its DHT key is
    /// known); true if a copy went out.
    fn send_dhtpk_dht(
        &mut self,
        now: Instant,
        index: usize,
        unix_secs: u64,
        dht: &mut Dht,
        relays: &[PackedNode],
    ) -> bool {
        let real_pk = self.friends[index].real_pk;
        let Some(dht_pk) = self.friends[index].dht_pk else { return false };
        let Some(announce) = self.dht_pk_announce(unix_secs, dht, relays, now) else { return false };
        let nonce = Nonce::random(&mut self.rng);
        let Ok(key) = self.key_cache.get(&real_pk, self.real_keys.secret()) else { return false };
        let envelope = DhtPkEnvelope::seal(*self.real_keys.public(), key, nonce, &announce);
        let mut data = BytesMut::with_capacity(envelope.encoded_len());
        envelope.encode(&mut data);
        let payload = DhtRequestPayload::Other { kind: crate::wire::dht_pk_announce::DHT_PK_KIND, data: data.freeze() };
        if dht.send_request_to(now, dht_pk, &payload) > 0 {
            let friend = &mut self.friends[index];
            friend.last_dhtpk_dht = Some(now);
            friend.told_external = self.external;
            return true;
        }
        false
    }

    fn populate_path_nodes(&mut self, dht: &Dht, now: Instant) {
        // A few random good DHT nodes each tick, like c-toxcore's
        // `populate_path_nodes` from its DHT friends' lists.
        let own = *dht.public_key();
        let mut probe = [0u8; 32];
        self.rng.fill_bytes(&mut probe);
        for node in dht.closest_nodes(&PublicKey::from_bytes(probe), 4, true, now) {
            if node.public_key != own {
                self.path_nodes.add(node);
            }
        }
    }

    fn do_announce(&mut self, now: Instant) {
        let mut due = Vec::new();
        let mut alive = 0;
        let recently_announced = self.last_announce.is_some_and(|t| now < t + NODE_PING_INTERVAL);
        for node in &mut self.announce_nodes {
            if node.timed_out(now) {
                continue;
            }
            alive += 1;
            if node.unanswered >= NODE_MAX_PINGS {
                continue;
            }
            let interval = if node.stored && self.own_paths.exists(node.path, now) {
                if now >= node.added + TIME_TO_STABLE && node.unanswered == 0 {
                    ANNOUNCE_INTERVAL_STABLE
                } else {
                    NODE_PING_INTERVAL
                }
            } else {
                ANNOUNCE_INTERVAL_NOT_ANNOUNCED
            };
            if node.last_pinged.is_none_or(|t| now >= t + interval) || !recently_announced {
                let path = if node.unanswered == NODE_MAX_PINGS - 1 { None } else { Some(node.path) };
                due.push((PackedNode::udp(node.addr, node.public_key), node.ping_id, path));
            }
        }
        for (node, ping_id, path) in due {
            if self.send_announce(now, Target::Own, node, ping_id, path)
                && let Some(entry) = self.announce_nodes.iter_mut().find(|n| n.public_key == node.public_key)
            {
                entry.last_pinged = Some(now);
                entry.unanswered += 1;
                self.last_announce = Some(now);
            }
        }
        // Refill from path nodes when the list is thin.
        if alive <= MAX_ANNOUNCE_NODES / 2 || self.last_populated.is_none_or(|t| now >= t + POPULATE_TIMEOUT) {
            let source = if self.path_nodes.is_empty() { &self.bootstrap_nodes } else { &self.path_nodes };
            let picks: Vec<PackedNode> =
                (0..MAX_ANNOUNCE_NODES / 2).filter_map(|_| source.random(&mut self.rng)).collect();
            if !picks.is_empty() {
                self.last_populated = Some(now);
            }
            // Quick retries only until we are announced.
            let gap = if self.connected { MIN_NODE_PING_TIME } else { REFILL_GAP };
            for node in picks {
                self.consider(now, Target::Own, node, gap);
            }
        } else if alive == MAX_ANNOUNCE_NODES {
            self.last_populated = Some(now);
        }
    }

    /// c-toxcore's `onion_isconnected`, counted once per second: connected
    /// after 3 consecutive seconds announced to half the live nodes.
    fn update_connected(&mut self, now: Instant) {
        if self.last_second.is_some_and(|t| now < t + Duration::from_secs(1)) {
            return;
        }
        self.last_second = Some(now);
        let live: Vec<&OnionNode> = self.announce_nodes.iter().filter(|n| !n.timed_out(now)).collect();
        let announced = live.iter().filter(|n| n.stored).count();
        let heard = self.last_response.is_some_and(|t| now < t + OFFLINE_TIMEOUT);
        let path_nodes = self.path_nodes.len().min(MAX_ANNOUNCE_NODES);
        let ok = heard && announced > 0 && live.len() / 2 <= announced && path_nodes / 2 <= live.len();
        if ok {
            self.connected_seconds = (self.connected_seconds + 1).min(6);
        } else {
            self.connected_seconds = self.connected_seconds.saturating_sub(1);
        }
        let connected = self.connected_seconds >= 3 || (ok && self.connected);
        if connected != self.connected {
            self.connected = connected;
            self.events.push_back(OnionEvent::Connected(connected));
        }
    }

    fn do_friend(&mut self, now: Instant, index: usize, unix_secs: u64, dht: &mut Dht, relays: &[PackedNode]) {
        let friend = &self.friends[index];
        if friend.online {
            // A friend reached through a TCP relay learns of a new mapped
            // address, so that it can try the direct path.
            if self.external.is_some()
                && friend.told_external != self.external
                && friend.last_dhtpk_dht.is_none_or(|t| now >= t + DHTPK_ONION_INTERVAL_NEW)
                && self.send_dhtpk_dht(now, index, unix_secs, dht, relays)
            {
                self.friends[index].told_external = self.external;
            }
            return;
        }
        let real_pk = friend.real_pk;
        let new = friend.rounds <= FRIEND_NEW_ROUNDS;
        let interval = if new {
            FRIEND_NEW_INTERVAL
        } else {
            let exponent = (friend.rounds - 2).min(12);
            Duration::from_secs(1 << exponent).clamp(FRIEND_BACKOFF_FLOOR, FRIEND_MAX_INTERVAL)
        };

        // Tell the friend our DHT key; more often while it is new to us, as
        // an announcement may be lost on a path that just broke and the
        // friend may have accepted us only now.
        let dhtpk_interval = if new { DHTPK_ONION_INTERVAL_NEW } else { DHTPK_ONION_INTERVAL };
        if friend.last_dhtpk_onion.is_none_or(|t| now >= t + dhtpk_interval)
            && let Some(announce) = self.dht_pk_announce(unix_secs, dht, relays, now)
        {
            let mut plain = BytesMut::with_capacity(announce.encoded_len());
            announce.encode(&mut plain);
            let sent = self.send_data(now, &real_pk, &plain);
            if sent > 0 {
                tracing::debug!(friend = %real_pk, sent, "sent our DHT key over the onion");
                self.friends[index].last_dhtpk_onion = Some(now);
            }
        }
        if self.friends[index].last_dhtpk_dht.is_none_or(|t| now >= t + DHTPK_DHT_INTERVAL) {
            self.send_dhtpk_dht(now, index, unix_secs, dht, relays);
        }

        // Search: ask the friend's nodes again, spaced out.
        let friend = &self.friends[index];
        let spacing = interval / (MAX_FRIEND_NODES as u32 / 2);
        let mut due = Vec::new();
        let mut alive = 0;
        for node in &friend.nodes {
            if node.timed_out(now) {
                continue;
            }
            alive += 1;
            if node.unanswered >= NODE_MAX_PINGS || node.last_pinged.is_some_and(|t| now < t + interval) {
                continue;
            }
            due.push(PackedNode::udp(node.addr, node.public_key));
        }
        let mut last_ping = friend.last_search_ping;
        for node in due {
            if last_ping.is_some_and(|t| now < t + spacing) {
                break;
            }
            if self.send_announce(now, Target::Friend(real_pk), node, [0; 32], None) {
                let friend = &mut self.friends[index];
                if let Some(entry) = friend.nodes.iter_mut().find(|n| n.public_key == node.public_key) {
                    entry.last_pinged = Some(now);
                    entry.unanswered += 1;
                }
                friend.last_search_ping = Some(now);
                last_ping = Some(now);
                friend.pings += 1;
                if friend.pings % (MAX_FRIEND_NODES as u32 / 2) == 0 {
                    friend.rounds += 1;
                }
            }
        }
        let friend = &self.friends[index];
        if alive == MAX_FRIEND_NODES {
            if !new {
                self.friends[index].last_populated = Some(now);
            }
            return;
        }
        if alive <= MAX_FRIEND_NODES / 2 || friend.last_populated.is_none_or(|t| now >= t + POPULATE_TIMEOUT) {
            let source = if self.path_nodes.is_empty() { &self.bootstrap_nodes } else { &self.path_nodes };
            let picks: Vec<PackedNode> = (0..(source.len().min(super::paths::MAX_PATH_NODES / 4)))
                .filter_map(|_| source.random(&mut self.rng))
                .collect();
            if picks.is_empty() {
                return;
            }
            self.friends[index].last_populated = Some(now);
            // Quick retries only while the friend is new to the search.
            let gap = if new { REFILL_GAP } else { MIN_NODE_PING_TIME };
            for node in picks {
                self.consider(now, Target::Friend(real_pk), node, gap);
            }
        }
    }
}
