//! `afs-wasm run`: runs a command guest with AFS grants, in the spirit of `wasmtime run`
//! (stdio inherited, args passed, the guest's exit code becomes ours; components and
//! wasm32-wasip1 modules; `-W` for limits and wasm proposals, `-C cache` for the code
//! cache, with wasmtime's names).
//!
//! It runs on the calling thread, outside any tokio runtime: the host has its own AFS
//! runtime, and WASI's sync bindings must not run inside another.

use std::path::PathBuf;
use std::time::Duration;

use afs::client::ClientConfig;
use afs_wasm_host::filesystem::DirArg;
use afs_wasm_host::pager::{OnUnreachable, PagerConfig};
use afs_wasm_host::runtime::{
    parse_bytes, parse_duration, CodeCache, FeatureError, Grant, GuestConfig, GuestLimits, Host,
    HostConfig, WasmFeature, WasmFeatures,
};
use anyhow::{bail, Context, Result};

/// What `run` was asked to do.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub guest: GuestArgs,
    /// The guest: a command component (wasm32-wasip2) or a wasm32-wasip1 command
    /// module (run through the WASI preview1 adapter), then its arguments. Everything
    /// after GUEST.wasm goes to the guest, options included.
    #[arg(
        value_name = "GUEST.wasm [ARGS]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// What a guest is given and how it is run: `run`'s and `serve`'s options.
#[derive(Debug, clap::Args)]
pub struct GuestArgs {
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
    /// Give the guest a directory for `wasi:filesystem` (std::fs, fopen, ...), as
    /// `wasmtime run --dir` does: HOST seen by the guest as GUEST (default: HOST). After
    /// a last `:`, comma-separated options: `ro` or `rw` (the default), and for AFS
    /// directories `mounts` and `links` as for --grant. HOST is an `/afs/...` directory
    /// (served from the AFS cache, coherent, and a grant too) or a local one. E.g.
    /// `--dir /afs/example.org/data::/data:ro,mounts`.
    #[arg(long = "dir", value_name = "HOST[::GUEST][:ro|rw[,mounts][,links]]")]
    pub dirs: Vec<String>,
    /// What a page fault does when no fileserver answers: serve the cached bytes
    /// (`stale`), trap naming the file (`trap`), or retry up to SECS, then trap.
    #[arg(long, value_name = "stale|trap|wait=SECS", value_parser = parse_on_unreachable)]
    pub on_unreachable: Option<OnUnreachable>,
    /// Set an environment variable for the guest.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// wasmtime-style options, comma-separated (`-W help` lists them):
    /// `max-memory-size=BYTES` (each linear memory; default 1G), `timeout=DURATION`
    /// (wall-clock run time, like `10s`; default none), and wasm proposals by wasmtime's
    /// names, `NAME[=y|n]`: on by default `exceptions`, `gc`, `function-references`,
    /// `reference-types`, `tail-call`, `simd`, `relaxed-simd`, `multi-memory`,
    /// `memory64`, `bulk-memory`, `multi-value`, `extended-const`; off by default
    /// `wide-arithmetic`, `custom-page-sizes`. `threads` is refused: guest memories
    /// cannot be shared. A guest past a limit traps with a message naming it.
    #[arg(short = 'W', long = "wasm", value_name = "KEY[=VALUE][,...]")]
    pub wasm: Vec<String>,
    /// Compilation options, comma-separated, as wasmtime's `-C`: `cache[=y|n]` (keep
    /// compiled code on disk between runs, in $XDG_CACHE_HOME/afs-wasm or
    /// ~/.cache/afs-wasm; default y; a directory that cannot be written means no cache)
    /// and `cache-config=FILE` (a wasmtime cache configuration, TOML).
    #[arg(short = 'C', long = "codegen", value_name = "KEY[=VALUE][,...]")]
    pub codegen: Vec<String>,
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
    /// Run the guest as the identity of this token file (`afs-wasm login --out FILE`)
    /// instead of the user's tokens; the host's cache is still shared.
    #[arg(long, value_name = "FILE", conflicts_with = "keytab")]
    pub token: Option<PathBuf>,
    /// Run the guest as PRINCIPAL with its key from this keytab (a service's identity);
    /// the token is renewed before it expires.
    #[arg(long, value_name = "FILE", requires = "principal")]
    pub keytab: Option<PathBuf>,
    #[arg(long, value_name = "PRINCIPAL", requires = "keytab")]
    pub principal: Option<String>,
    /// How long a store at unmap, close or exit is retried while no fileserver answers
    /// (default 30s); then the run fails, naming the file.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub store_retry: Option<Duration>,
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

/// What `-W` says.
#[derive(Debug, Default, PartialEq)]
struct WasmOptions {
    max_memory_size: Option<u64>,
    timeout: Option<Duration>,
    features: WasmFeatures,
}

/// The `-W` keys that are not wasm features.
const WASM_LIMITS: &str = "max-memory-size=BYTES, timeout=DURATION";

/// `-W help`.
fn wasm_help() -> String {
    let mut help = String::from(
        "-W options (comma-separated, or -W repeated):\n  \
         max-memory-size=BYTES  most bytes each linear memory may grow to (default 1G)\n  \
         timeout=DURATION       wall-clock time the guest may run (default none)\n\
         wasm proposals, NAME[=y|n] (NAME alone: y):\n",
    );
    for f in WasmFeature::all() {
        let default = if f.default_enabled() { "y" } else { "n" };
        help.push_str(&format!("  {:<22} default {default}\n", f.name()));
    }
    help.push_str("refused: threads, shared-memory (guest memories cannot be shared)\n");
    help
}

/// `-C help`.
const CODEGEN_HELP: &str = "-C options (comma-separated, or -C repeated):\n  \
    cache[=y|n]        keep compiled code on disk between runs (default y), in \
    $XDG_CACHE_HOME/afs-wasm or ~/.cache/afs-wasm\n  \
    cache-config=FILE  a wasmtime cache configuration file (TOML) to use instead\n";

/// A wasmtime-style boolean: nothing, `y`, `yes`, `true`, or `n`, `no`, `false`.
fn parse_flag(opt: &str, value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("y" | "yes" | "true") => Ok(true),
        Some("n" | "no" | "false") => Ok(false),
        Some(v) => bail!("{opt}: {v:?} is not y or n"),
    }
}

/// Each `KEY[=VALUE]` of comma-separated option lists.
fn options(values: &[String]) -> impl Iterator<Item = (&str, &str, Option<&str>)> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|o| !o.is_empty())
        .map(|opt| match opt.split_once('=') {
            Some((key, value)) => (opt, key, Some(value)),
            None => (opt, opt, None),
        })
}

/// Parses `-W` values.
fn parse_wasm_options(values: &[String]) -> Result<WasmOptions> {
    let mut w = WasmOptions::default();
    for (opt, key, value) in options(values) {
        let value_of = || value.with_context(|| format!("-W {key}: needs a value ({key}=...)"));
        match key {
            "max-memory-size" => {
                w.max_memory_size =
                    Some(parse_bytes(value_of()?).map_err(|e| anyhow::anyhow!("-W {opt}: {e}"))?)
            }
            "timeout" => {
                w.timeout = Some(
                    parse_duration(value_of()?).map_err(|e| anyhow::anyhow!("-W {opt}: {e}"))?,
                )
            }
            _ => {
                let feature = WasmFeature::from_name(key).map_err(|e| match e {
                    FeatureError::Unknown(_) => anyhow::anyhow!(
                        "-W {e} (known: {WASM_LIMITS}, {}; -W help describes them)",
                        WasmFeature::all()
                            .map(|f| format!("{f}[=y|n]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    FeatureError::Refused { .. } => anyhow::anyhow!("-W {e}"),
                })?;
                w.features
                    .set(feature, parse_flag(&format!("-W {key}"), value)?);
            }
        }
    }
    Ok(w)
}

/// Parses `-C` values into the code cache to use.
fn parse_codegen_options(values: &[String]) -> Result<CodeCache> {
    let (mut cache, mut config) = (true, None);
    for (_, key, value) in options(values) {
        match key {
            "cache" => cache = parse_flag("-C cache", value)?,
            "cache-config" => {
                let file = value.filter(|v| !v.is_empty());
                config = Some(PathBuf::from(
                    file.context("-C cache-config: needs a FILE")?,
                ));
            }
            _ => bail!("-C {key}: unknown option (known: cache[=y|n], cache-config=FILE)"),
        }
    }
    Ok(match (cache, config) {
        (false, _) => CodeCache::Off,
        (true, Some(file)) => CodeCache::ConfigFile(file),
        (true, None) => CodeCache::Default,
    })
}

/// The guest's limits: the defaults, then `-W` and the `--max-*` flags.
fn limits(args: &GuestArgs, wasm: &WasmOptions) -> Result<GuestLimits> {
    let mut limits = GuestLimits::default();
    if let Some(n) = wasm.max_memory_size {
        limits.max_memory_bytes = n;
    }
    if wasm.timeout.is_some() {
        limits.timeout = wasm.timeout;
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
pub fn run(
    client: ClientConfig,
    cell: Option<String>,
    level: rx::rxkad::Level,
    args: RunArgs,
) -> Result<i32> {
    let mut command = args.command.into_iter();
    let wasm = PathBuf::from(command.next().context("no guest given")?);
    let Some((host, mut guest)) = prepare(client, cell, level, args.guest, &wasm)? else {
        return Ok(0);
    };
    guest.args.extend(command);
    let result = host.run_command(&wasm, guest);
    host.shutdown();
    result
}

/// The host and the guest's configuration that `args` describe, for the guest in `wasm`;
/// None when they only asked for help (`-W help`, `-C help`), which is printed.
pub fn prepare(
    client: ClientConfig,
    cell: Option<String>,
    level: rx::rxkad::Level,
    args: GuestArgs,
    wasm: &std::path::Path,
) -> Result<Option<(Host, GuestConfig)>> {
    let asks_help = |values: &[String]| options(values).any(|(opt, _, _)| opt == "help");
    if asks_help(&args.wasm) || asks_help(&args.codegen) {
        if asks_help(&args.wasm) {
            print!("{}", wasm_help());
        }
        if asks_help(&args.codegen) {
            print!("{CODEGEN_HELP}");
        }
        return Ok(None);
    }
    let wasm_options = parse_wasm_options(&args.wasm)?;
    let code_cache = parse_codegen_options(&args.codegen)?;
    let limits = limits(&args, &wasm_options)?;
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
    config.wasm_features = wasm_options.features;
    config.code_cache = code_cache;
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
    let dirs = args
        .dirs
        .iter()
        .map(|d| DirArg::parse(d, host.default_cell()))
        .collect::<Result<Vec<_>, _>>()
        .context("bad --dir")?;
    let mut guest = GuestConfig::new(program);
    guest.identity = super::auth::guest_identity(
        args.token.as_deref(),
        args.keytab.as_deref().zip(args.principal.as_deref()),
        host.default_cell(),
        level,
    )?;
    guest.grants = grants;
    guest.dirs = dirs;
    guest.env = args.env;
    guest.limits = limits;
    Ok(Some((host, guest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(values: &[&str]) -> Result<WasmOptions> {
        parse_wasm_options(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    fn c(values: &[&str]) -> Result<CodeCache> {
        parse_codegen_options(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn wasm_options_take_limits_and_features() {
        assert_eq!(w(&[]).unwrap(), WasmOptions::default());
        let o = w(&[
            "max-memory-size=64M,timeout=2s",
            "exceptions=n",
            "wide-arithmetic",
        ])
        .unwrap();
        assert_eq!(o.max_memory_size, Some(64 << 20));
        assert_eq!(o.timeout, Some(Duration::from_secs(2)));
        assert_eq!(o.features.get(WasmFeature::Exceptions), Some(false));
        assert_eq!(o.features.get(WasmFeature::WideArithmetic), Some(true));
        assert_eq!(o.features.get(WasmFeature::Gc), None);
        // wasmtime's booleans; the last word wins.
        for (v, on) in [
            ("y", true),
            ("yes", true),
            ("true", true),
            ("n", false),
            ("no", false),
        ] {
            let o = w(&[&format!("tail-call={v}")]).unwrap();
            assert_eq!(o.features.get(WasmFeature::TailCall), Some(on), "{v}");
        }
        let o = w(&["simd=n", "simd"]).unwrap();
        assert_eq!(o.features.get(WasmFeature::Simd), Some(true));
        for name in [
            "exceptions",
            "gc",
            "function-references",
            "tail-call",
            "simd",
            "relaxed-simd",
            "multi-memory",
            "memory64",
        ] {
            assert!(w(&[name]).is_ok(), "{name}");
        }
    }

    #[test]
    fn bad_wasm_options_say_what_is_wrong() {
        let e = w(&["threads"]).unwrap_err().to_string();
        assert!(
            e.contains("threads: not supported") && !e.contains("known:"),
            "{e}"
        );
        let e = w(&["frob=1"]).unwrap_err().to_string();
        assert!(
            e.contains("unknown") && e.contains("exceptions[=y|n]"),
            "{e}"
        );
        let e = w(&["exceptions=maybe"]).unwrap_err().to_string();
        assert!(e.contains("not y or n"), "{e}");
        let e = w(&["timeout"]).unwrap_err().to_string();
        assert!(e.contains("needs a value"), "{e}");
        assert!(w(&["max-memory-size=lots"]).is_err());
        assert!(wasm_help().contains("exceptions") && wasm_help().contains("default y"));
    }

    #[test]
    fn codegen_options_choose_the_cache() {
        assert_eq!(c(&[]).unwrap(), CodeCache::Default);
        assert_eq!(c(&["cache"]).unwrap(), CodeCache::Default);
        assert_eq!(c(&["cache=n"]).unwrap(), CodeCache::Off);
        assert_eq!(
            c(&["cache-config=/etc/w.toml"]).unwrap(),
            CodeCache::ConfigFile("/etc/w.toml".into())
        );
        assert_eq!(
            c(&["cache-config=/w.toml,cache=no"]).unwrap(),
            CodeCache::Off
        );
        assert!(c(&["cache-config="]).is_err());
        assert!(c(&["opt-level=2"])
            .unwrap_err()
            .to_string()
            .contains("unknown"));
    }
}
