//! The VPN end to end: a `tuntox --vpn` server and `tuntox vpn up` clients
//! as real processes, each in its own network namespace, with a LAN host
//! behind the server.
//!
//! ```text
//!  client k (10.0.k.2) --veth-- server (10.0.k.1, tox-bootstrapd) --veth-- lan (192.168.77.2, fd77::2)
//!                                        192.168.77.1, fd77::1
//! ```
//!
//! Tox runs over the client-server links (the bootstrap node listens on
//! the server's 10.0.1.1); the VPN offers 192.168.77.0/24 and fd77::/64.
//! Asserted: ping (IPv4 and IPv6) and 100 MB over TCP to the LAN host,
//! which sees the server's address with `--vpn-nat` and the client's VPN
//! address without; spoofed sources dropped and counted; two clients at
//! once with their own addresses; a stopped client leaves no device or
//! route behind and a stopped server no firewall rule or sysctl; a server
//! killed and restarted gives the client back its address within 10 s;
//! refusals (wrong secret, not on the allow-list, a server without
//! `--vpn`, which still serves `-L`); both sides as `-U nobody` with a TUN
//! node only root may open, the client in the background (`-z -F`), cleaning
//! up as nobody, their `tuntox status` showing each end's VPN addresses; a
//! crafted client (libtoxcore, sending IP packets of its own making) that
//! reaches the offered route and the server's VPN address but not another
//! network behind the server, the server's other addresses or another
//! client, with the server's `FORWARD` policy ACCEPT.
//!
//! Needs root (namespaces, TUN, the `nobody` account), toxcore-utils,
//! iptables, iputils-ping and util-linux (`unshare`); run through
//! `scripts/test`, which installs them. It never skips.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc::channel;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown};
use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::devlog::DevLog;
use support::e2e::{SECRET, check_pattern, echo_roundtrip, echo_server, write_pattern};
use support::netns::Netns;
use support::procfs::{ended, read_pid, stat, status_field, wait_until};
use support::toxpeer::{PeerOptions, ToxPeer, from_hex};
use support::tuntox::{Tuntox, binary, request_message};

const CONNECT: Duration = Duration::from_secs(60);
const LAN_V4: &str = "192.168.77.2";
const LAN_V6: &str = "fd77::2";
const ROUTE_V4: &str = "192.168.77.0/24";
const ROUTE_V6: &str = "fd77::/64";

/// The namespaces and the bootstrap node. Dropped last (declare first).
struct Lab {
    _bootstrapd: Bootstrapd,
    /// `10.0.1.1:33445:KEY`.
    boot: String,
    clients: Vec<Netns>,
    lan: Netns,
    srv: Netns,
}

impl Lab {
    fn new(tag: &str, clients: usize) -> Lab {
        let srv = Netns::new(&format!("{tag}s"));
        let lan = Netns::new(&format!("{tag}l"));
        srv.exec(&["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lan.name()]);
        srv.exec(&["ip", "addr", "add", "192.168.77.1/24", "dev", "lan0"]);
        srv.exec(&["ip", "addr", "add", "fd77::1/64", "dev", "lan0", "nodad"]);
        srv.exec(&["ip", "link", "set", "lan0", "up"]);
        lan.exec(&["ip", "addr", "add", "192.168.77.2/24", "dev", "eth0"]);
        lan.exec(&["ip", "addr", "add", "fd77::2/64", "dev", "eth0", "nodad"]);
        lan.exec(&["ip", "link", "set", "eth0", "up"]);
        lan.exec(&["ip", "route", "add", "default", "via", "192.168.77.1"]);
        lan.exec(&["ip", "-6", "route", "add", "default", "via", "fd77::1"]);
        let clients: Vec<Netns> = (1..=clients)
            .map(|k| {
                let ns = Netns::new(&format!("{tag}c{k}"));
                let link = format!("c{k}");
                srv.exec(&["ip", "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", ns.name()]);
                srv.exec(&["ip", "addr", "add", &format!("10.0.{k}.1/24"), "dev", &link]);
                srv.exec(&["ip", "link", "set", &link, "up"]);
                ns.exec(&["ip", "addr", "add", &format!("10.0.{k}.2/24"), "dev", "eth0"]);
                ns.exec(&["ip", "link", "set", "eth0", "up"]);
                ns.exec(&["ip", "route", "add", "10.0.0.0/16", "via", &format!("10.0.{k}.1")]);
                ns
            })
            .collect();
        let bootstrapd = Bootstrapd::start(&srv);
        let boot = bootstrapd.bootstrap_arg().replacen("127.0.0.1", "10.0.1.1", 1);
        Lab { _bootstrapd: bootstrapd, boot, clients, lan, srv }
    }

    fn server_args(&self, dir: &Path, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec!["-C".into(), dir.display().to_string(), "-s".into(), SECRET.into()];
        args.extend(["-u", "34000:34099", "--bootstrap", &self.boot, "--no-lan"].map(String::from));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    fn server(&self, label: &str, dir: &Path, extra: &[&str]) -> Tuntox {
        Tuntox::spawn(&self.srv, label, &self.server_args(dir, extra))
    }

    fn vpn_up_args(&self, server_id: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> =
            ["vpn", "up", "-i", server_id, "--bootstrap", &self.boot, "--no-lan"].map(String::from).to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    fn vpn_up(&self, k: usize, label: &str, server_id: &str, extra: &[&str]) -> Tuntox {
        Tuntox::spawn(&self.clients[k - 1], label, &self.vpn_up_args(server_id, extra))
    }
}

/// The addresses of a `VPN up: A, B; routes: ...` or `VPN resumed: A, B
/// (...)` line.
fn vpn_addresses(line: &str) -> Vec<IpAddr> {
    let rest = line.split_once("VPN up: ").or_else(|| line.split_once("VPN resumed: ")).map(|(_, r)| r).unwrap_or("");
    let list = rest.split([';', '(']).next().unwrap_or("");
    list.split(',').filter_map(|a| a.trim().split('/').next()?.parse().ok()).collect()
}

fn wait_vpn_up(client: &mut Tuntox, timeout: Duration) -> (IpAddr, IpAddr) {
    let line = client.wait_log("the VPN session", |l| l.contains("VPN up: "), timeout);
    v4_v6(client, &line)
}

fn v4_v6(client: &Tuntox, line: &str) -> (IpAddr, IpAddr) {
    let addrs = vpn_addresses(line);
    match (addrs.iter().find(|a| a.is_ipv4()), addrs.iter().find(|a| a.is_ipv6())) {
        (Some(v4), Some(v6)) => (*v4, *v6),
        _ => client.fail(&format!("no IPv4 and IPv6 address in {line:?}")),
    }
}

fn run(ns: &Netns, argv: &[&str]) -> Output {
    ns.command(argv[0]).args(&argv[1..]).stdin(Stdio::null()).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Pings until a reply comes (the first packets may race the routes), at
/// most `timeout`; returns the output of the first successful ping.
fn ping_ok(ns: &Netns, target: &str, timeout: Duration, logs: &[&Tuntox]) -> String {
    let deadline = Deadline::after(timeout);
    loop {
        let out = run(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", target]);
        if out.status.success() {
            return text(&out);
        }
        if deadline.passed() {
            let logs: Vec<String> = logs.iter().map(|t| t.log().join("\n")).collect();
            panic!("ping {target} failed within {timeout:?}: {}\n--- logs ---\n{}", text(&out), logs.join("\n---\n"));
        }
        thread::sleep(Duration::from_millis(300));
    }
}

/// Accepts one connection on `listener` and reports the peer's address
/// and whether `len` pattern bytes from `seed` arrived intact.
fn receive_pattern(
    listener: TcpListener,
    seed: u64,
    len: usize,
) -> std::sync::mpsc::Receiver<(SocketAddr, Result<(), String>)> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let (stream, peer) = listener.accept().unwrap();
        let _ = tx.send((peer, check_pattern(stream, seed, len)));
    });
    rx
}

/// The network state a run must leave as it found it.
fn snapshot(ns: &Netns) -> String {
    let mut all = String::new();
    for argv in [
        &["iptables-save"][..],
        &["ip6tables-save"],
        &["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"],
        &["ip", "-o", "link", "show"],
        &["ip", "route", "show"],
        &["ip", "-6", "route", "show"],
    ] {
        let out = ns.exec(argv);
        all.push_str(&format!("$ {}\n", argv.join(" ")));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.starts_with('#') {
                continue;
            }
            // Chain counters ([packets:bytes]) move with traffic.
            let line = match line.find(" [") {
                Some(at) if line.starts_with(':') => &line[..at],
                _ => line,
            };
            all.push_str(line);
            all.push('\n');
        }
    }
    all
}

/// `tuntox status --json` of the tuntox with process ID `pid` in `ns`.
fn server_report(ns: &Netns, pid: u32) -> serde_json::Value {
    let out = ns.command(binary()).args(["status", "--json"]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "tuntox status: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["pid"] == pid)
        .unwrap_or_else(|| panic!("no report of process {pid}: {}", text(&out)))
}

/// Firewall rules of someone else's, which must survive the server.
fn add_foreign_rules(ns: &Netns) {
    for tool in ["iptables", "ip6tables"] {
        let net = if tool == "iptables" { "203.0.113.0/24" } else { "2001:db8:9::/48" };
        ns.exec(&[tool, "-A", "FORWARD", "-s", net, "-j", "DROP"]);
        ns.exec(&[tool, "-t", "nat", "-A", "POSTROUTING", "-s", net, "-j", "RETURN"]);
    }
}

/// The `VPN counters:` line's count for `reason`.
fn dropped(server: &Tuntox, reason: &str) -> u64 {
    let key = format!("{reason}=");
    server
        .log()
        .iter()
        .rev()
        .filter(|l| l.contains("VPN counters:"))
        .find_map(|l| {
            let at = l.find(&key)? + key.len();
            l[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .unwrap_or(0)
}

#[test]
fn vpn_with_nat_carries_ping_tcp_and_ipv6_for_two_clients_and_cleans_up() {
    const LEN: usize = 100 << 20;
    let lab = Lab::new("vpnnat", 2);
    add_foreign_rules(&lab.srv);
    let srv_before = snapshot(&lab.srv);
    let c1_before = snapshot(&lab.clients[0]);
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        lab.server("server", dir.path(), &["--vpn", "--vpn-route", ROUTE_V4, "--vpn-route", ROUTE_V6, "--vpn-nat"]);
    let server_id = server.wait_tox_id();
    let routes = ["-s", SECRET, "--route", ROUTE_V4, "--route", ROUTE_V6];
    let mut c1 = lab.vpn_up(1, "client 1", &server_id, &routes);
    let (c1_v4, c1_v6) = wait_vpn_up(&mut c1, CONNECT);
    server.wait_log("the client's session", |l| l.contains("VPN client up"), Duration::from_secs(5));
    // It said how it got there (steps shorter than the watch's second may
    // go unsaid).
    let steps = ["joined the Tox network", "connected to the server (", "VPN up: "];
    let log = c1.log();
    let at: Vec<Option<usize>> = steps.iter().map(|s| log.iter().position(|l| l.contains(s))).collect();
    assert!(at.iter().all(Option::is_some) && at[1] < at[2], "{steps:?} at {at:?}:\n{}", log.join("\n"));
    let c1ns = &lab.clients[0];
    ping_ok(c1ns, LAN_V4, Duration::from_secs(10), &[&c1, &server]);

    // 100 MB to the LAN host, intact; it sees the server's address (NAT).
    let listener = lab.lan.run_in(|| TcpListener::bind("0.0.0.0:5001").unwrap());
    let got = receive_pattern(listener, 41, LEN);
    let start = Deadline::after(Duration::from_secs(300));
    let stream =
        c1ns.run_in(|| TcpStream::connect_timeout(&"192.168.77.2:5001".parse().unwrap(), Duration::from_secs(10)));
    let stream = stream.unwrap_or_else(|e| c1.fail(&format!("TCP to the LAN host: {e}")));
    write_pattern(&stream, 41, LEN).unwrap_or_else(|e| c1.fail(&format!("sending 100 MB: {e}")));
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let (peer, intact) = got.recv_timeout(start.left()).unwrap_or_else(|_| c1.fail("the LAN host got no 100 MB"));
    intact.unwrap_or_else(|e| c1.fail(&format!("100 MB over the VPN: {e}")));
    eprintln!("100 MB through the VPN in {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(peer.ip().to_string(), "192.168.77.1", "with --vpn-nat the LAN host sees the server");

    // IPv6 across the tunnel.
    let out = ping_ok(c1ns, LAN_V6, Duration::from_secs(10), &[&c1, &server]);
    assert!(out.contains("from fd77::2"), "{out}");

    // Spoofed sources: dropped by the server, counted.
    c1ns.exec(&["ip", "addr", "add", "10.99.9.9/32", "dev", "lo"]);
    let spoofed = run(c1ns, &["ping", "-c", "5", "-i", "0.2", "-W", "1", "-I", "10.99.9.9", LAN_V4]);
    assert!(!spoofed.status.success(), "a spoofed ping got answers: {}", text(&spoofed));
    c1ns.exec(&["ip", "addr", "del", "10.99.9.9/32", "dev", "lo"]);

    // A second client: its own addresses, both work at once.
    let mut c2 = lab.vpn_up(2, "client 2", &server_id, &routes);
    let (c2_v4, c2_v6) = wait_vpn_up(&mut c2, CONNECT);
    assert_ne!(c1_v4, c2_v4);
    assert_ne!(c1_v6, c2_v6);
    let c2ns = &lab.clients[1];
    ping_ok(c2ns, LAN_V4, Duration::from_secs(10), &[&c2, &server]);
    let pings: Vec<_> = [c1ns, c2ns, c1ns, c2ns]
        .iter()
        .zip([LAN_V4, LAN_V4, LAN_V6, LAN_V6])
        .map(|(ns, target)| {
            ns.command("ping")
                .args(["-c", "10", "-i", "0.1", "-W", "2", target])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for ping in pings {
        let out = ping.wait_with_output().unwrap();
        assert!(out.status.success(), "concurrent ping: {}\n{}", text(&out), server.log().join("\n"));
    }

    // Client 1 stops (`tuntox vpn down`): its device and routes go, and its
    // goodbye ends its session on the server at once.
    let down = run(c1ns, &[binary(), "vpn", "down", "--dev", "tuntox0"]);
    let exited = support::deadline::now();
    assert!(down.status.success(), "vpn down: {}", text(&down));
    assert!(text(&down).contains("stopped tuntox vpn up on tuntox0"), "{}", text(&down));
    let status = c1.wait_exit(Duration::from_secs(5));
    if !status.success() {
        c1.fail(&format!("exit after vpn down: {status}"));
    }
    server.wait_log("client 1's goodbye", |l| l.contains("VPN client down"), Duration::from_secs(1));
    let report = server_report(&lab.srv, server.pid());
    let c1_v4 = format!("{c1_v4}/32");
    let holds = |f: &serde_json::Value| f["vpn_addresses"].as_array().is_some_and(|a| a.iter().any(|x| x == &*c1_v4));
    assert!(!report["friends"].as_array().unwrap().iter().any(holds), "{report:#}");
    eprintln!("the server freed client 1's address {:?} after its exit", exited.elapsed());
    assert!(exited.elapsed() < Duration::from_secs(1), "{:?}", exited.elapsed());
    assert!(!run(c1ns, &["ip", "link", "show", "tuntox0"]).status.success(), "tuntox0 still exists");
    assert_eq!(snapshot(c1ns), c1_before, "client 1's namespace after the client stopped");
    ping_ok(c2ns, LAN_V4, Duration::from_secs(10), &[&c2, &server]);

    // The server stops: its counters show the spoofed packets; its rules
    // and sysctls are gone, the foreign rules kept.
    let status = server.terminate(Duration::from_secs(15));
    if !status.success() {
        server.fail(&format!("exit after SIGTERM: {status}"));
    }
    let spoofs = dropped(&server, "source_not_allowed");
    assert!(spoofs >= 5, "spoofed packets counted: {spoofs}\n{}", server.log().join("\n"));
    assert_eq!(snapshot(&lab.srv), srv_before, "the server's namespace after the server stopped");
    assert!(server.logged("VPN forwarding rules removed"));
    c2.kill();
}

#[test]
fn vpn_without_nat_survives_a_server_restart_and_refuses_strangers() {
    let lab = Lab::new("vpnrst", 2);
    // Identities known in advance, for the allow-list.
    let ids: Vec<(tempfile::TempDir, String)> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let out = std::process::Command::new(binary()).args(["id", "-C"]).arg(dir.path()).output().unwrap();
            assert!(out.status.success(), "tuntox id: {}", text(&out));
            let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (dir, id)
        })
        .collect();
    let srv_dir = tempfile::tempdir().unwrap();
    let server_args = ["--vpn", "--vpn-route", ROUTE_V4, "-i", &ids[0].1, "-i", &ids[1].1];
    let mut server = lab.server("server", srv_dir.path(), &server_args);
    let server_id = server.wait_tox_id();

    // Strangers, refused while the real client works: a wrong secret (but
    // listed) and an unlisted client (with the right secret).
    let wrong_dir = ids[1].0.path().display().to_string();
    let mut wrong = lab.vpn_up(
        2,
        "wrong secret",
        &server_id,
        &["-s", "wrong", "-C", &wrong_dir, "--dev", "ttwrong", "--connect-timeout", "20"],
    );
    let mut unlisted =
        lab.vpn_up(2, "unlisted", &server_id, &["-s", SECRET, "--dev", "ttunlisted", "--connect-timeout", "20"]);

    let c_dir = ids[0].0.path().display().to_string();
    let mut client = lab.vpn_up(1, "client", &server_id, &["-s", SECRET, "-C", &c_dir, "--route", ROUTE_V4]);
    let (v4, v6) = wait_vpn_up(&mut client, CONNECT);
    let cns = &lab.clients[0];

    // Without NAT the LAN host sees the client's VPN address.
    let listener = lab.lan.run_in(|| TcpListener::bind("0.0.0.0:5002").unwrap());
    let (tx, rx) = channel();
    thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        let _ = s.read_exact(&mut buf);
        let _ = s.write_all(&buf);
        let _ = tx.send(peer);
    });
    let deadline = Deadline::after(Duration::from_secs(15));
    let mut stream = loop {
        match cns.run_in(|| TcpStream::connect_timeout(&"192.168.77.2:5002".parse().unwrap(), Duration::from_secs(3))) {
            Ok(s) => break s,
            Err(e) if deadline.passed() => client.fail(&format!("TCP to the LAN host: {e}")),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(echo_roundtrip(&mut stream, b"hello").unwrap(), b"hello");
    let peer = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(peer.ip(), v4, "without --vpn-nat the LAN host sees the client's VPN address");

    // Refusals on both sides.
    for (stranger, why) in [(&mut wrong, "wrong shared secret"), (&mut unlisted, "not on the -i allow-list")] {
        let status = stranger.wait_exit(Duration::from_secs(40));
        assert_eq!(status.code(), Some(1), "{}", stranger.log().join("\n"));
        assert!(stranger.logged("did not accept us within 20 s"), "{}", stranger.log().join("\n"));
        assert!(server.logged(why), "server log lacks {why:?}:\n{}", server.log().join("\n"));
    }
    assert!(!run(&lab.clients[1], &["ip", "link", "show", "ttwrong"]).status.success());

    // kill -9: the client keeps its device and waits.
    server.kill();
    client.wait_log("the loss", |l| l.contains("lost the server"), Duration::from_secs(40));
    assert!(run(cns, &["ip", "link", "show", "tuntox0"]).status.success(), "the device stays while the server is away");
    assert!(!run(cns, &["ping", "-c", "1", "-W", "1", LAN_V4]).status.success());

    // Restarted with the same identity: the same address within 10 s.
    let mut server = lab.server("server (restarted)", srv_dir.path(), &server_args);
    assert_eq!(server.wait_tox_id(), server_id);
    // Without -f, every start says that clients may reach any destination.
    server.wait_log("the -f warning", |l| l.contains("no rules file (-f)"), Duration::from_secs(5));
    let back = Deadline::after(Duration::from_secs(10));
    let line = client.wait_log(
        "the session again",
        |l| l.contains("VPN resumed: ") || l.contains("VPN up: "),
        Duration::from_secs(10),
    );
    assert_eq!(v4_v6(&client, &line), (v4, v6), "the same addresses after the restart: {line}");
    ping_ok(cns, LAN_V4, back.left().max(Duration::from_secs(1)), &[&client, &server]);
    eprintln!("the VPN worked again {:?} after the restart", back.elapsed());
    assert!(back.elapsed() <= Duration::from_secs(10), "took {:?}", back.elapsed());
    let status = client.terminate(Duration::from_secs(10));
    if !status.success() {
        client.fail(&format!("exit after SIGTERM: {status}"));
    }
}

#[test]
fn a_server_without_vpn_refuses_vpn_clients_and_still_forwards() {
    let lab = Lab::new("vpnoff", 1);
    let dir = tempfile::tempdir().unwrap();
    let mut server = lab.server("server", dir.path(), &[]);
    let server_id = server.wait_tox_id();
    echo_server(lab.srv.run_in(|| TcpListener::bind("127.0.0.1:7005").unwrap()));

    let mut vpn = lab.vpn_up(1, "vpn client", &server_id, &["-s", SECRET, "--route", ROUTE_V4]);
    let status = vpn.wait_exit(CONNECT);
    assert_eq!(status.code(), Some(1), "{}", vpn.log().join("\n"));
    assert!(vpn.logged("does not serve VPN clients"), "{}", vpn.log().join("\n"));
    assert!(!run(&lab.clients[0], &["ip", "link", "show", "tuntox0"]).status.success(), "device removed");
    server.wait_log("the refusal", |l| l.contains("refused a VPN client"), Duration::from_secs(5));

    let args: Vec<String> =
        ["-i", &server_id, "-s", SECRET, "-L", "7105:127.0.0.1:7005", "--bootstrap", &lab.boot, "--no-lan"]
            .map(String::from)
            .to_vec();
    let mut fwd = Tuntox::spawn(&lab.clients[0], "forward client", &args);
    fwd.wait_log("the connection", |l| l.contains("connected to the server"), CONNECT);
    let deadline = Deadline::after(Duration::from_secs(10));
    let mut s = loop {
        match lab.clients[0].run_in(|| TcpStream::connect("127.0.0.1:7105")) {
            Ok(s) => break s,
            Err(e) if deadline.passed() => fwd.fail(&format!("-L: {e}")),
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(echo_roundtrip(&mut s, b"still forwards").unwrap(), b"still forwards");
}

/// `-U nobody` on both sides, the client in the background (`-z -F`), with
/// a /dev/net/tun that only root may open: each process runs in a private
/// mount namespace whose /dev holds a TUN node of its own, mode 0600 and
/// root's, whatever the host's is (support/devlog.rs). The device is
/// opened before the switch; everything after it (addresses, routes, the
/// server's NAT rules, and their removal at exit) is done as nobody with
/// CAP_NET_ADMIN and CAP_NET_RAW only.
#[test]
fn vpn_runs_as_nobody_with_a_root_only_tun_node_and_in_the_background() {
    let lab = Lab::new("vpnusr", 1);
    let cns = &lab.clients[0];
    let nobody = User::from_name("nobody").unwrap().expect("the nobody account");
    let devlog = DevLog::new().with_tun();
    let work = tempfile::Builder::new().prefix("tt-vpnusr").tempdir().unwrap();
    chown(work.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    let (srv_conf, c_conf, pid_file) =
        (work.path().join("server"), work.path().join("client"), work.path().join("client.pid"));
    add_foreign_rules(&lab.srv);
    let srv_before = snapshot(&lab.srv);
    let c_before = snapshot(cns);

    let args = lab.server_args(&srv_conf, &["--vpn", "--vpn-route", ROUTE_V4, "--vpn-nat", "-U", "nobody"]);
    let mut cmd = devlog.wrap(Path::new(binary()), |program| lab.srv.command(program));
    cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null());
    let mut server = Tuntox::spawn_command(cmd, "server -U nobody");
    let server_id = server.wait_tox_id();

    let paths = [c_conf.to_str().unwrap(), pid_file.to_str().unwrap()];
    let flags = ["-s", SECRET, "--route", ROUTE_V4, "-C", paths[0], "-U", "nobody", "-z", "-F", paths[1]];
    let mut cmd = devlog.wrap(Path::new(binary()), |program| cns.command(program));
    cmd.args(lab.vpn_up_args(&server_id, &flags)).stdin(Stdio::null()).stdout(Stdio::null());
    let mut launcher = Tuntox::spawn_command(cmd, "vpn up -U nobody -z (launcher)");
    let status = launcher.wait_exit(Duration::from_secs(30));
    assert!(status.success() && launcher.log().is_empty(), "the launcher: {status}: {:?}", launcher.log());
    let pid = read_pid(&pid_file);
    assert_ne!(u32::try_from(pid).unwrap(), launcher.pid(), "the PID file names the launcher");
    let st = stat(pid).unwrap_or_else(|| panic!("no process {pid}"));
    assert!(st.state != 'Z' && st.session == pid, "not a running session leader: {st:?}");
    let tag = format!(" tuntox[{pid}]: ");
    let up = devlog.wait_for("the VPN session", |l| l.contains(&tag) && l.contains("VPN up: "), CONNECT);
    let client_v4 = vpn_addresses(&up).into_iter().find(IpAddr::is_ipv4).expect("an IPv4 address");
    ping_ok(cns, LAN_V4, Duration::from_secs(10), &[&server]);

    // `tuntox status` shows each end's VPN: the server its device, its
    // address and the client's; the client its address and route. Their
    // sockets belong to nobody.
    let [srv_report, c_report] = [(&lab.srv, server.pid()), (cns, u32::try_from(pid).unwrap())].map(|(ns, pid)| {
        let out = ns.command(binary()).args(["status", "--json"]).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "tuntox status: {}", text(&out));
        let socket = ns.status_dir().join(format!("tuntox-{pid}.sock"));
        assert_eq!(std::fs::metadata(&socket).unwrap().uid(), nobody.uid.as_raw(), "{}", socket.display());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    });
    let v4 = format!("{client_v4}/32");
    assert_eq!(srv_report["vpn"]["device"], "tuntox-srv0", "{srv_report:#}");
    assert_eq!(srv_report["vpn"]["addresses"][0], "10.77.0.1/24", "{srv_report:#}");
    let friend = &srv_report["friends"][0];
    assert!(friend["online"] == true && friend["vpn_addresses"][0] == v4.as_str(), "{srv_report:#}");
    assert!(srv_report["counters"]["vpn"]["packets_in"].as_u64() >= Some(3), "{srv_report:#}");
    assert_eq!(c_report["vpn"]["device"], "tuntox0", "{c_report:#}");
    assert!(c_report["vpn"]["addresses"][0].as_str().is_some_and(|a| a.starts_with(&format!("{client_v4}/"))));
    assert_eq!(c_report["vpn"]["routes"], serde_json::json!([ROUTE_V4]), "{c_report:#}");

    // Both run as nobody with the two capabilities only, the TUN node they
    // see being root's alone.
    let uid = nobody.uid.to_string();
    for (pid, who) in [(i32::try_from(server.pid()).unwrap(), "server"), (pid, "client")] {
        assert_eq!(status_field(pid, "Uid"), [uid.as_str(); 4], "{who}: real, effective, saved, fs");
        for set in ["CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(status_field(pid, set), ["0000000000003000"], "{who}: {set} is NET_ADMIN and NET_RAW");
        }
        let tun = std::fs::metadata(format!("/proc/{pid}/root/dev/net/tun")).unwrap();
        assert_eq!((tun.mode() & 0o777, tun.uid()), (0o600, 0), "{who}'s /dev/net/tun");
    }
    for file in [srv_conf.join("tox_save"), c_conf.join("tox_save"), pid_file.clone()] {
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (nobody.uid.as_raw(), nobody.gid.as_raw()), "{}", file.display());
    }
    let routes = String::from_utf8_lossy(&cns.exec(&["ip", "route", "show", "dev", "tuntox0"]).stdout).into_owned();
    assert!(routes.contains(ROUTE_V4), "the client's routes: {routes}");

    // SIGTERM: the background client removes its device, routes and PID file.
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_until("the client ends after SIGTERM", Duration::from_secs(10), || ended(pid));
    assert!(!pid_file.exists(), "the PID file is left behind");
    assert_eq!(snapshot(cns), c_before, "the client's namespace after the client stopped");
    devlog.wait_for("the stop", |l| l.contains(&tag) && l.contains("VPN counters:"), Duration::from_secs(5));

    // The server, as nobody, removes its NAT rules and sysctls.
    let status = server.terminate(Duration::from_secs(15));
    if !status.success() {
        server.fail(&format!("exit after SIGTERM: {status}"));
    }
    assert!(server.logged("VPN forwarding rules removed"), "{}", server.log().join("\n"));
    assert_eq!(snapshot(&lab.srv), srv_before, "the server's namespace after the server stopped");
}

/// An ICMP echo request from `src` to `dst` as a VPN data packet.
fn echo_request(src: IpAddr, dst: IpAddr, seq: u16) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (src, dst) else { panic!("IPv4 only") };
    let mut packet = vec![vpn::DATA_ID];
    etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(0x7475, seq)
        .write(&mut packet, b"crafted")
        .unwrap();
    packet
}

/// The source and sequence number of a VPN data packet that is an ICMP
/// echo reply.
fn echo_reply(packet: &[u8]) -> Option<(IpAddr, u16)> {
    let ip = etherparse::IpSlice::from_slice(packet.strip_prefix(&[vpn::DATA_ID])?).ok()?;
    let icmp = etherparse::Icmpv4Slice::from_slice(ip.payload().payload).ok()?;
    match icmp.icmp_type() {
        etherparse::Icmpv4Type::EchoReply(h) => Some((ip.source_addr(), h.seq)),
        _ => None,
    }
}

/// A client that does not play by the rules: a libtoxcore peer that asks
/// for a VPN session and then sends IP packets of its own making, to
/// destinations its session does not offer (no route table of its own
/// stops them). With `FORWARD` policy ACCEPT and forwarding on (a route is
/// offered), it reaches the offered LAN host and the server's VPN address,
/// and nothing else: not a network behind the server that is not offered,
/// not the server's addresses there or on the Tox link, not another client.
#[test]
fn a_crafted_client_reaches_only_what_it_was_offered() {
    let lab = Lab::new("vpnacl", 2);
    // A network behind the server that is not offered.
    let other = Netns::new("vpnaclo");
    lab.srv.exec(&["ip", "link", "add", "oth0", "type", "veth", "peer", "name", "eth0", "netns", other.name()]);
    lab.srv.exec(&["ip", "addr", "add", "192.168.99.1/24", "dev", "oth0"]);
    lab.srv.exec(&["ip", "link", "set", "oth0", "up"]);
    other.exec(&["ip", "addr", "add", "192.168.99.2/24", "dev", "eth0"]);
    other.exec(&["ip", "link", "set", "eth0", "up"]);
    other.exec(&["ip", "route", "add", "default", "via", "192.168.99.1"]);
    for tool in ["iptables", "ip6tables"] {
        lab.srv.exec(&[tool, "-P", "FORWARD", "ACCEPT"]);
        lab.srv.exec(&[tool, "-P", "INPUT", "ACCEPT"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = lab.server("server", dir.path(), &["--vpn", "--vpn-route", ROUTE_V4]);
    let server_id = server.wait_tox_id();

    // An honest second client.
    let mut honest = lab.vpn_up(2, "honest client", &server_id, &["-s", SECRET]);
    let (honest_v4, _) = wait_vpn_up(&mut honest, CONNECT);

    // The crafted one.
    let mut peer = ToxPeer::spawn(
        &lab.clients[0],
        &PeerOptions { bootstrap: vec![lab.boot.clone()], ..PeerOptions::new("crafted client") },
    );
    let friend = peer.add_friend_bytes(&server_id, &request_message(SECRET));
    peer.wait_connected(friend, CONNECT);
    let hello =
        vpn::control::Control::new(vpn::control::Message::Hello(vpn::control::Hello { mtu: 1280, routes: Vec::new() }));
    peer.send_lossless(friend, &hello.encode().unwrap());
    let assign = peer.recv_packet(friend, false, Duration::from_secs(10));
    let assign = match vpn::control::Control::decode(&assign).map(|c| c.message) {
        Ok(vpn::control::Message::Assign(a)) => a,
        other => peer.fail(&format!("no assignment: {other:?}")),
    };
    let me = assign.v4().expect("an IPv4 address").client.addr();
    let server_vpn = assign.v4().unwrap().server;
    assert_eq!(assign.routes, vec![ROUTE_V4.parse::<ipnet::IpNet>().unwrap()]);

    // Not offered first, then offered; each three times.
    let ip = |a: &str| a.parse::<IpAddr>().unwrap();
    let refused = [ip("192.168.99.2"), ip("192.168.99.1"), ip("10.0.1.1"), ip("10.0.2.1"), honest_v4];
    let allowed = [ip(LAN_V4), ip("192.168.77.1"), server_vpn];
    let mut seq = 0u16;
    for dst in refused.iter().chain(&allowed) {
        for _ in 0..3 {
            seq += 1;
            peer.send_lossy(friend, &echo_request(me, *dst, seq));
        }
    }
    // Every allowed destination answers (lossy: one of three suffices).
    let replies = |peer: &ToxPeer| -> Vec<IpAddr> {
        let prefix = format!("lossy {friend} ");
        peer.history()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|hex| echo_reply(&from_hex(hex)?))
            .map(|(src, _)| src)
            .collect()
    };
    let deadline = Deadline::after(Duration::from_secs(10));
    while !allowed.iter().all(|a| replies(&peer).contains(a)) {
        if deadline.passed() {
            peer.fail(&format!("allowed destinations did not all answer: {:?}", replies(&peer)));
        }
        // Moves the peer's lines into its history.
        let _ = peer.try_wait_for(|_| false, Duration::from_millis(200));
    }
    // A second more for late answers from the refused ones.
    let _ = peer.try_wait_for(|_| false, Duration::from_secs(1));
    let got = replies(&peer);
    for dst in refused {
        assert!(!got.contains(&dst), "{dst} answered a crafted client: {got:?}");
    }

    // The server counted what it dropped (its counters are logged at exit).
    let status = server.terminate(Duration::from_secs(15));
    if !status.success() {
        server.fail(&format!("exit after SIGTERM: {status}"));
    }
    let dropped = dropped(&server, "destination_not_allowed");
    assert!(dropped >= 15, "dropped and counted: {dropped}\n{}", server.log().join("\n"));
    honest.kill();
}
