//! What `--dir` gives a guest: a directory, AFS or local, under a name of its choice.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::Resource;

use super::bindings::wasi::filesystem::preopens;
use super::errors::FsError;
use super::{AfsDescriptor, Descriptor};
use crate::pager::Access;
use crate::runtime::{BadPath, Grant, GuestState, PreopenKind};

/// A directory to preopen, as `--dir HOST[::GUEST][:ro|:rw][,mounts][,links]` names
/// it (wasmtime run's syntax, with the access and grant options of `--grant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirArg {
    /// An `/afs/...` directory: a grant the guest sees at `guest`.
    Afs { grant: Grant, guest: String },
    /// A local directory, served by wasmtime-wasi.
    Local {
        host: PathBuf,
        guest: String,
        writable: bool,
    },
}

/// The words a `--dir` may end with after a `:`.
const WORDS: [&str; 4] = ["ro", "rw", "mounts", "links"];

impl DirArg {
    /// Parses `HOST[::GUEST][:WORD[,WORD]...]`. GUEST defaults to HOST, the access to
    /// read-write (as `wasmtime run --dir` gives). HOST is AFS when it starts with
    /// `/afs/`; `mounts` and `links` are for AFS directories only.
    pub fn parse(s: &str, default_cell: Option<&str>) -> Result<Self, BadPath> {
        let (spec, words): (&str, Vec<&str>) = match s.rsplit_once(':') {
            Some((spec, suffix))
                if !spec.ends_with(':') && suffix.split(',').all(|w| WORDS.contains(&w)) =>
            {
                (spec, suffix.split(',').collect())
            }
            _ => (s, Vec::new()),
        };
        let (host, guest) = match spec.split_once("::") {
            Some((h, g)) => (h, g),
            None => (spec, spec),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(BadPath(format!(
                "{s}: expected HOST[::GUEST][:ro|:rw][,mounts][,links]"
            )));
        }
        let count = |w: &str| words.iter().filter(|x| **x == w).count();
        if count("ro") + count("rw") > 1 {
            return Err(BadPath(format!("{s}: ro or rw, once")));
        }
        let access = if count("ro") == 1 {
            Access::Read
        } else {
            Access::ReadWrite
        };
        if host.starts_with("/afs/") {
            let grant = Grant::new(host, access, default_cell)?
                .with_mounts(count("mounts") > 0)
                .with_links(count("links") > 0);
            return Ok(DirArg::Afs {
                grant,
                guest: guest.to_string(),
            });
        }
        if count("mounts") + count("links") > 0 {
            return Err(BadPath(format!(
                "{s}: mounts and links are options of AFS directories"
            )));
        }
        Ok(DirArg::Local {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            writable: access == Access::ReadWrite,
        })
    }

    /// The name the guest sees the directory by.
    pub fn guest(&self) -> &str {
        match self {
            DirArg::Afs { guest, .. } | DirArg::Local { guest, .. } => guest,
        }
    }
}

/// An AFS directory preopened for a guest: the root its descriptors descend from.
#[derive(Debug)]
pub struct AfsPreopen {
    /// Confines every resolution beneath the directory (and gives its access).
    pub(crate) grant: Grant,
    pub(crate) guest: String,
}

impl AfsPreopen {
    pub(crate) fn new(grant: Grant, guest: String) -> Self {
        AfsPreopen { grant, guest }
    }

    pub(crate) fn writable(&self) -> bool {
        self.grant.access() == Access::ReadWrite
    }
}

/// Why a preopened AFS directory could not be opened, naming it.
fn preopen_failed(preopen: &AfsPreopen, e: FsError) -> wasmtime::Error {
    match e {
        FsError::Trap(e) => e,
        FsError::Code(code) => wasmtime::Error::msg(format!(
            "cannot preopen {}: {}",
            preopen.grant.prefix(),
            code
        )),
    }
}

impl GuestState {
    /// Opens the guest's AFS directories before it starts, as wasmtime opens local ones
    /// when it builds the guest's context: one that cannot be opened fails the run,
    /// naming it.
    pub(crate) async fn open_preopens(&mut self) -> wasmtime::Result<()> {
        for kind in &mut self.afs.preopens {
            if let PreopenKind::Afs(preopen, opened @ None) = kind {
                match AfsDescriptor::preopened(&self.afs.host, preopen.clone()).await {
                    Ok(d) => *opened = Some(Arc::new(d)),
                    Err(e) => return Err(preopen_failed(preopen, e)),
                }
            }
        }
        Ok(())
    }
}

impl preopens::Host for GuestState {
    async fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let locals = wasmtime_wasi::p2::bindings::filesystem::preopens::Host::get_directories(
            &mut self.local(),
        )?;
        let mut locals = locals.into_iter();
        let mut out = Vec::new();
        for kind in self.afs.preopens.clone() {
            match kind {
                PreopenKind::Local => {
                    let (fd, name) = locals
                        .next()
                        .ok_or_else(|| wasmtime::Error::msg("a local preopen went missing"))?;
                    out.push((self.table.push(Descriptor::Local(fd))?, name));
                }
                PreopenKind::Afs(preopen, opened) => {
                    let d = match opened {
                        Some(d) => d,
                        None => {
                            match AfsDescriptor::preopened(&self.afs.host, preopen.clone()).await {
                                Ok(d) => Arc::new(d),
                                Err(e) => return Err(preopen_failed(&preopen, e)),
                            }
                        }
                    };
                    out.push((self.table.push(Descriptor::Afs(d))?, preopen.guest.clone()));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn afs(s: &str) -> (String, String, Access, bool, bool) {
        match DirArg::parse(s, Some("c.org")).unwrap() {
            DirArg::Afs { grant, guest } => (
                grant.prefix(),
                guest,
                grant.access(),
                grant.crosses_mounts(),
                grant.follows_links(),
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dirs_parse_as_wasmtime_run_takes_them() {
        let rw = Access::ReadWrite;
        assert_eq!(
            afs("/afs/c.org/data"),
            (
                "/afs/c.org/data".into(),
                "/afs/c.org/data".into(),
                rw,
                false,
                false
            )
        );
        assert_eq!(
            afs("/afs/c.org/data::/data:ro,mounts"),
            (
                "/afs/c.org/data".into(),
                "/data".into(),
                Access::Read,
                true,
                false
            )
        );
        assert_eq!(
            afs("/afs/c.org/data::.:rw,links"),
            ("/afs/c.org/data".into(), ".".into(), rw, false, true)
        );
        // A guest name that looks like an option word is a name after `::`.
        assert_eq!(
            afs("/afs/c.org/data::ro"),
            ("/afs/c.org/data".into(), "ro".into(), rw, false, false)
        );
        assert_eq!(
            DirArg::parse("/tmp/x::/x:ro", None).unwrap(),
            DirArg::Local {
                host: "/tmp/x".into(),
                guest: "/x".into(),
                writable: false
            }
        );
        assert_eq!(
            DirArg::parse("work", None).unwrap(),
            DirArg::Local {
                host: "work".into(),
                guest: "work".into(),
                writable: true
            }
        );
        assert!(DirArg::parse("/tmp/x:mounts", None).is_err());
        assert!(DirArg::parse("/afs/c.org/x:ro,rw", None).is_err());
        assert!(DirArg::parse("::/x", None).is_err());
    }
}
