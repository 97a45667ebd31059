//! AFS paths and mount points.
//!
//! A path names a cell and components below that cell's root volume (`root.cell`):
//! `/afs/<cell>/a/b`. Mount points are symlink-typed vnodes whose contents are
//! `#vol.` (follow the read-only clone when the parent is read-only), `%vol.` (always
//! the read-write volume), optionally with a cell: `#cell:vol.`.

use crate::error::ErrorKind;
use crate::rpc::Error;

/// A parsed `/afs/<cell>/...` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfsPath {
    pub cell: String,
    /// Which clone of the cell's root.cell the path starts in.
    pub root: Root,
    pub components: Vec<String>,
}

/// Where a path starts: `/afs/CELL` or `/afs/.CELL`. A replicated cell is read through
/// read-only clones (any site may answer, and all see one released snapshot); its
/// administrators change the read-write volumes through the dotted name, then release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Root {
    /// `/afs/CELL`: root.cell's read-only clone if it has one, and from there the
    /// read-only clone of each `#vol.` mount point that has one (as OpenAFS mounts it).
    #[default]
    ReadOnly,
    /// `/afs/.CELL`: the read-write root.cell, and the read-write volume of each mount point.
    ReadWrite,
}

impl AfsPath {
    /// Parses an absolute AFS path. `.` components vanish and `..` pops, so a path
    /// cannot climb above its cell's root.
    pub fn parse(path: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::local(ErrorKind::Other, format!("{path}: {why}"));
        let rest = path
            .strip_prefix("/afs/")
            .ok_or_else(|| invalid("not an AFS path (must start with /afs/<cell>/)"))?;
        let mut parts = rest.split('/').filter(|p| !p.is_empty());
        let first = parts.next().ok_or_else(|| invalid("no cell name"))?;
        let (cell, root) = match first.strip_prefix('.') {
            Some(cell) => (cell.to_string(), Root::ReadWrite),
            None => (first.to_string(), Root::ReadOnly),
        };
        if cell.is_empty() {
            return Err(invalid("no cell name"));
        }
        let mut components: Vec<String> = Vec::new();
        for part in parts {
            match part {
                "." => {}
                ".." => {
                    if components.pop().is_none() {
                        return Err(invalid("`..` above the cell root"));
                    }
                }
                name if name.len() > crate::types::AFS_NAME_MAX => {
                    return Err(invalid("name too long"));
                }
                name => components.push(name.to_string()),
            }
        }
        Ok(Self {
            cell,
            root,
            components,
        })
    }

    /// The path of the parent directory and the last name, if any.
    pub fn split_last(&self) -> Option<(AfsPath, &str)> {
        let (last, init) = self.components.split_last()?;
        Some((
            AfsPath {
                cell: self.cell.clone(),
                root: self.root,
                components: init.to_vec(),
            },
            last,
        ))
    }
}

impl std::fmt::Display for AfsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dot = match self.root {
            Root::ReadOnly => "",
            Root::ReadWrite => ".",
        };
        write!(f, "/afs/{dot}{}", self.cell)?;
        for c in &self.components {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// The target of a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub cell: Option<String>,
    pub volume: String,
    /// `%`: always the read-write volume.
    pub rw: bool,
}

impl MountPoint {
    /// Parses symlink contents; None if they are an ordinary symlink.
    pub fn parse(contents: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(contents).ok()?;
        let text = text.strip_suffix('\0').unwrap_or(text);
        let rw = match text.as_bytes().first()? {
            b'#' => false,
            b'%' => true,
            _ => return None,
        };
        let body = text[1..].strip_suffix('.')?;
        let (cell, volume) = match body.split_once(':') {
            Some((c, v)) => (Some(c.to_string()), v),
            None => (None, body),
        };
        if volume.is_empty() || cell.as_deref() == Some("") {
            return None;
        }
        Some(Self {
            cell,
            volume: volume.to_string(),
            rw,
        })
    }

    /// The contents that make this mount point.
    pub fn contents(&self) -> String {
        let kind = if self.rw { '%' } else { '#' };
        match &self.cell {
            Some(cell) => format!("{kind}{cell}:{}.", self.volume),
            None => format!("{kind}{}.", self.volume),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        let p = AfsPath::parse("/afs/example.org/a//b/./c/../d").unwrap();
        assert_eq!(p.cell, "example.org");
        assert_eq!(p.components, ["a", "b", "d"]);
        assert_eq!(p.to_string(), "/afs/example.org/a/b/d");
        let root = AfsPath::parse("/afs/example.org").unwrap();
        assert!(root.components.is_empty());
        assert_eq!(root.root, Root::ReadOnly);
        let rw = AfsPath::parse("/afs/.example.org/x").unwrap();
        assert_eq!(
            (rw.cell.as_str(), rw.root),
            ("example.org", Root::ReadWrite)
        );
        assert_eq!(rw.to_string(), "/afs/.example.org/x");
        for bad in ["afs/x", "/afs/", "/afs//", "/afs/.", "/tmp/x", "/afs/c/.."] {
            assert!(AfsPath::parse(bad).is_err(), "{bad}");
        }
        let (parent, name) = p.split_last().unwrap();
        assert_eq!(name, "d");
        assert_eq!(parent.components, ["a", "b"]);
    }

    #[test]
    fn parses_mount_points() {
        assert_eq!(
            MountPoint::parse(b"#root.cell."),
            Some(MountPoint {
                cell: None,
                volume: "root.cell".into(),
                rw: false
            })
        );
        assert_eq!(
            MountPoint::parse(b"%other.org:user.x.\0"),
            Some(MountPoint {
                cell: Some("other.org".into()),
                volume: "user.x".into(),
                rw: true
            })
        );
        for bad in [
            &b"../target"[..],
            b"#novolume",
            b"#.",
            b"",
            b"%:v.",
            b"\xff\xfe",
        ] {
            assert_eq!(MountPoint::parse(bad), None, "{bad:?}");
        }
        for text in ["#test.", "%c.org:v.x."] {
            assert_eq!(MountPoint::parse(text.as_bytes()).unwrap().contents(), text);
        }
    }
}
