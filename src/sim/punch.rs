//! Hole punching on a virtual clock: two [`Puncher`]s, each on a host
//! behind a Linux router ([`Router`]), a public core between the
//! routers, and a relay that carries their messages (the session they
//! share). Probes stand for the DHT pings the node sends and are answered
//! as the DHT answers them; the hosts can also chatter between their main
//! ports first, as two Tox nodes do while they are plain DHT nodes to each
//! other, which is what leaves the conntrack entries that make plain
//! punching collide.
//!
//! A found path is checked by sending a datagram each way on it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::conntrack::{Input, Masquerade, Router};
use crate::crypto::PublicKey;
use crate::proto::punch::{FriendView, PathFound, Probe, PunchStats, Puncher, SocketCommand, SocketId};
use crate::wire::punch::PunchMessage;

/// The hosts' LAN address (the same on both sides, as two homes).
pub const LAN_IP: [u8; 4] = [10, 9, 0, 2];
/// The hosts' main port.
pub const MAIN_PORT: u16 = 33445;
/// A public DHT node both hosts talk to (it reports their addresses).
pub const DHT_NODE: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 10, 2)), 33445);
/// Default IP TTL.
pub const DEFAULT_TTL: u32 = 64;

/// How the bed is set up.
#[derive(Debug, Clone)]
pub struct PunchBedConfig {
    /// Each side's router.
    pub routers: [(Masquerade, Input); 2],
    /// The hosts send to each other's main port every second, from the
    /// start (two Tox nodes in each other's DHT lists).
    pub chatter: bool,
    /// One-way delay between the routers.
    pub udp_delay: Duration,
    /// One-way delay of the relay.
    pub relay_delay: Duration,
    /// Probability that the relay loses a lossy message (candidates and
    /// stop travel as lossy packets; the hello is lossless).
    pub relay_loss: f64,
}

impl PunchBedConfig {
    /// Two routers of the given kinds, chatter on, 10 ms between routers,
    /// 30 ms through the relay.
    pub fn new(a: (Masquerade, Input), b: (Masquerade, Input)) -> Self {
        Self {
            routers: [a, b],
            chatter: true,
            udp_delay: Duration::from_millis(10),
            relay_delay: Duration::from_millis(30),
            relay_loss: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Probe(u64),
    Pong(u64),
    Chatter,
    Check(u64),
}

#[derive(Debug)]
enum Event {
    /// A datagram reaching a router from the core.
    Arrive { to: usize, src: SocketAddr, dst: SocketAddr, ttl: u32, payload: Payload },
    /// A message through the relay.
    Message { to: usize, message: PunchMessage },
}

/// One host, its router and its puncher.
#[derive(Debug)]
pub struct Side {
    /// The puncher.
    pub puncher: Puncher,
    /// The router.
    pub router: Router,
    key: PublicKey,
    /// Local ports of the open sockets.
    sockets: HashMap<SocketId, u16>,
    /// Where the DHT node sees the main socket.
    report: Option<SocketAddr>,
    /// The path the puncher found.
    pub path: Option<PathFound>,
    /// Check datagrams received on the path.
    pub checks: Vec<u64>,
}

/// The bed.
#[derive(Debug)]
pub struct PunchBed {
    now: Instant,
    start: Instant,
    config: PunchBedConfig,
    /// Both sides.
    pub sides: [Side; 2],
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    rng: ChaCha8Rng,
    last_chatter: [Option<Instant>; 2],
    /// Datagrams that died of their TTL between the routers.
    pub died: u64,
    /// Messages the relay lost.
    pub lost_messages: u64,
}

impl PunchBed {
    /// Two sides, side 0 at 198.18.1.2 and side 1 at 198.18.2.2; each
    /// asks the DHT node once, which gives its report.
    pub fn new(config: PunchBedConfig, seed: u64) -> Self {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let side = |i: usize, rng: &mut ChaCha8Rng| {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let key = PublicKey::from_bytes([i as u8 + 1; 32]);
            let (masquerade, input) = config.routers[i];
            let ip = IpAddr::from([198, 18, i as u8 + 1, 2]);
            let mut sockets = HashMap::new();
            sockets.insert(SocketId::MAIN, MAIN_PORT);
            Side {
                puncher: Puncher::new(key, true, seed),
                router: Router::new(ip, masquerade, input, rng.next_u64()),
                key,
                sockets,
                report: None,
                path: None,
                checks: Vec::new(),
            }
        };
        let sides = [side(0, &mut rng), side(1, &mut rng)];
        let mut bed = Self {
            now,
            start: now,
            config,
            sides,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            rng,
            last_chatter: [None; 2],
            died: 0,
            lost_messages: 0,
        };
        for i in 0..2 {
            let inside = SocketAddr::from((LAN_IP, MAIN_PORT));
            bed.sides[i].report = bed.sides[i].router.outbound(now, inside, DHT_NODE, DEFAULT_TTL).map(|(a, _)| a);
            let report = bed.sides[i].report.into_iter().collect();
            bed.sides[i].puncher.set_own_reports(report);
        }
        bed
    }

    /// The virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// What side `i`'s puncher says about the other side (see
    /// [`Puncher::note`]).
    pub fn note(&self, i: usize) -> Option<String> {
        self.sides[i].puncher.note(&self.sides[1 - i].key, self.now)
    }

    /// Counters of both punchers.
    pub fn stats(&self) -> [PunchStats; 2] {
        [self.sides[0].puncher.stats(), self.sides[1].puncher.stats()]
    }

    /// Brings the session up at the current time: both punchers say hello.
    pub fn establish(&mut self) {
        let now = self.now;
        let (k0, k1) = (self.sides[0].key, self.sides[1].key);
        self.sides[0].puncher.established(now, k1);
        self.sides[1].puncher.established(now, k0);
        self.pump();
    }

    /// Runs for `duration` in 5 ms steps.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += Duration::from_millis(5);
            self.deliver_due();
            // Side 1 chatters half a second after side 0, as two DHT nodes'
            // timers do: each one's datagram finds the other router unopened.
            for i in 0..2 {
                let due = self.last_chatter[i]
                    .map_or(self.start + Duration::from_millis(500 * i as u64), |t| t + Duration::from_secs(1));
                if self.config.chatter && self.now >= due {
                    self.last_chatter[i] = Some(self.now);
                    if let Some(dst) = self.sides[1 - i].report {
                        self.send(i, SocketId::MAIN, dst, DEFAULT_TTL, Payload::Chatter);
                    }
                }
            }
            let now = self.now;
            for i in 0..2 {
                let view = self.view(i);
                self.sides[i].puncher.handle_timeout(now, |_| view.clone());
            }
            self.pump();
        }
    }

    /// Runs until both sides found a path or `limit` passes; returns how
    /// long it took from now.
    pub fn run_until_found(&mut self, limit: Duration) -> Option<Duration> {
        let start = self.now;
        while self.now < start + limit {
            self.run_for(Duration::from_millis(5));
            if self.sides.iter().all(|s| s.path.is_some()) {
                return Some(self.now - start);
            }
        }
        None
    }

    /// Sends a check datagram each way along the found paths; true if both
    /// arrived.
    pub fn check_paths(&mut self) -> bool {
        let (Some(p0), Some(p1)) = (self.sides[0].path, self.sides[1].path) else { return false };
        self.send(0, p0.socket, p0.addr, DEFAULT_TTL, Payload::Check(0));
        self.send(1, p1.socket, p1.addr, DEFAULT_TTL, Payload::Check(1));
        self.run_for(Duration::from_millis(100));
        self.sides[1].checks.contains(&0) && self.sides[0].checks.contains(&1)
    }

    fn view(&self, i: usize) -> FriendView {
        let side = &self.sides[i];
        FriendView {
            established: true,
            direct: side.path.is_some(),
            session_addr: side.path.map(|p| p.addr),
            reported: self.sides[1 - i].report.into_iter().collect(),
        }
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at, self.seq)));
    }

    /// A datagram from side `i`'s socket: through its router, across the
    /// core (one hop) to the other router.
    fn send(&mut self, i: usize, socket: SocketId, dst: SocketAddr, ttl: u32, payload: Payload) {
        let Some(&port) = self.sides[i].sockets.get(&socket) else { return };
        let inside = SocketAddr::from((LAN_IP, port));
        let now = self.now;
        let Some((src, ttl)) = self.sides[i].router.outbound(now, inside, dst, ttl) else { return };
        // The core takes one off and forwards only with 2 or more left.
        if ttl < 2 {
            self.died += 1;
            return;
        }
        let to = (0..2).find(|&j| self.sides[j].router.public_ip() == dst.ip());
        if let Some(to) = to {
            let at = now + self.config.udp_delay;
            self.schedule(at, Event::Arrive { to, src, dst, ttl: ttl - 1, payload });
        }
    }

    fn deliver_due(&mut self) {
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > self.now {
                break;
            }
            self.queue.pop();
            let Some(event) = self.events.remove(&seq) else { continue };
            match event {
                Event::Message { to, message } => {
                    let from = self.sides[1 - to].key;
                    let now = self.now;
                    self.sides[to].puncher.handle_message(now, from, message);
                }
                Event::Arrive { to, src, dst, ttl, payload } => {
                    let now = self.now;
                    let Some(inside) = self.sides[to].router.inbound(now, src, dst, ttl) else { continue };
                    let Some(socket) =
                        self.sides[to].sockets.iter().find(|(_, p)| **p == inside.port()).map(|(s, _)| *s)
                    else {
                        continue;
                    };
                    let peer = self.sides[1 - to].key;
                    match payload {
                        Payload::Probe(token) => {
                            self.sides[to].puncher.heard(now, peer, socket, src, token);
                            // The DHT answers a ping from where it came.
                            self.send(to, socket, src, DEFAULT_TTL, Payload::Pong(token));
                        }
                        Payload::Pong(token) => {
                            self.sides[to].puncher.heard(now, peer, socket, src, token);
                        }
                        Payload::Check(n) => self.sides[to].checks.push(n),
                        Payload::Chatter => {}
                    }
                }
            }
            self.pump();
        }
    }

    fn pump(&mut self) {
        for _ in 0..4 {
            for i in 0..2 {
                let now = self.now;
                while let Some(command) = self.sides[i].puncher.poll_socket_command() {
                    match command {
                        SocketCommand::Open(id) => {
                            // An ephemeral port, as the kernel picks them.
                            let port = loop {
                                let port = 32768 + (self.rng.next_u32() % 28232) as u16;
                                if !self.sides[i].sockets.values().any(|p| *p == port) {
                                    break port;
                                }
                            };
                            self.sides[i].sockets.insert(id, port);
                            self.sides[i].puncher.socket_opened(now, id, Some(port));
                        }
                        SocketCommand::Close(id) => {
                            self.sides[i].sockets.remove(&id);
                        }
                    }
                }
                while let Some((_, message)) = self.sides[i].puncher.poll_message() {
                    let lost = message.lossy()
                        && self.config.relay_loss > 0.0
                        && (self.rng.next_u64() % 1_000_000) as f64 / 1e6 < self.config.relay_loss;
                    if lost {
                        self.lost_messages += 1;
                        continue;
                    }
                    let at = now + self.config.relay_delay;
                    self.schedule(at, Event::Message { to: 1 - i, message });
                }
                while let Some(Probe { socket, dst, ttl, token, .. }) = self.sides[i].puncher.poll_probe() {
                    self.send(i, socket, dst, ttl.unwrap_or(DEFAULT_TTL), Payload::Probe(token));
                }
                while let Some(path) = self.sides[i].puncher.poll_path() {
                    self.sides[i].path = Some(path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONE: (Masquerade, Input) = (Masquerade::KeepPort, Input::Accept);

    /// Without the puncher: chatter alone, between main ports, keeps the
    /// routers' held entries alive and collides (what the bed showed).
    #[test]
    fn chatter_between_main_ports_collides() {
        let mut bed = PunchBed::new(PunchBedConfig::new(CONE, CONE), 1);
        bed.run_for(Duration::from_secs(5));
        let collisions = bed.sides[0].router.stats().collisions + bed.sides[1].router.stats().collisions;
        assert!(collisions > 0, "{:?}", bed.sides[1].router.entries(bed.now));
    }
}
