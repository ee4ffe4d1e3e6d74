//! `relay`: `tuntox -L` through a TCP relay on the NAT test bed
//! (tests/support/relaybed.rs): the client's router drops its UDP, so
//! everything goes through tox-bootstrapd's relay on the public host. Ten
//! exchanges in a row on one pair of tuntox, [`LEN`] bytes each way at once,
//! every byte checked: throughput and the longest wait between two reads
//! each way. Then one exchange that moves while it runs: through the relay,
//! direct UDP once the client's router lets UDP out (the server's router
//! forwards its port), the relay again when it drops UDP again, direct
//! again: how long each move took and the rates around it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::measure::Table;
use crate::support::deadline::Deadline;
use crate::support::exchange::{Progress, exchange};
use crate::support::relaybed::{FORWARD, Pair, move_paths};

/// Bytes each way per exchange.
const LEN: usize = 200 << 20;
/// Exchanges in a row.
const RUNS: usize = 10;
/// Bytes each way of the exchange that moves: enough that it still runs
/// when UDP is dropped again (about 10 s after the start at the direct
/// path's 200-260 MB/s; 1 GiB was through by then).
const MOVE_LEN: usize = 3 << 30;

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn run() {
    let pair = Pair::start();
    let path = pair.path().unwrap_or_else(|| "?".to_owned());
    let mut table = Table::new(1, &["exchange", "path", "down MB/s", "longest gap down", "up MB/s", "longest gap up"]);
    for run in 0..RUNS {
        let x = pair.exchange(LEN, LEN, Duration::from_secs(600), Arc::new(Progress::default()));
        table.row(vec![
            format!("{} of {} MiB each way", run + 1, LEN >> 20),
            path.clone(),
            format!("{:.1}", x.down.mb_per_s()),
            secs(x.down.longest_gap),
            format!("{:.1}", x.up.mb_per_s()),
            secs(x.up.longest_gap),
        ]);
        eprintln!("relay exchange {run}: {x:?}");
    }
    table.print();

    let progress = Arc::new(Progress::default());
    let finished = AtomicBool::new(false);
    let (x, moves) = std::thread::scope(|scope| {
        let mover = scope.spawn(|| move_paths(&pair.bed.client, &pair.bed.client_router.netns, &progress, &finished));
        let x = exchange(
            &pair.bed.client,
            FORWARD.parse().unwrap(),
            &pair.source,
            MOVE_LEN,
            MOVE_LEN,
            Deadline::after(Duration::from_secs(900)),
            Arc::clone(&progress),
        );
        finished.store(true, Ordering::Relaxed);
        (x, mover.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    let x = x.unwrap_or_else(|e| panic!("{e}\n{}", pair.logs()));
    let moves = moves.unwrap_or_else(|e| panic!("{e}\n{}", pair.logs()));
    let mut table = Table::new(1, &["moving exchange", "value"]);
    let mbs = |r: f64| format!("{:.1} MB/s", r / 1e6);
    table.row(vec!["down through the relay before the move".into(), mbs(moves.relay_rate)]);
    table.row(vec!["UDP let out: status says udp after".into(), secs(moves.direct_after)]);
    table.row(vec!["down, 2-4 s after going direct".into(), mbs(moves.direct_rate)]);
    table.row(vec!["down, 4-6 s after going direct".into(), mbs(moves.direct_later)]);
    let when = if moves.busy_at_cut { "mid-transfer" } else { "idle session" };
    table.row(vec![format!("UDP dropped again ({when}): status says tcp after"), secs(moves.relay_again_after)]);
    table.row(vec![
        format!("{} MiB each way, intact: longest gap down / up", MOVE_LEN >> 20),
        format!("{} / {}", secs(x.down.longest_gap), secs(x.up.longest_gap)),
    ]);
    table.print();
}
