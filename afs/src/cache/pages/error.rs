//! Errors of the page store.

use std::error::Error as StdError;
use std::sync::Arc;

use crate::types::Fid;

/// What a [`Fetcher`](super::Fetcher) or [`Storer`](super::Storer) may fail with: any error,
/// so the real client can hand back its own RPC errors unchanged.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A page-store failure.
///
/// `Clone` because one failed fetch is reported to every reader that waited on it
/// (single-flight), so the sources are shared behind `Arc`s.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PageError {
    /// The fetcher failed to bring in a byte range.
    #[error("fetching {len} bytes at offset {offset} of {fid}: {source}")]
    Fetch {
        /// The file.
        fid: Fid,
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// What the fetcher reported.
        #[source]
        source: Arc<dyn StdError + Send + Sync + 'static>,
    },
    /// The fetcher returned more bytes than asked for: a protocol bug upstream, and
    /// installing them would overwrite pages we did not mean to touch.
    #[error("fetch of {fid} returned {got} bytes for {asked} asked")]
    Oversized {
        /// The file.
        fid: Fid,
        /// Bytes asked for.
        asked: u64,
        /// Bytes returned.
        got: u64,
    },
    /// The storer failed to write a byte range back.
    #[error("storing {len} bytes at offset {offset} of {fid}: {source}")]
    Store {
        /// The file.
        fid: Fid,
        /// First byte of the range.
        offset: u64,
        /// Bytes in the range.
        len: u64,
        /// What the storer reported.
        #[source]
        source: Arc<dyn StdError + Send + Sync + 'static>,
    },
    /// Reading, writing, resizing or punching the file's memfd failed.
    #[error("memfd I/O for {fid}: {source}")]
    Io {
        /// The file.
        fid: Fid,
        /// The system error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Creating a memfd failed (out of file descriptors or memory).
    #[error("creating the memfd for {fid}: {source}")]
    Create {
        /// The file.
        fid: Fid,
        /// The system error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The range ends beyond [`MAX_FILE_SIZE`](super::MAX_FILE_SIZE) (or overflows u64).
    #[error("range of {len} bytes at offset {offset} is beyond the largest supported file size")]
    OutOfRange {
        /// First byte of the range.
        offset: u64,
        /// Bytes in the range.
        len: u64,
    },
    /// The file changed on the server (DataVersion `theirs`) since our unstored writes
    /// were made on version `ours`: they were not stored.
    #[error("{fid} changed on the fileserver (data version {ours} -> {theirs}) under unstored writes, which were not stored; store them over the change explicitly (sync-overwrite) or drop them")]
    Conflict {
        /// The file.
        fid: Fid,
        /// The DataVersion our writes were made on.
        ours: u64,
        /// The DataVersion the server has.
        theirs: u64,
    },
    /// Bytes were written through a mapping past the end of the file: they are not part
    /// of it and were not stored (the bytes within the file were).
    #[error("{fid}: bytes written through a mapping at offset {offset}, past the end of the file ({len} bytes), are not stored; extend the file (set-length) to keep them")]
    WrittenPastEnd {
        /// The file.
        fid: Fid,
        /// The file's length.
        len: u64,
        /// The first such byte.
        offset: u64,
    },
    /// The file was never [`open`](super::PageStore::open)ed in this store.
    #[error("{0} is not open in the page store")]
    NotOpen(Fid),
    /// Fetches run as tokio tasks (so a cancelled reader cannot strand the others waiting
    /// on the same fetch); there was no runtime to spawn them on.
    #[error("the page store needs a tokio runtime to fetch on")]
    NoRuntime,
}

impl PageError {
    pub(super) fn io(fid: Fid, source: std::io::Error) -> Self {
        Self::Io {
            fid,
            source: Arc::new(source),
        }
    }
}
