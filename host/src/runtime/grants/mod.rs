//! Which AFS paths a guest may open, and how.
//!
//! A guest names files by path; the host grants it path prefixes, each read-only or
//! read-write, with options. Paths are compared after lexical normalization (`.`, `..`,
//! repeated slashes, the `.cell` read-write alias, the case of the cell name): a path is
//! under a grant iff its normalized form equals the grant's prefix or starts with the
//! prefix and `/`.
//!
//! Grants hold on the resolved path, however the path is spelled and whatever links or
//! mount points it crosses: the client resolves a guest's path confined by its grants
//! ([`GrantWalk`], a [`Confinement`]), keeping the logical path of where it is (`..`
//! taking a component away, a symlink's text put in place of the link) and asking at
//! each step beneath a grant's prefix:
//!
//! - a **symlink** is followed only if the path it leads to is under one of the guest's
//!   grants (a link inside a grant to another place inside a grant is fine);
//! - a **mount point** beneath a grant's prefix leads out of the grant (the volume it
//!   mounts is reachable from elsewhere), and is not crossed;
//! - the **object reached** must be under a grant; its access is that of the grants
//!   covering its logical path (the widest of them), and a read-write open needs a
//!   read-write one.
//!
//! A refused step is an `access-denied` error naming the link or mount point and where it
//! leads, and nothing beyond it is contacted (a symlink into another cell never reaches
//! that cell). Crossing out of a grant is an option of the grant, off by default: with
//! `mounts`, mount points beneath its prefix count as inside it; with `links`, its
//! symlinks may lead anywhere, and what they lead to has the grant's access (the
//! behaviour before grants were confined). Beneath a prefix the options of the innermost
//! grant apply.
//!
//! Steps on a grant's own path (from `/afs` down to its prefix, the prefix itself
//! included) are the operator's: they are followed wherever they lead, and the grant
//! then also covers the place its prefix resolved to. Where a grant's own path runs
//! beneath another grant, a symlink on it is judged by that other grant's rules.
//!
//! The syntax, as the CLI's `--grant` takes it: `PATH[:WORD[,WORD]...]`, each WORD one of
//! `ro` (the default), `rw`, `mounts`, `links`: `/afs/example.org/data:rw,mounts`.

use std::fmt;
use std::str::FromStr;

use afs::path::AfsPath;

use crate::pager::Access;

/// A path prefix a guest may open files under.
///
/// Parse one as the CLI's `--grant` takes it, or build it: [`Grant::new`] (or
/// [`Host::grant`](super::Host::grant), relative to the host's default cell) and the
/// `with_` methods. Both give the same grant:
///
/// ```
/// use afs_wasm_host::runtime::{Access, Grant};
///
/// # fn main() -> Result<(), afs_wasm_host::runtime::BadPath> {
/// let parsed: Grant = "/afs/example.org/data:rw,mounts".parse()?;
/// let built = Grant::new("/afs/example.org/data", Access::Read, None)?
///     .with_access(Access::ReadWrite)
///     .with_mounts(true);
/// assert_eq!(parsed, built);
/// assert_eq!(built.to_string(), "/afs/example.org/data:rw,mounts");
///
/// // Relative to a default cell, and normalized as the client resolves paths.
/// let g = Grant::parse("data/./reports/../logs", Some("example.org"))?;
/// assert_eq!(g.prefix(), "/afs/example.org/data/logs");
/// assert_eq!(g.access(), Access::Read);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    prefix: AfsPath,
    access: Access,
    /// Mount points beneath the prefix count as inside.
    mounts: bool,
    /// Symlinks beneath the prefix may lead anywhere.
    links: bool,
}

/// A path or grant that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPath(pub String);

/// The words of a grant's suffix.
const WORDS: [&str; 4] = ["ro", "rw", "mounts", "links"];

impl Grant {
    /// Grants `prefix` (`/afs/CELL/...`, or relative to `default_cell`) with `access`,
    /// without options.
    pub fn new(prefix: &str, access: Access, default_cell: Option<&str>) -> Result<Self, BadPath> {
        Ok(Grant {
            prefix: normalize(prefix, default_cell)?,
            access,
            mounts: false,
            links: false,
        })
    }

    /// The normalized prefix.
    pub fn prefix(&self) -> String {
        self.prefix.to_string()
    }

    /// Whether opens under the grant may write.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The normalized prefix, as the client parses paths.
    pub(crate) fn prefix_path(&self) -> &AfsPath {
        &self.prefix
    }

    /// This grant with `access`: [`Access::ReadWrite`] lets the guest write, create and
    /// remove files beneath the prefix (the servers' ACLs still apply). Default: the
    /// access it was made with (read-only when parsed without `:rw`).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Whether mount points beneath the prefix count as inside the grant (`mounts`).
    pub fn crosses_mounts(&self) -> bool {
        self.mounts
    }

    /// Whether symlinks beneath the prefix may lead anywhere (`links`).
    pub fn follows_links(&self) -> bool {
        self.links
    }

    /// This grant, with mount points beneath its prefix counted as inside it or not:
    /// turn it on when the tree the guest needs spans volumes mounted beneath it (the
    /// volumes mounted there are then reachable with this grant's access). Default: off.
    pub fn with_mounts(mut self, mounts: bool) -> Self {
        self.mounts = mounts;
        self
    }

    /// This grant, with its symlinks allowed to lead anywhere or not: turn it on only
    /// for a tree whose links you trust, since whatever they lead to gets this grant's
    /// access. Default: off (a link is followed only into the guest's grants).
    pub fn with_links(mut self, links: bool) -> Self {
        self.links = links;
        self
    }

    /// Whether the normalized `path` lies in this grant's tree.
    fn covers(&self, path: &AfsPath) -> bool {
        self.same_cell(path) && path.components.starts_with(&self.prefix.components)
    }

    /// Whether `path` lies strictly beneath the prefix.
    fn contains(&self, path: &AfsPath) -> bool {
        self.covers(path) && path.components.len() > self.prefix.components.len()
    }

    /// Whether `path` is the prefix or one of its ancestors (on the grant's own path).
    fn on_the_way(&self, path: &AfsPath) -> bool {
        self.same_cell(path) && self.prefix.components.starts_with(&path.components)
    }

    /// Whether `path` is the prefix itself.
    fn is_prefix(&self, path: &AfsPath) -> bool {
        self.same_cell(path) && path.components == self.prefix.components
    }

    fn same_cell(&self, path: &AfsPath) -> bool {
        self.prefix.cell.eq_ignore_ascii_case(&path.cell)
    }
}

impl Grant {
    /// `PATH[:WORD[,WORD]...]` as the CLI's `--grant` takes it, each WORD one of `ro`
    /// (the default), `rw`, `mounts`, `links`; a PATH not under `/afs/` is relative to
    /// `default_cell`. A suffix of none of those words is part of the path.
    pub fn parse(s: &str, default_cell: Option<&str>) -> Result<Self, BadPath> {
        const SYNTAX: &str = "a grant is /afs/CELL/PATH, optionally with :ro or :rw, \
                              then ,mounts and/or ,links";
        let (path, words) = match s.rsplit_once(':') {
            Some((p, suffix)) if suffix.split(',').any(|w| WORDS.contains(&w)) => {
                (p, suffix.split(',').collect())
            }
            _ => (s, Vec::new()),
        };
        let mut grant = Grant::new(path, Access::Read, default_cell)
            .map_err(|e| BadPath(format!("{e} ({SYNTAX})")))?;
        let mut access = None;
        for word in words {
            match word {
                "ro" | "rw" => {
                    if access.replace(word).is_some() {
                        return Err(BadPath(format!("{s}: ro or rw, once ({SYNTAX})")));
                    }
                }
                "mounts" => grant.mounts = true,
                "links" => grant.links = true,
                other => {
                    return Err(BadPath(format!(
                        "{s}: unknown grant option {other:?} ({SYNTAX})"
                    )))
                }
            }
        }
        if access == Some("rw") {
            grant.access = Access::ReadWrite;
        }
        Ok(grant)
    }
}

/// [`Grant::parse`] without a default cell: `/afs/CELL/PATH[:ro|:rw][,mounts][,links]`.
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
        write!(f, "{}:{access}", self.prefix)?;
        if self.mounts {
            f.write_str(",mounts")?;
        }
        if self.links {
            f.write_str(",links")?;
        }
        Ok(())
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
/// grants), or `None`. This is the check of a path as named; the confined resolution of
/// an open checks what it resolves to.
pub fn granted(grants: &[Grant], path: &AfsPath) -> Option<Access> {
    grants
        .iter()
        .filter(|g| g.covers(path))
        .map(|g| g.access)
        .max_by_key(|a| matches!(a, Access::ReadWrite))
}

#[cfg(test)]
mod tests;
mod walk;

pub(crate) use walk::GrantWalk;
