//! A running `tuntox` server and a libtoxcore 0.2.18 peer that knows only
//! its Tox ID and the namespaced tox-bootstrapd: the friend request with the
//! shared secret, the connection over UDP, ten thousand tuntox PING frames
//! of random sizes answered in order by intact PONGs, a wrong secret
//! refused, and a restart with the same identity reconnecting without a new
//! request.
//!
//! Needs root (network namespaces), libtoxcore-dev and toxcore-utils; run
//! through `scripts/test`, which installs them. It never skips.

mod support;

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::netns::Netns;
use support::toxpeer::{PeerOptions, ToxPeer};
use support::tuntox::{Tuntox, config_dir_args, local_network_args, ping_frame, pong_frame, request_message};

const SECRET: &str = "correct horse battery staple";
/// A tuntox frame carries at most 1373 - 8 bytes of payload.
const MAX_PING_PAYLOAD: usize = 1365;

fn server_args(dir: &std::path::Path, bootstrapd: &Bootstrapd, ports: &str) -> Vec<String> {
    let mut args = config_dir_args(dir);
    args.extend(["-s".into(), SECRET.into(), "-u".into(), ports.into(), "-d".into()]);
    args.extend(local_network_args(&bootstrapd.bootstrap_arg()));
    args
}

#[test]
fn libtoxcore_peer_befriends_the_server_and_exchanges_ten_thousand_packets() {
    let netns = Netns::new("srvpeer");
    let bootstrapd = Bootstrapd::start(&netns);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, "33700:33710"));
    let server_id = server.wait_tox_id();
    assert_eq!(server_id.len(), 76, "{server_id}");

    let mut peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("peer") },
    );
    let friend = peer.add_friend_bytes(&server_id, &request_message(SECRET));
    let start = Deadline::after(Duration::from_secs(90));
    let how = peer.wait_connected(friend, start.left());
    assert_eq!(how, "udp", "the peer reaches the server directly");
    eprintln!("libtoxcore peer connected to the server after {:?}", start.elapsed());
    server.wait_log("the accept", |l| l.contains("accepted a friend request"), Duration::from_secs(5));
    let peer_key = peer.public_key().to_owned();
    assert!(server.logged(&peer_key), "the server names the friend it accepted");

    // Ten thousand PINGs of random sizes, answered by PONGs in order.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let payloads: Vec<Vec<u8>> = (0..10_000)
        .map(|_| {
            let len = (rng.next_u32() as usize) % (MAX_PING_PAYLOAD + 1);
            let mut payload = vec![0u8; len];
            rng.fill_bytes(&mut payload);
            payload
        })
        .collect();
    let transfer = Deadline::after(Duration::from_secs(120));
    let mut received = 0usize;
    for chunk in payloads.chunks(500) {
        for payload in chunk {
            peer.send_lossless(friend, &ping_frame(payload));
        }
        for payload in chunk {
            let got = peer.recv_packet(friend, false, transfer.left());
            assert!(got == pong_frame(payload), "PONG {received} differs from its PING ({} bytes)", got.len());
            received += 1;
        }
    }
    assert_eq!(received, payloads.len());
    let bytes: usize = payloads.iter().map(|p| p.len() + 8).sum();
    eprintln!("10,000 PING/PONG ({bytes} bytes each way) in {:?}", transfer.elapsed());

    // Our side stops (no goodbye); the peer sees it offline within 32 s.
    server.kill();
    let gone = Deadline::after(Duration::from_secs(40));
    peer.wait_for(|l| l == format!("friend_connection {friend} none"), gone.left());
    eprintln!("the peer saw the server offline after {:?}", gone.elapsed());
    assert!(gone.elapsed() <= Duration::from_secs(33), "offline detected after {:?}", gone.elapsed());

    // Restart with the same -C: it reconnects with no new friend request.
    let mut server = Tuntox::spawn(&netns, "server again", &server_args(dir.path(), &bootstrapd, "33700:33710"));
    assert_eq!(server.wait_tox_id(), server_id, "same identity");
    let back = Deadline::after(Duration::from_secs(90));
    let how = peer.wait_connected(friend, back.left());
    eprintln!("reconnected ({how}) {:?} after the restart", back.elapsed());
    server.wait_log("the friend online", |l| l.contains("friend online"), Duration::from_secs(10));
    peer.send_lossless(friend, &ping_frame(b"after the restart"));
    assert_eq!(peer.recv_packet(friend, false, Duration::from_secs(10)), pong_frame(b"after the restart"));
    assert!(!server.logged("friend request"), "no new friend request after the restart: {:?}", server.log());
    server.terminate(Duration::from_secs(10));
}

#[test]
fn a_wrong_secret_is_refused_and_logged() {
    let netns = Netns::new("srvwrong");
    let bootstrapd = Bootstrapd::start(&netns);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, "33700:33710"));
    let server_id = server.wait_tox_id();

    let mut peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("peer") },
    );
    let friend = peer.add_friend_bytes(&server_id, &request_message("not the secret"));
    let line = server.wait_log("the refusal", |l| l.contains("refused a friend request"), Duration::from_secs(90));
    assert!(line.contains("wrong shared secret"), "{line}");
    assert!(line.contains(peer.public_key()), "the refusal names the requester: {line}");
    // The secret without its NUL (as a careless client would send it) is
    // refused too.
    let mut other = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("other") },
    );
    other.add_friend_bytes(&server_id, SECRET.as_bytes());
    let line = server.wait_log(
        "the second refusal",
        |l| l.contains("refused a friend request") && l.contains(other.public_key()),
        Duration::from_secs(90),
    );
    assert!(line.contains("wrong shared secret"), "{line}");

    // Neither ever connects: libtoxcore resends the request meanwhile.
    std::thread::sleep(Duration::from_secs(5));
    let _ = peer.counts();
    let connected =
        peer.history().iter().any(|l| l.starts_with(&format!("friend_connection {friend} ")) && !l.ends_with("none"));
    assert!(!connected, "the refused peer connected: {:?}", peer.history());
    assert!(!server.logged("friend online"), "{:?}", server.log());
    assert!(!server.logged("accepted a friend request"), "{:?}", server.log());
    server.terminate(Duration::from_secs(10));
}

#[test]
fn a_changed_secret_revokes_the_friends_the_old_one_accepted() {
    let netns = Netns::new("srvrevoke");
    let bootstrapd = Bootstrapd::start(&netns);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, "33700:33710"));
    let server_id = server.wait_tox_id();
    let mut peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("peer") },
    );
    let friend = peer.add_friend_bytes(&server_id, &request_message(SECRET));
    peer.wait_connected(friend, Duration::from_secs(90));
    server.wait_log("the accept", |l| l.contains("accepted a friend request"), Duration::from_secs(5));
    server.terminate(Duration::from_secs(10));
    peer.wait_for(|l| l == format!("friend_connection {friend} none"), Duration::from_secs(40));

    // Started again with another secret: the friend is forgotten, and the
    // peer (which thinks itself a friend and sends no new request) never
    // connects.
    let mut args = server_args(dir.path(), &bootstrapd, "33700:33710");
    let at = args.iter().position(|a| a == SECRET).unwrap();
    args[at] = "a new secret".into();
    let mut server = Tuntox::spawn(&netns, "server, new secret", &args);
    assert_eq!(server.wait_tox_id(), server_id, "same identity");
    server.wait_log(
        "the revocation",
        |l| l.contains("accepted with another shared secret") && l.contains(peer.public_key()),
        Duration::from_secs(5),
    );
    // Unfixed, the friend was loaded (`friends=1`) and the peer was back
    // within a minute.
    let listening = server.wait_log("the start", |l| l.contains("listening"), Duration::from_secs(5));
    assert!(listening.contains("friends=0"), "{listening}");
    let connected = peer.try_wait_for(
        |l| l.starts_with(&format!("friend_connection {friend} ")) && !l.ends_with(" none"),
        Duration::from_secs(10),
    );
    assert_eq!(connected, None, "a friend of the old secret connected: {:?}", server.log());
    assert!(!server.logged("friend online"), "{:?}", server.log());
    server.terminate(Duration::from_secs(10));
}

/// A tuntox frame: magic, type, connection id, length, payload.
fn frame(kind: u16, connid: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xa2, 0x6b];
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.extend_from_slice(&connid.to_be_bytes());
    frame.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The libtoxcore peer speaks C tuntox's frames byte for byte (no
/// extension block): PING gets PONG, REQUESTTUNNEL gets ACKTUNNEL with the
/// forward id, TCP frames reach an echo server and come back, TCP_FIN
/// closes.
#[test]
fn libtoxcore_peer_opens_a_tunnel_with_raw_frames() {
    let netns = Netns::new("srvraw");
    let bootstrapd = Bootstrapd::start(&netns);
    let echo = netns.run_in(|| std::net::TcpListener::bind("127.0.0.1:7500").unwrap());
    let (eof_tx, eof) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in echo.incoming() {
            let Ok(mut stream) = stream else { break };
            let eof_tx = eof_tx.clone();
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let copied = std::io::copy(&mut reader, &mut stream);
                let _ = eof_tx.send(copied.ok());
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, "33700:33710"));
    let server_id = server.wait_tox_id();
    let mut peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("peer") },
    );
    let friend = peer.add_friend_bytes(&server_id, &request_message(SECRET));
    peer.wait_connected(friend, Duration::from_secs(90));

    peer.send_lossless(friend, &frame(0x0108, 0, b"Hello"));
    assert_eq!(peer.recv_packet(friend, false, Duration::from_secs(10)), frame(0x0100, 0, b"Hello"));

    // REQUESTTUNNEL to 127.0.0.1:7500, forward id 0x01020304, as C tuntox sends it.
    let mut request = vec![1, 2, 3, 4];
    request.extend_from_slice(b"127.0.0.1");
    peer.send_lossless(friend, &frame(0x0602, 7500, &request));
    let ack = peer.recv_packet(friend, false, Duration::from_secs(10));
    assert_eq!(&ack[..4], &[0xa2, 0x6b, 0x06, 0x10], "ACKTUNNEL: {ack:02x?}");
    assert_eq!(&ack[6..12], &[0, 4, 1, 2, 3, 4], "exactly the forward id, no extension: {ack:02x?}");
    let tunnel = u16::from_be_bytes([ack[4], ack[5]]);

    peer.send_lossless(friend, &frame(0x0600, tunnel, b"through the tunnel"));
    let mut echoed = Vec::new();
    while echoed.len() < b"through the tunnel".len() {
        let data = peer.recv_packet(friend, false, Duration::from_secs(10));
        assert_eq!(&data[..6], &[0xa2, 0x6b, 0x06, 0x00, ack[4], ack[5]], "TCP frame: {data:02x?}");
        echoed.extend_from_slice(&data[8..]);
    }
    assert_eq!(echoed, b"through the tunnel");

    // TCP_FIN from a C client closes the tunnel: the destination sees EOF
    // (C tuntox's bug B5 left it half-open).
    peer.send_lossless(friend, &frame(0x0601, tunnel, b""));
    let copied = eof.recv_timeout(Duration::from_secs(10)).expect("the echo server saw EOF");
    assert_eq!(copied, Some(b"through the tunnel".len() as u64));
    server.terminate(Duration::from_secs(10));
}

/// A C-protocol client (no flow-control extension) pushes more into a
/// tunnel than its destination reads: the server holds that friend's
/// packets (its Tox session is paused, so the sender waits) while another
/// friend keeps getting answers at once; when the destination reads again
/// every byte arrives, in order.
#[test]
fn a_slow_destination_holds_up_only_its_own_friend() {
    const FRAMES: usize = 40_000;
    const CHUNK: usize = 1365;
    let netns = Netns::new("srvslow");
    let bootstrapd = Bootstrapd::start(&netns);
    let sink = netns.run_in(|| std::net::TcpListener::bind("127.0.0.1:7600").unwrap());
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let (verdict_tx, verdict) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = sink.accept().unwrap();
        // Hold the connection without reading until told to.
        let _ = release.recv();
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut got);
        let _ = verdict_tx.send(got);
    });
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tuntox::spawn(&netns, "server", &server_args(dir.path(), &bootstrapd, "33700:33710"));
    let server_id = server.wait_tox_id();
    let options = |name| PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new(name) };
    let mut pusher = ToxPeer::spawn(&netns, &options("pusher"));
    let mut pinger = ToxPeer::spawn(&netns, &options("pinger"));
    let f1 = pusher.add_friend_bytes(&server_id, &request_message(SECRET));
    let f2 = pinger.add_friend_bytes(&server_id, &request_message(SECRET));
    pusher.wait_connected(f1, Duration::from_secs(90));
    pinger.wait_connected(f2, Duration::from_secs(90));

    let mut request = vec![9, 9, 9, 9];
    request.extend_from_slice(b"127.0.0.1");
    pusher.send_lossless(f1, &frame(0x0602, 7600, &request));
    let ack = pusher.recv_packet(f1, false, Duration::from_secs(10));
    assert_eq!(&ack[..4], &[0xa2, 0x6b, 0x06, 0x10], "ACKTUNNEL: {ack:02x?}");
    let tunnel = u16::from_be_bytes([ack[4], ack[5]]);
    let chunk = |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| ((i * 7 + j) % 251) as u8).collect() };
    // Push, at the pace the peer's libtoxcore takes it, until the server
    // pauses this friend (the destination's socket buffers are full).
    let queued = |peer: &mut ToxPeer| peer.counts().iter().find(|(k, _)| k == "queued").map_or(0, |(_, v)| *v);
    let push = Deadline::after(Duration::from_secs(120));
    let mut sent = 0;
    while sent < FRAMES && !server.logged("pausing its packets") {
        for _ in 0..200 {
            pusher.send_lossless(f1, &frame(0x0600, tunnel, &chunk(sent)));
            sent += 1;
        }
        while queued(&mut pusher) > 400 && !server.logged("pausing its packets") {
            assert!(!push.passed(), "the server never paused the pusher ({sent} frames sent)");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(server.logged("pausing its packets"), "no pause after {sent} frames");
    eprintln!("the server paused the pusher after {sent} frames");

    // The other friend is served at once meanwhile.
    for i in 0..20u32 {
        let payload = i.to_be_bytes();
        pinger.send_lossless(f2, &frame(0x0108, 0, &payload));
        assert_eq!(pinger.recv_packet(f2, false, Duration::from_secs(3)), frame(0x0100, 0, &payload), "PONG {i}");
    }

    release_tx.send(()).unwrap();
    // Closing the tunnel once everything is sent ends the sink's read.
    let counts = pusher.counts();
    let dropped = counts.iter().find(|(k, _)| k == "queue_dropped").map(|(_, v)| *v).unwrap();
    assert_eq!(dropped, 0, "the peer's own queue overflowed: {counts:?}");
    pusher.send_lossless(f1, &frame(0x0601, tunnel, b""));
    let got = verdict.recv_timeout(Duration::from_secs(120)).expect("the sink finished reading");
    assert_eq!(got.len(), sent * CHUNK, "every byte arrived");
    for i in 0..sent {
        assert!(got[i * CHUNK..(i + 1) * CHUNK] == chunk(i)[..], "frame {i} differs");
    }
    server.terminate(Duration::from_secs(10));
}
