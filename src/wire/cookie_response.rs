//! Cookie response (0x19): the answer to a [cookie request](super::cookie_request),
//! carrying a [cookie](super::cookie) for the requester.
//!
//! | bytes | field                                              |
//! |-------|----------------------------------------------------|
//! | 1     | 0x19                                               |
//! | 24    | nonce, random per packet                           |
//! | 16    | MAC                                                |
//! | 112   | encrypted: the cookie                              |
//! | 8     | encrypted: the request's echo id                   |
//!
//! 161 bytes. It is sealed with the key of the request: both DHT keys, so
//! the response needs no sender key in the clear. The requester sends its
//! [handshake](super::crypto_handshake) with the cookie next.
//!
//! Facts from c-toxcore 0.2.18 `net_crypto.c`: `create_cookie_response`
//! builds it (`COOKIE_RESPONSE_LENGTH` = 161) and copies the echo id from
//! the request's last 8 bytes; `handle_cookie_response` accepts exactly 161
//! bytes, and `handle_packet_cookie_response` drops a response whose echo id
//! is not the connection's `cookie_request_number`, or that arrives when the
//! connection is no longer requesting a cookie. The answer goes back the
//! way the request came: to its source address (`udp_handle_cookie_request`),
//! over the same relay connection (`tcp_handle_cookie_request`), or out of
//! band to the same DHT key (`tcp_oob_handle_cookie_request`).
//!
//! Spec: <https://toktok.ltd/spec.html#net-crypto> ("cookie response packet").

use bytes::{Buf, BufMut, Bytes};

use super::cookie::{COOKIE_LEN, Cookie};
use super::{DecodeError, Reader};
use crate::crypto::{CryptoError, MAC_LEN, NONCE_LEN, Nonce, SharedKey};

/// The packet kind.
pub const COOKIE_RESPONSE_KIND: u8 = 0x19;

/// A cookie response's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CookieResponsePayload {
    /// The cookie for the requester.
    pub cookie: Cookie,
    /// The request's echo id.
    pub echo_id: u64,
}

impl CookieResponsePayload {
    /// Plaintext length.
    pub const LEN: usize = COOKIE_LEN + 8;

    /// The answer to a request with `echo_id`.
    pub const fn new(cookie: Cookie, echo_id: u64) -> Self {
        Self { cookie, echo_id }
    }

    fn to_plaintext(self) -> [u8; Self::LEN] {
        let mut plain = [0u8; Self::LEN];
        let mut out = &mut plain[..];
        self.cookie.encode(&mut out);
        out.put_u64(self.echo_id);
        plain
    }

    fn from_plaintext(plain: &[u8; Self::LEN]) -> Self {
        // Fixed-size input: none of these reads can run short.
        let mut bytes = &plain[..];
        let mut cookie = [0u8; COOKIE_LEN];
        bytes.copy_to_slice(&mut cookie);
        Self { cookie: Cookie::from_bytes(cookie), echo_id: bytes.get_u64() }
    }
}

/// A cookie response, its payload still sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CookieResponse {
    /// The nonce the payload was sealed with.
    pub nonce: Nonce,
    /// `[MAC 16][ciphertext 120]`.
    pub payload: [u8; MAC_LEN + CookieResponsePayload::LEN],
}

impl CookieResponse {
    /// Length of the datagram.
    pub const LEN: usize = 1 + NONCE_LEN + MAC_LEN + CookieResponsePayload::LEN;

    /// Seals `payload` with the key the request came with.
    pub fn seal(key: &SharedKey, nonce: Nonce, payload: &CookieResponsePayload) -> Self {
        let mut sealed = [0u8; MAC_LEN + CookieResponsePayload::LEN];
        let (mac_slot, body) = sealed.split_at_mut(MAC_LEN);
        body.copy_from_slice(&payload.to_plaintext());
        let mac = key.seal_in_place_detached(&nonce, body);
        mac_slot.copy_from_slice(&mac);
        Self { nonce, payload: sealed }
    }

    /// Checks the MAC and returns the plaintext.
    pub fn open(&self, key: &SharedKey) -> Result<CookieResponsePayload, CryptoError> {
        let (mac, body) = self.payload.split_at(MAC_LEN);
        let mut plain = [0u8; CookieResponsePayload::LEN];
        plain.copy_from_slice(body);
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(mac);
        key.open_in_place_detached(&self.nonce, &mut plain, &tag)?;
        Ok(CookieResponsePayload::from_plaintext(&plain))
    }

    /// Reads a whole datagram: exactly 161 bytes.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.u8("cookie response kind")? != COOKIE_RESPONSE_KIND {
            return Err(DecodeError::Invalid("cookie response kind"));
        }
        let nonce = Nonce::from_bytes(r.array("cookie response nonce")?);
        let payload = r.array("cookie response payload")?;
        r.finish()?;
        Ok(Self { nonce, payload })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(COOKIE_RESPONSE_KIND);
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes: always 161 bytes.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::cookie::CookieContents;
    use crate::wire::test_support::{arb_cookie, arb_nonce, damage, session};

    fn encode(response: &CookieResponse) -> Vec<u8> {
        let mut out = Vec::new();
        response.encode(&mut out);
        assert_eq!(out.len(), response.encoded_len());
        out
    }

    #[test]
    fn layout_by_hand() {
        let key = SharedKey::from_bytes([0x55; 32]);
        let cookie = Cookie::from_bytes([0x11; COOKIE_LEN]);
        let response =
            CookieResponse::seal(&key, Nonce::from_bytes([0x22; 24]), &CookieResponsePayload::new(cookie, 0x0102));
        let bytes = encode(&response);
        assert_eq!(bytes.len(), 161);
        assert_eq!(bytes[0], 0x19);
        assert_eq!(bytes[1..25], [0x22; 24]);
        // The plaintext the MAC covers: the cookie, then the echo id.
        let plain = key.open(&Nonce::from_bytes([0x22; 24]), &bytes[25..]).unwrap();
        assert_eq!(plain[..112], [0x11; 112]);
        assert_eq!(plain[112..], [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(CookieResponse::decode(bytes.clone()), Ok(response));

        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(CookieResponse::decode(long), Err(DecodeError::TrailingBytes(1)));
        assert!(matches!(CookieResponse::decode(bytes[..160].to_vec()), Err(DecodeError::UnexpectedEnd { .. })));
        let mut wrong = bytes;
        wrong[0] = 0x18;
        assert_eq!(CookieResponse::decode(wrong), Err(DecodeError::Invalid("cookie response kind")));
    }

    #[test]
    fn matches_c_toxcore() {
        let (a_real, a_dht, b_dht) = (session::a_real(), session::a_dht(), session::b_dht());
        let response = CookieResponse::decode(session::COOKIE_RESPONSE.to_vec()).unwrap();
        assert_eq!(response.nonce, session::COOKIE_RESPONSE_NONCE);
        // A opens it with the key it sealed its request with.
        let key = SharedKey::precompute(b_dht.public(), a_dht.secret()).unwrap();
        let payload = response.open(&key).unwrap();
        assert_eq!(payload.echo_id.to_be_bytes(), session::ECHO_ID);
        // The cookie is B's, for A's two keys.
        assert_eq!(payload.cookie.nonce(), session::B_COOKIE_NONCE);
        let contents = payload.cookie.open(&session::b_cookie_key()).unwrap();
        assert_eq!((contents.real_pk, contents.dht_pk), (*a_real.public(), *a_dht.public()));
        assert_eq!(
            CookieContents::new(contents.time, contents.real_pk, contents.dht_pk)
                .seal(&session::b_cookie_key(), session::B_COOKIE_NONCE),
            payload.cookie
        );

        let ours = CookieResponse::seal(&key, session::COOKIE_RESPONSE_NONCE, &payload);
        assert_eq!(encode(&ours), session::COOKIE_RESPONSE);
        assert_eq!(response.open(&SharedKey::from_bytes([0; 32])), Err(CryptoError::Decrypt));
    }

    proptest! {
        #[test]
        fn round_trips(cookie in arb_cookie(), echo_id in any::<u64>(), nonce in arb_nonce(), key in any::<[u8; 32]>()) {
            let key = SharedKey::from_bytes(key);
            let payload = CookieResponsePayload::new(cookie, echo_id);
            let response = CookieResponse::seal(&key, nonce, &payload);
            let back = CookieResponse::decode(encode(&response)).unwrap();
            prop_assert_eq!(back, response);
            prop_assert_eq!(back.open(&key), Ok(payload));
        }

        #[test]
        fn damaged_input_never_panics(cookie in arb_cookie(), nonce in arb_nonce(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = SharedKey::from_bytes([7; 32]);
            let response = CookieResponse::seal(&key, nonce, &CookieResponsePayload::new(cookie, 1));
            if let Ok(damaged) = CookieResponse::decode(damage(encode(&response), flip, bit, cut)) {
                let _ = damaged.open(&key);
            }
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CookieResponse::decode(bytes);
        }
    }
}
