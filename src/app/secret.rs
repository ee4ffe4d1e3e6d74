//! The shared secret (`-s`, `TUNTOX_SHARED_SECRET`).
//!
//! As in C tuntox, a client proves it knows the secret by sending it, followed
//! by a NUL byte, as its friend-request message (Tox encrypts that message to
//! the server's key). The server compares in constant time.

use std::fmt;

use crate::crypto::ct_eq;

/// The longest secret that fits a friend request with its NUL byte (921
/// bytes: c-toxcore 0.2.21 and later drop longer requests on the onion
/// path, though its TOX_MAX_FRIEND_REQUEST_LENGTH is 1016).
pub const MAX_SECRET_LEN: usize = crate::wire::friend_request::MAX_SENT_MESSAGE_LEN - 1;

/// A shared secret. Never printed: `Debug` and `Display` say `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Why a secret is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Empty secret.
    #[error("the secret is empty")]
    Empty,
    /// Too long for a friend request.
    #[error("the secret is {0} bytes; at most {MAX_SECRET_LEN} fit in a Tox friend request")]
    TooLong(usize),
    /// Contains a NUL byte, which ends the secret on the wire.
    #[error("the secret contains a NUL character")]
    Nul,
}

impl Secret {
    /// Checks and wraps a secret.
    pub fn new(secret: impl Into<String>) -> Result<Self, SecretError> {
        let secret = secret.into();
        match secret.len() {
            0 => Err(SecretError::Empty),
            n if n > MAX_SECRET_LEN => Err(SecretError::TooLong(n)),
            _ if secret.contains('\0') => Err(SecretError::Nul),
            _ => Ok(Self(secret)),
        }
    }

    /// The friend-request message that carries it: the secret and a NUL.
    pub fn request_message(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(self.0.len() + 1);
        message.extend_from_slice(self.0.as_bytes());
        message.push(0);
        message
    }

    /// Whether a friend-request message carries this secret, compared in
    /// constant time.
    pub fn matches_request(&self, message: &[u8]) -> bool {
        ct_eq(&self.request_message(), message)
    }
}

impl std::str::FromStr for Secret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_message_is_the_secret_and_a_nul() {
        let secret = Secret::new("s3cret").unwrap();
        assert_eq!(secret.request_message(), b"s3cret\0");
        assert!(secret.matches_request(b"s3cret\0"));
        assert!(!secret.matches_request(b"s3cret"));
        assert!(!secret.matches_request(b"s3creT\0"));
        assert!(!secret.matches_request(b"Hi, fell"));
    }

    #[test]
    fn limits_and_redaction() {
        assert_eq!(Secret::new(""), Err(SecretError::Empty));
        assert!(Secret::new("x".repeat(MAX_SECRET_LEN)).is_ok());
        assert_eq!(Secret::new("x".repeat(1016)), Err(SecretError::TooLong(1016)));
        assert_eq!(Secret::new("a\0b"), Err(SecretError::Nul));
        let secret = Secret::new("hunter2").unwrap();
        assert_eq!(format!("{secret} {secret:?}"), "<redacted> Secret(<redacted>)");
    }
}
