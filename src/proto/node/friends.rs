//! Friends: tying the onion, the DHT and net_crypto together, plus the
//! part of Messenger tuntox needs (c-toxcore's `friend_connection.c` and
//! `Messenger.c`).
//!
//! For each friend: the onion tells us its DHT key; the DHT then finds its
//! address; net_crypto connects to it (or accepts its handshake). Once the
//! session is up both sides send ONLINE (24); until the friend's ONLINE
//! arrives no other lossless packet is delivered, as in c-toxcore. ALIVE
//! (16) goes out every 8 s whatever else is sent (c-toxcore drops a friend
//! whose ALIVE stops for 32 s even while its data keeps flowing), and a
//! friend silent for 32 s (8 s while we use it: tunnels, a VPN session) is
//! dropped and searched again. Friend requests we send go through the onion
//! every 5 s, doubling, until the friend connects, and again once it has
//! been away for 5 s (as C tuntox's client does).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::crypto::PublicKey;
use crate::wire::friend_request::FriendRequest;
use crate::wire::packed_node::{PackedNode, Protocol};

/// ALIVE interval (FRIEND_PING_INTERVAL).
pub const PING_INTERVAL: Duration = Duration::from_secs(8);
/// A friend silent this long is gone (FRIEND_CONNECTION_TIMEOUT).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(32);
/// A friend we use (tunnels open, a VPN session: [`Friend::in_use`]) is gone
/// after this much silence. Both ends of a session send a packet every
/// second (acknowledgements; c-toxcore's request packets), so this is
/// eight missed in a row.
pub const IN_USE_TIMEOUT: Duration = Duration::from_secs(8);
/// First resend interval of a friend request (FRIENDREQUEST_TIMEOUT); it doubles.
pub const REQUEST_RESEND: Duration = Duration::from_secs(5);
/// The resend interval stops doubling here.
pub const REQUEST_RESEND_MAX: Duration = Duration::from_secs(60);
/// Relays kept per friend (FRIEND_MAX_STORED_TCP_RELAYS).
pub const MAX_FRIEND_RELAYS: usize = 24;
/// Relays in one SHARE_RELAYS packet at most (MAX_SHARED_RELAYS).
pub const MAX_SHARED_RELAYS: usize = 3;
/// SHARE_RELAYS goes to an online friend this often (SHARE_RELAYS_INTERVAL).
pub const SHARE_RELAYS_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// How a friend is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Direct UDP.
    Udp,
    /// Through a TCP relay.
    Tcp,
}

/// A friend's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Looking for it, or handshaking.
    Connecting,
    /// The session is up; waiting for its ONLINE.
    SessionUp,
    /// Online: data flows.
    Online,
}

/// A friend request we keep sending.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    /// What goes out.
    pub request: FriendRequest,
    /// When it next goes out.
    pub next: Instant,
    /// The current interval.
    pub interval: Duration,
    /// Sends left before the interval starts doubling again (after the
    /// friend went away: the first copies may reach announce nodes that
    /// still hold its old announcement).
    pub steady: u8,
}

/// Copies sent every [`REQUEST_RESEND`] after a friend went away, before
/// the interval doubles again.
pub const REQUEST_STEADY_SENDS: u8 = 6;

/// One friend.
#[derive(Debug, Clone)]
pub struct Friend {
    /// Its long-term key.
    pub real_pk: PublicKey,
    /// Its current DHT key, once it told us.
    pub dht_pk: Option<PublicKey>,
    /// Where it is in connecting.
    pub status: Status,
    /// When we last sent ALIVE. Other packets do not count: c-toxcore's
    /// friend layer drops a friend whose ALIVE stops for 32 s, however much
    /// else arrives from it.
    pub last_ping_sent: Option<Instant>,
    /// When we last heard from it.
    pub last_heard: Option<Instant>,
    /// When its last ALIVE arrived (we do not require it: any packet of the
    /// session keeps a friend; kept for diagnostics).
    pub last_alive: Option<Instant>,
    /// Our friend request: sent while the friend is not connected.
    pub request: Option<PendingRequest>,
    /// TCP relays it is connected to.
    pub relays: Vec<PackedNode>,
    /// Its direct address, when the DHT found it.
    pub addr: Option<SocketAddr>,
    /// When we last sent it our relays.
    pub relays_shared: Option<Instant>,
    /// Something of ours runs over it (tunnels, a VPN session): its silence
    /// counts as gone after [`IN_USE_TIMEOUT`] rather than
    /// [`CONNECTION_TIMEOUT`], so what runs over it notices soon.
    pub in_use: bool,
    /// Friend requests we sent it through the onion (copies, all told).
    pub requests_sent: u64,
}

impl Friend {
    /// A friend we know by key.
    pub fn new(real_pk: PublicKey) -> Self {
        Self {
            real_pk,
            dht_pk: None,
            status: Status::Connecting,
            last_ping_sent: None,
            last_heard: None,
            last_alive: None,
            request: None,
            relays: Vec::new(),
            addr: None,
            relays_shared: None,
            in_use: false,
            requests_sent: 0,
        }
    }

    /// The friend went away: a request we send it (if any) goes out again
    /// [`REQUEST_RESEND`] from now, and then as often for
    /// [`REQUEST_STEADY_SENDS`] copies, unless the session comes back first.
    pub fn rearm_request(&mut self, now: Instant) {
        if let Some(request) = &mut self.request {
            request.next = now + REQUEST_RESEND;
            request.interval = REQUEST_RESEND;
            request.steady = REQUEST_STEADY_SENDS;
        }
    }

    /// Remembers TCP relays it named (most recent first, bounded).
    pub fn add_relays(&mut self, nodes: &[PackedNode]) {
        for node in nodes.iter().filter(|n| n.protocol == Protocol::Tcp) {
            self.relays.retain(|r| r.public_key != node.public_key);
            self.relays.insert(0, *node);
        }
        self.relays.truncate(MAX_FRIEND_RELAYS);
    }
}

/// What the friend layer tells the node's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FriendEvent {
    /// Someone not yet a friend asked to be one.
    Request {
        /// Their long-term key.
        real_pk: PublicKey,
        /// Their message.
        message: Bytes,
    },
    /// A friend came online.
    Connected {
        /// Which friend.
        real_pk: PublicKey,
        /// Direct or relayed.
        path: Path,
    },
    /// A friend went offline.
    Lost {
        /// Which friend.
        real_pk: PublicKey,
    },
    /// A custom lossless packet (`[id][data]`, id 160-191), in order.
    Lossless {
        /// From which friend.
        real_pk: PublicKey,
        /// The packet.
        data: Bytes,
    },
    /// A custom lossy packet (`[id][data]`, id 200-254).
    Lossy {
        /// From which friend.
        real_pk: PublicKey,
        /// The packet.
        data: Bytes,
    },
}
