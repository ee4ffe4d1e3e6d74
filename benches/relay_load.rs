//! Load on a real `tuntox relay` in a network namespace of its own: the
//! memory 2,000 idle client connections cost, then 50 client pairs sending
//! 1400-byte data packets through it for some seconds (offered and
//! delivered throughput, and the relay process's CPU time).
//!
//! Needs root (it makes the namespace with `ip netns` and removes it at the
//! end). The relay is the `tuntox` binary of this build; the clients are
//! in-process, made of our codecs. Run with
//! `cargo bench --bench relay_load -- [--idle N] [--pairs N] [--secs N]`;
//! it prints one `key=value` line per measurement (a `relay` entry of
//! scripts/bench can run it and keep those lines).

// A benchmark reads the clock and prints its report.
#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nix::sched::{CloneFlags, setns};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio_util::codec::Decoder;
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::proto::relay::channel::{Opener, Sealer, start_handshake};
use tuntox::wire::tcp::frame::FrameCodec;
use tuntox::wire::tcp::{Data, Ping, Pong, RoutingRequest, ServerHandshake, TcpPacket};

const UDP_PORT: u16 = 33445;
const TCP_PORT: u16 = 33446;
const PAYLOAD: usize = 1400;

struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        let name = format!("tuntox-bench-relay-{}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Namespace(name)
    }
}

/// Moves this thread (and the threads it starts) into namespace `name`.
fn enter_namespace(name: &str) {
    let file = File::open(format!("/run/netns/{name}")).expect("the namespace file");
    setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(argv: &[&str]) {
    let status = Command::new(argv[0]).args(&argv[1..]).status().expect(argv[0]);
    assert!(status.success(), "{argv:?} failed (root needed)");
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_field(pid: u32, file: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default()
}

/// Resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    proc_field(pid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User and system CPU time, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = proc_field(pid, "stat");
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 here.
    fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
}

struct Client {
    stream: TcpStream,
    sealer: Sealer,
    opener: Opener,
    buf: BytesMut,
    pk: PublicKey,
}

impl Client {
    fn connect(addr: SocketAddr, relay_pk: &PublicKey, seed: u64) -> Client {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let keys = KeyPair::generate(&mut rng);
        let mut stream = TcpStream::connect(addr).expect("connect to the relay");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (hello, pending) = start_handshake(&mut rng, &keys, relay_pk).unwrap();
        let mut bytes = Vec::new();
        hello.encode(&mut bytes);
        stream.write_all(&bytes).unwrap();
        let mut answer = [0u8; 96];
        stream.read_exact(&mut answer).expect("the relay's handshake");
        let channel = pending.finish(&ServerHandshake::decode(answer.to_vec()).unwrap()).unwrap();
        let (sealer, opener) = channel.split();
        Client { stream, sealer, opener, buf: BytesMut::new(), pk: *keys.public() }
    }

    fn send(&mut self, packet: &TcpPacket) {
        let mut out = BytesMut::new();
        self.sealer.seal_packet(packet, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    fn recv(&mut self) -> Option<TcpPacket> {
        loop {
            if let Some(frame) = FrameCodec.decode(&mut self.buf).ok()? {
                return TcpPacket::decode(self.opener.open_frame(frame).ok()?).ok();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; nothing else of libtest applies here.
    let (idle, pairs, secs) = (arg("--idle", 2000), arg("--pairs", 50), arg("--secs", 10));
    let binary = env!("CARGO_BIN_EXE_tuntox");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary).args(["relay", "-C"]).arg(dir.path()).arg("--print-key").output().unwrap();
    let key_hex = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let relay_pk = tuntox::wire::tox_id::parse_public_key(&key_hex).expect("--print-key prints the key");

    let ns = Namespace::new();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0, binary, "relay", "-C"])
        .arg(dir.path())
        .args(["--port", &UDP_PORT.to_string(), "--tcp-port", &TCP_PORT.to_string(), "--no-lan", "-q"])
        .args(["--max-clients", &(idle + 2 * pairs + 16).to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("start the relay");
    // `ip netns exec` execs the program: the child is the relay.
    let relay = Relay(child);
    let pid = relay.0.id();
    let ns_name = ns.0.clone();
    let worker = thread::spawn(move || {
        enter_namespace(&ns_name);
        measure(pid, &relay_pk, idle, pairs, secs);
    });
    worker.join().expect("the measurement");
    drop(relay);
    drop(ns);
}

fn wait_for_relay(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "the relay did not listen within 10 s");
        thread::sleep(Duration::from_millis(50));
    }
}

fn measure(pid: u32, relay_pk: &PublicKey, idle: u64, pairs: u64, secs: u64) {
    let addr = SocketAddr::from(([127, 0, 0, 1], TCP_PORT));
    wait_for_relay(addr);
    thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib(pid);
    let mut idle_clients = Vec::new();
    for n in 0..idle {
        let mut client = Client::connect(addr, relay_pk, 1_000_000 + n);
        // One packet confirms the connection.
        client.send(&TcpPacket::Ping(Ping::new(n + 1)));
        assert!(matches!(client.recv(), Some(TcpPacket::Pong(_))), "idle client {n} confirmed");
        idle_clients.push(client);
    }
    thread::sleep(Duration::from_secs(1));
    let rss_idle = rss_kib(pid);
    println!("relay_idle_clients={idle}");
    println!("relay_rss_kib_before={rss_before}");
    println!("relay_rss_kib_idle={rss_idle}");
    if idle > 0 {
        println!("relay_kib_per_idle_client={:.2}", (rss_idle.saturating_sub(rss_before)) as f64 / idle as f64);
    }
    drop(idle_clients);

    // Linked pairs.
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for p in 0..pairs {
        let mut a = Client::connect(addr, relay_pk, 2 * p);
        let mut b = Client::connect(addr, relay_pk, 2 * p + 1);
        a.send(&TcpPacket::RoutingRequest(RoutingRequest::new(b.pk)));
        b.send(&TcpPacket::RoutingRequest(RoutingRequest::new(a.pk)));
        let slot = |c: &mut Client| loop {
            match c.recv() {
                Some(TcpPacket::ConnectNotification(n)) => return n.connection,
                Some(TcpPacket::Ping(ping)) => c.send(&TcpPacket::Pong(Pong::new(ping.ping_id))),
                Some(_) => {}
                None => panic!("pair {p} not linked"),
            }
        };
        let ca = slot(&mut a);
        let _ = slot(&mut b);
        senders.push((a, ca));
        receivers.push(b);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_ticks(pid);
    let start = Instant::now();
    let mut threads = Vec::new();
    for (mut a, ca) in senders {
        let (stop, offered) = (Arc::clone(&stop), Arc::clone(&offered));
        threads.push(thread::spawn(move || {
            let packet = TcpPacket::Data(Data::new(ca, Bytes::from(vec![0x5a; PAYLOAD])).unwrap());
            let mut out = BytesMut::with_capacity(64 * 1024);
            while !stop.load(Ordering::Relaxed) {
                out.clear();
                for _ in 0..32 {
                    a.sealer.seal_packet(&packet, &mut out).unwrap();
                }
                if a.stream.write_all(&out).is_err() {
                    break;
                }
                offered.fetch_add(32 * PAYLOAD as u64, Ordering::Relaxed);
            }
        }));
    }
    for mut b in receivers {
        let (stop, delivered) = (Arc::clone(&stop), Arc::clone(&delivered));
        b.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        threads.push(thread::spawn(move || {
            let mut chunk = vec![0u8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match b.stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        b.buf.extend_from_slice(&chunk[..n]);
                        while let Ok(Some(frame)) = FrameCodec.decode(&mut b.buf) {
                            if let Ok(plain) = b.opener.open_frame(frame)
                                && let Ok(TcpPacket::Data(d)) = TcpPacket::decode(plain)
                            {
                                delivered.fetch_add(d.payload.len() as u64, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(_) => {}
                }
            }
        }));
    }
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_ticks(pid).saturating_sub(cpu_before);
    for t in threads {
        let _ = t.join();
    }
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    let mb = |bytes: u64| bytes as f64 / elapsed / 1e6;
    println!("relay_pairs={pairs}");
    println!("relay_offered_mb_per_s={:.1}", mb(offered.load(Ordering::Relaxed)));
    println!("relay_delivered_mb_per_s={:.1}", mb(delivered.load(Ordering::Relaxed)));
    println!("relay_cpu_percent={:.0}", cpu as f64 / ticks / elapsed * 100.0);
    println!("relay_rss_kib_loaded={}", rss_kib(pid));
}
