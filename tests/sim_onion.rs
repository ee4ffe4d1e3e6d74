//! The onion in the simulator: nodes announce themselves, a friend request
//! finds its way to a node known only by its public key, and both friends
//! learn each other's DHT keys, all without either learning the other's
//! address from the onion.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::proto::onion::client::OnionEvent;
use tuntox::proto::{Node, NodeConfig, NodeEvent};
use tuntox::sim::{NetConfig, Sim};
use tuntox::wire::friend_request::FriendRequest;
use tuntox::wire::packed_node::PackedNode;
use tuntox::wire::tox_id::NoSpam;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 2, i as u8 + 1], 33445))
}

struct Net {
    sim: Sim,
    real: Vec<PublicKey>,
    dht: Vec<PublicKey>,
}

/// `n` full nodes (onion clients on); all bootstrap from node 0.
fn network(n: usize, net: NetConfig, seed: u64) -> Net {
    let mut sim = Sim::new(net, seed);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (mut real, mut dht) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (r, d) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        real.push(*r.public());
        dht.push(*d.public());
        let node_seed = sim.node_seed();
        let config = NodeConfig { unix_time_at_start: 1_800_000_000, ..NodeConfig::default() };
        sim.add_node(addr(i), Node::new(r, d, config, node_seed));
    }
    let boot = PackedNode::udp(addr(0), dht[0]);
    for i in 1..n {
        let now = sim.now();
        sim.node_mut(i).bootstrap(now, boot);
        sim.flush(i);
    }
    Net { sim, real, dht }
}

/// Runs in 1 s steps until `done` holds for the events seen so far, or
/// fails after `limit`.
fn run_until(
    net: &mut Net,
    limit: Duration,
    what: &str,
    mut step: impl FnMut(&mut Sim),
    mut done: impl FnMut(&[(usize, NodeEvent)]) -> bool,
) -> Duration {
    let start = net.sim.now();
    let mut seen = Vec::new();
    loop {
        step(&mut net.sim);
        net.sim.run_for(Duration::from_secs(1));
        seen.extend(net.sim.take_events());
        if done(&seen) {
            return net.sim.now() - start;
        }
        assert!(net.sim.now() - start < limit, "{what}: not within {limit:?}");
    }
}

fn friend_request_then_dht_keys(net: &mut Net, a: usize, b: usize) -> (Duration, Duration) {
    let (a_real, b_real) = (net.real[a], net.real[b]);
    let nospam = NoSpam([1, 2, 3, 4]);
    let request = FriendRequest::new(nospam, Bytes::from_static(b"s3cret\0")).unwrap();
    net.sim.node_mut(a).onion_mut().add_friend(b_real);

    // A resends its request every second until B's nodes store B.
    let request_sent = run_until(
        net,
        Duration::from_secs(60),
        "friend request delivered",
        |sim| {
            let now = sim.now();
            sim.node_mut(a).onion_mut().send_friend_request(now, &b_real, &request);
            sim.flush(a);
        },
        |events| {
            events.iter().any(|(i, e)| {
                *i == b
                    && matches!(e, NodeEvent::Onion(OnionEvent::FriendRequest { real_pk, nospam: n, message })
                        if *real_pk == a_real && *n == nospam && &message[..] == b"s3cret\0")
            })
        },
    );

    // B accepts: now both announce their DHT keys to each other.
    net.sim.node_mut(b).onion_mut().add_friend(a_real);
    let (a_dht, b_dht) = (net.dht[a], net.dht[b]);
    let keys_known = run_until(
        net,
        Duration::from_secs(90),
        "DHT keys exchanged",
        |_| {},
        |events| {
            let learned = |who: usize, friend: PublicKey, key: PublicKey| {
                events.iter().any(|(i, e)| {
                    *i == who
                        && matches!(e, NodeEvent::Onion(OnionEvent::FriendDhtPk { real_pk, dht_pk, .. })
                            if *real_pk == friend && *dht_pk == key)
                })
            };
            learned(a, b_real, b_dht) && learned(b, a_real, a_dht)
        },
    );
    (request_sent, keys_known)
}

#[test]
fn friend_request_and_dht_keys_cross_the_onion() {
    let mut net = network(40, NetConfig::default(), 1);
    let (request, keys) = friend_request_then_dht_keys(&mut net, 7, 23);
    eprintln!("friend request after {request:?}, DHT keys known {keys:?} later");
    let now = net.sim.now();
    for i in [7, 23] {
        let onion = net.sim.node(i).onion();
        assert!(onion.is_connected(), "node {i} announced");
        assert!(onion.announced_to(now) >= 4, "node {i} stored on {} nodes", onion.announced_to(now));
    }
    let relayed: u64 = (0..40).map(|i| net.sim.node(i).relay().stats().requests_relayed).sum();
    let stored: usize = (0..40).map(|i| net.sim.node(i).announce_store().len()).sum();
    assert!(relayed > 0 && stored >= 40, "relayed {relayed}, stored {stored}");
}

#[test]
fn the_onion_works_under_loss() {
    let lossy = NetConfig { loss: 0.05, duplicate: 0.01, delay: Duration::from_millis(5)..Duration::from_millis(60) };
    let mut net = network(40, lossy, 2);
    let (request, keys) = friend_request_then_dht_keys(&mut net, 3, 31);
    eprintln!("with loss: friend request after {request:?}, DHT keys known {keys:?} later");
}

/// A friend request with the wrong key never arrives, and garbage does not
/// disturb anyone.
#[test]
fn onion_data_for_strangers_goes_nowhere() {
    let mut net = network(20, NetConfig::default(), 3);
    let stranger = *KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(99)).public();
    net.sim.node_mut(5).onion_mut().add_friend(stranger);
    let request = FriendRequest::new(NoSpam([0; 4]), Bytes::from_static(b"hi")).unwrap();
    for _ in 0..30 {
        let now = net.sim.now();
        assert_eq!(net.sim.node_mut(5).onion_mut().send_friend_request(now, &stranger, &request), 0);
        net.sim.flush(5);
        net.sim.run_for(Duration::from_secs(1));
    }
    let requests = net
        .sim
        .take_events()
        .into_iter()
        .filter(|(_, e)| matches!(e, NodeEvent::Onion(OnionEvent::FriendRequest { .. })))
        .count();
    assert_eq!(requests, 0);
}
