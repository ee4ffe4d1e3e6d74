//! `forward`: TCP through a local port forward, three ways in one
//! namespace: plain loopback (no forwarder, the ceiling), `ssh -L` (an
//! sshd started here with temporary keys) and `tuntox -L` (a tuntox server
//! and client, release build, over a namespaced tox-bootstrapd).
//!
//! Services in this process, inside the namespace (benches/net/tcp.rs): a
//! source (send the number of bytes asked for, then close), a sink (read to
//! the end, answer with the byte count) and an echo. Every byte is checked against a
//! pattern. Upload and download move [`LEN`] bytes on one connection; the
//! parallel test downloads `LEN / 8` on each of 8 connections at once; the
//! round trip is one byte echoed, [`RTT_SAMPLES`] times, with `TCP_NODELAY`.
//! Rounds alternate between the paths. CPU is the forwarding processes'
//! (ssh and every sshd; tuntox server and client) from /proc, per test.

use std::net::SocketAddr;
use std::time::Duration;

use crate::measure::{Table, cpu_total, median, percentile, spread};
use crate::support::deadline::Deadline;
use crate::support::e2e::{Fixture, wait_client_connected};
use crate::support::netns::Netns;
use crate::tcp::{self, Route, SOURCE, Sshd, Transfer, measured, processes_named, serve};

/// Bytes per upload or download, and in total across the parallel connections.
const LEN: u64 = 200 << 20;
/// Parallel connections.
const PARALLEL: u64 = 8;
/// Rounds of the throughput tests.
const ROUNDS: usize = 3;
/// Longest one throughput test may take; beyond it the bytes so far count.
const CAP: Duration = Duration::from_secs(10);
/// One-byte round trips measured per path (after [`RTT_WARMUP`]), unless [`RTT_CAP`] comes first.
const RTT_SAMPLES: usize = 5000;
const RTT_WARMUP: usize = 200;
const RTT_CAP: Duration = Duration::from_secs(10);

/// Where the forwarders listen; each maps `base + i` to `SOURCE + i`.
const SSH_BASE: u16 = 7101;
const TUNTOX_BASE: u16 = 7201;

#[derive(Debug, Default)]
struct Results {
    upload: Vec<Transfer>,
    download: Vec<Transfer>,
    parallel: Vec<Transfer>,
    rtt_ms: Vec<f64>,
    rtt_cpu: f64,
}

pub fn run() {
    println!(
        "forward: {} MB up and down on one connection, {PARALLEL} x {} MB down in parallel, {ROUNDS} rounds \
         (median (min-max), each test capped at {} s); 1-byte round trips",
        LEN >> 20,
        (LEN / PARALLEL) >> 20,
        CAP.as_secs()
    );
    let mut fx = Fixture::new("benchfwd", &[]);
    serve(&fx.netns);

    let sshd = Sshd::start(&fx.netns, std::net::Ipv4Addr::LOCALHOST);
    let ssh = sshd.forward(&fx.netns, SSH_BASE);
    let ssh_pid = ssh.id();

    let started = Deadline::after(Duration::from_secs(60));
    let forwards: Vec<String> = (0..3).map(|i| format!("{}:127.0.0.1:{}", TUNTOX_BASE + i, SOURCE + i)).collect();
    let mut client = fx.client("bench client", &["-L", &forwards[0], "-L", &forwards[1], "-L", &forwards[2]]);
    wait_client_connected(&mut client, started.left());
    let connect_secs = started.elapsed().as_secs_f64();
    let first_byte = {
        let mut echo = fx.connect(SocketAddr::from(([127, 0, 0, 1], TUNTOX_BASE + 2)), Duration::from_secs(10));
        tcp::round_trip(&mut echo, &mut [0u8; 1]);
        started.elapsed().as_secs_f64()
    };
    println!(
        "tuntox client: connected to the server {connect_secs:.1} s after start, first byte echoed at \
         {first_byte:.1} s"
    );
    println!();

    let netns_name = fx.netns.name().to_owned();
    let (server_pid, client_pid) = (fx.server.pid(), client.pid());
    let paths = [
        Route { name: "loopback", base: SOURCE, pids: Box::new(Vec::new) },
        Route {
            name: "ssh -L",
            base: SSH_BASE,
            pids: Box::new(move || {
                let mut pids = processes_named(&netns_name, "sshd");
                pids.push(ssh_pid);
                pids
            }),
        },
        Route { name: "tuntox -L", base: TUNTOX_BASE, pids: Box::new(move || vec![server_pid, client_pid]) },
    ];
    let netns = &fx.netns;
    let mut results: Vec<Results> = paths.iter().map(|_| Results::default()).collect();
    for round in 0..ROUNDS {
        for (path, result) in paths.iter().zip(&mut results) {
            let up = measured(path, || tcp::upload(netns, path.base + 1, LEN, CAP).unwrap_or_else(|e| panic!("{e}")));
            let down =
                measured(path, || tcp::download(netns, path.base, LEN, CAP, None).unwrap_or_else(|e| panic!("{e}")));
            let par = measured(path, || tcp::parallel(netns, path.base, PARALLEL, LEN, CAP));
            eprintln!(
                "round {}: {}: up {:.1} MB/s, down {:.1} MB/s, {PARALLEL} parallel {:.1} MB/s",
                round + 1,
                path.name,
                up.mb_per_s(),
                down.mb_per_s(),
                par.mb_per_s()
            );
            result.upload.push(up);
            result.download.push(down);
            result.parallel.push(par);
        }
    }
    for (path, result) in paths.iter().zip(&mut results) {
        let cpu = cpu_total(&(path.pids)());
        result.rtt_ms = rtt(netns, path.base + 2);
        result.rtt_cpu = cpu_total(&(path.pids)()) - cpu;
    }
    report(&paths, &results);
}

fn report(paths: &[Route], results: &[Results]) {
    let mbs = |t: &[Transfer]| {
        let capped = if t.iter().any(|x| x.capped) { " (capped)" } else { "" };
        format!("{}{capped}", spread(&t.iter().map(Transfer::mb_per_s).collect::<Vec<_>>(), 1))
    };
    let mut table = Table::new(
        1,
        &["path", "upload MB/s", "download MB/s", "8 parallel MB/s", "round trip median ms", "p99 ms", "round trips"],
    );
    for (path, r) in paths.iter().zip(results) {
        table.row(vec![
            path.name.to_owned(),
            mbs(&r.upload),
            mbs(&r.download),
            mbs(&r.parallel),
            format!("{:.3}", median(&r.rtt_ms)),
            format!("{:.3}", percentile(&r.rtt_ms, 99.0)),
            r.rtt_ms.len().to_string(),
        ]);
    }
    table.print();
    println!();
    println!("CPU seconds of the forwarding processes per test, median (CPU ms per MB moved):");
    let cpu = |t: &[Transfer]| {
        let secs: Vec<f64> = t.iter().map(|x| x.cpu).collect();
        let per_mb: Vec<f64> = t.iter().map(Transfer::cpu_ms_per_mb).collect();
        format!("{:.2} ({:.2})", median(&secs), median(&per_mb))
    };
    let mut table = Table::new(2, &["path", "processes", "upload", "download", "8 parallel", "round trips"]);
    for (path, r) in paths.iter().zip(results).skip(1) {
        let processes = if path.base == SSH_BASE { "ssh + sshd" } else { "tuntox server + client" };
        table.row(vec![
            path.name.to_owned(),
            processes.to_owned(),
            cpu(&r.upload),
            cpu(&r.download),
            cpu(&r.parallel),
            format!("{:.2}", r.rtt_cpu),
        ]);
    }
    table.print();

    // The targets: at least ssh -L's throughput, round trip median under 0.5 ms.
    println!();
    let (ssh, ours) = (&results[1], &results[2]);
    let m = |t: &[Transfer]| median(&t.iter().map(Transfer::mb_per_s).collect::<Vec<_>>());
    for (what, a, b) in [
        ("upload", &ours.upload, &ssh.upload),
        ("download", &ours.download, &ssh.download),
        ("8 parallel", &ours.parallel, &ssh.parallel),
    ] {
        let verdict = if m(a) >= m(b) { "met" } else { "MISSED" };
        println!(
            "target {what} >= ssh -L: {verdict} ({:.1} MB/s against {:.1}, {:.2}x)",
            m(a),
            m(b),
            m(a) / m(b).max(1e-9)
        );
    }
    let rtt = median(&ours.rtt_ms);
    println!("target round trip median < 0.5 ms: {} ({rtt:.3} ms)", if rtt < 0.5 { "met" } else { "MISSED" });
}

/// One-byte round trips through the echo service, in milliseconds.
fn rtt(netns: &Netns, port: u16) -> Vec<f64> {
    let mut stream = tcp::echo(netns, port);
    let (_, failed) = tcp::round_trips(&mut stream, RTT_WARMUP, || true);
    let cap = Deadline::after(RTT_CAP);
    let (samples, timed_out) = tcp::round_trips(&mut stream, RTT_SAMPLES, || !cap.passed());
    assert!(!failed && !timed_out, "a round trip through {port} timed out");
    samples
}
