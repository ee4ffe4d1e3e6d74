//! A longest-prefix-match table from IP networks to values (peers).
//!
//! One table per address family, kept as a hash map per prefix length that
//! is in use, searched from the longest length down. A lookup costs one
//! hash probe per distinct prefix length present (typically two or three:
//! the clients' /32s, the pool, a routed subnet), and never allocates.
//!
//! The same table serves both directions, as WireGuard's AllowedIPs does:
//! a packet for address A goes to `lookup(A)`, and a packet from peer P with
//! source S is accepted only when `lookup(S) == P`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Networks mapped to values; the most specific network wins.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    v4: Family<u32, T>,
    v6: Family<u128, T>,
}

#[derive(Debug, Clone)]
struct Family<K, T> {
    /// (prefix length, networks of that length), longest first.
    levels: Vec<(u8, HashMap<K, T>)>,
}

impl<K: std::hash::Hash + Eq + Copy, T> Family<K, T> {
    fn new() -> Self {
        Family { levels: Vec::new() }
    }

    fn insert(&mut self, len: u8, key: K, value: T) -> Option<T> {
        let at = match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(at) => at,
            Err(at) => {
                self.levels.insert(at, (len, HashMap::new()));
                at
            }
        };
        self.levels[at].1.insert(key, value)
    }

    fn remove(&mut self, len: u8, key: K) -> Option<T> {
        let at = self.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let old = self.levels[at].1.remove(&key);
        if self.levels[at].1.is_empty() {
            self.levels.remove(at);
        }
        old
    }

    fn get(&self, len: u8, key: K) -> Option<&T> {
        let at = self.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        self.levels[at].1.get(&key)
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|(_, m)| m.len()).sum()
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for (_, map) in &mut self.levels {
            map.retain(|_, v| keep(v));
        }
        self.levels.retain(|(_, m)| !m.is_empty());
    }
}

fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - u32::from(len))) }
}

fn mask6(addr: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { addr & (u128::MAX << (128 - u32::from(len))) }
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { v4: Family::new(), v6: Family::new() }
    }
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `net` (host bits ignored) to `value`; returns the value it
    /// replaces.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        match net {
            IpNet::V4(n) => self.v4.insert(n.prefix_len(), mask4(n.addr().to_bits(), n.prefix_len()), value),
            IpNet::V6(n) => self.v6.insert(n.prefix_len(), mask6(n.addr().to_bits(), n.prefix_len()), value),
        }
    }

    /// Removes exactly `net`; returns its value.
    pub fn remove(&mut self, net: IpNet) -> Option<T> {
        match net {
            IpNet::V4(n) => self.v4.remove(n.prefix_len(), mask4(n.addr().to_bits(), n.prefix_len())),
            IpNet::V6(n) => self.v6.remove(n.prefix_len(), mask6(n.addr().to_bits(), n.prefix_len())),
        }
    }

    /// The value of exactly `net`.
    pub fn get(&self, net: IpNet) -> Option<&T> {
        match net {
            IpNet::V4(n) => self.v4.get(n.prefix_len(), mask4(n.addr().to_bits(), n.prefix_len())),
            IpNet::V6(n) => self.v6.get(n.prefix_len(), mask6(n.addr().to_bits(), n.prefix_len())),
        }
    }

    /// The value of the most specific network holding `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    /// [`lookup`](Self::lookup) for an IPv4 address.
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<&T> {
        let bits = addr.to_bits();
        self.v4.levels.iter().find_map(|(len, map)| map.get(&mask4(bits, *len)))
    }

    /// [`lookup`](Self::lookup) for an IPv6 address.
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<&T> {
        let bits = addr.to_bits();
        self.v6.levels.iter().find_map(|(len, map)| map.get(&mask6(bits, *len)))
    }

    /// Keeps only the entries whose value passes `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.v4.retain(&mut keep);
        self.v6.retain(keep);
    }

    /// How many networks the table holds.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every network and its value (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &T)> {
        let v4 = self.v4.levels.iter().flat_map(|(len, map)| {
            map.iter().map(move |(k, v)| (IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from_bits(*k), *len)), v))
        });
        let v6 = self.v6.levels.iter().flat_map(|(len, map)| {
            map.iter().map(move |(k, v)| (IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from_bits(*k), *len)), v))
        });
        v4.chain(v6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::new();
        t.insert(net("0.0.0.0/0"), 0);
        t.insert(net("10.0.0.0/8"), 8);
        t.insert(net("10.1.0.0/16"), 16);
        t.insert(net("10.1.2.3/32"), 32);
        t.insert(net("fd00::/8"), 60);
        t.insert(net("fd00:1::/64"), 64);
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&32));
        assert_eq!(t.lookup(ip("10.1.2.4")), Some(&16));
        assert_eq!(t.lookup(ip("10.2.0.1")), Some(&8));
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(&0));
        assert_eq!(t.lookup(ip("fd00:1::5")), Some(&64));
        assert_eq!(t.lookup(ip("fd00:2::5")), Some(&60));
        assert_eq!(t.lookup(ip("2001:db8::1")), None);
        assert_eq!(t.len(), 6);
        assert_eq!(t.remove(net("10.1.0.0/16")), Some(16));
        assert_eq!(t.lookup(ip("10.1.2.4")), Some(&8));
        // Host bits are ignored.
        assert_eq!(t.insert(net("10.9.9.9/8"), 88), Some(8));
        assert_eq!(t.get(net("10.0.0.0/8")), Some(&88));
        t.retain(|v| *v >= 60 && *v != 88);
        assert_eq!(t.lookup(ip("10.1.2.3")), None);
        assert_eq!(t.len(), 2);
        let mut all: Vec<_> = t.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        all.sort();
        assert_eq!(all, vec![("fd00:1::/64".to_string(), 64), ("fd00::/8".to_string(), 60)]);
    }

    proptest! {
        /// The table agrees with a linear scan for the longest match.
        #[test]
        fn matches_linear_scan(nets in prop::collection::vec((any::<u32>(), 0u8..=32), 0..20),
                               probes in prop::collection::vec(any::<u32>(), 1..20)) {
            let mut t = RouteTable::new();
            let mut list: Vec<Ipv4Net> = Vec::new();
            for (i, (a, l)) in nets.iter().enumerate() {
                let n = Ipv4Net::new(Ipv4Addr::from_bits(*a), *l).unwrap().trunc();
                t.insert(IpNet::V4(n), i);
                list.retain(|x| *x != n);
                list.push(n);
            }
            for p in probes {
                let addr = Ipv4Addr::from_bits(p);
                let best = list.iter().filter(|n| n.contains(&addr)).max_by_key(|n| n.prefix_len());
                let expected = best.map(|n| t.get(IpNet::V4(*n)).copied().unwrap());
                prop_assert_eq!(t.lookup_v4(addr).copied(), expected);
            }
        }
    }
}
