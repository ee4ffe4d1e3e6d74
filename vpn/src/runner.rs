//! The running VPN: an [`Engine`] joined to a [`Device`] by three tokio
//! tasks, and to peers through whatever carries packets.
//!
//! - The reader takes batches from the TUN (with offload, one read brings
//!   a whole TCP burst, cut into MTU-sized packets), passes each through
//!   the engine under one lock per batch, and hands each packet, as
//!   `[DATA_ID][IP packet]`, to the caller's [`DataSink`] (lossy, now or
//!   never). The outgoing `Bytes` are cut from one shared buffer, so the
//!   hot path does not allocate per packet.
//! - The writer takes the peers' packets from a bounded queue in batches,
//!   checks them in the engine under one lock, and writes them to the TUN,
//!   merging consecutive TCP segments (GRO) when offload is on.
//! - The control task answers control packets and timers, applies a
//!   client's assignment to the device (addresses, routes, MTU), and passes
//!   control packets (to send lossless, in order) and events to the caller.
//!
//! Nothing waits on a peer: a full queue or a refused send drops the packet
//! and counts it, as a lossy link would.

// The driver of the sans-IO engine: real time enters here.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tun_rs::{AsyncDevice, GROTable};

use crate::control::DATA_ID;
use crate::device::{BATCH, Device, DeviceError, VNET_HDR};
use crate::engine::{ControlPacket, Engine, Event, PeerId};
use crate::stats::{Drop, Stats};

/// Lossy packets from peers waiting for the TUN writer at most.
pub const INBOUND_QUEUE: usize = 4096;
/// Control packets waiting for the caller at most (the control task waits
/// beyond it).
pub const CONTROL_QUEUE: usize = 256;
/// Events waiting for the caller at most (more are dropped and logged).
pub const EVENT_QUEUE: usize = 256;
/// The largest packet a TUN read hands over without offload.
const PACKET_BUF: usize = 4096;
/// Bytes reserved at a time for outgoing packets.
const ARENA: usize = 256 * 1024;
/// The largest packet GRO builds (an IP packet's length field's limit).
const GRO_MAX: usize = 65535;

/// Where outgoing data packets go: one lossy packet (`[DATA_ID][IP
/// packet]`) to one peer, sent now or never. Called from the reader task;
/// it must not block.
pub trait DataSink: Send + Sync + 'static {
    /// Sends the packet; `false` when it could not (counted as
    /// [`Drop::SendFailed`]).
    fn send_data(&self, peer: PeerId, packet: Bytes) -> bool;

    /// Sends a batch (one TUN read's worth), emptying `packets`; returns
    /// how many could not be sent. The default sends them one by one; a
    /// carrier that can take a whole batch at once overrides it.
    fn send_batch(&self, packets: &mut Vec<(PeerId, Bytes)>) -> u64 {
        let mut failed = 0;
        for (peer, packet) in packets.drain(..) {
            if !self.send_data(peer, packet) {
                failed += 1;
            }
        }
        failed
    }
}

impl<F: Fn(PeerId, Bytes) -> bool + Send + Sync + 'static> DataSink for F {
    fn send_data(&self, peer: PeerId, packet: Bytes) -> bool {
        self(peer, packet)
    }
}

/// What the caller drains: control packets to send lossless, in order, and
/// events.
#[derive(Debug)]
pub struct Outputs {
    /// Control packets for peers.
    pub control: mpsc::Receiver<ControlPacket>,
    /// What happened.
    pub events: mpsc::Receiver<Event>,
}

#[derive(Debug)]
struct Shared {
    engine: Mutex<Engine>,
    wake: Notify,
    inbound_full: AtomicU64,
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running VPN (cheap to clone).
#[derive(Debug, Clone)]
pub struct Vpn {
    shared: Arc<Shared>,
    inbound: mpsc::Sender<(PeerId, Bytes)>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    device: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<Device>>>>,
    name: String,
}

impl Vpn {
    /// Starts the VPN on `device`. A server's device gets its pool
    /// addresses and comes up at once; a client's waits for the server's
    /// assignment. Data packets go to `sink`; drain the returned
    /// [`Outputs`].
    pub async fn start(
        engine: Engine,
        mut device: Device,
        sink: impl DataSink,
        cancel: CancellationToken,
    ) -> Result<(Vpn, Outputs), DeviceError> {
        if engine.is_server() {
            device.configure(engine.mtu(), &engine.server_addresses(), &[]).await?;
        } else {
            device.set_mtu(engine.mtu()).await?;
        }
        let name = device.name().to_owned();
        let shared =
            Arc::new(Shared { engine: Mutex::new(engine), wake: Notify::new(), inbound_full: AtomicU64::new(0) });
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let tracker = TaskTracker::new();
        let tun = device.tun();
        let offload = device.offload();
        tracker.spawn(reader(shared.clone(), tun.clone(), sink, cancel.clone()));
        tracker.spawn(writer(shared.clone(), tun, offload, inbound_rx, cancel.clone()));
        let control_task = tracker.spawn(control_loop(shared.clone(), device, control_tx, events_tx, cancel.clone()));
        tracker.close();
        let vpn = Vpn {
            shared,
            inbound,
            cancel,
            tracker,
            device: Arc::new(tokio::sync::Mutex::new(Some(control_task))),
            name,
        };
        Ok((vpn, Outputs { control, events }))
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// A peer came online (`key`: its lasting identity, such as its Tox
    /// public key). A client says hello to it.
    pub fn peer_connected(&self, peer: PeerId, key: &[u8]) {
        self.shared.engine().peer_connected(Instant::now(), peer, key);
        self.shared.wake.notify_one();
    }

    /// A peer went offline.
    pub fn peer_lost(&self, peer: PeerId) {
        self.shared.engine().peer_lost(peer);
        self.shared.wake.notify_one();
    }

    /// A control packet (lossless, first byte [`crate::CONTROL_ID`]) from
    /// a peer.
    pub fn handle_control(&self, peer: PeerId, packet: &[u8]) {
        self.shared.engine().handle_control(Instant::now(), peer, packet);
        self.shared.wake.notify_one();
    }

    /// A data packet (lossy, first byte [`DATA_ID`]) from a peer: queued
    /// for the TUN writer. `false` when the queue is full (the packet is
    /// dropped and counted).
    pub fn handle_data(&self, peer: PeerId, packet: Bytes) -> bool {
        if self.inbound.try_send((peer, packet)).is_ok() {
            return true;
        }
        self.shared.inbound_full.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Data packets from peers waiting for the TUN writer. A caller that
    /// hands over packets in long bursts on the writer's thread yields
    /// when this passes half of [`INBOUND_QUEUE`], so the writer drains
    /// the queue before it overflows.
    pub fn inbound_backlog(&self) -> usize {
        self.inbound.max_capacity() - self.inbound.capacity()
    }

    /// Server: turn serving on or off.
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.engine().set_enabled(enabled);
        self.shared.wake.notify_one();
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let mut stats = *self.shared.engine().stats();
        stats.dropped.add_n(Drop::QueueFull, self.shared.inbound_full.load(Ordering::Relaxed));
        stats
    }

    /// Client: the current session.
    pub fn assignment(&self) -> Option<crate::engine::Assignment> {
        self.shared.engine().assignment().cloned()
    }

    /// Runs `f` on the engine (under its lock: keep it short), for status
    /// reports: its addresses, routes and sessions.
    pub fn inspect<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        f(&self.shared.engine())
    }

    /// Says goodbye to the peers (the goodbyes are the last control
    /// packets), stops the tasks and deletes the device with its addresses
    /// and routes.
    pub async fn shutdown(&self) -> Result<(), DeviceError> {
        self.shared.engine().shutdown();
        self.cancel.cancel();
        self.tracker.wait().await;
        let task = self.device.lock().await.take();
        match task {
            Some(task) => match task.await {
                Ok(device) => device.close().await,
                Err(e) => Err(DeviceError::Io(std::io::Error::other(e))),
            },
            None => Ok(()),
        }
    }
}

async fn reader(shared: Arc<Shared>, tun: Arc<AsyncDevice>, sink: impl DataSink, cancel: CancellationToken) {
    // Room for two reads: a full GSO burst (up to 128 segments) and more.
    const SLOTS: usize = 2 * BATCH;
    let mut original = vec![0u8; VNET_HDR + 65_535];
    let mut bufs: Vec<Vec<u8>> = (0..SLOTS).map(|_| vec![0u8; 1 + PACKET_BUF]).collect();
    let mut sizes = vec![0usize; SLOTS];
    let mut arena = BytesMut::with_capacity(ARENA);
    let mut out: Vec<(PeerId, Bytes)> = Vec::with_capacity(SLOTS);
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tun.recv_multiple(&mut original, &mut bufs[..BATCH], &mut sizes[..BATCH], 1) => r,
        };
        let mut n = match first {
            Ok(n) => n,
            Err(e) => {
                if tun_gone(&e) {
                    return;
                }
                tracing::debug!("TUN read: {e}");
                shared.engine().count_drop(Drop::Malformed, 1);
                // Never spin on an error that repeats.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        // Whatever else is already waiting joins the batch.
        while n <= BATCH {
            match tun.try_recv_multiple(&mut original, &mut bufs[n..n + BATCH], &mut sizes[n..n + BATCH], 1) {
                Ok(more) => n += more,
                Err(_) => break,
            }
        }
        {
            let mut engine = shared.engine();
            for (buf, size) in bufs.iter_mut().zip(&sizes).take(n) {
                let packet = &mut buf[..1 + size];
                packet[0] = DATA_ID;
                if let Ok(peer) = engine.handle_tun(&mut packet[1..]) {
                    if arena.capacity() < packet.len() {
                        arena.reserve(ARENA);
                    }
                    arena.extend_from_slice(packet);
                    out.push((peer, arena.split().freeze()));
                }
            }
            if engine.has_output() {
                shared.wake.notify_one();
            }
        }
        let failed = if out.is_empty() { 0 } else { sink.send_batch(&mut out) };
        out.clear();
        if failed > 0 {
            shared.engine().count_drop(Drop::SendFailed, failed);
        }
    }
}

async fn writer(
    shared: Arc<Shared>,
    tun: Arc<AsyncDevice>,
    offload: bool,
    mut inbound: mpsc::Receiver<(PeerId, Bytes)>,
    cancel: CancellationToken,
) {
    // The IP packet starts at VNET_HDR in every buffer: the virtio header
    // goes in front of it when offload is on (and is skipped when off).
    // With offload, GRO appends the segments that follow a packet of the
    // same TCP flow to that packet's buffer, and only within its capacity:
    // room for a whole 64 KiB super-packet is what lets one write carry
    // dozens of segments (the pages are touched only when used).
    let capacity = if offload { 2 * VNET_HDR + GRO_MAX } else { VNET_HDR + 2048 };
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(capacity)).collect();
    let mut batch: Vec<(PeerId, Bytes)> = Vec::with_capacity(BATCH);
    let mut gro = GROTable::default();
    loop {
        let got = tokio::select! {
            _ = cancel.cancelled() => return,
            got = inbound.recv_many(&mut batch, BATCH) => got,
        };
        if got == 0 {
            return;
        }
        let now = Instant::now();
        let mut ready = 0;
        {
            let mut engine = shared.engine();
            for (peer, packet) in batch.drain(..) {
                let buf = &mut bufs[ready];
                buf.clear();
                buf.resize(VNET_HDR - 1, 0);
                buf.extend_from_slice(&packet);
                if engine.handle_data(now, peer, &mut buf[VNET_HDR - 1..]).is_ok() {
                    ready += 1;
                }
            }
            if engine.has_output() {
                shared.wake.notify_one();
            }
        }
        if ready == 0 {
            continue;
        }
        let result = if offload {
            tun.send_multiple(&mut gro, &mut bufs[..ready], VNET_HDR).await.map(|_| ())
        } else {
            let mut result = Ok(());
            for buf in &bufs[..ready] {
                if let Err(e) = tun.send(&buf[VNET_HDR..]).await {
                    result = Err(e);
                }
            }
            result
        };
        if let Err(e) = result {
            if tun_gone(&e) {
                return;
            }
            tracing::debug!("TUN write: {e}");
            shared.engine().count_drop(Drop::TunWrite, 1);
        }
    }
}

fn tun_gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == 77 /* EBADFD */ || code == 9 /* EBADF */)
}

async fn control_loop(
    shared: Arc<Shared>,
    mut device: Device,
    control: mpsc::Sender<ControlPacket>,
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
) -> Device {
    let mut stopping = false;
    loop {
        if !stopping {
            let timeout = shared.engine().poll_timeout().map(tokio::time::Instant::from_std);
            let tick = timeout.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = cancel.cancelled() => stopping = true,
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(tick) => shared.engine().handle_timeout(Instant::now()),
            }
        }
        let (transmits, happened) = {
            let mut engine = shared.engine();
            let t: Vec<ControlPacket> = std::iter::from_fn(|| engine.poll_transmit()).collect();
            let e: Vec<Event> = std::iter::from_fn(|| engine.poll_event()).collect();
            (t, e)
        };
        for t in transmits {
            if stopping {
                let _ = control.try_send(t);
                continue;
            }
            tokio::select! {
                sent = control.send(t) => stopping |= sent.is_err(),
                _ = cancel.cancelled() => stopping = true,
            }
        }
        for event in happened {
            let mut failure = None;
            if let Event::Assigned { assignment, resumed } = &event
                && !resumed
            {
                let addresses: Vec<_> = assignment.addresses().collect();
                match device.configure(assignment.mtu, &addresses, &assignment.routes).await {
                    Ok(()) => tracing::info!(
                        dev = device.name(),
                        addresses = ?addresses,
                        routes = ?assignment.routes,
                        mtu = assignment.mtu,
                        "VPN session up"
                    ),
                    Err(e) => {
                        tracing::error!("cannot set up {}: {e}", device.name());
                        failure = Some(Event::DeviceFailed { message: e.to_string() });
                    }
                }
            }
            for event in std::iter::once(event).chain(failure) {
                if events.try_send(event).is_err() {
                    tracing::debug!("VPN event dropped (nobody reads events)");
                }
            }
        }
        if stopping {
            return device;
        }
    }
}
