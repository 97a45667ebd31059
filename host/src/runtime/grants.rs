//! Which AFS paths a guest may open, and how.
//!
//! A guest names files by path; the host grants it path prefixes, each read-only or
//! read-write. Paths are compared after lexical normalization (`.`, `..`, repeated
//! slashes, the `.cell` read-write alias, the case of the cell name): a path is granted
//! iff its normalized form equals a granted prefix or starts with the prefix and `/`.
//! Several matching grants give the widest access among them.
//!
//! The check is on the path the guest named. Symlinks and mount points inside a granted
//! tree are followed by the client and may lead outside it (to another volume or
//! cell): the grant covers what a path under the prefix resolves to, just as a
//! directory's permissions do in a Unix file system. Grant a tree only if what it links
//! to may be read (or written) too.

use std::fmt;
use std::str::FromStr;

use afs::path::AfsPath;

use crate::pager::Access;

/// A path prefix a guest may open files under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    prefix: AfsPath,
    access: Access,
}

/// A path or grant that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPath(pub String);

impl Grant {
    /// Grants `prefix` (`/afs/CELL/...`, or relative to `default_cell`) with `access`.
    pub fn new(prefix: &str, access: Access, default_cell: Option<&str>) -> Result<Self, BadPath> {
        Ok(Grant {
            prefix: normalize(prefix, default_cell)?,
            access,
        })
    }

    /// The normalized prefix.
    pub fn prefix(&self) -> String {
        self.prefix.to_string()
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// Whether the normalized `path` lies in this grant's tree.
    fn covers(&self, path: &AfsPath) -> bool {
        self.prefix.cell.eq_ignore_ascii_case(&path.cell)
            && path.components.starts_with(&self.prefix.components)
    }
}

impl Grant {
    /// `PATH[:ro|:rw]` (`:ro` if no suffix), as the CLI's `--grant` takes it; a PATH
    /// not under `/afs/` is relative to `default_cell`.
    pub fn parse(s: &str, default_cell: Option<&str>) -> Result<Self, BadPath> {
        let (path, access) = match s.rsplit_once(':') {
            Some((p, "ro")) => (p, Access::Read),
            Some((p, "rw")) => (p, Access::ReadWrite),
            _ => (s, Access::Read),
        };
        Grant::new(path, access, default_cell).map_err(|e| {
            BadPath(format!(
                "{e} (a grant is /afs/CELL/PATH, optionally with :ro or :rw)"
            ))
        })
    }
}

/// [`Grant::parse`] without a default cell: `/afs/CELL/PATH[:ro|:rw]`.
impl FromStr for Grant {
    type Err = BadPath;

    fn from_str(s: &str) -> Result<Self, BadPath> {
        Grant::parse(s, None)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = match self.access {
            Access::Read => "ro",
            Access::ReadWrite => "rw",
        };
        write!(f, "{}:{access}", self.prefix)
    }
}

/// Makes `path` absolute (`/afs/<default_cell>/path` unless it starts with `/afs/`) and
/// normalizes it as the client will when it resolves it.
pub fn normalize(path: &str, default_cell: Option<&str>) -> Result<AfsPath, BadPath> {
    let absolute = if path.starts_with("/afs/") || path == "/afs" {
        path.to_string()
    } else {
        let cell = default_cell.ok_or_else(|| {
            BadPath(format!(
                "{path}: not an AFS path (/afs/CELL/...) and no default cell"
            ))
        })?;
        format!("/afs/{cell}/{}", path.trim_start_matches('/'))
    };
    AfsPath::parse(&absolute).map_err(|e| BadPath(e.to_string()))
}

/// The access `grants` give to the normalized `path` (the widest of the matching
/// grants), or `None`.
pub fn granted(grants: &[Grant], path: &AfsPath) -> Option<Access> {
    grants
        .iter()
        .filter(|g| g.covers(path))
        .map(|g| g.access)
        .max_by_key(|a| matches!(a, Access::ReadWrite))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(grants: &[Grant], path: &str) -> Option<Access> {
        granted(grants, &normalize(path, Some("test.cell")).unwrap())
    }

    #[test]
    fn prefixes_match_whole_components() {
        let g = vec![
            "/afs/test.cell/data".parse::<Grant>().unwrap(),
            "/afs/test.cell/data/out:rw".parse::<Grant>().unwrap(),
        ];
        assert_eq!(check(&g, "/afs/test.cell/data"), Some(Access::Read));
        assert_eq!(check(&g, "/afs/test.cell/data/x"), Some(Access::Read));
        assert_eq!(
            check(&g, "/afs/test.cell/data/out/y"),
            Some(Access::ReadWrite)
        );
        assert_eq!(check(&g, "/afs/test.cell/database"), None);
        assert_eq!(check(&g, "/afs/test.cell"), None);
        assert_eq!(check(&g, "/afs/other.cell/data/x"), None);
    }

    #[test]
    fn paths_are_normalized_first() {
        let g = vec!["/afs/test.cell/data/".parse::<Grant>().unwrap()];
        assert_eq!(check(&g, "/afs/test.cell//data/./x"), Some(Access::Read));
        assert_eq!(check(&g, "/afs/.test.cell/data/x"), Some(Access::Read));
        assert_eq!(check(&g, "/afs/TEST.cell/data/x"), Some(Access::Read));
        assert_eq!(check(&g, "/afs/test.cell/data/../secret"), None);
        assert_eq!(
            check(&g, "/afs/test.cell/data/x/../../data/y"),
            Some(Access::Read)
        );
        assert_eq!(check(&g, "data/x"), Some(Access::Read));
        assert!(normalize("/afs/test.cell/..", None).is_err());
        assert!(normalize("data/x", None).is_err());
    }

    #[test]
    fn grant_syntax() {
        assert!("data:rw".parse::<Grant>().is_err());
        let g = Grant::parse("data:rw", Some("c")).unwrap();
        assert_eq!(g.to_string(), "/afs/c/data:rw");
        let g: Grant = "/afs/c/d:rw".parse().unwrap();
        assert_eq!(
            (g.prefix(), g.access()),
            ("/afs/c/d".into(), Access::ReadWrite)
        );
        assert_eq!(g.to_string(), "/afs/c/d:rw");
        assert_eq!(
            "/afs/c/d:ro".parse::<Grant>().unwrap().access(),
            Access::Read
        );
    }
}
