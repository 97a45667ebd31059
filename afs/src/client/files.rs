//! File operations on paths: list, read, write, create, remove.

use super::*;

impl Client {
    /// Lists a directory with the status of each entry (InlineBulkStatus, 50 at a time).
    pub async fn list(&self, path: &str) -> Result<Vec<DirEntry>> {
        let dir = self.resolve(path).await?;
        self.list_node(&dir).await.map_err(|e| e.at(path))
    }

    /// The entries of the directory `dir` but `.` and `..`, sorted by name, each with
    /// its status: from the validity table while its promise holds, else from
    /// InlineBulkStatus (50 at a time), whose promises are recorded.
    pub async fn list_node(&self, dir: &Node) -> Result<Vec<DirEntry>> {
        let entries = self.read_dir(dir).await?;
        let mut out: Vec<DirEntry> = entries
            .entries()
            .filter(|e| !e.is_dot_or_dotdot())
            .map(|e| {
                let fid = e.fid(dir.fid.volume);
                DirEntry {
                    name: e.name_str().into_owned(),
                    fid,
                    status: self.cached_node(&dir.cell, fid).map(|n| n.status),
                }
            })
            .collect();
        let fs = self.file_server(dir)?;
        let mut missing: Vec<&mut DirEntry> =
            out.iter_mut().filter(|e| e.status.is_none()).collect();
        for batch in missing.chunks_mut(crate::types::AFS_CB_MAX) {
            let fids: Vec<Fid> = batch.iter().map(|e| e.fid).collect();
            self.introduce(fs.addr()).await;
            let mut stamps = self.coherence.stamp_all(&fids, fs.addr());
            let reply = fs.inline_bulk_status(&fids).await?;
            self.note_snapshot(dir.fid.volume, fs.addr(), &reply.volsync, &mut stamps);
            let who = self.who(&dir.cell);
            for ((entry, st), stamp) in batch.iter_mut().zip(reply.entries).zip(stamps) {
                if st.status.error_code == 0 {
                    self.coherence.record(
                        entry.fid,
                        fs.addr(),
                        stamp,
                        st.status,
                        &st.callback,
                        &who,
                    );
                    entry.status = Some(st.status);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Streams a whole file to `sink` in order, several FetchData64 calls in flight.
    pub async fn read(
        &self,
        path: &str,
        sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<Node> {
        let node = self.resolve(path).await?;
        if node.status.file_type == FileType::Directory {
            return Err(Error::local(ErrorKind::IsDirectory, "is a directory").at(path));
        }
        self.read_node(&node, sink).await.map_err(|e| e.at(path))?;
        Ok(node)
    }

    /// Streams the bytes of `node` as of its status, chunks fetched in parallel. A chunk
    /// of a read-only file whose site stopped answering is fetched again from another.
    pub async fn read_node(
        &self,
        node: &Node,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<()> {
        let len = node.status.length();
        let read_only = node.volume_type == VolumeType::ReadOnly;
        let mut inflight = std::collections::VecDeque::new();
        let mut next = 0u64;
        while next < len || !inflight.is_empty() {
            while next < len && inflight.len() < READ_PARALLEL {
                let n = READ_CHUNK.min(len - next);
                // A read-only file's chunks go to its best site as of now.
                let server = if read_only {
                    self.servers_for(&node.cell, node.fid).await?.0[0]
                } else {
                    node.server
                };
                let mut fs = self.file_server_as(&node.cell, server)?;
                if read_only {
                    fs = fs.with_failover();
                }
                let fid = node.fid;
                let pos = next;
                let stamp = self.stamp(fid, server).await;
                let task = tokio::spawn(async move {
                    let mut buf: Vec<Bytes> = Vec::new();
                    let reply = fs
                        .fetch_data(fid, pos, n, |b| {
                            buf.push(b);
                            Ok(())
                        })
                        .await?;
                    Ok::<_, Error>((buf, reply, stamp))
                });
                inflight.push_back((task, server, pos, n));
                next += n;
            }
            let (task, server, pos, n) = inflight.pop_front().expect("a read is in flight");
            let fetched = task
                .await
                .map_err(|e| Error::local(ErrorKind::Other, format!("read task failed: {e}")))?;
            match fetched {
                Ok((chunks, reply, stamp)) => {
                    self.note_promise(&node.cell, node.fid, server, stamp, &reply);
                    for c in chunks {
                        sink(&c)?;
                    }
                }
                Err(e) if read_only && worth_another_site(&e) => {
                    if e.kind() == ErrorKind::ServerUnreachable {
                        self.sites.unreachable(server);
                    }
                    self.fetch_range(node, pos, n, |b| sink(&b)).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes `len` bytes from `data` as the whole new contents of `path`,
    /// creating the file if needed.
    pub async fn write(
        &self,
        path: &str,
        data: impl AsyncRead + Unpin,
        len: u64,
        progress: impl FnMut(u64),
    ) -> Result<Node> {
        let (dir, name) = self.resolve_parent(path).await?;
        let fid = match self.lookup(&dir, &name).await.map_err(|e| e.at(path))? {
            Some(fid) => fid,
            None => {
                let fs = self.file_server(&dir)?;
                let status = StoreStatus::new().with_mode(0o644);
                let created = fs.create_file(dir.fid, &name, &status).await;
                match created {
                    Ok(reply) => {
                        self.note_created(&dir, &reply);
                        reply.fid
                    }
                    // Someone created it meanwhile: use theirs.
                    Err(e) if e.kind() == ErrorKind::Exists => {
                        let dir = self.fetch_status(&dir.cell, dir.fid).await?;
                        self.lookup(&dir, &name).await?.ok_or_else(|| e.at(path))?
                    }
                    Err(e) => return Err(e.at(path)),
                }
            }
        };
        let fs = self.file_server(&dir)?;
        let reply = fs
            .store_data(
                fid,
                &StoreStatus::new(),
                crate::fs::StoreRange {
                    pos: 0,
                    len,
                    file_length: len,
                },
                data,
                progress,
            )
            .await
            .map_err(|e| e.at(path))?;
        self.note_own_change(fid, reply.status);
        Ok(Node {
            cell: dir.cell.clone(),
            fid,
            status: reply.status,
            server: fs.addr(),
            callback: CallBack::default(),
            volume_type: dir.volume_type,
        })
    }

    /// Removes a file (or symlink, or mount point).
    pub async fn remove(&self, path: &str) -> Result<()> {
        let (dir, name) = self.resolve_parent(path).await?;
        self.remove_in(&dir, &name).await.map_err(|e| e.at(path))
    }

    /// Removes an empty directory.
    pub async fn remove_dir(&self, path: &str) -> Result<()> {
        let (dir, name) = self.resolve_parent(path).await?;
        self.remove_dir_in(&dir, &name)
            .await
            .map_err(|e| e.at(path))
    }

    pub async fn mkdir(&self, path: &str) -> Result<Fid> {
        let (dir, name) = self.resolve_parent(path).await?;
        let node = self
            .make_dir_in(&dir, &name, 0o755)
            .await
            .map_err(|e| e.at(path))?;
        Ok(node.fid)
    }

    /// Makes a mount point at `path` (a symlink with mode 0644 and `#vol.` contents).
    pub async fn make_mount_point(&self, path: &str, target: &MountPoint) -> Result<Fid> {
        self.make_symlink(path, &target.contents(), 0o644).await
    }

    /// Makes a symbolic link at `path` pointing at `target`.
    pub async fn symlink(&self, path: &str, target: &str) -> Result<Fid> {
        self.make_symlink(path, target, 0o755).await
    }

    async fn make_symlink(&self, path: &str, target: &str, mode: u32) -> Result<Fid> {
        let (dir, name) = self.resolve_parent(path).await?;
        self.symlink_in(&dir, &name, target, mode)
            .await
            .map_err(|e| e.at(path))
    }
}
