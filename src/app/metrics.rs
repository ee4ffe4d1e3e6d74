//! `--metrics ADDR:PORT`: the state `tuntox status` reports, served to
//! Prometheus in its text exposition format (version 0.0.4) on
//! `GET /metrics`, over plain HTTP/1.1.
//!
//! Each request takes a fresh [`Status`] snapshot from the same [`Source`]
//! the status socket uses, and [`render`] turns it into metrics; there is
//! no second collection path. The responder is small on purpose: it reads
//! one request head (at most [`MAX_HEAD`] bytes within [`IO_TIMEOUT`]),
//! answers `GET` and `HEAD` of `/metrics` (404 for other paths, 405 for
//! other methods, 400 for what is not HTTP) and closes the connection.
//! Connections are served one at a time, each within [`IO_TIMEOUT`], so a
//! slow scraper cannot hold more than that.
//!
//! There is no authentication: the address decides who may read. It is
//! meant for loopback (`127.0.0.1:9184`); another address is taken as
//! given, with a warning, since the metrics name friends by public key.
//! The metric names are listed in docs/metrics.md.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::status::{Source, Status};

/// The port the documentation uses for `--metrics` (127.0.0.1:9184).
pub const DEFAULT_PORT: u16 = 9184;
/// The largest request head read.
pub const MAX_HEAD: usize = 8192;
/// How long one connection may take, request and answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics endpoint being served; dropping it stops serving.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves metrics from `source` until `cancel` fires
    /// or the server is dropped. Must run inside the async runtime.
    pub async fn start(addr: SocketAddr, source: Source, cancel: CancellationToken) -> anyhow::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("--metrics {addr}: cannot listen"))?;
        let addr = listener.local_addr().with_context(|| format!("--metrics {addr}"))?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                "metrics on {addr}, not a loopback address: anyone who reaches it can read them (friends' keys, \
                 traffic); keep it behind a firewall"
            );
        }
        tracing::info!("serving Prometheus metrics on http://{addr}/metrics");
        let task = tokio::spawn(serve(listener, source, cancel));
        Ok(MetricsServer { addr, task })
    }

    /// The address served (with the port the system chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, source: Source, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("metrics: {e}");
                    // Never spin on an error that repeats (out of descriptors).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match tokio::time::timeout(IO_TIMEOUT, answer(stream, &source)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("metrics request not answered: {e}"),
            Err(_) => tracing::debug!("metrics reader too slow; dropped"),
        }
    }
}

/// Reads one request head and writes the answer.
async fn answer(mut stream: TcpStream, source: &Source) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "request head too large\n", true).await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, body, with_body) = match route(&head) {
        Route::Metrics { head_only } => ("200 OK", render(&source.snapshot().await), !head_only),
        Route::NotFound => ("404 Not Found", "only /metrics is served here\n".to_owned(), true),
        Route::BadMethod => ("405 Method Not Allowed", "only GET and HEAD\n".to_owned(), true),
        Route::Bad => ("400 Bad Request", "not an HTTP request\n".to_owned(), true),
    };
    respond(&mut stream, status, &body, with_body).await
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str, with_body: bool) -> io::Result<()> {
    let content_type = if status.starts_with("200") { CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if with_body {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `GET` or `HEAD` of `/metrics`.
    Metrics { head_only: bool },
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not a request line.
    Bad,
}

/// Routes a request by its first line: `METHOD PATH HTTP/1.x`. The query
/// string, if any, is ignored.
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else { return Route::Bad };
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::BadMethod,
    };
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" { Route::Metrics { head_only } } else { Route::NotFound }
}

/// One metric family being written: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

/// A label value as the text format wants it: backslash, double quote and
/// newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A metric name part from a counter's name: letters, digits and `_`.
fn name_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// Counters that are gauges (a level, not a running total), by group.
const GAUGES: &[(&str, &str)] = &[("relay", "clients")];

/// The report as Prometheus metrics (names in docs/metrics.md).
pub fn render(status: &Status) -> String {
    let mut out = String::with_capacity(4096);
    family(&mut out, "tuntox_info", "gauge", "The running tuntox: its mode and version (always 1).").sample(
        "tuntox_info",
        &[("mode", &status.mode), ("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    family(&mut out, "tuntox_uptime_seconds", "gauge", "Seconds since this tuntox started.").sample(
        "tuntox_uptime_seconds",
        &[],
        status.uptime_secs,
    );
    if status.mode != "relay" {
        family(&mut out, "tuntox_dht_nodes", "gauge", "Good nodes in the DHT's close list.").sample(
            "tuntox_dht_nodes",
            &[],
            status.dht_nodes,
        );
        family(&mut out, "tuntox_tcp_relays_connected", "gauge", "Tox TCP relays we are connected to as a client.")
            .sample("tuntox_tcp_relays_connected", &[], status.tcp_relays);
        let online = status.friends.iter().filter(|f| f.online).count();
        family(&mut out, "tuntox_friends", "gauge", "Friends known (a client: its server).").sample(
            "tuntox_friends",
            &[],
            status.friends.len(),
        );
        family(&mut out, "tuntox_friends_online", "gauge", "Friends online.").sample(
            "tuntox_friends_online",
            &[],
            online,
        );
        friends(&mut out, status);
    }
    if let Some(open) = status.tunnels_open {
        family(&mut out, "tuntox_tunnels_open", "gauge", "Tunnels (forwarded connections) open now.").sample(
            "tuntox_tunnels_open",
            &[],
            open,
        );
    }
    for (group, counters) in &status.counters {
        let group = name_part(group);
        let reasons: Vec<(&str, u64)> =
            counters.iter().filter_map(|(name, n)| Some((name.strip_prefix("dropped_")?, *n))).collect();
        for (name, value) in counters.iter().filter(|(name, _)| !name.starts_with("dropped_")) {
            let part = name_part(name);
            if GAUGES.contains(&(group.as_str(), name.as_str())) {
                let metric = format!("tuntox_{group}_{part}");
                family(&mut out, &metric, "gauge", &format!("{group}: {name} now.")).sample(&metric, &[], value);
            } else {
                let metric = format!("tuntox_{group}_{part}_total");
                family(&mut out, &metric, "counter", &format!("{group}: {name}.")).sample(&metric, &[], value);
            }
        }
        if !reasons.is_empty() {
            let metric = format!("tuntox_{group}_dropped_by_reason_total");
            let mut f = family(&mut out, &metric, "counter", &format!("{group}: packets dropped, by reason."));
            for (reason, n) in reasons {
                f.sample(&metric, &[("reason", reason)], n);
            }
        }
    }
    out
}

/// The per-friend families: online, path, and the session's counters.
fn friends(out: &mut String, status: &Status) {
    let mut f = family(out, "tuntox_friend_online", "gauge", "Whether the friend is online (1) or not (0).");
    for friend in &status.friends {
        f.sample("tuntox_friend_online", &[("friend", &friend.public_key)], u8::from(friend.online));
    }
    let mut f = family(
        out,
        "tuntox_friend_path",
        "gauge",
        "How an online friend is reached: 1 on its path (udp: direct, tcp: through a TCP relay), 0 on the other.",
    );
    for friend in status.friends.iter().filter(|f| f.online) {
        let Some(path) = friend.path.as_deref() else { continue };
        for candidate in ["udp", "tcp"] {
            f.sample(
                "tuntox_friend_path",
                &[("friend", &friend.public_key), ("path", candidate)],
                u8::from(path == candidate),
            );
        }
    }
    type Field = fn(&super::status::SessionStatus) -> u64;
    let session_families: [(&str, &str, &str, Field); 6] = [
        ("tuntox_friend_sent_bytes_total", "counter", "Bytes of Tox data packets sent to the friend (sealed).", |s| {
            s.bytes_sent
        }),
        ("tuntox_friend_received_bytes_total", "counter", "Bytes of Tox data packets received from the friend.", |s| {
            s.bytes_received
        }),
        ("tuntox_friend_sent_packets_total", "counter", "Tox data packets sent to the friend.", |s| s.packets_sent),
        ("tuntox_friend_received_packets_total", "counter", "Tox data packets received from the friend.", |s| {
            s.packets_received
        }),
        ("tuntox_friend_retransmitted_packets_total", "counter", "Lossless packets sent to the friend again.", |s| {
            s.retransmissions
        }),
        ("tuntox_friend_congestion_window_packets", "gauge", "Packets allowed in flight to the friend.", |s| s.window),
    ];
    for (name, kind, help, field) in session_families {
        let mut f = family(out, name, kind, help);
        for friend in &status.friends {
            if let Some(session) = &friend.session {
                f.sample(name, &[("friend", &friend.public_key)], field(session));
            }
        }
    }
    let mut f = family(out, "tuntox_friend_rtt_seconds", "gauge", "The smoothed round trip to the friend.");
    for friend in &status.friends {
        if let Some(session) = &friend.session {
            f.sample("tuntox_friend_rtt_seconds", &[("friend", &friend.public_key)], session.rtt_us as f64 / 1e6);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::app::status::{FriendStatus, SessionStatus};

    fn status() -> Status {
        let mut counters = BTreeMap::new();
        counters.insert(
            "vpn".to_owned(),
            BTreeMap::from([
                ("packets_in".to_owned(), 7),
                ("dropped".to_owned(), 3),
                ("dropped_no_route".to_owned(), 2),
                ("dropped_bad_source".to_owned(), 1),
            ]),
        );
        counters.insert("relay".to_owned(), BTreeMap::from([("clients".to_owned(), 4), ("accepted".to_owned(), 9)]));
        Status {
            mode: "client".into(),
            uptime_secs: 12,
            friends: vec![
                FriendStatus {
                    public_key: "AB".repeat(32),
                    online: true,
                    path: Some("tcp".into()),
                    session: Some(SessionStatus {
                        bytes_sent: 1000,
                        bytes_received: 2000,
                        packets_sent: 3,
                        packets_received: 4,
                        rtt_us: 25_000,
                        window: 32,
                        ..SessionStatus::default()
                    }),
                    ..FriendStatus::default()
                },
                FriendStatus { public_key: "CD".repeat(32), ..FriendStatus::default() },
            ],
            tunnels_open: Some(2),
            counters,
            ..Status::default()
        }
    }

    #[test]
    fn renders_friends_paths_bytes_and_drops_by_reason() {
        let text = render(&status());
        let ab = "AB".repeat(32);
        for line in [
            "tuntox_info{mode=\"client\",version=\"".to_owned(),
            "tuntox_friends_online 1\n".to_owned(),
            format!("tuntox_friend_online{{friend=\"{ab}\"}} 1\n"),
            format!("tuntox_friend_online{{friend=\"{}\"}} 0\n", "CD".repeat(32)),
            format!("tuntox_friend_path{{friend=\"{ab}\",path=\"tcp\"}} 1\n"),
            format!("tuntox_friend_path{{friend=\"{ab}\",path=\"udp\"}} 0\n"),
            format!("tuntox_friend_sent_bytes_total{{friend=\"{ab}\"}} 1000\n"),
            format!("tuntox_friend_received_bytes_total{{friend=\"{ab}\"}} 2000\n"),
            format!("tuntox_friend_rtt_seconds{{friend=\"{ab}\"}} 0.025\n"),
            format!("tuntox_friend_congestion_window_packets{{friend=\"{ab}\"}} 32\n"),
            "tuntox_tunnels_open 2\n".to_owned(),
            "tuntox_vpn_packets_in_total 7\n".to_owned(),
            "tuntox_vpn_dropped_total 3\n".to_owned(),
            "tuntox_vpn_dropped_by_reason_total{reason=\"no_route\"} 2\n".to_owned(),
            "# TYPE tuntox_relay_clients gauge\n".to_owned(),
            "tuntox_relay_clients 4\n".to_owned(),
            "tuntox_relay_accepted_total 9\n".to_owned(),
        ] {
            assert!(text.contains(&line), "{line:?} missing in:\n{text}");
        }
        // The offline friend has no path and no session.
        assert!(!text.contains(&format!("path{{friend=\"{}\"", "CD".repeat(32))), "{text}");
    }

    #[test]
    fn every_sample_belongs_to_a_declared_family_once() {
        let text = render(&status());
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line} outside its family");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }

    #[test]
    fn routes_requests() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics { head_only: false });
        assert_eq!(route(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics { head_only: true });
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route(b"\x16\x03\x01\x02\x00"), Route::Bad);
        assert_eq!(route(b""), Route::Bad);
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[tokio::test]
    async fn serves_get_metrics_over_http() {
        let source = Source::new("client", crate::driver::NodeSender::stopped());
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), source, CancellationToken::new()).await.unwrap();
        let addr = server.addr();
        let get = |request: &'static [u8]| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(request).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let answer = get(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let length: usize =
            answer.split("Content-Length: ").nth(1).unwrap().split("\r\n").next().unwrap().parse().unwrap();
        assert_eq!(body.len(), length);
        assert!(body.contains("tuntox_info{mode=\"client\""), "{body}");
        assert!(get(b"GET /other HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
        let head = get(b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    }
}
