//! The volume location cache: what the VLDB said about each volume, and when.
//!
//! Every path resolution crosses volume names and every call needs its volume's sites, so
//! locations are kept, as OpenAFS's cache manager keeps them until its hourly
//! `checkvolumes`: an entry older than [`VLDB_TTL`] is looked up again at its next use (a
//! site added or a volume moved without our hearing of it is learned within the hour), a
//! server saying a volume moved or is not there drops it at once, and
//! [`VolumeCache::flush`] (`fs checkvolumes`) drops them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::types::VolumeType;
use crate::vl::VolumeLocation;

/// How long a volume location is trusted without asking the VLDB again (OpenAFS's cache
/// manager checks its volumes hourly).
pub const VLDB_TTL: Duration = Duration::from_secs(3600);

/// A volume location, and when the VLDB gave it.
type FoundAt = (Instant, Arc<VolumeLocation>);

#[derive(Debug, Default)]
struct Tables {
    /// By the id of any of the volume's clones.
    by_id: HashMap<u32, FoundAt>,
    /// By (lower-case cell, volume name).
    by_name: HashMap<(String, String), FoundAt>,
    /// The cell of every volume id seen; kept across flushes (a fid's cell does not
    /// change).
    cells: HashMap<u32, String>,
}

#[derive(Debug, Default)]
pub struct VolumeCache {
    tables: Mutex<Tables>,
}

impl VolumeCache {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The location of volume `name` of `cell`, if the VLDB gave it less than
    /// [`VLDB_TTL`] ago.
    pub fn by_name(&self, cell: &str, name: &str, now: Instant) -> Option<Arc<VolumeLocation>> {
        let key = (cell.to_ascii_lowercase(), name.to_string());
        fresh(self.tables().by_name.get(&key), now)
    }

    /// The location of the volume one of whose clones is `id`, if fresh.
    pub fn by_id(&self, id: u32, now: Instant) -> Option<Arc<VolumeLocation>> {
        fresh(self.tables().by_id.get(&id), now)
    }

    /// Which clone `id` is, however old its entry (a clone never changes type).
    pub fn type_of(&self, id: u32) -> Option<VolumeType> {
        self.tables().by_id.get(&id)?.1.type_of(id)
    }

    /// The cell of volume `id`, if we have seen it.
    pub fn cell_of(&self, id: u32) -> Option<String> {
        self.tables().cells.get(&id).cloned()
    }

    /// Keeps what the VLDB said about a volume of `cell` (looked up by `name`, if it was).
    pub fn remember(
        &self,
        cell: &str,
        name: Option<&str>,
        loc: &Arc<VolumeLocation>,
        now: Instant,
    ) {
        let mut t = self.tables();
        for &id in loc.ids.iter().filter(|&&id| id != 0) {
            t.by_id.insert(id, (now, loc.clone()));
            t.cells.insert(id, cell.to_string());
        }
        if let Some(name) = name {
            let key = (cell.to_ascii_lowercase(), name.to_string());
            t.by_name.insert(key, (now, loc.clone()));
        }
    }

    /// Drops the location of the volume of `id` (a server said it moved or is not
    /// there), under every id and name it was kept.
    pub fn forget(&self, id: u32) {
        let mut t = self.tables();
        if let Some((_, loc)) = t.by_id.remove(&id) {
            t.by_id.retain(|_, (_, l)| !Arc::ptr_eq(l, &loc));
            t.by_name.retain(|_, (_, l)| !Arc::ptr_eq(l, &loc));
        }
    }

    /// Drops every location: the next use of each volume asks the VLDB (`fs
    /// checkvolumes`). Returns how many volumes were dropped.
    pub fn flush(&self) -> usize {
        let mut t = self.tables();
        let mut volumes: Vec<*const VolumeLocation> =
            t.by_id.values().map(|(_, l)| Arc::as_ptr(l)).collect();
        volumes.sort();
        volumes.dedup();
        t.by_id.clear();
        t.by_name.clear();
        volumes.len()
    }
}

fn fresh(entry: Option<&FoundAt>, now: Instant) -> Option<Arc<VolumeLocation>> {
    let (at, loc) = entry?;
    (now.saturating_duration_since(*at) < VLDB_TTL).then(|| loc.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(name: &str, rw: u32, ro: u32) -> Arc<VolumeLocation> {
        Arc::new(VolumeLocation {
            name: name.into(),
            ids: [rw, ro, 0],
            servers: Default::default(),
            hosts: Vec::new(),
        })
    }

    #[test]
    fn locations_are_kept_for_an_hour_by_every_id_and_name() {
        let cache = VolumeCache::default();
        let now = Instant::now();
        let l = loc("rep", 10, 11);
        cache.remember("Cell.Org", Some("rep"), &l, now);
        assert!(cache.by_name("cell.org", "rep", now).is_some());
        assert!(cache.by_id(10, now).is_some() && cache.by_id(11, now).is_some());
        assert_eq!(cache.type_of(11), Some(VolumeType::ReadOnly));
        assert_eq!(cache.cell_of(11).as_deref(), Some("Cell.Org"));
        let later = now + VLDB_TTL;
        assert!(cache.by_name("cell.org", "rep", later).is_none());
        assert!(cache.by_id(10, later).is_none());
        assert_eq!(
            cache.type_of(11),
            Some(VolumeType::ReadOnly),
            "types outlive it"
        );
    }

    #[test]
    fn a_moved_volume_is_forgotten_under_all_its_names_and_a_flush_forgets_all() {
        let cache = VolumeCache::default();
        let now = Instant::now();
        cache.remember("c", Some("a"), &loc("a", 1, 2), now);
        cache.remember("c", Some("b"), &loc("b", 3, 0), now);
        cache.forget(2);
        assert!(cache.by_id(1, now).is_none() && cache.by_name("c", "a", now).is_none());
        assert!(cache.by_id(3, now).is_some());
        assert_eq!(cache.flush(), 1);
        assert!(cache.by_id(3, now).is_none() && cache.by_name("c", "b", now).is_none());
        assert_eq!(cache.cell_of(3).as_deref(), Some("c"), "cells are kept");
    }
}
