//! Where the listener listens and how only the platform finds it: the address
//! [`TELEMETRY_HOST`] resolves to, and the secret path of the destination URI.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Stack of the resolver's thread: getaddrinfo, nothing more.
const RESOLVE_STACK_BYTES: usize = 128 << 10;

/// The host in the destination URI: Lambda resolves it to reach the listener.
pub const TELEMETRY_HOST: &str = "sandbox.localdomain";
/// Random bytes in the subscribed path: 128 bits, written as 32 hex digits.
pub const PATH_SECRET_BYTES: usize = 16;
/// The longest [`platform_address`] waits for the resolver. In Lambda the name is in
/// `/etc/hosts`; elsewhere (emulators, tests) a DNS server that does not answer must not
/// hold up init (capped at 10 s, and billed).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_millis(500);
/// Where to listen when [`TELEMETRY_HOST`] does not resolve: all addresses.
pub const ALL_ADDRESSES: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// The listening socket could not be set up.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot listen for telemetry on {}: {}",
            self.addr, self.source
        )?;
        match bind_hint(self.source.kind(), self.addr.port()) {
            Some(hint) => write!(f, "; {hint}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for BindError {}

/// What to do about a bind error, naming the setting to change (pure).
pub(super) fn bind_hint(kind: io::ErrorKind, port: u16) -> Option<String> {
    match kind {
        io::ErrorKind::AddrInUse => Some(format!(
            "another process in the sandbox (another extension, or the function) holds port {port}: set KINESIS_TELEMETRY_PORT to a free port (0 picks any free port)"
        )),
        io::ErrorKind::AddrNotAvailable => Some(
            "that address is not one of this machine's: set KINESIS_TELEMETRY_BIND_ADDRESS to one of its addresses, or unset it".into(),
        ),
        io::ErrorKind::PermissionDenied => Some(format!(
            "port {port} needs privileges the sandbox does not have: set KINESIS_TELEMETRY_PORT to 1024 or above"
        )),
        _ => None,
    }
}

/// The path to subscribe with: `/` and `secret` as hex digits (32 for
/// [`PATH_SECRET_BYTES`]). Only the Telemetry API learns it.
pub fn secret_path(secret: &[u8; PATH_SECRET_BYTES]) -> String {
    let mut path = String::with_capacity(1 + 2 * PATH_SECRET_BYTES);
    path.push('/');
    for b in secret {
        path.push_str(&format!("{b:02x}"));
    }
    path
}

/// The address [`TELEMETRY_HOST`] resolves to, to bind it as AWS's examples do; `None` when
/// it does not resolve within `timeout` (outside Lambda): then listen on [`ALL_ADDRESSES`].
pub fn platform_address(timeout: Duration) -> Option<IpAddr> {
    let (tx, rx) = mpsc::channel();
    // The resolver cannot be interrupted: a lookup that outlasts `timeout` finishes on its
    // own thread, and its answer is dropped.
    thread::Builder::new()
        .name("telemetry-resolve".into())
        .stack_size(RESOLVE_STACK_BYTES)
        .spawn(move || {
            let found = (TELEMETRY_HOST, 0)
                .to_socket_addrs()
                .ok()
                .and_then(|addrs| pick_address(addrs.map(|a| a.ip())));
            let _ = tx.send(found);
        })
        .ok()?;
    rx.recv_timeout(timeout).ok().flatten()
}

/// The first IPv4 address, else the first one (pure): the platform dials IPv4.
pub(super) fn pick_address(addrs: impl IntoIterator<Item = IpAddr>) -> Option<IpAddr> {
    let mut first = None;
    for a in addrs {
        if a.is_ipv4() {
            return Some(a);
        }
        first.get_or_insert(a);
    }
    first
}
