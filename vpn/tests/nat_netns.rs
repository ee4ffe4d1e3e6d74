//! Server-side forwarding and masquerading: it works (a client reaches a
//! LAN host that has no route back to the VPN pool, through a FORWARD DROP
//! policy), and teardown leaves the firewall and sysctls exactly as they
//! were. Needs root and iptables.

#![allow(clippy::disallowed_methods)]

mod support;

use support::{Netns, device_in, join, wait_event};
use tokio_util::sync::CancellationToken;
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
