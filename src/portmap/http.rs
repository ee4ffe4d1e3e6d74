//! The little HTTP/1.1 that UPnP needs: `http://` URLs with an IP address,
//! GET and POST requests with `Connection: close`, and responses read to
//! the end of the connection (also SSDP's, which are HTTP over UDP).
//!
//! Responses are parsed from complete bytes: the status line, headers
//! (names compared without case), and the body cut at `Content-Length` or
//! decoded from `Transfer-Encoding: chunked`. Nothing indexes untrusted
//! input; any oddity is a [`Malformed`] error.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The most bytes of a response we read (a router's device description is
/// a few KiB).
pub const MAX_RESPONSE: usize = 64 * 1024;

/// Text that is not what the format says, naming what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct Malformed(pub &'static str);

/// An `http://` URL whose host is an IP address (UPnP devices give theirs
/// so; names are refused, nothing is resolved).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    /// Host and port (80 when not given).
    pub addr: SocketAddr,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://IP[:PORT][/PATH]` (IPv6 in brackets).
    pub fn parse(text: &str) -> Result<Self, Malformed> {
        let text = text.trim();
        let rest = strip_prefix_ignore_case(text, "http://").ok_or(Malformed("URL: not http://"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
        if authority.contains('@') {
            return Err(Malformed("URL: user information"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or(Malformed("URL: IPv6 host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(Malformed("URL: port"))?),
            };
            (host, port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let ip: IpAddr = host.parse().map_err(|_| Malformed("URL: host is not an IP address"))?;
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(Malformed("URL: port"))?,
        };
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(Malformed("URL: path"));
        }
        Ok(Self { addr: SocketAddr::new(ip, port), path })
    }

    /// `reference` resolved against this URL: an absolute `http://` URL as
    /// it is, an absolute path on this URL's host, a relative path beside
    /// this URL's last segment.
    pub fn join(&self, reference: &str) -> Result<Self, Malformed> {
        let reference = reference.trim();
        if strip_prefix_ignore_case(reference, "http://").is_some() {
            return Self::parse(reference);
        }
        let path = if reference.starts_with('/') {
            reference.to_owned()
        } else {
            let dir = self.path.rfind('/').map_or("/", |i| &self.path[..=i]);
            format!("{dir}{reference}")
        };
        Self::parse(&format!("http://{}{path}", self.addr))
    }

    fn host_header(&self) -> String {
        self.addr.to_string()
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// A GET request for `url`.
pub fn get(url: &HttpUrl) -> Vec<u8> {
    let mut text = String::new();
    let _ = write!(text, "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", url.path, url.host_header());
    text.into_bytes()
}

/// A POST request for `url` with `headers` and `body`.
pub fn post(url: &HttpUrl, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = String::new();
    let _ = write!(text, "POST {} HTTP/1.1\r\nHost: {}\r\n", url.path, url.host_header());
    for (name, value) in headers {
        let _ = write!(text, "{name}: {value}\r\n");
    }
    let _ = write!(text, "Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    text.into_bytes()
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (200, 500...).
    pub status: u16,
    /// Header names and values, in order, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Parses a whole response: everything the server sent before closing.
    pub fn parse(data: &[u8]) -> Result<Self, Malformed> {
        let end = find(data, b"\r\n\r\n").ok_or(Malformed("HTTP head: no blank line"))?;
        let head = std::str::from_utf8(&data[..end]).map_err(|_| Malformed("HTTP head: not UTF-8"))?;
        let rest = &data[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(Malformed("HTTP status line"));
        }
        let status = parts
            .next()
            .filter(|s| s.len() == 3)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or(Malformed("HTTP status code"))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').ok_or(Malformed("HTTP header"))?;
            if name.is_empty() || name.contains(' ') {
                return Err(Malformed("HTTP header name"));
            }
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut response = Self { status, headers, body: Vec::new() };
        let chunked = response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        response.body = if chunked {
            dechunk(rest)?
        } else if let Some(length) = response.header("content-length") {
            let length = length.parse::<usize>().map_err(|_| Malformed("HTTP Content-Length"))?;
            rest.get(..length).ok_or(Malformed("HTTP body shorter than its Content-Length"))?.to_vec()
        } else {
            rest.to_vec()
        };
        Ok(response)
    }
}

/// Decodes a chunked body (chunk extensions and trailers are ignored).
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, Malformed> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or(Malformed("HTTP chunk size"))?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| Malformed("HTTP chunk size"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| Malformed("HTTP chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = data.get(..size).ok_or(Malformed("HTTP chunk shorter than its size"))?;
        if body.len() + size > MAX_RESPONSE {
            return Err(Malformed("HTTP body too long"));
        }
        body.extend_from_slice(chunk);
        data = data.get(size..).and_then(|d| d.strip_prefix(b"\r\n")).ok_or(Malformed("HTTP chunk end"))?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let url = HttpUrl::parse("http://10.9.0.1:5000/rootDesc.xml").unwrap();
        assert_eq!(url.addr, "10.9.0.1:5000".parse().unwrap());
        assert_eq!(url.path, "/rootDesc.xml");
        assert_eq!(HttpUrl::parse("HTTP://[fe80::1]/").unwrap().addr, "[fe80::1]:80".parse().unwrap());
        assert_eq!(HttpUrl::parse("http://192.168.1.1").unwrap().path, "/");
        assert_eq!(url.join("/ctl/IPConn").unwrap().path, "/ctl/IPConn");
        assert_eq!(url.join("ctl").unwrap().path, "/ctl");
        let deep = HttpUrl::parse("http://10.0.0.1/a/b.xml").unwrap();
        assert_eq!(deep.join("c?x=1").unwrap().path, "/a/c?x=1");
        assert_eq!(deep.join("http://10.0.0.2:81/x").unwrap().addr, "10.0.0.2:81".parse().unwrap());
        for bad in [
            "https://10.0.0.1/",
            "http://router.lan/",
            "http://10.0.0.1:0/",
            "http://10.0.0.1:x/",
            "http://u@10.0.0.1/",
            "http://10.0.0.1/a b",
            "http://[fe80::1/",
            "ftp://1.2.3.4",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_are_complete() {
        let url = HttpUrl::parse("http://10.9.0.1:5000/ctl").unwrap();
        let text = String::from_utf8(post(&url, &[("SOAPAction", "\"x#y\"")], "<a/>")).unwrap();
        assert_eq!(
            text,
            "POST /ctl HTTP/1.1\r\nHost: 10.9.0.1:5000\r\nSOAPAction: \"x#y\"\r\nContent-Length: 4\r\nConnection: \
             close\r\n\r\n<a/>"
        );
        assert!(String::from_utf8(get(&url)).unwrap().starts_with("GET /ctl HTTP/1.1\r\nHost: 10.9.0.1:5000\r\n"));
    }

    #[test]
    fn responses_parse() {
        let plain = Response::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((plain.status, plain.body.as_slice(), plain.header("x-a")), (200, &b"hello"[..], Some("b")));
        let chunked = Response::parse(
            b"HTTP/1.0 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((chunked.status, chunked.body.as_slice()), (500, &b"abcde"[..]));
        let to_close = Response::parse(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of it").unwrap();
        assert_eq!(to_close.body, b"all of it");
        for bad in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ] {
            assert!(Response::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Response::parse(&data);
        }

        #[test]
        fn parsing_a_mangled_response_never_panics(cut in 0usize..120, flip in 0usize..120, bit in 0u8..8) {
            let mut data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLocation: http://10.0.0.1:80/x\r\n\r\n4\r\nabcd\r\n0\r\n\r\n".to_vec();
            if let Some(b) = data.get_mut(flip) {
                *b ^= 1 << bit;
            }
            data.truncate(cut);
            let _ = Response::parse(&data);
        }

        #[test]
        fn url_parsing_never_panics(text in ".{0,60}") {
            if let Ok(url) = HttpUrl::parse(&text) {
                let _ = url.join(&text);
            }
            let _ = HttpUrl::parse(&format!("http://{text}"));
        }
    }
}
