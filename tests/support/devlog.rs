//! A private `/dev/log` for a process under test: the process runs in its
//! own mount namespace (`unshare -m`) whose `/dev` is a small tmpfs holding
//! the real `null`, `zero`, `full`, `random` and `urandom` and, as `log`, a
//! Unix datagram socket this test reads, and on demand ([`DevLog::with_tun`])
//! a TUN node `net/tun` of its own, mode 0600 and root's, whatever the
//! host's is. Nothing changes outside that namespace, which ends with its
//! last process; the host's `/dev/log` and `/dev/net/tun` (present or not)
//! are never touched.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::Duration;

use super::deadline::Deadline;

/// Mounts the private /dev, then execs the rest of its arguments.
/// `$1` is the directory holding `log` and the mount point `realdev`,
/// `$2` is `yes` to provide /dev/log, `$3` `yes` to provide /dev/net/tun
/// with mode `$4`.
const SCRIPT: &str = r#"set -e
dir=$1 with_log=$2 with_tun=$3 tun_mode=$4
shift 4
mount --rbind /dev "$dir/realdev"
mount -t tmpfs -o mode=755 tuntox-test-dev /dev
for n in null zero full random urandom; do
  touch "/dev/$n"
  mount --bind "$dir/realdev/$n" "/dev/$n"
done
if [ "$with_log" = yes ]; then
  touch /dev/log
  mount --bind "$dir/log" /dev/log
fi
if [ "$with_tun" = yes ]; then
  mkdir /dev/net
  mknod -m "$tun_mode" /dev/net/tun c 10 200
fi
umount -l "$dir/realdev"
exec "$@"
"#;

/// The socket that receives what the process sends to /dev/log. A thread
/// drains it as datagrams arrive (a Unix datagram socket queues only a few,
/// `net.unix.max_dgram_qlen`, and senders drop the rest).
pub struct DevLog {
    dir: tempfile::TempDir,
    datagrams: Option<Receiver<String>>,
    stop: Arc<AtomicBool>,
    tun: bool,
    tun_mode: u32,
}

impl DevLog {
    /// A /dev/log socket to read from.
    pub fn new() -> DevLog {
        let dir = Self::dir();
        let path = dir.path().join("log");
        let socket = UnixDatagram::bind(&path).expect("bind the test's /dev/log socket");
        // Writable for a process that dropped root (-U).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf)
                    && tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err()
                {
                    break;
                }
            }
        });
        DevLog { dir, datagrams: Some(rx), stop, tun: false, tun_mode: 0o600 }
    }

    /// No /dev/log at all, as on a machine without a syslog daemon.
    pub fn missing() -> DevLog {
        DevLog { dir: Self::dir(), datagrams: None, stop: Arc::default(), tun: false, tun_mode: 0o600 }
    }

    /// Also a `/dev/net/tun` (the TUN clone device, 10:200) of mode 0600
    /// owned by root, as on hosts where only root may open it.
    pub fn with_tun(mut self) -> DevLog {
        self.tun = true;
        self
    }

    /// Also a `/dev/net/tun` of mode 0666, as udev makes it on Debian:
    /// anyone may open it, and creating a device takes CAP_NET_ADMIN.
    pub fn with_open_tun(mut self) -> DevLog {
        self.tun = true;
        self.tun_mode = 0o666;
        self
    }

    fn dir() -> tempfile::TempDir {
        let dir = tempfile::Builder::new().prefix("tt-devlog").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("realdev")).unwrap();
        dir
    }

    /// Makes `cmd` (a command that will run `program`, such as
    /// `netns.command(program)` or `Command::new(program)`) run `program`
    /// in the private mount namespace instead. The process ID stays that of
    /// `program`: every step execs the next.
    pub fn wrap(&self, program: &Path, make: impl FnOnce(&str) -> Command) -> Command {
        let mut cmd = make("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", SCRIPT, "sh"])
            .arg(self.dir.path())
            .arg(if self.datagrams.is_some() { "yes" } else { "no" })
            .arg(if self.tun { "yes" } else { "no" })
            .arg(format!("{:o}", self.tun_mode))
            .arg(program);
        cmd
    }

    /// The next datagram, within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.datagrams.as_ref().expect("a DevLog with a socket").recv_timeout(timeout).ok()
    }

    /// Waits for a datagram matching `pred` and returns it; panics with
    /// every datagram seen after `timeout`.
    pub fn wait_for(&self, what: &str, mut pred: impl FnMut(&str) -> bool, timeout: Duration) -> String {
        let deadline = Deadline::after(timeout);
        let mut seen = Vec::new();
        while !deadline.passed() {
            if let Some(line) = self.recv(deadline.step(Duration::from_millis(200))) {
                if pred(&line) {
                    return line;
                }
                seen.push(line);
            }
        }
        panic!("no syslog datagram for {what} within {timeout:?}; got:\n{}", seen.join("\n"));
    }
}

impl Drop for DevLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
