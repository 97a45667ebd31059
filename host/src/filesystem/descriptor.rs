//! The `wasi:filesystem` host: each call goes to the AFS implementation
//! ([`super::on_afs`]) or, for a local directory's descriptors, to wasmtime-wasi's own
//! implementation with the same arguments.

use std::sync::Arc;

use afs::client::Follow;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    HostDescriptor as WasiDescriptor, HostDirectoryEntryStream as WasiDirectoryEntryStream,
};
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

use super::bindings::wasi::filesystem::types::{
    self as t, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode,
    Filesize, MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};
use super::convert::{ours, theirs};
use super::errors::{FsError, FsResult};
use super::on_afs::{self, failed, AfsDescriptor, OpenRequest};
use super::streams::{AfsReader, AfsWriter, WriteAt};
use super::{Descriptor, DirectoryStream};
use crate::runtime::GuestState;

type WasiFd = wasmtime_wasi::filesystem::Descriptor;

/// Hands a call on to wasmtime-wasi's implementation, for a local descriptor.
macro_rules! local {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        WasiDescriptor::$method(&mut $self.local(), $($arg),*)
            .await
            .map_err(local_error)
    };
}

/// A descriptor as a call needs it: a borrow of the wasmtime-wasi descriptor, or a
/// copy of ours.
enum Target {
    Local(Resource<WasiFd>),
    Afs(Arc<AfsDescriptor>),
}

pub(super) fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

/// wasmtime-wasi's error, as ours.
fn local_error(e: wasmtime_wasi::p2::FsError) -> FsError {
    match e.downcast() {
        Ok(code) => FsError::Code(ours(code)),
        Err(trap) => FsError::Trap(trap),
    }
}

/// `follow` from a call's path flags.
fn follow(flags: PathFlags) -> Follow {
    if flags.contains(PathFlags::SYMLINK_FOLLOW) {
        Follow::All
    } else {
        Follow::NotLast
    }
}

impl GuestState {
    fn target(&self, fd: &Resource<Descriptor>) -> FsResult<Target> {
        Ok(match self.table.get(fd)? {
            Descriptor::Local(r) => Target::Local(borrow(r)),
            Descriptor::Afs(d) => Target::Afs(d.clone()),
        })
    }

    /// wasmtime-wasi's filesystem, on our table.
    pub(super) fn local(&mut self) -> WasiFilesystemCtxView<'_> {
        WasiFilesystemCtxView {
            ctx: self.wasi.filesystem(),
            table: &mut self.table,
        }
    }

    /// Two directory descriptors of one call: both AFS, both local, or (an error) one
    /// of each, which no rename or link can join.
    fn pair(
        &self,
        a: &Resource<Descriptor>,
        b: &Resource<Descriptor>,
    ) -> FsResult<(Target, Target)> {
        match (self.target(a)?, self.target(b)?) {
            (Target::Afs(_), Target::Local(_)) | (Target::Local(_), Target::Afs(_)) => {
                Err(ErrorCode::CrossDevice.into())
            }
            pair => Ok(pair),
        }
    }

    /// Remembers that the guest may have written `d`'s file: closing the descriptor
    /// (or exiting) stores it.
    fn note_afs_written(&mut self, d: &AfsDescriptor) {
        self.afs.note_written(|| d.path.to_string(), &d.node);
    }

    /// Stores what was written to `d`'s file now (sync): the pager stores pages
    /// dirtied through mappings too.
    fn store_now(&mut self, d: &AfsDescriptor) -> FsResult<()> {
        if d.is_dir() || !d.write {
            return Ok(());
        }
        let path = d.path.to_string();
        match self.afs.host.pager.sync_file(
            &self.afs.host.cache,
            &d.node,
            afs::cache::pages::FlushMode::Normal,
        ) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(%path, error = %e, "sync failed");
                Err(super::errors::code_of(e.kind()).into())
            }
        }
    }

    /// A node's status for the guest; its length from the page store, which has what
    /// was written and not yet stored.
    fn stat_of(&self, node: &afs::client::Node) -> DescriptorStat {
        let mut stat = on_afs::stat_of(node);
        if let Some(file) = self.afs.host.cache.pages().get(node.fid) {
            stat.size = file.len();
        }
        stat
    }

    async fn set_times_afs(&mut self, d: &AfsDescriptor, mtime: NewTimestamp) -> FsResult<()> {
        d.may_change()?;
        let Some(secs) = on_afs::mod_time(&mtime)? else {
            return Ok(());
        };
        // Unstored writes first: their store would set the time again.
        self.store_now(d)?;
        let node = on_afs::fresh(&self.afs.host, d).await?;
        on_afs::set_mod_time(&self.afs.host, node, secs).await?;
        Ok(())
    }
}

impl t::HostDescriptor for GuestState {
    async fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        match self.target(&fd)? {
            Target::Local(r) => {
                WasiDescriptor::read_via_stream(&mut self.local(), r, offset).map_err(local_error)
            }
            Target::Afs(d) => {
                if d.is_dir() {
                    return Err(ErrorCode::IsDirectory.into());
                }
                let host = &self.afs.host;
                let reader: DynInputStream = Box::new(AfsReader::new(
                    host.cache.clone(),
                    host.afs.handle().clone(),
                    d.node.clone(),
                    offset,
                    d.read,
                ));
                Ok(self.table.push(reader)?)
            }
        }
    }

    async fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.writer(fd, WriteAt::Offset(offset))
    }

    async fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.writer(fd, WriteAt::End)
    }

    async fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
        length: Filesize,
        advice: Advice,
    ) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => {
                local!(self.advise(r, offset, length, theirs(advice)))
            }
            Target::Afs(d) => d.file(),
        }
    }

    async fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.sync_data(r)),
            Target::Afs(d) => self.store_now(&d),
        }
    }

    async fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.sync(r)),
            Target::Afs(d) => self.store_now(&d),
        }
    }

    async fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.get_flags(r)).map(ours),
            Target::Afs(d) => Ok(d.flags()),
        }
    }

    async fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.get_type(r)).map(ours),
            Target::Afs(d) => Ok(on_afs::type_of(&d.node.status)),
        }
    }

    async fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.set_size(r, size)),
            Target::Afs(d) => {
                d.file()?;
                d.may_change()?;
                if !d.write {
                    // ftruncate(2) of a descriptor not open for writing.
                    return Err(ErrorCode::Invalid.into());
                }
                self.note_afs_written(&d);
                let cache = self.afs.host.cache.clone();
                let what = d.path.to_string();
                let node = d.node.clone();
                on_afs::run(&self.afs.host, async move {
                    cache.set_len(&node, size).await.map_err(failed(&what))
                })
                .await?;
                Ok(())
            }
        }
    }

    async fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atime: NewTimestamp,
        mtime: NewTimestamp,
    ) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => {
                local!(self.set_times(r, theirs(atime), theirs(mtime)))
            }
            Target::Afs(d) => self.set_times_afs(&d, mtime).await,
        }
    }

    async fn read(
        &mut self,
        fd: Resource<Descriptor>,
        length: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.read(r, length, offset)),
            Target::Afs(d) => {
                d.file()?;
                if !d.read {
                    return Err(ErrorCode::BadDescriptor.into());
                }
                let length = length.min(self.limiter.limits.max_copy_bytes);
                let cache = self.afs.host.cache.clone();
                let what = d.path.to_string();
                let node = d.node.clone();
                let data = on_afs::run(&self.afs.host, async move {
                    let (_, data) = cache
                        .read_at(&node, offset, length)
                        .await
                        .map_err(failed(&what))?;
                    Ok(data)
                })
                .await?;
                let end = data.is_empty() && length > 0;
                Ok((data, end))
            }
        }
    }

    async fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buffer: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.write(r, buffer, offset)),
            Target::Afs(d) => {
                d.file()?;
                d.may_change()?;
                if !d.write {
                    return Err(ErrorCode::BadDescriptor.into());
                }
                self.note_afs_written(&d);
                let n = buffer.len() as u64;
                let cache = self.afs.host.cache.clone();
                let what = d.path.to_string();
                let node = d.node.clone();
                on_afs::run(&self.afs.host, async move {
                    cache
                        .write_at(&node, offset, &buffer)
                        .await
                        .map_err(failed(&what))
                })
                .await?;
                Ok(n)
            }
        }
    }

    async fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DirectoryStream>> {
        let stream = match self.target(&fd)? {
            Target::Local(r) => DirectoryStream::Local(local!(self.read_directory(r))?),
            Target::Afs(d) => {
                if !d.is_dir() {
                    return Err(ErrorCode::NotDirectory.into());
                }
                DirectoryStream::Afs(on_afs::list(&self.afs.host, &d).await?)
            }
        };
        Ok(self.table.push(stream)?)
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.create_directory_at(r, path)),
            Target::Afs(d) => {
                on_afs::in_parent(&self.afs.host, &d, &path, |client, dir, name| async move {
                    client
                        .make_dir_in(&dir, &name, 0o755)
                        .await
                        .map_err(failed(&name))?;
                    Ok(())
                })
                .await
                // mkdir of the preopen itself, or of `..` within it: it exists.
                .map_err(|e| match e {
                    FsError::Code(ErrorCode::Invalid) => ErrorCode::Exist.into(),
                    e => e,
                })
            }
        }
    }

    async fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.stat(r)).map(ours),
            Target::Afs(d) => {
                let node = on_afs::fresh(&self.afs.host, &d).await?;
                Ok(self.stat_of(&node))
            }
        }
    }

    async fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.stat_at(r, theirs(path_flags), path)).map(ours),
            Target::Afs(d) => {
                let node = on_afs::node_at(&self.afs.host, &d, &path, follow(path_flags)).await?;
                Ok(self.stat_of(&node))
            }
        }
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        atime: NewTimestamp,
        mtime: NewTimestamp,
    ) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => {
                local!(self.set_times_at(r, theirs(path_flags), path, theirs(atime), theirs(mtime)))
            }
            Target::Afs(d) => {
                d.may_change()?;
                let Some(secs) = on_afs::mod_time(&mtime)? else {
                    return Ok(());
                };
                let node = on_afs::node_at(&self.afs.host, &d, &path, follow(path_flags)).await?;
                on_afs::set_mod_time(&self.afs.host, node, secs).await?;
                Ok(())
            }
        }
    }

    async fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path_flags: PathFlags,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        match self.pair(&fd, &new_fd)? {
            (Target::Local(a), Target::Local(b)) => {
                local!(self.link_at(a, theirs(old_path_flags), old_path, b, new_path))
            }
            (Target::Afs(a), Target::Afs(b)) => {
                a.may_change()?;
                b.may_change()?;
                if old_path_flags.contains(PathFlags::SYMLINK_FOLLOW) {
                    return Err(ErrorCode::Invalid.into());
                }
                let old = on_afs::node_at(&self.afs.host, &a, &old_path, Follow::NotLast).await?;
                if old.status.file_type == afs::types::FileType::Directory {
                    return Err(ErrorCode::NotPermitted.into());
                }
                on_afs::in_parent(
                    &self.afs.host,
                    &b,
                    &new_path,
                    move |client, dir, name| async move {
                        client
                            .link_in(&dir, &name, old.fid)
                            .await
                            .map_err(failed(&name))
                    },
                )
                .await
            }
            _ => unreachable!("pair refuses mixed descriptors"),
        }
    }

    async fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let opened = match self.target(&fd)? {
            Target::Local(r) => Descriptor::Local(local!(self.open_at(
                r,
                theirs(path_flags),
                path,
                theirs(oflags),
                theirs(flags)
            ))?),
            Target::Afs(d) => {
                let req = OpenRequest::new(path_flags, oflags, flags)?;
                let truncated = req.truncate;
                let opened = on_afs::open_at(&self.afs.host, &d, &path, req).await?;
                tracing::debug!(path = %opened.path, fid = %opened.node.fid, "open");
                if truncated {
                    self.note_afs_written(&opened);
                }
                Descriptor::Afs(Arc::new(opened))
            }
        };
        Ok(self.table.push(opened)?)
    }

    async fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.readlink_at(r, path)),
            Target::Afs(d) => {
                let node = on_afs::node_at(&self.afs.host, &d, &path, Follow::NotLast).await?;
                let client = self.afs.host.client.clone();
                let text = on_afs::run(&self.afs.host, async move {
                    client.read_link(&node).await.map_err(failed(&path))
                })
                .await?;
                // As cap-std, which will not hand out a way out of the directory.
                if text.starts_with('/') {
                    return Err(ErrorCode::NotPermitted.into());
                }
                Ok(text)
            }
        }
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.remove_directory_at(r, path)),
            Target::Afs(d) => {
                on_afs::in_parent(&self.afs.host, &d, &path, |client, dir, name| async move {
                    let child = client.child(&dir, &name).await.map_err(failed(&name))?;
                    match child {
                        None => Err(ErrorCode::NoEntry.into()),
                        Some(c) if c.status.file_type != afs::types::FileType::Directory => {
                            Err(ErrorCode::NotDirectory.into())
                        }
                        Some(_) => client
                            .remove_dir_in(&dir, &name)
                            .await
                            .map_err(failed(&name)),
                    }
                })
                .await
            }
        }
    }

    async fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        match self.pair(&fd, &new_fd)? {
            (Target::Local(a), Target::Local(b)) => {
                local!(self.rename_at(a, old_path, b, new_path))
            }
            (Target::Afs(a), Target::Afs(b)) => {
                b.may_change()?;
                a.may_change()?;
                let (from, to) = (a.join(&old_path)?.path, b.join(&new_path)?.path);
                if from == to {
                    // rename(2) of a name to itself does nothing, if the name exists.
                    on_afs::node_at(&self.afs.host, &a, &old_path, Follow::NotLast).await?;
                    return Ok(());
                }
                if to.cell == from.cell
                    && to.components.len() > from.components.len()
                    && to.components.starts_with(&from.components)
                {
                    // A directory into itself.
                    return Err(ErrorCode::Invalid.into());
                }
                let host = self.afs.host.clone();
                let new_dir = on_afs::in_parent(&host, &b, &new_path, |_, dir, name| async move {
                    Ok((dir, name))
                })
                .await?;
                on_afs::in_parent(&host, &a, &old_path, move |client, dir, name| async move {
                    let (new_dir, new_name) = new_dir;
                    client
                        .rename_in(&dir, &name, &new_dir, &new_name)
                        .await
                        .map_err(failed(&name))
                })
                .await
            }
            _ => unreachable!("pair refuses mixed descriptors"),
        }
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_path: String,
    ) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => {
                local!(self.symlink_at(r, old_path, new_path))
            }
            Target::Afs(d) => {
                // As cap-std: no link whose text leads out from the root.
                if old_path.starts_with('/') {
                    d.may_change()?;
                    return Err(ErrorCode::NotPermitted.into());
                }
                on_afs::in_parent(
                    &self.afs.host,
                    &d,
                    &new_path,
                    |client, dir, name| async move {
                        // Execute bits: a symlink without them is a mount point to AFS.
                        client
                            .symlink_in(&dir, &name, &old_path, 0o755)
                            .await
                            .map_err(failed(&name))?;
                        Ok(())
                    },
                )
                .await
            }
        }
    }

    async fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.unlink_file_at(r, path)),
            Target::Afs(d) => {
                on_afs::in_parent(&self.afs.host, &d, &path, |client, dir, name| async move {
                    let child = client.child(&dir, &name).await.map_err(failed(&name))?;
                    match child {
                        None => Err(ErrorCode::NoEntry.into()),
                        Some(c) if c.status.file_type == afs::types::FileType::Directory => {
                            Err(ErrorCode::IsDirectory.into())
                        }
                        Some(_) => client.remove_in(&dir, &name).await.map_err(failed(&name)),
                    }
                })
                .await
            }
        }
    }

    async fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        let pair = (
            self.target(&a).map_err(trap)?,
            self.target(&b).map_err(trap)?,
        );
        match pair {
            (Target::Local(a), Target::Local(b)) => {
                WasiDescriptor::is_same_object(&mut self.local(), a, b).await
            }
            (Target::Afs(a), Target::Afs(b)) => {
                Ok(a.node.fid == b.node.fid && a.node.cell.eq_ignore_ascii_case(&b.node.cell))
            }
            _ => Ok(false),
        }
    }

    async fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        match self.target(&fd)? {
            Target::Local(r) => local!(self.metadata_hash(r)).map(ours),
            Target::Afs(d) => Ok(on_afs::identity(&d.node)),
        }
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        match self.target(&fd)? {
            Target::Local(r) => {
                local!(self.metadata_hash_at(r, theirs(path_flags), path)).map(ours)
            }
            Target::Afs(d) => {
                let node = on_afs::node_at(&self.afs.host, &d, &path, follow(path_flags)).await?;
                Ok(on_afs::identity(&node))
            }
        }
    }

    /// Store-on-close, as AFS clients do at close(2): a failure is reported at exit.
    async fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        match self.table.delete(fd)? {
            Descriptor::Local(r) => WasiDescriptor::drop(&mut self.local(), r),
            Descriptor::Afs(d) => {
                if let Some((path, node)) = self.afs.written.remove(&d.node.fid) {
                    self.afs.store_on_close(&path, &node);
                }
                Ok(())
            }
        }
    }
}

impl GuestState {
    fn writer(
        &mut self,
        fd: Resource<Descriptor>,
        at: WriteAt,
    ) -> FsResult<Resource<DynOutputStream>> {
        match self.target(&fd)? {
            Target::Local(r) => match at {
                WriteAt::Offset(o) => WasiDescriptor::write_via_stream(&mut self.local(), r, o),
                WriteAt::End => WasiDescriptor::append_via_stream(&mut self.local(), r),
            }
            .map_err(local_error),
            Target::Afs(d) => {
                d.file()?;
                d.may_change()?;
                if d.write {
                    self.note_afs_written(&d);
                }
                let host = &self.afs.host;
                let writer: DynOutputStream = Box::new(AfsWriter::new(
                    host.cache.clone(),
                    host.afs.handle().clone(),
                    d.node.clone(),
                    at,
                    d.write,
                ));
                Ok(self.table.push(writer)?)
            }
        }
    }
}

fn trap(e: FsError) -> wasmtime::Error {
    match e {
        FsError::Trap(e) => e,
        FsError::Code(code) => wasmtime::Error::msg(format!("{code:?}")),
    }
}

impl t::HostDirectoryEntryStream for GuestState {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<DirectoryStream>,
    ) -> FsResult<Option<DirectoryEntry>> {
        let local = match self.table.get_mut(&stream)? {
            DirectoryStream::Afs(listing) => return Ok(listing.entries.next()),
            DirectoryStream::Local(r) => borrow(r),
        };
        WasiDirectoryEntryStream::read_directory_entry(&mut self.local(), local)
            .await
            .map(|e| e.map(ours))
            .map_err(local_error)
    }

    async fn drop(&mut self, stream: Resource<DirectoryStream>) -> wasmtime::Result<()> {
        match self.table.delete(stream)? {
            DirectoryStream::Afs(_) => Ok(()),
            DirectoryStream::Local(r) => WasiDirectoryEntryStream::drop(&mut self.local(), r),
        }
    }
}
