//! `tuntox relay`: a Tox bootstrap node and TCP relay.
//!
//! One node serves the DHT on a UDP port (answering node requests, pings
//! and bootstrap-info requests), relays onion packets and keeps the
//! announce store, as tox-bootstrapd does; the same node runs the TCP relay
//! on one or more TCP ports. It has no friends and no onion client of its
//! own.
//!
//! Clients pin a relay's key, so the DHT key pair is fixed: it is kept in
//! `<config dir>/relay_keys`, 64 bytes, the public key then the secret key
//! (the layout of tox-bootstrapd's `keys` file, so either program can take
//! over the other's identity), mode 0600, written atomically.

// Real time and real randomness enter here.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, DirBuilder};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::bootstrap::BootstrapNode;
use super::identity::{IdentityError, write_atomic};
use super::status::{Place, Reporting, Source};
use crate::crypto::{KeyPair, PUBLIC_KEY_LEN, SecretKey, SodiumRng, fill_random};
use crate::driver::udp::{self, UdpConfig};
use crate::proto::dht::DhtConfig;
use crate::proto::relay::RelayServerConfig;
use crate::proto::{Node, NodeConfig};

/// The key file's name inside the config directory.
pub const KEY_FILE_NAME: &str = "relay_keys";
/// The default UDP and TCP port.
pub const DEFAULT_PORT: u16 = 33445;
/// The version a bootstrap-info request is answered with (tox-bootstrapd
/// answers with its own; this says "0.2.18").
pub const BOOTSTRAP_INFO_VERSION: u32 = 1_000_002_018;
/// The message of the day in bootstrap-info answers.
pub const MOTD: &str = "tuntox relay";

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where the key file lives.
    pub config_dir: PathBuf,
    /// The DHT's UDP port.
    pub udp_port: u16,
    /// The TCP relay's ports.
    pub tcp_ports: Vec<u16>,
    /// Other bootstrap nodes to join (none: a network of its own).
    pub bootstrap: Vec<BootstrapNode>,
    /// Answer and send LAN discovery.
    pub lan_discovery: bool,
    /// Relay connections at most.
    pub max_clients: usize,
    /// Bind this address instead of all (tests).
    pub bind_ip: Option<IpAddr>,
    /// Where `tuntox status` is served.
    pub status: Place,
    /// Where Prometheus metrics are served (`--metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// Loads the relay's key pair from `dir`, or makes and stores a new one.
/// Returns whether it was created.
pub fn load_or_create_keys(dir: &Path) -> Result<(KeyPair, bool), IdentityError> {
    let path = dir.join(KEY_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => {
            return parse_keys(&bytes).map(|k| (k, false)).map_err(|why| IdentityError::Io {
                action: "use",
                path: path.clone(),
                cause: io::Error::new(io::ErrorKind::InvalidData, why),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(cause) => return Err(IdentityError::Io { action: "read", path, cause }),
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|cause| IdentityError::Io {
        action: "create directory",
        path: dir.to_owned(),
        cause,
    })?;
    let keys = KeyPair::generate(&mut SodiumRng);
    write_atomic(&path, &encode_keys(&keys))?;
    Ok((keys, true))
}

/// The key file's bytes: public key, then secret key.
pub fn encode_keys(keys: &KeyPair) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2 * PUBLIC_KEY_LEN);
    bytes.extend_from_slice(keys.public().as_bytes());
    bytes.extend_from_slice(keys.secret().as_bytes());
    bytes
}

/// Reads a key file; the public key must belong to the secret key.
pub fn parse_keys(bytes: &[u8]) -> Result<KeyPair, &'static str> {
    const NOT: &str = "not a relay key file (expected 64 bytes: public key, secret key)";
    if bytes.len() != 2 * PUBLIC_KEY_LEN {
        return Err(NOT);
    }
    let (public, secret) = bytes.split_at(PUBLIC_KEY_LEN);
    let secret: [u8; 32] = secret.try_into().map_err(|_| NOT)?;
    let keys = KeyPair::from_secret(SecretKey::from_bytes(secret));
    if keys.public().as_bytes()[..] != public[..] {
        return Err("the public key in the key file does not match its secret key");
    }
    Ok(keys)
}

/// Runs the relay until `cancel` fires.
pub async fn run(config: RelayConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let (keys, created) = load_or_create_keys(&config.config_dir)?;
    if created {
        tracing::info!(path = %config.config_dir.join(KEY_FILE_NAME).display(), "created the relay's key pair");
    }
    let ipv6 = config.bind_ip.is_none_or(|ip| ip.is_ipv6());
    let socket = udp::bind(&UdpConfig {
        ports: config.udp_port..=config.udp_port,
        ipv6,
        bind_ip: config.bind_ip,
        broadcast: config.lan_discovery,
    })
    .with_context(|| format!("cannot bind UDP port {}", config.udp_port))?;
    let socket_v6 = socket.local_addr()?.is_ipv6();
    let mut listeners = Vec::new();
    for &port in &config.tcp_ports {
        listeners.push(
            crate::driver::relay::bind(port, config.bind_ip).with_context(|| format!("cannot bind TCP port {port}"))?,
        );
    }
    let bootstrap: Vec<_> = config.bootstrap.iter().flat_map(BootstrapNode::udp_nodes).collect();
    let node_config = NodeConfig {
        dht: DhtConfig {
            lan_discovery: config.lan_discovery,
            bootstrap_nodes: bootstrap.clone(),
            bootstrap_info: Some((BOOTSTRAP_INFO_VERSION, Bytes::from_static(MOTD.as_bytes()))),
        },
        onion_client: false,
        unix_time_at_start: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        tcp_server: Some(RelayServerConfig { max_clients: config.max_clients, ..RelayServerConfig::default() }),
        ..NodeConfig::default()
    };
    let mut seed = [0u8; 32];
    fill_random(&mut seed);
    // The long-term key pair is unused (no friends); the DHT one is ours.
    let mut node = Node::new(KeyPair::generate(&mut SodiumRng), keys.clone(), node_config, seed);
    let now = Instant::now();
    for boot in bootstrap {
        if boot.addr.is_ipv4() || socket_v6 {
            node.bootstrap(now, boot);
        }
    }
    if config.lan_discovery {
        node.dht_mut().set_lan_targets(udp::lan_targets(socket_v6));
    }
    let handle = crate::driver::spawn_with_relay(node, socket, listeners, Some(keys.clone()), cancel.clone())?;
    let mut source = Source::new("relay", handle.sender());
    source.relay_key = Some(*keys.public());
    source.udp = Some(handle.local_addr());
    source.tcp_listen = handle.tcp_addrs().to_vec();
    let _reporting = match Reporting::start(&config.status, config.metrics, source, cancel.child_token()).await {
        Ok(status) => status,
        Err(e) => {
            handle.shutdown().await;
            return Err(e);
        }
    };
    let tcp: Vec<String> = handle.tcp_addrs().iter().map(|a| a.port().to_string()).collect();
    tracing::info!(
        public_key = %keys.public(),
        udp_port = handle.local_addr().port(),
        tcp_ports = %tcp.join(","),
        "relay running: DHT bootstrap node on UDP, TCP relay on TCP"
    );
    super::notify::ready(&format!(
        "relay running: DHT node on UDP port {}, TCP relay on port {}",
        handle.local_addr().port(),
        tcp.join(",")
    ));
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {
                let status = handle
                    .with(|node, now| {
                        let stats = node.tcp_server().map(|s| (s.clients(), s.stats())).unwrap_or_default();
                        (node.dht().close_list().iter().filter(|c| c.is_good(now)).count(), stats)
                    })
                    .await;
                if let Ok((dht_nodes, (clients, stats))) = status {
                    tracing::info!(dht_nodes, clients, ?stats, "relay status");
                    super::notify::status(&format!("relay running: {dht_nodes} DHT nodes, {clients} TCP clients"));
                }
            }
        }
    }
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn keys_are_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("relay");
        let (first, created) = load_or_create_keys(&conf).unwrap();
        assert!(created);
        let (second, created) = load_or_create_keys(&conf).unwrap();
        assert!(!created);
        assert_eq!(first, second);
        let path = conf.join(KEY_FILE_NAME);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 64);
        assert_eq!(&bytes[..32], first.public().as_bytes());
    }

    #[test]
    fn damaged_key_files_are_refused() {
        let keys = KeyPair::generate(&mut SodiumRng);
        let mut bytes = encode_keys(&keys);
        assert_eq!(parse_keys(&bytes), Ok(keys));
        bytes[0] ^= 1;
        assert!(parse_keys(&bytes).unwrap_err().contains("does not match"));
        assert!(parse_keys(&bytes[..63]).is_err());
        assert!(parse_keys(&[]).is_err());

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE_NAME), b"short").unwrap();
        let err = load_or_create_keys(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a relay key file"), "{err}");
    }
}
