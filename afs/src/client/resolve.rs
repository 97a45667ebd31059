//! Path resolution: from `/afs/<cell>/...` to a file's node, through mount points
//! and symlinks, trusting valid promises and cached directory contents.

use super::*;

/// A step of a path resolution, as a [`Confinement`] is asked about it.
///
/// Paths are logical: the components named so far, `..` taking one away, a symlink's
/// text put in place of the link (relative text relative to the link's directory;
/// absolute text, perhaps in another cell, replacing the whole path). A mount point
/// keeps its own name: what lies beneath it is named through it.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// Following the symlink at `at`, whose `text` leads to `to`.
    Symlink {
        at: &'a AfsPath,
        text: &'a str,
        to: &'a AfsPath,
    },
    /// Crossing the mount point at `at` into the root of `target`'s volume in `cell`
    /// (the mount point's own cell, or else the cell of the directory holding it).
    MountPoint {
        at: &'a AfsPath,
        target: &'a MountPoint,
        cell: &'a str,
    },
    /// The resolution ends at `node`, whose logical path is `path`.
    Reached { path: &'a AfsPath, node: &'a Node },
}

impl Step<'_> {
    /// The logical path of the symlink, the mount point or the node reached.
    pub fn at(&self) -> &AfsPath {
        match self {
            Step::Symlink { at, .. } | Step::MountPoint { at, .. } => at,
            Step::Reached { path, .. } => path,
        }
    }
}

/// `symlink /afs/c/a/l leads to /afs/c/b`, `mount point /afs/c/a/m leads to volume v
/// of cell c`, or the path reached.
impl std::fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Symlink { at, to, .. } => write!(f, "symlink {at} leads to {to}"),
            Step::MountPoint { at, target, cell } => write!(
                f,
                "mount point {at} leads to volume {} of cell {cell}",
                target.volume
            ),
            Step::Reached { path, .. } => write!(f, "{path}"),
        }
    }
}

/// What a confined resolution ([`Client::resolve_confined`]) may do: asked before each
/// step beneath the cell root, in the spirit of openat2's `RESOLVE_BENEATH` and
/// `RESOLVE_NO_XDEV`. Closures `FnMut(&Step) -> Result<()>` are confinements.
pub trait Confinement: Send {
    /// Whether `step` may be taken. An error ends the resolution with it (of kind
    /// [`ErrorKind::Confined`] for a step that leads outside what the caller may
    /// reach).
    fn check(&mut self, step: &Step<'_>) -> Result<()>;
}

impl<F: FnMut(&Step<'_>) -> Result<()> + Send> Confinement for F {
    fn check(&mut self, step: &Step<'_>) -> Result<()> {
        self(step)
    }
}

/// Whether a resolution follows a symlink or mount point that is the last component
/// of the path (those before it are always followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    All,
    NotLast,
}

/// Every step allowed.
struct Unconfined;

impl Confinement for Unconfined {
    fn check(&mut self, _: &Step<'_>) -> Result<()> {
        Ok(())
    }
}

/// The logical path the symlink `text` leads to from the directory `dir`: absolute
/// text replaces the path (`/afs/CELL/...` only), relative text goes on from `dir`
/// (`.` vanishes, `..` takes one component away and stays at the cell root there).
fn expand(dir: &AfsPath, text: &str) -> Result<AfsPath> {
    if text.starts_with('/') {
        return AfsPath::parse(text);
    }
    let mut to = dir.clone();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                to.components.pop();
            }
            name => to.components.push(name.to_string()),
        }
    }
    Ok(to)
}

/// How to go from `here` to `to`: how many leading components of `here` to keep (None:
/// another cell or another clone of its root, start at that root) and which components to walk then.
fn jump(here: &AfsPath, to: &AfsPath) -> (Option<usize>, Vec<String>) {
    if here.cell != to.cell || here.root != to.root {
        return (None, to.components.clone());
    }
    let keep = here
        .components
        .iter()
        .zip(&to.components)
        .take_while(|(a, b)| a == b)
        .count();
    (Some(keep), to.components[keep..].to_vec())
}

/// Directories and symlinks whose contents are kept, and their bytes: past either, the
/// caches start again, so walking a huge tree (or a server sending huge directories)
/// cannot grow them without bound.
const MAX_CACHED_DIRS: usize = 4096;
const MAX_CACHED_BYTES: usize = 64 << 20;

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
    pub(super) async fn fetch_all(&self, node: &Node) -> Result<Arc<Vec<u8>>> {
        // The contents may be cached from another identity's read: ours may use them only
        // if the server says we may look in this directory (node's status is ours).
        if node.status.is_dir() && !node.status.caller_has(crate::types::rights::LOOKUP) {
            return Err(Error::denied(
                node.server,
                self.identity.name_in(&node.cell),
            ));
        }
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
        // The server sends its current version, which may be longer than `node` said
        // (changed since, by another task of ours, say): a prefix of a directory is no
        // directory. Ask again for the length the reply gave until they agree.
        let mut want = len;
        let mut tries = 0;
        let (out, reply) = loop {
            tries += 1;
            let mut out = Vec::with_capacity(want as usize);
            let reply = self
                .fetch_range(node, 0, want, |b| {
                    out.extend_from_slice(&b);
                    Ok(())
                })
                .await?;
            let now = reply.status.length();
            if out.len() as u64 == now {
                break (out, reply);
            }
            if now > MAX_SMALL_FILE || want == now || tries == 8 {
                return Err(Error::local(
                    ErrorKind::Protocol,
                    format!(
                        "{} is {now} bytes long, but its server sent {} bytes of it",
                        node.fid,
                        out.len()
                    ),
                ));
            }
            want = now;
        };
        let data = Arc::new(out);
        // Keyed by the version the data came with, which may be newer than `node`'s.
        let mut contents = self.contents.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = contents.values().map(|(_, d)| d.len()).sum();
        if contents.len() >= MAX_CACHED_DIRS || held + data.len() > MAX_CACHED_BYTES {
            contents.clear();
        }
        contents.insert(node.fid, (reply.status.data_version(), data.clone()));
        Ok(data)
    }

    /// The entries of a directory node, parsed once per data version: lookups in a
    /// large directory cost a hash probe, not a parse.
    pub async fn read_dir(&self, dir: &Node) -> Result<Arc<Directory>> {
        if dir.status.file_type != FileType::Directory {
            return Err(Error::local(ErrorKind::NotDirectory, "not a directory"));
        }
        let data = self.fetch_all(dir).await?;
        let parsed = self
            .parsed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&dir.fid)
            .filter(|(bytes, _)| Arc::ptr_eq(bytes, &data))
            .map(|(_, d)| d.clone());
        if let Some(d) = parsed {
            return Ok(d);
        }
        let d = Arc::new(
            Directory::parse(&data)
                .map_err(|e| Error::local(ErrorKind::Protocol, e.to_string()))?,
        );
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = parsed.values().map(|(d, _)| d.len()).sum();
        if parsed.len() >= MAX_CACHED_DIRS || held + data.len() > MAX_CACHED_BYTES {
            // A cache, bounded however many directories a guest walks.
            parsed.clear();
        }
        parsed.insert(dir.fid, (data, d.clone()));
        Ok(d)
    }

    /// A file's status: from the validity table when its promise is in force (no
    /// network), else from its server. This is the resolution path's fast check.
    pub async fn status(&self, cell: &str, fid: Fid) -> Result<Node> {
        if let Some(node) = self.cached_node(cell, fid) {
            return Ok(node);
        }
        self.fetch_status(cell, fid).await
    }

    pub(super) fn cached_node(&self, cell: &str, fid: Fid) -> Option<Node> {
        let now = Instant::now();
        // Only what this identity was told: another's cached answer is not its own.
        let (status, server, expires) = self.coherence.cached_as(fid, &self.who(cell))?;
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
            volume_type: self.volumes.type_of(fid.volume)?,
        })
    }

    /// Resolves a path to its node, following mount points and symlinks.
    pub async fn resolve(&self, path: &str) -> Result<Node> {
        self.resolve_confined(path, &mut Unconfined).await
    }

    /// Resolves a path to its node as [`resolve`](Self::resolve) does, asking
    /// `confinement` before each symlink it follows and each mount point it crosses,
    /// and about the node it reaches, with the logical paths involved (see [`Step`]).
    /// A step it refuses ends the resolution with its error, before the place the step
    /// leads to is contacted (a symlink into another cell never reaches that cell's
    /// servers).
    ///
    /// Symlink text is taken lexically, like the path itself: `..` is the parent of the
    /// logical path, so `a/..` in a symlink does not look `a` up.
    pub async fn resolve_confined(
        &self,
        path: &str,
        confinement: &mut dyn Confinement,
    ) -> Result<Node> {
        self.resolve_confined_with(path, Follow::All, confinement)
            .await
    }

    /// [`resolve_confined`](Self::resolve_confined), with a say in whether a symlink
    /// or mount point that is the path's last component is followed (as `open(2)` with
    /// `O_NOFOLLOW`, `lstat(2)`, `readlink(2)` and `unlink(2)` do not follow it).
    pub async fn resolve_confined_with(
        &self,
        path: &str,
        follow: Follow,
        confinement: &mut dyn Confinement,
    ) -> Result<Node> {
        self.resolve_parsed(AfsPath::parse(path)?, follow, confinement)
            .await
            .map_err(|e| e.at(path))
    }

    /// Resolves the parent of a path; returns it with the final name.
    pub async fn resolve_parent(&self, path: &str) -> Result<(Node, String)> {
        self.resolve_parent_confined(path, &mut Unconfined).await
    }

    /// Resolves the parent of a path, confined as
    /// [`resolve_confined`](Self::resolve_confined) is; returns it with the final
    /// name (which is not looked up).
    pub async fn resolve_parent_confined(
        &self,
        path: &str,
        confinement: &mut dyn Confinement,
    ) -> Result<(Node, String)> {
        let parsed = AfsPath::parse(path)?;
        let (parent, name) = parsed.split_last().ok_or_else(|| {
            Error::local(ErrorKind::Other, "the cell root has no parent").at(path)
        })?;
        let name = name.to_string();
        let dir = self
            .resolve_parsed(parent, Follow::All, confinement)
            .await
            .map_err(|e| e.at(path))?;
        Ok((dir, name))
    }

    /// Walks `path` from its cell's root. `here` is the logical path of the node on top
    /// of `stack` (one node per component of `here`, above the cell root): `..` pops
    /// both, a symlink puts its expansion in place of `here` and keeps the nodes of the
    /// part the two share, a mount point keeps its name.
    async fn resolve_parsed(
        &self,
        path: AfsPath,
        follow: Follow,
        confinement: &mut dyn Confinement,
    ) -> Result<Node> {
        let mut here = AfsPath {
            cell: path.cell,
            root: path.root,
            components: Vec::new(),
        };
        let mut pending: Vec<String> = path.components.into_iter().rev().collect();
        let mut stack = vec![self.cell_root(&here.cell, here.root).await?];
        let mut symlinks = 0;
        while let Some(name) = pending.pop() {
            let dir = stack.last().expect("stack holds the root").clone();
            let entries = self.read_dir(&dir).await?;
            let fid = entries
                .lookup(&name)
                .ok_or_else(|| Error::local(ErrorKind::NotFound, "no such file or directory"))?
                .fid(dir.fid.volume);
            let mut node = self.status(&dir.cell, fid).await?;
            let last = pending.is_empty();
            if node.status.file_type == FileType::Symlink && (!last || follow == Follow::All) {
                let mut at = here.clone();
                at.components.push(name.clone());
                let contents = self.fetch_all(&node).await?;
                if let Some(mp) = MountPoint::parse(&contents) {
                    let cell = mp.cell.as_deref().unwrap_or(&dir.cell);
                    confinement.check(&Step::MountPoint {
                        at: &at,
                        target: &mp,
                        cell,
                    })?;
                    node = self.cross_mount_point(&dir, &mp).await?;
                } else {
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(Error::local(
                            ErrorKind::Loop,
                            "too many levels of symbolic links",
                        ));
                    }
                    let text = String::from_utf8_lossy(&contents).into_owned();
                    let to = expand(&here, &text).map_err(|_| {
                        // A local path (`/etc`): this client reaches only AFS.
                        Error::local(
                            ErrorKind::Confined,
                            format!("symlink {at} leads to {text}, outside AFS"),
                        )
                    })?;
                    confinement.check(&Step::Symlink {
                        at: &at,
                        text: &text,
                        to: &to,
                    })?;
                    let (keep, rest) = jump(&here, &to);
                    match keep {
                        Some(n) => {
                            stack.truncate(n + 1);
                            here.components.truncate(n);
                        }
                        None => {
                            // Another cell: start again from its root.
                            stack = vec![self.cell_root(&to.cell, to.root).await?];
                            here = AfsPath {
                                cell: to.cell.clone(),
                                root: to.root,
                                components: Vec::new(),
                            };
                        }
                    }
                    pending.extend(rest.into_iter().rev());
                    continue;
                }
            }
            if !last && node.status.file_type != FileType::Directory {
                return Err(Error::local(ErrorKind::NotDirectory, "not a directory"));
            }
            stack.push(node);
            here.components.push(name);
        }
        let node = stack.pop().expect("stack holds the root");
        confinement.check(&Step::Reached {
            path: &here,
            node: &node,
        })?;
        Ok(node)
    }

    /// The root of a cell: its root.cell volume, the read-only clone if it has one
    /// (unless the path asked for the read-write one).
    async fn cell_root(&self, cell: &str, root: Root) -> Result<Node> {
        let want = match root {
            Root::ReadOnly => VolumeType::ReadOnly,
            Root::ReadWrite => VolumeType::ReadWrite,
        };
        self.volume_root(cell, "root.cell", want).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> AfsPath {
        AfsPath::parse(s).unwrap()
    }

    #[test]
    fn symlink_text_expands_lexically_from_the_links_directory() {
        let dir = p("/afs/c/test/g");
        for (text, want) in [
            ("x", "/afs/c/test/g/x"),
            ("./x/", "/afs/c/test/g/x"),
            ("../secret", "/afs/c/test/secret"),
            ("../g/./a/../b", "/afs/c/test/g/b"),
            ("../../../../..", "/afs/c"),
            ("../../../../../etc", "/afs/c/etc"),
            ("/afs/c/test/secret", "/afs/c/test/secret"),
            ("/afs/.c/test/g/../secret", "/afs/.c/test/secret"),
            ("/afs/other.cell/x", "/afs/other.cell/x"),
        ] {
            assert_eq!(expand(&dir, text).unwrap(), p(want), "{text}");
        }
        for bad in ["/etc/passwd", "/afs/c/..", "/afs/"] {
            assert!(expand(&dir, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jumps_keep_the_shared_part_of_the_logical_path() {
        let here = p("/afs/c/test/g/a");
        assert_eq!(
            jump(&here, &p("/afs/c/test/secret/f")),
            (Some(1), vec!["secret".to_string(), "f".to_string()])
        );
        assert_eq!(
            jump(&here, &p("/afs/c/test/g/a/b")),
            (Some(3), vec!["b".into()])
        );
        assert_eq!(jump(&here, &p("/afs/c")), (Some(0), vec![]));
        assert_eq!(
            jump(&here, &p("/afs/.c/test")),
            (None, vec!["test".to_string()]),
            "the read-write root is another root"
        );
        assert_eq!(
            jump(&here, &p("/afs/other/test")),
            (None, vec!["test".to_string()])
        );
    }

    #[test]
    fn steps_say_what_crosses_where() {
        let (at, to) = (p("/afs/c/test/g/l"), p("/afs/c/test/secret"));
        let step = Step::Symlink {
            at: &at,
            text: "../secret",
            to: &to,
        };
        assert_eq!(
            step.to_string(),
            "symlink /afs/c/test/g/l leads to /afs/c/test/secret"
        );
        assert_eq!(step.at(), &at);
        let mp = MountPoint::parse(b"#o.cell:root.cell.").unwrap();
        let step = Step::MountPoint {
            at: &at,
            target: &mp,
            cell: "o.cell",
        };
        assert_eq!(
            step.to_string(),
            "mount point /afs/c/test/g/l leads to volume root.cell of cell o.cell"
        );
    }
}
