//! A private `tox-bootstrapd` (c-toxcore 0.2.18's DHT bootstrap node and TCP
//! relay, from Debian's toxcore-utils) inside a test's network namespace.
//!
//! The daemon has no bind-address option, so it only ever runs inside a
//! [`Netns`]. LAN discovery and IPv6 are off. Its config and keys live in a
//! temporary directory; [`Bootstrapd::start`] returns once the keys exist and
//! the daemon answers a bootstrap-info request (`0xf0` + 77 zero bytes, answered
//! with `0xf0`, its version and the MOTD) and accepts TCP on its relay port.
//! This follows the interop recipe of the protocol research (tox-protocol.md §3).

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::deadline::Deadline;
use super::netns::{ChildGuard, Netns};

/// How long the daemon may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's ports and MOTD.
#[derive(Debug, Clone)]
pub struct BootstrapdConfig {
    /// UDP (DHT) port.
    pub port: u16,
    /// TCP relay port.
    pub tcp_port: u16,
    /// Message of the day, returned by the bootstrap-info request.
    pub motd: String,
    /// Nodes the daemon bootstraps from: (IPv4 address, UDP port, 64-hex key).
    pub bootstrap_nodes: Vec<(String, u16, String)>,
}

impl Default for BootstrapdConfig {
    fn default() -> BootstrapdConfig {
        BootstrapdConfig { port: 33445, tcp_port: 33446, motd: "tuntox-test".to_owned(), bootstrap_nodes: Vec::new() }
    }
}

/// A running tox-bootstrapd; killed on drop.
#[derive(Debug)]
pub struct Bootstrapd {
    child: Option<ChildGuard>,
    netns: String,
    dir: tempfile::TempDir,
    config: BootstrapdConfig,
    log: Arc<Mutex<Vec<String>>>,
    /// UDP (DHT) port on 127.0.0.1 inside the namespace.
    pub udp_port: u16,
    /// TCP relay port on 127.0.0.1 inside the namespace.
    pub tcp_port: u16,
    /// The daemon's DHT public key (also its TCP relay key), 64 uppercase hex digits.
    pub public_key_hex: String,
}

impl Bootstrapd {
    /// Starts the daemon with the default ports (33445, relay 33446).
    pub fn start(netns: &Netns) -> Bootstrapd {
        Bootstrapd::start_with(netns, BootstrapdConfig::default())
    }

    /// Starts the daemon with `config`; waits until it answers (bounded).
    pub fn start_with(netns: &Netns, config: BootstrapdConfig) -> Bootstrapd {
        let dir = tempfile::Builder::new().prefix("tt-bootstrapd").tempdir().expect("create a temporary directory");
        let mut daemon = Bootstrapd {
            child: None,
            netns: netns.name().to_owned(),
            dir,
            udp_port: config.port,
            tcp_port: config.tcp_port,
            config,
            log: Arc::default(),
            public_key_hex: String::new(),
        };
        daemon.write_config();
        daemon.launch(netns);
        daemon
    }

    /// `127.0.0.1:PORT:KEY` for the test peer's `--bootstrap`.
    pub fn bootstrap_arg(&self) -> String {
        format!("127.0.0.1:{}:{}", self.udp_port, self.public_key_hex)
    }

    /// `127.0.0.1:TCPPORT:KEY` for the test peer's `--tcp-relay`.
    pub fn tcp_relay_arg(&self) -> String {
        format!("127.0.0.1:{}:{}", self.tcp_port, self.public_key_hex)
    }

    /// Everything the daemon has logged so far (stdout and stderr).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Kills the daemon (for relay-failure tests); [`Bootstrapd::restart`] brings it back.
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Stops the daemon if running and starts it again with the same ports
    /// and keys (c-toxcore clients pin the relay's key).
    pub fn restart(&mut self, netns: &Netns) {
        assert_eq!(netns.name(), self.netns, "restart in the namespace it was started in");
        self.stop();
        let key = std::mem::take(&mut self.public_key_hex);
        self.launch(netns);
        assert_eq!(key, self.public_key_hex, "tox-bootstrapd changed its key across a restart");
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let conf = format!(
            "port = {port}\n\
             keys_file_path = \"{keys}\"\n\
             pid_file_path = \"{pid}\"\n\
             enable_ipv6 = false\n\
             enable_ipv4_fallback = true\n\
             enable_lan_discovery = false\n\
             enable_tcp_relay = true\n\
             tcp_relay_ports = [{tcp}]\n\
             enable_motd = true\n\
             motd = \"{motd}\"\n\
             bootstrap_nodes = ({nodes})\n",
            port = self.config.port,
            keys = dir.join("keys").display(),
            pid = dir.join("tox-bootstrapd.pid").display(),
            tcp = self.config.tcp_port,
            motd = self.config.motd,
            nodes = self
                .config
                .bootstrap_nodes
                .iter()
                .map(|(address, port, key)| {
                    format!("{{ address = \"{address}\"\n port = {port}\n public_key = \"{key}\" }}")
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
        std::fs::write(self.config_path(), conf).expect("write bootstrapd.conf");
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("bootstrapd.conf")
    }

    fn launch(&mut self, netns: &Netns) {
        let found = Command::new("tox-bootstrapd").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(found.is_ok(), "tox-bootstrapd not found: install Debian's toxcore-utils (scripts/test does)");
        // A stale pid file makes the daemon refuse to start.
        let _ = std::fs::remove_file(self.dir.path().join("tox-bootstrapd.pid"));

        let mut child = netns
            .command("tox-bootstrapd")
            .arg("--config")
            .arg(self.config_path())
            .args(["--foreground", "--log-backend", "stdout"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tox-bootstrapd through ip netns exec");
        collect_lines(child.stdout.take().expect("piped stdout"), Arc::clone(&self.log));
        collect_lines(child.stderr.take().expect("piped stderr"), Arc::clone(&self.log));
        let mut guard = ChildGuard::new(child, format!("tox-bootstrapd in {}", self.netns));

        let deadline = Deadline::after(START_TIMEOUT);
        let keys_path = self.dir.path().join("keys");
        let (port, tcp_port, motd) = (self.config.port, self.config.tcp_port, self.config.motd.clone());
        let answered = netns.run_in(move || probe(port, tcp_port, &motd, deadline));
        if let Some(status) = guard.try_wait() {
            panic!("tox-bootstrapd exited ({status}); its log:\n{}", self.log().join("\n"));
        }
        if let Err(why) = answered {
            panic!(
                "tox-bootstrapd did not come up within {START_TIMEOUT:?}: {why}; its log:\n{}",
                self.log().join("\n")
            );
        }
        let keys = std::fs::read(&keys_path)
            .unwrap_or_else(|e| panic!("tox-bootstrapd answered but {} is unreadable: {e}", keys_path.display()));
        assert!(keys.len() >= 64, "keys file holds {} bytes, expected 64 (public then secret key)", keys.len());
        self.public_key_hex = keys[..32].iter().map(|b| format!("{b:02X}")).collect();
        self.child = Some(guard);
    }
}

/// Forwards each line of `pipe` into `log` from a background thread.
fn collect_lines(pipe: impl Read + Send + 'static, log: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

/// Runs inside the namespace: retries the bootstrap-info request and a TCP
/// connect until both succeed or the deadline passes.
fn probe(port: u16, tcp_port: u16, motd: &str, deadline: Deadline) -> Result<(), String> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind probe socket: {e}"))?;
    socket.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut request = [0u8; 78];
    request[0] = 0xf0;
    let mut last_error = "no answer".to_owned();
    let mut udp_ok = false;
    while !deadline.passed() {
        if !udp_ok {
            let _ = socket.send_to(&request, target);
            let mut buf = [0u8; 512];
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == target && n >= 5 && buf[0] == 0xf0 => {
                    let text = String::from_utf8_lossy(&buf[5..n]);
                    if text.trim_end_matches('\0') != motd {
                        return Err(format!("bootstrap info carries MOTD {text:?}, expected {motd:?}"));
                    }
                    udp_ok = true;
                }
                Ok((n, from)) => last_error = format!("unexpected {n}-byte answer from {from}"),
                Err(e) => last_error = format!("UDP: {e}"),
            }
        }
        if udp_ok {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port));
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    last_error = format!("TCP relay port {tcp_port}: {e}");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    Err(last_error)
}
