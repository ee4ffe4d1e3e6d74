//! The SOCKS5 server side of `-D` (RFC 1928): no authentication, CONNECT
//! only, IPv4, IPv6 and domain-name destinations. The destination travels
//! to the exit side in REQUESTTUNNEL; the reply is sent once the exit
//! answered, with a failure code that says why when it refused.

use std::net::{Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::rules::Host;
use crate::spec::Target;

/// Reply: succeeded.
pub const REPLY_SUCCEEDED: u8 = 0x00;
/// Reply: general SOCKS server failure.
pub const REPLY_GENERAL_FAILURE: u8 = 0x01;
/// Reply: connection not allowed by ruleset.
pub const REPLY_NOT_ALLOWED: u8 = 0x02;
/// Reply: network unreachable (also: the tunnel server is offline).
pub const REPLY_NETWORK_UNREACHABLE: u8 = 0x03;
/// Reply: host unreachable.
pub const REPLY_HOST_UNREACHABLE: u8 = 0x04;
/// Reply: connection refused.
pub const REPLY_CONNECTION_REFUSED: u8 = 0x05;
/// Reply: command not supported.
pub const REPLY_COMMAND_NOT_SUPPORTED: u8 = 0x07;
/// Reply: address type not supported.
pub const REPLY_ADDRESS_NOT_SUPPORTED: u8 = 0x08;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
const CMD_CONNECT: u8 = 1;

/// Why a SOCKS5 handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocksError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("not SOCKS version 5 (got {0})")]
    Version(u8),
    #[error("the client offers no 'no authentication' method")]
    NoAcceptableMethod,
    #[error("command {0} is not supported (CONNECT only)")]
    Command(u8),
    #[error("address type {0} is not supported")]
    AddressType(u8),
    #[error("invalid domain name")]
    Domain,
}

/// Reads the greeting and the request, answering the method selection and
/// any failure; returns the requested destination.
pub(crate) async fn handshake<S>(s: &mut S) -> Result<Target, SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let [version, n_methods] = read_array(s).await?;
    if version != VERSION {
        return Err(SocksError::Version(version));
    }
    let mut methods = vec![0; usize::from(n_methods)];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        s.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
        return Err(SocksError::NoAcceptableMethod);
    }
    s.write_all(&[VERSION, NO_AUTH]).await?;

    let [version, command, _reserved, address_type] = read_array(s).await?;
    if version != VERSION {
        return Err(SocksError::Version(version));
    }
    let host = match address_type {
        1 => Ipv4Addr::from(read_array::<4, _>(s).await?).to_string(),
        3 => {
            let [len] = read_array(s).await?;
            let mut name = vec![0; usize::from(len)];
            s.read_exact(&mut name).await?;
            match String::from_utf8(name).ok().filter(|n| Host::parse(n).is_some()) {
                Some(name) => name,
                None => {
                    reply(s, REPLY_GENERAL_FAILURE).await?;
                    return Err(SocksError::Domain);
                }
            }
        }
        4 => Ipv6Addr::from(read_array::<16, _>(s).await?).to_string(),
        other => {
            reply(s, REPLY_ADDRESS_NOT_SUPPORTED).await?;
            return Err(SocksError::AddressType(other));
        }
    };
    let port = u16::from_be_bytes(read_array(s).await?);
    if command != CMD_CONNECT {
        reply(s, REPLY_COMMAND_NOT_SUPPORTED).await?;
        return Err(SocksError::Command(command));
    }
    Ok(Target { host, port })
}

/// Sends a reply; the bound address is unknown here, so 0.0.0.0:0.
pub(crate) async fn reply<S: AsyncWrite + Unpin>(s: &mut S, code: u8) -> std::io::Result<()> {
    s.write_all(&[VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    s.flush().await
}

async fn read_array<const N: usize, S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<[u8; N]> {
    let mut buf = [0; N];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(client_bytes: &[u8]) -> (Result<Target, SocksError>, Vec<u8>) {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        theirs.write_all(client_bytes).await.unwrap();
        theirs.shutdown().await.unwrap();
        let result = handshake(&mut ours).await;
        drop(ours);
        let mut answer = Vec::new();
        theirs.read_to_end(&mut answer).await.unwrap();
        (result, answer)
    }

    #[tokio::test]
    async fn connect_requests() {
        let (t, a) = run(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 22]).await;
        assert_eq!(t.unwrap(), Target { host: "127.0.0.1".into(), port: 22 });
        assert_eq!(a, [5, 0]);
        let mut v6 = vec![5, 2, 2, 0, 5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[1, 187]);
        assert_eq!(run(&v6).await.0.unwrap(), Target { host: "::1".into(), port: 443 });
        let mut name = vec![5, 1, 0, 5, 1, 0, 3, 9];
        name.extend_from_slice(b"localhost");
        name.extend_from_slice(&[0, 80]);
        assert_eq!(run(&name).await.0.unwrap(), Target { host: "localhost".into(), port: 80 });
    }

    #[tokio::test]
    async fn refusals_are_answered() {
        let (r, a) = run(&[5, 1, 2]).await;
        assert!(matches!(r, Err(SocksError::NoAcceptableMethod)));
        assert_eq!(a, [5, 0xFF]);
        let (r, a) = run(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 22]).await;
        assert!(matches!(r, Err(SocksError::Command(2))));
        assert_eq!(a[2..4], [5, REPLY_COMMAND_NOT_SUPPORTED]);
        let (r, a) = run(&[5, 1, 0, 5, 1, 0, 9]).await;
        assert!(matches!(r, Err(SocksError::AddressType(9))));
        assert_eq!(a[2..4], [5, REPLY_ADDRESS_NOT_SUPPORTED]);
        let (r, _) = run(&[5, 1, 0, 5, 1, 0, 3, 3, b'a', b' ', b'b', 0, 1]).await;
        assert!(matches!(r, Err(SocksError::Domain)));
        assert!(matches!(run(&[4, 1, 0]).await.0, Err(SocksError::Version(4))));
        assert!(matches!(run(&[5, 1]).await.0, Err(SocksError::Io(_))));
    }
}
