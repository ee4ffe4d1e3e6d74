//! Address rules shared by the protocol layers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// An IPv4-mapped IPv6 address (what a dual-stack socket reports for IPv4
/// peers) as plain IPv4; anything else unchanged. c-toxcore normalises the
/// same way before it compares or stores addresses.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// c-toxcore's `ip_is_lan`: loopback, RFC 1918, link-local (169.254.1.0 to
/// 169.254.254.255), shared address space 100.64/10, IPv6 loopback and
/// link-local, and the all-nodes multicast addresses ff00::1 to ff02::1.
/// Such addresses are only given out to peers that are themselves on a LAN.
pub fn is_lan(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_lan_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_lan_v4(v4);
            }
            let o = v6.octets();
            v6.is_loopback() || (o[0] == 0xff && o[1] < 3 && o[15] == 1) || (o[0] == 0xfe && o[1] & 0xc0 == 0x80)
        }
    }
}

fn is_lan_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 127
        || a == 10
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
        || (a == 169 && b == 254 && c != 0 && c != 255)
        || (a == 100 && b & 0xc0 == 0x40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_ranges_match_c_toxcore() {
        for lan in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_lan(lan.parse().unwrap()), "{lan}");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "169.254.0.1",
            "169.254.255.1",
            "100.128.0.1",
            "198.18.0.1",
            "2001:db8::1",
            "ff02::2",
            "fec0::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_lan(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:33445".parse().unwrap();
        assert_eq!(normalize(mapped), "192.0.2.7:33445".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::7]:1".parse().unwrap();
        assert_eq!(normalize(v6), v6);
    }
}
