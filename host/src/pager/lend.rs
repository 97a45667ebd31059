//! Pages lent to host code.
//!
//! A fault in host code (WASI copying a mapped buffer out, the canonical ABI writing a
//! returned list where the guest's allocator put it) cannot become a trap: wasmtime
//! traps only faults in wasm code, and any other ends the process. So where the guest
//! would trap, the pager lends the host code a page instead: the cached bytes, a private
//! zero page, or a private copy for a write into a read-only mapping. The store's call
//! hook takes the pages back as the host call returns ([`Pager::after_host_call`]): the
//! guest's own next access traps, and a write into a read-only mapping fails the call.

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
        let mut outcome = Ok(());
        for lent in ours {
            if let Err(msg) = self.take_back(lent) {
                outcome = outcome.and(Err(msg));
            }
        }
        outcome
    }

    pub(super) fn take_back(&self, lent: Lent) -> Result<(), String> {
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
        let mut copy = vec![0u8; PAGE];
        let offset = region.file_offset(page);
        let contents = read_memfd(region, offset, &mut copy).then_some(&copy[..]);
        self.lend_private(region, page, contents, Some(msg));
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
        // Listed before the mapping wakes the thread, and under the lock that the call
        // hook takes: no hook can miss the range once the host code can read it.
        let mut lent = self.lent_to_host.lock().unwrap_or_else(|p| p.into_inner());
        lent.push(Lent {
            region: region.clone(),
            addr,
            len,
            kind: LentKind::Shared,
        });
        self.any_lent_to_host.store(true, Ordering::Release);
        self.map_range(region, range, gen);
        add(&self.stats.lent_to_host, 1);
        true
    }

    /// Puts a private page (`contents`, or zeros) at `page` for host code that faulted
    /// there, and wakes it; the page goes back as the host call returns, failing it with
    /// `error` if there is one.
    pub(super) fn lend_private(
        &self,
        region: &Arc<Region>,
        page: usize,
        contents: Option<&[u8]>,
        error: Option<String>,
    ) {
        let mut lent = self.lent_to_host.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = region::lend_private_page(&region.guest, page, contents) {
            tracing::error!(path = %region.file.path, "lending a private page: {e}");
        }
        lent.push(Lent {
            region: region.clone(),
            addr: page,
            len: PAGE,
            kind: LentKind::Private { error },
        });
        self.any_lent_to_host.store(true, Ordering::Release);
        add(&self.stats.lent_to_host, 1);
        drop(lent);
        let _ = self.uffd.wake(page, PAGE);
    }
}

/// Reads the page store's bytes at `offset` into `buf` (zeros past its end); false if
/// the read failed. Reads the memfd, never the mapping, which could fault.
fn read_memfd(region: &Region, offset: u64, buf: &mut [u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let fd = region.file.cache.memfd().try_clone_to_owned();
    let Ok(fd) = fd else { return false };
    let file = std::fs::File::from(fd);
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
