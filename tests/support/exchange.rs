//! Bulk transfers both ways through a `tuntox -L` forward, timed byte by
//! byte: how fast each direction went and the longest wait between two
//! reads (a stall), with every byte checked.
//!
//! A [`Source`] listens in one namespace (the server's side): per
//! connection it sends `down` pattern bytes and checks `up` pattern bytes
//! from the other end, timing its reads. [`exchange`] connects to the
//! forward in another namespace (the client's side), sends `up` bytes and
//! checks `down` bytes while the source does its part, and returns both
//! directions' figures. Both ends half-close when done, as `-L` carries a
//! half-close between two tuntox.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::deadline::Deadline;
use super::e2e::{check_pattern, write_pattern};
use super::netns::Netns;

/// The pattern seed of the download (source to client).
const DOWN_SEED: u64 = 21;
/// The pattern seed of the upload (client to source).
const UP_SEED: u64 = 22;

/// One direction of an exchange.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flow {
    /// Bytes that arrived (and matched the pattern).
    pub bytes: usize,
    /// From the start of the exchange to the first byte.
    pub first_byte: Duration,
    /// From the first byte to the last.
    pub duration: Duration,
    /// The longest wait between two reads, after the first byte.
    pub longest_gap: Duration,
    /// Bytes that had arrived when that wait began.
    pub gap_at: usize,
}

impl Flow {
    /// Throughput in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.duration.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Both directions of an exchange.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exchange {
    /// Source to client.
    pub down: Flow,
    /// Client to source.
    pub up: Flow,
}

/// Bytes that arrived so far in each direction (for a watcher thread).
#[derive(Debug, Default)]
pub struct Progress {
    /// At the client, from the source.
    pub down: AtomicU64,
    /// At the source, from the client.
    pub up: AtomicU64,
}

/// A reader that times its reads.
struct Meter<R> {
    inner: R,
    started: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    bytes: usize,
    longest_gap: Duration,
    gap_at: usize,
    counter: Arc<Progress>,
    down: bool,
}

impl<R: Read> Meter<R> {
    fn new(inner: R, started: Instant, counter: Arc<Progress>, down: bool) -> Self {
        Meter {
            inner,
            started,
            first: None,
            last: None,
            bytes: 0,
            longest_gap: Duration::ZERO,
            gap_at: 0,
            counter,
            down,
        }
    }

    fn flow(&self) -> Flow {
        let first = self.first.unwrap_or(self.started);
        Flow {
            bytes: self.bytes,
            first_byte: first - self.started,
            duration: self.last.unwrap_or(first) - first,
            longest_gap: self.longest_gap,
            gap_at: self.gap_at,
        }
    }
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let now = super::deadline::now();
            if let Some(last) = self.last
                && now - last > self.longest_gap
            {
                self.longest_gap = now - last;
                self.gap_at = self.bytes;
            }
            self.first.get_or_insert(now);
            self.last = Some(now);
            self.bytes += n;
            let counter = if self.down { &self.counter.down } else { &self.counter.up };
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// What the source's side of one connection gives: its verdict on the
/// upload and the upload's figures.
type Verdict = (Result<(), String>, Flow);

/// What the next connection to the source is for: upload and download
/// sizes, when the exchange started, its progress counters.
type Next = (usize, usize, Instant, Arc<Progress>);

/// The far end of the exchanges: listens at `addr` in a namespace.
pub struct Source {
    verdicts: Receiver<Verdict>,
    sizes: Arc<Mutex<Next>>,
}

impl Source {
    /// Listens at `addr` inside `netns`; each connection gets the sizes
    /// of the exchange started last.
    pub fn start(netns: &Netns, addr: SocketAddr) -> Source {
        let listener = netns.run_in(move || TcpListener::bind(addr).expect("bind the source"));
        let (tx, verdicts) = channel();
        let sizes = Arc::new(Mutex::new((0, 0, super::deadline::now(), Arc::new(Progress::default()))));
        let shared = Arc::clone(&sizes);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (up, down, started, progress) = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let tx = tx.clone();
                thread::spawn(move || {
                    let reader = stream.try_clone().expect("clone the stream");
                    let writer = thread::spawn(move || {
                        let result = write_pattern(&stream, DOWN_SEED, down);
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                        result
                    });
                    let mut meter = Meter::new(reader, started, progress, false);
                    let checked = check_pattern(&mut meter, UP_SEED, up);
                    let written =
                        writer.join().unwrap_or(Ok(())).map_err(|e| format!("the source's write failed: {e}"));
                    let _ = tx.send((checked.and(written), meter.flow()));
                });
            }
        });
        Source { verdicts, sizes }
    }
}

/// Connects to `forward` inside `netns` (retrying while it refuses, until
/// `deadline`), sends `up` bytes and reads `down` bytes while the source
/// does the reverse; checks every byte both ways. `progress` counts the
/// bytes as they arrive. Errors say what went wrong and how far it got.
pub fn exchange(
    netns: &Netns,
    forward: SocketAddr,
    source: &Source,
    up: usize,
    down: usize,
    deadline: Deadline,
    progress: Arc<Progress>,
) -> Result<Exchange, String> {
    let started = super::deadline::now();
    *source.sizes.lock().unwrap_or_else(|e| e.into_inner()) = (up, down, started, Arc::clone(&progress));
    let stream = loop {
        match netns.run_in(move || TcpStream::connect_timeout(&forward, Duration::from_secs(1))) {
            Ok(stream) => break stream,
            Err(_) if !deadline.passed() => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("cannot connect to the forward {forward}: {e}")),
        }
    };
    // A stalled exchange ends at the deadline: reads time out then.
    let left = deadline.left().max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;
    let writer = {
        let stream = stream.try_clone().map_err(|e| e.to_string())?;
        thread::spawn(move || {
            let result = write_pattern(&stream, UP_SEED, up);
            let _ = stream.shutdown(std::net::Shutdown::Write);
            result
        })
    };
    let mut meter = Meter::new(&stream, started, Arc::clone(&progress), true);
    let checked = check_pattern(&mut meter, DOWN_SEED, down);
    let down_flow = meter.flow();
    if checked.is_err() {
        // Unblock the writer.
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    let written = writer.join().unwrap_or(Ok(()));
    checked.map_err(|e| format!("download: {e} ({down_flow:?})"))?;
    written.map_err(|e| format!("upload: the client's write failed: {e}"))?;
    let (verdict, up_flow) = source
        .verdicts
        .recv_timeout(deadline.left().max(Duration::from_secs(1)))
        .map_err(|_| format!("the source gave no verdict (download {down_flow:?})"))?;
    verdict.map_err(|e| format!("upload: {e} ({up_flow:?})"))?;
    Ok(Exchange { down: down_flow, up: up_flow })
}
