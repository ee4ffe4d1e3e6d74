//! The layouts that several TCP packets share, one macro each. A packet's
//! own file keeps its byte-layout table and its tests and invokes the
//! macro of its shape, which writes the type and its codec:
//!
//! | macro                   | layout after the id byte     | packets |
//! |-------------------------|------------------------------|---------|
//! | [`key_and_data_packet`] | public key 32, data 1-1024   | [`OobSend`](super::OobSend), [`OobRecv`](super::OobRecv) |
//! | [`connection_packet`]   | connection id 1 (16-255)     | [`ConnectNotification`](super::ConnectNotification), [`DisconnectNotification`](super::DisconnectNotification) |
//! | [`ping_id_packet`]      | ping id 8 (big-endian `u64`) | [`Ping`](super::Ping), [`Pong`](super::Pong) |
//!
//! Each takes the packet's name and doc, its id (a constant of
//! [`id`](super::id)), and `what`, the packet's name in decode errors
//! ("OOB send" gives "OOB send id", "OOB send key" and "OOB send data").

/// `[id][public key 32][data 1-1024]`: a key (the field named `key:`) and
/// 1 to [`MAX_OOB_DATA_LEN`](super::MAX_OOB_DATA_LEN) bytes of data. Empty
/// data is refused; data past the limit is refused as trailing bytes.
macro_rules! key_and_data_packet {
    (
        $(#[$doc:meta])*
        $name:ident {
            id: $id:ident,
            what: $what:literal,
            $(#[$key_doc:meta])*
            key: $key:ident $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name {
            $(#[$key_doc])*
            pub $key: $crate::crypto::PublicKey,
            /// The data, 1 to 1024 bytes.
            pub data: ::bytes::Bytes,
        }

        impl $name {
            /// A packet; `None` when `data` is empty or over 1024 bytes.
            pub fn new($key: $crate::crypto::PublicKey, data: ::bytes::Bytes) -> Option<Self> {
                (1..=$crate::wire::tcp::MAX_OOB_DATA_LEN).contains(&data.len()).then_some(Self { $key, data })
            }

            /// Reads a whole plaintext.
            pub fn decode(plain: impl Into<::bytes::Bytes>) -> Result<Self, $crate::wire::DecodeError> {
                let mut r = $crate::wire::Reader::new(plain);
                $crate::wire::tcp::expect_id(&mut r, $crate::wire::tcp::id::$id, concat!($what, " id"))?;
                let $key = $crate::wire::tcp::public_key(&mut r, concat!($what, " key"))?;
                let data = r.rest();
                if data.is_empty() {
                    return Err($crate::wire::DecodeError::UnexpectedEnd {
                        what: concat!($what, " data"),
                        needed: 1,
                        available: 0,
                    });
                }
                if data.len() > $crate::wire::tcp::MAX_OOB_DATA_LEN {
                    return Err($crate::wire::DecodeError::TrailingBytes(
                        data.len() - $crate::wire::tcp::MAX_OOB_DATA_LEN,
                    ));
                }
                Ok(Self { $key, data })
            }

            /// Writes the plaintext.
            pub fn encode(&self, buf: &mut impl ::bytes::BufMut) {
                buf.put_u8($crate::wire::tcp::id::$id);
                buf.put_slice(self.$key.as_bytes());
                buf.put_slice(&self.data);
            }

            /// What [`encode`](Self::encode) writes.
            pub fn encoded_len(&self) -> usize {
                1 + $crate::crypto::PUBLIC_KEY_LEN + self.data.len()
            }
        }
    };
}
pub(super) use key_and_data_packet;

/// `[id][connection id]`: two bytes naming one connection (16 to 255);
/// anything longer, shorter or with an id below 16 is refused.
macro_rules! connection_packet {
    (
        $(#[$doc:meta])*
        $name:ident {
            id: $id:ident,
            what: $what:literal $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name {
            /// The connection.
            pub connection: $crate::wire::tcp::ConnectionId,
        }

        impl $name {
            /// Length: two bytes.
            pub const LEN: usize = 2;

            /// A notification about `connection`.
            pub const fn new(connection: $crate::wire::tcp::ConnectionId) -> Self {
                Self { connection }
            }

            /// Reads a whole plaintext.
            pub fn decode(plain: impl Into<::bytes::Bytes>) -> Result<Self, $crate::wire::DecodeError> {
                let mut r = $crate::wire::Reader::new(plain);
                $crate::wire::tcp::expect_id(&mut r, $crate::wire::tcp::id::$id, concat!($what, " id"))?;
                let connection = $crate::wire::tcp::ConnectionId::decode(&mut r, concat!($what, " connection id"))?;
                r.finish()?;
                Ok(Self { connection })
            }

            /// Writes the plaintext.
            pub fn encode(&self, buf: &mut impl ::bytes::BufMut) {
                buf.put_u8($crate::wire::tcp::id::$id);
                buf.put_u8(self.connection.get());
            }

            /// Always 2.
            pub const fn encoded_len(&self) -> usize {
                Self::LEN
            }
        }
    };
}
pub(super) use connection_packet;

/// `[id][ping id u64 BE]`: nine bytes exactly.
macro_rules! ping_id_packet {
    (
        $(#[$doc:meta])*
        $name:ident {
            id: $id:ident,
            what: $what:literal $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name {
            /// The id (0 is not a valid one).
            pub ping_id: u64,
        }

        impl $name {
            /// Length: id byte and ping id.
            pub const LEN: usize = 1 + 8;

            #[doc = concat!("A ", $what, " with this id.")]
            pub const fn new(ping_id: u64) -> Self {
                Self { ping_id }
            }

            /// Reads a whole plaintext.
            pub fn decode(plain: impl Into<::bytes::Bytes>) -> Result<Self, $crate::wire::DecodeError> {
                let mut r = $crate::wire::Reader::new(plain);
                $crate::wire::tcp::expect_id(&mut r, $crate::wire::tcp::id::$id, concat!($what, " id"))?;
                let ping_id = r.u64_be(concat!($what, " ping id"))?;
                r.finish()?;
                Ok(Self { ping_id })
            }

            /// Writes the plaintext.
            pub fn encode(&self, buf: &mut impl ::bytes::BufMut) {
                buf.put_u8($crate::wire::tcp::id::$id);
                buf.put_u64(self.ping_id);
            }

            /// Always 9.
            pub const fn encoded_len(&self) -> usize {
                Self::LEN
            }
        }
    };
}
pub(super) use ping_id_packet;
