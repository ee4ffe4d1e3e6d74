//! Logging through `tracing`, to one of four places ([`Sink`]): standard
//! error; the systemd journal through standard error, when systemd
//! connected it there (`JOURNAL_STREAM`); a file (`--log-file`, reopened on
//! SIGHUP so that logrotate can move it away); or syslog (`-S`, and `-z`
//! without `--log-file`; see [`super::syslog`]).
//!
//! Levels follow C tuntox: info by default (error for `-W`, whose standard
//! output is the tunnel), `-q` errors only, `-d` debug, `-dd` trace for
//! tuntox's own crates, `-ddd` trace for everything. `RUST_LOG` overrides.
//! Notices (target [`NOTICE`](crate::app::identity::NOTICE): a new identity
//! made in `-C`) show at every level except `-q`.
//!
//! Lines name the Rust module they come from only from `-d` on. The
//! journal and syslog stamp the time themselves, so their lines carry
//! none; the journal also learns each line's priority from a `<N>` prefix
//! (sd-daemon(3)), so the level word is left out there. `--log-format
//! json` writes one JSON object per line instead of text.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::args::{CommonArgs, LogFormat};
use super::syslog::{Severity, Syslog};

/// Whether log events go somewhere other than standard error.
static ELSEWHERE: AtomicBool = AtomicBool::new(false);

/// The log file, for [`reopen`].
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

/// The default level of a mode, before `-d`/`-q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultLevel {
    /// Info: servers, `-L`, `-D`.
    Info,
    /// Warnings only: commands whose output matters (`id`).
    Warn,
    /// Errors only: `-W`, which owns standard output.
    Error,
}

/// Where the log goes.
#[derive(Debug)]
pub enum Sink {
    /// Standard error, with timestamps.
    Stderr,
    /// Standard error read by the systemd journal: no timestamps, a
    /// priority prefix instead of the level.
    Journal,
    /// A file (`--log-file`).
    File(LogFile),
    /// The syslog daemon (`-S`, `-z`).
    Syslog(Syslog),
}

impl Sink {
    /// Standard error, or the journal when systemd connected standard error
    /// to it.
    pub fn stderr() -> Sink {
        if stderr_is_journal() { Sink::Journal } else { Sink::Stderr }
    }
}

/// Whether standard error is the stream `JOURNAL_STREAM` names
/// (`DEVICE:INODE`, set by systemd for services logging to the journal).
/// Compared with standard error itself, so that a child whose standard
/// error was redirected elsewhere keeps its own timestamps.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else { return false };
    journal_stream_matches(value.to_str().unwrap_or(""), stat.st_dev, stat.st_ino)
}

fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else { return false };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// The filter directives for the given flags.
pub fn directives(common: &CommonArgs, default: DefaultLevel) -> String {
    let ours = |level: &str| format!("warn,tuntox={level},tunnel={level},vpn={level}");
    if common.quiet {
        return "error".into();
    }
    // Notices (a new identity made, say) show at every level but -q's.
    let notice = format!("{}=info", crate::app::identity::NOTICE);
    match common.debug {
        0 => match default {
            DefaultLevel::Info => ours("info"),
            DefaultLevel::Warn => format!("warn,{notice}"),
            DefaultLevel::Error => format!("error,{notice}"),
        },
        1 => ours("debug"),
        2 => ours("trace"),
        _ => "trace".into(),
    }
}

fn filter(common: &CommonArgs, default: DefaultLevel) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(common, default)))
}

/// Installs the global subscriber, writing to `sink`.
pub fn init(common: &CommonArgs, default: DefaultLevel, sink: Sink) {
    let ansi = matches!(sink, Sink::Stderr) && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let timestamps = matches!(sink, Sink::Stderr | Sink::File(_));
    let levels = !matches!(sink, Sink::Journal);
    let elsewhere = matches!(sink, Sink::File(_) | Sink::Syslog(_));
    let writer = match sink {
        Sink::Stderr => BoxMakeWriter::new(std::io::stderr),
        Sink::Journal => BoxMakeWriter::new(JournalStream),
        Sink::File(file) => {
            let _ = LOG_FILE.set(file.clone());
            BoxMakeWriter::new(file)
        }
        Sink::Syslog(syslog) => BoxMakeWriter::new(syslog),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_target(common.debug > 0)
        .with_level(levels)
        .with_writer(writer);
    let layer = match (common.log_format, timestamps) {
        (LogFormat::Text, true) => layer.boxed(),
        (LogFormat::Text, false) => layer.without_time().boxed(),
        (LogFormat::Json, true) => layer.json().boxed(),
        (LogFormat::Json, false) => layer.json().without_time().boxed(),
    };
    let installed = tracing_subscriber::registry().with(layer).with(filter(common, default)).try_init();
    if installed.is_ok() && elsewhere {
        ELSEWHERE.store(true, Ordering::Relaxed);
        // Standard error may be /dev/null (-z): panics go to the log too.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!("{info}");
            default_hook(info);
        }));
    }
}

/// Whether [`init`] sent the log to a file or syslog, where errors
/// printed on standard error should be logged too.
pub fn elsewhere() -> bool {
    ELSEWHERE.load(Ordering::Relaxed)
}

/// Whether the log goes to a file (`--log-file`), which SIGHUP reopens.
pub fn has_log_file() -> bool {
    LOG_FILE.get().is_some()
}

/// Reopens the log file (`--log-file`), on SIGHUP: logrotate has renamed
/// it, and the lines now go to a new file of the old name. Without a log
/// file, nothing to do.
pub fn reopen() {
    if let Some(file) = LOG_FILE.get() {
        match file.reopen() {
            Ok(()) => tracing::info!("reopened the log file {}", file.path().display()),
            Err(e) => tracing::error!(
                "cannot reopen the log file {}: {e}; still writing to the old one",
                file.path().display()
            ),
        }
    }
}

trait BoxedLayer {
    fn boxed(self) -> Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
}

impl<L> BoxedLayer for L
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync,
{
    fn boxed(self) -> Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> {
        Box::new(self)
    }
}

/// A log file opened for appending, shared by every event; [`LogFile::reopen`]
/// swaps in a freshly opened file of the same name.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    /// Opens (creating, mode 0640) `path` for appending.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile { path: path.to_owned(), file: Arc::new(Mutex::new(Self::open_file(path)?)) })
    }

    fn open_file(path: &Path) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new().append(true).create(true).mode(0o640).open(path)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again; on failure the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = Self::open_file(&self.path)?;
        *self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// One event's writer: the formatter writes the whole line in one call,
/// which goes to the file in one `write` (the file is in append mode, so
/// lines from several writers do not interleave).
#[derive(Debug)]
pub struct LogFileWriter<'a>(&'a LogFile);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self)
    }
}

/// Standard error read by the journal: each line starts with its syslog
/// priority, `<3>` for errors to `<7>` for debug.
#[derive(Debug, Clone, Copy)]
struct JournalStream;

/// One event for the journal.
#[derive(Debug)]
pub struct JournalLine {
    severity: Severity,
}

impl Write for JournalLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut line = Vec::with_capacity(buf.len() + 3);
        let _ = write!(line, "<{}>", self.severity as u8);
        line.extend_from_slice(buf);
        std::io::stderr().lock().write_all(&line)
    }

    fn flush(&mut self) -> io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for JournalStream {
    type Writer = JournalLine;

    fn make_writer(&'a self) -> Self::Writer {
        JournalLine { severity: Severity::Info }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        JournalLine { severity: Severity::of(meta.level()) }
    }
}

/// The journal's priority of a level (as syslog's).
pub fn journal_priority(level: &Level) -> u8 {
    Severity::of(level) as u8
}

#[cfg(test)]
mod tests {

    use super::*;

    fn common(debug: u8, quiet: bool) -> CommonArgs {
        CommonArgs { config_dir: None, debug, quiet, syslog: false, log_file: None, log_format: LogFormat::Text }
    }

    #[test]
    fn levels_follow_the_flags() {
        assert_eq!(directives(&common(0, false), DefaultLevel::Info), "warn,tuntox=info,tunnel=info,vpn=info");
        assert_eq!(directives(&common(0, false), DefaultLevel::Error), "error,tuntox::notice=info");
        assert_eq!(directives(&common(0, false), DefaultLevel::Warn), "warn,tuntox::notice=info");
        assert_eq!(directives(&common(0, true), DefaultLevel::Info), "error");
        assert_eq!(directives(&common(1, false), DefaultLevel::Error), "warn,tuntox=debug,tunnel=debug,vpn=debug");
        assert_eq!(directives(&common(2, false), DefaultLevel::Info), "warn,tuntox=trace,tunnel=trace,vpn=trace");
        assert_eq!(directives(&common(3, false), DefaultLevel::Info), "trace");
        for level in [DefaultLevel::Info, DefaultLevel::Warn, DefaultLevel::Error] {
            for debug in 0..4 {
                assert!(EnvFilter::try_new(directives(&common(debug, false), level)).is_ok());
            }
        }
    }

    #[test]
    fn the_journal_stream_is_recognised_by_device_and_inode() {
        assert!(journal_stream_matches("64:12345", 64, 12345));
        assert!(!journal_stream_matches("64:12345", 64, 12346));
        assert!(!journal_stream_matches("65:12345", 64, 12345));
        assert!(!journal_stream_matches("garbage", 64, 12345));
        assert!(!journal_stream_matches("", 0, 0));
        assert_eq!(journal_priority(&Level::ERROR), 3);
        assert_eq!(journal_priority(&Level::DEBUG), 7);
    }

    #[test]
    fn a_reopened_log_file_takes_the_next_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuntox.log");
        let file = LogFile::open(&path).unwrap();
        file.make_writer().write_all(b"first\n").unwrap();
        let rotated = dir.path().join("tuntox.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        file.make_writer().write_all(b"second\n").unwrap();
        file.reopen().unwrap();
        file.make_writer().write_all(b"third\n").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "first\nsecond\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "third\n");
        // Appends: an existing file keeps what it had.
        let again = LogFile::open(&path).unwrap();
        again.make_writer().write_all(b"fourth\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "third\nfourth\n");
    }
}
