//! `forward`: TCP through a local port forward, three ways in one
//! namespace: plain loopback (no forwarder, the ceiling), `ssh -L` (an
//! sshd started here with temporary keys) and `tuntox -L` (a tuntox server
//! and client, release build, over a namespaced tox-bootstrapd).
//!
//! Services in this process, inside the namespace: a source (send the
//! number of bytes asked for, then close), a sink (read to the end, answer
//! with the byte count) and an echo. Every byte is checked against a
//! pattern. Upload and download move [`LEN`] bytes on one connection; the
//! parallel test downloads `LEN / 8` on each of 8 connections at once; the
//! round trip is one byte echoed, [`RTT_SAMPLES`] times, with `TCP_NODELAY`.
//! Rounds alternate between the paths. CPU is the forwarding processes'
//! (ssh and every sshd; tuntox server and client) from /proc, per test.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use crate::measure::{Table, cpu_total, median, percentile, spread};
use crate::support::deadline::{Deadline, now};
use crate::support::e2e::{Fixture, wait_client_connected};
use crate::support::netns::{ChildGuard, Netns};

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

/// Ports of the services; a forwarder maps `base + i` to `SOURCE + i`.
const SOURCE: u16 = 7001;
const SINK: u16 = 7002;
const ECHO: u16 = 7003;
const SSH_BASE: u16 = 7101;
const TUNTOX_BASE: u16 = 7201;
const SSHD_PORT: u16 = 2200;

/// A period of the test pattern: prime, so it lines up with no buffer size.
const PERIOD: usize = 65521;

/// The pattern twice over, so any `PERIOD` bytes from any offset are one slice.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut x: u32 = 0x9e37_79b9;
        let once: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        once.iter().chain(&once).copied().collect()
    })
}

/// The pattern bytes at stream offset `offset`, at most `PERIOD`.
fn pattern_at(offset: u64, len: usize) -> &'static [u8] {
    let start = (offset % PERIOD as u64) as usize;
    &pattern()[start..start + len.min(PERIOD)]
}

/// One way through (a route): the ports it listens on and the processes doing the work.
struct Route {
    name: &'static str,
    base: u16,
    pids: Box<dyn Fn() -> Vec<u32>>,
}

/// A throughput measurement.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    bytes: u64,
    secs: f64,
    cpu: f64,
    capped: bool,
}

impl Transfer {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }

    fn cpu_ms_per_mb(&self) -> f64 {
        self.cpu * 1e3 / (self.bytes as f64 / 1e6).max(1e-9)
    }
}

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
    serve(&fx);

    let keys = tempfile::Builder::new().prefix("tt-bench-ssh").tempdir().expect("a temporary directory");
    let (_sshd, ssh) = start_ssh(&fx, keys.path());
    let ssh_pid = ssh.id();

    let started = Deadline::after(Duration::from_secs(60));
    let forwards: Vec<String> = (0..3).map(|i| format!("{}:127.0.0.1:{}", TUNTOX_BASE + i, SOURCE + i)).collect();
    let mut client = fx.client("bench client", &["-L", &forwards[0], "-L", &forwards[1], "-L", &forwards[2]]);
    wait_client_connected(&mut client, started.left());
    let connect_secs = started.elapsed().as_secs_f64();
    let first_byte = {
        let mut echo = fx.connect(SocketAddr::from(([127, 0, 0, 1], TUNTOX_BASE + 2)), Duration::from_secs(10));
        round_trip(&mut echo, &mut [0u8; 1]);
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
            let up = measured(path, || upload(netns, path.base + 1));
            let down = measured(path, || download(netns, path.base, LEN));
            let par = measured(path, || parallel(netns, path.base));
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

/// Runs a transfer and adds the CPU its path's processes used meanwhile.
fn measured(path: &Route, f: impl FnOnce() -> (u64, f64, bool)) -> Transfer {
    let cpu = cpu_total(&(path.pids)());
    let (bytes, secs, capped) = f();
    Transfer { bytes, secs, cpu: cpu_total(&(path.pids)()) - cpu, capped }
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

/// Binds the source, sink and echo services inside the namespace.
fn serve(fx: &Fixture) {
    let source = fx.listen(&format!("127.0.0.1:{SOURCE}"));
    let sink = fx.listen(&format!("127.0.0.1:{SINK}"));
    let echo = fx.listen(&format!("127.0.0.1:{ECHO}"));
    accept_each(source, |mut stream| {
        let mut ask = [0u8; 8];
        if stream.read_exact(&mut ask).is_ok() {
            let _ = write_pattern(&mut stream, u64::from_le_bytes(ask), None);
        }
    });
    accept_each(sink, |mut stream| {
        let (bytes, intact) = read_pattern(&mut stream, u64::MAX, None);
        let answer = if intact { bytes } else { u64::MAX };
        let _ = stream.write_all(&answer.to_le_bytes());
    });
    accept_each(echo, |mut stream| {
        let _ = stream.set_nodelay(true);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
}

fn accept_each(listener: TcpListener, handle: fn(TcpStream)) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            thread::spawn(move || handle(stream));
        }
    });
}

/// Writes `len` pattern bytes, or fewer once `cap` passes; returns how many.
fn write_pattern(stream: &mut TcpStream, len: u64, cap: Option<&Deadline>) -> std::io::Result<u64> {
    let mut sent = 0;
    while sent < len && !cap.is_some_and(Deadline::passed) {
        let chunk = pattern_at(sent, (len - sent).min(PERIOD as u64) as usize);
        stream.write_all(chunk)?;
        sent += chunk.len() as u64;
    }
    Ok(sent)
}

/// Reads up to `len` bytes (until EOF, or until `cap` passes) and checks
/// them against the pattern; returns the count and whether all matched.
fn read_pattern(stream: &mut TcpStream, len: u64, cap: Option<&Deadline>) -> (u64, bool) {
    let mut buf = vec![0u8; PERIOD];
    let mut got = 0u64;
    while got < len && !cap.is_some_and(Deadline::passed) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if buf[..n] != *pattern_at(got, n) {
                    return (got, false);
                }
                got += n as u64;
            }
        }
    }
    (got, true)
}

fn connect(netns: &Netns, port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = netns
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("set a read timeout");
    stream
}

/// Sends `LEN` bytes to the sink; timed until it confirms them.
fn upload(netns: &Netns, port: u16) -> (u64, f64, bool) {
    let mut stream = connect(netns, port);
    let start = now();
    let cap = Deadline::after(CAP);
    let sent = write_pattern(&mut stream, LEN, Some(&cap)).unwrap_or_else(|e| panic!("upload to {port}: {e}"));
    stream.shutdown(Shutdown::Write).expect("shut down the upload");
    let mut answer = [0u8; 8];
    stream.read_exact(&mut answer).unwrap_or_else(|e| panic!("upload to {port}: no confirmation: {e}"));
    let secs = start.elapsed().as_secs_f64();
    let confirmed = u64::from_le_bytes(answer);
    assert_eq!(confirmed, sent, "upload to {port}: the sink confirms every byte, intact");
    (sent, secs, sent < LEN)
}

/// Reads `len` bytes from the source.
fn download(netns: &Netns, port: u16, len: u64) -> (u64, f64, bool) {
    let mut stream = connect(netns, port);
    let start = now();
    let cap = Deadline::after(CAP);
    stream.write_all(&len.to_le_bytes()).expect("ask the source");
    let (got, intact) = read_pattern(&mut stream, len, Some(&cap));
    let secs = start.elapsed().as_secs_f64();
    assert!(intact, "download from {port}: byte {got} differs from what the source sent");
    assert!(got == len || cap.passed(), "download from {port}: EOF after {got} of {len} bytes");
    (got, secs, got < len)
}

/// `PARALLEL` downloads at once; the aggregate rate.
fn parallel(netns: &Netns, port: u16) -> (u64, f64, bool) {
    let streams: Vec<TcpStream> = (0..PARALLEL).map(|_| connect(netns, port)).collect();
    let start = now();
    let cap = Deadline::after(CAP);
    let each = LEN / PARALLEL;
    let threads: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            thread::spawn(move || {
                stream.write_all(&each.to_le_bytes()).expect("ask the source");
                let (got, intact) = read_pattern(&mut stream, each, Some(&cap));
                assert!(intact, "a parallel download: byte {got} differs");
                got
            })
        })
        .collect();
    let bytes: u64 = threads.into_iter().map(|t| t.join().expect("a parallel download")).sum();
    (bytes, start.elapsed().as_secs_f64(), bytes < LEN)
}

/// One-byte round trips through the echo service, in milliseconds.
fn rtt(netns: &Netns, port: u16) -> Vec<f64> {
    let mut stream = connect(netns, port);
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut byte = [0u8; 1];
    for _ in 0..RTT_WARMUP {
        round_trip(&mut stream, &mut byte);
    }
    let cap = Deadline::after(RTT_CAP);
    let mut samples = Vec::with_capacity(RTT_SAMPLES);
    while samples.len() < RTT_SAMPLES && !cap.passed() {
        let start = now();
        round_trip(&mut stream, &mut byte);
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    samples
}

fn round_trip(stream: &mut TcpStream, byte: &mut [u8; 1]) {
    byte[0] = byte[0].wrapping_add(1);
    let sent = byte[0];
    stream.write_all(&byte[..]).expect("send one byte");
    stream.read_exact(&mut byte[..]).expect("the byte comes back");
    assert_eq!(byte[0], sent, "the echo returns the byte sent");
}

/// Processes in the namespace whose command name is `name`.
fn processes_named(netns: &str, name: &str) -> Vec<u32> {
    let output = Command::new("ip").args(["netns", "pids", netns]).output().expect("ip netns pids");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == name))
        .collect()
}

/// Starts sshd (key authentication, temporary keys in `dir`) and `ssh -N`
/// with the three forwards; returns both once the forwards accept.
fn start_ssh(fx: &Fixture, dir: &Path) -> (ChildGuard, ChildGuard) {
    let (key, host_key) = (dir.join("id"), dir.join("host"));
    for path in [&key, &host_key] {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .expect("ssh-keygen (openssh-client; scripts/bench installs it)");
        assert!(status.success(), "ssh-keygen failed");
    }
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).expect("authorized_keys");
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {SSHD_PORT}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPidFile none\nAllowTcpForwarding yes\n",
            host_key.display(),
            dir.join("authorized_keys").display()
        ),
    )
    .expect("write sshd_config");
    // sshd's privilege separation directory (the Debian package's service makes it too).
    std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
    let sshd = fx
        .netns
        .command("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (openssh-server; scripts/bench installs it)");
    let sshd = ChildGuard::new(sshd, "sshd");
    drop(fx.connect(SocketAddr::from(([127, 0, 0, 1], SSHD_PORT)), Duration::from_secs(10)));

    let mut ssh = fx.netns.command("ssh");
    ssh.args(["-N", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ExitOnForwardFailure=yes"])
        .arg("-i")
        .arg(&key)
        .args(["-p", &SSHD_PORT.to_string()]);
    for i in 0..3 {
        ssh.args(["-L", &format!("{}:127.0.0.1:{}", SSH_BASE + i, SOURCE + i)]);
    }
    let ssh = ssh
        .arg("root@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh (openssh-client; scripts/bench installs it)");
    let ssh = ChildGuard::new(ssh, "ssh -L");
    // Up once the last forward accepts (a connection the echo service simply closes).
    drop(fx.connect(SocketAddr::from(([127, 0, 0, 1], SSH_BASE + 2)), Duration::from_secs(20)));
    (sshd, ssh)
}
