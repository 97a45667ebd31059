//! How an endpoint's datagrams move: a UDP socket, or a simulated network.
//!
//! The driver ([`crate::Endpoint`]) only needs to send a batch and wait for the
//! next one; behind this trait a test can put a seeded network that loses,
//! duplicates, reorders and delays datagrams, with time under its control
//! (tokio's paused clock: the driver reads time from tokio, see [`now`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;

use crate::socket::{RecvBuffers, RxSocket};

/// A future a transport returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Datagrams in and out for one endpoint.
pub trait Transport: Send + Sync + 'static {
    fn local_addr(&self) -> SocketAddr;
    /// Sends datagrams in order. Returns how many were sent and how many were
    /// dropped because a buffer was full (retransmission recovers those).
    fn send(&self, out: &[(SocketAddr, Bytes)]) -> (u64, u64);
    /// Waits for datagrams and returns every one queued, with its sender.
    fn recv(&self) -> BoxFuture<'_, io::Result<Vec<(Bytes, SocketAddr)>>>;
}

/// The time the endpoint runs on: tokio's clock, which is the system's
/// monotonic clock unless a test paused it (then time moves only when every
/// task waits, which makes simulations fast and repeatable).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A real UDP socket with batched I/O.
pub(crate) struct Udp {
    socket: RxSocket,
    local_addr: SocketAddr,
    /// Only the endpoint's receive task reads; the lock is never contended.
    bufs: Mutex<Option<RecvBuffers>>,
}

impl Udp {
    pub fn bind(addr: SocketAddr, buffer: usize) -> io::Result<Self> {
        let socket = RxSocket::bind(addr, buffer)?;
        let local_addr = socket.local_addr()?;
        Ok(Self {
            socket,
            local_addr,
            bufs: Mutex::default(),
        })
    }
}

impl Transport for Udp {
    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn send(&self, out: &[(SocketAddr, Bytes)]) -> (u64, u64) {
        self.socket.send_all(out)
    }

    fn recv(&self) -> BoxFuture<'_, io::Result<Vec<(Bytes, SocketAddr)>>> {
        Box::pin(async move {
            // The buffers are taken out for the wait: no lock is held across it.
            let taken = self.bufs.lock().unwrap_or_else(|e| e.into_inner()).take();
            let mut bufs = taken.unwrap_or_default();
            let r = self.socket.recv_batch(&mut bufs).await;
            *self.bufs.lock().unwrap_or_else(|e| e.into_inner()) = Some(bufs);
            r
        })
    }
}
