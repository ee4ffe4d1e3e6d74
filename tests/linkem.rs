//! The link emulator of the test support (tests/support/linkem.rs) against
//! real tools: ping's round trip matches the configured delays, iperf3's
//! TCP rate matches the rate limit (also after a change while it runs),
//! random loss drops about the share asked for and exactly the packets it
//! counts, and dropping a link removes its devices and threads, also when
//! the code holding it panics.
//!
//! Needs root (network namespaces, TUN devices), ping and iperf3; run
//! through `scripts/test`, which installs them. It never skips.

mod support;

use std::net::Ipv4Addr;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::deadline::Deadline;
use support::linkem::{Direction, Link, LinkConfig, LinkedPair};
use support::netns::{ChildGuard, Netns};

/// Runs `argv` in `netns` to completion (bounded by `timeout`).
fn run(netns: &Netns, argv: &[&str], timeout: Duration) -> Output {
    let child = netns
        .command(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{argv:?}: {e} (scripts/test installs iputils-ping and iperf3)"));
    wait_output(child, argv, timeout)
}

/// Waits for `child` to exit within `timeout` (killing it otherwise) and returns its output.
fn wait_output(mut child: Child, argv: &[&str], timeout: Duration) -> Output {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let mut guard = ChildGuard::new(child, argv.join(" "));
    let status = guard.wait_timeout(timeout);
    guard.kill();
    let (stdout, stderr) = (stdout.join().expect("stdout"), stderr.join().expect("stderr"));
    let status = status.unwrap_or_else(|| panic!("{argv:?} did not finish within {timeout:?}"));
    Output { status, stdout, stderr }
}

/// `ping` statistics: (transmitted, received, average round trip in ms).
fn ping(netns: &Netns, target: Ipv4Addr, count: u32, interval: &str) -> (u32, u32, f64) {
    let count_arg = count.to_string();
    let target = target.to_string();
    let argv = ["ping", "-n", "-q", "-c", &count_arg, "-i", interval, "-W", "2", &target];
    let out = run(netns, &argv, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains("packets transmitted")).unwrap_or_else(|| panic!("ping: {text}"));
    let numbers: Vec<u32> = line.split(',').filter_map(|f| f.split_whitespace().next()?.parse().ok()).collect();
    let avg = text
        .lines()
        .find_map(|l| l.split(" = ").nth(1))
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    (numbers[0], numbers[1], avg)
}

fn assert_near(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= want * tolerance,
        "{what}: {got:.2}, expected {want:.2} within {:.0} %",
        tolerance * 100.0
    );
}

#[test]
fn ping_round_trip_matches_the_delays_also_after_a_change() {
    // Different delays each way: each direction keeps its own.
    let pair = LinkedPair::new("lkping", LinkConfig::ideal().delay_ms(25.0));
    pair.link.set(Direction::BToA, LinkConfig::ideal().delay_ms(15.0));
    let (sent, got, avg) = ping(&pair.a, LinkedPair::ADDR_B, 20, "0.05");
    assert_eq!((sent, got), (20, 20), "no loss configured");
    assert_near("ping round trip ms at 25 + 15 ms", avg, 40.0, 0.1);

    pair.link.set_both(LinkConfig::ideal().delay_ms(60.0));
    let (_, got, avg) = ping(&pair.b, LinkedPair::ADDR_A, 10, "0.05");
    assert_eq!(got, 10);
    assert_near("ping round trip ms at 60 + 60 ms", avg, 120.0, 0.1);
    for dir in [Direction::AToB, Direction::BToA] {
        let stats = pair.link.stats(dir);
        assert_eq!(stats.forwarded, 30, "{dir:?}: one packet each way per ping: {stats:?}");
        assert!(stats.mean_late < Duration::from_millis(1), "{dir:?}: writes on time: {stats:?}");
    }
}

#[test]
fn random_loss_drops_about_its_share_and_counts_each_packet() {
    let pair = LinkedPair::new("lkloss", LinkConfig::ideal().delay_ms(1.0));
    pair.link.set(Direction::AToB, LinkConfig::ideal().delay_ms(1.0).loss(0.1));
    let (sent, got, _) = ping(&pair.a, LinkedPair::ADDR_B, 1000, "0.002");
    assert_eq!(sent, 1000);
    let there = pair.link.stats(Direction::AToB);
    let back = pair.link.stats(Direction::BToA);
    // Only the pings cross (IPv6 is off): each request lost is one reply missing.
    assert_eq!(there.received, 1000, "{there:?}");
    assert_eq!(u64::from(sent - got), there.lost, "ping's missing replies are the link's losses: {there:?}");
    assert_eq!((back.lost, back.forwarded), (0, u64::from(got)), "no loss on the way back: {back:?}");
    let share = there.lost as f64 / 1000.0;
    assert!((0.07..=0.13).contains(&share), "10 % loss asked, {:.1} % lost", share * 100.0);
}

/// iperf3 server in `server`, client in `client` toward `target`; returns the parsed JSON.
fn iperf3(server: &Netns, client: &Netns, target: Ipv4Addr, args: &[&str]) -> Value {
    let bind = target.to_string();
    let iperf = server
        .command("iperf3")
        .args(["-s", "-1", "-B", &bind])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 (scripts/test installs it)");
    let _server = ChildGuard::new(iperf, "iperf3 -s");
    // The server may take a moment to listen.
    let deadline = Deadline::after(Duration::from_secs(5));
    loop {
        let mut argv = vec!["iperf3", "-c", &bind, "-J"];
        argv.extend_from_slice(args);
        let out = run(client, &argv, Duration::from_secs(30));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.success() {
            return json;
        }
        let error = json["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            error.contains("connect") && !deadline.passed(),
            "iperf3 {args:?} failed: {error} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn iperf3_tcp_rate_matches_the_limit_and_follows_a_change() {
    let rtt = Duration::from_millis(10);
    for mbit in [20.0, 100.0] {
        let config = LinkConfig::ideal().delay(rtt / 2).rate_mbit(mbit).queue_bdp(2.0, rtt);
        let pair = LinkedPair::new("lkrate", config);
        let json = iperf3(&pair.b, &pair.a, LinkedPair::ADDR_B, &["-t", "4", "-O", "1"]);
        let got = json["end"]["sum_received"]["bits_per_second"].as_f64().expect("iperf3 sum_received") / 1e6;
        let stats = pair.link.stats(Direction::AToB);
        eprintln!("{mbit} Mbit/s link: iperf3 {got:.1} Mbit/s; {stats:?}");
        // iperf3 counts TCP payload; the link counts whole IP packets (1448 of 1500 bytes).
        assert_near(&format!("iperf3 Mbit/s through a {mbit} Mbit/s link"), got, mbit, 0.1);
        assert!(stats.queue_drops > 0 || stats.max_queue_bytes > 0, "the queue was used: {stats:?}");
        assert!(stats.max_queue_bytes <= config.queue_bytes + 1500, "the queue stays in its limit: {stats:?}");
        assert_eq!(stats.overflow_drops, 0, "{stats:?}");
        assert!(stats.mean_late < Duration::from_millis(1), "writes on time: {stats:?}");
        assert_eq!(pair.link.device_drops(), [0, 0], "the readers keep up: the kernel drops nothing");
    }

    // A live change: 40 Mbit/s, cut to 10 three seconds into a download.
    let config = LinkConfig::ideal().delay(rtt / 2).rate_mbit(40.0).queue_bdp(2.0, rtt);
    let pair = LinkedPair::new("lkchange", config);
    let link = &pair.link;
    let json = std::thread::scope(|s| {
        let client = s.spawn(|| iperf3(&pair.a, &pair.b, LinkedPair::ADDR_A, &["-t", "7", "-R"]));
        // iperf3 -R: data flows from the server in A to the client in B.
        let deadline = Deadline::after(Duration::from_secs(10));
        while link.stats(Direction::AToB).forwarded_bytes < 1 << 20 && !deadline.passed() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let start = Deadline::after(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2900));
        link.set(Direction::AToB, config.rate_mbit(10.0));
        eprintln!("rate cut {:.2} s after the first MB", start.elapsed().as_secs_f64());
        client.join().expect("iperf3 -R")
    });
    let rates: Vec<f64> = json["intervals"]
        .as_array()
        .expect("iperf3 intervals")
        .iter()
        .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
        .map(|b| b / 1e6)
        .collect();
    eprintln!("per-second Mbit/s: {rates:.1?}");
    assert_eq!(rates.len(), 7, "{rates:?}");
    assert_near("Mbit/s in seconds 2-3 at 40 Mbit/s", (rates[1] + rates[2]) / 2.0, 40.0, 0.1);
    assert_near("Mbit/s in seconds 5-7 after the cut to 10 Mbit/s", (rates[4] + rates[5] + rates[6]) / 3.0, 10.0, 0.1);
}

/// Threads of this process whose name is one of `names`.
fn live_threads(names: &[String]) -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .filter(|c| names.contains(c))
        .collect()
}

#[test]
fn dropping_a_link_removes_its_devices_and_threads_also_on_panic() {
    let a = Netns::new("lkdropa");
    let b = Netns::new("lkdropb");
    let (addr_a, addr_b) = (Ipv4Addr::new(10, 98, 0, 1), Ipv4Addr::new(10, 98, 0, 2));

    let link = Link::between(&a, &b, addr_a, addr_b, LinkConfig::ideal().delay_ms(5.0));
    let (dev_a, dev_b, threads) = (link.dev_a().to_owned(), link.dev_b().to_owned(), link.thread_names());
    assert!(Link::device_exists(a.name(), &dev_a) && Link::device_exists(b.name(), &dev_b));
    assert!(!Link::device_exists(a.name(), &dev_b), "each device lives in its own namespace");
    assert_eq!(live_threads(&threads).len(), 4, "a reader and a writer each way: {threads:?}");
    let (sent, got, _) = ping(&a, addr_b, 3, "0.05");
    assert_eq!((sent, got), (3, 3), "the link carries packets");
    drop(link);
    assert!(!Link::device_exists(a.name(), &dev_a), "{dev_a} removed");
    assert!(!Link::device_exists(b.name(), &dev_b), "{dev_b} removed");
    assert_eq!(live_threads(&threads), Vec::<String>::new(), "threads stopped");
    let out = run(&a, &["ping", "-n", "-c", "1", "-W", "1", &addr_b.to_string()], Duration::from_secs(10));
    assert!(!out.status.success(), "nothing reaches B any more");

    // The same when the code holding the link panics.
    let names = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let link = Link::between(&a, &b, addr_a, addr_b, LinkConfig::ideal());
        *names.lock().unwrap() = Some((link.dev_a().to_owned(), link.dev_b().to_owned(), link.thread_names()));
        panic!("a test fails while its link runs");
    });
    assert!(result.is_err());
    let (dev_a, dev_b, threads) = names.into_inner().unwrap().expect("the link was made");
    assert!(!Link::device_exists(a.name(), &dev_a) && !Link::device_exists(b.name(), &dev_b));
    assert_eq!(live_threads(&threads), Vec::<String>::new(), "threads stopped");
}
