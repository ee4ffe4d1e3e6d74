//! `tuntox netcheck` on home routers of each kind (tests/support/homenet.rs),
//! with two tox-bootstrapd on two public hosts: it tells an
//! endpoint-independent mapping (plain MASQUERADE) from a port per
//! destination (MASQUERADE --random-fully) and from UDP blocked by the
//! router, finds miniupnpd's PCP, NAT-PMP and UPnP IGD with the router's
//! external address, times the TCP relays, and exits 1 when nothing at all
//! answers.
//!
//! Needs root (namespaces), tox-bootstrapd and miniupnpd; never skips.

mod support;

use std::process::{Output, Stdio};

use serde_json::Value;
use support::bootstrapd::{Bootstrapd, BootstrapdConfig};
use support::homenet::{Home, Internet, NatKind, PUBLIC_IPS};
use support::tuntox::binary;

/// Two bootstrap nodes on the two public hosts.
struct Bed {
    internet: Internet,
    daemons: Vec<Bootstrapd>,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        let internet = Internet::new(tag);
        let daemons = internet.hosts.iter().map(|h| Bootstrapd::start_with(h, BootstrapdConfig::default())).collect();
        Bed { internet, daemons }
    }

    /// `--bootstrap` for both nodes and `--relay` for the first one's relay.
    fn args(&self, relay: bool) -> Vec<String> {
        let mut args = vec!["--no-lan".to_owned()];
        for (ip, daemon) in PUBLIC_IPS.iter().zip(&self.daemons) {
            args.push("--bootstrap".to_owned());
            args.push(format!("{ip}:{}:{}", daemon.udp_port, daemon.public_key_hex));
        }
        if relay {
            args.push("--relay".to_owned());
            args.push(format!("{}:{}:{}", PUBLIC_IPS[0], self.daemons[0].tcp_port, self.daemons[0].public_key_hex));
        }
        args
    }
}

fn netcheck(home: &Home, args: &[String], extra: &[&str]) -> Output {
    home.host
        .command(binary())
        .arg("netcheck")
        .args(args)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run tuntox netcheck")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON report; status 0 expected.
fn report(home: &Home, args: &[String], extra: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(extra);
    let out = netcheck(home, args, &all);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn a_cone_nat_is_endpoint_independent_and_miniupnpd_is_found() {
    let bed = Bed::new("ncc");
    let mut home = Home::new(&bed.internet, NatKind::Cone);
    home.start_miniupnpd(2);
    let report = report(&home, &bed.args(true), &[]);
    assert_eq!(report["udp"], true, "{report:#}");
    assert_eq!(report["nat"], "endpoint-independent", "{report:#}");
    let port = report["local_port"].as_u64().unwrap();
    assert_eq!(report["external"], format!("{}:{port}", home.public_ip), "MASQUERADE keeps the port: {report:#}");
    let nodes = report["dht_nodes"].as_array().unwrap();
    assert!(nodes.iter().filter(|n| n["sees_us_at"].is_string()).count() >= 2, "{report:#}");
    assert!(nodes.iter().all(|n| n["rtt_ms"].is_number()), "{report:#}");
    let portmap = &report["portmap"];
    assert_eq!(portmap["gateway"], "10.9.0.1", "{report:#}");
    for (i, name) in ["pcp", "nat-pmp", "upnp"].iter().enumerate() {
        let found = &portmap["protocols"][i];
        assert_eq!(found["protocol"], *name, "{report:#}");
        assert_eq!(found["external_ip"], home.public_ip, "{name}: {report:#}");
    }
    let relay = &report["tcp_relays"][0];
    assert!(relay["connect_ms"].is_number() && relay["handshake_ms"].is_number(), "{report:#}");
    // PCP's test mapping is gone.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(home.port_forwards().is_empty(), "{:?}", home.port_forwards());

    // The text says the same in words.
    let out = netcheck(&home, &bed.args(true), &[]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    eprintln!("{said}");
    assert!(said.contains("NAT mapping:  endpoint-independent mapping"), "{said}");
    assert!(said.contains("UDP:          usable"), "{said}");
    assert!(said.contains("Port mapping: gateway 10.9.0.1 answers PCP (external address"), "{said}");
    assert!(said.contains("UPnP IGD (external address"), "{said}");
}

#[test]
fn a_random_port_nat_gives_a_port_per_destination() {
    let bed = Bed::new("ncr");
    let home = Home::new(&bed.internet, NatKind::RandomPort);
    let report = report(&home, &bed.args(false), &["--no-portmap"]);
    assert_eq!(report["udp"], true, "{report:#}");
    assert_eq!(report["nat"], "port-per-destination", "{report:#}");
    assert_eq!(report["external"], Value::Null, "{report:#}");
    assert_eq!(report["portmap"], Value::Null, "--no-portmap: {report:#}");
    let seen: Vec<&str> =
        report["dht_nodes"].as_array().unwrap().iter().filter_map(|n| n["sees_us_at"].as_str()).collect();
    assert!(seen.len() >= 2 && seen.iter().all(|s| s.starts_with(&format!("{}:", home.public_ip))), "{report:#}");
    let out = netcheck(&home, &bed.args(false), &["--no-portmap"]);
    assert!(text(&out.stdout).contains("NAT mapping:  port per destination"), "{}", text(&out.stdout));
}

#[test]
fn udp_dropped_by_the_router_is_udp_blocked() {
    let bed = Bed::new("ncb");
    let home = Home::new(&bed.internet, NatKind::UdpBlocked);
    let report = report(&home, &bed.args(true), &["--timeout", "4"]);
    assert_eq!(report["udp"], false, "{report:#}");
    assert_eq!(report["nat"], "udp-blocked", "{report:#}");
    let relay = &report["tcp_relays"][0];
    assert!(relay["handshake_ms"].is_number(), "TCP still works: {report:#}");
    assert_eq!(report["portmap"]["protocols"][0]["external_ip"], Value::Null, "no port mapping here: {report:#}");

    // Without a working relay nothing answers: status 1, and the report.
    let out = netcheck(&home, &bed.args(false), &["--timeout", "4", "--no-portmap"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}{}", text(&out.stderr));
    assert!(said.contains("UDP:          blocked") && said.contains("NAT mapping:  UDP blocked"), "{said}");
    assert!(text(&out.stderr).contains("neither UDP nor any TCP relay answered"), "{}", text(&out.stderr));
}
