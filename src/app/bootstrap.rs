//! Bootstrap nodes: where a node first joins the Tox network.
//!
//! Three sources, as the user chooses:
//! - `--bootstrap HOST:PORT:KEY` (repeatable),
//! - `-b FILE` in the nodes.tox.chat JSON format (C tuntox's `-b` reads the
//!   same format but decodes only 7 hex digits of each key, so no node ever
//!   answers; here the whole key is read and checked),
//! - otherwise the built-in list, `data/nodes.json`, a copy of the public
//!   node list in that format.
//!
//! Given either of the first two, the built-in list is not used, so a test
//! or private network never reaches the public nodes.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::crypto::PublicKey;
use crate::wire::packed_node::PackedNode;
use crate::wire::tox_id::parse_public_key;

/// The built-in node list (nodes.tox.chat JSON).
pub const BUILTIN_NODES_JSON: &str = include_str!("../../data/nodes.json");

/// A bootstrap node: its DHT key, its UDP addresses and its TCP relay ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapNode {
    /// The node's DHT public key.
    pub public_key: PublicKey,
    /// UDP addresses (IPv4 and/or IPv6).
    pub udp: Vec<SocketAddr>,
    /// TCP relay ports on the same hosts.
    pub tcp_ports: Vec<u16>,
}

impl BootstrapNode {
    /// The node as packed UDP nodes, one per address.
    pub fn udp_nodes(&self) -> impl Iterator<Item = PackedNode> + '_ {
        self.udp.iter().map(|addr| PackedNode::udp(*addr, self.public_key))
    }
}

/// Why a node list or `--bootstrap` value is unusable.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The JSON does not have the nodes.tox.chat shape.
    #[error("{what}: not a nodes.tox.chat node list: {source}")]
    Json {
        /// The file or source.
        what: String,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// A node entry is wrong.
    #[error("{what}: node {index}: {reason}")]
    Node {
        /// The file or source.
        what: String,
        /// Which node, counting from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The list holds no usable node.
    #[error("{0}: no usable node")]
    Empty(String),
}

#[derive(Deserialize)]
struct NodeList {
    nodes: Vec<JsonNode>,
}

#[derive(Deserialize)]
struct JsonNode {
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    port: u16,
    public_key: String,
    #[serde(default)]
    tcp_ports: Vec<u16>,
}

/// Parses a node list in nodes.tox.chat JSON format. `what` names the source
/// in errors. Addresses must be IP literals ("-" or empty means none); a
/// node with neither address is skipped.
pub fn parse_nodes_json(json: &str, what: &str) -> Result<Vec<BootstrapNode>, BootstrapError> {
    let list: NodeList =
        serde_json::from_str(json).map_err(|source| BootstrapError::Json { what: what.into(), source })?;
    let mut nodes = Vec::new();
    for (index, node) in list.nodes.into_iter().enumerate() {
        let bad = |reason: String| BootstrapError::Node { what: what.into(), index, reason };
        let public_key = parse_public_key(&node.public_key).map_err(|e| bad(format!("public_key: {e}")))?;
        if node.port == 0 {
            return Err(bad("port 0".into()));
        }
        let mut udp = Vec::new();
        for text in [&node.ipv4, &node.ipv6].into_iter().flatten() {
            let text = text.trim();
            if text.is_empty() || text == "-" {
                continue;
            }
            let ip: IpAddr = text.parse().map_err(|_| bad(format!("'{text}' is not an IP address")))?;
            udp.push(SocketAddr::new(ip, node.port));
        }
        if !udp.is_empty() {
            nodes.push(BootstrapNode { public_key, udp, tcp_ports: node.tcp_ports });
        }
    }
    if nodes.is_empty() {
        return Err(BootstrapError::Empty(what.into()));
    }
    Ok(nodes)
}

/// Reads a node list file (`-b`).
pub fn read_nodes_file(path: &Path) -> Result<Vec<BootstrapNode>, BootstrapError> {
    let shown = path.display().to_string();
    let json = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read { path: shown.clone(), source })?;
    parse_nodes_json(&json, &shown)
}

/// The built-in list.
pub fn builtin_nodes() -> Vec<BootstrapNode> {
    // A test checks that the shipped file parses.
    parse_nodes_json(BUILTIN_NODES_JSON, "built-in node list").unwrap_or_default()
}

/// `--bootstrap HOST:PORT:KEY` (IPv6 hosts in brackets). The host may be a
/// name, resolved when the node starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapSpec {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// UDP port (also tried as TCP relay port).
    pub port: u16,
    /// The node's DHT public key.
    pub public_key: PublicKey,
}

impl BootstrapSpec {
    /// Resolves the host into a bootstrap node.
    pub fn resolve(&self) -> std::io::Result<BootstrapNode> {
        let udp: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        Ok(BootstrapNode { public_key: self.public_key, udp, tcp_ports: vec![self.port] })
    }
}

impl FromStr for BootstrapSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected HOST:PORT:KEY (KEY = 64 hex characters, IPv6 hosts in brackets)";
        let (rest, key) = s.rsplit_once(':').ok_or_else(|| format!("no ':'; {expected}"))?;
        let Some((host, port)) = rest.rsplit_once(':') else {
            // HOST:PORT, the key left out (or HOST:KEY, the port).
            return Err(if key.parse::<u16>().is_ok() {
                format!("the node's key is missing after the port {key}; {expected}")
            } else {
                format!("the port is missing between the host and the key; {expected}")
            });
        };
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(|| format!("unclosed '['; {expected}"))?,
            None if host.contains(':') => return Err(format!("IPv6 address without brackets; {expected}")),
            None => host,
        };
        if host.is_empty() {
            return Err(format!("empty host; {expected}"));
        }
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("'{port}' is not a port; {expected}")),
            Ok(port) => port,
        };
        let public_key = parse_public_key(key).map_err(|e| format!("key: {e}; {expected}"))?;
        Ok(Self { host: host.to_owned(), port, public_key })
    }
}

impl fmt::Display for BootstrapSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}:{}", self.host, self.port, self.public_key)
        } else {
            write!(f, "{}:{}:{}", self.host, self.port, self.public_key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "7E5668E0EE09E19F320AD47902419331FFEE147BB3606769CFBE921A2A2FD34C";

    #[test]
    fn the_builtin_list_parses() {
        let nodes = parse_nodes_json(BUILTIN_NODES_JSON, "built-in").unwrap();
        assert!(nodes.len() >= 20, "{}", nodes.len());
        assert!(nodes.iter().any(|n| n.udp.iter().any(|a| a.is_ipv6())));
        assert_eq!(builtin_nodes(), nodes);
    }

    #[test]
    fn reads_the_nodes_tox_chat_format() {
        let json = format!(
            r#"{{"last_scan":1,"nodes":[
                {{"ipv4":"127.0.0.1","ipv6":"-","port":33445,"tcp_ports":[33446],"public_key":"{KEY}","maintainer":"x","location":"FR","status_udp":true}},
                {{"ipv4":"-","ipv6":"::1","port":1,"public_key":"{}"}},
                {{"ipv4":"-","ipv6":"-","port":1,"public_key":"{KEY}"}}
            ]}}"#,
            KEY.to_lowercase()
        );
        let nodes = parse_nodes_json(&json, "test").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].udp, ["127.0.0.1:33445".parse().unwrap()]);
        assert_eq!(nodes[0].tcp_ports, [33446]);
        // The whole key is read, not just its first digits.
        assert_eq!(nodes[0].public_key.to_string(), KEY);
        assert_eq!(nodes[1].public_key.to_string(), KEY);
        assert_eq!(nodes[1].udp, ["[::1]:1".parse().unwrap()]);
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        let err = |json: &str| parse_nodes_json(json, "f.json").unwrap_err().to_string();
        assert!(err("[]").starts_with("f.json: not a nodes.tox.chat node list"));
        assert!(err(r#"{"nodes":[]}"#).contains("no usable node"));
        let short_key = r#"{"nodes":[{"ipv4":"1.2.3.4","port":1,"public_key":"7E5668E"}]}"#;
        assert!(err(short_key).contains("node 0: public_key: expected 64 hex characters, got 7"), "{}", err(short_key));
        let bad_ip = format!(r#"{{"nodes":[{{"ipv4":"node.example","port":1,"public_key":"{KEY}"}}]}}"#);
        assert!(err(&bad_ip).contains("'node.example' is not an IP address"));
        assert!(
            read_nodes_file(Path::new("/nonexistent/nodes.json")).unwrap_err().to_string().starts_with("cannot read")
        );
    }

    #[test]
    fn bootstrap_spec_forms() {
        let spec: BootstrapSpec = format!("127.0.0.1:33445:{KEY}").parse().unwrap();
        assert_eq!((spec.host.as_str(), spec.port), ("127.0.0.1", 33445));
        assert_eq!(spec.resolve().unwrap().udp, ["127.0.0.1:33445".parse().unwrap()]);
        let v6: BootstrapSpec = format!("[::1]:33445:{KEY}").parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), format!("[::1]:33445:{KEY}"));
        for bad in ["x", "h:1", &format!("::1:1:{KEY}"), &format!("h:0:{KEY}"), &format!(":1:{KEY}"), "h:1:ABC"] {
            assert!(bad.parse::<BootstrapSpec>().is_err(), "{bad}");
        }
        for (bad, says) in [
            ("127.0.0.1:33445", "the node's key is missing after the port 33445"),
            (&format!("127.0.0.1:{KEY}")[..], "the port is missing between the host and the key"),
        ] {
            let err = bad.parse::<BootstrapSpec>().unwrap_err();
            assert!(err.starts_with(says) && err.ends_with("IPv6 hosts in brackets)"), "{bad}: {err}");
        }
    }
}
