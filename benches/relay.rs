//! The TCP relay's hot paths, without sockets: sealing and opening a
//! 1400-byte data frame (what each connection task does per packet), the
//! relay core routing data between 50 linked client pairs (what the node's
//! task does per packet), and accepting 2,000 idle clients into the core.
//!
//! Run briefly with
//! `cargo bench --bench relay -- --warm-up-time 1 --measurement-time 3`.
//! The load test on real sockets (idle connections' memory, 50 pairs'
//! throughput and CPU) is `benches/relay_load.rs`.

// A benchmark reads the clock.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio_util::codec::Decoder;
use tuntox::crypto::{KeyPair, PublicKey};
use tuntox::proto::relay::channel::{accept_handshake, start_handshake};
use tuntox::proto::relay::{ClientId, RelayOutput, RelayServer, RelayServerConfig};
use tuntox::wire::tcp::frame::FrameCodec;
use tuntox::wire::tcp::{ConnectionId, Data, RoutingRequest, TcpPacket};

const PAYLOAD: usize = 1400;

fn frames(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let relay = KeyPair::generate(&mut rng);
    let client = KeyPair::generate(&mut rng);
    let (hello, pending) = start_handshake(&mut rng, &client, relay.public()).unwrap();
    let accepted = accept_handshake(&mut rng, &relay, &hello).unwrap();
    let mut sender = pending.finish(&accepted.response).unwrap();
    let mut receiver = accepted.channel;
    let packet =
        TcpPacket::Data(Data::new(ConnectionId::from_slot(0).unwrap(), Bytes::from(vec![7u8; PAYLOAD])).unwrap());

    let mut group = c.benchmark_group("relay_frame");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    group.bench_function("seal_open_1400", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            sender.sealer.seal_packet(black_box(&packet), &mut out).unwrap();
            let frame = FrameCodec.decode(&mut out).unwrap().unwrap();
            black_box(receiver.opener.open_frame(frame).unwrap());
        });
    });
    group.finish();
}

fn key(n: u32) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    bytes[31] = 1;
    PublicKey::from_bytes(bytes)
}

/// A distinct source address per `n` (the relay caps connections per
/// source).
fn source(n: u32) -> std::net::IpAddr {
    std::net::Ipv4Addr::from_bits(0x0a00_0000 + n).into()
}

/// A core with `pairs` linked pairs; returns each pair's ids and slots.
fn linked(pairs: u32) -> (RelayServer, Vec<(ClientId, ClientId)>) {
    let now = Instant::now();
    let config = RelayServerConfig { max_clients: 10_000, max_pending: 10_000, ..RelayServerConfig::default() };
    let mut server = RelayServer::new(key(u32::MAX), config, [1; 32]);
    let mut ids = Vec::new();
    for p in 0..pairs {
        let (a, b) = (server.accept(now, source(2 * p)).unwrap(), server.accept(now, source(2 * p + 1)).unwrap());
        server.confirm(now, a, key(2 * p));
        server.confirm(now, b, key(2 * p + 1));
        server.handle_packet(now, a, TcpPacket::RoutingRequest(RoutingRequest::new(key(2 * p + 1))));
        server.handle_packet(now, b, TcpPacket::RoutingRequest(RoutingRequest::new(key(2 * p))));
        ids.push((a, b));
    }
    while server.poll_output().is_some() {}
    (server, ids)
}

fn routing(c: &mut Criterion) {
    let now = Instant::now();
    let (mut server, ids) = linked(50);
    let slot0 = ConnectionId::from_slot(0).unwrap();
    let payload = Bytes::from(vec![1u8; PAYLOAD]);
    let mut group = c.benchmark_group("relay_core");
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("route_50_pairs", |b| {
        b.iter(|| {
            for &(a, _) in &ids {
                server.handle_packet(now, a, TcpPacket::Data(Data::new(slot0, payload.clone()).unwrap()));
            }
            while let Some(out) = server.poll_output() {
                black_box(matches!(out, RelayOutput::Send { .. }));
            }
        });
    });
    group.throughput(Throughput::Elements(2000));
    group.bench_function("accept_2000_idle", |b| {
        b.iter_batched(
            || RelayServer::new(key(u32::MAX), RelayServerConfig { max_pending: 2000, ..Default::default() }, [2; 32]),
            |mut server| {
                for n in 0..2000 {
                    let id = server.accept(now, source(n)).unwrap();
                    server.confirm(now, id, key(n));
                }
                server
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, frames, routing);
criterion_main!(benches);
