//! Proves the interop harness itself, with c-toxcore on both sides: a
//! namespace, a private tox-bootstrapd, two libtoxcore test peers that
//! befriend each other and exchange custom lossless and lossy packets, and
//! the peer's identity save and load. Later interop tests replace one peer
//! with our own node; when those fail, this test tells whether the harness
//! or the implementation is at fault.
//!
//! Needs root (network namespaces), libtoxcore-dev and toxcore-utils; run
//! through `scripts/test`, which installs them. It never skips.

mod support;

use std::time::Duration;

use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::netns::Netns;
use support::toxpeer::{PeerOptions, ToxPeer};

/// c-toxcore needs 8-10 s to connect two peers through a lone bootstrap node
/// (onion announce dominates); the rest is margin for loaded CI machines.
const TEST_BUDGET: Duration = Duration::from_secs(90);

#[test]
fn two_libtoxcore_peers_befriend_and_exchange_custom_packets() {
    let deadline = Deadline::after(TEST_BUDGET);
    let netns = Netns::new("harness");
    let bootstrapd = Bootstrapd::start(&netns);

    let mut a = ToxPeer::spawn(
        &netns,
        &PeerOptions {
            bootstrap: vec![bootstrapd.bootstrap_arg()],
            accept: Some("hello".to_owned()),
            echo: true,
            ..PeerOptions::new("A")
        },
    );
    let mut b =
        ToxPeer::spawn(&netns, &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("B") });
    assert_ne!(a.udp_port(), 0, "A has UDP on");
    assert_ne!(a.public_key(), b.public_key());

    let a_on_b = b.add_friend(a.address(), "hello");
    let request = a.wait_value("friend_request ", deadline.step(Duration::from_secs(60)));
    let (pk, message) = request.split_once(' ').expect("friend_request PK MSGHEX");
    assert_eq!(pk, b.public_key());
    assert_eq!(message, "68656c6c6f", "the message, hex-encoded");
    let added = a.wait_value("friend_added ", deadline.step(Duration::from_secs(5)));
    let (b_on_a, added_pk) = added.split_once(' ').expect("friend_added N PK");
    let b_on_a: u32 = b_on_a.parse().expect("friend number");
    assert_eq!(added_pk, b.public_key());

    let how_b = b.wait_connected(a_on_b, deadline.step(Duration::from_secs(40)));
    let how_a = a.wait_connected(b_on_a, deadline.step(Duration::from_secs(10)));
    eprintln!("connected after {:?}: A sees B over {how_a}, B sees A over {how_b}", deadline.elapsed());

    let lossless = [160, 0x00, 0x01, 0x02, 0xfe, 0xff, b'\n', b' '];
    let lossy: Vec<u8> = std::iter::once(200).chain((0..=255).cycle().take(1372)).collect();
    b.send_lossless(a_on_b, &lossless);
    b.send_lossy(a_on_b, &lossy);
    assert_eq!(a.recv_packet(b_on_a, false, deadline.step(Duration::from_secs(10))), lossless);
    assert_eq!(a.recv_packet(b_on_a, true, deadline.step(Duration::from_secs(10))), lossy);

    // A echoes both back.
    assert_eq!(b.recv_packet(a_on_b, false, deadline.step(Duration::from_secs(10))), lossless);
    assert_eq!(b.recv_packet(a_on_b, true, deadline.step(Duration::from_secs(10))), lossy);

    let counts = a.counts();
    let get = |k: &str| counts.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
    assert_eq!(get("lossless_rx"), Some(1), "{counts:?}");
    assert_eq!(get("lossy_rx"), Some(1), "{counts:?}");
    assert_eq!(get("lossless_tx"), Some(1), "{counts:?}");
    assert_eq!(get("lossy_tx"), Some(1), "{counts:?}");
    assert_eq!(get("tx_errors"), Some(0), "{counts:?}");

    // `flood` (the benchmarks' sender): packets generated in the peer, in order.
    b.flood(a_on_b, 300, 1373, false);
    assert_eq!(b.wait_value("flood_done ", deadline.step(Duration::from_secs(30))), "300 lossless");
    for i in 0..300u32 {
        let packet = a.recv_packet(b_on_a, false, deadline.step(Duration::from_secs(10)));
        assert_eq!(packet.len(), 1373, "flood packet {i}");
        assert_eq!(packet[..6], [160, (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8, (i + 5) as u8]);
        assert_eq!(packet[1372], (i + 1372) as u8, "flood packet {i}");
    }
    b.flood(a_on_b, 50, 100, true);
    assert_eq!(b.wait_value("flood_done ", deadline.step(Duration::from_secs(10))), "50 lossy");
    let first = a.recv_packet(b_on_a, true, deadline.step(Duration::from_secs(10)));
    assert_eq!((first.len(), first[0]), (100, 200), "a lossy flood packet");
    let counts = b.counts();
    let get = |k: &str| counts.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
    assert_eq!((get("lossless_tx"), get("lossy_tx")), (Some(301), Some(51)), "{counts:?}");

    for peer in [&mut a, &mut b] {
        assert!(!peer.history().iter().any(|l| l.starts_with("error ")), "{}: {:?}", peer.name(), peer.history());
        assert!(peer.quit().success(), "{} exits cleanly", peer.name());
    }
    eprintln!("harness test done in {:?}", deadline.elapsed());
}

#[test]
fn peer_saves_and_reloads_its_identity() {
    let netns = Netns::new("identity");
    let dir = tempfile::tempdir().expect("temporary directory");
    let save = dir.path().join("peer.tox");

    // First run: fresh identity with a chosen nospam, saved at start and on `save`.
    let mut first = ToxPeer::spawn(
        &netns,
        &PeerOptions { save_out: Some(save.clone()), nospam: Some(0x1234_abcd), ..PeerOptions::new("first") },
    );
    assert_eq!(&first.address()[64..72], "1234ABCD", "the nospam appears as given in the address");
    first.send("save");
    assert_eq!(first.wait_value("saved ", Duration::from_secs(5)), save.display().to_string());
    assert!(first.quit().success());

    // Second run: loads it back and reports the same address, keys included.
    let mut second = ToxPeer::spawn(
        &netns,
        &PeerOptions { save: Some(save.clone()), exit_after_start: true, ..PeerOptions::new("second") },
    );
    assert!(second.wait_exit(Duration::from_secs(5)).success());
    assert_eq!(second.address(), first.address());
    assert_eq!(second.public_key(), first.public_key());
    assert_ne!(second.dht_id(), first.dht_id(), "the DHT key is ephemeral, new on every start");

    // A missing save file means a fresh identity.
    let mut fresh = ToxPeer::spawn(
        &netns,
        &PeerOptions { save: Some(dir.path().join("absent.tox")), exit_after_start: true, ..PeerOptions::new("fresh") },
    );
    assert!(fresh.wait_exit(Duration::from_secs(5)).success());
    assert_ne!(fresh.public_key(), first.public_key());
}

#[test]
fn flood_checks_its_arguments() {
    let netns = Netns::new("flood");
    let mut peer = ToxPeer::spawn(&netns, &PeerOptions::new("flooder"));
    for (command, error) in [
        ("flood 10 100 lossless", "error flood usage"),
        ("flood 10 100 lossless 0 9", "error flood usage"),
        ("flood 0 100 lossless 0", "error flood bad_count"),
        ("flood 10 1374 lossy 0", "error flood bad_size"),
        ("flood 10 0 lossy 0", "error flood bad_size"),
        ("flood 10 100 both 0", "error flood bad_kind"),
        ("flood 10 100 lossy x", "error flood bad_friend_number"),
    ] {
        peer.send(command);
        assert_eq!(peer.wait_for(|l| l.starts_with("error "), Duration::from_secs(5)), error, "{command}");
    }
    // No friend 0: the flood stops at the first packet.
    peer.flood(0, 10, 100, false);
    let line = peer.wait_for(|l| l.starts_with("error ") || l.starts_with("flood_done "), Duration::from_secs(5));
    assert!(line.starts_with("error flood code=") && line.ends_with(" sent=0"), "{line}");
    assert!(peer.quit().success());
}
