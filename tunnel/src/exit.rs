//! The exit (server) side: REQUESTTUNNEL → rules → resolve → connect →
//! ACKTUNNEL, or DENYTUNNEL with a reason (C tuntox answers nothing: its
//! bug B6).
//!
//! Each request runs in its own task, so a slow connect never holds up other
//! tunnels or the peer's frames (C tuntox connects with a blocking call).
//! Host names resolve to IPv4 and IPv6 addresses (C tuntox: IPv4 only, bug
//! B14); addresses are tried in order within [`ExitConfig::connect_timeout`]
//! in total. Tunnel ids are unique across all peers and bound to the peer
//! that opened them. A semaphore caps tunnels; beyond it requests are denied
//! with [`DenyReason::TooManyTunnels`].
//!
//! [`ExitConfig::connect_timeout`]: crate::ExitConfig::connect_timeout

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span};

use crate::engine::{ExitConfig, Inner, Opened, PeerCtx, Role, Route, deny_frame};
use crate::frame::{DenyReason, Extension, Frame};
use crate::pump;
use crate::rules::{Check, Host};
use crate::stats::Counters;

/// A refusal: the reason code and a detail for the client's log.
type Refusal = (DenyReason, String);

/// REQUESTTUNNEL: start serving it without waiting for the connection.
pub(crate) async fn on_request(
    inner: &Arc<Inner>,
    ctx: &PeerCtx,
    port: u16,
    forward_id: u32,
    host: Bytes,
    theirs: Option<Extension>,
) {
    let deny = |reason, message: &str| {
        Counters::inc(&inner.stats.tunnels_denied);
        deny_frame(forward_id, reason, message)
    };
    let Role::Exit(config) = &inner.config.role else {
        Counters::inc(&inner.stats.unexpected);
        let _ = ctx.send_frame(&deny(DenyReason::NotAllowed, "this peer is a client, not a tuntox server")).await;
        return;
    };
    let Ok(permit) = inner.slots.clone().try_acquire_owned() else {
        let _ = ctx.send_frame(&deny(DenyReason::TooManyTunnels, "too many tunnels")).await;
        return;
    };
    let span = info_span!("request", forward_id, port);
    let task = serve(inner.clone(), ctx.clone(), config.clone(), port, forward_id, host, theirs);
    inner.tasks.spawn(
        async move {
            let _permit = permit;
            task.await;
        }
        .instrument(span),
    );
}

async fn serve(
    inner: Arc<Inner>,
    ctx: PeerCtx,
    config: ExitConfig,
    port: u16,
    forward_id: u32,
    host: Bytes,
    theirs: Option<Extension>,
) {
    let shown = String::from_utf8_lossy(&host).into_owned();
    let connected = tokio::select! {
        () = ctx.cancel.cancelled() => return,
        r = connect(&config, &host, port) => r,
    };
    let stream = match connected {
        Ok(stream) => stream,
        Err((reason, message)) => {
            info!(peer = %ctx.peer, host = %shown, port, "refused: {reason}: {message}");
            Counters::inc(&inner.stats.tunnels_denied);
            let _ = ctx.send_frame(&deny_frame(forward_id, reason, &message)).await;
            return;
        }
    };
    let Some(id) = inner.allocate_exit_id(ctx.peer) else {
        Counters::inc(&inner.stats.tunnels_denied);
        let _ = ctx.send_frame(&deny_frame(forward_id, DenyReason::TooManyTunnels, "no free tunnel id")).await;
        return;
    };
    // Answer with our extension only to clients that announced theirs: a C
    // tuntox client must see exactly the 4-byte ACK it knows.
    let ours = theirs.and(inner.our_ext());
    let route = Route::new(&inner, &ctx, id, ours, theirs);
    let guard = inner.register(route.clone(), true);
    info!(peer = %ctx.peer, host = %shown, port, tunnel = id, "tunnel open");
    if ctx.send_frame(&Frame::AckTunnel { tunnel: id, forward_id, ext: ours }).await.is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    pump::run(Opened { route, guard, ctx }, reader, writer).await;
}

/// Checks the rules, resolves and connects, all within the connect timeout.
async fn connect(config: &ExitConfig, host: &[u8], port: u16) -> Result<TcpStream, Refusal> {
    let Some(host) = std::str::from_utf8(host).ok().and_then(Host::parse) else {
        return Err((DenyReason::BadRequest, "invalid host name".into()));
    };
    let check = config.rules.as_ref().map_or(Check::Allowed, |rules| rules.check(&host, port));
    if check == Check::Denied {
        return Err((DenyReason::NotAllowed, format!("{host}:{port} is not in the rules")));
    }
    let deadline = Instant::now() + config.connect_timeout;
    let mut addrs: Vec<SocketAddr> = match &host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(name) => {
            match tokio::time::timeout_at(deadline, tokio::net::lookup_host((name.as_str(), port))).await {
                Err(_) => return Err((DenyReason::Timeout, format!("resolving {name} timed out"))),
                Ok(Err(e)) => return Err((DenyReason::ResolveFailed, format!("{name}: {e}"))),
                Ok(Ok(addrs)) => addrs.collect(),
            }
        }
    };
    if addrs.is_empty() {
        return Err((DenyReason::ResolveFailed, format!("{host} has no address")));
    }
    if check == Check::IfResolvedAddressMatches
        && let Some(rules) = &config.rules
    {
        addrs.retain(|a| rules.allows_addr(a.ip(), port));
        if addrs.is_empty() {
            return Err((DenyReason::NotAllowed, format!("no address of {host} is in the rules")));
        }
    }
    let mut last = (DenyReason::Failed, String::new());
    for addr in addrs {
        debug!(%addr, "connecting");
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = (reason_for(&e), format!("{addr}: {e}")),
            Err(_) => {
                return Err((DenyReason::Timeout, format!("{addr}: timed out after {:?}", config.connect_timeout)));
            }
        }
    }
    Err(last)
}

fn reason_for(e: &io::Error) -> DenyReason {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => DenyReason::ConnectionRefused,
        io::ErrorKind::TimedOut => DenyReason::Timeout,
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable | io::ErrorKind::AddrNotAvailable => {
            DenyReason::Unreachable
        }
        _ => DenyReason::Failed,
    }
}
