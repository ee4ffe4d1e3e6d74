//! Forward specifications as users write them: `-L`, `-W` and `-D`.
//!
//! The syntax is OpenSSH's, plus C tuntox's `@` as an alternative separator
//! (so `2222@127.0.0.1@22` keeps working):
//!
//! - `-L [bind_address:]port:host:hostport`
//! - `-W host:hostport`
//! - `-D [bind_address:]port`
//!
//! IPv6 addresses go in brackets (`[::1]:2222:[fd00::5]:22`). Without a bind
//! address a listener binds 127.0.0.1 only (C tuntox bound every interface);
//! `*` or an empty bind address means every interface, `localhost` means
//! 127.0.0.1.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The longest host name the tuntox protocol carries (DNS's limit).
pub const MAX_HOST_LEN: usize = 253;

/// Why a forward specification does not parse. The message names the part
/// that is wrong; the caller adds the flag and the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; expected {expected}")]
pub struct SpecError {
    reason: String,
    expected: &'static str,
}

impl SpecError {
    fn new(reason: impl Into<String>, expected: &'static str) -> Self {
        Self { reason: reason.into(), expected }
    }
}

/// A destination the server side connects to: a host name or an IP literal
/// (stored without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Host name or IP address, as sent to the server.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `-L`: listen locally, forward each connection to `target` via the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalForward {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the server connects.
    pub target: Target,
}

/// `-D`: a local SOCKS5 server whose connections the server makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DynamicForward {
    /// Where to listen.
    pub listen: SocketAddr,
}

/// `BIND:PORT:HOST:HOSTPORT`, which parses back to the same forward.
impl fmt::Display for LocalForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.listen, self.target)
    }
}

/// `BIND:PORT`, which parses back to the same forward.
impl fmt::Display for DynamicForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.listen)
    }
}

const L_FORM: &str = "[bind_address:]port:host:hostport";
const W_FORM: &str = "host:port";
const D_FORM: &str = "[bind_address:]port";

impl FromStr for LocalForward {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields = split_fields(s, L_FORM)?;
        let (bind, rest) = match fields.len() {
            3 => (None, &fields[..]),
            // PORT:HOST:HOSTPORT with something after it reads as a bind
            // address followed by a host where the port goes: say so.
            4 if is_port(fields[0]) && !is_port(fields[1]) && is_port(fields[2]) => {
                return Err(SpecError::new(
                    format!(
                        "'{}' after the remote port: with 4 fields the first is a bind address and the second \
                         the local port, so '{}' would be the local port (did you mean {}:{}:{}?)",
                        fields[3], fields[1], fields[0], fields[1], fields[2]
                    ),
                    L_FORM,
                ));
            }
            4 => (Some(fields[0]), &fields[1..]),
            n => return Err(SpecError::new(format!("{n} fields"), L_FORM)),
        };
        let port = parse_port(rest[0], "local port", L_FORM)?;
        let target = Target { host: parse_host(rest[1], L_FORM)?, port: parse_port(rest[2], "remote port", L_FORM)? };
        Ok(Self { listen: SocketAddr::new(parse_bind(bind, L_FORM)?, port), target })
    }
}

impl FromStr for Target {
    type Err = SpecError;

    /// `-W host:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields = split_fields(s, W_FORM)?;
        let [host, port] = fields[..] else {
            return Err(SpecError::new(format!("{} fields", fields.len()), W_FORM));
        };
        Ok(Self { host: parse_host(host, W_FORM)?, port: parse_port(port, "port", W_FORM)? })
    }
}

impl FromStr for DynamicForward {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields = split_fields(s, D_FORM)?;
        let (bind, port) = match fields[..] {
            [port] => (None, port),
            [bind, port] => (Some(bind), port),
            _ => return Err(SpecError::new(format!("{} fields", fields.len()), D_FORM)),
        };
        let port = parse_port(port, "local port", D_FORM)?;
        Ok(Self { listen: SocketAddr::new(parse_bind(bind, D_FORM)?, port) })
    }
}

/// Splits on `:` and `@` outside brackets. Brackets stay on their field and
/// must enclose all of it; `parse_host` and `parse_bind` take them off.
fn split_fields<'a>(s: &'a str, form: &'static str) -> Result<Vec<&'a str>, SpecError> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut in_brackets = false;
    for (i, ch) in s.char_indices() {
        match ch {
            '[' if i == start => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            '[' | ']' => return Err(SpecError::new(format!("misplaced '{ch}'"), form)),
            ':' | '@' if !in_brackets => {
                fields.push(&s[start..i]);
                start = i + 1;
            }
            _ if i > start && s[start..].starts_with('[') && s[start..i].ends_with(']') => {
                return Err(SpecError::new(format!("misplaced ']' in '{}'", &s[start..]), form));
            }
            _ => {}
        }
    }
    if in_brackets {
        return Err(SpecError::new("unclosed '['", form));
    }
    fields.push(&s[start..]);
    Ok(fields)
}

/// The inside of `[...]`: an IPv6 literal.
fn bracketed_ipv6(s: &str, form: &'static str) -> Option<Result<Ipv6Addr, SpecError>> {
    let inner = s.strip_prefix('[')?.strip_suffix(']').unwrap_or(s);
    Some(inner.parse().map_err(|_| SpecError::new(format!("'{inner}' is not an IPv6 address"), form)))
}

/// Whether `s` reads as a port number.
fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && matches!(s.parse::<u32>(), Ok(1..=65535))
}

fn parse_port(s: &str, what: &str, form: &'static str) -> Result<u16, SpecError> {
    if s.is_empty() {
        return Err(SpecError::new(format!("{what} is empty"), form));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SpecError::new(format!("{what} '{s}' is not a number"), form));
    }
    match s.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => Err(SpecError::new(format!("{what} {s} is out of range 1-65535"), form)),
    }
}

fn parse_host(s: &str, form: &'static str) -> Result<String, SpecError> {
    if s.is_empty() {
        return Err(SpecError::new("host is empty", form));
    }
    if s.len() > MAX_HOST_LEN {
        return Err(SpecError::new(format!("host is {} characters, at most {MAX_HOST_LEN}", s.len()), form));
    }
    if let Some(ip) = bracketed_ipv6(s, form) {
        return ip.map(|ip| ip.to_string());
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if let Some(bad) = s.chars().find(|&c| !valid(c)) {
        return Err(SpecError::new(format!("host '{s}' contains {bad:?}"), form));
    }
    Ok(s.to_owned())
}

fn parse_bind(bind: Option<&str>, form: &'static str) -> Result<IpAddr, SpecError> {
    match bind {
        None | Some("localhost") => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some("" | "*") => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Some(addr) => match bracketed_ipv6(addr, form) {
            Some(ip) => ip.map(IpAddr::V6),
            None => addr.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
                SpecError::new(
                    format!("bind address '{addr}' is not an IPv4 address, [IPv6], '*' or 'localhost'"),
                    form,
                )
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_print_as_they_parse() {
        for text in ["2222:127.0.0.1:22", "*:8080:web:80", "[::1]:9000:[fd00::1]:22", "10.0.0.1:1:h:2"] {
            let forward: LocalForward = text.parse().unwrap();
            assert_eq!(forward.to_string().parse::<LocalForward>().unwrap(), forward, "{text}");
        }
        assert_eq!("2222:host:22".parse::<LocalForward>().unwrap().to_string(), "127.0.0.1:2222:host:22");
        for text in ["1080", "*:1080", "[::1]:1080"] {
            let forward: DynamicForward = text.parse().unwrap();
            assert_eq!(forward.to_string().parse::<DynamicForward>().unwrap(), forward, "{text}");
        }
    }

    fn l(s: &str) -> Result<LocalForward, String> {
        s.parse::<LocalForward>().map_err(|e| e.to_string())
    }

    fn target(host: &str, port: u16) -> Target {
        Target { host: host.into(), port }
    }

    #[test]
    fn local_forward_forms() {
        let default = l("2222:127.0.0.1:22").unwrap();
        assert_eq!(default.listen, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(default.target, target("127.0.0.1", 22));
        // C tuntox's separator, mixed too.
        assert_eq!(l("2222@127.0.0.1@22").unwrap(), default);
        assert_eq!(l("2222:127.0.0.1@22").unwrap(), default);
        assert_eq!(l("*:8080:web.lan:80").unwrap().listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(l(":8080:web.lan:80").unwrap().listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(l("localhost:8080:web.lan:80").unwrap().listen, "127.0.0.1:8080".parse().unwrap());
        let v6 = l("[::1]:2222:[fd00::5]:22").unwrap();
        assert_eq!(v6.listen, "[::1]:2222".parse().unwrap());
        assert_eq!(v6.target, target("fd00::5", 22));
        assert_eq!(v6.target.to_string(), "[fd00::5]:22");
    }

    #[test]
    fn local_forward_errors_name_the_problem() {
        assert_eq!(
            l("99999:x:1").unwrap_err(),
            "local port 99999 is out of range 1-65535; expected [bind_address:]port:host:hostport"
        );
        assert!(l("0:x:1").unwrap_err().starts_with("local port 0 is out of range"));
        assert!(l("2222:x:ssh").unwrap_err().starts_with("remote port 'ssh' is not a number"));
        assert!(l("2222:x").unwrap_err().starts_with("2 fields"));
        let extra = l("2240:127.0.0.1:80:extra").unwrap_err();
        assert!(
            extra.starts_with("'extra' after the remote port") && extra.contains("did you mean 2240:127.0.0.1:80?")
        );
        assert!(l("a:b:c:d:e").unwrap_err().starts_with("5 fields"));
        assert!(l("2222::22").unwrap_err().starts_with("host is empty"));
        assert!(l("2222:fd00::5:22").unwrap_err().starts_with("5 fields"));
        assert!(l("2222:[fd00::5:22").unwrap_err().starts_with("unclosed '['"));
        assert!(l("2222:[nothex]:22").unwrap_err().contains("not an IPv6 address"));
        assert!(l("host.lan:2222:x:22").unwrap_err().contains("bind address 'host.lan'"));
        assert!(l("2222:bad host:22").unwrap_err().contains("contains ' '"));
        assert!(l("2222:x:+22").unwrap_err().contains("not a number"));
        assert!(l(&format!("1:{}:2", "h".repeat(254))).unwrap_err().contains("at most 253"));
    }

    #[test]
    fn stdio_and_dynamic_forms() {
        assert_eq!("localhost:22".parse::<Target>().unwrap(), target("localhost", 22));
        assert_eq!("127.0.0.1@22".parse::<Target>().unwrap(), target("127.0.0.1", 22));
        assert_eq!("[::1]:22".parse::<Target>().unwrap(), target("::1", 22));
        assert!("host".parse::<Target>().unwrap_err().to_string().ends_with("expected host:port"));
        assert_eq!("1080".parse::<DynamicForward>().unwrap().listen, "127.0.0.1:1080".parse().unwrap());
        assert_eq!("*:1080".parse::<DynamicForward>().unwrap().listen, "0.0.0.0:1080".parse().unwrap());
        assert_eq!("[::]:1080".parse::<DynamicForward>().unwrap().listen, "[::]:1080".parse().unwrap());
        assert!("70000".parse::<DynamicForward>().is_err());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in ["", ":", "[", "]", "[]", "[]:1:x:1", "::::", "@@@", "[:]:[:]", "é:é:é", "1:[::1]x:2"] {
            let _ = s.parse::<LocalForward>();
            let _ = s.parse::<Target>();
            let _ = s.parse::<DynamicForward>();
        }
    }
}
