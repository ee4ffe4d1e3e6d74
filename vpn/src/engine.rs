//! The VPN engine, sans IO: sessions, addresses, routes and the per-packet
//! checks, for the server and the client side.
//!
//! Input comes in through `handle_*` and `peer_*` methods, with the time
//! passed in; output leaves through [`Engine::poll_transmit`] (control
//! packets, to send lossless) and [`Engine::poll_event`] (what the device
//! owner must do or may report). The data path works in place on
//! caller-owned buffers and never allocates: [`Engine::handle_tun`] tells
//! which peer a packet from the TUN goes to (to send lossy, after the
//! [`DATA_ID`] byte), [`Engine::handle_data`] whether a lossy packet from a
//! peer may be written to the TUN. Both clamp the MSS of TCP SYNs.
//!
//! Server: a client sends a hello; the server leases it an address from the
//! pool (stable per key), routes that address to the peer, and answers with
//! the addresses, the MTU and the routes it offers. A peer may only send
//! from its own addresses (its AllowedIPs), and only to what it was
//! offered: the server's VPN addresses and the offered routes (other
//! clients too with [`ServerConfig::allow_clients`]). A lost peer keeps
//! its lease.
//!
//! Client: it says hello whenever the server comes online, installs the
//! pool networks and the routes it asked for that the server offers, and
//! routes them to the server. It takes from the server only packets for
//! its own addresses. While the server is away, its routes stay and packets
//! for them are dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::control::{
    Address, Assign, Control, DATA_ID, DISABLED_TEXT, Goodbye, Hello, MAX_ROUTES, Message, Reason, Refuse, refusal_text,
};
use crate::mtu::{DEFAULT_MTU, MIN_MTU, check_mtu};
use crate::packet::{Clamp, clamp_mss, summarize};
use crate::pool::{Pool, PoolError};
use crate::route::RouteTable;
use crate::stats::{Drop, Stats};

/// A peer, numbered by the caller (for instance one per Tox friend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// How long a client waits before asking again after a refusal that may
/// pass (a full pool, a server shutting down).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The least time between two "no session" answers to one peer, and
/// between two hellos a client sends because of them.
pub const NO_SESSION_INTERVAL: Duration = Duration::from_secs(1);

/// A configuration the engine cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The address pool.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The MTU.
    #[error(transparent)]
    Mtu(#[from] crate::mtu::MtuError),
    /// More routes than a control message carries.
    #[error("at most {MAX_ROUTES} routes")]
    TooManyRoutes,
}

/// The server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Serve VPN clients at all (`--vpn`); when false every hello is
    /// refused with [`Reason::Disabled`].
    pub enabled: bool,
    /// The IPv4 pool (`--vpn-pool`); the server takes its first host.
    pub pool_v4: Option<Ipv4Net>,
    /// The IPv6 /64 (a ULA, see [`crate::pool::ula_from_seed`]).
    pub pool_v6: Option<Ipv6Net>,
    /// Networks offered to clients (`--vpn-route`).
    pub routes: Vec<IpNet>,
    /// The largest MTU the server accepts.
    pub mtu: u16,
    /// Let clients reach each other (`--vpn-allow-clients`); otherwise a
    /// client reaches only the server's VPN addresses and the offered
    /// routes.
    pub allow_clients: bool,
}

impl ServerConfig {
    /// An enabled server with these pools, no routes, the default MTU, and
    /// clients kept apart.
    pub fn new(pool_v4: Option<Ipv4Net>, pool_v6: Option<Ipv6Net>) -> Self {
        ServerConfig { enabled: true, pool_v4, pool_v6, routes: Vec::new(), mtu: DEFAULT_MTU, allow_clients: false }
    }
}

/// The client's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The MTU to ask for (`--mtu`).
    pub mtu: u16,
    /// Networks to reach through the server (`--route`); only those the
    /// server offers are installed.
    pub routes: Vec<IpNet>,
    /// Networks this host already routes elsewhere (see
    /// [`crate::host::routes`]): a session whose pool overlaps one is
    /// refused, as it would take over or hide part of it.
    pub avoid: Vec<IpNet>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig { mtu: DEFAULT_MTU, routes: Vec::new(), avoid: Vec::new() }
    }
}

/// The widest IPv4 pool a client accepts (and a server serves).
pub const WIDEST_V4_POOL: u8 = 16;
/// The prefix length of the IPv6 network a client accepts.
pub const V6_POOL: u8 = 64;

/// What a client got from the server: everything needed to set up its
/// device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The MTU of the session.
    pub mtu: u16,
    /// The client's IPv4 address (with the pool's prefix length) and the
    /// server's.
    pub v4: Option<Address>,
    /// The client's IPv6 address (/64) and the server's.
    pub v6: Option<Address>,
    /// Routes to install: those asked for that the server offers.
    pub routes: Vec<IpNet>,
    /// Everything the server offers.
    pub offered: Vec<IpNet>,
    /// Routes asked for that the server does not offer (not installed).
    pub refused: Vec<IpNet>,
}

impl Assignment {
    /// The client's addresses.
    pub fn addresses(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.v4.iter().chain(self.v6.iter()).map(|a| a.client)
    }
}

/// What happened, for the device owner and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client: the server gave us a session. Set the device up as it says
    /// (nothing to change when `resumed`, the same session as before).
    Assigned {
        /// The session.
        assignment: Assignment,
        /// The same addresses, MTU and routes as the last session.
        resumed: bool,
    },
    /// Client: the server refused. A final reason means asking again is
    /// pointless.
    Refused {
        /// Why.
        reason: Reason,
        /// The server's text.
        text: String,
    },
    /// Client: the server assigned a session we refuse (a prefix too
    /// wide, a pool over networks this host routes elsewhere); nothing was
    /// set up, the server was told goodbye, and no hello follows.
    Rejected {
        /// Why.
        message: String,
    },
    /// Client: the server is gone (offline, or said goodbye); packets are
    /// dropped until it is back.
    ServerLost,
    /// Server: a client has a session.
    ClientUp {
        /// The peer.
        peer: PeerId,
        /// Its IPv4 address.
        v4: Option<Ipv4Addr>,
        /// Its IPv6 address.
        v6: Option<Ipv6Addr>,
    },
    /// Server: a client was refused.
    ClientRefused {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: Reason,
    },
    /// Server: a client left (offline or goodbye); its lease stays.
    ClientDown {
        /// The peer.
        peer: PeerId,
    },
    /// Client, from the runner (never from the engine itself): the device
    /// could not be set up as assigned (for instance a route that already
    /// exists); it follows the [`Event::Assigned`] it belongs to.
    DeviceFailed {
        /// What failed.
        message: String,
    },
}

/// A control packet to send to a peer over the reliable (lossless) channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    /// To whom.
    pub peer: PeerId,
    /// The whole packet, starting with [`crate::control::CONTROL_ID`].
    pub packet: Bytes,
}

#[derive(Debug)]
struct Peer {
    online: bool,
    key: Vec<u8>,
    /// The MTU of its session, when it has one.
    session: Option<u16>,
    last_no_session: Option<Instant>,
}

#[derive(Debug)]
struct ServerSide {
    config: ServerConfig,
    pool: Pool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// The server is offline.
    Offline,
    /// Hello sent, no answer yet.
    Asking,
    /// A session.
    Up,
    /// Refused for good.
    Refused,
}

#[derive(Debug)]
struct ClientSide {
    config: ClientConfig,
    server: Option<PeerId>,
    state: ClientState,
    last: Option<Assignment>,
    retry_at: Option<Instant>,
    last_hello: Option<Instant>,
}

#[derive(Debug)]
enum Side {
    Server(ServerSide),
    Client(ClientSide),
}

/// Checks a server's assignment: an IPv4 network no wider than
/// [`WIDEST_V4_POOL`], an IPv6 one of [`V6_POOL`], the server's address
/// inside each, and neither overlapping a network in `avoid`.
fn check_addresses(addresses: &[Address], avoid: &[IpNet]) -> Result<(), String> {
    for a in addresses {
        let net = a.client.trunc();
        match net {
            IpNet::V4(n) if n.prefix_len() < WIDEST_V4_POOL => {
                return Err(format!("the IPv4 network {net} is too wide (/{WIDEST_V4_POOL} at most)"));
            }
            IpNet::V6(n) if n.prefix_len() != V6_POOL => {
                return Err(format!("the IPv6 network {net} is not a /{V6_POOL}"));
            }
            _ => {}
        }
        if !net.contains(&a.server) {
            return Err(format!("the server's address {} is outside {net}", a.server));
        }
        // (A default route covers everything: it is no conflict.)
        let overlaps = |r: &&IpNet| r.prefix_len() > 0 && (r.contains(&net.network()) || net.contains(&r.network()));
        if let Some(taken) = avoid.iter().find(overlaps) {
            return Err(format!(
                "the VPN network {net} overlaps {taken}, which this host already routes (the server can pick another \
                 with --vpn-pool)"
            ));
        }
    }
    Ok(())
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    side: Side,
    peers: HashMap<PeerId, Peer>,
    /// Destination -> peer, and the AllowedIPs check for sources.
    table: RouteTable<PeerId>,
    transmits: VecDeque<ControlPacket>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Engine {
    /// A server.
    pub fn server(config: ServerConfig) -> Result<Engine, ConfigError> {
        check_mtu(config.mtu)?;
        if config.routes.len() > MAX_ROUTES {
            return Err(ConfigError::TooManyRoutes);
        }
        let mut config = config;
        for r in &mut config.routes {
            *r = r.trunc();
        }
        let pool = Pool::new(config.pool_v4, config.pool_v6)?;
        Ok(Engine::new(Side::Server(ServerSide { config, pool })))
    }

    /// A client.
    pub fn client(config: ClientConfig) -> Result<Engine, ConfigError> {
        check_mtu(config.mtu)?;
        if config.routes.len() > MAX_ROUTES {
            return Err(ConfigError::TooManyRoutes);
        }
        let mut config = config;
        for r in &mut config.routes {
            *r = r.trunc();
        }
        Ok(Engine::new(Side::Client(ClientSide {
            config,
            server: None,
            state: ClientState::Offline,
            last: None,
            retry_at: None,
            last_hello: None,
        })))
    }

    fn new(side: Side) -> Engine {
        Engine {
            side,
            peers: HashMap::new(),
            table: RouteTable::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Whether this is the server side.
    pub fn is_server(&self) -> bool {
        matches!(self.side, Side::Server(_))
    }

    /// Server: the networks and own addresses its device needs: the server
    /// address with the pool's prefix length, per family.
    pub fn server_addresses(&self) -> Vec<IpNet> {
        let Side::Server(s) = &self.side else { return Vec::new() };
        let (v4, v6) = s.pool.server();
        let mut out = Vec::new();
        if let (Some(a), Some(n)) = (v4, s.pool.v4_net()) {
            out.push(IpNet::V4(Ipv4Net::new_assert(a, n.prefix_len())));
        }
        if let (Some(a), Some(n)) = (v6, s.pool.v6_net()) {
            out.push(IpNet::V6(Ipv6Net::new_assert(a, n.prefix_len())));
        }
        out
    }

    /// Server: the routes it offers.
    pub fn offered_routes(&self) -> &[IpNet] {
        match &self.side {
            Side::Server(s) => &s.config.routes,
            Side::Client(_) => &[],
        }
    }

    /// The MTU the device should have: the server's configured one, or the
    /// client's current session's (its request before the first session).
    pub fn mtu(&self) -> u16 {
        match &self.side {
            Side::Server(s) => s.config.mtu,
            Side::Client(c) => c.last.as_ref().map_or(c.config.mtu, |a| a.mtu),
        }
    }

    /// Server: the peers with a session now, in peer order, each with the
    /// addresses it may use (its IPv4 /32 and IPv6 /128).
    pub fn sessions(&self) -> Vec<(PeerId, Vec<IpNet>)> {
        if !self.is_server() {
            return Vec::new();
        }
        let mut sessions: Vec<(PeerId, Vec<IpNet>)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.online && p.session.is_some())
            .map(|(id, _)| (*id, Vec::new()))
            .collect();
        sessions.sort_by_key(|(id, _)| *id);
        for (net, peer) in self.table.iter() {
            if let Ok(at) = sessions.binary_search_by_key(peer, |(id, _)| *id) {
                sessions[at].1.push(net);
            }
        }
        for (_, nets) in &mut sessions {
            nets.sort();
        }
        sessions
    }

    /// Client: the current session, if up.
    pub fn assignment(&self) -> Option<&Assignment> {
        match &self.side {
            Side::Client(c) if c.state == ClientState::Up => c.last.as_ref(),
            _ => None,
        }
    }

    /// Server: turns serving on or off; turning it off ends every session
    /// (with a goodbye).
    pub fn set_enabled(&mut self, enabled: bool) {
        let Side::Server(s) = &mut self.side else { return };
        s.config.enabled = enabled;
        if !enabled {
            let peers: Vec<PeerId> =
                self.peers.iter().filter(|(_, p)| p.session.is_some()).map(|(id, _)| *id).collect();
            for peer in peers {
                self.send(peer, Message::Goodbye(Goodbye { reason: Reason::Disabled }));
                self.end_session(peer);
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counts a drop the caller decided (a full queue, a refused send).
    pub fn count_drop(&mut self, reason: Drop, n: u64) {
        self.stats.dropped.add_n(reason, n);
    }

    /// The routing table (destination network -> peer).
    pub fn routes(&self) -> &RouteTable<PeerId> {
        &self.table
    }

    /// A peer came online. `key` identifies it for good (for instance its
    /// Tox public key): a returning key gets the same address. A client
    /// takes the peer as its server and says hello. Repeated while the peer
    /// is online, it changes nothing.
    pub fn peer_connected(&mut self, now: Instant, peer: PeerId, key: &[u8]) {
        if self.peers.get(&peer).is_some_and(|p| p.online && p.key == key) {
            // Already online (the carrier only changed its path): the
            // session goes on.
            return;
        }
        let entry = self.peers.entry(peer).or_insert_with(|| Peer {
            online: true,
            key: key.to_vec(),
            session: None,
            last_no_session: None,
        });
        entry.online = true;
        entry.session = None;
        if entry.key != key {
            entry.key = key.to_vec();
        }
        if let Side::Client(c) = &mut self.side {
            if let Some(old) = c.server.filter(|old| *old != peer) {
                // Another peer serves us now: move the routes over.
                let nets: Vec<IpNet> = self.table.iter().filter(|(_, p)| **p == old).map(|(n, _)| n).collect();
                for net in nets {
                    self.table.insert(net, peer);
                }
                self.peers.remove(&old);
            }
            c.server = Some(peer);
            if c.state != ClientState::Refused {
                self.say_hello(now);
            }
        }
    }

    /// A peer went offline. A client keeps its routes (packets are dropped
    /// and counted) until the server is back.
    pub fn peer_lost(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.online = false;
        self.end_session(peer);
    }

    fn end_session(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let had = p.session.take().is_some();
        match &mut self.side {
            Side::Server(_) => {
                if had {
                    self.events.push_back(Event::ClientDown { peer });
                }
            }
            Side::Client(c) => {
                if c.server == Some(peer) && matches!(c.state, ClientState::Up | ClientState::Asking) {
                    c.state = ClientState::Offline;
                    if had {
                        self.events.push_back(Event::ServerLost);
                    }
                }
            }
        }
    }

    /// Timers: a client asks again after a refusal that may pass.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Side::Client(c) = &mut self.side
            && c.retry_at.is_some_and(|t| t <= now)
        {
            c.retry_at = None;
            let online = c.server.and_then(|s| self.peers.get(&s)).is_some_and(|p| p.online);
            if online && c.state == ClientState::Offline {
                self.say_hello(now);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.side {
            Side::Client(c) => c.retry_at,
            Side::Server(_) => None,
        }
    }

    /// A control packet (lossless) from a peer.
    pub fn handle_control(&mut self, now: Instant, peer: PeerId, packet: &[u8]) {
        self.stats.control_in += 1;
        let Ok(control) = Control::decode(packet) else {
            self.stats.control_bad += 1;
            return;
        };
        if !self.peers.get(&peer).is_some_and(|p| p.online) {
            self.stats.control_bad += 1;
            return;
        }
        match (&self.side, control.message) {
            (Side::Server(_), Message::Hello(hello)) => self.server_hello(peer, hello),
            (Side::Server(_), Message::Goodbye(_)) => self.end_session(peer),
            (Side::Client(c), message) if c.server == Some(peer) => match message {
                Message::Assign(assign) => self.client_assign(peer, assign),
                Message::Refuse(refuse) => self.client_refused(now, refuse),
                Message::Goodbye(_) => {
                    self.end_session(peer);
                    if let Side::Client(c) = &mut self.side {
                        c.retry_at = Some(now + RETRY_AFTER);
                    }
                }
                Message::Hello(_) => self.stats.control_bad += 1,
            },
            _ => self.stats.control_bad += 1,
        }
    }

    fn send(&mut self, peer: PeerId, message: Message) {
        match Control::new(message).encode() {
            Ok(packet) => {
                self.stats.control_out += 1;
                self.transmits.push_back(ControlPacket { peer, packet });
            }
            Err(e) => tracing::error!(?peer, "cannot encode a VPN control message: {e}"),
        }
    }

    fn refuse(&mut self, peer: PeerId, reason: Reason, text: &str) {
        self.stats.refused += 1;
        self.events.push_back(Event::ClientRefused { peer, reason });
        self.send(peer, Message::Refuse(Refuse { reason, text: refusal_text(text) }));
    }

    fn server_hello(&mut self, peer: PeerId, hello: Hello) {
        let Side::Server(s) = &mut self.side else { return };
        if !s.config.enabled {
            return self.refuse(peer, Reason::Disabled, DISABLED_TEXT);
        }
        let mtu = match hello.mtu {
            0 => s.config.mtu,
            m if m < MIN_MTU => return self.refuse(peer, Reason::BadHello, &format!("MTU {m} is below {MIN_MTU}")),
            m => m.min(s.config.mtu),
        };
        let key = self.peers.get(&peer).map(|p| p.key.clone()).unwrap_or_default();
        // Slots held by online peers with a session are never taken away.
        let busy: Vec<u32> = self
            .peers
            .iter()
            .filter(|(id, p)| p.online && p.session.is_some() && **id != peer)
            .filter_map(|(_, p)| s.pool.slot_of(&p.key))
            .collect();
        let Some(lease) = s.pool.lease(&key, |slot| busy.contains(&slot)) else {
            return self.refuse(peer, Reason::PoolFull, "every address of the VPN pool is in use");
        };
        let (sv4, sv6) = s.pool.server();
        let mut addresses = Vec::new();
        if let (Some(a), Some(net), Some(server)) = (lease.v4, s.pool.v4_net(), sv4) {
            addresses
                .push(Address { client: IpNet::V4(Ipv4Net::new_assert(a, net.prefix_len())), server: server.into() });
            self.table.insert(IpNet::V4(Ipv4Net::new_assert(a, 32)), peer);
        }
        if let (Some(a), Some(net), Some(server)) = (lease.v6, s.pool.v6_net(), sv6) {
            addresses
                .push(Address { client: IpNet::V6(Ipv6Net::new_assert(a, net.prefix_len())), server: server.into() });
            self.table.insert(IpNet::V6(Ipv6Net::new_assert(a, 128)), peer);
        }
        let routes = s.config.routes.clone();
        // A key that came back under another peer number: forget the old one.
        let stale: Vec<PeerId> =
            self.peers.iter().filter(|(id, p)| **id != peer && p.key == key).map(|(id, _)| *id).collect();
        for old in stale {
            self.end_session(old);
            self.peers.remove(&old);
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.session = Some(mtu);
        self.events.push_back(Event::ClientUp { peer, v4: lease.v4, v6: lease.v6 });
        self.send(peer, Message::Assign(Assign { mtu, addresses, routes }));
    }

    fn say_hello(&mut self, now: Instant) {
        let Side::Client(c) = &mut self.side else { return };
        let Some(server) = c.server else { return };
        c.state = ClientState::Asking;
        c.last_hello = Some(now);
        let hello = Hello { mtu: c.config.mtu, routes: c.config.routes.clone() };
        self.send(server, Message::Hello(hello));
    }

    fn client_assign(&mut self, peer: PeerId, assign: Assign) {
        let Side::Client(c) = &mut self.side else { return };
        let mtu = assign.mtu.min(c.config.mtu);
        let v4 = assign.v4();
        let v6 = assign.v6();
        if check_mtu(mtu).is_err() || (v4.is_none() && v6.is_none()) {
            self.stats.control_bad += 1;
            tracing::warn!(?peer, mtu, "the VPN server assigned an unusable session");
            return;
        }
        if let Err(message) = check_addresses(&assign.addresses, &c.config.avoid) {
            c.state = ClientState::Refused;
            c.retry_at = None;
            tracing::warn!(?peer, "refusing the VPN session: {message}");
            if let Some(p) = self.peers.get_mut(&peer) {
                p.session = None;
            }
            self.events.push_back(Event::Rejected { message });
            self.send(peer, Message::Goodbye(Goodbye { reason: Reason::Shutdown }));
            return;
        }
        let Side::Client(c) = &mut self.side else { return };
        let offered = assign.routes;
        let (routes, refused): (Vec<IpNet>, Vec<IpNet>) =
            c.config.routes.iter().partition(|r| offered.iter().any(|o| o.contains(*r)));
        let assignment = Assignment { mtu, v4, v6, routes, offered, refused };
        let resumed = c.last.as_ref() == Some(&assignment);
        c.state = ClientState::Up;
        c.retry_at = None;
        c.last = Some(assignment.clone());
        self.table = RouteTable::new();
        for net in assignment.addresses().map(|a| a.trunc()).chain(assignment.routes.iter().copied()) {
            self.table.insert(net, peer);
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.session = Some(mtu);
        }
        self.events.push_back(Event::Assigned { assignment, resumed });
    }

    fn client_refused(&mut self, now: Instant, refuse: Refuse) {
        let Side::Client(c) = &mut self.side else { return };
        self.stats.refused += 1;
        if refuse.reason == Reason::NoSession {
            // The server lost our session (it restarted): ask again.
            if c.last_hello.is_none_or(|t| now.duration_since(t) >= NO_SESSION_INTERVAL) {
                if let Some(p) = c.server.and_then(|s| self.peers.get_mut(&s)) {
                    p.session = None;
                }
                self.say_hello(now);
            }
            return;
        }
        if refuse.reason.is_final() {
            c.state = ClientState::Refused;
        } else {
            c.state = ClientState::Offline;
            c.retry_at = Some(now + RETRY_AFTER);
        }
        if let Some(p) = c.server.and_then(|s| self.peers.get_mut(&s)) {
            p.session = None;
        }
        self.events.push_back(Event::Refused { reason: refuse.reason, text: refuse.text });
    }

    /// A packet read from the TUN: returns the peer to send it to (as a
    /// lossy packet `[DATA_ID][packet]`), after clamping its MSS if it is a
    /// TCP SYN; or why it is dropped (counted).
    pub fn handle_tun(&mut self, packet: &mut [u8]) -> Result<PeerId, Drop> {
        let result = self.route_out(packet);
        match result {
            Ok(_) => {
                self.stats.packets_out += 1;
                self.stats.bytes_out += packet.len() as u64;
            }
            Err(reason) => self.stats.dropped.add(reason),
        }
        result
    }

    fn route_out(&mut self, packet: &mut [u8]) -> Result<PeerId, Drop> {
        let summary = summarize(packet).map_err(|_| Drop::Malformed)?;
        let peer = *self.table.lookup(summary.dst).ok_or(Drop::NoRoute)?;
        let p = self.peers.get(&peer).ok_or(Drop::PeerOffline)?;
        let mtu = p.session.filter(|_| p.online).ok_or(Drop::PeerOffline)?;
        if packet.len() > usize::from(mtu) {
            return Err(Drop::TooBig);
        }
        if summary.tcp_syn && matches!(clamp_mss(packet, mtu), Clamp::Clamped { .. }) {
            self.stats.mss_clamped += 1;
        }
        Ok(peer)
    }

    /// A lossy packet from a peer (`[DATA_ID][IP packet]`): `Ok` when the IP
    /// packet (`&packet[1..]`) may be written to the TUN, its MSS clamped if
    /// it is a TCP SYN; or why it is dropped (counted).
    pub fn handle_data(&mut self, now: Instant, peer: PeerId, packet: &mut [u8]) -> Result<(), Drop> {
        let result = self.check_in(now, peer, packet);
        match result {
            Ok(()) => {
                self.stats.packets_in += 1;
                self.stats.bytes_in += packet.len() as u64 - 1;
            }
            Err(reason) => self.stats.dropped.add(reason),
        }
        result
    }

    fn check_in(&mut self, now: Instant, peer: PeerId, packet: &mut [u8]) -> Result<(), Drop> {
        let Some((&mut DATA_ID, ip)) = packet.split_first_mut() else { return Err(Drop::NotData) };
        let server = self.is_server();
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.online) else { return Err(Drop::PeerOffline) };
        let Some(mtu) = p.session else {
            if server && p.last_no_session.is_none_or(|t| now.duration_since(t) >= NO_SESSION_INTERVAL) {
                p.last_no_session = Some(now);
                self.send(peer, Message::Refuse(Refuse { reason: Reason::NoSession, text: String::new() }));
            }
            return Err(Drop::NoSession);
        };
        if ip.len() > usize::from(mtu) {
            return Err(Drop::TooBig);
        }
        let summary = summarize(ip).map_err(|_| Drop::Malformed)?;
        if self.table.lookup(summary.src) != Some(&peer) {
            return Err(Drop::SourceNotAllowed);
        }
        if !self.may_reach(summary.dst) {
            return Err(Drop::DestinationNotAllowed);
        }
        if summary.tcp_syn && matches!(clamp_mss(ip, mtu), Clamp::Clamped { .. }) {
            self.stats.mss_clamped += 1;
        }
        Ok(())
    }

    /// Whether a peer's packet may go to `dst`. Server: its own VPN
    /// addresses, the offered routes, and with `allow_clients` the other
    /// clients' addresses. Client: only its own addresses (the server does
    /// not route through us).
    fn may_reach(&self, dst: IpAddr) -> bool {
        match &self.side {
            Side::Server(s) => {
                let (v4, v6) = s.pool.server();
                let own = match dst {
                    IpAddr::V4(a) => v4 == Some(a),
                    IpAddr::V6(a) => v6 == Some(a),
                };
                own || s.config.routes.iter().any(|r| r.contains(&dst))
                    || (s.config.allow_clients
                        && self
                            .table
                            .lookup(dst)
                            .is_some_and(|to| self.peers.get(to).is_some_and(|p| p.session.is_some())))
            }
            Side::Client(c) => c.last.as_ref().is_some_and(|a| a.addresses().any(|net| net.addr() == dst)),
        }
    }

    /// The next control packet to send (lossless, in order).
    pub fn poll_transmit(&mut self) -> Option<ControlPacket> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether control packets or events are waiting.
    pub fn has_output(&self) -> bool {
        !self.transmits.is_empty() || !self.events.is_empty()
    }

    /// Ends every session with a goodbye (queued for sending).
    pub fn shutdown(&mut self) {
        let peers: Vec<PeerId> = match &self.side {
            Side::Server(_) => self.peers.iter().filter(|(_, p)| p.session.is_some()).map(|(id, _)| *id).collect(),
            Side::Client(c) => c.server.filter(|s| self.peers.get(s).is_some_and(|p| p.online)).into_iter().collect(),
        };
        for peer in peers {
            self.send(peer, Message::Goodbye(Goodbye { reason: Reason::Shutdown }));
            self.end_session(peer);
        }
    }
}
