//! The file commands: ls, stat, cat, put, rm, rmdir, mkdir.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;

use std::sync::Arc;

use afs::cache::manager::CacheManager;
use afs::cache::pages::PageStoreConfig;
use afs::client::{Client, Node};
use afs::types::FileType;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::File => "file",
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        _ => "invalid",
    }
}

pub async fn ls(client: &Client, path: &str, long: bool) -> Result<()> {
    let entries = client.list(path).await?;
    let mut out = std::io::stdout().lock();
    for e in entries {
        match (&e.status, long) {
            (Some(st), true) => writeln!(
                out,
                "{:<7} {:04o} {:>12} dv={:<6} {}",
                type_name(st.file_type),
                st.unix_mode_bits & 0o7777,
                st.length(),
                st.data_version(),
                e.name
            )?,
            _ => writeln!(out, "{}", e.name)?,
        }
    }
    Ok(())
}

fn print_node(out: &mut impl Write, path: &str, n: &Node) -> std::io::Result<()> {
    let st = &n.status;
    writeln!(out, "{path}")?;
    writeln!(
        out,
        "  fid:          {}.{}.{}",
        n.fid.volume, n.fid.vnode, n.fid.unique
    )?;
    writeln!(out, "  type:         {}", type_name(st.file_type))?;
    writeln!(out, "  length:       {}", st.length())?;
    writeln!(out, "  data version: {}", st.data_version())?;
    writeln!(out, "  mode:         {:04o}", st.unix_mode_bits & 0o7777)?;
    writeln!(out, "  owner/group:  {}/{}", st.owner, st.group)?;
    writeln!(out, "  modified:     {} (unix seconds)", st.client_mod_time)?;
    writeln!(out, "  server:       {}", n.server)
}

pub async fn stat(client: &Client, paths: &[String]) -> Result<()> {
    for p in paths {
        let node = client.resolve(p).await?;
        print_node(&mut std::io::stdout().lock(), p, &node)?;
    }
    Ok(())
}

/// Reads through the cache manager: a file named twice is fetched once.
pub async fn cat(client: &Arc<Client>, paths: &[String]) -> Result<()> {
    // Large chunks and many in flight: a cat is one sequential scan.
    let config = PageStoreConfig {
        chunk_bytes: 2 << 20,
        max_fetches_in_flight: 8,
        readahead_max_bytes: 32 << 20,
        ..PageStoreConfig::default()
    };
    let cache = CacheManager::new(client.clone(), config);
    let stdout = std::io::stdout();
    for p in paths {
        let mut out = stdout.lock();
        let start = std::time::Instant::now();
        let mut bytes = 0u64;
        let done = cache
            .read(p, |chunk| {
                bytes += chunk.len() as u64;
                out.write_all(chunk)
            })
            .await
            .map(drop)
            .and_then(|()| out.flush().map_err(afs::rpc::Error::Io));
        match done {
            // The reader went away (`afs-wasm cat f | head`): stop quietly, as cat does.
            Err(e) if is_broken_pipe(&e) => return Ok(()),
            r => r?,
        }
        let secs = start.elapsed().as_secs_f64();
        tracing::info!(path = %p, bytes, secs, "read");
    }
    // Shown with -v: what the cache served and what it had to fetch.
    let (validations, asked) = cache.validations();
    tracing::info!(pages = ?cache.pages().stats().snapshot(), validations, asked, "page store");
    Ok(())
}

fn is_broken_pipe(e: &afs::rpc::Error) -> bool {
    match e {
        afs::rpc::Error::Io(io) => io.kind() == std::io::ErrorKind::BrokenPipe,
        afs::rpc::Error::At { inner, .. } => is_broken_pipe(inner),
        _ => false,
    }
}

fn progress_bar(len: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || len < (1 << 20) {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{bytes}/{total_bytes} [{bar:40}] {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

pub async fn put(client: &Client, source: &str, path: &str) -> Result<()> {
    let (data, len): (Box<dyn tokio::io::AsyncRead + Unpin + Send>, u64) = if source == "-" {
        // The store needs the final length up front: read standard input first.
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)?;
        let len = buf.len() as u64;
        (Box::new(std::io::Cursor::new(buf)), len)
    } else {
        let file = tokio::fs::File::open(source)
            .await
            .with_context(|| format!("cannot open {source}"))?;
        let len = file.metadata().await?.len();
        (Box::new(file), len)
    };
    let bar = progress_bar(len);
    let node = client
        .write(path, data, len, |n| {
            if let Some(b) = &bar {
                b.inc(n);
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish();
    }
    tracing::debug!(
        path,
        length = node.status.length(),
        dv = node.status.data_version(),
        "stored"
    );
    Ok(())
}

pub async fn rm(client: &Client, paths: &[String]) -> Result<()> {
    for p in paths {
        client.remove(p).await?;
    }
    Ok(())
}

pub async fn rmdir(client: &Client, paths: &[String]) -> Result<()> {
    for p in paths {
        client.remove_dir(p).await?;
    }
    Ok(())
}

pub async fn mkdir(client: &Client, paths: &[String]) -> Result<()> {
    for p in paths {
        client.mkdir(p).await?;
    }
    Ok(())
}

/// Prints the client's counters (shown at exit with -v).
pub fn print_stats(client: &Client) {
    eprintln!("fileserver calls: {}", client.fs_stats());
    let rx = client.endpoint().stats();
    let counters = client.endpoint().counters();
    let cb = client.callback_stats();
    eprintln!(
        "rx: {} datagrams in, {} out, {} bad packets, {} refused, {} send drops; callbacks: {} breaks ({} files), {} resets, {} probes, {} refused; {} promises held",
        rx.datagrams_in.load(Ordering::Relaxed),
        rx.datagrams_out.load(Ordering::Relaxed),
        counters.bad_packets,
        counters.refused,
        rx.send_drops.load(Ordering::Relaxed),
        cb.breaks.load(Ordering::Relaxed),
        cb.fids_broken.load(Ordering::Relaxed),
        cb.resets.load(Ordering::Relaxed),
        cb.probes.load(Ordering::Relaxed),
        cb.refused.load(Ordering::Relaxed),
        client.coherence().promised(),
    );
}
