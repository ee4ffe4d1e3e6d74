//! The lossless transport through a TCP relay, and moving between a relay
//! and the direct path, in the simulator (src/sim/relay.rs, src/sim/transport.rs).
//!
//! The relay is modelled on tox-bootstrapd: it wakes every 30 ms (staying
//! awake 5 ms), reads at most 256 KB of a connection per wake and drops
//! what does not fit in the 256 KB socket to the receiver. The direct path
//! is 500 Mbit/s with a 20 ms round trip. Every flow checks that its
//! packets arrive once and in order.

use std::time::Duration;

use tuntox::proto::net_crypto::path::PathKind;
use tuntox::sim::link::LinkConfig;
use tuntox::sim::relay::RelayConfig;
use tuntox::sim::transport::Transfers;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The relay: 256 KB per 30 ms is about 68 Mbit/s of frames.
fn relay() -> RelayConfig {
    RelayConfig::bootstrapd(ms(1), 256_000, 256_000)
}

/// A flow of 10 GB with a relay path and the direct path `direct`.
fn transfers(direct: bool, seed: u64) -> (Transfers, usize) {
    let fwd = LinkConfig::delay(ms(10)).rate_mbit(500.0, ms(20), 2.0);
    let mut t = Transfers::new(fwd, LinkConfig::delay(ms(10)), seed);
    let f = t.add_flow(10_000_000_000, Duration::ZERO);
    t.set_direct(f, direct);
    t.add_relay(f);
    t.set_relay(relay(), relay());
    (t, f)
}

fn path(t: &Transfers, f: usize) -> Option<PathKind> {
    t.sender(f).session(&t.receiver_key(f)).and_then(|s| s.current_path()).map(|(p, _)| p)
}

fn receiver_path(t: &Transfers, f: usize) -> Option<PathKind> {
    t.receiver(f).session(&t.sender_key(f)).and_then(|s| s.current_path()).map(|(p, _)| p)
}

/// Through a relay that forwards in rounds, the acknowledgements come in
/// bursts 30 ms apart while the smallest round trip is a few
/// milliseconds: a window sized from that round trip alone would carry a
/// third of what the relay can. The congestion control fills the relay,
/// keeps no standing queue in front of it, and nothing stalls.
#[test]
fn a_relay_that_forwards_in_rounds_is_filled_without_a_standing_queue() {
    let (mut t, f) = transfers(false, 11);
    t.run_for(secs(3));
    let from = t.now();
    t.run_for(secs(7));
    let rate = t.flow(f).mbit_between(from, t.now());
    assert!(rate > 50.0, "{rate:.1} Mbit/s through a relay that carries about 66");
    assert_eq!(path(&t, f), Some(PathKind::Tcp));
    let gap = t.flow(f).longest_gap.0;
    assert!(gap < ms(200), "longest gap {gap:?}");
    let now = t.now();
    let (forward, _) = t.relay_paths();
    let backlog = forward.backlog_delay(now);
    assert!(backlog < ms(40), "a standing queue of {backlog:?} in front of the relay");
    assert_eq!(forward.stats().dropped_at_sender, 0, "{:?}", forward.stats());
}

/// A transfer that starts on the relay (the direct path closed) speeds up
/// to the direct path's rate within 2 s of the direct path opening: a
/// probe finds it within a second, and the congestion control starts
/// afresh on it instead of creeping up from the relay's rate.
#[test]
fn a_transfer_that_starts_on_the_relay_speeds_up_within_two_seconds_of_going_direct() {
    let (mut t, f) = transfers(false, 12);
    t.run_for(secs(3));
    let on_relay = t.flow(f).mbit_between(t.now() - secs(1), t.now());
    assert!(on_relay < 80.0, "{on_relay:.1} Mbit/s on the relay");
    t.set_direct(f, true);
    let opened = t.now();
    t.run_for(secs(2));
    assert_eq!(path(&t, f), Some(PathKind::Udp));
    let since = t.sender(f).session(&t.receiver_key(f)).and_then(|s| s.current_path()).map(|(_, at)| at - opened);
    assert!(since.is_some_and(|s| s < ms(1100)), "direct {since:?} after the path opened");
    t.run_for(secs(2));
    let direct = t.flow(f).mbit_between(opened + secs(2), opened + secs(4));
    assert!(direct > 400.0, "{direct:.1} Mbit/s from 2 s after the path opened (500 Mbit/s link)");
}

/// A direct path that stops carrying anything while data flows: the
/// session moves to the relay within about a second, resends what the
/// direct path swallowed through it, and carries on at the relay's rate;
/// when the direct path opens again it goes back.
#[test]
fn a_direct_path_that_fails_moves_to_the_relay_and_back() {
    let (mut t, f) = transfers(true, 13);
    t.run_for(secs(3));
    assert_eq!(path(&t, f), Some(PathKind::Udp));
    t.set_direct(f, false);
    let cut = t.now();
    t.run_for(secs(4));
    assert_eq!(path(&t, f), Some(PathKind::Tcp));
    let (gap, at) = t.flow(f).longest_gap;
    assert!(gap < ms(1500), "longest gap {gap:?} (at {:?} after the cut)", at.map(|a| a - cut));
    let relay = t.flow(f).mbit_between(cut + secs(2), cut + secs(4));
    let each: Vec<String> =
        (0..40).map(|i| format!("{:.0}", t.flow(f).mbit_between(cut + ms(i * 100), cut + ms(i * 100 + 100)))).collect();
    assert!(relay > 45.0, "{relay:.1} Mbit/s on the relay after the cut: {each:?}");
    t.set_direct(f, true);
    let opened = t.now();
    t.run_for(secs(4));
    assert_eq!(path(&t, f), Some(PathKind::Udp));
    let direct = t.flow(f).mbit_between(opened + secs(2), opened + secs(4));
    assert!(direct > 400.0, "{direct:.1} Mbit/s back on the direct path");
}

/// The direct path carries one side's packets but no longer the other's
/// (a NAT that still admits replies but stopped passing packets out). A
/// side that still hears the peer over UDP must not keep sending into the
/// dead direction: the peer, which hears nothing, goes to the relay within
/// 2 s, and then so does it (its peer uses the relay); the transfer goes
/// on there, retrying the direct path now and then only.
#[test]
fn a_direct_path_that_works_one_way_only_does_not_swallow_the_transfer() {
    for (forward, back) in [(false, true), (true, false)] {
        let (mut t, f) = transfers(true, 14);
        t.run_for(secs(3));
        t.set_direct_ways(f, forward, back);
        let cut = t.now();
        t.run_for(secs(20));
        let rate = t.flow(f).mbit_between(cut + secs(3), cut + secs(20));
        assert!(rate > 30.0, "forward {forward} back {back}: {rate:.1} Mbit/s after the cut");
        let (gap, _) = t.flow(f).longest_gap;
        assert!(gap < secs(3), "forward {forward} back {back}: longest gap {gap:?}");
    }
}

/// The same on an idle session: once a short transfer is through, nothing
/// is in flight, and the only packets are each side's acknowledgement a
/// second. When the direct path stops carrying one side's packets, both
/// sides are on the relay within a few seconds, whichever way died; and
/// when it works again both ways, both go direct again.
#[test]
fn an_idle_session_whose_direct_path_dies_one_way_moves_to_the_relay_and_back() {
    for (forward, back) in [(false, true), (true, false), (false, false)] {
        // A 1 MB transfer, through in well under a second, then idle.
        let fwd = LinkConfig::delay(ms(10)).rate_mbit(500.0, ms(20), 2.0);
        let mut t = Transfers::new(fwd, LinkConfig::delay(ms(10)), 15);
        let f = t.add_flow(1_000_000, Duration::ZERO);
        t.add_relay(f);
        t.set_relay(relay(), relay());
        assert!(t.run_to_end(secs(2)), "the transfer is through");
        t.run_for(secs(3));
        assert_eq!(path(&t, f), Some(PathKind::Udp));
        t.set_direct_ways(f, forward, back);
        let cut = t.now();
        let mut moved = None;
        while t.now() < cut + secs(15) {
            t.run_for(ms(100));
            if path(&t, f) == Some(PathKind::Tcp) && receiver_path(&t, f) == Some(PathKind::Tcp) {
                moved = Some(t.now() - cut);
                break;
            }
        }
        let moved = moved.unwrap_or_else(|| {
            panic!(
                "forward {forward} back {back}: still {:?} / {:?} 15 s after the cut",
                path(&t, f),
                receiver_path(&t, f)
            )
        });
        assert!(moved < secs(4), "forward {forward} back {back}: both on the relay {moved:?} after the cut");
        t.set_direct(f, true);
        let opened = t.now();
        t.run_for(secs(8));
        assert_eq!(path(&t, f), Some(PathKind::Udp), "forward {forward} back {back}: direct again");
        assert_eq!(receiver_path(&t, f), Some(PathKind::Udp), "forward {forward} back {back}: direct again");
        let since = t.sender(f).session(&t.receiver_key(f)).and_then(|s| s.current_path()).map(|(_, at)| at - opened);
        assert!(since.is_some_and(|s| s < secs(6)), "direct {since:?} after the path opened");
    }
}

#[test]
#[ignore = "a trace, run by hand with --nocapture"]
fn trace_relay() {
    let read: usize = std::env::var("READ").ok().and_then(|v| v.parse().ok()).unwrap_or(256_000);
    let out: usize = std::env::var("OUT").ok().and_then(|v| v.parse().ok()).unwrap_or(256_000);
    let secs: u64 = std::env::var("SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let direct_at: u64 = std::env::var("DIRECT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let cut_at: u64 = std::env::var("CUT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let fwd = LinkConfig::delay(ms(10)).rate_mbit(500.0, ms(20), 2.0);
    let mut t = Transfers::new(fwd, LinkConfig::delay(ms(10)), 7);
    let f = t.add_flow(10_000_000_000, Duration::ZERO);
    t.set_direct(f, std::env::var("START_DIRECT").is_ok());
    t.add_relay(f);
    t.set_relay(RelayConfig::bootstrapd(ms(1), read, out), RelayConfig::bootstrapd(ms(1), read, out));
    let (fw, bw): (bool, bool) = match std::env::var("WAYS").as_deref() {
        Ok("fwd") => (true, false),
        Ok("back") => (false, true),
        _ => (false, false),
    };
    for i in 0..secs * 10 {
        if direct_at > 0 && i == direct_at * 10 {
            t.set_direct(f, true);
        }
        if cut_at > 0 && i == cut_at * 10 {
            t.set_direct_ways(f, fw, bw);
        }
        t.run_for(ms(100));
        let key = t.receiver_key(f);
        let now = t.now();
        let cc = t.sender(f).session(&key).map(|s| s.congestion().clone());
        let (rf, _) = t.relay_paths();
        let rs = rf.stats();
        let bl = rf.backlog_delay(now);
        let from = now - ms(100);
        let p = t.sender(f).session(&key).and_then(|s| s.current_path());
        let rp = t.receiver(f).session(&t.sender_key(f)).and_then(|s| s.current_path()).map(|p| p.0);
        eprintln!(
            "{:?} {p:?} {rp:?} {:.1} Mbit/s gap {:?} relay drops {}/{} backlog {} wait {:?} now {:?} | {}",
            now - t.epoch(),
            t.flow(f).mbit_between(from, now),
            t.flow(f).longest_gap.0,
            rs.dropped_at_sender,
            rs.dropped_at_relay,
            rs.max_backlog,
            rs.max_wait,
            bl,
            cc.map(|c| c.debug_summary()).unwrap_or_default(),
        );
    }
}
