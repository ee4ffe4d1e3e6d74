//! A DHT node as we track it, and the XOR metric.
//!
//! Like c-toxcore's `Client_data`, a node has one address per IP family,
//! each with the time it last answered us, the time we last asked it
//! something, and the address it last told us a searched key has (its view
//! of us, or of a friend: what NAT hole punching needs).

use std::cmp::Ordering;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::crypto::PublicKey;

/// A node that has not answered for this long is bad: it may be replaced
/// and is not given out to others (c-toxcore's BAD_NODE_TIMEOUT).
pub const BAD_NODE_TIMEOUT: Duration = Duration::from_secs(122);
/// A node that has not answered for this long is no longer asked anything
/// (c-toxcore's KILL_NODE_TIMEOUT).
pub const KILL_NODE_TIMEOUT: Duration = Duration::from_secs(182);
/// How often each known node is asked for nodes, which keeps it alive
/// (c-toxcore's PING_INTERVAL).
pub const PING_INTERVAL: Duration = Duration::from_secs(60);

/// Which of `a` and `b` is closer to `base` by XOR distance.
pub fn cmp_distance(base: &PublicKey, a: &PublicKey, b: &PublicKey) -> Ordering {
    let (base, a, b) = (base.as_bytes(), a.as_bytes(), b.as_bytes());
    for i in 0..base.len() {
        let (da, db) = (base[i] ^ a[i], base[i] ^ b[i]);
        if da != db {
            return da.cmp(&db);
        }
    }
    Ordering::Equal
}

/// The number of leading bits `a` and `b` share: the close-list bucket of
/// `b` seen from `a` (256 when equal).
pub fn common_prefix_bits(a: &PublicKey, b: &PublicKey) -> usize {
    for (i, (x, y)) in a.as_bytes().iter().zip(b.as_bytes()).enumerate() {
        let diff = x ^ y;
        if diff != 0 {
            return i * 8 + diff.leading_zeros() as usize;
        }
    }
    256
}

/// One address of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assoc {
    /// Where the node is.
    pub addr: SocketAddr,
    /// When it last answered a request of ours (or was added).
    pub last_seen: Instant,
    /// When we last asked it for nodes to keep it alive.
    pub last_pinged: Option<Instant>,
    /// The address it reported for the key this list is about, and when.
    pub returned: Option<(SocketAddr, Instant)>,
}

impl Assoc {
    fn new(addr: SocketAddr, now: Instant) -> Self {
        Self { addr, last_seen: now, last_pinged: None, returned: None }
    }

    /// Answered within [`BAD_NODE_TIMEOUT`].
    pub fn is_good(&self, now: Instant) -> bool {
        now < self.last_seen + BAD_NODE_TIMEOUT
    }

    /// Answered within [`KILL_NODE_TIMEOUT`]: still worth asking.
    pub fn is_alive(&self, now: Instant) -> bool {
        now < self.last_seen + KILL_NODE_TIMEOUT
    }
}

/// A node: its DHT key and up to one address per IP family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The node's DHT public key.
    pub public_key: PublicKey,
    /// Its IPv4 address, if known.
    pub v4: Option<Assoc>,
    /// Its IPv6 address, if known.
    pub v6: Option<Assoc>,
}

impl Client {
    /// A node just heard from at `addr`.
    pub fn new(public_key: PublicKey, addr: SocketAddr, now: Instant) -> Self {
        let mut client = Self { public_key, v4: None, v6: None };
        *client.assoc_mut(addr) = Some(Assoc::new(addr, now));
        client
    }

    /// The slot for `addr`'s family.
    pub fn assoc_mut(&mut self, addr: SocketAddr) -> &mut Option<Assoc> {
        if addr.is_ipv4() { &mut self.v4 } else { &mut self.v6 }
    }

    /// The slot for `addr`'s family.
    pub fn assoc(&self, addr: SocketAddr) -> Option<&Assoc> {
        if addr.is_ipv4() { self.v4.as_ref() } else { self.v6.as_ref() }
    }

    /// Both slots.
    pub fn assocs(&self) -> impl Iterator<Item = &Assoc> {
        self.v4.iter().chain(self.v6.iter())
    }

    /// Both slots, mutable.
    pub fn assocs_mut(&mut self) -> impl Iterator<Item = &mut Assoc> {
        self.v4.iter_mut().chain(self.v6.iter_mut())
    }

    /// Good on some address.
    pub fn is_good(&self, now: Instant) -> bool {
        self.assocs().any(|a| a.is_good(now))
    }

    /// The address to give out or route to: the most recently seen good one.
    pub fn best_addr(&self, now: Instant) -> Option<SocketAddr> {
        self.assocs().filter(|a| a.is_good(now)).max_by_key(|a| a.last_seen).map(|a| a.addr)
    }

    /// Records an answer from `addr`: refreshes that family's address (a
    /// LAN address does not replace a public one, as in c-toxcore).
    pub fn heard_from(&mut self, addr: SocketAddr, now: Instant) {
        let slot = self.assoc_mut(addr);
        match slot {
            Some(assoc) if assoc.addr == addr => assoc.last_seen = now,
            Some(assoc) if !crate::proto::addr::is_lan(assoc.addr.ip()) && crate::proto::addr::is_lan(addr.ip()) => {}
            _ => *slot = Some(Assoc::new(addr, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: u8) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes[0] = first;
        PublicKey::from_bytes(bytes)
    }

    #[test]
    fn xor_metric() {
        let base = key(0b1000_0000);
        assert_eq!(cmp_distance(&base, &key(0b1000_0001), &key(0b1100_0000)), Ordering::Less);
        assert_eq!(cmp_distance(&base, &key(0b0000_0000), &key(0b1111_1111)), Ordering::Greater);
        assert_eq!(cmp_distance(&base, &key(3), &key(3)), Ordering::Equal);
        assert_eq!(common_prefix_bits(&key(0b1000_0000), &key(0b1010_0000)), 2);
        assert_eq!(common_prefix_bits(&key(0), &key(0x80)), 0);
        assert_eq!(common_prefix_bits(&key(7), &key(7)), 256);
        let mut low = [0u8; 32];
        low[31] = 1;
        assert_eq!(common_prefix_bits(&key(0), &PublicKey::from_bytes(low)), 255);
    }

    #[test]
    fn liveness_and_lan_preference() {
        let t0 = crate::proto::test_epoch();
        let public: SocketAddr = "198.18.0.1:33445".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:33445".parse().unwrap();
        let mut client = Client::new(key(1), public, t0);
        assert!(client.is_good(t0 + BAD_NODE_TIMEOUT - Duration::from_secs(1)));
        assert!(!client.is_good(t0 + BAD_NODE_TIMEOUT));
        assert!(client.v4.unwrap().is_alive(t0 + BAD_NODE_TIMEOUT));
        assert!(!client.v4.unwrap().is_alive(t0 + KILL_NODE_TIMEOUT));
        client.heard_from(lan, t0 + Duration::from_secs(5));
        assert_eq!(client.v4.unwrap().addr, public, "a LAN address must not replace a public one");
        let v6: SocketAddr = "[2001:db8::1]:33445".parse().unwrap();
        client.heard_from(v6, t0 + Duration::from_secs(9));
        assert_eq!(client.best_addr(t0 + Duration::from_secs(10)), Some(v6));
    }
}
