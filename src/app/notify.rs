//! Telling a service manager how we are: systemd's readiness protocol
//! (`sd_notify(3)`), for units with `Type=notify`.
//!
//! systemd passes the path of a Unix datagram socket in `NOTIFY_SOCKET`
//! (a file path, or an abstract socket name written with a leading `@`).
//! Each message is one datagram of newline-separated `KEY=VALUE`
//! assignments:
//!
//! | message | when we send it |
//! |---|---|
//! | `READY=1` (with a `STATUS=`) | once, when the node is on the Tox network: a DHT node or a TCP relay answers (the relay: once its sockets are bound, since it is a network of its own) |
//! | `STATUS=...` | when the state changes: network lost or back, a client's server found, online, lost; a server's friends online |
//! | `WATCHDOG=1` | every half `WATCHDOG_USEC` when the unit sets `WatchdogSec=` (and `WATCHDOG_PID`, when set, is ours), sent from the mode's own runtime, so a stuck runtime stops the pings |
//! | `STOPPING=1` | when a signal asks us to stop |
//!
//! Without `NOTIFY_SOCKET` every call here does nothing. A message that
//! cannot be sent is dropped after a debug log line: the service manager
//! notices what matters (a missing `READY=1`, missed watchdog pings)
//! itself. The protocol is small enough to write out rather than take a
//! crate for it.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The variable that names the socket.
pub const SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    ready: AtomicBool,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, if set (and not empty).
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os(SOCKET_ENV) {
            Some(name) if !name.is_empty() => Notifier::new(&name).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `name`: a path, or `@` and an abstract name.
    pub fn new(name: &OsStr) -> io::Result<Notifier> {
        let bytes = name.as_bytes();
        let addr = match bytes.split_first() {
            Some((b'@', abstract_name)) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name)?
            }
            Some((b'/', _)) => SocketAddr::from_pathname(name)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{SOCKET_ENV} must be an absolute path or start with '@', not {}", name.to_string_lossy()),
                ));
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, addr, ready: AtomicBool::new(false) })
    }

    /// Sends one message (`KEY=VALUE` lines).
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket.send_to_addr(message.as_bytes(), &self.addr).map(drop)
    }

    /// `READY=1` with `status`, the first time; after that `status` alone.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        if self.ready.swap(true, Ordering::AcqRel) {
            self.status(status)
        } else {
            self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
        }
    }

    /// `STATUS=status`.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }
}

/// A status is one line.
fn one_line(status: &str) -> String {
    status.replace('\n', " ")
}

static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();

/// Connects to `NOTIFY_SOCKET` for the calls below (once; later calls do
/// nothing). A malformed variable is an error: the unit expects a
/// notification that would never come.
pub fn init() -> io::Result<()> {
    if NOTIFIER.get().is_none() {
        let notifier = Notifier::from_env()?;
        let _ = NOTIFIER.set(notifier);
    }
    Ok(())
}

/// Whether a service manager listens (`NOTIFY_SOCKET` was set at [`init`]).
pub fn enabled() -> bool {
    NOTIFIER.get().is_some_and(Option::is_some)
}

fn with(what: &str, f: impl FnOnce(&Notifier) -> io::Result<()>) {
    if let Some(Some(notifier)) = NOTIFIER.get()
        && let Err(e) = f(notifier)
    {
        tracing::debug!("cannot tell the service manager {what}: {e}");
    }
}

/// The node is on the network (first call: `READY=1`), in `status`'s words.
pub fn ready(status: &str) {
    with("we are ready", |n| n.ready(status));
}

/// The state changed.
pub fn status(status: &str) {
    with("our status", |n| n.status(status));
}

/// We are stopping.
pub fn stopping() {
    with("we are stopping", |n| n.send("STOPPING=1\nSTATUS=stopping"));
}

/// A watchdog ping.
pub fn watchdog() {
    with("we are alive", |n| n.send("WATCHDOG=1"));
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, when it is set
/// for this process (`WATCHDOG_PID` absent or ours) and a service manager
/// listens.
pub fn watchdog_interval() -> Option<Duration> {
    if !enabled() {
        return None;
    }
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, ours: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(ours)
    {
        return None;
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_path_socket_and_ready_is_said_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(path.as_os_str()).unwrap();
        n.status("joining\nthe network").unwrap();
        n.ready("joined").unwrap();
        n.ready("joined again").unwrap();
        n.send("WATCHDOG=1").unwrap();
        assert_eq!(receive(&listener), "STATUS=joining the network");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=joined");
        assert_eq!(receive(&listener), "STATUS=joined again");
        assert_eq!(receive(&listener), "WATCHDOG=1");
    }

    #[test]
    fn an_abstract_name_starts_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tuntox-notify-test-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(OsStr::new(&format!("@{name}"))).unwrap();
        n.ready("up").unwrap();
        assert_eq!(receive(&listener), "READY=1\nSTATUS=up");
    }

    #[test]
    fn relative_names_are_refused_and_a_missing_listener_is_an_error() {
        assert!(Notifier::new(OsStr::new("relative/path")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(dir.path().join("nobody").as_os_str()).unwrap();
        assert!(n.send("READY=1").is_err());
    }

    #[test]
    fn the_watchdog_pings_at_half_its_timeout_for_its_process_only() {
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 7), Some(Duration::from_secs(15)));
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("7"), 7), Some(Duration::from_secs(15)));
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }
}
