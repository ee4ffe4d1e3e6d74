//! NAT traversal in the simulator: two friends behind NATs that drop
//! unsolicited datagrams reach each other directly. Behind cone NATs the
//! searches' own nodes requests, sent both ways, open the mappings; a
//! symmetric NAT needs the NAT pings and port-guessing pings c-toxcore
//! peers use.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::proto::dht::DhtEvent;
use tuntox::proto::{Node, NodeConfig, NodeEvent};
use tuntox::sim::nat::{Filtering, Mapping, Nat};
use tuntox::sim::{NetConfig, Sim};
use tuntox::wire::packed_node::PackedNode;

fn public(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 1, i as u8 + 1], 33445))
}

/// A public network of `n` nodes plus two friends behind the given NATs,
/// each searching the other's DHT key. Returns the sim, the friends'
/// indices and keys.
fn friends_behind_nats(
    nat_a: (Mapping, Filtering),
    nat_b: (Mapping, Filtering),
    seed: u64,
) -> (Sim, [usize; 2], [PublicKey; 2]) {
    let mut sim = Sim::new(NetConfig::default(), seed);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut first = None;
    for i in 0..40 {
        let keys = KeyPair::generate(&mut rng);
        let key = *keys.public();
        let node_seed = sim.node_seed();
        let real = KeyPair::generate(&mut rng);
        let index = sim.add_node(public(i), Node::new(real, keys, NodeConfig::default(), node_seed));
        match first {
            None => first = Some(PackedNode::udp(public(i), key)),
            Some(boot) => {
                let now = sim.now();
                sim.node_mut(index).dht_mut().bootstrap(now, boot);
                sim.flush(index);
            }
        }
    }
    let boot = first.unwrap();
    let nats = [nat_a, nat_b].map(|(mapping, filtering)| (mapping, filtering));
    let mut friends = [0; 2];
    let mut keys = [PublicKey::from_bytes([0; 32]); 2];
    for (side, (mapping, filtering)) in nats.into_iter().enumerate() {
        let ip: IpAddr = [203, 0, 113, side as u8 + 1].into();
        let nat = sim.add_nat(Nat::new(ip, mapping, filtering, 40000 + 1000 * side as u16));
        let pair = KeyPair::generate(&mut rng);
        keys[side] = *pair.public();
        let node_seed = sim.node_seed();
        let inside = SocketAddr::from(([10, 0, 0, 2], 33445));
        let real = KeyPair::generate(&mut rng);
        friends[side] = sim.add_node_behind(nat, inside, Node::new(real, pair, NodeConfig::default(), node_seed));
    }
    for side in 0..2 {
        let now = sim.now();
        let dht = sim.node_mut(friends[side]).dht_mut();
        dht.bootstrap(now, boot);
        dht.add_search(keys[1 - side]);
        sim.flush(friends[side]);
    }
    (sim, friends, keys)
}

/// Runs until each friend has the other, good, in its search list; returns
/// how long it took.
fn run_until_direct(sim: &mut Sim, friends: [usize; 2], keys: [PublicKey; 2], limit: Duration) -> Duration {
    let start = sim.now();
    loop {
        sim.run_for(Duration::from_secs(1));
        let now = sim.now();
        let direct = (0..2).all(|side| {
            sim.node(friends[side])
                .dht()
                .search_results(&keys[1 - side])
                .is_some_and(|list| list.iter().any(|c| c.public_key == keys[1 - side] && c.is_good(now)))
        });
        if direct {
            return now - start;
        }
        let stats: Vec<_> = friends.iter().map(|&f| sim.node(f).dht().stats()).collect();
        assert!(now - start < limit, "no direct path within {limit:?}; stats {stats:?}");
    }
}

#[test]
fn friends_behind_port_restricted_cone_nats_reach_each_other() {
    let cone = (Mapping::EndpointIndependent, Filtering::AddressAndPortDependent);
    let (mut sim, friends, keys) = friends_behind_nats(cone, cone, 1);
    let took = run_until_direct(&mut sim, friends, keys, Duration::from_secs(60));
    eprintln!("direct after {took:?}");
    assert!(sim.stats().unroutable > 0, "the NATs really dropped unsolicited datagrams");
    let found = sim.take_events().into_iter().filter(|(i, e)| {
        friends.contains(i) && matches!(e, NodeEvent::Dht(DhtEvent::Found { key, .. }) if keys.contains(key))
    });
    assert!(found.count() >= 2, "both sides report the friend found");
}

#[test]
fn a_symmetric_nat_is_punched_by_port_guessing() {
    // Neither side's plain requests get through: the symmetric side's port
    // for the friend is one nobody reported, and both filter by port.
    let symmetric = (Mapping::AddressAndPortDependent, Filtering::AddressAndPortDependent);
    let cone = (Mapping::EndpointIndependent, Filtering::AddressAndPortDependent);
    let (mut sim, friends, keys) = friends_behind_nats(symmetric, cone, 2);
    let took = run_until_direct(&mut sim, friends, keys, Duration::from_secs(300));
    eprintln!("direct after {took:?}");
    let guesser = sim.node(friends[1]).dht().stats();
    assert!(guesser.nat_pings_sent > 0 && guesser.punch_rounds > 0, "{guesser:?}");
}

/// Without NATs in the way, friends find each other directly and never
/// punch.
#[test]
fn reachable_friends_do_not_punch() {
    let open = (Mapping::EndpointIndependent, Filtering::EndpointIndependent);
    let (mut sim, friends, keys) = friends_behind_nats(open, open, 3);
    run_until_direct(&mut sim, friends, keys, Duration::from_secs(60));
    sim.run_for(Duration::from_secs(30));
    for &f in &friends {
        assert_eq!(sim.node(f).dht().stats().punch_rounds, 0);
    }
}
