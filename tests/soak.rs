//! Soak: sessions that carry next to nothing stay up for 20 minutes while
//! both cores are kept busy by other processes.
//!
//! Two pairs of `tuntox` processes (a server and a `-L` client each) in one
//! namespace with a tox-bootstrapd: one pair idle, one carrying a short
//! message through an open tunnel once a minute (so its friends are in use
//! and a silence of 8 s would drop them). The idle pair's client runs on
//! the port a client of that server used before (saved as its friend,
//! then gone): the server keeps trying that friend there, which once took
//! the live client's packets and dropped its session every 40 s. Two busy
//! loops keep both cores busy throughout; they and the four tuntox run at
//! the same low priority (nice 19), so the peers compete with the loops
//! for the CPU, and beside the rest of the test suite, which `scripts/test`
//! runs at the same time, they take no time from it. Zero drops are allowed:
//! no "lost the server" on a client, no "friend offline" on a server, every
//! message back within 10 s.
//!
//! `TUNTOX_SOAK_MINUTES` shortens or lengthens the run (default 20).
//! Needs root (network namespaces) and toxcore-utils; `scripts/test` runs
//! it beside the other tests and fails when it fails.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use support::bootstrapd::Bootstrapd;
use support::deadline::{Deadline, now};
use support::e2e::{SECRET, echo_server};
use support::netns::{ChildGuard, Netns};
use support::tuntox::{Tuntox, binary, local_network_args};

/// How long the sessions must hold.
fn soak_time() -> Duration {
    let minutes = std::env::var("TUNTOX_SOAK_MINUTES").ok().and_then(|m| m.parse::<u64>().ok()).unwrap_or(20);
    Duration::from_secs(minutes * 60)
}

/// One message a minute on the busy pair.
const TICK: Duration = Duration::from_secs(60);
/// The longest a message may take to come back.
const ECHO_LIMIT: Duration = Duration::from_secs(10);

/// `tuntox ARGS` in `netns` at nice 19, its log collected.
fn spawn(netns: &Netns, label: &str, args: &[String]) -> Tuntox {
    let mut cmd = netns.command("nice");
    cmd.args(["-n", "19", binary()]).args(args).stdin(Stdio::null()).stdout(Stdio::null());
    Tuntox::spawn_command(cmd, label)
}

/// A process that keeps one core busy, at nice 19, until dropped.
fn busy_loop(n: usize) -> ChildGuard {
    let child = Command::new("nice")
        .args(["-n", "19", "sh", "-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start a busy loop");
    ChildGuard::new(child, format!("busy loop {n}"))
}

/// Fails with every log when any shows a drop after the soak began (the
/// first `from[i]` lines of process `i` came before).
fn check_no_drop(processes: &[&Tuntox], from: &[usize], elapsed: Duration) {
    for (process, &from) in processes.iter().zip(from) {
        let log = process.log();
        if let Some(line) =
            log.iter().skip(from).find(|l| l.contains("lost the server") || l.contains("friend offline"))
        {
            process.fail(&format!("a session dropped {elapsed:?} into the soak: {line}"));
        }
    }
}

#[test]
fn soak_idle_and_sparse_sessions_hold_for_20_minutes_on_busy_cores() {
    let soak = soak_time();
    let netns = Netns::new("soak");
    let bootstrapd = Bootstrapd::start(&netns);
    let net = local_network_args(&bootstrapd.bootstrap_arg());
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let server_args = |dir: &tempfile::TempDir, ports: &str| {
        let mut args: Vec<String> =
            ["-C", &dir.path().display().to_string(), "-s", SECRET, "-u", ports].map(String::from).to_vec();
        args.extend(net.iter().cloned());
        args
    };
    let client_args = |id: &str, ports: &str, extra: &[&str]| {
        let mut args: Vec<String> = ["-i", id, "-s", SECRET, "-u", ports].map(String::from).to_vec();
        args.extend(net.iter().cloned());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let mut idle_server = spawn(&netns, "idle server", &server_args(&dirs[0], "34000:34009"));
    let idle_id = idle_server.wait_tox_id();
    let mut busy_server = spawn(&netns, "busy server", &server_args(&dirs[1], "34010:34019"));
    let busy_id = busy_server.wait_tox_id();

    // A client with an identity comes and goes on port 34100: the idle
    // server keeps it as a friend and keeps trying it there.
    let old_dir = dirs[2].path().display().to_string();
    let mut old = spawn(&netns, "old client", &client_args(&idle_id, "34100:34100", &["-C", &old_dir, "-D", "7301"]));
    old.wait_log("the connection", |l| l.contains("connected to the server"), Duration::from_secs(60));
    old.kill();
    idle_server.wait_log("the old client's loss", |l| l.contains("friend offline"), Duration::from_secs(40));

    // Both cores busy from here on.
    let _busy: Vec<ChildGuard> = (0..2).map(busy_loop).collect();
    let mut idle = spawn(&netns, "idle client", &client_args(&idle_id, "34100:34100", &["-L", "7311:127.0.0.1:7302"]));
    let mut busy = spawn(&netns, "busy client", &client_args(&busy_id, "34200:34209", &["-L", "7312:127.0.0.1:7303"]));
    for client in [&mut idle, &mut busy] {
        client.wait_log("the connection", |l| l.contains("connected to the server"), Duration::from_secs(90));
    }
    echo_server(netns.run_in(|| std::net::TcpListener::bind("127.0.0.1:7303").unwrap()));
    let addr = "127.0.0.1:7312".parse().unwrap();
    let mut stream = netns.run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5))).unwrap();
    stream.set_read_timeout(Some(ECHO_LIMIT)).unwrap();

    let all = [&idle_server, &busy_server, &idle, &busy];
    let from: Vec<usize> = all.iter().map(|p| p.log().len()).collect();
    let start = Deadline::after(soak);
    let mut worst = Duration::ZERO;
    let mut sent = 0u32;
    while !start.passed() {
        let message = format!("minute {sent}\n");
        let t = now();
        let echoed = stream.write_all(message.as_bytes()).and_then(|()| {
            let mut back = vec![0u8; message.len()];
            stream.read_exact(&mut back).map(|()| back)
        });
        match echoed {
            Ok(back) if back == message.as_bytes() => {}
            other => busy.fail(&format!("message {sent} did not come back within {ECHO_LIMIT:?}: {other:?}")),
        }
        worst = worst.max(t.elapsed());
        sent += 1;
        check_no_drop(&all, &from, start.elapsed());
        while !start.passed() && t.elapsed() < TICK {
            thread::sleep(start.step(Duration::from_secs(1)));
            check_no_drop(&all, &from, start.elapsed());
        }
    }
    // Still online at the end, all four, as their status reports say.
    for process in all {
        let out = netns.command(binary()).args(["status", "--json"]).stdin(Stdio::null()).output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["pid"] == process.pid())
            .unwrap_or_else(|| process.fail("no status report"));
        let online = report["friends"].as_array().is_some_and(|f| f.iter().any(|f| f["online"] == true));
        if !online {
            process.fail(&format!("no friend online at the end: {report}"));
        }
    }
    eprintln!(
        "soak: {:?} on busy cores, {sent} messages through the busy pair (slowest back in {worst:?}), no drop",
        start.elapsed()
    );
}
