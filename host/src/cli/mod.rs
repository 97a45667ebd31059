//! Command-line parsing and the commands.

mod auth;
mod files;
mod run;
mod serve;
mod watch;

use std::path::PathBuf;

use afs::client::{Client, ClientConfig};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// An AFS client that speaks Rx to OpenAFS cells.
#[derive(Debug, Parser)]
#[command(name = "afs-wasm", version, about)]
pub struct Args {
    /// CellServDB to read (default: $AFS_CELLSERVDB, then /etc/openafs/CellServDB).
    #[arg(long, global = true, value_name = "FILE")]
    pub cellservdb: Option<PathBuf>,
    /// ThisCell to read (default: $AFS_THISCELL, then /etc/openafs/ThisCell).
    #[arg(long, global = true, value_name = "FILE")]
    pub thiscell: Option<PathBuf>,
    /// Cell for paths that do not start with /afs/ (default: ThisCell).
    #[arg(long, global = true, env = "AFS_CELL")]
    pub cell: Option<String>,
    /// Call the servers anonymously (rxnull), even with a token.
    #[arg(long, global = true)]
    pub anonymous: bool,
    /// rxkad level for authenticated connections: clear, auth (checksummed) or crypt.
    #[arg(long, global = true, default_value = "crypt", value_name = "LEVEL")]
    pub level: rx::rxkad::Level,
    /// More logging (-v: debug, -vv: trace); also shows counters at exit.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List a directory.
    Ls {
        path: String,
        /// Show type, mode, length and data version.
        #[arg(short, long)]
        long: bool,
    },
    /// Show a file's status.
    Stat { paths: Vec<String> },
    /// Write files to standard output.
    Cat { paths: Vec<String> },
    /// Store a local file (or standard input, `-`) as an AFS file.
    Put { source: String, path: String },
    /// Remove files.
    Rm { paths: Vec<String> },
    /// Remove empty directories.
    Rmdir { paths: Vec<String> },
    /// Make directories.
    Mkdir { paths: Vec<String> },
    /// Make a mount point for a volume.
    Mkmount {
        path: String,
        volume: String,
        /// Always use the read-write volume (`%vol.`).
        #[arg(long)]
        rw: bool,
        /// The volume's cell, when it is not the cell of PATH (`#cell:vol.`).
        #[arg(long, value_name = "CELL")]
        target_cell: Option<String>,
    },
    /// Make a symbolic link at PATH pointing at TARGET.
    Ln { target: String, path: String },
    /// Run a wasm guest (a wasm32-wasip2 command component, or a wasm32-wasip1 command
    /// module) that may open and map the AFS files it is granted.
    Run(run::RunArgs),
    /// Serve a wasi:http handler component (`wasi:http/incoming-handler`) over HTTP, a
    /// fresh instance per request, as `wasmtime serve` does, with AFS grants and
    /// directories as `run` gives them.
    Serve(serve::ServeArgs),
    /// Get an AFS token for the cell from Kerberos (the ticket cache, or a keytab), as
    /// aklog does, and keep it in the user's token store.
    Login(auth::LoginArgs),
    /// List the tokens held.
    Tokens,
    /// Drop the token of --cell, or all tokens.
    Unlog,
    /// Print a line each time one of the files changes.
    Watch {
        paths: Vec<String>,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<u64>,
        /// End each line with ` at=<unix microseconds>`, the wall-clock time of the report.
        #[arg(long)]
        timestamps: bool,
    },
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        // wasmtime's code cache warns when it cannot store an entry (another process
        // writing it, a read-only directory): no concern of the user's, the run goes on.
        0 => "warn,wasmtime_internal_cache=error",
        // wit-component's debug lines (adapting a wasm32-wasip1 module) drown ours.
        1 => "debug,wit_parser=info,wit_component=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Turns `dir/file` into `/afs/<cell>/dir/file`.
pub fn absolute(client: &Client, cell: Option<&str>, path: &str) -> Result<String> {
    if path.starts_with("/afs/") {
        return Ok(path.to_string());
    }
    let cell = cell
        .or(client.this_cell())
        .context("relative path but no cell: give --cell, set AFS_CELL or configure ThisCell")?;
    Ok(format!("/afs/{cell}/{}", path.trim_start_matches('/')))
}

fn client_config(args: &Args) -> Result<ClientConfig> {
    Ok(ClientConfig {
        cellservdb: args.cellservdb.clone(),
        thiscell: args.thiscell.clone(),
        identity: auth::identity(args.anonymous, args.level)?,
        ..ClientConfig::default()
    })
}

/// `afs-wasm run` and `serve`: the exit code. Call it outside any tokio runtime (the host
/// brings its own).
pub fn run_guest(args: Args) -> Result<i32> {
    let client = client_config(&args)?;
    match args.command {
        Command::Run(run) => run::run(client, args.cell, args.level, run),
        Command::Serve(serve) => serve::serve(client, args.cell, args.level, serve),
        _ => anyhow::bail!("not a run or serve command"),
    }
}

pub async fn run(args: Args) -> Result<()> {
    match &args.command {
        Command::Login(login) => {
            let cell = auth::default_cell(args.cell.as_deref(), args.thiscell.as_ref())?;
            return auth::login(&cell, login);
        }
        Command::Tokens => return auth::tokens(),
        Command::Unlog => return auth::unlog(args.cell.as_deref()),
        _ => {}
    }
    let client = std::sync::Arc::new(Client::new(client_config(&args)?).await?);
    let cell = args.cell.as_deref();
    let abs = |p: &str| absolute(&client, cell, p);
    let result = match &args.command {
        Command::Ls { path, long } => files::ls(&client, &abs(path)?, *long).await,
        Command::Stat { paths } => files::stat(&client, &map(paths, abs)?).await,
        Command::Cat { paths } => files::cat(&client, &map(paths, abs)?).await,
        Command::Put { source, path } => files::put(&client, source, &abs(path)?).await,
        Command::Rm { paths } => files::rm(&client, &map(paths, abs)?).await,
        Command::Rmdir { paths } => files::rmdir(&client, &map(paths, abs)?).await,
        Command::Mkdir { paths } => files::mkdir(&client, &map(paths, abs)?).await,
        Command::Mkmount {
            path,
            volume,
            rw,
            target_cell,
        } => {
            let target = afs::path::MountPoint {
                cell: target_cell.clone(),
                volume: volume.clone(),
                rw: *rw,
            };
            client.make_mount_point(&abs(path)?, &target).await?;
            Ok(())
        }
        Command::Ln { target, path } => {
            client.symlink(&abs(path)?, target).await?;
            Ok(())
        }
        Command::Watch {
            paths,
            count,
            timestamps,
        } => {
            let format = watch::Format {
                timestamps: *timestamps,
            };
            watch::watch(&client, &map(paths, abs)?, *count, format).await
        }
        Command::Run(_) | Command::Serve(_) => Err(anyhow::anyhow!(
            "`run` and `serve` are handled outside the runtime"
        )),
        Command::Login(_) | Command::Tokens | Command::Unlog => unreachable!("handled above"),
    };
    if args.verbose > 0 {
        files::print_stats(&client);
    }
    client.give_up_callbacks().await;
    result
}

fn map(paths: &[String], f: impl Fn(&str) -> Result<String>) -> Result<Vec<String>> {
    paths.iter().map(|p| f(p)).collect()
}
