//! The engine end to end: a client engine and an exit engine joined in
//! memory, real TCP sockets on 127.0.0.1 (and [::1] when present).

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tunnel::frame::Frame;
use tunnel::spec::{DynamicForward, LocalForward, Target};
use tunnel::{Config, DenyReason, Engine, ExitConfig, OpenError, Rules};

fn forward(target: std::net::SocketAddr) -> LocalForward {
    LocalForward {
        listen: "127.0.0.1:0".parse().unwrap(),
        target: Target { host: target.ip().to_string(), port: target.port() },
    }
}

fn target(addr: std::net::SocketAddr) -> Target {
    Target { host: addr.ip().to_string(), port: addr.port() }
}

fn exit_with_rules(text: &str) -> Config {
    Config::exit(ExitConfig { rules: Some(Rules::parse(text, "test").unwrap()), ..ExitConfig::default() })
}

#[tokio::test]
async fn echo_through_local_forward() {
    let pair = Pair::new();
    let echo = echo_server().await;
    let listen = pair.client.listen(SERVER, &forward(echo)).await.unwrap();
    let mut s = bounded("connect", TcpStream::connect(listen)).await.unwrap();
    bounded("echo", echo_roundtrip(&mut s, b"hello through the tunnel")).await;
    s.shutdown().await.unwrap();
    assert_closed(&mut s, Duration::from_secs(5)).await;
    eventually("tunnels closed", || pair.client.stats().tunnels_open == 0 && pair.exit.stats().tunnels_open == 0).await;
    let (c, e) = (pair.client.stats(), pair.exit.stats());
    assert_eq!((c.tunnels_opened, e.tunnels_opened), (1, 1));
    assert_eq!(c.dropped.total() + e.dropped.total(), 0, "{c:?} {e:?}");
    // Both sides announced the extension and used half-close.
    assert!(matches!(frames(&pair.to_client)[0], Frame::AckTunnel { ext: Some(_), .. }));
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_parallel_connections_all_served() {
    let pair = Pair::new();
    let (dual, mut results) = dual_server(300_000, 7, 200_000, 8).await;
    let listen = pair.client.listen(SERVER, &forward(dual)).await.unwrap();
    let mut conns = tokio::task::JoinSet::new();
    for _ in 0..8 {
        conns.spawn(async move {
            let s = TcpStream::connect(listen).await.unwrap();
            let (r, w) = s.into_split();
            let (up, down) = tokio::join!(write_pattern(w, 8, 200_000), check_pattern(r, 7, 300_000));
            up.unwrap();
            down.unwrap();
        });
    }
    bounded("8 connections", async {
        while let Some(r) = conns.join_next().await {
            r.unwrap();
        }
    })
    .await;
    for _ in 0..8 {
        bounded("server side", results.recv()).await.unwrap().unwrap();
    }
    assert_eq!(pair.exit.stats().tunnels_opened, 8);
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_megabytes_each_way_intact() {
    const LEN: usize = 20 << 20;
    let pair = Pair::new();
    let (dual, mut results) = dual_server(LEN, 21, LEN, 22).await;
    let listen = pair.client.listen(SERVER, &forward(dual)).await.unwrap();
    let start = Instant::now();
    let s = TcpStream::connect(listen).await.unwrap();
    let (r, w) = s.into_split();
    let (up, down) =
        bounded("transfer", async { tokio::join!(write_pattern(w, 22, LEN), check_pattern(r, 21, LEN)) }).await;
    up.unwrap();
    down.unwrap();
    bounded("server verdict", results.recv()).await.unwrap().unwrap();
    eprintln!("20 MB each way in {:?}", start.elapsed());
    let c = pair.client.stats();
    assert_eq!(c.bytes_to_peers, LEN as u64);
    assert_eq!(c.bytes_from_peers, LEN as u64);
    assert_eq!(
        c.dropped.total() + pair.exit.stats().dropped.total(),
        0,
        "{:?} {:?}",
        c.dropped,
        pair.exit.stats().dropped
    );
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_the_round_trip_limits_grows() {
    const LEN: usize = 24 << 20;
    // 256 KiB windows over 40 ms of round trip: at most about 6 MB/s
    // unless they grow.
    let mut client = Config::client();
    client.recv_window = 256 * 1024;
    let mut exit = Config::exit(ExitConfig::default());
    exit.recv_window = 256 * 1024;
    let pair = Pair::delayed(client, exit, Duration::from_millis(20));
    let (source, mut results) = dual_server(LEN, 41, 0, 0).await;
    let listen = pair.client.listen(SERVER, &forward(source)).await.unwrap();
    let start = Instant::now();
    let s = TcpStream::connect(listen).await.unwrap();
    let (r, mut w) = s.into_split();
    bounded("download", check_pattern(r, 41, LEN)).await.unwrap();
    w.shutdown().await.unwrap();
    bounded("source verdict", results.recv()).await.unwrap().unwrap();
    let took = start.elapsed();
    let grown = pair.client.stats().windows_grown;
    eprintln!("24 MB over a 40 ms round trip in {took:?}; the window doubled {grown} times");
    assert!(grown >= 2, "the receiving side's window never grew: {:?}", pair.client.stats());
    assert_eq!(pair.exit.stats().windows_grown, 0, "nothing flowed toward the exit");
    assert_eq!(pair.client.stats().dropped.total() + pair.exit.stats().dropped.total(), 0);
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_a_slow_reader_limits_does_not_grow() {
    const LEN: usize = 2 << 20;
    let mut client = Config::client();
    client.recv_window = 256 * 1024;
    let pair = Pair::delayed(client, Config::exit(ExitConfig::default()), Duration::from_millis(20));
    let (source, mut results) = dual_server(LEN, 42, 0, 0).await;
    // A -W stream over an in-memory pipe of 16 KiB (no socket buffers in
    // between), read at 64 KiB every 50 ms (about 1.3 MB/s): the reader,
    // not the 40 ms round trip, holds the sender back.
    let (ours, theirs) = tokio::io::duplex(16 * 1024);
    let task = tokio::spawn({
        let client = pair.client.clone();
        async move { client.forward_stream(SERVER, &target(source), ours).await }
    });
    let (mut r, mut w) = tokio::io::split(theirs);
    let mut all = Vec::with_capacity(LEN);
    let mut buf = vec![0; 64 * 1024];
    bounded("slow download", async {
        while all.len() < LEN {
            let want = buf.len().min(LEN - all.len());
            r.read_exact(&mut buf[..want]).await.unwrap();
            all.extend_from_slice(&buf[..want]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    check_pattern(&all[..], 42, LEN).await.unwrap();
    w.shutdown().await.unwrap();
    bounded("source verdict", results.recv()).await.unwrap().unwrap();
    bounded("-W returns", task).await.unwrap().unwrap();
    assert_eq!(pair.client.stats().windows_grown, 0, "{:?}", pair.client.stats());
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_does_not_stall_another_tunnel() {
    const BIG: usize = 32 << 20;
    let mut client = Config::client();
    client.recv_window = 64 * 1024;
    let mut exit = Config::exit(ExitConfig::default());
    exit.recv_window = 64 * 1024;
    let pair = Pair::with(client, exit);
    let (source, mut results) = dual_server(BIG, 31, 0, 0).await;
    let echo = echo_server().await;
    let slow_listen = pair.client.listen(SERVER, &forward(source)).await.unwrap();
    let echo_listen = pair.client.listen(SERVER, &forward(echo)).await.unwrap();

    // The slow tunnel: read 1000 bytes, then stop reading.
    let slow_socket = tokio::net::TcpSocket::new_v4().unwrap();
    slow_socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = slow_socket.connect(slow_listen).await.unwrap();
    let mut first = [0; 1000];
    bounded("first bytes", slow.read_exact(&mut first)).await.unwrap();

    // Another tunnel to the same peer works while the slow one is paused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fast = TcpStream::connect(echo_listen).await.unwrap();
    bounded("echo while the other tunnel is paused", async {
        for i in 0..50u32 {
            echo_roundtrip(&mut fast, format!("round trip {i}").as_bytes()).await;
        }
    })
    .await;
    let sent_while_paused = pair.exit.stats().bytes_to_peers;
    assert!(sent_while_paused < BIG as u64 / 2, "the paused tunnel was not throttled: {sent_while_paused}");

    // Resume: everything arrives intact.
    let mut rest = vec![0; BIG - 1000];
    bounded("rest of the slow tunnel", slow.read_exact(&mut rest)).await.unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    check_pattern(&all[..], 31, BIG).await.unwrap();
    slow.shutdown().await.unwrap();
    bounded("source verdict", results.recv()).await.unwrap().unwrap();
    eprintln!("exit had sent {sent_while_paused} bytes while the reader was paused");
    pair.shutdown().await;
}

#[tokio::test]
async fn rules_deny_promptly_and_listeners_keep_working() {
    let echo = echo_server().await;
    let pair = Pair::with(Config::client(), exit_with_rules(&format!("localhost:{}\n", echo.port())));
    // 127.0.0.1 is not "localhost" for a name rule: denied.
    let denied = pair.client.listen(SERVER, &forward(echo)).await.unwrap();
    let allowed_fwd = LocalForward {
        listen: "127.0.0.1:0".parse().unwrap(),
        target: Target { host: "localhost".into(), port: echo.port() },
    };
    let allowed = pair.client.listen(SERVER, &allowed_fwd).await.unwrap();
    for round in 0..3 {
        let start = Instant::now();
        let mut s = TcpStream::connect(denied).await.unwrap();
        assert_closed(&mut s, Duration::from_secs(5)).await;
        assert!(start.elapsed() < Duration::from_secs(2), "deny took {:?}", start.elapsed());
        let mut ok = TcpStream::connect(allowed).await.unwrap();
        bounded("allowed echo", echo_roundtrip(&mut ok, format!("round {round}").as_bytes())).await;
    }
    let err = bounded("-W", pair.client.forward_stream(SERVER, &target(echo), tokio::io::duplex(64).0)).await;
    assert_eq!(
        err.unwrap_err(),
        OpenError::Denied {
            reason: DenyReason::NotAllowed,
            message: format!("127.0.0.1:{} is not in the rules", echo.port())
        }
    );
    assert_eq!(pair.client.stats().tunnels_denied, 4);
    assert_eq!(pair.exit.stats().tunnels_denied, 4);
    pair.shutdown().await;
}

#[tokio::test]
async fn cidr_rule_checks_the_resolved_address() {
    let echo = echo_server().await;
    let pair = Pair::with(Config::client(), exit_with_rules(&format!("127.0.0.0/8:{}\n", echo.port())));
    let by_name = Target { host: "localhost".into(), port: echo.port() };
    let (ours, mut theirs) = tokio::io::duplex(1024);
    let task = tokio::spawn({
        let client = pair.client.clone();
        async move { client.forward_stream(SERVER, &by_name, ours).await }
    });
    theirs.write_all(b"resolved").await.unwrap();
    let mut back = [0; 8];
    bounded("echo by name", theirs.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"resolved");
    drop(theirs);
    bounded("-W ends", task).await.unwrap().unwrap();
    // Another port: denied before any connection.
    let other = Target { host: "127.0.0.1".into(), port: 1 };
    let err = pair.client.forward_stream(SERVER, &other, tokio::io::duplex(64).0).await.unwrap_err();
    assert!(matches!(err, OpenError::Denied { reason: DenyReason::NotAllowed, .. }));
    pair.shutdown().await;
}

#[tokio::test]
async fn connect_failure_is_denied_with_its_reason() {
    let pair = Pair::new();
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = bounded("-W", pair.client.forward_stream(SERVER, &target(closed), tokio::io::duplex(64).0)).await;
    assert!(matches!(err, Err(OpenError::Denied { reason: DenyReason::ConnectionRefused, .. })), "{err:?}");
    let bad = Target { host: "bad host".into(), port: 1 };
    let err = bounded("-W", pair.client.forward_stream(SERVER, &bad, tokio::io::duplex(64).0)).await;
    assert!(matches!(err, Err(OpenError::Denied { reason: DenyReason::BadRequest, .. })), "{err:?}");
    pair.shutdown().await;
}

#[tokio::test]
async fn peer_lost_closes_tunnels_refuses_new_and_recovers() {
    let mut pair = Pair::new();
    let echo = echo_server().await;
    let listen = pair.client.listen(SERVER, &forward(echo)).await.unwrap();
    let mut s = TcpStream::connect(listen).await.unwrap();
    bounded("echo", echo_roundtrip(&mut s, b"before")).await;

    pair.disconnect();
    assert_closed(&mut s, Duration::from_secs(2)).await;
    eventually("exit tunnels closed", || pair.exit.stats().tunnels_open == 0).await;
    for _ in 0..3 {
        let start = Instant::now();
        let mut s = TcpStream::connect(listen).await.unwrap();
        assert_closed(&mut s, Duration::from_secs(2)).await;
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    let err = pair.client.forward_stream(SERVER, &target(echo), tokio::io::duplex(64).0).await;
    assert_eq!(err, Err(OpenError::NotConnected));

    pair.connect();
    bounded("wait_connected", pair.client.wait_connected(SERVER)).await;
    let mut s = TcpStream::connect(listen).await.unwrap();
    bounded("echo after recovery", echo_roundtrip(&mut s, b"after")).await;
    pair.shutdown().await;
}

#[tokio::test]
async fn stdio_forward_over_duplex_with_half_close() {
    let pair = Pair::new();
    let counter = count_then_reply_server().await;
    let (ours, theirs) = tokio::io::duplex(4096);
    let task = tokio::spawn({
        let client = pair.client.clone();
        async move { client.forward_stream(SERVER, &target(counter), ours).await }
    });
    let (mut r, mut w) = tokio::io::split(theirs);
    w.write_all(&[7; 10_000]).await.unwrap();
    // Half-close: the server sees EOF, and its answer still comes back
    // (C tuntox loses it: bug B5 and no half-close).
    w.shutdown().await.unwrap();
    let mut answer = String::new();
    bounded("answer after EOF", r.read_to_string(&mut answer)).await.unwrap();
    assert_eq!(answer, "got 10000");
    bounded("-W returns", task).await.unwrap().unwrap();
    pair.shutdown().await;
}

#[tokio::test]
async fn socks5_ipv4_ipv6_and_domain() {
    let pair = Pair::new();
    let echo = echo_server().await;
    let proxy =
        pair.client.listen_socks(SERVER, &DynamicForward { listen: "127.0.0.1:0".parse().unwrap() }).await.unwrap();

    let (code, mut s) = bounded("socks v4", socks_connect(proxy, &[1, 127, 0, 0, 1], echo.port())).await;
    assert_eq!(code, 0);
    bounded("echo v4", echo_roundtrip(&mut s, b"ipv4")).await;

    let mut domain = vec![3, 9];
    domain.extend_from_slice(b"localhost");
    let (code, mut s) = bounded("socks domain", socks_connect(proxy, &domain, echo.port())).await;
    assert_eq!(code, 0);
    bounded("echo domain", echo_roundtrip(&mut s, b"domain")).await;

    if let Some(echo6) = echo_server_v6().await {
        let mut v6 = vec![4];
        v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        let (code, mut s) = bounded("socks v6", socks_connect(proxy, &v6, echo6.port())).await;
        assert_eq!(code, 0);
        bounded("echo v6", echo_roundtrip(&mut s, b"ipv6")).await;
    } else {
        eprintln!("no IPv6 loopback here; skipped the [::1] case");
    }

    // Refused destination: reply 0x05 at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, _) = bounded("socks refused", socks_connect(proxy, &[1, 127, 0, 0, 1], closed.port())).await;
    assert_eq!(code, 0x05);
    pair.shutdown().await;
}

#[tokio::test]
async fn at_start_a_connection_waits_for_the_peer_but_not_during_an_outage() {
    let echo = echo_server().await;
    let mut client = Config::client();
    client.offline_wait = Duration::from_secs(10);
    let client = Engine::new(client, tokio_util::sync::CancellationToken::new());
    let listen = client.listen(SERVER, &forward(echo)).await.unwrap();
    // Connect before the server was ever online; it comes half a second later.
    let mut s = TcpStream::connect(listen).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pair = Pair::join(client, Engine::new(Config::exit(ExitConfig::default()), Default::default()));
    bounded("echo once the peer came", echo_roundtrip(&mut s, b"patience")).await;
    // An outage: refused at once.
    pair.disconnect();
    let start = Instant::now();
    let mut s = TcpStream::connect(listen).await.unwrap();
    assert_closed(&mut s, Duration::from_secs(2)).await;
    assert!(start.elapsed() < Duration::from_secs(1));
    pair.connect();
    bounded("wait_connected", pair.client.wait_connected(SERVER)).await;
    let mut s = TcpStream::connect(listen).await.unwrap();
    bounded("echo after the outage", echo_roundtrip(&mut s, b"back")).await;
    pair.shutdown().await;
}

#[tokio::test]
async fn at_start_a_settled_offline_note_refuses_at_once_and_a_waiting_connection_gives_up() {
    let echo = echo_server().await;
    let mut config = Config::client();
    config.offline_wait = Duration::from_secs(20);
    let client = Engine::new(config, tokio_util::sync::CancellationToken::new());
    let listen = client.listen(SERVER, &forward(echo)).await.unwrap();
    // A note that is not settled (still looking): the connection waits...
    client.set_offline_note(SERVER, Some("looking for the server".into()), false);
    let mut waiting = TcpStream::connect(listen).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...until the owner finds that waiting will not help: it closes then,
    // and a new connection is closed at once.
    let start = Instant::now();
    client.set_offline_note(SERVER, Some("the server has not accepted us".into()), true);
    assert_closed(&mut waiting, Duration::from_secs(2)).await;
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    let start = Instant::now();
    let mut s = TcpStream::connect(listen).await.unwrap();
    assert_closed(&mut s, Duration::from_secs(2)).await;
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
}

#[tokio::test]
async fn socks5_reports_rules_and_offline_peer() {
    let echo = echo_server().await;
    let mut pair = Pair::with(Config::client(), exit_with_rules("localhost:1\n"));
    let proxy =
        pair.client.listen_socks(SERVER, &DynamicForward { listen: "127.0.0.1:0".parse().unwrap() }).await.unwrap();
    let (code, _) = bounded("socks denied", socks_connect(proxy, &[1, 127, 0, 0, 1], echo.port())).await;
    assert_eq!(code, 0x02, "connection not allowed by ruleset");
    pair.disconnect();
    let (code, _) = bounded("socks offline", socks_connect(proxy, &[1, 127, 0, 0, 1], echo.port())).await;
    assert_eq!(code, 0x03, "network unreachable while the server is offline");
    pair.shutdown().await;
}

#[tokio::test]
async fn ping_measures_a_round_trip() {
    let pair = Pair::new();
    let rtt = bounded("ping", pair.client.ping(SERVER)).await.unwrap();
    assert!(rtt < Duration::from_secs(5));
    let pong = frames(&pair.to_client).into_iter().find_map(|f| match f {
        Frame::Pong(p) => Some(p),
        _ => None,
    });
    assert!(pong.unwrap().starts_with(b"Hello"));
    // The exit pings too (either side answers).
    bounded("exit ping", pair.exit.ping(CLIENT)).await.unwrap();
    pair.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unanswered_request_times_out() {
    // A peer that swallows everything, like a C tuntox server whose rules
    // refuse (it sends nothing back).
    let client = Engine::new(Config::client(), tokio_util::sync::CancellationToken::new());
    let mut link = client.peer_connected(SERVER);
    tokio::spawn(async move { while link.recv().await.is_some() {} });
    let start = tokio::time::Instant::now();
    let t = Target { host: "example.org".into(), port: 80 };
    let err = client.forward_stream(SERVER, &t, tokio::io::duplex(64).0).await.unwrap_err();
    assert_eq!(err, OpenError::Timeout(Duration::from_secs(20)));
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    assert_eq!(client.stats().requests_failed, 1);
    client.shutdown().await;
}

#[tokio::test]
async fn client_refuses_requests_and_exit_refuses_client_calls() {
    let pair = Pair::new();
    // The exit asks the client for a tunnel: the client denies.
    let request = Frame::RequestTunnel { port: 22, forward_id: 9, host: "x".into(), ext: None };
    pair.client.incoming(SERVER, request.to_bytes().unwrap()).await.unwrap();
    eventually("deny sent", || {
        frames(&pair.to_exit).iter().any(|f| matches!(f, Frame::DenyTunnel { forward_id: 9, .. }))
    })
    .await;
    let t = Target { host: "127.0.0.1".into(), port: 1 };
    assert_eq!(pair.exit.forward_stream(CLIENT, &t, tokio::io::duplex(64).0).await, Err(OpenError::NotClient));
    pair.shutdown().await;
}

#[tokio::test]
async fn exit_caps_tunnels() {
    let mut exit = Config::exit(ExitConfig::default());
    exit.max_tunnels = 1;
    let pair = Pair::with(Config::client(), exit);
    let echo = echo_server().await;
    let listen = pair.client.listen(SERVER, &forward(echo)).await.unwrap();
    let mut first = TcpStream::connect(listen).await.unwrap();
    bounded("first", echo_roundtrip(&mut first, b"one")).await;
    let err = pair.client.forward_stream(SERVER, &target(echo), tokio::io::duplex(64).0).await;
    assert!(matches!(err, Err(OpenError::Denied { reason: DenyReason::TooManyTunnels, .. })), "{err:?}");
    drop(first);
    eventually("slot freed", || pair.exit.stats().tunnels_open == 0).await;
    let mut again = TcpStream::connect(listen).await.unwrap();
    bounded("after", echo_roundtrip(&mut again, b"two")).await;
    pair.shutdown().await;
}

#[tokio::test]
async fn busy_tunnel_does_not_starve_a_quiet_one_on_a_slow_link() {
    // A link that carries about 5 frames per millisecond.
    let mut client_cfg = Config::client();
    client_cfg.peer_queue = 8;
    let mut exit_cfg = Config::exit(ExitConfig::default());
    exit_cfg.peer_queue = 8;
    let client = Engine::new(client_cfg, tokio_util::sync::CancellationToken::new());
    let exit = Engine::new(exit_cfg, tokio_util::sync::CancellationToken::new());
    let slow_carry = |mut link: tunnel::PeerLink, to: Engine, as_peer| {
        tokio::spawn(async move {
            let mut n = 0u32;
            while let Some(frame) = link.recv().await {
                n += 1;
                if n % 5 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if to.incoming(as_peer, frame).await.is_err() {
                    break;
                }
            }
        })
    };
    slow_carry(client.peer_connected(SERVER), exit.clone(), CLIENT);
    slow_carry(exit.peer_connected(CLIENT), client.clone(), SERVER);

    const BULK: usize = 8 << 20;
    let (source, _results) = dual_server(BULK, 41, 0, 0).await;
    let echo = echo_server().await;
    let bulk_listen = client.listen(SERVER, &forward(source)).await.unwrap();
    let echo_listen = client.listen(SERVER, &forward(echo)).await.unwrap();
    let bulk = tokio::spawn(async move {
        let s = TcpStream::connect(bulk_listen).await.unwrap();
        check_pattern(s, 41, BULK).await.unwrap();
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut quiet = TcpStream::connect(echo_listen).await.unwrap();
    bounded("quiet tunnel", async {
        for i in 0..20u32 {
            echo_roundtrip(&mut quiet, &i.to_be_bytes()).await;
        }
    })
    .await;
    let quiet_done = Instant::now();
    let bulk_done = bounded("bulk", bulk).await.unwrap();
    assert!(quiet_done < bulk_done, "the quiet tunnel waited for the bulk one");
    client.shutdown().await;
    exit.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_links_and_listeners() {
    let engine = Engine::new(Config::client(), tokio_util::sync::CancellationToken::new());
    let mut link = engine.peer_connected(SERVER);
    let echo = echo_server().await;
    let listen = engine.listen(SERVER, &forward(echo)).await.unwrap();
    bounded("shutdown", engine.shutdown()).await;
    assert_eq!(bounded("link ends", link.recv()).await, None);
    assert!(!engine.is_connected(SERVER));
    assert!(TcpStream::connect(listen).await.is_err(), "the listener is closed");
}
