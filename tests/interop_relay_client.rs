//! Our TCP relay client against libtoxcore 0.2.18 and tox-bootstrapd's
//! relay, in a network namespace:
//!
//! - a `tuntox` server with `--no-udp` and a libtoxcore peer with UDP off,
//!   both on tox-bootstrapd's relay, become friends (the peer reports TCP)
//!   and exchange ten thousand lossless packets intact; the server has no
//!   UDP socket at all;
//! - a UDP server and a TCP-only peer;
//! - failover: two relays, the one carrying the friendship is killed, and
//!   the numbered stream goes on through the other with nothing lost or
//!   duplicated;
//! - `-t PORT`: a UDP-off peer reaches the server through the server's own
//!   relay.
//!
//! Needs root (network namespaces), libtoxcore-dev and toxcore-utils; run
//! through `scripts/test`, which installs them. It never skips.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::netns::Netns;
use support::toxpeer::{PeerOptions, ToxPeer};
use support::tuntox::{Tuntox, binary, config_dir_args, local_network_args, ping_frame, pong_frame, request_message};

const SECRET: &str = "relay client secret";
/// A tuntox frame carries at most 1373 - 8 bytes of payload.
const MAX_PING_PAYLOAD: usize = 1365;

fn server_args(dir: &Path, bootstrapd: &Bootstrapd, extra: &[String]) -> Vec<String> {
    let mut args = config_dir_args(dir);
    args.extend(["-s".into(), SECRET.into(), "-d".into()]);
    args.extend(local_network_args(&bootstrapd.bootstrap_arg()));
    args.extend(extra.iter().cloned());
    args
}

fn tcp_peer(bootstrapd: &Bootstrapd, relays: Vec<String>) -> PeerOptions {
    PeerOptions {
        udp: false,
        bootstrap: vec![bootstrapd.bootstrap_arg()],
        tcp_relays: relays,
        quiet_packets: false,
        ..PeerOptions::new("peer")
    }
}

/// Befriends the server; returns the friend number once connected, and how.
fn connect(peer: &mut ToxPeer, server: &mut Tuntox, timeout: Duration) -> (u32, String) {
    let server_id = server.wait_tox_id();
    connect_to(peer, server, &server_id, timeout)
}

fn connect_to(peer: &mut ToxPeer, server: &mut Tuntox, server_id: &str, timeout: Duration) -> (u32, String) {
    let friend = peer.add_friend_bytes(server_id, &request_message(SECRET));
    let deadline = Deadline::after(timeout);
    server.wait_log("the friend request", |l| l.contains("accepted a friend request"), deadline.left());
    server.wait_log("the friend online", |l| l.contains("friend online"), deadline.left());
    let how = peer.wait_connected(friend, deadline.left());
    (friend, how)
}

/// `count` PINGs of random sizes, in chunks, each answered by its PONG in
/// order.
fn ping_pong(peer: &mut ToxPeer, friend: u32, count: usize, seed: u64, timeout: Duration) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let transfer = Deadline::after(timeout);
    let mut received = 0usize;
    let payloads: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let len = (rng.next_u32() as usize) % (MAX_PING_PAYLOAD + 1);
            let mut payload = vec![0u8; len];
            rng.fill_bytes(&mut payload);
            payload
        })
        .collect();
    for chunk in payloads.chunks(250) {
        for payload in chunk {
            peer.send_lossless(friend, &ping_frame(payload));
        }
        for payload in chunk {
            let got = peer.recv_packet(friend, false, transfer.left());
            assert!(got == pong_frame(payload), "PONG {received} differs from its PING ({} bytes)", got.len());
            received += 1;
        }
    }
    assert_eq!(received, count);
    eprintln!("{count} PING/PONG through the relay in {:?}", transfer.elapsed());
}

/// UDP sockets of process `pid` in `netns` (from `ss`).
fn udp_sockets(netns: &Netns, pid: u32) -> Vec<String> {
    let out = netns.command("ss").args(["-uanp"]).output().expect("run ss");
    assert!(out.status.success(), "ss failed");
    let needle = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
}

#[test]
fn tcp_only_server_and_tcp_only_peer_exchange_ten_thousand_packets() {
    let netns = Netns::new("rcboth");
    let bootstrapd = Bootstrapd::start(&netns);
    let dir = tempfile::tempdir().unwrap();
    let relay = bootstrapd.tcp_relay_arg();
    let extra = ["--no-udp".to_owned(), "--relay".to_owned(), relay.clone()];
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, &extra));
    let mut peer = ToxPeer::spawn(&netns, &tcp_peer(&bootstrapd, vec![relay]));
    let start = Deadline::after(Duration::from_secs(90));
    let (friend, how) = connect(&mut peer, &mut server, start.left());
    assert_eq!(how, "tcp", "the peer reaches the server through the relay");
    eprintln!("connected through the relay after {:?}", start.elapsed());
    assert!(server.logged("path=Tcp"), "the server reports the TCP path: {:?}", server.log());
    assert_eq!(udp_sockets(&netns, server.pid()), Vec::<String>::new(), "--no-udp opens no UDP socket");
    ping_pong(&mut peer, friend, 10_000, 11, Duration::from_secs(180));
    server.terminate(Duration::from_secs(10));
}

#[test]
fn udp_server_and_tcp_only_peer() {
    let netns = Netns::new("rcmixed");
    let bootstrapd = Bootstrapd::start(&netns);
    let dir = tempfile::tempdir().unwrap();
    let relay = bootstrapd.tcp_relay_arg();
    let extra = ["-u".to_owned(), "33700:33710".to_owned(), "--relay".to_owned(), relay.clone()];
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, &extra));
    let mut peer = ToxPeer::spawn(&netns, &tcp_peer(&bootstrapd, vec![relay]));
    let (friend, how) = connect(&mut peer, &mut server, Duration::from_secs(90));
    assert_eq!(how, "tcp");
    assert!(!udp_sockets(&netns, server.pid()).is_empty(), "this server uses UDP");
    ping_pong(&mut peer, friend, 1000, 12, Duration::from_secs(60));
    server.terminate(Duration::from_secs(10));
}

/// `tuntox relay` on 33545/udp and 33546/tcp, bootstrapping from
/// tox-bootstrapd; returns it and its `HOST:PORT:KEY`.
fn start_our_relay(netns: &Netns, dir: &Path, bootstrapd: &Bootstrapd) -> (Tuntox, String) {
    let out = Command::new(binary()).args(["relay", "-C"]).arg(dir).arg("--print-key").output().unwrap();
    assert!(out.status.success(), "--print-key failed");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let args: Vec<String> = [
        "relay",
        "-C",
        &dir.display().to_string(),
        "--port",
        "33545",
        "--tcp-port",
        "33546",
        "--bootstrap",
        &bootstrapd.bootstrap_arg(),
        "--no-lan",
        "-d",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut relay = Tuntox::spawn(netns, "relay", &args);
    relay.wait_log("the relay's start line", |l| l.contains("relay running"), Duration::from_secs(20));
    (relay, format!("127.0.0.1:33546:{key}"))
}

#[test]
fn the_friendship_survives_the_loss_of_its_relay() {
    let netns = Netns::new("rcfail");
    let bootstrapd = Bootstrapd::start(&netns);
    let relay_dir = tempfile::tempdir().unwrap();
    let (mut ours, ours_arg) = start_our_relay(&netns, relay_dir.path(), &bootstrapd);
    let dir = tempfile::tempdir().unwrap();
    // Both sides know both relays; our relay comes first for both.
    let relays = vec![ours_arg.clone(), bootstrapd.tcp_relay_arg()];
    let extra =
        ["--no-udp".to_owned(), "--relay".to_owned(), ours_arg, "--relay".to_owned(), bootstrapd.tcp_relay_arg()];
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, &extra));
    let mut peer = ToxPeer::spawn(&netns, &tcp_peer(&bootstrapd, relays));
    let (friend, how) = connect(&mut peer, &mut server, Duration::from_secs(90));
    assert_eq!(how, "tcp");
    // Wait until traffic crosses our relay (it routes the two), then kill
    // it in the middle of a numbered stream.
    ping_pong(&mut peer, friend, 200, 13, Duration::from_secs(30));
    let clients = ours.log().iter().filter(|l| l.contains("relay client connected")).count();
    assert!(clients >= 2, "both sides use our relay: {:?}", ours.log());
    let total = 1500u32;
    let kill_at = 1000u32;
    let stream = Deadline::after(Duration::from_secs(60));
    let mut next_expected = 0u32;
    let mut killed_at = None;
    let mut first_after_kill = None;
    for i in 0..total {
        if i == kill_at {
            ours.kill();
            killed_at = Some(Deadline::after(Duration::from_secs(3600)));
            eprintln!("killed the relay at packet {i}");
        }
        peer.send_lossless(friend, &ping_frame(&i.to_be_bytes()));
        // Keep at most 20 in flight.
        while i + 1 - next_expected > 20 {
            let got = peer.recv_packet(friend, false, stream.left());
            assert_eq!(got, pong_frame(&next_expected.to_be_bytes()), "PONG {next_expected}: lost or duplicated");
            next_expected += 1;
            if next_expected > kill_at && first_after_kill.is_none() {
                first_after_kill = killed_at.as_ref().map(Deadline::elapsed);
            }
        }
    }
    while next_expected < total {
        let got = peer.recv_packet(friend, false, stream.left());
        assert_eq!(got, pong_frame(&next_expected.to_be_bytes()), "PONG {next_expected}: lost or duplicated");
        next_expected += 1;
    }
    let after = killed_at.as_ref().map(Deadline::elapsed).unwrap_or_default();
    let broke = peer.history().iter().any(|l| *l == format!("friend_connection {friend} none"));
    let resumed = first_after_kill.unwrap_or_default();
    eprintln!("after the relay died: first PONG {resumed:?}, all {after:?} (friendship broke: {broke})");
    assert!(resumed < Duration::from_secs(10), "the stream resumed only {resumed:?} after the relay died");
    if broke {
        // It may drop and come back; then it must be back already.
        let back = peer
            .history()
            .iter()
            .rev()
            .take_while(|l| **l != format!("friend_connection {friend} none"))
            .any(|l| *l == format!("friend_connection {friend} tcp"));
        assert!(back, "the friendship came back");
    }
    assert!(ours.wait_exit(Duration::from_secs(1)).code().is_none(), "the relay was killed");
    server.terminate(Duration::from_secs(10));
}

#[test]
fn a_peer_uses_the_servers_own_relay() {
    let netns = Netns::new("rcown");
    let bootstrapd = Bootstrapd::start(&netns);
    let dir = tempfile::tempdir().unwrap();
    let extra = ["-u".to_owned(), "33700:33710".to_owned(), "-t".to_owned(), "33600".to_owned()];
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, &extra));
    let server_id = server.wait_tox_id();
    let line = server.wait_log("the relay line", |l| l.contains("TCP relay server running"), Duration::from_secs(20));
    let key: String = line.split("key=").nth(1).unwrap_or_default().chars().take(64).collect();
    assert_eq!(key.len(), 64, "{line}");
    // The peer knows no relay but the server's.
    let mut peer = ToxPeer::spawn(&netns, &tcp_peer(&bootstrapd, vec![format!("127.0.0.1:33600:{key}")]));
    let (friend, how) = connect_to(&mut peer, &mut server, &server_id, Duration::from_secs(90));
    assert_eq!(how, "tcp");
    assert!(server.logged("relay client connected"), "the peer came through the server's relay");
    ping_pong(&mut peer, friend, 500, 14, Duration::from_secs(60));
    server.terminate(Duration::from_secs(10));
}
