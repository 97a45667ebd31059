//! Path resolution: from `/afs/<cell>/...` to a file's node, through mount points
//! and symlinks, trusting valid promises and cached directory contents.

use super::*;

/// The largest directory or symlink we read whole. OpenAFS directories hold at
/// most 1023 pages of 2 KiB (about 2 MiB) and symlinks at most 1 KiB.
const MAX_SMALL_FILE: u64 = 4 << 20;

impl Client {
    /// The root directory of a volume. A read-only wish falls back to the read-write
    /// volume when there is no read-only clone; a backup wish does not.
    async fn volume_root(&self, cell: &str, volume: &str, want: VolumeType) -> Result<Node> {
        let loc = self.volume_by_name(cell, volume).await?;
        let vtype = match want {
            VolumeType::ReadOnly if loc.id(VolumeType::ReadOnly).is_none() => VolumeType::ReadWrite,
            other => other,
        };
        let id = loc.id(vtype).ok_or_else(|| {
            Error::local(
                ErrorKind::NoSuchVolume,
                format!("volume {volume} has no {vtype:?} clone"),
            )
        })?;
        self.status(cell, Fid::new(id, 1, 1)).await
    }

    /// The whole contents of a small file (directories, symlinks), fetched again
    /// only when its data version moved.
    async fn fetch_all(&self, node: &Node) -> Result<Arc<Vec<u8>>> {
        let version = node.status.data_version();
        let cached = self
            .contents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node.fid)
            .cloned();
        if let Some((v, data)) = cached {
            if v == version {
                return Ok(data);
            }
        }
        // The length is the server's word: a directory or symlink past any real
        // one is refused before a byte is allocated for it.
        let len = node.status.length();
        if len > MAX_SMALL_FILE {
            return Err(Error::local(
                ErrorKind::Protocol,
                format!(
                    "{} is {len} bytes long, more than a directory or symlink can be",
                    node.fid
                ),
            ));
        }
        let mut out = Vec::with_capacity(len as usize);
        let fs = self.file_server(node);
        let stamp = self.stamp(node.fid, node.server).await;
        let reply = fs
            .fetch_data(node.fid, 0, node.status.length(), |b| {
                out.extend_from_slice(&b);
                Ok(())
            })
            .await?;
        self.note_promise(node.fid, node.server, stamp, &reply);
        let data = Arc::new(out);
        // Keyed by the version the data came with, which may be newer than `node`'s.
        self.contents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.fid, (reply.status.data_version(), data.clone()));
        Ok(data)
    }

    /// The entries of a directory node.
    pub async fn read_dir(&self, dir: &Node) -> Result<Directory> {
        if dir.status.file_type != FileType::Directory {
            return Err(Error::local(ErrorKind::NotDirectory, "not a directory"));
        }
        let data = self.fetch_all(dir).await?;
        Directory::parse(&data).map_err(|e| Error::local(ErrorKind::Protocol, e.to_string()))
    }

    /// A file's status: from the validity table when its promise is in force (no
    /// network), else from its server. This is the resolution path's fast check.
    pub async fn status(&self, cell: &str, fid: Fid) -> Result<Node> {
        if let Some(node) = self.cached_node(cell, fid) {
            return Ok(node);
        }
        self.fetch_status(cell, fid).await
    }

    fn cached_node(&self, cell: &str, fid: Fid) -> Option<Node> {
        let now = Instant::now();
        let (status, server, expires) = self.coherence.cached(fid)?;
        let loc = self
            .volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fid.volume)
            .cloned()?;
        Some(Node {
            cell: cell.to_string(),
            fid,
            status,
            server,
            callback: CallBack {
                version: 1,
                expiration_time: expires.saturating_duration_since(now).as_secs() as u32,
                cb_type: crate::types::CallBackType::Shared,
            },
            volume_type: loc.type_of(fid.volume)?,
        })
    }

    /// Resolves a path to its node, following mount points and symlinks.
    pub async fn resolve(&self, path: &str) -> Result<Node> {
        self.resolve_parsed(AfsPath::parse(path)?, true)
            .await
            .map_err(|e| e.at(path))
    }

    /// Resolves the parent of a path; returns it with the final name.
    pub async fn resolve_parent(&self, path: &str) -> Result<(Node, String)> {
        let parsed = AfsPath::parse(path)?;
        let (parent, name) = parsed.split_last().ok_or_else(|| {
            Error::local(ErrorKind::Other, "the cell root has no parent").at(path)
        })?;
        let name = name.to_string();
        let dir = self
            .resolve_parsed(parent, true)
            .await
            .map_err(|e| e.at(path))?;
        Ok((dir, name))
    }

    async fn resolve_parsed(&self, path: AfsPath, follow_last: bool) -> Result<Node> {
        let mut pending: Vec<String> = path.components.into_iter().rev().collect();
        let mut stack = vec![self.cell_root(&path.cell).await?];
        let mut symlinks = 0;
        while let Some(name) = pending.pop() {
            let dir = stack.last().expect("stack holds the root").clone();
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let entries = self.read_dir(&dir).await?;
            let fid = entries
                .lookup(&name)
                .ok_or_else(|| Error::local(ErrorKind::NotFound, "no such file or directory"))?
                .fid(dir.fid.volume);
            let mut node = self.status(&dir.cell, fid).await?;
            let last = pending.is_empty();
            if node.status.file_type == FileType::Symlink && (!last || follow_last) {
                let target = self.fetch_all(&node).await?;
                if let Some(mp) = MountPoint::parse(&target) {
                    node = self.cross_mount_point(&dir, &mp).await?;
                } else {
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(Error::local(
                            ErrorKind::Other,
                            "too many levels of symbolic links",
                        ));
                    }
                    let text = String::from_utf8_lossy(&target).into_owned();
                    if text.starts_with('/') {
                        // Absolute: start again from that cell's root.
                        let target = AfsPath::parse(&text)?;
                        stack = vec![self.cell_root(&target.cell).await?];
                        pending.extend(target.components.into_iter().rev());
                    } else {
                        pending.extend(
                            text.split('/')
                                .filter(|c| !c.is_empty() && *c != ".")
                                .map(String::from)
                                .rev(),
                        );
                    }
                    continue;
                }
            }
            if !last && node.status.file_type != FileType::Directory {
                return Err(Error::local(ErrorKind::NotDirectory, "not a directory"));
            }
            stack.push(node);
        }
        Ok(stack.pop().expect("stack holds the root"))
    }

    /// The root of a cell: its root.cell volume, the read-only clone if it has one.
    async fn cell_root(&self, cell: &str) -> Result<Node> {
        self.volume_root(cell, "root.cell", VolumeType::ReadOnly)
            .await
    }

    /// The root of the volume a mount point in `dir` names. `#vol.` follows the
    /// read-only clone only from a read-only volume (as OpenAFS does); `%vol.` and
    /// explicit `.readonly`/`.backup` names say what they want.
    async fn cross_mount_point(&self, dir: &Node, mp: &MountPoint) -> Result<Node> {
        let cell = mp.cell.as_deref().unwrap_or(&dir.cell);
        let (name, want) = if let Some(base) = mp.volume.strip_suffix(".readonly") {
            (base, VolumeType::ReadOnly)
        } else if let Some(base) = mp.volume.strip_suffix(".backup") {
            (base, VolumeType::Backup)
        } else if mp.rw || (dir.volume_type != VolumeType::ReadOnly && mp.cell.is_none()) {
            (mp.volume.as_str(), VolumeType::ReadWrite)
        } else {
            (mp.volume.as_str(), VolumeType::ReadOnly)
        };
        self.volume_root(cell, name, want).await
    }
}
