//! Request packet (packet id 1): the payload of a
//! [data packet](super::crypto_data) that names the lossless packets its
//! sender is missing, so that the peer sends them again.
//!
//! | bytes | field                                                         |
//! |-------|---------------------------------------------------------------|
//! | 1     | 1 ([`packet_id::REQUEST`])                                    |
//! | ...   | one byte per entry: a missing packet's distance from the previous entry, or 0 |
//!
//! The sender walks its receive buffer from its `buffer_start` to its
//! `buffer_end` (one past the highest packet number it has seen). The first
//! entry's distance counts from `buffer_start - 1`, so a missing
//! `buffer_start` is a 1. A distance would not fit in a byte after 255
//! packets that all arrived: the 255th of them is then an entry of its own,
//! written as 0, which requests nothing. The packet is sealed like a lossy
//! one: with the sender's `buffer_start` and its next lossless packet number
//! in the [`DataHeader`](super::crypto_data::DataHeader), and never resent.
//!
//! For example, with `buffer_start` 1, `buffer_end` 301 and packets 1 and
//! 290 missing: `[1, 1, 0, 34]` (1 is one past 0; packet 256 closes a run of
//! 255; 290 is 34 past 256).
//!
//! The receiver walks its send buffer from its `buffer_start` (after
//! forgetting everything before the packet header's `buffer_start`) the same
//! way, for as long as entries are left: packets it reaches without an entry
//! naming them have arrived, and it forgets them; the ones named go out
//! again (c-toxcore: unless sent within the last round-trip time).
//!
//! Facts from c-toxcore 0.2.18 `net_crypto.c`:
//! - `generate_request_packet` writes the walk above into a buffer of
//!   `MAX_CRYPTO_DATA_SIZE` (1373) bytes, id included, and stops when it is
//!   full: one packet names at most 1372 entries ([`MAX_ENTRIES`]).
//!   `send_request_packet` sends it with `send_data_packet_helper` (number:
//!   the send buffer's end), once a second while connecting and, once
//!   established, more often as the receive rate grows.
//! - `handle_request_packet` walks from the send buffer's start to its end
//!   while entries are left and ignores entries past the buffer's end. It
//!   fails if the entry at the 255th packet of a run is not 0, but that
//!   cannot happen: an entry of 1 to 254 would have matched earlier in the
//!   run, and 255 matches there. Before it runs,
//!   `handle_data_packet_core` forgets packets before the header's
//!   `buffer_start` (`clear_buffer_until`); after it, it sets the receive
//!   buffer's end to the header's packet number (`set_buffer_end`).
//!
//! Spec: <https://toktok.ltd/spec.html#net-crypto> (the packet request packet).

use bytes::BufMut;

use super::DecodeError;
use super::crypto_data::{MAX_CRYPTO_DATA_SIZE, packet_id};

/// Most entries one request packet holds: a payload is at most
/// [`MAX_CRYPTO_DATA_SIZE`] bytes, one of them the packet id.
pub const MAX_ENTRIES: usize = MAX_CRYPTO_DATA_SIZE - 1;

/// Writes a request payload, packet id included, for a receive buffer from
/// `buffer_start` to `buffer_end` (exclusive) where the packets `missing`
/// yields are missing, exactly as c-toxcore's `generate_request_packet`
/// would. `missing` must count up from `buffer_start` (across the `u32`
/// wrap); numbers out of order or outside the buffer are skipped. Stops when
/// the payload is full. Returns the bytes written: 1 to 1373.
pub fn encode_request(
    buffer_start: u32,
    buffer_end: u32,
    missing: impl IntoIterator<Item = u32>,
    buf: &mut impl BufMut,
) -> usize {
    buf.put_u8(packet_id::REQUEST);
    let mut written = 1;
    // Positions are offsets from `buffer_start`; the last entry starts one
    // before it.
    let window = i64::from(buffer_end.wrapping_sub(buffer_start));
    let mut last: i64 = -1;
    let mut put = |byte: u8| {
        if written == MAX_CRYPTO_DATA_SIZE {
            return false;
        }
        buf.put_u8(byte);
        written += 1;
        true
    };
    for number in missing {
        let at = i64::from(number.wrapping_sub(buffer_start));
        if at <= last || at >= window {
            continue;
        }
        while at - last > 255 {
            if !put(0) {
                return MAX_CRYPTO_DATA_SIZE;
            }
            last += 255;
        }
        // At most 255 by the loop above, at least 1 by the check before it.
        if !put((at - last) as u8) {
            return MAX_CRYPTO_DATA_SIZE;
        }
        last = at;
    }
    // Runs of 255 received packets up to the end are entries too.
    while window - 1 - last >= 255 {
        if !put(0) {
            return MAX_CRYPTO_DATA_SIZE;
        }
        last += 255;
    }
    written
}

/// What a request packet tells its receiver about its send buffer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestedPackets {
    /// Packet numbers to send again, in order.
    pub requested: Vec<u32>,
    /// Where the walk stopped: every packet from the send buffer's start up
    /// to this one (exclusive) that is not in `requested` has arrived, and
    /// c-toxcore forgets it. Packets from here on are not covered.
    pub walked_until: u32,
}

/// Reads a request payload, packet id included, against a send buffer from
/// `buffer_start` to `buffer_end` (exclusive), as c-toxcore's
/// `handle_request_packet` does. Fails only on a wrong packet id.
pub fn decode_request(payload: &[u8], buffer_start: u32, buffer_end: u32) -> Result<RequestedPackets, DecodeError> {
    let Some((&id, mut entries)) = payload.split_first() else {
        return Err(DecodeError::UnexpectedEnd { what: "request packet id", needed: 1, available: 0 });
    };
    if id != packet_id::REQUEST {
        return Err(DecodeError::Invalid("request packet id"));
    }
    let mut requested = Vec::new();
    // Distance from the last entry: 1 to 255.
    let mut distance: u8 = 1;
    let mut number = buffer_start;
    while number != buffer_end {
        let Some((&entry, rest)) = entries.split_first() else {
            break;
        };
        if entry == distance {
            requested.push(number);
            entries = rest;
            distance = 1;
        } else if distance == 255 {
            // The 255th packet of a run. c-toxcore fails unless the entry is
            // 0 here, which cannot happen: any other value was matched on
            // the way.
            entries = rest;
            distance = 1;
        } else {
            distance += 1;
        }
        number = number.wrapping_add(1);
    }
    Ok(RequestedPackets { requested, walked_until: number })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::crypto::SharedKey;
    use crate::wire::crypto_data::{DataHeader, open_in_place, seal};
    use crate::wire::test_support::session;

    fn encode(buffer_start: u32, buffer_end: u32, missing: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        let len = encode_request(buffer_start, buffer_end, missing.iter().copied(), &mut out);
        assert_eq!(out.len(), len);
        out
    }

    /// c-toxcore's `generate_request_packet`, step by step, over a buffer
    /// where `missing` are the empty slots.
    fn reference(buffer_start: u32, buffer_end: u32, missing: &BTreeSet<u32>) -> Vec<u8> {
        let mut data = vec![packet_id::REQUEST];
        if buffer_start == buffer_end {
            return data;
        }
        let mut n: u32 = 1;
        let mut i = buffer_start;
        while i != buffer_end {
            if missing.contains(&i) {
                data.push(n as u8);
                n = 0;
                if data.len() >= MAX_CRYPTO_DATA_SIZE {
                    return data;
                }
            } else if n == 255 {
                data.push(0);
                n = 0;
                if data.len() >= MAX_CRYPTO_DATA_SIZE {
                    return data;
                }
            }
            n += 1;
            i = i.wrapping_add(1);
        }
        data
    }

    #[test]
    fn example_by_hand() {
        let payload = encode(1, 301, &[1, 290]);
        assert_eq!(payload, [1, 1, 0, 34]);
        assert_eq!(
            decode_request(&payload, 1, 301),
            Ok(RequestedPackets { requested: vec![1, 290], walked_until: 291 })
        );
        // Nothing missing, nothing received: just the id.
        assert_eq!(encode(5, 5, &[]), [1]);
        assert_eq!(encode(5, 100, &[]), [1]);
        assert_eq!(decode_request(&[1], 5, 100), Ok(RequestedPackets { requested: vec![], walked_until: 5 }));
        // Exactly 255 apart is a distance; 256 needs a run entry first.
        assert_eq!(encode(0, 600, &[0, 255]), [1, 1, 255, 0]);
        assert_eq!(encode(0, 600, &[0, 256]), [1, 1, 0, 1, 0]);
        assert_eq!(decode_request(&[1, 1, 0, 1, 0], 0, 600).unwrap().requested, [0, 256]);
        // Across the u32 wrap.
        assert_eq!(encode(u32::MAX - 1, 3, &[u32::MAX, 1]), [1, 2, 2]);
        assert_eq!(decode_request(&[1, 2, 2], u32::MAX - 1, 3).unwrap().requested, [u32::MAX, 1]);
        // Out of order or outside the buffer: skipped.
        assert_eq!(encode(10, 20, &[12, 11, 12, 25, 9, 19]), [1, 3, 7]);
    }

    #[test]
    fn decode_follows_c_toxcore_on_odd_input() {
        assert!(decode_request(&[], 0, 10).is_err());
        assert_eq!(decode_request(&[2, 1], 0, 10), Err(DecodeError::Invalid("request packet id")));
        // Entries past the buffer's end are ignored; so is a 0 that ends
        // before a run does.
        assert_eq!(
            decode_request(&[1, 2, 9, 9, 9], 0, 4),
            Ok(RequestedPackets { requested: vec![1], walked_until: 4 })
        );
        assert_eq!(decode_request(&[1, 0], 0, 10), Ok(RequestedPackets { requested: vec![], walked_until: 10 }));
    }

    #[test]
    fn a_full_window_needs_several_packets() {
        // Every packet missing: 1372 entries fit, the rest wait.
        let missing: Vec<u32> = (0..5000).collect();
        let payload = encode(0, 5000, &missing);
        assert_eq!(payload.len(), MAX_CRYPTO_DATA_SIZE);
        let decoded = decode_request(&payload, 0, 5000).unwrap();
        assert_eq!(decoded.requested, (0..MAX_ENTRIES as u32).collect::<Vec<_>>());
        assert_eq!(decoded.walked_until, MAX_ENTRIES as u32);
        assert_eq!(payload, reference(0, 5000, &missing.into_iter().collect()));
        // A whole receive buffer without holes: 128 run entries.
        assert_eq!(encode(0, 32768, &[]).len(), 1 + 32767 / 255);
    }

    #[test]
    fn matches_c_toxcore() {
        // B asked A for the two packets the network dropped: 1 and 290 of
        // 0 to 300, after receiving packet 0.
        let key = SharedKey::precompute(session::b_session().public(), session::a_session().secret()).unwrap();
        let mut recv = session::B_BASE_NONCE;
        let mut packet = session::DATA_B_REQUEST.to_vec();
        let opened = open_in_place(&key, &mut recv, &mut packet).unwrap();
        assert_eq!(opened.header, DataHeader::new(1, 0));
        assert_eq!(opened.id, packet_id::REQUEST);
        let payload = &packet[opened.payload()];
        assert_eq!(payload, [1, 1, 0, 34]);
        assert_eq!(payload, encode(1, 301, &[1, 290]));
        assert_eq!(decode_request(payload, 1, 301).unwrap().requested, [1, 290]);

        // A's answer: packets 1 and 290 again, and nothing else.
        let key = session::session_key();
        let b_key = SharedKey::precompute(session::a_session().public(), session::b_session().secret()).unwrap();
        for (resent, number, offset) in [(session::DATA_A_RESENT_1, 1, 313), (session::DATA_A_RESENT_290, 290, 314)] {
            let mut recv = session::A_BASE_NONCE;
            let mut packet = resent.to_vec();
            let opened = open_in_place(&b_key, &mut recv, &mut packet).unwrap();
            assert_eq!(opened.header, DataHeader::new(0, number));
            let payload = [160, number as u8, (number >> 8) as u8];
            assert_eq!(packet[opened.payload()], payload);
            let mut send = session::A_BASE_NONCE;
            send.increment_by(offset);
            let mut ours = [0u8; 32];
            seal(&key, &mut send, DataHeader::new(0, number), &payload, &mut ours).unwrap();
            assert_eq!(ours, resent);
        }
    }

    fn arb_buffer() -> impl Strategy<Value = (u32, u32, BTreeSet<u32>)> {
        (any::<u32>(), 0u32..3000).prop_flat_map(|(start, len)| {
            let offsets = proptest::collection::btree_set(0..len.max(1), 0..=(len as usize).min(1500));
            (Just(start), Just(start.wrapping_add(len)), offsets).prop_map(move |(start, end, offsets)| {
                let missing = offsets.into_iter().filter(|o| *o < len).map(|o| start.wrapping_add(o)).collect();
                (start, end, missing)
            })
        })
    }

    proptest! {
        #[test]
        fn encode_is_c_toxcores_walk((start, end, missing) in arb_buffer()) {
            let mut in_order: Vec<u32> = missing.iter().copied().collect();
            in_order.sort_by_key(|n| n.wrapping_sub(start));
            let payload = encode(start, end, &in_order);
            prop_assert_eq!(&payload, &reference(start, end, &missing));
            let decoded = decode_request(&payload, start, end).unwrap();
            let fitted = payload.iter().skip(1).filter(|b| **b != 0).count();
            prop_assert_eq!(&decoded.requested[..], &in_order[..fitted]);
            if payload.len() < MAX_CRYPTO_DATA_SIZE {
                prop_assert_eq!(decoded.requested.len(), in_order.len());
            }
        }

        #[test]
        fn arbitrary_input_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..1400), start in any::<u32>(), len in 0u32..70000) {
            let _ = decode_request(&payload, start, start.wrapping_add(len));
        }
    }
}
