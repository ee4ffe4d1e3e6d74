//! What /proc says about a process under test: its state, parent and
//! session, its IDs and capabilities, and its PID file.

use std::path::Path;
use std::thread;
use std::time::Duration;

use super::deadline::Deadline;

/// Fields of /proc/PID/stat after the command name.
#[derive(Debug)]
pub struct Stat {
    /// R, S, Z...
    pub state: char,
    /// The parent's pid.
    pub ppid: i32,
    /// The session ID.
    pub session: i32,
    /// The controlling terminal (0: none).
    pub tty_nr: i32,
}

/// The process's /proc/PID/stat, or `None` once it is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        tty_nr: fields.get(4)?.parse().ok()?,
    })
}

/// Whether the process has ended (gone, or a zombie its new parent has not
/// reaped yet).
pub fn ended(pid: i32) -> bool {
    stat(pid).is_none_or(|s| s.state == 'Z')
}

/// The process ID in a PID file, which must hold digits and a newline.
pub fn read_pid(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(text.ends_with('\n') && text.trim().bytes().all(|b| b.is_ascii_digit()), "PID file holds {text:?}");
    text.trim().parse().unwrap()
}

/// The `Name:\tA\tB...` line of /proc/PID/status, split.
pub fn status_field(pid: i32, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or_else(|| panic!("no {name}: {text}"));
    line[name.len() + 1..].split_whitespace().map(str::to_owned).collect()
}

/// Polls `done` until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Deadline::after(timeout);
    while !done() {
        assert!(!deadline.passed(), "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
}
