//! TCP through a port forward, shared by `forward` and `wan`: the services
//! on the far side, checked transfers and one-byte round trips on the near
//! side, and `ssh -L` with a throwaway sshd.
//!
//! Services, bound in the far namespace on 127.0.0.1: a source (send the
//! number of bytes asked for, then close) on [`SOURCE`], a sink (read to the
//! end, answer with the byte count) on [`SINK`] and an echo on [`ECHO`]. A
//! forwarder maps `base + i` to `SOURCE + i` (i = 0, 1, 2). Every byte is
//! checked against a pattern.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::measure::cpu_total;
use crate::support::deadline::{Deadline, now};
use crate::support::netns::{ChildGuard, Netns};
use crate::support::wan::connect_retry;

/// Ports of the services.
pub const SOURCE: u16 = 7001;
pub const SINK: u16 = 7002;
pub const ECHO: u16 = 7003;
/// sshd's port.
pub const SSHD_PORT: u16 = 2200;
/// How long a transfer may make no progress before it fails.
pub const STALL: Duration = Duration::from_secs(60);

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
pub struct Route {
    pub name: &'static str,
    pub base: u16,
    pub pids: Box<dyn Fn() -> Vec<u32>>,
}

/// A throughput measurement.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub bytes: u64,
    pub secs: f64,
    pub cpu: f64,
    pub capped: bool,
}

impl Transfer {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }

    pub fn cpu_ms_per_mb(&self) -> f64 {
        self.cpu * 1e3 / (self.bytes as f64 / 1e6).max(1e-9)
    }
}

/// Runs a transfer and adds the CPU its route's processes used meanwhile.
pub fn measured(route: &Route, f: impl FnOnce() -> (u64, f64, bool)) -> Transfer {
    let cpu = cpu_total(&(route.pids)());
    let (bytes, secs, capped) = f();
    Transfer { bytes, secs, cpu: cpu_total(&(route.pids)()) - cpu, capped }
}

/// [`measured`] for a transfer that may fail.
pub fn try_measured(route: &Route, f: impl FnOnce() -> Result<(u64, f64, bool), String>) -> Result<Transfer, String> {
    let cpu = cpu_total(&(route.pids)());
    let (bytes, secs, capped) = f()?;
    Ok(Transfer { bytes, secs, cpu: cpu_total(&(route.pids)()) - cpu, capped })
}

/// Binds the source, sink and echo services on 127.0.0.1 inside `netns`.
pub fn serve(netns: &Netns) {
    let listen = |port: u16| {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        netns.run_in(move || TcpListener::bind(addr).expect("bind inside the namespace"))
    };
    accept_each(listen(SOURCE), |mut stream| {
        let mut ask = [0u8; 8];
        if stream.read_exact(&mut ask).is_ok() {
            let _ = write_pattern(&mut stream, u64::from_le_bytes(ask), None);
        }
    });
    accept_each(listen(SINK), |mut stream| {
        let (bytes, intact) = read_pattern(&mut stream, u64::MAX, None, None);
        let answer = if intact { bytes } else { u64::MAX };
        let _ = stream.write_all(&answer.to_le_bytes());
    });
    accept_each(listen(ECHO), |mut stream| {
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
/// them against the pattern, adding each read to `progress`; returns the
/// count and whether all matched.
fn read_pattern(stream: &mut TcpStream, len: u64, cap: Option<&Deadline>, progress: Option<&AtomicU64>) -> (u64, bool) {
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
                if let Some(progress) = progress {
                    progress.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    }
    (got, true)
}

/// Connects to 127.0.0.1:`port` inside `netns`.
pub fn connect(netns: &Netns, port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = netns
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    // A forwarder that stops moving bytes fails the transfer instead of hanging it.
    stream.set_read_timeout(Some(STALL)).expect("set a read timeout");
    stream.set_write_timeout(Some(STALL)).expect("set a write timeout");
    stream
}

/// Sends `len` bytes to the sink on `port` (a forward of [`SINK`]), for at
/// most `cap`; timed until the sink confirms them. Returns (bytes, seconds,
/// capped), or what went wrong.
pub fn upload(netns: &Netns, port: u16, len: u64, cap: Duration) -> Result<(u64, f64, bool), String> {
    let mut stream = connect(netns, port);
    let start = now();
    let cap = Deadline::after(cap);
    let sent = write_pattern(&mut stream, len, Some(&cap)).map_err(|e| format!("upload to {port}: {e}"))?;
    stream.shutdown(Shutdown::Write).map_err(|e| format!("upload to {port}: shutdown: {e}"))?;
    let mut answer = [0u8; 8];
    stream.read_exact(&mut answer).map_err(|e| format!("upload to {port}: no confirmation: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    let confirmed = u64::from_le_bytes(answer);
    if confirmed != sent {
        return Err(format!("upload to {port}: {sent} bytes sent, the sink confirms {confirmed} intact"));
    }
    Ok((sent, secs, sent < len))
}

/// Reads `len` bytes from the source on `port` (a forward of [`SOURCE`]),
/// for at most `cap`, adding each read to `progress`. Returns (bytes,
/// seconds, capped), or what went wrong.
pub fn download(
    netns: &Netns,
    port: u16,
    len: u64,
    cap: Duration,
    progress: Option<&AtomicU64>,
) -> Result<(u64, f64, bool), String> {
    let mut stream = connect(netns, port);
    let start = now();
    let cap = Deadline::after(cap);
    stream.write_all(&len.to_le_bytes()).map_err(|e| format!("download from {port}: ask the source: {e}"))?;
    let (got, intact) = read_pattern(&mut stream, len, Some(&cap), progress);
    let secs = start.elapsed().as_secs_f64();
    if !intact {
        return Err(format!("download from {port}: byte {got} differs from what the source sent"));
    }
    if got < len && !cap.passed() {
        return Err(format!("download from {port}: EOF or error after {got} of {len} bytes"));
    }
    Ok((got, secs, got < len))
}

/// `n` downloads of `len / n` at once from `port`; the aggregate.
pub fn parallel(netns: &Netns, port: u16, n: u64, len: u64, cap: Duration) -> (u64, f64, bool) {
    let streams: Vec<TcpStream> = (0..n).map(|_| connect(netns, port)).collect();
    let start = now();
    let cap = Deadline::after(cap);
    let each = len / n;
    let threads: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            thread::spawn(move || {
                stream.write_all(&each.to_le_bytes()).expect("ask the source");
                let (got, intact) = read_pattern(&mut stream, each, Some(&cap), None);
                assert!(intact, "a parallel download: byte {got} differs");
                got
            })
        })
        .collect();
    let bytes: u64 = threads.into_iter().map(|t| t.join().expect("a parallel download")).sum();
    (bytes, start.elapsed().as_secs_f64(), bytes < len)
}

/// A connection to the echo service on `port` for one-byte round trips.
pub fn echo(netns: &Netns, port: u16) -> TcpStream {
    let stream = connect(netns, port);
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

/// Up to `samples` one-byte round trips in milliseconds, while `more()`
/// says so. A round trip that fails (the stream's read timeout passes)
/// ends the series: its time so far is the last sample, and the flag is set.
pub fn round_trips(stream: &mut TcpStream, samples: usize, more: impl Fn() -> bool) -> (Vec<f64>, bool) {
    let mut byte = [0u8; 1];
    let mut times = Vec::with_capacity(samples.min(1 << 16));
    while times.len() < samples && more() {
        let start = now();
        byte[0] = byte[0].wrapping_add(1);
        let sent = byte[0];
        let result = stream.write_all(&byte[..]).and_then(|()| stream.read_exact(&mut byte[..]));
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if result.is_err() {
            return (times, true);
        }
        assert_eq!(byte[0], sent, "the echo returns the byte sent");
    }
    (times, false)
}

pub fn round_trip(stream: &mut TcpStream, byte: &mut [u8; 1]) {
    byte[0] = byte[0].wrapping_add(1);
    let sent = byte[0];
    stream.write_all(&byte[..]).expect("send one byte");
    stream.read_exact(&mut byte[..]).expect("the byte comes back");
    assert_eq!(byte[0], sent, "the echo returns the byte sent");
}

/// Processes in the namespace whose command name is `name`.
pub fn processes_named(netns: &str, name: &str) -> Vec<u32> {
    let output = Command::new("ip").args(["netns", "pids", netns]).output().expect("ip netns pids");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == name))
        .collect()
}

/// An sshd with key authentication and temporary keys, and the client key
/// that logs in to it.
pub struct Sshd {
    _daemon: ChildGuard,
    keys: tempfile::TempDir,
    addr: Ipv4Addr,
}

impl Sshd {
    /// Starts sshd in `netns`, listening on `addr`:[`SSHD_PORT`]; returns once it accepts.
    pub fn start(netns: &Netns, addr: Ipv4Addr) -> Sshd {
        let keys = tempfile::Builder::new().prefix("tt-bench-ssh").tempdir().expect("a temporary directory");
        let dir = keys.path();
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
                "Port {SSHD_PORT}\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nPidFile none\nAllowTcpForwarding yes\n",
                host_key.display(),
                dir.join("authorized_keys").display()
            ),
        )
        .expect("write sshd_config");
        // sshd's privilege separation directory (the Debian package's service makes it too).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let daemon = netns
            .command("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (openssh-server; scripts/bench installs it)");
        let daemon = ChildGuard::new(daemon, "sshd");
        drop(connect_retry(netns, SocketAddr::from((addr, SSHD_PORT)), Duration::from_secs(10)));
        Sshd { _daemon: daemon, keys, addr }
    }

    fn key(&self) -> PathBuf {
        self.keys.path().join("id")
    }

    /// Starts `ssh -N` in `netns` with forwards from `base + i` to
    /// `SOURCE + i` (i = 0, 1, 2); returns once the last one accepts.
    pub fn forward(&self, netns: &Netns, base: u16) -> ChildGuard {
        let mut ssh = netns.command("ssh");
        ssh.args(["-N", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ExitOnForwardFailure=yes"])
            .arg("-i")
            .arg(self.key())
            .args(["-p", &SSHD_PORT.to_string()]);
        for i in 0..3 {
            ssh.args(["-L", &format!("{}:127.0.0.1:{}", base + i, SOURCE + i)]);
        }
        let ssh = ssh
            .arg(format!("root@{}", self.addr))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh (openssh-client; scripts/bench installs it)");
        let ssh = ChildGuard::new(ssh, "ssh -L");
        // Up once the last forward accepts (a connection the echo service simply closes).
        drop(connect_retry(netns, SocketAddr::from(([127, 0, 0, 1], base + 2)), Duration::from_secs(30)));
        ssh
    }
}
