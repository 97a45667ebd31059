//! The endpoint's UDP socket, with batched I/O.
//!
//! Sends group runs of equal-size datagrams into one GSO send; receives take every
//! queued datagram with recvmmsg and split GRO-coalesced buffers. Both through
//! quinn-udp, which wraps the system calls safely.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::trace;

use crate::packet::MAX_DATAGRAM;

/// Payload of one GSO send, below the 65507-byte limit of a UDP datagram.
const MAX_GSO_BYTES: usize = 64000;

/// A UDP socket for Rx.
#[derive(Debug)]
pub(crate) struct RxSocket {
    socket: UdpSocket,
    state: UdpSocketState,
}

/// Buffers reused across receives.
pub(crate) struct RecvBuffers {
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
}

impl Default for RecvBuffers {
    fn default() -> Self {
        Self {
            bufs: vec![vec![0u8; MAX_DATAGRAM]; BATCH_SIZE],
            metas: vec![RecvMeta::default(); BATCH_SIZE],
        }
    }
}

impl RxSocket {
    /// Binds `addr` with socket buffers of `buffer` bytes (capped by the kernel).
    /// Must be called within a tokio runtime.
    pub fn bind(addr: SocketAddr, buffer: usize) -> io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // Best effort: the kernel caps these at rmem_max/wmem_max.
        let _ = socket.set_recv_buffer_size(buffer);
        let _ = socket.set_send_buffer_size(buffer);
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Self { socket, state })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends datagrams in order, each run of [`gso_runs`] in one send: one system
    /// call and one trip through the stack instead of one per packet. Returns how
    /// many were sent and how many dropped because the socket buffer was full.
    pub fn send_all(&self, out: &[(SocketAddr, Bytes)]) -> (u64, u64) {
        let (mut sent, mut dropped) = (0, 0);
        for run in gso_runs(out, self.state.max_gso_segments()) {
            let (to, first) = &out[run.start];
            let count = run.len() as u64;
            let joined;
            let contents: &[u8] = if count == 1 {
                first
            } else {
                joined = out[run]
                    .iter()
                    .flat_map(|(_, d)| d.iter().copied())
                    .collect::<Vec<u8>>();
                &joined
            };
            let transmit = Transmit {
                destination: *to,
                ecn: None,
                contents,
                segment_size: (count > 1).then_some(first.len()),
                src_ip: None,
            };
            match self.state.send((&self.socket).into(), &transmit) {
                Ok(()) => sent += count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dropped += count,
                Err(e) => trace!(%to, error = %e, "send failed"),
            }
        }
        (sent, dropped)
    }

    /// Waits for datagrams and takes every one queued.
    pub async fn recv_batch(&self, b: &mut RecvBuffers) -> io::Result<Vec<(Bytes, SocketAddr)>> {
        loop {
            self.socket.readable().await?;
            let mut slices: Vec<IoSliceMut<'_>> =
                b.bufs.iter_mut().map(|v| IoSliceMut::new(v)).collect();
            let metas = &mut b.metas;
            let n = match self.socket.try_io(Interest::READABLE, || {
                self.state.recv((&self.socket).into(), &mut slices, metas)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            // One allocation for the whole batch, sliced per datagram: a packet's
            // payload then costs no allocation of its own.
            let total: usize = b.metas.iter().take(n).map(|m| m.len).sum();
            let mut all = BytesMut::with_capacity(total);
            for (meta, buf) in b.metas.iter().zip(slices.iter()).take(n) {
                all.extend_from_slice(&buf[..meta.len]);
            }
            let all = all.freeze();
            let mut batch = Vec::with_capacity(n);
            let mut at = 0;
            for meta in b.metas.iter().take(n) {
                // A GRO buffer holds several datagrams of `stride` bytes each.
                let stride = meta.stride.max(1);
                let mut off = 0;
                while off < meta.len {
                    let len = stride.min(meta.len - off);
                    batch.push((all.slice(at + off..at + off + len), meta.addr));
                    off += len;
                }
                at += meta.len;
            }
            return Ok(batch);
        }
    }
}

/// Splits datagrams (in send order) into runs that one GSO send can carry: the same
/// peer, equal sizes but for a shorter last one, at most `max_segments` of them
/// and at most [`MAX_GSO_BYTES`] in all (beyond that the kernel refuses the send
/// with EMSGSIZE, which quinn-udp reports as success).
fn gso_runs(out: &[(SocketAddr, Bytes)], max_segments: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < out.len() {
        let (to, first) = &out[i];
        let size = first.len();
        let limit = max_segments.min(MAX_GSO_BYTES / size.max(1)).max(1);
        let mut end = i + 1;
        while end < out.len()
            && end - i < limit
            && out[end].0 == *to
            && out[end - 1].1.len() == size
            && out[end].1.len() <= size
        {
            end += 1;
        }
        runs.push(i..end);
        i = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dgrams(spec: &[(u16, usize)]) -> Vec<(SocketAddr, Bytes)> {
        spec.iter()
            .map(|&(port, len)| {
                (
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    Bytes::from(vec![0u8; len]),
                )
            })
            .collect()
    }

    #[test]
    fn runs_group_equal_sizes_to_one_peer() {
        let out = dgrams(&[
            (1, 1440),
            (1, 1440),
            (1, 1440),
            (1, 600),
            (1, 1440),
            (2, 1440),
            (2, 80),
        ]);
        assert_eq!(gso_runs(&out, 64), vec![0..4, 4..5, 5..7]);
        assert_eq!(
            gso_runs(&out, 1),
            (0..7).map(|i| i..i + 1).collect::<Vec<_>>()
        );
        assert_eq!(gso_runs(&out, 2), vec![0..2, 2..4, 4..5, 5..7]);
    }

    #[test]
    fn runs_stay_within_one_udp_datagram() {
        let out = dgrams(&[(1, 1440); 100]);
        let runs = gso_runs(&out, 64);
        assert!(runs.iter().all(|r| r.len() * 1440 <= MAX_GSO_BYTES));
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 100);
        assert!(gso_runs(&[], 64).is_empty());
    }
}
