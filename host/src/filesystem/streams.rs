//! The byte streams of AFS files: reads from the page store (fetching what is missing,
//! revalidating at every piece, so a long-lived stream reads fresh bytes after a
//! callback break), writes into it (stored at sync or close).
//!
//! A stream never blocks its caller: each piece is a task on the AFS runtime that
//! `ready` awaits. The reader keeps one piece in flight ahead of the guest, so fetching
//! and the guest's copying overlap.

use std::sync::Arc;

use afs::cache::manager::CacheManager;
use afs::client::Node;
use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, OutputStream, StreamError, StreamResult};

use super::bindings::wasi::filesystem::types::ErrorCode;

/// Bytes per read piece: large enough that the per-piece hand-over costs nothing next
/// to the copy, small enough that the first bytes come fast.
const READ_PIECE: u64 = 4 << 20;
/// Bytes a writer accepts per `check-write`.
const WRITE_BUDGET: usize = 1 << 20;

type Piece = Result<Vec<u8>, afs::rpc::Error>;

/// `read-via-stream` of an AFS file. Its errors are AFS errors, or an [`ErrorCode`]
/// (`filesystem-error-code` reads either).
pub(crate) struct AfsReader {
    cache: Arc<CacheManager>,
    afs: Handle,
    node: Node,
    /// Where the next piece starts.
    next: u64,
    /// Bytes fetched and not yet read by the guest.
    buf: Bytes,
    /// The piece being fetched (at `next`).
    fetching: Option<JoinHandle<Piece>>,
    /// The stream ended: at the end of the file, or with this error.
    end: Option<Option<wasmtime::Error>>,
    /// The descriptor was not opened for reading.
    refused: bool,
}

impl AfsReader {
    pub(crate) fn new(
        cache: Arc<CacheManager>,
        afs: Handle,
        node: Node,
        offset: u64,
        readable: bool,
    ) -> Self {
        AfsReader {
            cache,
            afs,
            node,
            next: offset,
            buf: Bytes::new(),
            fetching: None,
            end: None,
            refused: !readable,
        }
    }

    fn fetch(&mut self) {
        if self.fetching.is_some() || self.end.is_some() {
            return;
        }
        let (cache, node, at) = (self.cache.clone(), self.node.clone(), self.next);
        self.fetching = Some(self.afs.spawn(async move {
            cache
                .read_at(&node, at, READ_PIECE)
                .await
                .map(|(_, data)| data)
        }));
    }

    fn take(&mut self, size: usize) -> Bytes {
        let out = self.buf.split_to(size.min(self.buf.len()));
        if self.buf.is_empty() {
            // Keep one piece in flight ahead of the guest.
            self.fetch();
        }
        out
    }
}

#[async_trait::async_trait]
impl InputStream for AfsReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.refused {
            return Err(StreamError::LastOperationFailed(
                ErrorCode::BadDescriptor.into(),
            ));
        }
        if !self.buf.is_empty() {
            return Ok(self.take(size));
        }
        match &mut self.end {
            Some(None) => Err(StreamError::Closed),
            Some(Some(_)) => {
                let e = self.end.replace(None).flatten().expect("an error");
                Err(StreamError::LastOperationFailed(e))
            }
            None => {
                self.fetch();
                Ok(Bytes::new())
            }
        }
    }
}

#[async_trait::async_trait]
impl Pollable for AfsReader {
    async fn ready(&mut self) {
        if self.refused || !self.buf.is_empty() || self.end.is_some() {
            return;
        }
        self.fetch();
        let Some(task) = self.fetching.take() else {
            return;
        };
        match task.await {
            Ok(Ok(data)) if data.is_empty() => self.end = Some(None),
            Ok(Ok(data)) => {
                self.next += data.len() as u64;
                self.buf = Bytes::from(data);
                self.fetch();
            }
            Ok(Err(e)) => self.end = Some(Some(e.into())),
            Err(e) => self.end = Some(Some(wasmtime::Error::msg(format!("read task: {e}")))),
        }
    }
}

/// Where a writer puts its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WriteAt {
    /// At this offset, moving on with each write.
    Offset(u64),
    /// At the end of the file as the page store has it at each write.
    End,
}

/// `write-via-stream` and `append-via-stream` of an AFS file.
pub(crate) struct AfsWriter {
    cache: Arc<CacheManager>,
    afs: Handle,
    node: Node,
    at: WriteAt,
    state: WriteState,
}

enum WriteState {
    Ready,
    Writing(JoinHandle<Result<u64, afs::rpc::Error>>),
    Failed(wasmtime::Error),
    Closed,
}

impl AfsWriter {
    pub(crate) fn new(
        cache: Arc<CacheManager>,
        afs: Handle,
        node: Node,
        at: WriteAt,
        writable: bool,
    ) -> Self {
        AfsWriter {
            cache,
            afs,
            node,
            at,
            state: if writable {
                WriteState::Ready
            } else {
                WriteState::Failed(ErrorCode::BadDescriptor.into())
            },
        }
    }

    /// The state's error, once; the stream is closed after it.
    fn failure(&mut self) -> StreamError {
        match std::mem::replace(&mut self.state, WriteState::Closed) {
            WriteState::Failed(e) => StreamError::LastOperationFailed(e),
            _ => StreamError::Closed,
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for AfsWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        match self.state {
            WriteState::Ready => {}
            WriteState::Writing(_) => {
                return Err(StreamError::trap("write without a permit from check-write"))
            }
            WriteState::Failed(_) | WriteState::Closed => return Err(self.failure()),
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let (cache, node, at) = (self.cache.clone(), self.node.clone(), self.at);
        let len = bytes.len() as u64;
        self.state = WriteState::Writing(self.afs.spawn(async move {
            let offset = match at {
                WriteAt::Offset(o) => o,
                WriteAt::End => {
                    let node = cache.revalidate(&node).await?;
                    cache.open_file(&node)?.len()
                }
            };
            cache.write_at(&node, offset, &bytes).await?;
            Ok(len)
        }));
        Ok(())
    }

    /// Bytes go to the page store as they come; the server gets them at sync or close.
    fn flush(&mut self) -> StreamResult<()> {
        match self.state {
            WriteState::Failed(_) | WriteState::Closed => Err(self.failure()),
            _ => Ok(()),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        match self.state {
            WriteState::Ready => Ok(WRITE_BUDGET),
            WriteState::Writing(_) => Ok(0),
            WriteState::Failed(_) | WriteState::Closed => Err(self.failure()),
        }
    }

    async fn cancel(&mut self) {
        // A write in flight finishes (the page store then holds its bytes, stored at
        // close like any other).
        self.ready().await;
    }
}

#[async_trait::async_trait]
impl Pollable for AfsWriter {
    async fn ready(&mut self) {
        let WriteState::Writing(task) = &mut self.state else {
            return;
        };
        self.state = match task.await {
            Ok(Ok(n)) => {
                if let WriteAt::Offset(o) = &mut self.at {
                    *o += n;
                }
                WriteState::Ready
            }
            Ok(Err(e)) => WriteState::Failed(e.into()),
            Err(e) => WriteState::Failed(wasmtime::Error::msg(format!("write task: {e}"))),
        };
    }
}
