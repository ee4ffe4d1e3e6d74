//! Home networks behind NAT routers, in namespaces: an "internet"
//! namespace that routes between the routers and two public hosts (for
//! tox-bootstrapd), and per home a router namespace doing MASQUERADE for a
//! LAN namespace with one host. Both LANs use the same private subnet, as
//! real homes do.
//!
//! ```text
//!  host 10.9.0.2 ── 10.9.0.1 router 12.K.0.2 ── 12.K.0.1 internet 11.0.J.1 ── 11.0.J.2 public host J
//! ```
//!
//! The public addresses are outside the documentation and benchmarking
//! ranges on purpose: miniupnpd refuses to map ports on a router whose WAN
//! address is reserved (it assumes another NAT beyond). Nothing leaves the
//! namespaces: they are joined by veth pairs only.
//!
//! Routers come in the kinds home routers have ([`NatKind`]), and any of
//! them may run miniupnpd (UPnP IGD, NAT-PMP and PCP) with
//! [`Home::start_miniupnpd`].

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::deadline::Deadline;
use super::netns::{ChildGuard, Netns};

/// The LAN's subnet, the same in every home.
pub const LAN_HOST: &str = "10.9.0.2";
/// The router's LAN address.
pub const LAN_ROUTER: &str = "10.9.0.1";
/// The public hosts' addresses.
pub const PUBLIC_IPS: [&str; 2] = ["11.0.1.2", "11.0.2.2"];

/// How a home router translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// MASQUERADE: port-preserving while free, one mapping for all
    /// destinations; conntrack lets only replies in.
    Cone,
    /// MASQUERADE --random-fully: a random port per destination.
    RandomPort,
    /// Cone for TCP, but the router drops all UDP.
    UdpBlocked,
}

/// The internet: a namespace routing between the homes' routers and the
/// public hosts, each of those a namespace with one address (a service
/// that binds every address, like tox-bootstrapd, answers from it).
#[derive(Debug)]
pub struct Internet {
    /// The routing namespace.
    pub netns: Netns,
    /// The public hosts, at [`PUBLIC_IPS`].
    pub hosts: Vec<Netns>,
    homes: AtomicU32,
}

impl Internet {
    /// Creates it with a public host at each of [`PUBLIC_IPS`].
    pub fn new(tag: &str) -> Internet {
        let netns = Netns::new(tag);
        netns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let mut hosts = Vec::new();
        for (k, ip) in PUBLIC_IPS.iter().enumerate() {
            let host = Netns::new(&format!("pub{}", k + 1));
            let side = format!("pub{}", k + 1);
            link(&netns, &side, &host, "eth0");
            netns.exec(&["ip", "addr", "add", &format!("11.0.{}.1/24", k + 1), "dev", &side]);
            netns.exec(&["ip", "link", "set", &side, "up"]);
            host.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            host.exec(&["ip", "link", "set", "eth0", "up"]);
            host.exec(&["ip", "route", "add", "default", "via", &format!("11.0.{}.1", k + 1)]);
            hosts.push(host);
        }
        Internet { netns, hosts, homes: AtomicU32::new(0) }
    }
}

/// A home: a router namespace and a LAN host namespace.
#[derive(Debug)]
pub struct Home {
    /// The LAN host (where tuntox runs).
    pub host: Netns,
    /// The router.
    pub router: Netns,
    /// The router's public address.
    pub public_ip: String,
    /// miniupnpd, once started.
    miniupnpd: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

impl Home {
    /// Builds home number N (1, 2, ...) on `internet` with a router of
    /// `kind`.
    pub fn new(internet: &Internet, kind: NatKind) -> Home {
        let n = internet.homes.fetch_add(1, Ordering::Relaxed) + 1;
        assert!(n < 200, "too many homes");
        let host = Netns::new(&format!("host{n}"));
        let router = Netns::new(&format!("rtr{n}"));
        let public_ip = format!("12.{n}.0.2");
        link(&host, "lan0", &router, "lan1");
        link(&router, "wan1", &internet.netns, &format!("home{n}"));
        host.exec(&["ip", "addr", "add", &format!("{LAN_HOST}/24"), "dev", "lan0"]);
        host.exec(&["ip", "link", "set", "lan0", "up"]);
        host.exec(&["ip", "route", "add", "default", "via", LAN_ROUTER]);
        router.exec(&["ip", "addr", "add", &format!("{LAN_ROUTER}/24"), "dev", "lan1"]);
        router.exec(&["ip", "link", "set", "lan1", "up"]);
        router.exec(&["ip", "addr", "add", &format!("{public_ip}/24"), "dev", "wan1"]);
        router.exec(&["ip", "link", "set", "wan1", "up"]);
        router.exec(&["ip", "route", "add", "default", "via", &format!("12.{n}.0.1")]);
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let inet_if = format!("home{n}");
        internet.netns.exec(&["ip", "addr", "add", &format!("12.{n}.0.1/24"), "dev", &inet_if]);
        internet.netns.exec(&["ip", "link", "set", &inet_if, "up"]);
        match kind {
            NatKind::Cone => {
                router.exec(&["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan1", "-j", "MASQUERADE"]);
            }
            NatKind::RandomPort => {
                router.exec(&[
                    "iptables",
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    "wan1",
                    "-j",
                    "MASQUERADE",
                    "--random-fully",
                ]);
            }
            NatKind::UdpBlocked => {
                router.exec(&["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan1", "-j", "MASQUERADE"]);
                router.exec(&["iptables", "-A", "FORWARD", "-p", "udp", "-j", "DROP"]);
            }
        }
        Home { host, router, public_ip, miniupnpd: None, dir: tempfile::tempdir().expect("a temporary directory") }
    }

    /// Starts miniupnpd on the router (UPnP IGD, NAT-PMP and PCP for the
    /// LAN, mappings at least `min_lifetime` seconds) and waits until it
    /// listens. Its rules go into iptables-legacy chains (Debian's
    /// miniupnpd-iptables speaks the legacy interface).
    pub fn start_miniupnpd(&mut self, min_lifetime: u32) {
        let found = Command::new("miniupnpd").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(found.is_ok(), "miniupnpd not found: install Debian's miniupnpd-iptables (scripts/test does)");
        for (table, chain, hook) in [
            ("nat", "MINIUPNPD", "PREROUTING"),
            ("nat", "MINIUPNPD-POSTROUTING", "POSTROUTING"),
            ("filter", "MINIUPNPD", "FORWARD"),
            ("mangle", "MINIUPNPD", "PREROUTING"),
        ] {
            self.router.exec(&["iptables-legacy", "-t", table, "-N", chain]);
            let dir = if hook == "POSTROUTING" { "-o" } else { "-i" };
            self.router.exec(&["iptables-legacy", "-t", table, "-A", hook, dir, "wan1", "-j", chain]);
        }
        let conf = self.dir.path().join("miniupnpd.conf");
        let text = format!(
            "ext_ifname=wan1\nlistening_ip=lan1\nhttp_port=5000\nenable_natpmp=yes\nenable_upnp=yes\n\
             secure_mode=yes\nsystem_uptime=yes\nnotify_interval=30\nclean_ruleset_interval=600\n\
             uuid=3e1a2b5c-0000-4000-8000-000000000001\nlease_file={}\nmin_lifetime={min_lifetime}\n\
             max_lifetime=86400\nallow 1024-65535 10.9.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            self.lease_file().display()
        );
        std::fs::write(&conf, text).expect("write miniupnpd.conf");
        let child = self
            .router
            .command("miniupnpd")
            .arg("-f")
            .arg(&conf)
            .arg("-d")
            // Its own pid file: several run at once, one per router.
            .arg("-P")
            .arg(self.dir.path().join("miniupnpd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start miniupnpd");
        self.miniupnpd = Some(ChildGuard::new(child, "miniupnpd"));
        // Listening once its HTTP port takes connections.
        let deadline = Deadline::after(Duration::from_secs(10));
        let router = self.router.name().to_owned();
        while !deadline.passed() {
            let ok = Command::new("ip")
                .args(["netns", "exec", &router, "bash", "-c", "exec 3<>/dev/tcp/10.9.0.1/5000"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("miniupnpd did not listen on 10.9.0.1:5000 within 10 s");
    }

    /// miniupnpd's lease file (one line per mapping).
    pub fn lease_file(&self) -> PathBuf {
        self.dir.path().join("upnp.leases")
    }

    /// The DNAT rules miniupnpd holds, as `iptables -S` lines (iptables
    /// 1.8.9 prints the target's details as "[unsupported revision]": the
    /// destination port is there, the address it leads to is in the lease
    /// file).
    pub fn port_forwards(&self) -> Vec<String> {
        let out = self.router.exec(&["iptables-legacy", "-t", "nat", "-S", "MINIUPNPD"]);
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("DNAT")).map(str::to_owned).collect()
    }

    /// Waits until `pred` holds for [`Home::port_forwards`]; panics with
    /// them after `timeout`.
    pub fn wait_forwards(&self, what: &str, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Deadline::after(timeout);
        loop {
            let rules = self.port_forwards();
            if pred(&rules) {
                return rules;
            }
            assert!(!deadline.passed(), "{what}: not within {timeout:?}; miniupnpd's rules: {rules:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A veth pair made inside `ns_a`: `name_a` there, `name_b` in `ns_b`
/// (never in the host's namespace).
fn link(ns_a: &Netns, name_a: &str, ns_b: &Netns, name_b: &str) {
    ns_a.exec(&["ip", "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b.name()]);
}
