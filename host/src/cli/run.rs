//! `afs-wasm run`: runs a command guest with AFS grants, in the spirit of `wasmtime run`
//! (stdio inherited, args passed, the guest's exit code becomes ours).
//!
//! It runs on the calling thread, outside any tokio runtime: the host has its own AFS
//! runtime, and WASI's sync bindings must not run inside another.

use std::path::PathBuf;
use std::time::Duration;

use afs::client::ClientConfig;
use afs_wasm_host::pager::{OnUnreachable, PagerConfig};
use afs_wasm_host::runtime::{
    parse_bytes, parse_duration, Grant, GuestConfig, GuestLimits, Host, HostConfig,
};
use anyhow::{bail, Context, Result};

/// What `run` was asked to do.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Let the guest open files under PATH (`/afs/CELL/PATH`, or relative to the default
    /// cell), read-only (`:ro`, the default) or read-write (`:rw`). Without grants a
    /// guest can open nothing. The grant holds on what a path resolves to: beneath PATH,
    /// a symlink is followed only if it leads under one of the guest's grants, and a
    /// mount point is not crossed (it leads out of the grant); a read-write open needs a
    /// read-write grant where the path ends. Options after the access, comma-separated:
    /// `mounts` (mount points beneath PATH count as inside) and `links` (symlinks beneath
    /// PATH may lead anywhere, with this grant's access), e.g.
    /// `--grant /afs/example.org/data:rw,mounts`.
    #[arg(long = "grant", value_name = "PATH[:ro|:rw][,mounts][,links]")]
    pub grants: Vec<String>,
    /// What a page fault does when no fileserver answers: serve the cached bytes
    /// (`stale`), trap naming the file (`trap`), or retry up to SECS, then trap.
    #[arg(long, value_name = "stale|trap|wait=SECS", value_parser = parse_on_unreachable)]
    pub on_unreachable: Option<OnUnreachable>,
    /// Set an environment variable for the guest.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// wasmtime-style options, comma-separated: `max-memory-size=BYTES` (each linear
    /// memory; default 1G) and `timeout=DURATION` (wall-clock run time, like `10s`;
    /// default none). A guest past a limit traps with a message naming it.
    #[arg(short = 'W', value_name = "KEY=VALUE[,...]")]
    pub wasm: Vec<String>,
    /// Most mappings the guest may hold at once (default 1024).
    #[arg(long, value_name = "N")]
    pub max_mappings: Option<usize>,
    /// Most bytes of file pages the guest may keep mapped at once, pages past the end of
    /// a file included (default 1G).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_mapped_bytes: Option<u64>,
    /// Most bytes one `read` or `write` by copy may carry (default 64M).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_copy_bytes: Option<u64>,
    /// How long a store at unmap, close or exit is retried while no fileserver answers
    /// (default 30s); then the run fails, naming the file.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub store_retry: Option<Duration>,
    /// The guest component (wasm32-wasip2), then its arguments. Everything after
    /// GUEST.wasm goes to the guest, options included.
    #[arg(
        value_name = "GUEST.wasm [ARGS]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

fn parse_on_unreachable(s: &str) -> Result<OnUnreachable, String> {
    match s {
        "stale" => Ok(OnUnreachable::Stale),
        "trap" => Ok(OnUnreachable::Trap),
        _ => {
            let secs = s
                .strip_prefix("wait=")
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("{s:?}: expected stale, trap or wait=SECS"))?;
            Ok(OnUnreachable::Wait(Duration::from_secs_f64(secs)))
        }
    }
}

/// The guest's limits: the defaults, then `-W` and the `--max-*` flags.
fn limits(args: &RunArgs) -> Result<GuestLimits> {
    let mut limits = GuestLimits::default();
    for opt in args.wasm.iter().flat_map(|w| w.split(',')) {
        let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
        match key {
            "max-memory-size" => {
                limits.max_memory_bytes = parse_bytes(value).map_err(anyhow::Error::msg)?
            }
            "timeout" => limits.timeout = Some(parse_duration(value).map_err(anyhow::Error::msg)?),
            _ => bail!("-W {opt}: unknown option (known: max-memory-size=BYTES, timeout=DURATION)"),
        }
    }
    if let Some(n) = args.max_mappings {
        limits.max_mappings = n;
    }
    if let Some(n) = args.max_mapped_bytes {
        limits.max_mapped_bytes = n;
    }
    if let Some(n) = args.max_copy_bytes {
        limits.max_copy_bytes = n;
    }
    Ok(limits)
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Runs the guest; returns its exit code.
pub fn run(client: ClientConfig, cell: Option<String>, args: RunArgs) -> Result<i32> {
    let limits = limits(&args)?;
    let mut command = args.command.into_iter();
    let wasm = PathBuf::from(command.next().context("no guest given")?);
    if !wasm.is_file() {
        bail!("{}: no such file", wasm.display());
    }
    let mut pager = PagerConfig::default();
    if let Some(policy) = args.on_unreachable {
        pager.on_unreachable = policy;
    }
    if let Some(bound) = args.store_retry {
        pager.store_retry = bound;
    }
    let mut config = HostConfig::new(client, pager);
    config.default_cell = cell;
    let host = Host::new(config)?;
    let grants = args
        .grants
        .iter()
        .map(|g| Grant::parse(g, host.default_cell()))
        .collect::<Result<Vec<_>, _>>()
        .context("bad --grant")?;
    for g in &grants {
        tracing::debug!(grant = %g, "grant");
    }
    // argv[0] is the file name, as `wasmtime run` passes it.
    let program = wasm.file_name().map_or_else(
        || wasm.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut guest = GuestConfig::new(program);
    guest.grants = grants;
    guest.args.extend(command);
    guest.env = args.env;
    guest.limits = limits;
    let result = host.run_command(&wasm, guest);
    host.shutdown();
    result
}
