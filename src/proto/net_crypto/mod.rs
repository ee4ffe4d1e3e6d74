//! net_crypto: the encrypted, reliable sessions between friends
//! (c-toxcore's `net_crypto.c`; spec: <https://toktok.ltd/spec.html#net-crypto>).
//!
//! Session setup, either side first:
//! 1. The initiator asks for a **cookie** (0x18, sealed with DHT keys); the
//!    responder answers (0x19) with a cookie only it can open, holding the
//!    initiator's real and DHT keys and the time. No state is kept yet.
//! 2. The initiator sends a **handshake** (0x1a) returning that cookie, with
//!    its session key, base nonce and a cookie for the responder, sealed
//!    with the real keys. A responder that accepts the peer (a friend)
//!    answers with its own handshake.
//! 3. Both derive the session key; the first **data** packet (0x1b) makes
//!    the session established. Handshake packets are resent every second,
//!    8 times at most.
//!
//! Two tuntox peers go one step beyond Tox: each session's first lossless
//! packet offers AEGIS-256 ([`cipher_offer`](crate::wire::cipher_offer)),
//! and a side whose peer offered it seals its data packets with it
//! ([`aegis_data`](crate::wire::aegis_data), kind 0x1c) instead of
//! XSalsa20-Poly1305. A c-toxcore peer ignores the offer and never sees
//! 0x1c; docs/decisions/0006-aegis-data.md says why.
//!
//! Data: lossless packets are numbered, buffered until acknowledged, and
//! resent when the receiver's request packets (holes after its cumulative
//! acknowledgement) say they were lost; lossy packets go once. The send rate
//! is ours ([`congestion`]). Every data packet uses the next nonce.
//!
//! Paths ([`path`], after c-toxcore's `send_packet_to`): every packet of a
//! session goes over direct UDP while a UDP packet from the peer arrived
//! within the last 8 s, or when the peer has no TCP relay route; otherwise
//! over the TCP relays the node shares with the peer ([`TcpTransmit`]:
//! routed data, or out-of-band while the peer has not routed us yet).
//! While on TCP, handshake packets are also tried over UDP, and a probe
//! goes over UDP once a second, so a direct path that starts working is
//! taken within a second or two. A direct path that goes silent while
//! packets are in flight, or whose peer keeps using the relay, is left
//! for the relay and not retried at once (a path that works one way only
//! must not swallow everything). The session's numbering and nonces do not
//! depend on the path, so switching loses and duplicates nothing: what was
//! in flight on a direct path that failed is resent through the relay at
//! once, what the relay still carries when the session goes direct arrives
//! later (a copy that arrives twice is dropped by the receive buffer), and
//! the congestion control starts afresh on the new path.

pub mod buffers;
pub mod congestion;
pub mod path;
pub mod replay;
pub mod session;

use std::collections::VecDeque;

use foldhash::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use self::path::PathKind;
use self::session::{Received, SendError, Session, SessionStats, State};
use super::dht::Transmit;
use super::key_cache::KeyCache;
use super::relay::client::RelayId;
use crate::crypto::{KeyPair, Nonce, PublicKey, SharedKey};
use crate::wire::cookie::{Cookie, CookieContents};
use crate::wire::cookie_request::CookieRequest;
use crate::wire::cookie_response::{CookieResponse, CookieResponsePayload};
use crate::wire::crypto_handshake::{CryptoHandshake, CryptoHandshakePayload};
use crate::wire::dht_packet::{DhtPacket, DhtPacketKind};

/// Lossless packets a session holds at most before senders must wait.
pub const DEFAULT_SEND_LIMIT: usize = 16384;

/// How a packet reached us over a TCP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpSource {
    /// Routed data from the peer (both asked the relay for each other).
    Routed,
    /// Out-of-band data through this relay connection.
    Oob(RelayId),
}

/// A packet for a peer over TCP relays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTransmit {
    /// The peer's DHT key (what relays know it by).
    pub dht_pk: PublicKey,
    /// The net_crypto packet.
    pub payload: Bytes,
    /// `Some`: out-of-band through this relay connection (answering a
    /// cookie request that came that way); `None`: the peer's routes.
    pub via: Option<RelayId>,
}

/// Where a packet came from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Udp(SocketAddr),
    Tcp(PublicKey, TcpSource),
}

/// How a peer can be reached besides UDP.
#[derive(Debug, Clone, Copy, Default)]
struct PathState {
    tcp: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The handshake was never answered.
    HandshakeTimeout,
    /// The peer sent a kill packet.
    Killed,
    /// Nothing arrived for too long.
    Timeout,
    /// The peer came back with a new DHT key (it restarted).
    Replaced,
    /// We closed it.
    Local,
}

/// What net_crypto tells the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCryptoEvent {
    /// A session is established.
    Established(PublicKey),
    /// A session ended.
    Closed(PublicKey, CloseReason),
    /// A lossless packet, in order.
    Lossless(PublicKey, Bytes),
    /// A lossy packet.
    Lossy(PublicKey, Bytes),
    /// A peer handshook with a DHT key other than the one we knew.
    PeerDhtPk(PublicKey, PublicKey),
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCryptoStats {
    /// Cookie requests answered.
    pub cookies_given: u64,
    /// Handshakes from peers we do not accept.
    pub refused: u64,
    /// Packets that did not decode, open or match a session.
    pub dropped: u64,
    /// Packets handed out for TCP relays.
    pub tcp_sent: u64,
    /// Packets that arrived through TCP relays.
    pub tcp_received: u64,
}

/// All sessions of a node.
#[derive(Debug)]
pub struct NetCrypto {
    real_keys: KeyPair,
    dht_keys: KeyPair,
    cookie_key: SharedKey,
    sessions: HashMap<PublicKey, Session>,
    by_addr: HashMap<SocketAddr, PublicKey>,
    accept: HashSet<PublicKey>,
    real_cache: KeyCache,
    dht_cache: KeyCache,
    epoch: Option<Instant>,
    last_now: Option<Instant>,
    send_limit: usize,
    /// Offer AEGIS-256 to peers and use it with those that offer it too.
    aegis: bool,
    rng: ChaCha20Rng,
    scratch: Vec<Bytes>,
    transmits: VecDeque<Transmit>,
    tcp_transmits: VecDeque<TcpTransmit>,
    paths: HashMap<PublicKey, PathState>,
    /// Peers whose sessions take a new UDP address from any packet that
    /// opens and moves the session on (tuntox peers: hole punching).
    roaming: HashSet<PublicKey>,
    events: VecDeque<NetCryptoEvent>,
    stats: NetCryptoStats,
}

impl NetCrypto {
    /// Sessions for the long-term key pair `real_keys`, whose cookie
    /// requests are sealed with `dht_keys`; randomness from `seed`.
    pub fn new(real_keys: KeyPair, dht_keys: KeyPair, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let cookie_key = SharedKey::generate(&mut rng);
        Self {
            real_keys,
            dht_keys,
            cookie_key,
            sessions: HashMap::default(),
            by_addr: HashMap::default(),
            accept: HashSet::default(),
            real_cache: KeyCache::new(256),
            dht_cache: KeyCache::new(256),
            epoch: None,
            last_now: None,
            send_limit: DEFAULT_SEND_LIMIT,
            aegis: crate::crypto::aes_hardware(),
            rng,
            scratch: Vec::new(),
            transmits: VecDeque::new(),
            tcp_transmits: VecDeque::new(),
            paths: HashMap::default(),
            roaming: HashSet::default(),
            events: VecDeque::new(),
            stats: NetCryptoStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> NetCryptoStats {
        self.stats
    }

    /// Whether new sessions offer AEGIS-256 data packets (on by default
    /// where AES instructions make it fast; see [`session::DataCipher`]).
    /// Sessions already set up keep what they agreed.
    pub fn set_aegis(&mut self, on: bool) {
        self.aegis = on;
    }

    /// A session's counters and state.
    pub fn session(&self, peer: &PublicKey) -> Option<&Session> {
        self.sessions.get(peer)
    }

    /// Per-session counters.
    pub fn session_stats(&self, peer: &PublicKey) -> Option<SessionStats> {
        self.sessions.get(peer).map(Session::stats)
    }

    /// Accepts (or stops accepting) handshakes from `peer`.
    pub fn set_accept(&mut self, peer: PublicKey, accept: bool) {
        if accept {
            self.accept.insert(peer);
        } else {
            self.accept.remove(&peer);
        }
    }

    fn secs(&mut self, now: Instant) -> u64 {
        self.last_now = Some(now);
        let epoch = *self.epoch.get_or_insert(now);
        (now - epoch).as_secs()
    }

    /// Starts a session with `peer`, whose DHT key is `dht_pk`, unless one
    /// exists. Nothing is sent until an address is known ([`set_addr`](Self::set_addr)).
    pub fn connect(&mut self, now: Instant, peer: PublicKey, dht_pk: PublicKey) {
        self.last_now = Some(now);
        if self.sessions.contains_key(&peer) {
            return;
        }
        let keys = KeyPair::generate(&mut self.rng);
        let send_nonce = Nonce::random(&mut self.rng);
        let mut session = Session::new(peer, dht_pk, State::CookieRequesting, keys, send_nonce, now);
        session.cookie_request_id = self.rng.next_u64();
        let Ok(key) = self.dht_cache.get(&dht_pk, self.dht_keys.secret()) else { return };
        let request = CookieRequest::new(*self.real_keys.public(), session.cookie_request_id);
        let nonce = Nonce::random(&mut self.rng);
        let packet = DhtPacket::seal_payload(*self.dht_keys.public(), key, nonce, &request);
        let mut buf = BytesMut::with_capacity(packet.encoded_len());
        packet.encode(&mut buf);
        session.set_temp(buf.freeze());
        self.sessions.insert(peer, session);
    }

    /// The peer's direct UDP address (from the DHT, or a friend's last
    /// known one). Packets go there; packets from there are taken as the
    /// peer's unless a session that is up (or coming up) already owns the
    /// address: a stale address of a friend that is gone, now used by
    /// another peer (a client restarted on the same port), must not take
    /// that peer's packets away from its session.
    pub fn set_addr(&mut self, peer: &PublicKey, addr: SocketAddr) {
        self.move_addr(peer, addr, false);
    }

    /// Points `peer`'s session at `addr`; `proven` when a packet that only
    /// the peer can make (a handshake) came from there, which takes the
    /// address from any other session.
    fn move_addr(&mut self, peer: &PublicKey, addr: SocketAddr, proven: bool) {
        let Some(session) = self.sessions.get_mut(peer) else { return };
        let old = session.addr.replace(addr);
        if let Some(old) = old.filter(|old| *old != addr) {
            self.unmap_addr(old, peer);
        }
        let owner = self.by_addr.get(&addr).copied();
        let taken = owner.is_some_and(|owner| {
            owner != *peer
                && self.sessions.get(&owner).is_some_and(|s| {
                    s.addr == Some(addr) && matches!(s.state, State::NotConfirmed | State::Established)
                })
        });
        if proven || !taken {
            self.by_addr.insert(addr, *peer);
        }
    }

    /// Lets the session with `peer` take a new UDP address
    /// (peer-reflexive): a data packet from an address no session knows
    /// is tried against the roaming sessions, and one that opens and moves
    /// its session on (a new lossless packet, or an acknowledgement of
    /// something new; never a replay) makes its source the peer's address.
    /// For tuntox peers, whose address changes when hole punching finds a
    /// path or a NAT maps them anew; other sessions take addresses from
    /// handshakes only, as c-toxcore does.
    pub fn set_roaming(&mut self, peer: PublicKey, roaming: bool) {
        if roaming {
            self.roaming.insert(peer);
        } else {
            self.roaming.remove(&peer);
        }
    }

    /// The peer whose session sends to `addr`, if any.
    pub fn peer_at(&self, addr: &SocketAddr) -> Option<PublicKey> {
        self.by_addr.get(addr).copied()
    }

    /// Sends `peer` a probe (a fresh acknowledgement) over UDP now,
    /// whatever the path: a direct path just found is tried at once rather
    /// than at the next probe.
    pub fn probe_udp(&mut self, peer: &PublicKey) {
        let Some(session) = self.sessions.get_mut(peer) else { return };
        let Some(addr) = session.addr else { return };
        if let Some(payload) = session.probe_packet() {
            self.transmits.push_back(Transmit { dst: addr, payload });
        }
    }

    /// `peer` no longer uses `addr`: the address goes to another session
    /// there, if any (the one furthest up), else nowhere.
    fn unmap_addr(&mut self, addr: SocketAddr, peer: &PublicKey) {
        if self.by_addr.get(&addr) != Some(peer) {
            return;
        }
        self.by_addr.remove(&addr);
        let rank = |state: State| match state {
            State::Established => 2,
            State::NotConfirmed => 1,
            _ => 0,
        };
        let heir = self
            .sessions
            .values()
            .filter(|s| s.peer != *peer && s.addr == Some(addr))
            .max_by_key(|s| rank(s.state))
            .map(|s| s.peer);
        if let Some(heir) = heir {
            self.by_addr.insert(addr, heir);
        }
    }

    /// Whether `peer` can be reached through a TCP relay (a route, online
    /// or registered, on a relay connection we share with it). Packets for
    /// it go there when the direct path is not working.
    pub fn set_tcp(&mut self, now: Instant, peer: &PublicKey, available: bool) {
        let path = self.paths.entry(*peer).or_default();
        if path.tcp == available {
            return;
        }
        path.tcp = available;
        if !available {
            self.paths.remove(peer);
        }
        self.flush_session(now, peer);
    }

    /// The TCP routes to `peer` changed (a relay connection ended or a
    /// route came up): a session not on direct UDP restarts its
    /// retransmission timer's back-off and sends what is due.
    pub fn tcp_routes_changed(&mut self, now: Instant, peer: &PublicKey) {
        let Some(session) = self.sessions.get_mut(peer) else { return };
        if session.current_path().is_some_and(|(p, _)| p == PathKind::Udp) {
            return;
        }
        session.path_changed(now);
        self.flush_session(now, peer);
    }

    /// Whether `peer` is marked reachable over TCP.
    pub fn tcp_available(&self, peer: &PublicKey) -> bool {
        self.paths.get(peer).is_some_and(|p| p.tcp)
    }

    /// Whether a session with `peer` is established.
    pub fn is_established(&self, peer: &PublicKey) -> bool {
        self.sessions.get(peer).is_some_and(|s| s.state == State::Established)
    }

    /// Queues a lossless payload (`[id][data]`, id 16-191). Refused as
    /// [`SendError::Full`] while the session holds its limit, or while
    /// what it holds and has not sent yet would take more than a few
    /// milliseconds at its sending rate ([`Session::unsent_room`]): a
    /// sender that always has data waits outside, where a packet of another
    /// stream (a keystroke behind a download) is not stuck behind a queue
    /// of seconds.
    pub fn send_lossless(&mut self, now: Instant, peer: &PublicKey, payload: Bytes) -> Result<u32, SendError> {
        let limit = self.send_limit;
        let session = self.sessions.get_mut(peer).ok_or(SendError::NotConnected)?;
        if session.unsent_room() == 0 {
            return Err(SendError::Full);
        }
        let number = session.send_lossless(payload, limit)?;
        self.flush_session(now, peer);
        Ok(number)
    }

    /// Queues a packet of the friend layer (ALIVE, ONLINE, SHARE_RELAYS):
    /// like [`send_lossless`](Self::send_lossless), but it may go beyond the
    /// send limit, up to the protocol's buffer, so that bulk data keeping
    /// the buffer full never starves the packets that keep the friendship
    /// alive.
    pub fn send_control(&mut self, now: Instant, peer: &PublicKey, payload: Bytes) -> Result<u32, SendError> {
        let session = self.sessions.get_mut(peer).ok_or(SendError::NotConnected)?;
        let number = session.send_lossless(payload, buffers::BUFFER_SIZE as usize)?;
        self.flush_session(now, peer);
        Ok(number)
    }

    /// Sends a lossy payload (`[id][data]`, id 192-254) now.
    pub fn send_lossy(&mut self, now: Instant, peer: &PublicKey, payload: Bytes) -> Result<(), SendError> {
        let session = self.sessions.get_mut(peer).ok_or(SendError::NotConnected)?;
        session.send_lossy(payload)?;
        self.flush_session(now, peer);
        Ok(())
    }

    /// Lossless packets that fit now (see [`send_lossless`](Self::send_lossless)).
    pub fn send_room(&self, peer: &PublicKey) -> usize {
        self.sessions.get(peer).map_or(0, |s| self.send_limit.saturating_sub(s.queued()).min(s.unsent_room()))
    }

    /// Closes the session with `peer`, telling it so.
    pub fn kill(&mut self, peer: &PublicKey) {
        if let Some(mut session) = self.sessions.remove(peer) {
            if session.state == State::Established
                && let Some(packet) = session.kill_packet()
            {
                let tcp = self.tcp_available(peer);
                let direct = session.current_path().is_none_or(|(p, _)| p == PathKind::Udp);
                match session.addr {
                    Some(addr) if direct || !tcp => self.transmits.push_back(Transmit { dst: addr, payload: packet }),
                    _ if tcp => {
                        self.stats.tcp_sent += 1;
                        self.tcp_transmits.push_back(TcpTransmit {
                            dht_pk: session.dht_pk,
                            payload: packet,
                            via: None,
                        });
                    }
                    _ => {}
                }
            }
            if let Some(addr) = session.addr {
                self.unmap_addr(addr, peer);
            }
        }
    }

    fn close(&mut self, peer: &PublicKey, reason: CloseReason) {
        if let Some(session) = self.sessions.remove(peer) {
            if let Some(addr) = session.addr {
                self.unmap_addr(addr, peer);
            }
            self.events.push_back(NetCryptoEvent::Closed(*peer, reason));
        }
    }

    /// Handles a datagram of kind 0x18, 0x19, 0x1a, 0x1b or 0x1c.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        self.handle(now, Origin::Udp(from), data);
    }

    /// Handles a net_crypto packet (0x18 to 0x1c) that came through a TCP
    /// relay from the node with DHT key `from`. Returns the peer's real key
    /// when it was a valid handshake: the relay it came through is one to
    /// route the peer on.
    pub fn handle_tcp(&mut self, now: Instant, from: PublicKey, source: TcpSource, data: Bytes) -> Option<PublicKey> {
        self.stats.tcp_received += 1;
        let handshake = data.first() == Some(&0x1a);
        let peer = self.handle(now, Origin::Tcp(from, source), data)?;
        handshake.then_some(peer)
    }

    fn handle(&mut self, now: Instant, from: Origin, data: Bytes) -> Option<PublicKey> {
        self.last_now = Some(now);
        let result = match data.first() {
            Some(0x18) => self.handle_cookie_request(now, from, data).map(|()| None),
            Some(0x19) => self.handle_cookie_response(now, from, data).map(Some),
            Some(0x1a) => self.handle_handshake(now, from, data),
            Some(0x1b | 0x1c) => self.handle_data(now, from, data).map(Some),
            _ => return None,
        };
        if result.is_none() {
            self.stats.dropped += 1;
        }
        result.flatten()
    }

    /// The session a packet from `from` belongs to.
    fn peer_of(&self, from: Origin) -> Option<PublicKey> {
        match from {
            Origin::Udp(addr) => self.by_addr.get(&addr).copied(),
            Origin::Tcp(dht_pk, _) => self.sessions.values().find(|s| s.dht_pk == dht_pk).map(|s| s.peer),
        }
    }

    fn handle_cookie_request(&mut self, now: Instant, from: Origin, data: Bytes) -> Option<()> {
        let packet = DhtPacket::decode(data).ok()?;
        if packet.kind != DhtPacketKind::CookieRequest {
            return None;
        }
        // Over TCP the relay vouches for the sender's key: it must be the
        // key the request names.
        if let Origin::Tcp(dht_pk, _) = from
            && dht_pk != packet.sender
        {
            return None;
        }
        let secs = self.secs(now);
        let key = self.dht_cache.get(&packet.sender, self.dht_keys.secret()).ok()?.clone();
        let request = CookieRequest::decode(packet.open(&key).ok()?).ok()?;
        let cookie = CookieContents::new(secs, request.real_pk, packet.sender)
            .seal(&self.cookie_key, Nonce::random(&mut self.rng));
        let response = CookieResponse::seal(
            &key,
            Nonce::random(&mut self.rng),
            &CookieResponsePayload::new(cookie, request.echo_id),
        );
        let mut buf = BytesMut::with_capacity(response.encoded_len());
        response.encode(&mut buf);
        let payload = buf.freeze();
        match from {
            Origin::Udp(addr) => self.transmits.push_back(Transmit { dst: addr, payload }),
            Origin::Tcp(dht_pk, source) => {
                let via = match source {
                    TcpSource::Routed => None,
                    TcpSource::Oob(relay) => Some(relay),
                };
                self.stats.tcp_sent += 1;
                self.tcp_transmits.push_back(TcpTransmit { dht_pk, payload, via });
            }
        }
        self.stats.cookies_given += 1;
        Some(())
    }

    fn handle_cookie_response(&mut self, now: Instant, from: Origin, data: Bytes) -> Option<PublicKey> {
        let response = CookieResponse::decode(data).ok()?;
        // Over UDP, every session asking for a cookie at that address may
        // be the one answered: a stale session of a friend that is gone can
        // share it with a live peer.
        let candidates: Vec<PublicKey> = match from {
            Origin::Udp(addr) => self
                .sessions
                .values()
                .filter(|s| s.addr == Some(addr) && s.state == State::CookieRequesting)
                .map(|s| s.peer)
                .collect(),
            Origin::Tcp(..) => self.peer_of(from).into_iter().collect(),
        };
        for peer in candidates {
            let Some(session) = self.sessions.get(&peer) else { continue };
            if session.state != State::CookieRequesting {
                continue;
            }
            let Ok(key) = self.dht_cache.get(&session.dht_pk, self.dht_keys.secret()).cloned() else { continue };
            let Ok(payload) = response.open(&key) else { continue };
            if payload.echo_id != session.cookie_request_id {
                continue;
            }
            let handshake = self.make_handshake(now, &peer, &payload.cookie)?;
            let session = self.sessions.get_mut(&peer)?;
            session.set_temp(handshake);
            session.state = State::HandshakeSent;
            self.flush_session(now, &peer);
            return Some(peer);
        }
        None
    }

    /// Our handshake for `peer`, returning `peer_cookie`.
    fn make_handshake(&mut self, now: Instant, peer: &PublicKey, peer_cookie: &Cookie) -> Option<Bytes> {
        let secs = self.secs(now);
        let session = self.sessions.get(peer)?;
        let our_cookie =
            CookieContents::new(secs, *peer, session.dht_pk).seal(&self.cookie_key, Nonce::random(&mut self.rng));
        let payload =
            CryptoHandshakePayload::new(session.send_nonce, *session.session_keys.public(), peer_cookie, our_cookie);
        let key = self.real_cache.get(peer, self.real_keys.secret()).ok()?;
        let packet = CryptoHandshake::seal(*peer_cookie, key, Nonce::random(&mut self.rng), &payload);
        let mut buf = BytesMut::with_capacity(packet.encoded_len());
        packet.encode(&mut buf);
        Some(buf.freeze())
    }

    fn handle_handshake(&mut self, now: Instant, from: Origin, data: Bytes) -> Option<Option<PublicKey>> {
        let packet = CryptoHandshake::decode(data).ok()?;
        let secs = self.secs(now);
        let contents = packet.cookie.open(&self.cookie_key).ok()?;
        if !contents.is_fresh(secs) {
            return None;
        }
        let (peer, peer_dht) = (contents.real_pk, contents.dht_pk);
        // Over TCP the relay vouches for the sender's DHT key.
        if let Origin::Tcp(dht_pk, _) = from
            && dht_pk != peer_dht
        {
            return None;
        }
        let key = self.real_cache.get(&peer, self.real_keys.secret()).ok()?;
        let payload = packet.open(key).ok()?;
        let udp_from = match from {
            Origin::Udp(addr) => Some(addr),
            Origin::Tcp(..) => None,
        };

        match self.sessions.get(&peer).map(|s| (s.state, s.dht_pk)) {
            Some((state, dht)) if dht == peer_dht => {
                if state == State::Established {
                    return None;
                }
                let aegis = self.aegis;
                let session = self.sessions.get_mut(&peer)?;
                session.recv_nonce = payload.base_nonce;
                if !session.set_peer_session_key(&payload.session_pk, aegis) {
                    return None;
                }
                if state == State::CookieRequesting || udp_from.is_some_and(|addr| session.addr != Some(addr)) {
                    let handshake = self.make_handshake(now, &peer, &payload.cookie)?;
                    self.sessions.get_mut(&peer)?.set_temp(handshake);
                }
                self.sessions.get_mut(&peer)?.state = State::NotConfirmed;
            }
            existing => {
                if existing.is_some() {
                    self.events.push_back(NetCryptoEvent::PeerDhtPk(peer, peer_dht));
                    self.close(&peer, CloseReason::Replaced);
                }
                if !self.accept.contains(&peer) {
                    self.stats.refused += 1;
                    return Some(None);
                }
                let keys = KeyPair::generate(&mut self.rng);
                let send_nonce = Nonce::random(&mut self.rng);
                let mut session = Session::new(peer, peer_dht, State::NotConfirmed, keys, send_nonce, now);
                session.recv_nonce = payload.base_nonce;
                if !session.set_peer_session_key(&payload.session_pk, self.aegis) {
                    return None;
                }
                self.sessions.insert(peer, session);
                let handshake = self.make_handshake(now, &peer, &payload.cookie)?;
                self.sessions.get_mut(&peer)?.set_temp(handshake);
            }
        }
        if let Some(addr) = udp_from {
            self.move_addr(&peer, addr, true);
            if let Some(session) = self.sessions.get_mut(&peer) {
                session.heard_udp(now, addr);
            }
        }
        self.flush_session(now, &peer);
        Some(Some(peer))
    }

    fn handle_data(&mut self, now: Instant, from: Origin, data: Bytes) -> Option<PublicKey> {
        let peer = match (self.peer_of(from), from) {
            (Some(peer), _) => peer,
            (None, Origin::Udp(addr)) if !self.roaming.is_empty() => return self.handle_roaming(now, addr, data),
            (None, _) => return None,
        };
        let session = self.sessions.get_mut(&peer)?;
        if !matches!(session.state, State::NotConfirmed | State::Established) {
            return None;
        }
        let mut packet = BytesMut::from(data);
        let mut delivered = Vec::new();
        if !session.handle_data(now, &mut packet, &mut delivered) {
            return None;
        }
        match from {
            Origin::Udp(addr) => session.heard_udp(now, addr),
            Origin::Tcp(..) => session.heard_tcp(now),
        }
        if self.deliver(peer, delivered) {
            self.flush_session(now, &peer);
        }
        Some(peer)
    }

    /// A data packet from `addr`, which no session knows: tried against
    /// the roaming sessions (see [`set_roaming`](Self::set_roaming)).
    fn handle_roaming(&mut self, now: Instant, addr: SocketAddr, data: Bytes) -> Option<PublicKey> {
        let peers: Vec<PublicKey> = self.roaming.iter().copied().collect();
        for peer in peers {
            let Some(session) = self.sessions.get_mut(&peer) else { continue };
            let mut packet = BytesMut::from(&data[..]);
            let mut delivered = Vec::new();
            let Some(advanced) = session.try_data(now, &mut packet, &mut delivered) else { continue };
            if advanced {
                tracing::debug!(?peer, %addr, "net_crypto: the peer's address changed");
                self.set_addr(&peer, addr);
                if let Some(session) = self.sessions.get_mut(&peer) {
                    session.heard_udp(now, addr);
                }
            }
            if self.deliver(peer, delivered) {
                self.flush_session(now, &peer);
            }
            return Some(peer);
        }
        None
    }

    /// Turns what a session received into events; false if it was killed.
    fn deliver(&mut self, peer: PublicKey, delivered: Vec<Received>) -> bool {
        for item in delivered {
            match item {
                Received::Established => self.events.push_back(NetCryptoEvent::Established(peer)),
                Received::Lossless(payload) => self.events.push_back(NetCryptoEvent::Lossless(peer, payload)),
                Received::Lossy(payload) => self.events.push_back(NetCryptoEvent::Lossy(peer, payload)),
                Received::Killed => {
                    self.close(&peer, CloseReason::Killed);
                    return false;
                }
            }
        }
        true
    }

    /// Holds or releases a session's received lossless packets: while
    /// paused, packets stay in the receive buffer and are not acknowledged
    /// past it; releasing queues what was held as events. No-op without a
    /// session.
    pub fn set_receive_paused(&mut self, now: Instant, peer: &PublicKey, paused: bool) {
        let Some(session) = self.sessions.get_mut(peer) else { return };
        let mut delivered = Vec::new();
        session.set_recv_paused(paused, &mut delivered);
        if self.deliver(*peer, delivered) {
            self.flush_session(now, peer);
        }
    }

    /// Sends whatever one session has due, each packet on its path
    /// ([`path`]): direct UDP, or the relays with handshakes also tried over
    /// UDP and a probe over UDP once a second.
    fn flush_session(&mut self, now: Instant, peer: &PublicKey) {
        let Some(session) = self.sessions.get_mut(peer) else { return };
        let tcp = self.paths.get(peer).is_some_and(|p| p.tcp);
        let addr = session.addr;
        if addr.is_none() && !tcp {
            return;
        }
        let udp = session.choose_path(now, tcp) == PathKind::Udp;
        let dht_pk = session.dht_pk;
        let mut out = std::mem::take(&mut self.scratch);
        if let Some(temp) = session.temp_due(now) {
            out.push(temp);
        }
        session.flush(now, &mut out);
        if udp {
            if let Some(addr) = addr {
                for payload in out.drain(..) {
                    self.transmits.push_back(Transmit { dst: addr, payload });
                }
            }
            out.clear();
            self.scratch = out;
            return;
        }
        if let Some(addr) = addr
            && session.probe_due(now)
            && let Some(probe) = session.probe_packet()
        {
            self.transmits.push_back(Transmit { dst: addr, payload: probe });
        }
        for payload in out.drain(..) {
            if let Some(addr) = addr
                && matches!(payload.first(), Some(0x18 | 0x1a))
            {
                self.transmits.push_back(Transmit { dst: addr, payload: payload.clone() });
            }
            self.stats.tcp_sent += 1;
            self.tcp_transmits.push_back(TcpTransmit { dht_pk, payload, via: None });
        }
        self.scratch = out;
    }

    /// Runs timers: handshake resends and give-ups, acknowledgements,
    /// pacing, retransmissions, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        let peers: Vec<PublicKey> = self.sessions.keys().copied().collect();
        for peer in peers {
            let Some(session) = self.sessions.get(&peer) else { continue };
            if session.handshake_failed(now) {
                self.close(&peer, CloseReason::HandshakeTimeout);
                continue;
            }
            if session.state == State::Established && session.timed_out(now) {
                self.close(&peer, CloseReason::Timeout);
                continue;
            }
            self.flush_session(now, &peer);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let now = self.last_now?;
        self.sessions
            .values()
            .filter(|s| s.addr.is_some() || s.state == State::Established || self.tcp_available(&s.peer))
            .filter_map(|s| s.next_wakeup(now))
            .min()
    }

    /// One line per session, for diagnostics.
    pub fn debug_sessions(&self) -> Vec<String> {
        let now = self.last_now.unwrap_or_else(|| self.epoch.unwrap_or_else(|| unreachable!()));
        self.sessions.values().map(|s| format!("{:?} addr {:?}: {}", s.peer, s.addr, s.debug_line(now))).collect()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next packet for the TCP relays.
    pub fn poll_tcp_transmit(&mut self) -> Option<TcpTransmit> {
        self.tcp_transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<NetCryptoEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand_chacha::ChaCha8Rng;

    use super::*;

    struct Pair {
        now: Instant,
        a: NetCrypto,
        b: NetCrypto,
        a_pk: PublicKey,
        b_pk: PublicKey,
        a_addr: SocketAddr,
        b_addr: SocketAddr,
        rng: ChaCha8Rng,
        loss: f64,
        events_a: Vec<NetCryptoEvent>,
        events_b: Vec<NetCryptoEvent>,
        in_flight: Vec<(Instant, bool, SocketAddr, Bytes)>,
        /// Datagrams from `a` to drop before the random loss applies.
        drop_from_a: usize,
        /// The kind byte of every datagram each side sent.
        kinds_a: Vec<u8>,
        kinds_b: Vec<u8>,
    }

    impl Pair {
        /// Two sessions that both offer AEGIS-256, whatever the CPU.
        fn new(seed: u64, loss: f64) -> Self {
            Self::with_aegis(seed, loss, true, true)
        }

        fn with_aegis(seed: u64, loss: f64, a_aegis: bool, b_aegis: bool) -> Self {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let keys: Vec<KeyPair> = (0..4).map(|_| KeyPair::generate(&mut rng)).collect();
            let (a_pk, b_pk) = (*keys[0].public(), *keys[2].public());
            let mut a = NetCrypto::new(keys[0].clone(), keys[1].clone(), [1; 32]);
            let mut b = NetCrypto::new(keys[2].clone(), keys[3].clone(), [2; 32]);
            a.set_accept(b_pk, true);
            b.set_accept(a_pk, true);
            a.set_aegis(a_aegis);
            b.set_aegis(b_aegis);
            let now = crate::proto::test_epoch();
            let a_addr: SocketAddr = "198.18.0.1:33445".parse().unwrap();
            let b_addr: SocketAddr = "198.18.0.2:33445".parse().unwrap();
            a.connect(now, b_pk, *keys[3].public());
            a.set_addr(&b_pk, b_addr);
            Self {
                now,
                a,
                b,
                a_pk,
                b_pk,
                a_addr,
                b_addr,
                rng: ChaCha8Rng::seed_from_u64(seed),
                loss,
                events_a: Vec::new(),
                events_b: Vec::new(),
                in_flight: Vec::new(),
                drop_from_a: 0,
                kinds_a: Vec::new(),
                kinds_b: Vec::new(),
            }
        }

        /// Moves time by `step`, delivering datagrams with 5 ms latency.
        fn step(&mut self, step: Duration) {
            self.now += step;
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            for _ in 0..4 {
                while let Some(t) = self.a.poll_transmit() {
                    self.kinds_a.extend(t.payload.first());
                    if self.drop_from_a > 0 {
                        self.drop_from_a -= 1;
                        continue;
                    }
                    if (self.rng.next_u64() % 1000) as f64 >= self.loss * 1000.0 {
                        self.in_flight.push((self.now + Duration::from_millis(5), true, t.dst, t.payload));
                    }
                }
                while let Some(t) = self.b.poll_transmit() {
                    self.kinds_b.extend(t.payload.first());
                    if (self.rng.next_u64() % 1000) as f64 >= self.loss * 1000.0 {
                        self.in_flight.push((self.now + Duration::from_millis(5), false, t.dst, t.payload));
                    }
                }
                let now = self.now;
                let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|(at, ..)| *at <= now);
                self.in_flight = later;
                for (_, from_a, dst, payload) in due {
                    if from_a && dst == self.b_addr {
                        self.b.handle_udp(now, self.a_addr, payload);
                    } else if !from_a && dst == self.a_addr {
                        self.a.handle_udp(now, self.b_addr, payload);
                    }
                }
            }
            while let Some(e) = self.a.poll_event() {
                self.events_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.events_b.push(e);
            }
        }
    }

    #[test]
    fn sessions_come_up_and_carry_data_in_order() {
        let mut p = Pair::new(1, 0.0);
        for _ in 0..50 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.events_a.contains(&NetCryptoEvent::Established(p.b_pk)), "{:?}", p.events_a);
        assert!(p.events_b.contains(&NetCryptoEvent::Established(p.a_pk)), "{:?}", p.events_b);
        for i in 0..2000u32 {
            let payload = Bytes::from([&[160u8][..], &i.to_be_bytes()].concat());
            while p.a.send_lossless(p.now, &p.b_pk, payload.clone()) == Err(SendError::Full) {
                p.step(Duration::from_millis(1));
            }
        }
        p.a.send_lossy(p.now, &p.b_pk, Bytes::from_static(&[200, 9, 9])).unwrap();
        for _ in 0..2000 {
            p.step(Duration::from_millis(1));
        }
        let received: Vec<u32> = p
            .events_b
            .iter()
            .filter_map(|e| match e {
                NetCryptoEvent::Lossless(_, d) => Some(u32::from_be_bytes(d[1..5].try_into().unwrap())),
                _ => None,
            })
            .collect();
        assert_eq!(received, (0..2000).collect::<Vec<_>>());
        assert!(p.events_b.contains(&NetCryptoEvent::Lossy(p.a_pk, Bytes::from_static(&[200, 9, 9]))));
        assert_eq!(p.a.session(&p.b_pk).unwrap().queued(), 0, "everything acknowledged");
    }

    #[test]
    fn a_lost_last_packet_is_resent_after_a_few_round_trips() {
        let mut p = Pair::new(3, 0.0);
        for _ in 0..50 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.a.is_established(&p.b_pk));
        // Some traffic to learn the round trip (10 ms here).
        for i in 0..50u8 {
            while p.a.send_lossless(p.now, &p.b_pk, Bytes::from(vec![160, i])).is_err() {
                p.step(Duration::from_millis(1));
            }
            p.step(Duration::from_millis(1));
        }
        for _ in 0..100 {
            p.step(Duration::from_millis(1));
        }
        p.events_b.clear();
        // The last packet of the burst is lost, and nothing follows it.
        p.drop_from_a = 1;
        p.a.send_lossless(p.now, &p.b_pk, Bytes::from_static(&[160, 99])).unwrap();
        let sent = p.now;
        while !p.events_b.contains(&NetCryptoEvent::Lossless(p.a_pk, Bytes::from_static(&[160, 99]))) {
            p.step(Duration::from_millis(1));
            assert!(p.now - sent < Duration::from_secs(2), "never resent");
        }
        // A probe after about two round trips, well before the 100 ms floor
        // of the retransmission timeout.
        assert!(p.now - sent < Duration::from_millis(60), "resent after {:?}", p.now - sent);
    }

    #[test]
    fn a_paused_receiver_holds_packets_and_the_sender_waits() {
        let mut p = Pair::new(4, 0.0);
        for _ in 0..50 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.b.is_established(&p.a_pk));
        p.events_b.clear();
        let now = p.now;
        p.b.set_receive_paused(now, &p.a_pk, true);
        let mut sent = 0u32;
        for _ in 0..3000 {
            while p.a.send_lossless(p.now, &p.b_pk, Bytes::from([&[160u8][..], &sent.to_be_bytes()].concat())).is_ok() {
                sent += 1;
            }
            p.step(Duration::from_millis(1));
        }
        let delivered = |events: &[NetCryptoEvent]| -> Vec<u32> {
            events
                .iter()
                .filter_map(|e| match e {
                    NetCryptoEvent::Lossless(_, d) => Some(u32::from_be_bytes(d[1..5].try_into().unwrap())),
                    _ => None,
                })
                .collect()
        };
        assert!(delivered(&p.events_b).is_empty(), "nothing delivered while paused");
        assert!(sent > 0 && p.a.session(&p.b_pk).unwrap().queued() == sent as usize, "nothing acknowledged");
        assert!(p.a.is_established(&p.b_pk) && p.b.is_established(&p.a_pk), "the session stays up");
        let now = p.now;
        p.b.set_receive_paused(now, &p.a_pk, false);
        for _ in 0..2000 {
            p.step(Duration::from_millis(1));
        }
        assert_eq!(delivered(&p.events_b), (0..sent).collect::<Vec<_>>(), "all of it, in order, once");
        assert_eq!(p.a.session(&p.b_pk).unwrap().queued(), 0, "and acknowledged");
    }

    #[test]
    fn lossless_data_survives_loss() {
        let mut p = Pair::new(2, 0.10);
        for _ in 0..400 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.a.is_established(&p.b_pk), "{:?}", p.events_a);
        let total = 3000u32;
        let mut next = 0u32;
        for _ in 0..20_000 {
            while next < total {
                let payload = Bytes::from([&[161u8][..], &next.to_be_bytes(), &[0u8; 500][..]].concat());
                match p.a.send_lossless(p.now, &p.b_pk, payload) {
                    Ok(_) => next += 1,
                    Err(_) => break,
                }
            }
            p.step(Duration::from_millis(1));
            if next == total && p.a.session(&p.b_pk).unwrap().queued() == 0 {
                break;
            }
        }
        let received: Vec<u32> = p
            .events_b
            .iter()
            .filter_map(|e| match e {
                NetCryptoEvent::Lossless(_, d) => Some(u32::from_be_bytes(d[1..5].try_into().unwrap())),
                _ => None,
            })
            .collect();
        assert_eq!(received.len(), total as usize, "all arrived");
        assert_eq!(received, (0..total).collect::<Vec<_>>(), "in order, once");
        assert!(p.a.session_stats(&p.b_pk).unwrap().retransmissions > 0);
    }

    #[test]
    fn friend_layer_packets_fit_when_data_fills_the_buffer() {
        let mut p = Pair::new(5, 0.0);
        for _ in 0..50 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.a.is_established(&p.b_pk));
        p.a.send_limit = 8;
        let now = p.now;
        while p.a.send_lossless(now, &p.b_pk, Bytes::from_static(&[160, 1])).is_ok() {}
        assert_eq!(p.a.send_lossless(now, &p.b_pk, Bytes::from_static(&[160, 2])), Err(SendError::Full));
        assert_eq!(p.a.send_room(&p.b_pk), 0);
        // ALIVE still goes in, and arrives after the data.
        p.a.send_control(now, &p.b_pk, Bytes::from_static(&[16])).unwrap();
        for _ in 0..200 {
            p.step(Duration::from_millis(1));
        }
        let lossless: Vec<&Bytes> = p
            .events_b
            .iter()
            .filter_map(|e| match e {
                NetCryptoEvent::Lossless(_, d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(lossless.len(), 9, "{lossless:?}");
        assert_eq!(lossless[8], &Bytes::from_static(&[16]));
    }

    #[test]
    fn what_waits_unsent_stays_a_few_milliseconds_of_the_rate() {
        let mut p = Pair::new(12, 0.0);
        for _ in 0..50 {
            p.step(Duration::from_millis(5));
        }
        let now = p.now;
        let mut queued = 0;
        while p.a.send_lossless(now, &p.b_pk, Bytes::from_static(&[160, 1])).is_ok() {
            queued += 1;
        }
        // The window lets some go at once; what waits is MIN_UNSENT at a
        // rate not measured yet.
        let session = p.a.session(&p.b_pk).unwrap();
        assert_eq!(session.queued(), queued);
        assert!(queued < session::MIN_UNSENT + 64, "{queued} queued");
        assert_eq!(p.a.send_room(&p.b_pk), 0);
        // A friend-layer packet still goes in.
        p.a.send_control(now, &p.b_pk, Bytes::from_static(&[16])).unwrap();
        // As packets go out, room comes back.
        p.step(Duration::from_millis(20));
        assert!(p.a.send_room(&p.b_pk) > 0);
    }

    /// Sends `count` numbered lossless packets from a to b and returns what
    /// b delivered.
    fn stream(p: &mut Pair, count: u32) -> Vec<u32> {
        let mut next = 0;
        for _ in 0..5000 {
            while next < count
                && p.a.send_lossless(p.now, &p.b_pk, Bytes::from([&[160u8][..], &next.to_be_bytes()].concat())).is_ok()
            {
                next += 1;
            }
            p.step(Duration::from_millis(1));
            if next == count && p.a.session(&p.b_pk).unwrap().queued() == 0 {
                break;
            }
        }
        p.events_b
            .iter()
            .filter_map(|e| match e {
                NetCryptoEvent::Lossless(_, d) => Some(u32::from_be_bytes(d[1..5].try_into().ok()?)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_sessions_that_offer_aegis_switch_to_it() {
        let mut p = Pair::with_aegis(7, 0.02, true, true);
        for _ in 0..100 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.a.is_established(&p.b_pk) && p.b.is_established(&p.a_pk));
        assert_eq!(stream(&mut p, 3000), (0..3000).collect::<Vec<_>>(), "in order, once, through 2% loss");
        assert_eq!(p.a.session(&p.b_pk).unwrap().cipher(), session::DataCipher::Aegis256);
        assert_eq!(p.b.session(&p.a_pk).unwrap().cipher(), session::DataCipher::Aegis256);
        // The first data packets are Tox's (the offers go in them), the
        // rest AEGIS-256; nothing else was sent.
        let data = |kinds: &[u8]| kinds.iter().filter(|k| matches!(k, 0x1b | 0x1c)).count();
        let aegis = |kinds: &[u8]| kinds.iter().filter(|&&k| k == 0x1c).count();
        assert!(aegis(&p.kinds_a) > 3000 && data(&p.kinds_a) - aegis(&p.kinds_a) < 10, "{:?}", &p.kinds_a[..20]);
        assert!(aegis(&p.kinds_b) > 0);
        let stats = p.a.session_stats(&p.b_pk).unwrap();
        assert_eq!(stats.aegis_sent as usize, aegis(&p.kinds_a));
        assert!(stats.retransmissions > 0, "loss was recovered from under AEGIS-256 too");
        // The offers are the sessions' own business.
        let offers = |events: &[NetCryptoEvent]| {
            events.iter().filter(|e| matches!(e, NetCryptoEvent::Lossless(_, d) if d[0] == 0x9f)).count()
        };
        assert_eq!(offers(&p.events_a) + offers(&p.events_b), 0);
        assert_eq!(p.b.session_stats(&p.a_pk).unwrap().packets_dropped, 0);
    }

    #[test]
    fn a_session_that_does_not_offer_aegis_keeps_tox_s_cipher_both_ways() {
        for (a_aegis, b_aegis) in [(true, false), (false, true), (false, false)] {
            let mut p = Pair::with_aegis(8, 0.0, a_aegis, b_aegis);
            for _ in 0..100 {
                p.step(Duration::from_millis(5));
            }
            assert_eq!(stream(&mut p, 500), (0..500).collect::<Vec<_>>());
            assert_eq!(p.a.session(&p.b_pk).unwrap().cipher(), session::DataCipher::XSalsa20Poly1305);
            assert_eq!(p.b.session(&p.a_pk).unwrap().cipher(), session::DataCipher::XSalsa20Poly1305);
            assert!(!p.kinds_a.contains(&0x1c) && !p.kinds_b.contains(&0x1c), "{a_aegis} {b_aegis}");
            // A side that offers sends its offer, and it never reaches the
            // layer above on the other side either.
            assert!(!p.events_b.iter().any(|e| matches!(e, NetCryptoEvent::Lossless(_, d) if d[0] == 0x9f)));
        }
    }

    #[test]
    fn a_replayed_aegis_lossy_packet_is_dropped() {
        let mut p = Pair::new(11, 0.0);
        for _ in 0..100 {
            p.step(Duration::from_millis(5));
        }
        assert_eq!(p.a.session(&p.b_pk).unwrap().cipher(), session::DataCipher::Aegis256);
        p.step(Duration::from_millis(50));
        p.events_b.clear();
        // Two lossy packets, captured on the wire and delivered by hand.
        let now = p.now;
        p.a.send_lossy(now, &p.b_pk, Bytes::from_static(&[200, 1])).unwrap();
        p.a.send_lossy(now, &p.b_pk, Bytes::from_static(&[200, 2])).unwrap();
        let sent: Vec<Bytes> = std::iter::from_fn(|| p.a.poll_transmit()).map(|t| t.payload).collect();
        assert!(sent.len() == 2 && sent.iter().all(|d| d[0] == 0x1c), "{sent:?}");
        // Reordered, then each played again (now and later).
        for d in [&sent[1], &sent[0], &sent[0], &sent[1]] {
            p.b.handle_udp(now, p.a_addr, d.clone());
        }
        p.step(Duration::from_millis(100));
        p.b.handle_udp(p.now, p.a_addr, sent[0].clone());
        p.step(Duration::from_millis(1));
        let lossy: Vec<&Bytes> = p
            .events_b
            .iter()
            .filter_map(|e| if let NetCryptoEvent::Lossy(_, d) = e { Some(d) } else { None })
            .collect();
        assert_eq!(lossy, [&Bytes::from_static(&[200, 2]), &Bytes::from_static(&[200, 1])], "each once");
        assert_eq!(p.b.session_stats(&p.a_pk).unwrap().replays, 3);
    }

    #[test]
    fn aegis_packets_to_a_session_that_did_not_offer_are_dropped() {
        let mut p = Pair::with_aegis(9, 0.0, true, false);
        for _ in 0..100 {
            p.step(Duration::from_millis(5));
        }
        // a seals with AEGIS-256 as if b had offered it.
        p.a.sessions.get_mut(&p.b_pk).unwrap().assume_peer_offers_aegis();
        let now = p.now;
        p.a.send_lossless(now, &p.b_pk, Bytes::from_static(&[160, 1])).unwrap();
        for _ in 0..20 {
            p.step(Duration::from_millis(1));
        }
        assert!(p.kinds_a.contains(&0x1c));
        assert!(!p.events_b.iter().any(|e| matches!(e, NetCryptoEvent::Lossless(..))), "{:?}", p.events_b);
        assert!(p.b.session_stats(&p.a_pk).unwrap().packets_dropped > 0);
        assert!(p.b.stats().dropped > 0);
    }

    #[test]
    fn a_receiver_paused_mid_stream_gets_the_full_rate_back() {
        let mut p = Pair::new(10, 0.0);
        for _ in 0..100 {
            p.step(Duration::from_millis(5));
        }
        let lossless =
            |events: &[NetCryptoEvent]| events.iter().filter(|e| matches!(e, NetCryptoEvent::Lossless(..))).count();
        // Streams `count` packets (the send buffer kept full) and returns
        // how long b took to deliver them.
        let timed = |p: &mut Pair, count: usize| {
            p.events_b.clear();
            let started = p.now;
            let mut sent = 0;
            while lossless(&p.events_b) < count {
                while sent < count && p.a.send_lossless(p.now, &p.b_pk, Bytes::from_static(&[161, 0])).is_ok() {
                    sent += 1;
                }
                p.step(Duration::from_millis(1));
                assert!(p.now - started < Duration::from_secs(30), "{} of {count} in 30 s", lossless(&p.events_b));
            }
            p.now - started
        };
        let before = timed(&mut p, 60_000);
        // The receiver holds everything for 3 s: the sender's buffer fills
        // and its retransmission timer fires again and again.
        let now = p.now;
        p.b.set_receive_paused(now, &p.a_pk, true);
        for _ in 0..3000 {
            while p.a.send_lossless(p.now, &p.b_pk, Bytes::from_static(&[161, 1])).is_ok() {}
            p.step(Duration::from_millis(1));
        }
        assert!(p.a.session(&p.b_pk).unwrap().congestion().losses() > 0, "the stall timed out");
        let now = p.now;
        p.b.set_receive_paused(now, &p.a_pk, false);
        let held = lossless(&p.events_b);
        assert!(held > 1000, "{held}");

        // Then as much again as before the pause, at about the same rate.
        let after = timed(&mut p, 60_000);
        assert!(after < before * 2, "60,000 packets took {before:?} before the pause and {after:?} after it");
    }

    /// Sends a numbered lossless packet from a and returns the datagram.
    fn next_from_a(p: &mut Pair, n: u8) -> Bytes {
        let now = p.now;
        p.a.send_lossless(now, &p.b_pk, Bytes::from(vec![160, n])).unwrap();
        let mut last = None;
        while let Some(t) = p.a.poll_transmit() {
            last = Some(t.payload);
        }
        last.expect("a sent it")
    }

    #[test]
    fn a_roaming_session_takes_the_address_of_a_new_packet_but_not_of_a_replay() {
        let mut p = Pair::new(11, 0.0);
        for _ in 0..50 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.b.is_established(&p.a_pk));
        let moved: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        // Not roaming: a packet from an unknown address is dropped.
        let packet = next_from_a(&mut p, 1);
        let dropped = p.b.stats().dropped;
        p.b.handle_udp(p.now, moved, packet.clone());
        assert_eq!(p.b.stats().dropped, dropped + 1);
        assert_eq!(p.b.session(&p.a_pk).unwrap().addr, Some(p.a_addr));
        // Roaming: a replay from elsewhere opens but moves nothing, so the
        // address stays; a new packet from there moves it.
        p.b.set_roaming(p.a_pk, true);
        p.b.handle_udp(p.now, p.a_addr, packet.clone());
        p.b.handle_udp(p.now, moved, packet);
        assert_eq!(p.b.session(&p.a_pk).unwrap().addr, Some(p.a_addr), "a replay");
        let fresh = next_from_a(&mut p, 2);
        p.b.handle_udp(p.now, moved, fresh);
        assert_eq!(p.b.session(&p.a_pk).unwrap().addr, Some(moved));
        assert_eq!(p.b.peer_at(&moved), Some(p.a_pk));
        assert_eq!(p.b.peer_at(&p.a_addr), None);
        assert_eq!(p.b.session_stats(&p.a_pk).unwrap().packets_dropped, 0, "trials are not drops");
        // Junk from a stranger matches nobody.
        let before = p.b.stats().dropped;
        p.b.handle_udp(p.now, "203.0.113.10:1".parse().unwrap(), Bytes::from(vec![0x1b; 80]));
        assert_eq!(p.b.stats().dropped, before + 1);
        // A probe goes to the new address at once.
        while p.b.poll_transmit().is_some() {}
        p.b.probe_udp(&p.a_pk);
        assert_eq!(p.b.poll_transmit().map(|t| t.dst), Some(moved));
    }

    #[test]
    fn strangers_are_refused_and_handshakes_give_up() {
        let mut p = Pair::new(3, 0.0);
        p.b.set_accept(p.a_pk, false);
        for _ in 0..200 {
            p.step(Duration::from_millis(50));
        }
        assert!(!p.a.is_established(&p.b_pk));
        assert!(p.b.stats().refused > 0);
        assert!(
            p.events_a.contains(&NetCryptoEvent::Closed(p.b_pk, CloseReason::HandshakeTimeout)),
            "{:?}",
            p.events_a
        );
    }

    #[test]
    fn a_stale_session_at_a_live_peer_s_address_does_not_take_its_packets() {
        // b is a server; a is a client now on the port where a friend of
        // b's that is gone (d) used to be. b keeps trying d there.
        let mut p = Pair::new(11, 0.0);
        for _ in 0..50 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.a.is_established(&p.b_pk) && p.b.is_established(&p.a_pk));
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let (d_pk, d_dht) = (*KeyPair::generate(&mut rng).public(), *KeyPair::generate(&mut rng).public());
        p.b.set_accept(d_pk, true);
        let stale = p.a_addr;
        for _ in 0..1000 {
            // The node starts the friend's session again whenever it ends.
            if p.b.session(&d_pk).is_none() {
                let now = p.now;
                p.b.connect(now, d_pk, d_dht);
                p.b.set_addr(&d_pk, stale);
            }
            p.step(Duration::from_millis(100));
        }
        let closed = |events: &[NetCryptoEvent], peer: PublicKey| {
            events.iter().any(|e| matches!(e, NetCryptoEvent::Closed(p, _) if *p == peer))
        };
        assert!(closed(&p.events_b, d_pk), "d's attempts ran their course: {:?}", p.events_b);
        assert!(!closed(&p.events_b, p.a_pk) && !closed(&p.events_a, p.b_pk), "{:?} {:?}", p.events_a, p.events_b);
        assert!(p.a.is_established(&p.b_pk) && p.b.is_established(&p.a_pk));
        assert_eq!(p.b.session_stats(&p.a_pk).map(|s| s.packets_dropped), Some(0));
    }

    #[test]
    fn a_kill_closes_the_other_side() {
        let mut p = Pair::new(4, 0.0);
        for _ in 0..50 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.b.is_established(&p.a_pk));
        p.a.kill(&p.b_pk);
        for _ in 0..3 {
            p.step(Duration::from_millis(5));
        }
        assert!(p.events_b.contains(&NetCryptoEvent::Closed(p.a_pk, CloseReason::Killed)), "{:?}", p.events_b);
        assert!(!p.b.is_established(&p.a_pk));
    }
}
