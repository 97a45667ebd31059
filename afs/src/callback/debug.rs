//! The debugging calls OpenAFS's `cmdebug` makes (GetLock, GetCE64/GetCE,
//! GetCellByNum, GetCellServDB, GetCacheConfig, and XStatsVersion, GetLocalCell,
//! GetServerPrefs) change nothing and show only what a debugger is meant to see,
//! so, like Probe, they are answered for anyone. Cache entries are the files the
//! client holds a status for ([`Coherence::known_files`]), listed in FID order;
//! we hold no cache-manager locks, so GetLock reports none ([`DebugInfo`]).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cache::coherence::Coherence;
use crate::cell::CellServDb;
use crate::proto::cb::{self as p, CacheConfig, CellHosts, CmDebugState, DbCacheEntry};
use crate::types::{Fid, FileType};

/// What the debugging calls (cmdebug's) are shown of a client.
pub struct DebugInfo {
    /// The files: the one owner of what we know about them.
    pub coherence: Arc<Coherence>,
    /// The cells we know, in CellServDB order; cell numbers count from 1 in this
    /// order (as the OpenAFS cache manager numbers the cells it loads).
    pub cells: Vec<CellHosts>,
    /// The local cell (ThisCell), if configured.
    pub local_cell: Option<String>,
    /// Bytes asked for per FetchData: what cmdebug -cache calls the chunk size.
    pub chunk_size: u32,
}

impl DebugInfo {
    pub fn new(
        coherence: Arc<Coherence>,
        cells: &CellServDb,
        local_cell: Option<&str>,
        chunk_size: u32,
    ) -> Self {
        Self {
            coherence,
            cells: cells
                .cells
                .iter()
                .map(|c| CellHosts {
                    name: c.name.clone(),
                    hosts: c.vlservers.iter().map(|a| *a.ip()).collect(),
                })
                .collect(),
            local_cell: local_cell.map(str::to_string),
            chunk_size,
        }
    }

    /// The number cache entries carry: the validity table keys files by FID
    /// alone, so every file is reported in the local cell (or the only cell
    /// there is); 0 when neither is known.
    pub(super) fn entry_cell(&self) -> i32 {
        let local = self.local_cell.as_deref().and_then(|name| {
            self.cells
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
        });
        match local {
            Some(i) => i32::try_from(i + 1).unwrap_or(0),
            None if self.cells.len() == 1 => 1,
            None => 0,
        }
    }
}

/// A listing of the known files is taken afresh at most this often (when a
/// debugger asks for entry 0), so that no caller can make us copy the table
/// more often; meanwhile every index refers to the same listing.
pub const LISTING_REFRESH: Duration = Duration::from_secs(1);

/// The cache as the debugging calls see it.
pub(super) struct CacheView {
    info: DebugInfo,
    entry_cell: i32,
    pub(super) listing: Mutex<Listing>,
}

/// The FIDs of a listing, in order, and when it was taken.
#[derive(Default)]
pub(super) struct Listing {
    fids: Arc<Vec<Fid>>,
    pub(super) taken: Option<Instant>,
}

impl CacheView {
    pub(super) fn new(info: DebugInfo) -> Self {
        Self {
            entry_cell: info.entry_cell(),
            info,
            listing: Mutex::default(),
        }
    }

    /// The current listing; a new one if there is none, or if `restart` and the
    /// last is older than [`LISTING_REFRESH`]. Copying the FIDs is the only
    /// work that grows with the table, and it happens at most that often.
    fn listing(&self, restart: bool) -> Arc<Vec<Fid>> {
        let mut l = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        let stale = l
            .taken
            .is_none_or(|t| restart && t.elapsed() >= LISTING_REFRESH);
        if stale {
            l.fids = Arc::new(self.info.coherence.known_files());
            l.taken = Some(Instant::now());
        }
        l.fids.clone()
    }
}

/// Unix seconds at `at` (0 if it cannot be told).
pub(super) fn unix_secs(at: Instant) -> u32 {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let then = if at >= now {
        wall.checked_add(at - now)
    } else {
        wall.checked_sub(now - at)
    };
    then.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

impl CmDebugState for CacheView {
    /// Entry `index` of the listing: FID, length, data version and, while a
    /// promise makes the file valid, the promising server's IPv4 address as
    /// `callback` with the promise's expiry. No locks, references or opens are
    /// kept per file, so those are 0. `addr` (a kernel address for OpenAFS) is
    /// the index plus one: cmdebug takes an entry with 0 there for a process.
    fn cache_entry(&self, index: u32) -> Option<DbCacheEntry> {
        let fids = self.listing(index == 0);
        let fid = *fids.get(usize::try_from(index).ok()?)?;
        let mut ce = DbCacheEntry {
            addr: index.wrapping_add(1).max(1),
            cell: self.entry_cell,
            fid,
            ..DbCacheEntry::default()
        };
        let Some((status, promise, read_only)) = self.info.coherence.describe(fid) else {
            return Some(ce);
        };
        ce.length = status.length();
        ce.data_version = status.data_version_lo;
        if let Some((server, expires)) = promise {
            ce.callback = match server.ip() {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(_) => 1,
            };
            ce.cb_expires = unix_secs(expires);
            ce.states |= p::CE_STATD;
        }
        if read_only {
            ce.states |= p::CE_READ_ONLY;
        }
        ce.mvstat = if fid.vnode == 1 && status.file_type == FileType::Directory {
            p::MVSTAT_VOLUME_ROOT
        } else if status.file_type == FileType::Symlink && status.unix_mode_bits & 0o111 == 0 {
            // How the OpenAFS CM tells a mount point from a symlink.
            p::MVSTAT_MOUNT_POINT
        } else {
            p::MVSTAT_FILE
        };
        Some(ce)
    }

    fn cell(&self, index: u32) -> Option<CellHosts> {
        self.info.cells.get(usize::try_from(index).ok()?).cloned()
    }

    fn cell_by_number(&self, number: i32) -> Option<CellHosts> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.info.cells.get(index).cloned()
    }

    fn local_cell(&self) -> Option<String> {
        self.info.local_cell.clone()
    }

    /// No chunk files or fixed pools: statuses and bytes are kept in memory as
    /// needed. The chunk size is what one FetchData asks for.
    fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            first_chunk_size: self.info.chunk_size,
            other_chunk_size: self.info.chunk_size,
            mem_cache: true,
            ..CacheConfig::default()
        }
    }
}
