//! Sessions a user can follow, with real processes in a network namespace
//! and a local tox-bootstrapd: goodbyes seen at once both ways, a wrong
//! secret diagnosed on the client (whose local connections fail at once,
//! saying why), an unreachable bootstrap node reported on both sides, and
//! the server's friend list (`tuntox friends`): accepted clients with their
//! last-seen times, throwaway clients (no `-C`) never saved, removal.
//!
//! Needs root (network namespaces) and toxcore-utils; run through
//! `scripts/test`, which installs them. It never skips.

mod support;

use std::io::Read;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::deadline::now;
use support::e2e::*;
use support::netns::Netns;
use support::tuntox::{Tuntox, binary};

const CONNECT: Duration = Duration::from_secs(60);

/// How long after a peer's exit its goodbye must have been seen.
const GOODBYE: Duration = Duration::from_secs(1);

#[test]
fn goodbyes_are_seen_at_once_both_ways() {
    let mut fx = Fixture::new("sessbye", &[]);
    echo_server(fx.listen("127.0.0.1:7201"));
    let mut client = fx.client("client", &["-L", "7211:127.0.0.1:7201"]);
    wait_client_connected(&mut client, CONNECT);
    fx.server.wait_log("the client online", |l| l.contains("friend online"), Duration::from_secs(5));
    let mut s = fx.connect("127.0.0.1:7211".parse().unwrap(), Duration::from_secs(5));
    assert_eq!(echo_roundtrip(&mut s, b"hello").unwrap(), b"hello");

    // SIGTERM: the client's kill packet tells the server at once.
    let status = client.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let exited = now();
    fx.server.wait_log("the client's goodbye", |l| l.contains("friend offline"), GOODBYE);
    eprintln!("the server saw the client go {:?} after its exit", exited.elapsed());

    // And the other way: a client sees the server stop at once.
    let mut client = fx.client("second client", &["-L", "7212:127.0.0.1:7201"]);
    wait_client_connected(&mut client, CONNECT);
    let status = fx.server.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let exited = now();
    client.wait_log("the server's goodbye", |l| l.contains("lost the server"), GOODBYE);
    eprintln!("the client saw the server go {:?} after its exit", exited.elapsed());
}

#[test]
fn a_wrong_secret_is_diagnosed_and_local_connections_fail_at_once() {
    let mut fx = Fixture::new("sesswrong", &[]);
    let args = fx.client_args(&["-s", "wrong", "-L", "7221:127.0.0.1:7202"]);
    let mut client = Tuntox::spawn(&fx.netns, "client", &args);
    let said = client.wait_log("the refusal", |l| l.contains("has not accepted us"), CONNECT);
    assert!(said.contains("a wrong secret (-s)") && said.contains("allow-list (-i)"), "{said}");
    fx.server.wait_log("the refusal", |l| l.contains("wrong shared secret"), Duration::from_secs(5));

    // A local connection is closed at once, and the log says why.
    let mut s = fx.connect("127.0.0.1:7221".parse().unwrap(), Duration::from_secs(5));
    let opened = now();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    let read = s.read(&mut buf);
    let took = opened.elapsed();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(took < Duration::from_secs(1), "the connection stayed open {took:?}");
    let line = client.wait_log(
        "the closing",
        |l| l.contains("closing connection") && l.contains("has not accepted us"),
        Duration::from_secs(1),
    );
    assert!(line.contains("a wrong secret (-s)"), "{line}");

    // -W with the wrong secret gives up on its own, saying why.
    let args = fx.client_args(&["-s", "wrong", "-W", "127.0.0.1:7202"]);
    let start = now();
    let out = fx.netns.command(binary()).args(&args).stdin(std::process::Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the server has not accepted us: a wrong secret (-s)"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(90), "gave up after {:?}", start.elapsed());
}

#[test]
fn an_unreachable_bootstrap_node_is_reported_on_both_sides() {
    let netns = Netns::new("sessboot");
    let dir = tempfile::tempdir().unwrap();
    // Nothing answers on port 9.
    let nowhere = format!("127.0.0.1:9:{}", "AB".repeat(32));
    let net = ["--bootstrap", &nowhere, "--no-lan", "--no-portmap"];
    let mut server_args: Vec<String> =
        ["-C", &dir.path().display().to_string(), "-s", SECRET, "-u", "34000:34099"].map(String::from).to_vec();
    server_args.extend(net.map(String::from));
    let started = now();
    let mut server = Tuntox::spawn(&netns, "server", &server_args);
    let id = server.wait_tox_id();
    let mut client_args: Vec<String> =
        ["-i", &id, "-s", SECRET, "-L", "7231:127.0.0.1:7203", "-u", "34100:34199"].map(String::from).to_vec();
    client_args.extend(net.map(String::from));
    let mut client = Tuntox::spawn(&netns, "client", &client_args);
    let limit = Duration::from_secs(30);
    for (who, process) in [("server", &mut server), ("client", &mut client)] {
        let line = process.wait_log("the warning", |l| l.contains("no bootstrap node has answered"), limit);
        assert!(line.contains("127.0.0.1:9"), "{who}: {line}");
        eprintln!("{who} warned {:?} after the start", started.elapsed());
    }
    assert!(started.elapsed() <= limit, "{:?}", started.elapsed());
    // A local connection is refused, naming the cause.
    let addr = "127.0.0.1:7231".parse().unwrap();
    let mut s = netns.run_in(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read(&mut [0u8; 1]);
    client.wait_log(
        "the closing",
        |l| l.contains("closing connection") && l.contains("no bootstrap node has answered yet"),
        Duration::from_secs(2),
    );
}

/// `tuntox friends list --json -C DIR` in the namespace: one object per
/// friend.
fn friends(netns: &Netns, dir: &str) -> Vec<Value> {
    let out = netns.command(binary()).args(["friends", "list", "--json", "-C", dir]).output().unwrap();
    assert!(out.status.success(), "friends list: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn find<'a>(list: &'a [Value], key: &str) -> &'a Value {
    list.iter().find(|f| f["public_key"] == key).unwrap_or_else(|| panic!("{key} not in {list:?}"))
}

#[test]
fn the_server_lists_its_friends_keeps_only_those_with_an_identity_and_removes_on_request() {
    let mut fx = Fixture::new("sessfriends", &[]);
    let conf = fx.dir.path().display().to_string();
    let kept_dir = tempfile::tempdir().unwrap();
    let mut kept = fx.client("kept", &["-C", &kept_dir.path().display().to_string(), "-L", "7241:127.0.0.1:7204"]);
    let kept_key = kept.wait_tox_id()[..64].to_owned();
    wait_client_connected(&mut kept, CONNECT);
    let mut throwaway = fx.client("throwaway", &["-L", "7242:127.0.0.1:7204"]);
    let throwaway_key = throwaway.wait_tox_id()[..64].to_owned();
    wait_client_connected(&mut throwaway, CONNECT);
    fx.server.wait_log("the throwaway", |l| l.contains("kept for this session only"), Duration::from_secs(5));

    // The running server, through its status socket.
    let list = friends(&fx.netns, &conf);
    assert_eq!(list.len(), 2, "{list:?}");
    let (k, t) = (find(&list, &kept_key), find(&list, &throwaway_key));
    assert_eq!((&k["kept"], &k["online"]), (&Value::from("saved"), &Value::from(true)), "{list:?}");
    assert_eq!((&t["kept"], &t["online"]), (&Value::from("session"), &Value::from(true)), "{list:?}");
    let unix = tuntox::app::friends::unix_now();
    assert!(k["last_seen"].as_u64().is_some_and(|t| t.abs_diff(unix) < 30), "{list:?}");
    let out = fx.netns.command(binary()).args(["friends", "list", "-C", &conf]).output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(lines.lines().any(|l| l.starts_with(&kept_key) && l.contains("online") && l.contains("saved")), "{lines}");

    // Both leave; the server stops and starts again.
    assert!(kept.terminate(Duration::from_secs(10)).success());
    assert!(throwaway.terminate(Duration::from_secs(10)).success());
    fx.server.wait_log("both gone", |l| l.contains("friend offline"), Duration::from_secs(2));
    let status = fx.server.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    // Stopped: the directory itself holds only the client with an identity,
    // with the time it was last seen.
    let saved = friends(&fx.netns, &conf);
    assert_eq!(saved.len(), 1, "{saved:?}");
    let entry = find(&saved, &kept_key);
    assert!(entry["last_seen"].as_u64().is_some_and(|t| t.abs_diff(unix) < 60), "{saved:?}");
    assert_eq!(entry["online"], Value::Null, "unknown while stopped");
    let out = fx.netns.command(binary()).args(["friends", "list", "-C", &conf]).output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(line.starts_with(&kept_key) && line.contains("last seen 20") && line.contains(" UTC ("), "{line}");
    fx.restart_server(&[]);
    fx.server.wait_log("its saved friend", |l| l.contains("friends=1"), Duration::from_secs(5));

    // Removed through the running server: gone from the list and the file.
    let out = fx.netns.command(binary()).args(["friends", "remove", &kept_key, "-C", &conf]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("removed {kept_key}")), "{}", text(&out));
    assert!(friends(&fx.netns, &conf).is_empty());
    assert!(fx.server.terminate(Duration::from_secs(10)).success());
    assert!(friends(&fx.netns, &conf).is_empty(), "removed from tox_save too");
}
