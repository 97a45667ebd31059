//! Zapping: stripping mapped pages when the server's promise is gone.
//!
//! The callback service applies a break to the validity table and replies to the
//! fileserver first; the client then publishes the lost promises, and the task here
//! zaps every mapping of each mapped file among them (in every guest of this host). A
//! server reset zaps every mapped file whose promise came from that server. A promise can
//! also just run out; a sweep zaps those files so their next access revalidates.

use std::sync::{Arc, Weak};
use std::time::Instant;

use afs::cache::validity::{Check, Why};
use afs::client::PromisesLost;
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
                for file in pager.files() {
                    pager.zap_file(&file, Reason::Break);
                }
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
        for file in pager.files() {
            let expired = pager.cache.client().check(file.fid) == Check::Invalid(Why::Expired);
            // Zap once per expiry: a zapped file stays zapped until it is revalidated.
            if expired
                && file
                    .zap_reason
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_none()
            {
                pager.zap_file(&file, Reason::Expiry);
            }
        }
    }
}

impl Pager {
    fn files(&self) -> Vec<Arc<MappedFile>> {
        self.maps().files.values().map(|(f, _)| f.clone()).collect()
    }

    fn on_lost(&self, lost: &PromisesLost) {
        let reset = lost.files.iter().any(|(_, why)| *why == Why::ServerReset);
        let files = self.files();
        for file in &files {
            let why = lost
                .files
                .iter()
                .find(|(fid, _)| *fid == file.fid)
                .map(|(_, w)| *w);
            let from_reset_server = reset && file.node().server == lost.server;
            let reason = match why {
                Some(Why::ServerReset) => Reason::ServerReset,
                Some(Why::Expired) => Reason::Expiry,
                Some(_) => Reason::Break,
                None if from_reset_server => Reason::ServerReset,
                None => continue,
            };
            self.zap_file(file, reason);
        }
        tracing::debug!(
            server = %lost.server,
            since_arrival_us = lost.at.elapsed().as_micros() as u64,
            "callback event applied to mappings"
        );
    }

    /// Strip every mapping of `file`, so each guest's next access revalidates.
    pub(super) fn zap_file(&self, file: &MappedFile, reason: Reason) {
        let started = Instant::now();
        *file.zap_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        region::bump(&file.zap_gen);
        let mut n = 0;
        for r in self.regions_of(file.fid) {
            if let Err(e) = region::zap(&r.guest, r.addr, r.len) {
                tracing::error!(path = %file.path, "zapping a mapping: {e}");
            }
            n += 1;
        }
        add(&self.stats.zaps, 1);
        tracing::debug!(
            path = %file.path,
            ?reason,
            mappings = n,
            took_us = started.elapsed().as_micros() as u64,
            "zapped"
        );
    }
}
