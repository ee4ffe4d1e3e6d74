//! The TUN device: created through `tun-rs` with GSO/GRO offload, set up
//! (MTU, addresses, routes, link up) through rtnetlink, removed on
//! [`Device::close`] or drop.
//!
//! With offload (`IFF_VNET_HDR`) the kernel hands over TCP segments of up
//! to 64 KiB at once and `tun-rs` cuts them into MTU-sized packets; in the
//! other direction it merges consecutive segments of one flow before
//! writing. One read or write system call thus moves dozens of packets,
//! while each packet still travels alone in its own Tox packet.
//! `docs/decisions/0004-tun.md` has the measurements behind this choice.
//!
//! Everything here needs CAP_NET_ADMIN in the current network namespace.
//! Creating the device also needs the right to open `/dev/net/tun`, often
//! root's alone (mode 0600): [`Device::open`] does that part without an
//! async runtime, so a process can do it before it drops root's rights,
//! and [`Device::attach`] does the rest later, with CAP_NET_ADMIN only.

use std::io;
use std::sync::Arc;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use tokio::task::JoinHandle;
use tun_rs::{AsyncDevice, DeviceBuilder};

/// The most packets one read or write batch holds (`tun-rs`'s ideal).
pub const BATCH: usize = tun_rs::IDEAL_BATCH_SIZE;
/// Bytes of the virtio header in front of each offloaded read and write.
pub const VNET_HDR: usize = tun_rs::VIRTIO_NET_HDR_LEN;

/// A device that could not be created or configured.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Creating the TUN device failed (no CAP_NET_ADMIN, name taken...).
    #[error("cannot create TUN device {name:?}: {reason}")]
    Create {
        /// The name asked for.
        name: String,
        /// Why (in the message, so not also a source: printed once).
        reason: io::Error,
    },
    /// A netlink request failed.
    #[error("{what} on {dev}: {reason}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The device.
        dev: String,
        /// Why (in the message, so not also a source: printed once).
        reason: rtnetlink::Error,
    },
    /// The netlink socket could not be opened.
    #[error("netlink: {0}")]
    Io(#[from] io::Error),
}

/// A TUN device created (its descriptor open, the link down) but not yet
/// driven: what [`Device::open`] makes and [`Device::attach`] takes.
/// Dropping it closes the descriptor, which deletes the device.
pub struct OpenedDevice {
    tun: tun_rs::SyncDevice,
    name: String,
    index: u32,
    offload: bool,
}

impl OpenedDevice {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether GSO/GRO offload is on.
    pub fn offload(&self) -> bool {
        self.offload
    }
}

impl std::fmt::Debug for OpenedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedDevice")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("offload", &self.offload)
            .finish()
    }
}

/// A TUN device and the addresses and routes put on it.
pub struct Device {
    tun: Arc<AsyncDevice>,
    name: String,
    index: u32,
    offload: bool,
    netlink: Handle,
    connection: JoinHandle<()>,
    addresses: Vec<IpNet>,
    routes: Vec<IpNet>,
    closed: bool,
}

impl Device {
    /// Creates the device (not up yet) with this name (`None`: the kernel
    /// picks `tunN`) and MTU. `offload` asks for GSO/GRO; a kernel that
    /// refuses it gets a plain device. The same as [`Device::open`] then
    /// [`Device::attach`].
    pub async fn create(name: Option<&str>, mtu: u16, offload: bool) -> Result<Device, DeviceError> {
        Device::attach(Device::open(name, offload)?, mtu).await
    }

    /// Opens `/dev/net/tun` and creates the device (not up yet), without an
    /// async runtime: the part of [`Device::create`] that needs the right to
    /// open `/dev/net/tun`. `name` and `offload` as there.
    pub fn open(name: Option<&str>, offload: bool) -> Result<OpenedDevice, DeviceError> {
        let build = |offload: bool| {
            let mut b = DeviceBuilder::new().offload(offload).enable(false);
            if let Some(name) = name {
                b = b.name(name);
            }
            b.build_sync()
        };
        let label = name.unwrap_or("tun%d").to_owned();
        let (tun, offload) = match build(offload) {
            Ok(tun) => (tun, offload),
            Err(e) if offload => {
                tracing::debug!("TUN offload refused ({e}); using a plain device");
                (build(false).map_err(|reason| DeviceError::Create { name: label.clone(), reason })?, false)
            }
            Err(reason) => return Err(DeviceError::Create { name: label, reason }),
        };
        let name = tun.name().map_err(|reason| DeviceError::Create { name: label.clone(), reason })?;
        let index = tun.if_index().map_err(|reason| DeviceError::Create { name: label, reason })?;
        Ok(OpenedDevice { tun, name, index, offload })
    }

    /// Hands an opened device to the async runtime (this must run inside
    /// one), opens the netlink connection and sets the MTU: needs
    /// CAP_NET_ADMIN, not the right to open `/dev/net/tun`.
    pub async fn attach(opened: OpenedDevice, mtu: u16) -> Result<Device, DeviceError> {
        let OpenedDevice { tun, name, index, offload } = opened;
        let tun = AsyncDevice::new(tun).map_err(|reason| DeviceError::Create { name: name.clone(), reason })?;
        let (connection, netlink, _) = rtnetlink::new_connection()?;
        let connection = tokio::spawn(connection);
        let device = Device {
            tun: Arc::new(tun),
            name,
            index,
            offload,
            netlink,
            connection,
            addresses: Vec::new(),
            routes: Vec::new(),
            closed: false,
        };
        device.set_mtu(mtu).await?;
        Ok(device)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether GSO/GRO offload is on.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The packet side, for the reader and writer tasks.
    pub fn tun(&self) -> Arc<AsyncDevice> {
        self.tun.clone()
    }

    /// The addresses put on the device.
    pub fn addresses(&self) -> &[IpNet] {
        &self.addresses
    }

    /// The routes put through the device.
    pub fn routes(&self) -> &[IpNet] {
        &self.routes
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> DeviceError {
        let (what, dev) = (what.into(), self.name.clone());
        move |reason| DeviceError::Netlink { what, dev, reason }
    }

    /// Sets the MTU.
    pub async fn set_mtu(&self, mtu: u16) -> Result<(), DeviceError> {
        let msg = LinkUnspec::new_with_index(self.index).mtu(u32::from(mtu)).build();
        self.netlink.link().set(msg).execute().await.map_err(self.err(format!("set MTU {mtu}")))
    }

    /// Brings the link up.
    pub async fn up(&self) -> Result<(), DeviceError> {
        let msg = LinkUnspec::new_with_index(self.index).up().build();
        self.netlink.link().set(msg).execute().await.map_err(self.err("set link up"))
    }

    /// Adds an address (`10.7.0.2/24`: the kernel adds the route to the
    /// network through the device).
    pub async fn add_address(&mut self, net: IpNet) -> Result<(), DeviceError> {
        let mut req = self.netlink.address().add(self.index, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            // No duplicate address detection on a point-to-point tunnel.
            req.message_mut().header.flags |= rtnetlink::packet_route::address::AddressHeaderFlags::Nodad;
        }
        req.execute().await.map_err(self.err(format!("add address {net}")))?;
        self.addresses.push(net);
        Ok(())
    }

    /// Removes an address this device was given.
    pub async fn remove_address(&mut self, net: IpNet) -> Result<(), DeviceError> {
        let mut found = None;
        let mut list = self.netlink.address().get().set_link_index_filter(self.index).execute();
        while let Some(msg) = list.try_next().await.map_err(self.err("list addresses"))? {
            let matches = msg.header.prefix_len == net.prefix_len()
                && msg.attributes.iter().any(
                    |a| matches!(a, rtnetlink::packet_route::address::AddressAttribute::Address(x) if *x == net.addr()),
                );
            if matches {
                found = Some(msg);
            }
        }
        if let Some(msg) = found {
            self.netlink.address().del(msg).execute().await.map_err(self.err(format!("remove address {net}")))?;
        }
        self.addresses.retain(|a| *a != net);
        Ok(())
    }

    fn route_message(&self, net: IpNet) -> RouteMessage {
        match net {
            IpNet::V4(n) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(n.network(), n.prefix_len())
                .output_interface(self.index)
                .build(),
            IpNet::V6(n) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(n.network(), n.prefix_len())
                .output_interface(self.index)
                .build(),
        }
    }

    /// Routes a network through the device.
    pub async fn add_route(&mut self, net: IpNet) -> Result<(), DeviceError> {
        let net = net.trunc();
        let msg = self.route_message(net);
        self.netlink.route().add(msg).execute().await.map_err(self.err(format!("add route {net}")))?;
        self.routes.push(net);
        Ok(())
    }

    /// Removes a route this device added.
    pub async fn remove_route(&mut self, net: IpNet) -> Result<(), DeviceError> {
        let net = net.trunc();
        let msg = self.route_message(net);
        self.netlink.route().del(msg).execute().await.map_err(self.err(format!("remove route {net}")))?;
        self.routes.retain(|r| *r != net);
        Ok(())
    }

    /// Makes the device carry exactly these addresses and routes and this
    /// MTU, changing only what differs, and brings it up.
    pub async fn configure(&mut self, mtu: u16, addresses: &[IpNet], routes: &[IpNet]) -> Result<(), DeviceError> {
        self.set_mtu(mtu).await?;
        for old in self.routes.clone() {
            if !routes.contains(&old) {
                self.remove_route(old).await?;
            }
        }
        for old in self.addresses.clone() {
            if !addresses.contains(&old) {
                self.remove_address(old).await?;
            }
        }
        self.up().await?;
        for new in addresses {
            if !self.addresses.contains(new) {
                self.add_address(*new).await?;
            }
        }
        for new in routes {
            if !self.routes.contains(&new.trunc()) {
                self.add_route(*new).await?;
            }
        }
        Ok(())
    }

    /// Deletes the device (its addresses and routes go with it).
    pub async fn close(mut self) -> Result<(), DeviceError> {
        self.closed = true;
        let result = self.netlink.link().del(self.index).execute().await;
        self.connection.abort();
        match result {
            Ok(()) => Ok(()),
            // Already gone (the descriptor was closed elsewhere).
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(()),
            Err(reason) => Err(DeviceError::Netlink { what: "delete link".into(), dev: self.name.clone(), reason }),
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("offload", &self.offload)
            .field("addresses", &self.addresses)
            .field("routes", &self.routes)
            .finish()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // Closing the last descriptor of a non-persistent TUN device
        // deletes it with its addresses and routes.
        if !self.closed {
            self.connection.abort();
        }
    }
}
