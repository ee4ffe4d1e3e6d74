//! Batched UDP I/O for the node's socket: several datagrams per system
//! call each way.
//!
//! Sending: consecutive datagrams to the same address with the same size
//! (a lossless stream's full packets) go out as one generic segmentation
//! offload (GSO) send of up to [`MAX_SEGMENTS`]; others one by one.
//! Receiving: `recvmmsg` with generic receive offload (GRO), so one call
//! returns many datagrams. Both come from `quinn-udp`, which falls back to
//! plain calls where the kernel lacks them. Datagrams keep the kernel's
//! default fragmentation behaviour (Tox packets are sized for a 1500-byte
//! path but must still cross smaller ones, as with c-toxcore).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use bytes::Bytes;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::udp::send_addr;

/// Datagrams in one offloaded send at most.
pub const MAX_SEGMENTS: usize = 32;
/// Receive buffers per call.
pub const RECV_BUFFERS: usize = 8;
/// Bytes of one receive buffer (room for a GRO batch).
const RECV_BUFFER_LEN: usize = 64 * 1024;

/// A datagram to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where to.
    pub dst: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
}

/// The node's socket with batched sends and receives.
#[derive(Debug)]
pub struct BatchSocket {
    io: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    scratch: Vec<u8>,
    /// Receive buffers, allocated at the first read (hole punching opens
    /// hundreds of sockets that mostly never receive).
    bufs: Vec<Vec<u8>>,
    buf_len: usize,
    metas: Vec<RecvMeta>,
}

/// What one send call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams the kernel refused (unreachable, wrong family, ...).
    pub errors: u64,
    /// System calls made.
    pub calls: u64,
}

impl BatchSocket {
    /// Wraps a bound, non-blocking socket; must run inside a tokio runtime.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        restore_fragmentation(&socket);
        let io = UdpSocket::from_std(socket)?;
        let local = io.local_addr()?;
        let gro = state.gro_segments().max(1);
        let len = if gro > 1 { RECV_BUFFER_LEN } else { super::MAX_DATAGRAM };
        Ok(Self {
            io,
            state,
            local,
            scratch: Vec::new(),
            bufs: Vec::new(),
            buf_len: len,
            metas: vec![RecvMeta::default(); RECV_BUFFERS],
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits until a datagram can be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.io.readable().await
    }

    /// Polls for a datagram to read (several sockets waited on at once).
    pub fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        self.io.poll_recv_ready(cx)
    }

    /// Reads what is queued without waiting (up to about `max` datagrams),
    /// handing each datagram to `each`. Returns how many there were.
    pub fn try_recv(&mut self, max: usize, mut each: impl FnMut(SocketAddr, Bytes)) -> usize {
        if self.bufs.is_empty() {
            self.bufs = (0..RECV_BUFFERS).map(|_| vec![0u8; self.buf_len]).collect();
        }
        let mut count = 0;
        while count < max {
            let mut iovs: Vec<IoSliceMut<'_>> = self.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let got =
                self.io.try_io(Interest::READABLE, || self.state.recv((&self.io).into(), &mut iovs, &mut self.metas));
            let Ok(messages) = got else { break };
            drop(iovs);
            for (meta, buf) in self.metas.iter().zip(&self.bufs).take(messages) {
                let stride = meta.stride.max(1);
                for datagram in buf[..meta.len].chunks(stride) {
                    each(meta.addr, Bytes::copy_from_slice(datagram));
                    count += 1;
                }
            }
            if messages == 0 {
                break;
            }
        }
        count
    }

    /// Sends each datagram with the IP TTL (IPv6 hop limit) `ttl`, one call
    /// each, and puts the socket's own back afterwards: hole punching's
    /// openers, meant to die between our router and the friend's. Only the
    /// node's task sends on the socket, so nothing else leaves with the low
    /// TTL. A datagram the kernel refuses counts as an error.
    pub fn send_with_ttl(&mut self, datagrams: &[Outgoing], ttl: u32) -> SendReport {
        let mut report = SendReport::default();
        if datagrams.is_empty() {
            return report;
        }
        let socket = socket2::SockRef::from(&self.io);
        let v6 = self.local.is_ipv6();
        // IPv4 destinations of a dual-stack socket take the IPv4 TTL.
        let old_v4 = socket.ttl_v4().ok();
        let old_v6 = if v6 { socket.unicast_hops_v6().ok() } else { None };
        let set_v4 = socket.set_ttl_v4(ttl).is_ok();
        let set_v6 = v6 && socket.set_unicast_hops_v6(ttl).is_ok();
        for datagram in datagrams {
            report.calls += 1;
            // Straight to the socket: tokio's `try_send_to` refuses a socket
            // whose writability its reactor has not seen yet, as with one
            // just opened.
            let dst = socket2::SockAddr::from(send_addr(self.local, datagram.dst));
            match socket.send_to(&datagram.payload, &dst) {
                Ok(_) => report.sent += 1,
                Err(_) => report.errors += 1,
            }
        }
        if let (true, Some(old)) = (set_v4, old_v4) {
            let _ = socket.set_ttl_v4(old);
        }
        if let (true, Some(old)) = (set_v6, old_v6) {
            let _ = socket.set_unicast_hops_v6(old);
        }
        report
    }

    /// Sends every datagram, batching runs to one address.
    pub async fn send_all(&mut self, datagrams: &[Outgoing]) -> SendReport {
        let mut report = SendReport::default();
        let max = self.state.max_gso_segments().clamp(1, MAX_SEGMENTS);
        let mut i = 0;
        while i < datagrams.len() {
            let first = &datagrams[i];
            let size = first.payload.len();
            let mut end = i + 1;
            // Equal sizes, the last of the run may be shorter.
            while end < datagrams.len()
                && end - i < max
                && datagrams[end].dst == first.dst
                && datagrams[end - 1].payload.len() == size
                && datagrams[end].payload.len() <= size
                && size > 0
            {
                end += 1;
            }
            let run = &datagrams[i..end];
            let destination = send_addr(self.local, first.dst);
            let result = if run.len() == 1 {
                let transmit =
                    Transmit { destination, ecn: None, contents: &first.payload, segment_size: None, src_ip: None };
                send_one(&self.io, &self.state, &transmit).await
            } else {
                self.scratch.clear();
                for d in run {
                    self.scratch.extend_from_slice(&d.payload);
                }
                let transmit = Transmit {
                    destination,
                    ecn: None,
                    contents: &self.scratch,
                    segment_size: Some(size),
                    src_ip: None,
                };
                send_one(&self.io, &self.state, &transmit).await
            };
            report.calls += 1;
            match result {
                Ok(()) => report.sent += run.len() as u64,
                Err(e) if run.len() > 1 => {
                    // The offload failed (quinn-udp turns it off for later
                    // sends where the kernel lacks it): one by one instead.
                    tracing::trace!(error = %e, "segmented send failed; sending singly");
                    for d in run {
                        let transmit =
                            Transmit { destination, ecn: None, contents: &d.payload, segment_size: None, src_ip: None };
                        report.calls += 1;
                        match send_one(&self.io, &self.state, &transmit).await {
                            Ok(()) => report.sent += 1,
                            Err(_) => report.errors += 1,
                        }
                    }
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::trace!(dst = %first.dst, error = %e, "send failed");
                }
            }
            i = end;
        }
        report
    }
}

async fn send_one(io: &UdpSocket, state: &UdpSocketState, transmit: &Transmit<'_>) -> io::Result<()> {
    loop {
        match io.try_io(Interest::WRITABLE, || state.try_send(io.into(), transmit)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            other => return other,
        }
    }
}

/// `quinn-udp` forbids fragmentation (it suits QUIC's path MTU discovery);
/// Tox relies on the kernel's default, so set it back.
fn restore_fragmentation(socket: &std::net::UdpSocket) {
    let fd = socket.as_raw_fd();
    let want = libc::IP_PMTUDISC_WANT;
    for (level, name) in [(libc::IPPROTO_IP, libc::IP_MTU_DISCOVER), (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER)] {
        // SAFETY: setsockopt on a socket we own, with a c_int option value
        // and its size; a failure (e.g. IPv6 options on an IPv4 socket) is
        // harmless and ignored.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&raw const want).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::driver::udp::{self, UdpConfig};

    fn socket(ports: std::ops::RangeInclusive<u16>) -> BatchSocket {
        let config = UdpConfig { ports, bind_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), ..UdpConfig::default() };
        BatchSocket::new(udp::bind(&config).unwrap()).unwrap()
    }

    /// A socket just opened sends at once with a TTL of its own, and keeps
    /// its default TTL for everything else.
    #[tokio::test]
    async fn a_fresh_socket_sends_with_a_ttl_and_restores_its_own() {
        let mut a = BatchSocket::new(udp::bind_ephemeral("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
        let mut b = socket(41501..=41600);
        let before = socket2::SockRef::from(&a.io).ttl_v4().unwrap();
        let datagrams = [Outgoing { dst: b.local_addr(), payload: Bytes::from_static(b"opener") }];
        let report = a.send_with_ttl(&datagrams, 2);
        assert_eq!((report.sent, report.errors), (1, 0), "not refused for want of readiness");
        assert_eq!(socket2::SockRef::from(&a.io).ttl_v4().unwrap(), before);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), b.readable()).await.unwrap().unwrap();
        b.try_recv(8, |from, data| got.push((from, data)));
        assert_eq!(got, vec![(a.local_addr(), Bytes::from_static(b"opener"))]);
    }

    /// Runs of equal sizes, odd sizes and a shorter last one all arrive
    /// intact and in order (loopback keeps order), in fewer calls than
    /// datagrams where the kernel offloads.
    #[tokio::test]
    async fn batches_arrive_intact_and_in_order() {
        let mut a = socket(41300..=41400);
        let mut b = socket(41401..=41500);
        let dst = b.local_addr();
        let mut sizes = vec![1400; 70];
        sizes.extend([1400, 900, 33, 1, 1400, 1400, 700]);
        let datagrams: Vec<Outgoing> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                Outgoing { dst, payload: Bytes::from(payload) }
            })
            .collect();
        let report = a.send_all(&datagrams).await;
        assert_eq!((report.sent, report.errors), (datagrams.len() as u64, 0));
        assert!(report.calls <= report.sent);
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while got.len() < datagrams.len() {
            tokio::time::timeout_at(deadline, b.readable()).await.expect("all datagrams within 5 s").unwrap();
            b.try_recv(1024, |from, data| got.push((from, data)));
        }
        assert_eq!(got.len(), datagrams.len());
        for ((from, data), sent) in got.iter().zip(&datagrams) {
            assert_eq!(*from, a.local_addr());
            assert_eq!(data, &sent.payload);
        }
    }
}
