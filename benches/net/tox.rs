//! `tox`: custom packets between two Tox nodes on loopback, ours against
//! libtoxcore 0.2.18, in one namespace with one tox-bootstrapd.
//!
//! Two of our nodes run in this process (the `Tox` handle of
//! src/driver/tox.rs, one tokio runtime), sealing with Tox's own cipher as
//! libtoxcore does (AEGIS-256, which two tuntox peers agree on, is off). Two libtoxcore peers run as
//! processes (tests/interop/toxpeer.c, iterating at least every 1 ms) and
//! send with their `flood` command, so the packets are made in C. Each
//! round sends [`COUNT`] packets of [`SIZE`] bytes one way, lossless then
//! lossy, as fast as the sender accepts them; rounds alternate between the
//! pairs. Lossless is timed from the first send to the last packet
//! received; lossy to the last packet received, and its delivery ratio is
//! received over sent. CPU is both ends together: for our nodes this
//! process, for libtoxcore both peer processes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tuntox::crypto::PublicKey;
use tuntox::driver::tox::{Tox, ToxEvent, ToxSender};

use crate::measure::{Table, cpu_self, cpu_total, spread};
use crate::support::bootstrapd::Bootstrapd;
use crate::support::deadline::{Deadline, now};
use crate::support::netns::Netns;
use crate::support::tox::{befriend, config};
use crate::support::toxpeer::{PeerOptions, ToxPeer};

/// Bytes per packet: the largest custom packet (id byte included).
const SIZE: usize = 1373;
/// Packets per measurement.
const COUNT: u64 = 20_000;
/// Rounds per pair and kind.
const ROUNDS: usize = 3;
/// Longest a measurement may take; a pair that needs longer is reported as capped.
const CAP: Duration = Duration::from_secs(20);
/// A lossy measurement ends this long after the last packet, once all were sent.
const QUIET: Duration = Duration::from_millis(500);

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    sent: u64,
    received: u64,
    secs: f64,
    cpu: f64,
    capped: bool,
}

impl Sample {
    fn mb_per_s(&self) -> f64 {
        (self.received * SIZE as u64) as f64 / 1e6 / self.secs
    }

    fn packets_per_s(&self) -> f64 {
        self.received as f64 / self.secs
    }

    fn delivered(&self) -> f64 {
        self.received as f64 / self.sent.max(1) as f64
    }

    fn cpu_ms_per_mb(&self) -> f64 {
        self.cpu * 1e3 / ((self.received * SIZE as u64) as f64 / 1e6).max(1e-9)
    }
}

/// Which pair and kind a row of results is.
#[derive(Debug, Default)]
struct Series {
    samples: Vec<Sample>,
    /// Set once a measurement hit [`CAP`]: the pair is not measured again.
    stopped: bool,
}

impl Series {
    fn push(&mut self, sample: Sample) {
        self.stopped |= sample.capped;
        self.samples.push(sample);
    }
}

struct Ours {
    rt: Runtime,
    cancel: CancellationToken,
    sender: ToxSender,
    receiver: Tox,
    sender_key: PublicKey,
    receiver_key: PublicKey,
}

struct Theirs {
    sender: ToxPeer,
    receiver: ToxPeer,
    friend: u32,
}

pub fn run() {
    let netns = Netns::new("benchtox");
    let bootstrapd = Bootstrapd::start(&netns);
    println!(
        "tox: custom packets of {SIZE} bytes, {COUNT} per measurement, {ROUNDS} rounds, one direction; \
         median (min-max)"
    );

    // Both pairs connect at the same time: libtoxcore's peers in the background.
    let start = Deadline::after(Duration::from_secs(120));
    let peer = |name: &str, accept: Option<&str>| PeerOptions {
        bootstrap: vec![bootstrapd.bootstrap_arg()],
        quiet_packets: true,
        interval_ms: Some(1),
        accept: accept.map(str::to_owned),
        ..PeerOptions::new(name)
    };
    let receiver = ToxPeer::spawn(&netns, &peer("c-receiver", Some("any")));
    let mut sender = ToxPeer::spawn(&netns, &peer("c-sender", None));
    let friend = sender.add_friend(receiver.address(), "bench");
    let mut theirs = Theirs { sender, receiver, friend };

    let mut ours = start_ours(&netns, &bootstrapd, &start);
    let ours_connected = start.elapsed();
    let how = theirs.sender.wait_connected(friend, start.left());
    let theirs_connected = start.elapsed();
    println!(
        "connected: our nodes in {:.1} s (udp), libtoxcore peers in {:.1} s ({how}), both started together",
        ours_connected.as_secs_f64(),
        theirs_connected.as_secs_f64()
    );
    println!();

    let mut results: [Series; 4] = Default::default();
    for round in 0..ROUNDS {
        for (i, lossy) in [false, true].into_iter().enumerate() {
            let kind = if lossy { "lossy" } else { "lossless" };
            if !results[2 * i].stopped {
                let sample = ours.measure(lossy);
                eprintln!("round {}: ours {kind}: {sample:?}", round + 1);
                results[2 * i].push(sample);
            }
            if !results[2 * i + 1].stopped {
                let sample = theirs.measure(lossy);
                eprintln!("round {}: libtoxcore {kind}: {sample:?}", round + 1);
                results[2 * i + 1].push(sample);
            }
        }
    }

    let mut table =
        Table::new(2, &["pair", "kind", "MB/s", "packets/s", "delivered %", "CPU s (both ends)", "CPU ms per MB"]);
    let names = ["tuntox nodes", "libtoxcore 0.2.18", "tuntox nodes", "libtoxcore 0.2.18"];
    for (i, series) in results.iter().enumerate() {
        let s = &series.samples;
        let of = |f: fn(&Sample) -> f64| s.iter().map(f).collect::<Vec<f64>>();
        let capped = if s.iter().any(|x| x.capped) { " (capped)" } else { "" };
        table.row(vec![
            format!("{}{capped}", names[i]),
            if i < 2 { "lossless" } else { "lossy" }.to_owned(),
            spread(&of(Sample::mb_per_s), 1),
            spread(&of(Sample::packets_per_s), 0),
            spread(&of(|x| 100.0 * x.delivered()), 1),
            spread(&of(|x| x.cpu), 2),
            spread(&of(Sample::cpu_ms_per_mb), 1),
        ]);
    }
    table.print();
    let ratio = |a: &Series, b: &Series| {
        let m = |s: &Series| crate::measure::median(&s.samples.iter().map(Sample::mb_per_s).collect::<Vec<_>>());
        m(a) / m(b).max(1e-9)
    };
    println!();
    println!(
        "ours / libtoxcore throughput: lossless {:.2}x, lossy {:.2}x",
        ratio(&results[0], &results[1]),
        ratio(&results[2], &results[3])
    );
    println!("CPU: our two nodes share this process; libtoxcore is both peer processes (1 ms iteration).");

    ours.cancel.cancel();
    let Ours { rt, receiver, .. } = ours;
    rt.block_on(receiver.shutdown());
    for peer in [&mut theirs.sender, &mut theirs.receiver] {
        peer.quit();
    }
}

/// Starts our two nodes inside the namespace and makes them friends.
fn start_ours(netns: &Netns, bootstrapd: &Bootstrapd, start: &Deadline) -> Ours {
    let (mut config_a, mut config_b) = (config(bootstrapd, 33800..=33810), config(bootstrapd, 33820..=33830));
    // The same protocol as libtoxcore's, cipher included: no AEGIS-256.
    config_a.aegis = false;
    config_b.aegis = false;
    let (rt, cancel, mut a, mut b) = netns.run_in(move || {
        // The runtime's threads start here, so they inherit the namespace.
        // One thread, as a forward runs (the nodes are tasks on it).
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let cancel = CancellationToken::new();
        let (a, b) = rt.block_on(async {
            (
                Tox::start(config_a, cancel.clone()).await.expect("start node a"),
                Tox::start(config_b, cancel.clone()).await.expect("start node b"),
            )
        });
        (rt, cancel, a, b)
    });
    let (a_key, b_key) = (*a.tox_id().public_key(), *b.tox_id().public_key());
    rt.block_on(befriend(&mut a, &mut b, b"bench", start));
    // a sends, b receives. Nobody else reads a's events: drain them, or its
    // driver waits for room in its event queue.
    let sender = a.sender();
    rt.spawn(async move { while a.next_event().await.is_some() {} });
    Ours { rt, cancel, sender, receiver: b, sender_key: a_key, receiver_key: b_key }
}

/// Packet `seq`: `[id][seq as u32 BE][(seq + k) as u8 at byte k]`, the
/// layout of the libtoxcore peer's `flood`.
fn packet(id: u8, seq: u64) -> Bytes {
    let mut data = vec![0u8; SIZE];
    data[0] = id;
    data[1..5].copy_from_slice(&(seq as u32).to_be_bytes());
    for (k, byte) in data.iter_mut().enumerate().skip(5) {
        *byte = (seq as usize + k) as u8;
    }
    Bytes::from(data)
}

impl Ours {
    fn measure(&mut self, lossy: bool) -> Sample {
        let sender = self.sender.clone();
        let to = self.receiver_key;
        let from = self.sender_key;
        let cpu = cpu_self();
        let start = now();
        let cap = Deadline::after(CAP);
        let send = self.rt.spawn(async move {
            for seq in 0..COUNT {
                if lossy {
                    let data = packet(200, seq);
                    // As fast as the node takes them: retry while its queue is full.
                    while !sender.try_send_lossy(to, data.clone()) {
                        if cap.passed() {
                            return seq;
                        }
                        tokio::task::yield_now().await;
                    }
                } else if sender.send_lossless(to, packet(160, seq)).await.is_err() {
                    return seq;
                }
            }
            COUNT
        });
        let receiver = &mut self.receiver;
        let (received, last) = self.rt.block_on(async {
            let mut received = 0u64;
            let mut last = start;
            loop {
                let done = send.is_finished();
                if received == COUNT || cap.passed() {
                    break;
                }
                let wait = if lossy && done { QUIET } else { Duration::from_millis(100) };
                match tokio::time::timeout(wait.min(cap.left()), receiver.next_event()).await {
                    Ok(Some(ToxEvent::Lossless { public_key, data })) if !lossy && public_key == from => {
                        let seq = u32::from_be_bytes(data[1..5].try_into().expect("4 bytes"));
                        assert_eq!(u64::from(seq), received % (1 << 32), "lossless packets arrive in order");
                        assert_eq!(data.len(), SIZE);
                        received += 1;
                        last = now();
                    }
                    Ok(Some(ToxEvent::Lossy { public_key, data })) if lossy && public_key == from => {
                        assert_eq!((data.len(), data[0]), (SIZE, 200));
                        received += 1;
                        last = now();
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("our receiving node stopped"),
                    Err(_) if lossy && done => break,
                    Err(_) => {}
                }
            }
            (received, last)
        });
        let capped = received < COUNT && cap.passed();
        if !send.is_finished() {
            send.abort();
        }
        let sent = self.rt.block_on(send).unwrap_or(COUNT);
        Sample { sent, received, secs: secs(start, last), cpu: cpu_self() - cpu, capped }
    }
}

impl Theirs {
    fn measure(&mut self, lossy: bool) -> Sample {
        let (rx_key, tx_key) = if lossy { ("lossy_rx", "lossy_tx") } else { ("lossless_rx", "lossless_tx") };
        let rx0 = count(&mut self.receiver, rx_key);
        let tx0 = count(&mut self.sender, tx_key);
        let errors0 = count(&mut self.sender, "tx_errors");
        let pids = [self.sender.pid(), self.receiver.pid()];
        let cpu = cpu_total(&pids);
        let start = now();
        let cap = Deadline::after(CAP);
        self.sender.flood(self.friend, COUNT, SIZE, lossy);
        let (mut received, mut last, mut last_change) = (0, start, start);
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let got = count(&mut self.receiver, rx_key) - rx0;
            let t = now();
            if got != received {
                (received, last, last_change) = (got, t, t);
            }
            if received >= COUNT || cap.passed() {
                break;
            }
            if lossy && t - last_change >= QUIET {
                // Quiet: over if the sender is done.
                if count(&mut self.sender, tx_key) - tx0 >= COUNT {
                    break;
                }
                let errors = count(&mut self.sender, "tx_errors") - errors0;
                assert_eq!(errors, 0, "the libtoxcore sender failed: {:?}", self.sender.history().last());
            }
        }
        let cpu = cpu_total(&pids) - cpu;
        let sent = count(&mut self.sender, tx_key) - tx0;
        let capped = received < COUNT && cap.passed();
        if capped {
            eprintln!("libtoxcore {}: capped at {CAP:?} with {received} of {COUNT}", rx_key);
        }
        Sample { sent, received, secs: secs(start, last), cpu, capped }
    }
}

/// One counter from the peer's `status`.
fn count(peer: &mut ToxPeer, key: &str) -> u64 {
    let counts = peer.counts();
    counts.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap_or_else(|| panic!("no {key} in {counts:?}"))
}

fn secs(start: Instant, end: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64().max(1e-6)
}
