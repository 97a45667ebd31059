//! The `afs:client/files` imports: open by path (grants checked), status, copies in and
//! out through the shared page store, sync through the pager, change waiting.
//!
//! Every call that may touch the network runs on the AFS runtime through
//! [`AfsRuntime::block_on`](crate::afs_runtime::AfsRuntime::block_on), never on the
//! runtime (if any) the guest itself runs on.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use afs::cache::manager::CacheManager;
use afs::cache::pages::FlushMode;
use afs::client::Node;
use afs::types::VolumeType;
use tokio::sync::broadcast::error::RecvError;
use wasmtime::component::Resource;

use super::bindings::afs::client::files::{
    Access, Error, ErrorCode, FileType, Host, HostFile, Stat,
};
use super::errors::{afs_error, gone, pager_error, wit_error, Stage};
use super::grants::{granted, normalize, GrantWalk};
use super::guest::GuestState;

/// How often `wait-for-change` looks at the file's status without a break: changes made
/// through this host (other guests' syncs) bring no callback break.
const WAIT_RECHECK: Duration = Duration::from_millis(250);

/// An open file: the path the guest named (normalized), how it opened it, and the node
/// it resolved to then. Like a Unix descriptor, it keeps naming that file if the path
/// later leads elsewhere.
pub struct FileRes {
    pub(crate) path: String,
    pub(crate) access: Access,
    pub(crate) node: Node,
}

type AfsResult<T> = Result<T, afs::rpc::Error>;

fn stat_of(node: &Node) -> Stat {
    let st = &node.status;
    Stat {
        file_type: match st.file_type {
            afs::types::FileType::Directory => FileType::Directory,
            afs::types::FileType::Symlink => FileType::Symlink,
            _ => FileType::File,
        },
        length: st.length(),
        data_version: st.data_version(),
        mode: st.unix_mode_bits & 0o7777,
        modify_time: u64::from(st.client_mod_time),
        server_modify_time: u64::from(st.server_mod_time),
    }
}

impl GuestState {
    /// Runs `op` on the AFS runtime with the cache manager and a copy of the file's
    /// node; stores the node it returns (fresher status) back into the file.
    fn on_file<T, F, Fut>(
        &mut self,
        file: &Resource<FileRes>,
        op: F,
    ) -> wasmtime::Result<Result<T, Error>>
    where
        F: FnOnce(Arc<CacheManager>, Node) -> Fut,
        Fut: Future<Output = AfsResult<(Node, T)>> + Send + 'static,
        T: Send + 'static,
    {
        let f = self.table.get(file)?;
        let path = f.path.clone();
        let fut = op(self.afs.host.cache.clone(), f.node.clone());
        let result = match self.afs.host.afs.block_on(fut) {
            Err(g) => return Ok(Err(gone(&path, g))),
            Ok(r) => r,
        };
        Ok(match result {
            Ok((node, value)) => {
                self.table.get_mut(file)?.node = node;
                Ok(value)
            }
            Err(e) => Err(afs_error(&path, &e, Stage::OpenFile)),
        })
    }

    /// The file, if it may be written: opened read-write, and a regular file.
    fn writable(&self, file: &Resource<FileRes>) -> wasmtime::Result<Result<(), Error>> {
        let f = self.table.get(file)?;
        Ok(if f.access != Access::ReadWrite {
            Err(wit_error(
                ErrorCode::ReadOnly,
                format!("{}: opened read-only", f.path),
            ))
        } else {
            regular(f)
        })
    }

    /// `sync` and `sync-overwrite`.
    fn sync_file(
        &mut self,
        file: Resource<FileRes>,
        mode: FlushMode,
    ) -> wasmtime::Result<Result<(), Error>> {
        let f = self.table.get(&file)?;
        if f.access != Access::ReadWrite || f.node.status.file_type != afs::types::FileType::File {
            // Nothing this guest can have written.
            return Ok(Ok(()));
        }
        // The pager blocks on the AFS runtime itself; it also stores pages dirtied
        // through mappings, which the page store alone cannot see.
        Ok(
            match self
                .afs
                .host
                .pager
                .sync_file(&self.afs.host.cache, &f.node, mode)
            {
                Ok(report) => {
                    tracing::debug!(path = %f.path, ?report, "sync");
                    Ok(())
                }
                Err(e) => Err(pager_error(&f.path, &e)),
            },
        )
    }

    /// Remembers that the guest wrote the file, so that closing it or exiting stores it.
    fn note_written(&mut self, file: &Resource<FileRes>) -> wasmtime::Result<()> {
        let f = self.table.get(file)?;
        self.afs.note_written(|| f.path.clone(), &f.node);
        Ok(())
    }

    /// The error for a copy past the guest's limit.
    fn copy_limit(&self, file: &Resource<FileRes>, asked: u64) -> wasmtime::Result<Error> {
        let max = self.limiter.limits.max_copy_bytes;
        Ok(wit_error(
            ErrorCode::LimitExceeded,
            format!(
                "{}: {asked} bytes in one copy is past this guest's limit of {max} bytes \
                 (--max-copy-bytes)",
                self.table.get(file)?.path
            ),
        ))
    }
}

fn regular(f: &FileRes) -> Result<(), Error> {
    if f.node.status.file_type == afs::types::FileType::Directory {
        return Err(wit_error(
            ErrorCode::IsDirectory,
            format!("{}: is a directory", f.path),
        ));
    }
    Ok(())
}

impl Host for GuestState {}

impl HostFile for GuestState {
    fn open(
        &mut self,
        path: String,
        access: Access,
    ) -> wasmtime::Result<Result<Resource<FileRes>, Error>> {
        let host = self.afs.host.clone();
        let parsed = match normalize(&path, host.default_cell.as_deref()) {
            Ok(p) => p,
            Err(e) => return Ok(Err(wit_error(ErrorCode::InvalidArgument, e.0))),
        };
        let abs = parsed.to_string();
        // The path as named must be granted; then every step of its resolution, and
        // the object it reaches (with the access asked for), must be too.
        if granted(&self.afs.grants, &parsed).is_none() {
            return Ok(Err(wit_error(
                ErrorCode::AccessDenied,
                format!("{abs}: not granted to this guest"),
            )));
        }
        let mut walk = GrantWalk::new(&self.afs.grants, parsed, access.into());
        let client = host.client.clone();
        let target = abs.clone();
        let node = match host
            .afs
            .block_on(async move { client.resolve_confined(&target, &mut walk).await })
        {
            Err(g) => return Ok(Err(gone(&abs, g))),
            Ok(Err(e)) => return Ok(Err(afs_error(&abs, &e, Stage::Open))),
            Ok(Ok(node)) => node,
        };
        if access == Access::ReadWrite && node.volume_type != VolumeType::ReadWrite {
            return Ok(Err(wit_error(
                ErrorCode::ReadOnly,
                format!("{abs}: on a read-only volume ({:?})", node.volume_type),
            )));
        }
        tracing::debug!(path = %abs, ?access, fid = ?node.fid, "open");
        let res = self.table.push(FileRes {
            path: abs,
            access,
            node,
        })?;
        Ok(Ok(res))
    }

    fn path(&mut self, file: Resource<FileRes>) -> wasmtime::Result<String> {
        Ok(self.table.get(&file)?.path.clone())
    }

    fn stat(&mut self, file: Resource<FileRes>) -> wasmtime::Result<Result<Stat, Error>> {
        self.on_file(&file, |cache, node| async move {
            let node = cache.revalidate(&node).await?;
            let stat = stat_of(&node);
            Ok((node, stat))
        })
    }

    fn read(
        &mut self,
        file: Resource<FileRes>,
        offset: u64,
        length: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        let f = self.table.get(&file)?;
        if let Err(e) = regular(f) {
            return Ok(Err(e));
        }
        if length > self.limiter.limits.max_copy_bytes {
            return Ok(Err(self.copy_limit(&file, length)?));
        }
        self.on_file(&file, move |cache, node| async move {
            cache.read_at(&node, offset, length).await
        })
    }

    fn write(
        &mut self,
        file: Resource<FileRes>,
        offset: u64,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        if let Err(e) = self.writable(&file)? {
            return Ok(Err(e));
        }
        if data.len() as u64 > self.limiter.limits.max_copy_bytes {
            return Ok(Err(self.copy_limit(&file, data.len() as u64)?));
        }
        self.note_written(&file)?;
        self.on_file(&file, move |cache, node| async move {
            let node = cache.write_at(&node, offset, &data).await?;
            Ok((node, data.len() as u64))
        })
    }

    fn set_length(
        &mut self,
        file: Resource<FileRes>,
        length: u64,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(e) = self.writable(&file)? {
            return Ok(Err(e));
        }
        self.note_written(&file)?;
        self.on_file(&file, move |cache, node| async move {
            Ok((cache.set_len(&node, length).await?, ()))
        })
    }

    fn sync(&mut self, file: Resource<FileRes>) -> wasmtime::Result<Result<(), Error>> {
        self.sync_file(file, FlushMode::Normal)
    }

    fn sync_overwrite(&mut self, file: Resource<FileRes>) -> wasmtime::Result<Result<(), Error>> {
        self.sync_file(file, FlushMode::Overwrite)
    }

    fn wait_for_change(
        &mut self,
        file: Resource<FileRes>,
        since: u64,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Option<u64>, Error>> {
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        self.on_file(&file, move |cache, node| async move {
            wait_for_change(cache, node, since, deadline).await
        })
    }

    /// Store-on-close, as AFS clients do at close(2): a failure is reported at exit
    /// (the guest has no way to hear it here).
    fn drop(&mut self, file: Resource<FileRes>) -> wasmtime::Result<()> {
        let f = self.table.delete(file)?;
        if let Some((path, node)) = self.afs.written.remove(&f.node.fid) {
            self.afs.store_on_close(&path, &node);
        }
        Ok(())
    }
}

/// Revalidates the file each time the server revokes its promise (and every
/// [`WAIT_RECHECK`], for changes made through this very host), until its data version
/// is not `since` or `deadline` passes.
async fn wait_for_change(
    cache: Arc<CacheManager>,
    mut node: Node,
    since: u64,
    deadline: Instant,
) -> AfsResult<(Node, Option<u64>)> {
    // Subscribe before looking, so that a break between the look and the wait counts.
    let mut lost = cache.client().subscribe_lost();
    loop {
        node = cache.revalidate(&node).await?;
        let dv = node.status.data_version();
        if dv != since {
            return Ok((node, Some(dv)));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok((node, None));
        }
        let wake = deadline.min(now + WAIT_RECHECK);
        loop {
            match tokio::time::timeout_at(wake.into(), lost.recv()).await {
                Err(_elapsed) => break,
                Ok(Ok(ev)) if ev.files.iter().any(|(fid, _)| *fid == node.fid) => break,
                Ok(Ok(_)) => {}
                Ok(Err(RecvError::Lagged(_))) => break,
                Ok(Err(RecvError::Closed)) => {
                    // No more events (client shutting down): fall back to the timer.
                    tokio::time::sleep_until(wake.into()).await;
                    break;
                }
            }
        }
    }
}
