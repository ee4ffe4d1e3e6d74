//! `tuntox relay` with libtoxcore 0.2.18: our relay is the only bootstrap
//! node and the only TCP relay of a namespaced network.
//!
//! - Two libtoxcore peers with UDP off reach the onion and each other only
//!   through our TCP relay (its onion relaying, its announce store through
//!   the onion, out-of-band and routed data); they become friends and
//!   exchange custom lossless and lossy packets both ways.
//! - Two libtoxcore peers with UDP on bootstrap from our relay's DHT node
//!   alone, become friends and talk directly.
//! - Two of c-toxcore's own TCP relay clients (`TCP_client.c`, driven by
//!   `tests/interop/tcpclient.c`) route to each other through our relay:
//!   routing responses, connect and disconnect notifications, data both
//!   ways, out-of-band data, and pongs to their pings.
//!
//! Needs root (network namespaces) and libtoxcore-dev; run through
//! `scripts/test`, which installs it. It never skips.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::cbuild::build_c_program_with;
use support::netns::Netns;
use support::toxpeer::{PeerOptions, ToxPeer, parse_friend_added};
use support::tuntox::{Tuntox, binary};

const UDP_PORT: u16 = 33445;
const TCP_PORT: u16 = 33446;

/// `tuntox relay -C DIR --print-key`: makes the key pair (no network).
fn relay_key(dir: &Path) -> String {
    let out = Command::new(binary()).args(["relay", "-C"]).arg(dir).arg("--print-key").output().unwrap();
    assert!(out.status.success(), "--print-key failed: {}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(key.len(), 64, "{key:?}");
    key
}

/// Starts our relay in `netns`: DHT on 33445/udp, relay on 33446/tcp.
fn start_relay(netns: &Netns, dir: &Path, key: &str) -> Tuntox {
    let args: Vec<String> = [
        "relay",
        "-C",
        &dir.display().to_string(),
        "--port",
        &UDP_PORT.to_string(),
        "--tcp-port",
        &TCP_PORT.to_string(),
        "--no-lan",
        "-d",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut relay = Tuntox::spawn(netns, "relay", &args);
    let line = relay.wait_log("the relay's start line", |l| l.contains("relay running"), Duration::from_secs(20));
    assert!(line.contains(key), "the start line names the key: {line}");
    assert!(line.contains("33446"), "the start line names the TCP port: {line}");
    relay
}

fn befriend(a: &mut ToxPeer, b: &mut ToxPeer, timeout: Duration) -> (u32, u32) {
    let b_friend = b.add_friend(a.address(), "through our relay");
    let line = a.wait_for(|l| l.starts_with("friend_added "), timeout);
    let a_friend = parse_friend_added(&line).unwrap_or_else(|| a.fail(&format!("bad line {line}")));
    (a_friend, b_friend)
}

#[test]
fn libtoxcore_peers_talk_through_our_relay_alone() {
    let netns = Netns::new("ourrelay");
    let dir = tempfile::tempdir().unwrap();
    let key = relay_key(dir.path());
    let mut relay = start_relay(&netns, dir.path(), &key);
    let options = |name: &str| PeerOptions {
        udp: false,
        bootstrap: vec![format!("127.0.0.1:{UDP_PORT}:{key}")],
        tcp_relays: vec![format!("127.0.0.1:{TCP_PORT}:{key}")],
        accept: Some("any".to_owned()),
        ..PeerOptions::new(name)
    };
    let mut a = ToxPeer::spawn(&netns, &options("a"));
    let mut b = ToxPeer::spawn(&netns, &options("b"));
    for peer in [&mut a, &mut b] {
        let status = peer.wait_value("self_connection ", Duration::from_secs(60));
        assert_eq!(status, "tcp", "{} comes online through the relay", peer.name());
    }
    let (a_friend, b_friend) = befriend(&mut a, &mut b, Duration::from_secs(60));
    assert_eq!(a.wait_connected(a_friend, Duration::from_secs(60)), "tcp");
    assert_eq!(b.wait_connected(b_friend, Duration::from_secs(60)), "tcp");

    // Lossless both ways, in order.
    for i in 0..200u32 {
        let mut data = vec![160 + (i % 32) as u8];
        data.extend_from_slice(&i.to_be_bytes());
        data.resize(1 + (i as usize * 7) % 1300, (i % 251) as u8);
        a.send_lossless(a_friend, &data);
        let mut back = data.clone();
        back[0] = 191 - (i % 32) as u8;
        b.send_lossless(b_friend, &back);
        assert_eq!(b.recv_packet(b_friend, false, Duration::from_secs(30)), data, "lossless {i} a -> b");
        assert_eq!(a.recv_packet(a_friend, false, Duration::from_secs(30)), back, "lossless {i} b -> a");
    }
    // Lossy both ways: c-toxcore sends them over the relay too.
    for i in 0..50u32 {
        let mut data = vec![200 + (i % 55) as u8];
        data.extend_from_slice(&i.to_be_bytes());
        a.send_lossy(a_friend, &data);
        b.send_lossy(b_friend, &data);
    }
    for peer in [&mut a, &mut b] {
        let friend = if peer.name() == "a" { a_friend } else { b_friend };
        let got = peer.recv_packet(friend, true, Duration::from_secs(30));
        assert!((200..=254).contains(&got[0]) && got.len() == 5, "{}: lossy {got:?}", peer.name());
    }
    let a_counts = a.counts();
    let lossy_rx = a_counts.iter().find(|(k, _)| k == "lossy_rx").map(|(_, v)| *v);
    assert!(lossy_rx.is_none_or(|n| n >= 1), "{a_counts:?}");
    assert!(relay.logged("relay client connected"), "the peers came through our relay");
    let status = relay.terminate(Duration::from_secs(10));
    assert!(status.success(), "the relay stops cleanly on SIGTERM: {status:?}");
}

#[test]
fn libtoxcore_udp_peers_bootstrap_from_our_relay() {
    let netns = Netns::new("ourdht");
    let dir = tempfile::tempdir().unwrap();
    let key = relay_key(dir.path());
    let mut relay = start_relay(&netns, dir.path(), &key);
    let options = |name: &str| PeerOptions {
        bootstrap: vec![format!("127.0.0.1:{UDP_PORT}:{key}")],
        accept: Some("any".to_owned()),
        ..PeerOptions::new(name)
    };
    let mut a = ToxPeer::spawn(&netns, &options("a"));
    let mut b = ToxPeer::spawn(&netns, &options("b"));
    for peer in [&mut a, &mut b] {
        let status = peer.wait_value("self_connection ", Duration::from_secs(60));
        assert_ne!(status, "none", "{} comes online", peer.name());
    }
    let (a_friend, b_friend) = befriend(&mut a, &mut b, Duration::from_secs(60));
    assert_eq!(a.wait_connected(a_friend, Duration::from_secs(60)), "udp");
    assert_eq!(b.wait_connected(b_friend, Duration::from_secs(60)), "udp");
    a.send_lossless(a_friend, &[170, 1, 2, 3]);
    assert_eq!(b.recv_packet(b_friend, false, Duration::from_secs(30)), [170, 1, 2, 3]);
    b.send_lossless(b_friend, &[171, 4]);
    assert_eq!(a.recv_packet(a_friend, false, Duration::from_secs(30)), [171, 4]);
    relay.terminate(Duration::from_secs(10));
}

#[test]
fn c_toxcore_tcp_clients_route_through_our_relay() {
    // libtoxcore's shared library exports only the public API: link the
    // static archive for TCP_client.c.
    let libdir = Command::new("pkg-config").args(["--variable=libdir", "toxcore"]).output().unwrap();
    let archive = format!("{}/libtoxcore.a", String::from_utf8_lossy(&libdir.stdout).trim());
    let program = build_c_program_with("interop/tcpclient.c", &["libsodium"], &[&archive, "-pthread"]);
    let netns = Netns::new("tcpclient");
    let dir = tempfile::tempdir().unwrap();
    let key = relay_key(dir.path());
    let mut relay = start_relay(&netns, dir.path(), &key);
    let out = netns.command(&program).args(["127.0.0.1", &TCP_PORT.to_string(), &key]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let steps: Vec<&str> = stdout.lines().collect();
    let ok = |step: &str| steps.iter().any(|l| l.starts_with(&format!("ok {step}")));
    if !out.status.success() || !["handshake", "linked", "data", "oob", "pongs", "disconnect"].iter().all(|s| ok(s)) {
        relay.fail(&format!("the c-toxcore clients failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    }
    assert!(steps.contains(&"ok data 500 500"), "{stdout}");
    relay.terminate(Duration::from_secs(10));
}
