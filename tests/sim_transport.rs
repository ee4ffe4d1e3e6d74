//! The lossless transport over simulated bottlenecks (src/sim/transport.rs).

use std::time::Duration;

use tuntox::sim::link::LinkConfig;
use tuntox::sim::transport::Transfers;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One flow over a bottleneck of `mbit` with round trip `rtt` and a queue
/// of `bdps`, loss `loss` each way: its goodput (Mbit/s) from 5 s to 15 s
/// and the 99th percentile of the bottleneck's queue delay then.
fn steady(rtt: u64, mbit: f64, bdps: f64, loss: f64) -> (f64, Duration) {
    let fwd = LinkConfig::delay(ms(rtt / 2)).rate_mbit(mbit, ms(rtt), bdps).lossy(loss);
    let mut t = Transfers::new(fwd, LinkConfig::delay(ms(rtt / 2)).lossy(loss), 5);
    let f = t.add_flow(u64::MAX, Duration::ZERO);
    t.run_for(secs(5));
    t.forward_link().reset_delays();
    let from = t.now();
    t.run_for(secs(10));
    let goodput = t.flow(f).mbit_between(from, t.now());
    (goodput, t.forward_link().queue_delay_percentile(99.0))
}

/// The bottleneck's rate in payload: a full lossless packet carries 1373
/// bytes of the 1401 + 28 that cross the link.
fn payload_rate(mbit: f64) -> f64 {
    mbit * 1373.0 / 1429.0
}

#[test]
fn a_flow_fills_a_long_bottleneck_without_a_standing_queue() {
    for (rtt, mbit) in [(40, 100.0), (200, 100.0), (40, 10.0)] {
        let (goodput, q99) = steady(rtt, mbit, 4.0, 0.0);
        assert!(goodput > 0.95 * payload_rate(mbit), "{rtt} ms, {mbit} Mbit/s: {goodput:.1} Mbit/s");
        // A 4-BDP buffer holds 160 ms (800 ms at 200 ms): the controller
        // keeps its queue to the probes' few milliseconds.
        assert!(q99 < ms(25), "{rtt} ms, {mbit} Mbit/s: queue p99 {q99:?}");
    }
}

#[test]
fn random_loss_does_not_collapse_the_rate() {
    // 3 % each way (data and acknowledgements): a loss-driven window
    // would reach a few Mbit/s at 40 ms.
    let (goodput, _) = steady(40, 100.0, 4.0, 0.03);
    assert!(goodput > 0.85 * payload_rate(100.0), "{goodput:.1} Mbit/s");
}

#[test]
fn a_shallow_buffer_costs_little() {
    let (goodput, q99) = steady(40, 100.0, 0.5, 0.0);
    assert!(goodput > 0.9 * payload_rate(100.0), "{goodput:.1} Mbit/s");
    assert!(q99 <= ms(21), "{q99:?}");
}

#[test]
fn two_flows_share_a_bottleneck() {
    let fwd = LinkConfig::delay(ms(20)).rate_mbit(100.0, ms(40), 4.0);
    let mut t = Transfers::new(fwd, LinkConfig::delay(ms(20)), 3);
    let a = t.add_flow(u64::MAX, Duration::ZERO);
    let b = t.add_flow(u64::MAX, secs(2));
    t.run_for(secs(20));
    let (from, to) = (t.epoch() + secs(10), t.epoch() + secs(20));
    let (ra, rb) = (t.flow(a).mbit_between(from, to), t.flow(b).mbit_between(from, to));
    let share = ra / (ra + rb);
    assert!((0.4..=0.6).contains(&share), "{ra:.1} and {rb:.1} Mbit/s");
    assert!(ra + rb > 0.9 * payload_rate(100.0), "{ra:.1} + {rb:.1} Mbit/s");
}

#[test]
fn the_rate_follows_a_bottleneck_that_halves_and_recovers() {
    let link = |mbit| LinkConfig::delay(ms(20)).rate_mbit(mbit, ms(40), 4.0);
    let mut t = Transfers::new(link(100.0), LinkConfig::delay(ms(20)), 4);
    let f = t.add_flow(u64::MAX, Duration::ZERO);
    t.run_for(secs(5));
    t.forward_link().set(link(50.0));
    let cut = t.now();
    t.run_for(secs(6));
    // Settled within 2 s: the next 4 s move at the new rate, and the
    // queue the old rate left is gone.
    let after = t.flow(f).mbit_between(cut + secs(2), cut + secs(6));
    assert!(after > 0.9 * payload_rate(50.0), "{after:.1} Mbit/s after the cut");
    let now = t.now();
    assert!(t.forward_link().queue_delay(now) < ms(25), "{:?}", t.forward_link().queue_delay(now));
    // The rate doubles again: the probes find it.
    t.forward_link().set(link(100.0));
    let up = t.now();
    t.run_for(secs(8));
    let again = t.flow(f).mbit_between(up + secs(4), up + secs(8));
    assert!(again > 0.9 * payload_rate(100.0), "{again:.1} Mbit/s after the rate came back");
}

#[test]
fn a_transfer_survives_the_rate_cut_to_a_tenth_and_back() {
    let link = |mbit| LinkConfig::delay(ms(20)).rate_mbit(mbit, ms(40), 1.0);
    let mut t = Transfers::new(link(100.0), LinkConfig::delay(ms(20)), 6);
    let f = t.add_flow(40_000_000, Duration::ZERO);
    t.run_for(secs(1));
    t.forward_link().set(link(10.0));
    t.run_for(secs(3));
    t.forward_link().set(link(100.0));
    // Intact and in order (the harness checks every packet), and done.
    assert!(t.run_to_end(secs(30)), "{} of 40 MB delivered", t.flow(f).delivered / 1_000_000);
}

#[test]
fn startup_leaves_a_small_queue_and_little_time_behind() {
    // A fresh 20 MiB transfer, as a download through a forward: startup's
    // overshoot is what its round trips under load see at their worst.
    for (rtt, mbit, bdps, max_queue, min_rate) in
        [(40, 100.0, 4.0, ms(50), 0.85), (40, 10.0, 4.0, ms(100), 0.95), (40, 100.0, 0.5, ms(21), 0.85)]
    {
        let fwd = LinkConfig::delay(ms(rtt / 2)).rate_mbit(mbit, ms(rtt), bdps);
        let mut t = Transfers::new(fwd, LinkConfig::delay(ms(rtt / 2)), 5);
        let f = t.add_flow(20 << 20, Duration::ZERO);
        assert!(t.run_to_end(secs(60)), "{rtt} ms, {mbit} Mbit/s: the transfer ends");
        let flow = t.flow(f);
        let took = flow.finished.unwrap() - flow.started.unwrap();
        let rate = flow.delivered as f64 * 8.0 / took.as_secs_f64() / 1e6;
        let queue = t.forward_link().stats().max_queue_delay;
        let label = format!("{rtt} ms, {mbit} Mbit/s, {bdps} BDP: {rate:.1} Mbit/s, queue up to {queue:?}");
        // Startup used to leave two bandwidth-delay products of queue
        // (83 ms at 100 Mbit/s, 124 ms at 10 Mbit/s, where the window's
        // floor adds more), and fill a shallow buffer until it dropped a
        // thousand packets.
        assert!(queue < max_queue, "{label}");
        assert!(rate > min_rate * payload_rate(mbit), "{label}");
        if bdps < 1.0 {
            assert!(t.forward_link().stats().dropped < 400, "{label}: {} dropped", t.forward_link().stats().dropped);
        }
    }
}

#[test]
fn round_trips_that_only_jitter_do_not_end_startup() {
    // Up to 20 ms of extra delay each way, per datagram: round trips spread
    // over 40 ms with no queue anywhere. Startup must still find the rate.
    let fwd = LinkConfig::delay(ms(20)).rate_mbit(100.0, ms(40), 4.0).jittery(ms(20));
    let mut t = Transfers::new(fwd, LinkConfig::delay(ms(20)).jittery(ms(20)), 7);
    let f = t.add_flow(20 << 20, Duration::ZERO);
    assert!(t.run_to_end(secs(60)), "the transfer ends");
    let flow = t.flow(f);
    let took = flow.finished.unwrap() - flow.started.unwrap();
    let rate = flow.delivered as f64 * 8.0 / took.as_secs_f64() / 1e6;
    assert!(rate > 0.8 * payload_rate(100.0), "{rate:.1} Mbit/s in {took:?}");
}
