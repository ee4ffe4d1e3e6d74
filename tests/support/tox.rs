//! Our Tox nodes (the `Tox` handle of `tuntox::driver::tox`) on a
//! namespaced network whose only bootstrap node is a [`Bootstrapd`]: their
//! settings, waiting for their events, and making two of them friends.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use tuntox::app::bootstrap::BootstrapNode;
use tuntox::crypto::{KeyPair, PublicKey, SodiumRng};
use tuntox::driver::tox::{Tox, ToxConfig, ToxEvent};
use tuntox::driver::udp::UdpConfig;
use tuntox::proto::node::friends::Path;
use tuntox::wire::tox_id::{NoSpam, parse_public_key};

use super::bootstrapd::Bootstrapd;
use super::deadline::Deadline;

/// A new node's settings: fresh keys, UDP on `ports`, `bootstrapd` as its
/// only bootstrap node, no LAN discovery.
pub fn config(bootstrapd: &Bootstrapd, ports: RangeInclusive<u16>) -> ToxConfig {
    let node = BootstrapNode {
        public_key: parse_public_key(&bootstrapd.public_key_hex).expect("the daemon's key"),
        udp: vec![SocketAddr::from(([127, 0, 0, 1], bootstrapd.udp_port))],
        tcp_ports: vec![bootstrapd.tcp_port],
    };
    ToxConfig {
        keys: KeyPair::generate(&mut SodiumRng),
        nospam: NoSpam::random(&mut SodiumRng),
        udp: UdpConfig { ports, ..UdpConfig::default() },
        bootstrap: vec![node],
        lan_discovery: false,
        friends: Vec::new(),
        udp_enabled: true,
        tcp_relays: Vec::new(),
        tcp_server_ports: Vec::new(),
        aegis: tuntox::crypto::aes_hardware(),
        portmap: false,
    }
}

/// Waits for the first event `pick` maps to a value; panics after `timeout`.
pub async fn wait_event<T>(
    tox: &mut Tox,
    what: &str,
    timeout: Duration,
    mut pick: impl FnMut(ToxEvent) -> Option<T>,
) -> T {
    let deadline = Deadline::after(timeout);
    loop {
        match tokio::time::timeout(deadline.left(), tox.next_event()).await {
            Ok(Some(event)) => {
                if let Some(value) = pick(event) {
                    return value;
                }
            }
            Ok(None) => panic!("our node stopped while waiting for {what}"),
            Err(_) => panic!("no {what} within {timeout:?}"),
        }
    }
}

/// Makes two running nodes friends by `deadline`: `b` sends `a` a friend
/// request with `message`, `a` (which must get it from `b`) accepts, and
/// both wait for the other to come online. Returns how `a` reaches `b` and
/// how `b` reaches `a`.
pub async fn befriend(a: &mut Tox, b: &mut Tox, message: &'static [u8], deadline: &Deadline) -> (Path, Path) {
    let a_id = a.tox_id();
    let (a_key, b_key) = (*a_id.public_key(), *b.tox_id().public_key());
    b.add_friend_request(a_id, Bytes::from_static(message)).await.expect("node b runs").expect("a short message");
    let key = wait_event(a, "the friend request", deadline.left(), |e| match e {
        ToxEvent::FriendRequest { public_key, .. } => Some(public_key),
        _ => None,
    })
    .await;
    assert_eq!(key, b_key, "the friend request comes from b");
    eprintln!("friend request after {:?}", deadline.elapsed());
    a.add_friend(b_key).await.expect("node a runs");
    let online = |key: PublicKey| {
        move |e: ToxEvent| match e {
            ToxEvent::FriendConnected { public_key, path } if public_key == key => Some(path),
            _ => None,
        }
    };
    tokio::join!(
        wait_event(a, "b online", deadline.left(), online(b_key)),
        wait_event(b, "a online", deadline.left(), online(a_key)),
    )
}
