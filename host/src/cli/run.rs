//! `afs-wasm run`: runs a command guest with AFS grants, in the spirit of `wasmtime run`
//! (stdio inherited, args passed, the guest's exit code becomes ours).
//!
//! It runs on the calling thread, outside any tokio runtime: the host has its own AFS
//! runtime, and WASI's sync bindings must not run inside another.

use std::path::PathBuf;
use std::time::Duration;

use afs::client::ClientConfig;
use afs_wasm_host::pager::{OnUnreachable, PagerConfig};
use afs_wasm_host::runtime::{Grant, GuestConfig, Host, HostConfig};
use anyhow::{bail, Context, Result};

/// What `run` was asked to do.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Let the guest open files under PATH (`/afs/CELL/PATH`, or relative to the default
    /// cell), read-only (`:ro`, the default) or read-write (`:rw`). Without grants a
    /// guest can open nothing.
    #[arg(long = "grant", value_name = "PATH[:ro|:rw]")]
    pub grants: Vec<String>,
    /// What a page fault does when no fileserver answers: serve the cached bytes
    /// (`stale`), trap naming the file (`trap`), or retry up to SECS, then trap.
    #[arg(long, value_name = "stale|trap|wait=SECS", value_parser = parse_on_unreachable)]
    pub on_unreachable: Option<OnUnreachable>,
    /// Set an environment variable for the guest.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
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

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Runs the guest; returns its exit code.
pub fn run(client: ClientConfig, cell: Option<String>, args: RunArgs) -> Result<i32> {
    let mut command = args.command.into_iter();
    let wasm = PathBuf::from(command.next().context("no guest given")?);
    if !wasm.is_file() {
        bail!("{}: no such file", wasm.display());
    }
    let mut pager = PagerConfig::default();
    if let Some(policy) = args.on_unreachable {
        pager.on_unreachable = policy;
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
    let result = host.run_command(&wasm, guest);
    host.shutdown();
    result
}
