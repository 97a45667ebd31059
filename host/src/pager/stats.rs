//! Counters of the pager's work, for embedders and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the pager's work.
#[derive(Debug, Default)]
pub struct PagerStats {
    pub faults_missing: AtomicU64,
    pub faults_minor: AtomicU64,
    pub faults_write_protect: AtomicU64,
    /// Faults resolved on the fault thread without the network.
    pub resolved_fast: AtomicU64,
    /// Faults that needed the AFS runtime (validation or fetching).
    pub resolved_slow: AtomicU64,
    /// Nanoseconds from reading a fault to resolving it, summed.
    pub fault_nanos: AtomicU64,
    pub pages_mapped: AtomicU64,
    pub revalidations: AtomicU64,
    pub zaps: AtomicU64,
    /// Accesses made to trap on purpose (unreachable server).
    pub poisoned: AtomicU64,
    /// Faults in host code on pages that had to trap, answered with cached bytes.
    pub lent_to_host: AtomicU64,
}

/// A copy of [`PagerStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PagerStatsSnapshot {
    pub faults_missing: u64,
    pub faults_minor: u64,
    pub faults_write_protect: u64,
    pub resolved_fast: u64,
    pub resolved_slow: u64,
    pub fault_nanos: u64,
    pub pages_mapped: u64,
    pub revalidations: u64,
    pub zaps: u64,
    pub poisoned: u64,
    pub lent_to_host: u64,
}

impl PagerStatsSnapshot {
    /// Faults of every kind.
    pub fn faults(&self) -> u64 {
        self.faults_missing + self.faults_minor + self.faults_write_protect
    }
}

impl PagerStats {
    pub fn snapshot(&self) -> PagerStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PagerStatsSnapshot {
            faults_missing: g(&self.faults_missing),
            faults_minor: g(&self.faults_minor),
            faults_write_protect: g(&self.faults_write_protect),
            resolved_fast: g(&self.resolved_fast),
            resolved_slow: g(&self.resolved_slow),
            fault_nanos: g(&self.fault_nanos),
            pages_mapped: g(&self.pages_mapped),
            revalidations: g(&self.revalidations),
            zaps: g(&self.zaps),
            poisoned: g(&self.poisoned),
            lent_to_host: g(&self.lent_to_host),
        }
    }
}

pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
