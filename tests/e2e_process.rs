//! The process flags as real processes: `-z` (background), `-F` (PID
//! file), `-U` (dropping root) and `-S` (syslog). Servers run in a network
//! namespace with a local tox-bootstrapd; syslog is a socket of the test,
//! mounted as /dev/log in a private mount namespace (support/devlog.rs).
//!
//! Needs root (namespaces, the `nobody` account), toxcore-utils and
//! util-linux (`unshare`, `setpriv`); run through `scripts/test`. It never
//! skips.

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown};
use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::devlog::DevLog;
use support::e2e::{SECRET, echo_roundtrip, echo_server};
use support::netns::{ChildGuard, Netns};
use support::procfs::{ended, read_pid, stat, status_field, wait_until};
use support::tuntox::{Tuntox, binary, local_network_args};

/// PRI of LOCAL1 (17) at info (6), warning (4) and err (3).
const PRI_INFO: &str = "<142>";
const PRI_ERR: &str = "<139>";

/// What a finished command left.
#[derive(Debug)]
struct Ran {
    pid: u32,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn pipe_reader(mut pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// Runs `cmd` to completion within `timeout` (killed and a panic
/// otherwise), with standard input on /dev/null.
fn run_bounded(mut cmd: Command, label: &str, timeout: Duration) -> Ran {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .env_remove("TUNTOX_SHARED_SECRET");
    let clock = Deadline::after(timeout);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
    let pid = child.id();
    let stdout = pipe_reader(child.stdout.take().unwrap());
    let stderr = pipe_reader(child.stderr.take().unwrap());
    let mut guard = ChildGuard::new(child, label);
    let status = guard.wait_timeout(timeout);
    let elapsed = clock.elapsed();
    let text = |rx: Receiver<String>| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let Some(status) = status else {
        guard.kill();
        panic!("{label} did not exit within {timeout:?}; stderr: {}", text(stderr));
    };
    Ran { pid, status, stdout: text(stdout), stderr: text(stderr), elapsed }
}

/// A namespace, its bootstrap node, and a directory for the files of a
/// server (searchable by everyone, so `nobody` can reach its own parts).
struct Setup {
    netns: Netns,
    bootstrapd: Bootstrapd,
    work: tempfile::TempDir,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let netns = Netns::new(tag);
        let bootstrapd = Bootstrapd::start(&netns);
        let work = tempfile::Builder::new().prefix("tt-process").tempdir().unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Setup { netns, bootstrapd, work }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Server arguments: the secret, a port range, the local network, then `extra`.
    fn server_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["-s", SECRET, "-u", "34000:34099"].map(String::from).to_vec();
        args.extend(local_network_args(&self.bootstrapd.bootstrap_arg()));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    /// `tuntox ARGS` in the namespace, with `devlog` as /dev/log, started
    /// from the work directory.
    fn command(&self, devlog: &DevLog, args: &[String]) -> Command {
        let mut cmd = devlog.wrap(Path::new(binary()), |program| self.netns.command(program));
        cmd.args(args).current_dir(self.work.path());
        cmd
    }

    /// `tuntox ping ID -c 1` from inside the namespace: the server answers.
    fn ping(&self, id: &str) {
        let mut args: Vec<String> =
            ["ping", id, "-c", "1", "-s", SECRET, "-u", "34200:34299"].map(String::from).to_vec();
        args.extend(local_network_args(&self.bootstrapd.bootstrap_arg()));
        let mut cmd = self.netns.command(binary());
        cmd.args(&args);
        let ran = run_bounded(cmd, "tuntox ping", Duration::from_secs(150));
        assert!(ran.status.success(), "tuntox ping: {}\n{}\n{}", ran.status, ran.stdout, ran.stderr);
        assert!(ran.stdout.contains("1 sent, 1 received"), "{}", ran.stdout);
    }
}

#[test]
fn the_background_server_detaches_reports_its_pid_and_stops_on_sigterm() {
    let setup = Setup::new("daemon");
    let devlog = DevLog::new();
    std::fs::create_dir(setup.path("run")).unwrap();
    // Relative paths: the daemon works from /, so they must be resolved
    // against the directory it was started in.
    let args = setup.server_args(&["-z", "-F", "run/tuntox.pid", "-C", "conf", "-I", "id.txt"]);
    let ran = run_bounded(setup.command(&devlog, &args), "tuntox -z", Duration::from_secs(30));
    assert!(ran.status.success(), "the launcher failed: {}: {}", ran.status, ran.stderr);
    assert!(ran.stderr.is_empty() && ran.stdout.is_empty(), "the launcher printed: {ran:?}");
    assert!(ran.elapsed < Duration::from_secs(10), "the launcher took {:?}", ran.elapsed);

    let pid = read_pid(&setup.path("run/tuntox.pid"));
    assert_ne!(u32::try_from(pid).unwrap(), ran.pid, "the PID file names the launcher");
    let st = stat(pid).unwrap_or_else(|| panic!("no process {pid}"));
    assert_ne!(st.state, 'Z', "{st:?}");
    assert_ne!(st.ppid, i32::try_from(ran.pid).unwrap(), "still the launcher's child: {st:?}");
    assert_ne!(st.ppid, i32::try_from(std::process::id()).unwrap(), "the test's child: {st:?}");
    assert_eq!(st.session, pid, "not a session leader: {st:?}");
    assert_eq!(st.tty_nr, 0, "has a controlling terminal: {st:?}");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), Path::new("/"));
    for fd in 0..3 {
        assert_eq!(std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap(), Path::new("/dev/null"), "fd {fd}");
    }
    assert!(setup.path("conf/tox_save").is_file(), "no identity in the relative -C");
    let id = std::fs::read_to_string(setup.path("id.txt")).unwrap();
    assert_eq!(id.len(), 76, "{id:?}");

    // The log went to syslog, from the daemon's process.
    let tag = format!(" tuntox[{pid}]: ");
    let line = devlog.wait_for("the Tox ID", |l| l.contains("Using Tox ID: "), Duration::from_secs(10));
    assert!(line.starts_with(PRI_INFO) && line.contains(&tag) && line.ends_with(&id), "{line}");
    devlog.wait_for(
        "the start",
        |l| l.contains(&tag) && l.contains("running in the background"),
        Duration::from_secs(10),
    );

    setup.ping(&id);

    // A client in the background too: when its launcher returns, the -L
    // port already listens.
    let echo = setup.netns.run_in(|| TcpListener::bind("127.0.0.1:7301").unwrap());
    echo_server(echo);
    let mut args: Vec<String> =
        ["-z", "-F", "run/client.pid", "-i", &id, "-s", SECRET, "-u", "34300:34399", "-L", "7302:127.0.0.1:7301"]
            .map(String::from)
            .to_vec();
    args.extend(local_network_args(&setup.bootstrapd.bootstrap_arg()));
    let ran = run_bounded(setup.command(&devlog, &args), "tuntox -z -L", Duration::from_secs(30));
    assert!(ran.status.success(), "the client's launcher failed: {}: {}", ran.status, ran.stderr);
    let client = read_pid(&setup.path("run/client.pid"));
    setup
        .netns
        .run_in(|| TcpStream::connect("127.0.0.1:7302"))
        .unwrap_or_else(|e| panic!("the -L port does not listen once the launcher returned: {e}"));
    // A connection made before the server is connected is closed at once;
    // once it is, the tunnel works.
    let client_tag = format!(" tuntox[{client}]: ");
    devlog.wait_for(
        "the client's connection",
        |l| l.contains(&client_tag) && l.contains("connected to the server"),
        Duration::from_secs(60),
    );
    let mut stream = setup.netns.run_in(|| TcpStream::connect("127.0.0.1:7302")).unwrap();
    let back = echo_roundtrip(&mut stream, b"through a background client").unwrap();
    assert_eq!(back, b"through a background client");
    drop(stream);
    kill(Pid::from_raw(client), Signal::SIGTERM).unwrap();
    wait_until("the client ends after SIGTERM", Duration::from_secs(10), || ended(client));
    assert!(!setup.path("run/client.pid").exists(), "the client's PID file is left behind");

    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_until("the daemon ends after SIGTERM", Duration::from_secs(10), || ended(pid));
    assert!(!setup.path("run/tuntox.pid").exists(), "the PID file is left behind");
    devlog.wait_for("the stop", |l| l.contains(&tag) && l.contains("terminated; stopping"), Duration::from_secs(5));
}

#[test]
fn a_background_server_that_cannot_start_fails_its_launcher() {
    let setup = Setup::new("daemonbad");
    let devlog = DevLog::new();
    let pid_file = setup.path("tuntox.pid");
    let args = setup.server_args(&[
        "-z",
        "-C",
        setup.path("conf").to_str().unwrap(),
        "-F",
        pid_file.to_str().unwrap(),
        "-f",
        "no-such-rules",
    ]);
    let ran = run_bounded(setup.command(&devlog, &args), "tuntox -z -f missing", Duration::from_secs(30));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    let rules = setup.path("no-such-rules");
    assert!(ran.stderr.starts_with("tuntox: ") && ran.stderr.contains(rules.to_str().unwrap()), "{}", ran.stderr);
    assert!(ran.stderr.contains("No such file or directory"), "{}", ran.stderr);
    assert!(ran.elapsed < Duration::from_secs(10), "the launcher took {:?}", ran.elapsed);
    assert!(!pid_file.exists(), "the PID file is left behind");
    // The daemon logged it too, as an error.
    let line = devlog.wait_for("the error", |l| l.contains("no-such-rules"), Duration::from_secs(5));
    assert!(line.starts_with(PRI_ERR), "{line}");

    // A PID file naming a running process (process 1 always runs) stops
    // the start.
    std::fs::write(&pid_file, "1\n").unwrap();
    let args = setup.server_args(&["-z", "-C", setup.path("conf").to_str().unwrap(), "-F", pid_file.to_str().unwrap()]);
    let ran = run_bounded(setup.command(&devlog, &args), "tuntox -z -F live", Duration::from_secs(30));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert!(ran.stderr.contains("names a running process (1)"), "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "1\n");

    // Without a syslog daemon, -z says so before starting anything.
    let nolog = DevLog::missing();
    let args = setup.server_args(&["-z", "-C", setup.path("conf").to_str().unwrap()]);
    let ran = run_bounded(setup.command(&nolog, &args), "tuntox -z without /dev/log", Duration::from_secs(30));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert!(
        ran.stderr.starts_with("tuntox: -z logs to syslog: cannot reach the syslog daemon at /dev/log")
            && ran.stderr.contains("or log to a file with --log-file FILE"),
        "{}",
        ran.stderr
    );

    // With --log-file, -z needs no syslog daemon: the log goes to the file
    // (a relative path, taken from the directory tuntox was started in).
    let args = setup.server_args(&["-z", "-C", "conf", "-F", "logged.pid", "--log-file", "daemon.log"]);
    let ran = run_bounded(setup.command(&nolog, &args), "tuntox -z --log-file", Duration::from_secs(30));
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
    let log = setup.path("daemon.log");
    let deadline = Deadline::after(Duration::from_secs(10));
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Using Tox ID: ") || deadline.passed() {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("Using Tox ID: "), "{text}");
    let pid = read_pid(&setup.path("logged.pid"));
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_until("the daemon ends after SIGTERM", Duration::from_secs(10), || ended(pid));
}

#[test]
fn a_server_started_as_root_runs_as_nobody() {
    let setup = Setup::new("dropuser");
    let nobody = User::from_name("nobody").unwrap().expect("the nobody account");
    let (conf, run) = (setup.path("conf"), setup.path("run"));
    for dir in [&conf, &run] {
        std::fs::create_dir(dir).unwrap();
        chown(dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let pid_file = run.join("tuntox.pid");
    let args = setup.server_args(&["-U", "nobody", "-C", conf.to_str().unwrap(), "-F", pid_file.to_str().unwrap()]);
    let mut server = Tuntox::spawn(&setup.netns, "server -U nobody", &args);
    server.wait_tox_id();
    let pid = read_pid(&pid_file);
    let (uid, gid) = (nobody.uid.to_string(), nobody.gid.to_string());
    assert_eq!(status_field(pid, "Uid"), [uid.as_str(); 4], "real, effective, saved, fs");
    assert_eq!(status_field(pid, "Gid"), [gid.as_str(); 4], "real, effective, saved, fs");
    let groups = status_field(pid, "Groups");
    assert!(!groups.iter().any(|g| g == "0"), "root's group kept: {groups:?}");
    assert_eq!(groups, [gid.as_str()], "the groups of nobody");
    for file in [conf.join("tox_save"), pid_file.clone()] {
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (nobody.uid.as_raw(), nobody.gid.as_raw()), "{}", file.display());
    }
    assert!(server.logged("dropped privileges"), "{:?}", server.log());
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "the PID file is left behind");

    // An unknown user is an error before anything starts.
    let mut cmd = setup.netns.command(binary());
    cmd.args(setup.server_args(&["-U", "no-such-user-tuntox", "-C", conf.to_str().unwrap()]));
    let ran = run_bounded(cmd, "tuntox -U unknown", Duration::from_secs(30));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert_eq!(ran.stderr.trim(), "tuntox: -U no-such-user-tuntox: no such user in the user database");

    // Without root, -U can only name ourselves.
    let as_nobody = |user: &str| {
        let mut cmd = setup.netns.command("setpriv");
        let ids = format!("{}", nobody.uid);
        cmd.args(["--reuid", &ids, "--regid", &gid, "--clear-groups", binary()]);
        cmd.args(setup.server_args(&["-U", user, "-C", conf.to_str().unwrap(), "-I", "/dev/null"]));
        cmd
    };
    let ran = run_bounded(as_nobody("root"), "tuntox -U root as nobody", Duration::from_secs(30));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert!(ran.stderr.contains("-U root: only root can switch to another user"), "{}", ran.stderr);
    let mut cmd = as_nobody("nobody");
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let mut server = Tuntox::spawn_command(cmd, "server -U nobody as nobody");
    server.wait_tox_id();
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn syslog_gets_bsd_datagrams_from_local1_with_our_pid() {
    // `tuntox id` makes no sockets but the log's: no network namespace.
    let devlog = DevLog::new();
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("conf");
    let mut cmd = devlog.wrap(Path::new(binary()), |p| Command::new(p));
    cmd.args(["id", "-S", "-d", "-C", conf.to_str().unwrap()]);
    let ran = run_bounded(cmd, "tuntox id -S", Duration::from_secs(30));
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(ran.stdout.trim().len(), 76, "{}", ran.stdout);
    assert!(ran.stderr.is_empty(), "logged on standard error: {}", ran.stderr);
    let line =
        devlog.wait_for("the new identity", |l| l.contains("created a new Tox identity"), Duration::from_secs(5));
    // <PRI>Mmm dd hh:mm:ss tuntox[PID]: message
    assert!(line.starts_with(PRI_INFO), "{line}");
    let stamp = line[PRI_INFO.len()..].split(" tuntox[").next().unwrap();
    assert_eq!(stamp.len(), 15, "{line}");
    assert!(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].contains(&&stamp[..3]),
        "{line}"
    );
    assert_eq!((&stamp[9..10], &stamp[12..13]), (":", ":"), "{line}");
    assert!(line.contains(&format!(" tuntox[{}]: ", ran.pid)), "{line}");

    // Without /dev/log: a clear error, status 1.
    let nolog = DevLog::missing();
    let mut cmd = nolog.wrap(Path::new(binary()), |p| Command::new(p));
    cmd.args(["id", "-S", "-C", conf.to_str().unwrap()]);
    let ran = run_bounded(cmd, "tuntox id -S without /dev/log", Duration::from_secs(30));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert!(ran.stdout.is_empty());
    assert_eq!(
        ran.stderr.trim(),
        "tuntox: -S: cannot reach the syslog daemon at /dev/log: No such file or directory (os error 2) (start \
         journald, rsyslog or syslogd, or log to standard error without -S, or to a file with --log-file FILE)"
    );
}
