//! Operations on the entries of a directory the caller already holds: create, make
//! a directory, remove, rename, link, symlink, and changing a file's metadata. They
//! take nodes, not paths, so a caller that resolved a directory under its own rules
//! (a guest's preopen, say) acts on exactly that directory.
//!
//! Every reply's statuses are recorded as our own change: our callbacks are not broken
//! by our own changes, so the next lookup in the directory must learn its new data
//! version from us (and then reads its new contents). Each call follows a moved volume
//! ([`Client::change`]).

use super::*;

impl Client {
    /// The FID `name` has in `dir`, if any (from the cached contents while the
    /// directory's promise holds).
    pub async fn lookup(&self, dir: &Node, name: &str) -> Result<Option<Fid>> {
        let entries = self.read_dir(dir).await?;
        Ok(entries.lookup(name).map(|e| e.fid(dir.fid.volume)))
    }

    /// The node of `name` in `dir`, not following a symlink or mount point there.
    pub async fn child(&self, dir: &Node, name: &str) -> Result<Option<Node>> {
        match self.lookup(dir, name).await? {
            Some(fid) => Ok(Some(self.status(&dir.cell, fid).await?)),
            None => Ok(None),
        }
    }

    /// A node for `fid` in `dir`'s volume with the status a reply gave.
    fn node_in(&self, dir: &Node, fid: Fid, status: FetchStatus) -> Node {
        Node {
            cell: dir.cell.clone(),
            fid,
            status,
            server: dir.server,
            callback: CallBack::default(),
            volume_type: dir.volume_type,
        }
    }

    /// Creates the empty file `name` in `dir` with `mode`; [`ErrorKind::Exists`] if
    /// the name is taken.
    pub async fn create_in(&self, dir: &Node, name: &str, mode: u32) -> Result<Node> {
        let status = StoreStatus::new().with_mode(mode);
        let status = &status;
        let reply = self
            .change(dir, |fs| async move {
                fs.create_file(dir.fid, name, status).await
            })
            .await?;
        self.note_created(dir, &reply);
        Ok(self.node_in(dir, reply.fid, reply.status))
    }

    /// Makes the directory `name` in `dir`.
    pub async fn make_dir_in(&self, dir: &Node, name: &str, mode: u32) -> Result<Node> {
        let status = StoreStatus::new().with_mode(mode);
        let status = &status;
        let reply = self
            .change(
                dir,
                |fs| async move { fs.make_dir(dir.fid, name, status).await },
            )
            .await?;
        self.note_created(dir, &reply);
        Ok(self.node_in(dir, reply.fid, reply.status))
    }

    /// Removes the file, symlink or mount point `name` from `dir`.
    pub async fn remove_in(&self, dir: &Node, name: &str) -> Result<()> {
        let reply = self
            .change(dir, |fs| async move { fs.remove_file(dir.fid, name).await })
            .await?;
        self.note_own_change(dir.fid, reply.status);
        Ok(())
    }

    /// Removes the empty directory `name` from `dir`.
    pub async fn remove_dir_in(&self, dir: &Node, name: &str) -> Result<()> {
        let reply = self
            .change(dir, |fs| async move { fs.remove_dir(dir.fid, name).await })
            .await
            .map_err(|e| match e.kind() {
                // OpenAFS fileservers answer EEXIST for a directory that is not empty.
                ErrorKind::Exists => Error::local(ErrorKind::NotEmpty, "directory not empty"),
                _ => e,
            })?;
        self.note_own_change(dir.fid, reply.status);
        Ok(())
    }

    /// Makes the symlink `name` in `dir` with `target` as its text and `mode` (0755
    /// for a symlink, 0644 for a mount point, as OpenAFS's tools make them).
    pub async fn symlink_in(&self, dir: &Node, name: &str, target: &str, mode: u32) -> Result<Fid> {
        let status = StoreStatus::new().with_mode(mode);
        let status = &status;
        let reply = self
            .change(dir, |fs| async move {
                fs.symlink(dir.fid, name, target, status).await
            })
            .await?;
        self.note_own_change(dir.fid, reply.dir_status);
        self.coherence.record_status(reply.fid, reply.status);
        Ok(reply.fid)
    }

    /// Renames `old` in `old_dir` to `new` in `new_dir`, replacing what `new` named.
    /// The fileserver refuses directories of two volumes (a cross-device rename).
    pub async fn rename_in(
        &self,
        old_dir: &Node,
        old: &str,
        new_dir: &Node,
        new: &str,
    ) -> Result<()> {
        if old_dir.fid.volume != new_dir.fid.volume || old_dir.cell != new_dir.cell {
            return Err(Error::local(
                ErrorKind::CrossDevice,
                "a rename between two volumes",
            ));
        }
        let reply = self
            .change(old_dir, |fs| async move {
                fs.rename(old_dir.fid, old, new_dir.fid, new).await
            })
            .await
            .map_err(|e| match e.kind() {
                // OpenAFS fileservers answer EEXIST for a directory that is not empty.
                ErrorKind::Exists => Error::local(ErrorKind::NotEmpty, "directory not empty"),
                _ => e,
            })?;
        self.note_own_change(old_dir.fid, reply.old_dir_status);
        self.note_own_change(new_dir.fid, reply.new_dir_status);
        Ok(())
    }

    /// Makes `name` in `dir` a hard link to `existing`. OpenAFS allows hard links
    /// only within one directory: elsewhere the fileserver answers EXDEV.
    pub async fn link_in(&self, dir: &Node, name: &str, existing: Fid) -> Result<()> {
        let reply = self
            .change(
                dir,
                |fs| async move { fs.link(dir.fid, name, existing).await },
            )
            .await?;
        self.note_own_change(dir.fid, reply.dir_status);
        self.note_own_change(existing, reply.status);
        Ok(())
    }

    /// Applies `status` (modification time, mode, ...) to `node`; returns the node
    /// with its new status.
    pub async fn store_status(&self, node: &Node, status: &StoreStatus) -> Result<Node> {
        let reply = self
            .change(
                node,
                |fs| async move { fs.store_status(node.fid, status).await },
            )
            .await?;
        self.note_own_change(node.fid, reply.status);
        let mut node = node.clone();
        node.status = reply.status;
        Ok(node)
    }

    /// The text of a symlink (or mount point).
    pub async fn read_link(&self, node: &Node) -> Result<String> {
        if node.status.file_type != FileType::Symlink {
            return Err(Error::local(ErrorKind::InvalidArgument, "not a symlink"));
        }
        let text = self.fetch_all(node).await?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}
