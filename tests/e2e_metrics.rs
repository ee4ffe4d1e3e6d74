//! `--metrics` end to end: a server, and a `-L` client started from a
//! config file alone (`tuntox -c FILE`: its server, secret file, forward,
//! network and metrics address all in the file), as processes in a network
//! namespace with a local tox-bootstrapd. `GET /metrics` on the client
//! shows the server online with its path, and the byte and packet counters
//! toward it grow by what a transfer through the forward moved.
//!
//! Needs root (network namespaces) and toxcore-utils; run through
//! `scripts/test`, which installs them. It never skips.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::thread;
use std::time::Duration;

use support::deadline::Deadline;
use support::e2e::{Fixture, SECRET, echo_roundtrip, echo_server, wait_client_connected};
use support::netns::Netns;
use support::tuntox::Tuntox;

const CONNECT: Duration = Duration::from_secs(60);
const METRICS: &str = "127.0.0.1:9184";

/// `GET /metrics` from inside the namespace: the status line and body.
fn scrape(netns: &Netns) -> (String, String) {
    let answer = netns.run_in(|| {
        let mut stream = TcpStream::connect_timeout(&METRICS.parse().unwrap(), Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9184\r\nUser-Agent: test\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    });
    let answer = answer.unwrap_or_else(|e| panic!("GET http://{METRICS}/metrics: {e}"));
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
