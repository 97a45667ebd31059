//! The cache manager: file bytes through the page store, kept honest by callbacks.
//!
//! Reading a file validates it first ([`Validator::validate`]: no network while its
//! promise holds, one FetchStatus however many readers when it does not). If the
//! data version moved under us, the clean cached pages of older versions are
//! dropped and fetched again on demand; dirty pages are kept. Unchanged files are
//! served from the page store without a FetchData.

use std::sync::Arc;

use bytes::Bytes;

use super::coherence::{Caller, StatusFetcher, Validator};
use super::pages::{
    BoxError, BoxFuture, Fetched, Fetcher, FileCache, FlushMode, FlushReport, PageError, PageStore,
    PageStoreConfig, Storer,
};
use crate::client::{Client, Node};
use crate::error::ErrorKind;
use crate::rpc::{Error, Result};
use crate::types::{Fid, FileType};

/// Bytes handed to the reader per page-store read.
const READ_PIECE: u64 = 8 << 20;

/// Reads AFS files through a shared, validated page cache.
pub struct CacheManager {
    client: Arc<Client>,
    validator: Validator,
    pages: PageStore,
}

/// Fetches missing pages of one file with FetchData64 from the server that
/// answered for it.
struct FsFetcher {
    client: Arc<Client>,
    node: Node,
}

impl Fetcher for FsFetcher {
    fn fetch(&self, fid: Fid, offset: u64, len: u64) -> BoxFuture<'_, Result<Fetched, BoxError>> {
        Box::pin(async move {
            debug_assert_eq!(fid, self.node.fid);
            let mut data = Vec::new();
            let reply = self
                .client
                .fetch_range(&self.node, offset, len, |b| {
                    data.push(b);
                    Ok(())
                })
                .await
                .map_err(|e| Box::new(e) as BoxError)?;
            Ok(Fetched {
                data,
                data_version: reply.status.data_version(),
            })
        })
    }
}

/// Stores dirty ranges of one file with StoreData64, recording the new status as
/// our own change.
struct FsStorer {
    client: Arc<Client>,
    node: Node,
}

impl Storer for FsStorer {
    fn store(
        &self,
        fid: Fid,
        offset: u64,
        data: Bytes,
        file_len: u64,
    ) -> BoxFuture<'_, Result<u64, BoxError>> {
        Box::pin(async move {
            debug_assert_eq!(fid, self.node.fid);
            let status = self
                .client
                .store_range(&self.node, offset, data, file_len)
                .await
                .map_err(|e| Box::new(e) as BoxError)?;
            Ok(status.data_version())
        })
    }
}

impl CacheManager {
    pub fn new(client: Arc<Client>, config: PageStoreConfig) -> Self {
        Self::with_pages(client, PageStore::new(config))
    }

    fn with_pages(client: Arc<Client>, pages: PageStore) -> Self {
        let fetch: StatusFetcher = {
            let client = client.clone();
            Arc::new(move |fid| {
                let client = client.clone();
                Box::pin(async move {
                    let cell = client.cell_of(fid).unwrap_or_default();
                    Ok(client.fetch_status(&cell, fid).await?.status)
                })
            })
        };
        let caller: Caller = {
            let client = client.clone();
            Arc::new(move |fid| client.who(&client.cell_of(fid).unwrap_or_default()))
        };
        Self {
            validator: Validator::new(client.coherence().clone(), caller, fetch),
            client,
            pages,
        }
    }

    /// The same page store (one copy of every file's bytes) for another identity: its
    /// reads are validated with its own calls and allowed by its own rights.
    pub fn as_identity(&self, identity: crate::identity::Identity) -> Self {
        Self::with_pages(
            Arc::new(self.client.as_identity(identity)),
            self.pages.clone(),
        )
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub fn pages(&self) -> &PageStore {
        &self.pages
    }

    /// Validations asked for, and how many of them had to ask a server.
    pub fn validations(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.validator.validations.load(Relaxed),
            self.validator.fetches.load(Relaxed),
        )
    }

    /// Validates `node` and brings the cached pages in line with what the server
    /// has: the revalidate step of every read (and, later, of every page fault).
    pub async fn revalidate(&self, node: &Node) -> Result<Node> {
        let v = self.validator.validate(node.fid).await?;
        let mut node = node.clone();
        node.status = v.status;
        let dv = v.status.data_version();
        tracing::debug!(fid = %node.fid, dv, "validated");
        if let Some(file) = self.pages.get(node.fid) {
            // Judge against the version the cached pages hold, not the status
            // table: path resolution may already have refreshed the table.
            if file.data_version() != Some(dv) {
                file.note_remote_version(dv);
                file.invalidate_stale(dv).map_err(page_error)?;
                file.truncate_to(v.status.length()).map_err(page_error)?;
            }
            file.note_data_version(dv);
            tracing::debug!(fid = %node.fid, dv, "pages brought in line");
        }
        Ok(node)
    }

    /// Streams a whole file to `sink`, from the page cache where it is valid.
    pub async fn read(
        &self,
        path: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<Node> {
        let node = self.client.resolve(path).await?;
        if node.status.file_type == FileType::Directory {
            return Err(Error::local(ErrorKind::IsDirectory, "is a directory").at(path));
        }
        let node = self.revalidate(&node).await.map_err(|e| e.at(path))?;
        let len = node.status.length();
        self.may_read(&node).map_err(|e| e.at(path))?;
        self.ensure_open(&node)?;
        let fetcher = Arc::new(FsFetcher {
            client: self.client.clone(),
            node: node.clone(),
        });
        let file = self
            .pages
            .get(node.fid)
            .ok_or_else(|| page_error(PageError::NotOpen(node.fid)))?;
        // One buffer for the whole read: a fresh one per piece would cost a page
        // fault and a zeroed page for every 4 KiB read.
        let mut buf = vec![0u8; READ_PIECE.min(len) as usize];
        let mut offset = 0;
        while offset < len {
            let n = file
                .read_at(offset, &mut buf, &fetcher)
                .await
                .map_err(|e| page_error(e).at(path))?;
            if n == 0 {
                break;
            }
            sink(&buf[..n])?;
            offset += n as u64;
        }
        Ok(node)
    }
}

impl CacheManager {
    /// Opens `node` in the page store (at its current length) if it is not yet.
    fn ensure_open(&self, node: &Node) -> Result<()> {
        if self.pages.get(node.fid).is_none() {
            let file = self
                .pages
                .open(node.fid, node.status.length())
                .map_err(page_error)?;
            file.note_data_version(node.status.data_version());
        }
        Ok(())
    }

    /// Refuses the bytes of `node` to an identity the server did not let read them
    /// (`node`'s status is that identity's answer): pages another identity fetched are
    /// never a way around the ACL.
    fn may_read(&self, node: &Node) -> Result<()> {
        if node.status.file_type == FileType::File
            && !node.status.caller_has(crate::types::rights::READ)
        {
            return Err(Error::denied(
                node.server,
                self.client.identity().name_in(&node.cell),
            ));
        }
        Ok(())
    }

    /// The page-store entry of `node`, opened at its current length if it is not yet.
    /// `node` must come from this manager's own [`CacheManager::revalidate`] (its status is
    /// then this identity's answer, whose rights are checked here).
    pub fn open_file(&self, node: &Node) -> Result<Arc<FileCache>> {
        self.may_read(node)?;
        self.ensure_open(node)?;
        self.pages
            .get(node.fid)
            .ok_or_else(|| page_error(PageError::NotOpen(node.fid)))
    }

    /// Makes the bytes `[start, end)` of `node` present in the page store, fetching what
    /// is missing: what the pager does before it maps pages into a guest.
    pub async fn populate(&self, node: &Node, start: u64, end: u64) -> Result<()> {
        let file = self.open_file(node)?;
        let fetcher = Arc::new(FsFetcher {
            client: self.client.clone(),
            node: node.clone(),
        });
        file.populate(start, end, &fetcher)
            .await
            .map_err(page_error)
    }

    /// Up to `len` bytes at `offset` of `node` (fewer at the end of the file), from the
    /// page cache where it is valid. Returns the revalidated node too.
    pub async fn read_at(&self, node: &Node, offset: u64, len: u64) -> Result<(Node, Vec<u8>)> {
        let node = self.revalidate(node).await?;
        let file = self.open_file(&node)?;
        let len = file.len().saturating_sub(offset).min(len);
        let data = self
            .pages
            .read(node.fid, offset, len, &self.fetcher(&node))
            .await
            .map_err(page_error)?;
        Ok((node, data))
    }

    /// Writes `data` at `offset` of `node` into the cache; [`CacheManager::flush`] stores
    /// it. Returns the revalidated node.
    pub async fn write_at(&self, node: &Node, offset: u64, data: &[u8]) -> Result<Node> {
        let node = self.revalidate(node).await?;
        self.ensure_open(&node)?;
        self.pages
            .write(node.fid, offset, data, &self.fetcher(&node))
            .await
            .map_err(page_error)?;
        Ok(node)
    }

    /// Cuts or extends `node` to `len` bytes in the cache; stored at the next flush.
    pub async fn set_len(&self, node: &Node, len: u64) -> Result<Node> {
        let node = self.revalidate(node).await?;
        self.open_file(&node)?.set_len(len).map_err(page_error)?;
        Ok(node)
    }

    fn fetcher(&self, node: &Node) -> Arc<FsFetcher> {
        Arc::new(FsFetcher {
            client: self.client.clone(),
            node: node.clone(),
        })
    }

    /// Writes `data` at `offset` of the file at `path` into the cache; the server
    /// sees it at [`CacheManager::flush`]. Returns the file's node.
    pub async fn write(&self, path: &str, offset: u64, data: &[u8]) -> Result<Node> {
        let node = self.client.resolve(path).await?;
        if node.status.file_type != FileType::File {
            return Err(Error::local(ErrorKind::IsDirectory, "not a regular file").at(path));
        }
        self.write_at(&node, offset, data)
            .await
            .map_err(|e| e.at(path))
    }

    /// Stores the dirty pages of `node` (coalesced, large StoreData64 calls).
    ///
    /// The file is validated first (no network while its promise holds), so that
    /// another client's change since our writes is found: the flush then fails with
    /// [`ErrorKind::Conflict`] unless `mode` says to overwrite. OpenAFS has no
    /// conditional store, so a change in the instant between that check and the store
    /// is not seen (as with every AFS client).
    pub async fn flush(&self, node: &Node, mode: FlushMode) -> Result<FlushReport> {
        let Some(file) = self.pages.get(node.fid) else {
            return Ok(FlushReport::default());
        };
        if !file.has_unflushed() && !file.has_past_end_writes() {
            return Ok(FlushReport::default());
        }
        let node = self.revalidate(node).await?;
        let fid = node.fid;
        let storer = FsStorer {
            client: self.client.clone(),
            node,
        };
        self.pages
            .flush(fid, &storer, mode)
            .await
            .map_err(page_error)
    }
}

/// Keeps the meaning of an AFS error that caused a page-store failure.
fn page_error(e: PageError) -> Error {
    let source = match &e {
        PageError::Fetch { source, .. } | PageError::Store { source, .. } => {
            source.downcast_ref::<Error>()
        }
        _ => None,
    };
    let kind = match &e {
        PageError::Conflict { .. } => ErrorKind::Conflict,
        PageError::WrittenPastEnd { .. } => ErrorKind::WrittenPastEnd,
        _ => ErrorKind::Other,
    };
    match source {
        Some(inner) => Error::local(inner.kind(), inner.to_string()),
        None => Error::local(kind, e.to_string()),
    }
}
