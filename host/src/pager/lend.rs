//! Pages lent to host code.
//!
//! A fault in host code (WASI copying a mapped buffer out, the canonical ABI writing a
//! returned list where the guest's allocator put it) cannot become a trap: wasmtime
//! traps only faults in wasm code, and any other ends the process. So where the guest
//! would trap, the pager lends the host code a page instead: the cached bytes, a private
//! zero page, or a private copy for a write into a read-only mapping. The store's call
//! hook takes the pages back as the host call returns ([`Pager::after_host_call`]): the
//! guest's own next access traps, and a write into a read-only mapping fails the call.

use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::fault::window;
use super::region::{self, Region};
use super::stats::add;
use super::{origin, Pager, PAGE};
use crate::uffd::Fault;

/// A range of a mapping lent to host code that faulted in it.
pub(super) struct Lent {
    region: Arc<Region>,
    addr: usize,
    len: usize,
    kind: LentKind,
}

pub(super) enum LentKind {
    /// The shared pages, mapped with their cached bytes; zapped to take them back.
    Shared,
    /// A private page in place of the shared one; mapped over again to take it back.
    /// `error` fails the host call (a write into a read-only mapping).
    Private { error: Option<String> },
}

impl Lent {
    pub(super) fn owned_by(&self, memory_bases: &[usize]) -> bool {
        crate::memory::memory_containing(self.addr).is_some_and(|m| memory_bases.contains(&m.base))
    }
}

impl Pager {
    /// Called as every host call of a guest returns (a store's call hook), with the
    /// bases of the guest's memories. A fault in host code cannot become a trap, so
    /// host code that faulted where the guest would trap was lent a page: the cached
    /// bytes of a file that cannot be revalidated, or a private page. Take them back
    /// now, before the guest runs: its own next access traps. A host write into a
    /// read-only mapping makes the call itself fail: the error says so.
    pub fn after_host_call(&self, memory_bases: &[usize]) -> Result<(), String> {
        if !self.any_lent_to_host.load(Ordering::Acquire) {
            return Ok(());
        }
        let ours = {
            let mut lent = self.lent_to_host.lock().unwrap_or_else(|p| p.into_inner());
            let (ours, others): (Vec<Lent>, Vec<Lent>) = std::mem::take(&mut *lent)
                .into_iter()
                .partition(|l| l.owned_by(memory_bases));
            // Entries of memories that are gone are dropped with them.
            *lent = others
                .into_iter()
                .filter(|l| l.region.guest.is_live())
                .collect();
            self.any_lent_to_host
                .store(!lent.is_empty(), Ordering::Release);
            ours
        };
        // Every page goes back; the first error is the call's.
        ours.into_iter()
            .map(|lent| self.take_back(lent))
            .fold(Ok(()), Result::and)
    }

    fn take_back(&self, lent: Lent) -> Result<(), String> {
        let Lent {
            region,
            addr,
            len,
            kind,
        } = lent;
        match kind {
            LentKind::Shared => {
                let _ = region::zap(&region.guest, addr, len);
                Ok(())
            }
            LentKind::Private { error } => {
                let offset = region.file_offset(addr);
                let memfd = region.file.cache.memfd();
                let back = region::map_shared(&region.guest, memfd, offset, (addr, len))
                    .and_then(|()| self.uffd.register(addr, len));
                if let Err(e) = back {
                    tracing::error!(path = %region.file.path, "taking back a lent page: {e}");
                }
                error.map_or(Ok(()), Err)
            }
        }
    }

    /// A write into a read-only mapping. By the guest's own code: make the page
    /// read-only, so that the write's retry traps (explained as such). By host code:
    /// lend it a private copy of the page, and fail its host call as it returns.
    pub(super) fn write_to_read_only(&self, region: &Arc<Region>, fault: &Fault) {
        let page = fault.address & !(PAGE - 1);
        if origin::fault_in_wasm(fault.thread) {
            if let Err(e) = region::protect_read_only(&region.guest, page) {
                tracing::error!(path = %region.file.path, "protecting the page: {e}");
            }
            let _ = self.uffd.wake(page, PAGE);
            return;
        }
        let msg = format!("write to a read-only mapping of {}", region.file.path);
        tracing::warn!(path = %region.file.path, "host code wrote into a read-only mapping");
        // The page has a PTE (the fault was write-protect), so the memfd has it: a
        // copy-on-write view takes the host's write.
        let copy_of = (region.file.cache.memfd(), region.file_offset(page));
        self.lend_private(region, page, Some(copy_of), Some(msg));
    }

    /// Maps the cached bytes around a fault taken by host code, to be zapped again as the
    /// host call returns ([`Pager::after_host_call`]). False if nothing there is cached.
    pub(super) fn lend_to_host(&self, region: &Arc<Region>, fault: &Fault, gen: u64) -> bool {
        let at = region.file_offset(fault.address);
        let mut range = window(region, at, self.config.fault_around);
        if !self.cached(&region.file, range) {
            range = window(region, at, PAGE as u64);
            if !self.cached(&region.file, range) {
                return false;
            }
        }
        let Some((addr, len)) = region.host_range(range.0, range.1) else {
            return false;
        };
        let lent = Lent {
            region: region.clone(),
            addr,
            len,
            kind: LentKind::Shared,
        };
        self.lend(lent, || self.map_range(region, range, gen));
        true
    }

    /// Puts a private page (a copy-on-write view of the memfd page `copy_of`, or zeros)
    /// at `page` for host code that faulted there, and wakes it; the page goes back as
    /// the host call returns, failing it with `error` if there is one.
    pub(super) fn lend_private(
        &self,
        region: &Arc<Region>,
        page: usize,
        copy_of: Option<(BorrowedFd<'_>, u64)>,
        error: Option<String>,
    ) {
        let lent = Lent {
            region: region.clone(),
            addr: page,
            len: PAGE,
            kind: LentKind::Private { error },
        };
        self.lend(lent, || {
            if let Err(e) = region::lend_private_page(&region.guest, page, copy_of) {
                tracing::error!(path = %region.file.path, "lending a private page: {e}");
            }
            let _ = self.uffd.wake(page, PAGE);
        });
    }

    /// Lists `lent`, then runs `hand_over` (which wakes the faulting thread). Both happen
    /// under the lock that the call hook takes, so no hook can miss the range once the
    /// host code can touch it.
    fn lend(&self, lent: Lent, hand_over: impl FnOnce()) {
        let mut list = self.lent_to_host.lock().unwrap_or_else(|p| p.into_inner());
        list.push(lent);
        self.any_lent_to_host.store(true, Ordering::Release);
        hand_over();
        add(&self.stats.lent_to_host, 1);
    }
}
