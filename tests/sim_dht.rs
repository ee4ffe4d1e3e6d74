//! The DHT in the simulator: many nodes on a virtual clock, seeded loss.
//! The nodes run without onion clients, like bootstrap nodes, so what is
//! measured is the DHT alone.

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::proto::dht::DhtConfig;
use tuntox::proto::dht::client::{cmp_distance, common_prefix_bits};
use tuntox::proto::{Node, NodeConfig};
use tuntox::sim::{NetConfig, Sim};
use tuntox::wire::packed_node::PackedNode;

/// Public-looking addresses (198.18.0.0/15, the benchmarking range), so the
/// DHT's LAN rules do not apply.
fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, (i / 250) as u8, (i % 250) as u8 + 1], 33445))
}

/// `n` nodes; every node but the first bootstraps from the first.
fn network(n: usize, net: NetConfig, seed: u64) -> (Sim, Vec<PublicKey>) {
    let mut sim = Sim::new(net, seed);
    let mut keys_rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
    let mut keys = Vec::new();
    for i in 0..n {
        let pair = KeyPair::generate(&mut keys_rng);
        keys.push(*pair.public());
        let node_seed = sim.node_seed();
        let real = KeyPair::generate(&mut keys_rng);
        sim.add_node(
            addr(i),
            Node::new(
                real,
                pair,
                NodeConfig { dht: DhtConfig::default(), onion_client: false, ..NodeConfig::default() },
                node_seed,
            ),
        );
    }
    let first = PackedNode::udp(addr(0), keys[0]);
    for i in 1..n {
        let now = sim.now();
        sim.node_mut(i).dht_mut().bootstrap(now, first);
        sim.flush(i);
    }
    (sim, keys)
}

/// The `k` keys of `all` closest to `target`, excluding `target` itself.
fn true_closest(all: &[PublicKey], target: &PublicKey, k: usize) -> Vec<PublicKey> {
    let mut sorted: Vec<PublicKey> = all.iter().filter(|key| *key != target).copied().collect();
    sorted.sort_by(|a, b| cmp_distance(target, a, b));
    sorted.truncate(k);
    sorted
}

/// Checks that every node's close list holds its 8 closest nodes (unless
/// their bucket is already full of good nodes: c-toxcore's buckets never
/// push out a good node), and that searches for random keys from random
/// nodes find the 8 nodes closest to each key.
fn check_convergence(sim: &mut Sim, keys: &[PublicKey], seed: u64, lookup_time: Duration) {
    let now = sim.now();
    let mut missing = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let list = sim.node(i).dht().close_list();
        for near in true_closest(keys, key, 8) {
            let listed = list.get(&near).is_some_and(|c| c.is_good(now));
            let bucket = common_prefix_bits(key, &near);
            let bucket_full =
                list.iter().filter(|c| common_prefix_bits(key, &c.public_key) == bucket && c.is_good(now)).count() >= 8;
            if !listed && !bucket_full {
                missing.push((i, near));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} nodes miss close neighbours: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );

    // Lookups: a search for a random key finds the 8 nodes closest to it.
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut lookups = Vec::new();
    for _ in 0..20 {
        let mut target = [0u8; 32];
        rng.fill_bytes(&mut target);
        let target = PublicKey::from_bytes(target);
        let from = (rng.next_u64() % keys.len() as u64) as usize;
        assert!(sim.node_mut(from).dht_mut().add_search(target));
        lookups.push((from, target));
    }
    sim.run_for(lookup_time);
    let now = sim.now();
    for (from, target) in lookups {
        let found: Vec<PublicKey> = sim
            .node(from)
            .dht()
            .search_results(&target)
            .unwrap()
            .iter()
            .filter(|c| c.is_good(now))
            .map(|c| c.public_key)
            .collect();
        let expected: Vec<PublicKey> =
            true_closest(keys, &target, 9).into_iter().filter(|k| *k != keys[from]).take(8).collect();
        for key in &expected {
            assert!(found.contains(key), "node {from}'s search for {target:?} misses {key:?}; found {found:?}");
        }
    }
}

#[test]
fn two_hundred_nodes_converge() {
    let (mut sim, keys) = network(200, NetConfig::default(), 1);
    sim.run_for(Duration::from_secs(120));
    check_convergence(&mut sim, &keys, 11, Duration::from_secs(60));
    let stats = sim.stats();
    assert!(stats.delivered > 0 && stats.unroutable == 0, "{stats:?}");
}

#[test]
fn two_hundred_nodes_converge_with_ten_percent_loss() {
    let net = NetConfig { loss: 0.10, duplicate: 0.02, delay: Duration::from_millis(5)..Duration::from_millis(80) };
    let (mut sim, keys) = network(200, net, 2);
    sim.run_for(Duration::from_secs(180));
    check_convergence(&mut sim, &keys, 12, Duration::from_secs(120));
    assert!(sim.stats().lost > 1000, "the loss must really happen: {:?}", sim.stats());
}

/// A settled node left alone keeps its close list and sends about what
/// c-toxcore would: one keep-alive nodes request per known address per
/// minute, three random asks per minute per list, plus pings of newcomers.
#[test]
fn idle_nodes_stay_connected_without_chatter() {
    let (mut sim, keys) = network(50, NetConfig::default(), 3);
    sim.run_for(Duration::from_secs(120));
    let before: Vec<_> = (0..keys.len()).map(|i| sim.node(i).dht().stats()).collect();
    sim.run_for(Duration::from_secs(600));
    let now = sim.now();
    for (i, before) in before.iter().enumerate() {
        let dht = sim.node(i).dht();
        let known = dht.close_list().iter().count() as u64;
        let good = dht.good_nodes(now);
        assert!(good >= 8.min(keys.len() - 1), "node {i} kept only {good} good nodes");
        let after = dht.stats();
        let requests = after.nodes_requests_sent - before.nodes_requests_sent;
        let pings = after.pings_sent - before.pings_sent;
        // Per minute: a keep-alive per close-list node and per search-list
        // node (2 exploration searches of 8), 3 random asks for each of the
        // 3 lists, and 2 for newcomers found by them.
        let per_minute_bound = known + 2 * 8 + 3 * 3 + 2;
        assert!(
            requests <= 10 * per_minute_bound,
            "node {i}: {requests} nodes requests in 10 min (bound {})",
            10 * per_minute_bound
        );
        assert!(pings <= 10 * 5, "node {i}: {pings} pings in 10 idle minutes");
    }
}

#[test]
fn simulations_replay_exactly_from_a_seed() {
    let run = |seed| {
        let net = NetConfig { loss: 0.05, ..NetConfig::default() };
        let (mut sim, _) = network(30, net, seed);
        sim.run_for(Duration::from_secs(30));
        (sim.stats(), sim.node(7).dht().stats())
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}
