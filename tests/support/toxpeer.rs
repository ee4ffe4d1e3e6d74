//! The libtoxcore test peer (`tests/interop/toxpeer.c`) as a child process
//! inside a test's network namespace.
//!
//! The peer is real c-toxcore 0.2.18: the reference our Tox stack must
//! interoperate with. It reads commands on stdin and prints events on stdout,
//! one per line; a reader thread forwards those lines here and
//! [`ToxPeer::wait_for`] waits (always bounded) for a line that matches.
//!
//! Line protocol (keys and addresses in uppercase hex, payloads in lowercase hex):
//! - startup: `address HEX76`, `public_key HEX64`, `dht_id HEX64`, `udp_port N` (0 with UDP off)
//! - commands: `add HEX76 MESSAGE...`, `add_norequest HEX64`, `lossless N HEX` (ids 160-191),
//!   `lossy N HEX` (ids 200-254), `flood COUNT SIZE lossless|lossy N`, `save`, `status`, `quit`;
//!   end of stdin also quits
//! - lossless sends and echoes refused with SENDQ queue inside the peer (1024 deep, counted in
//!   `held`) and go out in order, so bursts arrive whole; lossy packets are sent once
//! - `flood` (for benchmarks) sends COUNT packets generated inside the peer as fast as
//!   libtoxcore takes them: packet i is `[160 or 200][i as u32 BE][(i + k) as u8 at byte k]`
//!   cut to SIZE; `flood_done COUNT KIND` once all were accepted
//! - events: `self_connection none|tcp|udp`, `friend_request HEX64 MSGHEX`,
//!   `friend_added N HEX64`, `friend_connection N none|tcp|udp`, `lossless N HEX`,
//!   `lossy N HEX`, `saved FILE`, `counts k=v ...` (answer to `status`), `flood_done COUNT KIND`,
//!   `error WHAT [detail|code=C]` (C is the Tox_Err_* value)

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::cbuild::build_c_program;
use super::deadline::{Deadline, now};
use super::netns::{ChildGuard, Netns};

/// How long the peer may take to print its startup lines.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Command-line options of the test peer; see `tests/interop/toxpeer.c`.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Names the peer in failure messages.
    pub name: String,
    /// `--udp on|off` (default on).
    pub udp: bool,
    /// `--bootstrap HOST:PORT:KEY`, each (see [`super::bootstrapd::Bootstrapd::bootstrap_arg`]).
    pub bootstrap: Vec<String>,
    /// `--tcp-relay HOST:PORT:KEY`, each. With UDP off, give `bootstrap` too:
    /// libtoxcore builds its onion paths from bootstrap nodes, so with relays
    /// alone it never comes online.
    pub tcp_relays: Vec<String>,
    /// `--accept any|MSG`: accept friend requests (any, or with exactly this message).
    pub accept: Option<String>,
    /// `--echo`: send every custom packet back to its sender.
    pub echo: bool,
    /// `--quiet-packets`: count packets (see [`ToxPeer::counts`]) instead of printing them.
    pub quiet_packets: bool,
    /// `--interval-ms N`: longest sleep between `tox_iterate` calls (peer default 5).
    pub interval_ms: Option<u32>,
    /// `--save FILE`: load the identity from FILE if it exists.
    pub save: Option<PathBuf>,
    /// `--save-out FILE`: write the savedata there after start and on `save`.
    pub save_out: Option<PathBuf>,
    /// `--nospam HEX8`.
    pub nospam: Option<u32>,
    /// `--ports A:B`: UDP port range.
    pub ports: Option<(u16, u16)>,
    /// `--exit-after-start`: print the startup lines and exit.
    pub exit_after_start: bool,
    /// `--log`: libtoxcore's debug log on the peer's stderr (shown on failure).
    pub log: bool,
}

impl PeerOptions {
    /// Defaults: UDP on, nothing else.
    pub fn new(name: &str) -> PeerOptions {
        PeerOptions {
            name: name.to_owned(),
            udp: true,
            bootstrap: Vec::new(),
            tcp_relays: Vec::new(),
            accept: None,
            echo: false,
            quiet_packets: false,
            interval_ms: None,
            save: None,
            save_out: None,
            nospam: None,
            ports: None,
            exit_after_start: false,
            log: false,
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec!["--udp".to_owned(), if self.udp { "on" } else { "off" }.to_owned()];
        for node in &self.bootstrap {
            args.extend(["--bootstrap".to_owned(), node.clone()]);
        }
        for node in &self.tcp_relays {
            args.extend(["--tcp-relay".to_owned(), node.clone()]);
        }
        if let Some(accept) = &self.accept {
            args.extend(["--accept".to_owned(), accept.clone()]);
        }
        if self.echo {
            args.push("--echo".to_owned());
        }
        if self.quiet_packets {
            args.push("--quiet-packets".to_owned());
        }
        if let Some(ms) = self.interval_ms {
            args.extend(["--interval-ms".to_owned(), ms.to_string()]);
        }
        if let Some(path) = &self.save {
            args.extend(["--save".to_owned(), path.display().to_string()]);
        }
        if let Some(path) = &self.save_out {
            args.extend(["--save-out".to_owned(), path.display().to_string()]);
        }
        if let Some(nospam) = self.nospam {
            args.extend(["--nospam".to_owned(), format!("{nospam:08X}")]);
        }
        if let Some((start, end)) = self.ports {
            args.extend(["--ports".to_owned(), format!("{start}:{end}")]);
        }
        if self.exit_after_start {
            args.push("--exit-after-start".to_owned());
        }
        if self.log {
            args.push("--log".to_owned());
        }
        args
    }
}

/// A running test peer; killed on drop.
#[derive(Debug)]
pub struct ToxPeer {
    name: String,
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Lines received but not yet matched by a `wait_for`.
    pending: VecDeque<String>,
    /// Every line received, for failure messages.
    history: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    address: String,
    public_key: String,
    dht_id: String,
    udp_port: u16,
}

impl ToxPeer {
    /// Builds the peer (once per test binary), starts it in `netns` and
    /// waits for its startup lines.
    pub fn spawn(netns: &Netns, opts: &PeerOptions) -> ToxPeer {
        let program = build_c_program("interop/toxpeer.c", &["toxcore"]);
        let mut child = netns
            .command(&program)
            .args(opts.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} in netns {}: {e}", program.display(), netns.name()));

        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });

        let stdin = child.stdin.take();
        let mut peer = ToxPeer {
            name: opts.name.clone(),
            child: ChildGuard::new(child, format!("toxpeer {}", opts.name)),
            stdin,
            lines,
            pending: VecDeque::new(),
            history: Vec::new(),
            stderr,
            address: String::new(),
            public_key: String::new(),
            dht_id: String::new(),
            udp_port: 0,
        };
        let deadline = Deadline::after(START_TIMEOUT);
        peer.address = peer.wait_value("address ", deadline.left());
        peer.public_key = peer.wait_value("public_key ", deadline.left());
        peer.dht_id = peer.wait_value("dht_id ", deadline.left());
        let port = peer.wait_value("udp_port ", deadline.left());
        peer.udp_port = port.parse().unwrap_or_else(|_| peer.fail(&format!("bad udp_port line {port:?}")));
        assert_eq!(peer.address.len(), 76, "{}: address {:?}", peer.name, peer.address);
        assert_eq!(peer.public_key.len(), 64, "{}: public_key {:?}", peer.name, peer.public_key);
        assert!(
            peer.address.starts_with(&peer.public_key),
            "{}: address does not start with the public key",
            peer.name
        );
        peer
    }

    /// The Tox ID: 76 uppercase hex digits (public key, nospam, checksum).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The long-term public key: 64 uppercase hex digits.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The DHT public key of this run (ephemeral; also the key TCP relays know).
    pub fn dht_id(&self) -> &str {
        &self.dht_id
    }

    /// The bound UDP port, 0 with UDP off.
    pub fn udp_port(&self) -> u16 {
        self.udp_port
    }

    /// The name given in [`PeerOptions`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The peer's process id (for its CPU time in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line (without the newline).
    pub fn send(&mut self, cmd: &str) {
        let result = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(format!("{cmd}\n").as_bytes()).and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = result {
            self.fail(&format!("cannot send {cmd:?}: {e}"));
        }
    }

    /// Waits up to `timeout` for a line, not matched before, for which
    /// `pred` holds; removes it from the pending lines and returns it. Lines
    /// that do not match stay pending for later waits. Panics on timeout or
    /// when the peer exits, listing every line the peer printed.
    pub fn wait_for(&mut self, pred: impl FnMut(&str) -> bool, timeout: Duration) -> String {
        match self.try_wait_for(pred, timeout) {
            Some(line) => line,
            None => self.fail(&format!("timed out after {timeout:?}")),
        }
    }

    /// As [`wait_for`](Self::wait_for), but `None` on timeout (it still
    /// panics when the peer exits).
    pub fn try_wait_for(&mut self, mut pred: impl FnMut(&str) -> bool, timeout: Duration) -> Option<String> {
        if let Some(i) = self.pending.iter().position(|l| pred(l)) {
            return self.pending.remove(i);
        }
        let deadline = now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.history.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                    self.pending.push_back(line);
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    let status = match self.child.wait_timeout(Duration::from_secs(2)) {
                        Some(status) => status.to_string(),
                        None => "stdout closed, still running".to_owned(),
                    };
                    self.fail(&format!("peer exited ({status}) while waiting"));
                }
            }
        }
    }

    /// Waits for a line starting with `prefix` and returns the rest of it.
    pub fn wait_value(&mut self, prefix: &str, timeout: Duration) -> String {
        let line = self.wait_for(|l| l.starts_with(prefix), timeout);
        line[prefix.len()..].to_owned()
    }

    /// Sends `add ADDRESS MESSAGE` and waits for `friend_added`; returns the friend number.
    pub fn add_friend(&mut self, address: &str, message: &str) -> u32 {
        self.send(&format!("add {address} {message}"));
        let pk = &address[..64.min(address.len())];
        let line = self.wait_for(
            |l| l.starts_with("error friend_add ") || (l.starts_with("friend_added ") && l.ends_with(pk)),
            Duration::from_secs(5),
        );
        parse_friend_added(&line).unwrap_or_else(|| self.fail(&format!("add failed: {line}")))
    }

    /// Like [`add_friend`](Self::add_friend) with a message of any bytes
    /// (`addhex`).
    pub fn add_friend_bytes(&mut self, address: &str, message: &[u8]) -> u32 {
        self.send(&format!("addhex {address} {}", to_hex(message)));
        let pk = &address[..64.min(address.len())];
        let line = self.wait_for(
            |l| l.starts_with("error ") || (l.starts_with("friend_added ") && l.ends_with(pk)),
            Duration::from_secs(5),
        );
        parse_friend_added(&line).unwrap_or_else(|| self.fail(&format!("add failed: {line}")))
    }

    /// Waits until friend `friend` is connected (`tcp` or `udp`) and returns how.
    pub fn wait_connected(&mut self, friend: u32, timeout: Duration) -> String {
        let prefix = format!("friend_connection {friend} ");
        let line = self.wait_for(|l| l.starts_with(&prefix) && !l.ends_with(" none"), timeout);
        line[prefix.len()..].to_owned()
    }

    /// Sends a custom lossless packet (`data[0]` is its id, 160-191).
    pub fn send_lossless(&mut self, friend: u32, data: &[u8]) {
        self.send(&format!("lossless {friend} {}", to_hex(data)));
    }

    /// Sends a custom lossy packet (`data[0]` is its id, 200-254).
    pub fn send_lossy(&mut self, friend: u32, data: &[u8]) {
        self.send(&format!("lossy {friend} {}", to_hex(data)));
    }

    /// Starts a flood of `count` packets of `size` bytes to `friend`
    /// (lossless, or lossy with `lossy = true`); `flood_done` follows.
    pub fn flood(&mut self, friend: u32, count: u64, size: usize, lossy: bool) {
        self.send(&format!("flood {count} {size} {} {friend}", if lossy { "lossy" } else { "lossless" }));
    }

    /// Waits for a `lossless` (or `lossy`, with `lossy = true`) packet from
    /// `friend` and returns its bytes.
    pub fn recv_packet(&mut self, friend: u32, lossy: bool, timeout: Duration) -> Vec<u8> {
        let prefix = format!("{} {friend} ", if lossy { "lossy" } else { "lossless" });
        let hex = self.wait_value(&prefix, timeout);
        from_hex(&hex).unwrap_or_else(|| self.fail(&format!("bad hex in packet line: {hex}")))
    }

    /// Sends `status` and returns the counters (`lossless_rx`, `lossy_tx`, ...).
    pub fn counts(&mut self) -> Vec<(String, u64)> {
        self.send("status");
        let rest = self.wait_value("counts ", Duration::from_secs(5));
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(u64::MAX)))
            .collect()
    }

    /// Sends `quit`, closes stdin and waits (bounded) for a clean exit.
    pub fn quit(&mut self) -> ExitStatus {
        if self.child.try_wait().is_none() {
            self.send("quit");
        }
        self.stdin = None;
        self.wait_exit(Duration::from_secs(5))
    }

    /// Waits up to `timeout` for the peer to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.child.wait_timeout(timeout) {
            Some(status) => status,
            None => self.fail(&format!("did not exit within {timeout:?}")),
        }
    }

    /// Every line the peer has printed and this side has read.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// The peer's stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Panics with `why`, every line the peer printed, and its stderr.
    pub fn fail(&mut self, why: &str) -> ! {
        // Pick up lines that arrived meanwhile, without waiting.
        while let Ok(line) = self.lines.try_recv() {
            self.history.push(line);
        }
        let stderr = self.stderr();
        let tail = &stderr[stderr.len().saturating_sub(50)..];
        panic!(
            "toxpeer {}: {why}\n--- stdout ({} lines) ---\n{}\n--- stderr (last {} lines) ---\n{}",
            self.name,
            self.history.len(),
            self.history.join("\n"),
            tail.len(),
            tail.join("\n")
        );
    }
}

/// `friend_added N PK` -> N.
pub fn parse_friend_added(line: &str) -> Option<u32> {
    line.strip_prefix("friend_added ")?.split_whitespace().next()?.parse().ok()
}

/// Lowercase hex, as the peer prints payloads.
pub fn to_hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes hex in either case; `None` on an odd length or a bad digit.
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?),
            _ => None,
        })
        .collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}
