//! Hole punching on the NAT test bed (tests/support/natbed.rs): a tuntox
//! client and server, each behind its own Linux home router, first meet
//! through tox-bootstrapd's TCP relay and then punch a direct path through
//! their session (src/proto/punch.rs).
//!
//! - cone / cone, with the routers' INPUT accepting unsolicited datagrams
//!   (their entries collide with later mappings) and dropping them: direct
//!   UDP within 15 s of the start, and 20 MB through `-L` on it, intact.
//! - cone / random port: direct UDP through many ports.
//! - random / random: the TCP relay, the first byte within 10 s, and the
//!   status says why there is no direct path.

mod support;

use std::time::Duration;

use support::deadline::Deadline;
use support::natbed::{NatBed, NatBedConfig, RouterKind, forward_run, friend_path};

const MB20: usize = 20 << 20;

fn direct_with_20_mb(kind: RouterKind) {
    let bed = NatBed::new(NatBedConfig::new(kind, kind));
    let run = forward_run(&bed, &[], MB20, Some(Duration::from_secs(15)), Duration::from_secs(120));
    eprintln!("{run:?}");
    let direct = run.direct.expect("direct");
    assert!(direct <= Duration::from_secs(15), "direct after {direct:?}");
    assert!(run.first_byte >= direct, "the transfer started on the direct path");
    let end = run.path_at_end.expect("a status report at the end");
    assert_eq!(end.path.as_deref(), Some("udp"), "still direct at the end: {end:?}");
}

#[test]
fn cones_whose_routers_accept_strays_go_direct_within_15_s_and_carry_20_mb() {
    direct_with_20_mb(RouterKind::Cone);
}

#[test]
fn firewalled_cones_go_direct_within_15_s_and_carry_20_mb() {
    direct_with_20_mb(RouterKind::ConeFirewalled);
}

#[test]
fn a_cone_and_a_random_port_router_go_direct_through_many_ports() {
    let bed = NatBed::new(NatBedConfig::new(RouterKind::Cone, RouterKind::RandomPort));
    // A wide attempt follows a failed narrow one after about 5 s; it finds
    // a path with a probability of about 98 %, the next one 15 s later.
    let run = forward_run(&bed, &[], 4 << 20, Some(Duration::from_secs(40)), Duration::from_secs(90));
    eprintln!("{run:?}");
    let end = run.path_at_end.expect("a status report at the end");
    assert_eq!(end.path.as_deref(), Some("udp"), "{end:?}");
}

#[test]
fn random_port_routers_go_through_the_relay_and_say_why() {
    let bed = NatBed::new(NatBedConfig::new(RouterKind::RandomPort, RouterKind::RandomPort));
    // A short transfer: what is checked here is the path and the first byte.
    let run = forward_run(&bed, &[], 64 << 10, None, Duration::from_secs(60));
    eprintln!("{run:?}");
    assert!(run.first_byte <= Duration::from_secs(10), "first byte after {:?}", run.first_byte);
    assert_eq!(run.path_at_end.as_ref().and_then(|p| p.path.as_deref()), Some("tcp"), "{run:?}");
    // The forward is done; a fresh pair of tuntox says why, once its
    // attempts have failed (a narrow one and a wide one: about 15 s).
    let dir = tempfile::tempdir().unwrap();
    let (_server, id) = bed.start_server(dir.path(), &[]);
    let _client = bed.start_client(&id, &["-L", "12001:127.0.0.1:7001"]);
    let deadline = Deadline::after(Duration::from_secs(45));
    let note = loop {
        let friend = friend_path(&bed.client);
        // After the narrow attempt it says no probe got through; after the
        // wide one, that not even many ports did.
        if let Some(note) = friend.as_ref().and_then(|f| f.direct_note.clone())
            && note.contains("using the TCP relay")
            && (note.contains("256 ports") || note.contains("new port"))
        {
            assert_eq!(friend.unwrap().path.as_deref(), Some("tcp"));
            break note;
        }
        assert!(!deadline.passed(), "no reason given: {friend:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("status: {note}");
}

/// With a second DHT node on another public address, each side sees that
/// its router gives each destination its own port, says so in its hello,
/// and the status names the routers as the reason.
#[test]
fn random_port_routers_seen_by_two_dht_nodes_are_named_as_the_reason() {
    let bed = NatBed::new(NatBedConfig {
        second_public: true,
        ..NatBedConfig::new(RouterKind::RandomPort, RouterKind::RandomPort)
    });
    let _second = bed.start_second_node();
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = bed.start_server(dir.path(), &[]);
    let client = bed.start_client(&id, &["-L", "12001:127.0.0.1:7001"]);
    let deadline = Deadline::after(Duration::from_secs(45));
    loop {
        let friend = friend_path(&bed.client);
        if let Some(note) = friend.as_ref().and_then(|f| f.direct_note.clone())
            && note.contains("both routers map each destination to a new port; using the TCP relay")
        {
            assert_eq!(friend.unwrap().path.as_deref(), Some("tcp"));
            break;
        }
        if deadline.passed() {
            panic!(
                "no reason given: {friend:?}\n--- client ---\n{}\n--- server ---\n{}",
                client.log().join("\n"),
                server.log().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
