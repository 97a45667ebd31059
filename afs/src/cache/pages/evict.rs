//! The memory budget: reservations before pages arrive, and LRU eviction of clean chunks.
//!
//! Eviction is LRU over chunks (not whole files): every read, write and install stamps
//! the chunk with a global tick, and eviction punches the clean pages of the oldest
//! chunks of files nobody holds. This lets a single file larger than the budget stream
//! through it: the pages a reader is about to use are the newest and go last. There is
//! no global LRU list to maintain on every access; eviction scans the chunk table, which
//! is cheap next to the fetches that make it necessary, and it frees down to 7/8 of the
//! budget so it does not run on every fetch.
//!
//! Before a fetch installs (or a write adds) pages, it reserves room for them: eviction
//! counts present pages plus outstanding reservations, so concurrent fetches cannot
//! together overshoot the budget. Dirty pages and held files are never evicted; if only
//! they are left, the store stays over budget and counts it in `over_budget`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::file::FileCache;
use super::stats;
use super::table::{DIRTY, PRESENT};
use super::Shared;

/// Room reserved for pages about to become present; released on drop (by then they are
/// counted as present).
pub(super) struct Room {
    shared: Arc<Shared>,
    pages: u64,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.shared.reserved.fetch_sub(self.pages, Ordering::AcqRel);
    }
}

impl Shared {
    fn present(&self) -> u64 {
        self.stats.pages_present.load(Ordering::Acquire)
    }

    /// Make room for `incoming` pages, evicting if needed, and reserve it.
    pub(super) fn make_room(self: &Arc<Self>, incoming: u64) -> Room {
        let _one = self
            .evict_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let budget = self.budget_pages;
        let reserved = self.reserved.load(Ordering::Acquire);
        if self.present() + reserved + incoming > budget {
            let low = budget - budget / 8;
            self.evict_to(low.saturating_sub(reserved + incoming));
            if self.present() + reserved + incoming > budget {
                stats::add(&self.stats.over_budget, 1);
                tracing::debug!(
                    present = self.present(),
                    budget,
                    "page store over budget: only dirty or held pages left"
                );
            }
        }
        self.reserved.fetch_add(incoming, Ordering::AcqRel);
        Room {
            shared: self.clone(),
            pages: incoming,
        }
    }

    /// Evict clean chunks of unheld files, oldest first, until at most `target` pages
    /// are present. Returns the pages evicted.
    pub(super) fn evict_to(&self, target: u64) -> u64 {
        let files: Vec<Arc<FileCache>> = self
            .files()
            .values()
            .filter(|f| !f.is_held())
            .cloned()
            .collect();
        let mut candidates: Vec<(u64, usize, u64)> = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let st = f.lock();
            candidates.extend(st.pages.evictable().map(|(chunk, tick)| (tick, i, chunk)));
        }
        candidates.sort_unstable();
        let mut evicted = 0;
        for (_, i, chunk) in candidates {
            if self.present() <= target {
                break;
            }
            match files[i].evict_chunk(chunk) {
                Ok(n) => evicted += n,
                Err(e) => tracing::warn!(error = %e, "page store: eviction failed"),
            }
        }
        evicted
    }
}

impl FileCache {
    /// Punch the clean pages of `chunk` unless the file became held meanwhile.
    fn evict_chunk(&self, chunk: u64) -> Result<u64, super::PageError> {
        let mut st = self.lock();
        if self.is_held() {
            return Ok(0);
        }
        let pages = st.pages.chunk_pages(chunk);
        let runs = st.pages.runs(pages, |f| f & (PRESENT | DIRTY) == PRESENT);
        let n = self.mutate(&mut st, |st| self.discard(st, &runs))?;
        stats::add(&self.stats.pages_evicted, n);
        Ok(n)
    }
}
