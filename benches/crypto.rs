//! Throughput of the crypto facade on the VPN's hot path: sealing and
//! opening 1400-byte packets (c-toxcore's largest net_crypto packet, about
//! a full TUN packet) under a precomputed key, the same with AEGIS-256
//! (the cipher two tuntox peers agree on), and the cost of precomputing a
//! key.
//!
//! Two paths each way: the allocating `seal`/`open`, and the in-place
//! detached calls the packet path uses on caller-owned buffers. Compare the
//! figures with docs/decisions/0001-crypto.md, which records earlier runs
//! and why libsodium was chosen for this path.
//!
//! Run briefly with
//! `cargo bench --bench crypto -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tuntox::crypto::{AeadKey, KeyPair, MAC_LEN, Nonce, SharedKey};

/// Plaintext bytes per packet.
const PACKET: usize = 1400;

struct Setup {
    alice: KeyPair,
    bob: KeyPair,
    key: SharedKey,
    nonce: Nonce,
    plain: Vec<u8>,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(1400);
    let alice = KeyPair::generate(&mut rng);
    let bob = KeyPair::generate(&mut rng);
    let key = SharedKey::precompute(bob.public(), alice.secret()).expect("random keys");
    let nonce = Nonce::random(&mut rng);
    let mut plain = vec![0; PACKET];
    rng.fill_bytes(&mut plain);
    Setup { alice, bob, key, nonce, plain }
}

fn seal(c: &mut Criterion) {
    let Setup { key, nonce, plain, .. } = setup();
    let mut group = c.benchmark_group("seal_1400");
    group.throughput(Throughput::Bytes(PACKET as u64));

    group.bench_function("seal (allocating)", |b| {
        b.iter(|| key.seal(black_box(&nonce), black_box(&plain)));
    });

    // Sealing the same buffer again and again is fine for timing: the
    // cipher's cost does not depend on the bytes.
    let mut buf = plain.clone();
    group.bench_function("seal_in_place_detached", |b| {
        b.iter(|| key.seal_in_place_detached(black_box(&nonce), black_box(&mut buf[..])));
    });
    group.finish();
}

fn open(c: &mut Criterion) {
    let Setup { key, nonce, plain, .. } = setup();
    let sealed = key.seal(&nonce, &plain);
    let mac: [u8; MAC_LEN] = sealed[..MAC_LEN].try_into().expect("MAC");
    let body = sealed[MAC_LEN..].to_vec();

    let mut group = c.benchmark_group("open_1400");
    group.throughput(Throughput::Bytes(PACKET as u64));

    group.bench_function("open (allocating)", |b| {
        b.iter(|| key.open(black_box(&nonce), black_box(&sealed)).expect("opens"));
    });

    // Opening in place turns the buffer into plaintext, so each iteration
    // first copies the ciphertext into one reused buffer, as a receive path
    // copies a datagram into its buffer. The copy stays in L1 and is timed;
    // `iter_batched_ref` would keep thousands of buffers alive and time
    // cache misses instead.
    let mut buf = body.clone();
    group.bench_function("open_in_place_detached", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&body));
            key.open_in_place_detached(black_box(&nonce), &mut buf[..], black_box(&mac)).expect("opens");
        });
    });
    group.finish();
}

/// AEGIS-256, the cipher two tuntox peers agree on where the CPU has AES
/// instructions (docs/decisions/0006-aegis-data.md), on the same packets.
fn aegis(c: &mut Criterion) {
    let Setup { plain, .. } = setup();
    let key = AeadKey::from_bytes([7; 32]);
    let nonce = [9u8; 32];
    let ad = [0x1c, 0, 1];
    let mut group = c.benchmark_group("aegis256_1400");
    group.throughput(Throughput::Bytes(PACKET as u64));
    let mut buf = plain.clone();
    group.bench_function("seal_in_place_detached", |b| {
        b.iter(|| key.seal_in_place_detached(black_box(&nonce), &ad, black_box(&mut buf[..])));
    });
    let mut sealed = plain.clone();
    let tag = key.seal_in_place_detached(&nonce, &ad, &mut sealed);
    group.bench_function("open_in_place_detached", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&sealed));
            key.open_in_place_detached(black_box(&nonce), &ad, &mut buf[..], black_box(&tag)).expect("opens");
        });
    });
    group.finish();
}

fn precompute(c: &mut Criterion) {
    let Setup { alice, bob, .. } = setup();
    let mut group = c.benchmark_group("precompute");
    group.throughput(Throughput::Elements(1));
    group.bench_function("SharedKey::precompute", |b| {
        b.iter(|| SharedKey::precompute(black_box(bob.public()), black_box(alice.secret())));
    });
    group.finish();
}

criterion_group!(benches, seal, open, aegis, precompute);
criterion_main!(benches);
