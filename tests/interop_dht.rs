//! Our DHT against c-toxcore 0.2.18: tox-bootstrapd and a libtoxcore peer in
//! a private network namespace, and our nodes on sockets bound inside it.
//!
//! Needs root (network namespaces), libtoxcore-dev and toxcore-utils; run
//! through `scripts/test`, which installs them. It never skips.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use support::bootstrapd::{Bootstrapd, BootstrapdConfig};
use support::deadline::Deadline;
use support::netns::Netns;
use support::toxpeer::{PeerOptions, ToxPeer};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::driver::udp::{self, UdpConfig};
use tuntox::driver::{self, NodeHandle};
use tuntox::proto::dht::DhtStats;
use tuntox::proto::{Node, NodeConfig};
use tuntox::wire::packed_node::PackedNode;
use tuntox::wire::tox_id::parse_public_key;

/// Starts one of our nodes on a socket bound inside `netns` (loopback,
/// `port`), with LAN discovery off and no bootstrap node yet.
fn start_node(rt: &Runtime, netns: &Netns, keys: KeyPair, port: u16, seed: u8) -> NodeHandle {
    let config = UdpConfig { ports: port..=port, bind_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), ..Default::default() };
    let socket = netns.run_in(move || udp::bind(&config).expect("bind inside the namespace"));
    let real = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(u64::from(seed) + 1000));
    let node = Node::new(real, keys, NodeConfig::default(), [seed; 32]);
    let _guard = rt.enter();
    driver::spawn(node, socket, CancellationToken::new()).expect("start the node")
}

fn key(hex: &str) -> PublicKey {
    parse_public_key(hex).expect("a 64-hex key")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `check` on the node every 100 ms until it returns `Some`, within `timeout`.
fn wait_until<T: Send + 'static>(
    rt: &Runtime,
    node: &NodeHandle,
    timeout: Duration,
    what: &str,
    check: impl Fn(&Node, std::time::Instant) -> Option<T> + Send + Sync + Clone + 'static,
) -> T {
    let deadline = Deadline::after(timeout);
    loop {
        let check = check.clone();
        if let Some(found) = rt.block_on(node.with(move |n, now| check(n, now))).expect("node running") {
            return found;
        }
        let stats: DhtStats = rt.block_on(node.with(|n, _| n.dht().stats())).expect("node running");
        assert!(!deadline.passed(), "timed out after {timeout:?} waiting for {what}; DHT stats: {stats:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Our node bootstraps from tox-bootstrapd: its pings and nodes responses
/// decrypt and match, and the DHT hands us the libtoxcore peer that
/// bootstrapped there before us.
#[test]
fn our_node_joins_the_dht_of_tox_bootstrapd() {
    let netns = Netns::new("dhtjoin");
    let bootstrapd = Bootstrapd::start(&netns);
    let peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { bootstrap: vec![bootstrapd.bootstrap_arg()], ..PeerOptions::new("peer") },
    );
    let peer_dht = key(peer.dht_id());
    let bootstrapd_key = key(&bootstrapd.public_key_hex);

    let rt = Runtime::new().unwrap();
    let keys = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(1));
    let node = start_node(&rt, &netns, keys, 33600, 1);
    let boot = loopback(bootstrapd.udp_port);
    rt.block_on(node.with(move |n, now| {
        n.dht_mut().bootstrap(now, PackedNode::udp(boot, bootstrapd_key));
        n.dht_mut().ping(now, bootstrapd_key, boot);
        // Searching the peer's DHT key: only tox-bootstrapd can tell us where it is.
        n.dht_mut().add_search(peer_dht);
    }))
    .unwrap();

    let found = wait_until(&rt, &node, Duration::from_secs(30), "the libtoxcore peer", move |n, now| {
        n.dht().search_results(&peer_dht)?.iter().find(|c| c.public_key == peer_dht).and_then(|c| c.best_addr(now))
    });
    assert_eq!(found.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));

    let stats = wait_until(&rt, &node, Duration::from_secs(10), "a ping response", |n, _| {
        let stats = n.dht().stats();
        (stats.pongs_accepted > 0).then_some(stats)
    });
    assert!(stats.nodes_responses_accepted > 0, "{stats:?}");
    assert_eq!(stats.dropped_malformed, 0, "{stats:?}");
    assert_eq!(stats.dropped_unsolicited, 0, "{stats:?}");
    let in_close = rt
        .block_on(node.with(move |n, now| {
            [bootstrapd_key, peer_dht].map(|k| n.dht().close_list().get(&k).is_some_and(|c| c.is_good(now)))
        }))
        .unwrap();
    assert_eq!(in_close, [true, true], "tox-bootstrapd and the peer in our close list");
    rt.block_on(node.shutdown());
}

/// tox-bootstrapd bootstraps from our node. c-toxcore lists a node only
/// after it answered, so when a second node of ours, knowing nothing but
/// tox-bootstrapd, finds the first one, tox-bootstrapd has taken it into
/// its DHT and given it out in a nodes response.
#[test]
fn tox_bootstrapd_takes_our_node_into_its_dht() {
    let netns = Netns::new("dhtseed");
    let rt = Runtime::new().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let seed_keys = KeyPair::generate(&mut rng);
    let seed_key = *seed_keys.public();
    let seed = start_node(&rt, &netns, seed_keys, 33600, 2);

    let bootstrapd = Bootstrapd::start_with(
        &netns,
        BootstrapdConfig {
            bootstrap_nodes: vec![("127.0.0.1".to_owned(), 33600, seed_key.to_string())],
            ..BootstrapdConfig::default()
        },
    );
    let bootstrapd_key = key(&bootstrapd.public_key_hex);
    wait_until(&rt, &seed, Duration::from_secs(20), "tox-bootstrapd to ask our node", move |n, _| {
        (n.dht().stats().requests_answered > 0).then_some(())
    });

    let probe = start_node(&rt, &netns, KeyPair::generate(&mut rng), 33601, 3);
    let boot = loopback(bootstrapd.udp_port);
    rt.block_on(probe.with(move |n, now| {
        n.dht_mut().bootstrap(now, PackedNode::udp(boot, bootstrapd_key));
        n.dht_mut().add_search(seed_key);
    }))
    .unwrap();
    let found =
        wait_until(&rt, &probe, Duration::from_secs(30), "our first node, via tox-bootstrapd", move |n, now| {
            n.dht().search_results(&seed_key)?.iter().find(|c| c.public_key == seed_key).and_then(|c| c.best_addr(now))
        });
    assert_eq!(found, loopback(33600));
    let seed_stats = rt.block_on(seed.with(|n, _| n.dht().stats())).unwrap();
    assert_eq!(seed_stats.dropped_malformed, 0, "{seed_stats:?}");
    rt.block_on(probe.shutdown());
    rt.block_on(seed.shutdown());
}
