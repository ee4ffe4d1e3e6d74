//! `tuntox -L` over an emulated long link (tests/support/wan.rs): a server
//! namespace and a client namespace joined by the link emulator, the client
//! on direct UDP to the server. Data crosses intact at 40 ms round trip
//! with 3 % loss each way; a transfer survives the rate being cut to a
//! tenth and restored; a 200 ms link keeps a one-byte round trip under
//! 230 ms while a download fills it; 20 MB go up a 10 Mbit/s link whose
//! short queue drops packets all along.
//!
//! The tests take turns (one lock): each moves megabytes through two tuntox
//! processes and the emulator, and they would share the CPU otherwise.
//! Needs root (namespaces, TUN devices) and toxcore-utils; run through
//! `scripts/test`, which installs them. It never skips.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use support::deadline::{Deadline, now};
use support::e2e::{check_pattern, dual_server, echo_server, write_pattern};
use support::linkem::LinkConfig;
use support::wan::{DOWN, UP, WanBed};

const CONNECT: Duration = Duration::from_secs(60);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A reader that counts what passes through it.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Sends `up` pattern bytes (seed `up_seed`) on `stream` while checking
/// `down` bytes (seed `down_seed`) coming back, counted in `progress`.
fn exchange(
    stream: TcpStream,
    down_seed: u64,
    down: usize,
    up_seed: u64,
    up: usize,
    progress: Arc<AtomicU64>,
) -> Result<(), String> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
    let reader = Counting { inner: stream.try_clone().expect("clone the stream"), count: progress };
    let sender = thread::spawn(move || {
        let result = write_pattern(&stream, up_seed, up);
        let _ = stream.shutdown(Shutdown::Write);
        result
    });
    let checked = check_pattern(reader, down_seed, down).map_err(|e| format!("download: {e}"));
    let sent = sender.join().expect("the upload thread").map_err(|e| format!("upload: {e}"));
    checked.and(sent)
}

#[test]
fn five_megabytes_each_way_arrive_intact_at_40_ms_with_3_percent_loss() {
    const LEN: usize = 5 << 20;
    let _turn = serial();
    let mut bed = WanBed::new("wanloss", LinkConfig::ideal().delay_ms(20.0).loss(0.03));
    let verdicts = dual_server(bed.listen_server("127.0.0.1:7001"), 31, LEN, 32, LEN);
    let mut client = bed.client("client", &["-L", "7101:127.0.0.1:7001"]);
    bed.wait_direct(&mut client, CONNECT);

    let start = Deadline::after(Duration::from_secs(120));
    let stream = bed.connect_client("127.0.0.1:7101".parse().unwrap(), Duration::from_secs(5));
    let done = thread::spawn(move || exchange(stream, 31, LEN, 32, LEN, Arc::default()));
    while !done.is_finished() && !start.passed() {
        thread::sleep(Duration::from_millis(50));
    }
    if !done.is_finished() {
        client.fail(&format!("5 MB each way not through within {:?}", start.elapsed()));
    }
    done.join().unwrap().unwrap_or_else(|e| client.fail(&e));
    verdicts.recv_timeout(start.step(Duration::from_secs(30))).unwrap().unwrap_or_else(|e| client.fail(&e));
    let (down, up) = (bed.link.stats(DOWN), bed.link.stats(UP));
    eprintln!("5 MB each way in {:.1} s; link down {down:?}; up {up:?}", start.elapsed().as_secs_f64());
    assert!(down.lost > 100 && up.lost > 100, "the link lost packets both ways: {down:?} {up:?}");
}

#[test]
fn a_transfer_survives_the_rate_cut_to_a_tenth_and_restored() {
    const DOWN_LEN: usize = 20 << 20;
    const UP_LEN: usize = 8 << 20;
    let _turn = serial();
    let rtt = Duration::from_millis(40);
    let fast = LinkConfig::ideal().delay(rtt / 2).rate_mbit(100.0).queue_bdp(4.0, rtt);
    let slow = fast.rate_mbit(10.0);
    let mut bed = WanBed::new("wancut", fast);
    let verdicts = dual_server(bed.listen_server("127.0.0.1:7001"), 41, DOWN_LEN, 42, UP_LEN);
    let mut client = bed.client("client", &["-L", "7101:127.0.0.1:7001"]);
    bed.wait_direct(&mut client, CONNECT);

    let start = Deadline::after(Duration::from_secs(180));
    let stream = bed.connect_client("127.0.0.1:7101".parse().unwrap(), Duration::from_secs(5));
    let progress = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&progress);
    let done = thread::spawn(move || exchange(stream, 41, DOWN_LEN, 42, UP_LEN, counted));
    let wait_for = |what: &str, until: &dyn Fn() -> bool| {
        while !until() {
            if start.passed() || done.is_finished() {
                client.fail(&format!("{what}: not reached ({} bytes down)", progress.load(Ordering::Relaxed)));
            }
            thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for("2 MB down before the cut", &|| progress.load(Ordering::Relaxed) >= 2 << 20);
    bed.link.set_both(slow);
    let cut = now();
    let at_cut = progress.load(Ordering::Relaxed);
    wait_for("3 s at a tenth of the rate", &|| cut.elapsed() >= Duration::from_secs(3));
    let at_restore = progress.load(Ordering::Relaxed);
    bed.link.set_both(fast);
    assert!(at_restore < DOWN_LEN as u64, "the transfer still ran when the rate came back");
    while !done.is_finished() && !start.passed() {
        thread::sleep(Duration::from_millis(50));
    }
    if !done.is_finished() {
        client.fail(&format!(
            "not through within {:?} ({} bytes down)",
            start.elapsed(),
            progress.load(Ordering::Relaxed)
        ));
    }
    done.join().unwrap().unwrap_or_else(|e| client.fail(&e));
    verdicts.recv_timeout(start.step(Duration::from_secs(30))).unwrap().unwrap_or_else(|e| client.fail(&e));
    eprintln!(
        "20 MB down, 8 MB up in {:.1} s; {:.1} MB down during the 3 s at 10 Mbit/s; link down {:?}",
        start.elapsed().as_secs_f64(),
        (at_restore - at_cut) as f64 / 1e6,
        bed.link.stats(DOWN)
    );
}

#[test]
fn a_200_ms_link_keeps_a_one_byte_round_trip_under_230_ms_during_a_download() {
    // Longer than the download lasts: the source is cut off, not finished.
    const LEN: usize = 1 << 30;
    let _turn = serial();
    let rtt = Duration::from_millis(200);
    let config = LinkConfig::ideal().delay(rtt / 2).rate_mbit(20.0).queue_bdp(4.0, rtt);
    let mut bed = WanBed::new("wanrtt", config);
    let _source = dual_server(bed.listen_server("127.0.0.1:7001"), 51, LEN, 52, 0);
    echo_server(bed.listen_server("127.0.0.1:7002"));
    let mut client = bed.client("client", &["-L", "7101:127.0.0.1:7001", "-L", "7102:127.0.0.1:7002"]);
    bed.wait_direct(&mut client, CONNECT);

    let mut echo = bed.connect_client("127.0.0.1:7102".parse().unwrap(), Duration::from_secs(5));
    echo.set_nodelay(true).unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let idle: Vec<f64> = (0..5).map(|_| round_trip_ms(&mut echo)).collect();

    let download = bed.connect_client("127.0.0.1:7101".parse().unwrap(), Duration::from_secs(5));
    download.shutdown(Shutdown::Write).unwrap();
    let progress = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&progress);
    let stop = Deadline::after(Duration::from_secs(12));
    let reader = thread::spawn(move || {
        let mut stream = Counting { inner: download, count: counted };
        let mut pattern = support::e2e::Pattern::new(51, LEN);
        let (mut got, mut want) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
        while !stop.passed() {
            let n = stream.read(&mut got).map_err(|e| format!("download: {e}"))?;
            if n == 0 {
                return Err("the download ended early".to_owned());
            }
            pattern.fill(&mut want[..n]);
            if got[..n] != want[..n] {
                return Err("download: a byte differs".to_owned());
            }
        }
        Ok(())
    });
    // Round trips from the download's third second on, when its queue has built.
    thread::sleep(Duration::from_secs(2));
    let before = progress.load(Ordering::Relaxed);
    let mut loaded = Vec::new();
    while stop.left() > Duration::from_millis(500) {
        loaded.push(round_trip_ms(&mut echo));
    }
    let during = progress.load(Ordering::Relaxed) - before;
    reader.join().unwrap().unwrap_or_else(|e| client.fail(&e));
    loaded.sort_by(f64::total_cmp);
    let median = loaded[loaded.len() / 2];
    let p99 = loaded[(loaded.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "idle round trips {idle:.1?} ms; under load ({} samples, {:.1} MB down meanwhile): median {median:.1} ms, \
         p99 {p99:.1} ms; link down {:?}",
        loaded.len(),
        during as f64 / 1e6,
        bed.link.stats(DOWN)
    );
    assert!(during > 1 << 20, "the download ran while the round trips were measured ({during} bytes)");
    assert!(loaded.len() >= 10, "enough round trips: {loaded:?}");
    assert!(median < 230.0, "one-byte round trip under load: median {median:.1} ms (p99 {p99:.1}), want < 230");
}

fn round_trip_ms(stream: &mut TcpStream) -> f64 {
    let start = now();
    stream.write_all(b"x").expect("send one byte");
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).expect("the byte comes back");
    assert_eq!(&byte, b"x");
    start.elapsed().as_secs_f64() * 1e3
}

#[test]
fn twenty_megabytes_up_cross_a_slow_link_with_a_short_queue() {
    const LEN: usize = 20 << 20;
    let _turn = serial();
    let rtt = Duration::from_millis(10);
    let config = LinkConfig::ideal().delay(rtt / 2).rate_mbit(10.0).queue_bdp(0.5, rtt);
    let mut bed = WanBed::new("wanslow", config);
    let verdicts = dual_server(bed.listen_server("127.0.0.1:7001"), 61, 0, 62, LEN);
    let mut client = bed.client("client", &["-L", "7101:127.0.0.1:7001"]);
    bed.wait_direct(&mut client, CONNECT);

    // 17 s at the link's rate; four times that to get through.
    let start = Deadline::after(Duration::from_secs(70));
    let stream = bed.connect_client("127.0.0.1:7101".parse().unwrap(), Duration::from_secs(5));
    let done = thread::spawn(move || exchange(stream, 61, 0, 62, LEN, Arc::default()));
    // The sink's verdict: every byte arrived, intact, and the stream ended.
    let verdict = verdicts.recv_timeout(start.left());
    let (down, up) = (bed.link.stats(DOWN), bed.link.stats(UP));
    eprintln!("after {:.1} s: link down {down:?}; up {up:?}", start.elapsed().as_secs_f64());
    match verdict {
        Ok(Ok(())) => {}
        Ok(Err(e)) => client.fail(&format!("upload: {e}; {}", bed.tunnel_report(&client))),
        Err(_) => {
            client.fail(&format!("20 MB up not through within {:?}: {}", start.elapsed(), bed.tunnel_report(&client)))
        }
    }
    done.join().unwrap().unwrap_or_else(|e| client.fail(&e));
}
