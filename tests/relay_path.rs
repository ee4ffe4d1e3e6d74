//! Transfers through a TCP relay (tox-bootstrapd) on the NAT test bed, and
//! a transfer that moves between the relay and direct UDP while it runs.
//!
//! The client's router drops the client's UDP (RouterKind::UdpBlocked), so
//! everything goes through tox-bootstrapd's relay on the public host; the
//! server's router forwards UDP 33445 to the server, so once the client's
//! router lets UDP out again the two can talk directly. Bytes go both ways
//! at once through `tuntox -L` (tests/support/exchange.rs), every byte is
//! checked, and the longest wait between two reads is measured.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use support::deadline::Deadline;
use support::exchange::{Progress, exchange};
use support::relaybed::{FORWARD, Pair, client_udp, mb, move_paths};

/// The longest a stall may last.
const MAX_GAP: Duration = Duration::from_secs(2);

/// The stall that used to happen one run in three: ten exchanges in a row
/// through tox-bootstrapd's relay on one pair of tuntox, each
/// [`RELAY_MB`] MiB each way at once, every byte checked, no wait between
/// two reads over 2 s in either direction. (The stall came after about
/// 1 MB; `scripts/bench relay` runs ten of 200 MiB each way, optimised.)
///
/// Why not 200 MiB here: measured in the unoptimised test build on the
/// 2-core machine with other builds running (load average 8-12), one
/// exchange of 200 MiB each way takes about 2 minutes (1.0-2.6 MB/s each
/// way), and costs 14 s of CPU in each tuntox, 15 s in tox-bootstrapd and
/// 11 s in this test's own reads and checks: ten are 20 minutes and 9 CPU
/// minutes, more than the main pass of `scripts/test` has to spare, so
/// they would have to run beside it as the soak test does. Two such ten-run
/// attempts under that load each had one wait over 2 s (2.7 s and 5.8 s,
/// both after about 147 MB down; the cause is not established: in the
/// logged one the server had paused the friend's packets a few times
/// because its local reader, this test, drained the upload slowly), so the
/// bound does not hold on a loaded machine yet. An optimised build of the
/// package for tests (`[profile.test.package.tuntox] opt-level = 1`) cuts
/// tuntox's share, but compiling the package took 4.2 times the CPU, and
/// every test binary links it.
#[test]
fn ten_exchanges_through_the_relay_never_stall() {
    let pair = Pair::start();
    assert_eq!(pair.path().as_deref(), Some("tcp"), "the client's UDP is blocked: the relay carries it");
    let len = RELAY_MB << 20;
    let mut lines = Vec::new();
    for run in 0..10 {
        let x = pair.exchange(len, len, Duration::from_secs(240), Arc::new(Progress::default()));
        let line = format!(
            "run {run}: down {:.1} MB/s (longest gap {:?}), up {:.1} MB/s (longest gap {:?})",
            x.down.mb_per_s(),
            x.down.longest_gap,
            x.up.mb_per_s(),
            x.up.longest_gap
        );
        eprintln!("{line}");
        lines.push(line);
        for (way, flow) in [("down", x.down), ("up", x.up)] {
            assert!(
                flow.longest_gap < MAX_GAP,
                "run {run} {way}: no byte for {:?} after {:.1} MB\n{}\n{}",
                flow.longest_gap,
                mb(flow.gap_at),
                lines.join("\n"),
                pair.logs()
            );
        }
    }
    assert_eq!(pair.path().as_deref(), Some("tcp"), "still through the relay");
}

/// A transfer that starts through the relay, moves to direct UDP when the
/// client's router lets UDP out, back to the relay when it drops it again
/// (while it still admits the server's replies: one way only), and direct
/// once more, loses and duplicates nothing; on direct UDP it speeds up
/// soon after the path goes direct (from 2 s on it moves above the relay's
/// rate and at least half as fast as from 4 s on). The bounds are loose:
/// an unoptimised build on a busy machine is CPU-bound on the direct path.
/// The rates themselves are `scripts/bench relay`'s (optimised), and
/// tests/sim_relay.rs checks the speed-up within 2 s on a virtual clock.
#[test]
fn a_transfer_moves_between_the_relay_and_direct_udp_intact() {
    let pair = Pair::start();
    assert_eq!(pair.path().as_deref(), Some("tcp"));
    let len = 400 << 20;
    let progress = Arc::new(Progress::default());
    let finished = AtomicBool::new(false);
    let (x, moves) = thread::scope(|scope| {
        let controller =
            scope.spawn(|| move_paths(&pair.bed.client, &pair.bed.client_router.netns, &progress, &finished));
        let x = exchange(
            &pair.bed.client,
            FORWARD.parse().unwrap(),
            &pair.source,
            len,
            len,
            Deadline::after(Duration::from_secs(300)),
            Arc::clone(&progress),
        );
        finished.store(true, Ordering::Relaxed);
        (x, controller.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    let x = x.unwrap_or_else(|e| panic!("{e}\n{}", pair.logs()));
    let moves = moves.unwrap_or_else(|e| panic!("{e}\n{}", pair.logs()));
    eprintln!(
        "relay {:.1} MB/s; direct {:.1} s after UDP was let out, then {:.1} MB/s from 2 s to 4 s after \
         and {:.1} MB/s from 4 s to 6 s; relay again {:.1} s after the cut ({}); {} MB each way intact: down {:.1} MB/s (longest gap {:?}), \
         up {:.1} MB/s (longest gap {:?})",
        moves.relay_rate / 1e6,
        moves.direct_after.as_secs_f64(),
        moves.direct_rate / 1e6,
        moves.direct_later / 1e6,
        moves.relay_again_after.as_secs_f64(),
        if moves.busy_at_cut { "mid-transfer" } else { "idle" },
        len >> 20,
        x.down.mb_per_s(),
        x.down.longest_gap,
        x.up.mb_per_s(),
        x.up.longest_gap
    );
    assert!(
        moves.direct_rate > 1.5 * moves.relay_rate.max(1e6),
        "direct UDP from 2 s after the switch: {:.1} MB/s, against {:.1} MB/s through the relay",
        moves.direct_rate / 1e6,
        moves.relay_rate / 1e6
    );
    assert!(
        moves.direct_rate > 0.5 * moves.direct_later,
        "direct UDP: {:.1} MB/s from 2 s to 4 s after the switch, {:.1} MB/s from 4 s to 6 s",
        moves.direct_rate / 1e6,
        moves.direct_later / 1e6
    );
}

/// An idle session (nothing in flight, only each side's acknowledgement
/// a second) on direct UDP whose path dies when the client's router drops
/// its UDP again (while still admitting the server's replies: one way
/// only): both sides are on the relay within a few seconds, and a
/// transfer then goes through intact. When the router lets UDP out again,
/// the idle pair goes direct again.
#[test]
fn an_idle_session_leaves_a_dead_direct_path_for_the_relay_and_comes_back() {
    let pair = Pair::start();
    let router = &pair.bed.client_router.netns;
    let wait_path = |want: &str, limit: Duration| -> Duration {
        let deadline = Deadline::after(limit);
        loop {
            if pair.path().as_deref() == Some(want) {
                return deadline.elapsed();
            }
            assert!(!deadline.passed(), "status not {want} within {limit:?}: {:?}\n{}", pair.path(), pair.logs());
            thread::sleep(Duration::from_millis(50));
        }
    };
    client_udp(router, true);
    let direct = wait_path("udp", Duration::from_secs(30));
    // A transfer on the direct path, then idle on it for a while.
    pair.exchange(8 << 20, 8 << 20, Duration::from_secs(60), Arc::new(Progress::default()));
    thread::sleep(Duration::from_secs(4));
    assert_eq!(pair.path().as_deref(), Some("udp"), "still direct while idle");
    client_udp(router, false);
    let relay = wait_path("tcp", Duration::from_secs(6));
    // Both sides use the relay: a transfer both ways goes through at once.
    let x = pair.exchange(4 << 20, 4 << 20, Duration::from_secs(60), Arc::new(Progress::default()));
    assert_eq!(pair.path().as_deref(), Some("tcp"), "still on the relay");
    for (way, flow) in [("down", &x.down), ("up", &x.up)] {
        assert!(flow.longest_gap < MAX_GAP, "{way}: no byte for {:?}\n{}", flow.longest_gap, pair.logs());
    }
    client_udp(router, true);
    let again = wait_path("udp", Duration::from_secs(15));
    eprintln!(
        "direct {:.1} s after UDP was let out; relay {:.1} s after it was dropped on the idle session; \
         direct again {:.1} s after it was let out",
        direct.as_secs_f64(),
        relay.as_secs_f64(),
        again.as_secs_f64()
    );
}

/// MiB each way per exchange of [`ten_exchanges_through_the_relay_never_stall`].
const RELAY_MB: usize = 40;
