//! TCP below HTTP, for the faults a Kinesis endpoint can have before it answers anything,
//! and for telling what a client still has in flight (Linux).
//!
//! - **Connects that hang**: a listener that stops accepting and whose accept queue is full
//!   makes the kernel drop every further SYN (`tcp_abort_on_overflow` is 0 by default), so
//!   the client's `connect` waits out its SYN retransmissions, as against an address nothing
//!   routes to (a VPC function without a NAT gateway or a Kinesis endpoint). The listen
//!   backlog is set to 0 ([`set_backlog`]: one connection fits in the queue) and the queue
//!   is filled by connecting until a connect itself hangs ([`fill_backlog`]), which proves
//!   the fault before anyone relies on it. [`HangingConnects`] is such an endpoint on its own;
//!   the fake Kinesis does the same to its own listener and can take it back
//!   ([`crate::http::ServerControl`]).
//! - **What is in flight**: `/proc/net/tcp` lists every IPv4 socket of the network namespace
//!   with its state, queues and inode ([`sockets`]); `/proc/<pid>/fd` tells which are a
//!   process's ([`socket_inodes`]). A client socket in `SYN_SENT` is a connect in flight, one
//!   still `ESTABLISHED` has not been closed by its owner (a request the server has not
//!   answered on it is in flight), and bytes waiting in the server side's receive queue are a
//!   request on its way. Kernel state rather than timestamps taken by woken threads, so a
//!   loaded machine does not blur "closed just before" into "still open".
//!
//! The only `unsafe` here is [`set_backlog`]'s `listen(2)` (std has no way to choose a backlog).

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// How long a filling connect may take before the queue counts as full: loopback connects
/// complete in microseconds, and a dropped SYN is next retried after a second.
pub const FILL_PROBE: Duration = Duration::from_millis(250);
/// Connections tried before giving up on filling a queue (it holds backlog + 1 on Linux).
const MAX_FILLERS: usize = 64;
/// The backlog std gives a listener on Linux (`SOMAXCONN`, capped by the kernel).
pub const DEFAULT_BACKLOG: i32 = 4096;

/// Sets the listen backlog of a listening socket. Linux applies a second `listen(2)` to a
/// socket that already listens: the queue limit changes, queued connections stay.
#[allow(unsafe_code)]
pub fn set_backlog(listener: &TcpListener, backlog: i32) -> io::Result<()> {
    // SAFETY: listen(2) on a descriptor `listener` owns and keeps open during the call.
    let r = unsafe { libc::listen(listener.as_raw_fd(), backlog) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Fills the accept queue of a listener at `addr` that does not accept: connects until a
/// connect does not complete within [`FILL_PROBE`]. Returns the connections that got in
/// (keep them open: closing one frees its place). An error when no connect ever hung.
pub fn fill_backlog(addr: SocketAddr) -> io::Result<Vec<TcpStream>> {
    let mut fillers = Vec::new();
    while fillers.len() < MAX_FILLERS {
        match TcpStream::connect_timeout(&addr, FILL_PROBE) {
            Ok(s) => fillers.push(s),
            Err(e) if is_timeout(&e) => return Ok(fillers),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{addr}: {MAX_FILLERS} connects completed and none hung: is the listener still accepting?"
    )))
}

/// Whether a connect to `addr` does not complete within `wait`.
pub fn connect_hangs(addr: SocketAddr, wait: Duration) -> bool {
    matches!(TcpStream::connect_timeout(&addr, wait), Err(e) if is_timeout(&e))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// An endpoint on `127.0.0.1` whose TCP connects hang: it never accepts and its one-place
/// accept queue is full. Dropping it closes the listener (connects are then refused).
pub struct HangingConnects {
    listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl HangingConnects {
    pub fn start() -> io::Result<HangingConnects> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        set_backlog(&listener, 0)?;
        let fillers = fill_backlog(listener.local_addr()?)?;
        Ok(HangingConnects {
            listener,
            _fillers: fillers,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `http://127.0.0.1:<port>`, the value for `KINESIS_TELEMETRY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }
}

/// A TCP state as `/proc/net/tcp` numbers it (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpState(pub u8);

impl TcpState {
    pub const ESTABLISHED: TcpState = TcpState(0x01);
    pub const SYN_SENT: TcpState = TcpState(0x02);
    pub const SYN_RECV: TcpState = TcpState(0x03);
    pub const FIN_WAIT1: TcpState = TcpState(0x04);
    pub const CLOSE_WAIT: TcpState = TcpState(0x08);
    pub const LISTEN: TcpState = TcpState(0x0A);
}

/// One line of `/proc/net/tcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub state: TcpState,
    /// Bytes sent and not yet acknowledged.
    pub tx_queue: u32,
    /// Bytes received and not yet read by the owner (for a listener: queued connections).
    pub rx_queue: u32,
    /// The socket's inode (`socket:[inode]` in its owner's `/proc/<pid>/fd`).
    pub inode: u64,
}

/// Every IPv4 TCP socket of this network namespace.
pub fn sockets() -> io::Result<Vec<TcpSocket>> {
    Ok(parse_proc_net_tcp(&std::fs::read_to_string(
        "/proc/net/tcp",
    )?))
}

/// Parses `/proc/net/tcp` (header line first; lines that do not parse are skipped).
/// Addresses are `AABBCCDD:PPPP` in hex, the address in the kernel's (little-endian) byte
/// order, the port big-endian.
pub fn parse_proc_net_tcp(text: &str) -> Vec<TcpSocket> {
    text.lines().skip(1).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<TcpSocket> {
    let mut f = line.split_whitespace();
    let _slot = f.next()?;
    let local = parse_addr(f.next()?)?;
    let remote = parse_addr(f.next()?)?;
    let state = TcpState(u8::from_str_radix(f.next()?, 16).ok()?);
    let (tx, rx) = f.next()?.split_once(':')?;
    let _timer = f.next()?;
    let _retransmits = f.next()?;
    let _uid = f.next()?;
    let _timeout = f.next()?;
    Some(TcpSocket {
        local,
        remote,
        state,
        tx_queue: u32::from_str_radix(tx, 16).ok()?,
        rx_queue: u32::from_str_radix(rx, 16).ok()?,
        inode: f.next()?.parse().ok()?,
    })
}

/// The inodes of the sockets process `pid` has open (from the `socket:[inode]` links in
/// `/proc/<pid>/fd`; readable for one's own children).
pub fn socket_inodes(pid: u32) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed meanwhile
        };
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        inodes.extend(inode);
    }
    Ok(inodes)
}

fn parse_addr(s: &str) -> Option<SocketAddrV4> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_le_bytes()), port))
}

/// What a client had in flight to one server port at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Requests the server received and had not answered, on connections the client had
    /// not closed.
    pub requests: u64,
    /// Connects not yet completed (client sockets in `SYN_SENT`).
    pub connects: u64,
    /// Bytes the client sent that the server had not read yet (a request on its way, or
    /// one on a connection the server never accepted).
    pub unread_bytes: u64,
}

impl InFlight {
    pub fn any(&self) -> bool {
        self.requests > 0 || self.connects > 0 || self.unread_bytes > 0
    }

    /// Judges `socks` for the server at `server`: `pending` are the client addresses of
    /// the requests it has received and not answered; `owner`, the socket inodes of the
    /// client process to count (`None`: every client of the server).
    pub fn observe(
        socks: &[TcpSocket],
        server: SocketAddr,
        pending: &[SocketAddr],
        owner: Option<&HashSet<u64>>,
    ) -> InFlight {
        let port = server.port();
        let server_side = |client_port: u16| {
            socks
                .iter()
                .find(|s| s.local.port() == port && s.remote.port() == client_port)
        };
        let mut f = InFlight::default();
        let clients = socks.iter().filter(|s| {
            s.remote.port() == port
                && s.state != TcpState::LISTEN
                && owner.is_none_or(|o| o.contains(&s.inode))
        });
        for c in clients {
            if c.state == TcpState::SYN_SENT {
                f.connects += 1;
            }
            if c.state != TcpState::ESTABLISHED {
                continue; // closed by its owner (or not connected yet)
            }
            if pending.iter().any(|p| p.port() == c.local.port()) {
                f.requests += 1;
            }
            f.unread_bytes += server_side(c.local.port()).map_or(0, |s| u64::from(s.rx_queue));
        }
        f
    }

    /// `self` and `other` added up.
    pub fn plus(self, other: InFlight) -> InFlight {
        InFlight {
            requests: self.requests + other.requests,
            connects: self.connects + other.connects,
            unread_bytes: self.unread_bytes + other.unread_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::thread;
    use std::time::Instant;

    // A listener on 8080; a client connecting (SYN_SENT); one with 300 request bytes the
    // server has not read; one that closed its side (FIN_WAIT1 / CLOSE_WAIT); one open.
    const SAMPLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 253 1 0000000071d538bf 100 0 0 10 0
   1: 0100007F:93FF 0100007F:1F90 02 00000001:00000000 01:00000A9D 00000000     0        0 101 3 000000009d06864b
   2: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0000000000000000
   3: 0100007F:1F90 0100007F:A000 01 00000000:0000012C 00:00000000 00000000     0        0 202 1 0000000000000000
   4: 0100007F:A001 0100007F:1F90 04 00000000:00000000 00:00000000 00000000     0        0 103 1 0000000000000000
   5: 0100007F:1F90 0100007F:A001 08 00000000:00000000 00:00000000 00000000     0        0 203 1 0000000000000000
   6: 0100007F:A002 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 104 1 0000000000000000
   7: 0100007F:1F90 0100007F:A002 01 00000000:00000000 00:00000000 00000000     0        0 204 1 0000000000000000
   8: garbage
";

    #[test]
    fn proc_net_tcp_lines_parse_with_the_kernels_byte_orders() {
        let socks = parse_proc_net_tcp(SAMPLE);
        assert_eq!(
            socks.len(),
            8,
            "the header and the garbage line are skipped"
        );
        let lo = Ipv4Addr::LOCALHOST;
        assert_eq!(socks[0].local, SocketAddrV4::new(lo, 8080));
        assert_eq!((socks[0].state, socks[0].rx_queue), (TcpState::LISTEN, 2));
        assert_eq!(socks[0].inode, 253);
        assert_eq!(socks[1].remote, SocketAddrV4::new(lo, 8080));
        assert_eq!((socks[1].state, socks[1].tx_queue), (TcpState::SYN_SENT, 1));
        assert_eq!((socks[3].remote.port(), socks[3].rx_queue), (0xA000, 300));
        assert_eq!(socks[5].state, TcpState::CLOSE_WAIT);
    }

    #[test]
    fn in_flight_counts_pending_requests_on_open_connections_connects_and_unread_bytes() {
        let socks = parse_proc_net_tcp(SAMPLE);
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let peer = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        // 0xA001 closed its side: its pending request is no longer in flight.
        let pending = [peer(0xA001), peer(0xA002)];
        let of = |owner: Option<&[u64]>| {
            let owner: Option<HashSet<u64>> = owner.map(|o| o.iter().copied().collect());
            InFlight::observe(&socks, server, &pending, owner.as_ref())
        };
        let f = |requests, connects, unread_bytes| InFlight {
            requests,
            connects,
            unread_bytes,
        };
        assert_eq!(of(None), f(1, 1, 300));
        assert_eq!(
            of(Some(&[101, 104])),
            f(1, 1, 0),
            "another process sent the bytes"
        );
        assert_eq!(of(Some(&[102, 103])), f(0, 0, 300));
        assert_eq!(of(Some(&[])), f(0, 0, 0));
        let other: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        assert!(!InFlight::observe(&socks, other, &pending, None).any());
    }

    #[test]
    fn a_process_socket_inodes_include_its_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mine = socket_inodes(std::process::id()).unwrap();
        let local = s.local_addr().unwrap().port();
        let row = sockets()
            .unwrap()
            .into_iter()
            .find(|r| r.local.port() == local)
            .expect("the connection is listed");
        assert!(mine.contains(&row.inode));
    }

    #[test]
    fn hanging_connects_really_hang_and_show_as_a_connect_in_flight() {
        let h = HangingConnects::start().unwrap();
        assert!(
            connect_hangs(h.addr(), Duration::from_millis(300)),
            "a connect to {} completed",
            h.addr()
        );
        // A connect left waiting is a SYN_SENT socket to the endpoint's port until it ends.
        let addr = h.addr();
        let pending = thread::spawn(move || connect_hangs(addr, Duration::from_secs(2)));
        let until = Instant::now() + Duration::from_millis(1500);
        let mut seen = InFlight::default();
        while Instant::now() < until && seen.connects == 0 {
            seen = InFlight::observe(&sockets().unwrap(), addr, &[], None);
            thread::sleep(Duration::from_millis(10));
        }
        assert!(seen.connects >= 1, "no SYN_SENT socket to {addr} seen");
        assert!(pending.join().unwrap(), "the waiting connect completed");
    }

    #[test]
    fn a_listener_that_accepts_again_takes_connects_after_its_queue_is_drained() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        set_backlog(&listener, 0).unwrap();
        let fillers = fill_backlog(addr).unwrap();
        assert!(!fillers.is_empty());
        assert!(connect_hangs(addr, Duration::from_millis(300)));
        set_backlog(&listener, DEFAULT_BACKLOG).unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .expect("a bigger backlog takes the connect at once");
        s.write_all(b"x").unwrap();
    }
}
