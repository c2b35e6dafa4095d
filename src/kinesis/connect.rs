//! Connections to Kinesis that another thread can cut: the TCP connector under ureq's TLS,
//! and the [`Interrupt`] the lifecycle loop fires when an invocation's added-time budget
//! ends with a request still in flight.
//!
//! Why: the function's time belongs to the function. A request that is still waiting for an
//! unreachable, hanging or slow Kinesis when the budget ends must not hold the invocation,
//! and must not be in flight when Lambda freezes the sandbox either. So the lifecycle loop
//! closes it: [`Interrupt::fire`] shuts the client's agent down, which shuts down every
//! socket it holds (idle or in use: a blocked read or write returns at once) and, through
//! [`AbortableTcp`], a TCP connect still in progress, which ureq's own connector cannot
//! interrupt. The next request builds a fresh agent ([`Interrupt::generation`] tells the
//! client it must).
//!
//! A connect is made on a nonblocking socket that is registered with the agent before it
//! waits, so that the cut shuts it down mid-connect too: the kernel drops the attempt (no SYN
//! left in flight across the freeze) and the wait ends at once. That takes three small
//! `unsafe` calls (socket, connect, poll: std has no connect that another thread can end);
//! the transport then does the same I/O as ureq's own TCP transport.
//!
//! Each finished connect's duration is kept ([`ConnectTimes`]), so that the flusher can bound
//! the next connects by what it has seen instead of a fixed second.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};

/// The durations of recent TCP connects, newest last (shared with the connector).
#[derive(Debug, Default)]
pub struct ConnectTimes {
    /// Connects finished since the flusher last looked, in microseconds.
    fresh: Mutex<Vec<u64>>,
}

impl ConnectTimes {
    fn push(&self, took: Duration) {
        let mut v = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 16 {
            v.push(took.as_micros() as u64);
        }
    }

    /// The connects finished since the last call.
    pub fn take(&self) -> Vec<Duration> {
        let mut v = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        v.drain(..).map(Duration::from_micros).collect()
    }

    /// Puts back what [`take`](Self::take) returned, dropping whatever came since (the
    /// connects of a credentials fetch, which say nothing of Kinesis).
    pub fn restore(&self, taken: Vec<Duration>) {
        let mut v = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        *v = taken.into_iter().map(|d| d.as_micros() as u64).collect();
    }
}

/// Cuts the client's requests in flight from another thread (see the module docs).
#[derive(Clone)]
pub struct Interrupt {
    agent: Arc<Mutex<ureq::Agent>>,
    generation: Arc<AtomicU64>,
    /// Sockets outside the agent that a fire shuts down too (the start-up connect probe).
    others: Arc<Mutex<Vec<Weak<Socket>>>>,
}

impl fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupt")
            .field("generation", &self.generation())
            .finish()
    }
}

impl Interrupt {
    pub(crate) fn new(agent: ureq::Agent) -> Self {
        Interrupt {
            agent: Arc::new(Mutex::new(agent)),
            generation: Arc::new(AtomicU64::new(0)),
            others: Arc::default(),
        }
    }

    /// Closes every connection of the client now, in use or idle: a request in flight fails
    /// at once. The client builds a new agent for its next request.
    pub fn fire(&self) {
        let agent = self.agent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.generation.fetch_add(1, Relaxed);
        agent.shutdown();
        let others = std::mem::take(&mut *self.others.lock().unwrap_or_else(|e| e.into_inner()));
        for s in others.iter().filter_map(Weak::upgrade) {
            s.shutdown();
        }
    }

    /// One TCP connect to `addr` (nothing is sent) that [`Interrupt::fire`] can cut; its
    /// result within `timeout`. A cut or a timeout is a connect that did not finish.
    pub(crate) fn connect_once(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), ureq::Error> {
        let (stream, handle) = start_connect(addr).map_err(ureq::Error::Io)?;
        let handle = Arc::new(handle);
        {
            let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
            others.retain(|w| w.strong_count() > 0);
            others.push(Arc::downgrade(&handle));
        }
        match finish_connect(&stream, Some(timeout)) {
            Err(_) if handle.1.load(Relaxed) => Err(ureq::Error::Timeout(ureq::Timeout::Connect)),
            r => r,
        }
    }

    /// How many times [`fire`](Self::fire) was called: a request that saw it change was cut.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// The agent to send with, rebuilt by `build` when it was shut down since `seen`.
    pub(super) fn agent(
        &self,
        seen: &AtomicU64,
        build: impl FnOnce() -> ureq::Agent,
    ) -> ureq::Agent {
        let mut agent = self.agent.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.generation();
        if now != seen.load(Relaxed) {
            *agent = build();
            seen.store(now, Relaxed);
        }
        agent.clone()
    }
}

/// The TCP step of the client's connector chain: a connect that the agent's shutdown can cut
/// at any point, the connect itself included, noting how long each connect took.
#[derive(Debug)]
pub struct AbortableTcp {
    pub times: Arc<ConnectTimes>,
}

/// A socket as the agent's shutdown sees it: a second handle on the same socket, shut down
/// for both directions (which also aborts a connect in progress: the kernel drops it).
struct Socket(TcpStream, std::sync::atomic::AtomicBool);

impl ShutdownHandle for Socket {
    fn shutdown(&self) {
        self.1.store(true, Relaxed);
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

impl<In: Transport> Connector<In> for AbortableTcp {
    type Out = Either<In, Cuttable>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if chained.is_some() {
            // A proxy connection made earlier in the chain.
            return Ok(chained.map(Either::A));
        }
        let started = Instant::now();
        let deadline = details.timeout.not_zero().map(|t| started + *t);
        let mut last = ureq::Error::ConnectionFailed;
        for addr in details.addrs.iter() {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                last = ureq::Error::Timeout(ureq::Timeout::Connect);
                break;
            }
            let (stream, handle) = match start_connect(*addr) {
                Ok(pair) => pair,
                Err(e) => {
                    last = ureq::Error::Io(e);
                    continue;
                }
            };
            // Registered before the wait, so that a cut ends the connect too.
            let handle = Arc::new(handle);
            (details.register_shutdown)(Arc::downgrade(&handle) as Weak<dyn ShutdownHandle>)?;
            match finish_connect(&stream, left) {
                Ok(()) => {
                    self.times.push(started.elapsed());
                    if details.config.no_delay() {
                        stream.set_nodelay(true)?;
                    }
                    let buffers = LazyBuffers::new(
                        details.config.input_buffer_size(),
                        details.config.output_buffer_size(),
                    );
                    return Ok(Some(Either::B(Cuttable {
                        stream,
                        _handle: handle,
                        buffers,
                        timeout_read: None,
                        timeout_write: None,
                    })));
                }
                // Cut before a connection was made: nothing was sent, Kinesis was not reached.
                Err(_) if handle.1.load(Relaxed) => {
                    return Err(ureq::Error::Timeout(ureq::Timeout::Connect))
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// A nonblocking TCP socket with a connect to `addr` under way, and a second handle on it.
#[allow(unsafe_code)]
fn start_connect(addr: SocketAddr) -> std::io::Result<(TcpStream, Socket)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the descriptor it returns is owned by the
    // OwnedFd at once, and by nothing else.
    let fd = unsafe {
        let fd = libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    let stream = TcpStream::from(fd);
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr_in or sockaddr_in6 of `len` bytes and outlives the
    // call; the descriptor is the socket just made.
    let rc = unsafe {
        libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&stream),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    let handle = Socket(stream.try_clone()?, Default::default());
    Ok((stream, handle))
}

/// Waits for the connect under way on `stream` (nonblocking) to finish, at most `left`; the
/// socket is blocking again when it succeeded. A cut (the socket shut down) or a refusal is
/// an error, and so is the time running out.
#[allow(unsafe_code)]
fn finish_connect(stream: &TcpStream, left: Option<Duration>) -> Result<(), ureq::Error> {
    let timeout_ms = left.map_or(-1, |l| l.as_millis().clamp(1, i32::MAX as u128) as i32);
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(stream),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the socket `stream` owns, for the length of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ureq::Error::Io(e));
        }
        if n == 0 {
            return Err(ureq::Error::Timeout(ureq::Timeout::Connect));
        }
        break;
    }
    if let Some(e) = stream.take_error()? {
        return Err(ureq::Error::Io(e));
    }
    // Writable without an error, but connected only if it has a peer (a cut socket has none).
    stream.peer_addr().map_err(ureq::Error::Io)?;
    stream.set_nonblocking(false)?;
    Ok(())
}

/// `addr` as a C socket address and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut storage = zeroed_storage();
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            write_into(&mut storage, sin);
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            write_into(&mut storage, sin6);
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[allow(unsafe_code)]
fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a C struct of integers: all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Writes a sockaddr_in/in6 at the start of the storage (which is larger and aligned for
/// either).
#[allow(unsafe_code)]
fn write_into<T: Copy>(storage: &mut libc::sockaddr_storage, value: T) {
    const { assert!(std::mem::size_of::<T>() <= std::mem::size_of::<libc::sockaddr_storage>()) };
    // SAFETY: `T` is smaller than the storage (checked above) and the storage is aligned
    // for every socket address type (that is what sockaddr_storage is for).
    unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast::<T>(), value) }
}

/// A TCP connection made by [`AbortableTcp`]: the I/O ureq's own TCP transport does, plus the
/// handle that lets [`Interrupt::fire`] shut its socket down.
#[derive(Debug)]
pub struct Cuttable {
    stream: TcpStream,
    _handle: Arc<Socket>,
    buffers: LazyBuffers,
    timeout_read: Option<Duration>,
    timeout_write: Option<Duration>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Socket")
    }
}

/// The timeout for one read or write: `Err` when it has run out already.
fn io_timeout(t: NextTimeout) -> Result<Option<Duration>, ureq::Error> {
    if t.after.is_zero() {
        return Err(ureq::Error::Timeout(t.reason));
    }
    Ok(t.not_zero().map(|d| *d))
}

fn timed_out(e: std::io::Error, reason: ureq::Timeout) -> ureq::Error {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            ureq::Error::Timeout(reason)
        }
        _ => ureq::Error::Io(e),
    }
}

impl Transport for Cuttable {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let t = timeout.for_write();
        let wait = io_timeout(t)?;
        if wait != self.timeout_write {
            self.stream.set_write_timeout(wait)?;
            self.timeout_write = wait;
        }
        let output = &self.buffers.output()[..amount];
        (&self.stream)
            .write_all(output)
            .map_err(|e| timed_out(e, t.reason))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let t = timeout.for_read();
        let wait = io_timeout(t)?;
        if wait != self.timeout_read {
            self.stream.set_read_timeout(wait)?;
            self.timeout_read = wait;
        }
        let input = self.buffers.input_append_buf();
        let n = loop {
            match (&self.stream).read(input) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| timed_out(e, t.reason))?,
            }
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // Open when a read would block: no bytes nobody asked for, no close.
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let open = matches!(
            (&self.stream).read(&mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        open && self.stream.set_nonblocking(false).is_ok()
    }
}

/// The connector chain: an HTTP CONNECT proxy when one is configured, [`AbortableTcp`], then
/// rustls for `https`.
pub fn chain(times: Arc<ConnectTimes>) -> impl Connector<(), Out = impl Transport> {
    use ureq::unversioned::transport::{ConnectProxyConnector, RustlsConnector};
    ().chain(ConnectProxyConnector::default())
        .chain(AbortableTcp { times })
        .chain(RustlsConnector::default())
}
