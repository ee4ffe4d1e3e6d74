//! A NAT test bed: two LANs behind home-router NATs, a public router
//! between them, and a public host with tox-bootstrapd (DHT node and TCP
//! relay), all in private network namespaces.
//!
//! ```text
//!  client (10.9.0.2)                                         server (10.9.0.2)
//!      | lan 10.9.0.0/24                                  lan 10.9.0.0/24 |
//!  client router  198.18.1.2 --- core (public router) --- 198.18.2.2  server router
//!                                   |            |
//!                         public 198.18.10.2   public2 198.18.11.2 (optional)
//!                         tox-bootstrapd       a second DHT node
//! ```
//!
//! Both LANs use the same private subnet, as two homes do. Each router does
//! one of the [`RouterKind`]s with iptables (Linux conntrack, the most common
//! home-router NAT): its LAN side is `lan` (10.9.0.1), its public side `wan`.
//! The links between the routers and the core are veth pairs by default; a
//! [`LinkHook`] puts something else there (the link emulator), per side.
//!
//! Everything is removed on drop, also when a test panics: each [`Netns`]
//! kills its processes and deletes itself (the interfaces go with it).

use std::any::Any;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::bootstrapd::{Bootstrapd, BootstrapdConfig};
use super::deadline::Deadline;
use super::netns::Netns;
use super::toxpeer::PeerOptions;
use super::tuntox::{Tuntox, binary, config_dir_args};

/// The LAN hosts' address (the same on both LANs).
pub const LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// The routers' LAN address.
pub const LAN_ROUTER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
/// The client router's public address.
pub const CLIENT_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The server router's public address.
pub const SERVER_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// The public host's address (tox-bootstrapd).
pub const PUBLIC_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 2);
/// The second public host's address.
pub const PUBLIC_HOST2: Ipv4Addr = Ipv4Addr::new(198, 18, 11, 2);
/// tox-bootstrapd's UDP port; its TCP relay listens on the next port.
pub const BOOTSTRAP_PORT: u16 = 33445;
/// The shared secret the bed's tuntox server asks for.
pub const SECRET: &str = "natbed-secret";

/// What a home router does with its LAN's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    /// `MASQUERADE`: keeps the LAN port when nothing conflicts
    /// (endpoint-independent mapping), and lets in only what conntrack
    /// matches as a reply (address-and-port-dependent filtering). Unsolicited
    /// datagrams to the router reach its own stack (INPUT accepts, as on a
    /// Linux box nobody firewalled) and leave an UNREPLIED conntrack entry
    /// that holds the tuple: a LAN host's later packet to that sender gets a
    /// random public port.
    Cone,
    /// As [`Cone`](Self::Cone), but INPUT drops unsolicited datagrams from the
    /// WAN, so they leave no conntrack entry (most firewalled routers).
    ConeFirewalled,
    /// `MASQUERADE --random-fully`: a random public port per destination.
    RandomPort,
    /// A cone router that drops the LAN's UDP to the outside (TCP only).
    UdpBlocked,
    /// A cone router that also forwards UDP to this port to the LAN host.
    PortForward(u16),
}

impl RouterKind {
    /// A short name for tables and namespace tags.
    pub fn name(self) -> String {
        match self {
            RouterKind::Cone => "cone".to_owned(),
            RouterKind::ConeFirewalled => "cone-fw".to_owned(),
            RouterKind::RandomPort => "random".to_owned(),
            RouterKind::UdpBlocked => "udp-blocked".to_owned(),
            RouterKind::PortForward(port) => format!("forward-{port}"),
        }
    }
}

/// The two ends of a router's public link, for a [`LinkHook`].
#[derive(Debug)]
pub struct LinkEnds<'a> {
    /// The router's namespace.
    pub router: &'a Netns,
    /// The public router's namespace.
    pub core: &'a Netns,
    /// The interface to make in `router` (`wan`).
    pub router_dev: &'a str,
    /// The interface to make in `core`.
    pub core_dev: &'a str,
    /// The router's public address, point-to-point with `core_ip`.
    pub router_ip: Ipv4Addr,
    /// The public router's address on this link.
    pub core_ip: Ipv4Addr,
}

/// Makes a router's public link: creates `router_dev` in the router's
/// namespace and `core_dev` in the core's, each up with its point-to-point
/// address (`ip addr add ROUTER_IP peer CORE_IP dev ROUTER_DEV` and the
/// reverse). What it returns is kept until the bed is dropped (a process
/// carrying the link, say), and dropped before the namespaces.
pub type LinkHook = Box<dyn FnOnce(&LinkEnds<'_>) -> Box<dyn Any + Send>>;

/// The bed's shape.
pub struct NatBedConfig {
    /// The client's router.
    pub client: RouterKind,
    /// The server's router.
    pub server: RouterKind,
    /// Also make the second public host (for a second DHT node).
    pub second_public: bool,
    /// The client router's public link (default: a veth pair).
    pub client_link: Option<LinkHook>,
    /// The server router's public link (default: a veth pair).
    pub server_link: Option<LinkHook>,
}

impl NatBedConfig {
    /// The client behind `client`, the server behind `server`, veth links,
    /// one public host.
    pub fn new(client: RouterKind, server: RouterKind) -> NatBedConfig {
        NatBedConfig { client, server, second_public: false, client_link: None, server_link: None }
    }
}

/// A home router: its namespace and kind.
#[derive(Debug)]
pub struct Router {
    /// Its namespace (`lan` and `wan`).
    pub netns: Netns,
    /// What it does.
    pub kind: RouterKind,
    /// Its public address.
    pub public_ip: Ipv4Addr,
}

impl Router {
    /// The router's UDP conntrack table (`conntrack -L -p udp`), one entry
    /// per line, for diagnosis.
    pub fn conntrack(&self) -> String {
        let output = self
            .netns
            .command("conntrack")
            .args(["-L", "-p", "udp"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run conntrack ({e}); install conntrack (scripts/test does)"));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Empties the router's conntrack table.
    pub fn flush_conntrack(&self) {
        let _ = self.netns.command("conntrack").arg("-F").stdin(Stdio::null()).output();
    }
}

/// The running bed. Dropping it stops everything in it.
pub struct NatBed {
    links: Vec<Box<dyn Any + Send>>,
    /// tox-bootstrapd on the public host (UDP 33445, TCP relay 33446).
    pub bootstrapd: Bootstrapd,
    /// The client LAN host.
    pub client: Netns,
    /// The server LAN host.
    pub server: Netns,
    /// The client's router.
    pub client_router: Router,
    /// The server's router.
    pub server_router: Router,
    /// The public router.
    pub core: Netns,
    /// The public host (bootstrap node and TCP relay).
    pub public: Netns,
    /// The second public host, when asked for.
    pub public2: Option<Netns>,
}

impl NatBed {
    /// Builds the bed and starts tox-bootstrapd on the public host.
    pub fn new(config: NatBedConfig) -> NatBed {
        let tag = |what: &str| format!("nb{what}");
        let core = Netns::new(&tag("core"));
        core.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let public = Netns::new(&tag("pub"));
        link_host(&public, &core, "to-pub", PUBLIC_HOST, Ipv4Addr::new(198, 18, 10, 1));
        let public2 = config.second_public.then(|| {
            let ns = Netns::new(&tag("pub2"));
            link_host(&ns, &core, "to-pub2", PUBLIC_HOST2, Ipv4Addr::new(198, 18, 11, 1));
            ns
        });
        let mut links = Vec::new();
        let mut side =
            |name: &str, kind: RouterKind, public_ip: Ipv4Addr, core_ip: Ipv4Addr, hook: Option<LinkHook>| {
                let host = Netns::new(&tag(name));
                let router = Netns::new(&tag(&format!("{name}r")));
                router.exec(&["ip", "link", "add", "lan", "type", "veth", "peer", "name", "lan", "netns", host.name()]);
                let cidr = format!("{LAN_HOST}/24");
                host.exec(&["ip", "addr", "add", &cidr, "dev", "lan"]);
                host.exec(&["ip", "link", "set", "lan", "up"]);
                host.exec(&["ip", "route", "add", "default", "via", &LAN_ROUTER.to_string()]);
                let cidr = format!("{LAN_ROUTER}/24");
                router.exec(&["ip", "addr", "add", &cidr, "dev", "lan"]);
                router.exec(&["ip", "link", "set", "lan", "up"]);
                let core_dev = format!("to-{name}");
                let ends = LinkEnds {
                    router: &router,
                    core: &core,
                    router_dev: "wan",
                    core_dev: &core_dev,
                    router_ip: public_ip,
                    core_ip,
                };
                match hook {
                    Some(hook) => links.push(hook(&ends)),
                    None => veth_link(&ends),
                }
                router.exec(&["ip", "route", "add", "default", "via", &core_ip.to_string()]);
                router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
                configure_router(&router, kind);
                (host, Router { netns: router, kind, public_ip })
            };
        let (client, client_router) =
            side("cli", config.client, CLIENT_PUBLIC, Ipv4Addr::new(198, 18, 1, 1), config.client_link);
        let (server, server_router) =
            side("srv", config.server, SERVER_PUBLIC, Ipv4Addr::new(198, 18, 2, 1), config.server_link);
        let bootstrapd = Bootstrapd::start_with(
            &public,
            BootstrapdConfig { port: BOOTSTRAP_PORT, tcp_port: BOOTSTRAP_PORT + 1, ..BootstrapdConfig::default() },
        );
        NatBed { links, bootstrapd, client, server, client_router, server_router, core, public, public2 }
    }

    /// `PUBLIC:33445:KEY`: the bootstrap node, for `--bootstrap`.
    pub fn bootstrap_arg(&self) -> String {
        format!("{PUBLIC_HOST}:{}:{}", self.bootstrapd.udp_port, self.bootstrapd.public_key_hex)
    }

    /// `PUBLIC:33446:KEY`: its TCP relay, for `--relay` / `--tcp-relay`.
    pub fn relay_arg(&self) -> String {
        format!("{PUBLIC_HOST}:{}:{}", self.bootstrapd.tcp_port, self.bootstrapd.public_key_hex)
    }

    /// The arguments that put a tuntox on the bed's network only: the
    /// bootstrap node, its TCP relay, no LAN discovery.
    pub fn network_args(&self) -> Vec<String> {
        ["--bootstrap", &self.bootstrap_arg(), "--relay", &self.relay_arg(), "--no-lan"].map(String::from).to_vec()
    }

    /// Starts a second DHT node (tox-bootstrapd) on the second public host,
    /// bootstrapping from the first; the bed must have been made with
    /// `second_public`.
    pub fn start_second_node(&self) -> Bootstrapd {
        let ns = self.public2.as_ref().expect("a bed made with second_public");
        Bootstrapd::start_with(
            ns,
            BootstrapdConfig {
                port: BOOTSTRAP_PORT,
                tcp_port: BOOTSTRAP_PORT + 1,
                motd: "tuntox-test-2".to_owned(),
                bootstrap_nodes: vec![(
                    PUBLIC_HOST.to_string(),
                    BOOTSTRAP_PORT,
                    self.bootstrapd.public_key_hex.clone(),
                )],
            },
        )
    }

    /// Starts `tuntox -s SECRET` (a server) in the server LAN with its
    /// config in `dir` and `extra` arguments; returns it and its Tox ID.
    pub fn start_server(&self, dir: &Path, extra: &[&str]) -> (Tuntox, String) {
        let mut args = config_dir_args(dir);
        args.extend(["-s", SECRET].map(String::from));
        args.extend(self.network_args());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.extend(debug_args());
        let mut server = Tuntox::spawn(&self.server, "server", &args);
        let id = server.wait_tox_id();
        (server, id)
    }

    /// Starts `tuntox -i ID -s SECRET FLAGS` (a client) in the client LAN.
    pub fn start_client(&self, server_id: &str, flags: &[&str]) -> Tuntox {
        let mut args = vec!["-i".to_owned(), server_id.to_owned(), "-s".to_owned(), SECRET.to_owned()];
        args.extend(self.network_args());
        args.extend(flags.iter().map(|s| (*s).to_owned()));
        args.extend(debug_args());
        Tuntox::spawn(&self.client, "client", &args)
    }

    /// Options for a libtoxcore test peer on the bed (bootstrap node and
    /// its TCP relay).
    pub fn peer_options(&self, name: &str) -> PeerOptions {
        let mut opts = PeerOptions::new(name);
        opts.bootstrap = vec![self.bootstrap_arg()];
        opts.tcp_relays = vec![self.relay_arg()];
        opts
    }

    /// Both routers' UDP conntrack tables, labelled (for failure messages).
    pub fn conntrack(&self) -> String {
        format!(
            "--- client router ({}) conntrack ---\n{}--- server router ({}) conntrack ---\n{}",
            self.client_router.kind.name(),
            self.client_router.conntrack(),
            self.server_router.kind.name(),
            self.server_router.conntrack()
        )
    }
}

impl Drop for NatBed {
    fn drop(&mut self) {
        // Whatever carries a link goes before the namespaces it lives in.
        self.links.clear();
    }
}

/// `-d` when `NATBED_DEBUG` is set: the bed's tuntox processes log their
/// state changes, shown when a test fails (for diagnosis).
fn debug_args() -> Vec<String> {
    if std::env::var_os("NATBED_DEBUG").is_some() { vec!["-d".to_owned()] } else { Vec::new() }
}

/// A host on the core with a veth pair: `eth0` in `host`, `core_dev` in the core.
fn link_host(host: &Netns, core: &Netns, core_dev: &str, host_ip: Ipv4Addr, core_ip: Ipv4Addr) {
    veth_link(&LinkEnds { router: host, core, router_dev: "eth0", core_dev, router_ip: host_ip, core_ip });
    host.exec(&["ip", "route", "add", "default", "via", &core_ip.to_string()]);
}

/// The default public link: a veth pair with point-to-point addresses.
pub fn veth_link(ends: &LinkEnds<'_>) {
    let LinkEnds { router, core, router_dev, core_dev, router_ip, core_ip } = *ends;
    router.exec(&["ip", "link", "add", router_dev, "type", "veth", "peer", "name", core_dev, "netns", core.name()]);
    router.exec(&["ip", "addr", "add", &router_ip.to_string(), "peer", &core_ip.to_string(), "dev", router_dev]);
    router.exec(&["ip", "link", "set", router_dev, "up"]);
    core.exec(&["ip", "addr", "add", &core_ip.to_string(), "peer", &router_ip.to_string(), "dev", core_dev]);
    core.exec(&["ip", "link", "set", core_dev, "up"]);
}

/// The router's iptables rules for `kind`.
fn configure_router(router: &Netns, kind: RouterKind) {
    let ipt = |rule: &str| {
        let mut argv = vec!["iptables", "-w"];
        argv.extend(rule.split_whitespace());
        router.exec(&argv);
    };
    match kind {
        RouterKind::RandomPort => ipt("-t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully"),
        _ => ipt("-t nat -A POSTROUTING -o wan -j MASQUERADE"),
    }
    // Only replies (and what a port forward admits) come in from outside.
    if let RouterKind::PortForward(port) = kind {
        ipt(&format!("-t nat -A PREROUTING -i wan -p udp --dport {port} -j DNAT --to-destination {LAN_HOST}:{port}"));
        ipt(&format!("-A FORWARD -i wan -o lan -p udp -d {LAN_HOST} --dport {port} -j ACCEPT"));
    }
    ipt("-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT");
    ipt("-A FORWARD -i wan -j DROP");
    if kind == RouterKind::UdpBlocked {
        ipt("-A FORWARD -i lan -o wan -p udp -j DROP");
    }
    if kind == RouterKind::ConeFirewalled {
        ipt("-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT");
        ipt("-A INPUT -i wan -j DROP");
    }
}

/// A friend as `tuntox status --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendPath {
    /// Online (data flows).
    pub online: bool,
    /// `udp` or `tcp`, when online.
    pub path: Option<String>,
    /// Why there is no direct path, when the node knows.
    pub direct_note: Option<String>,
}

/// Runs `tuntox status --json` in `netns` (the one tuntox there) and returns
/// the report, or `None` while no report can be read.
pub fn status_json(netns: &Netns) -> Option<Value> {
    let output: std::process::Output =
        netns.command(binary()).args(["status", "--json"]).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    // One JSON document per line, one line per process: the first.
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    serde_json::from_str(text.lines().next()?).ok()
}

/// The first friend of the one tuntox in `netns`, from its status report.
pub fn friend_path(netns: &Netns) -> Option<FriendPath> {
    friend_path_in(netns.name(), &netns.status_dir())
}

/// Polls the status of the tuntox in `netns` until its first friend is
/// online on `path` (`udp` or `tcp`); returns how long that took, or `None`
/// at the deadline.
pub fn wait_path(netns: &Netns, path: &str, deadline: &Deadline) -> Option<Duration> {
    loop {
        if friend_path(netns).is_some_and(|f| f.online && f.path.as_deref() == Some(path)) {
            return Some(deadline.elapsed());
        }
        if deadline.passed() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A UDP socket's address on the bed as a string `IP:PORT`.
pub fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// Whether the `conntrack` tool is installed (the bed's diagnosis needs it).
pub fn conntrack_installed() -> bool {
    Command::new("conntrack").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// What one `-L` run on the bed gave.
#[derive(Debug, Clone)]
pub struct ForwardRun {
    /// From the client's start until its status first said `udp`, if it did.
    pub direct: Option<Duration>,
    /// From the client's start until its status first said online (any path).
    pub online: Option<Duration>,
    /// From the client's start until the first byte came through `-L`.
    pub first_byte: Duration,
    /// From the first byte to the last.
    pub transfer: Duration,
    /// The longest wait between two reads during the transfer.
    pub longest_gap: Duration,
    /// The client's path when the transfer ended.
    pub path_at_end: Option<FriendPath>,
}

impl ForwardRun {
    /// Throughput of the transfer in MB/s (10^6 bytes).
    pub fn mb_per_s(&self, len: usize) -> f64 {
        len as f64 / self.transfer.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Starts a tuntox server in the server LAN (serving a source of `len`
/// pattern bytes on 127.0.0.1:7000 there) and a client in the client LAN
/// with `-L 12000:127.0.0.1:7000` and `client_flags`, downloads the `len`
/// bytes through the forward and checks them. With `direct_first`, the
/// download starts only once the client's status says `udp`, and the run
/// fails if that takes longer (counted from the start of both). Everything
/// within `budget`; panics with both logs and the routers' conntrack
/// tables on a failure.
pub fn forward_run(
    bed: &NatBed,
    client_flags: &[&str],
    len: usize,
    direct_first: Option<Duration>,
    budget: Duration,
) -> ForwardRun {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().expect("a temporary directory");
    let (server, server_id) = bed.start_server(dir.path(), &[]);
    let listener = bed.server.run_in(|| std::net::TcpListener::bind("127.0.0.1:7000").expect("bind the source"));
    let verdicts = super::e2e::dual_server(listener, 13, len, 14, 0);
    let mut flags = vec!["-L", "12000:127.0.0.1:7000"];
    flags.extend_from_slice(client_flags);
    let deadline = Deadline::after(budget);
    let client = bed.start_client(&server_id, &flags);

    // Watch the client's path meanwhile.
    let watched = Arc::new(Mutex::new((None::<Duration>, None::<Duration>)));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (watched, stop) = (Arc::clone(&watched), Arc::clone(&stop));
        let client_ns = bed.client.name().to_owned();
        let status_dir = bed.client.status_dir();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && !deadline.passed() {
                if let Some(friend) = friend_path_in(&client_ns, &status_dir) {
                    let mut seen = watched.lock().unwrap_or_else(|e| e.into_inner());
                    if friend.online && seen.1.is_none() {
                        seen.1 = Some(deadline.elapsed());
                    }
                    if friend.online && friend.path.as_deref() == Some("udp") && seen.0.is_none() {
                        seen.0 = Some(deadline.elapsed());
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let fail = |why: &str| -> ! {
        stop.store(true, Ordering::Relaxed);
        panic!(
            "{why}\n--- client log ---\n{}\n--- server log ---\n{}\n{}",
            client.log().join("\n"),
            server.log().join("\n"),
            bed.conntrack()
        );
    };
    if let Some(limit) = direct_first {
        let wait = Deadline::after(limit.min(deadline.left()));
        while watched.lock().unwrap_or_else(|e| e.into_inner()).0.is_none() {
            if wait.passed() {
                fail(&format!("no direct path within {limit:?}; status: {:?}", friend_path(&bed.client)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut stream = loop {
        let attempt = bed.client.run_in(|| {
            std::net::TcpStream::connect_timeout(&"127.0.0.1:12000".parse().unwrap(), Duration::from_secs(1))
        });
        match attempt {
            Ok(stream) => break stream,
            Err(_) if !deadline.passed() => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => fail(&format!("cannot connect to the client's -L port: {e}")),
        }
    };
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; 256 * 1024];
    let mut first = None;
    let mut last_read = deadline.elapsed();
    let mut longest_gap = Duration::ZERO;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let at = deadline.elapsed();
                if first.is_none() {
                    first = Some(at);
                } else {
                    longest_gap = longest_gap.max(at - last_read);
                }
                last_read = at;
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => fail(&format!("reading the forward failed after {} bytes: {e}", got.len())),
        }
        if deadline.passed() {
            fail(&format!("{} of {len} bytes within {budget:?}", got.len()));
        }
    }
    let end = deadline.elapsed();
    if let Err(why) = super::e2e::check_pattern(got.as_slice(), 13, len) {
        fail(&format!("the bytes through -L are not the source's: {why}"));
    }
    // The source's verdict comes once our side of the connection closes.
    drop(stream);
    match verdicts.recv_timeout(deadline.step(Duration::from_secs(5))) {
        Ok(Ok(())) => {}
        Ok(Err(why)) => fail(&format!("the source reports: {why}")),
        Err(_) => fail("the source gave no verdict"),
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let path_at_end = friend_path(&bed.client);
    let (direct, online) = *watched.lock().unwrap_or_else(|e| e.into_inner());
    let first = first.unwrap_or(end);
    drop(client);
    drop(server);
    ForwardRun { direct, online, first_byte: first, transfer: end - first, longest_gap, path_at_end }
}

/// [`friend_path`] for a namespace known by name and status directory (from
/// another thread).
fn friend_path_in(netns: &str, status_dir: &Path) -> Option<FriendPath> {
    let output = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(binary())
        .args(["status", "--json"])
        .env("TUNTOX_STATUS_DIR", status_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let report: Value = serde_json::from_str(text.lines().next()?).ok()?;
    let friend = report.get("friends")?.as_array()?.first()?.clone();
    Some(FriendPath {
        online: friend.get("online")?.as_bool()?,
        path: friend.get("path").and_then(Value::as_str).map(str::to_owned),
        direct_note: friend.get("direct_note").and_then(Value::as_str).map(str::to_owned),
    })
}
