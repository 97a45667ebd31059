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

use afs::client::{Confinement, Step};
use afs::error::ErrorKind;
use afs::path::AfsPath;

use crate::pager::Access;

/// A path prefix a guest may open files under.
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

    pub fn access(&self) -> Access {
        self.access
    }

    /// Whether mount points beneath the prefix count as inside the grant (`mounts`).
    pub fn crosses_mounts(&self) -> bool {
        self.mounts
    }

    /// Whether symlinks beneath the prefix may lead anywhere (`links`).
    pub fn follows_links(&self) -> bool {
        self.links
    }

    /// This grant, with mount points beneath its prefix counted as inside it or not.
    pub fn with_mounts(mut self, mounts: bool) -> Self {
        self.mounts = mounts;
        self
    }

    /// This grant, with its symlinks allowed to lead anywhere or not.
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

/// The confinement of one resolution of a path a guest named, by its grants (see the
/// module documentation).
#[derive(Debug, Clone)]
pub(crate) struct GrantWalk {
    /// The guest's grants, then those its prefixes resolved to on the way (aliases).
    grants: Vec<Grant>,
    /// The access the guest opens with.
    want: Access,
    /// The path the guest named (normalized).
    named: AfsPath,
    /// A symlink of a `links` grant led outside every grant: from there on everything
    /// is followed, with this access.
    released: Option<Access>,
}

fn outside(message: String) -> afs::rpc::Error {
    afs::rpc::Error::local(ErrorKind::Confined, message)
}

impl GrantWalk {
    /// The walk of `named` (normalized), opened with `want`, confined by `grants`.
    pub(crate) fn new(grants: &[Grant], named: AfsPath, want: Access) -> Self {
        GrantWalk {
            grants: grants.to_vec(),
            want,
            named,
            released: None,
        }
    }

    /// The grant with the longest prefix strictly above `path`.
    fn innermost(&self, path: &AfsPath) -> Option<&Grant> {
        self.grants
            .iter()
            .filter(|g| g.contains(path))
            .max_by_key(|g| g.prefix.components.len())
    }

    /// A step on a grant's own path (`at` is a prefix or above every grant containing
    /// it): the operator's, followed. A symlink there moves the grants it leads to.
    fn operators_step(&mut self, at: &AfsPath, step: &Step<'_>) -> afs::rpc::Result<()> {
        if let Step::Symlink { to, .. } = step {
            let aliases: Vec<Grant> = self
                .grants
                .iter()
                .filter(|g| g.on_the_way(at))
                .map(|g| {
                    let mut alias = g.clone();
                    alias.prefix = AfsPath {
                        cell: to.cell.clone(),
                        components: to
                            .components
                            .iter()
                            .chain(&g.prefix.components[at.components.len()..])
                            .cloned()
                            .collect(),
                    };
                    alias
                })
                .collect();
            for alias in aliases {
                if !self.grants.contains(&alias) {
                    self.grants.push(alias);
                }
            }
        }
        Ok(())
    }

    fn reached(&self, path: &AfsPath) -> afs::rpc::Result<()> {
        let covered = granted(&self.grants, path);
        let access = match (covered, self.released) {
            (Some(a), Some(b)) => widest(a, b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => {
                return Err(outside(format!(
                    "leads to {path}, outside this guest's grants"
                )))
            }
        };
        if self.want == Access::ReadWrite && access != Access::ReadWrite {
            let message = if *path == self.named {
                "granted read-only to this guest".to_string()
            } else {
                format!("leads to {path}, granted read-only to this guest")
            };
            return Err(afs::rpc::Error::local(ErrorKind::ReadOnly, message));
        }
        Ok(())
    }
}

/// The wider of two accesses.
fn widest(a: Access, b: Access) -> Access {
    if a == Access::ReadWrite || b == Access::ReadWrite {
        Access::ReadWrite
    } else {
        Access::Read
    }
}

impl Confinement for GrantWalk {
    fn check(&mut self, step: &Step<'_>) -> afs::rpc::Result<()> {
        let at = step.at();
        if let Step::Reached { .. } = step {
            return self.reached(at);
        }
        if self.released.is_some() {
            return Ok(());
        }
        let inner = match self.innermost(at) {
            Some(inner) if !self.grants.iter().any(|g| g.is_prefix(at)) => inner.clone(),
            _ if self.grants.iter().any(|g| g.on_the_way(at)) => {
                return self.operators_step(at, step)
            }
            // Neither on a grant's path nor beneath one: the walk never gets here (it
            // only goes where a grant lies), but refuse rather than assume.
            _ => return Err(outside(format!("{step}, outside this guest's grants"))),
        };
        match step {
            Step::Symlink { to, .. } => {
                if self.grants.iter().any(|g| g.covers(to)) {
                    Ok(())
                } else if inner.links {
                    self.released = Some(inner.access);
                    Ok(())
                } else {
                    Err(outside(format!("{step}, outside this guest's grants")))
                }
            }
            Step::MountPoint { .. } if inner.mounts => Ok(()),
            Step::MountPoint { .. } => Err(outside(format!(
                "{step}, out of this guest's grant {} (a grant crosses mount points \
                 with the `mounts` option)",
                inner.prefix
            ))),
            Step::Reached { .. } => unreachable!("handled above"),
        }
    }
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

    #[test]
    fn grant_options() {
        let g: Grant = "/afs/c/d:rw,mounts".parse().unwrap();
        assert_eq!(g.access(), Access::ReadWrite);
        assert!(g.crosses_mounts() && !g.follows_links());
        assert_eq!(g.to_string(), "/afs/c/d:rw,mounts");
        let g: Grant = "/afs/c/d:links,ro,mounts".parse().unwrap();
        assert_eq!(g.access(), Access::Read);
        assert!(g.crosses_mounts() && g.follows_links());
        assert_eq!(g.to_string(), "/afs/c/d:ro,mounts,links");
        assert_eq!(g.to_string().parse::<Grant>().unwrap(), g);
        let g: Grant = "/afs/c/d".parse().unwrap();
        assert!(!g.crosses_mounts() && !g.follows_links());
        // A suffix of no known word is part of the path, as before.
        assert_eq!(
            "/afs/c/a:b".parse::<Grant>().unwrap().prefix(),
            "/afs/c/a:b"
        );
        for bad in [
            "/afs/c/d:rw,mount",
            "/afs/c/d:ro,rw",
            "/afs/c/d:rw,",
            "data:rw",
        ] {
            let e = bad.parse::<Grant>().unwrap_err();
            assert!(e.0.contains("mounts"), "{bad}: {e}");
        }
        let g = Grant::new("/afs/c/d", Access::Read, None)
            .unwrap()
            .with_mounts(true)
            .with_links(true);
        assert_eq!(g.to_string(), "/afs/c/d:ro,mounts,links");
    }

    fn p(s: &str) -> AfsPath {
        AfsPath::parse(s).unwrap()
    }

    fn grants(specs: &[&str]) -> Vec<Grant> {
        specs.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// What a resolution is asked: a symlink at a logical path leading to another, a
    /// mount point at one, the object reached.
    enum S<'a> {
        Link(&'a str, &'a str),
        Mount(&'a str),
        End(&'a str),
    }

    /// Runs `steps` through a walk of `named` (the first step's error, if any).
    fn walk(g: &[Grant], named: &str, want: Access, steps: &[S]) -> Result<(), afs::rpc::Error> {
        let mut w = GrantWalk::new(g, p(named), want);
        let node = afs::client::Node {
            cell: "c".into(),
            fid: afs::Fid::new(1, 1, 1),
            status: Default::default(),
            server: "127.0.0.1:7000".parse().unwrap(),
            callback: Default::default(),
            volume_type: afs::types::VolumeType::ReadWrite,
        };
        let mp = afs::path::MountPoint::parse(b"#test.").unwrap();
        for step in steps {
            match *step {
                S::Link(at, to) => w.check(&Step::Symlink {
                    at: &p(at),
                    text: "",
                    to: &p(to),
                })?,
                S::Mount(at) => w.check(&Step::MountPoint {
                    at: &p(at),
                    target: &mp,
                    cell: "c",
                })?,
                S::End(path) => w.check(&Step::Reached {
                    path: &p(path),
                    node: &node,
                })?,
            }
        }
        Ok(())
    }

    fn kind(r: Result<(), afs::rpc::Error>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind())
    }

    const G: &str = "/afs/c/test/g";

    #[test]
    fn symlinks_beneath_a_grant_stay_in_the_grants() {
        use S::*;
        let g = grants(&["/afs/c/test/g", "/afs/c/test/h:rw"]);
        let f = "/afs/c/test/g/l/f";
        // Inside the grant: fine.
        let inside = [Link("/afs/c/test/g/l", G), End("/afs/c/test/g/f")];
        assert_eq!(kind(walk(&g, f, Access::Read, &inside)), None);
        // Relative, absolute, another cell: out.
        for to in [
            "/afs/c/test/secret",
            "/afs/c/test",
            "/afs/other.cell/test/g",
        ] {
            let e = walk(&g, f, Access::Read, &[Link("/afs/c/test/g/l", to)]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Confined, "{to}");
            assert_eq!(
                e.to_string(),
                format!("symlink /afs/c/test/g/l leads to {to}, outside this guest's grants")
            );
        }
        // Into another grant: its access.
        let across = [
            Link("/afs/c/test/g/l", "/afs/c/test/h"),
            End("/afs/c/test/h/f"),
        ];
        assert_eq!(kind(walk(&g, f, Access::ReadWrite, &across)), None);
        let back = [Link("/afs/c/test/h/l", G), End("/afs/c/test/g/f")];
        let e = walk(&g, "/afs/c/test/h/l/f", Access::ReadWrite, &back).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly);
        assert_eq!(
            e.to_string(),
            "leads to /afs/c/test/g/f, granted read-only to this guest"
        );
        assert_eq!(
            kind(walk(&g, "/afs/c/test/h/l/f", Access::Read, &back)),
            None
        );
        // Named directly, read-write of a read-only grant.
        let e = walk(&g, f, Access::ReadWrite, &[End(f)]).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (
                ErrorKind::ReadOnly,
                "granted read-only to this guest".into()
            )
        );
    }

    #[test]
    fn mount_points_beneath_a_grant_lead_out_of_it() {
        use S::*;
        let f = "/afs/c/test/g/m/f";
        let steps = [Mount("/afs/c/test/g/m"), End(f)];
        let e = walk(&grants(&[G]), f, Access::Read, &steps).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Confined);
        assert!(
            e.to_string().starts_with(
                "mount point /afs/c/test/g/m leads to volume test of cell c, out of this \
                 guest's grant /afs/c/test/g"
            ),
            "{e}"
        );
        let with = grants(&["/afs/c/test/g:ro,mounts"]);
        assert_eq!(kind(walk(&with, f, Access::Read, &steps)), None);
        // Above the prefix and at the prefix: the operator's.
        let own = [
            Mount("/afs/c"),
            Mount("/afs/c/test"),
            Mount(G),
            End("/afs/c/test/g/f"),
        ];
        assert_eq!(
            kind(walk(&grants(&[G]), "/afs/c/test/g/f", Access::Read, &own)),
            None
        );
        // A grant's own mount point beneath another grant: the operator named it.
        let nested = grants(&["/afs/c", "/afs/c/test:rw"]);
        let steps = [Mount("/afs/c/test"), End("/afs/c/test/f")];
        assert_eq!(
            kind(walk(&nested, "/afs/c/test/f", Access::ReadWrite, &steps)),
            None
        );
        let other = [Mount("/afs/c/other"), End("/afs/c/other/f")];
        assert_eq!(
            kind(walk(&nested, "/afs/c/other/f", Access::Read, &other)),
            Some(ErrorKind::Confined)
        );
        // The case of the cell name does not matter.
        let upper = grants(&["/afs/C", "/afs/C/test:rw"]);
        assert_eq!(
            kind(walk(&upper, "/afs/c/test/f", Access::ReadWrite, &steps)),
            None
        );
        // Beneath both, the innermost grant's options apply.
        let nested = grants(&["/afs/c:ro,mounts", "/afs/c/test:rw"]);
        let deep = [Mount("/afs/c/test/m"), End("/afs/c/test/m/f")];
        assert_eq!(
            kind(walk(&nested, "/afs/c/test/m/f", Access::Read, &deep)),
            Some(ErrorKind::Confined)
        );
        let other = [Mount("/afs/c/other"), End("/afs/c/other/f")];
        assert_eq!(
            kind(walk(&nested, "/afs/c/other/f", Access::Read, &other)),
            None
        );
    }

    #[test]
    fn links_option_follows_symlinks_anywhere_with_the_grants_access() {
        use S::*;
        let f = "/afs/c/test/g/l/f";
        let out = [
            Link("/afs/c/test/g/l", "/afs/c/test/secret"),
            Mount("/afs/c/test/secret/m"),
            Link("/afs/c/test/secret/m/x", "/afs/o/y"),
            End("/afs/o/y/f"),
        ];
        assert_eq!(
            kind(walk(
                &grants(&["/afs/c/test/g:ro,links"]),
                f,
                Access::Read,
                &out
            )),
            None
        );
        assert_eq!(
            kind(walk(
                &grants(&["/afs/c/test/g:ro,links"]),
                f,
                Access::ReadWrite,
                &out
            )),
            Some(ErrorKind::ReadOnly)
        );
        assert_eq!(
            kind(walk(
                &grants(&["/afs/c/test/g:rw,links"]),
                f,
                Access::ReadWrite,
                &out
            )),
            None
        );
        // `links` is not `mounts`.
        let mount = [Mount("/afs/c/test/g/m")];
        assert_eq!(
            kind(walk(
                &grants(&["/afs/c/test/g:ro,links"]),
                f,
                Access::Read,
                &mount
            )),
            Some(ErrorKind::Confined)
        );
    }

    #[test]
    fn a_grants_own_path_is_followed_and_the_grant_goes_where_it_leads() {
        use S::*;
        let g = grants(&["/afs/c/test/g:rw"]);
        let f = "/afs/c/test/g/l/f";
        // /afs/c/test is a symlink to /afs/c/t2: the grant is /afs/c/t2/g as well.
        let steps = [
            Link("/afs/c/test", "/afs/c/t2"),
            Link("/afs/c/t2/g/l", "/afs/c/t2/g/x"),
            End("/afs/c/t2/g/x/f"),
        ];
        assert_eq!(kind(walk(&g, f, Access::ReadWrite, &steps)), None);
        let out = [
            Link("/afs/c/test", "/afs/c/t2"),
            Link("/afs/c/t2/g/l", "/afs/c/test/g/x"),
            End("/afs/c/test/g/x/f"),
        ];
        assert_eq!(kind(walk(&g, f, Access::ReadWrite, &out)), None);
        let out = [
            Link("/afs/c/test", "/afs/c/t2"),
            Link("/afs/c/t2/g/l", "/afs/c/t2/secret"),
        ];
        assert_eq!(
            kind(walk(&g, f, Access::Read, &out)),
            Some(ErrorKind::Confined)
        );
        // The prefix itself a symlink.
        let steps = [Link(G, "/afs/c/test/h"), End("/afs/c/test/h/f")];
        assert_eq!(
            kind(walk(&g, "/afs/c/test/g/f", Access::ReadWrite, &steps)),
            None
        );
        // Only where the walk goes, never elsewhere.
        let stray = [End("/afs/c/test/h/f")];
        assert_eq!(
            kind(walk(&g, "/afs/c/test/g/f", Access::Read, &stray)),
            Some(ErrorKind::Confined)
        );
        let stray = [Link("/afs/c/test/h/l", "/afs/c/test/g")];
        assert_eq!(
            kind(walk(&g, "/afs/c/test/g/f", Access::Read, &stray)),
            Some(ErrorKind::Confined)
        );
    }
}
