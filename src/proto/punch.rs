//! Hole punching between two tuntox peers, coordinated through the session
//! they already share (usually over a TCP relay), sans-IO.
//!
//! Tox's own hole punching (NAT pings through the DHT, then pings to the
//! friend's reported address: [`dht::nat`](super::dht::nat)) fails between
//! two Linux home routers. A datagram that reaches a router before its host
//! has sent to that sender leaves an UNREPLIED conntrack entry holding the
//! address pair; the host's own later packet to that sender then gets a
//! random public port, which the sender's router does not admit, and every
//! further packet keeps the entry alive. Two Tox nodes talk to each other
//! as plain DHT nodes long before they are friends, so by the time they
//! punch, both routers hold such entries for their main ports.
//!
//! So two tuntox peers (each sent a [`Hello`]) punch from a **fresh local
//! port**, which no entry holds, and never let a full datagram reach the
//! other router before that router's host opened it:
//!
//! 1. The leading side (the smaller long-term key) opens a socket and sends
//!    its [`Candidates`] over the session: the attempt's number and token,
//!    the socket's local port, the public addresses DHT nodes see us at
//!    (with that port: a port-preserving NAT keeps it) and a router's port
//!    mapping if there is one.
//! 2. The other side opens a socket, sends **openers** (probes with IP TTL
//!    [`OPENER_TTL`]: they pass our router, creating its mapping, and die
//!    before the friend's) toward the leader's candidates, then its own
//!    candidates with `opened` set.
//! 3. The leader sends its openers, says `opened`, and **knocks**: full
//!    probes to the other side's candidates, every [`KNOCK_INTERVAL`]. The
//!    other side knocks once it reads the leader's `opened`. Each knock
//!    reaches a router whose host has already opened toward its sender, so
//!    nothing is held and the pair of mappings meets.
//! 4. A probe that arrives (a DHT ping carrying the attempt's token) is
//!    answered by the DHT; the probe or its answer tells each side the
//!    (socket, address) pair that works: the session moves there.
//!
//! When that fails (or a side knows its NAT gives each destination its own
//! port), the next attempt is **wide**: a side that may be behind such a
//! NAT opens [`WIDE_SOCKETS`] more sockets, each sending an opener to the
//! other side's punching socket (each gets its own random public port),
//! and the other side sprays [`SPRAY_PROBES`] probes at random ports of the
//! first side's public IP as the DHT reports it, in batches. With 256
//! ports open and 1024 probes, one probe lands on an open port with a
//! probability of about 98 % (the birthday approach). Nothing is sprayed at
//! an address the DHT does not report for the friend.
//!
//! A probe is a DHT ping request (0x00) sealed to the friend's DHT key whose
//! ping id is the attempt's token, which only the two peers know (it went
//! through their session), so a probe or its answer is both authentic and
//! fresh. Nothing here reaches a peer that sent no hello: c-toxcore peers
//! ignore the hello and never see the rest.
//!
//! Failed attempts are retried after 1 s, 15 s, 60 s, then every 5
//! minutes; a path lost later is punched again at once. [`Puncher::note`]
//! says why a friend has no direct path, for `tuntox status`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::crypto::PublicKey;
use crate::wire::punch::{Candidates, Hello, MAX_ADDRS, Mapping, PunchMessage, StopReason};

/// IP TTL of openers: our router forwards them (and maps them), the next
/// hop drops them.
pub const OPENER_TTL: u32 = 2;
/// How often knocks go to the friend's candidates while an attempt lasts.
pub const KNOCK_INTERVAL: Duration = Duration::from_millis(250);
/// How often our candidates are sent again (they travel as lossy
/// packets): by the answering side until the leader's `opened` arrives
/// (which shows that ours did), by the leader while the attempt lasts
/// (nothing acknowledges its `opened`).
pub const RESEND_INTERVAL: Duration = Duration::from_millis(500);
/// How long an attempt through one port each may take.
pub const NARROW_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a wide attempt may take.
pub const WIDE_TIMEOUT: Duration = Duration::from_secs(8);
/// Sockets a side that may map each destination to its own port opens in
/// a wide attempt (besides its punching socket).
pub const WIDE_SOCKETS: u16 = 256;
/// Probes sprayed at random ports of a friend that opened many sockets.
pub const SPRAY_PROBES: usize = 1024;
/// Probes per spray batch.
pub const SPRAY_BATCH: usize = 64;
/// Time between spray batches (1024 probes take 0.4 s).
pub const SPRAY_INTERVAL: Duration = Duration::from_millis(25);
/// A punched path the session has not used for this long is closed.
pub const PATH_IDLE: Duration = Duration::from_secs(30);
/// A friend that sent no hello this long after its session came up takes
/// no part in hole punching.
pub const HELLO_WAIT: Duration = Duration::from_secs(5);
/// How long the first attempt waits for DHT nodes to report our address
/// and the friend's.
pub const ADDRESS_WAIT: Duration = Duration::from_secs(10);
/// Sockets all attempts together hold at most.
pub const MAX_SOCKETS: usize = 600;
/// Waits before the next attempt after 1, 2, 3 and more failures.
pub const RETRY: [Duration; 4] =
    [Duration::from_secs(1), Duration::from_secs(15), Duration::from_secs(60), Duration::from_secs(300)];

/// One of the node's UDP sockets: [`SocketId::MAIN`] is the one the node
/// was started with; the others are opened for hole punching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u32);

impl SocketId {
    /// The node's own socket.
    pub const MAIN: SocketId = SocketId(0);
}

/// Sockets for the driver to open or close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCommand {
    /// Bind a new UDP socket (an ephemeral port, the main socket's address
    /// family) and report it with `socket_opened`.
    Open(SocketId),
    /// Close it; nothing more is sent on it.
    Close(SocketId),
}

/// A probe to send: a DHT ping carrying `token`, to the friend's DHT key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The friend (real key).
    pub peer: PublicKey,
    /// The socket it leaves from.
    pub socket: SocketId,
    /// Where to.
    pub dst: SocketAddr,
    /// The IP TTL: `Some` for openers.
    pub ttl: Option<u32>,
    /// The ping id.
    pub token: u64,
}

/// A working path to a friend: its packets go to `addr` from `socket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathFound {
    /// The friend (real key).
    pub peer: PublicKey,
    /// Our socket.
    pub socket: SocketId,
    /// The friend's address as that socket sees it.
    pub addr: SocketAddr,
}

/// What the node knows about a friend, for the puncher's decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FriendView {
    /// Its session is established.
    pub established: bool,
    /// Its session's packets arrive over UDP.
    pub direct: bool,
    /// The address its session sends UDP packets to.
    pub session_addr: Option<SocketAddr>,
    /// The addresses DHT nodes report for it.
    pub reported: Vec<SocketAddr>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PunchStats {
    /// Attempts started or joined.
    pub attempts: u64,
    /// Wide ones among them.
    pub wide_attempts: u64,
    /// Attempts that found a path.
    pub found: u64,
    /// Attempts that ended without one.
    pub failed: u64,
    /// Openers sent.
    pub openers: u64,
    /// Knocks sent.
    pub knocks: u64,
    /// Spray probes sent.
    pub sprayed: u64,
    /// Sockets asked for.
    pub sockets_opened: u64,
}

/// How the last attempt ended, for the note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Found,
    Failed { wide: bool },
}

#[derive(Debug)]
struct Attempt {
    number: u32,
    /// We lead it (the smaller key).
    leads: bool,
    token: u64,
    wide: bool,
    started: Instant,
    primary: SocketId,
    primary_port: Option<u16>,
    extras: Vec<SocketId>,
    /// Extra sockets whose opening was reported (opened or failed).
    extras_reported: usize,
    /// Extra sockets that opened.
    extras_open: u16,
    failed_socket: bool,
    sent_offer: bool,
    theirs: Option<Candidates>,
    openers_out: bool,
    peer_opened: bool,
    knocking: bool,
    last_knock: Option<Instant>,
    spray: Vec<SocketAddr>,
    next_spray: Option<Instant>,
    /// Our latest candidates and when they went.
    sent: Option<(Instant, Candidates)>,
}

impl Attempt {
    fn ready(&self) -> bool {
        self.primary_port.is_some() && self.extras_reported == self.extras.len()
    }

    /// Whether our candidates still go again: the answering side's until
    /// the leader's `opened` arrives (the leader sends it only after
    /// reading ours), the leader's while the attempt lasts, since nothing
    /// acknowledges its `opened` and, lost, it would keep the other side
    /// from knocking and spraying (needed when the leader's NAT maps per
    /// destination).
    fn resends(&self) -> bool {
        self.leads || !self.peer_opened
    }

    fn timeout(&self) -> Duration {
        if self.wide { WIDE_TIMEOUT } else { NARROW_TIMEOUT }
    }

    fn owns(&self, socket: SocketId) -> bool {
        self.primary == socket || self.extras.contains(&socket)
    }

    fn sockets(&self) -> impl Iterator<Item = SocketId> + '_ {
        std::iter::once(self.primary).chain(self.extras.iter().copied())
    }
}

#[derive(Debug, Clone, Copy)]
struct Path {
    socket: SocketId,
    addr: SocketAddr,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct FriendPunch {
    established: Option<Instant>,
    peer: Option<Hello>,
    /// Its mapping as its candidates last said.
    peer_mapping: Mapping,
    reported: Vec<SocketAddr>,
    attempt: Option<Attempt>,
    /// The number of the last attempt that ended (its late messages are
    /// not a new one).
    ended: Option<u32>,
    next_number: u32,
    failures: u32,
    next_try: Option<Instant>,
    path: Option<Path>,
    outcome: Option<Outcome>,
    /// The friend's port as a probe showed it differed from what it
    /// announced: its NAT maps per destination.
    seen_per_destination: bool,
}

/// Hole punching toward all friends of a node.
#[derive(Debug)]
pub struct Puncher {
    our_pk: PublicKey,
    udp: bool,
    own_reports: Vec<SocketAddr>,
    mapped: Option<SocketAddr>,
    friends: HashMap<PublicKey, FriendPunch>,
    sockets: HashMap<SocketId, PublicKey>,
    next_socket: u32,
    rng: ChaCha20Rng,
    messages: VecDeque<(PublicKey, PunchMessage)>,
    commands: VecDeque<SocketCommand>,
    probes: VecDeque<Probe>,
    paths: VecDeque<PathFound>,
    stats: PunchStats,
}

impl Puncher {
    /// The puncher of the node whose long-term key is `our_pk`; `udp`: the
    /// node uses UDP at all; randomness (tokens, spray ports) from `seed`.
    pub fn new(our_pk: PublicKey, udp: bool, seed: [u8; 32]) -> Self {
        Self {
            our_pk,
            udp,
            own_reports: Vec::new(),
            mapped: None,
            friends: HashMap::default(),
            sockets: HashMap::default(),
            next_socket: 1,
            rng: ChaCha20Rng::from_seed(seed),
            messages: VecDeque::new(),
            commands: VecDeque::new(),
            probes: VecDeque::new(),
            paths: VecDeque::new(),
            stats: PunchStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> PunchStats {
        self.stats
    }

    /// Where DHT nodes see our main socket (fresh reports).
    pub fn set_own_reports(&mut self, reports: Vec<SocketAddr>) {
        self.own_reports = reports;
    }

    /// Where a router port mapping makes our main socket reachable.
    pub fn set_mapped(&mut self, addr: Option<SocketAddr>) {
        self.mapped = addr;
    }

    /// Our NAT's mapping as the DHT's reports show it.
    pub fn own_mapping(&self) -> Mapping {
        mapping_of(&self.own_reports)
    }

    /// Whether `peer` sent a hello: it takes part in hole punching.
    pub fn takes_part(&self, peer: &PublicKey) -> bool {
        self.friends.get(peer).is_some_and(|f| f.peer.is_some())
    }

    /// Whether an attempt with `peer` is under way.
    pub fn attempting(&self, peer: &PublicKey) -> bool {
        self.friends.get(peer).is_some_and(|f| f.attempt.is_some())
    }

    /// The friend a socket of ours punches toward.
    pub fn socket_owner(&self, socket: SocketId) -> Option<PublicKey> {
        self.sockets.get(&socket).copied()
    }

    fn leads(&self, peer: &PublicKey) -> bool {
        self.our_pk.as_bytes() < peer.as_bytes()
    }

    /// A session with `peer` came up: say hello (every tuntox peer does;
    /// other Tox clients ignore it). What an earlier session punched is
    /// dropped.
    pub fn established(&mut self, now: Instant, peer: PublicKey) {
        self.closed(&peer);
        let hello = Hello { udp: self.udp, mapping: self.own_mapping() };
        self.friends.insert(peer, FriendPunch { established: Some(now), ..FriendPunch::default() });
        self.messages.push_back((peer, PunchMessage::Hello(hello)));
    }

    /// The session with `peer` ended: its attempt and path go.
    pub fn closed(&mut self, peer: &PublicKey) {
        if let Some(mut friend) = self.friends.remove(peer) {
            if let Some(attempt) = friend.attempt.take() {
                self.close_attempt(&attempt, None);
            }
            if let Some(path) = friend.path.take() {
                self.close_socket(path.socket);
            }
        }
    }

    /// A message from `peer` over its session.
    pub fn handle_message(&mut self, now: Instant, peer: PublicKey, message: PunchMessage) {
        let leads = self.leads(&peer);
        let Some(friend) = self.friends.get_mut(&peer) else { return };
        match message {
            PunchMessage::Hello(hello) => {
                friend.peer = Some(hello);
                friend.peer_mapping = friend.peer_mapping.max_known(hello.mapping);
            }
            PunchMessage::Candidates(theirs) => {
                if friend.peer.is_none() {
                    return;
                }
                friend.peer_mapping = friend.peer_mapping.max_known(theirs.mapping);
                let current = friend.attempt.as_ref().map(|a| a.number);
                if current != Some(theirs.attempt) {
                    if leads || friend.ended == Some(theirs.attempt) {
                        // A late message of an attempt that ended.
                        return;
                    }
                    if let Some(old) = friend.attempt.take() {
                        self.close_attempt(&old, None);
                    }
                    self.start_attempt(now, peer, theirs.attempt, theirs.token, theirs.wide);
                }
                let Some(attempt) = self.friends.get_mut(&peer).and_then(|f| f.attempt.as_mut()) else { return };
                if attempt.token != theirs.token {
                    return;
                }
                attempt.peer_opened |= theirs.opened;
                attempt.theirs = Some(theirs);
                self.progress(now, &peer);
            }
            PunchMessage::Stop { attempt, reason } => {
                if friend.attempt.as_ref().is_some_and(|a| a.number == attempt) && reason == StopReason::GaveUp {
                    self.end_attempt(now, &peer, false);
                }
            }
        }
    }

    /// The driver opened socket `id` on local port `port` (`None`: it
    /// could not).
    pub fn socket_opened(&mut self, now: Instant, id: SocketId, port: Option<u16>) {
        let Some(peer) = self.sockets.get(&id).copied() else {
            // Closed meanwhile.
            if port.is_some() {
                self.commands.push_back(SocketCommand::Close(id));
            }
            return;
        };
        let Some(attempt) = self.friends.get_mut(&peer).and_then(|f| f.attempt.as_mut()) else { return };
        if attempt.primary == id {
            match port {
                Some(port) => attempt.primary_port = Some(port),
                None => attempt.failed_socket = true,
            }
        } else if attempt.extras.contains(&id) {
            attempt.extras_reported += 1;
            if port.is_some() {
                attempt.extras_open += 1;
            }
        }
        if attempt.failed_socket {
            self.end_attempt(now, &peer, false);
            return;
        }
        self.progress(now, &peer);
    }

    /// A probe of `peer` carrying `token` (its DHT key sealed it) arrived
    /// on `socket` from `from`, or its answer did: that pair works.
    /// Returns whether it belonged to the friend's current attempt.
    pub fn heard(&mut self, now: Instant, peer: PublicKey, socket: SocketId, from: SocketAddr, token: u64) -> bool {
        let Some(friend) = self.friends.get(&peer) else { return false };
        let Some(attempt) = &friend.attempt else { return false };
        if attempt.token != token || !(attempt.owns(socket) || socket == SocketId::MAIN) {
            return false;
        }
        self.found(now, peer, socket, from);
        true
    }

    /// The session with `peer` took `addr` as the friend's address after
    /// an authenticated packet from there arrived on `socket`
    /// (peer-reflexive): during an attempt, on one of its sockets, that is
    /// the path found.
    pub fn learned(&mut self, now: Instant, peer: PublicKey, socket: SocketId, addr: SocketAddr) {
        let Some(friend) = self.friends.get(&peer) else { return };
        if friend.attempt.as_ref().is_some_and(|a| a.owns(socket)) {
            self.found(now, peer, socket, addr);
        }
    }

    fn found(&mut self, now: Instant, peer: PublicKey, socket: SocketId, addr: SocketAddr) {
        let Some(friend) = self.friends.get_mut(&peer) else { return };
        let Some(attempt) = friend.attempt.take() else { return };
        friend.ended = Some(attempt.number);
        if let Some(theirs) = &attempt.theirs
            && !theirs.addrs.contains(&addr)
            && theirs.addrs.iter().any(|a| a.ip() == addr.ip())
            && socket != SocketId::MAIN
        {
            friend.seen_per_destination = true;
        }
        tracing::debug!(friend = ?peer, ?socket, %addr, attempt = attempt.number, wide = attempt.wide, "hole punching: path found");
        let old = friend.path.replace(Path { socket, addr, last_used: now });
        friend.failures = 0;
        friend.next_try = None;
        friend.outcome = Some(Outcome::Found);
        self.stats.found += 1;
        self.messages.push_back((peer, PunchMessage::Stop { attempt: attempt.number, reason: StopReason::Found }));
        self.close_attempt(&attempt, Some(socket));
        if let Some(old) = old
            && old.socket != socket
        {
            self.close_socket(old.socket);
        }
        self.paths.push_back(PathFound { peer, socket, addr });
    }

    /// Periodic work: starts attempts where due (the leading side), sends
    /// knocks and spray batches, ends attempts that took too long, closes
    /// paths the session left. `view` tells how each friend stands.
    pub fn handle_timeout(&mut self, now: Instant, view: impl Fn(&PublicKey) -> FriendView) {
        let peers: Vec<PublicKey> = self.friends.keys().copied().collect();
        for peer in peers {
            let view = view(&peer);
            let Some(friend) = self.friends.get_mut(&peer) else { continue };
            friend.reported = view.reported.clone();
            if let Some(path) = &mut friend.path {
                if view.direct && view.session_addr == Some(path.addr) {
                    path.last_used = now;
                } else if now >= path.last_used + PATH_IDLE {
                    tracing::debug!(friend = ?peer, addr = %path.addr, "hole punching: the session left the punched path");
                    let socket = path.socket;
                    friend.path = None;
                    friend.next_try = Some(now);
                    self.close_socket(socket);
                }
            }
            let Some(friend) = self.friends.get(&peer) else { continue };
            if let Some(attempt) = &friend.attempt {
                let expired = now >= attempt.started + attempt.timeout();
                if expired {
                    self.end_attempt(now, &peer, true);
                } else {
                    self.tick_attempt(now, &peer);
                }
                continue;
            }
            let Some(hello) = friend.peer else { continue };
            let due = friend.next_try.is_none_or(|t| now >= t);
            // Both addresses first (DHT nodes report them within seconds of
            // the start), so that each side has somewhere to open and knock;
            // after ADDRESS_WAIT, without (a side whose UDP is blocked never
            // gets one, and the attempt's failure says so).
            let addressed = !self.own_reports.is_empty() && !friend.reported.is_empty();
            let waited = friend.established.is_some_and(|t| now >= t + ADDRESS_WAIT);
            if self.udp
                && (addressed || waited)
                && hello.udp
                && view.established
                && !view.direct
                && friend.path.is_none()
                && due
                && self.leads(&peer)
            {
                let wide = self.wants_wide(&peer);
                let Some(friend) = self.friends.get_mut(&peer) else { continue };
                friend.next_number = friend.next_number.wrapping_add(1);
                let number = friend.next_number;
                let token = self.rng.next_u64() | 1;
                self.start_attempt(now, peer, number, token, wide);
                self.progress(now, &peer);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has attempt work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.friends
            .values()
            .filter_map(|f| f.attempt.as_ref())
            .map(|a| {
                let mut next = a.started + a.timeout();
                if let Some((at, _)) = &a.sent
                    && a.resends()
                {
                    next = next.min(*at + RESEND_INTERVAL);
                }
                if a.knocking {
                    next = next.min(a.last_knock.map_or(a.started, |t| t + KNOCK_INTERVAL));
                }
                if let Some(spray) = a.next_spray {
                    next = next.min(spray);
                }
                next
            })
            .min()
    }

    /// The next message for a friend's session.
    pub fn poll_message(&mut self) -> Option<(PublicKey, PunchMessage)> {
        self.messages.pop_front()
    }

    /// The next socket to open or close.
    pub fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        self.commands.pop_front()
    }

    /// The next probe to send.
    pub fn poll_probe(&mut self) -> Option<Probe> {
        self.probes.pop_front()
    }

    /// The next path found.
    pub fn poll_path(&mut self) -> Option<PathFound> {
        self.paths.pop_front()
    }

    /// Why `peer` has no direct path, or where punching stands (`None`
    /// for a friend the puncher knows nothing about).
    pub fn note(&self, peer: &PublicKey, now: Instant) -> Option<String> {
        if !self.udp {
            return Some("UDP is off".to_owned());
        }
        let friend = self.friends.get(peer)?;
        let Some(hello) = friend.peer else {
            return Some(if friend.established.is_some_and(|t| now >= t + HELLO_WAIT) {
                "the friend takes no part in hole punching (not a tuntox peer); Tox's own NAT traversal only".to_owned()
            } else {
                "waiting for the friend's hole-punching hello".to_owned()
            });
        };
        if !hello.udp {
            return Some("UDP is off on the friend's side".to_owned());
        }
        if let Some(attempt) = &friend.attempt {
            let kind = if attempt.wide { "wide" } else { "one port each" };
            return Some(format!("hole punching: attempt {} ({kind}) under way", attempt.number));
        }
        if friend.path.is_some() {
            return Some("hole punching found a path; the session is moving to it".to_owned());
        }
        let ours = self.own_mapping();
        let theirs = self.peer_mapping(friend);
        let retry = friend
            .next_try
            .filter(|t| *t > now)
            .map(|t| format!("; next attempt in {} s", (t - now).as_secs().max(1)))
            .unwrap_or_default();
        let why = match friend.outcome {
            None if self.own_reports.is_empty() => {
                return Some("hole punching: waiting for DHT nodes to report our public address".to_owned());
            }
            None if friend.reported.is_empty() => {
                return Some("hole punching: waiting for DHT nodes to report the friend's public address".to_owned());
            }
            None => return Some("hole punching has not started yet".to_owned()),
            Some(Outcome::Found) => return Some("hole punching: waiting for the next attempt".to_owned()),
            Some(Outcome::Failed { .. }) if self.own_reports.is_empty() => {
                "no DHT node reports our public address (is UDP blocked on our side?)".to_owned()
            }
            Some(Outcome::Failed { .. }) if friend.reported.is_empty() => {
                "no DHT node reports the friend's public address (is UDP blocked on its side?)".to_owned()
            }
            Some(Outcome::Failed { .. }) if ours == Mapping::PerDestination && theirs == Mapping::PerDestination => {
                "both routers map each destination to a new port".to_owned()
            }
            Some(Outcome::Failed { .. }) if theirs == Mapping::PerDestination => {
                "the friend's router maps each destination to a new port".to_owned()
            }
            Some(Outcome::Failed { .. }) if ours == Mapping::PerDestination => {
                "our router maps each destination to a new port".to_owned()
            }
            Some(Outcome::Failed { wide: true }) => format!(
                "no probe got through either router, not even through {WIDE_SOCKETS} ports (both may map each destination to a new port, or filter UDP)"
            ),
            Some(Outcome::Failed { wide: false }) => "no probe got through either router".to_owned(),
        };
        Some(format!("{why}; using the TCP relay{retry}"))
    }

    /// The friend's mapping as far as anyone knows.
    fn peer_mapping(&self, friend: &FriendPunch) -> Mapping {
        if friend.seen_per_destination {
            return Mapping::PerDestination;
        }
        friend.peer_mapping.max_known(mapping_of(&friend.reported))
    }

    /// Whether the next attempt with `peer` goes wide: after a failure or
    /// when a side is known to map per destination, unless both are known
    /// not to.
    fn wants_wide(&self, peer: &PublicKey) -> bool {
        let Some(friend) = self.friends.get(peer) else { return false };
        let ours = self.own_mapping();
        let theirs = self.peer_mapping(friend);
        let both_cone = ours == Mapping::EndpointIndependent && theirs == Mapping::EndpointIndependent;
        let per_destination = ours == Mapping::PerDestination || theirs == Mapping::PerDestination;
        // Many ports are no use while a side has no public address at all
        // (its UDP gets nowhere).
        let addressed = !self.own_reports.is_empty() && !friend.reported.is_empty();
        addressed && !both_cone && (friend.failures > 0 || per_destination)
    }

    fn open_socket(&mut self, peer: PublicKey) -> SocketId {
        let id = SocketId(self.next_socket);
        self.next_socket = self.next_socket.wrapping_add(1).max(1);
        self.sockets.insert(id, peer);
        self.commands.push_back(SocketCommand::Open(id));
        self.stats.sockets_opened += 1;
        id
    }

    fn close_socket(&mut self, id: SocketId) {
        if self.sockets.remove(&id).is_some() {
            self.commands.push_back(SocketCommand::Close(id));
        }
    }

    fn close_attempt(&mut self, attempt: &Attempt, keep: Option<SocketId>) {
        for socket in attempt.sockets() {
            if Some(socket) != keep {
                self.close_socket(socket);
            }
        }
    }

    fn start_attempt(&mut self, now: Instant, peer: PublicKey, number: u32, token: u64, wide: bool) {
        let leads = self.leads(&peer);
        let primary = self.open_socket(peer);
        // Many sockets only where our NAT may need them, and within the cap.
        let extras = if wide && !self.own_reports.is_empty() && self.own_mapping() != Mapping::EndpointIndependent {
            let room = MAX_SOCKETS.saturating_sub(self.sockets.len());
            (0..usize::from(WIDE_SOCKETS).min(room)).map(|_| self.open_socket(peer)).collect()
        } else {
            Vec::new()
        };
        tracing::debug!(friend = ?peer, number, wide, extra_sockets = extras.len(), "hole punching: attempt");
        self.stats.attempts += 1;
        if wide {
            self.stats.wide_attempts += 1;
        }
        let Some(friend) = self.friends.get_mut(&peer) else { return };
        friend.attempt = Some(Attempt {
            number,
            leads,
            token,
            wide,
            started: now,
            primary,
            primary_port: None,
            extras,
            extras_reported: 0,
            extras_open: 0,
            failed_socket: false,
            sent_offer: false,
            theirs: None,
            openers_out: false,
            peer_opened: false,
            knocking: false,
            last_knock: None,
            spray: Vec::new(),
            next_spray: None,
            sent: None,
        });
    }

    /// The attempt failed (`timed_out`) or the friend gave up.
    fn end_attempt(&mut self, now: Instant, peer: &PublicKey, tell: bool) {
        let Some(friend) = self.friends.get_mut(peer) else { return };
        let Some(attempt) = friend.attempt.take() else { return };
        friend.ended = Some(attempt.number);
        friend.failures += 1;
        let wait = RETRY[(friend.failures as usize - 1).min(RETRY.len() - 1)];
        friend.next_try = Some(now + wait);
        friend.outcome = Some(Outcome::Failed { wide: attempt.wide });
        self.stats.failed += 1;
        tracing::debug!(friend = ?peer, number = attempt.number, wide = attempt.wide, "hole punching: no path; next attempt in {wait:?}");
        if tell {
            self.messages
                .push_back((*peer, PunchMessage::Stop { attempt: attempt.number, reason: StopReason::GaveUp }));
        }
        self.close_attempt(&attempt, None);
    }

    /// Our candidates for `attempt`: our public addresses with the punching
    /// socket's port, and a router's mapping of our main socket.
    fn our_candidates(&self, attempt: &Attempt, opened: bool) -> Candidates {
        let port = attempt.primary_port.unwrap_or(0);
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for report in &self.own_reports {
            let addr = SocketAddr::new(report.ip(), port);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if let Some(mapped) = self.mapped
            && !addrs.contains(&mapped)
        {
            addrs.push(mapped);
        }
        addrs.truncate(MAX_ADDRS);
        Candidates {
            attempt: attempt.number,
            token: attempt.token,
            wide: attempt.wide,
            opened,
            mapping: self.own_mapping(),
            port,
            extra: attempt.extras_open,
            addrs,
        }
    }

    /// Where the friend's punching socket may be seen: what it says, and
    /// its port at each address the DHT reports for it.
    fn targets(friend: &FriendPunch, theirs: &Candidates) -> Vec<SocketAddr> {
        let mut targets: Vec<SocketAddr> = theirs.addrs.iter().copied().filter(|a| a.port() != 0).collect();
        for report in &friend.reported {
            let addr = SocketAddr::new(report.ip(), theirs.port);
            if theirs.port != 0 && !targets.contains(&addr) {
                targets.push(addr);
            }
        }
        targets.truncate(MAX_ADDRS);
        targets
    }

    /// Moves an attempt on as far as what we have allows.
    fn progress(&mut self, now: Instant, peer: &PublicKey) {
        let leads = self.leads(peer);
        let Some(friend) = self.friends.get(peer) else { return };
        let Some(attempt) = &friend.attempt else { return };
        if !attempt.ready() {
            return;
        }
        if leads && !attempt.sent_offer {
            let offer = self.our_candidates(attempt, false);
            self.messages.push_back((*peer, PunchMessage::Candidates(offer.clone())));
            if let Some(attempt) = self.friends.get_mut(peer).and_then(|f| f.attempt.as_mut()) {
                attempt.sent_offer = true;
                attempt.sent = Some((now, offer));
            }
        }
        let Some(friend) = self.friends.get(peer) else { return };
        let Some(attempt) = &friend.attempt else { return };
        if let Some(theirs) = &attempt.theirs
            && !attempt.openers_out
        {
            let targets = Self::targets(friend, theirs);
            let token = attempt.token;
            for dst in &targets {
                self.probes.push_back(Probe {
                    peer: *peer,
                    socket: attempt.primary,
                    dst: *dst,
                    ttl: Some(OPENER_TTL),
                    token,
                });
            }
            for socket in &attempt.extras {
                for dst in &targets {
                    self.probes.push_back(Probe {
                        peer: *peer,
                        socket: *socket,
                        dst: *dst,
                        ttl: Some(OPENER_TTL),
                        token,
                    });
                }
            }
            self.stats.openers += ((1 + attempt.extras.len()) * targets.len()) as u64;
            let answer = self.our_candidates(attempt, true);
            self.messages.push_back((*peer, PunchMessage::Candidates(answer.clone())));
            if let Some(attempt) = self.friends.get_mut(peer).and_then(|f| f.attempt.as_mut()) {
                attempt.openers_out = true;
                attempt.sent = Some((now, answer));
            }
        }
        let own = self.own_mapping();
        let Some(friend) = self.friends.get_mut(peer) else { return };
        let reported = friend.reported.clone();
        let Some(attempt) = &mut friend.attempt else { return };
        if attempt.openers_out && attempt.peer_opened && !attempt.knocking {
            attempt.knocking = true;
            // The friend opened many sockets toward our punching socket:
            // spray its public IP (as the DHT reports it) at random ports.
            let extra = attempt.theirs.as_ref().map_or(0, |t| t.extra);
            if extra > 0 && own != Mapping::PerDestination {
                let mut ips: Vec<IpAddr> = Vec::new();
                for report in &reported {
                    if !ips.contains(&report.ip()) {
                        ips.push(report.ip());
                    }
                }
                let mut spray = Vec::new();
                for ip in ips {
                    let mut ports: Vec<u16> = Vec::with_capacity(SPRAY_PROBES);
                    while ports.len() < SPRAY_PROBES {
                        let port = 1024 + (self.rng.next_u32() % (65536 - 1024)) as u16;
                        if !ports.contains(&port) {
                            ports.push(port);
                        }
                    }
                    spray.extend(ports.into_iter().map(|p| SocketAddr::new(ip, p)));
                }
                if !spray.is_empty() {
                    attempt.next_spray = Some(now);
                }
                attempt.spray = spray;
            }
            self.tick_attempt(now, peer);
        }
    }

    /// Our candidates again, knocks and spray batches, where due.
    fn tick_attempt(&mut self, now: Instant, peer: &PublicKey) {
        let Some(attempt) = self.friends.get_mut(peer).and_then(|f| f.attempt.as_mut()) else { return };
        let resends = attempt.resends();
        if let Some((at, candidates)) = &mut attempt.sent
            && resends
            && now >= *at + RESEND_INTERVAL
        {
            *at = now;
            self.messages.push_back((*peer, PunchMessage::Candidates(candidates.clone())));
        }
        let Some(friend) = self.friends.get(peer) else { return };
        let Some(attempt) = &friend.attempt else { return };
        if !attempt.knocking {
            return;
        }
        let (socket, token) = (attempt.primary, attempt.token);
        if attempt.last_knock.is_none_or(|t| now >= t + KNOCK_INTERVAL)
            && let Some(theirs) = &attempt.theirs
        {
            let targets = Self::targets(friend, theirs);
            self.stats.knocks += targets.len() as u64;
            for dst in targets {
                self.probes.push_back(Probe { peer: *peer, socket, dst, ttl: None, token });
            }
            if let Some(attempt) = self.friends.get_mut(peer).and_then(|f| f.attempt.as_mut()) {
                attempt.last_knock = Some(now);
            }
        }
        let Some(attempt) = self.friends.get_mut(peer).and_then(|f| f.attempt.as_mut()) else { return };
        if attempt.next_spray.is_some_and(|t| now >= t) {
            let take = attempt.spray.len().min(SPRAY_BATCH);
            let batch: Vec<SocketAddr> = attempt.spray.drain(..take).collect();
            attempt.next_spray = if attempt.spray.is_empty() { None } else { Some(now + SPRAY_INTERVAL) };
            self.stats.sprayed += batch.len() as u64;
            for dst in batch {
                self.probes.push_back(Probe { peer: *peer, socket, dst, ttl: None, token });
            }
        }
    }
}

impl Mapping {
    /// The more informative of two claims.
    fn max_known(self, other: Mapping) -> Mapping {
        match (self, other) {
            (Mapping::PerDestination, _) | (_, Mapping::PerDestination) => Mapping::PerDestination,
            (Mapping::EndpointIndependent, _) | (_, Mapping::EndpointIndependent) => Mapping::EndpointIndependent,
            _ => Mapping::Unknown,
        }
    }
}

/// A NAT's mapping as reports of one socket's public address show it: two
/// ports for one IP mean a port per destination, two reports of one
/// address (from different nodes) an endpoint-independent mapping.
pub fn mapping_of(reports: &[SocketAddr]) -> Mapping {
    let mut mapping = Mapping::Unknown;
    for (i, a) in reports.iter().enumerate() {
        for b in &reports[i + 1..] {
            if a.ip() == b.ip() {
                if a.port() != b.port() {
                    return Mapping::PerDestination;
                }
                mapping = Mapping::EndpointIndependent;
            }
        }
    }
    mapping
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PublicKey {
        PublicKey::from_bytes([byte; 32])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Two punchers, messages handed over at once, sockets opened at once
    /// on ports 50000 + id.
    struct Pair {
        now: Instant,
        a: Puncher,
        b: Puncher,
        views: [FriendView; 2],
        probes: [Vec<Probe>; 2],
        open: [Vec<SocketId>; 2],
    }

    impl Pair {
        fn new() -> Self {
            let now = crate::proto::test_epoch();
            let mut a = Puncher::new(key(1), true, [1; 32]);
            let mut b = Puncher::new(key(2), true, [2; 32]);
            a.set_own_reports(vec![addr("198.18.1.2:33445")]);
            b.set_own_reports(vec![addr("198.18.2.2:33445")]);
            a.established(now, key(2));
            b.established(now, key(1));
            let view = |reported: &str| FriendView {
                established: true,
                direct: false,
                session_addr: None,
                reported: vec![addr(reported)],
            };
            let mut pair = Pair {
                now,
                a,
                b,
                views: [view("198.18.2.2:33445"), view("198.18.1.2:33445")],
                probes: [Vec::new(), Vec::new()],
                open: [Vec::new(), Vec::new()],
            };
            pair.pump();
            pair
        }

        fn side(&mut self, i: usize) -> &mut Puncher {
            if i == 0 { &mut self.a } else { &mut self.b }
        }

        fn pump(&mut self) {
            for _ in 0..10 {
                for i in 0..2 {
                    let now = self.now;
                    while let Some(command) = self.side(i).poll_socket_command() {
                        match command {
                            SocketCommand::Open(id) => {
                                self.open[i].push(id);
                                self.side(i).socket_opened(now, id, Some(50000 + id.0 as u16));
                            }
                            SocketCommand::Close(id) => self.open[i].retain(|s| *s != id),
                        }
                    }
                    while let Some((_, message)) = self.side(i).poll_message() {
                        let from = key(i as u8 + 1);
                        self.side(1 - i).handle_message(now, from, message);
                    }
                    while let Some(probe) = self.side(i).poll_probe() {
                        self.probes[i].push(probe);
                    }
                }
            }
        }

        fn tick(&mut self, by: Duration) {
            self.now += by;
            let now = self.now;
            let views = self.views.clone();
            self.a.handle_timeout(now, |_| views[0].clone());
            self.b.handle_timeout(now, |_| views[1].clone());
            self.pump();
        }
    }

    #[test]
    fn the_leader_offers_the_other_opens_first_and_knocks_follow_both_openers() {
        let mut p = Pair::new();
        assert!(p.a.takes_part(&key(2)) && p.b.takes_part(&key(1)), "hellos exchanged");
        p.tick(Duration::from_millis(10));
        assert_eq!(p.a.stats().attempts, 1, "the smaller key leads");
        assert_eq!(p.b.stats().attempts, 1, "and the other joins");
        // b's openers came before any knock of a's, and before b's knocks.
        let first_full = |probes: &[Probe]| probes.iter().position(|p| p.ttl.is_none());
        let b_openers: Vec<&Probe> = p.probes[1].iter().filter(|p| p.ttl == Some(OPENER_TTL)).collect();
        assert!(!b_openers.is_empty());
        assert!(b_openers.iter().all(|o| o.dst == addr(&format!("198.18.1.2:{}", 50000 + p.open[0][0].0))));
        let a_full = first_full(&p.probes[0]).expect("a knocks once b opened");
        assert!(p.probes[0][..a_full].iter().any(|o| o.ttl == Some(OPENER_TTL)), "a opened before knocking");
        assert!(p.probes[1].iter().any(|o| o.ttl.is_none()), "b knocks once a said it opened");
        // Knocks repeat while the attempt lasts, then it ends.
        let knocks = p.a.stats().knocks;
        p.tick(KNOCK_INTERVAL);
        assert!(p.a.stats().knocks > knocks);
        p.tick(NARROW_TIMEOUT);
        assert_eq!((p.a.stats().failed, p.b.stats().failed), (1, 1));
        assert!(p.open[0].is_empty() && p.open[1].is_empty(), "sockets closed: {:?}", p.open);
        let note = p.a.note(&key(2), p.now).unwrap();
        assert!(note.contains("no probe got through") && note.contains("TCP relay"), "{note}");
    }

    #[test]
    fn a_probe_that_arrives_is_the_path_and_the_other_sockets_close() {
        let mut p = Pair::new();
        p.tick(Duration::from_millis(10));
        let knock = *p.probes[0].iter().find(|o| o.ttl.is_none()).unwrap();
        let b_socket = p.open[1][0];
        assert!(p.b.heard(p.now, key(1), b_socket, addr("198.18.1.2:50001"), knock.token));
        assert_eq!(p.b.poll_path(), Some(PathFound { peer: key(1), socket: b_socket, addr: addr("198.18.1.2:50001") }));
        p.pump();
        assert_eq!(p.open[1], vec![b_socket], "the path's socket stays");
        // A wrong token or a socket of no attempt is nothing.
        assert!(!p.a.heard(p.now, key(2), p.open[0][0], addr("198.18.2.2:50001"), knock.token ^ 2));
        // The other side learns it from the answer.
        assert!(p.a.heard(
            p.now,
            key(2),
            p.open[0][0],
            addr(&format!("198.18.2.2:{}", 50000 + b_socket.0)),
            knock.token
        ));
        assert!(p.a.poll_path().is_some());
        assert_eq!((p.a.stats().found, p.b.stats().found), (1, 1));
        // A late message of the attempt starts nothing.
        let late = Candidates {
            attempt: 1,
            token: knock.token,
            wide: false,
            opened: true,
            mapping: Mapping::Unknown,
            port: 50001,
            extra: 0,
            addrs: vec![addr("198.18.1.2:50001")],
        };
        p.b.handle_message(p.now, key(1), PunchMessage::Candidates(late));
        assert!(!p.b.attempting(&key(1)) && p.b.stats().attempts == 1);
        // The path stays while the session uses it, and goes when it does not.
        p.views[0].direct = true;
        p.views[0].session_addr = Some(addr(&format!("198.18.2.2:{}", 50000 + b_socket.0)));
        p.views[1].direct = true;
        p.views[1].session_addr = Some(addr("198.18.1.2:50001"));
        p.tick(PATH_IDLE * 2);
        assert_eq!(p.open[1], vec![b_socket]);
        p.views[1].direct = false;
        p.tick(PATH_IDLE + Duration::from_secs(1));
        assert!(p.open[1].is_empty(), "closed once unused");
    }

    #[test]
    fn after_a_failure_the_next_attempt_is_wide_and_sprays_only_reported_ips() {
        let mut p = Pair::new();
        p.tick(Duration::from_millis(10));
        p.tick(NARROW_TIMEOUT);
        assert_eq!(p.a.stats().failed, 1);
        p.probes = [Vec::new(), Vec::new()];
        p.tick(RETRY[0]);
        assert_eq!(p.a.stats().wide_attempts, 1);
        // Neither knows its mapping: both open many sockets, both spray.
        assert_eq!(p.open[0].len(), 1 + usize::from(WIDE_SOCKETS));
        assert_eq!(p.open[1].len(), 1 + usize::from(WIDE_SOCKETS));
        for _ in 0..20 {
            p.tick(SPRAY_INTERVAL);
        }
        assert_eq!(p.a.stats().sprayed as usize, SPRAY_PROBES);
        let sprayed: Vec<&Probe> = p.probes[0].iter().filter(|o| o.ttl.is_none()).collect();
        assert!(sprayed.iter().all(|o| o.dst.ip() == addr("198.18.2.2:1").ip()), "only the IP the DHT reports");
        let openers = p.probes[1].iter().filter(|o| o.ttl == Some(OPENER_TTL)).count();
        assert!(openers > usize::from(WIDE_SOCKETS), "each extra socket opened toward a's punching socket");
        // A side whose NAT is known to keep its port opens no extra sockets.
        p.tick(WIDE_TIMEOUT);
        p.a.set_own_reports(vec![addr("198.18.1.2:33445"), addr("198.18.1.2:33445")]);
        p.tick(RETRY[1]);
        assert!(p.a.attempting(&key(2)));
        assert_eq!(p.open[0].len(), 1, "a keeps one port");
        assert_eq!(p.open[1].len(), 1 + usize::from(WIDE_SOCKETS));
    }

    #[test]
    fn nothing_happens_without_a_hello_or_on_a_direct_session() {
        let now = crate::proto::test_epoch();
        let mut a = Puncher::new(key(1), true, [1; 32]);
        a.established(now, key(2));
        assert!(matches!(a.poll_message(), Some((_, PunchMessage::Hello(_)))));
        let view = FriendView { established: true, ..FriendView::default() };
        a.handle_timeout(now, |_| view.clone());
        assert_eq!(a.stats().attempts, 0);
        assert!(a.note(&key(2), now).unwrap().contains("waiting"));
        assert!(a.note(&key(2), now + HELLO_WAIT).unwrap().contains("not a tuntox peer"));
        a.handle_message(now, key(2), PunchMessage::Hello(Hello { udp: true, mapping: Mapping::Unknown }));
        let direct = FriendView { established: true, direct: true, ..FriendView::default() };
        a.handle_timeout(now, |_| direct.clone());
        assert_eq!(a.stats().attempts, 0, "a direct session needs nothing");
        let mut off = Puncher::new(key(1), false, [1; 32]);
        off.established(now, key(2));
        off.handle_message(now, key(2), PunchMessage::Hello(Hello { udp: true, mapping: Mapping::Unknown }));
        off.handle_timeout(now, |_| view.clone());
        assert_eq!(off.stats().attempts, 0);
        assert_eq!(off.note(&key(2), now).as_deref(), Some("UDP is off"));
    }

    #[test]
    fn without_a_public_address_nothing_goes_wide_and_the_note_says_why() {
        let mut p = Pair::new();
        p.a.set_own_reports(Vec::new());
        p.tick(Duration::from_millis(10));
        assert_eq!(p.a.stats().attempts, 0, "waiting for our address");
        let note = p.a.note(&key(2), p.now).unwrap();
        assert!(note.contains("waiting for DHT nodes to report our public address"), "{note}");
        p.tick(ADDRESS_WAIT);
        assert_eq!(p.a.stats().attempts, 1, "then without");
        p.tick(NARROW_TIMEOUT);
        p.tick(RETRY[0]);
        assert_eq!((p.a.stats().attempts, p.a.stats().wide_attempts), (2, 0), "narrow again");
        assert_eq!(p.open[0].len(), 1);
        let note = p.b.note(&key(1), p.now).unwrap();
        assert!(note.contains("attempt 2"), "{note}");
        p.tick(NARROW_TIMEOUT);
        let note = p.a.note(&key(2), p.now).unwrap();
        assert!(note.starts_with("no DHT node reports our public address"), "{note}");
    }

    #[test]
    fn mappings_from_reports() {
        assert_eq!(mapping_of(&[addr("1.2.3.4:5")]), Mapping::Unknown);
        assert_eq!(mapping_of(&[addr("1.2.3.4:5"), addr("1.2.3.4:5")]), Mapping::EndpointIndependent);
        assert_eq!(mapping_of(&[addr("1.2.3.4:5"), addr("1.2.3.4:6")]), Mapping::PerDestination);
        assert_eq!(mapping_of(&[addr("1.2.3.4:5"), addr("1.2.3.5:6")]), Mapping::Unknown);
    }
}
