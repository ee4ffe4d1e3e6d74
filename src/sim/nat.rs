//! NATs for the simulator: address and port translation with the mapping
//! and filtering behaviours real home routers have (RFC 4787 terms).
//!
//! - Mapping: *endpoint-independent* (a "cone" NAT: one public port per
//!   inside address, whatever the destination) or *address-and-port-
//!   dependent* (a "symmetric" NAT: a new public port per destination,
//!   allocated sequentially, which is what makes port guessing work).
//! - Filtering: *endpoint-independent* (anyone may send to a mapped port),
//!   *address-dependent* (only IPs the inside host sent to) or
//!   *address-and-port-dependent* (only exact addresses it sent to).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// How a NAT allocates public ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// One public port per inside address ("cone").
    EndpointIndependent,
    /// A new public port per destination ("symmetric").
    AddressAndPortDependent,
}

/// Which inbound datagrams a NAT lets through to a mapped port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Any sender ("full cone").
    EndpointIndependent,
    /// Senders whose IP the inside host has sent to.
    AddressDependent,
    /// Senders whose exact address the inside host has sent to.
    AddressAndPortDependent,
}

/// One NAT with a public IP.
#[derive(Debug, Clone)]
pub struct Nat {
    public_ip: IpAddr,
    mapping: Mapping,
    filtering: Filtering,
    next_port: u16,
    /// (inside address, destination or None for cone) -> public port.
    out: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    /// public port -> inside address.
    inward: HashMap<u16, SocketAddr>,
    /// (public port, remote) pairs the inside host has sent to.
    allowed: HashSet<(u16, SocketAddr)>,
}

impl Nat {
    /// A NAT at `public_ip`; its first public port is `first_port`.
    pub fn new(public_ip: IpAddr, mapping: Mapping, filtering: Filtering, first_port: u16) -> Self {
        Self {
            public_ip,
            mapping,
            filtering,
            next_port: first_port,
            out: HashMap::new(),
            inward: HashMap::new(),
            allowed: HashSet::new(),
        }
    }

    /// The NAT's public IP.
    pub fn public_ip(&self) -> IpAddr {
        self.public_ip
    }

    /// Translates a datagram from `inside` to `dst`: the source address the
    /// outside sees.
    pub fn outbound(&mut self, inside: SocketAddr, dst: SocketAddr) -> SocketAddr {
        let key = match self.mapping {
            Mapping::EndpointIndependent => (inside, None),
            Mapping::AddressAndPortDependent => (inside, Some(dst)),
        };
        let port = match self.out.get(&key) {
            Some(port) => *port,
            None => {
                let port = self.next_port;
                self.next_port = self.next_port.wrapping_add(1).max(1024);
                self.out.insert(key, port);
                self.inward.insert(port, inside);
                port
            }
        };
        self.allowed.insert((port, dst));
        SocketAddr::new(self.public_ip, port)
    }

    /// Where a datagram from `src` to public port `port` goes inside, if the
    /// NAT lets it in.
    pub fn inbound(&self, src: SocketAddr, port: u16) -> Option<SocketAddr> {
        let inside = *self.inward.get(&port)?;
        let allowed = match self.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => self.allowed.iter().any(|(p, r)| *p == port && r.ip() == src.ip()),
            Filtering::AddressAndPortDependent => self.allowed.contains(&(port, src)),
        };
        allowed.then_some(inside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cone_nat_keeps_one_port_and_filters_by_address_and_port() {
        let mut nat = Nat::new(
            "203.0.113.1".parse().unwrap(),
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
            40000,
        );
        let inside = addr("10.0.0.2:33445");
        let a = nat.outbound(inside, addr("198.18.0.1:33445"));
        let b = nat.outbound(inside, addr("198.18.0.2:33445"));
        assert_eq!(a, b);
        assert_eq!(nat.inbound(addr("198.18.0.1:33445"), a.port()), Some(inside));
        assert_eq!(nat.inbound(addr("198.18.0.1:9"), a.port()), None, "other port of a known host");
        assert_eq!(nat.inbound(addr("198.18.0.3:33445"), a.port()), None, "unknown host");
    }

    #[test]
    fn symmetric_nat_uses_a_port_per_destination() {
        let mut nat = Nat::new(
            "203.0.113.1".parse().unwrap(),
            Mapping::AddressAndPortDependent,
            Filtering::AddressDependent,
            50000,
        );
        let inside = addr("10.0.0.2:33445");
        let a = nat.outbound(inside, addr("198.18.0.1:1"));
        let b = nat.outbound(inside, addr("198.18.0.2:1"));
        assert_eq!((a.port(), b.port()), (50000, 50001));
        assert_eq!(nat.inbound(addr("198.18.0.1:7"), a.port()), Some(inside), "address-dependent filtering");
        assert_eq!(nat.inbound(addr("198.18.0.2:7"), a.port()), None);
    }
}
