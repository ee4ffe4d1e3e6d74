//! The networks this host already routes, read from `/proc/net/route` and
//! `/proc/net/ipv6_route` (the calling thread's network namespace), for
//! the client's check that a VPN pool takes over none of them.
//!
//! Left out: default routes, routes through the given device (ours),
//! loopback, IPv6 link-local and multicast networks.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The networks routed on this host, except through `own_device`.
pub fn routes(own_device: &str) -> io::Result<Vec<IpNet>> {
    let v4 = std::fs::read_to_string("/proc/net/route")?;
    // A kernel without IPv6 has no such file.
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut out = parse_v4(&v4, own_device);
    out.extend(parse_v6(&v6, own_device));
    out.sort();
    out.dedup();
    Ok(out)
}

/// `/proc/net/route`: `Iface Destination Gateway Flags RefCnt Use Metric
/// Mask ...`, addresses as the hex of the network-order word.
fn parse_v4(text: &str, own_device: &str) -> Vec<IpNet> {
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(|w| Ipv4Addr::from(w.to_ne_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dev, dst, mask) = (*f.first()?, word(f.get(1)?)?, word(f.get(7)?)?);
            let len = u8::try_from(mask.to_bits().count_ones()).ok()?;
            let net = Ipv4Net::new(dst, len).ok()?.trunc();
            (dev != own_device && dev != "lo" && len > 0).then_some(IpNet::V4(net))
        })
        .collect()
}

/// `/proc/net/ipv6_route`: `dst dst_len src src_len next_hop metric refcnt
/// use flags iface`, in hex.
fn parse_v6(text: &str, own_device: &str) -> Vec<IpNet> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dst = Ipv6Addr::from(u128::from_str_radix(f.first()?, 16).ok()?);
            let len = u8::from_str_radix(f.get(1)?, 16).ok()?;
            let dev = *f.get(9)?;
            let net = Ipv6Net::new(dst, len).ok()?.trunc();
            let special = dst.is_multicast() || dst.is_unicast_link_local() || dst.is_loopback();
            (dev != own_device && dev != "lo" && len > 0 && !special).then_some(IpNet::V6(net))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_tables_are_read() {
        // Little-endian words, as on x86 and most ARM hosts.
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  tun9\t00004D0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                  tun0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n";
        if cfg!(target_endian = "little") {
            let got: Vec<String> = parse_v4(v4, "tun0").iter().map(ToString::to_string).collect();
            assert_eq!(got, ["192.0.2.0/24", "10.77.0.0/16"]);
        }
        let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                  fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0\n\
                  ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0\n\
                  fd770000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     tun0\n\
                  00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001       lo\n";
        let got: Vec<String> = parse_v6(v6, "tun0").iter().map(ToString::to_string).collect();
        assert_eq!(got, ["fd00::/64"]);
    }

    #[test]
    fn this_host_s_table_reads() {
        // Whatever this namespace holds, it reads without error.
        routes("none").unwrap();
    }
}
