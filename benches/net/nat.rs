//! `nat`: the NAT test bed (tests/support/natbed.rs): a tuntox client and
//! server each behind its own home router, per pair of router kinds: the
//! path they end on, the first byte through `-L`, and [`LEN`] bytes down
//! through the forward, started at once (on whatever path there is then);
//! then, on a fresh bed, how long until the path is direct (their status
//! says `udp`; waited for up to [`DIRECT_WAIT`]) and [`LEN`] bytes started
//! once it is. The same cases with two libtoxcore 0.2.18 peers (the interop
//! test peer): how long until they are connected, on which path, and
//! [`LEN`] bytes of lossless custom packets. Each case runs [`ROUNDS`] times
//! on a fresh bed. `NAT_BENCH=tuntox` (or `libtoxcore`) runs one
//! implementation's rows only.

use std::time::Duration;

use crate::measure::Table;
use crate::support::deadline::Deadline;
use crate::support::natbed::{ForwardRun, NatBed, NatBedConfig, RouterKind, forward_run};
use crate::support::toxpeer::ToxPeer;

/// Bytes moved per case.
const LEN: usize = 20 << 20;
/// Runs per case.
const ROUNDS: usize = 2;
/// Longest one tuntox run may take.
const BUDGET: Duration = Duration::from_secs(120);
/// How long the second run waits for the direct path before its transfer
/// (hole punching's first two attempts take about 10 s after the session
/// came up; the third comes 15 s later).
const DIRECT_WAIT: Duration = Duration::from_secs(30);
/// How long two libtoxcore peers get to connect.
const PEER_BUDGET: Duration = Duration::from_secs(90);
/// How long connected libtoxcore peers then get to go direct.
const PEER_DIRECT_WAIT: Duration = Duration::from_secs(20);
/// The libtoxcore peers' packet size (the largest custom packet).
const PEER_PACKET: usize = 1371;

fn cases() -> Vec<(RouterKind, RouterKind)> {
    vec![
        (RouterKind::Cone, RouterKind::Cone),
        (RouterKind::Cone, RouterKind::RandomPort),
        (RouterKind::RandomPort, RouterKind::RandomPort),
        (RouterKind::UdpBlocked, RouterKind::Cone),
        (RouterKind::Cone, RouterKind::PortForward(33445)),
        (RouterKind::ConeFirewalled, RouterKind::ConeFirewalled),
    ]
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

pub fn run() {
    let mut table = Table::new(
        3,
        &[
            "client / server",
            "implementation",
            "path at end",
            "direct after",
            "first byte",
            "20 MB",
            "longest gap",
            "20 MB once direct",
        ],
    );
    // NAT_BENCH=tuntox or NAT_BENCH=libtoxcore runs one implementation's rows.
    let only = std::env::var("NAT_BENCH").ok();
    let tuntox_rows = only.as_deref().is_none_or(|o| o == "tuntox");
    let peer_rows = only.as_deref().is_none_or(|o| o == "libtoxcore");
    for (client, server) in cases() {
        let case = format!("{} / {}", client.name(), server.name());
        for _ in 0..if tuntox_rows { ROUNDS } else { 0 } {
            // A failed run (a stall past the budget, corrupt bytes) is a row
            // of its own, not the end of the benchmark.
            let run = match run_or_why(client, server, None) {
                Ok(run) => run,
                Err(why) => {
                    eprintln!("{case}: failed: {why}");
                    let first_line = why.lines().next().unwrap_or("?").to_owned();
                    let mut row = vec![case.clone(), "tuntox -L".to_owned(), format!("failed: {first_line}")];
                    row.resize(8, String::new());
                    table.row(row);
                    continue;
                }
            };
            // How long until the path is direct, and the same transfer
            // once it is, on a fresh bed. (The first run may end before
            // the path is direct, or before the status is first read.)
            let (direct_after, direct) = match run_or_why(client, server, Some(DIRECT_WAIT)) {
                Ok(again) => {
                    eprintln!("{case}, once direct: {again:?}");
                    (secs(again.direct), format!("{:.1} MB/s", again.mb_per_s(LEN)))
                }
                Err(why) if why.starts_with("no direct path within") => {
                    (format!("not in {} s", DIRECT_WAIT.as_secs()), String::new())
                }
                Err(why) => (String::new(), format!("failed: {}", why.lines().next().unwrap_or("?"))),
            };
            let path = run.path_at_end.as_ref().and_then(|p| p.path.clone()).unwrap_or_else(|| "?".to_owned());
            let note = run.path_at_end.as_ref().and_then(|p| p.direct_note.clone());
            table.row(vec![
                case.clone(),
                "tuntox -L".to_owned(),
                match note {
                    Some(note) if path != "udp" => format!("{path} ({note})"),
                    _ => path,
                },
                direct_after,
                secs(Some(run.first_byte)),
                format!("{:.1} MB/s", run.mb_per_s(LEN)),
                format!("{:.2} s", run.longest_gap.as_secs_f64()),
                direct,
            ]);
            eprintln!("{case}: {run:?}");
        }
        for _ in 0..if peer_rows { ROUNDS } else { 0 } {
            let bed = NatBed::new(NatBedConfig::new(client, server));
            let (path, connected, direct, rate) = peers(&bed);
            table.row(vec![
                case.clone(),
                "libtoxcore peers".to_owned(),
                path,
                secs(direct),
                secs(connected),
                rate,
                String::new(),
                String::new(),
            ]);
        }
    }
    table.print();
}

/// One `-L` run on a fresh bed, or why it failed (a stall past the
/// budget, corrupt bytes, no direct path in time): a row of its own rather
/// than the end of the benchmark.
fn run_or_why(client: RouterKind, server: RouterKind, direct_first: Option<Duration>) -> Result<ForwardRun, String> {
    std::panic::catch_unwind(|| {
        let bed = NatBed::new(NatBedConfig::new(client, server));
        forward_run(&bed, &[], LEN, direct_first, BUDGET)
    })
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "?".to_owned())
    })
}

/// Two libtoxcore peers on the bed: the client peer befriends the server
/// peer. Returns the path at the end, when they first connected, when they
/// were first on UDP, and the rate of [`LEN`] bytes of lossless packets.
fn peers(bed: &NatBed) -> (String, Option<Duration>, Option<Duration>, String) {
    let mut opts = bed.peer_options("server");
    opts.accept = Some("any".to_owned());
    opts.quiet_packets = true;
    let mut server = ToxPeer::spawn(&bed.server, &opts);
    let mut client = ToxPeer::spawn(&bed.client, &bed.peer_options("client"));
    let deadline = Deadline::after(PEER_BUDGET);
    let friend = client.add_friend(server.address(), "natbed");
    let prefix = format!("friend_connection {friend} ");
    let mut connected = None;
    let mut direct = None;
    let mut path = "none".to_owned();
    let mut deadline_direct = deadline;
    while direct.is_none() && !deadline_direct.passed() {
        let Some(line) = client.try_wait_for(|l| l.starts_with(&prefix), deadline_direct.left()) else { break };
        path = line[prefix.len()..].to_owned();
        if path != "none" && connected.is_none() {
            connected = Some(deadline.elapsed());
            deadline_direct = Deadline::after(PEER_DIRECT_WAIT);
        }
        if path == "udp" {
            direct = Some(deadline.elapsed());
        }
    }
    if connected.is_none() {
        return (path, None, None, "-".to_owned());
    }
    let count = (LEN / PEER_PACKET) as u64;
    let start = Deadline::after(Duration::from_secs(120));
    client.flood(friend, count, PEER_PACKET, false);
    loop {
        let received = server.counts().iter().find(|(k, _)| k == "lossless_rx").map_or(0, |(_, v)| *v);
        if received >= count {
            break;
        }
        if start.passed() {
            return (path, connected, direct, format!("{received} of {count} packets in 120 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rate = (count as usize * PEER_PACKET) as f64 / start.elapsed().as_secs_f64() / 1e6;
    (path, connected, direct, format!("{rate:.1} MB/s"))
}
