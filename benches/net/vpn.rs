//! `vpn`: IP between two namespaces joined by a veth pair, three ways:
//! the bare veth (the ceiling), tuntox's VPN (a `tuntox --vpn` server and
//! a `tuntox vpn up` client, release build, over a namespaced
//! tox-bootstrapd) and WireGuard in user space (`boringtun-cli`, when
//! installed; `scripts/bench vpn` tries `cargo install boringtun-cli`).
//!
//! ```text
//!  client (10.0.0.2) --veth-- server (10.0.0.1, tox-bootstrapd, iperf3 -s)
//!    tuntox0 10.77.0.x           tuntox-srv0 10.77.0.1
//!    ttwg-c  10.88.0.2           ttwg-s      10.88.0.1
//! ```
//!
//! Per path: iperf3 TCP for [`SECS`] s, one stream client to server, one
//! stream server to client (`-R`), [`STREAMS`] streams client to server;
//! then [`PINGS`] pings [`PING_INTERVAL`] apart. CPU is the tunnel
//! processes' (tuntox server and client; both boringtun-cli) from /proc,
//! per test. Without boringtun-cli its row says so and the run ends with
//! status 1 after the table.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tuntox::crypto::SecretKey;

use crate::measure::{Table, cpu_total};
use crate::support::bootstrapd::Bootstrapd;
use crate::support::deadline::Deadline;
use crate::support::netns::{ChildGuard, Netns};
use crate::support::tuntox::Tuntox;

/// Seconds per iperf3 test.
const SECS: u32 = 8;
/// Parallel streams of the multi-stream test.
const STREAMS: u32 = 8;
/// Pings per path, and their spacing.
const PINGS: u32 = 200;
const PING_INTERVAL: &str = "0.01";
const SECRET: &str = "bench-vpn";
/// The WireGuard devices (their UAPI sockets live in /var/run/wireguard,
/// outside the namespaces, so the names must not clash with anyone's).
const WG_SERVER: &str = "ttwg-s";
const WG_CLIENT: &str = "ttwg-c";
const WG_PORT: u16 = 51820;
const WG_MTU: &str = "1420";

/// One way through.
struct Tunnel {
    name: &'static str,
    mtu: String,
    target: &'static str,
    pids: Vec<u32>,
}

#[derive(Debug, Default)]
struct Results {
    /// Mbit/s and the tunnel's CPU seconds, per iperf3 test.
    up: Option<(f64, f64)>,
    down: Option<(f64, f64)>,
    multi: Option<(f64, f64)>,
    /// min / avg / max / mdev ms.
    ping: Option<[f64; 4]>,
}

pub fn run() {
    println!(
        "vpn: iperf3 TCP {SECS} s per test (1 stream up, 1 stream down, {STREAMS} streams up), {PINGS} pings \
         {PING_INTERVAL} s apart; client and server namespaces joined by a veth pair"
    );
    let server_ns = Netns::new("benchvpns");
    let client_ns = Netns::new("benchvpnc");
    server_ns.exec(&["ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", client_ns.name()]);
    server_ns.exec(&["ip", "addr", "add", "10.0.0.1/24", "dev", "veth0"]);
    server_ns.exec(&["ip", "link", "set", "veth0", "up"]);
    client_ns.exec(&["ip", "addr", "add", "10.0.0.2/24", "dev", "veth0"]);
    client_ns.exec(&["ip", "link", "set", "veth0", "up"]);
    let iperf = server_ns
        .command("iperf3")
        .arg("-s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 (scripts/bench installs it)");
    let _iperf = ChildGuard::new(iperf, "iperf3 -s");

    let bootstrapd = Bootstrapd::start(&server_ns);
    let boot = bootstrapd.bootstrap_arg().replacen("127.0.0.1", "10.0.0.1", 1);
    let dir = tempfile::Builder::new().prefix("tt-bench-vpn").tempdir().expect("a temporary directory");
    let mut args: Vec<String> = vec!["-C".into(), dir.path().display().to_string()];
    args.extend(["-s", SECRET, "--bootstrap", &boot, "--no-lan", "--vpn"].map(String::from));
    let mut server = Tuntox::spawn(&server_ns, "bench VPN server", &args);
    let id = server.wait_tox_id();
    let started = Deadline::after(Duration::from_secs(60));
    let args: Vec<String> =
        ["vpn", "up", "--peer", &id, "-s", SECRET, "--bootstrap", &boot, "--no-lan"].map(String::from).to_vec();
    let mut client = Tuntox::spawn(&client_ns, "bench VPN client", &args);
    client.wait_log("the VPN session", |l| l.contains("VPN up: "), started.left());
    println!("tuntox: VPN up {:.1} s after the client started", started.elapsed().as_secs_f64());

    let wireguard = boringtun(&server_ns, &client_ns);
    let mut paths = vec![
        Tunnel { name: "veth", mtu: "1500".into(), target: "10.0.0.1", pids: Vec::new() },
        Tunnel {
            name: "tuntox vpn",
            mtu: vpn::mtu::DEFAULT_MTU.to_string(),
            target: "10.77.0.1",
            pids: vec![server.pid(), client.pid()],
        },
    ];
    let boringtun_missing = match &wireguard {
        Ok(wg) => {
            paths.push(Tunnel {
                name: "boringtun",
                mtu: WG_MTU.into(),
                target: "10.88.0.1",
                pids: wg.iter().map(ChildGuard::id).collect(),
            });
            None
        }
        Err(why) => Some(why.clone()),
    };
    println!();

    let mut results: Vec<Results> = paths.iter().map(|_| Results::default()).collect();
    for (path, result) in paths.iter().zip(&mut results) {
        // A first ping makes sure the path carries packets.
        let warm = client_ns.command("ping").args(["-c", "3", "-W", "2", path.target]).output().expect("ping");
        if !warm.status.success() {
            eprintln!("{}: no answer to ping {}; skipped", path.name, path.target);
            continue;
        }
        result.up = iperf3(&client_ns, path, &[]);
        result.down = iperf3(&client_ns, path, &["-R"]);
        result.multi = iperf3(&client_ns, path, &["-P", &STREAMS.to_string()]);
        result.ping = ping(&client_ns, path.target);
        eprintln!("{}: {result:?}", path.name);
    }
    report(&paths, &results);
    server.terminate(Duration::from_secs(10));
    if let Some(counters) = server.log().iter().rev().find(|l| l.contains("VPN counters:")) {
        println!();
        println!("tuntox server at exit: {}", counters.split("VPN counters: ").nth(1).unwrap_or(counters));
    }
    if let Some(why) = boringtun_missing {
        println!();
        println!("boringtun: not measured: {why}");
        std::process::exit(1);
    }
}

fn report(paths: &[Tunnel], results: &[Results]) {
    let mbit = |r: &Option<(f64, f64)>| r.map_or("-".to_owned(), |(m, _)| format!("{m:.0}"));
    let mut table = Table::new(
        1,
        &[
            "path",
            "MTU",
            "1 stream up Mbit/s",
            "1 stream down Mbit/s",
            &format!("{STREAMS} streams up Mbit/s"),
            "ping avg ms",
            "ping max ms",
            "mdev ms",
        ],
    );
    for (path, r) in paths.iter().zip(results) {
        let p = |i: usize| r.ping.map_or("-".to_owned(), |p| format!("{:.3}", p[i]));
        table.row(vec![
            path.name.to_owned(),
            path.mtu.clone(),
            mbit(&r.up),
            mbit(&r.down),
            mbit(&r.multi),
            p(1),
            p(2),
            p(3),
        ]);
    }
    table.print();
    println!();
    println!("CPU seconds of the tunnel processes per iperf3 test (CPU ms per MB moved):");
    let cpu = |r: &Option<(f64, f64)>| {
        r.map_or("-".to_owned(), |(mbit, cpu)| {
            let mb = mbit * f64::from(SECS) / 8.0;
            format!("{cpu:.2} ({:.2})", cpu * 1e3 / mb.max(1e-9))
        })
    };
    let mut table =
        Table::new(2, &["path", "processes", "1 stream up", "1 stream down", &format!("{STREAMS} streams up")]);
    for (path, r) in paths.iter().zip(results).skip(1) {
        let processes = if path.name == "boringtun" { "boringtun-cli x 2" } else { "tuntox server + client" };
        table.row(vec![path.name.to_owned(), processes.to_owned(), cpu(&r.up), cpu(&r.down), cpu(&r.multi)]);
    }
    table.print();
}

/// One iperf3 run from the client namespace: Mbit/s received and the
/// path's CPU seconds meanwhile.
fn iperf3(client_ns: &Netns, path: &Tunnel, extra: &[&str]) -> Option<(f64, f64)> {
    let cpu = cpu_total(&path.pids);
    let out = client_ns
        .command("iperf3")
        .args(["-c", path.target, "-t", &SECS.to_string(), "-J"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("iperf3");
    let cpu = cpu_total(&path.pids) - cpu;
    let json: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}: iperf3 {extra:?}: no JSON ({e}): {}", path.name, String::from_utf8_lossy(&out.stderr));
            return None;
        }
    };
    match json["end"]["sum_received"]["bits_per_second"].as_f64() {
        Some(bps) => Some((bps / 1e6, cpu)),
        None => {
            eprintln!("{}: iperf3 {extra:?}: {}", path.name, json["error"]);
            None
        }
    }
}

/// min / avg / max / mdev of the round trips, in ms.
fn ping(client_ns: &Netns, target: &str) -> Option<[f64; 4]> {
    let out = client_ns
        .command("ping")
        .args(["-q", "-c", &PINGS.to_string(), "-i", PING_INTERVAL, "-W", "2", target])
        .output()
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("rtt "))?;
    let figures = line.split(" = ").nth(1)?.split_whitespace().next()?;
    let v: Vec<f64> = figures.split('/').filter_map(|f| f.parse().ok()).collect();
    <[f64; 4]>::try_from(v).ok()
}

/// Two boringtun-cli processes, one per namespace, configured over their
/// UAPI sockets; or why not.
fn boringtun(server_ns: &Netns, client_ns: &Netns) -> Result<[ChildGuard; 2], String> {
    let found = Command::new("sh").args(["-c", "command -v boringtun-cli"]).output();
    if !found.is_ok_and(|o| o.status.success()) {
        return Err("boringtun-cli is not on PATH (cargo install boringtun-cli)".to_owned());
    }
    let server_key = SecretKey::from_bytes([0x51; 32]);
    let client_key = SecretKey::from_bytes([0xc1; 32]);
    let hex = |b: &[u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let start = |ns: &Netns, name: &str| -> Result<ChildGuard, String> {
        let child = ns
            .command("boringtun-cli")
            .args(["--foreground", "--disable-drop-privileges", name])
            .env("WG_LOG_LEVEL", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start boringtun-cli: {e}"))?;
        Ok(ChildGuard::new(child, name))
    };
    let server = start(server_ns, WG_SERVER)?;
    let client = start(client_ns, WG_CLIENT)?;
    uapi(
        WG_SERVER,
        &format!(
            "set=1\nprivate_key={}\nlisten_port={WG_PORT}\nreplace_peers=true\npublic_key={}\nallowed_ip=10.88.0.2/32\n\n",
            hex(server_key.as_bytes()),
            hex(client_key.public_key().as_bytes())
        ),
    )?;
    uapi(
        WG_CLIENT,
        &format!(
            "set=1\nprivate_key={}\nreplace_peers=true\npublic_key={}\nendpoint=10.0.0.1:{WG_PORT}\nallowed_ip=10.88.0.0/24\n\n",
            hex(client_key.as_bytes()),
            hex(server_key.public_key().as_bytes())
        ),
    )?;
    for (ns, dev, addr) in [(server_ns, WG_SERVER, "10.88.0.1/24"), (client_ns, WG_CLIENT, "10.88.0.2/24")] {
        ns.exec(&["ip", "addr", "add", addr, "dev", dev]);
        ns.exec(&["ip", "link", "set", dev, "mtu", WG_MTU, "up"]);
    }
    Ok([server, client])
}

/// Sends one UAPI request to a boringtun device (waiting, bounded, for its
/// socket) and checks the answer.
fn uapi(device: &str, request: &str) -> Result<(), String> {
    let path = Path::new("/var/run/wireguard").join(format!("{device}.sock"));
    let deadline = Deadline::after(Duration::from_secs(10));
    let mut stream = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e) if deadline.passed() => return Err(format!("{}: {e}", path.display())),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut answer = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.is_empty() {
            break;
        }
        answer.push_str(&line);
    }
    if answer == "errno=0" { Ok(()) } else { Err(format!("{device}: UAPI answered {answer:?}")) }
}
