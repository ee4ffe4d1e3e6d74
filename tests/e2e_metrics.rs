//! `--metrics` end to end: a server, and a `-L` client started from a
//! config file alone (`tuntox -c FILE`: its server, secret file, forward,
//! network and metrics address all in the file), as processes in a network
//! namespace with a local tox-bootstrapd. `GET /metrics` on the client
//! shows the server online with its path, and the byte and packet counters
//! toward it grow by what a transfer through the forward moved.
//!
//! A server started from a config file alone (`[server]`, `secret_file`,
//! `[network]`) serves a flag-started client and reports it online; a
//! relay started from one (`tuntox relay -c FILE`) counts a connection in
//! its metrics.
//!
//! Needs root (network namespaces) and toxcore-utils; run through
//! `scripts/test`, which installs them. It never skips.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::thread;
use std::time::Duration;

use support::bootstrapd::Bootstrapd;
use support::deadline::Deadline;
use support::e2e::{Fixture, SECRET, echo_roundtrip, echo_server, wait_client_connected};
use support::netns::Netns;
use support::tuntox::Tuntox;

const CONNECT: Duration = Duration::from_secs(60);
const METRICS: &str = "127.0.0.1:9184";

/// `GET /metrics` from inside the namespace: the status line and body.
fn scrape(netns: &Netns) -> (String, String) {
    scrape_at(netns, METRICS)
}

fn scrape_at(netns: &Netns, at: &'static str) -> (String, String) {
    let answer = netns.run_in(move || {
        let mut stream = TcpStream::connect_timeout(&at.parse().unwrap(), Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {at}\r\nUser-Agent: test\r\n\r\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    });
    let answer = answer.unwrap_or_else(|e| panic!("GET http://{at}/metrics: {e}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head: {answer}"));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The value of the sample `name{labels}` (labels as written), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn value(body: &str, series: &str) -> f64 {
    sample(body, series).unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

#[test]
fn metrics_show_the_path_and_counters_of_a_transfer() {
    let fx = Fixture::new("metrics", &[]);
    echo_server(fx.listen("127.0.0.1:7431"));
    let server_key = fx.server_id[..64].to_owned();

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("client.toml");
    std::fs::write(
        &config,
        format!(
            "metrics = \"{METRICS}\"\n\n[network]\nudp_ports = \"34500:34599\"\nbootstrap = [\"{}\"]\nlan = false\n\n\
             [client]\nserver = \"{}\"\nsecret_file = \"{}\"\n\n[forwards]\nlocal = [\"7432:127.0.0.1:7431\"]\n",
            fx.bootstrapd.bootstrap_arg(),
            fx.server_id,
            secret.display()
        ),
    )
    .unwrap();
    let mut client = Tuntox::spawn(&fx.netns, "client", &["-c".to_owned(), config.to_str().unwrap().to_owned()]);
    wait_client_connected(&mut client, CONNECT);
    assert!(client.logged(&format!("serving Prometheus metrics on http://{METRICS}/metrics")), "{:?}", client.log());

    let online = format!("tuntox_friend_online{{friend=\"{server_key}\"}}");
    let path = |p: &str| format!("tuntox_friend_path{{friend=\"{server_key}\",path=\"{p}\"}}");
    let sent = format!("tuntox_friend_sent_bytes_total{{friend=\"{server_key}\"}}");
    let received = format!("tuntox_friend_received_bytes_total{{friend=\"{server_key}\"}}");
    let packets = format!("tuntox_friend_sent_packets_total{{friend=\"{server_key}\"}}");

    // Online, on one path (udp or tcp: 1 on it, 0 on the other).
    let deadline = Deadline::after(Duration::from_secs(15));
    let (status, before) = loop {
        let (status, body) = scrape(&fx.netns);
        if sample(&body, &online) == Some(1.0) || deadline.passed() {
            break (status, body);
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(value(&before, &online), 1.0, "{before}");
    assert_eq!(value(&before, "tuntox_friends_online"), 1.0, "{before}");
    assert_eq!(value(&before, &path("udp")) + value(&before, &path("tcp")), 1.0, "{before}");
    assert!(before.contains("tuntox_info{mode=\"client\","), "{before}");
    assert!(value(&before, &format!("tuntox_friend_rtt_seconds{{friend=\"{server_key}\"}}")) > 0.0, "{before}");
    assert!(value(&before, &format!("tuntox_friend_congestion_window_packets{{friend=\"{server_key}\"}}")) >= 1.0);

    // A transfer through the forward: 1 MB each way.
    const LEN: usize = 1 << 20;
    let mut stream = fx.connect("127.0.0.1:7432".parse().unwrap(), Duration::from_secs(10));
    let payload: Vec<u8> = (0..LEN as u32).map(|i| (i * 31 + 7) as u8).collect();
    assert_eq!(echo_roundtrip(&mut stream, &payload).unwrap(), payload);
    let (_, during) = scrape(&fx.netns);
    assert_eq!(value(&during, "tuntox_tunnels_open"), 1.0, "{during}");
    let grew = |name: &str| value(&during, name) - value(&before, name);
    assert!(grew(&sent) >= LEN as f64, "sent grew by {}:\n{during}", grew(&sent));
    assert!(grew(&received) >= LEN as f64, "received grew by {}:\n{during}", grew(&received));
    assert!(grew(&packets) >= (LEN / 1400) as f64, "packets grew by {}:\n{during}", grew(&packets));
    assert!(value(&during, "tuntox_tunnels_bytes_to_peers_total") >= LEN as f64, "{during}");
    assert!(value(&during, "tuntox_tunnels_bytes_from_peers_total") >= LEN as f64, "{during}");

    // Another path is not served.
    let other = fx.netns.run_in(|| {
        let mut stream = TcpStream::connect(METRICS)?;
        stream.write_all(b"GET /other HTTP/1.0\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    });
    assert!(other.unwrap().starts_with("HTTP/1.1 404 "));

    drop(stream);
    let stopped = client.terminate(Duration::from_secs(10));
    assert!(stopped.success(), "{stopped}");
}

/// A secret file (mode 0600) holding [`SECRET`] in `dir`.
fn secret_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Waits until `series` in the metrics at `at` reads at least `at_least`;
/// returns the last body.
fn wait_sample(netns: &Netns, at: &'static str, series: &str, at_least: f64) -> String {
    let deadline = Deadline::after(Duration::from_secs(20));
    loop {
        let (status, body) = scrape_at(netns, at);
        assert_eq!(status, "HTTP/1.1 200 OK");
        if sample(&body, series).is_some_and(|v| v >= at_least) {
            return body;
        }
        assert!(!deadline.passed(), "{series} never reached {at_least}:\n{body}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_server_from_a_config_file_serves_a_client() {
    let netns = Netns::new("cfgserver");
    let bootstrapd = Bootstrapd::start(&netns);
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let config = dir.path().join("tuntox.toml");
    std::fs::write(
        &config,
        format!(
            "config_dir = \"{}\"\nmetrics = \"127.0.0.1:9190\"\n\n[network]\nudp_ports = \"34000:34099\"\n\
             bootstrap = [\"{}\"]\nlan = false\n\n[server]\nsecret_file = \"{}\"\nfriend_expiry = \"7days\"\n",
            dir.path().join("state").display(),
            bootstrapd.bootstrap_arg(),
            secret.display()
        ),
    )
    .unwrap();
    let mut server = Tuntox::spawn(&netns, "server", &["-c".to_owned(), config.to_str().unwrap().to_owned()]);
    let server_id = server.wait_tox_id();
    assert!(dir.path().join("state/tox_save").exists(), "config_dir from the file holds the identity");

    let listener = netns.run_in(|| std::net::TcpListener::bind("127.0.0.1:7441").unwrap());
    echo_server(listener);
    let mut args = vec!["-i", &server_id, "-s", SECRET, "-u", "34200:34299", "-L", "7442:127.0.0.1:7441"];
    let boot = bootstrapd.bootstrap_arg();
    args.extend(["--bootstrap", &boot, "--no-lan"]);
    let args: Vec<String> = args.into_iter().map(String::from).collect();
    let mut client = Tuntox::spawn(&netns, "client", &args);
    wait_client_connected(&mut client, CONNECT);
    let mut stream = netns
        .run_in(|| TcpStream::connect_timeout(&"127.0.0.1:7442".parse().unwrap(), Duration::from_secs(5)))
        .unwrap();
    assert_eq!(echo_roundtrip(&mut stream, b"from a config file").unwrap(), b"from a config file");

    let body = wait_sample(&netns, "127.0.0.1:9190", "tuntox_friends_online", 1.0);
    assert!(body.contains("tuntox_info{mode=\"server\","), "{body}");
    assert_eq!(value(&body, "tuntox_tunnels_open"), 1.0, "{body}");
    drop(stream);
    assert!(client.terminate(Duration::from_secs(10)).success());
    assert!(server.terminate(Duration::from_secs(10)).success());
}

#[test]
fn a_relay_from_a_config_file_counts_its_connections() {
    let netns = Netns::new("cfgrelay");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "config_dir = \"{}\"\nmetrics = \"127.0.0.1:9191\"\n\n[network]\nlan = false\n\n\
             [relay]\nport = 33600\ntcp_ports = [33601]\nmax_clients = 16\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let args = ["relay", "-c", config.to_str().unwrap()].map(String::from);
    let mut relay = Tuntox::spawn(&netns, "relay", &args);
    relay.wait_log("the relay's start line", |l| l.contains("relay running"), Duration::from_secs(20));
    assert!(dir.path().join("relay_keys").exists(), "config_dir from the file holds the keys");

    let (_, body) = scrape_at(&netns, "127.0.0.1:9191");
    assert!(body.contains("tuntox_info{mode=\"relay\","), "{body}");
    assert_eq!(value(&body, "tuntox_relay_accepted_total"), 0.0, "{body}");
    // A TCP connection to the relay port from the file: accepted, counted.
    let _conn = netns
        .run_in(|| TcpStream::connect_timeout(&"127.0.0.1:33601".parse().unwrap(), Duration::from_secs(5)))
        .unwrap();
    wait_sample(&netns, "127.0.0.1:9191", "tuntox_relay_accepted_total", 1.0);
    assert!(relay.terminate(Duration::from_secs(10)).success());
}
