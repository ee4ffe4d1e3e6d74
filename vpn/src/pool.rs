//! The server's address pool: one slot per client key, stable for as long
//! as the process runs and, as far as the pool's occupancy allows, across
//! restarts.
//!
//! Slot `s` gives the client host number `s + 2` in the IPv4 pool and the
//! same host number in the IPv6 /64 (the server is host 1 in both). A new
//! key's preferred slot is a fixed hash of its bytes, so the same key gets
//! the same address after a restart unless another key got there first;
//! when the preferred slot is taken the next free one is used. A returning
//! key keeps its slot. When every slot is leased, the slot least recently
//! leased to a key that is not online now goes to the newcomer.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// The most clients a pool with only IPv6 serves.
pub const MAX_V6_ONLY_CLIENTS: u32 = 65_534;

/// A pool that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Neither an IPv4 nor an IPv6 network.
    #[error("the VPN needs an IPv4 pool, an IPv6 prefix, or both")]
    Empty,
    /// An IPv4 pool smaller than a /30 has no room for a client.
    #[error("IPv4 pool {0} is too small (a /30 at least)")]
    TooSmallV4(Ipv4Net),
    /// An IPv4 pool wider than a /16 (clients refuse it).
    #[error("IPv4 pool {0} is too wide (a /16 at most)")]
    TooWideV4(Ipv4Net),
    /// The IPv6 network must be a /64 (or shorter, taken as its first /64).
    #[error("IPv6 prefix {0} must be /64 or shorter")]
    BadV6(Ipv6Net),
}

/// The addresses of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The slot number.
    pub slot: u32,
    /// The client's IPv4 address.
    pub v4: Option<Ipv4Addr>,
    /// The client's IPv6 address.
    pub v6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone)]
struct Entry {
    slot: u32,
    last_used: u64,
}

/// The pool.
#[derive(Debug, Clone)]
pub struct Pool {
    v4: Option<Ipv4Net>,
    v6: Option<Ipv6Net>,
    capacity: u32,
    by_key: HashMap<Vec<u8>, Entry>,
    by_slot: HashMap<u32, Vec<u8>>,
    clock: u64,
}

impl Pool {
    /// A pool over these networks (host bits ignored; an IPv6 prefix shorter
    /// than /64 is narrowed to its first /64).
    pub fn new(v4: Option<Ipv4Net>, v6: Option<Ipv6Net>) -> Result<Pool, PoolError> {
        let v4 = v4.map(|n| n.trunc());
        let v6 = match v6 {
            Some(n) if n.prefix_len() > 64 => return Err(PoolError::BadV6(n)),
            Some(n) => Some(Ipv6Net::new_assert(n.network(), 64)),
            None => None,
        };
        let capacity = match (v4, v6) {
            (None, None) => return Err(PoolError::Empty),
            (Some(n), _) if n.prefix_len() > 30 => return Err(PoolError::TooSmallV4(n)),
            (Some(n), _) if n.prefix_len() < crate::engine::WIDEST_V4_POOL => return Err(PoolError::TooWideV4(n)),
            // Network, server and broadcast addresses are not for clients.
            (Some(n), _) => ((1u64 << (32 - n.prefix_len())) - 3).min(u64::from(u32::MAX)) as u32,
            (None, Some(_)) => MAX_V6_ONLY_CLIENTS,
        };
        Ok(Pool { v4, v6, capacity, by_key: HashMap::new(), by_slot: HashMap::new(), clock: 0 })
    }

    /// The IPv4 network.
    pub fn v4_net(&self) -> Option<Ipv4Net> {
        self.v4
    }

    /// The IPv6 /64.
    pub fn v6_net(&self) -> Option<Ipv6Net> {
        self.v6
    }

    /// The server's own addresses (host 1).
    pub fn server(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        (self.v4.map(|n| host_v4(n, 1)), self.v6.map(|n| host_v6(n, 1)))
    }

    /// How many clients the pool holds.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// How many keys hold a slot.
    pub fn leased(&self) -> usize {
        self.by_key.len()
    }

    /// The slot of `key`, leasing one if it has none. `online(slot)` tells
    /// whether the key holding a slot is connected now (such slots are never
    /// taken away). `None` when every slot belongs to an online key.
    pub fn lease(&mut self, key: &[u8], mut online: impl FnMut(u32) -> bool) -> Option<Lease> {
        self.clock += 1;
        if let Some(entry) = self.by_key.get_mut(key) {
            entry.last_used = self.clock;
            let slot = entry.slot;
            return Some(self.addresses(slot));
        }
        let preferred = (fnv1a(key) % u64::from(self.capacity)) as u32;
        let free = (0..self.capacity.min(4096))
            .map(|i| (preferred + i) % self.capacity)
            .find(|s| !self.by_slot.contains_key(s))
            .or_else(|| (0..self.capacity).find(|s| !self.by_slot.contains_key(s)));
        let slot = match free {
            Some(slot) => slot,
            None => {
                let (victim, _) = self
                    .by_key
                    .iter()
                    .filter(|(_, e)| !online(e.slot))
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, e)| (k.clone(), e.slot))?;
                let entry = self.by_key.remove(&victim)?;
                self.by_slot.remove(&entry.slot);
                entry.slot
            }
        };
        self.by_key.insert(key.to_vec(), Entry { slot, last_used: self.clock });
        self.by_slot.insert(slot, key.to_vec());
        Some(self.addresses(slot))
    }

    /// The slot a key holds, without leasing.
    pub fn slot_of(&self, key: &[u8]) -> Option<u32> {
        self.by_key.get(key).map(|e| e.slot)
    }

    fn addresses(&self, slot: u32) -> Lease {
        let host = slot + 2;
        Lease { slot, v4: self.v4.map(|n| host_v4(n, host)), v6: self.v6.map(|n| host_v6(n, host)) }
    }
}

fn host_v4(net: Ipv4Net, host: u32) -> Ipv4Addr {
    Ipv4Addr::from_bits(net.network().to_bits() | host)
}

fn host_v6(net: Ipv6Net, host: u32) -> Ipv6Addr {
    Ipv6Addr::from_bits(net.network().to_bits() | u128::from(host))
}

/// FNV-1a, 64 bits: fixed for all time, unlike the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A unique local IPv6 /64 (fdXX:XXXX:XXXX:XXXX::/64) derived from `seed`
/// (for instance the server's public key), so that a server keeps its
/// prefix across restarts without storing it.
pub fn ula_from_seed(seed: &[u8]) -> Ipv6Net {
    let h = fnv1a(seed);
    let g = fnv1a(&h.to_be_bytes());
    // fd + 40-bit global id + 16-bit subnet id.
    let bits = (0xfdu128 << 120) | (u128::from(h & 0xff_ffff_ffff) << 80) | (u128::from(g & 0xffff) << 64);
    Ipv6Net::new_assert(Ipv6Addr::from_bits(bits), 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(v4: &str) -> Pool {
        Pool::new(Some(v4.parse().unwrap()), Some("fd00:1:2:3::/64".parse().unwrap())).unwrap()
    }

    #[test]
    fn stable_and_distinct() {
        let mut p = pool("10.7.0.0/24");
        assert_eq!(p.capacity(), 253);
        assert_eq!(p.server(), (Some("10.7.0.1".parse().unwrap()), Some("fd00:1:2:3::1".parse().unwrap())));
        let a = p.lease(b"alice", |_| true).unwrap();
        let b = p.lease(b"bob", |_| true).unwrap();
        assert_ne!(a.slot, b.slot);
        assert_eq!(p.lease(b"alice", |_| true), Some(a));
        // Host numbers match between the families.
        let host4 = a.v4.unwrap().octets()[3];
        assert_eq!(a.v6.unwrap().segments()[7], u16::from(host4));
        assert!((2..=254).contains(&host4));
        // A new pool (a restart) gives alice the same address.
        let mut again = pool("10.7.0.0/24");
        assert_eq!(again.lease(b"alice", |_| true), Some(a));
    }

    #[test]
    fn full_pool_reuses_offline_slots() {
        let mut p = pool("10.7.0.0/30");
        assert_eq!(p.capacity(), 1);
        let a = p.lease(b"a", |_| true).unwrap();
        assert_eq!(a.v4, Some("10.7.0.2".parse().unwrap()));
        assert_eq!(p.lease(b"b", |_| true), None, "a is online");
        let b = p.lease(b"b", |_| false).unwrap();
        assert_eq!(b.slot, a.slot);
        assert_eq!(p.slot_of(b"a"), None);
        assert_eq!(p.leased(), 1);
    }

    #[test]
    fn every_slot_is_usable() {
        let mut p = Pool::new(Some("10.9.0.0/28".parse().unwrap()), None).unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..p.capacity() {
            let lease = p.lease(&i.to_be_bytes(), |_| true).unwrap();
            let host = lease.v4.unwrap().octets()[3];
            assert!((2..=14).contains(&host), "{host}");
            assert!(seen.insert(host));
            assert_eq!(lease.v6, None);
        }
        assert_eq!(p.lease(b"one more", |_| true), None);
    }

    #[test]
    fn bad_pools() {
        assert_eq!(Pool::new(None, None).unwrap_err(), PoolError::Empty);
        assert!(matches!(Pool::new(Some("10.0.0.0/31".parse().unwrap()), None), Err(PoolError::TooSmallV4(_))));
        assert!(matches!(Pool::new(Some("10.0.0.0/15".parse().unwrap()), None), Err(PoolError::TooWideV4(_))));
        assert!(Pool::new(Some("10.0.0.0/16".parse().unwrap()), None).is_ok());
        assert!(matches!(Pool::new(None, Some("fd00::/96".parse().unwrap())), Err(PoolError::BadV6(_))));
        let p = Pool::new(None, Some("fd00::/48".parse().unwrap())).unwrap();
        assert_eq!(p.v6_net().unwrap().to_string(), "fd00::/64");
        assert_eq!(p.capacity(), MAX_V6_ONLY_CLIENTS);
    }

    #[test]
    fn ula() {
        let a = ula_from_seed(b"server key");
        assert_eq!(a, ula_from_seed(b"server key"));
        assert_ne!(a, ula_from_seed(b"other key"));
        assert_eq!(a.prefix_len(), 64);
        assert_eq!(a.addr().segments()[0] >> 8, 0xfd);
    }
}
