//! RXAFS: the fileserver interface, as a client.
//!
//! Whole-message calls go through [`rpc::call`]; FetchData64 and StoreData64 stream
//! their bytes so that files of any size move without being held in memory.

use std::net::SocketAddr;

use bytes::Bytes;
use rx::security::Security;
use rx::Endpoint;
use tokio::io::{AsyncRead, AsyncReadExt};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::error::ErrorKind;
use crate::proto::fs as p;
use crate::rpc::{self, args, Error, Result};
use crate::types::{Capabilities, FetchVolumeStatus, Fid, StoreStatus};

/// The fileserver's Rx service id.
pub const SERVICE: u16 = 1;
/// The fileserver's default UDP port.
pub const PORT: u16 = 7000;

pub use p::{
    BulkStatusReply, CreateReply, FetchStatusReply, LinkReply, RenameReply, StatusReply,
    SymlinkReply,
};

/// Where a StoreData64 writes and the file's length afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRange {
    pub pos: u64,
    pub len: u64,
    pub file_length: u64,
}

/// How often a call refused with "volume busy" is tried again (about 10 s in all),
/// as OpenAFS clients wait out a busy volume rather than fail.
const BUSY_RETRIES: u32 = 14;

pub(crate) fn busy_backoff(attempt: u32) -> Duration {
    Duration::from_millis((20u64 << attempt.min(6)).min(1000))
}

/// Runs `op` again while the fileserver says the volume is busy.
async fn retry_busy<T, F, Fut>(stats: &FsStats, retries: u32, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if e.kind() == ErrorKind::VolumeBusy && attempt < retries => {
                attempt += 1;
                FsStats::count(&stats.busy_retries, 1);
                debug!(error = %e, attempt, "volume busy; trying again");
                tokio::time::sleep(busy_backoff(attempt)).await;
            }
            r => return r,
        }
    }
}

/// Calls to one fileserver.
#[derive(Debug, Clone)]
pub struct FileServer {
    endpoint: Endpoint,
    addr: SocketAddr,
    stats: Arc<FsStats>,
    /// The identity the calls are made as (rxnull unless [`FileServer::with_security`]).
    security: Security,
    /// Its name, for refusals ("permission denied for alice@REALM").
    who: Arc<str>,
    /// How long a call waits without a word from the server (None: the endpoint's).
    dead_time: Option<Duration>,
    /// How often a call refused with "volume busy" is tried again here.
    busy_retries: u32,
}

/// Calls made to fileservers and the file bytes they moved.
#[derive(Debug, Default)]
pub struct FsStats {
    pub fetch_status: AtomicU64,
    pub bulk_status: AtomicU64,
    pub fetch_data: AtomicU64,
    pub fetch_data_bytes: AtomicU64,
    pub store_data: AtomicU64,
    pub store_data_bytes: AtomicU64,
    /// Every other call (create, remove, rename, probes...).
    pub other: AtomicU64,
    /// Calls refused with "volume busy" and tried again.
    pub busy_retries: AtomicU64,
}

impl FsStats {
    fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl std::fmt::Display for FsStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "FetchStatus {}, InlineBulkStatus {}, FetchData {} ({} bytes), StoreData {} ({} bytes), other {}, busy retries {}",
            g(&self.fetch_status),
            g(&self.bulk_status),
            g(&self.fetch_data),
            g(&self.fetch_data_bytes),
            g(&self.store_data),
            g(&self.store_data_bytes),
            g(&self.other),
            g(&self.busy_retries),
        )
    }
}

impl FileServer {
    /// Calls to the fileserver at `addr`, counted in a private [`FsStats`].
    pub fn new(endpoint: Endpoint, addr: SocketAddr) -> Self {
        Self::with_stats(endpoint, addr, Arc::default())
    }

    /// Calls counted in `stats` (shared by all of a client's fileservers).
    pub fn with_stats(endpoint: Endpoint, addr: SocketAddr, stats: Arc<FsStats>) -> Self {
        Self {
            endpoint,
            addr,
            stats,
            security: Security::null(),
            who: Arc::from("anonymous"),
            dead_time: None,
            busy_retries: BUSY_RETRIES,
        }
    }

    /// The same fileserver as one site of a volume that has others to ask: given up on
    /// after [`FAILOVER_DEAD_TIME`](crate::client::FAILOVER_DEAD_TIME) without a word
    /// from it, and a busy volume is not waited for here (the next site may not be busy).
    pub fn with_failover(mut self) -> Self {
        self.dead_time = Some(crate::client::FAILOVER_DEAD_TIME);
        self.busy_retries = 0;
        self
    }

    /// A call to the fileserver as our identity, with our dead time.
    fn start_call(&self) -> rx::Call {
        let call = self.endpoint.call_as(self.addr, SERVICE, &self.security);
        if let Some(d) = self.dead_time {
            // A call that is already gone fails at its first use instead.
            let _ = call.set_dead_time(d);
        }
        call
    }

    /// The same fileserver, called as `who` on connections of `security`.
    pub fn with_security(mut self, security: Security, who: &str) -> Self {
        self.security = security;
        self.who = Arc::from(who);
        self
    }

    pub fn stats(&self) -> &FsStats {
        &self.stats
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One whole-message call, counted in `counter`.
    async fn call<T>(
        &self,
        counter: &AtomicU64,
        request: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, crate::xdr::XdrError>,
    ) -> Result<T> {
        FsStats::count(counter, 1);
        let r = retry_busy(&self.stats, self.busy_retries, || {
            rpc::call_on(self.start_call(), request, &decode)
        })
        .await;
        r.map_err(|e| e.refused_to(&self.who))
    }

    /// Status of a file and a callback promise on it.
    pub async fn fetch_status(&self, fid: Fid) -> Result<FetchStatusReply> {
        self.call(
            &self.stats.fetch_status,
            &p::fetch_status_args(fid),
            p::decode_fetch_status_reply,
        )
        .await
    }

    /// Status of up to 50 files at once; each entry carries its own error code.
    pub async fn inline_bulk_status(&self, fids: &[Fid]) -> Result<BulkStatusReply> {
        let req = args(p::inline_bulk_status_args(fids))?;
        self.call(
            &self.stats.bulk_status,
            &req,
            p::decode_inline_bulk_status_reply,
        )
        .await
    }

    /// Reads `len` bytes at `pos`, handing each chunk to `sink` as it arrives.
    /// Returns the file's status after the read (and a new callback promise).
    pub async fn fetch_data(
        &self,
        fid: Fid,
        pos: u64,
        len: u64,
        mut sink: impl FnMut(Bytes) -> std::io::Result<()>,
    ) -> Result<FetchStatusReply> {
        let mut delivered = false;
        let mut attempt = 0;
        loop {
            FsStats::count(&self.stats.fetch_data, 1);
            let stats = &self.stats;
            let counting = |b: Bytes| {
                delivered = true;
                FsStats::count(&stats.fetch_data_bytes, b.len() as u64);
                sink(b)
            };
            match self.fetch_data_once(fid, pos, len, counting).await {
                // A busy volume refuses before sending anything: safe to ask again.
                Err(e)
                    if !delivered
                        && e.kind() == ErrorKind::VolumeBusy
                        && attempt < self.busy_retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(busy_backoff(attempt)).await;
                }
                r => return r.map_err(|e| e.refused_to(&self.who)),
            }
        }
    }

    async fn fetch_data_once(
        &self,
        fid: Fid,
        pos: u64,
        len: u64,
        mut sink: impl FnMut(Bytes) -> std::io::Result<()>,
    ) -> Result<FetchStatusReply> {
        let mut call = self.start_call();
        call.write(&p::fetch_data64_args(fid, pos, len)).await?;
        call.finish_sending().await?;
        let mut word = [0u8; 8];
        call.read_exact(&mut word).await?;
        let bad = |source| Error::BadReply {
            server: self.addr,
            source,
        };
        let mut remaining = p::decode_fetch_data64_length(&word).map_err(bad)?;
        if remaining > len {
            return Err(bad(crate::xdr::XdrError::Invalid {
                what: "FetchData64 length",
                value: remaining.min(u64::from(u32::MAX)) as u32,
            }));
        }
        while remaining > 0 {
            let mut chunk = call
                .read()
                .await?
                .ok_or(rx::RxError::Eof { peer: self.addr })?;
            if chunk.len() as u64 > remaining {
                // The trailer begins inside this chunk: keep it for below.
                let tail = chunk.split_off(remaining as usize);
                sink(chunk)?;
                return self.finish_fetch(call, tail).await;
            }
            remaining -= chunk.len() as u64;
            sink(chunk)?;
        }
        self.finish_fetch(call, Bytes::new()).await
    }

    async fn finish_fetch(&self, mut call: rx::Call, head: Bytes) -> Result<FetchStatusReply> {
        let mut trailer = head.to_vec();
        // The trailer is fixed-size: anything past it is a broken server.
        trailer.extend(call.read_to_end(p::FETCH_DATA_TRAILER_LEN).await?);
        p::decode_fetch_data_trailer(&trailer).map_err(|source| Error::BadReply {
            server: self.addr,
            source,
        })
    }

    /// Writes `range.len` bytes from `data` at `range.pos`; the file's length
    /// becomes `range.file_length`.
    pub async fn store_data(
        &self,
        fid: Fid,
        status: &StoreStatus,
        range: StoreRange,
        data: impl AsyncRead + Unpin,
        progress: impl FnMut(u64),
    ) -> Result<StatusReply> {
        self.store_data_once(fid, status, range, data, progress)
            .await
            .map_err(|e| e.refused_to(&self.who))
    }

    async fn store_data_once(
        &self,
        fid: Fid,
        status: &StoreStatus,
        range: StoreRange,
        mut data: impl AsyncRead + Unpin,
        mut progress: impl FnMut(u64),
    ) -> Result<StatusReply> {
        let StoreRange {
            pos,
            len,
            file_length,
        } = range;
        FsStats::count(&self.stats.store_data, 1);
        let mut call = self.start_call();
        call.write(&p::store_data64_args(fid, status, pos, len, file_length))
            .await?;
        let mut buf = vec![0u8; 256 << 10];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = data.read(&mut buf[..want]).await?;
            if n == 0 {
                // Abort rather than store a short file.
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("source ended {left} bytes early"),
                )));
            }
            call.write(&buf[..n]).await?;
            FsStats::count(&self.stats.store_data_bytes, n as u64);
            left -= n as u64;
            progress(n as u64);
        }
        call.finish_sending().await?;
        let reply = call.read_to_end(rx::MAX_WHOLE_REPLY).await?;
        p::decode_store_reply(&reply).map_err(|source| Error::BadReply {
            server: self.addr,
            source,
        })
    }

    pub async fn create_file(
        &self,
        dir: Fid,
        name: &str,
        status: &StoreStatus,
    ) -> Result<CreateReply> {
        let req = args(p::create_file_args(dir, name, status))?;
        self.call(&self.stats.other, &req, p::decode_create_file_reply)
            .await
    }

    pub async fn make_dir(
        &self,
        dir: Fid,
        name: &str,
        status: &StoreStatus,
    ) -> Result<CreateReply> {
        let req = args(p::make_dir_args(dir, name, status))?;
        self.call(&self.stats.other, &req, p::decode_make_dir_reply)
            .await
    }

    pub async fn remove_file(&self, dir: Fid, name: &str) -> Result<StatusReply> {
        let req = args(p::remove_file_args(dir, name))?;
        self.call(&self.stats.other, &req, p::decode_remove_file_reply)
            .await
    }

    pub async fn remove_dir(&self, dir: Fid, name: &str) -> Result<StatusReply> {
        let req = args(p::remove_dir_args(dir, name))?;
        self.call(&self.stats.other, &req, p::decode_remove_dir_reply)
            .await
    }

    pub async fn symlink(
        &self,
        dir: Fid,
        name: &str,
        target: &str,
        status: &StoreStatus,
    ) -> Result<SymlinkReply> {
        let req = args(p::symlink_args(dir, name, target, status))?;
        self.call(&self.stats.other, &req, p::decode_symlink_reply)
            .await
    }

    pub async fn rename(
        &self,
        old_dir: Fid,
        old: &str,
        new_dir: Fid,
        new: &str,
    ) -> Result<RenameReply> {
        let req = args(p::rename_args(old_dir, old, new_dir, new))?;
        self.call(&self.stats.other, &req, p::decode_rename_reply)
            .await
    }

    /// A hard link named `name` in `dir` to `existing` (in the same directory).
    pub async fn link(&self, dir: Fid, name: &str, existing: Fid) -> Result<LinkReply> {
        let req = args(p::link_args(dir, name, existing))?;
        self.call(&self.stats.other, &req, p::decode_link_reply)
            .await
    }

    /// Changes a file's metadata (modification time, mode, owner) without its data.
    pub async fn store_status(&self, fid: Fid, status: &StoreStatus) -> Result<StatusReply> {
        self.call(
            &self.stats.other,
            &p::store_status_args(fid, status),
            p::decode_store_reply,
        )
        .await
    }

    pub async fn get_volume_status(&self, volume: u32) -> Result<FetchVolumeStatus> {
        self.call(
            &self.stats.other,
            &p::get_volume_status_args(volume),
            p::decode_get_volume_status_reply,
        )
        .await
    }

    pub async fn get_capabilities(&self) -> Result<Capabilities> {
        self.call(
            &self.stats.other,
            &p::get_capabilities_args(),
            p::decode_get_capabilities_reply,
        )
        .await
    }

    /// Tells the server we hold no more promises from it (before exiting).
    pub async fn give_up_all_callbacks(&self) -> Result<()> {
        self.call(
            &self.stats.other,
            &p::give_up_all_callbacks_args(),
            p::decode_empty_reply,
        )
        .await
    }
}
