//! Private network namespaces for tests that run real processes.
//!
//! `tox-bootstrapd` binds every address and libtoxcore probes whole port
//! ranges, so each test gets its own namespace with only `lo` up: tests run
//! in parallel without seeing each other, and nothing leaks onto the host's
//! network. A [`Netns`] kills every process inside it and deletes itself on
//! drop, also when the test panics; a [`ChildGuard`] kills and reaps one child.
//!
//! Namespaces need root. The tests never skip without it: they fail and say
//! how to run them (`scripts/test` as root).

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use super::deadline::now;

const PREFIX: &str = "tt-";
const CLONE_NEWNET: i32 = 0x4000_0000;
const SIGKILL: i32 = 9;

unsafe extern "C" {
    fn geteuid() -> u32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn setns(fd: i32, nstype: i32) -> i32;
}

/// A network namespace named `tt-<tag>-<pid>-<n>`, with `lo` up.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace. Panics with instructions when not root or
    /// when `ip` (iproute2) is missing.
    pub fn new(tag: &str) -> Netns {
        require_root();
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale);
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect();
        let name = format!("{PREFIX}{tag}-{}-{n}", std::process::id());
        if Path::new("/run/netns").join(&name).exists() {
            // Left behind by an earlier test process that had our pid.
            destroy(&name);
        }
        ip(&["netns", "add", &name]);
        let netns = Netns { name };
        netns.exec(&["ip", "link", "set", "lo", "up"]);
        netns
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec NAME program`; `ip` execs, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        // A tuntox started here refuses the public bootstrap list and LAN
        // discovery (a safety net: tests reach only their own nodes).
        cmd.env("TUNTOX_PRIVATE_NETWORK_ONLY", "1");
        // Its `tuntox status` socket goes to the namespace's own directory,
        // where `tuntox status` run here looks too.
        cmd.env("TUNTOX_STATUS_DIR", self.status_dir());
        cmd
    }

    /// The status directory of the tuntox processes started here (made by
    /// the first of them, removed with the namespace).
    pub fn status_dir(&self) -> std::path::PathBuf {
        status_dir(&self.name)
    }

    /// Runs `argv` inside the namespace to completion and panics unless it
    /// succeeds; returns its output. For set-up commands (`ip`, `tc`, `sysctl`).
    pub fn exec(&self, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().expect("exec needs a program");
        let output = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec ({e}); install iproute2 (scripts/test does)"));
        assert!(
            output.status.success(),
            "in netns {}: {argv:?} failed ({}): {}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        output
    }

    /// Runs `f` on a new thread that has entered the namespace, and returns
    /// its result. Sockets created there stay in the namespace afterwards,
    /// so in-process code (a probe, a Rust node) can take part in the test.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = Path::new("/run/netns").join(&self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let handle = thread::spawn(move || {
            // SAFETY: setns only changes this thread's network namespace; the
            // descriptor is a valid namespace file kept open by `file`.
            let rc = unsafe { setns(file.as_raw_fd(), CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            drop(file);
            f()
        });
        handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// The pids of every process inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        pids(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        destroy(&self.name);
    }
}

/// Kills a child process and reaps it on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    label: String,
}

impl ChildGuard {
    /// Takes ownership of `child`; `label` names it in messages.
    pub fn new(child: Child, label: impl Into<String>) -> ChildGuard {
        ChildGuard { child, label: label.into() }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The child itself, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills (SIGKILL) and reaps the child now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { geteuid() };
    assert!(euid == 0, "interop tests need root for network namespaces; run scripts/test as root (euid is {euid})");
}

fn ip(args: &[&str]) -> Output {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip ({e}); install iproute2 (scripts/test does)"));
    assert!(
        output.status.success(),
        "ip {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    output
}

fn pids(name: &str) -> Vec<i32> {
    let Ok(output) = Command::new("ip").args(["netns", "pids", name]).stdin(Stdio::null()).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn status_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{name}-status"))
}

/// Kills everything in the namespace, waits (bounded) for it to be gone, and
/// deletes the namespace and its status directory. Never panics: it runs
/// from Drop, maybe mid-panic.
fn destroy(name: &str) {
    let deadline = now() + Duration::from_secs(5);
    loop {
        let pids = pids(name);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions; the pid came
            // from `ip netns pids`, so it is a process inside our namespace.
            unsafe { kill(pid, SIGKILL) };
        }
        if now() >= deadline {
            eprintln!("netns {name}: processes still alive after SIGKILL; deleting anyway");
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("ip").args(["netns", "delete", name]).stdin(Stdio::null()).stderr(Stdio::null()).status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("netns {name}: ip netns delete failed ({status:?})");
    }
    let _ = std::fs::remove_dir_all(status_dir(name));
}

/// Deletes `tt-*-<pid>-<n>` namespaces whose creating process is gone
/// (a test binary killed by a timeout never ran its destructors).
fn sweep_stale() {
    let output = ip(&["netns", "list"]);
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let mut parts = rest.rsplitn(3, '-');
        let (Some(_n), Some(pid), Some(_tag)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            destroy(name);
        }
    }
}
