//! `afs-wasm watch`: hold callback promises on files and report each change.
//!
//! A break (or a server reset) makes us fetch the file's status again, which also
//! renews the promise; a line is printed only when the data version moved.
//!
//! Each line is `PATH dv=N length=N delay=D`, where `delay` is the time from the
//! break's arrival to the report (`-` for a change found at a renewal); with
//! `--timestamps` it ends with ` at=T`, the wall-clock time of the report in
//! microseconds since the Unix epoch (for latency measurements against other clocks).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use afs::cache::validity::{Check, EXPIRY_MARGIN};
use afs::callback::CallbackEvent;
use afs::client::{Client, Node};
use afs::types::Fid;
use anyhow::Result;
use tokio::sync::broadcast::error::RecvError;

struct Watched {
    path: String,
    node: Node,
}

/// How each report line looks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Format {
    /// Append ` at=<unix microseconds>` (wall clock when the line is written).
    pub timestamps: bool,
}

pub async fn watch(
    client: &Client,
    paths: &[String],
    count: Option<u64>,
    format: Format,
) -> Result<()> {
    let mut events = client.subscribe();
    let mut files: HashMap<Fid, Watched> = HashMap::new();
    for p in paths {
        let node = client.resolve(p).await?;
        files.insert(
            node.fid,
            Watched {
                path: p.clone(),
                node,
            },
        );
    }
    eprintln!("watching {} file(s)", files.len());
    let mut changes = 0u64;
    let mut out = std::io::stdout();
    loop {
        let renew_in = next_renewal(client, &files);
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::time::sleep(renew_in) => {
                // Promises about to expire: renew them (and notice missed changes).
                let due: Vec<Fid> = files.keys().copied()
                    .filter(|f| client.check(*f) != Check::Valid)
                    .collect();
                changes += recheck(client, &mut files, &due, None, format, &mut out).await?;
                if count.is_some_and(|c| changes >= c) { return Ok(()); }
                continue;
            }
        };
        let (affected, at): (Vec<Fid>, Instant) = match event {
            Ok(CallbackEvent::Broken { fids, at, .. }) => (
                files
                    .keys()
                    .copied()
                    .filter(|f| {
                        fids.iter().any(|b| {
                            b == f || (b.vnode == 0 && b.unique == 0 && b.volume == f.volume)
                        })
                    })
                    .collect(),
                at,
            ),
            Ok(CallbackEvent::ServerReset { server, at, .. }) => (
                files
                    .values()
                    .filter(|w| w.node.server == server)
                    .map(|w| w.node.fid)
                    .collect(),
                at,
            ),
            Err(RecvError::Lagged(_)) => (files.keys().copied().collect(), Instant::now()),
            Err(RecvError::Closed) => return Ok(()),
        };
        changes += recheck(client, &mut files, &affected, Some(at), format, &mut out).await?;
        if count.is_some_and(|c| changes >= c) {
            return Ok(());
        }
    }
}

/// How long until the first promise enters its expiry margin.
fn next_renewal(client: &Client, files: &HashMap<Fid, Watched>) -> Duration {
    let now = Instant::now();
    files
        .keys()
        .map(|f| match client.promise(*f) {
            Some((_, expires)) => expires.saturating_duration_since(now + EXPIRY_MARGIN),
            None => Duration::ZERO,
        })
        .min()
        .unwrap_or(Duration::from_secs(3600))
        .max(Duration::from_millis(100))
}

/// Fetches status again; prints and counts files whose data version moved.
async fn recheck(
    client: &Client,
    files: &mut HashMap<Fid, Watched>,
    fids: &[Fid],
    broke_at: Option<Instant>,
    format: Format,
    out: &mut impl Write,
) -> Result<u64> {
    let mut changed = 0;
    for fid in fids {
        let Some(w) = files.get_mut(fid) else {
            continue;
        };
        let node = match client.fetch_status(&w.node.cell, *fid).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("afs-wasm: {}: {e}", w.path);
                continue;
            }
        };
        let old = w.node.status.data_version();
        let new = node.status.data_version();
        w.node = node;
        if new != old {
            changed += 1;
            let delay = broke_at.map_or(String::from("-"), |t| {
                format!("{:.1}ms", t.elapsed().as_secs_f64() * 1e3)
            });
            write!(
                out,
                "{} dv={} length={} delay={}",
                w.path,
                new,
                w.node.status.length(),
                delay
            )?;
            if format.timestamps {
                write!(out, " at={}", unix_micros())?;
            }
            writeln!(out)?;
            out.flush()?;
        }
    }
    Ok(changed)
}

/// Wall-clock time in microseconds since the Unix epoch (0 if the clock is before it).
fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}
