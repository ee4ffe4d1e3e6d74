//! `wan`: TCP through a port forward across an emulated long link
//! (tests/support/linkem.rs, tests/support/wan.rs): a client namespace and a
//! server namespace joined by a link with a one-way delay, random loss, a
//! rate limit and a drop-tail queue per direction.
//!
//! ```text
//!  client namespace                               server namespace
//!  tuntox -L client, ssh -L,   <== link ==>   tuntox server, tox-bootstrapd,
//!  this bench's connections                   sshd, source/sink/echo on 127.0.0.1
//! ```
//!
//! For each profile (`scripts/bench wan PROFILE...` runs some; no name runs
//! all, then the scenarios): a fresh `tuntox -L` client, which must be on
//! direct UDP to the server before it is measured, then `ssh -L` over CUBIC
//! and over BBR (the congestion control set on the routes between the
//! namespaces before ssh connects, and checked with `ss` at both ends). On each: [`LEN`] down while
//! one-byte round trips run on a second connection through the same
//! forward (latency under load), then [`LEN`] up; every byte is checked;
//! each transfer is capped at [`CAP`] (then the bytes so far count). CPU is
//! the forwarding processes' (tuntox server and client; ssh and every sshd).
//!
//! Scenarios, on the 40 ms, 100 Mbit/s, 4-BDP link: two `tuntox -L`
//! clients downloading at once (each one's share), a `tuntox -L` download
//! against an iperf3 CUBIC download (the share), and the rate halved in the
//! middle of a download (how long the rate takes to settle; data intact).

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::measure::{Table, median, percentile};
use crate::support::deadline::{Deadline, now};
use crate::support::linkem::{LinkConfig, LinkStats};
use crate::support::netns::{ChildGuard, Netns};
use crate::support::tuntox::Tuntox;
use crate::support::wan::{DOWN, SERVER_ADDR, UP, WanBed, status_reports};
use crate::tcp::{self, Route, SOURCE, Sshd, Transfer, processes_named, serve, try_measured};

/// Bytes down and up per path and profile.
const LEN: u64 = 20 << 20;
/// Longest one transfer may take; beyond it the bytes so far count.
const CAP: Duration = Duration::from_secs(30);
/// Round trips measured on the idle link.
const IDLE_SAMPLES: usize = 10;
/// How long a client may take to reach the server on direct UDP.
const CONNECT: Duration = Duration::from_secs(90);
/// Length of each scenario's downloads, and the part at its start left out of shares.
const SCENARIO: Duration = Duration::from_secs(20);
const SCENARIO_SKIP: Duration = Duration::from_secs(5);
/// When the rate halves in the halving scenario.
const HALVE_AT: Duration = Duration::from_secs(8);

/// Where the forwarders listen; each maps `base + i` to `SOURCE + i`.
const TUNTOX_BASE: u16 = 7201;
const SSH_BASE: u16 = 7101;
const TUNTOX_BASE_2: u16 = 7301;

/// A link setting, the same both ways.
#[derive(Debug, Clone, Copy)]
struct Profile {
    name: &'static str,
    rtt_ms: f64,
    /// 0: unlimited (and no queue).
    mbit: f64,
    /// Per cent, each way.
    loss: f64,
    /// Queue in bandwidth-delay products.
    queue_bdp: f64,
}

const fn profile(name: &'static str, rtt_ms: f64, mbit: f64, loss: f64, queue_bdp: f64) -> Profile {
    Profile { name, rtt_ms, mbit, loss, queue_bdp }
}

/// Every round trip (2, 10, 40, 200 ms), rate (10, 100, 1000 Mbit/s,
/// unlimited), loss (0, 0.1, 1, 3 %) and queue (0.5, 4 BDP) at least once.
const PROFILES: &[Profile] = &[
    profile("2ms-1G", 2.0, 1000.0, 0.0, 4.0),
    profile("2ms-inf", 2.0, 0.0, 0.0, 0.0),
    profile("10ms-10M-q0.5", 10.0, 10.0, 0.0, 0.5),
    profile("10ms-100M", 10.0, 100.0, 0.0, 4.0),
    profile("10ms-inf", 10.0, 0.0, 0.0, 0.0),
    profile("40ms-10M", 40.0, 10.0, 0.0, 4.0),
    profile("40ms-100M", 40.0, 100.0, 0.0, 4.0),
    profile("40ms-100M-q0.5", 40.0, 100.0, 0.0, 0.5),
    profile("40ms-100M-0.1%", 40.0, 100.0, 0.1, 4.0),
    profile("40ms-100M-1%", 40.0, 100.0, 1.0, 4.0),
    profile("40ms-100M-3%", 40.0, 100.0, 3.0, 4.0),
    profile("40ms-1G", 40.0, 1000.0, 0.0, 4.0),
    profile("40ms-inf", 40.0, 0.0, 0.0, 0.0),
    profile("200ms-100M", 200.0, 100.0, 0.0, 4.0),
    profile("200ms-100M-0.1%", 200.0, 100.0, 0.1, 4.0),
    profile("200ms-10M-1%-q0.5", 200.0, 10.0, 1.0, 0.5),
];

/// The scenarios' link.
const SCENARIO_LINK: Profile = profile("40ms-100M", 40.0, 100.0, 0.0, 4.0);
const SCENARIOS: &[&str] = &["two-flows", "vs-cubic", "halving"];

impl Profile {
    fn rtt(&self) -> Duration {
        Duration::from_secs_f64(self.rtt_ms / 1e3)
    }

    fn config(&self) -> LinkConfig {
        let config = LinkConfig::ideal().delay(self.rtt() / 2).loss(self.loss / 100.0);
        if self.mbit == 0.0 { config } else { config.rate_mbit(self.mbit).queue_bdp(self.queue_bdp, self.rtt()) }
    }

    fn describe(&self) -> String {
        let rate = if self.mbit == 0.0 { "no rate limit".to_owned() } else { format!("{} Mbit/s", self.mbit) };
        let queue = if self.mbit == 0.0 { String::new() } else { format!(", {} BDP queue", self.queue_bdp) };
        let loss = if self.loss == 0.0 { String::new() } else { format!(", {} % loss each way", self.loss) };
        format!("{} ms RTT, {rate}{queue}{loss}", self.rtt_ms)
    }
}

/// One path's figures on one profile.
#[derive(Debug)]
struct PathResult {
    name: String,
    down: Result<Transfer, String>,
    up: Result<Transfer, String>,
    idle_ms: Vec<f64>,
    loaded_ms: Vec<f64>,
    /// The last loaded round trip did not come back within [`CAP`] (its sample is that long).
    probe_timed_out: bool,
}

impl PathResult {
    fn transfers(&self) -> impl Iterator<Item = &Transfer> {
        self.down.iter().chain(self.up.iter())
    }

    fn cpu_ms_per_mb(&self) -> f64 {
        let (cpu, bytes) = self.transfers().fold((0.0, 0), |(c, b), t| (c + t.cpu, b + t.bytes));
        cpu * 1e3 / (bytes as f64 / 1e6).max(1e-9)
    }

    /// MB/s of the slower direction (0 when one failed).
    fn slower(&self) -> f64 {
        let rate = |t: &Result<Transfer, String>| t.as_ref().map_or(0.0, Transfer::mb_per_s);
        rate(&self.down).min(rate(&self.up))
    }
}

pub fn run(args: &[String]) {
    let (profiles, scenarios) = select(args);
    let began = now();
    println!(
        "wan: per profile, {} MB down (with 1-byte round trips on a second connection meanwhile) and {} MB up \
         through tuntox -L and ssh -L over CUBIC and BBR; each transfer capped at {} s; every byte checked",
        LEN >> 20,
        LEN >> 20,
        CAP.as_secs()
    );
    let first = profiles.first().map_or(SCENARIO_LINK, |p| *p);
    let mut bed = WanBed::new("benchwan", first.config());
    serve(&bed.server_ns);
    let sshd = Sshd::start(&bed.server_ns, SERVER_ADDR);
    let default_cc = congestion_control(&bed.server_ns);
    println!("kernel default congestion control: {default_cc}");
    println!();

    let mut results = Vec::new();
    for profile in &profiles {
        eprintln!("== {}: {}", profile.name, profile.describe());
        results.push((*profile, run_profile(&mut bed, &sshd, profile)));
        bed.set_congestion_control(None);
    }
    if !results.is_empty() {
        report(&results);
    }
    for scenario in &scenarios {
        bed.link.set_both(SCENARIO_LINK.config());
        println!();
        match *scenario {
            "two-flows" => two_flows(&mut bed),
            "vs-cubic" => vs_cubic(&mut bed),
            "halving" => halving(&mut bed, &sshd),
            other => unreachable!("unknown scenario {other}"),
        }
        bed.set_congestion_control(None);
    }
    println!();
    println!("whole run: {:.1} min", began.elapsed().as_secs_f64() / 60.0);
}

/// The profiles and scenarios named in `args` (all when none); exits with
/// the list of names on an unknown one.
fn select(args: &[String]) -> (Vec<Profile>, Vec<&'static str>) {
    if args.is_empty() {
        return (PROFILES.to_vec(), SCENARIOS.to_vec());
    }
    let (mut profiles, mut scenarios) = (Vec::new(), Vec::new());
    for arg in args {
        if let Some(p) = PROFILES.iter().find(|p| p.name == arg) {
            profiles.push(*p);
        } else if let Some(s) = SCENARIOS.iter().find(|s| *s == arg) {
            scenarios.push(*s);
        } else {
            eprintln!("wan: unknown profile or scenario {arg:?}\n\nprofiles:");
            for p in PROFILES {
                eprintln!("  {:<18} {}", p.name, p.describe());
            }
            eprintln!("scenarios (on {}): {}", SCENARIO_LINK.describe(), SCENARIOS.join(", "));
            std::process::exit(2);
        }
    }
    (profiles, scenarios)
}

fn run_profile(bed: &mut WanBed, sshd: &Sshd, profile: &Profile) -> Vec<PathResult> {
    bed.link.set_both(profile.config());
    let mut results = Vec::new();

    let started = Deadline::after(CONNECT);
    let mut client = tuntox_client(bed, &format!("client {}", profile.name), TUNTOX_BASE);
    bed.wait_direct(&mut client, started.left());
    eprintln!("tuntox client on direct UDP {:.1} s after start", started.elapsed().as_secs_f64());
    let (server_pid, client_pid) = (bed.server.pid(), client.pid());
    let route = Route { name: "tuntox -L", base: TUNTOX_BASE, pids: Box::new(move || vec![server_pid, client_pid]) };
    let logs = || {
        for (who, log) in [("client", client.log()), ("server", bed.server.log())] {
            let tail = &log[log.len().saturating_sub(20)..];
            eprintln!("tuntox {who}'s last log lines:\n{}", tail.join("\n"));
        }
        for (who, netns, pid) in [("client", &bed.client_ns, client_pid), ("server", &bed.server_ns, server_pid)] {
            let reports = status_reports(netns);
            let report = reports.iter().find(|r| r["pid"] == pid);
            let field = |f: &str| report.map_or(Value::Null, |r| r[f].clone());
            eprintln!("tuntox {who}'s status: tunnels open {}, counters {}", field("tunnels_open"), field("counters"));
        }
    };
    results.push(measure_path(bed, &route, "tuntox -L", &logs));
    drop(client);

    for cc in ["cubic", "bbr"] {
        bed.set_congestion_control(Some(cc));
        let ssh = sshd.forward(&bed.client_ns, SSH_BASE);
        check_ssh_congestion_control(bed, cc);
        let ssh_pid = ssh.id();
        let server_ns = bed.server_ns.name().to_owned();
        let route = Route {
            name: "ssh -L",
            base: SSH_BASE,
            pids: Box::new(move || {
                let mut pids = processes_named(&server_ns, "sshd");
                pids.push(ssh_pid);
                pids
            }),
        };
        results.push(measure_path(bed, &route, &format!("ssh -L {cc}"), &|| {}));
    }
    results
}

/// A tuntox client with forwards from `base + i` to the services.
fn tuntox_client(bed: &mut WanBed, label: &str, base: u16) -> Tuntox {
    let forwards: Vec<String> = (0..3).map(|i| format!("{}:127.0.0.1:{}", base + i, SOURCE + i)).collect();
    bed.client(label, &["-L", &forwards[0], "-L", &forwards[1], "-L", &forwards[2]])
}

/// Idle round trips, the download with round trips meanwhile, the upload.
/// `on_failure` shows what the forwarder logged when a transfer fails.
fn measure_path(bed: &WanBed, route: &Route, name: &str, on_failure: &dyn Fn()) -> PathResult {
    let netns = &bed.client_ns;
    let mut echo = tcp::echo(netns, route.base + 2);
    echo.set_read_timeout(Some(CAP)).expect("a read timeout");
    let (idle_ms, failed) = tcp::round_trips(&mut echo, IDLE_SAMPLES, || true);
    assert!(!failed, "{name}: an idle round trip took over {CAP:?}");
    bed.link.reset_peaks();
    let (down_link, up_link) = (bed.link.stats(DOWN), bed.link.stats(UP));
    let kernel_drops = bed.link.device_drops();
    let downloading = AtomicBool::new(true);
    let (down, (loaded_ms, probe_timed_out)) = thread::scope(|s| {
        let probe = s.spawn(|| tcp::round_trips(&mut echo, usize::MAX, || downloading.load(Ordering::Relaxed)));
        let down = try_measured(route, || tcp::download(netns, route.base, LEN, CAP, None));
        downloading.store(false, Ordering::Relaxed);
        (down, probe.join().expect("the round-trip probe"))
    });
    let up = try_measured(route, || tcp::upload(netns, route.base + 1, LEN, CAP));
    for failure in [&down, &up].into_iter().filter_map(|t| t.as_ref().err()) {
        eprintln!("{name}: FAILED: {failure}");
        on_failure();
    }
    let result = PathResult { name: name.to_owned(), down, up, idle_ms, loaded_ms, probe_timed_out };
    eprintln!(
        "{name}: down {}, up {}, round trip idle {:.1} ms, loaded {:.1} / p99 {:.1} ms ({} samples{}); link down: \
         {}; up: {}; dropped by the kernel before the emulator: {:?}",
        rate_cell(&result.down),
        rate_cell(&result.up),
        median(&result.idle_ms),
        median(&result.loaded_ms),
        percentile(&result.loaded_ms, 99.0),
        result.loaded_ms.len(),
        if probe_timed_out { ", the last timed out" } else { "" },
        link_delta(&down_link, &bed.link.stats(DOWN)),
        link_delta(&up_link, &bed.link.stats(UP)),
        bed.link.device_drops().iter().zip(kernel_drops).map(|(a, b)| a - b).collect::<Vec<_>>(),
    );
    result
}

/// MB/s of a transfer, "(c)" when capped, or "failed".
fn rate_cell(transfer: &Result<Transfer, String>) -> String {
    match transfer {
        Ok(t) => format!("{:.2}{}", t.mb_per_s(), if t.capped { " (c)" } else { "" }),
        Err(_) => "failed".to_owned(),
    }
}

/// What the link did between two snapshots, in a few words.
fn link_delta(before: &LinkStats, after: &LinkStats) -> String {
    format!(
        "{} packets, {} lost, {} queue drops, {} overflow, max queue {} kB, max lateness {:?}",
        after.forwarded - before.forwarded,
        after.lost - before.lost,
        after.queue_drops - before.queue_drops,
        after.overflow_drops - before.overflow_drops,
        after.max_queue_bytes / 1000,
        after.max_late,
    )
}

/// The namespace's default TCP congestion control.
fn congestion_control(netns: &Netns) -> String {
    // /proc/sys/net shows the namespace of the thread that opens it.
    let text = netns.run_in(|| std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control"));
    text.expect("read net.ipv4.tcp_congestion_control").trim().to_owned()
}

/// Checks with `ss` that both ends of the ssh connection run `cc`.
fn check_ssh_congestion_control(bed: &WanBed, cc: &str) {
    let port = tcp::SSHD_PORT.to_string();
    for (netns, filter) in [(&bed.client_ns, "dport"), (&bed.server_ns, "sport")] {
        let out = netns.exec(&["ss", "-Htin", "state", "established", filter, "=", &format!(":{port}")]);
        let text = String::from_utf8_lossy(&out.stdout);
        let others = ["cubic", "bbr", "reno"].into_iter().filter(|o| *o != cc);
        assert!(
            text.contains(cc) && others.clone().all(|o| !text.contains(o)),
            "ssh's connection in {} should run {cc}: {text}",
            netns.name()
        );
    }
}

fn report(results: &[(Profile, Vec<PathResult>)]) {
    println!(
        "Per path: MB/s down and up ((c): capped at {} s, bytes so far), 1-byte round trip idle and",
        CAP.as_secs()
    );
    println!(
        "during the download (median, p99; >: a round trip still out after {} s), CPU of the forwarding",
        CAP.as_secs()
    );
    println!("processes per MB moved:");
    println!();
    let mut table = Table::new(
        2,
        &["profile", "path", "down MB/s", "up MB/s", "RTT idle ms", "RTT loaded ms", "loaded p99 ms", "CPU ms/MB"],
    );
    for (profile, paths) in results {
        for (i, path) in paths.iter().enumerate() {
            table.row(vec![
                if i == 0 { profile.name.to_owned() } else { String::new() },
                path.name.clone(),
                rate_cell(&path.down),
                rate_cell(&path.up),
                format!("{:.1}", median(&path.idle_ms)),
                format!("{:.1}", median(&path.loaded_ms)),
                format!("{}{:.1}", if path.probe_timed_out { ">" } else { "" }, percentile(&path.loaded_ms, 99.0)),
                format!("{:.1}", path.cpu_ms_per_mb()),
            ]);
        }
    }
    table.print();

    println!();
    println!("tuntox -L against the link and ssh -L (the slower of down and up), and the targets:");
    println!("rate-limited without loss >= 0.9x the bottleneck; with loss, and at 200 ms, >= 1.0x ssh -L");
    println!("(CUBIC and BBR); loaded p99 <= base RTT + 30 ms with a 4-BDP queue.");
    println!();
    let mut table = Table::new(
        2,
        &["profile", "link", "tuntox MB/s", "x bottleneck", "x ssh CUBIC", "x ssh BBR", "p99 - base ms", "targets"],
    );
    let mut missed = 0;
    for (profile, paths) in results {
        let slower = PathResult::slower;
        let (ours, cubic, bbr) = (&paths[0], &paths[1], &paths[2]);
        let x_link = (profile.mbit > 0.0).then(|| slower(ours) / (profile.mbit / 8.0));
        // No ratio against a reference whose transfer failed.
        let against = |theirs: &PathResult| (slower(theirs) > 0.0).then(|| slower(ours) / slower(theirs));
        let (x_cubic, x_bbr) = (against(cubic), against(bbr));
        let excess = percentile(&ours.loaded_ms, 99.0) - profile.rtt_ms;
        let mut verdicts = Vec::new();
        if let Some(x) = x_link.filter(|_| profile.loss == 0.0) {
            verdicts.push(if x >= 0.9 { "rate met" } else { "rate MISSED" });
        }
        if profile.loss > 0.0 || profile.rtt_ms >= 200.0 {
            let met = [x_cubic, x_bbr].into_iter().flatten().all(|x| x >= 1.0);
            verdicts.push(if met { "vs ssh met" } else { "vs ssh MISSED" });
        }
        if profile.mbit > 0.0 && profile.queue_bdp >= 4.0 {
            verdicts.push(if excess <= 30.0 { "latency met" } else { "latency MISSED" });
        }
        missed += verdicts.iter().filter(|v| v.ends_with("MISSED")).count();
        table.row(vec![
            profile.name.to_owned(),
            profile.describe(),
            format!("{:.2}", slower(ours)),
            x_link.map_or("-".to_owned(), |x| format!("{x:.2}")),
            x_cubic.map_or("-".to_owned(), |x| format!("{x:.2}")),
            x_bbr.map_or("-".to_owned(), |x| format!("{x:.2}")),
            format!("{excess:.0}"),
            verdicts.join(", "),
        ]);
    }
    table.print();
    println!();
    println!("targets missed: {missed}");
}

/// Starts a tuntox client with forwards from `base`, waits for direct UDP.
fn direct_client(bed: &mut WanBed, label: &str, base: u16) -> Tuntox {
    let mut client = tuntox_client(bed, label, base);
    bed.wait_direct(&mut client, CONNECT);
    client
}

/// Cumulative bytes of several downloads, sampled every 100 ms while they run.
struct Timeline {
    /// (seconds since the start, bytes of each download so far).
    samples: Vec<(f64, Vec<u64>)>,
}

impl Timeline {
    /// Bytes per second of download `i` between `from` and `to` seconds.
    fn rate(&self, i: usize, from: f64, to: f64) -> f64 {
        let at = |t: f64| {
            self.samples
                .iter()
                .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
                .map_or((t, 0), |(s, b)| (*s, b[i]))
        };
        let ((t0, b0), (t1, b1)) = (at(from), at(to));
        (b1.saturating_sub(b0)) as f64 / (t1 - t0).max(1e-9)
    }

    fn end(&self) -> f64 {
        self.samples.last().map_or(0.0, |s| s.0)
    }
}

/// Runs `downloads` (each given its progress counter) while sampling their progress.
fn timeline(counters: &[AtomicU64], downloads: impl FnOnce() + Send) -> Timeline {
    let start = now();
    let done = AtomicBool::new(false);
    let mut samples = Vec::new();
    thread::scope(|s| {
        s.spawn(|| {
            downloads();
            done.store(true, Ordering::Relaxed);
        });
        while !done.load(Ordering::Relaxed) {
            samples.push((start.elapsed().as_secs_f64(), counters.iter().map(|c| c.load(Ordering::Relaxed)).collect()));
            thread::sleep(Duration::from_millis(100));
        }
    });
    samples.push((start.elapsed().as_secs_f64(), counters.iter().map(|c| c.load(Ordering::Relaxed)).collect()));
    Timeline { samples }
}

/// A download of [`SCENARIO`] from the source behind `port`, counted in `progress`.
fn timed_download(netns: &Netns, port: u16, progress: &AtomicU64) {
    if let Err(e) = tcp::download(netns, port, u64::MAX / 2, SCENARIO, Some(progress)) {
        println!("FAILED: {e}");
    }
}

fn two_flows(bed: &mut WanBed) {
    println!(
        "two-flows: two tuntox -L clients download at once for {} s on {}; shares after the first {} s:",
        SCENARIO.as_secs(),
        SCENARIO_LINK.describe(),
        SCENARIO_SKIP.as_secs()
    );
    let _one = direct_client(bed, "two-flows 1", TUNTOX_BASE);
    let _two = direct_client(bed, "two-flows 2", TUNTOX_BASE_2);
    let counters = [AtomicU64::new(0), AtomicU64::new(0)];
    let netns = &bed.client_ns;
    let line = timeline(&counters, || {
        thread::scope(|s| {
            s.spawn(|| timed_download(netns, TUNTOX_BASE, &counters[0]));
            s.spawn(|| timed_download(netns, TUNTOX_BASE_2, &counters[1]));
        });
    });
    let (from, to) = (SCENARIO_SKIP.as_secs_f64(), line.end());
    let rates = [line.rate(0, from, to), line.rate(1, from, to)];
    share_table(&[("tuntox -L client 1", rates[0]), ("tuntox -L client 2", rates[1])]);
}

fn vs_cubic(bed: &mut WanBed) {
    println!(
        "vs-cubic: a tuntox -L download against an iperf3 download over CUBIC, {} s at once on {}; shares after \
         the first {} s:",
        SCENARIO.as_secs(),
        SCENARIO_LINK.describe(),
        SCENARIO_SKIP.as_secs()
    );
    let _client = direct_client(bed, "vs-cubic", TUNTOX_BASE);
    bed.set_congestion_control(Some("cubic"));
    let server = bed
        .server_ns
        .command("iperf3")
        .args(["-s", "-1", "-B", &SERVER_ADDR.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 (scripts/bench installs it)");
    let _server = ChildGuard::new(server, "iperf3 -s");
    thread::sleep(Duration::from_millis(300));
    let counters = [AtomicU64::new(0)];
    let netns = &bed.client_ns;
    let secs = SCENARIO.as_secs().to_string();
    let mut json = Value::Null;
    let line = timeline(&counters, || {
        thread::scope(|s| {
            let iperf = s.spawn(|| {
                netns
                    .command("iperf3")
                    .args(["-c", &SERVER_ADDR.to_string(), "-R", "-C", "cubic", "-J", "-t", &secs])
                    .stdin(Stdio::null())
                    .output()
                    .expect("iperf3 -c")
            });
            timed_download(netns, TUNTOX_BASE, &counters[0]);
            let out = iperf.join().expect("iperf3 -c");
            json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        });
    });
    let intervals = json["intervals"].as_array().cloned().unwrap_or_default();
    let skip = SCENARIO_SKIP.as_secs_f64();
    let (bytes, secs): (f64, f64) = intervals
        .iter()
        .filter(|i| i["sum"]["start"].as_f64().is_some_and(|s| s >= skip - 0.01))
        .map(|i| (i["sum"]["bytes"].as_f64().unwrap_or(0.0), i["sum"]["seconds"].as_f64().unwrap_or(0.0)))
        .fold((0.0, 0.0), |(b, s), (bi, si)| (b + bi, s + si));
    let used = json["end"]["sender_tcp_congestion"].as_str().unwrap_or("?").to_owned();
    if intervals.is_empty() {
        println!("iperf3 gave no result: {}", json["error"]);
        return;
    }
    let ours = line.rate(0, skip, line.end());
    share_table(&[("tuntox -L", ours), (&format!("iperf3 ({used})"), bytes / secs.max(1e-9))]);
}

fn share_table(flows: &[(&str, f64)]) {
    let total: f64 = flows.iter().map(|f| f.1).sum();
    let mut table = Table::new(1, &["flow", "MB/s", "share"]);
    for (name, rate) in flows {
        table.row(vec![(*name).to_owned(), format!("{:.2}", rate / 1e6), format!("{:.0} %", rate / total * 100.0)]);
    }
    table.row(vec![
        "together".to_owned(),
        format!("{:.2}", total / 1e6),
        format!("{:.0} % of the link", total * 8.0 / (SCENARIO_LINK.mbit * 1e6) * 100.0),
    ]);
    table.print();
}

fn halving(bed: &mut WanBed, sshd: &Sshd) {
    println!(
        "halving: a {} s download on {}; at {} s the rate halves (the queue keeps its bytes). Rate before \
         (from {} s), after (last 5 s), and when the 0.5-s rates stay within 25 % of the rate after; every byte checked:",
        SCENARIO.as_secs(),
        SCENARIO_LINK.describe(),
        HALVE_AT.as_secs(),
        (HALVE_AT - Duration::from_secs(5)).as_secs()
    );
    let full = SCENARIO_LINK.config();
    let half = full.rate_mbit(SCENARIO_LINK.mbit / 2.0);
    let mut table = Table::new(
        1,
        &["path", "before MB/s", "after MB/s", "settled after s", "queue drops after", "max queue after kB"],
    );
    let mut run = |name: &str, bed: &WanBed, base: u16| {
        bed.link.set_both(full);
        let counters = [AtomicU64::new(0)];
        let netns = &bed.client_ns;
        let link = &bed.link;
        let mut at_cut = LinkStats::default();
        let line = timeline(&counters, || {
            thread::scope(|s| {
                s.spawn(|| {
                    thread::sleep(HALVE_AT);
                    link.set_both(half);
                    link.reset_peaks();
                    at_cut = link.stats(DOWN);
                });
                timed_download(netns, base, &counters[0]);
            });
        });
        link.set_both(full);
        let at_end = link.stats(DOWN);
        let cut = HALVE_AT.as_secs_f64();
        let end = line.end();
        let before = line.rate(0, cut - 5.0, cut);
        let after = line.rate(0, end - 5.0, end);
        // The last half-second window outside 25 % of the rate after.
        let mut settled = 0.0;
        let mut t = cut;
        while t + 0.5 <= end {
            let r = line.rate(0, t, t + 0.5);
            if (r - after).abs() > 0.25 * after {
                settled = t + 0.5 - cut;
            }
            t += 0.5;
        }
        table.row(vec![
            name.to_owned(),
            format!("{:.2}", before / 1e6),
            format!("{:.2}", after / 1e6),
            format!("{settled:.1}"),
            (at_end.queue_drops - at_cut.queue_drops).to_string(),
            (at_end.max_queue_bytes / 1000).to_string(),
        ]);
    };
    {
        let client = direct_client(bed, "halving", TUNTOX_BASE);
        run("tuntox -L", bed, TUNTOX_BASE);
        drop(client);
    }
    for cc in ["cubic", "bbr"] {
        bed.set_congestion_control(Some(cc));
        let _ssh = sshd.forward(&bed.client_ns, SSH_BASE);
        check_ssh_congestion_control(bed, cc);
        run(&format!("ssh -L {cc}"), bed, SSH_BASE);
    }
    bed.set_congestion_control(None);
    table.print();
}
