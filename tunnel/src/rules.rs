//! The exit side's destination allow-list (`-f FILE`).
//!
//! One rule per line, `host:port` (C tuntox's `host@port` also works):
//!
//! ```text
//! # comments start with '#', anywhere on a line; blank lines are skipped
//! 127.0.0.1:22          # an IP address
//! localhost:8080        # a host name, compared as requested (case-insensitive)
//! 10.0.0.0/8:22         # an IPv4 network
//! [::1]:22              # IPv6 in brackets
//! [fd00::/8]:*          # an IPv6 network, any port
//! *:443                 # any host, port 443
//! web.lan:0             # port 0 or * = any port (C tuntox rejected these: its bug B9)
//! ```
//!
//! Matching a request for `host:port` (see [`Rules::check`]):
//! - only rules whose port matches count;
//! - a `*` host matches everything;
//! - a name rule matches the name exactly as the client requested it
//!   (ASCII case-insensitive, a trailing dot ignored); names are never
//!   resolved to compare with other names;
//! - an IP or network rule matches the address the server will connect to:
//!   the requested IP literal itself, or, for a requested name, each address
//!   that name resolves to. The exit side resolves the name first and then
//!   connects only to the addresses that matched, so what is checked is what
//!   is connected to (no second lookup that could answer differently).
//!   IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as IPv4.
//!
//! Without a rules file everything is allowed; a rules file without any rule
//! allows nothing (as in C tuntox).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

/// A parsed rules file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// One `host:port` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Which hosts.
    pub host: HostPattern,
    /// Which ports.
    pub port: PortPattern,
}

/// The host part of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`.
    Any,
    /// A host name, lower case, without a trailing dot.
    Name(String),
    /// An IP address (a /32 or /128) or a network.
    Net(IpNet),
}

/// The port part of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPattern {
    /// `*` or `0`.
    Any,
    /// One port.
    Port(u16),
}

impl PortPattern {
    fn matches(self, port: u16) -> bool {
        match self {
            Self::Any => true,
            Self::Port(p) => p == port,
        }
    }
}

/// A requested destination host, as the exit side classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal (IPv6 with or without brackets).
    Ip(IpAddr),
    /// A host name, lower case, without a trailing dot.
    Name(String),
}

impl Host {
    /// Classifies a requested host. `None` when it is neither an IP literal
    /// nor a plausible host name (empty, too long, odd characters).
    pub fn parse(host: &str) -> Option<Self> {
        let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Some(Self::Ip(ip));
        }
        normalize_name(host).map(Self::Name)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// The outcome of [`Rules::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Allowed, whatever the host resolves to.
    Allowed,
    /// Allowed only for the resolved addresses that [`Rules::allows_addr`].
    IfResolvedAddressMatches,
    /// Not allowed.
    Denied,
}

/// A rules file that does not parse: names the file, the line and the reason.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("rules file {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not a valid rule.
    #[error("rules file {file}, line {line}: {reason}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl Rules {
    /// Reads and parses a rules file.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Io { file: file.clone(), source })?;
        Self::parse(&text, &file)
    }

    /// Parses rules text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, RulesError> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let rule = parse_rule(line).map_err(|reason| RulesError::Parse {
                file: origin.to_owned(),
                line: i + 1,
                reason: format!("'{line}': {reason}"),
            })?;
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Rules from a list (for callers that build them in code).
    pub fn from_rules(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there is no rule (then nothing is allowed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks a request before any name resolution.
    pub fn check(&self, host: &Host, port: u16) -> Check {
        let mut net_rule_for_port = false;
        for rule in self.rules.iter().filter(|r| r.port.matches(port)) {
            match (&rule.host, host) {
                (HostPattern::Any, _) => return Check::Allowed,
                (HostPattern::Name(n), Host::Name(h)) if n == h => return Check::Allowed,
                (HostPattern::Net(net), Host::Ip(ip)) if net.contains(&ip.to_canonical()) => return Check::Allowed,
                (HostPattern::Net(_), Host::Name(_)) => net_rule_for_port = true,
                _ => {}
            }
        }
        if net_rule_for_port { Check::IfResolvedAddressMatches } else { Check::Denied }
    }

    /// Whether an IP or network rule allows this resolved address and port.
    pub fn allows_addr(&self, ip: IpAddr, port: u16) -> bool {
        let ip = ip.to_canonical();
        self.rules.iter().any(|r| {
            r.port.matches(port)
                && match &r.host {
                    HostPattern::Any => true,
                    HostPattern::Name(_) => false,
                    HostPattern::Net(net) => net.contains(&ip),
                }
        })
    }
}

/// Splits `host:port` at the last `:` or `@` outside brackets.
fn parse_rule(line: &str) -> Result<Rule, String> {
    let split = line.rfind([':', '@']).ok_or("expected host:port")?;
    let (host, port) = (&line[..split], &line[split + 1..]);
    let port = match port {
        "*" | "0" => PortPattern::Any,
        p if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
            Ok(port) => PortPattern::Port(port),
            Err(_) => return Err(format!("port {p} is out of range 0-65535")),
        },
        p => return Err(format!("port '{p}' is not a number or '*'")),
    };
    Ok(Rule { host: parse_host_pattern(host)?, port })
}

fn parse_host_pattern(host: &str) -> Result<HostPattern, String> {
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if host.is_empty() {
        return Err("host is empty".into());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("unclosed '['")?;
        return parse_net(inner, true).ok_or_else(|| format!("'{inner}' is not an IPv6 address or network"));
    }
    if host.contains(':') {
        return Err("IPv6 addresses go in brackets, like [::1]:22".into());
    }
    if let Some(net) = parse_net(host, false) {
        return Ok(net);
    }
    if host.contains('/') {
        return Err(format!("'{host}' is not an IPv4 network"));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("'{host}' is not an IPv4 address"));
    }
    normalize_name(host).map(HostPattern::Name).ok_or_else(|| format!("'{host}' is not a valid host name"))
}

fn parse_net(s: &str, v6: bool) -> Option<HostPattern> {
    let net = if s.contains('/') { s.parse::<IpNet>().ok()?.trunc() } else { IpNet::from(s.parse::<IpAddr>().ok()?) };
    (net.addr().is_ipv6() == v6).then_some(HostPattern::Net(net))
}

/// Lower-cases a host name and drops a trailing dot; `None` if it is not one.
fn normalize_name(host: &str) -> Option<String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    (!name.is_empty() && name.len() <= 253 && name.bytes().all(valid) && !name.starts_with('.'))
        .then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        Rules::parse(text, "test").unwrap()
    }

    fn err(text: &str) -> String {
        Rules::parse(text, "/etc/tuntox/rules").unwrap_err().to_string()
    }

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    #[test]
    fn parses_every_form() {
        let r = rules(
            "# comment\n\n127.0.0.1:22\nLocalHost.:8080  # trailing\n10.0.0.1/8@22\n[::1]:22\n[fd00::/8]:*\n*:443\nweb.lan:0\n",
        );
        let hosts: Vec<_> = r.rules().iter().map(|r| (r.host.clone(), r.port)).collect();
        assert_eq!(
            hosts,
            [
                (HostPattern::Net("127.0.0.1/32".parse().unwrap()), PortPattern::Port(22)),
                (HostPattern::Name("localhost".into()), PortPattern::Port(8080)),
                (HostPattern::Net("10.0.0.0/8".parse().unwrap()), PortPattern::Port(22)),
                (HostPattern::Net("::1/128".parse().unwrap()), PortPattern::Port(22)),
                (HostPattern::Net("fd00::/8".parse().unwrap()), PortPattern::Any),
                (HostPattern::Any, PortPattern::Port(443)),
                (HostPattern::Name("web.lan".into()), PortPattern::Any),
            ]
        );
        assert!(rules("# nothing\n").is_empty());
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        assert_eq!(err("a:1\nhost\n"), "rules file /etc/tuntox/rules, line 2: 'host': expected host:port");
        assert!(err("x:70000").contains("line 1: 'x:70000': port 70000 is out of range"));
        assert!(err("x:ssh").contains("port 'ssh' is not a number"));
        assert!(err("::1:22").contains("IPv6 addresses go in brackets"));
        assert!(err("[::1:22").contains("unclosed '['"));
        assert!(err("[10.0.0.1]:22").contains("not an IPv6 address"));
        assert!(err("10.0.0.0/33:22").contains("not an IPv4 network"));
        assert!(err("300.1.1.1:22").contains("not an IPv4 address"));
        assert!(err("bad host:22").contains("not a valid host name"));
        assert!(err(":22").contains("host is empty"));
    }

    #[test]
    fn matching() {
        let r = rules("localhost:8080\n10.0.0.0/8:22\n[::1]:*\n*:443\n127.0.0.1:0\n");
        assert_eq!(r.check(&host("LOCALHOST"), 8080), Check::Allowed);
        assert_eq!(r.check(&host("localhost."), 8080), Check::Allowed);
        assert_eq!(r.check(&host("localhost"), 8081), Check::IfResolvedAddressMatches);
        assert_eq!(r.check(&host("10.9.9.9"), 22), Check::Allowed);
        assert_eq!(r.check(&host("10.9.9.9"), 23), Check::Denied);
        assert_eq!(r.check(&host("::ffff:10.1.2.3"), 22), Check::Allowed);
        assert_eq!(r.check(&host("[::1]"), 5), Check::Allowed);
        assert_eq!(r.check(&host("anything.example"), 443), Check::Allowed);
        assert_eq!(r.check(&host("127.0.0.1"), 9), Check::Allowed);
        // A name rule never matches an IP literal, and vice versa without resolution.
        assert_eq!(rules("localhost:1").check(&host("127.0.0.1"), 1), Check::Denied);
        assert_eq!(rules("127.0.0.1:1").check(&host("localhost"), 1), Check::IfResolvedAddressMatches);
        assert!(r.allows_addr("10.0.0.1".parse().unwrap(), 22));
        assert!(!r.allows_addr("11.0.0.1".parse().unwrap(), 22));
        assert!(r.allows_addr("::1".parse().unwrap(), 1));
        assert!(!rules("localhost:1").allows_addr("127.0.0.1".parse().unwrap(), 1));
        assert_eq!(Rules::default().check(&host("x"), 1), Check::Denied);
    }

    #[test]
    fn host_classification() {
        assert_eq!(host("::1"), Host::Ip("::1".parse().unwrap()));
        assert_eq!(host("[fe80::1]"), Host::Ip("fe80::1".parse().unwrap()));
        assert_eq!(host("Example.COM."), Host::Name("example.com".into()));
        for bad in ["", ".", "a b", "a/b", "[x]", &"a".repeat(254), "é"] {
            assert_eq!(Host::parse(bad), None, "{bad:?}");
        }
    }
}
