//! The relay-path bed: a tuntox client whose router drops its UDP and a
//! server whose router forwards UDP 33445 to it, on the NAT test bed
//! (natbed.rs), with a source behind the server and `-L` on the client;
//! and what moves a transfer between the relay and direct UDP (the client
//! router's rule) while it runs.
//!
//! Everything goes through tox-bootstrapd's TCP relay on the public host
//! until the client's router lets UDP out; then the client can reach the
//! server's forwarded port directly.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use super::deadline::Deadline;
use super::exchange::{Exchange, Progress, Source, exchange};
use super::natbed::{NatBed, NatBedConfig, RouterKind, friend_path};
use super::netns::Netns;
use super::tuntox::Tuntox;

/// Where the source listens in the server's LAN, and the client's forward.
pub const SOURCE: &str = "127.0.0.1:7000";
/// The client's forward.
pub const FORWARD: &str = "127.0.0.1:12000";
const FORWARD_SPEC: &str = "12000:127.0.0.1:7000";

/// A server and a client with `-L` on the bed, connected.
pub struct Pair {
    /// The bed.
    pub bed: NatBed,
    server: Tuntox,
    client: Tuntox,
    /// The source behind the server.
    pub source: Source,
    _dir: tempfile::TempDir,
}

impl Pair {
    /// The bed with the client's UDP blocked and the server's port
    /// forwarded; waits until the client reached the server.
    pub fn start() -> Pair {
        let bed = NatBed::new(NatBedConfig::new(RouterKind::UdpBlocked, RouterKind::PortForward(33445)));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (server, id) = bed.start_server(dir.path(), &[]);
        let source = Source::start(&bed.server, SOURCE.parse().unwrap());
        let mut client = bed.start_client(&id, &["-L", FORWARD_SPEC]);
        client.wait_log(
            "the connection to the server",
            |l| l.contains("connected to the server"),
            Duration::from_secs(90),
        );
        Pair { bed, server, client, source, _dir: dir }
    }

    /// The client's path to the server (`udp` or `tcp`), when online.
    pub fn path(&self) -> Option<String> {
        path_of(&self.bed.client)
    }

    /// Both logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- client log ---\n{}\n--- server log ---\n{}",
            self.client.log().join("\n"),
            self.server.log().join("\n")
        )
    }

    /// `up` and `down` bytes through the forward within `budget`.
    pub fn exchange(&self, up: usize, down: usize, budget: Duration, progress: Arc<Progress>) -> Exchange {
        exchange(&self.bed.client, FORWARD.parse().unwrap(), &self.source, up, down, Deadline::after(budget), progress)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }
}

/// Bytes in MB (10^6).
pub fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// Progress seen while moving the path: (time since it started, bytes
/// down, bytes up), every 50 ms.
pub type Samples = Vec<(Duration, u64, u64)>;

/// Bytes per second down between `from` and `to` (times since the start).
pub fn rate_between(samples: &Samples, from: Duration, to: Duration) -> f64 {
    let at = |t: Duration| samples.iter().take_while(|(s, ..)| *s <= t).last().map_or(0, |&(_, d, _)| d);
    let (a, b) = (at(from), at(to));
    (b.saturating_sub(a)) as f64 / (to - from).as_secs_f64()
}

/// Lets the client's UDP out, or drops it again (its router's rule).
pub fn client_udp(router: &Netns, allowed: bool) {
    let op = if allowed { "-D" } else { "-A" };
    router.exec(&["iptables", "-w", op, "FORWARD", "-i", "lan", "-o", "wan", "-p", "udp", "-j", "DROP"]);
}

/// The client's path to the server, from its status report.
pub fn path_of(client: &Netns) -> Option<String> {
    friend_path(client).filter(|f| f.online).and_then(|f| f.path)
}

/// What the router changes did to a transfer in flight.
#[derive(Debug, Default)]
pub struct Moves {
    /// Down through the relay in the 2 s before UDP was let out, bytes/s.
    pub relay_rate: f64,
    /// From UDP let out to the client's status saying `udp`.
    pub direct_after: Duration,
    /// Down, from 2 to 4 s after the path went direct...
    pub direct_rate: f64,
    /// ...and from 4 to 6 s after.
    pub direct_later: f64,
    /// From UDP dropped again to the status saying `tcp`.
    pub relay_again_after: Duration,
    /// Whether the transfer still ran when UDP was dropped again (else
    /// the session was idle then).
    pub busy_at_cut: bool,
}

/// Changes the client router's UDP rule while a transfer runs and watches
/// the path: relay until 8 MB came down, then UDP let out (direct), 6 s
/// later dropped again (relay), 3 s later let out for good.
pub fn move_paths(client: &Netns, router: &Netns, progress: &Progress, finished: &AtomicBool) -> Result<Moves, String> {
    let clock = Deadline::after(Duration::from_secs(600));
    let samples: Mutex<Samples> = Mutex::default();
    let sample = || {
        let (d, u) = (progress.down.load(Ordering::Relaxed), progress.up.load(Ordering::Relaxed));
        samples.lock().unwrap_or_else(|e| e.into_inner()).push((clock.elapsed(), d, u));
    };
    // Waits until `pred` holds, for at most `limit`; a wait on the
    // transfer (`on_transfer`) also ends, as a failure, when the transfer
    // did. A wait on the path does not: the path moves whether or not
    // anything is in flight (and its failure must not be blamed on a
    // transfer that was simply through).
    let wait_for = |what: &str, limit: Duration, on_transfer: bool, pred: &dyn Fn() -> bool| -> Result<(), String> {
        let deadline = Deadline::after(limit);
        loop {
            sample();
            if pred() {
                return Ok(());
            }
            let down = mb(progress.down.load(Ordering::Relaxed) as usize);
            if deadline.passed() {
                return Err(format!("{what}: not within {limit:?} ({down:.1} MB down)"));
            }
            if on_transfer && finished.load(Ordering::Relaxed) {
                return Err(format!("{what}: the transfer ended first ({down:.1} MB down)"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    };
    let pause = |d: Duration| {
        let until = clock.elapsed() + d;
        // Ends early only when the transfer did.
        let _ = wait_for("a pause", d + Duration::from_secs(1), true, &|| clock.elapsed() >= until);
    };
    let rate =
        |from: Duration, to: Duration| rate_between(&samples.lock().unwrap_or_else(|e| e.into_inner()), from, to);
    let mut moves = Moves::default();
    wait_for("8 MB down through the relay", Duration::from_secs(60), true, &|| {
        progress.down.load(Ordering::Relaxed) >= 8 << 20
    })?;
    let now = clock.elapsed();
    moves.relay_rate = rate(now.saturating_sub(Duration::from_secs(2)), now);
    client_udp(router, true);
    let allowed = clock.elapsed();
    wait_for("direct UDP", Duration::from_secs(30), false, &|| path_of(client).as_deref() == Some("udp"))?;
    let direct_at = clock.elapsed();
    moves.direct_after = direct_at - allowed;
    pause(direct_at + Duration::from_secs(6) - clock.elapsed());
    let s = Duration::from_secs;
    moves.direct_rate = rate(direct_at + s(2), direct_at + s(4));
    moves.direct_later = rate(direct_at + s(4), direct_at + s(6));
    moves.busy_at_cut = !finished.load(Ordering::Relaxed);
    client_udp(router, false);
    let cut = clock.elapsed();
    wait_for("back on the relay", Duration::from_secs(15), false, &|| path_of(client).as_deref() == Some("tcp"))?;
    moves.relay_again_after = clock.elapsed() - cut;
    pause(Duration::from_secs(3));
    client_udp(router, true);
    Ok(moves)
}
