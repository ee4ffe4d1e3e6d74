//! Port forwarding end to end: `tuntox` server and client processes in a
//! network namespace with a local tox-bootstrapd, forwarding to TCP
//! services inside the namespace. `-L` with 200 MB each way and eight
//! parallel connections, `-W` as ssh's ProxyCommand against a real sshd,
//! `-D` with curl, `-p`, refusals (secret, allow-list, rules), and a server
//! killed and restarted under a running client.
//!
//! Needs root (network namespaces), toxcore-utils, openssh and curl; run
//! through `scripts/test`, which installs them. It never skips.

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use support::deadline::Deadline;
use support::e2e::*;
use support::tuntox::Tuntox;

const CONNECT: Duration = Duration::from_secs(60);

#[test]
fn local_forward_moves_200_megabytes_each_way_and_serves_8_connections() {
    const LEN: usize = 200 << 20;
    let mut fx = Fixture::new("fwdbig", &[]);
    let big = dual_server(fx.listen("127.0.0.1:7001"), 11, LEN, 12, LEN);
    let mut client = fx.client("client", &["-L", "7101:127.0.0.1:7001"]);
    wait_client_connected(&mut client, CONNECT);

    let start = Deadline::after(Duration::from_secs(600));
    let stream = fx.connect("127.0.0.1:7101".parse().unwrap(), Duration::from_secs(5));
    let reader = stream.try_clone().unwrap();
    let up = thread::spawn(move || {
        let result = write_pattern(&stream, 12, LEN);
        let _ = stream.shutdown(Shutdown::Write);
        result
    });
    check_pattern(reader, 11, LEN).unwrap_or_else(|e| client.fail(&format!("download: {e}")));
    up.join().unwrap().unwrap();
    big.recv_timeout(start.left()).unwrap().unwrap_or_else(|e| client.fail(&format!("upload: {e}")));
    let secs = start.elapsed().as_secs_f64();
    eprintln!("200 MB each way through -L in {secs:.1} s ({:.1} MB/s each way)", 200.0 / secs);

    // Eight at once, each 4 MB down and 3 MB up.
    let parallel = dual_server(fx.listen("127.0.0.1:7002"), 21, 4 << 20, 22, 3 << 20);
    let mut client8 = fx.client("client8", &["-L", "7102:127.0.0.1:7002"]);
    wait_client_connected(&mut client8, CONNECT);
    let conns: Vec<_> = (0..8)
        .map(|_| {
            let stream = fx.connect("127.0.0.1:7102".parse().unwrap(), Duration::from_secs(5));
            thread::spawn(move || {
                let reader = stream.try_clone().unwrap();
                let up = thread::spawn(move || {
                    let result = write_pattern(&stream, 22, 3 << 20);
                    let _ = stream.shutdown(Shutdown::Write);
                    result
                });
                let down = check_pattern(reader, 21, 4 << 20);
                up.join().unwrap().map_err(|e| e.to_string()).and(down)
            })
        })
        .collect();
    for conn in conns {
        conn.join().unwrap().unwrap_or_else(|e| client8.fail(&format!("a parallel connection: {e}")));
    }
    for _ in 0..8 {
        parallel.recv_timeout(Duration::from_secs(60)).unwrap().unwrap();
    }
}

#[test]
fn ssh_through_the_stdio_forward_prints_hi() {
    let mut fx = Fixture::new("fwdssh", &[]);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id");
    let host_key = keys.path().join("host");
    for path in [&key, &host_key] {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .expect("ssh-keygen (openssh-client) is installed by scripts/test");
        assert!(status.success());
    }
    std::fs::copy(keys.path().join("id.pub"), keys.path().join("authorized_keys")).unwrap();
    let config = keys.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port 2200\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin \
             prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes \
             no\nPidFile none\n",
            host_key.display(),
            keys.path().join("authorized_keys").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let sshd = fx
        .netns
        .command("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sshd (openssh-server) is installed by scripts/test");
    let _sshd = support::netns::ChildGuard::new(sshd, "sshd");
    // sshd is up once it accepts.
    drop(fx.connect("127.0.0.1:2200".parse().unwrap(), Duration::from_secs(10)));

    let mut args = fx.client_args(&["-s", SECRET, "-W", "127.0.0.1:2200"]);
    args.insert(0, support::tuntox::binary().to_owned());
    let proxy = args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ");
    let output = fx
        .netns
        .command("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=90", "-i"])
        .arg(&key)
        .args(["-o", &format!("ProxyCommand={proxy}"), "root@tuntox-server", "echo", "hi"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout == "hi\n",
        "ssh: {} stdout {stdout:?} stderr {}\nserver log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        fx.server.log().join("\n")
    );
}

#[test]
fn socks_forward_serves_curl() {
    let mut fx = Fixture::new("fwdsocks", &[]);
    let web = fx.listen("127.0.0.1:8081");
    thread::spawn(move || {
        for stream in web.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = "served through tuntox -D\n";
            let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    let mut client = fx.client("socks client", &["-D", "1080"]);
    wait_client_connected(&mut client, CONNECT);
    let output = fx
        .netns
        .command("curl")
        .args(["-sS", "--max-time", "30", "--socks5-hostname", "127.0.0.1:1080", "http://localhost:8081/"])
        .output()
        .expect("curl is installed by scripts/test");
    assert!(output.status.success(), "curl: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "served through tuntox -D\n");
}

#[test]
fn ping_mode_prints_round_trips() {
    let mut fx = Fixture::new("fwdping", &[]);
    let mut args = fx.client_args(&["-s", SECRET]);
    // `tuntox ping -i TOXID -c 3`: the server named as everywhere else.
    args.splice(0..0, ["ping".to_owned()]);
    args.extend(["-c".to_owned(), "3".to_owned()]);
    let output = fx.netns.command(support::tuntox::binary()).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tuntox ping: {} {stdout} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("pong from the server: seq=")).count(), 3, "{stdout}");
    assert!(stdout.contains("3 sent, 3 received"), "{stdout}");
}

#[test]
fn refusals_are_reported_on_both_sides() {
    let mut fx = Fixture::new("fwdrefuse", &["-f", "/dev/null"]);
    // A wrong secret: the client gives up after --connect-timeout, saying
    // where it got to.
    let args = fx.client_args(&["-s", "wrong", "-W", "127.0.0.1:9", "--connect-timeout", "10"]);
    let output = fx.netns.command(support::tuntox::binary()).args(&args).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not accept us within 10 s (--connect-timeout): "), "{stderr}");
    assert!(stderr.contains("waiting for the server to accept our friend request"), "{stderr}");
    fx.server.wait_log("the refusal", |l| l.contains("wrong shared secret"), Duration::from_secs(5));

    // The rules (an empty file) deny every destination.
    let args = fx.client_args(&["-s", SECRET, "-W", "127.0.0.1:9"]);
    let output = fx.netns.command(support::tuntox::binary()).args(&args).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "the client names the denied destination: {stderr}");
    fx.server.wait_log(
        "the denial",
        |l| l.contains("127.0.0.1:9") && l.contains("not allowed by the server's rules"),
        Duration::from_secs(5),
    );
}

#[test]
fn a_client_not_on_the_allow_list_is_refused() {
    // Allow only some other key.
    let other = "A".repeat(64);
    let mut fx = Fixture::new("fwdallow", &["-i", &other]);
    let args = fx.client_args(&["-s", SECRET, "-W", "127.0.0.1:9", "--connect-timeout", "20"]);
    let output = fx.netns.command(support::tuntox::binary()).args(&args).stdin(Stdio::null()).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    fx.server.wait_log("the refusal", |l| l.contains("not on the -i allow-list"), Duration::from_secs(5));
}

#[test]
fn the_client_recovers_when_the_server_is_killed_and_restarted() {
    let mut fx = Fixture::new("fwdrestart", &[]);
    echo_server(fx.listen("127.0.0.1:7003"));
    // With its own identity (-C) the client is saved by the server, which
    // takes it back as soon as it runs again (a throwaway client, without
    // -C, is not saved: it has to ask again).
    let conf = tempfile::tempdir().unwrap();
    let mut client = fx.client("client", &["-C", &conf.path().display().to_string(), "-L", "7103:127.0.0.1:7003"]);
    wait_client_connected(&mut client, CONNECT);
    let mut s = fx.connect("127.0.0.1:7103".parse().unwrap(), Duration::from_secs(5));
    assert_eq!(echo_roundtrip(&mut s, b"before").unwrap(), b"before");

    fx.server.kill();
    // During the outage the open tunnel ends and new ones are refused
    // promptly once the client knows: within 10 s, as a tunnel is open.
    let killed = support::deadline::now();
    client.wait_log("the loss", |l| l.contains("lost the server"), Duration::from_secs(10));
    eprintln!("the client noticed the loss {:?} after the kill", killed.elapsed());
    let mut during = fx.connect("127.0.0.1:7103".parse().unwrap(), Duration::from_secs(5));
    during.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(during.read(&mut buf), Ok(0) | Err(_)), "closed during the outage");

    fx.restart_server(&[]);
    let back = Deadline::after(Duration::from_secs(10));
    loop {
        let mut s = fx.connect("127.0.0.1:7103".parse().unwrap(), Duration::from_secs(5));
        match echo_roundtrip(&mut s, b"after") {
            Ok(echoed) if echoed == b"after" => break,
            _ if !back.passed() => thread::sleep(Duration::from_millis(200)),
            other => client.fail(&format!("no working tunnel within 10 s of the restart: {other:?}")),
        }
    }
    eprintln!("the -L worked again {:?} after the restart", back.elapsed());
}

#[test]
fn stdio_forward_exits_when_the_tunnel_ends() {
    let mut fx = Fixture::new("fwdstdio", &[]);
    echo_server(fx.listen("127.0.0.1:7004"));
    let args = fx.client_args(&["-s", SECRET, "-W", "127.0.0.1:7004"]);
    let mut client = Tuntox::spawn_with(&fx.netns, "stdio client", &args, Stdio::piped(), Stdio::piped());
    let mut stdin = client.child_mut().stdin.take().unwrap();
    let mut stdout = client.child_mut().stdout.take().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let expected = data.clone();
    let writer = thread::spawn(move || {
        stdin.write_all(&data).unwrap();
        // Closing standard input half-closes the tunnel; the echo server
        // then closes its side and the client exits.
    });
    let mut echoed = Vec::new();
    stdout.read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    assert!(echoed == expected, "echoed {} of {} bytes", echoed.len(), expected.len());
    let status = client.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}
