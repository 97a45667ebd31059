//! The revalidate hook: resolving guest page faults.
//!
//! The fault thread reads userfaultfd events and resolves what it can at once: a
//! write-protect fault (first write to a clean page: mark it dirty, let the write
//! through) and a fault on a file whose promise holds and whose pages are cached (map the
//! surrounding range again). Anything else (an invalid promise, pages to fetch) goes to a
//! task on the AFS runtime, which validates, refetches what changed, maps, and wakes the
//! guest. Resolutions map whole ranges (fault-around), so a scan faults a few times, not
//! once a page.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use afs::cache::manager::CacheManager;
use afs::cache::validity::{Check, Why};
use afs::error::ErrorKind;

use super::origin;
use super::region::{self, MappedFile, Region};
use super::stats::add;
use super::{Access, OnUnreachable, Pager, PagerError, Reason, RevalidateEvent, PAGE};
use crate::uffd::{Fault, FaultKind};
use tracing::Instrument;

/// Numbers the faults' spans, so concurrent faults can be told apart in the logs.
static NEXT_FAULT: AtomicU64 = AtomicU64::new(1);

/// Windows fetched ahead of a fault that had to fetch (a sequential scan).
const READ_AHEAD_WINDOWS: usize = 3;

/// Starts the thread that reads and resolves faults until the pager drops.
pub(super) fn spawn_thread(pager: &Arc<Pager>) -> std::io::Result<()> {
    let weak = Arc::downgrade(pager);
    let (uffd, stop) = (pager.uffd.as_raw_fd(), pager.stop.as_raw_fd());
    std::thread::Builder::new()
        .name("afs-pager".into())
        .spawn(move || fault_loop(weak, uffd, stop))
        .map(drop)
}

fn fault_loop(pager: Weak<Pager>, uffd: i32, stop: i32) {
    let mut faults = Vec::with_capacity(32);
    loop {
        let mut fds = [
            libc::pollfd {
                fd: uffd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: polls two descriptors described by a live array of two pollfds. The
        // descriptors belong to the pager, which signals `stop` before closing them.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 {
            return;
        }
        let Some(pager) = pager.upgrade() else { return };
        faults.clear();
        match pager.uffd.read_faults(&mut faults) {
            Ok(_) => {}
            Err(e) => {
                tracing::error!("reading userfaultfd: {e}");
                return;
            }
        }
        for f in faults.drain(..) {
            pager.handle(f, Instant::now());
        }
    }
}

/// The file bytes to map for a fault at file offset `at` in `region`.
pub(super) fn window(region: &Region, at: u64, around: u64) -> (u64, u64) {
    let around = around.max(PAGE as u64);
    let start = at - at % around;
    let r_end = region.offset + region.len as u64;
    (start.max(region.offset), (start + around).min(r_end))
}

impl Pager {
    fn handle(self: &Arc<Self>, fault: Fault, started: Instant) {
        let page = fault.address & !(PAGE - 1);
        let Some(region) = self.region_at(page) else {
            // Unmapped meanwhile: let the access retry against what is there now.
            let _ = self.uffd.wake(page, PAGE);
            return;
        };
        let span = tracing::info_span!(
            "fault",
            id = NEXT_FAULT.fetch_add(1, Ordering::Relaxed),
            path = %region.file.path,
            who = %region.who,
            kind = ?fault.kind,
            offset = region.file_offset(fault.address),
        );
        let _entered = span.enter();
        match fault.kind {
            FaultKind::WriteProtect => {
                add(&self.stats.faults_write_protect, 1);
                match region.access {
                    Access::ReadWrite => self.mark_written(&region, page),
                    Access::Read => self.write_to_read_only(&region, &fault),
                }
                self.finish(started, true);
            }
            FaultKind::Minor | FaultKind::Missing => {
                let counter = match fault.kind {
                    FaultKind::Minor => &self.stats.faults_minor,
                    _ => &self.stats.faults_missing,
                };
                add(counter, 1);
                if self.try_fast(&region, &fault) {
                    self.finish(started, true);
                } else {
                    let pager = self.clone();
                    let resolve = async move {
                        pager.resolve_slow(region, fault).await;
                        pager.finish(started, false);
                    };
                    self.runtime.spawn(resolve.instrument(span.clone()));
                }
            }
        }
    }

    fn finish(&self, started: Instant, fast: bool) {
        let counter = if fast {
            &self.stats.resolved_fast
        } else {
            &self.stats.resolved_slow
        };
        add(counter, 1);
        let took = started.elapsed();
        tracing::trace!(fast, took_us = took.as_micros() as u64, "fault finished");
        add(&self.stats.fault_nanos, took.as_nanos() as u64);
        crate::metrics::record_fault(fast, took);
    }

    /// The first write to a clean page: mark it dirty and let the write through.
    fn mark_written(&self, region: &Region, page: usize) {
        let p = region.file_offset(page) / PAGE as u64;
        region.file.cache.mark_dirty(p..p + 1);
        if let Err(e) = self.uffd.write_protect(page, PAGE, false) {
            tracing::error!(path = %region.file.path, "clearing write protection: {e}");
        }
    }

    /// Resolve on the fault thread if no network is needed: the promise holds, the cached
    /// pages belong to the validated data version, and the range is cached.
    fn try_fast(self: &Arc<Self>, region: &Arc<Region>, fault: &Fault) -> bool {
        let file = &region.file;
        let gen = file.zap_gen.load(Ordering::Acquire);
        if self.validity_reason(file).is_some() || !self.may_read(region) {
            return false;
        }
        let at = region.file_offset(fault.address);
        let mut range = window(region, at, self.config.fault_around);
        if fault.kind == FaultKind::Minor {
            let whole = (region.offset, region.offset + region.len as u64);
            if self.cached(file, whole) {
                range = whole;
            }
        }
        if !self.cached(file, range) {
            return false;
        }
        self.map_range(region, range, gen);
        // A sequential reader reached the window read-ahead left unmapped: read on.
        self.read_ahead(region, range);
        true
    }

    /// Whether the region's identity was told, under the promise in force, that it may
    /// read the file (if not told, the slow path asks the server as it).
    fn may_read(&self, region: &Region) -> bool {
        let coherence = self.cache.client().coherence();
        coherence
            .access(region.file.fid, &region.who)
            .is_some_and(|a| a & afs::types::rights::READ != 0)
    }

    /// Why the file must be revalidated before its pages may be mapped, if it must.
    fn validity_reason(&self, file: &MappedFile) -> Option<Reason> {
        let coherence = self.cache.client().coherence();
        // Judged against the version of the cached pages: a path resolution or a
        // stat may have learnt of a new data version (with a new promise) meanwhile.
        let why = match coherence.check_cached(file.fid, file.cache.data_version()) {
            Check::Valid => return None,
            Check::Invalid(why) => why,
        };
        let zapped = *file.zap_reason.lock().unwrap_or_else(|p| p.into_inner());
        Some(zapped.unwrap_or(match why {
            Why::NoPromise => Reason::NoPromise,
            Why::Expired => Reason::Expiry,
            Why::Broken | Why::VolumeBroken | Why::Superseded => Reason::Break,
            Why::ServerReset => Reason::ServerReset,
        }))
    }

    /// Whether the file bytes `[start, end)` are in the page store (or read as zeros).
    pub(super) fn cached(&self, file: &MappedFile, (start, end): (u64, u64)) -> bool {
        let first = start / PAGE as u64;
        let last = end.div_ceil(PAGE as u64);
        file.cache.all_present(first..last)
    }

    /// Map the file bytes `[start, end)` into `region` and wake the faulting threads.
    /// If a zap happened since `gen` was read, zap again: what was mapped may predate the
    /// break.
    pub(super) fn map_range(&self, region: &Region, (start, end): (u64, u64), gen: u64) {
        let file = &region.file;
        let zeros = file.cache.zeros_from().div_ceil(PAGE as u64) * PAGE as u64;
        if end > zeros {
            let from = start.max(zeros);
            if let Err(e) = region::allocate_zeros(file.cache.memfd(), from, end - from) {
                tracing::error!(path = %file.path, "allocating zero pages: {e}");
            }
        }
        let Some((addr, len)) = region.host_range(start, end) else {
            return;
        };
        // A task that resolved (or read ahead) slowly may find the region unmapped, and
        // even its addresses mapped again by another mapping: map nothing then.
        if self.region_at(addr).is_none_or(|r| r.id != region.id) {
            return;
        }
        // Write-protected always: a write is the first to a clean page of a read-write
        // mapping, or one that must not happen, to a read-only mapping.
        match self.uffd.continue_range(addr, len, true) {
            Ok(n) => add(&self.stats.pages_mapped, n),
            // Unmapped between the check and the ioctl: nothing waits on it any more.
            Err(_) if self.region_at(addr).is_none_or(|r| r.id != region.id) => {
                tracing::debug!(path = %file.path, "unmapped while mapping pages");
            }
            Err(e) => {
                tracing::error!(path = %file.path, "mapping pages: {e}");
                let _ = self.uffd.wake(addr, len);
            }
        }
        if file.zap_gen.load(Ordering::Acquire) != gen {
            let _ = region::zap(&region.guest, addr, len);
        }
    }

    /// The slow path: validate (FetchStatus) if the promise is gone, fetch what is
    /// missing, map, wake. A server that does not answer is handled by the policy.
    async fn resolve_slow(self: &Arc<Self>, region: Arc<Region>, fault: Fault) {
        let file = region.file.clone();
        let deadline = match self.config.on_unreachable {
            OnUnreachable::Wait(d) => Some(Instant::now() + d),
            _ => None,
        };
        loop {
            let gen = file.zap_gen.load(Ordering::Acquire);
            match self.validate_and_fetch(&region, &fault).await {
                Ok(range) => {
                    self.map_range(&region, range, gen);
                    tracing::debug!(
                        path = %file.path,
                        bytes = range.1 - range.0,
                        "fault resolved"
                    );
                    self.read_ahead(&region, range);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::ServerUnreachable => {
                    if deadline.is_some_and(|d| Instant::now() < d) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    self.unreachable(&region, &fault, &e, gen);
                    return;
                }
                Err(e) => {
                    let msg = format!("AFS error on {}: {e}", file.path);
                    self.poison(&region, &fault, msg, gen);
                    return;
                }
            }
        }
    }

    async fn validate_and_fetch(
        self: &Arc<Self>,
        region: &Region,
        fault: &Fault,
    ) -> Result<(u64, u64), PagerError> {
        let file = &region.file;
        if let Some(reason) = self.validity_reason(file) {
            self.revalidate(&region.cache, file, reason).await?;
        }
        // As the region's identity: its own rights (no network while it knows them).
        let node = region.cache.revalidate(&file.node()).await?;
        let at = region.file_offset(fault.address);
        let range = window(region, at, self.config.fault_around);
        let t = Instant::now();
        region.cache.populate(&node, range.0, range.1).await?;
        tracing::debug!(path = %file.path, took_us = t.elapsed().as_micros() as u64, "populated");
        Ok(range)
    }

    /// Fetch the next windows of a region ahead of a sequential reader, so that several
    /// fetches are in flight while the guest scans what is mapped. All but the last are
    /// mapped too; the last is left unmapped as a tripwire: the reader's fault there is
    /// resolved at once from the cache ([`Pager::try_fast`]) and reads further ahead, so
    /// the fetches keep ahead of a reader that never faults on what is mapped.
    fn read_ahead(self: &Arc<Self>, region: &Arc<Region>, (_, end): (u64, u64)) {
        let r_end = region.offset + region.len as u64;
        let around = self.config.fault_around.max(PAGE as u64);
        let mut start = end;
        for i in 0..READ_AHEAD_WINDOWS {
            if start >= r_end {
                return;
            }
            let next = (start, (start + around).min(r_end));
            start = next.1;
            let tripwire = i + 1 == READ_AHEAD_WINDOWS && next.1 < r_end;
            if self.cached(&region.file, next) {
                continue;
            }
            let (pager, region) = (self.clone(), region.clone());
            self.runtime.spawn(async move {
                let gen = region.file.zap_gen.load(Ordering::Acquire);
                if pager.validity_reason(&region.file).is_some() {
                    return;
                }
                let node = region.file.node();
                if pager.cache.populate(&node, next.0, next.1).await.is_ok() && !tripwire {
                    pager.map_range(&region, next, gen);
                }
            });
        }
    }

    /// The server cannot be reached while a guest waits on a fault: apply the policy.
    fn unreachable(&self, region: &Arc<Region>, fault: &Fault, e: &PagerError, gen: u64) {
        let file = &region.file;
        let at = region.file_offset(fault.address);
        let range = window(region, at, self.config.fault_around);
        if self.config.on_unreachable == OnUnreachable::Stale && self.cached(file, range) {
            tracing::warn!(path = %file.path, "server unreachable, serving cached bytes: {e}");
            self.map_range(region, range, gen);
            return;
        }
        let msg = format!("AFS server unreachable: {}", file.path);
        self.poison(region, fault, msg, gen);
    }

    /// Make the access trap, with `msg` as the trap's explanation. Only a fault in wasm
    /// code can become a trap: host code that faulted (WASI copying a mapped buffer) is
    /// lent the cached bytes if there are any, and the guest traps at its own next access.
    fn poison(&self, region: &Arc<Region>, fault: &Fault, msg: String, gen: u64) {
        if !origin::fault_in_wasm(fault.thread) {
            tracing::warn!(
                path = %region.file.path,
                "host code touched a page it cannot have now; the guest's own access will trap: {msg}"
            );
            if !self.lend_to_host(region, fault, gen) {
                // Nothing cached: zeros, in a private page, never in the page store.
                self.lend_private(region, fault.address & !(PAGE - 1), None, None);
            }
            return;
        }
        let addr = fault.address;
        tracing::warn!(path = %region.file.path, "guest access will trap: {msg}");
        *region.poisoned.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
        add(&self.stats.poisoned, 1);
        if let Err(e) = region::poison_page(&region.guest, addr) {
            tracing::error!("protecting the page: {e}");
        }
        let _ = self.uffd.wake(addr & !(PAGE - 1), PAGE);
    }

    /// The revalidate hook proper: validate with the server, drop cached pages of older
    /// data versions, note the new status, tell the observers.
    pub(super) async fn revalidate(
        &self,
        cache: &CacheManager,
        file: &MappedFile,
        reason: Reason,
    ) -> Result<u64, PagerError> {
        let span = tracing::info_span!("revalidation", path = %file.path, ?reason);
        async {
            let started = Instant::now();
            let before = file.cache.data_version();
            let node = cache.revalidate(&file.node()).await?;
            let dv = node.status.data_version();
            *file.node.lock().unwrap_or_else(|p| p.into_inner()) = node;
            file.zap_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            add(&self.stats.revalidations, 1);
            crate::metrics::record_revalidation(started.elapsed());
            self.emit(&RevalidateEvent {
                path: file.path.clone(),
                fid: file.fid,
                reason,
                data_changed: before.is_some_and(|b| b != dv),
                data_version: dv,
                took: started.elapsed(),
            });
            Ok(dv)
        }
        .instrument(span)
        .await
    }
}
