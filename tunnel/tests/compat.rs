//! Interplay with peers that speak only C tuntox's protocol: engines with
//! extensions off, and peers scripted byte by byte as C tuntox behaves
//! (main.c `handle_request_tunnel_frame`, client.c `handle_acktunnel_frame`).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tunnel::frame::{Extension, Frame, kind};
use tunnel::spec::{LocalForward, Target};
use tunnel::{Config, Engine, ExitConfig, PeerId, PeerLink};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn forward(target: std::net::SocketAddr) -> LocalForward {
    LocalForward {
        listen: "127.0.0.1:0".parse().unwrap(),
        target: Target { host: target.ip().to_string(), port: target.port() },
    }
}

/// The frame types a C tuntox peer knows.
const C_TYPES: [u16; 7] =
    [kind::PING, kind::PONG, kind::TCP, kind::TCP_FIN, kind::REQUEST_TUNNEL, kind::ACK_TUNNEL, kind::DENY_TUNNEL];

fn assert_only_c_frames(tap: &Tap) {
    for raw in tap.lock().unwrap().iter() {
        let kind = u16::from_be_bytes([raw[2], raw[3]]);
        assert!(C_TYPES.contains(&kind), "a C tuntox peer was sent type 0x{kind:04x}");
        if kind == kind::ACK_TUNNEL {
            // C tuntox sends exactly forward_id; so do we to C clients.
            assert_eq!(raw.len(), 12, "ACK to a C client must carry only the forward id");
        }
        if kind == kind::REQUEST_TUNNEL {
            assert!(!raw[12..].contains(&0), "a C-like client sends no NUL");
        }
    }
}

async fn echo_and_bulk(pair: &Pair) {
    let echo = echo_server().await;
    let listen = pair.client.listen(SERVER, &forward(echo)).await.unwrap();
    let mut s = TcpStream::connect(listen).await.unwrap();
    bounded("echo", echo_roundtrip(&mut s, b"hello C")).await;
    drop(s);
    // Both directions at once through an echo server. With C semantics a
    // FIN closes the whole tunnel, so close only after reading everything.
    const LEN: usize = 3 << 20;
    let (mut r, mut w) = TcpStream::connect(listen).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        let mut buf = vec![0; 50_000];
        let mut sent = 0;
        while sent < LEN {
            let n = buf.len().min(LEN - sent);
            fill_pattern(3, sent as u64, &mut buf[..n]);
            w.write_all(&buf[..n]).await.unwrap();
            sent += n;
        }
        w
    });
    let mut got = vec![0; LEN];
    bounded("bulk echo", r.read_exact(&mut got)).await.unwrap();
    check_pattern(&got[..], 3, LEN).await.unwrap();
    drop(bounded("writer", writer).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_with_a_c_like_exit() {
    let mut exit = Config::exit(ExitConfig::default());
    exit.extensions = false;
    let pair = Pair::with(Config::client(), exit);
    echo_and_bulk(&pair).await;
    assert_only_c_frames(&pair.to_client);
    // Our client announced the extension (after a NUL C tuntox never reads)
    // but, unanswered, sent no WINDOW or RESET.
    let requests = frames(&pair.to_exit);
    assert!(requests.iter().any(|f| matches!(f, Frame::RequestTunnel { ext: Some(_), .. })));
    assert!(requests.iter().all(|f| !matches!(f, Frame::Window { .. } | Frame::Reset { .. })));
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_like_client_with_our_exit() {
    let mut client = Config::client();
    client.extensions = false;
    let pair = Pair::with(client, Config::exit(ExitConfig::default()));
    echo_and_bulk(&pair).await;
    assert_only_c_frames(&pair.to_client);
    assert_only_c_frames(&pair.to_exit);
    pair.shutdown().await;
}

/// A peer driven by hand: raw bytes in, frames out.
struct Raw {
    engine: Engine,
    peer: PeerId,
    link: PeerLink,
}

impl Raw {
    fn new(engine: &Engine, peer: PeerId) -> Self {
        Self { engine: engine.clone(), peer, link: engine.peer_connected(peer) }
    }

    async fn send(&self, bytes: &[u8]) {
        self.engine.incoming(self.peer, Bytes::copy_from_slice(bytes)).await.unwrap();
    }

    async fn recv(&mut self) -> Bytes {
        bounded("a frame from the engine", self.link.recv()).await.expect("link closed")
    }

    async fn assert_silent(&mut self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(frame) = self.link.try_recv() {
            panic!("unexpected frame {:?}", Frame::decode(&frame));
        }
    }
}

#[tokio::test]
async fn our_client_against_a_scripted_c_server() {
    let client = Engine::new(Config::client(), CancellationToken::new());
    let mut server = Raw::new(&client, SERVER);
    let (ours, mut app) = tokio::io::duplex(4096);
    let target = Target { host: "127.0.0.1".into(), port: 22 };
    let task = tokio::spawn({
        let client = client.clone();
        async move { client.forward_stream(SERVER, &target, ours).await }
    });

    // REQUESTTUNNEL: C's header and forward id; the host as C's strncpy
    // reads it ends at our NUL, and the extension follows it.
    let req = server.recv().await;
    assert_eq!(req[..6], hex("a2 6b 06 02 00 16"));
    assert_eq!(usize::from(u16::from_be_bytes([req[6], req[7]])), req.len() - 8);
    let fid = &req[8..12];
    let host: Vec<u8> = req[12..].iter().copied().take_while(|&b| b != 0).collect();
    assert_eq!(host, b"127.0.0.1");
    assert_eq!(req[21], 0);
    assert_eq!(req[22..24], *b"TR");

    // C tuntox's ACK: forward id only (send_tunnel_ack_frame).
    let mut ack = hex("a2 6b 06 10 12 34 00 04");
    ack.extend_from_slice(fid);
    server.send(&ack).await;
    server.send(&hex("a2 6b 06 00 12 34 00 05 68 65 6c 6c 6f")).await;
    let mut got = [0; 5];
    bounded("app reads", app.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"hello");

    app.write_all(b"world").await.unwrap();
    assert_eq!(server.recv().await[..], hex("a2 6b 06 00 12 34 00 05 77 6f 72 6c 64"));

    // C's FIN closes the tunnel; we do not answer it (C deleted it already).
    server.send(&hex("a2 6b 06 01 12 34 00 00")).await;
    let mut rest = Vec::new();
    bounded("app sees EOF", app.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    bounded("-W returns", task).await.unwrap().unwrap();
    server.assert_silent().await;
    assert_eq!(client.stats().tunnels_open, 0);
    assert_eq!(client.stats().dropped.total(), 0);
    client.shutdown().await;
}

#[tokio::test]
async fn a_scripted_c_client_against_our_exit() {
    let exit = Engine::new(Config::exit(ExitConfig::default()), CancellationToken::new());
    let mut c = Raw::new(&exit, CLIENT);
    let echo = echo_server().await;

    // send_tunnel_request_packet: port in connid, forward id, host, no NUL.
    let mut req = hex("a2 6b 06 02");
    req.extend_from_slice(&echo.port().to_be_bytes());
    req.extend_from_slice(&(4u16 + 9).to_be_bytes());
    req.extend_from_slice(&hex("de ad be ef"));
    req.extend_from_slice(b"127.0.0.1");
    c.send(&req).await;

    let ack = c.recv().await;
    assert_eq!(ack.len(), 12, "C's handle_acktunnel_frame reads 4 bytes; we send exactly 4");
    assert_eq!(ack[..4], hex("a2 6b 06 10"));
    assert_eq!(ack[6..], hex("00 04 de ad be ef"));
    let id = [ack[4], ack[5]];

    let mut data = hex("a2 6b 06 00");
    data.extend_from_slice(&id);
    data.extend_from_slice(&hex("00 04"));
    data.extend_from_slice(b"ping");
    c.send(&data).await;
    let echoed = c.recv().await;
    assert_eq!(echoed, data, "the echo comes back as one TCP frame");

    // C client FIN: full close. No WINDOW, no RESET, no FIN back.
    let mut fin = hex("a2 6b 06 01");
    fin.extend_from_slice(&id);
    fin.extend_from_slice(&hex("00 00"));
    c.send(&fin).await;
    eventually("tunnel closed", || exit.stats().tunnels_open == 0).await;
    c.assert_silent().await;

    // A refused request: DENYTUNNEL, which C tuntox ignores (unknown type
    // in its handle_frame switch) and we document.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut req = hex("a2 6b 06 02");
    req.extend_from_slice(&closed.port().to_be_bytes());
    req.extend_from_slice(&hex("00 0d 00 00 00 07"));
    req.extend_from_slice(b"127.0.0.1");
    c.send(&req).await;
    let deny = c.recv().await;
    assert_eq!(deny[..6], hex("a2 6b 06 04 00 00"));
    assert_eq!(deny[8..13], hex("00 00 00 07 03"), "forward id 7, reason 3 (connection refused)");
    exit.shutdown().await;
}

#[tokio::test]
async fn our_extension_with_a_scripted_peer_and_window_violation() {
    let mut config = Config::client();
    config.recv_window = 4096;
    let client = Engine::new(config, CancellationToken::new());
    let mut server = Raw::new(&client, SERVER);
    // An app that never reads: the pump cannot drain the tunnel.
    let (ours, _app) = tokio::io::duplex(16);
    let target = Target { host: "h".into(), port: 1 };
    let task = tokio::spawn({
        let client = client.clone();
        async move { client.forward_stream(SERVER, &target, ours).await }
    });
    let Frame::RequestTunnel { forward_id, ext: Some(ext), .. } = Frame::decode(&server.recv().await).unwrap() else {
        panic!("no extension in the request");
    };
    assert_eq!(ext, Extension { flags: Extension::FLOW | Extension::HALF_CLOSE, window: 4096 });
    let ack = Frame::AckTunnel { tunnel: 5, forward_id, ext: Some(ext) };
    server.send(&ack.to_bytes().unwrap()).await;
    // 5000 bytes against a 4096-byte window.
    for _ in 0..5 {
        server.send(&Frame::Tcp { tunnel: 5, data: vec![1; 1000].into() }.to_bytes().unwrap()).await;
    }
    assert_eq!(Frame::decode(&server.recv().await).unwrap(), Frame::Reset { tunnel: 5 });
    bounded("-W ends", task).await.unwrap().unwrap();
    assert_eq!(client.stats().dropped.window_exceeded, 1);
    client.shutdown().await;
}

#[tokio::test]
async fn frames_from_another_peer_are_dropped_and_counted() {
    let exit = Engine::new(Config::exit(ExitConfig::default()), CancellationToken::new());
    let mut owner = Raw::new(&exit, PeerId(100));
    let mut intruder = Raw::new(&exit, PeerId(200));
    let echo = echo_server().await;
    let req = Frame::RequestTunnel { port: echo.port(), forward_id: 1, host: "127.0.0.1".into(), ext: None };
    owner.send(&req.to_bytes().unwrap()).await;
    let Frame::AckTunnel { tunnel, .. } = Frame::decode(&owner.recv().await).unwrap() else { panic!("no ACK") };

    intruder.send(&Frame::Tcp { tunnel, data: "evil".into() }.to_bytes().unwrap()).await;
    intruder.send(&Frame::TcpFin { tunnel }.to_bytes().unwrap()).await;
    intruder.send(&Frame::Tcp { tunnel: tunnel.wrapping_add(1), data: "?".into() }.to_bytes().unwrap()).await;
    owner.send(&Frame::Tcp { tunnel, data: "good".into() }.to_bytes().unwrap()).await;
    assert_eq!(Frame::decode(&owner.recv().await).unwrap(), Frame::Tcp { tunnel, data: "good".into() });
    intruder.assert_silent().await;
    let dropped = exit.stats().dropped;
    assert_eq!((dropped.wrong_peer, dropped.unknown_tunnel), (2, 1));
    exit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_c_peer_buffer_holds_up_that_peer_only() {
    // One client, two exits: a C-like one (no flow control) and ours.
    let mut config = Config::client();
    config.recv_window = 64 * 1024;
    let client = Engine::new(config, CancellationToken::new());
    let mut c_exit_cfg = Config::exit(ExitConfig::default());
    c_exit_cfg.extensions = false;
    let c_exit = Engine::new(c_exit_cfg, CancellationToken::new());
    let our_exit = Engine::new(Config::exit(ExitConfig::default()), CancellationToken::new());
    let (c_peer, our_peer) = (PeerId(1), PeerId(2));
    carry(client.peer_connected(c_peer), c_exit.clone(), CLIENT, None);
    carry(c_exit.peer_connected(CLIENT), client.clone(), c_peer, None);
    carry(client.peer_connected(our_peer), our_exit.clone(), CLIENT, None);
    carry(our_exit.peer_connected(CLIENT), client.clone(), our_peer, None);

    const BIG: usize = 32 << 20;
    let (source, _results) = dual_server(BIG, 51, 0, 0).await;
    let echo = echo_server().await;
    let slow_listen = client.listen(c_peer, &forward(source)).await.unwrap();
    let echo_listen = client.listen(our_peer, &forward(echo)).await.unwrap();

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(slow_listen).await.unwrap();
    let mut first = [0; 1000];
    bounded("first bytes", slow.read_exact(&mut first)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut fast = TcpStream::connect(echo_listen).await.unwrap();
    bounded("the other peer is not held up", async {
        for i in 0..20u32 {
            echo_roundtrip(&mut fast, &i.to_be_bytes()).await;
        }
    })
    .await;
    let sent = c_exit.stats().bytes_to_peers;
    assert!(sent < BIG as u64 / 2, "buffering toward the paused reader is unbounded: {sent}");

    let mut rest = vec![0; BIG - 1000];
    bounded("resume", slow.read_exact(&mut rest)).await.unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    check_pattern(&all[..], 51, BIG).await.unwrap();
    eprintln!("the C-like exit had sent {sent} bytes while the reader was paused");
    for engine in [client, c_exit, our_exit] {
        engine.shutdown().await;
    }
}
