//! Router port mapping against miniupnpd (Debian's miniupnpd-iptables) on a
//! home router in namespaces: with each of PCP, NAT-PMP and UPnP IGD the
//! mapper gets a mapping that the router shows (its DNAT rule) and that
//! carries packets from the internet to our port, keeps it past its
//! lifetime by renewing it, and removes it when stopped. End to end, a
//! tuntox server behind such a router is reached by a client behind
//! another NAT on direct UDP, and its mapping goes when it gets SIGTERM.
//!
//! Needs root (namespaces) and miniupnpd; never skips.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::bootstrapd::{Bootstrapd, BootstrapdConfig};
use support::deadline::Deadline;
use support::homenet::{Home, Internet, LAN_HOST, NatKind, PUBLIC_IPS};
use support::netns::Netns;
use support::tuntox::{Tuntox, binary};
use tokio_util::sync::CancellationToken;
use tuntox::driver::portmap::{Mapper, MapperConfig};
use tuntox::portmap::{Mapping, Protocol};

/// The lifetime the tests ask for: renewed every 3 s.
const LIFETIME: u32 = 6;
/// Our "node's" UDP port.
const PORT: u16 = 34000;

/// Sends one datagram from the internet to `to`.
fn send_from_internet(internet: &Netns, to: SocketAddr, text: &str) {
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            internet.name(),
            "bash",
            "-c",
            &format!("echo {text} > /dev/udp/{}/{}", to.ip(), to.port()),
        ])
        .stdin(Stdio::null())
        .status()
        .expect("run bash");
    assert!(status.success());
}

/// The mapper in the home's host: a mapping by `protocol`, shown by the
/// router, carrying traffic, renewed, removed.
fn lifecycle(protocol: Protocol) {
    let internet = Internet::new("pmnet");
    let mut home = Home::new(&internet, NatKind::Cone);
    home.start_miniupnpd(2);
    let home = Arc::new(home);
    let internet = Arc::new(internet);
    let (home2, internet2) = (Arc::clone(&home), Arc::clone(&internet));
    home.host.run_in(move || {
        let (home, internet) = (home2, internet2);
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let config = MapperConfig { internal_port: PORT, lifetime: LIFETIME, protocols: vec![protocol] };
            let mapper = Mapper::spawn(config, CancellationToken::new());
            let mut state = mapper.watch();
            let mapping: Mapping = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Some(mapping) = *state.borrow_and_update() {
                        return mapping;
                    }
                    state.changed().await.expect("the mapper runs");
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{protocol}: no mapping within 10 s"));
            assert_eq!(mapping.protocol, protocol);
            assert_eq!(mapping.external.ip().to_string(), home.public_ip, "{mapping}");
            assert_eq!(mapping.internal_port, PORT);
            let ext = mapping.external.port();
            let rule = format!("-p udp -m udp --dport {ext} -j DNAT");
            home.wait_forwards("the mapping's rule", Duration::from_secs(5), |r| r.iter().any(|l| l.contains(&rule)));
            let lease = format!("UDP:{ext}:{LAN_HOST}:{PORT}:");
            let leases = std::fs::read_to_string(home.lease_file()).unwrap_or_default();
            assert!(leases.contains(&lease), "{protocol}: {lease} not in the lease file: {leases}");

            // It carries packets from the internet to our port.
            let received = tokio::task::spawn_blocking({
                let socket = socket.try_clone().unwrap();
                move || {
                    let deadline = Deadline::after(Duration::from_secs(5));
                    let mut buf = [0u8; 64];
                    while !deadline.passed() {
                        if let Ok((n, _)) = socket.recv_from(&mut buf) {
                            return String::from_utf8_lossy(&buf[..n]).trim().to_owned();
                        }
                    }
                    String::new()
                }
            });
            for _ in 0..5 {
                send_from_internet(&internet.netns, mapping.external, "through-the-mapping");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert_eq!(received.await.unwrap(), "through-the-mapping");

            // Past two lifetimes: still there, renewed (the router drops a
            // mapping nobody renews, see below).
            tokio::time::sleep(Duration::from_secs(u64::from(LIFETIME) * 2)).await;
            assert!(home.port_forwards().iter().any(|l| l.contains(&rule)), "{protocol}: the mapping expired");
            assert_eq!(*mapper.watch().borrow(), Some(mapping), "renewals keep the same mapping");

            mapper.stop().await;
            home.wait_forwards("the mapping's removal", Duration::from_secs(5), |r| {
                !r.iter().any(|l| l.contains(&rule))
            });
            let leases = std::fs::read_to_string(home.lease_file()).unwrap_or_default();
            assert!(!leases.contains(&lease), "{protocol}: still in the lease file: {leases}");
        });
    });
}

#[test]
fn pcp_maps_renews_and_removes() {
    lifecycle(Protocol::Pcp);
}

#[test]
fn nat_pmp_maps_renews_and_removes() {
    lifecycle(Protocol::NatPmp);
}

#[test]
fn upnp_igd_maps_renews_and_removes() {
    lifecycle(Protocol::Upnp);
}

/// The router of these tests does expire a mapping nobody renews, so the
/// renewal checks above mean something.
#[test]
fn miniupnpd_expires_an_unrenewed_mapping() {
    let internet = Internet::new("pmexp");
    let mut home = Home::new(&internet, NatKind::Cone);
    home.start_miniupnpd(2);
    home.host.run_in(|| {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        // NAT-PMP: map UDP 34001 to 34001 for 3 s.
        let request = [0u8, 1, 0, 0, 0x84, 0xd1, 0x84, 0xd1, 0, 0, 0, 3];
        socket.send_to(&request, ("10.9.0.1", 5351)).unwrap();
        let mut buf = [0u8; 32];
        let (n, _) = socket.recv_from(&mut buf).expect("miniupnpd answers NAT-PMP");
        assert_eq!((n, buf[1], buf[3]), (16, 129, 0), "{:?}", &buf[..n]);
    });
    let rule = "-p udp -m udp --dport 34001 -j DNAT";
    home.wait_forwards("the raw mapping", Duration::from_secs(3), |r| r.iter().any(|l| l.contains(rule)));
    home.wait_forwards("its expiry", Duration::from_secs(15), |r| !r.iter().any(|l| l.contains(rule)));
}

/// The external port in a "port mapping made" log line.
fn made_port(line: &str) -> u16 {
    let text = line.split("UDP ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap_or_default();
    text.parse::<SocketAddr>().map(|a| a.port()).unwrap_or_else(|_| panic!("no address in {line}"))
}

/// `tuntox status --json` of the one tuntox in `netns`.
fn status(netns: &Netns) -> Option<Value> {
    let out = netns.command(binary()).args(["status", "--json"]).stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next()?).ok()
}

/// A server behind a router with miniupnpd, a client behind a plain cone
/// NAT, a bootstrap node and TCP relay on the internet: the client reaches
/// the server on direct UDP within 10 s, and the server's mapping is gone
/// after SIGTERM. (Without the mapping these two NATs keep them off direct
/// UDP: each side's first packet meets the other router before its host
/// has sent, and conntrack drops it.)
#[test]
fn a_client_reaches_a_server_behind_miniupnpd_directly() {
    direct_through_the_mapping(NatKind::Cone);
}

/// The same behind a router that gives each destination a random port:
/// the DHT nodes see the server at ports nobody else can use, so only the
/// mapped address, which the server announces in its DHT-PK packets,
/// leads to it.
#[test]
fn the_announced_mapping_leads_through_a_random_port_nat() {
    direct_through_the_mapping(NatKind::RandomPort);
}

fn direct_through_the_mapping(server_nat: NatKind) {
    let internet = Internet::new("pme2e");
    let mut server_home = Home::new(&internet, server_nat);
    let client_home = Home::new(&internet, NatKind::Cone);
    server_home.start_miniupnpd(60);
    let bootstrapd = Bootstrapd::start_with(&internet.hosts[0], BootstrapdConfig::default());
    let boot = format!("{}:{}:{}", PUBLIC_IPS[0], bootstrapd.udp_port, bootstrapd.public_key_hex);
    let relay = format!("{}:{}:{}", PUBLIC_IPS[0], bootstrapd.tcp_port, bootstrapd.public_key_hex);
    let dir = tempfile::tempdir().unwrap();
    let net = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> =
            ["--bootstrap", &boot, "--relay", &relay, "--no-lan", "-d"].map(String::from).to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let mut server = Tuntox::spawn(
        &server_home.host,
        "server",
        &net(&["-C", dir.path().to_str().unwrap(), "-s", "pm-secret", "-u", "33445:33445"]),
    );
    let id = server.wait_tox_id();
    let made = server.wait_log("the port mapping", |l| l.contains("port mapping made"), Duration::from_secs(10));
    assert!(made.contains(&format!("UDP {}:", server_home.public_ip)) && made.contains("PCP"), "{made}");
    let leases = std::fs::read_to_string(server_home.lease_file()).unwrap_or_default();
    assert!(leases.contains(&format!("UDP:{}:{LAN_HOST}:33445:", made_port(&made))), "{leases}");
    let rule = format!("--dport {} -j DNAT", made_port(&made));
    server_home.wait_forwards("the server's mapping", Duration::from_secs(5), |r| r.iter().any(|l| l.contains(&rule)));

    // `tuntox status` shows the address the server announces.
    let announced = format!("{}:{}", server_home.public_ip, made_port(&made));
    let deadline = Deadline::after(Duration::from_secs(5));
    while status(&server_home.host).is_none_or(|r| r["port_mapping"] != announced.as_str()) {
        assert!(!deadline.passed(), "status: {:?}", status(&server_home.host));
        std::thread::sleep(Duration::from_millis(100));
    }

    let started = Deadline::after(Duration::from_secs(10));
    let client = Tuntox::spawn(
        &client_home.host,
        "client",
        &net(&["-i", &id, "-s", "pm-secret", "-L", "2222:127.0.0.1:22", "--no-portmap"]),
    );
    let server_key = &id[..64];
    let direct = loop {
        let path = status(&client_home.host).and_then(|report| {
            report["friends"]
                .as_array()?
                .iter()
                .find(|f| f["public_key"].as_str() == Some(server_key) && f["online"] == true)
                .and_then(|f| f["path"].as_str().map(str::to_owned))
        });
        if path.as_deref() == Some("udp") {
            break true;
        }
        if started.passed() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !direct {
        client.fail(&format!(
            "not on direct UDP within 10 s of starting (status: {:?}); server log:\n{}",
            status(&client_home.host),
            server.log().join("\n")
        ));
    }
    eprintln!("direct UDP after {:?}", started.elapsed());

    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "the server exits cleanly on SIGTERM: {status}");
    assert!(server.logged("port mapping removed"), "{}", server.log().join("\n"));
    let rules = server_home.port_forwards();
    assert!(!rules.iter().any(|l| l.contains(&rule)), "still mapped after exit: {rules:?}");
    drop(client);
}
