//! Real TUN devices in two network namespaces, joined by two engines in
//! memory: ping and a 10 MB TCP transfer across, routes offered and asked
//! for, a lost peer, and clean removal. Needs root.

#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{CLIENT, Netns, SERVER, device_in, join, wait_event};
use tokio_util::sync::CancellationToken;
use vpn::{ClientConfig, Drop, Engine, Event, ServerConfig};

fn server_engine(routes: &[&str], mtu: u16) -> Engine {
    let mut c = ServerConfig::new(Some("10.77.0.0/24".parse().unwrap()), Some("fd77::/64".parse().unwrap()));
    c.mtu = mtu;
    c.routes = routes.iter().map(|r| r.parse().unwrap()).collect();
    Engine::server(c).unwrap()
}

fn client_engine(routes: &[&str]) -> Engine {
    Engine::client(ClientConfig { routes: routes.iter().map(|r| r.parse().unwrap()).collect(), ..Default::default() })
        .unwrap()
}

fn stdout(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(7) % 251) as u8
}

/// Sends `len` pattern bytes from namespace `from` to `to_addr` (a listener
/// in namespace `at`) and checks that every byte arrived intact.
fn tcp_transfer(at: &Netns, from: &Netns, to_addr: SocketAddr, len: usize) {
    let listener = at.spawn(move || TcpListener::bind(to_addr).expect("bind in server namespace"));
    let listener = listener.join().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = s.read(&mut buf).expect("read within 30 s");
            if n == 0 {
                break;
            }
            for (k, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, pattern(got + k), "byte {} differs", got + k);
            }
            got += n;
        }
        got
    });
    let sender = from.spawn(move || {
        let mut s = TcpStream::connect_timeout(&to_addr, Duration::from_secs(10)).expect("connect through the VPN");
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let data: Vec<u8> = (0..len).map(pattern).collect();
        s.write_all(&data).expect("write within 30 s");
        s.shutdown(std::net::Shutdown::Write).unwrap();
    });
    sender.join().unwrap();
    assert_eq!(receiver.join().unwrap(), len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_tcp_and_routes_through_two_tuns() {
    let s = Netns::new("srv");
    let c = Netns::new("cli");
    // A network behind the server (on its loopback: the server's kernel
    // answers for it).
    s.exec(&["ip", "addr", "add", "192.168.77.1/24", "dev", "lo"]);

    let sdev = device_in(&s, "tuns", 1280, true).await;
    let cdev = device_in(&c, "tunc", 1280, true).await;
    assert!(sdev.offload() && cdev.offload(), "GSO/GRO offload is available on this kernel");
    let cancel = CancellationToken::new();
    let (server, mut client) = join(
        // The server's device has a larger MTU than the client asks for, so
        // the server's SYN-ACKs need clamping.
        server_engine(&["192.168.77.0/24"], 1372),
        sdev,
        client_engine(&["192.168.77.0/24", "172.31.0.0/16"]),
        cdev,
        cancel.clone(),
    )
    .await;
    let Event::Assigned { assignment, resumed: false } =
        wait_event(&mut client.events, 10, |e| matches!(e, Event::Assigned { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(assignment.routes, vec!["192.168.77.0/24".parse().unwrap()]);
    assert_eq!(assignment.refused, vec!["172.31.0.0/16".parse().unwrap()]);
    let me = assignment.v4.unwrap().client;

    // The device carries what the server assigned, and only offered routes.
    let addrs = stdout(c.exec(&["ip", "addr", "show", "dev", "tunc"]));
    assert!(addrs.contains(&me.to_string()), "{addrs}");
    assert!(addrs.contains("mtu 1280"), "{addrs}");
    let routes = stdout(c.exec(&["ip", "route", "show"]));
    assert!(routes.contains("192.168.77.0/24 dev tunc"), "{routes}");
    assert!(!routes.contains("172.31"), "{routes}");
    let saddrs = stdout(s.exec(&["ip", "addr", "show", "dev", "tuns"]));
    assert!(saddrs.contains("10.77.0.1/24") && saddrs.contains("fd77::1/64"), "{saddrs}");

    // Ping across: the server's VPN address, its LAN, over IPv6.
    c.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.1"]);
    c.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "192.168.77.1"]);
    c.exec(&["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd77::1"]);
    // And from the server to the client.
    s.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &me.addr().to_string()]);

    // 10 MB of TCP, both directions.
    tcp_transfer(&s, &c, "10.77.0.1:5001".parse().unwrap(), 10 << 20);
    tcp_transfer(&c, &s, SocketAddr::new(me.addr(), 5002), 10 << 20);

    let cs = client.vpn.stats();
    let ss = server.vpn.stats();
    assert!(cs.packets_out > 8000 && ss.packets_in > 8000, "{cs:?} {ss:?}");
    // GRO: the server's writer merged consecutive segments, so its device
    // took far fewer writes (the kernel counts one received packet per
    // write) than the IP packets it passed on.
    let writes: u64 = stdout(s.exec(&["cat", "/sys/class/net/tuns/statistics/rx_packets"])).trim().parse().unwrap();
    assert!(writes * 4 < ss.packets_in, "{writes} writes for {} packets: {ss:?}", ss.packets_in);
    // The server's SYN-ACKs announce 1332 (MTU 1372) and leave as 1240.
    assert!(ss.mss_clamped >= 2, "{ss:?}");
    assert_eq!(cs.mss_clamped, 0, "the client's SYNs already fit: {cs:?}");
    let smtu = stdout(s.exec(&["ip", "link", "show", "tuns"]));
    assert!(smtu.contains("mtu 1372"), "{smtu}");
    assert_eq!(ss.dropped.get(Drop::SourceNotAllowed), 0);
    assert_eq!(cs.dropped.get(Drop::SourceNotAllowed), 0);

    // Shutting the client down removes its device and routes.
    client.vpn.shutdown().await.unwrap();
    assert!(!c.try_exec(&["ip", "link", "show", "tunc"]).status.success(), "tunc still exists");
    let routes = stdout(c.exec(&["ip", "route", "show"]));
    assert!(!routes.contains("192.168.77"), "{routes}");
    server.vpn.shutdown().await.unwrap();
    assert!(!s.try_exec(&["ip", "link", "show", "tuns"]).status.success(), "tuns still exists");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_peer_keeps_the_device_and_resumes() {
    let s = Netns::new("lsrv");
    let c = Netns::new("lcli");
    let sdev = device_in(&s, "tuns", 1280, true).await;
    let cdev = device_in(&c, "tunc", 1280, true).await;
    let cancel = CancellationToken::new();
    let (server, mut client) = join(server_engine(&[], 1280), sdev, client_engine(&[]), cdev, cancel.clone()).await;
    let Event::Assigned { assignment: first, .. } =
        wait_event(&mut client.events, 10, |e| matches!(e, Event::Assigned { .. })).await
    else {
        unreachable!()
    };
    c.exec(&["ping", "-c", "1", "-W", "2", "10.77.0.1"]);

    // The link goes away.
    client.link_up.store(false, Ordering::Relaxed);
    server.vpn.peer_lost(CLIENT);
    client.vpn.peer_lost(SERVER);
    wait_event(&mut client.events, 5, |e| *e == Event::ServerLost).await;
    assert!(!c.try_exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.77.0.1"]).status.success());
    let addrs = stdout(c.exec(&["ip", "addr", "show", "dev", "tunc"]));
    assert!(addrs.contains(&first.v4.unwrap().client.to_string()), "device kept its address: {addrs}");
    assert!(client.vpn.stats().dropped.get(Drop::PeerOffline) >= 2);

    // Back: the same session, and packets flow again.
    client.link_up.store(true, Ordering::Relaxed);
    server.vpn.peer_connected(CLIENT, b"client public key");
    client.vpn.peer_connected(SERVER, b"server public key");
    let again = wait_event(&mut client.events, 10, |e| matches!(e, Event::Assigned { .. })).await;
    assert_eq!(again, Event::Assigned { assignment: first, resumed: true });
    c.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.77.0.1"]);

    client.vpn.shutdown().await.unwrap();
    server.vpn.shutdown().await.unwrap();
    cancel.cancel();
}

/// Throughput through the whole VPN path (two TUNs, two runners, two
/// engines joined in memory): iperf3 from the client's namespace to the
/// server's. A measurement, not a timed test:
/// `cargo test --release -p vpn --test tun_netns -- --ignored --nocapture`
/// (`VPN_BENCH_OFFLOAD=0` for plain devices, `VPN_BENCH_STREAMS`, `VPN_BENCH_SECS`,
/// `VPN_BENCH_MTU`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand"]
async fn iperf3_through_the_engines() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let offload = env("VPN_BENCH_OFFLOAD", "1") == "1";
    let streams = env("VPN_BENCH_STREAMS", "1");
    let secs = env("VPN_BENCH_SECS", "5");
    let mtu: u16 = env("VPN_BENCH_MTU", "1280").parse().unwrap();
    let s = Netns::new("bsrv");
    let c = Netns::new("bcli");
    let sdev = device_in(&s, "tuns", mtu, offload).await;
    let cdev = device_in(&c, "tunc", mtu, offload).await;
    let cancel = CancellationToken::new();
    let client = Engine::client(ClientConfig { mtu, ..ClientConfig::default() }).unwrap();
    let (server, mut client) = join(server_engine(&[], mtu), sdev, client, cdev, cancel.clone()).await;
    wait_event(&mut client.events, 10, |e| matches!(e, Event::Assigned { .. })).await;
    let mut iperf = std::process::Command::new("ip")
        .args(["netns", "exec", s.name(), "iperf3", "-s", "-1", "-B", "10.77.0.1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 (install it: scripts/test does)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = stdout(c.exec(&["iperf3", "-c", "10.77.0.1", "-t", &secs, "-P", &streams, "-J"]));
    let _ = iperf.wait();
    let bps: f64 = out
        .split("\"sum_received\"")
        .nth(1)
        .and_then(|x| x.split("\"bits_per_second\":").nth(1))
        .and_then(|x| x.split([',', '\n']).next())
        .and_then(|x| x.trim().parse().ok())
        .expect("iperf3 JSON");
    let ping = stdout(c.exec(&["ping", "-c", "20", "-i", "0.05", "-q", "10.77.0.1"]));
    let rtt = ping.lines().last().unwrap_or_default().to_owned();
    eprintln!(
        "vpn runner offload={offload} mtu={mtu} streams={streams}: {:.2} Gbit/s; {rtt}; client {:?}",
        bps / 1e9,
        client.vpn.stats().dropped
    );
    assert!(bps > 0.0);
    client.vpn.shutdown().await.unwrap();
    server.vpn.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_exists_already_is_reported() {
    let s = Netns::new("esrv");
    let c = Netns::new("ecli");
    // The client's own network already has this route.
    c.exec(&["ip", "route", "add", "blackhole", "192.168.77.0/24"]);
    let sdev = device_in(&s, "tuns", 1280, false).await;
    let cdev = device_in(&c, "tunc", 1280, false).await;
    let cancel = CancellationToken::new();
    let (server, mut client) =
        join(server_engine(&["192.168.77.0/24"], 1280), sdev, client_engine(&["192.168.77.0/24"]), cdev, cancel).await;
    let Event::DeviceFailed { message } =
        wait_event(&mut client.events, 10, |e| matches!(e, Event::DeviceFailed { .. })).await
    else {
        unreachable!()
    };
    assert!(message.contains("add route 192.168.77.0/24 on tunc"), "{message}");
    // The rest of the session works (and this also runs the plain,
    // offload-free device path).
    c.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.77.0.1"]);
    client.vpn.shutdown().await.unwrap();
    // Our device went; the route that was there before stays.
    let routes = stdout(c.exec(&["ip", "route", "show"]));
    assert!(routes.contains("blackhole 192.168.77.0/24"), "{routes}");
    server.vpn.shutdown().await.unwrap();
}
