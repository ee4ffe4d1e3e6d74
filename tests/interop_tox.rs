//! The Tox handle (`tuntox::driver::tox`) on a namespaced network with
//! tox-bootstrapd: custom lossless and lossy packets both ways with a
//! libtoxcore 0.2.18 peer, and the time two of our nodes take from start to
//! friends connected.
//!
//! Needs root (network namespaces), libtoxcore-dev and toxcore-utils; run
//! through `scripts/test`, which installs them. It never skips.

mod support;

use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::netns::Netns;
use support::tox::{befriend, config, wait_event};
use support::toxpeer::{PeerOptions, ToxPeer};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tuntox::driver::tox::{Tox, ToxEvent};
use tuntox::proto::node::friends::Path;
use tuntox::wire::tox_id::parse_public_key;

/// A libtoxcore peer befriends our node; custom lossless packets of random
/// sizes and ids cross both ways in order, and lossy packets arrive both ways.
#[test]
fn custom_packets_both_ways_with_libtoxcore() {
    let netns = Netns::new("toxhandle");
    let bootstrapd = Bootstrapd::start(&netns);
    let mut peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("peer") },
    );
    let peer_pk = parse_public_key(peer.public_key()).unwrap();
    let config = config(&bootstrapd, 33800..=33810);
    netns.run_in(move || {
        let rt = Runtime::new().unwrap();
        let cancel = CancellationToken::new();
        let mut tox = rt.block_on(Tox::start(config, cancel.clone())).unwrap();
        let our_id = tox.tox_id().to_string();
        let friend = peer.add_friend(&our_id, "custom packets please");
        let (key, message) =
            rt.block_on(wait_event(&mut tox, "the friend request", Duration::from_secs(60), |e| match e {
                ToxEvent::FriendRequest { public_key, message } => Some((public_key, message)),
                _ => None,
            }));
        assert_eq!((key, &message[..]), (peer_pk, &b"custom packets please"[..]));
        rt.block_on(tox.add_friend(peer_pk)).unwrap();
        let path = rt.block_on(wait_event(&mut tox, "the friend online", Duration::from_secs(60), |e| match e {
            ToxEvent::FriendConnected { public_key, path } if public_key == peer_pk => Some(path),
            _ => None,
        }));
        assert_eq!(path, Path::Udp);
        assert_eq!(peer.wait_connected(friend, Duration::from_secs(30)), "udp");

        // Lossless, random ids 160-191 and sizes 1-1373, 2,000 each way.
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let packet = |rng: &mut ChaCha20Rng| {
            let len = 1 + rng.next_u32() as usize % 1373;
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            data[0] = 160 + (rng.next_u32() % 32) as u8;
            data
        };
        let ours: Vec<Vec<u8>> = (0..2000).map(|_| packet(&mut rng)).collect();
        let theirs: Vec<Vec<u8>> = (0..2000).map(|_| packet(&mut rng)).collect();
        // The peer queues at most 1024 refused packets: send in chunks.
        let sender = tox.sender();
        let to_send = ours.clone();
        let send = rt.spawn(async move {
            for data in to_send {
                sender.send_lossless(peer_pk, Bytes::from(data)).await.unwrap();
            }
        });
        for (n, chunk) in theirs.chunks(500).enumerate() {
            for data in chunk {
                peer.send_lossless(friend, data);
            }
            rt.block_on(async {
                for (j, expected) in chunk.iter().enumerate() {
                    let i = n * 500 + j;
                    let got = wait_event(&mut tox, "a lossless packet", Duration::from_secs(60), |e| match e {
                        ToxEvent::Lossless { public_key, data } if public_key == peer_pk => Some(data),
                        _ => None,
                    })
                    .await;
                    if got[..] != expected[..] {
                        let found = theirs.iter().position(|t| t[..] == got[..]);
                        panic!(
                            "lossless packet {i} from the peer differs: got {} bytes (id {}), expected {} (id {}); \
                             the packet got is number {found:?}",
                            got.len(),
                            got[0],
                            expected.len(),
                            expected[0]
                        );
                    }
                }
            });
        }
        rt.block_on(send).unwrap();
        for (i, expected) in ours.iter().enumerate() {
            let got = peer.recv_packet(friend, false, Duration::from_secs(60));
            assert!(&got == expected, "lossless packet {i} to the peer differs");
        }

        // Lossy both ways: loopback loses little, so most arrive.
        for i in 0..200u32 {
            let mut data = vec![200 + (i % 55) as u8];
            data.extend_from_slice(&i.to_be_bytes());
            assert!(tox.try_send_lossy(peer_pk, Bytes::from(data.clone())), "lossy {i} queued");
            peer.send_lossy(friend, &data);
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut from_peer = 0;
        rt.block_on(async {
            let window = Deadline::after(Duration::from_secs(5));
            while !window.passed() && from_peer < 200 {
                match tokio::time::timeout(window.left(), tox.next_event()).await {
                    Ok(Some(ToxEvent::Lossy { public_key, data })) if public_key == peer_pk => {
                        assert!((200..=254).contains(&data[0]) && data.len() == 5, "{data:?}");
                        from_peer += 1;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        });
        let counts = peer.counts();
        let count = |key: &str| counts.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap();
        let lossy_rx = count("lossy_rx");
        assert_eq!((count("tx_errors"), count("queue_dropped")), (0, 0), "the peer sent everything: {counts:?}");
        eprintln!("lossy: {from_peer}/200 from the peer, {lossy_rx}/200 to it");
        assert!(from_peer >= 150, "only {from_peer} of 200 lossy packets from the peer arrived");
        assert!(lossy_rx >= 150, "only {lossy_rx} of 200 lossy packets reached the peer");
        cancel.cancel();
        rt.block_on(tox.shutdown());
    });
}

/// Two of our nodes, each knowing only the other's Tox ID and the
/// bootstrap node: the time from start to friends connected.
#[test]
fn our_nodes_connect_quickly() {
    let netns = Netns::new("toxpair");
    let bootstrapd = Bootstrapd::start(&netns);
    let (config_a, config_b) = (config(&bootstrapd, 33820..=33830), config(&bootstrapd, 33840..=33850));
    let elapsed = netns.run_in(move || {
        let rt = Runtime::new().unwrap();
        let cancel = CancellationToken::new();
        let start = Deadline::after(Duration::from_secs(60));
        let (mut a, mut b) = rt.block_on(async {
            (Tox::start(config_a, cancel.clone()).await.unwrap(), Tox::start(config_b, cancel.clone()).await.unwrap())
        });
        let (on_a, on_b) = rt.block_on(befriend(&mut a, &mut b, b"hi", &start));
        assert_eq!((on_a, on_b), (Path::Udp, Path::Udp));
        let elapsed = start.elapsed();
        cancel.cancel();
        rt.block_on(async {
            a.shutdown().await;
            b.shutdown().await;
        });
        elapsed
    });
    eprintln!("our nodes: start to friends connected in {elapsed:?} (c-toxcore takes 9-10 s here)");
}
