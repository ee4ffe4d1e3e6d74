//! A link emulator: two network namespaces joined through this process,
//! with a one-way delay, random loss, a rate limit and a drop-tail queue
//! per direction (the kernel here has no netem or tbf qdisc).
//!
//! ```text
//!  namespace A                      this process                       namespace B
//!  dev_a (addr_a peer addr_b) ==> [loss, queue, rate, delay] A->B ==> dev_b (addr_b peer addr_a)
//!                             <== [loss, queue, rate, delay] B->A <==
//! ```
//!
//! Each end is a TUN device (`IFF_TUN | IFF_NO_PI`, MTU 1500, no offloads:
//! without `IFF_VNET_HDR` the kernel hands over only packets that fit the
//! MTU) created in the root namespace and moved into its namespace; the file
//! descriptor keeps working after the move. Point-to-point addresses mean no
//! ARP; IPv6 is off on both devices so only the test's traffic crosses.
//!
//! Per direction, a reader thread takes each packet from the sending device
//! as it arrives (time `t`), drops it with the loss probability, then drops
//! it if the bytes still queued ahead of it (packets whose serialisation has
//! not ended by `t`) exceed the queue limit; otherwise its departure is
//! `max(t, previous departure) + bytes * 8 / rate` and its delivery
//! `departure + delay`. A writer thread sleeps until each delivery time
//! (`clock_nanosleep` on `CLOCK_MONOTONIC` with a 1 µs timer slack) and
//! writes the packet to the other device, so packets leave in order. The
//! threads run at nice -10; [`LinkStats::max_late`] and
//! [`Link::device_drops`] tell when they could not keep up.
//!
//! Parameters change while it runs ([`Link::set`]): a new setting applies
//! to packets that arrive from then on; packets already queued keep the
//! departure they were given. Memory is bounded: at most [`MAX_IN_FLIGHT`]
//! packets per direction between the threads (queued or on the wire); more
//! are dropped and counted as overflow, which a sensible setting never
//! reaches. Dropping a [`Link`] stops its threads and closes the devices,
//! which removes them (also when a test panics).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::netns::Netns;

/// Packets per direction held between the reader and the writer at most
/// (in the queue or in the delay line): 1 Gbit/s of 1500-byte packets for
/// 390 ms.
pub const MAX_IN_FLIGHT: usize = 32_768;
/// The devices' MTU.
pub const MTU: usize = 1500;
/// Packets the kernel holds for a reader (the devices' `txqueuelen`; 500
/// by default): 50 ms at 1 Gbit/s, for a reader descheduled for a while.
const TX_QUEUE: usize = 4096;
/// The threads' nice value: ahead of the processes under test and of
/// whatever else runs, so that delays stay precise on a busy machine.
const NICE: i32 = -10;
/// How often idle threads look at the stop flag.
const TICK: Duration = Duration::from_millis(20);

/// One direction's setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay added after serialisation.
    pub delay: Duration,
    /// Probability that a packet is lost (before the queue), 0 to 1.
    pub loss: f64,
    /// Bits per second of serialisation; 0 means unlimited (no queue).
    pub rate_bps: u64,
    /// Drop-tail limit: a packet is dropped when more than this many bytes
    /// are queued ahead of it. `u64::MAX`: no limit.
    pub queue_bytes: u64,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig { delay: Duration::ZERO, loss: 0.0, rate_bps: 0, queue_bytes: u64::MAX }
    }
}

impl LinkConfig {
    /// No delay, no loss, no rate limit.
    pub fn ideal() -> LinkConfig {
        LinkConfig::default()
    }

    /// With this one-way delay.
    pub fn delay(self, delay: Duration) -> LinkConfig {
        LinkConfig { delay, ..self }
    }

    /// With this one-way delay in milliseconds.
    pub fn delay_ms(self, ms: f64) -> LinkConfig {
        self.delay(Duration::from_secs_f64(ms / 1e3))
    }

    /// With this loss probability (0 to 1).
    pub fn loss(self, loss: f64) -> LinkConfig {
        assert!((0.0..=1.0).contains(&loss), "a loss probability is between 0 and 1, got {loss}");
        LinkConfig { loss, ..self }
    }

    /// With a rate limit in Mbit/s (0: unlimited).
    pub fn rate_mbit(self, mbit: f64) -> LinkConfig {
        LinkConfig { rate_bps: (mbit * 1e6) as u64, ..self }
    }

    /// With a drop-tail queue of `bytes`.
    pub fn queue_bytes(self, bytes: u64) -> LinkConfig {
        LinkConfig { queue_bytes: bytes, ..self }
    }

    /// With a queue of `bdps` bandwidth-delay products of this rate at
    /// round trip `rtt` (at least one full-size packet). Set the rate first.
    pub fn queue_bdp(self, bdps: f64, rtt: Duration) -> LinkConfig {
        assert!(self.rate_bps > 0, "a queue in bandwidth-delay products needs a rate limit");
        let bytes = (bdp_bytes(self.rate_bps, rtt) as f64 * bdps) as u64;
        self.queue_bytes(bytes.max(MTU as u64))
    }
}

/// The bandwidth-delay product in bytes of `rate_bps` at round trip `rtt`.
pub fn bdp_bytes(rate_bps: u64, rtt: Duration) -> u64 {
    (rate_bps as f64 / 8.0 * rtt.as_secs_f64()) as u64
}

/// A direction of a [`Link`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From namespace A's device to namespace B's.
    AToB,
    /// From namespace B's device to namespace A's.
    BToA,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::AToB => 0,
            Direction::BToA => 1,
        }
    }
}

/// What one direction has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkStats {
    /// Packets read from the sending device.
    pub received: u64,
    /// Packets written to the receiving device.
    pub forwarded: u64,
    /// Their bytes.
    pub forwarded_bytes: u64,
    /// Packets dropped by the random loss.
    pub lost: u64,
    /// Packets dropped because the queue was full.
    pub queue_drops: u64,
    /// Packets dropped because [`MAX_IN_FLIGHT`] were already held.
    pub overflow_drops: u64,
    /// Writes the receiving device refused.
    pub write_errors: u64,
    /// The most bytes queued (waiting for or in serialisation) at once
    /// (since [`Link::reset_peaks`]).
    pub max_queue_bytes: u64,
    /// The latest any packet was written after its delivery time (since
    /// [`Link::reset_peaks`]).
    pub max_late: Duration,
    /// The mean lateness of the writes.
    pub mean_late: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    lost: AtomicU64,
    queue_drops: AtomicU64,
    overflow_drops: AtomicU64,
    write_errors: AtomicU64,
    max_queue_bytes: AtomicU64,
    max_late_ns: AtomicU64,
    late_ns_total: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> LinkStats {
        let forwarded = self.forwarded.load(Ordering::Relaxed);
        LinkStats {
            received: self.received.load(Ordering::Relaxed),
            forwarded,
            forwarded_bytes: self.forwarded_bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            queue_drops: self.queue_drops.load(Ordering::Relaxed),
            overflow_drops: self.overflow_drops.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            max_queue_bytes: self.max_queue_bytes.load(Ordering::Relaxed),
            max_late: Duration::from_nanos(self.max_late_ns.load(Ordering::Relaxed)),
            mean_late: Duration::from_nanos(self.late_ns_total.load(Ordering::Relaxed) / forwarded.max(1)),
        }
    }
}

/// One direction's state shared by the [`Link`] and its two threads.
#[derive(Debug)]
struct Shared {
    config: Mutex<LinkConfig>,
    counters: Counters,
}

/// A packet between the reader and the writer.
struct Packet {
    deliver_ns: u64,
    data: Box<[u8]>,
}

/// Two namespaces joined by an emulated link; see the module docs.
#[derive(Debug)]
pub struct Link {
    devs: [String; 2],
    addrs: [Ipv4Addr; 2],
    netns: [String; 2],
    shared: [Arc<Shared>; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Link {
    /// Joins `a` (address `addr_a`) and `b` (address `addr_b`) with a link
    /// whose two directions start with `config`. The device names are
    /// [`Link::dev`]; each namespace reaches the other's address through it
    /// (add routes over it with `ip route add NET dev DEV`).
    ///
    /// Drop the link before the namespaces.
    pub fn between(a: &Netns, b: &Netns, addr_a: Ipv4Addr, addr_b: Ipv4Addr, config: LinkConfig) -> Link {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Unique while this process lives ('n' is not a hex digit, so pid and
        // counter cannot run together); at most 14 characters.
        let base = format!("le{:x}n{n:x}", std::process::id());
        let devs = [format!("{base}a"), format!("{base}b")];
        let stop = Arc::new(AtomicBool::new(false));
        let shared = [0, 1].map(|_| Arc::new(Shared { config: Mutex::new(config), counters: Counters::default() }));
        let mut link = Link {
            devs: devs.clone(),
            addrs: [addr_a, addr_b],
            netns: [a.name().to_owned(), b.name().to_owned()],
            shared,
            stop,
            threads: Vec::new(),
        };
        // From here on, a panic drops `link`, which closes whatever devices exist.
        let fds = [open_tun(&devs[0]), open_tun(&devs[1])].map(Arc::new);
        for (netns, (dev, (mine, peer))) in
            [a, b].into_iter().zip(devs.iter().zip([(addr_a, addr_b), (addr_b, addr_a)]))
        {
            ip(&["link", "set", dev, "netns", netns.name()]);
            let knob = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
            // /proc/sys/net shows the namespace of the thread that opens it.
            netns.run_in(move || std::fs::write(&knob, "1")).unwrap_or_else(|e| panic!("disable IPv6 on {dev}: {e}"));
            netns.exec(&["ip", "link", "set", dev, "mtu", &MTU.to_string(), "txqueuelen", &TX_QUEUE.to_string()]);
            netns.exec(&["ip", "addr", "add", &mine.to_string(), "peer", &peer.to_string(), "dev", dev]);
            netns.exec(&["ip", "link", "set", dev, "up"]);
        }
        for (dir, (from, to)) in [(0, 1), (1, 0)].into_iter().enumerate() {
            let (tx, rx) = sync_channel(MAX_IN_FLIGHT);
            let name = |role: &str| format!("lk{n:x}-{}{}-{role}", ["a", "b"][from], ["a", "b"][to]);
            let reader = Reader {
                fd: Arc::clone(&fds[from]),
                shared: Arc::clone(&link.shared[dir]),
                stop: Arc::clone(&link.stop),
                tx,
                rng: 0x9e37_79b9_7f4a_7c15 ^ (u64::from(n) << 1 | dir as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            };
            let writer = Writer {
                fd: Arc::clone(&fds[to]),
                shared: Arc::clone(&link.shared[dir]),
                stop: Arc::clone(&link.stop),
                rx,
            };
            link.threads.push(spawn(name("rd"), move || reader.run()));
            link.threads.push(spawn(name("wr"), move || writer.run()));
        }
        link
    }

    /// Device name on side A (`Direction::AToB` leaves through it).
    pub fn dev_a(&self) -> &str {
        &self.devs[0]
    }

    /// Device name on side B.
    pub fn dev_b(&self) -> &str {
        &self.devs[1]
    }

    /// Address of side A.
    pub fn addr_a(&self) -> Ipv4Addr {
        self.addrs[0]
    }

    /// Address of side B.
    pub fn addr_b(&self) -> Ipv4Addr {
        self.addrs[1]
    }

    /// The names of the threads moving packets (to check they are gone).
    pub fn thread_names(&self) -> Vec<String> {
        self.threads.iter().filter_map(|t| t.thread().name().map(str::to_owned)).collect()
    }

    /// Changes one direction's setting, for the packets arriving from now on.
    pub fn set(&self, direction: Direction, config: LinkConfig) {
        *self.shared[direction.index()].config.lock().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// Changes both directions' setting.
    pub fn set_both(&self, config: LinkConfig) {
        self.set(Direction::AToB, config);
        self.set(Direction::BToA, config);
    }

    /// One direction's current setting.
    pub fn config(&self, direction: Direction) -> LinkConfig {
        *self.shared[direction.index()].config.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One direction's counters.
    pub fn stats(&self, direction: Direction) -> LinkStats {
        self.shared[direction.index()].counters.snapshot()
    }

    /// Starts the peaks (`max_queue_bytes`, `max_late`) of both directions
    /// again from zero, to see those of one part of a test.
    pub fn reset_peaks(&self) {
        for shared in &self.shared {
            shared.counters.max_queue_bytes.store(0, Ordering::Relaxed);
            shared.counters.max_late_ns.store(0, Ordering::Relaxed);
        }
    }

    /// Packets the kernel dropped on each device (A, B) before this process
    /// read them (its transmit queue overflowed): loss the counters above
    /// do not see. A few `ip` calls; not for a hot loop.
    pub fn device_drops(&self) -> [u64; 2] {
        [0, 1].map(|i| {
            let out = Command::new("ip")
                .args(["-n", &self.netns[i], "-j", "-s", "link", "show", "dev", &self.devs[i]])
                .stdin(Stdio::null())
                .output();
            let json: serde_json::Value =
                out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default();
            json[0]["stats64"]["tx"]["dropped"].as_u64().unwrap_or(0)
        })
    }

    /// Whether device `dev` exists in namespace `netns` (for clean-up checks).
    pub fn device_exists(netns: &str, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", netns, "link", "show", "dev", dev])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The namespaces of sides A and B.
    pub fn netns_names(&self) -> [&str; 2] {
        [&self.netns[0], &self.netns[1]]
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The threads held the last references to the descriptors: the
        // devices went with them.
    }
}

/// Two fresh namespaces, A (10.99.0.1) and B (10.99.0.2), joined by a link.
#[derive(Debug)]
pub struct LinkedPair {
    /// The link (dropped first).
    pub link: Link,
    /// Side A.
    pub a: Netns,
    /// Side B.
    pub b: Netns,
}

impl LinkedPair {
    /// Address of side A.
    pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    /// Address of side B.
    pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    /// Namespaces `TAG-a` and `TAG-b` joined by a link with `config` both ways.
    pub fn new(tag: &str, config: LinkConfig) -> LinkedPair {
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        let link = Link::between(&a, &b, Self::ADDR_A, Self::ADDR_B, config);
        LinkedPair { link, a, b }
    }
}

/// The monotonic clock in nanoseconds (the clock `clock_nanosleep` sleeps on).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until the monotonic clock reads `deadline_ns`.
fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: clock_nanosleep reads one timespec we own; with TIMER_ABSTIME
    // the remainder pointer may be null. EINTR just returns early: the caller loops.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    let run = move || {
        // SAFETY: gettid and setpriority only read and change this thread's
        // scheduling priority; failing (not root) leaves it as it was.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
        f()
    };
    thread::Builder::new().name(name).spawn(run).expect("start a link emulator thread")
}

/// Creates TUN device `name` in this (the root) namespace; non-blocking.
fn open_tun(name: &str) -> OwnedFd {
    // SAFETY: open with a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open /dev/net/tun: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a descriptor we just opened and own alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    assert!(name.len() < ifr.ifr_name.len(), "device name {name} too long");
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq we own, on our descriptor.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    assert!(rc == 0, "TUNSETIFF {name}: {}", std::io::Error::last_os_error());
    fd
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip ({e}); install iproute2 (scripts/test does)"));
    assert!(output.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
}

/// Takes packets from one device and schedules them.
struct Reader {
    fd: Arc<OwnedFd>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    tx: SyncSender<Packet>,
    rng: u64,
}

impl Reader {
    fn run(mut self) {
        let mut buf = vec![0u8; 65536];
        // The packets in the queue: (end of serialisation, bytes), and their sum.
        let mut queue: VecDeque<(u64, u64)> = VecDeque::new();
        let mut queued: u64 = 0;
        let (mut last_departure, mut last_delivery) = (0u64, 0u64);
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        while !self.stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: poll reads and writes one pollfd we own.
            let ready = unsafe { libc::poll(&mut pfd, 1, TICK.as_millis() as i32) };
            if ready <= 0 {
                continue;
            }
            loop {
                // SAFETY: read into a buffer we own, at most its length.
                let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    match std::io::Error::last_os_error().raw_os_error() {
                        Some(libc::EAGAIN | libc::EINTR) => break,
                        // The device is gone (its namespace was deleted): nothing more will come.
                        _ => return,
                    }
                }
                let len = n as u64;
                let now = now_ns();
                counters.received.fetch_add(1, Ordering::Relaxed);
                let config = *shared.config.lock().unwrap_or_else(|e| e.into_inner());
                if config.loss > 0.0 && self.random() < config.loss {
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                while queue.front().is_some_and(|&(end, _)| end <= now) {
                    let (_, bytes) = queue.pop_front().unwrap_or_default();
                    queued -= bytes;
                }
                let departure = if config.rate_bps == 0 {
                    now.max(last_departure)
                } else {
                    if queued > config.queue_bytes {
                        counters.queue_drops.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let serialisation = (u128::from(len) * 8 * 1_000_000_000 / u128::from(config.rate_bps)) as u64;
                    let departure = now.max(last_departure) + serialisation;
                    queue.push_back((departure, len));
                    queued += len;
                    counters.max_queue_bytes.fetch_max(queued, Ordering::Relaxed);
                    departure
                };
                last_departure = departure;
                let delivery = (departure + config.delay.as_nanos() as u64).max(last_delivery);
                last_delivery = delivery;
                let packet = Packet { deliver_ns: delivery, data: buf[..n as usize].into() };
                match self.tx.try_send(packet) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        counters.overflow_drops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
    }

    /// A uniform number in [0, 1) (xorshift64*).
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes packets to the other device at their delivery times.
struct Writer {
    fd: Arc<OwnedFd>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    rx: Receiver<Packet>,
}

impl Writer {
    fn run(self) {
        // The default timer slack (50 µs) would make every wake-up late by that much.
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
        let counters = &self.shared.counters;
        let tick = TICK.as_nanos() as u64;
        loop {
            let packet = match self.rx.recv_timeout(TICK) {
                Ok(packet) => packet,
                Err(RecvTimeoutError::Timeout) if !self.stop.load(Ordering::Relaxed) => continue,
                Err(_) => return,
            };
            loop {
                let now = now_ns();
                if now >= packet.deliver_ns {
                    break;
                }
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                sleep_until(packet.deliver_ns.min(now + tick));
            }
            let late = now_ns().saturating_sub(packet.deliver_ns);
            // SAFETY: write from a buffer we own, its exact length.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.data.as_ptr().cast(), packet.data.len()) };
            if n < 0 {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            counters.forwarded.fetch_add(1, Ordering::Relaxed);
            counters.forwarded_bytes.fetch_add(packet.data.len() as u64, Ordering::Relaxed);
            counters.max_late_ns.fetch_max(late, Ordering::Relaxed);
            counters.late_ns_total.fetch_add(late, Ordering::Relaxed);
        }
    }
}
