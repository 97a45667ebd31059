//! Zapping: stripping mapped pages when the server's promise is gone.
//!
//! The callback service applies a break to the validity table and replies to the
//! fileserver first; the client then publishes the lost promises, and the task here
//! zaps every mapping of each mapped file among them (in every guest of this host). A
//! server reset zaps every mapped file whose promise came from that server. A promise can
//! also just run out; a sweep zaps those files so their next access revalidates.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use afs::cache::validity::{Check, Why};
use afs::client::PromisesLost;
use afs::types::Fid;
use tokio::sync::broadcast::error::RecvError;

use super::region::{self, MappedFile};
use super::{add, Pager, Reason};

pub(super) fn spawn_watchers(pager: &Arc<Pager>) {
    let lost = pager.cache.client().subscribe_lost();
    pager
        .runtime
        .spawn(watch_breaks(Arc::downgrade(pager), lost));
    pager.runtime.spawn(sweep_expired(Arc::downgrade(pager)));
}

async fn watch_breaks(
    pager: Weak<Pager>,
    mut lost: tokio::sync::broadcast::Receiver<PromisesLost>,
) {
    loop {
        let event = lost.recv().await;
        let Some(pager) = pager.upgrade() else { return };
        match event {
            Ok(lost) => pager.on_lost(&lost),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("missed {n} callback events: zapping every mapping");
                let all: Vec<_> = pager
                    .files()
                    .into_iter()
                    .map(|f| (f, Reason::Break))
                    .collect();
                pager.zap_files(&all);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn sweep_expired(pager: Weak<Pager>) {
    let period = match pager.upgrade() {
        Some(p) => p.config.expiry_sweep,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(pager) = pager.upgrade() else { return };
        let expired: Vec<_> = pager
            .files()
            .into_iter()
            .filter(|file| {
                pager.cache.client().check(file.fid) == Check::Invalid(Why::Expired)
                // Zap once per expiry: a zapped file stays zapped until it is revalidated.
                    && file
                        .zap_reason
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_none()
            })
            .map(|file| (file, Reason::Expiry))
            .collect();
        if !expired.is_empty() {
            pager.zap_files(&expired);
        }
    }
}

impl Pager {
    fn files(&self) -> Vec<Arc<MappedFile>> {
        self.maps().files.values().map(|(f, _)| f.clone()).collect()
    }

    fn on_lost(&self, lost: &PromisesLost) {
        let reason = |why: Why| match why {
            Why::ServerReset => Reason::ServerReset,
            Why::Expired => Reason::Expiry,
            _ => Reason::Break,
        };
        let reset = lost.files.iter().any(|(_, why)| *why == Why::ServerReset);
        let targets: Vec<(Arc<MappedFile>, Reason)> = {
            let maps = self.maps();
            if reset {
                // Every file whose promise came from the server, named or not.
                let named: HashMap<Fid, Why> = lost.files.iter().copied().collect();
                maps.files
                    .values()
                    .filter_map(|(file, _)| match named.get(&file.fid) {
                        Some(why) => Some((file.clone(), reason(*why))),
                        None if file.node().server == lost.server => {
                            Some((file.clone(), Reason::ServerReset))
                        }
                        None => None,
                    })
                    .collect()
            } else {
                lost.files
                    .iter()
                    .filter_map(|(fid, why)| Some((maps.files.get(fid)?.0.clone(), reason(*why))))
                    .collect()
            }
        };
        self.zap_files(&targets);
        if !targets.is_empty() {
            crate::metrics::record_change(lost.at.elapsed());
        }
        tracing::debug!(
            server = %lost.server,
            zapped = targets.len(),
            since_arrival_us = lost.at.elapsed().as_micros() as u64,
            "callback event applied to mappings"
        );
    }

    /// Strip every mapping of each file (one system call for thousands of mappings). Each
    /// file's generation moves first, so a resolution racing with this re-zaps what it
    /// mapped.
    pub(super) fn zap_files(&self, files: &[(Arc<MappedFile>, Reason)]) {
        let started = Instant::now();
        let mut regions = Vec::new();
        for (file, reason) in files {
            *file.zap_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(*reason);
            region::bump(&file.zap_gen);
            regions.extend(self.regions_of(file.fid));
        }
        let ranges: Vec<_> = regions.iter().map(|r| (&r.guest, r.addr, r.len)).collect();
        if let Err(e) = region::zap_many(&ranges) {
            tracing::error!("zapping mappings: {e}");
        }
        add(&self.stats.zaps, files.len() as u64);
        tracing::debug!(
            files = files.len(),
            mappings = ranges.len(),
            took_us = started.elapsed().as_micros() as u64,
            "zapped"
        );
    }
}
