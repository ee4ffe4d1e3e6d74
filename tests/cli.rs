//! The `tuntox` binary's command line, run as a process.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn tuntox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuntox"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TUNTOX_SHARED_SECRET")
        // A case that should be refused but is not must not reach the
        // public Tox network or the LAN.
        .env("TUNTOX_PRIVATE_NETWORK_ONLY", "1")
        .output()
        .expect("run tuntox")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 2 and exactly one line on standard error containing `needle`.
fn assert_usage_error(args: &[&str], needle: &str) {
    let out = tuntox(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?} printed more than one line: {err}");
    assert!(err.starts_with("tuntox: ") && err.contains(needle), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
}

#[test]
fn malformed_values_exit_2_with_one_line() {
    assert_usage_error(&["-L", "99999:x:1"], "local port 99999 is out of range 1-65535");
    assert_usage_error(&["-L", "99999:x:1"], "[bind_address:]port:host:hostport");
    assert_usage_error(&["-i", "NOTHEX"], "expected a Tox ID (76 hex characters) or a public key (64), got 6");
    let bad_checksum = "D8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2";
    assert_usage_error(&["-i", bad_checksum], "checksum mismatch: not a Tox ID");
    assert_usage_error(&["-W", "nohostport"], "expected host:port");
    assert_usage_error(&["-u", "9:1"], "FIRST:LAST");
    assert_usage_error(&["--no-such-flag"], "--no-such-flag");
    assert_usage_error(&["-s", &"x".repeat(921)], "at most 920");
}

#[test]
fn status_without_a_running_tuntox_says_so_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tuntox"))
            .args(args)
            .env("TUNTOX_STATUS_DIR", dir.path().join("status"))
            .output()
            .expect("run tuntox");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        stderr(&out)
    };
    // Nothing there: no status directory yet, then an empty one.
    let err = run(&["status"]);
    assert!(err.starts_with("tuntox: no running tuntox found in ") && err.contains("--socket PATH"), "{err}");
    std::fs::create_dir(dir.path().join("status")).unwrap();
    assert!(run(&["status", "--json"]).contains("no running tuntox found"));
    let missing = dir.path().join("missing.sock");
    let err = run(&["status", "--socket", missing.to_str().unwrap()]);
    assert_eq!(err.trim(), format!("tuntox: no status socket at {}: is tuntox running?", missing.display()));

    // A socket left by a killed tuntox: named as stale, on its own line.
    let stale = dir.path().join("status/tuntox-2147483646.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = run(&["status"]);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].ends_with("(process 2147483646) is no longer running"), "{err}");
    assert!(lines[1].starts_with("tuntox: no running tuntox found"), "{err}");
    let err = run(&["status", "--socket", stale.to_str().unwrap()]);
    assert!(err.contains("is a stale status socket"), "{err}");
    // `vpn down` finds nothing to stop either.
    let err = run(&["vpn", "down"]);
    assert!(err.starts_with("tuntox: no `tuntox vpn up` running (looked in "), "{err}");
    let err = run(&["vpn", "down", "--dev", "tuntox7"]);
    assert!(err.contains("no `tuntox vpn up` running on tuntox7"), "{err}");
}

#[test]
fn client_flags_that_do_not_fit_are_usage_errors() {
    let id = "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2";
    // Should a case not be refused, it would still reach nothing
    // beyond loopback: a closed loopback port as its only node and relay,
    // no LAN discovery, and a one-second connect timeout.
    let boot = format!("127.0.0.1:1:{}", &id[..64]);
    let vpn_up = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> =
            ["vpn", "up", "--peer", id, "--no-lan", "--no-portmap", "--connect-timeout", "1", "--bootstrap"]
                .map(String::from)
                .to_vec();
        args.push(boot.clone());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let own = |a: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = a.iter().map(|s| (*s).to_owned()).collect();
        args.extend(["--no-lan".to_owned(), "--no-portmap".to_owned(), "--bootstrap".to_owned(), boot.clone()]);
        args
    };
    // Each is refused before any socket exists.
    for (args, says) in [
        (own(&["-L", "2222:127.0.0.1:22"]), "needs the server's Tox ID"),
        (own(&["-i", &id[..64], "-L", "2222:127.0.0.1:22"]), "full Tox ID"),
        (own(&["-i", id, "-i", id, "-W", "h:22"]), "one -i"),
        (own(&["-i", id, "-p", "-L", "2222:h:22"]), "-p cannot be combined"),
        (own(&["-i", id, "-z", "-W", "h:22"]), "-z cannot be used with -W"),
        (own(&["-i", id, "--vpn", "-L", "2222:h:22"]), "--vpn is a server flag"),
        (own(&["--vpn-nat"]), "--vpn-route"),
        (own(&["--vpn-route", "10.1.0.0/16"]), "--vpn"),
        (own(&["--vpn"]), "--vpn without -s or -i lets anyone who knows the Tox ID"),
        (own(&["--vpn", "--vpn-route", "10.1.0.0/16"]), "or --vpn-allow-anyone"),
        (own(&["--vpn-allow-anyone"]), "--vpn"),
        (vpn_up(&["--dev", "seventeen-letters"]), "not a device name"),
        (vpn_up(&["--mtu", "100"]), "MTU 100 is outside 576-1372"),
        (vpn_up(&["--route", "0.0.0.0/0"]), "holds the bootstrap node 127.0.0.1"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tuntox(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn id_creates_once_and_prints_only_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("t1");
    let conf = conf.to_str().unwrap();
    let first = tuntox(&["id", "-C", conf]);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = String::from_utf8(first.stdout).unwrap();
    assert_eq!(text.len(), 77, "{text:?}");
    assert!(text.ends_with('\n'));
    assert!(text[..76].bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{text}");
    text.trim().parse::<tuntox::wire::tox_id::ToxId>().unwrap();

    let second = tuntox(&["id", "-C", conf]);
    assert_eq!(String::from_utf8(second.stdout).unwrap(), text);
    let mode = std::fs::metadata(dir.path().join("t1/tox_save")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn id_reports_an_unusable_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = tuntox(&["id", "-C", file.join("sub").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("tuntox: cannot ") && err.contains("file/sub"), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn help_and_version_succeed() {
    let help = tuntox(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("-L <[BIND:]PORT:HOST:HOSTPORT>"));
    let version = tuntox(&["-V"]);
    assert!(version.status.success());
    // The commit the build came from, when built from a git checkout.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let expected = match commit {
        Some(commit) => format!("tuntox {} (commit {commit})", env!("CARGO_PKG_VERSION")),
        None => format!("tuntox {}", env!("CARGO_PKG_VERSION")),
    };
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), expected);
}

#[test]
fn relay_print_key_makes_the_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("relay");
    let conf = conf.to_str().unwrap();
    let first = tuntox(&["relay", "-C", conf, "--print-key"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let key = String::from_utf8(first.stdout).unwrap();
    assert_eq!(key.trim().len(), 64, "{key:?}");
    assert!(key.trim().chars().all(|c| c.is_ascii_hexdigit()));
    let second = tuntox(&["relay", "-C", conf, "--print-key"]);
    assert_eq!(String::from_utf8(second.stdout).unwrap(), key, "the key is kept");
    let file = std::path::Path::new(conf).join("relay_keys");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len(), 64);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // A damaged key file is an error, not a new key.
    std::fs::write(&file, b"junk").unwrap();
    let out = tuntox(&["relay", "-C", conf, "--print-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a relay key file"), "{}", stderr(&out));
}

#[test]
fn the_test_guard_refuses_the_public_network() {
    // TUNTOX_PRIVATE_NETWORK_ONLY is set by tuntox() above: no node starts
    // with the built-in bootstrap list, with LAN discovery, or (here, in the
    // host's network namespace) with router port mapping.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().to_str().unwrap();
    let key = "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616";
    let id = format!("{key}123456786FC2");
    let boot = format!("127.0.0.1:1:{key}");
    for (args, what) in [
        (vec!["-C", conf, "-s", "secret"], "built-in list"),
        (vec!["-C", conf, "--bootstrap", &boot], "LAN discovery"),
        (vec!["-C", conf, "--bootstrap", &boot, "--no-lan"], "router port mapping"),
        (vec!["vpn", "up", "--peer", &id, "--bootstrap", &boot, "--no-lan"], "router port mapping"),
        (vec!["relay", "-C", conf, "--port", "1", "--tcp-port", "1"], "LAN discovery"),
    ] {
        let out = tuntox(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("TUNTOX_PRIVATE_NETWORK_ONLY is set") && err.contains(what), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

mod support;

use std::time::Duration;

use support::deadline::Deadline;
use support::netns::Netns;
use support::tuntox::{Tuntox, binary};

const ID: &str = "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2";

/// A bootstrap node nobody runs: a closed port on loopback.
fn closed_boot() -> String {
    format!("127.0.0.1:1:{}", &ID[..64])
}

/// `--bootstrap` to nowhere, no LAN, no port mapping.
fn nowhere() -> Vec<String> {
    vec!["--bootstrap".into(), closed_boot(), "--no-lan".into(), "--no-portmap".into()]
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn usage_errors_point_to_their_command_s_help_and_suggest_flags() {
    assert_usage_error(
        &["--bootsrap", "x"],
        "unexpected argument '--bootsrap' found; a similar argument exists: '--bootstrap' (see tuntox --help)",
    );
    assert_usage_error(&["vpn", "up", "-i", "x"], "(see tuntox vpn up --help)");
    assert_usage_error(&["relay", "--max-clients", "0"], "(see tuntox relay --help)");
    assert_usage_error(&["friends", "remove", "nothex"], "(see tuntox friends remove --help)");
    assert_usage_error(&["status", "--jsno"], "a similar argument exists: '--json' (see tuntox status --help)");
    // Errors found after parsing point to the same help.
    let mut args = strings(&["vpn", "up", "-i", ID, "--route", "0.0.0.0/0", "--connect-timeout", "1"]);
    args.extend(nowhere());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_usage_error(&args, "holds the bootstrap node 127.0.0.1");
    assert_usage_error(&args, "(see tuntox vpn up --help)");
    let mut args = strings(&["-i", ID, "-p", "-L", "2222:h:22"]);
    args.extend(nowhere());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_usage_error(&args, "-p cannot be combined with -L or -D (see tuntox --help)");
}

#[test]
fn values_that_used_to_be_misread_get_clear_messages() {
    // The key left out: not "missing port".
    assert_usage_error(&["--bootstrap", "127.0.0.1:33445"], "the node's key is missing after the port 33445");
    assert_usage_error(&["relay", "--bootstrap", "127.0.0.1:33445"], "the node's key is missing after the port");
    // A field too many: not "local port '127.0.0.1' is not a number".
    assert_usage_error(&["-L", "2240:127.0.0.1:80:extra"], "'extra' after the remote port");
    assert_usage_error(&["-L", "2240:127.0.0.1:80:extra"], "did you mean 2240:127.0.0.1:80?");
}

#[test]
fn a_damaged_identity_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tox_save"), b"not a save at all").unwrap();
    let out = tuntox(&["id", "-C", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tox_save: not a Tox save file (bad header)"), "{err}");
    assert_eq!(err.matches("bad header").count(), 1, "{err}");
}

#[test]
fn the_server_is_named_with_i_everywhere() {
    // Each parses; the test guard then refuses the built-in node list,
    // which only happens after the flags were taken.
    for args in [
        &["vpn", "up", "-i", ID][..],
        &["vpn", "up", "--peer", ID],
        &["ping", "-i", ID, "-c", "1"],
        &["ping", "--peer", ID],
        &["ping", ID],
        &["-i", ID, "-p"],
    ] {
        let out = tuntox(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("TUNTOX_PRIVATE_NETWORK_ONLY is set"), "{args:?}: {}", stderr(&out));
    }
    let out = tuntox(&["ping"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("-i <TOXID>") && stderr(&out).contains("see tuntox ping --help"), "{}", stderr(&out));
    assert_usage_error(&["ping", "-i", ID, ID], "cannot be used with");
}

/// The help of one command, as printed.
fn help(args: &[&str]) -> String {
    let out = tuntox(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The paragraph of a help text that documents `flag`.
fn paragraph<'a>(text: &'a str, flag: &str) -> &'a str {
    let at = text.find(&format!("\n  {flag}")).or_else(|| text.find(&format!("\n      {flag}"))).unwrap_or_else(|| {
        panic!("{flag} is not documented:\n{text}");
    });
    let rest = &text[at + 1..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn each_command_s_help_speaks_of_its_own_flags() {
    let vpn = help(&["vpn", "up", "--help"]);
    assert!(vpn.contains("-i <TOXID>") && vpn.contains("`--peer TOXID` is the same"), "{vpn}");
    let z = paragraph(&vpn, "-z");
    assert!(!z.contains("-W") && !z.contains("-f,") && z.contains("--status-socket"), "{z}");
    let relay = help(&["relay", "--help"]);
    assert!(!relay.contains("-U <USER>") && !relay.contains("after -U"), "relay has no -U:\n{relay}");
    let c = paragraph(&relay, "-C <DIR>");
    assert!(c.contains("relay's key pair") && !c.contains("client"), "{c}");
    for command in ["status", "netcheck"] {
        let text = help(&[command, "--help"]);
        assert!(!text.contains("-C <DIR>"), "{command} takes no config directory:\n{text}");
    }
    let friends = help(&["friends", "list", "--help"]);
    assert!(paragraph(&friends, "-C <DIR>").contains("The server's config directory"), "{friends}");
    let main = help(&["--help"]);
    assert!(main.contains("-W 127.0.0.1:%p") && !main.contains("%h"), "{main}");
    assert!(paragraph(&main, "--friend-expiry").contains("[default: 30]"), "{main}");
}

#[test]
fn a_new_identity_is_announced_on_standard_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("typo");
    let first = tuntox(&["id", "-C", conf.to_str().unwrap()]);
    assert!(first.status.success(), "{}", stderr(&first));
    let said = format!("created a new Tox identity in {}", conf.join("tox_save").display());
    assert!(stderr(&first).contains(&said), "{}", stderr(&first));
    let again = tuntox(&["id", "-C", conf.to_str().unwrap()]);
    assert!(stderr(&again).is_empty(), "{}", stderr(&again));
    // -q silences it.
    let quiet = tuntox(&["id", "-q", "-C", dir.path().join("other").to_str().unwrap()]);
    assert!(quiet.status.success() && stderr(&quiet).is_empty(), "{}", stderr(&quiet));
}

/// Runs `tuntox ARGS` in `netns` until it exits (at most `timeout`).
fn run_in(netns: &Netns, label: &str, args: &[String], timeout: Duration) -> (i32, Vec<String>) {
    let mut process = Tuntox::spawn(netns, label, args);
    let status = process.wait_exit(timeout);
    // The log reader may still be catching up with the pipe.
    let deadline = Deadline::after(Duration::from_secs(2));
    while process.log().is_empty() && !deadline.passed() {
        std::thread::sleep(Duration::from_millis(20));
    }
    (status.code().unwrap_or(-1), process.log())
}

#[test]
fn one_config_directory_serves_one_process() {
    let netns = Netns::new("clilock");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().display().to_string();
    let mut server_args = strings(&["-C", &conf, "-s", "pw", "-u", "34000:34099"]);
    server_args.extend(nowhere());
    let mut server = Tuntox::spawn(&netns, "server", &server_args);
    let server_id = server.wait_tox_id();
    let held = format!("{conf} is in use by another tuntox (process {})", server.pid());

    // A second server and a client on the same directory stop at once.
    let (code, log) = run_in(&netns, "second server", &server_args, Duration::from_secs(10));
    assert_eq!(code, 1, "{log:?}");
    assert!(log.iter().any(|l| l.contains(&held)), "{log:?}");
    let mut client_args = strings(&["-C", &conf, "-i", &server_id, "-L", "2222:127.0.0.1:22", "-u", "34100:34199"]);
    client_args.extend(nowhere());
    let (code, log) = run_in(&netns, "client", &client_args, Duration::from_secs(10));
    assert_eq!(code, 1, "{log:?}");
    assert!(log.iter().any(|l| l.contains(&held)), "{log:?}");

    // `tuntox friends` reaches the running server through its status socket.
    let list = netns.command(binary()).args(["friends", "list", "-C", &conf]).output().unwrap();
    assert!(list.status.success() && list.stdout.is_empty(), "{}", stderr(&list));
    let stranger = "AB".repeat(32);
    let remove = netns.command(binary()).args(["friends", "remove", &stranger, "-C", &conf]).output().unwrap();
    assert_eq!(remove.status.code(), Some(1));
    assert!(stderr(&remove).contains("is not a friend of this server"), "{}", stderr(&remove));

    // Once it stopped, the directory is free.
    assert!(server.terminate(Duration::from_secs(10)).success());
    let list = netns.command(binary()).args(["friends", "list", "-C", &conf]).output().unwrap();
    assert!(list.status.success() && list.stdout.is_empty(), "{}", stderr(&list));
    let missing = netns.command(binary()).args(["friends", "list", "-C", "/nonexistent/tuntox"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no tox_save in /nonexistent/tuntox"), "{}", stderr(&missing));
}

#[test]
fn a_connect_timeout_says_where_things_stood() {
    // No bootstrap node answers: -W, -p and vpn up say so when they give
    // up, not "wrong secret or not running".
    let netns = Netns::new("clitimeout");
    for (label, first) in
        [("-W", &["-i", ID, "-W", "127.0.0.1:22"][..]), ("-p", &["-i", ID, "-p"]), ("vpn up", &["vpn", "up", "-i", ID])]
    {
        let mut args = strings(first);
        args.extend(strings(&["--connect-timeout", "2", "-s", "pw"]));
        args.extend(nowhere());
        let (code, log) = run_in(&netns, label, &args, Duration::from_secs(20));
        assert_eq!(code, 1, "{label}: {log:?}");
        let last = log.last().cloned().unwrap_or_default();
        assert!(
            last.starts_with(
                "tuntox: the server did not accept us within 2 s (--connect-timeout): no bootstrap node has \
                              answered yet (127.0.0.1:1)"
            ),
            "{label}: {log:?}"
        );
    }
}

#[test]
fn a_vpn_device_that_is_taken_is_named_as_such() {
    let netns = Netns::new("clidev");
    let mut first_args = strings(&["vpn", "up", "-i", ID, "--dev", "ttbusy", "--connect-timeout", "0"]);
    first_args.extend(nowhere());
    let mut first = Tuntox::spawn(&netns, "first vpn up", &first_args);
    let deadline = Deadline::after(Duration::from_secs(10));
    let exists = || netns.command("ip").args(["link", "show", "ttbusy"]).output().is_ok_and(|o| o.status.success());
    while !exists() {
        if deadline.passed() {
            first.fail("no device ttbusy within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (dev, says) in [
        ("ttbusy", "the device is in use (another `tuntox vpn up` or --vpn?); pick another name"),
        ("lo", "a device of that name exists and is not a TUN device"),
    ] {
        let mut args = strings(&["vpn", "up", "-i", ID, "--dev", dev, "--connect-timeout", "1"]);
        args.extend(nowhere());
        let (code, log) = run_in(&netns, "second vpn up", &args, Duration::from_secs(10));
        assert_eq!(code, 1, "{log:?}");
        let line = log.iter().find(|l| l.starts_with("tuntox: ")).cloned().unwrap_or_default();
        assert!(line.contains(says) && !line.contains("needs root"), "--dev {dev}: {log:?}");
    }
    assert!(first.terminate(Duration::from_secs(10)).success());
}
