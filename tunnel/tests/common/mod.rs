//! Test helpers: two engines joined in memory, local TCP services on
//! 127.0.0.1, a deterministic byte pattern, bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tunnel::frame::Frame;
use tunnel::{Config, Engine, ExitConfig, PeerId, PeerLink};

/// How the client names its exit.
pub const SERVER: PeerId = PeerId(1);
/// How the exit names its client.
pub const CLIENT: PeerId = PeerId(100);

/// The longest any test step may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Awaits `f`, failing the test if it takes longer than [`LIMIT`].
pub async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Frames recorded on a link.
pub type Tap = Arc<Mutex<Vec<Bytes>>>;

/// Forwards `link`'s outgoing frames into `to` as coming from `as_peer`.
pub fn carry(mut link: PeerLink, to: Engine, as_peer: PeerId, tap: Option<Tap>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(frame) = link.recv().await {
            if let Some(tap) = &tap {
                tap.lock().unwrap().push(frame.clone());
            }
            if to.incoming(as_peer, frame).await.is_err() {
                break;
            }
        }
    })
}

/// Forwards `link`'s outgoing frames into `to` as coming from `as_peer`,
/// each `delay` after it left (in order: a long link without a rate limit).
pub fn carry_delayed(mut link: PeerLink, to: Engine, as_peer: PeerId, delay: Duration) -> JoinHandle<()> {
    let (line, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Bytes)>();
    tokio::spawn(async move {
        while let Some((at, frame)) = arrivals.recv().await {
            tokio::time::sleep_until(at).await;
            if to.incoming(as_peer, frame).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(frame) = link.recv().await {
            if line.send((tokio::time::Instant::now() + delay, frame)).is_err() {
                break;
            }
        }
    })
}

/// A client engine and an exit engine joined in memory.
pub struct Pair {
    pub client: Engine,
    pub exit: Engine,
    /// Frames client → exit.
    pub to_exit: Tap,
    /// Frames exit → client.
    pub to_client: Tap,
    carriers: Vec<JoinHandle<()>>,
}

impl Pair {
    /// Default client and an exit allowing everything.
    pub fn new() -> Self {
        Self::with(Config::client(), Config::exit(ExitConfig::default()))
    }

    pub fn with(client: Config, exit: Config) -> Self {
        Self::join(Engine::new(client, CancellationToken::new()), Engine::new(exit, CancellationToken::new()))
    }

    /// Connects two existing engines.
    pub fn join(client: Engine, exit: Engine) -> Self {
        let mut pair = Self { client, exit, to_exit: Tap::default(), to_client: Tap::default(), carriers: Vec::new() };
        pair.connect();
        pair
    }

    /// Default engines joined by a link that delays each frame by `delay`
    /// each way.
    pub fn delayed(client: Config, exit: Config, delay: Duration) -> Self {
        let client = Engine::new(client, CancellationToken::new());
        let exit = Engine::new(exit, CancellationToken::new());
        let mut pair = Self { client, exit, to_exit: Tap::default(), to_client: Tap::default(), carriers: Vec::new() };
        let to_exit = pair.client.peer_connected(SERVER);
        let to_client = pair.exit.peer_connected(CLIENT);
        pair.carriers.push(carry_delayed(to_exit, pair.exit.clone(), CLIENT, delay));
        pair.carriers.push(carry_delayed(to_client, pair.client.clone(), SERVER, delay));
        pair
    }

    pub fn connect(&mut self) {
        let to_exit = self.client.peer_connected(SERVER);
        let to_client = self.exit.peer_connected(CLIENT);
        self.carriers.push(carry(to_exit, self.exit.clone(), CLIENT, Some(self.to_exit.clone())));
        self.carriers.push(carry(to_client, self.client.clone(), SERVER, Some(self.to_client.clone())));
    }

    pub fn disconnect(&mut self) {
        self.client.peer_lost(SERVER);
        self.exit.peer_lost(CLIENT);
        for carrier in self.carriers.drain(..) {
            carrier.abort();
        }
    }

    pub async fn shutdown(mut self) {
        self.disconnect();
        bounded("client shutdown", self.client.shutdown()).await;
        bounded("exit shutdown", self.exit.shutdown()).await;
    }
}

/// Decodes the recorded frames.
pub fn frames(tap: &Tap) -> Vec<Frame> {
    tap.lock().unwrap().iter().map(|f| Frame::decode(f).expect("engine sent an invalid frame")).collect()
}

/// A TCP echo server on 127.0.0.1; echoes, then closes after EOF.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// The same on [::1], if this machine has IPv6 loopback.
pub async fn echo_server_v6() -> Option<SocketAddr> {
    let listener = TcpListener::bind("[::1]:0").await.ok()?;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Some(addr)
}

/// Per connection: sends `send` pattern bytes (seed `down_seed`) and, at
/// the same time, checks that it receives `expect` bytes of pattern
/// `up_seed` followed by EOF; reports the result on the returned channel.
pub async fn dual_server(
    send: usize,
    down_seed: u64,
    expect: usize,
    up_seed: u64,
) -> (SocketAddr, tokio::sync::mpsc::Receiver<Result<(), String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, w) = s.into_split();
                let (sent, got) = tokio::join!(write_pattern(w, down_seed, send), check_pattern(r, up_seed, expect));
                let _ = tx.send(sent.map_err(|e| e.to_string()).and(got)).await;
            });
        }
    });
    (addr, rx)
}

/// Reads until EOF, then answers "got N" and closes (tests half-close).
pub async fn count_then_reply_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf).await;
                let _ = s.write_all(format!("got {}", buf.len()).as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A deterministic byte stream: byte `i` of the stream for `seed`.
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let pos = offset + i as u64;
        let mut x = (pos / 8).wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        *b = (x >> ((pos % 8) * 8)) as u8;
    }
}

/// Writes `len` pattern bytes, then shuts the write side.
pub async fn write_pattern<W: AsyncWrite + Unpin>(mut w: W, seed: u64, len: usize) -> std::io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let n = buf.len().min(len - sent);
        fill_pattern(seed, sent as u64, &mut buf[..n]);
        w.write_all(&buf[..n]).await?;
        sent += n;
    }
    w.shutdown().await
}

/// Reads until EOF and checks it is exactly `len` pattern bytes.
pub async fn check_pattern<R: AsyncRead + Unpin>(mut r: R, seed: u64, len: usize) -> Result<(), String> {
    let mut buf = vec![0; 64 * 1024];
    let mut want = vec![0; 64 * 1024];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await.map_err(|e| format!("read failed after {got} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        if got + n > len {
            return Err(format!("more than {len} bytes"));
        }
        fill_pattern(seed, got as u64, &mut want[..n]);
        if buf[..n] != want[..n] {
            let at = buf[..n].iter().zip(&want[..n]).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!("corrupted at byte {}", got + at));
        }
        got += n;
    }
    if got == len { Ok(()) } else { Err(format!("got {got} bytes, expected {len}")) }
}

/// One echo round trip on an open connection.
pub async fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

/// Asserts the connection is closed by the other side within `within`
/// (EOF or reset), without any data.
pub async fn assert_closed(s: &mut TcpStream, within: Duration) {
    let mut buf = [0; 64];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("expected a closed connection, got {n} bytes"),
        Err(_) => panic!("connection still open after {within:?}"),
    }
}

/// Polls `cond` every 10 ms until it holds (bounded by [`LIMIT`]).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A SOCKS5 CONNECT through `proxy`; returns the reply code and the stream.
pub async fn socks_connect(proxy: SocketAddr, address: &[u8], port: u16) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0; 2];
    s.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
    let mut req = vec![5, 1, 0];
    req.extend_from_slice(address);
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0; 10];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[0], 5);
    (reply[1], s)
}
