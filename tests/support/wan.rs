//! A tuntox server and its clients on the two sides of an emulated long
//! link (tests/support/linkem.rs), for tests and benchmarks of forwards over
//! real-world paths.
//!
//! ```text
//!  client namespace                                server namespace
//!  tuntox -L clients   <== link (delay, loss, ==>  tuntox server, tox-bootstrapd,
//!  10.201.0.2               rate, queue)           services on 127.0.0.1; 10.201.0.1
//! ```
//!
//! The server and the bootstrap node sit on the server side; clients
//! bootstrap across the link. Every tuntox gets `--bootstrap` to that node
//! and `--no-lan`, as in the other end-to-end tests. The link's side A is
//! the server, so [`DOWN`] (server to client) is `AToB`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::bootstrapd::Bootstrapd;
use super::deadline::Deadline;
use super::e2e::{SECRET, wait_client_connected};
use super::linkem::{Direction, Link, LinkConfig};
use super::netns::Netns;
use super::tuntox::{Tuntox, binary, config_dir_args, local_network_args};

/// The server side's address on the link.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
/// The client side's address on the link.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
/// Server to client.
pub const DOWN: Direction = Direction::AToB;
/// Client to server.
pub const UP: Direction = Direction::BToA;

/// A server namespace and a client namespace joined by a link, with a
/// tox-bootstrapd and a tuntox server on the server side.
pub struct WanBed {
    /// The tuntox server (`-s SECRET`).
    pub server: Tuntox,
    /// Its Tox ID.
    pub server_id: String,
    /// The bootstrap node (and TCP relay) in the server namespace.
    pub bootstrapd: Bootstrapd,
    /// The link; dropped before the namespaces.
    pub link: Link,
    /// Where clients run.
    pub client_ns: Netns,
    /// Where the server, the bootstrap node and the services run.
    pub server_ns: Netns,
    dir: tempfile::TempDir,
    clients: u16,
}

impl WanBed {
    /// Both namespaces, the link with `config` both ways, the bootstrap
    /// node and a running tuntox server.
    pub fn new(tag: &str, config: LinkConfig) -> WanBed {
        let server_ns = Netns::new(&format!("{tag}s"));
        let client_ns = Netns::new(&format!("{tag}c"));
        let link = Link::between(&server_ns, &client_ns, SERVER_ADDR, CLIENT_ADDR, config);
        let bootstrapd = Bootstrapd::start(&server_ns);
        let dir = tempfile::Builder::new().prefix("tt-wan").tempdir().expect("a temporary directory");
        let mut args = config_dir_args(dir.path());
        args.extend(["-s", SECRET, "-u", "34000:34099"].map(String::from));
        args.extend(local_network_args(&bootstrap_arg(&bootstrapd)));
        let mut server = Tuntox::spawn(&server_ns, "server", &args);
        let server_id = server.wait_tox_id();
        WanBed { server, server_id, bootstrapd, link, client_ns, server_ns, dir, clients: 0 }
    }

    /// `--bootstrap` for a tuntox on either side: the node's link address.
    pub fn bootstrap_arg(&self) -> String {
        bootstrap_arg(&self.bootstrapd)
    }

    /// Starts a client in the client namespace with `-s SECRET` and `flags`
    /// (each client its own UDP port range).
    pub fn client(&mut self, label: &str, flags: &[&str]) -> Tuntox {
        self.clients += 1;
        let first = 34100 + self.clients * 100;
        let mut args = vec!["-i".to_owned(), self.server_id.clone(), "-s".to_owned(), SECRET.to_owned()];
        args.extend(["-u".to_owned(), format!("{first}:{}", first + 99)]);
        args.extend(local_network_args(&self.bootstrap_arg()));
        args.extend(flags.iter().map(|s| (*s).to_owned()));
        Tuntox::spawn(&self.client_ns, label, &args)
    }

    /// Waits until `client` reached the server and reaches it over direct
    /// UDP (not a TCP relay), as `tuntox status` says; panics otherwise.
    pub fn wait_direct(&self, client: &mut Tuntox, timeout: Duration) {
        let deadline = Deadline::after(timeout);
        wait_client_connected(client, deadline.left());
        let server_key = &self.server_id[..64];
        loop {
            let reports = status_reports(&self.client_ns);
            let report = reports.iter().find(|r| r["pid"] == client.pid());
            let path = report.and_then(|r| {
                let friends = r["friends"].as_array()?;
                let server = friends.iter().find(|f| f["public_key"].as_str() == Some(server_key))?;
                (server["online"] == true).then(|| server["path"].as_str().map(str::to_owned)).flatten()
            });
            if path.as_deref() == Some("udp") {
                return;
            }
            if deadline.passed() {
                client.fail(&format!("not on direct UDP to the server within {timeout:?} (path {path:?}): {report:?}"));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// What `tuntox status` says of the server's and `client`'s tunnels
    /// (open, and their counters), for failure messages.
    pub fn tunnel_report(&self, client: &Tuntox) -> String {
        [("client", &self.client_ns, client.pid()), ("server", &self.server_ns, self.server.pid())]
            .map(|(who, netns, pid)| {
                let reports = status_reports(netns);
                let report = reports.iter().find(|r| r["pid"] == pid);
                let field = |f: &str| report.map_or(Value::Null, |r| r[f].clone());
                format!("{who}: tunnels open {}, {}", field("tunnels_open"), field("counters")["tunnels"])
            })
            .join("; ")
    }

    /// Binds a listener in the server namespace.
    pub fn listen_server(&self, addr: &str) -> TcpListener {
        let addr: SocketAddr = addr.parse().expect("a socket address");
        self.server_ns.run_in(move || TcpListener::bind(addr).expect("bind in the server namespace"))
    }

    /// Connects from the client namespace, retrying while refused (a
    /// listener still starting), for at most `timeout`.
    pub fn connect_client(&self, addr: SocketAddr, timeout: Duration) -> TcpStream {
        connect_retry(&self.client_ns, addr, timeout)
    }

    /// Sets the TCP congestion control (`cubic`, `bbr`, ...; `None`: the
    /// kernel's default) of connections made from now on between the two
    /// namespaces, at both ends. It is a route metric (`congctl`) on each
    /// side's route to the other: a namespace's own default
    /// (`net.ipv4.tcp_congestion_control`) only takes what the root
    /// namespace's `tcp_allowed_congestion_control` lists, often not CUBIC.
    pub fn set_congestion_control(&self, cc: Option<&str>) {
        let sides = [
            (&self.server_ns, self.link.dev_a(), SERVER_ADDR, CLIENT_ADDR),
            (&self.client_ns, self.link.dev_b(), CLIENT_ADDR, SERVER_ADDR),
        ];
        for (netns, dev, mine, peer) in sides {
            let (mine, peer) = (mine.to_string(), peer.to_string());
            let mut argv = vec!["ip", "route", "replace", &peer, "dev", dev, "proto", "kernel", "scope", "link"];
            argv.extend(["src", &mine]);
            if let Some(cc) = cc {
                argv.extend(["congctl", cc]);
            }
            netns.exec(&argv);
        }
    }

    /// The server's config directory.
    pub fn server_dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// `ADDR:PORT:KEY` of `bootstrapd` at its link address.
fn bootstrap_arg(bootstrapd: &Bootstrapd) -> String {
    format!("{SERVER_ADDR}:{}:{}", bootstrapd.udp_port, bootstrapd.public_key_hex)
}

/// Connects to `addr` from inside `netns`, retrying while it refuses, for
/// at most `timeout`.
pub fn connect_retry(netns: &Netns, addr: SocketAddr, timeout: Duration) -> TcpStream {
    let deadline = Deadline::after(timeout);
    loop {
        match netns.run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2))) {
            Ok(stream) => return stream,
            Err(_) if !deadline.passed() => thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("cannot connect to {addr} within {timeout:?}: {e}"),
        }
    }
}

/// The `tuntox status --json` reports of every tuntox in `netns`.
pub fn status_reports(netns: &Netns) -> Vec<Value> {
    let out = netns
        .command(binary())
        .args(["status", "--json"])
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .output()
        .expect("run tuntox status");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}
