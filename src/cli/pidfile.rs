//! The PID file (`-F FILE`): our process ID in decimal and a newline,
//! written once the process runs as it will (in the background with `-z`,
//! as the `-U` user), and removed when it stops.
//!
//! A file naming a live process means another instance runs: we refuse to
//! start. A file naming a dead process (left by a crash) is replaced. A
//! file that does not hold a process ID is left alone and refused, in case
//! `-F` points at something else by mistake.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// A written PID file; removed on drop if it still names us.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes our process ID to `path`.
    pub fn create(path: &Path) -> anyhow::Result<PidFile> {
        let pid = std::process::id();
        // Two rounds: the second follows the removal of a stale file.
        for _ in 0..2 {
            let open = OpenOptions::new().write(true).create_new(true).mode(0o644).open(path);
            match open {
                Ok(mut file) => {
                    let written = file.write_all(format!("{pid}\n").as_bytes()).and_then(|()| file.sync_all());
                    if let Err(e) = written {
                        let _ = std::fs::remove_file(path);
                        return Err(e).with_context(|| format!("cannot write the PID file {}", path.display()));
                    }
                    return Ok(PidFile { path: path.to_owned(), pid });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => replace_stale(path, pid)?,
                Err(e) => return Err(e).with_context(|| format!("cannot create the PID file {}", path.display())),
            }
        }
        bail!("cannot create the PID file {}: another process keeps creating it", path.display())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|text| text.trim().parse() == Ok(self.pid));
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("cannot remove the PID file {}: {e}", self.path.display());
        }
    }
}

/// Removes an existing PID file unless it names a running process.
fn replace_stale(path: &Path, ours: u32) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the PID file {}", path.display()))?;
    let text = text.trim();
    if !text.is_empty() {
        let Ok(pid) = text.parse::<u32>() else {
            bail!("{} exists and does not hold a process ID; not replacing it", path.display());
        };
        if pid != ours && alive(pid) {
            bail!("the PID file {} names a running process ({pid}): is tuntox already running?", path.display());
        }
        tracing::info!("replacing the stale PID file {} (process {pid} is gone)", path.display());
    }
    std::fs::remove_file(path).with_context(|| format!("cannot remove the stale PID file {}", path.display()))
}

/// Whether a process with this ID exists (signal 0 reaches it or is
/// refused for lack of permission).
fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    if raw <= 0 {
        return false;
    }
    !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ID of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn the_file_holds_our_pid_and_goes_away_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuntox.pid");
        let pid_file = PidFile::create(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        drop(pid_file);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_process_blocks_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuntox.pid");
        // Process 1 always exists.
        std::fs::write(&path, "1\n").unwrap();
        let err = PidFile::create(&path).unwrap_err().to_string();
        assert!(err.contains("names a running process (1)"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }

    #[test]
    fn a_stale_or_empty_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuntox.pid");
        for stale in [format!("{}\n", dead_pid()), String::new()] {
            std::fs::write(&path, stale).unwrap();
            let pid_file = PidFile::create(&path).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), std::process::id().to_string());
            drop(pid_file);
        }
    }

    #[test]
    fn a_file_that_is_not_a_pid_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("important");
        std::fs::write(&path, "keep me\n").unwrap();
        let err = PidFile::create(&path).unwrap_err().to_string();
        assert!(err.contains("does not hold a process ID"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me\n");
    }

    #[test]
    fn a_replaced_file_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuntox.pid");
        let pid_file = PidFile::create(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(pid_file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/tuntox.pid");
        let err = format!("{:#}", PidFile::create(&path).unwrap_err());
        assert!(err.starts_with("cannot create the PID file ") && err.contains("missing/tuntox.pid"), "{err}");
    }
}
