//! The lossless transport over simulated bottlenecks (src/sim/transport.rs).

use std::time::Duration;

use tuntox::sim::link::LinkConfig;
use tuntox::sim::transport::Transfers;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One flow of `mb` megabytes over `rtt` and `mbit` with a queue of
/// `bdps`, loss each way; prints what happened.
fn report(rtt: u64, mbit: f64, bdps: f64, loss: f64, mb: u64) {
    let one_way = ms(rtt / 2);
    let fwd = LinkConfig::delay(one_way).rate_mbit(mbit, ms(rtt), bdps).lossy(loss);
    let back = LinkConfig::delay(one_way).lossy(loss);
    let mut t = Transfers::new(fwd, back, 7);
    let f = t.add_flow(mb * 1_000_000, Duration::ZERO);
    let done = t.run_to_end(Duration::from_secs(120));
    let link = t.forward_link().stats();
    let q99 = t.forward_link().queue_delay_percentile(99.0);
    let s = t.flow(f);
    let start = s.started.unwrap();
    let end = s.finished.unwrap_or(t.now());
    let secs = (end - start).as_secs_f64();
    let cc = t.sender(f).session(&t.receiver_key(f)).unwrap().congestion().clone();
    let st = t.sender(f).session_stats(&t.receiver_key(f)).unwrap();
    eprintln!(
        "rtt {rtt} ms, {mbit} Mbit/s, queue {bdps} BDP, loss {loss}: done {done} {:.1} Mbit/s ({:.2}x), \
         queue p99 {q99:?} max {:?}, dropped {} lost {}, sent {} retx {} window {} bw {:?} srtt {:?}",
        s.delivered as f64 * 8.0 / secs / 1e6,
        s.delivered as f64 * 8.0 / secs / 1e6 / mbit,
        link.max_queue_delay,
        link.dropped,
        link.lost,
        st.packets_sent,
        st.retransmissions,
        cc.window(),
        cc.bandwidth().map(|b| b * 1373.0 * 8.0 / 1e6),
        cc.rtt(),
    );
}

#[test]
#[ignore = "a report, run by hand with --nocapture"]
fn report_profiles() {
    for (rtt, mbit, bdps, loss) in [
        (40, 100.0, 4.0, 0.0),
        (40, 100.0, 0.5, 0.0),
        (40, 100.0, 4.0, 0.01),
        (200, 100.0, 4.0, 0.001),
        (10, 100.0, 4.0, 0.0),
        (2, 100.0, 4.0, 0.0),
        (40, 10.0, 4.0, 0.0),
        (40, 1000.0, 4.0, 0.0),
    ] {
        report(rtt, mbit, bdps, loss, 20);
    }
}

#[test]
#[ignore = "a report, run by hand with --nocapture"]
fn report_scenarios() {
    // Two flows through one 40 ms / 100 Mbit/s bottleneck, the second
    // starting 2 s after the first.
    let fwd = LinkConfig::delay(ms(20)).rate_mbit(100.0, ms(40), 4.0);
    let mut t = Transfers::new(fwd, LinkConfig::delay(ms(20)), 3);
    let a = t.add_flow(200_000_000, Duration::ZERO);
    let b = t.add_flow(200_000_000, Duration::from_secs(2));
    t.run_for(Duration::from_secs(12));
    let e = t.epoch();
    for (from, to) in [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12)] {
        let (f, tt) = (e + Duration::from_secs(from), e + Duration::from_secs(to));
        eprintln!(
            "{from}-{to} s: a {:.1} b {:.1} Mbit/s",
            t.flow(a).mbit_between(f, tt),
            t.flow(b).mbit_between(f, tt)
        );
    }
    eprintln!("queue p99 {:?}", t.forward_link().queue_delay_percentile(99.0));

    // The rate halves mid-transfer.
    let fwd = LinkConfig::delay(ms(20)).rate_mbit(100.0, ms(40), 4.0);
    let mut t = Transfers::new(fwd.clone(), LinkConfig::delay(ms(20)), 4);
    let a = t.add_flow(200_000_000, Duration::ZERO);
    t.run_for(Duration::from_secs(5));
    t.forward_link().set(LinkConfig::delay(ms(20)).rate_mbit(50.0, ms(40), 4.0));
    t.forward_link().reset_delays();
    t.run_for(Duration::from_secs(5));
    let e = t.epoch();
    for s in 3..10 {
        let (f, tt) = (e + Duration::from_secs(s), e + Duration::from_secs(s + 1));
        eprintln!(
            "halving {s}-{} s: {:.1} Mbit/s, queue now {:?}",
            s + 1,
            t.flow(a).mbit_between(f, tt),
            t.forward_link().queue_delay(tt)
        );
    }
    eprintln!(
        "after halving queue p99 {:?} drops {}",
        t.forward_link().queue_delay_percentile(99.0),
        t.forward_link().stats().dropped
    );
}

#[test]
#[ignore = "a trace, run by hand with --nocapture"]
fn trace_one() {
    let rtt: u64 = std::env::var("RTT").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mbit: f64 = std::env::var("MBIT").ok().and_then(|v| v.parse().ok()).unwrap_or(100.0);
    let bdps: f64 = std::env::var("BDPS").ok().and_then(|v| v.parse().ok()).unwrap_or(4.0);
    let secs: u64 = std::env::var("SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let loss: f64 = std::env::var("LOSS").ok().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let jitter: u64 = std::env::var("JITTER").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut fwd = LinkConfig::delay(ms(rtt / 2)).lossy(loss).jittery(ms(jitter));
    if mbit > 0.0 {
        fwd = fwd.rate_mbit(mbit, ms(rtt), bdps);
    }
    let back = LinkConfig::delay(ms(rtt / 2)).lossy(loss).jittery(ms(jitter));
    let mut t = Transfers::new(fwd, back, 7);
    let f = t.add_flow(1_000_000_000, Duration::ZERO);
    for _ in 0..secs * 20 {
        t.run_for(ms(50));
        let key = t.receiver_key(f);
        let line = t.sender(f).debug_sessions().join(" | ");
        let now = t.now();
        let q = t.forward_link().queue_delay(now);
        let st = t.forward_link().stats();
        let cc = t.sender(f).session(&key).map(|s| s.congestion().clone()).unwrap();
        let rline = t.receiver(f).debug_sessions().join(" | ");
        eprintln!(
            "{:?} delivered {} q {q:?} drops {} bw {:?} min_rtt {:?} srtt {:?} | {} || {}",
            t.now() - t.epoch(),
            t.flow(f).delivered,
            st.dropped,
            cc.bandwidth().map(|b| b as u64),
            cc.min_rtt(),
            cc.rtt(),
            &line[line.find("in_flight").unwrap_or(0)..],
            &rline[rline.find("recv").unwrap_or(0)..rline.find("numbers").unwrap_or(rline.len())]
        );
    }
}

#[test]
#[ignore = "a report, run by hand with --nocapture"]
fn report_steady_state() {
    for (rtt, mbit, bdps, loss) in [
        (40u64, 100.0, 4.0, 0.0),
        (40, 100.0, 0.5, 0.0),
        (200, 100.0, 4.0, 0.0),
        (10, 100.0, 4.0, 0.0),
        (40, 10.0, 4.0, 0.0),
        (40, 100.0, 4.0, 0.03),
        (40, 1000.0, 4.0, 0.0),
    ] {
        let fwd = LinkConfig::delay(ms(rtt / 2)).rate_mbit(mbit, ms(rtt), bdps).lossy(loss);
        let mut t = Transfers::new(fwd, LinkConfig::delay(ms(rtt / 2)).lossy(loss), 5);
        let f = t.add_flow(10_000_000_000, Duration::ZERO);
        t.run_for(Duration::from_secs(5));
        t.forward_link().reset_delays();
        let from = t.now();
        t.run_for(Duration::from_secs(15));
        let to = t.now();
        let (p50, p99) = (t.forward_link().queue_delay_percentile(50.0), t.forward_link().queue_delay_percentile(99.0));
        let st = t.sender(f).session_stats(&t.receiver_key(f)).unwrap();
        eprintln!(
            "steady rtt {rtt} {mbit} Mbit/s {bdps} BDP loss {loss}: {:.1} Mbit/s ({:.2}x) queue p50 {p50:?} p99 {p99:?} retx {} drops {}",
            t.flow(f).mbit_between(from, to),
            t.flow(f).mbit_between(from, to) / mbit,
            st.retransmissions,
            t.forward_link().stats().dropped
        );
    }
}
