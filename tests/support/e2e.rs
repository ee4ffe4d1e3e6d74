//! A tuntox server and client as real processes in one namespace with a
//! tox-bootstrapd, and TCP services inside the namespace for them to reach.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::bootstrapd::Bootstrapd;
use super::deadline::Deadline;
use super::netns::Netns;
use super::tuntox::{Tuntox, config_dir_args, local_network_args};

/// The shared secret of these tests.
pub const SECRET: &str = "e2e-secret";

/// A namespace with a bootstrap node and a running tuntox server.
pub struct Fixture {
    /// Dropped last: everything runs inside.
    pub netns: Netns,
    /// The local bootstrap node.
    pub bootstrapd: Bootstrapd,
    /// The server process.
    pub server: Tuntox,
    /// Its Tox ID.
    pub server_id: String,
    /// The server's config directory.
    pub dir: tempfile::TempDir,
    clients: u16,
}

impl Fixture {
    /// Starts a server with `-s SECRET` and `extra` arguments.
    pub fn new(tag: &str, extra: &[&str]) -> Fixture {
        let netns = Netns::new(tag);
        let bootstrapd = Bootstrapd::start(&netns);
        let dir = tempfile::tempdir().unwrap();
        let mut server = Tuntox::spawn(&netns, "server", &Self::server_args(dir.path(), &bootstrapd, extra));
        let server_id = server.wait_tox_id();
        Fixture { netns, bootstrapd, server, server_id, dir, clients: 0 }
    }

    fn server_args(dir: &Path, bootstrapd: &Bootstrapd, extra: &[&str]) -> Vec<String> {
        let mut args = config_dir_args(dir);
        args.extend(["-s", SECRET, "-u", "34000:34099"].map(String::from));
        args.extend(local_network_args(&bootstrapd.bootstrap_arg()));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    /// Starts the server again with the same identity (after a kill).
    pub fn restart_server(&mut self, extra: &[&str]) {
        self.server = Tuntox::spawn(
            &self.netns,
            "server (restarted)",
            &Self::server_args(self.dir.path(), &self.bootstrapd, extra),
        );
        let id = self.server.wait_tox_id();
        assert_eq!(id, self.server_id, "the restarted server keeps its identity");
    }

    /// Arguments for a client of this server: `-i ID`, the local network
    /// and the given flags (add `-s` yourself).
    pub fn client_args(&mut self, flags: &[&str]) -> Vec<String> {
        self.clients += 1;
        let first = 34100 + self.clients * 100;
        let mut args =
            vec!["-i".to_owned(), self.server_id.clone(), "-u".to_owned(), format!("{first}:{}", first + 99)];
        args.extend(local_network_args(&self.bootstrapd.bootstrap_arg()));
        args.extend(flags.iter().map(|s| (*s).to_owned()));
        args
    }

    /// Starts a client with `-s SECRET` and `flags`.
    pub fn client(&mut self, label: &str, flags: &[&str]) -> Tuntox {
        let mut all = vec!["-s", SECRET];
        all.extend_from_slice(flags);
        let args = self.client_args(&all);
        Tuntox::spawn(&self.netns, label, &args)
    }

    /// Connects to `addr` from inside the namespace, retrying while it
    /// refuses (a listener still starting), for at most `timeout`.
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> TcpStream {
        let deadline = Deadline::after(timeout);
        loop {
            match self.netns.run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2))) {
                Ok(stream) => return stream,
                Err(e) if !deadline.passed() => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot connect to {addr} within {timeout:?}: {e}"),
            }
        }
    }

    /// Binds a listener inside the namespace.
    pub fn listen(&self, addr: &str) -> TcpListener {
        let addr: SocketAddr = addr.parse().unwrap();
        self.netns.run_in(move || TcpListener::bind(addr).expect("bind inside the namespace"))
    }
}

/// Waits until the client logs that it reached the server.
pub fn wait_client_connected(client: &mut Tuntox, timeout: Duration) {
    client.wait_log("the connection to the server", |l| l.contains("connected to the server"), timeout);
}

/// A deterministic byte stream: `len` bytes from `seed`, the same however
/// it is cut into reads.
pub struct Pattern {
    rng: ChaCha20Rng,
    block: [u8; 64],
    used: usize,
    left: usize,
}

impl Pattern {
    /// The stream of `len` bytes from `seed`.
    pub fn new(seed: u64, len: usize) -> Pattern {
        Pattern { rng: ChaCha20Rng::seed_from_u64(seed), block: [0; 64], used: 64, left: len }
    }

    /// The next bytes (at most `buf.len()`); 0 at the end.
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.left);
        let mut done = 0;
        while done < n {
            if self.used == self.block.len() {
                self.rng.fill_bytes(&mut self.block);
                self.used = 0;
            }
            let take = (n - done).min(self.block.len() - self.used);
            buf[done..done + take].copy_from_slice(&self.block[self.used..self.used + take]);
            self.used += take;
            done += take;
        }
        self.left -= n;
        n
    }
}

/// Writes `len` pattern bytes from `seed`.
pub fn write_pattern(mut w: impl Write, seed: u64, len: usize) -> std::io::Result<()> {
    let mut pattern = Pattern::new(seed, len);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = pattern.fill(&mut buf);
        if n == 0 {
            return w.flush();
        }
        w.write_all(&buf[..n])?;
    }
}

/// Reads until EOF and checks that exactly the `len` pattern bytes from
/// `seed` arrived. Returns a description of the first difference.
pub fn check_pattern(mut r: impl Read, seed: u64, len: usize) -> Result<(), String> {
    let mut pattern = Pattern::new(seed, len);
    let mut expected = vec![0u8; 64 * 1024];
    let mut got = vec![0u8; 64 * 1024];
    let mut offset = 0usize;
    loop {
        let n = r.read(&mut got).map_err(|e| format!("read failed at byte {offset}: {e}"))?;
        if n == 0 {
            return if offset == len { Ok(()) } else { Err(format!("EOF after {offset} of {len} bytes")) };
        }
        let mut checked = 0;
        while checked < n {
            let want = pattern.fill(&mut expected[..n - checked]);
            if want == 0 {
                return Err(format!("{} bytes more than the {len} expected", n - checked));
            }
            if got[checked..checked + want] != expected[..want] {
                let at = (0..want).find(|&i| got[checked + i] != expected[i]).unwrap_or(0);
                return Err(format!("byte {} differs", offset + checked + at));
            }
            checked += want;
        }
        offset += n;
    }
}

/// A server that, per connection, sends `down` pattern bytes (seed
/// `down_seed`) and checks `up` pattern bytes (seed `up_seed`) then closes.
/// Each connection's verdict arrives on the receiver.
pub fn dual_server(
    listener: TcpListener,
    down_seed: u64,
    down: usize,
    up_seed: u64,
    up: usize,
) -> Receiver<Result<(), String>> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let tx = tx.clone();
            thread::spawn(move || {
                let reader = stream.try_clone().unwrap();
                let writer = thread::spawn(move || {
                    let result = write_pattern(&stream, down_seed, down);
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    result
                });
                let checked = check_pattern(reader, up_seed, up);
                let written = writer.join().unwrap().map_err(|e| format!("write failed: {e}"));
                let _ = tx.send(checked.and(written));
            });
        }
    });
    rx
}

/// An echo server: every connection gets its bytes back until EOF.
pub fn echo_server(listener: TcpListener) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

/// Sends `data` and reads the same number of bytes back.
pub fn echo_roundtrip(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(data)?;
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}
