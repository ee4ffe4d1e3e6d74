//! Network namespaces for the TUN tests, and two VPNs joined in memory.
//!
//! Each test makes its own namespaces (`vpn-<tag>-<pid>-<n>`, only `lo` up)
//! and deletes them on drop. Devices are created by switching the calling
//! thread into a namespace for the moment of creation: a TUN descriptor and
//! a netlink socket stay bound to the namespace they were made in.
//! These tests need root; without it they fail and say so.

#![allow(dead_code, clippy::disallowed_methods)]

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use nix::sched::{CloneFlags, setns};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vpn::device::Device;
use vpn::runner::Vpn;
use vpn::{Engine, Event, PeerId};

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (network namespaces, TUN devices): run scripts/test as root"
        );
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("vpn-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace; panics unless it succeeds.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let out = self.try_exec(argv);
        assert!(
            out.status.success(),
            "in {}: {argv:?}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs a command inside the namespace.
    pub fn try_exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec (install iproute2)")
    }

    /// Runs `f` with the calling thread inside the namespace, then returns
    /// the thread to where it was.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let home = File::open("/proc/thread-self/ns/net").expect("own netns");
        let there = File::open(Path::new("/run/netns").join(&self.name)).expect("netns file");
        setns(&there, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
        let result = f();
        setns(&home, CloneFlags::CLONE_NEWNET).expect("setns home");
        result
    }

    /// Runs `f` on a new thread inside the namespace.
    pub fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let there = File::open(Path::new("/run/netns").join(&self.name)).expect("netns file");
        std::thread::spawn(move || {
            setns(&there, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().expect("run");
    assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Creates a device inside `ns` (the calling thread visits it).
pub async fn device_in(ns: &Netns, name: &str, mtu: u16, offload: bool) -> Device {
    let handle = tokio::runtime::Handle::current();
    ns.enter(|| {
        tokio::task::block_in_place(|| handle.block_on(Device::create(Some(name), mtu, offload))).expect("create TUN")
    })
}

pub const SERVER: PeerId = PeerId(1);
pub const CLIENT: PeerId = PeerId(2);

/// A VPN's side of the in-memory link.
pub struct Side {
    pub vpn: Vpn,
    pub events: mpsc::Receiver<Event>,
    /// Whether its peer is reachable (data and control pass only then).
    pub link_up: Arc<std::sync::atomic::AtomicBool>,
}

/// Two VPNs joined in memory: server `s` (peer CLIENT on its side) and
/// client `c` (peer SERVER on its side).
pub async fn join(
    server: Engine,
    sdev: Device,
    client: Engine,
    cdev: Device,
    cancel: CancellationToken,
) -> (Side, Side) {
    let to_client: Arc<OnceLock<Vpn>> = Arc::new(OnceLock::new());
    let to_server: Arc<OnceLock<Vpn>> = Arc::new(OnceLock::new());
    let link = Arc::new(std::sync::atomic::AtomicBool::new(true));

    let (l, t) = (link.clone(), to_client.clone());
    let server_sink = move |_peer: PeerId, p: Bytes| {
        l.load(Ordering::Relaxed) && t.get().is_some_and(|c: &Vpn| c.handle_data(SERVER, p))
    };
    let (l, t) = (link.clone(), to_server.clone());
    let client_sink = move |_peer: PeerId, p: Bytes| {
        l.load(Ordering::Relaxed) && t.get().is_some_and(|s: &Vpn| s.handle_data(CLIENT, p))
    };
    let (svpn, mut sout) = Vpn::start(server, sdev, server_sink, cancel.clone()).await.expect("server VPN");
    let (cvpn, mut cout) = Vpn::start(client, cdev, client_sink, cancel.clone()).await.expect("client VPN");
    to_client.set(cvpn.clone()).unwrap();
    to_server.set(svpn.clone()).unwrap();

    // Control packets, in order, while the link is up.
    let (l, c) = (link.clone(), cvpn.clone());
    tokio::spawn(async move {
        while let Some(t) = sout.control.recv().await {
            if l.load(Ordering::Relaxed) {
                c.handle_control(SERVER, &t.packet);
            }
        }
    });
    let (l, s) = (link.clone(), svpn.clone());
    tokio::spawn(async move {
        while let Some(t) = cout.control.recv().await {
            if l.load(Ordering::Relaxed) {
                s.handle_control(CLIENT, &t.packet);
            }
        }
    });
    svpn.peer_connected(CLIENT, b"client public key");
    cvpn.peer_connected(SERVER, b"server public key");
    (
        Side { vpn: svpn, events: sout.events, link_up: link.clone() },
        Side { vpn: cvpn, events: cout.events, link_up: link },
    )
}

/// Waits for an event matching `want`, at most `secs` seconds.
pub async fn wait_event(events: &mut mpsc::Receiver<Event>, secs: u64, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event channel closed"),
            Err(_) => panic!("no matching event within {secs}s"),
        }
    }
}
