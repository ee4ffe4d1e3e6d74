//! SSDP search (UPnP Device Architecture 1.1, section 1.3): an `M-SEARCH`
//! multicast to 239.255.255.250:1900 on the LAN, and the unicast answers
//! of the devices that match, each naming its description's URL in
//! `LOCATION`.
//!
//! ```text
//! M-SEARCH * HTTP/1.1              HTTP/1.1 200 OK
//! HOST: 239.255.255.250:1900       CACHE-CONTROL: max-age=120
//! MAN: "ssdp:discover"             ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1
//! MX: 1                            USN: uuid:...::urn:...
//! ST: <search target>              LOCATION: http://10.9.0.1:5000/rootDesc.xml
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};

use super::http::{HttpUrl, Malformed, Response};

/// Where searches go.
pub const MULTICAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);
/// The search targets of an Internet gateway: the device (versions 1 and
/// 2) and its WAN connection services, which some routers answer alone.
pub const GATEWAY_TARGETS: [&str; 4] = [
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];

/// An `M-SEARCH` for `target`; devices answer within `mx` seconds.
pub fn search(target: &str, mx: u8) -> Vec<u8> {
    format!("M-SEARCH * HTTP/1.1\r\nHOST: {MULTICAST}\r\nMAN: \"ssdp:discover\"\r\nMX: {mx}\r\nST: {target}\r\n\r\n")
        .into_bytes()
}

/// A device's answer to a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The search target it matched.
    pub target: String,
    /// Its description document.
    pub location: HttpUrl,
}

/// Reads an answer: status 200, an `ST` among [`GATEWAY_TARGETS`] and a
/// `LOCATION` with an IP address.
pub fn parse_answer(data: &[u8]) -> Result<Found, Malformed> {
    let response = Response::parse(data)?;
    if response.status != 200 {
        return Err(Malformed("SSDP answer status"));
    }
    let target = response.header("st").ok_or(Malformed("SSDP answer: no ST"))?;
    if !GATEWAY_TARGETS.iter().any(|t| t.eq_ignore_ascii_case(target)) {
        return Err(Malformed("SSDP answer: not a gateway"));
    }
    let location = HttpUrl::parse(response.header("location").ok_or(Malformed("SSDP answer: no LOCATION"))?)?;
    Ok(Found { target: target.to_owned(), location })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn searches_and_answers() {
        let text = String::from_utf8(search(GATEWAY_TARGETS[0], 1)).unwrap();
        assert!(text.starts_with("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"));
        assert!(text.ends_with("MX: 1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n"));

        let answer = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:x\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://10.9.0.1:5000/rootDesc.xml\r\n\r\n";
        let found = parse_answer(answer).unwrap();
        assert_eq!(found.location, HttpUrl::parse("http://10.9.0.1:5000/rootDesc.xml").unwrap());
        assert_eq!(found.target, GATEWAY_TARGETS[0]);

        let printer =
            b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:Printer:1\r\nLOCATION: http://10.9.0.5/\r\n\r\n";
        assert!(parse_answer(printer).is_err());
        let named = b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:service:WANIPConnection:1\r\nLOCATION: http://router/\r\n\r\n";
        assert!(parse_answer(named).is_err());
        assert!(parse_answer(b"NOTIFY * HTTP/1.1\r\n\r\n").is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_answer(&data);
        }
    }
}
