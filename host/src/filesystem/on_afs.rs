//! The `wasi:filesystem` operations on AFS descriptors: paths resolved beneath the
//! preopen by the client (confined by the preopen's grant), bytes through the cache
//! manager and the page store, directory changes by the fileserver's own calls.
//!
//! Everything that may touch the network runs on the host's AFS runtime ([`run`]):
//! the guest's task awaits it, never blocks its own runtime on it.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use afs::client::{Client, DirEntry, Follow, Node};
use afs::error::ErrorKind;
use afs::path::AfsPath;
use afs::types::{FetchStatus, FileType, StoreStatus};
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;

use super::bindings::wasi::filesystem::types::{
    DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, MetadataHashValue,
    NewTimestamp, OpenFlags, PathFlags,
};
use super::errors::{afs_failure, FsError, FsResult};
use super::paths::{join, Joined};
use super::preopens::AfsPreopen;
use crate::pager::Access;
use crate::runtime::{GrantWalk, Shared};

/// An open AFS file or directory: the node it resolved to, the logical path it was
/// named by (paths relative to it are joined to that), the preopen it descends from.
#[derive(Debug, Clone)]
pub struct AfsDescriptor {
    pub(crate) preopen: Arc<AfsPreopen>,
    pub(crate) path: AfsPath,
    pub(crate) node: Node,
    pub(crate) read: bool,
    pub(crate) write: bool,
}

/// A directory listing: the entries as they were when it was read, sorted by name (a
/// stable order, whatever the directory's hash chains).
pub struct AfsListing {
    pub(crate) entries: std::vec::IntoIter<DirectoryEntry>,
}

/// Runs `op` on the AFS runtime and waits for it without blocking the guest's runtime.
pub(crate) async fn run<T, F>(shared: &Arc<Shared>, op: F) -> FsResult<T>
where
    F: Future<Output = FsResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let op = match crate::afs_runtime::poll_here(shared.afs.handle(), op) {
        Ok(done) => return done,
        Err(pending) => pending,
    };
    match shared.afs.handle().spawn(op).await {
        Ok(r) => r,
        Err(e) => Err(FsError::Trap(wasmtime::Error::msg(format!(
            "the AFS runtime stopped: {e}"
        )))),
    }
}

/// Whether a status is a directory as a guest sees it: a directory, or a mount point
/// (a symlink with no execute bits, which AFS clients show as the directory it mounts).
fn is_dir(st: &FetchStatus) -> bool {
    match st.file_type {
        FileType::Directory => true,
        FileType::Symlink => st.unix_mode_bits & 0o111 == 0,
        _ => false,
    }
}

pub(crate) fn type_of(st: &FetchStatus) -> DescriptorType {
    match st.file_type {
        _ if is_dir(st) => DescriptorType::Directory,
        FileType::Symlink => DescriptorType::SymbolicLink,
        FileType::File => DescriptorType::RegularFile,
        _ => DescriptorType::Unknown,
    }
}

fn datetime(secs: u32) -> Datetime {
    Datetime {
        seconds: u64::from(secs),
        nanoseconds: 0,
    }
}

/// A node's status as WASI shows it. AFS keeps no access time: it is the
/// modification time, as OpenAFS's cache manager reports it; the status-change time is
/// the server's time of the last change.
pub(crate) fn stat_of(node: &Node) -> DescriptorStat {
    let st = &node.status;
    DescriptorStat {
        type_: type_of(st),
        link_count: u64::from(st.link_count),
        size: st.length(),
        data_access_timestamp: Some(datetime(st.client_mod_time)),
        data_modification_timestamp: Some(datetime(st.client_mod_time)),
        status_change_timestamp: Some(datetime(st.server_mod_time)),
    }
}

/// The identity of a file (which wasi-libc makes its inode number): its cell and FID,
/// never its data version, so it does not change when the file does.
pub(crate) fn identity(node: &Node) -> MetadataHashValue {
    let half = |salt: u64| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        node.cell.to_ascii_lowercase().hash(&mut h);
        (node.fid.volume, node.fid.vnode, node.fid.unique).hash(&mut h);
        h.finish()
    };
    MetadataHashValue {
        lower: half(0),
        upper: half(1),
    }
}

/// Resolutions beneath one preopen, confined by its grant.
#[derive(Clone)]
pub(crate) struct Walk {
    client: Arc<Client>,
    preopen: Arc<AfsPreopen>,
}

impl Walk {
    pub(crate) fn new(shared: &Shared, preopen: &Arc<AfsPreopen>) -> Self {
        Walk {
            client: shared.client.clone(),
            preopen: preopen.clone(),
        }
    }

    fn confinement(&self, path: &AfsPath, want: Access) -> GrantWalk {
        GrantWalk::new(
            std::slice::from_ref(&self.preopen.grant),
            path.clone(),
            want,
        )
    }

    async fn resolve(&self, path: &AfsPath, follow: Follow, want: Access) -> FsResult<Node> {
        let named = path.to_string();
        let mut walk = self.confinement(path, want);
        self.client
            .resolve_confined_with(&named, follow, &mut walk)
            .await
            .map_err(|e| afs_failure(&named, &e))
    }

    /// Walks the directories a path passes before its `..`s (each must be one), and
    /// refuses a path that climbs out of the preopen.
    async fn passes(&self, joined: &Joined) -> FsResult<()> {
        for dir in &joined.passes {
            let node = self.resolve(dir, Follow::All, Access::Read).await?;
            if !is_dir(&node.status) {
                return Err(ErrorCode::NotDirectory.into());
            }
        }
        if joined.escapes {
            tracing::debug!(path = %joined.path, "a path leads out of its preopen");
            return Err(ErrorCode::NotPermitted.into());
        }
        Ok(())
    }

    /// The node a joined path names.
    pub(crate) async fn node(
        &self,
        joined: &Joined,
        follow: Follow,
        want: Access,
    ) -> FsResult<Node> {
        self.passes(joined).await?;
        let node = self.resolve(&joined.path, follow, want).await?;
        if joined.wants_dir && !is_dir(&node.status) {
            return Err(ErrorCode::NotDirectory.into());
        }
        Ok(node)
    }

    /// The directory a joined path's last name is in, with that name. The preopen
    /// itself has none within reach: `invalid`, as `rmdir(".")` answers.
    pub(crate) async fn parent(&self, joined: &Joined, want: Access) -> FsResult<(Node, String)> {
        self.passes(joined).await?;
        let root = self.preopen.grant.prefix_path().components.len();
        let (parent, name) = match joined.path.split_last() {
            Some((parent, name)) if joined.path.components.len() > root => (parent, name),
            _ => return Err(ErrorCode::Invalid.into()),
        };
        let name = name.to_string();
        let dir = self.resolve(&parent, Follow::All, want).await?;
        if !is_dir(&dir.status) {
            return Err(ErrorCode::NotDirectory.into());
        }
        Ok((dir, name))
    }
}

impl AfsDescriptor {
    /// The descriptor of a preopen's own directory.
    pub(crate) async fn preopened(
        shared: &Arc<Shared>,
        preopen: Arc<AfsPreopen>,
    ) -> FsResult<Self> {
        let walk = Walk::new(shared, &preopen);
        let path = preopen.grant.prefix_path().clone();
        let node = {
            let path = path.clone();
            run(shared, async move {
                walk.resolve(&path, Follow::All, Access::Read).await
            })
            .await?
        };
        if !is_dir(&node.status) {
            return Err(ErrorCode::NotDirectory.into());
        }
        let write = preopen.writable();
        Ok(AfsDescriptor {
            preopen,
            path,
            node,
            read: true,
            write,
        })
    }

    pub(crate) fn is_dir(&self) -> bool {
        is_dir(&self.node.status)
    }

    /// What the guest's relative `path` names from this directory.
    pub(crate) fn join(&self, path: &str) -> FsResult<Joined> {
        if !self.is_dir() {
            return Err(ErrorCode::NotDirectory.into());
        }
        Ok(join(self.preopen.grant.prefix_path(), &self.path, path)?)
    }

    /// Refuses changes through a read-only preopen, before anything is looked up (as
    /// wasmtime-wasi refuses them for a read-only local directory: `not-permitted`).
    pub(crate) fn may_change(&self) -> FsResult<()> {
        if self.preopen.writable() {
            Ok(())
        } else {
            Err(ErrorCode::NotPermitted.into())
        }
    }

    /// This descriptor as a file (a directory is a bad descriptor for file calls).
    pub(crate) fn file(&self) -> FsResult<()> {
        if self.is_dir() {
            Err(ErrorCode::BadDescriptor.into())
        } else {
            Ok(())
        }
    }

    pub(crate) fn flags(&self) -> DescriptorFlags {
        let mut flags = DescriptorFlags::empty();
        if self.read {
            flags |= DescriptorFlags::READ;
        }
        if self.write {
            flags |= if self.is_dir() {
                DescriptorFlags::MUTATE_DIRECTORY
            } else {
                DescriptorFlags::WRITE
            };
        }
        flags
    }
}

/// How `open-at` was asked to open.
pub(crate) struct OpenRequest {
    pub(crate) follow: Follow,
    pub(crate) create: bool,
    pub(crate) exclusive: bool,
    pub(crate) truncate: bool,
    pub(crate) directory: bool,
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl OpenRequest {
    /// The request, checked as wasmtime-wasi checks it before the kernel sees it.
    pub(crate) fn new(
        path_flags: PathFlags,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Self> {
        let create = oflags.contains(OpenFlags::CREATE);
        let truncate = oflags.contains(OpenFlags::TRUNCATE);
        let directory = oflags.contains(OpenFlags::DIRECTORY);
        let exclusive = oflags.contains(OpenFlags::EXCLUSIVE);
        if flags.intersects(
            DescriptorFlags::FILE_INTEGRITY_SYNC
                | DescriptorFlags::DATA_INTEGRITY_SYNC
                | DescriptorFlags::REQUESTED_WRITE_SYNC,
        ) {
            return Err(ErrorCode::Unsupported.into());
        }
        if directory && (create || exclusive || truncate) {
            return Err(ErrorCode::Invalid.into());
        }
        let write = create || truncate || flags.contains(DescriptorFlags::WRITE);
        Ok(OpenRequest {
            follow: if path_flags.contains(PathFlags::SYMLINK_FOLLOW) {
                Follow::All
            } else {
                Follow::NotLast
            },
            create,
            exclusive,
            truncate,
            directory,
            read: flags.contains(DescriptorFlags::READ) || !write,
            write,
        })
    }
}

/// `open-at`: the node opened (created, truncated as asked).
pub(crate) async fn open_at(
    shared: &Arc<Shared>,
    dir: &AfsDescriptor,
    path: &str,
    req: OpenRequest,
) -> FsResult<AfsDescriptor> {
    let joined = dir.join(path)?;
    if req.write {
        dir.may_change()?;
    }
    let walk = Walk::new(shared, &dir.preopen);
    let cache = shared.cache.clone();
    let want = if req.write {
        Access::ReadWrite
    } else {
        Access::Read
    };
    let (node, joined) = run(shared, async move {
        let node = if req.create {
            let (parent, name) = walk.parent(&joined, Access::ReadWrite).await?;
            let what = joined.path.to_string();
            match walk.client.lookup(&parent, &name).await {
                Err(e) => return Err(afs_failure(&what, &e)),
                Ok(Some(_)) if req.exclusive => return Err(ErrorCode::Exist.into()),
                Ok(Some(_)) => walk.node(&joined, req.follow, want).await?,
                Ok(None) if joined.wants_dir => return Err(ErrorCode::IsDirectory.into()),
                Ok(None) => match walk.client.create_in(&parent, &name, 0o644).await {
                    Ok(node) => node,
                    // Made meanwhile by another client.
                    Err(e) if e.kind() == ErrorKind::Exists && !req.exclusive => {
                        walk.node(&joined, req.follow, want).await?
                    }
                    Err(e) => return Err(afs_failure(&what, &e)),
                },
            }
        } else {
            walk.node(&joined, req.follow, want).await?
        };
        if node.status.file_type == FileType::Symlink && !is_dir(&node.status) {
            // O_NOFOLLOW on a symlink.
            return Err(ErrorCode::Loop.into());
        }
        let dir = is_dir(&node.status);
        if req.directory && !dir {
            return Err(ErrorCode::NotDirectory.into());
        }
        if dir && req.write {
            return Err(ErrorCode::IsDirectory.into());
        }
        let node = if req.truncate {
            let what = joined.path.to_string();
            cache
                .set_len(&node, 0)
                .await
                .map_err(|e| afs_failure(&what, &e))?
        } else {
            node
        };
        Ok((node, joined))
    })
    .await?;
    Ok(AfsDescriptor {
        preopen: dir.preopen.clone(),
        path: joined.path,
        node,
        read: req.read,
        write: req.write,
    })
}

/// The current status of a descriptor's node (revalidated: no network while its
/// promise holds).
pub(crate) async fn fresh(shared: &Arc<Shared>, d: &AfsDescriptor) -> FsResult<Node> {
    let cache = shared.cache.clone();
    let node = d.node.clone();
    let what = d.path.to_string();
    run(shared, async move {
        cache
            .revalidate(&node)
            .await
            .map_err(|e| afs_failure(&what, &e))
    })
    .await
}

/// The node a path names from a directory descriptor (for stat-at and the like).
pub(crate) async fn node_at(
    shared: &Arc<Shared>,
    dir: &AfsDescriptor,
    path: &str,
    follow: Follow,
) -> FsResult<Node> {
    let joined = dir.join(path)?;
    let walk = Walk::new(shared, &dir.preopen);
    run(shared, async move {
        walk.node(&joined, follow, Access::Read).await
    })
    .await
}

/// A directory's entries, sorted, with their types.
pub(crate) async fn list(shared: &Arc<Shared>, d: &AfsDescriptor) -> FsResult<AfsListing> {
    let node = fresh(shared, d).await?;
    let client = shared.client.clone();
    let what = d.path.to_string();
    let entries: Vec<DirEntry> = run(shared, async move {
        client
            .list_node(&node)
            .await
            .map_err(|e| afs_failure(&what, &e))
    })
    .await?;
    let entries: Vec<DirectoryEntry> = entries
        .into_iter()
        .map(|e| DirectoryEntry {
            type_: e.status.as_ref().map_or(DescriptorType::Unknown, type_of),
            name: e.name,
        })
        .collect();
    Ok(AfsListing {
        entries: entries.into_iter(),
    })
}

/// The modification time `set-times` asks for (None: leave it).
pub(crate) fn mod_time(mtime: &NewTimestamp) -> FsResult<Option<u32>> {
    let secs = match mtime {
        NewTimestamp::NoChange => return Ok(None),
        NewTimestamp::Now => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        NewTimestamp::Timestamp(t) => t.seconds,
    };
    u32::try_from(secs)
        .map(Some)
        .map_err(|_| ErrorCode::Overflow.into())
}

/// Sets a node's modification time. AFS keeps no access time to set.
pub(crate) async fn set_mod_time(shared: &Arc<Shared>, node: Node, secs: u32) -> FsResult<Node> {
    let client = shared.client.clone();
    run(shared, async move {
        let what = node.fid.to_string();
        client
            .store_status(&node, &StoreStatus::new().with_mod_time(secs))
            .await
            .map_err(|e| afs_failure(&what, &e))
    })
    .await
}

/// A change to a directory's entries, in the directory a path names (parent, name).
pub(crate) async fn in_parent<T, F, Fut>(
    shared: &Arc<Shared>,
    dir: &AfsDescriptor,
    path: &str,
    op: F,
) -> FsResult<T>
where
    F: FnOnce(Arc<Client>, Node, String) -> Fut + Send + 'static,
    Fut: Future<Output = FsResult<T>> + Send + 'static,
    T: Send + 'static,
{
    dir.may_change()?;
    let joined = dir.join(path)?;
    let walk = Walk::new(shared, &dir.preopen);
    run(shared, async move {
        let (parent, name) = walk.parent(&joined, Access::ReadWrite).await?;
        op(walk.client.clone(), parent, name).await
    })
    .await
}

/// An AFS failure of a directory change, as its code.
pub(crate) fn failed(what: &str) -> impl Fn(afs::rpc::Error) -> FsError + '_ {
    move |e| afs_failure(what, &e)
}
