//! Logging to syslog (`-S`, and `-z`, which implies it), as C tuntox does:
//! facility LOCAL1, identifier `tuntox`, with the process ID.
//!
//! Each log event becomes one datagram on the local syslog socket
//! (`/dev/log`, a Unix datagram socket served by journald, rsyslog or
//! syslogd) in the traditional BSD format of RFC 3164 as the C library's
//! `syslog(3)` writes it:
//!
//! ```text
//! <PRI>Mmm dd hh:mm:ss tuntox[PID]: MESSAGE
//! ```
//!
//! PRI is `facility * 8 + severity`; the time is local time. Tracing
//! levels map to severities as C tuntox's levels did: error → err (3),
//! warn → warning (4), info → info (6), debug and trace → debug (7).
//!
//! [`Syslog`] is a `tracing_subscriber` `MakeWriter`: the formatter writes an
//! event into a per-event buffer, which is sent when the buffer is dropped.
//! The socket is non-blocking: when the syslog daemon falls behind, a
//! message waits a moment for room, then it and the following ones are
//! dropped (the process never stalls for long) and the next message that
//! gets through says how many were lost. When the daemon restarts, the socket
//! reconnects on the next message.
//!
//! Why not the C library's `syslog(3)` (or a crate wrapping it): it cannot
//! tell us that no syslog daemon listens, which `-S` reports at start, and
//! its socket path is fixed, so it cannot be tested against a socket of the
//! test's own. Only the local time comes from the C library (`localtime_r`).

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Where the C library's `syslog(3)` sends its messages.
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// LOCAL1, C tuntox's facility.
pub const FACILITY_LOCAL1: u8 = 17;

/// The identifier before the process ID.
pub const IDENT: &str = "tuntox";

/// Longer messages are cut to this many bytes.
pub const MAX_MESSAGE: usize = 8 * 1024;

/// Syslog severities (RFC 3164 table 2) that tracing levels map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Severity {
    /// Error conditions.
    Err = 3,
    /// Warning conditions.
    Warning = 4,
    /// Informational messages.
    Info = 6,
    /// Debug-level messages.
    Debug = 7,
}

impl Severity {
    /// The severity of a tracing level.
    pub fn of(level: &Level) -> Severity {
        match *level {
            Level::ERROR => Severity::Err,
            Level::WARN => Severity::Warning,
            Level::INFO => Severity::Info,
            _ => Severity::Debug,
        }
    }
}

/// A local time, as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Month, 0 (January) to 11.
    pub month: u8,
    /// Day of the month, 1-31.
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-60.
    pub second: u8,
}

impl Timestamp {
    /// The current local time.
    #[allow(clippy::disallowed_methods)] // the binary's log lines carry the wall-clock time
    pub fn now() -> Timestamp {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let t = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
        let mut tm = std::mem::MaybeUninit::<libc::tm>::uninit();
        // SAFETY: localtime_r reads `t` and fills the `tm` we own; it returns
        // null (and leaves `tm` unspecified) only on failure, checked below.
        let filled = unsafe { libc::localtime_r(&t, tm.as_mut_ptr()) };
        if filled.is_null() {
            return Timestamp { month: 0, day: 1, hour: 0, minute: 0, second: 0 };
        }
        // SAFETY: localtime_r succeeded, so it initialised `tm`.
        let tm = unsafe { tm.assume_init() };
        let field = |v: libc::c_int| u8::try_from(v).unwrap_or(0);
        Timestamp {
            month: field(tm.tm_mon),
            day: field(tm.tm_mday),
            hour: field(tm.tm_hour),
            minute: field(tm.tm_min),
            second: field(tm.tm_sec),
        }
    }
}

/// Writes one datagram: `<PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE`.
/// The message loses surrounding whitespace (the formatter's padding and
/// final newline) and is cut at [`MAX_MESSAGE`] bytes.
pub fn format_datagram(out: &mut Vec<u8>, facility: u8, severity: Severity, time: Timestamp, pid: u32, message: &[u8]) {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.get(usize::from(time.month)).copied().unwrap_or("Jan");
    let pri = u16::from(facility) * 8 + severity as u16;
    let _ = write!(
        out,
        "<{pri}>{month} {:>2} {:02}:{:02}:{:02} {IDENT}[{pid}]: ",
        time.day, time.hour, time.minute, time.second
    );
    let message = message.trim_ascii();
    out.extend_from_slice(&message[..message.len().min(MAX_MESSAGE)]);
}

/// A connection to the local syslog daemon.
#[derive(Debug)]
pub struct Syslog {
    path: PathBuf,
    facility: u8,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    socket: UnixDatagram,
    /// Messages lost since the last one sent.
    dropped: u64,
    buf: Vec<u8>,
}

impl Syslog {
    /// Connects to the syslog socket at `path` (normally [`DEFAULT_SOCKET`]).
    pub fn connect(path: &Path) -> io::Result<Syslog> {
        // The first local time reads the time zone: do it now, while its
        // files are surely reachable (before a change of directory or user).
        let _ = Timestamp::now();
        let socket = Self::open(path)?;
        Ok(Syslog {
            path: path.to_owned(),
            facility: FACILITY_LOCAL1,
            state: Mutex::new(State { socket, dropped: 0, buf: Vec::new() }),
        })
    }

    fn open(path: &Path) -> io::Result<UnixDatagram> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one message. Failures are not reported (there is nowhere to
    /// report them); lost messages are counted and announced later.
    pub fn send(&self, severity: Severity, message: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let State { socket, dropped, buf } = &mut *state;
        let time = Timestamp::now();
        let pid = std::process::id();
        if *dropped > 0 {
            let note = match *dropped {
                1 => "1 log message was lost (the syslog daemon did not keep up)".to_owned(),
                n => format!("{n} log messages were lost (the syslog daemon did not keep up)"),
            };
            buf.clear();
            format_datagram(buf, self.facility, Severity::Warning, time, pid, note.as_bytes());
            if deliver(socket, &self.path, buf, false).is_ok() {
                *dropped = 0;
            }
        }
        buf.clear();
        format_datagram(buf, self.facility, severity, time, pid, message);
        if deliver(socket, &self.path, buf, *dropped == 0).is_err() {
            *dropped += 1;
        }
    }
}

/// How long a message waits for room in the daemon's queue, once per
/// congestion: after a loss, messages are dropped at once until one passes.
const PATIENCE: Duration = Duration::from_millis(20);

/// Sends `datagram`, reconnecting once if the daemon went away, and
/// waiting up to [`PATIENCE`] for room if `patient`.
fn deliver(socket: &mut UnixDatagram, path: &Path, datagram: &[u8], patient: bool) -> io::Result<()> {
    match socket.send(datagram) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected) => {
            *socket = Syslog::open(path)?;
            socket.send(datagram).map(drop)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && patient => {
            let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
            let millis = u16::try_from(PATIENCE.as_millis()).unwrap_or(u16::MAX);
            if poll(&mut fds, PollTimeout::from(millis)).is_ok_and(|ready| ready > 0) {
                socket.send(datagram).map(drop)
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogEvent<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SyslogEvent { syslog: self, severity: Severity::Info, buf: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        SyslogEvent { syslog: self, severity: Severity::of(meta.level()), buf: Vec::new() }
    }
}

/// One event being formatted; sent as one datagram when dropped.
#[derive(Debug)]
pub struct SyslogEvent<'a> {
    syslog: &'a Syslog,
    severity: Severity,
    buf: Vec<u8>,
}

impl Write for SyslogEvent<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogEvent<'_> {
    fn drop(&mut self) {
        if !self.buf.trim_ascii().is_empty() {
            self.syslog.send(self.severity, &self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(dir: &Path) -> (PathBuf, UnixDatagram) {
        let path = dir.join("log");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (path, socket)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = vec![0u8; 65536];
        let n = socket.recv(&mut buf).expect("a datagram within 5 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn the_datagram_has_the_bsd_syslog_layout() {
        let mut out = Vec::new();
        let time = Timestamp { month: 10, day: 3, hour: 8, minute: 5, second: 9 };
        format_datagram(&mut out, FACILITY_LOCAL1, Severity::Info, time, 4242, b" INFO server: up\n");
        assert_eq!(String::from_utf8(out).unwrap(), "<142>Nov  3 08:05:09 tuntox[4242]: INFO server: up");

        let mut out = Vec::new();
        let time = Timestamp { month: 0, day: 28, hour: 23, minute: 59, second: 60 };
        format_datagram(&mut out, FACILITY_LOCAL1, Severity::Err, time, 1, &[b'x'; 20_000]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("<139>Jan 28 23:59:60 tuntox[1]: xxx"), "{text}");
        assert_eq!(text.len(), "<139>Jan 28 23:59:60 tuntox[1]: ".len() + MAX_MESSAGE);

        assert_eq!(Severity::of(&Level::WARN) as u8, 4);
        assert_eq!(Severity::of(&Level::TRACE) as u8, 7);
        assert_eq!(Severity::of(&Level::DEBUG) as u8, 7);
    }

    #[test]
    fn tracing_events_arrive_as_one_datagram_each_with_their_severity() {
        let dir = tempfile::tempdir().unwrap();
        let (path, socket) = receiver(dir.path());
        let syslog = Syslog::connect(&path).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_writer(syslog)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(port = 7, "first");
            tracing::error!("second\nspans two lines");
            tracing::debug!("third");
            tracing::trace!("filtered out");
        });
        let pid = std::process::id();
        let first = recv(&socket);
        assert!(first.starts_with("<140>"), "{first}");
        assert!(first.contains(&format!(" tuntox[{pid}]: WARN ")), "{first}");
        assert!(first.ends_with("first port=7"), "{first}");
        // The header's time: "Mmm dd hh:mm:ss " after the PRI.
        let header = &first[5..21];
        assert_eq!(header.as_bytes()[3], b' ', "{first}");
        assert_eq!(header.as_bytes()[6], b' ', "{first}");
        assert_eq!(&header[9..10], ":", "{first}");
        let second = recv(&socket);
        assert!(second.starts_with("<139>") && second.ends_with("second\nspans two lines"), "{second}");
        let third = recv(&socket);
        assert!(third.starts_with("<143>") && third.ends_with("third"), "{third}");
        socket.set_nonblocking(true).unwrap();
        assert!(socket.recv(&mut [0u8; 16]).is_err(), "the trace event was sent");
    }

    #[test]
    fn a_restarted_daemon_gets_the_next_message() {
        let dir = tempfile::tempdir().unwrap();
        let (path, socket) = receiver(dir.path());
        let syslog = Syslog::connect(&path).unwrap();
        syslog.send(Severity::Info, b"before");
        assert!(recv(&socket).ends_with("before"));
        drop(socket);
        std::fs::remove_file(&path).unwrap();
        syslog.send(Severity::Info, b"while down");
        let (_, socket) = receiver(dir.path());
        syslog.send(Severity::Info, b"after");
        let lost = recv(&socket);
        assert!(
            lost.starts_with("<140>") && lost.ends_with("1 log message was lost (the syslog daemon did not keep up)"),
            "{lost}"
        );
        assert!(recv(&socket).ends_with("after"));
    }

    #[test]
    fn a_daemon_that_does_not_read_loses_messages_and_learns_how_many() {
        const SENT: usize = 3000;
        let dir = tempfile::tempdir().unwrap();
        let (path, socket) = receiver(dir.path());
        let syslog = Syslog::connect(&path).unwrap();
        for i in 0..SENT {
            syslog.send(Severity::Info, format!("message {i}").as_bytes());
        }
        socket.set_nonblocking(true).unwrap();
        let mut queued = 0;
        let mut buf = vec![0u8; 65536];
        while socket.recv(&mut buf).is_ok() {
            queued += 1;
        }
        assert!(queued < SENT, "the queue took all {SENT} messages: the test cannot overflow it");
        socket.set_nonblocking(false).unwrap();
        syslog.send(Severity::Info, b"after");
        let note = recv(&socket);
        assert!(
            note.ends_with(&format!("{} log messages were lost (the syslog daemon did not keep up)", SENT - queued)),
            "{note}"
        );
        assert!(recv(&socket).ends_with("after"));
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Syslog::connect(&dir.path().join("log")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
