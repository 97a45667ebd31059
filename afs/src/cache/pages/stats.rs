//! Counters an embedder can read at any time without locking.

use std::sync::atomic::{AtomicU64, Ordering};

/// Page-store counters. Totals only grow; `pages_dirty` and `pages_present` are current
/// values. Shared behind an `Arc` ([`PageStore::stats`](super::PageStore::stats)).
#[derive(Debug, Default)]
pub struct PageStats {
    /// Pages filled from the fetcher.
    pub pages_fetched: AtomicU64,
    /// Calls made to the fetcher (failed ones included).
    pub fetch_calls: AtomicU64,
    /// Bytes the fetcher returned.
    pub bytes_fetched: AtomicU64,
    /// Clean pages dropped to stay within the memory budget.
    pub pages_evicted: AtomicU64,
    /// Pages discarded by invalidation or truncation (not for budget reasons).
    pub pages_invalidated: AtomicU64,
    /// Pages written locally and not yet stored (current).
    pub pages_dirty: AtomicU64,
    /// Pages holding cached bytes, dirty ones included (current).
    pub pages_present: AtomicU64,
    /// Dirty pages made clean by a successful store.
    pub pages_flushed: AtomicU64,
    /// Calls made to the storer (failed ones included).
    pub store_calls: AtomicU64,
    /// Bytes handed to successful stores.
    pub bytes_stored: AtomicU64,
    /// Pages a read served without fetching.
    pub hits: AtomicU64,
    /// Times eviction could not get under the budget because only dirty or held pages
    /// were left.
    pub over_budget: AtomicU64,
}

/// A plain copy of [`PageStats`] at one moment, for printing and comparing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PageStatsSnapshot {
    pub pages_fetched: u64,
    pub fetch_calls: u64,
    pub bytes_fetched: u64,
    pub pages_evicted: u64,
    pub pages_invalidated: u64,
    pub pages_dirty: u64,
    pub pages_present: u64,
    pub pages_flushed: u64,
    pub store_calls: u64,
    pub bytes_stored: u64,
    pub hits: u64,
    pub over_budget: u64,
}

impl PageStats {
    /// Read every counter (each atomically; the set is not one atomic snapshot).
    pub fn snapshot(&self) -> PageStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PageStatsSnapshot {
            pages_fetched: get(&self.pages_fetched),
            fetch_calls: get(&self.fetch_calls),
            bytes_fetched: get(&self.bytes_fetched),
            pages_evicted: get(&self.pages_evicted),
            pages_invalidated: get(&self.pages_invalidated),
            pages_dirty: get(&self.pages_dirty),
            pages_present: get(&self.pages_present),
            pages_flushed: get(&self.pages_flushed),
            store_calls: get(&self.store_calls),
            bytes_stored: get(&self.bytes_stored),
            hits: get(&self.hits),
            over_budget: get(&self.over_budget),
        }
    }
}

/// Add to a counter.
pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Apply a signed change to a gauge (`pages_dirty`, `pages_present`).
pub(super) fn adjust(gauge: &AtomicU64, before: u64, after: u64) {
    if after > before {
        gauge.fetch_add(after - before, Ordering::Relaxed);
    } else if before > after {
        gauge.fetch_sub(before - after, Ordering::Relaxed);
    }
}
