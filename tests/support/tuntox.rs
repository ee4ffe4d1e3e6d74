//! The `tuntox` binary as a child process inside a test namespace: its
//! standard error (the log) is collected line by line so tests can wait
//! for a line and show the whole log when they fail.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::deadline::Deadline;
use super::netns::{ChildGuard, Netns};

/// A running `tuntox`; killed on drop.
#[derive(Debug)]
pub struct Tuntox {
    label: String,
    child: ChildGuard,
    log: Receiver<String>,
    history: Arc<Mutex<Vec<String>>>,
    /// Set when the log reader reached the end of the pipe.
    log_ended: Arc<AtomicBool>,
    seen: usize,
}

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tuntox")
}

/// `--bootstrap` and `--no-lan` arguments for a namespaced tox-bootstrapd.
pub fn local_network_args(bootstrap_arg: &str) -> Vec<String> {
    vec!["--bootstrap".to_owned(), bootstrap_arg.to_owned(), "--no-lan".to_owned()]
}

impl Tuntox {
    /// Starts `tuntox ARGS` in `netns`, with standard output discarded.
    pub fn spawn(netns: &Netns, label: &str, args: &[String]) -> Tuntox {
        Self::spawn_with(netns, label, args, Stdio::null(), Stdio::null())
    }

    /// Starts `tuntox ARGS` in `netns` with the given standard input and
    /// output (for `-W`).
    pub fn spawn_with(netns: &Netns, label: &str, args: &[String], stdin: Stdio, stdout: Stdio) -> Tuntox {
        let mut cmd = netns.command(binary());
        cmd.args(args).stdin(stdin).stdout(stdout);
        Self::spawn_command(cmd, label)
    }

    /// Starts `cmd`, a command that runs tuntox in a test namespace (for
    /// instance through `setpriv`), collecting its standard error.
    pub fn spawn_command(mut cmd: Command, label: &str) -> Tuntox {
        let mut child = cmd
            .env_remove("RUST_LOG")
            .env_remove("TUNTOX_SHARED_SECRET")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, log) = channel();
        let history = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&history);
        let log_ended = Arc::new(AtomicBool::new(false));
        let ended = Arc::clone(&log_ended);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
            ended.store(true, Ordering::Release);
        });
        Tuntox { label: label.to_owned(), child: ChildGuard::new(child, label), log, history, log_ended, seen: 0 }
    }

    /// The process id (for its CPU time in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child, for its pipes.
    pub fn child_mut(&mut self) -> &mut std::process::Child {
        self.child.child_mut()
    }

    /// Waits for a log line matching `pred` (after the last one returned)
    /// and returns it; panics with the log after `timeout`.
    pub fn wait_log(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool, timeout: Duration) -> String {
        let deadline = Deadline::after(timeout);
        loop {
            match self.log.recv_timeout(deadline.step(Duration::from_millis(200))) {
                Ok(line) => {
                    self.seen += 1;
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("exited while waiting for {what}"));
                }
            }
            if deadline.passed() {
                self.fail(&format!("no log line for {what} within {timeout:?}"));
            }
        }
    }

    /// The Tox ID from the `Using Tox ID:` line.
    pub fn wait_tox_id(&mut self) -> String {
        let line = self.wait_log("the Tox ID", |l| l.contains("Using Tox ID: "), Duration::from_secs(20));
        let id = line.split("Using Tox ID: ").nth(1).unwrap_or_default();
        id.chars().take_while(char::is_ascii_hexdigit).collect()
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.history.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether any log line so far contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log().iter().any(|l| l.contains(needle))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        unsafe extern "C" {
            fn kill(pid: i32, sig: i32) -> i32;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { kill(self.child.id() as i32, 15) };
        match self.child.wait_timeout(timeout) {
            Some(status) => self.exited(status),
            None => self.fail(&format!("did not stop within {timeout:?} of SIGTERM")),
        }
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.child.wait_timeout(timeout) {
            Some(status) => self.exited(status),
            None => self.fail(&format!("did not exit within {timeout:?}")),
        }
    }

    /// After the exit: gives the log reader (up to 2 s) to take in the last
    /// lines, so that the history holds all of them; a process that left
    /// the pipe to a child of its own is not waited for longer.
    fn exited(&self, status: ExitStatus) -> ExitStatus {
        let deadline = Deadline::after(Duration::from_secs(2));
        while !self.log_ended.load(Ordering::Acquire) && !deadline.passed() {
            thread::sleep(Duration::from_millis(10));
        }
        status
    }

    /// SIGKILL, no goodbye to anyone.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Panics with `why` and the whole log.
    pub fn fail(&self, why: &str) -> ! {
        let log = self.log();
        panic!("tuntox {}: {why}\n--- log ({} lines) ---\n{}", self.label, log.len(), log.join("\n"));
    }
}

/// `-C DIR` arguments.
pub fn config_dir_args(dir: &Path) -> Vec<String> {
    vec!["-C".to_owned(), dir.display().to_string()]
}

/// The friend request message a tuntox server with `-s SECRET` accepts:
/// the secret and a NUL byte.
pub fn request_message(secret: &str) -> Vec<u8> {
    let mut message = secret.as_bytes().to_vec();
    message.push(0);
    message
}

/// A raw tuntox PING frame as a non-tuntox peer sends it: `a2 6b 01 08`,
/// connection id 0, length, payload.
pub fn ping_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xa2, 0x6b, 0x01, 0x08, 0, 0];
    frame.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The PONG a tuntox server answers `ping_frame(payload)` with.
pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = ping_frame(payload);
    frame[3] = 0x00;
    frame
}
