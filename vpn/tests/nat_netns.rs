//! Server-side forwarding and masquerading: it works (a client reaches a
//! LAN host that has no route back to the VPN pool, through a FORWARD DROP
//! policy), a client reaches nothing else (crafted packets written straight
//! into the server's TUN, through a FORWARD ACCEPT policy), and teardown
//! leaves the firewall and sysctls exactly as they were. Needs root and
//! iptables.

#![allow(clippy::disallowed_methods)]

mod support;

use std::net::IpAddr;
use std::time::Duration;

use etherparse::{IpNumber, IpSlice, PacketBuilder};
use support::{Netns, device_in, join, wait_event};
use tokio_util::sync::CancellationToken;
use vpn::device::Device;
use vpn::nat::{ForwardConfig, Forwarding};
use vpn::{ClientConfig, Engine, Event, ServerConfig};

/// The firewall and forwarding state of a namespace, without counters.
fn snapshot(ns: &Netns) -> String {
    let mut out = String::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let text = String::from_utf8_lossy(&ns.exec(&[tool]).stdout).into_owned();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            // ":FORWARD DROP [12:3456]" -> ":FORWARD DROP"
            let line = match line.find(" [") {
                Some(at) if line.starts_with(':') => &line[..at],
                _ => line,
            };
            out.push_str(line);
            out.push('\n');
        }
    }
    for path in ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"] {
        out.push_str(&String::from_utf8_lossy(&ns.exec(&["cat", path]).stdout));
    }
    out
}

fn config(masquerade: bool) -> ForwardConfig {
    ForwardConfig {
        device: "tuns".into(),
        pools: vec!["10.77.0.0/24".parse().unwrap(), "fd77::/64".parse().unwrap()],
        routes: vec!["192.168.88.0/24".parse().unwrap(), "fd88::/64".parse().unwrap()],
        server_addresses: vec!["10.77.0.1".parse().unwrap(), "fd77::1".parse().unwrap()],
        allow_clients: false,
        masquerade,
    }
}

/// A host's firewall with rules of its own.
fn existing_rules(ns: &Netns) {
    ns.exec(&["iptables", "-P", "FORWARD", "DROP"]);
    ns.exec(&["iptables", "-A", "FORWARD", "-i", "eth9", "-j", "ACCEPT"]);
    ns.exec(&["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "172.20.0.0/16", "-j", "MASQUERADE"]);
    ns.exec(&["ip6tables", "-A", "FORWARD", "-p", "ipv6-icmp", "-j", "ACCEPT"]);
    ns.exec(&["ip6tables", "-t", "nat", "-A", "POSTROUTING", "-s", "fd20::/64", "-j", "MASQUERADE"]);
}

#[test]
fn teardown_restores_exactly_what_was_there() {
    let s = Netns::new("natrm");
    existing_rules(&s);
    let before = snapshot(&s);
    assert!(before.contains(":FORWARD DROP"), "{before}");

    let forwarding = s.enter(|| Forwarding::setup(&config(true))).expect("setup");
    let during = snapshot(&s);
    for want in [
        "-A FORWARD -j TUNTOX-FWD-tuns\n-A FORWARD -i eth9 -j ACCEPT",
        "-A TUNTOX-FWD-tuns -s 10.77.0.0/24 -d 192.168.88.0/24 -i tuns -j ACCEPT",
        "-A TUNTOX-FWD-tuns -i tuns -j DROP",
        "-A INPUT -j TUNTOX-IN-tuns",
        "-A TUNTOX-IN-tuns -d 10.77.0.1/32 -i tuns -j ACCEPT\n-A TUNTOX-IN-tuns -d 192.168.88.0/24 -i tuns -j ACCEPT\n-A TUNTOX-IN-tuns -i tuns -j DROP",
        "-A TUNTOX-IN-tuns -d fd77::1/128 -i tuns -j ACCEPT",
        "-A TUNTOX-NAT-tuns -s 10.77.0.0/24 -d 192.168.88.0/24 ! -o tuns -j MASQUERADE",
        "-A TUNTOX-NAT-tuns -s fd77::/64 -d fd88::/64 ! -o tuns -j MASQUERADE",
        "-A POSTROUTING -s 172.20.0.0/16 -j MASQUERADE\n-A POSTROUTING -j TUNTOX-NAT-tuns",
    ] {
        assert!(during.contains(want), "missing {want:?} in:\n{during}");
    }
    assert!(during.ends_with("1\n1\n"), "forwarding on: {during}");

    s.enter(|| forwarding.teardown()).expect("teardown");
    assert_eq!(snapshot(&s), before);

    // Without masquerading: forwarding rules only; also removed exactly.
    let forwarding = s.enter(|| Forwarding::setup(&config(false))).expect("setup");
    let during = snapshot(&s);
    assert!(during.contains("TUNTOX-FWD-tuns") && !during.contains("TUNTOX-NAT"), "{during}");
    s.enter(|| forwarding.teardown()).expect("teardown");
    assert_eq!(snapshot(&s), before);
}

#[test]
fn stale_chains_from_a_killed_run_are_replaced() {
    let s = Netns::new("natst");
    existing_rules(&s);
    s.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"]);
    let before = snapshot(&s);
    // A run that never cleaned up.
    std::mem::forget(s.enter(|| Forwarding::setup(&config(true))).unwrap());
    let forwarding = s.enter(|| Forwarding::setup(&config(true))).expect("setup over stale chains");
    let during = snapshot(&s);
    assert_eq!(during.matches("-A FORWARD -j TUNTOX-FWD-tuns").count(), 2, "one per family: {during}");
    s.enter(|| forwarding.teardown()).unwrap();
    assert_eq!(snapshot(&s), before);
}

#[test]
fn bad_device_name() {
    let mut c = config(true);
    c.device = "a-very-long-device-name".into();
    assert!(Forwarding::setup(&c).unwrap_err().to_string().contains("too long"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reaches_a_lan_through_masquerade() {
    let c = Netns::new("natc");
    let s = Netns::new("nats");
    let l = Netns::new("natl");
    // The LAN: a veth pair between the server and a host that knows no
    // route to the VPN pool.
    s.exec(&["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1", "netns", l.name()]);
    s.exec(&["ip", "addr", "add", "192.168.88.1/24", "dev", "lan0"]);
    s.exec(&["ip", "addr", "add", "fd88::1/64", "dev", "lan0", "nodad"]);
    s.exec(&["ip", "link", "set", "lan0", "up"]);
    l.exec(&["ip", "addr", "add", "192.168.88.2/24", "dev", "lan1"]);
    l.exec(&["ip", "addr", "add", "fd88::2/64", "dev", "lan1", "nodad"]);
    l.exec(&["ip", "link", "set", "lan1", "up"]);
    existing_rules(&s);
    let before = snapshot(&s);

    let mut sc = ServerConfig::new(Some("10.77.0.0/24".parse().unwrap()), Some("fd77::/64".parse().unwrap()));
    sc.routes = vec!["192.168.88.0/24".parse().unwrap(), "fd88::/64".parse().unwrap()];
    let server = Engine::server(sc).unwrap();
    let client = Engine::client(ClientConfig {
        routes: vec!["192.168.88.0/24".parse().unwrap(), "fd88::/64".parse().unwrap()],
        ..Default::default()
    })
    .unwrap();
    let sdev = device_in(&s, "tuns", 1280, true).await;
    let cdev = device_in(&c, "tunc", 1280, true).await;
    let (server, mut client) = join(server, sdev, client, cdev, CancellationToken::new()).await;
    wait_event(&mut client.events, 10, |e| matches!(e, Event::Assigned { .. })).await;

    // No forwarding yet: the server drops it.
    assert!(!c.try_exec(&["ping", "-c", "1", "-W", "1", "192.168.88.2"]).status.success());
    let forwarding = s.enter(|| Forwarding::setup(&config(true))).expect("setup");
    c.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "192.168.88.2"]);
    c.exec(&["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd88::2"]);
    // (The LAN host has no route to 10.77.0.0/24 or fd77::/64: only
    // masquerading lets the replies come back.)

    s.enter(|| forwarding.teardown()).expect("teardown");
    assert_eq!(snapshot(&s), before);
    assert!(!c.try_exec(&["ping", "-c", "1", "-W", "1", "192.168.88.2"]).status.success());
    client.vpn.shutdown().await.unwrap();
    server.vpn.shutdown().await.unwrap();
}

/// An ICMP echo request (IPv4 or IPv6).
fn echo(src: IpAddr, dst: IpAddr, seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64)
            .icmpv4_echo_request(7, seq)
            .write(&mut out, b"tuntox")
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64)
            .icmpv6_echo_request(7, seq)
            .write(&mut out, b"tuntox")
            .unwrap(),
        _ => panic!("mixed families"),
    }
    out
}

/// Writes `packet` into the TUN as if a client had sent it, and returns
/// the source and destination of every echo packet the kernel sends back
/// out of the TUN within half a second (replies, or the request itself
/// forwarded back into the VPN).
async fn probe(dev: &Device, packet: &[u8]) -> Vec<(IpAddr, IpAddr)> {
    let tun = dev.tun();
    tun.send(packet).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 2048];
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, tun.recv(&mut buf)).await {
        let Ok(ip) = IpSlice::from_slice(&buf[..n]) else { continue };
        // Echo requests and replies only (not the kernel's own router
        // solicitations, MLD reports or redirects).
        let kind = ip.payload().payload.first().copied();
        let echo = match ip.payload_ip_number() {
            IpNumber::ICMP => matches!(kind, Some(0 | 8)),
            IpNumber::IPV6_ICMP => matches!(kind, Some(128 | 129)),
            _ => false,
        };
        if echo {
            seen.push((ip.source_addr(), ip.destination_addr()));
        }
    }
    seen
}

/// Crafted packets from a client (written into the server's TUN, so no
/// engine or client route table filters them), with the `FORWARD` policy
/// ACCEPT and forwarding on: only the server's VPN address and the offered
/// route answer; another network behind the server, the server's address
/// on it and another client's address get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reaches_only_what_it_was_offered() {
    let s = Netns::new("natof");
    let l = Netns::new("natol");
    let o = Netns::new("natoo");
    for (ns, link, net, v6) in [(&l, "lan0", "192.168.88", "fd88"), (&o, "oth0", "192.168.99", "fd99")] {
        s.exec(&["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns.name()]);
        s.exec(&["ip", "addr", "add", &format!("{net}.1/24"), "dev", link]);
        s.exec(&["ip", "addr", "add", &format!("{v6}::1/64"), "dev", link, "nodad"]);
        s.exec(&["ip", "link", "set", link, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{net}.2/24"), "dev", "eth0"]);
        ns.exec(&["ip", "addr", "add", &format!("{v6}::2/64"), "dev", "eth0", "nodad"]);
        ns.exec(&["ip", "link", "set", "eth0", "up"]);
        ns.exec(&["ip", "route", "add", "default", "via", &format!("{net}.1")]);
        ns.exec(&["ip", "-6", "route", "add", "default", "via", &format!("{v6}::1")]);
    }
    // The host's own firewall lets everything through.
    for tool in ["iptables", "ip6tables"] {
        s.exec(&[tool, "-P", "FORWARD", "ACCEPT"]);
        s.exec(&[tool, "-P", "INPUT", "ACCEPT"]);
    }
    let mut dev = device_in(&s, "tuns", 1280, false).await;
    dev.configure(1280, &["10.77.0.1/24".parse().unwrap(), "fd77::1/64".parse().unwrap()], &[]).await.unwrap();
    let forwarding = s.enter(|| Forwarding::setup(&config(false))).expect("setup");

    let ip = |a: &str| a.parse::<IpAddr>().unwrap();
    let (me, me6) = (ip("10.77.0.2"), ip("fd77::2"));
    let mut seq = 0;
    let mut answers = |dst: &str| {
        seq += 1;
        let src = if dst.contains(':') { me6 } else { me };
        let packet = echo(src, ip(dst), seq);
        let dev = &dev;
        async move { probe(dev, &packet).await }
    };
    // Offered: the server's VPN address, the route (the LAN host and the
    // server's address on it).
    for dst in ["10.77.0.1", "fd77::1", "192.168.88.2", "192.168.88.1", "fd88::2"] {
        let seen = answers(dst).await;
        assert_eq!(seen, vec![(ip(dst), ip(if dst.contains(':') { "fd77::2" } else { "10.77.0.2" }))], "{dst}");
    }
    // Not offered: nothing comes back, nothing is forwarded to another
    // client.
    for dst in ["192.168.99.2", "192.168.99.1", "fd99::2", "fd99::1", "10.77.0.3", "fd77::3"] {
        let seen = answers(dst).await;
        assert_eq!(seen, vec![], "{dst} answered or was forwarded");
    }
    s.enter(|| forwarding.teardown()).expect("teardown");
    dev.close().await.unwrap();
}
