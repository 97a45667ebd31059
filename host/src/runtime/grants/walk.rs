//! The confinement of a resolution by a guest's grants.

use afs::client::{Confinement, Step};
use afs::error::ErrorKind;
use afs::path::AfsPath;

use super::{granted, Grant};
use crate::pager::Access;

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
                        root: to.root,
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
