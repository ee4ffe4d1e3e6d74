//! Running tuntox as a service: the systemd notification protocol against
//! a fake `NOTIFY_SOCKET` (a Unix datagram socket of the test's own), and
//! the log going to a file that logrotate may move away (SIGHUP reopens
//! it), as JSON, or to the journal.
//!
//! The notify test starts a server in a network namespace whose only
//! bootstrap node (a tox-bootstrapd) is down: the server must not say
//! `READY=1` while nothing answers it, and must say it once the node is
//! back and the server is on the network (which `tuntox status` then
//! confirms), follow a client coming and going in `STATUS=`, and say
//! `STOPPING=1` last when it is stopped; watchdog pings come throughout.
//!
//! A VPN client runs with what `tuntox-vpn@.service` gives it: a user
//! other than root, CAP_NET_ADMIN and nothing else, and a `/dev/net/tun`
//! anyone may open (as udev makes it).
//!
//! Needs root (network namespaces) and toxcore-utils; run through
//! `scripts/test`, which installs them. It never skips.

mod support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::devlog::DevLog;
use support::netns::Netns;
use support::tuntox::{Tuntox, binary, config_dir_args, local_network_args};

/// A fake service manager: the messages that reach its socket, read by a
/// thread as they come (a Unix datagram socket queues only a few, and
/// tuntox drops a notification rather than wait).
struct FakeManager {
    messages: Receiver<String>,
    seen: Vec<String>,
    stop: Arc<AtomicBool>,
}

impl FakeManager {
    fn bind(path: &Path) -> FakeManager {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let (tx, messages) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = [0; 4096];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf)
                    && tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err()
                {
                    break;
                }
            }
        });
        FakeManager { messages, seen: Vec::new(), stop }
    }

    /// The next message within `timeout`, if any.
    fn next(&mut self, timeout: Duration) -> Option<String> {
        let message = self.messages.recv_timeout(timeout).ok()?;
        self.seen.push(message.clone());
        Some(message)
    }

    /// Waits for a message matching `pred`; panics with all seen after `timeout`.
    fn wait(&mut self, what: &str, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Deadline::after(timeout);
        while !deadline.passed() {
            if let Some(message) = self.next(deadline.step(Duration::from_millis(200)))
                && pred(&message)
            {
                return message;
            }
        }
        panic!("no notification for {what} within {timeout:?}; seen: {:?}", self.states())
    }

    /// Takes in what arrives for `period`.
    fn drain(&mut self, period: Duration) {
        let deadline = Deadline::after(period);
        while !deadline.passed() {
            self.next(deadline.step(Duration::from_millis(100)));
        }
    }

    /// What arrived so far, without the watchdog's pings.
    fn states(&self) -> Vec<&str> {
        self.seen.iter().map(String::as_str).filter(|m| *m != "WATCHDOG=1").collect()
    }
}

impl Drop for FakeManager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The JSON report of the one tuntox in `netns`.
fn status(netns: &Netns) -> Value {
    let out = netns
        .command(binary())
        .args(["status", "--json"])
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .output()
        .expect("run tuntox status");
    assert!(out.status.success(), "tuntox status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON report")
}

#[test]
fn ready_is_said_only_once_the_server_is_on_the_network() {
    let netns = Netns::new("notify");
    let mut bootstrapd = Bootstrapd::start(&netns);
    let bootstrap = bootstrapd.bootstrap_arg();
    // Down: the server starts with nothing to answer it.
    bootstrapd.stop();

    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let mut manager = FakeManager::bind(&socket_path);
    let mut args = config_dir_args(&dir.path().join("conf"));
    args.extend(["-u", "34100:34199", "--no-portmap"].map(String::from));
    args.extend(local_network_args(&bootstrap));
    let mut cmd = netns.command(binary());
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .env("NOTIFY_SOCKET", &socket_path)
        // Pings every 100 ms.
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut server = Tuntox::spawn_command(cmd, "server");
    let id = server.wait_tox_id();
    server.wait_log("listening", |l| l.contains("listening"), Duration::from_secs(20));

    // Running, but off the network: pings, and no READY=1.
    manager.drain(Duration::from_secs(3));
    assert!(manager.seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 5, "watchdog pings: {:?}", manager.seen);
    assert!(!manager.seen.iter().any(|m| m.contains("READY=1")), "READY=1 while offline: {:?}", manager.seen);
    assert_eq!(
        manager.states().first().copied(),
        Some(
            format!(
                "STATUS=joining the Tox network through {}",
                bootstrap.split(':').take(2).collect::<Vec<_>>().join(":")
            )
            .as_str()
        ),
        "{:?}",
        manager.seen
    );
    let report = status(&netns);
    assert_eq!((report["dht_nodes"].as_u64(), report["tcp_relays"].as_u64()), (Some(0), Some(0)), "{report}");

    // The bootstrap node comes back: READY=1 follows, with the status.
    bootstrapd.restart(&netns);
    let ready = manager.wait("READY=1", |m| m.contains("READY=1"), Duration::from_secs(30));
    assert!(ready.starts_with("READY=1\nSTATUS=on the Tox network: "), "{ready}");
    let report = status(&netns);
    let online = report["dht_nodes"].as_u64().unwrap_or(0) + report["tcp_relays"].as_u64().unwrap_or(0);
    assert!(online > 0, "READY=1 but the node is not on the network: {report}");

    // A client comes and goes: the status follows.
    let mut ping = netns.command(binary());
    ping.args(["ping", &id, "-c", "1", "-u", "34200:34299", "--no-portmap"])
        .args(local_network_args(&bootstrap))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let out = ping.output().unwrap();
    assert!(out.status.success(), "tuntox ping: {}", String::from_utf8_lossy(&out.stderr));
    manager.wait("a client online", |m| m == "STATUS=serving; 1 client online", Duration::from_secs(10));
    manager.wait("no client online", |m| m == "STATUS=serving; 0 clients online", Duration::from_secs(10));

    // Stopped: STOPPING=1, the last word.
    let exit = server.terminate(Duration::from_secs(10));
    assert!(exit.success(), "{exit:?}");
    manager.wait("STOPPING=1", |m| m.starts_with("STOPPING=1"), Duration::from_secs(5));
    manager.drain(Duration::from_millis(200));
    let states = manager.states();
    let ready_at = states.iter().position(|m| m.starts_with("READY=1")).unwrap();
    assert_eq!(states.iter().filter(|m| m.contains("READY=1")).count(), 1, "{states:?}");
    assert!(states[..ready_at].iter().all(|m| m.starts_with("STATUS=")), "{states:?}");
    assert_eq!(states.last().map(|m| m.starts_with("STOPPING=1")), Some(true), "{states:?}");
}

#[test]
fn the_relay_is_ready_once_its_sockets_are_bound() {
    let netns = Netns::new("notifyrelay");
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let mut manager = FakeManager::bind(&socket_path);
    let mut cmd = netns.command(binary());
    cmd.args(["relay", "--no-lan", "--port", "34201", "--tcp-port", "34202", "-C"])
        .arg(dir.path().join("conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .env("NOTIFY_SOCKET", &socket_path);
    let mut relay = Tuntox::spawn_command(cmd, "relay");
    let ready = manager.wait("READY=1", |m| m.contains("READY=1"), Duration::from_secs(20));
    assert!(ready.contains("STATUS=relay running: DHT node on UDP port 34201, TCP relay on port 34202"), "{ready}");
    // It answers on the port it announced.
    let out = netns.exec(&["ss", "-ltn", "sport = :34202"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("34202"), "{out:?}");
    assert!(relay.terminate(Duration::from_secs(10)).success());
    manager.wait("STOPPING=1", |m| m.starts_with("STOPPING=1"), Duration::from_secs(5));
}

#[test]
fn a_bad_notify_socket_stops_the_start() {
    let netns = Netns::new("notifybad");
    let out = netns
        .command(binary())
        .args(["relay", "--no-lan", "--port", "34203", "--tcp-port", "34204", "-C"])
        .arg(tempfile::tempdir().unwrap().path().join("conf"))
        .env("NOTIFY_SOCKET", "relative/name")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NOTIFY_SOCKET") && stderr.contains("absolute path"), "{stderr}");
}

/// Reads `path` until a line contains `needle`; panics after `timeout`.
fn wait_file_line(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Deadline::after(timeout);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(!deadline.passed(), "no line with {needle:?} in {} within {timeout:?}:\n{text}", path.display());
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_log_file_is_appended_to_and_reopened_on_sighup() {
    let netns = Netns::new("logfile");
    let bootstrapd = Bootstrapd::start(&netns);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tuntox.log");
    std::fs::write(&log, "an older line\n").unwrap();
    let mut args = config_dir_args(&dir.path().join("conf"));
    args.extend(["-u", "34300:34399", "--no-portmap", "--log-file"].map(String::from));
    args.push(log.to_str().unwrap().to_owned());
    args.extend(local_network_args(&bootstrapd.bootstrap_arg()));
    let mut server = Tuntox::spawn(&netns, "server", &args);
    let line = wait_file_line(&log, "Using Tox ID: ", Duration::from_secs(20));
    // Text lines: a timestamp, the level, no module path at the default level.
    assert!(line.contains(" INFO ") && !line.contains("tuntox::"), "{line}");
    assert!(std::fs::read_to_string(&log).unwrap().starts_with("an older line\n"), "appended");
    wait_file_line(&log, "joined the Tox network", Duration::from_secs(30));

    // logrotate renames the file, then signals.
    let rotated = dir.path().join("tuntox.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
    wait_file_line(&log, "reopened the log file", Duration::from_secs(10));
    assert!(server.terminate(Duration::from_secs(10)).success());
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert!(fresh.contains("terminated; stopping"), "{fresh}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("joined the Tox network") && !old.contains("terminated"), "{old}");
    // Nothing went to standard error.
    assert!(server.log().is_empty(), "{:?}", server.log());
}

/// Without a log file SIGHUP keeps its default action, ending the process
/// (ssh stops its ProxyCommand, `tuntox -W`, with it).
#[test]
fn without_a_log_file_sighup_ends_the_process() {
    use std::os::unix::process::ExitStatusExt;
    let netns = Netns::new("hup");
    let dir = tempfile::tempdir().unwrap();
    let mut args = config_dir_args(&dir.path().join("conf"));
    args.extend(["-u", "34400:34499", "--no-portmap"].map(String::from));
    args.extend(local_network_args(&format!("127.0.0.1:33445:{}", "AB".repeat(32))));
    let mut server = Tuntox::spawn(&netns, "server", &args);
    server.wait_log("listening", |l| l.contains("listening"), Duration::from_secs(20));
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
    let exit = server.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.signal(), Some(libc::SIGHUP), "{exit:?}");
}

#[test]
fn json_lines_and_journal_lines() {
    let dir = tempfile::tempdir().unwrap();
    // A new identity is a notice, logged at the default level.
    let out = Command::new(binary())
        .args(["id", "--log-format", "json", "-C"])
        .arg(dir.path().join("a"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line: Value = serde_json::from_str(stderr.lines().next().unwrap_or("")).expect("a JSON line");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    assert!(line["fields"]["message"].as_str().unwrap_or("").starts_with("created a new Tox identity"), "{line}");

    // Standard error that systemd connected to the journal (JOURNAL_STREAM
    // names it): a priority prefix, no time, no level word.
    let err_path = dir.path().join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let meta = err.metadata().unwrap();
    let out = Command::new(binary())
        .args(["id", "-C"])
        .arg(dir.path().join("b"))
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(err)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&err_path).unwrap();
    assert!(text.starts_with("<6>created a new Tox identity in "), "{text}");

    // Another stream: our own timestamps as usual.
    let out = Command::new(binary())
        .args(["id", "-C"])
        .arg(dir.path().join("c"))
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", "1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("20") && stderr.contains(" INFO created a new Tox identity"), "{stderr}");
}

/// `tuntox vpn up` as `tuntox-vpn@.service` runs it: as `nobody`, with
/// CAP_NET_ADMIN as its only capability (bounding, ambient, effective) and
/// no new privileges, against a `tuntox --vpn` server in another
/// namespace: the device comes up with its address, traffic flows, and
/// on SIGTERM it removes its device.
#[test]
fn a_vpn_client_needs_only_cap_net_admin() {
    use nix::unistd::{User, chown};
    let srv = Netns::new("capsrv");
    let cli = Netns::new("capcli");
    srv.exec(&["ip", "link", "add", "c1", "type", "veth", "peer", "name", "eth0", "netns", cli.name()]);
    srv.exec(&["ip", "addr", "add", "10.0.9.1/24", "dev", "c1"]);
    srv.exec(&["ip", "link", "set", "c1", "up"]);
    cli.exec(&["ip", "addr", "add", "10.0.9.2/24", "dev", "eth0"]);
    cli.exec(&["ip", "link", "set", "eth0", "up"]);
    let bootstrapd = Bootstrapd::start(&srv);
    let boot = bootstrapd.bootstrap_arg().replacen("127.0.0.1", "10.0.9.1", 1);

    let dir = tempfile::tempdir().unwrap();
    let mut args = config_dir_args(&dir.path().join("server"));
    args.extend(["-s", "cap-secret", "-u", "34500:34599", "--no-portmap", "--vpn"].map(String::from));
    args.extend(local_network_args(&boot));
    let mut server = Tuntox::spawn(&srv, "server", &args);
    let id = server.wait_tox_id();

    let nobody = User::from_name("nobody").unwrap().expect("the nobody account");
    let conf = dir.path().join("client");
    std::fs::create_dir(&conf).unwrap();
    chown(&conf, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let dev = DevLog::missing().with_open_tun();
    let mut cmd = dev.wrap(Path::new("setpriv"), |program| cli.command(program));
    cmd.args(["--reuid", &nobody.uid.to_string(), "--regid", &nobody.gid.to_string(), "--clear-groups"])
        .args(["--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin"])
        .args(["--no-new-privs", binary(), "vpn", "up", "-i", &id, "-s", "cap-secret", "--no-portmap", "-C"])
        .arg(&conf)
        .args(local_network_args(&boot))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut client = Tuntox::spawn_command(cmd, "vpn up (CAP_NET_ADMIN only)");
    client.wait_log("the VPN session", |l| l.contains("VPN up: "), Duration::from_secs(60));

    let status = std::fs::read_to_string(format!("/proc/{}/status", client.pid())).unwrap();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(&format!("{name}:\t"))).unwrap_or_default().to_owned();
    let uid = nobody.uid.to_string();
    assert_eq!(field("Uid").split_whitespace().collect::<Vec<_>>(), [uid.as_str(); 4], "{status}");
    for set in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
        assert_eq!(field(set), "0000000000001000", "{set} is CAP_NET_ADMIN alone: {status}");
    }
    assert_eq!(field("NoNewPrivs"), "1", "{status}");
    let out = cli.exec(&["ping", "-c", "1", "-W", "5", "10.77.0.1"]);
    assert!(out.status.success(), "ping over the VPN: {out:?}");

    assert!(client.terminate(Duration::from_secs(10)).success(), "{:?}", client.log());
    let links = String::from_utf8_lossy(&cli.exec(&["ip", "-o", "link"]).stdout).into_owned();
    assert!(!links.contains("tuntox0"), "the device is left behind: {links}");
    assert!(server.terminate(Duration::from_secs(15)).success());
}
