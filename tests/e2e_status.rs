//! `tuntox status` end to end: a server and a `-L` client as processes in a
//! network namespace with a local tox-bootstrapd, each serving its report
//! in the namespace's status directory, and `tuntox status` reading them:
//! both ends list the other as an online friend with its path, the client
//! its open tunnel and the cipher their data goes in (AEGIS-256 between two
//! tuntox on AES hardware, Tox's own with `--no-aegis`, also through a TCP
//! relay with UDP off); a stopped process
//! takes its socket away, a killed one leaves a stale socket that `tuntox
//! status` names.
//!
//! Needs root (network namespaces) and toxcore-utils; run through
//! `scripts/test`, which installs them. It never skips.

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Output, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::deadline::Deadline;
use support::e2e::{Fixture, echo_roundtrip, echo_server, wait_client_connected};
use support::netns::Netns;
use support::tuntox::{Tuntox, binary};

const CONNECT: Duration = Duration::from_secs(60);

/// `tuntox status ARGS` inside the namespace (its status directory).
fn status(netns: &Netns, args: &[&str]) -> Output {
    let mut cmd = netns.command(binary());
    cmd.arg("status").args(args).stdin(Stdio::null()).env_remove("RUST_LOG");
    cmd.output().expect("run tuntox status")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The JSON reports of every tuntox in the namespace, by pid.
fn reports(netns: &Netns) -> Vec<Value> {
    let out = status(netns, &["--json"]);
    assert!(out.status.success(), "tuntox status --json: {}: {}", out.status, text(&out.stderr));
    text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn report_of(reports: &[Value], pid: u32) -> &Value {
    reports.iter().find(|r| r["pid"] == pid).unwrap_or_else(|| panic!("no report of pid {pid}: {reports:#?}"))
}

/// Whether `report` lists `key` as an online friend reached over UDP or a
/// TCP relay.
fn friend_online(report: &Value, key: &str) -> bool {
    report["friends"].as_array().into_iter().flatten().any(|f| {
        f["public_key"].as_str() == Some(key)
            && f["online"] == true
            && matches!(f["path"].as_str(), Some("udp") | Some("tcp"))
    })
}

/// The cipher `report` says its data to `key` goes in.
fn cipher_to(report: &Value, key: &str) -> Option<String> {
    let friends = report["friends"].as_array()?;
    let friend = friends.iter().find(|f| f["public_key"].as_str() == Some(key))?;
    friend["cipher"].as_str().map(str::to_owned)
}

/// Waits until the reports of `a` and `b` name `cipher` for each other
/// (a session switches once the peer's offer is in); panics with both
/// reports otherwise.
fn wait_ciphers(netns: &Netns, (a_pid, a_key): (u32, &str), (b_pid, b_key): (u32, &str), cipher: &str) {
    let deadline = Deadline::after(Duration::from_secs(15));
    loop {
        let all = reports(netns);
        let (a, b) = (report_of(&all, a_pid), report_of(&all, b_pid));
        let seen = (cipher_to(a, b_key), cipher_to(b, a_key));
        if seen == (Some(cipher.to_owned()), Some(cipher.to_owned())) {
            return;
        }
        assert!(!deadline.passed(), "expected {cipher} both ways, saw {seen:?}: {a:#} {b:#}");
        thread::sleep(Duration::from_millis(200));
    }
}

fn tox_id_of(process: &Tuntox) -> String {
    let log = process.log();
    let line = log.iter().find(|l| l.contains("Using Tox ID: ")).unwrap_or_else(|| process.fail("no Tox ID logged"));
    line.split("Using Tox ID: ").nth(1).unwrap_or_default().chars().take_while(char::is_ascii_hexdigit).collect()
}

#[test]
fn status_shows_both_ends_online_and_names_a_stale_socket() {
    let mut fx = Fixture::new("status", &[]);
    echo_server(fx.listen("127.0.0.1:7401"));
    let mut client = fx.client("client", &["-L", "7402:127.0.0.1:7401"]);
    wait_client_connected(&mut client, CONNECT);
    let mut stream = fx.connect("127.0.0.1:7402".parse().unwrap(), Duration::from_secs(10));
    assert_eq!(echo_roundtrip(&mut stream, b"status").unwrap(), b"status");
    let (server_pid, client_pid) = (fx.server.pid(), client.pid());
    let server_key = fx.server_id[..64].to_owned();
    let client_id = tox_id_of(&client);
    let client_key = client_id[..64].to_owned();

    // Both ends see each other online (the server may take a moment longer
    // to count the client as online).
    let deadline = Deadline::after(Duration::from_secs(15));
    let all = loop {
        let all = reports(&fx.netns);
        if friend_online(report_of(&all, server_pid), &client_key) || deadline.passed() {
            break all;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(all.len(), 2, "{all:#?}");
    let (server, mine) = (report_of(&all, server_pid), report_of(&all, client_pid));
    assert_eq!((server["mode"].as_str(), server["tox_id"].as_str()), (Some("server"), Some(fx.server_id.as_str())));
    assert!(friend_online(server, &client_key), "the server's report: {server:#}");
    assert_eq!((mine["mode"].as_str(), mine["tox_id"].as_str()), (Some("client"), Some(client_id.as_str())));
    assert!(friend_online(mine, &server_key), "the client's report: {mine:#}");
    assert_eq!(mine["tunnels_open"], 1, "{mine:#}");
    assert!(mine["counters"]["tunnels"]["tunnels_opened"].as_u64() >= Some(1), "{mine:#}");
    assert!(server["counters"]["tunnels"]["bytes_to_peers"].as_u64() >= Some(6), "{server:#}");

    // The sockets: mode 0600, named by pid; the text report of one.
    let socket = fx.netns.status_dir().join(format!("tuntox-{client_pid}.sock"));
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket() && meta.permissions().mode() & 0o777 == 0o600, "{meta:?}");
    let out = status(&fx.netns, &["--socket", socket.to_str().unwrap()]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(report.starts_with(&format!("tuntox:       client, pid {client_pid}, up ")), "{report}");
    assert!(report.contains(&format!("Tox ID:       {client_id}\n")), "{report}");
    assert!(report.contains("Friends:      1 of 1 online\n"), "{report}");
    assert!(report.contains(&format!("  {server_key} online, ")), "{report}");
    assert!(report.contains("Tunnels open: 1\n"), "{report}");

    // Two tuntox agree on AEGIS-256 where the CPU has AES instructions.
    let expected = if tuntox::crypto::aes_hardware() { "aegis-256" } else { "xsalsa20-poly1305" };
    wait_ciphers(&fx.netns, (server_pid, &server_key), (client_pid, &client_key), expected);
    assert!(status(&fx.netns, &[]).stdout.windows(expected.len()).any(|w| w == expected.as_bytes()));

    // A stopped client takes its socket away; the server still reports.
    drop(stream);
    let stopped = client.terminate(Duration::from_secs(10));
    assert!(stopped.success(), "{stopped}");
    assert!(!socket.exists(), "the client's socket is left behind");
    let all = reports(&fx.netns);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["pid"], server_pid);

    // A killed server leaves a stale socket: named, and nothing running.
    fx.server.kill();
    let out = status(&fx.netns, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(err.contains(&format!("(process {server_pid}) is no longer running")), "{err}");
    assert!(err.contains("tuntox: no running tuntox found in "), "{err}");
}

#[test]
fn no_aegis_keeps_tox_s_cipher_both_ways() {
    let mut fx = Fixture::new("nocipher", &[]);
    echo_server(fx.listen("127.0.0.1:7411"));
    let mut client = fx.client("client", &["--no-aegis", "-L", "7412:127.0.0.1:7411"]);
    wait_client_connected(&mut client, CONNECT);
    let mut stream = fx.connect("127.0.0.1:7412".parse().unwrap(), Duration::from_secs(10));
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(echo_roundtrip(&mut stream, &payload).unwrap(), payload);
    let server_key = fx.server_id[..64].to_owned();
    let client_key = tox_id_of(&client)[..64].to_owned();
    // The client offers nothing, so the server keeps Tox's cipher toward
    // it; the client never seals with AEGIS-256 itself.
    wait_ciphers(&fx.netns, (fx.server.pid(), &server_key), (client.pid(), &client_key), "xsalsa20-poly1305");
}

#[test]
fn two_tuntox_through_a_tcp_relay_agree_on_the_same_cipher() {
    let mut fx = Fixture::new("relaycipher", &[]);
    let relay = fx.bootstrapd.tcp_relay_arg();
    let tcp_only = ["--no-udp", "--relay", relay.as_str()];
    fx.server.kill();
    fx.restart_server(&tcp_only);
    echo_server(fx.listen("127.0.0.1:7421"));
    let mut flags = tcp_only.to_vec();
    flags.extend(["-L", "7422:127.0.0.1:7421"]);
    let mut client = fx.client("client", &flags);
    wait_client_connected(&mut client, Duration::from_secs(90));
    // Data packets of either cipher cross tox-bootstrapd's TCP relay
    // (AEGIS-256 ones are 16 bytes longer), intact.
    let mut stream = fx.connect("127.0.0.1:7422".parse().unwrap(), Duration::from_secs(10));
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + 5) as u8).collect();
    assert_eq!(echo_roundtrip(&mut stream, &payload).unwrap(), payload);
    let server_key = fx.server_id[..64].to_owned();
    let client_key = tox_id_of(&client)[..64].to_owned();
    let expected = if tuntox::crypto::aes_hardware() { "aegis-256" } else { "xsalsa20-poly1305" };
    wait_ciphers(&fx.netns, (fx.server.pid(), &server_key), (client.pid(), &client_key), expected);
    let all = reports(&fx.netns);
    let mine = report_of(&all, client.pid());
    let path = mine["friends"][0]["path"].as_str();
    assert_eq!(path, Some("tcp"), "the client reaches the server through the relay: {mine:#}");
    // And says since when: no longer than it has been up.
    let since = mine["friends"][0]["path_since_secs"].as_u64();
    let uptime = mine["uptime_secs"].as_u64().unwrap_or_default();
    assert!(since.is_some_and(|s| s <= uptime), "path_since_secs {since:?}, up {uptime} s: {mine:#}");
    let out = status(&fx.netns, &[]);
    let text = text(&out.stdout);
    assert!(text.contains(&format!("{server_key} online, through a TCP relay for ")), "{text}");
}
