//! A Linux home router for the simulator: `MASQUERADE` (or `MASQUERADE
//! --random-fully`) on its public side, conntrack filtering, and an INPUT
//! chain that accepts or drops what nobody asked for, as
//! tests/support/natbed.rs builds them with iptables. Only UDP, only what
//! hole punching meets:
//!
//! - An outbound datagram makes (or refreshes) an entry: original tuple
//!   (inside, destination), reply tuple (destination, public address).
//!   `MASQUERADE` keeps the inside port unless an entry already uses that
//!   reply tuple, else takes a random free port; `--random-fully` always
//!   takes a random free port (1024-65535).
//! - An inbound datagram matching an entry's reply tuple goes to the inside
//!   address (the entry is then replied); anything else is for the router
//!   itself. With INPUT accepting, such a datagram leaves an UNREPLIED
//!   entry for its tuple (30 s, refreshed by each datagram): the collision
//!   that moves the inside host's later datagram to that sender to a random
//!   port. With INPUT dropping, nothing is kept.
//! - TTL: the router forwards only datagrams with a TTL of 2 or more and
//!   takes one off; datagrams for the router itself need only 1.
//! - Entries last 30 s unreplied, 180 s once replied.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// How long an unreplied UDP entry lasts (nf_conntrack_udp_timeout).
pub const UNREPLIED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replied one lasts (nf_conntrack_udp_timeout_stream).
pub const REPLIED_TIMEOUT: Duration = Duration::from_secs(180);

/// The router's public port choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masquerade {
    /// Keep the inside port when free (endpoint-independent in practice).
    KeepPort,
    /// A random port per new flow (`--random-fully`).
    RandomFully,
}

/// What the INPUT chain does with unsolicited datagrams from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Accepts them: they leave UNREPLIED entries.
    Accept,
    /// Drops them: nothing is kept.
    Drop,
}

#[derive(Debug, Clone)]
struct Entry {
    orig: (SocketAddr, SocketAddr),
    reply: (SocketAddr, SocketAddr),
    replied: bool,
    expires: Instant,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// New outbound flows that could not keep their inside port because
    /// an entry held the tuple.
    pub collisions: u64,
    /// Unsolicited inbound datagrams (for the router itself).
    pub unsolicited: u64,
    /// Datagrams dropped for their TTL.
    pub ttl_expired: u64,
}

/// One router.
#[derive(Debug, Clone)]
pub struct Router {
    public_ip: IpAddr,
    masquerade: Masquerade,
    input: Input,
    entries: Vec<Entry>,
    rng: ChaCha8Rng,
    stats: RouterStats,
}

impl Router {
    /// A router with public address `public_ip`.
    pub fn new(public_ip: IpAddr, masquerade: Masquerade, input: Input, seed: u64) -> Self {
        Self {
            public_ip,
            masquerade,
            input,
            entries: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            stats: RouterStats::default(),
        }
    }

    /// Its public IP.
    pub fn public_ip(&self) -> IpAddr {
        self.public_ip
    }

    /// Counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Entries alive at `now` (for diagnosis), one line each as `conntrack
    /// -L` would show them.
    pub fn entries(&self, now: Instant) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.expires > now)
            .map(|e| {
                let state = if e.replied { "" } else { " [UNREPLIED]" };
                format!("{} -> {}{state} reply {} -> {}", e.orig.0, e.orig.1, e.reply.0, e.reply.1)
            })
            .collect()
    }

    fn expire(&mut self, now: Instant) {
        self.entries.retain(|e| e.expires > now);
    }

    fn taken(&self, tuple: (SocketAddr, SocketAddr)) -> bool {
        self.entries.iter().any(|e| e.orig == tuple || e.reply == tuple)
    }

    /// A datagram from `inside` to `dst` with IP TTL `ttl`: the source the
    /// outside sees and the TTL it leaves with, or `None` when dropped.
    pub fn outbound(
        &mut self,
        now: Instant,
        inside: SocketAddr,
        dst: SocketAddr,
        ttl: u32,
    ) -> Option<(SocketAddr, u32)> {
        self.expire(now);
        if ttl < 2 {
            self.stats.ttl_expired += 1;
            return None;
        }
        if let Some(entry) = self.entries.iter_mut().find(|e| e.orig == (inside, dst)) {
            entry.expires = entry.expires.max(now + UNREPLIED_TIMEOUT);
            return Some((entry.reply.1, ttl - 1));
        }
        let keep = SocketAddr::new(self.public_ip, inside.port());
        let public = if self.masquerade == Masquerade::KeepPort && !self.taken((dst, keep)) {
            keep
        } else {
            if self.masquerade == Masquerade::KeepPort {
                self.stats.collisions += 1;
            }
            loop {
                let port = 1024 + (self.rng.next_u32() % (65536 - 1024)) as u16;
                let candidate = SocketAddr::new(self.public_ip, port);
                if !self.taken((dst, candidate)) {
                    break candidate;
                }
            }
        };
        self.entries.push(Entry {
            orig: (inside, dst),
            reply: (dst, public),
            replied: false,
            expires: now + UNREPLIED_TIMEOUT,
        });
        Some((public, ttl - 1))
    }

    /// A datagram from `src` to our public address `dst` arriving with TTL
    /// `ttl`: the inside address it goes to, or `None`.
    pub fn inbound(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, ttl: u32) -> Option<SocketAddr> {
        self.expire(now);
        if ttl == 0 {
            self.stats.ttl_expired += 1;
            return None;
        }
        if let Some(entry) = self.entries.iter_mut().find(|e| e.reply == (src, dst)) {
            if ttl < 2 {
                self.stats.ttl_expired += 1;
                return None;
            }
            entry.replied = true;
            entry.expires = entry.expires.max(now + REPLIED_TIMEOUT);
            return Some(entry.orig.0);
        }
        // For the router itself.
        self.stats.unsolicited += 1;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.orig == (src, dst)) {
            entry.expires = entry.expires.max(now + UNREPLIED_TIMEOUT);
        } else if self.input == Input::Accept {
            self.entries.push(Entry {
                orig: (src, dst),
                reply: (dst, src),
                replied: false,
                expires: now + UNREPLIED_TIMEOUT,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The same collision tests/nat_bed.rs shows on real routers.
    #[test]
    fn an_early_datagram_makes_the_reply_take_a_random_port() {
        let now = crate::proto::test_epoch();
        let mut a = Router::new("198.18.1.2".parse().unwrap(), Masquerade::KeepPort, Input::Accept, 1);
        let mut b = Router::new("198.18.2.2".parse().unwrap(), Masquerade::KeepPort, Input::Accept, 2);
        let host = addr("10.9.0.2:33445");
        let (a_src, ttl) = a.outbound(now, host, addr("198.18.2.2:33445"), 64).unwrap();
        assert_eq!((a_src, ttl), (addr("198.18.1.2:33445"), 63));
        assert_eq!(b.inbound(now, a_src, addr("198.18.2.2:33445"), 62), None, "unsolicited");
        let (b_src, _) = b.outbound(now, host, addr("198.18.1.2:33445"), 64).unwrap();
        assert_ne!(b_src.port(), 33445, "the tuple is held");
        assert_eq!(b.stats().collisions, 1);
        assert_eq!(a.inbound(now, b_src, a_src, 62), None, "and a's router does not know that port");
        // Dropped by INPUT instead: nothing held, the reply keeps its port.
        let mut fw = Router::new("198.18.2.2".parse().unwrap(), Masquerade::KeepPort, Input::Drop, 3);
        assert_eq!(fw.inbound(now, a_src, addr("198.18.2.2:33445"), 62), None);
        let (fw_src, _) = fw.outbound(now, host, a_src, 64).unwrap();
        assert_eq!(fw_src, addr("198.18.2.2:33445"));
        assert_eq!(a.inbound(now, fw_src, a_src, 62), Some(host), "a reply to a's entry");
        // The held tuple expires 30 s after the last datagram for it.
        let later = now + UNREPLIED_TIMEOUT + Duration::from_secs(1);
        let mut c = Router::new("198.18.2.2".parse().unwrap(), Masquerade::KeepPort, Input::Accept, 4);
        c.inbound(now, a_src, addr("198.18.2.2:33445"), 62);
        assert_eq!(c.outbound(later, host, a_src, 64).unwrap().0.port(), 33445);
    }

    #[test]
    fn ttl_two_passes_the_router_and_random_fully_changes_ports() {
        let now = crate::proto::test_epoch();
        let mut r = Router::new("198.18.2.2".parse().unwrap(), Masquerade::RandomFully, Input::Drop, 5);
        let host = addr("10.9.0.2:33445");
        assert_eq!(r.outbound(now, host, addr("198.18.10.2:1"), 1), None);
        let (one, ttl) = r.outbound(now, host, addr("198.18.10.2:1"), 2).unwrap();
        assert_eq!(ttl, 1, "it dies at the next hop");
        let (two, _) = r.outbound(now, host, addr("198.18.10.3:1"), 64).unwrap();
        assert_ne!(one.port(), two.port());
        assert_eq!(r.outbound(now, host, addr("198.18.10.2:1"), 64).unwrap().0, one, "the flow keeps its port");
        assert_eq!(r.inbound(now, addr("198.18.10.2:1"), one, 1), None, "a forward needs TTL 2");
        assert_eq!(r.inbound(now, addr("198.18.10.2:1"), one, 2), Some(host));
    }
}
