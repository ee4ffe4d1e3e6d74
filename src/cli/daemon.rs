//! Running in the background (`-z`).
//!
//! The launcher forks before any thread exists (the async runtime starts
//! later, in the child). The child, the daemon, starts a new session (so it
//! has no controlling terminal and is its own session leader), works from
//! `/`, points standard input, output and error at `/dev/null`, and starts
//! up. Over a pipe it then tells the launcher one thing: `0` once it runs
//! (identity loaded, sockets bound), or `1` and its start-up error. The
//! launcher exits 0 on the first, prints the error and exits 1 on the
//! second, and gives up (stopping the daemon) if neither arrives in time.
//! The daemon's parent is then init (or the nearest subreaper).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid};

/// The side of the fork we are on.
#[derive(Debug)]
pub enum Forked {
    /// The launcher, with the daemon's verdict: `Ok` once it runs, or its
    /// start-up error. The launcher should exit now.
    Launcher(anyhow::Result<()>),
    /// The daemon, which reports through this once it runs or fails.
    Daemon(Readiness),
}

/// The daemon's end of the pipe to the launcher.
#[derive(Debug)]
pub struct Readiness {
    pipe: File,
}

impl Readiness {
    /// Tells the launcher we run; it exits 0.
    pub fn ready(mut self) {
        let _ = self.pipe.write_all(b"0");
    }

    /// Tells the launcher why we could not start; it prints `message` and
    /// exits 1.
    pub fn failed(mut self, message: &str) {
        let _ = self.pipe.write_all(format!("1{message}").as_bytes());
    }
}

/// Forks. The launcher waits up to `timeout` for the daemon's report; the
/// daemon detaches from the terminal and returns its [`Readiness`].
pub fn daemonize(timeout: Duration) -> anyhow::Result<Forked> {
    ensure_single_threaded()?;
    let (read, write) = pipe2(OFlag::O_CLOEXEC).context("-z: cannot create a pipe")?;
    // SAFETY: the process has a single thread (checked above), so the child
    // is a complete copy and may run any code, not only async-signal-safe
    // functions.
    match unsafe { fork() }.context("-z: cannot fork")? {
        ForkResult::Parent { child } => {
            drop(write);
            Ok(Forked::Launcher(wait_for_daemon(read, child, timeout)))
        }
        ForkResult::Child => {
            drop(read);
            let readiness = Readiness { pipe: File::from(write) };
            match detach() {
                Ok(()) => Ok(Forked::Daemon(readiness)),
                Err(e) => {
                    readiness.failed(&format!("{e:#}"));
                    std::process::exit(1);
                }
            }
        }
    }
}

/// A new session, `/` as the working directory, `/dev/null` as standard
/// input, output and error.
fn detach() -> anyhow::Result<()> {
    setsid().context("-z: cannot start a new session")?;
    chdir("/").context("-z: cannot change to /")?;
    let null = OpenOptions::new().read(true).write(true).open("/dev/null").context("-z: cannot open /dev/null")?;
    dup2_stdin(&null).context("-z: cannot redirect standard input")?;
    dup2_stdout(&null).context("-z: cannot redirect standard output")?;
    dup2_stderr(&null).context("-z: cannot redirect standard error")?;
    Ok(())
}

/// The launcher's wait: the first byte says it all.
#[allow(clippy::disallowed_methods)] // a real-time bound on a real process
fn wait_for_daemon(read: OwnedFd, child: Pid, timeout: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut pipe = File::from(read);
    let mut report = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if report.first() == Some(&b'0') {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if left.is_zero() {
            let _ = kill(child, Signal::SIGTERM);
            bail!("-z: the background process did not start within {} s; stopped it", timeout.as_secs());
        }
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).context("-z: cannot wait for the background process"),
        }
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => report.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("-z: cannot read the background process's report"),
        }
    }
    match report.split_first() {
        Some((b'0', _)) => Ok(()),
        Some((_, message)) => Err(anyhow!("{}", String::from_utf8_lossy(message))),
        None => bail!("-z: the background process ended during start-up without a word ({})", end_of(child)),
    }
}

/// How the daemon ended, waiting for it a little (it has closed its end
/// of the pipe, so it is exiting).
fn end_of(child: Pid) -> String {
    for _ in 0..50 {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            Ok(WaitStatus::Exited(_, code)) => return format!("exit status {code}"),
            Ok(WaitStatus::Signaled(_, signal, _)) => return format!("killed by {signal}"),
            Ok(other) => return format!("{other:?}"),
            Err(e) => return format!("cannot tell how: {e}"),
        }
    }
    "it is still running".to_owned()
}

/// Forking copies only the calling thread; refuse if there are others.
fn ensure_single_threaded() -> anyhow::Result<()> {
    let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count).unwrap_or(1);
    if threads > 1 {
        bail!("-z: cannot fork: the process already runs {threads} threads");
    }
    Ok(())
}
