//! Config files: every example under docs/examples/ gives the settings its
//! flag version gives (one comparison of two values each), and
//! `tuntox config check` prints settings or names the file and line of
//! what is wrong.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output};

use tuntox::cli::args::{Cli, Command, ForwardArgs, RelayArgs, VpnCommand, VpnUpArgs};
use tuntox::cli::effective;

const ID: &str = "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2";

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples").join(name).to_str().unwrap().to_owned()
}

fn settings(args: &[&str]) -> Cli {
    let args: Vec<OsString> = std::iter::once("tuntox").chain(args.iter().copied()).map(OsString::from).collect();
    effective(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The forward settings, without the name of the file they came from.
fn forward(args: &[&str]) -> ForwardArgs {
    let mut forward = settings(args).forward;
    forward.service.config = None;
    forward
}

fn vpn_up(args: &[&str]) -> VpnUpArgs {
    let Some(Command::Vpn(VpnCommand::Up(mut up))) = settings(args).command else { panic!("not vpn up: {args:?}") };
    up.service.config = None;
    up
}

fn relay(args: &[&str]) -> RelayArgs {
    let Some(Command::Relay(mut relay)) = settings(args).command else { panic!("not relay: {args:?}") };
    relay.service.config = None;
    relay
}

#[test]
fn the_server_example_equals_its_flags() {
    let file = forward(&["-c", &example("server.toml")]);
    let flags = forward(&[
        "-C",
        "/var/lib/tuntox",
        "--secret-file",
        "/etc/tuntox/secret",
        "-f",
        "/etc/tuntox/rules",
        "-I",
        "/var/lib/tuntox/tox_id",
        "-t",
        "33445",
        "--friend-expiry",
        "60",
        "--metrics",
        "127.0.0.1:9184",
        "-u",
        "33445:33545",
    ]);
    assert_eq!(file, flags);
    // And differs from the defaults, so the comparison means something.
    assert_ne!(file, forward(&[]));
}

#[test]
fn the_vpn_server_example_equals_its_flags() {
    let file = forward(&["-c", &example("vpn-server.toml")]);
    let flags = forward(&[
        "-C",
        "/var/lib/tuntox",
        "--secret-file",
        "/etc/tuntox/secret",
        "--vpn",
        "--vpn-pool",
        "10.77.0.0/24",
        "--vpn-route",
        "192.168.1.0/24",
        "--vpn-nat",
        "--vpn-dev",
        "tuntox-srv0",
        "--vpn-mtu",
        "1280",
        "--metrics",
        "127.0.0.1:9184",
    ]);
    assert_eq!(file, flags);
}

#[test]
fn the_client_example_equals_its_flags() {
    let file = forward(&["-c", &example("client.toml")]);
    let flags = forward(&[
        "-i",
        ID,
        "--secret-file",
        "/etc/tuntox/secret",
        "-L",
        "2222:127.0.0.1:22",
        "-L",
        "8080:intranet.example:80",
        "-D",
        "1080",
        "--metrics",
        "127.0.0.1:9185",
        "--connect-timeout",
        "0",
    ]);
    assert_eq!(file, flags);
}

#[test]
fn the_vpn_client_example_equals_its_flags() {
    let file = vpn_up(&["vpn", "up", "-c", &example("vpn-client.toml")]);
    let flags = vpn_up(&[
        "vpn",
        "up",
        "-i",
        ID,
        "--secret-file",
        "/etc/tuntox/secret",
        "--route",
        "192.168.1.0/24",
        "--dev",
        "tuntox0",
        "--mtu",
        "1280",
        "-C",
        "/var/lib/tuntox-vpn",
        "--metrics",
        "127.0.0.1:9186",
        "--connect-timeout",
        "120",
    ]);
    assert_eq!(file, flags);
}

#[test]
fn the_relay_example_equals_its_flags() {
    let file = relay(&["relay", "-c", &example("relay.toml")]);
    let flags = relay(&[
        "relay",
        "-C",
        "/var/lib/tuntox-relay",
        "--port",
        "33445",
        "--tcp-port",
        "443",
        "--tcp-port",
        "33445",
        "--max-clients",
        "4096",
        "--metrics",
        "127.0.0.1:9187",
        "--no-lan",
    ]);
    assert_eq!(file, flags);
}

#[test]
fn every_example_is_parsed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            tuntox::cli::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 5, "{seen} examples in {}", dir.display());
}

#[test]
fn flags_override_the_file() {
    let file = forward(&["-c", &example("server.toml"), "-C", "/elsewhere", "-t", "0", "-s", "pw"]);
    assert_eq!(file.common.config_dir, Some(PathBuf::from("/elsewhere")));
    assert_eq!(file.tcp_relay_port, Some(0));
    // -s replaces the file's secret_file.
    assert_eq!((file.secret.is_some(), file.secret_file.as_ref()), (true, None));
    assert_eq!(file.rules, Some(PathBuf::from("/etc/tuntox/rules")));
}

fn tuntox(args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_tuntox"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TUNTOX_SHARED_SECRET")
        .env("TUNTOX_PRIVATE_NETWORK_ONLY", "1")
        .output()
        .expect("run tuntox")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_names_the_line_of_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "config_dir = \"/x\"\n\n[server]\nrules = \"/r\"\nsecrt_file = \"/s\"\n").unwrap();
    let out = tuntox(&["config", "check", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with(&format!("tuntox: {}:5:1: unknown field `secrt_file`", path.display())), "{err}");
    assert!(out.stdout.is_empty());

    // Running with it fails the same way, before anything starts.
    let out = tuntox(&["-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(":5:1: unknown field `secrt_file`"), "{}", text(&out.stderr));

    // A bad value: its line and column (in a list: where the list starts).
    std::fs::write(&path, "[forwards]\nlocal = [\n  \"2222:127.0.0.1:22\",\n  \"99999:h:1\",\n]\n").unwrap();
    let out = tuntox(&["config", "check", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml:2:9: ") && err.contains("out of range 1-65535"), "{err}");
}

#[test]
fn config_check_prints_the_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-value\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.path().join("c.toml");
    let config = format!(
        "[client]\nserver = \"{ID}\"\nsecret = \"inline-s3cret\"\n[forwards]\nlocal = [\"2222:127.0.0.1:22\"]\n\
         [vpn_client]\nserver = \"{ID}\"\nsecret_file = \"{}\"\n",
        secret.display()
    );
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = tuntox(&["config", "check", path.to_str().unwrap()]);
    let (stdout, err) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{err}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(stdout.contains("secret = \"<redacted>\""), "{stdout}");
    assert!(stdout.contains("local = [\"127.0.0.1:2222:127.0.0.1:22\"]"), "{stdout}");
    assert!(stdout.contains("# tuntox vpn up -c FILE"), "{stdout}");
    assert!(stdout.contains("device = \"tuntox0\""), "{stdout}");

    // A secret file others may read is refused.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = tuntox(&["config", "check", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("holds the shared secret but others may read it (mode 0644): run chmod 600"), "{err}");
}

#[test]
fn vpn_up_needs_a_server_from_the_flags_or_the_file() {
    let out = tuntox(&["vpn", "up", "--no-lan", "--no-portmap"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("vpn up needs the server's Tox ID (-i TOXID, or server in [vpn_client] of -c FILE)"), "{err}");
}

#[test]
fn the_log_keys_equal_their_flags() {
    let dir = std::env::temp_dir().join(format!("tuntox-config-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.toml");
    std::fs::write(
        &path,
        "log_file = \"/var/log/tuntox.log\"\nlog_format = \"json\"\n[server]\nrules = \"/etc/tuntox/rules\"\n",
    )
    .unwrap();
    let file = forward(&["-c", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let flags = forward(&["--log-file", "/var/log/tuntox.log", "--log-format", "json", "-f", "/etc/tuntox/rules"]);
    assert_eq!(file, flags);
    assert_eq!(file.common.log_format, tuntox::cli::args::LogFormat::Json);
}

#[test]
fn the_vpn_keys_equal_their_flags() {
    let dir = std::env::temp_dir().join(format!("tuntox-config-vpn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.toml");
    std::fs::write(&path, "[server]\n[server.vpn]\nallow_clients = true\nallow_anyone = true\n").unwrap();
    let file = forward(&["-c", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let flags = forward(&["--vpn", "--vpn-allow-clients", "--vpn-allow-anyone"]);
    assert_eq!(file, flags);
    assert!(file.vpn_allow_clients && file.vpn_allow_anyone);
}
