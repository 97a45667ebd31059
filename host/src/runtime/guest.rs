//! One guest: what the embedder configures ([`GuestConfig`]) and what its store holds
//! ([`GuestState`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use afs::cache::pages::FlushMode;
use afs::client::Node;
use afs::error::ErrorKind;
use afs::types::Fid;

use super::grants::Grant;
use super::http::NoOutgoingRequests;
use super::limits::{GuestLimits, Limiter};
use super::Shared;
use crate::filesystem::{AfsDescriptor, AfsPreopen, DirArg};
use crate::pager::{PagerError, PendingStore};

/// A directory the guest was given, in the order `get-directories` lists them.
#[derive(Debug, Clone)]
pub(crate) enum PreopenKind {
    /// The next of wasmtime-wasi's preopens.
    Local,
    /// An AFS directory, and its descriptor once opened (before the guest starts).
    Afs(Arc<AfsPreopen>, Option<Arc<AfsDescriptor>>),
}

/// What a guest may do and what it is given: grants, arguments, environment, stdio.
///
/// One configuration serves any number of runs (it is cloned into each guest's store),
/// and for an [`HttpHandler`](super::HttpHandler) it is every request's.
///
/// ```
/// use std::time::Duration;
/// use afs_wasm_host::runtime::{Access, Grant, GuestConfig, GuestLimits};
///
/// # fn main() -> anyhow::Result<()> {
/// let site = "/afs/example.org/site";
/// let guest = GuestConfig::new("render")
///     .arg("--verbose")
///     .env("TEMPLATE", format!("{site}/template.html"))
///     // std::fs in the guest sees the data directory as /data, read-only...
///     .afs_dir(Grant::new(&format!("{site}/data"), Access::Read, None)?, "/data")
///     // ...and it may map files anywhere under the site.
///     .grant(format!("{site}:ro").parse()?)
///     .inherit_stdio(false)
///     .limits(GuestLimits::default().timeout(Duration::from_secs(10)));
/// assert_eq!(guest.args, ["render", "--verbose"]);
/// assert_eq!(guest.limits.timeout, Some(Duration::from_secs(10)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct GuestConfig {
    /// Names the guest in logs (tracing spans); defaults to `args[0]`.
    pub name: Option<String>,
    /// The AFS trees the guest may open files in. None: it can open nothing.
    pub grants: Vec<Grant>,
    /// `argv`, program name first.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Give the guest this process's stdin, stdout and stderr (otherwise stdin is
    /// empty and output is dropped, unless captured).
    pub inherit_stdio: bool,
    /// Directories the guest sees through `wasi:filesystem` (`--dir`): AFS directories
    /// (each also a grant) and local ones. None by default.
    pub dirs: Vec<DirArg>,
    /// Collect the guest's stdout here instead (see [`GuestConfig::capture_stdout`]).
    pub stdout: Option<CapturedOutput>,
    /// What the guest may take from the host.
    pub limits: GuestLimits,
    /// Who the guest is to the cells' servers; None: the host client's identity. Guests
    /// of one host share its page store and callbacks whatever their identities, but each
    /// calls with its own token, and is given only what the servers said it may have.
    pub identity: Option<afs::Identity>,
}

/// A guest's captured standard output (bounded; cheap to clone).
#[derive(Debug, Clone)]
pub struct CapturedOutput(MemoryOutputPipe);

impl CapturedOutput {
    /// What the guest wrote so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.contents().to_vec()
    }
}

impl GuestConfig {
    /// A guest called `program` (its `argv[0]`) with stdio inherited, no grants, no
    /// directories, no environment, the host's identity and [`GuestLimits::default`].
    pub fn new(program: impl Into<String>) -> Self {
        GuestConfig {
            args: vec![program.into()],
            inherit_stdio: true,
            ..Default::default()
        }
    }

    /// Names the guest in logs (the `name` of its tracing span), to tell many guests of
    /// one program apart. Default: its `argv[0]`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Lets the guest open files under `grant`'s path (through `afs:client`, and
    /// through its AFS directories). A guest can open nothing it was not granted.
    /// Default: no grants.
    pub fn grant(mut self, grant: Grant) -> Self {
        self.grants.push(grant);
        self
    }

    /// [`GuestConfig::grant`] for each of `grants`.
    pub fn grants(mut self, grants: impl IntoIterator<Item = Grant>) -> Self {
        self.grants.extend(grants);
        self
    }

    /// Appends an argument to the guest's `argv`. Default: the program name only.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// [`GuestConfig::arg`] for each of `args`.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Gives the guest a directory for `wasi:filesystem` (`--dir`), so that unmodified
    /// programs (`std::fs`, `fopen`) reach it: an AFS one (a grant too) or a local one.
    /// Default: no directories.
    pub fn dir(mut self, dir: DirArg) -> Self {
        self.dirs.push(dir);
        self
    }

    /// Gives the guest the AFS directory of `grant` at `guest_path` for
    /// `wasi:filesystem`, with the grant's access and options; the grant also covers
    /// opens through `afs:client`. The typed form of
    /// `dir(DirArg::parse("/afs/...::GUEST_PATH:ro", ..))`.
    pub fn afs_dir(self, grant: Grant, guest_path: impl Into<String>) -> Self {
        self.dir(DirArg::Afs {
            grant,
            guest: guest_path.into(),
        })
    }

    /// Runs the guest as `identity`: a service that runs guests for several users gives
    /// each its own token. They still share the host's page store and callbacks, and
    /// each is given only what the servers say it may have. Default: the host client's
    /// identity.
    pub fn identity(mut self, identity: afs::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// What the guest may take from the host (memory, time, mappings, copies): raise
    /// them for a guest known to need more, lower them for untrusted ones. Default:
    /// [`GuestLimits::default`].
    pub fn limits(mut self, limits: GuestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets an environment variable of the guest. Default: an empty environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// [`GuestConfig::env`] for each pair of `vars`.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Whether the guest gets this process's stdin, stdout and stderr: on for a command
    /// run as a program, off for guests whose output would interleave (request
    /// handlers, many guests at once), which then read an empty stdin and whose output
    /// is dropped unless captured ([`GuestConfig::capture_stdout`]). Default: on.
    pub fn inherit_stdio(mut self, inherit: bool) -> Self {
        self.inherit_stdio = inherit;
        self
    }

    /// Captures stdout (up to `limit` bytes) instead of inheriting it; read it from the
    /// returned handle after the guest ran. It takes `&mut self` because it returns
    /// that handle.
    pub fn capture_stdout(&mut self, limit: usize) -> CapturedOutput {
        let out = CapturedOutput(MemoryOutputPipe::new(limit));
        self.stdout = Some(out.clone());
        out
    }

    /// The name for logs.
    pub(crate) fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.args.first().cloned())
            .unwrap_or_else(|| "guest".into())
    }

    fn wasi(&self) -> anyhow::Result<WasiCtx> {
        let mut b = WasiCtxBuilder::new();
        if self.inherit_stdio {
            b.inherit_stdio();
        }
        if let Some(out) = &self.stdout {
            b.stdout(out.0.clone());
        }
        b.args(&self.args).envs(&self.env);
        for dir in &self.dirs {
            if let DirArg::Local {
                host,
                guest,
                writable,
            } = dir
            {
                let perms = if *writable {
                    FsPerms::ReadWrite
                } else {
                    FsPerms::ReadOnly
                };
                b.preopened_dir(host, guest, perms)
                    .map_err(|e| anyhow::anyhow!("cannot preopen {}: {e}", host.display()))?;
            }
        }
        Ok(b.build())
    }

    /// The guest's grants: its own, and its AFS directories'.
    fn all_grants(&self) -> Vec<Grant> {
        let dirs = self.dirs.iter().filter_map(|d| match d {
            DirArg::Afs { grant, .. } => Some(grant.clone()),
            DirArg::Local { .. } => None,
        });
        self.grants.iter().cloned().chain(dirs).collect()
    }

    fn preopens(&self) -> Vec<PreopenKind> {
        self.dirs
            .iter()
            .map(|d| match d {
                DirArg::Afs { grant, guest } => {
                    let preopen = AfsPreopen::new(grant.clone(), guest.clone());
                    PreopenKind::Afs(Arc::new(preopen), None)
                }
                DirArg::Local { .. } => PreopenKind::Local,
            })
            .collect()
    }
}

/// The AFS side of a guest's store.
pub(crate) struct AfsCtx {
    pub(crate) host: Arc<Shared>,
    pub(crate) grants: Vec<Grant>,
    /// The directories of `wasi:filesystem`'s `get-directories`.
    pub(crate) preopens: Vec<PreopenKind>,
    /// Bases of the memories the guest's mappings went into (to explain its traps).
    pub(crate) memory_bases: Vec<usize>,
    /// Live `mapping` resources, unmapped at exit if the guest did not drop them.
    pub(crate) mappings: BTreeSet<u32>,
    /// Bytes the live mappings cover (page-rounded), against `limits.max_mapped_bytes`.
    pub(crate) mapped_bytes: u64,
    /// Files the guest wrote by copy and has not closed: stored at close or exit.
    pub(crate) written: HashMap<Fid, (String, Node)>,
    /// Stores retried in the background because no fileserver answered.
    pub(crate) pending: Vec<PendingStore>,
    /// Stores that failed for good, as messages naming the file: the guest's run fails.
    pub(crate) unstored: Vec<String>,
}

impl AfsCtx {
    /// Remembers that the guest may have written the file at `path`: closing it (or
    /// exiting) stores it.
    pub(crate) fn note_written(&mut self, path: impl FnOnce() -> String, node: &Node) {
        self.written
            .entry(node.fid)
            .or_insert_with(|| (path(), node.clone()));
    }

    /// Stores what the guest wrote to the file (at close, unmap or exit).
    pub(crate) fn store_on_close(&mut self, path: &str, node: &Node) {
        let result = self
            .host
            .pager
            .sync_file(&self.host.cache, node, FlushMode::Normal);
        self.stored(path, node, result.map(drop));
    }

    /// Takes the outcome of a store the guest cannot be told about: an unreachable
    /// server gets background retries, any other failure fails the guest's run.
    pub(crate) fn stored(&mut self, path: &str, node: &Node, result: Result<(), PagerError>) {
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::ServerUnreachable => {
                let pending = self
                    .host
                    .pager
                    .store_in_background(&self.host.cache, path, node);
                self.pending.push(pending);
            }
            Err(e) => self.unstored(path, &e),
        }
    }

    fn unstored(&mut self, path: &str, e: &PagerError) {
        tracing::warn!(%path, error = %e, "written data not stored");
        self.unstored
            .push(format!("{path}: written data not stored: {e}"));
    }

    /// At exit, after the mappings are gone: stores the files still open, waits for
    /// the background stores, and returns every failure.
    pub(crate) fn finish_stores(&mut self) -> Vec<String> {
        for (_, (path, node)) in std::mem::take(&mut self.written) {
            self.store_on_close(&path, &node);
        }
        for pending in std::mem::take(&mut self.pending) {
            let path = pending.path().to_string();
            if let Err(e) = pending.wait() {
                self.unstored(&path, &e);
            }
        }
        std::mem::take(&mut self.unstored)
    }
}

/// The data of a guest's `Store`.
pub(crate) struct GuestState {
    pub(crate) wasi: WasiCtx,
    /// For handlers (`wasi:http`); commands never link it.
    http: WasiHttpCtx,
    http_hooks: NoOutgoingRequests,
    pub(crate) table: ResourceTable,
    pub(crate) afs: AfsCtx,
    pub(crate) limiter: Limiter,
}

impl GuestState {
    pub(crate) fn new(host: Arc<Shared>, config: &GuestConfig) -> anyhow::Result<Self> {
        let host = match &config.identity {
            Some(identity) => host.as_identity(identity.clone()),
            None => host,
        };
        Ok(GuestState {
            wasi: config.wasi()?,
            http: WasiHttpCtx::new(),
            http_hooks: NoOutgoingRequests,
            table: ResourceTable::new(),
            afs: AfsCtx {
                host,
                grants: config.all_grants(),
                preopens: config.preopens(),
                memory_bases: Vec::new(),
                mappings: BTreeSet::new(),
                mapped_bytes: 0,
                written: HashMap::new(),
                pending: Vec::new(),
                unstored: Vec::new(),
            },
            limiter: Limiter::new(config.limits.clone()),
        })
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}
