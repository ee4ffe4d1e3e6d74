//! Garbage into `Engine::incoming`: every packet is counted, none panics
//! the engine, and the engine still answers afterwards.

mod common;

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;
use tunnel::frame::{DenyReason, Extension, Frame};
use tunnel::spec::Target;
use tunnel::{Config, Engine, ExitConfig, PeerId, PeerLink, Rules};

fn any_frame() -> impl Strategy<Value = Frame> {
    let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from);
    let ext =
        proptest::option::of((any::<u8>(), 0u32..100_000).prop_map(|(flags, window)| Extension { flags, window }));
    // Small ids so that frames hit the tunnels and requests the engine knows.
    let id = 0u16..4;
    prop_oneof![
        bytes(64).prop_map(Frame::Ping),
        bytes(64).prop_map(Frame::Pong),
        (any::<u16>(), 0u32..4, proptest::collection::vec(1u8..=255, 0..40), ext.clone()).prop_map(
            |(port, forward_id, host, ext)| Frame::RequestTunnel { port, forward_id, host: host.into(), ext }
        ),
        (id.clone(), 0u32..4, ext).prop_map(|(tunnel, forward_id, ext)| Frame::AckTunnel { tunnel, forward_id, ext }),
        (0u32..4, any::<u8>(), bytes(20)).prop_map(|(forward_id, code, message)| Frame::DenyTunnel {
            forward_id,
            reason: DenyReason::from_code(code),
            message
        }),
        (id.clone(), bytes(1400)).prop_map(|(tunnel, data)| Frame::Tcp { tunnel, data }),
        id.clone().prop_map(|tunnel| Frame::TcpFin { tunnel }),
        (id.clone(), any::<u32>()).prop_map(|(tunnel, increment)| Frame::Window { tunnel, increment }),
        id.prop_map(|tunnel| Frame::Reset { tunnel }),
    ]
}

/// Valid frames, truncated or bit-flipped ones, and random bytes.
fn any_packet() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any_frame().prop_filter_map("encodable", |f| f.to_bytes().ok().map(|b| b.to_vec())),
        (any_frame(), any::<usize>(), any::<(usize, u8)>()).prop_filter_map("encodable", |(f, cut, (at, x))| {
            let mut b = f.to_bytes().ok()?.to_vec();
            b.truncate(cut % (b.len() + 1));
            if let Some(byte) = b.get_mut(at % 1400) {
                *byte ^= x;
            }
            Some(b)
        }),
        proptest::collection::vec(any::<u8>(), 0..1500),
    ]
}

fn exit_engine() -> Engine {
    // The exit's rules allow only a name, so random hosts are denied
    // before any lookup: no query ever leaves the machine.
    let rules = Rules::parse("localhost:9\n", "test").unwrap();
    let exit = Config::exit(ExitConfig { rules: Some(rules), connect_timeout: Duration::from_secs(2) });
    Engine::new(exit, CancellationToken::new())
}

/// A client with one open tunnel (id 1, flow control on) whose local end
/// is drained, so that garbage reaches a live tunnel too.
async fn client_with_a_tunnel(peer: PeerId) -> (Engine, PeerLink) {
    let engine = Engine::new(Config::client(), CancellationToken::new());
    let mut link = engine.peer_connected(peer);
    let (ours, mut app) = tokio::io::duplex(1 << 16);
    let target = Target { host: "h".into(), port: 1 };
    tokio::spawn({
        let engine = engine.clone();
        async move { engine.forward_stream(peer, &target, ours).await }
    });
    tokio::spawn(async move { tokio::io::copy(&mut app, &mut tokio::io::sink()).await });
    let request = common::bounded("request", link.recv()).await.unwrap();
    let Ok(Frame::RequestTunnel { forward_id, ext, .. }) = Frame::decode(&request) else { panic!("no request") };
    let ack = Frame::AckTunnel { tunnel: 1, forward_id, ext };
    engine.incoming(peer, ack.to_bytes().unwrap()).await.unwrap();
    common::eventually("tunnel open", || engine.stats().tunnels_open == 1).await;
    (engine, link)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_survives_any_packets(packets in proptest::collection::vec(any_packet(), 0..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let peer = PeerId(7);
            let exit = exit_engine();
            let exit_link = exit.peer_connected(peer);
            for (engine, mut link) in [client_with_a_tunnel(peer).await, (exit, exit_link)] {
                let frames_before = engine.stats().frames_in;
                // Drain what the engine sends (PONGs, DENYs, FINs...).
                let drained = tokio::spawn(async move {
                    while let Some(frame) = link.recv().await {
                        let frame = Frame::decode(&frame).expect("the engine sent an invalid frame");
                        if frame == Frame::Pong(Bytes::from_static(b"alive?")) {
                            return true;
                        }
                    }
                    false
                });
                for packet in &packets {
                    common::bounded("incoming", engine.incoming(peer, Bytes::copy_from_slice(packet))).await.unwrap();
                }
                let ping = Frame::Ping(Bytes::from_static(b"alive?")).to_bytes().unwrap();
                common::bounded("ping", engine.incoming(peer, ping)).await.unwrap();
                assert!(common::bounded("pong", drained).await.unwrap(), "no PONG after the garbage");
                assert_eq!(engine.stats().frames_in - frames_before, packets.len() as u64 + 1);
                common::bounded("shutdown", engine.shutdown()).await;
            }
        });
    }
}

#[tokio::test]
async fn each_malformation_is_counted_by_reason() {
    let engine = Engine::new(Config::client(), CancellationToken::new());
    let peer = PeerId(3);
    let mut link = engine.peer_connected(peer);
    for packet in [
        &b"\xa2\x6b\x01"[..],                                    // too short
        b"\xa2\x6a\x01\x08\x00\x00\x00\x00",                     // version 1
        b"\x00\x00\x01\x08\x00\x00\x00\x00",                     // bad magic
        b"\xa2\x6b\x06\x00\x00\x01\x00\x09abc",                  // truncated
        b"\xa2\x6b\x07\x00\x00\x01\x00\x00",                     // unknown type
        b"\xa2\x6b\x06\x10\x00\x01\x00\x02ab",                   // malformed ACK
        b"\xa2\x6b\x06\x00\x00\x01\x00\x03abc",                  // unknown tunnel
        b"\xa2\x6b\x06\x04\x00\x00\x00\x05\x00\x00\x00\x01\x01", // DENY nobody waits for
    ] {
        engine.incoming(peer, Bytes::copy_from_slice(packet)).await.unwrap();
    }
    let mut long = b"\xa2\x6b\x06\x00\x00\x01\x05\x56".to_vec();
    long.resize(8 + 1366, 0);
    engine.incoming(peer, long.into()).await.unwrap();
    assert_eq!(engine.incoming(PeerId(99), Bytes::from_static(b"x")).await, Err(tunnel::NotConnected));
    // A PING after all of it is still answered.
    engine.incoming(peer, Frame::Ping("x".into()).to_bytes().unwrap()).await.unwrap();
    let pong = common::bounded("pong", link.recv()).await.unwrap();
    assert_eq!(Frame::decode(&pong).unwrap(), Frame::Pong("x".into()));
    let d = engine.stats().dropped;
    assert_eq!(
        (d.too_short, d.version1, d.bad_magic, d.truncated, d.too_long, d.unknown_type, d.malformed),
        (1, 1, 1, 1, 1, 1, 1)
    );
    assert_eq!((d.unknown_tunnel, d.unexpected, d.unknown_peer), (1, 1, 1));
    engine.shutdown().await;
}
