//! Two of our nodes become friends and move data, in the simulator: the
//! friend request crosses the onion, the DHT finds the friend, net_crypto
//! connects, and lossless data arrives intact and in order, also under
//! loss, reordering and duplication.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::proto::node::friends::{FriendEvent, PING_INTERVAL, Path};
use tuntox::proto::{Node, NodeConfig, NodeEvent};
use tuntox::sim::{NetConfig, Sim};
use tuntox::wire::packed_node::PackedNode;
use tuntox::wire::tox_id::NoSpam;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 3, i as u8 + 1], 33445))
}

struct Net {
    sim: Sim,
    real: Vec<PublicKey>,
}

fn network(n: usize, net: NetConfig, seed: u64) -> Net {
    let mut sim = Sim::new(net, seed);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut real = Vec::new();
    let mut dht0 = None;
    for i in 0..n {
        let (r, d) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        real.push(*r.public());
        dht0.get_or_insert(*d.public());
        let config = NodeConfig {
            unix_time_at_start: 1_800_000_000,
            nospam: NoSpam([i as u8, 1, 2, 3]),
            ..NodeConfig::default()
        };
        let node_seed = sim.node_seed();
        sim.add_node(addr(i), Node::new(r, d, config, node_seed));
    }
    let boot = PackedNode::udp(addr(0), dht0.unwrap());
    for i in 1..n {
        let now = sim.now();
        sim.node_mut(i).bootstrap(now, boot);
        sim.flush(i);
    }
    Net { sim, real }
}

/// Runs until `done` holds for the friend events seen, or fails after `limit`.
fn run_until(
    net: &mut Net,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&[(usize, FriendEvent)]) -> bool,
) -> Duration {
    let start = net.sim.now();
    let mut seen = Vec::new();
    loop {
        net.sim.run_for(Duration::from_millis(200));
        for (i, e) in net.sim.take_events() {
            if let NodeEvent::Friend(f) = e {
                seen.push((i, f));
            }
        }
        if done(&seen) {
            return net.sim.now() - start;
        }
        assert!(net.sim.now() - start < limit, "{what}: not within {limit:?}; friend events {seen:?}");
    }
}

/// A sends B a request; B accepts; both connect. Returns the time taken.
fn befriend(net: &mut Net, a: usize, b: usize) -> Duration {
    let b_id = net.sim.node(b).tox_id();
    let now = net.sim.now();
    net.sim.node_mut(a).add_friend_with_request(now, &b_id, Bytes::from_static(b"s3cret\0")).unwrap();
    net.sim.flush(a);
    let a_real = net.real[a];
    let b_real = net.real[b];
    let start = net.sim.now();
    let request = run_until(net, Duration::from_secs(60), "friend request", |events| {
        events.iter().any(|(i, e)| *i == b && matches!(e, FriendEvent::Request { real_pk, message } if *real_pk == a_real && &message[..] == b"s3cret\0"))
    });
    net.sim.node_mut(b).add_friend(a_real);
    net.sim.flush(b);
    let connect = run_until(net, Duration::from_secs(60), "both connected", |events| {
        let up = |who: usize, other: PublicKey| {
            events.iter().any(|(i, e)| {
                *i == who && matches!(e, FriendEvent::Connected { real_pk, path: Path::Udp } if *real_pk == other)
            })
        };
        up(a, b_real) && up(b, a_real)
    });
    eprintln!("request delivered after {request:?}, connected {connect:?} after the accept");
    net.sim.now() - start
}

/// Sends `count` lossless packets of random sizes from `a` to `b` and
/// checks they arrive in order and intact. Returns the virtual time taken.
fn transfer(net: &mut Net, a: usize, b: usize, count: usize, max_len: usize, seed: u64) -> (Duration, usize) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let packets: Vec<Bytes> = (0..count)
        .map(|i| {
            let len = 5 + (rng.next_u64() % (max_len as u64 - 4)) as usize;
            let mut p = vec![0u8; len];
            rng.fill_bytes(&mut p);
            p[0] = 160 + (i % 32) as u8;
            p[1..5].copy_from_slice(&(i as u32).to_be_bytes());
            Bytes::from(p)
        })
        .collect();
    let bytes: usize = packets.iter().map(Bytes::len).sum();
    let b_real = net.real[b];
    let a_real = net.real[a];
    let start = net.sim.now();
    let mut next = 0;
    let mut received = Vec::with_capacity(count);
    let mut others = Vec::new();
    let mut last_len = 0;
    let mut last_change = net.sim.now();
    while received.len() < count {
        while next < count {
            let now = net.sim.now();
            match net.sim.node_mut(a).send_lossless(now, &b_real, packets[next].clone()) {
                Ok(_) => next += 1,
                Err(_) => break,
            }
        }
        net.sim.flush(a);
        net.sim.run_for(Duration::from_millis(2));
        for (i, e) in net.sim.take_events() {
            match e {
                NodeEvent::Friend(FriendEvent::Lossless { real_pk, data }) => {
                    assert_eq!((i, real_pk), (b, a_real));
                    received.push(data);
                }
                NodeEvent::Friend(other) => others.push((net.sim.now() - start, i, other)),
                _ => {}
            }
        }
        if received.len() != last_len {
            last_len = received.len();
            last_change = net.sim.now();
        }
        assert!(
            net.sim.now() - last_change < Duration::from_secs(5),
            "no progress for 5 s at {}: sender {:?} receiver {:?}",
            received.len(),
            net.sim.node(a).net_crypto().debug_sessions(),
            net.sim.node(b).net_crypto().debug_sessions()
        );
        assert!(
            net.sim.now() - start < Duration::from_secs(600),
            "transfer stalled at {} of {count}: events {others:?} sender {:?} receiver {:?}",
            received.len(),
            net.sim.node(a).net_crypto().debug_sessions(),
            net.sim.node(b).net_crypto().debug_sessions()
        );
    }
    assert_eq!(received.len(), count);
    for (i, (got, sent)) in received.iter().zip(&packets).enumerate() {
        assert_eq!(got, sent, "packet {i} differs");
    }
    (net.sim.now() - start, bytes)
}

#[test]
fn two_nodes_befriend_and_exchange_data() {
    let mut net = network(30, NetConfig::default(), 1);
    let took = befriend(&mut net, 5, 20);
    eprintln!("friends connected {took:?} after the request was made");
    let (t, bytes) = transfer(&mut net, 5, 20, 10_000, 1373, 7);
    eprintln!("10,000 packets ({bytes} bytes) in {t:?} virtual");
    let (t, _) = transfer(&mut net, 20, 5, 10_000, 1373, 8);
    eprintln!("and back in {t:?}");
    // Lossy packets go both ways too.
    let now = net.sim.now();
    let (a, b) = (net.real[5], net.real[20]);
    net.sim.node_mut(5).send_lossy(now, &b, Bytes::from_static(&[200, 1, 2, 3])).unwrap();
    net.sim.node_mut(20).send_lossy(now, &a, Bytes::from_static(&[254, 4])).unwrap();
    net.sim.flush(5);
    net.sim.flush(20);
    net.sim.run_for(Duration::from_millis(100));
    let lossy: Vec<(usize, Bytes)> = net
        .sim
        .take_events()
        .into_iter()
        .filter_map(|(i, e)| match e {
            NodeEvent::Friend(FriendEvent::Lossy { data, .. }) => Some((i, data)),
            _ => None,
        })
        .collect();
    assert!(
        lossy.contains(&(20, Bytes::from_static(&[200, 1, 2, 3])))
            && lossy.contains(&(5, Bytes::from_static(&[254, 4])))
    );
}

#[test]
fn twenty_megabytes_cross_a_bad_network_intact() {
    let bad = NetConfig { loss: 0.05, duplicate: 0.02, delay: Duration::from_millis(10)..Duration::from_millis(40) };
    let mut net = network(20, bad, 2);
    befriend(&mut net, 3, 15);
    let (t, bytes) = transfer(&mut net, 3, 15, 29_000, 1373, 9);
    let goodput = bytes as f64 / t.as_secs_f64();
    eprintln!("{bytes} bytes in {t:?} virtual: {:.1} MB/s goodput", goodput / 1e6);
    assert!(bytes > 20_000_000);
    // 5% random loss with 10-40 ms of jitter (heavy reordering): a
    // loss-driven window (TCP Reno) would reach about 0.15 MB/s here.
    assert!(goodput > 5.0e6, "goodput {goodput:.0} B/s");
}

/// c-toxcore's friend layer drops a friend whose ALIVE packets stop for
/// 32 s, whatever else arrives from it: a node that keeps sending data must
/// still send ALIVE every 8 s.
#[test]
fn alive_keeps_going_while_data_flows() {
    let mut net = network(12, NetConfig::default(), 3);
    befriend(&mut net, 2, 9);
    let (a_real, b_real) = (net.real[2], net.real[9]);
    let start = net.sim.now();
    let mut sent = 0u32;
    let mut checked = 0;
    while net.sim.now() - start < Duration::from_secs(45) {
        // A custom packet every 100 ms, so something lossless always went
        // out within the ALIVE interval.
        let now = net.sim.now();
        let payload = Bytes::from([&[160u8][..], &sent.to_be_bytes()].concat());
        net.sim.node_mut(2).send_lossless(now, &b_real, payload).unwrap();
        sent += 1;
        net.sim.flush(2);
        net.sim.run_for(Duration::from_millis(100));
        let _ = net.sim.take_events();
        if net.sim.now() - start >= Duration::from_secs(10) {
            let now = net.sim.now();
            let alive = net.sim.node(9).friend(&a_real).and_then(|f| f.last_alive);
            let age = alive.map(|t| now - t);
            assert!(
                age.is_some_and(|age| age <= PING_INTERVAL + Duration::from_secs(1)),
                "{:?} into the stream the last ALIVE is {age:?} old",
                now - start
            );
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked}");
    assert!(net.sim.node(9).friend_path(&a_real, net.sim.now()).is_some(), "still online");
}

/// A node that stops says goodbye: its friend sees it offline at once,
/// not after the 32 s timeout.
#[test]
fn a_goodbye_is_seen_at_once() {
    let mut net = network(12, NetConfig::default(), 4);
    befriend(&mut net, 3, 8);
    let gone = net.real[3];
    let now = net.sim.now();
    assert_eq!(net.sim.node_mut(3).goodbye(now), 1, "one friend online to tell");
    net.sim.flush(3);
    // Nothing more from node 3 after its goodbye.
    net.sim.set_online(3, false);
    let took = run_until(&mut net, Duration::from_secs(1), "the friend sees the goodbye", |events| {
        events.iter().any(|(i, e)| *i == 8 && matches!(e, FriendEvent::Lost { real_pk } if *real_pk == gone))
    });
    eprintln!("seen offline {took:?} after the goodbye");
    assert!(!net.sim.node(8).net_crypto().is_established(&gone));
}

/// A friend we use (tunnels open, a VPN session) that vanishes without a
/// word is noticed within 10 s; one we do not use, after Tox's 32 s.
#[test]
fn a_vanished_friend_is_noticed_within_10_s_while_in_use() {
    for in_use in [true, false] {
        let mut net = network(12, NetConfig::default(), 5);
        befriend(&mut net, 2, 7);
        let gone = net.real[2];
        net.sim.node_mut(7).set_friend_in_use(&gone, in_use);
        net.sim.set_online(2, false);
        let took = run_until(&mut net, Duration::from_secs(40), "the friend is noticed gone", |events| {
            events.iter().any(|(i, e)| *i == 7 && matches!(e, FriendEvent::Lost { real_pk } if *real_pk == gone))
        });
        eprintln!("in use: {in_use}; noticed after {took:?}");
        if in_use {
            assert!(took <= Duration::from_secs(10), "{took:?}");
        } else {
            assert!(took >= Duration::from_secs(30), "{took:?}");
        }
    }
}

/// Two idle friends stay online for 20 minutes: nothing times out while
/// nothing but keep-alives flows, whether or not they are in use.
#[test]
fn idle_friends_stay_online_for_20_minutes() {
    let mut net = network(12, NetConfig::default(), 6);
    befriend(&mut net, 4, 9);
    let (a, b) = (net.real[4], net.real[9]);
    net.sim.node_mut(9).set_friend_in_use(&a, true);
    let start = net.sim.now();
    while net.sim.now() - start < Duration::from_secs(20 * 60) {
        net.sim.run_for(Duration::from_secs(1));
        for (i, e) in net.sim.take_events() {
            if let NodeEvent::Friend(FriendEvent::Lost { real_pk }) = e {
                panic!("node {i} lost {real_pk} after {:?} idle", net.sim.now() - start);
            }
        }
    }
    let now = net.sim.now();
    assert!(net.sim.node(4).friend_path(&b, now).is_some() && net.sim.node(9).friend_path(&a, now).is_some());
}
